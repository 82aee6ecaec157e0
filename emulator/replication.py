"""The replication feeds: getUpdated and getDeleted, as the REST API's ``/updated`` and ``/deleted`` serve them.

A window ``[start, end]`` is read at minute resolution (seconds are ignored) and must span more than
one minute; its covered part ends at ``end`` or now, whichever is earlier. getUpdated may start at
most 30 days ago, and reports the ids whose ``SystemModstamp`` is in the covered part. getDeleted
reports the delete-log entries in it that are still available: younger than 15 days and not
dropped by :meth:`sfsync.emulator.recycle_bin.RecycleBin.expire_delete_log` (which moves
``earliestDateAvailable`` to that moment).

While a transaction is still uncommitted (late visibility, see :mod:`sfsync.emulator.transactions`),
``latestDateCovered`` stops at the start minute of the oldest such transaction (never before the
window's start), as the getUpdated guide says, and getDeleted does not show the deletes it made.

Errors: :class:`sfsync.emulator.errors.ApiError` NOT_FOUND (unknown object), INVALID_REPLICATION_DATE
(unreadable, too short or too old a window), EXCEEDED_ID_LIMIT (more than 600,000 ids).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import as_utc, parse_datetime
from sfsync.emulator.recycle_bin import RecycleBin
from sfsync.emulator.tables import Tables
from sfsync.emulator.transactions import Transactions, View

UPDATED_WINDOW = dt.timedelta(days=30)
DELETED_WINDOW = dt.timedelta(days=15)
ID_LIMIT = 600_000


def _floor_minute(value: dt.datetime) -> dt.datetime:
    return value.replace(second=0, microsecond=0)


class Replication:
    """Answers getUpdated and getDeleted from the rows readers see and the recycle bin's delete log."""

    def __init__(self, tables: Tables, transactions: Transactions, view: View, recycle_bin: RecycleBin) -> None:
        self._tables = tables
        self._transactions = transactions
        self._view = view
        self._bin = recycle_bin

    def updated_ids(
        self, sobject: str, start: dt.datetime | str, end: dt.datetime | str
    ) -> tuple[list[str], dt.datetime]:
        """getUpdated: ids whose SystemModstamp is in ``[start, latestDateCovered)``, and latestDateCovered.
        Seconds are ignored; the window may start at most 30 days ago."""
        with self._tables.lock:
            table = self._tables.table(sobject)
            first, _, latest = self._window(start, end, UPDATED_WINDOW)
            latest = self._hold_for_late(first, latest)
            hits = sorted(
                (row["SystemModstamp"], row["Id"])
                for row in self._view.rows(table.obj.name)
                if first <= row["SystemModstamp"] < latest
            )
            if len(hits) > ID_LIMIT:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. narrow the time range")
            return [record_id for _, record_id in hits], latest

    def deleted(
        self, sobject: str, start: dt.datetime | str, end: dt.datetime | str
    ) -> tuple[list[dict[str, Any]], dt.datetime, dt.datetime]:
        """getDeleted: ``([{"id", "deletedDate"}], earliestDateAvailable, latestDateCovered)`` (datetimes).
        Entries older than 15 days (or expired from the delete log) are not available."""
        with self._tables.lock:
            table = self._tables.table(sobject)
            first, _, latest = self._window(start, end, None)
            latest = self._hold_for_late(first, latest)
            earliest = _floor_minute(self._transactions.now() - DELETED_WINDOW)
            expired_before = self._bin.log_expired_before
            if expired_before is not None and expired_before > earliest:
                earliest = _floor_minute(expired_before)
            late = self._transactions.late()
            records = [
                {"id": e.record_id, "deletedDate": e.deleted_at}
                for e in self._bin.delete_log
                if e.sobject == table.obj.name
                and first <= e.deleted_at < latest
                and e.deleted_at >= earliest
                and not (e.record_id in late and e.deleted_at >= late[e.record_id].stamp)
            ]
            if len(records) > ID_LIMIT:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. narrow the time range")
            return records, earliest, latest

    def _window(
        self, start: dt.datetime | str, end: dt.datetime | str, limit: dt.timedelta | None
    ) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
        try:
            raw_start = as_utc(start if isinstance(start, dt.datetime) else parse_datetime(start))
            raw_end = as_utc(end if isinstance(end, dt.datetime) else parse_datetime(end))
        except ValueError:
            raise ApiError(
                400, "INVALID_REPLICATION_DATE", "Invalid start or end date: expected yyyy-MM-ddTHH:mm:ss+00:00"
            ) from None
        if raw_end - raw_start <= dt.timedelta(minutes=1):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        first, last = _floor_minute(raw_start), _floor_minute(raw_end)
        now = self._transactions.now()
        if limit is not None and first < _floor_minute(now - limit):
            raise ApiError(400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {limit.days} days ago")
        return first, last, min(last, _floor_minute(now))

    def _hold_for_late(self, first: dt.datetime, latest: dt.datetime) -> dt.datetime:
        """latestDateCovered while a transaction is still uncommitted: its start (minute), never before
        ``first`` (the getUpdated guide: "the start time of that long-running transaction")."""
        oldest = self._transactions.oldest_late_stamp()
        if oldest is None:
            return latest
        return max(first, min(latest, _floor_minute(oldest)))
