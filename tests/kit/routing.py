"""The sink's routing in tests: several emulated orgs in process, the workspace registry in memory, and the
connection router over them (:class:`RoutedRig`); writes moved to another workspace (:func:`in_workspace`).

The orgs are :class:`~sfsync.emulator.app.Emulator` s answering through an ``httpx`` transport in process
(:class:`~tests.kit.sink.InProcessOrg`, each wrapped in a :class:`~tests.kit.org_faults.FaultyOrg`); their
connections are real registry records (refresh-token flow, secrets sealed with the kit's key ``k1``), read
by a real :class:`~sfsync.workspaces.Directory` from the kit's :class:`~tests.kit.workspaces.FakeRegistryTopics`,
which is also where a rotated refresh token is written back. The router's waits are short (tens of
milliseconds) and real.

Imported from its own module (``tests.kit.routing``): it loads the sink and the registry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from sfsync.emulator.app import Emulator
from sfsync.emulator.server import build
from sfsync.errors import SfsyncError
from sfsync.keys import parse_record_key, record_key
from sfsync.ops.errorlog import ErrorLogEntry
from sfsync.salesforce.governor import load_governor_settings
from sfsync.salesforce.limits import ApiBudget
from sfsync.sinks.connections import ConnectionCatalog, ConnectionSink, Freshness, ProcessHooks
from sfsync.sinks.contract import BatchOutcome, ErrorEntry, IncomingWrite
from sfsync.sinks.router import ConnectionRouter
from sfsync.sinks.routing import Route
from sfsync.sinks.settings import SinkSettings
from sfsync.workspaces import ConnectionFlow, Directory, WorkspaceState
from tests.kit.org_faults import FaultyOrg
from tests.kit.registry import FakeRegistry
from tests.kit.sink import TOPIC, InProcessOrg
from tests.kit.workspaces import FakeRegistryTopics, connection, keys, workspace

__all__ = ["Org", "RoutedRig", "SentBatch", "in_workspace", "rekey"]

SETTINGS: dict[str, Any] = {
    "batch_size": 50,
    "batch_max_age_s": 0.2,
    "batch_linger_s": 0.2,
    "poll_timeout_s": 0.02,
    "retry_wait_initial_s": 0.01,
    "retry_wait_max_s": 0.05,
    "hold_recheck_initial_s": 0.05,
    "hold_recheck_max_s": 0.2,
}
"""The sink's settings in the rig unless a test says otherwise: short waits everywhere."""


def rekey(key: str, workspace: str) -> str:
    """``key`` (a record key, with a workspace or without one) as the key of the same record in ``workspace``."""
    parsed = parse_record_key(key)
    if parsed is None:
        return f"{workspace}|{key}"
    return record_key(workspace, parsed.sobject, parsed.field, parsed.value)


def in_workspace(write: dict[str, Any], workspace: str) -> dict[str, Any]:
    """``write`` (a :mod:`tests.kit.sink` builder's) planned for ``workspace``: its ``workspace_id``, its key and
    its parents' keys in that workspace."""
    parents = {
        lookup: {**parent, "key": rekey(str(parent["key"]), workspace)}
        for lookup, parent in (write.get("parents") or {}).items()
    }
    return {
        **write,
        "key": rekey(str(write["key"]), workspace),
        "workspace_id": workspace,
        "parents": parents,
        "write_id": f"{workspace}/{write['write_id']}",
    }


def _now() -> dt.datetime:
    """Now, to the millisecond (as a registry record keeps it)."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class Org:
    """One emulated org and the transport its connection's client talks through (faults injectable)."""

    name: str
    emulator: Emulator
    transport: FaultyOrg

    def down(self) -> None:
        """Every call answered 503, OAuth included (the org in maintenance)."""
        self.emulator.availability.set("503")

    def up(self) -> None:
        self.emulator.availability.set(None)

    def emails(self) -> list[str]:
        """The Contacts' emails in the org's store (no API call)."""
        return sorted(str(r.get("Email")) for r in self.emulator.store.rows("Contact"))


@dataclass(frozen=True)
class SentBatch:
    """One batch the router sent: its connection and the workspaces of its writes."""

    connection_id: str
    workspaces: frozenset[str]
    size: int


@dataclass
class _Recording:
    """A catalog that records every batch sent to the sinks it opens."""

    inner: ConnectionCatalog
    sent: list[SentBatch] = field(default_factory=list)
    opened: list[ConnectionSink] = field(default_factory=list)

    def route_of(self, workspace_id: str) -> Route:
        return self.inner.route_of(workspace_id)

    def open(self, connection_id: str) -> ConnectionSink:
        sink = self.inner.open(connection_id)
        put = sink.put

        async def recorded(writes: list[IncomingWrite]) -> BatchOutcome:
            spaces = frozenset(str(w.write.get("workspace_id")) for w in writes)
            self.sent.append(SentBatch(connection_id, spaces, len(writes)))
            return await put(writes)

        sink.put = recorded  # type: ignore[method-assign]
        self.opened.append(sink)
        return sink

    def freshness(self, sink: ConnectionSink) -> Freshness:
        return self.inner.freshness(sink)


class RoutedRig:
    """A :class:`ConnectionRouter` over orgs and a registry in memory; what it parked and logged is kept.

    :meth:`add_org` makes an org and its connection; :meth:`add_workspace` a workspace on one;
    :meth:`incoming` hands writes their Kafka coordinates. ``entries``: the error-log entries of the holds
    (``record``); ``sync_entries``: the sinks' own entries; ``parked``: what was parked, and why.
    """

    def __init__(self, *, required: bool = False, **settings: Any) -> None:
        self.registry = FakeRegistry()
        self.topics = FakeRegistryTopics(self.registry)
        self.keys = keys("k1")
        self.directory = Directory({}, self.registry, keys=self.keys, read=self.topics, poll_s=0.02, retry_wait_s=0.02)  # type: ignore[arg-type]
        self.directory.start()
        self.directory.wait_loaded(5)
        self.orgs: dict[str, Org] = {}
        self.entries: list[ErrorLogEntry] = []
        self.sync_entries: list[ErrorEntry] = []
        self.parked: list[tuple[IncomingWrite, SfsyncError]] = []
        self.batch_sizes: list[int] = []
        self.settings = SinkSettings(**{**SETTINGS, **settings})
        self.governor_settings = load_governor_settings(auth_pause_s=0.05, auth_pause_max_s=0.2, pause_s=0.3)
        hooks = ProcessHooks(
            settings=self.settings,
            governor_settings=self.governor_settings,
            on_parked=self._park,
            on_error_entry=self._entry,
            record=self.entries.append,
            sleep=asyncio.sleep,
            on_response=self._response,
            observe_budget=self._budget,
        )
        self.catalog = _Recording(
            ConnectionCatalog(
                hooks,
                env=None,
                directory=self.directory,
                store=self.topics,
                enabled=True,
                required=required,
                transport=lambda connection_id: self.orgs[connection_id].transport,
            )
        )
        self.router = ConnectionRouter(
            self.catalog,
            settings=self.settings,
            governor_settings=self.governor_settings,
            on_parked=self._park,
            on_error_entry=self._entry,
            record=self.entries.append,
            observe_batch=self.batch_sizes.append,
        )
        self._offsets: dict[int, int] = {}

    async def _park(self, write: IncomingWrite, error: SfsyncError) -> None:
        self.parked.append((write, error))

    async def _entry(self, entry: ErrorEntry) -> None:
        self.sync_entries.append(entry)

    async def _response(self, response: httpx.Response) -> None:
        return None

    def _budget(self, budget: ApiBudget | None) -> None:
        return None

    @property
    def sent(self) -> list[SentBatch]:
        return self.catalog.sent

    # -- the registry ------------------------------------------------------------------------------
    def add_org(self, connection_id: str, *, refresh_token: str | None = None) -> Org:
        """An emulated org and its connection in the registry (a refresh token it issued, unless given)."""
        emulator = build(base_url=f"https://{connection_id}.my.salesforce.com")
        org = Org(connection_id, emulator, FaultyOrg(InProcessOrg(emulator)))
        self.orgs[connection_id] = org
        self.put_connection(connection_id, refresh_token=refresh_token)
        return org

    def put_connection(
        self, connection_id: str, *, refresh_token: str | None = None, updated_at: dt.datetime | None = None
    ) -> None:
        """Write ``connection_id``'s record (as ``sfsync connections add`` does) and wait until it is read."""
        org = self.orgs[connection_id]
        app = org.emulator.auth.config.connected_apps[0]
        token = refresh_token if refresh_token is not None else org.emulator.auth.issue_refresh_token()
        record = connection(
            connection_id,
            {"refresh_token": token, "client_secret": app.client_secret},
            sealed_with=self.keys,
            flow=ConnectionFlow.REFRESH_TOKEN,
            login_url=f"https://{connection_id}.my.salesforce.com",
            client_id=app.client_id,
            updated_at=updated_at or _now(),
        )
        self.topics.put_connection(record)
        self.wait_for(lambda: self.directory.connection(connection_id) == record)

    def add_workspace(
        self, workspace_id: str, connection_id: str, state: WorkspaceState = WorkspaceState.ACTIVE
    ) -> None:
        """Write the workspace (as ``sfsync workspaces add|pause|resume`` do) and wait until it is read."""
        record = dataclasses.replace(workspace(workspace_id, connection_id, state), updated_at=_now())
        self.topics.put_workspace(record)
        self.wait_for(lambda: self.directory.workspace(workspace_id) == record)

    @staticmethod
    def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "the directory did not read the registry's change"
            time.sleep(0.005)

    # -- writes ------------------------------------------------------------------------------------
    def incoming(self, *writes: Mapping[str, Any], partition: int = 0) -> list[IncomingWrite]:
        """``writes`` at the next offsets of ``partition`` of the writes topic."""
        out = []
        for w in writes:
            offset = self._offsets.get(partition, 0)
            self._offsets[partition] = offset + 1
            out.append(IncomingWrite(dict(w), TOPIC, partition, offset, str(w["key"]).encode(), b"raw"))
        return out

    async def until_done(self, writes: list[IncomingWrite], rounds: int = 200) -> BatchOutcome:
        """``put`` the pending writes again and again (as the loop carries them) until none is pending or
        ``rounds`` ran; every outcome's results and parked writes gathered in the one returned."""
        total = BatchOutcome()
        pending = writes
        for _ in range(rounds):
            outcome = await self.router.put(pending)
            total.results += outcome.results
            total.parked += outcome.parked
            pending = outcome.pending
            if not pending:
                break
            await asyncio.sleep(0.01)
        total.pending = pending
        return total

    async def close(self) -> None:
        await self.router.aclose()
        self.directory.close()
