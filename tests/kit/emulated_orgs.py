"""What sfsync's Salesforce client needs to log in to one org the emulator serves
(``sfsync.emulator.server.RunningOrg``, one of ``serve_orgs_in_thread``'s or ``serve_in_thread``'s), per
OAuth flow, and an httpx transport that trusts the org's certificate when it serves TLS.

Import from this module (``from tests.kit.emulated_orgs import client_credentials_settings``): it loads
``sfsync.salesforce``.
"""

from __future__ import annotations

import ssl

import httpx
from pydantic import SecretStr

from sfsync.emulator.server import RunningOrg
from sfsync.salesforce import SalesforceSettings

__all__ = ["client_credentials_settings", "jwt_settings", "refresh_token_settings", "transport"]


def client_credentials_settings(org: RunningOrg) -> SalesforceSettings:
    """The org's connected app, client-credentials flow (runs as the integration user)."""
    return SalesforceSettings.model_validate(
        {
            "login_url": org.login_url,
            "auth_flow": "client_credentials",
            "client_id": org.client_id,
            "client_secret": SecretStr(org.client_secret),
        }
    )


def jwt_settings(org: RunningOrg, username: str | None = None) -> SalesforceSettings:
    """The org's connected app, JWT bearer flow for ``username`` (default: the integration user); the
    org's key pair is made on first use (:meth:`RunningOrg.private_key_pem`)."""
    return SalesforceSettings.model_validate(
        {
            "login_url": org.login_url,
            "auth_flow": "jwt_bearer",
            "client_id": org.client_id,
            "username": username or org.username,
            "private_key": SecretStr(org.private_key_pem()),
        }
    )


def refresh_token_settings(org: RunningOrg, refresh_token: str) -> SalesforceSettings:
    """The org's connected app, refresh-token flow from ``refresh_token``."""
    return SalesforceSettings.model_validate(
        {
            "login_url": org.login_url,
            "auth_flow": "refresh_token",
            "client_id": org.client_id,
            "client_secret": SecretStr(org.client_secret),
            "refresh_token": SecretStr(refresh_token),
        }
    )


def transport(org: RunningOrg) -> httpx.AsyncHTTPTransport | None:
    """A transport trusting the org's self-signed certificate (None: the org serves plain http)."""
    if org.ca_file is None:
        return None
    return httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=str(org.ca_file)))
