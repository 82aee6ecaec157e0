"""The records of the workspace registry (``schemas/sfsync.workspaces.*.avsc``): a :class:`Connection` per org,
a :class:`Workspace` per customer workspace. Pure.

A connection's secrets are an :class:`EncryptedSecrets` (:mod:`sfsync.workspaces.sealing` seals and opens
them); which secret fields a flow takes is :data:`SECRET_FIELDS`. Ids are checked where they are made
(:func:`id_problems`): a workspace id ends up in write keys (``<workspace_id>|<sobject>:<identity>``), a
connection id in checkpoint names (``<connection_id>:<sobject>``), so neither may hold the separator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sfsync.errors import FatalError
from sfsync.time import as_utc, from_millis

__all__ = [
    "ENV_CONNECTION_ID",
    "SECRET_FIELDS",
    "Connection",
    "ConnectionFlow",
    "ConnectionNotFoundError",
    "EncryptedSecrets",
    "SecretFields",
    "Workspace",
    "WorkspaceNotFoundError",
    "WorkspaceState",
    "id_problems",
]

ENV_CONNECTION_ID = "env"
"""The connection the environment's ``SALESFORCE_*`` settings make (single-org use): no stored connection takes it."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,199}")


class ConnectionFlow(StrEnum):
    """How sfsync logs in to an org (``SALESFORCE_AUTH_FLOW``'s values)."""

    JWT_BEARER = "jwt_bearer"
    CLIENT_CREDENTIALS = "client_credentials"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a flow's name, not a secret)
    AUTHORIZATION_CODE = "authorization_code"
    """The browser flow: a refresh token obtained through the org's consent page, then refreshed."""


class WorkspaceState(StrEnum):
    """Whether a workspace's events are synced."""

    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    """Held by an operator: its events wait, nothing is lost."""
    DISCONNECTED = "DISCONNECTED"
    """Its org cannot be reached with its connection until it is reconnected."""


@dataclass(frozen=True)
class SecretFields:
    """The secret fields of one flow: those it needs, and those it takes when given."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


SECRET_FIELDS: Mapping[ConnectionFlow, SecretFields] = {
    ConnectionFlow.JWT_BEARER: SecretFields(("private_key",)),
    ConnectionFlow.CLIENT_CREDENTIALS: SecretFields(("client_secret",)),
    ConnectionFlow.REFRESH_TOKEN: SecretFields(("refresh_token",), ("client_secret",)),
    ConnectionFlow.AUTHORIZATION_CODE: SecretFields(("refresh_token",), ("client_secret",)),
}
"""Each flow's secret fields (names of :class:`~sfsync.salesforce.settings.SalesforceSettings` fields)."""


def id_problems(value: str, what: str) -> list[str]:
    """Why ``value`` cannot be a ``what`` (``"workspace id"`` / ``"connection id"``) id; empty when it can.

    An id is 1-200 letters, digits and ``_ . @ + -``, starting with a letter or digit (so never a
    write key's ``|`` nor a checkpoint's ``:``); ``env`` is no stored connection's id.
    """
    if not _ID.fullmatch(value):
        return [
            f"{what} {value[:40]!r}: expected 1-200 letters, digits, '_', '.', '@', '+' or '-', "
            "starting with a letter or digit"
        ]
    if what == "connection id" and value == ENV_CONNECTION_ID:
        return [f"connection id {ENV_CONNECTION_ID!r} is the environment's SALESFORCE_* connection: choose another"]
    return []


@dataclass(frozen=True)
class EncryptedSecrets:
    """A connection's secret fields, sealed (AES-256-GCM) with the key ``key_id``, for that connection only."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"EncryptedSecrets(key_id={self.key_id!r}, sealed={len(self.ciphertext)} bytes)"

    def to_avro(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "nonce": self.nonce, "ciphertext": self.ciphertext}

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> EncryptedSecrets:
        return cls(str(value["key_id"]), bytes(value["nonce"]), bytes(value["ciphertext"]))


def _time(value: dt.datetime | int) -> dt.datetime:
    return from_millis(value) if isinstance(value, int) else as_utc(value)


@dataclass(frozen=True)
class Connection:
    """How to reach and log in to one org (a record of ``sfsync.connections``); its secrets stay sealed here."""

    connection_id: str
    login_url: str
    api_version: str
    flow: ConnectionFlow
    client_id: str
    secrets: EncryptedSecrets
    updated_at: dt.datetime
    instance_url: str | None = None
    username: str | None = None
    org_id: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "login_url": self.login_url,
            "instance_url": self.instance_url,
            "api_version": self.api_version,
            "flow": str(self.flow),
            "client_id": self.client_id,
            "username": self.username,
            "org_id": self.org_id,
            "updated_at": self.updated_at,
            "secrets": self.secrets.to_avro(),
        }

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> Connection:
        return cls(
            connection_id=str(value["connection_id"]),
            login_url=str(value["login_url"]),
            api_version=str(value["api_version"]),
            flow=ConnectionFlow(value["flow"]),
            client_id=str(value["client_id"]),
            secrets=EncryptedSecrets.from_avro(value["secrets"]),
            updated_at=_time(value["updated_at"]),
            instance_url=value.get("instance_url"),
            username=value.get("username"),
            org_id=value.get("org_id"),
        )


@dataclass(frozen=True)
class Workspace:
    """One customer workspace (a record of ``sfsync.workspaces``): its org's connection, its mapping, its state."""

    workspace_id: str
    connection_id: str
    state: WorkspaceState
    updated_at: dt.datetime
    mapping: str | None = None
    """The name of a file in the mapping library; None: the shipped default mapping."""
    variables: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "workspace_id": self.workspace_id,
            "connection_id": self.connection_id,
            "mapping": self.mapping,
            "variables": dict(self.variables),
            "state": str(self.state),
            "reason": self.reason,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> Workspace:
        return cls(
            workspace_id=str(value["workspace_id"]),
            connection_id=str(value["connection_id"]),
            state=WorkspaceState(value["state"]),
            updated_at=_time(value["updated_at"]),
            mapping=value.get("mapping"),
            variables=dict(value.get("variables") or {}),
            reason=value.get("reason"),
        )


class ConnectionNotFoundError(FatalError):
    """No connection has this id (``sfsync connections list`` lists them)."""

    default_code = "CONNECTION_NOT_FOUND"

    def __init__(self, connection_id: str) -> None:
        self.connection_id = connection_id
        super().__init__(f"no connection {connection_id!r} (`sfsync connections list` lists them)")


class WorkspaceNotFoundError(FatalError):
    """No workspace has this id (``sfsync workspaces list`` lists them)."""

    default_code = "WORKSPACE_NOT_FOUND"

    def __init__(self, workspace_id: str) -> None:
        self.workspace_id = workspace_id
        super().__init__(f"no workspace {workspace_id!r} (`sfsync workspaces list` lists them)")
