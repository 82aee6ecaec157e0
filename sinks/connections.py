"""One org's share of the sink process, and where each comes from (docs/decisions/0009-workspaces-and-connections.md).

- :class:`ConnectionSink`: one connection's Salesforce client (its session, its token), its own API
  :class:`~sfsync.salesforce.governor.Governor` over its own budget (an org's daily allocation is its
  own), and its own :class:`~sfsync.sinks.writer.SalesforceSink` (identities, record clocks, describes and
  drift quarantines are the org's); every HTTP answer of its client is observed (API calls counted, the
  usage gauge fed, a daily-limit 403 told to its governor).
- :class:`ConnectionCatalog`: the connection ``env`` from the environment's ``SALESFORCE_*`` settings, every
  other from the workspace registry's directory, its secrets opened there; a refresh token Salesforce
  rotates is written back to ``sfsync.connections`` (:class:`~sfsync.workspaces.RefreshTokenWriteBack`), so
  a restart uses it. :meth:`ConnectionCatalog.freshness` tells when the registry's record of a connection
  changed (an operator reconnected it: its sink is opened again) or was removed (its sink is closed); the
  record this process itself wrote back is no change.

What every connection shares (the DLQ, the error log, the process's sleep, the metrics) comes in
:class:`ProcessHooks`.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx
import orjson

from sfsync.errors import ConfigError
from sfsync.mapping import MappingFile
from sfsync.ops.errorlog import ErrorLogEntry
from sfsync.salesforce import BudgetTracker, DailyLimitExceeded, SalesforceClient, SalesforceSettings
from sfsync.salesforce.auth import AuthProvider
from sfsync.salesforce.client import new_transport
from sfsync.salesforce.errors import parse_error_body
from sfsync.salesforce.governor import Governor, GovernorSettings
from sfsync.salesforce.limits import ApiBudget
from sfsync.sinks.contract import BatchOutcome, IncomingWrite, OnErrorEntry, OnParked
from sfsync.sinks.routing import Route, route_of
from sfsync.sinks.settings import SinkSettings
from sfsync.sinks.writer import SalesforceSink
from sfsync.workspaces.logins import ConnectionStore, RefreshTokenWriteBack
from sfsync.workspaces.records import ENV_CONNECTION_ID, Connection, ConnectionNotFoundError, Workspace
from sfsync.workspaces.sealing import ConnectionKeys

__all__ = [
    "API_PREFIXES",
    "ConnectionCatalog",
    "ConnectionSink",
    "Freshness",
    "ObservingTransport",
    "ProcessHooks",
    "WorkspaceDirectory",
]

API_PREFIXES = ("/services/data/", "/services/async/", "/services/apexrest/")
"""The paths of calls that count against the org's API allocation (OAuth token calls do not)."""

Freshness = Literal["same", "changed", "removed"]


class ObservingTransport(httpx.AsyncBaseTransport):
    """Hands every response to ``on_response`` (calls counted, the budget observed, a daily-limit 403 spotted)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, on_response: Callable[[httpx.Response], Awaitable[None]]
    ) -> None:
        self._inner = inner
        self._on_response = on_response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        response.request = request
        await self._on_response(response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class ProcessHooks:
    """What every connection's sink shares with the process around it.

    ``on_response``: every answer of every connection's client (the process counts API calls and feeds
    its usage gauge); ``record``: an error-log entry (the governors' RATE_LIMIT entries, the router's
    CONNECTION entries); ``sleep``: the process's sleep, cut short when it stops.
    """

    settings: SinkSettings
    governor_settings: GovernorSettings
    on_parked: OnParked
    on_error_entry: OnErrorEntry
    record: Callable[[ErrorLogEntry], None]
    sleep: Callable[[float], Awaitable[None]]
    on_response: Callable[[httpx.Response], Awaitable[None]]
    observe_budget: Callable[[ApiBudget | None], None]
    mappings: MappingFile | None = None
    on_quarantine: Callable[[str, bool], None] | None = None


class ConnectionSink:
    """One connection's client, governor and :class:`~sfsync.sinks.writer.SalesforceSink` (see the module doc).

    ``built_from``: the registry's record it was opened from (None for ``env``); ``write_back``: the hook
    that writes a rotated refresh token back (None for ``env``).
    """

    def __init__(
        self,
        connection_id: str,
        settings: SalesforceSettings,
        hooks: ProcessHooks,
        *,
        built_from: Connection | None = None,
        write_back: RefreshTokenWriteBack | None = None,
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.built_from = built_from
        self.write_back = write_back
        self._hooks = hooks
        self.workspaces: frozenset[str] = frozenset()
        """The workspaces of the batch in hand (its governor's RATE_LIMIT entry names each)."""
        self.governed_s = 0.0
        """How long the governor held calls in the batch in hand (bounded by ``budget_wait_max_s``)."""
        self.client = SalesforceClient(
            settings,
            auth=auth,
            transport=ObservingTransport(transport or new_transport(), self.on_response),
            budget=BudgetTracker(),
            sleep=hooks.sleep,
            on_refresh_token=write_back,
        )
        self.governor = Governor.from_settings(
            self.client.budget, hooks.governor_settings, sleep=hooks.sleep, on_pause=self.on_pause
        )
        self.sink = SalesforceSink(
            self.client,
            settings=hooks.settings,
            on_parked=hooks.on_parked,
            on_error_entry=hooks.on_error_entry,
            before_call=self.before_call,
            sleep=hooks.sleep,
            pause_left=self.governor.pause_left_s,
            mappings=hooks.mappings,
            on_quarantine=hooks.on_quarantine,
        )

    def __repr__(self) -> str:
        return f"ConnectionSink({self.connection_id!r})"

    async def put(self, writes: list[IncomingWrite]) -> BatchOutcome:
        """One batch of this connection's writes (:meth:`SalesforceSink.put`)."""
        self.governed_s = 0.0
        self.workspaces = frozenset(str(w.write.get("workspace_id") or "") for w in writes) - {""}
        return await self.sink.put(writes)

    async def before_call(self, kind: str) -> None:
        """The governor's go for one call; it holds the batch at most ``budget_wait_max_s`` in all, else
        raises :class:`~sfsync.salesforce.governor.BudgetPausedError` (the batch ends with its writes pending)."""
        started = time.monotonic()
        try:
            wait_max_s = max(0.0, self._hooks.settings.budget_wait_max_s - self.governed_s)
            await self.governor.before_call(wait_max_s=wait_max_s)
        finally:
            self.governed_s += time.monotonic() - started
        self._hooks.observe_budget(self.client.budget.latest)

    async def on_response(self, response: httpx.Response) -> None:
        """Every answer of this connection's client: the process's observation, then a daily-limit 403
        (``REQUEST_LIMIT_EXCEEDED`` for ``TotalRequests``) pauses this connection's governor."""
        await self._hooks.on_response(response)
        if response.status_code != 403 or not response.request.url.path.startswith(API_PREFIXES):
            return
        try:
            body: object = orjson.loads(await response.aread())
        except (orjson.JSONDecodeError, httpx.HTTPError):
            return  # the client classifies (and raises) what it cannot read
        error = parse_error_body(403, body)
        if isinstance(error, DailyLimitExceeded):
            # Salesforce sends no Retry-After here (the client's default is an hour): pause at most
            # pause_s, then one probe call looks again (the worker keeps polling Kafka meanwhile).
            pause_s = self._hooks.governor_settings.pause_s
            if error.retry_after is None or error.retry_after > pause_s:
                error.retry_after = pause_s
            self.governor.on_daily_limit(error)

    def on_pause(self, entry: ErrorLogEntry) -> None:
        """The governor's RATE_LIMIT entry, naming this connection, once per workspace of the batch in hand."""
        details = {**entry.details, "connection_id": self.connection_id}
        workspaces: list[str | None] = [*sorted(self.workspaces)] or [None]
        for workspace in workspaces:
            entry_id = entry.entry_id if workspace is None else str(uuid.uuid4())
            self._hooks.record(dataclasses.replace(entry, details=details, workspace_id=workspace, entry_id=entry_id))

    async def aclose(self) -> None:
        await self.client.aclose()


class WorkspaceDirectory(Protocol):
    """What the catalog reads of the workspace registry (a :class:`~sfsync.workspaces.Directory`)."""

    keys: ConnectionKeys | None

    def workspace(self, workspace_id: str) -> Workspace | None: ...

    def connection(self, connection_id: str) -> Connection | None: ...

    def salesforce_settings(self, connection_id: str) -> SalesforceSettings: ...


class ConnectionCatalog:
    """Where each connection's sink comes from (see the module doc).

    ``env``: the environment's connection (None: there is none; opening ``env`` then fails as refused
    credentials would); ``env_auth``, ``transport``: the ``env`` client's auth provider and the HTTP
    transport of a connection by id (tests; None: the default). ``directory`` and ``store``: the registry
    read and written (without ``store``, a rotated refresh token is not written back). ``enabled`` /
    ``required``: ``SFSYNC_WORKSPACES_ENABLED`` / ``SFSYNC_WORKSPACES_REQUIRED``.
    """

    def __init__(
        self,
        hooks: ProcessHooks,
        *,
        env: SalesforceSettings | None,
        env_auth: AuthProvider | None = None,
        directory: WorkspaceDirectory | None = None,
        store: ConnectionStore | None = None,
        enabled: bool = False,
        required: bool = False,
        transport: Callable[[str], httpx.AsyncBaseTransport | None] | None = None,
    ) -> None:
        if enabled and directory is None:
            raise ConfigError("sink", ["SFSYNC_WORKSPACES_ENABLED is on, but no workspace directory was given"])
        self.hooks = hooks
        self._env = env
        self._env_auth = env_auth
        self._directory = directory
        self._store = store
        self.enabled = enabled
        self.required = required
        self._transport = transport

    def route_of(self, workspace_id: str) -> Route:
        """Where the writes of ``workspace_id`` go now (:func:`~sfsync.sinks.routing.route_of`)."""
        directory = self._directory
        found = directory.workspace(workspace_id) if self.enabled and directory is not None and workspace_id else None
        return route_of(found, enabled=self.enabled, required=self.required)

    def open(self, connection_id: str) -> ConnectionSink:
        """A new sink of ``connection_id``.

        Raises:
            ConnectionNotFoundError: the registry holds no such connection.
            ConfigError: it cannot make valid settings (no keys, a missing secret...); ``env`` is not configured.
            SealError: its secrets do not open with this process's keys.
        """
        transport = self._transport(connection_id) if self._transport is not None else None
        if connection_id == ENV_CONNECTION_ID:
            if self._env is None:
                raise ConfigError("sink", ["the environment's Salesforce connection (SALESFORCE_*) is not configured"])
            return ConnectionSink(connection_id, self._env, self.hooks, auth=self._env_auth, transport=transport)
        directory = self._directory
        record = directory.connection(connection_id) if directory is not None else None
        if directory is None or record is None:
            raise ConnectionNotFoundError(connection_id)
        settings = directory.salesforce_settings(connection_id)
        write_back = None
        if self._store is not None and directory.keys is not None:
            write_back = RefreshTokenWriteBack(
                connection_id, connections=directory, keys=directory.keys, store=self._store
            )
        return ConnectionSink(
            connection_id, settings, self.hooks, built_from=record, write_back=write_back, transport=transport
        )

    def freshness(self, sink: ConnectionSink) -> Freshness:
        """Whether the registry still holds ``sink``'s connection as it was opened: ``changed`` when an
        operator wrote it since (not this process's own write-back of a rotated token), ``removed`` when it
        is gone. ``env`` is always the same."""
        if sink.connection_id == ENV_CONNECTION_ID or self._directory is None:
            return "same"
        current = self._directory.connection(sink.connection_id)
        if current is None:
            return "removed"
        if current == sink.built_from:
            return "same"
        written = sink.write_back.written if sink.write_back is not None else None
        if written is not None and current.updated_at <= written.updated_at:
            sink.built_from = current  # its own write-back (or an older record), read back
            return "same"
        return "changed"
