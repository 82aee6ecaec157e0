"""The emulated org as an ASGI app: Salesforce's REST API on ``/services/data``, the emulator's admin API
on ``/__admin``, and the OAuth endpoints (``/services/oauth2/...``, ``/id/...``).

One :class:`Emulator` holds the org -- its data store, OAuth server, Bulk jobs, faults, API usage and
whether it is up (:mod:`sfsync.emulator.availability`) --
and assembles the Starlette app from :class:`sfsync.emulator.rest.RestApi`,
:class:`sfsync.emulator.admin.AdminApi` and :class:`sfsync.emulator.oauth.AuthServer`'s routes.

Transactions: every REST call is one store transaction (:meth:`sfsync.emulator.store.OrgStore.transaction`),
so the records one sObject Collections call writes share one SystemModstamp; ``/composite`` is one
transaction with ``allOrNone`` and one per subrequest without; a Bulk job saves in chunks of 200.
A write transaction commits late when the faults' visibility rule says so (see
:mod:`sfsync.emulator.faults`); a spec's ``daily_spent_after`` is applied to the usage when the faults are
installed (here, or by the admin API).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from email.utils import format_datetime
from typing import Any

from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sfsync.emulator.admin import AdminApi
from sfsync.emulator.availability import Availability, AvailabilityGate
from sfsync.emulator.bulk import BulkService
from sfsync.emulator.connection_drop import DroppingStarlette
from sfsync.emulator.faults import Faults
from sfsync.emulator.oauth import AuthServer
from sfsync.emulator.rest import RestApi
from sfsync.emulator.rest_query import run_soql
from sfsync.emulator.store import OrgStore
from sfsync.emulator.usage import ApiUsage

BULK_API_VERSION = "62.0"  # of a Bulk job that names none, and of the SOQL Bulk query jobs run


class ServerDate:
    """ASGI middleware: every response carries an HTTP ``Date`` header read from the org's clock when the
    response starts, as Salesforce's do (1 s resolution, RFC 9110 IMF-fixdate). The org's clock, not the
    host's: a client comparing it with SystemModstamps must see one clock. (The uvicorn server of
    :mod:`sfsync.emulator.server` sends no Date of its own.)"""

    def __init__(self, app: ASGIApp, clock: Callable[[], dt.datetime]) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", format_datetime(self.clock().astimezone(dt.UTC), usegmt=True).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)


class Emulator:
    """A Salesforce org on loopback (:meth:`asgi`). ``daily_limit`` overrides the org file's daily API
    allocation (default 1,000,000 when neither gives one); ``clock`` is wall-clock seconds."""

    def __init__(
        self,
        store: OrgStore,
        auth: AuthServer,
        *,
        faults: Faults | None = None,
        daily_limit: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.auth = auth
        self.faults = faults or Faults()
        self.clock = clock
        self.availability = Availability()
        org = getattr(store, "org", None)
        configured = getattr(org, "daily_api_limit", None) if org is not None else None
        self.usage = ApiUsage(daily_limit or configured or 1_000_000)
        self.bulk = BulkService(
            store, self._bulk_query, api_version_default=BULK_API_VERSION, user_id=store.integration_user_id
        )
        self.metadata_modified = int(clock())  # describes change only when the org file does
        self.rest = RestApi(self)
        self.admin = AdminApi(self, self.rest)
        store.visibility_policy = self._late_commit
        if self.faults.daily_spent_after is not None:
            self.usage.spend_after(self.faults.daily_spent_after)

    def asgi(self) -> DroppingStarlette:
        """The Starlette app serving this org (it can drop a connection: the ``commitdrop`` fault, an org down
        in ``refuse`` mode)."""
        return DroppingStarlette(
            routes=[*self.rest.routes(), Mount("/__admin", routes=self.admin.routes()), *self.auth.routes()],
            middleware=[
                Middleware(ServerDate, clock=self.store.now),
                Middleware(AvailabilityGate, availability=self.availability),
            ],
        )

    # ------------------------------------------------------------------ in-process views of the admin API
    @property
    def api_calls(self) -> int:
        """REST calls charged against the daily allocation so far."""
        return self.usage.api_calls

    @property
    def daily_limit(self) -> int:
        """The daily API allocation; setting it takes effect with the next call."""
        return self.usage.daily_limit

    @daily_limit.setter
    def daily_limit(self, value: int) -> None:
        self.usage.set(daily_limit=value)

    @property
    def calls_by_endpoint(self) -> Counter[str]:
        """REST calls per ``"<METHOD> <route name>"``."""
        return self.usage.calls_by_endpoint

    @property
    def call_options(self) -> list[dict[str, Any]]:
        """The ``Sforce-Call-Options`` client of each write (``GET /__admin/call-options``)."""
        return self.usage.call_options

    def admin_stats(self) -> dict[str, Any]:
        """What ``GET /__admin/stats`` answers."""
        return self.admin.stats()

    def admin_reset(self, _payload: Any = None) -> dict[str, Any]:
        """What ``POST /__admin/reset`` does: every record but the users removed, the counters zeroed."""
        return self.admin.reset()

    # ------------------------------------------------------------------ wiring
    def _bulk_query(self, soql: str, include_deleted: bool) -> list[dict[str, Any]]:
        """The query runner of Bulk query jobs."""
        return list(run_soql(self, soql, include_deleted=include_deleted, version=BULK_API_VERSION).records)

    def _late_commit(self, user_id: str, sobjects: frozenset[str]) -> dt.timedelta | None:
        """The visibility policy the store asks when a write transaction commits (the faults' rule)."""
        user = self.store.users.get(user_id) or {}
        names = frozenset(str(n) for n in (user_id, user_id[:15], user.get("Username")) if n)
        delay_ms = self.faults.late_commit_ms(names, sobjects)
        return dt.timedelta(milliseconds=delay_ms) if delay_ms else None
