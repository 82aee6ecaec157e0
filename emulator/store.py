"""The emulated org's records: an in-memory store that validates writes the way Salesforce does.

:class:`OrgStore` implements :class:`sfsync.emulator.model.RecordSource` (what SOQL, SOSL and Bulk read) plus
the writes the REST API performs: create, update, upsert by external id, delete to the recycle bin,
undelete, hard delete, lead conversion, and the replication feeds (getUpdated / getDeleted).

Values arrive as REST JSON values and are stored typed (see :mod:`sfsync.emulator.model`). Every rejection
is an :class:`sfsync.emulator.errors.ApiError` with Salesforce's error code and wording. Stored rows are
never mutated in place: a write replaces the row with a new dict, so a row handed to a reader stays
a consistent version of the record.

Transactions (:meth:`OrgStore.transaction`; every public write opens one, the app opens one per API
call, Bulk per chunk of 200 rows). As in a real org, the timestamp is taken when the transaction
starts, so every record it writes shares one ``SystemModstamp``/``LastModifiedDate`` (the
getUpdated guide: while a long-running transaction is open, ``latestDateCovered`` is that
transaction's start time). A record written twice in one transaction, or again within the same
millisecond, still gets a strictly later stamp (+1 ms).

Late visibility. A transaction may commit late (``visibility_delay``: a long trigger chain, a flow, a
big DML): its rows carry the stamp of its start, but until the delay has passed every reader (SOQL
query/queryAll, SOSL, Bulk query, retrieve, getUpdated, getDeleted) still sees the record as it was
before the transaction (or not at all when it created the record) -- the 1-3 s late, below-the-cursor
rows pollers miss. Once visible, the row has its old stamp. A later write to such a record commits the
late one first (a real writer would wait for the row lock). getUpdated/getDeleted hold
``latestDateCovered`` at the start minute of the oldest uncommitted transaction, as the guide says.

Deletes. ``delete`` moves a record to the recycle bin (``IsDeleted`` = true in queryAll, an entry in
the delete log that getDeleted reads); ``undelete`` restores it (its delete-log entry goes, it
reappears in query with a new stamp); ``purge`` hard-deletes (Bulk ``hardDelete``,
``emptyRecycleBin(ids)``): the row is gone from queryAll at once, while its delete-log entry stays, so
getDeleted still lists it within the 15-day window (a real org may show emptied rows to queryAll for a
while, typically 24 h -- the emulator takes the harder case). ``empty_recycle_bin`` purges every
recycle-bin row and, per the getDeleted guide ("or earlier if an administrator has purged the Recycle
Bin"), truncates the delete log: ``earliestDateAvailable`` moves to that moment and earlier deletes
are no longer reported -- only an id-set reconciliation finds them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import FieldDef, ObjectDef, Row, Schema, parse_datetime
from sfsync.emulator.standard import ORGANIZATION_FLAGS

UPDATED_WINDOW = dt.timedelta(days=30)
DELETED_WINDOW = dt.timedelta(days=15)
ID_LIMIT = 600_000
_MS = dt.timedelta(milliseconds=1)
_TEXT = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring"}
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PERSON_NAMED = frozenset({"contact", "lead", "user"})
_NOT_FOUND = "The requested resource does not exist"
_SECURITY = (
    "Please check the security settings of this field and verify that it is read/write for your "
    "profile or permission set."
)


class MultipleMatches(ApiError):  # noqa: N818 - the name other parts code against
    """An upsert's external id matched several records (REST answers 300 with their URLs)."""

    def __init__(self, sobject: str, field_name: str, record_ids: list[str]) -> None:
        super().__init__(
            300,
            "DUPLICATE_EXTERNAL_ID",
            f"{field_name}: more than one record found for external id field: [{', '.join(record_ids)}]",
            [field_name],
        )
        self.sobject = sobject
        self.ids = record_ids

    def urls(self, api_version: str) -> list[str]:
        """The 300 body: ``/services/data/vXX.X/sobjects/<type>/<id>`` for every match."""
        version = api_version if api_version.startswith("v") else f"v{api_version}"
        return [f"/services/data/{version}/sobjects/{self.sobject}/{record_id}" for record_id in self.ids]


class DuplicatesDetected(ApiError):  # noqa: N818 - Salesforce error code
    """An active duplicate rule blocked the save."""

    def __init__(self, sobject: str, rule: str, record_ids: list[str]) -> None:
        super().__init__(400, "DUPLICATES_DETECTED", "Use one of these records?", [])
        self.sobject = sobject
        self.rule = rule
        self.ids = record_ids

    def item(self) -> dict[str, Any]:
        body = super().item()
        body["duplicateResult"] = {
            "allowSave": False,
            "duplicateRule": self.rule,
            "duplicateRuleEntityType": self.sobject,
            "errorMessage": self.message,
            "matchResults": [
                {
                    "entityType": self.sobject,
                    "errors": [],
                    "matchEngine": "ExactMatchEngine",
                    "matchRecords": [
                        {
                            "additionalInformation": [],
                            "fieldDiffs": [],
                            "matchConfidence": 100.0,
                            "record": {"attributes": {"type": self.sobject}, "Id": record_id},
                        }
                        for record_id in self.ids
                    ],
                    "rule": f"{self.rule}_Match",
                    "size": len(self.ids),
                    "success": True,
                }
            ],
        }
        return body


def _not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", _NOT_FOUND)


def _deleted() -> ApiError:
    return ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])


def _label(definition: FieldDef) -> str:
    return definition.label or definition.name


def _parser_error(kind: str, value: Any) -> ApiError:
    token = "START_OBJECT" if isinstance(value, dict) else "START_ARRAY" if isinstance(value, list) else "VALUE_STRING"
    shown = "{" if isinstance(value, dict) else "[" if isinstance(value, list) else value
    return ApiError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {token} value {shown} or request may be missing a required field",
    )


def _floor_ms(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _floor_minute(value: dt.datetime) -> dt.datetime:
    return value.replace(second=0, microsecond=0)


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _index_key(definition: FieldDef, value: Any) -> Any:
    if isinstance(value, str) and not definition.case_sensitive:
        return value.lower()
    return value


@dataclass
class _Table:
    """One object's rows and everything precomputed to write them fast."""

    obj: ObjectDef
    template: Row
    createable: frozenset[str]
    updateable: frozenset[str]
    required: tuple[FieldDef, ...]
    required_on_update: frozenset[str]
    indexed: tuple[FieldDef, ...]  # external id / idLookup / unique fields (not Id)
    relationships: dict[str, FieldDef]  # lower-cased relationship name -> reference field
    auto_numbers: tuple[FieldDef, ...]
    cascade_fields: tuple[str, ...]  # reference fields whose parent's delete cascades here
    live: dict[str, Row] = field(default_factory=dict)
    deleted: dict[str, Row] = field(default_factory=dict)
    indexes: dict[str, dict[Any, set[str]]] = field(default_factory=dict)

    @classmethod
    def build(cls, obj: ObjectDef) -> _Table:
        template: Row = {}
        for definition in obj.fields.values():
            value = definition.default_value
            if definition.type == "boolean":
                value = bool(value)
            template[definition.name] = value
        fields = list(obj.fields.values())
        indexed = tuple(f for f in fields if f.name != "Id" and (f.external_id or f.id_lookup or f.unique))
        return cls(
            obj=obj,
            template=template,
            createable=frozenset(f.name.lower() for f in fields if f.createable),
            updateable=frozenset(f.name.lower() for f in fields if f.updateable),
            required=tuple(
                f
                for f in fields
                if f.createable and not f.nillable and not f.defaulted_on_create and f.type != "boolean"
            ),
            required_on_update=frozenset(
                f.name for f in fields if f.updateable and not f.nillable and f.type != "boolean"
            ),
            indexed=indexed,
            relationships={
                f.relationship_name.lower(): f for f in fields if f.type == "reference" and f.relationship_name
            },
            auto_numbers=tuple(f for f in fields if getattr(f, "auto_number", None)),
            cascade_fields=tuple(f.name for f in fields if f.type == "reference" and f.cascade_delete),
            indexes={f.name: {} for f in indexed},
        )


@dataclass
class _DeleteEntry:
    sobject: str
    record_id: str
    deleted_at: dt.datetime


VisibilityPolicy = Callable[[str, frozenset[str]], dt.timedelta | None]
"""Decides a committing transaction's visibility delay from its user id and the objects it wrote."""


@dataclass
class _Before:
    """A record as readers saw it before a transaction wrote it."""

    table: _Table
    row: Row | None  # None: the record did not exist
    in_bin: bool  # ``row`` is a recycle-bin row


@dataclass
class _Transaction:
    actor: str
    now: dt.datetime  # its one timestamp
    delay: dt.timedelta | None  # None: ask the visibility policy
    written: dict[str, _Before] = field(default_factory=dict)


@dataclass
class _Pending:
    """A committed-late write: readers see ``before`` until ``visible_at``."""

    before: _Before
    stamp: dt.datetime
    visible_at: dt.datetime


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
        from sfsync.emulator.org import OrgSettings

        self.schema = schema
        self.org_id = ids.normalize(org_id)
        self.integration_user_id = ids.normalize(integration_user_id)
        self.org: OrgSettings = OrgSettings(id=self.org_id)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.RLock()
        self._duplicate_rules = [(name, tuple(fields)) for name, fields in duplicate_rules]
        self._initial_users: list[dict[str, Any]] = []
        self._txn: _Transaction | None = None
        self.visibility_policy: VisibilityPolicy | None = None
        self._compile()
        self._clear()
        self._put_user(
            {
                "Id": self.integration_user_id,
                "Username": f"integration.{self.org_id}@emulator.invalid",
                "FirstName": "Integration",
                "LastName": "User",
                "Alias": "integ",
                "Email": "integration@emulator.invalid",
            }
        )
        self._put_organization()
        self._put_record_types()

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_org_file(
        cls, path: str | Path | None = None, *, clock: Callable[[], dt.datetime] | None = None
    ) -> OrgStore:
        """A store for the org declared in ``path`` (None: the shipped ``default_org.yaml``)."""
        from sfsync.emulator import org

        definition = org.load(path)
        store = cls(
            definition.schema,
            org_id=definition.settings.id,
            integration_user_id=definition.integration_user_id,
            clock=clock,
            duplicate_rules=definition.duplicate_rules,
        )
        store.org = definition.settings.model_copy(update={"id": store.org_id})
        for values in definition.users:
            store._put_user(values)
        store._put_organization()
        return store

    def _compile(self) -> None:
        self._tables = {name: _Table.build(obj) for name, obj in self.schema.objects.items()}
        self._prefixes = {obj.key_prefix: name for name, obj in self.schema.objects.items()}
        self._rules_by_object: dict[str, list[tuple[int, tuple[FieldDef, ...]]]] = {}
        for number, (sobject, names) in enumerate(self._duplicate_rules):
            obj = self.schema.get(sobject)
            if obj is None:
                continue
            fields = tuple(f for f in (obj.field(n) for n in names) if f is not None)
            self._rules_by_object.setdefault(obj.name.lower(), []).append((number, fields))

    def _clear(self) -> None:
        for table in self._tables.values():
            table.live.clear()
            table.deleted.clear()
            for index in table.indexes.values():
                index.clear()
        self._owner: dict[str, _Table] = {}  # id -> table holding it (live or deleted)
        self._children: dict[str, set[str]] = {}  # parent id -> ids of cascade-delete children
        self._cascaded: dict[str, str] = {}  # child id -> parent id whose delete took it along
        self._delete_log: list[_DeleteEntry] = []
        self._log_expired_before: dt.datetime | None = None
        self._counters: dict[tuple[str, str], int] = {}
        self._members: dict[tuple[str, str], str] = {}  # (campaign, person) -> CampaignMember id
        self._rule_index: dict[int, dict[tuple[Any, ...], set[str]]] = {
            n: {} for rules in self._rules_by_object.values() for n, _ in rules
        }
        self._last_stamp: dict[str, dt.datetime] = {}
        self._pending: dict[str, _Pending] = {}

    def refresh_schema(self) -> None:
        """Recompile after the schema changed (fields added); keeps every record."""
        with self._lock:
            saved = self.snapshot()
            self._compile()
            self._restore(saved, full=True)

    def _put_user(self, values: Mapping[str, Any]) -> str:
        """Create or overwrite a User row without the API's validation (org setup)."""
        with self._lock:
            table = self._tables["user"]
            user_id = ids.normalize(values["Id"])
            now = self._stamp(user_id)
            row = dict(table.live.get(user_id) or table.template)
            row.update({k: v for k, v in values.items() if table.obj.field(k) is not None})
            row.update(
                Id=user_id,
                CreatedDate=row.get("CreatedDate") or now,
                LastModifiedDate=now,
                SystemModstamp=now,
                CreatedById=row.get("CreatedById") or self.integration_user_id,
                LastModifiedById=self.integration_user_id,
            )
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p)
            self._unindex(table, user_id)
            table.live[user_id] = row
            self._owner[user_id] = table
            self._index(table, row)
            self._initial_users = [u for u in self._initial_users if u["Id"] != user_id] + [dict(row)]
            return user_id

    def _put_organization(self) -> None:
        """The one Organization row (Id = org id), read-only through the API, as in a real org."""
        table = self._tables.get("organization")
        if table is None:
            return
        with self._lock:
            now = self._stamp(self.org_id)
            row = dict(table.template)
            row.update(
                Id=self.org_id,
                Name=getattr(self.org, "name", None) or "Emulated Org",
                Country="US",
                PrimaryContact="Integration User",
                DefaultLocaleSidKey="en_US",
                TimeZoneSidKey="GMT",
                LanguageLocaleKey="en_US",
                UiSkin="Theme3",
                SignupCountryIsoCode="US",
                OrganizationType="Developer Edition",
                InstanceName="EMU1",
                WebToCaseDefaultOrigin="Web",
                FiscalYearStartMonth=1,
                NumKnowledgeService=0,
                MonthlyPageViewsUsed=0,
                MonthlyPageViewsEntitlement=0,
                TrialExpirationDate=now + dt.timedelta(days=30),
                Address={
                    "city": None,
                    "country": "US",
                    "geocodeAccuracy": None,
                    "latitude": None,
                    "longitude": None,
                    "postalCode": None,
                    "state": None,
                    "street": None,
                },
                DefaultAccountAccess="Edit",
                DefaultContactAccess="ControlledByParent",
                DefaultOpportunityAccess="Edit",
                DefaultLeadAccess="ReadEditTransfer",
                DefaultCaseAccess="ReadEditTransfer",
                DefaultCalendarAccess="HideDetailsInsert",
                DefaultPricebookAccess="ReadSelect",
                DefaultCampaignAccess="All",
                CreatedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
                CreatedById=self.integration_user_id,
                LastModifiedById=self.integration_user_id,
            )
            for flag in ORGANIZATION_FLAGS:
                if row.get(flag) is None:
                    row[flag] = False
            table.live[self.org_id] = row
            self._owner[self.org_id] = table
            self._index(table, row)

    def _put_record_types(self) -> None:
        """One read-only RecordType row per record type of the schema (the master has none, as in a real org)."""
        table = self._tables.get("recordtype")
        if table is None:
            return
        with self._lock:
            for obj in self.schema:
                for info in obj.record_type_infos:
                    if info.get("master"):
                        continue
                    record_id = ids.normalize(str(info["recordTypeId"]))
                    now = self._stamp(record_id)
                    row = dict(table.template)
                    row.update(
                        Id=record_id,
                        Name=info["name"],
                        DeveloperName=info["developerName"],
                        SobjectType=obj.name,
                        IsActive=bool(info["active"]),
                        CreatedDate=now,
                        LastModifiedDate=now,
                        SystemModstamp=now,
                        CreatedById=self.integration_user_id,
                        LastModifiedById=self.integration_user_id,
                    )
                    self._unindex(table, record_id)
                    table.live[record_id] = row
                    self._owner[record_id] = table
                    self._index(table, row)

    @property
    def users(self) -> dict[str, Row]:
        """The org's users by id."""
        return dict(self._tables["user"].live)

    # ----------------------------------------------------------------- reading (RecordSource)
    def _table(self, sobject: str) -> _Table:
        table = self._tables.get(sobject.lower())
        if table is None:
            raise _not_found()
        return table

    def rows(self, sobject: str, *, include_deleted: bool = False) -> list[Row]:
        table = self._tables.get(sobject.lower())
        if table is None:
            return []
        with self._lock:
            pending = self._late()
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
            late = self._late().get(canonical) if visible_only else None
            if late is not None:
                before = late.before
                return (before.table.obj, before.row) if before.row is not None else None
            table = self._owner.get(canonical)
            if table is None:
                return None
            row = table.live.get(canonical) or table.deleted.get(canonical)
            return (table.obj, row) if row is not None else None

    def get(self, sobject: str, record_id: str) -> Row | None:
        """The live (not deleted) row of ``sobject`` with this id as readers see it, or None."""
        table = self._tables.get(sobject.lower())
        canonical = ids.try_normalize(record_id)
        if table is None or canonical is None:
            return None
        with self._lock:
            late = self._late().get(canonical)
            if late is not None:
                before = late.before
                return before.row if before.table is table and not before.in_bin else None
            return table.live.get(canonical)

    def count(self, sobject: str) -> int:
        table = self._tables.get(sobject.lower())
        if table is None:
            return 0
        with self._lock:
            return len(self.rows(sobject)) if self._late() else len(table.live)

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
            actor = ids.normalize(user_id) if user_id else self.integration_user_id
            self._txn = _Transaction(actor=actor, now=self.now(), delay=visibility_delay)
            try:
                yield
            finally:
                txn, self._txn = self._txn, None
                self._commit(txn)

    def _written(self, table: _Table, record_id: str) -> None:
        """Note the state readers see before the open transaction first writes ``record_id``."""
        txn = self._txn
        if txn is None or record_id in txn.written:
            return
        self._pending.pop(record_id, None)  # a later write commits a late one first
        if record_id in table.live:
            txn.written[record_id] = _Before(table, table.live[record_id], in_bin=False)
        elif record_id in table.deleted:
            txn.written[record_id] = _Before(table, table.deleted[record_id], in_bin=True)
        else:
            txn.written[record_id] = _Before(table, None, in_bin=False)

    def _commit(self, txn: _Transaction) -> None:
        if not txn.written:
            return
        delay = txn.delay
        if delay is None and self.visibility_policy is not None:
            delay = self.visibility_policy(txn.actor, frozenset(b.table.obj.name for b in txn.written.values()))
        if delay is None or delay <= dt.timedelta(0):
            return
        visible_at = _as_utc(self._clock()) + delay
        for record_id, before in txn.written.items():
            exists = record_id in before.table.live or record_id in before.table.deleted
            if before.row is None and not exists:
                continue  # created and purged in the same transaction: nothing to hide
            self._pending[record_id] = _Pending(before, txn.now, visible_at)

    def _late(self) -> dict[str, _Pending]:
        """The late writes not yet visible (those whose time has come are dropped)."""
        if not self._pending:
            return self._pending
        now = _as_utc(self._clock())
        due = [record_id for record_id, late in self._pending.items() if late.visible_at <= now]
        for record_id in due:
            del self._pending[record_id]
        return self._pending

    def pending_visibility(self) -> list[dict[str, Any]]:
        """The writes not yet visible: id, SystemModstamp and when they become visible."""
        with self._lock:
            return [
                {"id": record_id, "SystemModstamp": late.stamp, "visible_at": late.visible_at}
                for record_id, late in self._late().items()
            ]

    def _oldest_late_stamp(self) -> dt.datetime | None:
        pending = self._late()
        return min((late.stamp for late in pending.values()), default=None)

    # ----------------------------------------------------------------- clock
    def now(self) -> dt.datetime:
        return _floor_ms(_as_utc(self._clock()))

    def _stamp(self, record_id: str, table: _Table | None = None) -> dt.datetime:
        """A SystemModstamp for a write to ``record_id``: the open transaction's timestamp (or now), ms
        resolution, strictly increasing per record."""
        if table is not None:
            self._written(table, record_id)
        now = self._txn.now if self._txn is not None else self.now()
        previous = self._last_stamp.get(record_id)
        if previous is not None and now <= previous:
            now = previous + _MS
        self._last_stamp[record_id] = now
        return now

    # ----------------------------------------------------------------- value conversion
    def _convert(self, table: _Table, definition: FieldDef, value: Any) -> Any:
        kind = definition.type
        if value is None:
            return False if kind == "boolean" else None
        if kind in _TEXT:
            if isinstance(value, str):
                text = value
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | float):
                text = str(value)
            else:
                raise _parser_error("string", value)
            if text == "":
                return None
            if kind == "multipicklist":
                parts = [p.strip() for p in text.split(";") if p.strip()]
                text = ";".join(dict.fromkeys(parts))
            if definition.length and len(text) > definition.length:
                raise ApiError(
                    400,
                    "STRING_TOO_LONG",
                    f"{_label(definition)}: data value too large: {text} (max length={definition.length})",
                    [definition.name],
                )
            if kind == "email" and not _EMAIL.match(text):
                raise ApiError(
                    400,
                    "INVALID_EMAIL_ADDRESS",
                    f"{_label(definition)}: invalid email address: {text}",
                    [definition.name],
                )
            if definition.restricted_picklist:
                allowed = definition.picklist_values
                values = text.split(";") if kind == "multipicklist" else [text]
                bad = next((v for v in values if v not in allowed), None)
                if bad is not None:
                    raise ApiError(
                        400,
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{_label(definition)}: bad value for restricted picklist field: {bad}",
                        [definition.name],
                    )
            return text
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise _parser_error("boolean", value)
        if kind in ("int", "double", "currency", "percent"):
            return self._number(definition, value)
        if kind == "date":
            if isinstance(value, dt.datetime):
                return _as_utc(value).date()
            if isinstance(value, dt.date):
                return value
            if isinstance(value, str):
                try:
                    return dt.date.fromisoformat(value.strip())
                except ValueError:
                    pass
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of date from VALUE_STRING value "
                f"{value} or value is invalid or request may be missing a required field",
            )
        if kind == "datetime":
            if isinstance(value, dt.datetime):
                return _floor_ms(_as_utc(value))
            if isinstance(value, str):
                try:
                    if len(value.strip()) == 10:
                        day = dt.date.fromisoformat(value.strip())
                        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
                    return _floor_ms(parse_datetime(value))
                except ValueError:
                    pass
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of datetime from VALUE_STRING "
                f"value {value} or value is invalid or request may be missing a required field",
            )
        if kind == "reference":
            if definition.name == "RecordTypeId":
                return self._record_type(table.obj, definition, value)
            return self._reference(definition, value)
        return value

    def _number(self, definition: FieldDef, value: Any) -> int | float:
        kind = definition.type
        soap = "int" if kind == "int" else "double"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _parser_error(soap, value)
        number: int | float
        if isinstance(value, str):
            try:
                number = (
                    float(value.strip())
                    if kind != "int" or "." in value or "e" in value.lower()
                    else int(value.strip())
                )
            except ValueError:
                raise _parser_error(soap, value) from None
        else:
            number = value
        if isinstance(number, float) and not math.isfinite(number):
            raise _parser_error(soap, value)
        if kind == "int":
            if isinstance(number, float):
                if not number.is_integer():
                    raise ApiError(
                        400,
                        "INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{_label(definition)}: value not of required type: {value}",
                        [definition.name],
                    )
                number = int(number)
            digits = getattr(definition, "digits", 0) or 9
            if abs(number) >= 10**digits:
                raise ApiError(
                    400,
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{_label(definition)}: value outside of valid range on numeric field: {value}",
                    [definition.name],
                )
            return number
        scale = definition.scale
        precision = definition.precision or 18
        result = round(float(number), scale)
        if abs(result) >= 10 ** (precision - scale):
            raise ApiError(
                400,
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{_label(definition)}: value outside of valid range on numeric field: {value}",
                [definition.name],
            )
        return result

    def _reference(self, definition: FieldDef, value: Any) -> str:
        canonical = ids.try_normalize(value) if isinstance(value, str) else None
        if canonical is None:
            raise ApiError(
                400, "MALFORMED_ID", f"{_label(definition)}: id value of incorrect type: {value}", [definition.name]
            )
        target_name = self._prefixes.get(canonical[:3])
        if target_name is None or self.schema.objects[target_name].name not in definition.reference_to:
            if canonical[:3] == "00G" and "Group" in definition.reference_to:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [definition.name])
            raise ApiError(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                f"{_label(definition)}: id value of incorrect type: {value}",
                [definition.name],
            )
        table = self._tables[target_name]
        if canonical not in table.live:
            if canonical in table.deleted:
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [definition.name])
            raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [definition.name])
        return canonical

    def _record_type(self, obj: ObjectDef, definition: FieldDef, value: Any) -> str:
        """An active record type of ``obj`` (not the master, once the object has record types)."""
        canonical = ids.try_normalize(value) if isinstance(value, str) else None
        if canonical is None:
            raise ApiError(
                400, "MALFORMED_ID", f"{_label(definition)}: id value of incorrect type: {value}", [definition.name]
            )
        valid = {ids.normalize(str(i["recordTypeId"])) for i in obj.record_type_infos if i["active"] and i["available"]}
        if canonical not in valid:
            raise ApiError(
                400,
                "INVALID_CROSS_REFERENCE_KEY",
                f"Record Type ID: this ID value isn't valid for the user: {value}",
                [definition.name],
            )
        return canonical

    @staticmethod
    def _default_record_type(obj: ObjectDef) -> str | None:
        """The record type of records created without one (None: the master)."""
        info = next((i for i in obj.record_type_infos if i["defaultRecordTypeMapping"] and not i["master"]), None)
        return ids.normalize(str(info["recordTypeId"])) if info is not None else None

    def _foreign_key(self, definition: FieldDef, value: Any) -> str:
        """Resolve ``{"attributes": {"type": T}, "Ext__c": v}`` given under a relationship name."""
        if not isinstance(value, Mapping):
            raise _parser_error("reference", value)
        attributes = value.get("attributes") or {}
        keys = [k for k in value if k != "attributes"]
        target = attributes.get("type") if isinstance(attributes, Mapping) else None
        if target is None:
            if len(definition.reference_to) != 1:
                raise ApiError(
                    400,
                    "INVALID_FIELD",
                    f"Polymorphic relationship {definition.relationship_name} requires the type in attributes",
                    [definition.name],
                )
            target = definition.reference_to[0]
        table = self._tables.get(str(target).lower())
        if table is None or table.obj.name not in definition.reference_to or len(keys) != 1:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Invalid foreign key relationship: {definition.relationship_name}",
                [definition.name],
            )
        ext = table.obj.field(keys[0])
        if ext is None or not (ext.external_id or ext.id_lookup):
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Field name provided, {keys[0]} is not an External ID or indexed field for {table.obj.name}",
                [definition.name],
            )
        raw = value[keys[0]]
        if ext.name == "Id":
            return self._reference(definition, raw)
        key = _index_key(ext, self._convert(table, ext, raw))
        matches = sorted(table.indexes[ext.name].get(key, ()))
        if not matches:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Foreign key external ID: {raw} not found for field {ext.name} in entity {table.obj.name}",
                [definition.name],
            )
        if len(matches) > 1:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"More than 1 record found for External ID field {ext.name} in entity {table.obj.name}",
                [definition.name],
            )
        return matches[0]

    def _changes(self, table: _Table, values: Mapping[str, Any], *, creating: bool) -> Row:
        """Typed values by canonical field name; raises for unknown, read-only and invalid values."""
        obj = table.obj
        allowed = table.createable if creating else table.updateable
        changes: Row = {}
        resolved: set[str] = set()
        read_only: list[str] = []
        for key, value in values.items():
            lowered = key.lower()
            if lowered == "attributes":
                continue
            definition = obj.fields.get(lowered)
            if definition is None:
                reference = table.relationships.get(lowered)
                if reference is not None and isinstance(value, Mapping):
                    if reference.name.lower() not in allowed:
                        read_only.append(reference.name)
                        continue
                    changes[reference.name] = self._foreign_key(reference, value)
                    resolved.add(reference.name)
                    continue
                raise ApiError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}")
            if lowered == "id":
                if creating and value is not None:
                    raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
                continue
            if lowered not in allowed:
                read_only.append(definition.name)
                continue
            changes[definition.name] = value
        if read_only:
            raise ApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. {_SECURITY}",
                read_only,
            )
        for name, value in changes.items():
            if name not in resolved:
                changes[name] = self._convert(table, obj.fields[name.lower()], value)
        return changes

    # ----------------------------------------------------------------- derived fields
    def _derive(self, table: _Table, row: Row, creating: bool) -> None:
        name = table.obj.name.lower()
        if name in _PERSON_NAMED:
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p) or None
        elif name == "campaignmember":
            status = row.get("Status")
            row["HasResponded"] = status == "Responded"
            if row["HasResponded"] and row.get("FirstRespondedDate") is None:
                row["FirstRespondedDate"] = self.now().date()
            if creating:
                person_id = row.get("ContactId") or row.get("LeadId")
                person = self.row_by_id(person_id) if person_id else None
                row["Type"] = "Contact" if row.get("ContactId") else "Lead"
                row["LeadOrContactId"] = person_id
                if person is not None:
                    for key in ("FirstName", "LastName", "Email", "Name"):
                        row[key] = person[1].get(key)
        elif name == "task":
            row["IsClosed"] = row.get("Status") == "Completed"
            row["IsHighPriority"] = row.get("Priority") == "High"
            what = row.get("WhatId")
            row["AccountId"] = what if what and what.startswith("001") else None
            if row["IsClosed"] and row.get("CompletedDateTime") is None:
                row["CompletedDateTime"] = self.now()
        elif name == "case":
            row["IsClosed"] = row.get("Status") == "Closed"
            if row["IsClosed"] and row.get("ClosedDate") is None:
                row["ClosedDate"] = self.now()
            elif not row["IsClosed"]:
                row["ClosedDate"] = None
        elif name == "opportunity":
            stage = row.get("StageName")
            row["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            row["IsWon"] = stage == "Closed Won"

    def _next_number(self, table: _Table, definition: FieldDef) -> str:
        key = (table.obj.name, definition.name)
        start = int(getattr(definition, "auto_number_start", 1))
        number = self._counters.get(key, start - 1) + 1
        self._counters[key] = number
        template = str(getattr(definition, "auto_number", "{0}"))
        match = re.search(r"\{(0+)\}", template)
        if match is None:
            return f"{template}{number}"
        return template[: match.start()] + str(number).zfill(len(match.group(1))) + template[match.end() :]

    # ----------------------------------------------------------------- indexes and uniqueness
    def _index(self, table: _Table, row: Row) -> None:
        record_id = row["Id"]
        for definition in table.indexed:
            value = row.get(definition.name)
            if value is not None:
                table.indexes[definition.name].setdefault(_index_key(definition, value), set()).add(record_id)
        for number, fields in self._rules_by_object.get(table.obj.name.lower(), ()):
            key = self._rule_key(fields, row)
            if key is not None:
                self._rule_index[number].setdefault(key, set()).add(record_id)
        for name in table.cascade_fields:
            parent = row.get(name)
            if parent:
                self._children.setdefault(parent, set()).add(record_id)
        if table.obj.name == "CampaignMember":
            for key in self._member_keys(row):
                self._members[key] = record_id

    def _unindex(self, table: _Table, record_id: str) -> None:
        row = table.live.get(record_id)
        if row is not None:
            self._unindex_row(table, row)

    def _unindex_row(self, table: _Table, row: Row) -> None:
        record_id = row["Id"]
        for definition in table.indexed:
            value = row.get(definition.name)
            if value is not None:
                bucket = table.indexes[definition.name].get(_index_key(definition, value))
                if bucket is not None:
                    bucket.discard(record_id)
                    if not bucket:
                        del table.indexes[definition.name][_index_key(definition, value)]
        for number, fields in self._rules_by_object.get(table.obj.name.lower(), ()):
            key = self._rule_key(fields, row)
            if key is not None:
                self._rule_index[number].get(key, set()).discard(record_id)
        for name in table.cascade_fields:
            parent = row.get(name)
            if parent and parent in self._children:
                self._children[parent].discard(record_id)
        if table.obj.name == "CampaignMember":
            for key in self._member_keys(row):
                if self._members.get(key) == record_id:
                    del self._members[key]

    @staticmethod
    def _member_keys(row: Row) -> list[tuple[str, str]]:
        return [(row["CampaignId"], person) for person in (row.get("ContactId"), row.get("LeadId")) if person]

    @staticmethod
    def _rule_key(fields: tuple[FieldDef, ...], row: Row) -> tuple[Any, ...] | None:
        key = tuple(_index_key(f, row.get(f.name)) for f in fields)
        return None if any(part is None for part in key) else key

    def _check_unique(self, table: _Table, row: Row, changed: Iterable[str]) -> None:
        record_id = row["Id"]
        changed_set = set(changed)
        for definition in table.indexed:
            if not definition.unique or definition.name not in changed_set:
                continue
            value = row.get(definition.name)
            if value is None:
                continue
            others = table.indexes[definition.name].get(_index_key(definition, value), set()) - {record_id}
            if others:
                other = min(others)
                raise ApiError(
                    400,
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {definition.name} duplicates value on record with id: {other[:15]}",
                    [],
                )
        if table.obj.name == "CampaignMember":
            for key in self._member_keys(row):
                if self._members.get(key, record_id) != record_id:
                    raise ApiError(400, "DUPLICATE_VALUE", "Already a campaign member.")
        for number, fields in self._rules_by_object.get(table.obj.name.lower(), ()):
            rule_key = self._rule_key(fields, row)
            if rule_key is None:
                continue
            others = self._rule_index[number].get(rule_key, set()) - {record_id}
            if others:
                raise DuplicatesDetected(
                    table.obj.name, f"{table.obj.name}_Duplicate_Rule_{number + 1}", sorted(others)
                )

    # ----------------------------------------------------------------- writes
    def create(self, sobject: str, values: Mapping[str, Any], *, user_id: str | None = None) -> str:
        """Insert one record; its new 18-character Id."""
        with self.transaction(user_id=user_id):
            table = self._table(sobject)
            if not table.obj.createable:
                raise ApiError(
                    400, "INVALID_TYPE_FOR_OPERATION", f"entity type {table.obj.name} does not support insert"
                )
            return self._insert(table, self._changes(table, values, creating=True), user_id)

    def _insert(self, table: _Table, changes: Row, user_id: str | None) -> str:
        obj = table.obj
        missing = [f.name for f in table.required if changes.get(f.name) is None]
        if obj.name == "CampaignMember" and not changes.get("ContactId") and not changes.get("LeadId"):
            missing.extend(["ContactId", "LeadId"])
        if missing:
            raise ApiError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        actor = ids.normalize(user_id) if user_id else self.integration_user_id
        record_id = ids.new_id(obj.key_prefix)
        row = dict(table.template)
        row.update(changes)
        now = self._stamp(record_id, table)
        row.update(
            Id=record_id,
            IsDeleted=False,
            CreatedDate=now,
            CreatedById=actor,
            LastModifiedDate=now,
            LastModifiedById=actor,
            SystemModstamp=now,
        )
        if "OwnerId" in row and row["OwnerId"] is None:
            row["OwnerId"] = actor
        if "RecordTypeId" in row and row["RecordTypeId"] is None:
            row["RecordTypeId"] = self._default_record_type(obj)
        if obj.name == "User":
            row.pop("IsDeleted", None)
        for definition in table.auto_numbers:
            row[definition.name] = self._next_number(table, definition)
        if obj.custom and row.get("Name") is None and "name" in obj.fields:
            row["Name"] = record_id
        self._derive(table, row, creating=True)
        self._check_unique(table, row, row.keys())
        table.live[record_id] = row
        self._owner[record_id] = table
        self._index(table, row)
        return record_id

    def _live_row(self, table: _Table, record_id: str) -> tuple[str, Row]:
        canonical = ids.try_normalize(record_id)
        if canonical is None:
            raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}", [])
        row = table.live.get(canonical)
        if row is None:
            if canonical in table.deleted:
                raise _deleted()
            raise _not_found()
        return canonical, row

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any], *, user_id: str | None = None) -> None:
        """Update one record (fields set to None are cleared)."""
        with self.transaction(user_id=user_id):
            table = self._table(sobject)
            canonical, old = self._live_row(table, record_id)
            if table.obj.name == "Lead" and old.get("IsConverted"):
                raise ApiError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
            changes = self._changes(table, values, creating=False)
            self._apply(table, canonical, old, changes, user_id)

    def _apply(
        self,
        table: _Table,
        record_id: str,
        old: Row,
        changes: Row,
        user_id: str | None,
        *,
        bump_last_modified: bool = True,
    ) -> None:
        missing = [n for n, v in changes.items() if v is None and n in table.required_on_update]
        if missing:
            raise ApiError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        row = {**old, **changes}
        now = self._stamp(record_id, table)
        row["SystemModstamp"] = now
        if bump_last_modified:
            row["LastModifiedDate"] = now
            row["LastModifiedById"] = ids.normalize(user_id) if user_id else self.integration_user_id
        self._derive(table, row, creating=False)
        self._check_unique(table, row, changes.keys())
        self._unindex(table, record_id)
        table.live[record_id] = row
        self._index(table, row)

    def edit_as(self, user_id: str, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        """A user (e.g. a sales rep in the UI) edits a record: LastModifiedById is that user."""
        self.update(sobject, record_id, values, user_id=user_id)

    def system_touch(self, sobject: str, record_id: str, values: Mapping[str, Any] | None = None) -> None:
        """An automated process writes (or just touches) a record: SystemModstamp moves, LastModifiedDate
        and LastModifiedById do not. ``values`` bypass field-level security like a system context."""
        with self.transaction():
            table = self._table(sobject)
            canonical, old = self._live_row(table, record_id)
            changes: Row = {}
            for key, value in (values or {}).items():
                definition = table.obj.field(key)
                if definition is None:
                    raise ApiError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {table.obj.name}")
                changes[definition.name] = self._convert(table, definition, value)
            self._apply(table, canonical, old, changes, None, bump_last_modified=False)

    def upsert(
        self, sobject: str, ext_field: str, ext_value: Any, values: Mapping[str, Any], *, user_id: str | None = None
    ) -> tuple[str, bool]:
        """Insert or update by an external id (or idLookup) field: ``(id, created)``."""
        with self.transaction(user_id=user_id):
            table = self._table(sobject)
            definition = table.obj.field(ext_field)
            if definition is None or not (definition.external_id or definition.id_lookup):
                raise ApiError(
                    404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {ext_field}"
                )
            if definition.name == "Id":
                if ext_value is None or ext_value == "":
                    return self._insert(table, self._changes(table, values, creating=True), user_id), True
                self.update(sobject, str(ext_value), values, user_id=user_id)
                return ids.normalize(str(ext_value)), False
            typed = self._convert(table, definition, ext_value)
            if typed is None:
                raise ApiError(400, "MISSING_ARGUMENT", f"{definition.name} not specified", [definition.name])
            matches = sorted(table.indexes[definition.name].get(_index_key(definition, typed), ()))
            if len(matches) > 1:
                raise MultipleMatches(table.obj.name, definition.name, matches)
            if matches:
                record_id = matches[0]
                old = table.live[record_id]
                if table.obj.name == "Lead" and old.get("IsConverted"):
                    raise ApiError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
                body = {k: v for k, v in values.items() if k.lower() != definition.name.lower()}
                self._apply(table, record_id, old, self._changes(table, body, creating=False), user_id)
                return record_id, False
            body = {k: v for k, v in values.items() if k.lower() != definition.name.lower()}
            body[definition.name] = ext_value
            return self._insert(table, self._changes(table, body, creating=True), user_id), True

    def match_external_id(self, sobject: str, ext_field: str, ext_value: Any) -> list[str]:
        """Ids of the live records whose external id (or idLookup) field equals ``ext_value``, matched as an
        upsert matches: case-insensitively unless the field is case-sensitive. NOT_FOUND for other fields."""
        with self._lock:
            table = self._table(sobject)
            definition = table.obj.field(ext_field)
            if definition is None or not (definition.external_id or definition.id_lookup):
                raise ApiError(
                    404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {ext_field}"
                )
            if definition.name == "Id":
                canonical = ids.try_normalize(ext_value)
                return [canonical] if canonical is not None and canonical in table.live else []
            typed = self._convert(table, definition, ext_value)
            if typed is None:
                return []
            return sorted(table.indexes[definition.name].get(_index_key(definition, typed), ()))

    def delete(self, sobject: str, record_id: str, *, user_id: str | None = None) -> None:
        """Move a record (and its cascade-delete children) to the recycle bin."""
        with self.transaction(user_id=user_id):
            table = self._table(sobject)
            canonical, _ = self._live_row(table, record_id)
            if not table.obj.deletable:
                raise ApiError(400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", [])
            actor = ids.normalize(user_id) if user_id else self.integration_user_id
            self._recycle(table, canonical, actor, cascaded_from=None)

    def _recycle(self, table: _Table, record_id: str, actor: str, cascaded_from: str | None) -> None:
        row = table.live.get(record_id)
        if row is None:
            return
        for child_id in sorted(self._children.get(record_id, ())):
            child_table = self._owner.get(child_id)
            if child_table is not None and child_id in child_table.live:
                self._recycle(child_table, child_id, actor, cascaded_from=record_id)
        now = self._stamp(record_id, table)
        self._unindex(table, record_id)
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
        self._delete_log.append(_DeleteEntry(table.obj.name, record_id, now))

    def undelete(self, record_id: str, *, user_id: str | None = None) -> None:
        """Restore a record from the recycle bin (with the children its delete took along)."""
        with self.transaction(user_id=user_id):
            canonical = ids.try_normalize(record_id)
            table = self._owner.get(canonical) if canonical else None
            if canonical is None or table is None:
                raise _not_found()
            if canonical not in table.deleted:
                raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin", [])
            actor = ids.normalize(user_id) if user_id else self.integration_user_id
            self._restore_one(table, canonical, actor)

    def _restore_one(self, table: _Table, record_id: str, actor: str) -> None:
        row = table.deleted[record_id]
        now = self._stamp(record_id, table)
        restored = {
            **row,
            "IsDeleted": False,
            "SystemModstamp": now,
            "LastModifiedDate": now,
            "LastModifiedById": actor,
        }
        self._check_unique(table, restored, restored.keys())
        del table.deleted[record_id]
        self._cascaded.pop(record_id, None)
        table.live[record_id] = restored
        self._index(table, restored)
        self._delete_log = [e for e in self._delete_log if e.record_id != record_id]
        for child_id, parent in list(self._cascaded.items()):
            if parent == record_id:
                child_table = self._owner[child_id]
                self._restore_one(child_table, child_id, actor)

    def purge(self, record_id: str, *, user_id: str | None = None) -> None:
        """Hard delete (Bulk ``hardDelete``, ``emptyRecycleBin(ids)``): the record (live or in the recycle
        bin) is gone for good, from queryAll too; its delete-log entry stays, so getDeleted still lists it."""
        with self.transaction(user_id=user_id):
            canonical = ids.try_normalize(record_id)
            table = self._owner.get(canonical) if canonical else None
            if canonical is None or table is None:
                raise _not_found()
            if canonical in table.live:
                actor = ids.normalize(user_id) if user_id else self.integration_user_id
                self._recycle(table, canonical, actor, cascaded_from=None)
            self._purge_one(table, canonical)

    def _purge_one(self, table: _Table, record_id: str) -> None:
        self._written(table, record_id)
        table.deleted.pop(record_id, None)
        self._owner.pop(record_id, None)
        self._cascaded.pop(record_id, None)
        self._last_stamp.pop(record_id, None)
        self._children.pop(record_id, None)
        for child_id, parent in list(self._cascaded.items()):
            if parent == record_id:
                child_table = self._owner.get(child_id)
                if child_table is not None:
                    self._purge_one(child_table, child_id)

    def empty_recycle_bin(self, *, truncate_delete_log: bool = True, user_id: str | None = None) -> int:
        """An administrator empties the recycle bin: every deleted record is purged; how many. With
        ``truncate_delete_log`` the delete log goes too (getDeleted's ``earliestDateAvailable`` becomes
        now: "or earlier if an administrator has purged the Recycle Bin")."""
        with self.transaction(user_id=user_id):
            doomed = [(t, i) for t in self._tables.values() for i in list(t.deleted)]
            for table, record_id in doomed:
                if record_id in table.deleted:
                    self._purge_one(table, record_id)
            if truncate_delete_log:
                self.expire_delete_log(self._clock())
            return len(doomed)

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
        with self.transaction(user_id=user_id):
            leads = self._tables["lead"]
            canonical, lead = self._live_row(leads, lead_id)
            if lead.get("IsConverted"):
                raise ApiError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
            if account_id is None and contact_id is not None:
                contact_row = self.get("Contact", contact_id)
                if contact_row is None:
                    raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["ContactId"])
                account_id = contact_row.get("AccountId")
            if account_id is None:
                account_id = self._insert(self._tables["account"], {"Name": lead.get("Company")}, user_id)
            else:
                account_id = self._reference(self._tables["contact"].obj.fields["accountid"], account_id)
            if contact_id is None:
                contacts = self._tables["contact"]
                values: Row = {"AccountId": account_id}
                mapping = {
                    "FirstName": "FirstName",
                    "LastName": "LastName",
                    "Salutation": "Salutation",
                    "Title": "Title",
                    "Email": "Email",
                    "Phone": "Phone",
                    "MobilePhone": "MobilePhone",
                    "Fax": "Fax",
                    "LeadSource": "LeadSource",
                    "Description": "Description",
                    "Street": "MailingStreet",
                    "City": "MailingCity",
                    "State": "MailingState",
                    "PostalCode": "MailingPostalCode",
                    "Country": "MailingCountry",
                    "HasOptedOutOfEmail": "HasOptedOutOfEmail",
                    "OwnerId": "OwnerId",
                }
                for definition in leads.obj.fields.values():
                    if definition.custom and contacts.obj.field(definition.name) is not None:
                        mapping[definition.name] = definition.name
                for source, target in mapping.items():
                    if lead.get(source) is not None:
                        values[target] = lead[source]
                contact_id = self._insert(contacts, values, user_id)
            else:
                contact_id = self._reference(self._tables["lead"].obj.fields["convertedcontactid"], contact_id)
            self._apply(
                leads,
                canonical,
                lead,
                {
                    "IsConverted": True,
                    "ConvertedDate": self.now().date(),
                    "ConvertedAccountId": account_id,
                    "ConvertedContactId": contact_id,
                    "Status": converted_status,
                },
                user_id,
            )
            return account_id, contact_id

    # ----------------------------------------------------------------- replication
    def _window(
        self, start: dt.datetime | str, end: dt.datetime | str, limit: dt.timedelta | None
    ) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
        try:
            raw_start = _as_utc(start if isinstance(start, dt.datetime) else parse_datetime(start))
            raw_end = _as_utc(end if isinstance(end, dt.datetime) else parse_datetime(end))
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
        now = self.now()
        if limit is not None and first < _floor_minute(now - limit):
            raise ApiError(400, "INVALID_REPLICATION_DATE", f"startDate cannot be more than {limit.days} days ago")
        return first, last, min(last, _floor_minute(now))

    def updated_ids(
        self, sobject: str, start: dt.datetime | str, end: dt.datetime | str
    ) -> tuple[list[str], dt.datetime]:
        """getUpdated: ids whose SystemModstamp is in ``[start, latestDateCovered)``, and latestDateCovered.
        Seconds are ignored; the window may start at most 30 days ago."""
        with self._lock:
            table = self._table(sobject)
            first, _, latest = self._window(start, end, UPDATED_WINDOW)
            latest = self._hold_for_late(first, latest)
            hits = sorted(
                (row["SystemModstamp"], row["Id"])
                for row in self.rows(table.obj.name)
                if first <= row["SystemModstamp"] < latest
            )
            if len(hits) > ID_LIMIT:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. narrow the time range")
            return [record_id for _, record_id in hits], latest

    def deleted(
        self, sobject: str, start: dt.datetime | str, end: dt.datetime | str
    ) -> tuple[list[dict[str, Any]], dt.datetime, dt.datetime]:
        """getDeleted: ``([{"id", "deletedDate"}], earliestDateAvailable, latestDateCovered)`` (datetimes).
        Entries older than 15 days (or expired with :meth:`expire_delete_log`) are not available."""
        with self._lock:
            table = self._table(sobject)
            first, _, latest = self._window(start, end, None)
            latest = self._hold_for_late(first, latest)
            earliest = _floor_minute(self.now() - DELETED_WINDOW)
            if self._log_expired_before is not None and self._log_expired_before > earliest:
                earliest = _floor_minute(self._log_expired_before)
            late = self._late()
            records = [
                {"id": e.record_id, "deletedDate": e.deleted_at}
                for e in self._delete_log
                if e.sobject == table.obj.name
                and first <= e.deleted_at < latest
                and e.deleted_at >= earliest
                and not (e.record_id in late and e.deleted_at >= late[e.record_id].stamp)
            ]
            if len(records) > ID_LIMIT:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. narrow the time range")
            return records, earliest, latest

    def _hold_for_late(self, first: dt.datetime, latest: dt.datetime) -> dt.datetime:
        """latestDateCovered while a transaction is still uncommitted: its start (minute), never before
        ``first`` (the getUpdated guide: "the start time of that long-running transaction")."""
        oldest = self._oldest_late_stamp()
        if oldest is None:
            return latest
        return max(first, min(latest, _floor_minute(oldest)))

    def expire_delete_log(self, before: dt.datetime) -> None:
        """Drop delete-log entries older than ``before`` (as Salesforce's log purge does)."""
        with self._lock:
            cutoff = _as_utc(before)
            self._delete_log = [e for e in self._delete_log if e.deleted_at >= cutoff]
            self._log_expired_before = cutoff

    # ----------------------------------------------------------------- admin
    def snapshot(self) -> dict[str, Any]:
        """Every record, the delete log and counters (rows are shared, not copied: they are immutable)."""
        with self._lock:
            return {
                "tables": {
                    name: {"live": dict(t.live), "deleted": dict(t.deleted)} for name, t in self._tables.items()
                },
                "cascaded": dict(self._cascaded),
                "delete_log": list(self._delete_log),
                "log_expired_before": self._log_expired_before,
                "counters": dict(self._counters),
                "last_stamp": dict(self._last_stamp),
                "pending": dict(self._pending),
                "txn_written": dict(self._txn.written) if self._txn is not None else None,
            }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Go back to the state of a :meth:`snapshot` (only the records that changed since are re-indexed)."""
        self._restore(snapshot, full=False)

    def _restore(self, snapshot: Mapping[str, Any], *, full: bool) -> None:
        with self._lock:
            saved_tables: Mapping[str, Any] = snapshot["tables"]
            if full or set(saved_tables) != set(self._tables):
                self._restore_full(saved_tables)
            else:
                for name, table in self._tables.items():
                    saved_live: dict[str, Row] = saved_tables[name]["live"]
                    saved_deleted: dict[str, Row] = saved_tables[name]["deleted"]
                    for record_id, row in table.live.items():
                        if saved_live.get(record_id) is not row:
                            self._unindex_row(table, row)
                    changed = [row for record_id, row in saved_live.items() if table.live.get(record_id) is not row]
                    for record_id in (
                        (table.live.keys() | table.deleted.keys()) - saved_live.keys() - saved_deleted.keys()
                    ):
                        self._owner.pop(record_id, None)
                    table.live = dict(saved_live)
                    table.deleted = dict(saved_deleted)
                    for row in changed:
                        self._owner[row["Id"]] = table
                        self._index(table, row)
                    for record_id in saved_deleted:
                        self._owner[record_id] = table
            self._cascaded = dict(snapshot["cascaded"])
            self._delete_log = list(snapshot["delete_log"])
            self._log_expired_before = snapshot["log_expired_before"]
            self._counters = dict(snapshot["counters"])
            self._last_stamp = dict(snapshot["last_stamp"])
            saved_pending: Mapping[str, _Pending] = snapshot.get("pending") or {}
            self._pending = {
                record_id: _Pending(self._rebind(late.before), late.stamp, late.visible_at)
                for record_id, late in saved_pending.items()
            }
            if self._txn is not None:  # a rollback inside the open transaction
                saved_written: Mapping[str, _Before] = snapshot.get("txn_written") or {}
                self._txn.written = {record_id: self._rebind(b) for record_id, b in saved_written.items()}

    def _rebind(self, before: _Before) -> _Before:
        """``before`` pointing at the current table of its object (tables are rebuilt by refresh_schema)."""
        table = self._tables.get(before.table.obj.name.lower(), before.table)
        return before if table is before.table else _Before(table, before.row, before.in_bin)

    def _restore_full(self, saved_tables: Mapping[str, Any]) -> None:
        self._clear()
        for name, saved in saved_tables.items():
            table = self._tables.get(name)
            if table is None:
                continue
            for record_id, row in saved["live"].items():
                full = {**table.template, **row}
                table.live[record_id] = full
                self._owner[record_id] = table
                self._index(table, full)
            for record_id, row in saved["deleted"].items():
                table.deleted[record_id] = {**table.template, **row}
                self._owner[record_id] = table

    def reset(self) -> None:
        """Remove every record except the org's users."""
        with self._lock:
            users = list(self._initial_users)
            self._clear()
            for values in users:
                self._put_user(values)
            self._put_organization()
            self._put_record_types()
