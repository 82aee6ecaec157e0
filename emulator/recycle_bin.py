"""The recycle bin and the delete log: soft delete, undelete, hard delete.

``delete`` moves a record, and the cascade-delete children it takes along, to the recycle bin
(``IsDeleted`` = true in queryAll, an entry in the delete log that getDeleted reads); ``undelete``
restores it with those children (their delete-log entries go, they reappear in query with a new
stamp); ``purge`` hard-deletes (Bulk ``hardDelete``, ``emptyRecycleBin(ids)``): the row is gone
from queryAll at once, while its delete-log entry stays, so getDeleted still lists it within the
15-day window (a real org may show emptied rows to queryAll for a while, typically 24 h -- the
emulator takes the harder case). ``empty_recycle_bin`` purges every recycle-bin row and, per the
getDeleted guide ("or earlier if an administrator has purged the Recycle Bin"), truncates the
delete log: ``earliestDateAvailable`` moves to that moment and earlier deletes are no longer
reported -- only an id-set reconciliation finds them.

Each public call is one store transaction (joining the caller's). Errors:
:class:`sfsync.emulator.errors.ApiError` -- NOT_FOUND / ENTITY_IS_DELETED / MALFORMED_ID for the
record, INSUFFICIENT_ACCESS_OR_READONLY (object not deletable), UNDELETE_FAILED (not in the bin),
or a duplicate when the restored record now collides with a live one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.errors import ApiError, not_found
from sfsync.emulator.model import as_utc
from sfsync.emulator.tables import Table, Tables
from sfsync.emulator.transactions import Transactions


@dataclass
class DeleteEntry:
    """One delete as getDeleted reports it."""

    sobject: str
    record_id: str
    deleted_at: dt.datetime


class RecycleBin:
    """Deletes, undeletes and purges; owns the delete log and which deletes cascaded from which parent."""

    def __init__(self, tables: Tables, transactions: Transactions) -> None:
        self._tables = tables
        self._transactions = transactions
        self.delete_log: list[DeleteEntry] = []
        self.log_expired_before: dt.datetime | None = None
        self._cascaded: dict[str, str] = {}  # child id -> parent id whose delete took it along

    def clear(self) -> None:
        """Empty the delete log (nothing expired) and the cascade record."""
        self._cascaded = {}
        self.delete_log = []
        self.log_expired_before = None

    def delete(self, sobject: str, record_id: str, *, user_id: str | None = None) -> None:
        """Move a record (and its cascade-delete children) to the recycle bin."""
        with self._transactions.transaction(user_id=user_id):
            table = self._tables.table(sobject)
            canonical, _ = self._tables.live_row(table, record_id)
            if not table.obj.deletable:
                raise ApiError(400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", [])
            self._recycle(table, canonical, self._transactions.actor(user_id), cascaded_from=None)

    def _recycle(self, table: Table, record_id: str, actor: str, cascaded_from: str | None) -> None:
        row = table.live.get(record_id)
        if row is None:
            return
        for child_id in sorted(self._tables.children.get(record_id, ())):
            child_table = self._tables.owner.get(child_id)
            if child_table is not None and child_id in child_table.live:
                self._recycle(child_table, child_id, actor, cascaded_from=record_id)
        now = self._transactions.stamp(record_id, table)
        self._tables.unindex(table, record_id)
        del table.live[record_id]
        table.deleted[record_id] = {
            **row,
            "IsDeleted": True,
            "SystemModstamp": now,
            "LastModifiedDate": now,
            "LastModifiedById": actor,
        }
        if cascaded_from is not None:
            self._cascaded[record_id] = cascaded_from
        self.delete_log.append(DeleteEntry(table.obj.name, record_id, now))

    def undelete(self, record_id: str, *, user_id: str | None = None) -> None:
        """Restore a record from the recycle bin (with the children its delete took along)."""
        with self._transactions.transaction(user_id=user_id):
            canonical = ids.try_normalize(record_id)
            table = self._tables.owner.get(canonical) if canonical else None
            if canonical is None or table is None:
                raise not_found()
            if canonical not in table.deleted:
                raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin", [])
            self._restore_one(table, canonical, self._transactions.actor(user_id))

    def _restore_one(self, table: Table, record_id: str, actor: str) -> None:
        row = table.deleted[record_id]
        now = self._transactions.stamp(record_id, table)
        restored = {
            **row,
            "IsDeleted": False,
            "SystemModstamp": now,
            "LastModifiedDate": now,
            "LastModifiedById": actor,
        }
        self._tables.check_unique(table, restored, restored.keys())
        del table.deleted[record_id]
        self._cascaded.pop(record_id, None)
        table.live[record_id] = restored
        self._tables.index(table, restored)
        self.delete_log = [e for e in self.delete_log if e.record_id != record_id]
        for child_id, parent in list(self._cascaded.items()):
            if parent == record_id:
                child_table = self._tables.owner[child_id]
                self._restore_one(child_table, child_id, actor)

    def purge(self, record_id: str, *, user_id: str | None = None) -> None:
        """Hard delete (Bulk ``hardDelete``, ``emptyRecycleBin(ids)``): the record (live or in the recycle
        bin) is gone for good, from queryAll too; its delete-log entry stays, so getDeleted still lists it."""
        with self._transactions.transaction(user_id=user_id):
            canonical = ids.try_normalize(record_id)
            table = self._tables.owner.get(canonical) if canonical else None
            if canonical is None or table is None:
                raise not_found()
            if canonical in table.live:
                self._recycle(table, canonical, self._transactions.actor(user_id), cascaded_from=None)
            self._purge_one(table, canonical)

    def _purge_one(self, table: Table, record_id: str) -> None:
        self._transactions.written(table, record_id)
        table.deleted.pop(record_id, None)
        self._tables.owner.pop(record_id, None)
        self._cascaded.pop(record_id, None)
        self._transactions.forget(record_id)
        self._tables.children.pop(record_id, None)
        for child_id, parent in list(self._cascaded.items()):
            if parent == record_id:
                child_table = self._tables.owner.get(child_id)
                if child_table is not None:
                    self._purge_one(child_table, child_id)

    def empty_recycle_bin(self, *, truncate_delete_log: bool = True, user_id: str | None = None) -> int:
        """An administrator empties the recycle bin: every deleted record is purged; how many. With
        ``truncate_delete_log`` the delete log goes too (getDeleted's ``earliestDateAvailable`` becomes
        now: "or earlier if an administrator has purged the Recycle Bin")."""
        with self._transactions.transaction(user_id=user_id):
            doomed = [(t, i) for t in self._tables.by_name.values() for i in list(t.deleted)]
            for table, record_id in doomed:
                if record_id in table.deleted:
                    self._purge_one(table, record_id)
            if truncate_delete_log:
                self.expire_delete_log(self._transactions.clock())
            return len(doomed)

    def expire_delete_log(self, before: dt.datetime) -> None:
        """Drop delete-log entries older than ``before`` (as Salesforce's log purge does)."""
        with self._tables.lock:
            cutoff = as_utc(before)
            self.delete_log = [e for e in self.delete_log if e.deleted_at >= cutoff]
            self.log_expired_before = cutoff

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> dict[str, Any]:
        """The delete log, its expiry and the cascade record."""
        return {
            "cascaded": dict(self._cascaded),
            "delete_log": list(self.delete_log),
            "log_expired_before": self.log_expired_before,
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Go back to a :meth:`snapshot`."""
        self._cascaded = dict(saved["cascaded"])
        self.delete_log = list(saved["delete_log"])
        self.log_expired_before = saved["log_expired_before"]
