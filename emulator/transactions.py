"""Transactions, timestamps and late visibility: when the store's writes happen and when readers see them.

A transaction (:meth:`Transactions.transaction`) takes its timestamp when it starts, so every record
it writes shares one ``SystemModstamp``/``LastModifiedDate`` (as in a real org: while a long-running
transaction is open, getUpdated's ``latestDateCovered`` is that transaction's start time). A record
written twice in one transaction, or again within the same millisecond, still gets a strictly later
stamp (+1 ms, :meth:`Transactions.stamp`). Nested transactions join the enclosing one.

Late visibility. A transaction may commit late (``visibility_delay``, or what the
:data:`VisibilityPolicy` answers: a long trigger chain, a flow, a big DML): its rows carry the stamp
of its start, but until the delay has passed every reader sees the record as it was before the
transaction (or not at all when it created the record). Once visible, the row has its old stamp. A
later write to such a record commits the late one first (a real writer would wait for the row lock).

:class:`View` is the read side: the rows as readers see them (:class:`sfsync.emulator.model.RecordSource`).

Both hold the store's lock (:attr:`sfsync.emulator.tables.Tables.lock`) for every call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.model import ObjectDef, Row, as_utc, floor_ms
from sfsync.emulator.tables import Table, Tables

VisibilityPolicy = Callable[[str, frozenset[str]], dt.timedelta | None]
"""Decides a committing transaction's visibility delay from its user id and the objects it wrote."""

_MS = dt.timedelta(milliseconds=1)


@dataclass
class Before:
    """A record as readers saw it before a transaction wrote it."""

    table: Table
    row: Row | None  # None: the record did not exist
    in_bin: bool  # ``row`` is a recycle-bin row


@dataclass
class Transaction:
    actor: str
    now: dt.datetime  # its one timestamp
    delay: dt.timedelta | None  # None: ask the visibility policy
    written: dict[str, Before] = field(default_factory=dict)


@dataclass
class Pending:
    """A committed-late write: readers see ``before`` until ``visible_at``."""

    before: Before
    stamp: dt.datetime
    visible_at: dt.datetime


class Transactions:
    """The open transaction, the last stamp of every record, and the writes not yet visible."""

    def __init__(self, tables: Tables, *, clock: Callable[[], dt.datetime], integration_user_id: str) -> None:
        self._tables = tables
        self._lock = tables.lock
        self._clock = clock
        self.integration_user_id = integration_user_id
        self.visibility_policy: VisibilityPolicy | None = None
        self._txn: Transaction | None = None
        self._last_stamp: dict[str, dt.datetime] = {}
        self._pending: dict[str, Pending] = {}

    def clear(self) -> None:
        """Forget every record's stamps and late writes (the open transaction stays open)."""
        self._last_stamp = {}
        self._pending = {}

    # ----------------------------------------------------------------- clock
    def now(self) -> dt.datetime:
        """The org's time: UTC, millisecond resolution."""
        return floor_ms(as_utc(self._clock()))

    def clock(self) -> dt.datetime:
        """The org's clock as it reads (UTC, full resolution)."""
        return as_utc(self._clock())

    def actor(self, user_id: str | None) -> str:
        """The canonical id of the user a write runs as (None: the integration user)."""
        return ids.normalize(user_id) if user_id else self.integration_user_id

    def stamp(self, record_id: str, table: Table | None = None) -> dt.datetime:
        """A SystemModstamp for a write to ``record_id``: the open transaction's timestamp (or now), ms
        resolution, strictly increasing per record. With ``table``, the write is the open transaction's
        (see :meth:`written`)."""
        if table is not None:
            self.written(table, record_id)
        now = self._txn.now if self._txn is not None else self.now()
        previous = self._last_stamp.get(record_id)
        if previous is not None and now <= previous:
            now = previous + _MS
        self._last_stamp[record_id] = now
        return now

    def forget(self, record_id: str) -> None:
        """Drop ``record_id``'s last stamp (the record is gone for good)."""
        self._last_stamp.pop(record_id, None)

    # ----------------------------------------------------------------- transactions
    @contextmanager
    def transaction(
        self, *, user_id: str | None = None, visibility_delay: dt.timedelta | None = None
    ) -> Iterator[None]:
        """One transaction: its writes share one timestamp (taken now) and become visible together, at
        once or after ``visibility_delay`` (None: as :attr:`visibility_policy` decides). Nested
        transactions join the enclosing one."""
        with self._lock:
            if self._txn is not None:
                yield
                return
            self._txn = Transaction(actor=self.actor(user_id), now=self.now(), delay=visibility_delay)
            try:
                yield
            finally:
                txn, self._txn = self._txn, None
                self._commit(txn)

    def written(self, table: Table, record_id: str) -> None:
        """Note the state readers see before the open transaction first writes ``record_id``."""
        txn = self._txn
        if txn is None or record_id in txn.written:
            return
        self._pending.pop(record_id, None)  # a later write commits a late one first
        if record_id in table.live:
            txn.written[record_id] = Before(table, table.live[record_id], in_bin=False)
        elif record_id in table.deleted:
            txn.written[record_id] = Before(table, table.deleted[record_id], in_bin=True)
        else:
            txn.written[record_id] = Before(table, None, in_bin=False)

    def _commit(self, txn: Transaction) -> None:
        if not txn.written:
            return
        delay = txn.delay
        if delay is None and self.visibility_policy is not None:
            delay = self.visibility_policy(txn.actor, frozenset(b.table.obj.name for b in txn.written.values()))
        if delay is None or delay <= dt.timedelta(0):
            return
        visible_at = self.clock() + delay
        for record_id, before in txn.written.items():
            exists = record_id in before.table.live or record_id in before.table.deleted
            if before.row is None and not exists:
                continue  # created and purged in the same transaction: nothing to hide
            self._pending[record_id] = Pending(before, txn.now, visible_at)

    # ----------------------------------------------------------------- late writes
    def late(self) -> dict[str, Pending]:
        """The late writes not yet visible, by record id (those whose time has come are dropped)."""
        if not self._pending:
            return self._pending
        now = self.clock()
        due = [record_id for record_id, late in self._pending.items() if late.visible_at <= now]
        for record_id in due:
            del self._pending[record_id]
        return self._pending

    def pending_visibility(self) -> list[dict[str, Any]]:
        """The writes not yet visible: id, SystemModstamp and when they become visible."""
        with self._lock:
            return [
                {"id": record_id, "SystemModstamp": late.stamp, "visible_at": late.visible_at}
                for record_id, late in self.late().items()
            ]

    def oldest_late_stamp(self) -> dt.datetime | None:
        """The start of the oldest transaction not yet visible, or None."""
        return min((late.stamp for late in self.late().values()), default=None)

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> dict[str, Any]:
        """The stamps, the late writes and what the open transaction (if any) has written so far."""
        return {
            "last_stamp": dict(self._last_stamp),
            "pending": dict(self._pending),
            "txn_written": dict(self._txn.written) if self._txn is not None else None,
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Go back to a :meth:`snapshot` (inside the open transaction too: a rollback). Its late writes
        are re-pointed at the current tables (a schema refresh rebuilds them)."""
        self._last_stamp = dict(saved["last_stamp"])
        saved_pending: Mapping[str, Pending] = saved.get("pending") or {}
        self._pending = {
            record_id: Pending(self._rebind(late.before), late.stamp, late.visible_at)
            for record_id, late in saved_pending.items()
        }
        if self._txn is not None:  # a rollback inside the open transaction
            saved_written: Mapping[str, Before] = saved.get("txn_written") or {}
            self._txn.written = {record_id: self._rebind(b) for record_id, b in saved_written.items()}

    def _rebind(self, before: Before) -> Before:
        """``before`` pointing at the current table of its object (tables are rebuilt by a schema refresh)."""
        table = self._tables.by_name.get(before.table.obj.name.lower(), before.table)
        return before if table is before.table else Before(table, before.row, before.in_bin)


class View:
    """The records as readers see them: every write not yet visible shows its record as it was before."""

    def __init__(self, tables: Tables, transactions: Transactions) -> None:
        self._tables = tables
        self._lock = tables.lock
        self._transactions = transactions

    def rows(self, sobject: str, *, include_deleted: bool = False) -> list[Row]:
        """Every visible live row of ``sobject`` (any case; unknown: none), recycle-bin rows too when asked."""
        table = self._tables.find(sobject)
        if table is None:
            return []
        with self._lock:
            pending = self._transactions.late()
            if not pending:
                rows = list(table.live.values())
                if include_deleted:
                    rows.extend(table.deleted.values())
                return rows
            rows = [row for record_id, row in table.live.items() if record_id not in pending]
            if include_deleted:
                rows.extend(row for record_id, row in table.deleted.items() if record_id not in pending)
            for late in pending.values():
                before = late.before
                if before.table is table and before.row is not None and (include_deleted or not before.in_bin):
                    rows.append(before.row)
            return rows

    def row_by_id(self, record_id: str, *, visible_only: bool = True) -> tuple[ObjectDef, Row] | None:
        """The row with this id (live or in the recycle bin) as readers see it; ``visible_only=False``: as
        written, late-visible or not (what a writer holding the row sees)."""
        canonical = ids.try_normalize(record_id)
        if canonical is None:
            return None
        with self._lock:
            late = self._transactions.late().get(canonical) if visible_only else None
            if late is not None:
                before = late.before
                return (before.table.obj, before.row) if before.row is not None else None
            table = self._tables.owner.get(canonical)
            if table is None:
                return None
            row = table.live.get(canonical) or table.deleted.get(canonical)
            return (table.obj, row) if row is not None else None

    def get(self, sobject: str, record_id: str) -> Row | None:
        """The live (not deleted) row of ``sobject`` with this id as readers see it, or None."""
        table = self._tables.find(sobject)
        canonical = ids.try_normalize(record_id)
        if table is None or canonical is None:
            return None
        with self._lock:
            late = self._transactions.late().get(canonical)
            if late is not None:
                before = late.before
                return before.row if before.table is table and not before.in_bin else None
            return table.live.get(canonical)

    def count(self, sobject: str) -> int:
        """How many live rows of ``sobject`` readers see."""
        table = self._tables.find(sobject)
        if table is None:
            return 0
        with self._lock:
            return len(self.rows(sobject)) if self._transactions.late() else len(table.live)
