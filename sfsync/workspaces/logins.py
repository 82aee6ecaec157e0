"""How a stored connection logs in: its :class:`~sfsync.salesforce.settings.SalesforceSettings`, and the
write-back of a refresh token that Salesforce rotates.

- :func:`salesforce_settings` (pure) makes the settings of a connection and its opened secrets. Every
  field that says where and how to log in comes from the connection, never from the environment's
  ``SALESFORCE_*`` (which is the ``env`` connection's); the tuning (timeouts, call options, Bulk API
  polling) comes from the environment, as for every org, unless ``options`` give it.
- :class:`RefreshTokenWriteBack` is a client's ``on_refresh_token`` hook: the rotated token is sealed
  with the sealing key and the connection written back to ``sfsync.connections``, so a restart uses it.
- :func:`open_client` builds a connection's client with that hook.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx
from pydantic import SecretStr, ValidationError

from sfsync.errors import ConfigError
from sfsync.salesforce.client import SalesforceClient
from sfsync.salesforce.settings import SalesforceSettings
from sfsync.time import utcnow
from sfsync.workspaces.records import SECRET_FIELDS, Connection, ConnectionFlow, ConnectionNotFoundError
from sfsync.workspaces.sealing import ConnectionKeys

__all__ = [
    "ConnectionLookup",
    "ConnectionStore",
    "RefreshTokenWriteBack",
    "open_client",
    "salesforce_settings",
]

_LOGIN_FIELDS = (
    "login_url", "instance_url", "api_version", "auth_flow", "client_id", "client_secret", "username", "password",
    "security_token", "private_key", "private_key_file", "jwt_audience", "refresh_token", "access_token",
    "redirect_uri", "scope",
)  # fmt: skip
"""The SalesforceSettings fields that say where and how to log in: a connection sets each (None when it has none)."""


class ConnectionLookup(Protocol):
    """Where connections are found (a :class:`~sfsync.workspaces.directory.Directory`)."""

    def connection(self, connection_id: str) -> Connection | None: ...


class ConnectionStore(Protocol):
    """Where a connection is written (a :class:`~sfsync.workspaces.writer.RegistryWriter`)."""

    def put_connection(self, connection: Connection) -> None: ...


def salesforce_settings(connection: Connection, secrets: Mapping[str, SecretStr], **options: Any) -> SalesforceSettings:
    """The settings that log in to ``connection``'s org with its opened ``secrets``; ``options`` set
    other SalesforceSettings fields (timeouts...).

    The browser flow's connection (``authorization_code``) logs in with its refresh token, as the
    ``refresh_token`` flow does.

    Raises:
        ConfigError: the connection cannot make valid settings (a secret its flow needs is missing, a
            URL is not https...), every problem listed, no secret shown.
    """
    flow = connection.flow
    auth_flow = ConnectionFlow.REFRESH_TOKEN if flow is ConnectionFlow.AUTHORIZATION_CODE else flow
    values: dict[str, Any] = dict.fromkeys(_LOGIN_FIELDS)
    values.update(
        login_url=connection.login_url,
        instance_url=connection.instance_url,
        api_version=connection.api_version,
        auth_flow=str(auth_flow),
        client_id=connection.client_id,
        username=connection.username,
    )
    values.update({name: secrets[name] for name in SECRET_FIELDS[flow].all if name in secrets})
    try:
        return SalesforceSettings(**{**values, **options})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"connection {connection.connection_id!r}", problems) from None


class RefreshTokenWriteBack:
    """A Salesforce client's ``on_refresh_token`` hook for ``connection_id``: the rotated refresh token is
    sealed with the sealing key, with the connection's other secrets, and the connection (as ``connections``
    holds it now, its other fields unchanged) written back.

    The write returns once Kafka stored the record (it runs in a worker thread); its failure is raised
    to the login that received the token (the client keeps the token for its next login, which writes it
    back again).
    """

    def __init__(
        self,
        connection_id: str,
        *,
        connections: ConnectionLookup,
        keys: ConnectionKeys,
        store: ConnectionStore,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.connection_id = connection_id
        self._connections = connections
        self._keys = keys
        self._store = store
        self._clock = clock
        self.written: Connection | None = None
        """The connection as this hook last wrote it (None: no token rotated yet)."""

    def __repr__(self) -> str:
        return f"RefreshTokenWriteBack(connection_id={self.connection_id!r})"

    async def __call__(self, refresh_token: SecretStr) -> None:
        """Seal ``refresh_token`` into the connection and write it back.

        Raises:
            ConnectionNotFoundError: the connection was removed meanwhile.
            SealError: its secrets do not open with these keys.
            DeliveryError / ServiceUnavailableError: Kafka did not store it.
        """
        stored = self._connections.connection(self.connection_id)
        if stored is None:
            raise ConnectionNotFoundError(self.connection_id)
        written = self.written  # what this hook wrote last, which the lookup may not have read back yet
        current = written if written is not None and written.updated_at >= stored.updated_at else stored
        secrets = self._keys.open(self.connection_id, current.secrets)
        secrets["refresh_token"] = refresh_token
        updated = dataclasses.replace(
            current, secrets=self._keys.seal(self.connection_id, secrets), updated_at=self._clock()
        )
        await asyncio.to_thread(self._store.put_connection, updated)
        self.written = updated


def open_client(
    connection_id: str,
    *,
    connections: ConnectionLookup,
    keys: ConnectionKeys,
    store: ConnectionStore,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> SalesforceClient:
    """A client of ``connection_id``'s org whose rotated refresh tokens are written back
    (:class:`RefreshTokenWriteBack`); ``options`` set SalesforceSettings fields (timeouts...), ``transport``
    is the HTTP transport (tests).

    Raises:
        ConnectionNotFoundError: no such connection.
        SealError: its secrets do not open with ``keys``.
        ConfigError: it cannot make valid settings.
    """
    connection = connections.connection(connection_id)
    if connection is None:
        raise ConnectionNotFoundError(connection_id)
    settings = salesforce_settings(connection, keys.open(connection_id, connection.secrets), **options)
    write_back = RefreshTokenWriteBack(connection_id, connections=connections, keys=keys, store=store)
    return SalesforceClient(settings, transport=transport, on_refresh_token=write_back)
