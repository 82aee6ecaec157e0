"""The emulated org's records: an in-memory store that validates writes the way Salesforce does.

:class:`OrgStore` implements :class:`sfsync.emulator.model.RecordSource` (what SOQL, SOSL and Bulk read) plus
the writes the REST API performs: create, update, upsert by external id, delete to the recycle bin,
undelete, hard delete, lead conversion, and the replication feeds (getUpdated / getDeleted). It is a
facade over the parts that do the work, one concern each:

====================================  ===========================================================
:mod:`~sfsync.emulator.tables`        the rows of every object, their indexes, the shared lock
:mod:`~sfsync.emulator.matching`      duplicate rules and campaign membership
:mod:`~sfsync.emulator.transactions`  transactions, timestamps, late visibility, what readers see
:mod:`~sfsync.emulator.values`        REST JSON values checked and converted to stored values
:mod:`~sfsync.emulator.derived`       fields the org computes on save, auto numbers
:mod:`~sfsync.emulator.writes`        create, update, upsert, system touch
:mod:`~sfsync.emulator.leads`         lead conversion
:mod:`~sfsync.emulator.recycle_bin`   delete, undelete, purge, the delete log
:mod:`~sfsync.emulator.replication`   getUpdated, getDeleted
:mod:`~sfsync.emulator.seed`          the org's users, Organization and RecordType rows
====================================  ===========================================================

Values arrive as REST JSON values and are stored typed (see :mod:`sfsync.emulator.model`). Every rejection
is an :class:`sfsync.emulator.errors.ApiError` with Salesforce's error code and wording
(:class:`MultipleMatches` and :class:`DuplicatesDetected` among them). Stored rows are never mutated in
place: a write replaces the row with a new dict, so a row handed to a reader stays a consistent version
of the record. The store is thread-safe: one lock guards every call.

Transactions (:meth:`OrgStore.transaction`; every public write opens one, the app opens one per API
call, Bulk per chunk of 200 rows): the records a transaction writes share one timestamp, and it may
commit late (``visibility_delay``, or what :attr:`OrgStore.visibility_policy` answers); see
:mod:`sfsync.emulator.transactions`. :meth:`OrgStore.snapshot` / :meth:`OrgStore.restore` save and
roll back everything (records, delete log, counters, stamps, late writes), also inside an open
transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator import org as org_file
from sfsync.emulator.derived import DerivedFields
from sfsync.emulator.errors import DuplicatesDetected, MultipleMatches
from sfsync.emulator.leads import convert_lead
from sfsync.emulator.model import FieldDef, ObjectDef, Row, Schema
from sfsync.emulator.org import OrgSettings
from sfsync.emulator.recycle_bin import RecycleBin
from sfsync.emulator.replication import Replication
from sfsync.emulator.seed import OrgSeed
from sfsync.emulator.tables import Tables
from sfsync.emulator.transactions import Transactions, View, VisibilityPolicy
from sfsync.emulator.values import ValueConverter
from sfsync.emulator.writes import RecordWriter

__all__ = ["DuplicatesDetected", "MultipleMatches", "OrgStore", "VisibilityPolicy"]


class OrgStore:
    """All records of one emulated org. Thread-safe (one lock); rows are replaced, never mutated."""

    def __init__(
        self,
        schema: Schema,
        *,
        org_id: str,
        integration_user_id: str,
        clock: Callable[[], dt.datetime] | None = None,
        duplicate_rules: Iterable[tuple[str, tuple[str, ...]]] = (),
    ) -> None:
        self.schema = schema
        self.org_id = ids.normalize(org_id)
        self.integration_user_id = ids.normalize(integration_user_id)
        self.org: OrgSettings = OrgSettings(id=self.org_id)
        self._tables = Tables(schema, duplicate_rules)
        self._lock = self._tables.lock
        self._transactions = Transactions(
            self._tables,
            clock=clock or (lambda: dt.datetime.now(dt.UTC)),
            integration_user_id=self.integration_user_id,
        )
        self._view = View(self._tables, self._transactions)
        self._derived = DerivedFields(self._transactions, self._view)
        self._writer = RecordWriter(self._tables, self._transactions, ValueConverter(self._tables), self._derived)
        self._bin = RecycleBin(self._tables, self._transactions)
        self._replication = Replication(self._tables, self._transactions, self._view, self._bin)
        self._seed = OrgSeed(
            self._tables, self._transactions, org_id=self.org_id, integration_user_id=self.integration_user_id
        )
        self._seed.put_user(
            {
                "Id": self.integration_user_id,
                "Username": f"integration.{self.org_id}@emulator.invalid",
                "FirstName": "Integration",
                "LastName": "User",
                "Alias": "integ",
                "Email": "integration@emulator.invalid",
            }
        )
        self._seed.put_organization(self.org.name)
        self._seed.put_record_types()

    @classmethod
    def from_org_file(
        cls, path: str | Path | None = None, *, clock: Callable[[], dt.datetime] | None = None
    ) -> OrgStore:
        """A store for the org declared in ``path`` (None: the shipped ``default_org.yaml``); raises
        :class:`sfsync.emulator.org.OrgFileError` for an invalid file."""
        return cls.from_definition(org_file.load(path), clock=clock)

    @classmethod
    def from_definition(
        cls, definition: org_file.OrgDefinition, *, clock: Callable[[], dt.datetime] | None = None
    ) -> OrgStore:
        """A store for an org file already read. Its schema's object definitions may be shared with other
        stores (several orgs of one org file): a store copies one before changing it (:meth:`put_field`)."""
        store = cls(
            Schema(objects=dict(definition.schema.objects)),  # this store's own map of the shared definitions
            org_id=definition.settings.id,
            integration_user_id=definition.integration_user_id,
            clock=clock,
            duplicate_rules=definition.duplicate_rules,
        )
        store.org = definition.settings.model_copy(update={"id": store.org_id})
        for values in definition.users:
            store._seed.put_user(values)
        store._seed.put_organization(store.org.name)
        return store

    @property
    def users(self) -> dict[str, Row]:
        """The org's users by id."""
        return dict(self._tables.by_name["user"].live)

    @property
    def visibility_policy(self) -> VisibilityPolicy | None:
        """Asked for the visibility delay of a committing write transaction given none (None: no delay)."""
        return self._transactions.visibility_policy

    @visibility_policy.setter
    def visibility_policy(self, policy: VisibilityPolicy | None) -> None:
        self._transactions.visibility_policy = policy

    # ----------------------------------------------------------------- reading (RecordSource)
    def rows(self, sobject: str, *, include_deleted: bool = False) -> list[Row]:
        """Every live row of ``sobject`` readers see (unknown object: none); recycle-bin rows too when asked."""
        return self._view.rows(sobject, include_deleted=include_deleted)

    def row_by_id(self, record_id: str, *, visible_only: bool = True) -> tuple[ObjectDef, Row] | None:
        """The row with this id (live or in the recycle bin) as readers see it; ``visible_only=False``: as
        written, late-visible or not (what a writer holding the row sees)."""
        return self._view.row_by_id(record_id, visible_only=visible_only)

    def get(self, sobject: str, record_id: str) -> Row | None:
        """The live (not deleted) row of ``sobject`` with this id as readers see it, or None."""
        return self._view.get(sobject, record_id)

    def count(self, sobject: str) -> int:
        """How many live rows of ``sobject`` readers see."""
        return self._view.count(sobject)

    # ----------------------------------------------------------------- transactions and clock
    @contextmanager
    def transaction(
        self, *, user_id: str | None = None, visibility_delay: dt.timedelta | None = None
    ) -> Iterator[None]:
        """One transaction: its writes share one timestamp (taken now) and become visible together, at
        once or after ``visibility_delay`` (None: as :attr:`visibility_policy` decides). Nested
        transactions join the enclosing one."""
        with self._transactions.transaction(user_id=user_id, visibility_delay=visibility_delay):
            yield

    def pending_visibility(self) -> list[dict[str, Any]]:
        """The writes not yet visible: id, SystemModstamp and when they become visible."""
        return self._transactions.pending_visibility()

    def now(self) -> dt.datetime:
        """The org's time: UTC, millisecond resolution."""
        return self._transactions.now()

    # ----------------------------------------------------------------- writes
    def create(self, sobject: str, values: Mapping[str, Any], *, user_id: str | None = None) -> str:
        """Insert one record; its new 18-character Id."""
        return self._writer.create(sobject, values, user_id=user_id)

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any], *, user_id: str | None = None) -> None:
        """Update one record (fields set to None are cleared)."""
        self._writer.update(sobject, record_id, values, user_id=user_id)

    def edit_as(self, user_id: str, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        """A user (e.g. a sales rep in the UI) edits a record: LastModifiedById is that user."""
        self._writer.update(sobject, record_id, values, user_id=user_id)

    def system_touch(self, sobject: str, record_id: str, values: Mapping[str, Any] | None = None) -> None:
        """An automated process writes (or just touches) a record: SystemModstamp moves, LastModifiedDate
        and LastModifiedById do not. ``values`` bypass field-level security like a system context."""
        self._writer.system_touch(sobject, record_id, values)

    def upsert(
        self, sobject: str, ext_field: str, ext_value: Any, values: Mapping[str, Any], *, user_id: str | None = None
    ) -> tuple[str, bool]:
        """Insert or update by an external id (or idLookup) field: ``(id, created)``."""
        return self._writer.upsert(sobject, ext_field, ext_value, values, user_id=user_id)

    def match_external_id(self, sobject: str, ext_field: str, ext_value: Any) -> list[str]:
        """Ids of the live records whose external id (or idLookup) field equals ``ext_value``, matched as an
        upsert matches: case-insensitively unless the field is case-sensitive. NOT_FOUND for other fields."""
        return self._writer.match_external_id(sobject, ext_field, ext_value)

    def convert_lead(
        self,
        lead_id: str,
        *,
        contact_id: str | None = None,
        account_id: str | None = None,
        converted_status: str = "Closed - Converted",
        user_id: str | None = None,
    ) -> tuple[str, str]:
        """Convert a lead (like SOAP ``convertLead``): ``(account_id, contact_id)``, creating what is not given."""
        return convert_lead(
            self._writer,
            self._view,
            lead_id,
            contact_id=contact_id,
            account_id=account_id,
            converted_status=converted_status,
            user_id=user_id,
        )

    # ----------------------------------------------------------------- recycle bin
    def delete(self, sobject: str, record_id: str, *, user_id: str | None = None) -> None:
        """Move a record (and its cascade-delete children) to the recycle bin."""
        self._bin.delete(sobject, record_id, user_id=user_id)

    def undelete(self, record_id: str, *, user_id: str | None = None) -> None:
        """Restore a record from the recycle bin (with the children its delete took along)."""
        self._bin.undelete(record_id, user_id=user_id)

    def purge(self, record_id: str, *, user_id: str | None = None) -> None:
        """Hard delete (Bulk ``hardDelete``, ``emptyRecycleBin(ids)``): the record (live or in the recycle
        bin) is gone for good, from queryAll too; its delete-log entry stays, so getDeleted still lists it."""
        self._bin.purge(record_id, user_id=user_id)

    def empty_recycle_bin(self, *, truncate_delete_log: bool = True, user_id: str | None = None) -> int:
        """An administrator empties the recycle bin: every deleted record is purged; how many. With
        ``truncate_delete_log`` the delete log goes too (getDeleted's ``earliestDateAvailable`` becomes
        now: "or earlier if an administrator has purged the Recycle Bin")."""
        return self._bin.empty_recycle_bin(truncate_delete_log=truncate_delete_log, user_id=user_id)

    def expire_delete_log(self, before: dt.datetime) -> None:
        """Drop delete-log entries older than ``before`` (as Salesforce's log purge does)."""
        self._bin.expire_delete_log(before)

    # ----------------------------------------------------------------- replication
    def updated_ids(
        self, sobject: str, start: dt.datetime | str, end: dt.datetime | str
    ) -> tuple[list[str], dt.datetime]:
        """getUpdated: ids whose SystemModstamp is in ``[start, latestDateCovered)``, and latestDateCovered.
        Seconds are ignored; the window may start at most 30 days ago."""
        return self._replication.updated_ids(sobject, start, end)

    def deleted(
        self, sobject: str, start: dt.datetime | str, end: dt.datetime | str
    ) -> tuple[list[dict[str, Any]], dt.datetime, dt.datetime]:
        """getDeleted: ``([{"id", "deletedDate"}], earliestDateAvailable, latestDateCovered)`` (datetimes).
        Entries older than 15 days (or expired with :meth:`expire_delete_log`) are not available."""
        return self._replication.deleted(sobject, start, end)

    # ----------------------------------------------------------------- admin
    def snapshot(self) -> dict[str, Any]:
        """Every record, the delete log and counters (rows are shared, not copied: they are immutable)."""
        with self._lock:
            return {
                "tables": self._tables.snapshot(),
                **self._bin.snapshot(),
                "counters": dict(self._derived.counters),
                **self._transactions.snapshot(),
            }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Go back to the state of a :meth:`snapshot` (only the records that changed since are re-indexed)."""
        self._restore(snapshot, full=False)

    def refresh_schema(self) -> None:
        """Recompile after the schema changed (fields added); keeps every record."""
        with self._lock:
            saved = self.snapshot()
            self._tables.compile()
            self._restore(saved, full=True)

    def remove_field(self, sobject: str, name: str) -> FieldDef:
        """Take field ``name`` off ``sobject`` (deleted, or hidden from the API user): describes, queries
        and writes no longer know it; the rows keep their values, which :meth:`put_field` shows again.
        Returns its definition; KeyError for an unknown object or field."""
        with self._lock:
            obj = self.schema.get(sobject)
            definition = obj.field(name) if obj is not None else None
            if obj is None or definition is None:
                raise KeyError(f"{sobject}.{name}")
            del self._own(obj).fields[definition.name.lower()]
            self.refresh_schema()
            return definition

    def put_field(self, sobject: str, definition: FieldDef) -> None:
        """Add ``definition`` to ``sobject``, or replace the field of that name; KeyError for an unknown object."""
        with self._lock:
            obj = self.schema.get(sobject)
            if obj is None:
                raise KeyError(sobject)
            self._own(obj).add(definition)
            self.refresh_schema()

    def _own(self, obj: ObjectDef) -> ObjectDef:
        """A copy of ``obj`` that replaces it in this store's schema, to change: the object definitions of a
        schema may be shared with other orgs' stores (:meth:`from_definition`), never changed in place."""
        mine = dataclasses.replace(
            obj,
            fields=dict(obj.fields),
            child_relationships=list(obj.child_relationships),
            record_type_infos=[dict(info) for info in obj.record_type_infos],
        )
        self.schema.objects[obj.name.lower()] = mine
        return mine

    def reset(self) -> None:
        """Remove every record except the org's users."""
        with self._lock:
            self._clear()
            self._seed.reseed(self.org.name)

    def _restore(self, snapshot: Mapping[str, Any], *, full: bool) -> None:
        with self._lock:
            self._tables.restore(snapshot["tables"], full=full)
            self._bin.restore(snapshot)
            self._derived.counters = dict(snapshot["counters"])
            self._transactions.restore(snapshot)

    def _clear(self) -> None:
        self._tables.clear()
        self._bin.clear()
        self._derived.clear()
        self._transactions.clear()
