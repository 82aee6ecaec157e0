"""The sink of many orgs: each write goes to its workspace's org, one batch per connection, and a connection
that cannot take its writes waits while the others go on (docs/decisions/0009-workspaces-and-connections.md).

:class:`ConnectionRouter` is the :class:`~sfsync.sinks.contract.Sink` the loop drives. Each ``put``:

1. routes every write that is not already on its way (:meth:`~sfsync.sinks.connections.ConnectionCatalog.route_of`):
   to its workspace's connection, or parked (``UNKNOWN_WORKSPACE``), or held: its workspace is PAUSED
   or DISCONNECTED (one INFO entry when that starts, one when it ends);
2. every connection that is neither held nor busy takes its next batch: every write of it that is
   not on its way, in a ``put`` of its own sink (:class:`~sfsync.sinks.connections.ConnectionSink`,
   opened on its first write), run as a task of its own, exactly as the single-org sink's ``put`` took
   every carried write with the fresh ones; a batch never holds two connections' writes (a Collections
   call goes to one org), and a connection has one batch on its way at a time (so a record's writes
   stay in order). The sink splits the batch into Collections calls; a write waiting out its retry
   backoff is left pending by it without keeping the others out (a batch capped at a count would
   take the oldest, mostly waiting writes again and again: in a full chaos run that held the sink
   at ~70 writes/s);
3. waits for the batches on their way (not for a held connection's re-check) until one of them is
   done with something to deliver (results or parked writes), every one is done, or ``batch_max_age_s``
   passed, and returns what the done ones did: their results and parked writes; every other write
   is pending (on its way, held, waiting for its connection's next batch, or pending in its sink), so
   the loop commits nothing at or past it. A batch still on its way is picked up by a later ``put``:
   a slow or failing org's batch (one sent to an org that just went down retries for up to
   ``retry_wait_max_s`` before its connection is held) delays neither the delivery of another
   connection's batch nor, so, that connection's next batch. A batch done with nothing to deliver (a
   failing org's) does not end the wait: the loop would take such a ``put`` for one that moved nothing.

A connection is held (:class:`~sfsync.sinks.routing.Hold`; ``sfsync_sink_connections_held{cause}``) when
its batch ended with its org answering no call (``org_down``: tried again after
``hold_recheck_initial_s``, doubling up to ``hold_recheck_max_s``; its writes spend no retry deadline
meanwhile), its login was refused or its connection cannot be opened (``credentials``), the org refused
the integration as a whole (``refused``; both tried again after the governor's ``auth_pause_s``, doubling
up to ``auth_pause_max_s``), or its API budget is paused (``budget``: until the governor's pause ends).
A hold writes a CONNECTION entry per workspace whose writes it holds (the outage: once, when it starts;
refused credentials: at each failed try), and an INFO entry when the connection serves again. This
process never writes a workspace's state itself: an operator reconnects (``sfsync connections add``),
and the next try opens the connection again from the registry.

A connection the registry changed (reconnected) is opened again, one it no longer holds is closed,
both once no batch of it is on its way. Carried writes are the loop's (``SFSYNC_SINK_CARRY_MAX`` bounds
them): the router keeps no write of its own beyond the batches on their way, and forgets those of
partitions the loop no longer carries (revoked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sfsync.errors import Category, FatalError, Level, SfsyncError
from sfsync.ops.errorlog import ErrorLogEntry, entry_for
from sfsync.salesforce.errors import AuthenticationError, SalesforceFatalError
from sfsync.salesforce.governor import GovernorSettings
from sfsync.sinks.connections import ConnectionSink, Freshness
from sfsync.sinks.contract import (
    BatchOutcome,
    ErrorEntry,
    IncomingWrite,
    OnErrorEntry,
    OnParked,
    ParkedWrite,
    committed_offsets,
)
from sfsync.sinks.routing import Hold, HoldCause, Route, hold_after
from sfsync.sinks.settings import SinkSettings
from sfsync.workspaces.records import WorkspaceState
from sfsync.workspaces.routing import UnknownWorkspaceError

__all__ = ["CONNECTION_RESTORED", "WORKSPACE_HELD", "WORKSPACE_RESUMED", "Catalog", "ConnectionRouter"]

log = logging.getLogger(__name__)

CONNECTION_RESTORED = "CONNECTION_RESTORED"
"""INFO: a held connection serves again."""
WORKSPACE_HELD = "WORKSPACE_HELD"
"""INFO: a PAUSED or DISCONNECTED workspace's writes wait."""
WORKSPACE_RESUMED = "WORKSPACE_RESUMED"
"""INFO: a workspace's writes go again."""

Coordinates = tuple[str, int, int]


def _coordinates(write: IncomingWrite) -> Coordinates:
    return (write.topic, write.partition, write.offset)


def _workspace_of(write: IncomingWrite) -> str:
    return str(write.write.get("workspace_id") or "")


class Catalog(Protocol):
    """Where connections' sinks come from (:class:`~sfsync.sinks.connections.ConnectionCatalog`)."""

    def route_of(self, workspace_id: str) -> Route: ...

    def open(self, connection_id: str) -> ConnectionSink: ...

    def freshness(self, sink: ConnectionSink) -> Freshness: ...


@dataclass
class _Slot:
    """One connection as the router sees it: its sink (None until opened), its hold, its batch on its way."""

    connection_id: str
    sink: ConnectionSink | None = None
    hold: Hold[HoldCause] | None = None
    task: asyncio.Task[BatchOutcome] | None = None
    batch: list[IncomingWrite] = field(default_factory=list)
    workspaces: set[str] = field(default_factory=set)
    """The workspaces of its writes in the last put (named by its hold's entries)."""


class ConnectionRouter:
    """Routes each write to its connection's sink (see the module doc).

    Args:
        catalog: where the connections' sinks come from.
        settings, governor_settings: the batch size and age, the holds' backoffs.
        on_parked: parks a write (an unknown workspace's); on_error_entry: its SYNC entry.
        record: a CONNECTION/INFO error-log entry of a hold.
        is_stopping: whether an error a batch raised means the process is stopping (its writes pending).
        monotonic: the clock of the holds; observe_batch: the size of every batch sent to a connection.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        settings: SinkSettings,
        governor_settings: GovernorSettings,
        on_parked: OnParked,
        on_error_entry: OnErrorEntry,
        record: Callable[[ErrorLogEntry], None],
        is_stopping: Callable[[BaseException], bool] = lambda error: False,
        monotonic: Callable[[], float] = time.monotonic,
        observe_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.governor_settings = governor_settings
        self._on_parked = on_parked
        self._on_error_entry = on_error_entry
        self._record = record
        self._is_stopping = is_stopping
        self._monotonic = monotonic
        self._observe_batch = observe_batch
        self._slots: dict[str, _Slot] = {}
        self._on_their_way: dict[Coordinates, str] = {}  # a write in a batch on its way -> its connection
        self._held_workspaces: dict[str, WorkspaceState] = {}
        self.auth_failures = 0
        self._closed_pauses = 0

    # -- what the process reads ------------------------------------------------------------------
    def sink_of(self, connection_id: str) -> ConnectionSink:
        """The open sink of ``connection_id``, opened now if it is not (raises as the catalog's ``open``)."""
        slot = self._slot(connection_id)
        if slot.sink is None:
            slot.sink = self.catalog.open(connection_id)
        return slot.sink

    @property
    def governor_pauses(self) -> int:
        """The budget pauses every connection's governor began (those closed since included)."""
        return self._closed_pauses + sum(s.sink.governor.pauses for s in self._slots.values() if s.sink is not None)

    def held(self) -> dict[HoldCause, int]:
        """How many connections are held, by cause (a connection with a held workspace: ``workspace``)."""
        counts = Counter(s.hold.cause for s in self._slots.values() if s.hold is not None)
        held_workspaces = set(self._held_workspaces)
        counts[HoldCause.WORKSPACE] = sum(1 for s in self._slots.values() if s.workspaces & held_workspaces)
        return {cause: counts.get(cause, 0) for cause in HoldCause}

    def busy(self) -> bool:
        """Whether a batch is on its way."""
        return any(s.task is not None for s in self._slots.values())

    # -- put -------------------------------------------------------------------------------------
    async def put(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        """Route ``writes`` (the carried ones and the fresh ones), send each ready connection's next batch,
        wait for the batches on their way at most ``batch_max_age_s``; what the done batches did."""
        outcome = BatchOutcome()
        finished: set[Coordinates] = set()
        given = {_coordinates(w): w for w in writes}
        self._forget_gone(given)
        self._harvest(outcome, finished)
        await self._refresh()
        ready = await self._route([w for w in writes if _coordinates(w) not in finished], outcome)
        now = self._monotonic()
        waited: list[asyncio.Task[BatchOutcome]] = []
        for connection_id, mine in ready.items():
            slot = self._slots[connection_id]
            if slot.task is not None or (slot.hold is not None and slot.hold.until > now) or not mine:
                continue
            rechecking = slot.hold is not None
            if not self._open(slot):
                continue
            self._send(slot, mine)
            if not rechecking and slot.task is not None:
                waited.append(slot.task)
        waited += [
            s.task for s in self._slots.values() if s.task is not None and s.hold is None and s.task not in waited
        ]
        if waited:
            await self._wait(waited)
        self._harvest(outcome, finished)
        return self._finish(writes, outcome, finished)

    async def _wait(self, tasks: Sequence[asyncio.Task[BatchOutcome]]) -> None:
        """Wait until one of ``tasks`` is done with something to deliver (results or parked writes), every one
        is done, or ``batch_max_age_s`` passed (step 3 of the module doc)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.batch_max_age_s
        out: set[asyncio.Task[BatchOutcome]] = set(tasks)
        while out:
            left = deadline - loop.time()
            if left <= 0:
                return
            done, out = await asyncio.wait(out, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if any(_delivered(task) for task in done):
                return

    async def settle(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        """Wait for every batch on its way (starting none); what they did, ``writes`` not done pending."""
        outcome = BatchOutcome()
        finished: set[Coordinates] = set()
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        self._harvest(outcome, finished)
        return self._finish(writes, outcome, finished)

    async def release(self, partitions: Collection[tuple[str, int]]) -> None:
        """Wait for every batch on its way (starting none, taking none in: the next ``put`` does), then forget
        the writes of ``partitions`` they hold: a batch taken in later delivers their results and parked writes
        but does not count their coordinates done, so a replay of them (the partition assigned here again, read
        from its committed offset) is written again. Else a replayed earlier write would be written again
        while a later one, done by a batch taken in after the replay was read, counted done: a CampaignMember
        re-created by its replayed upsert, its replayed delete skipped."""
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        gone = set(partitions)
        for slot in self._slots.values():
            slot.batch = [w for w in slot.batch if (w.topic, w.partition) not in gone]
        for coordinates in [c for c in self._on_their_way if (c[0], c[1]) in gone]:
            del self._on_their_way[coordinates]

    async def aclose(self) -> None:
        """Cancel the batches on their way (nothing of them is committed: they replay) and close every client."""
        for slot in self._slots.values():
            if slot.task is not None:
                slot.task.cancel()
        for slot in self._slots.values():
            if slot.task is not None:
                with contextlib.suppress(BaseException):
                    await slot.task
                slot.task = None
            if slot.sink is not None:
                with contextlib.suppress(Exception):
                    await slot.sink.aclose()
        self._on_their_way.clear()

    # -- the steps -------------------------------------------------------------------------------
    def _slot(self, connection_id: str) -> _Slot:
        slot = self._slots.get(connection_id)
        if slot is None:
            slot = self._slots[connection_id] = _Slot(connection_id)
        return slot

    def _forget_gone(self, given: Mapping[Coordinates, IncomingWrite]) -> None:
        """A write on its way that the loop no longer carries (its partition revoked) is forgotten."""
        for coordinates in [c for c in self._on_their_way if c not in given]:
            del self._on_their_way[coordinates]

    async def _refresh(self) -> None:
        """Close the sinks of connections the registry removed or changed (none with a batch on its way);
        a changed one is opened again, from its new record, with its next batch."""
        for slot in list(self._slots.values()):
            if slot.sink is None or slot.task is not None:
                continue
            freshness = self.catalog.freshness(slot.sink)
            if freshness == "same":
                continue
            log.info("connection %s was %s in the registry: its client is closed", slot.connection_id, freshness)
            self._closed_pauses += slot.sink.governor.pauses
            with contextlib.suppress(Exception):
                await slot.sink.aclose()
            slot.sink = None
            if slot.hold is not None and slot.hold.cause in (HoldCause.CREDENTIALS, HoldCause.REFUSED):
                slot.hold = None  # reconnected: try it at once
            if freshness == "removed" and slot.hold is None and not slot.workspaces:
                del self._slots[slot.connection_id]

    async def _route(self, writes: Sequence[IncomingWrite], outcome: BatchOutcome) -> dict[str, list[IncomingWrite]]:
        """Each write not on its way: to its connection's list; an unknown workspace's parked; a held
        workspace's left pending."""
        ready: dict[str, list[IncomingWrite]] = {}
        routes: dict[str, Route] = {}
        held_now: dict[str, WorkspaceState] = {}
        for slot in self._slots.values():
            slot.workspaces = set()
        for write in writes:
            coordinates = _coordinates(write)
            workspace = _workspace_of(write)
            sending = self._on_their_way.get(coordinates)
            if sending is not None:  # in a batch on its way: it is that connection's, whatever the registry says now
                self._slot(sending).workspaces.add(workspace)
                continue
            route = routes.get(workspace)
            if route is None:
                route = routes[workspace] = self.catalog.route_of(workspace)
            if route.connection_id is None:
                await self._park_unknown(write, workspace, outcome)
                continue
            slot = self._slot(route.connection_id)
            slot.workspaces.add(workspace)
            if route.held is not None:
                held_now[workspace] = route.held
                continue
            ready.setdefault(route.connection_id, []).append(write)
        self._note_workspaces(held_now, routes)
        return ready

    def _note_workspaces(self, held_now: Mapping[str, WorkspaceState], routes: Mapping[str, Route]) -> None:
        """An INFO entry when a workspace's writes start to wait (PAUSED, DISCONNECTED), one when they go again."""
        for workspace, state in held_now.items():
            if self._held_workspaces.get(workspace) is not state:
                self._held_workspaces[workspace] = state
                self._entry(
                    workspace,
                    Category.CONNECTION,
                    WORKSPACE_HELD,
                    f"workspace {workspace} is {state}: its writes wait (uncommitted) until it is ACTIVE again",
                    Level.INFO,
                    {"state": str(state), "connection_id": routes[workspace].connection_id or ""},
                )
        for workspace in [w for w in self._held_workspaces if w in routes and w not in held_now]:
            del self._held_workspaces[workspace]
            self._entry(
                workspace,
                Category.CONNECTION,
                WORKSPACE_RESUMED,
                f"workspace {workspace} is ACTIVE again (or no longer in the registry): its writes go",
                Level.INFO,
                {},
            )

    async def _park_unknown(self, write: IncomingWrite, workspace: str, outcome: BatchOutcome) -> None:
        error = UnknownWorkspaceError(workspace)
        await self._on_parked(write, error)
        outcome.parked.append(ParkedWrite(write, error))
        await self._on_error_entry(
            ErrorEntry(
                category="SYNC",
                severity="ERROR",
                code=error.log_code(),
                message=str(error),
                mapping=str(write.write.get("mapping") or ""),
                record_key=str(write.write.get("key") or ""),
                write_id=str(write.write.get("write_id") or ""),
                sobject=str(write.write.get("sobject") or ""),
                workspace_id=workspace or None,
            )
        )

    def _open(self, slot: _Slot) -> bool:
        """Open the slot's sink if it is not; a connection that cannot be opened is held (credentials)."""
        if slot.sink is not None:
            return True
        try:
            slot.sink = self.catalog.open(slot.connection_id)
        except FatalError as error:  # removed, sealed with a key this process lacks, invalid, env not configured
            self._hold_refused(slot, error, HoldCause.CREDENTIALS)
            return False
        return True

    def _send(self, slot: _Slot, batch: list[IncomingWrite]) -> None:
        sink = slot.sink
        assert sink is not None
        slot.batch = batch
        for write in batch:
            self._on_their_way[_coordinates(write)] = slot.connection_id
        if self._observe_batch is not None:
            self._observe_batch(len(batch))
        slot.task = asyncio.create_task(sink.put(batch), name=f"sfsync-sink-{slot.connection_id}")

    def _harvest(self, outcome: BatchOutcome, finished: set[Coordinates]) -> None:
        """Take in what every done batch did (its writes not pending in it: ``finished``), and hold or
        release its connection accordingly."""
        for slot in list(self._slots.values()):
            task = slot.task
            if task is None or not task.done():
                continue
            slot.task, batch = None, slot.batch
            slot.batch = []
            for write in batch:
                self._on_their_way.pop(_coordinates(write), None)
            try:
                done = task.result()
            except asyncio.CancelledError:
                continue
            except AuthenticationError as error:
                self.auth_failures += 1
                self._hold_refused(slot, error, HoldCause.CREDENTIALS)
                continue
            except SalesforceFatalError as error:  # the API disabled, a permission gone: this org only
                self._hold_refused(slot, error, HoldCause.REFUSED)
                continue
            except SfsyncError as error:
                if self._is_stopping(error):
                    continue
                raise
            outcome.results += done.results
            outcome.parked += done.parked
            outcome.api_calls += done.api_calls
            pending = {_coordinates(w) for w in done.pending}
            finished.update(c for c in map(_coordinates, batch) if c not in pending)
            self._after(slot, done)

    def _after(self, slot: _Slot, done: BatchOutcome) -> None:
        """Hold the connection its batch says cannot take writes now; release a held one that served."""
        now = self._monotonic()
        if done.budget_pause_s is not None:
            slot.hold = hold_after(
                slot.hold, HoldCause.BUDGET, now, "API_BUDGET_PAUSED", initial_s=0, max_s=0, wait_s=done.budget_pause_s
            )
            return
        if done.unreachable is not None:
            error = done.unreachable
            slot.hold = hold_after(
                slot.hold,
                HoldCause.ORG_DOWN,
                now,
                error.log_code(),
                initial_s=self.settings.hold_recheck_initial_s,
                max_s=self.settings.hold_recheck_max_s,
            )
            if slot.hold.failures == 1:
                log.warning(
                    "connection %s: the org answers no call (%s); its writes wait, tried again in %.1fs",
                    slot.connection_id,
                    error.log_code(),
                    slot.hold.until - now,
                )
                for workspace in sorted(slot.workspaces):
                    entry = entry_for(error, workspace=workspace)
                    self._record(
                        _with(
                            entry,
                            slot.connection_id,
                            f"the org of connection {slot.connection_id} answers no "
                            f"call ({error.log_code()}): its writes wait (uncommitted) and are tried again on a "
                            "backoff; they spend no retry deadline meanwhile",
                        )
                    )
            return
        previous, slot.hold = slot.hold, None
        if previous is not None and previous.cause is not HoldCause.BUDGET:
            log.info("connection %s serves again (held for %s)", slot.connection_id, previous.cause)
            for workspace in sorted(slot.workspaces):
                self._entry(
                    workspace,
                    Category.CONNECTION,
                    CONNECTION_RESTORED,
                    f"connection {slot.connection_id} serves again after {now - previous.since:.0f}s held "
                    f"({previous.cause}: {previous.code}); its waiting writes go",
                    Level.INFO,
                    {"connection_id": slot.connection_id, "cause": str(previous.cause)},
                )

    def _hold_refused(self, slot: _Slot, error: SfsyncError, cause: HoldCause) -> None:
        """Refused credentials (or a connection that cannot be opened), or the org refusing the integration:
        hold on the slow backoff, a CONNECTION entry per workspace at each failed try."""
        gs = self.governor_settings
        now = self._monotonic()
        slot.hold = hold_after(
            slot.hold, cause, now, error.log_code(), initial_s=gs.auth_pause_s, max_s=gs.auth_pause_max_s
        )
        wait = slot.hold.until - now
        log.error(
            "connection %s: %s (%s); its writes wait, tried again in %.1fs",
            slot.connection_id,
            "Salesforce refused the login" if cause is HoldCause.CREDENTIALS else "Salesforce refused the integration",
            error.log_code(),
            wait,
        )
        for workspace in sorted(slot.workspaces) or [""]:
            entry = entry_for(error, workspace=workspace)
            self._record(
                _with(
                    entry,
                    slot.connection_id,
                    f"{entry.message} (connection {slot.connection_id}: its "
                    f"writes wait, uncommitted; tried again in {wait:.0f}s)",
                )
            )

    def _entry(
        self, workspace: str, category: Category, code: str, message: str, level: Level, details: Mapping[str, str]
    ) -> None:
        self._record(
            ErrorLogEntry(category, code, message, level, details=dict(details), workspace_id=workspace or None)
        )

    def _finish(
        self, writes: Sequence[IncomingWrite], outcome: BatchOutcome, finished: set[Coordinates]
    ) -> BatchOutcome:
        """Every write of ``writes`` that no harvested batch finished (nor was parked here) is pending."""
        finished |= {_coordinates(p.write) for p in outcome.parked}
        outcome.pending = [w for w in writes if _coordinates(w) not in finished]
        outcome.committed = committed_offsets(writes, outcome.pending)
        return outcome


def _delivered(task: asyncio.Task[BatchOutcome]) -> bool:
    """Whether a done batch has results or parked writes for the loop to deliver (not one that raised)."""
    if task.cancelled() or task.exception() is not None:
        return False
    done = task.result()
    return bool(done.results or done.parked)


def _with(entry: ErrorLogEntry, connection_id: str, message: str) -> ErrorLogEntry:
    return ErrorLogEntry(
        entry.category,
        entry.code,
        message,
        entry.level,
        retryable=True,
        details={**entry.details, "connection_id": connection_id},
        occurred_at=entry.occurred_at,
        workspace_id=entry.workspace_id,
    )
