"""Settings of the Salesforce client (environment prefix ``SALESFORCE_``).

Load with :func:`load_settings`, which reports every invalid value at once as one
:class:`~sfsync.errors.ConfigError`. Credentials are ``SecretStr`` and never printed.

The client makes one attempt per call, so it has no retry settings: the former
``SALESFORCE_MAX_RETRIES``, ``SALESFORCE_BACKOFF_BASE_S``, ``SALESFORCE_BACKOFF_MAX_S`` and
``SALESFORCE_MAX_RETRY_WAIT_S`` are refused with a :class:`~sfsync.errors.ConfigError` naming what
replaced them (:data:`REMOVED`), rather than silently ignored.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sfsync.errors import ConfigError
from sfsync.settings import load, shown_url

AuthFlow = Literal[
    "jwt_bearer", "client_credentials", "refresh_token", "authorization_code", "password", "access_token"
]

_OWNERS = "the sink's SFSYNC_SINK_RETRY_TIMEOUT_S and the poller's SFSYNC_SOURCE_RETRY_TIMEOUT_S"
REMOVED: dict[str, str] = {
    "max_retries": f"the client makes one attempt per call, and retries are bounded by time: {_OWNERS}",
    "backoff_base_s": "the client no longer waits between attempts (the sink's: SFSYNC_SINK_RETRY_WAIT_INITIAL_S)",
    "backoff_max_s": "the client no longer waits between attempts (the sink's: SFSYNC_SINK_RETRY_WAIT_MAX_S)",
    "max_retry_wait_s": (
        "the client no longer waits: the retrying component honours a retry_after, "
        "and a spent daily limit is the governor's pause (SFSYNC_GOVERNOR_PAUSE_S)"
    ),
}
"""Settings the client no longer reads, and what replaced each (docs/decisions/0006-one-retry-owner.md)."""

_REQUIRED: dict[str, tuple[str, ...]] = {
    "jwt_bearer": ("client_id", "username"),
    "client_credentials": ("client_id", "client_secret"),
    "refresh_token": ("client_id", "refresh_token"),
    "authorization_code": ("client_id", "redirect_uri"),
    "password": ("client_id", "client_secret", "username", "password"),
    "access_token": ("access_token", "instance_url"),
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SalesforceSettings(BaseSettings):
    """How to reach and authenticate to one Salesforce org, and how long one call may take."""

    model_config = SettingsConfigDict(env_prefix="SALESFORCE_", extra="ignore", populate_by_name=True)

    login_url: str = "https://login.salesforce.com"
    instance_url: str | None = None
    api_version: str = "62.0"

    auth_flow: AuthFlow = "jwt_bearer"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    private_key: SecretStr | None = None
    private_key_file: Path | None = None
    jwt_audience: str | None = None
    refresh_token: SecretStr | None = None
    access_token: SecretStr | None = None
    redirect_uri: str | None = None
    scope: str | None = None

    connect_timeout_s: float = Field(10.0, gt=0, le=300)
    read_timeout_s: float = Field(120.0, gt=0, le=900)
    write_timeout_s: float = Field(60.0, gt=0, le=900)
    pool_timeout_s: float = Field(10.0, gt=0, le=300)

    # Removed (see REMOVED): declared only so that a deployment still setting one is told what replaced it.
    removed_max_retries: Any = Field(
        None, validation_alias=AliasChoices("max_retries", "SALESFORCE_MAX_RETRIES"), exclude=True, repr=False
    )
    removed_backoff_base_s: Any = Field(
        None, validation_alias=AliasChoices("backoff_base_s", "SALESFORCE_BACKOFF_BASE_S"), exclude=True, repr=False
    )
    removed_backoff_max_s: Any = Field(
        None, validation_alias=AliasChoices("backoff_max_s", "SALESFORCE_BACKOFF_MAX_S"), exclude=True, repr=False
    )
    removed_max_retry_wait_s: Any = Field(
        None, validation_alias=AliasChoices("max_retry_wait_s", "SALESFORCE_MAX_RETRY_WAIT_S"), exclude=True, repr=False
    )

    call_options_client: str = "sfsync"
    describe_ttl_s: float = Field(3600.0, ge=0)
    bulk_poll_initial_s: float = Field(1.0, gt=0, le=60)
    bulk_poll_max_s: float = Field(30.0, gt=0, le=600)
    bulk_timeout_s: float = Field(3600.0, gt=0)

    @field_validator("login_url", "instance_url", "redirect_uri")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        """https://, or http:// to this machine only (a local emulator): tokens never cross a network in clear."""
        if value is None:
            return None
        if value.startswith("https://"):
            return value.rstrip("/")
        if value.startswith("http://"):
            host = urlsplit(value).hostname or ""
            if _is_loopback(host):
                return value.rstrip("/")
            raise ValueError(
                f"must use https:// (http:// only for a local emulator on this machine), got {shown_url(value)}"
            )
        raise ValueError(f"must start with https:// (or http:// for a local emulator), got {shown_url(value)}")

    @field_validator("jwt_audience")
    @classmethod
    def _audience(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be a URL (the login server's), got {shown_url(value)}")
        return value.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        version = value.removeprefix("v")
        if not re.fullmatch(r"[1-9]\d{1,2}\.0", version):
            raise ValueError(f"expected a version like '62.0', got {value!r}")
        return version

    @field_validator("call_options_client")
    @classmethod
    def _client_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_\-.]{1,40}", value):
            raise ValueError("must be 1-40 letters, digits, '_', '-' or '.'")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        problems = [
            f"auth_flow={self.auth_flow} needs SALESFORCE_{name.upper()}"
            for name in _REQUIRED[self.auth_flow]
            if getattr(self, name) in (None, "")
        ]
        if self.auth_flow == "jwt_bearer" and self.private_key is None and self.private_key_file is None:
            problems.append("auth_flow=jwt_bearer needs SALESFORCE_PRIVATE_KEY or SALESFORCE_PRIVATE_KEY_FILE")
        if self.private_key_file is not None and not self.private_key_file.is_file():
            problems.append(f"private_key_file {self.private_key_file} does not exist")
        problems += [
            f"SALESFORCE_{name.upper()} is no longer read, unset it: {why}"
            for name, why in REMOVED.items()
            if getattr(self, f"removed_{name}") is not None
        ]
        if self.bulk_poll_max_s < self.bulk_poll_initial_s:
            problems.append("bulk_poll_max_s must be >= bulk_poll_initial_s")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint on the login host."""
        return f"{self.login_url}/services/oauth2/token"

    @property
    def call_options(self) -> str:
        """The ``Sforce-Call-Options`` header value that tags every request as ours."""
        return f"client={self.call_options_client}"

    def timeout(self) -> httpx.Timeout:
        """The explicit httpx timeouts for every request."""
        return httpx.Timeout(
            connect=self.connect_timeout_s,
            read=self.read_timeout_s,
            write=self.write_timeout_s,
            pool=self.pool_timeout_s,
        )

    def private_key_pem(self) -> SecretStr | None:
        """The JWT signing key, from ``private_key`` or ``private_key_file``."""
        if self.private_key is not None:
            return self.private_key
        if self.private_key_file is not None:
            return SecretStr(self.private_key_file.read_text())
        return None


def load_settings(**overrides: Any) -> SalesforceSettings:
    """Build :class:`SalesforceSettings` from the environment and ``overrides``, all problems at once.

    Field errors (bad URL, version, timeouts) are all reported together; the cross-field checks
    (credentials the chosen flow needs) run once the fields are valid and are also all reported.
    """
    try:
        return load(SalesforceSettings, "salesforce", **overrides)
    except ConfigError as exc:
        problems: list[str] = []
        for problem in exc.problems:
            head, _, tail = problem.partition(": Value error, ")
            problems.extend(f"{head}: {p}" for p in tail.split("; ")) if tail else problems.append(problem)
        raise ConfigError("salesforce", problems) from None
