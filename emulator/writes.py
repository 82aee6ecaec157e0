"""Record writes: create, update, upsert by external id, and a system process touching a record.

Each public call is one store transaction (joining the caller's when one is open) and raises
:class:`sfsync.emulator.errors.ApiError` as Salesforce answers:

- create: INVALID_TYPE_FOR_OPERATION (object not createable), what the values raise (see
  :mod:`sfsync.emulator.values`), REQUIRED_FIELD_MISSING (required fields, and a CampaignMember's
  ContactId/LeadId), a duplicate (see :meth:`sfsync.emulator.tables.Tables.check_unique`);
- update: MALFORMED_ID, NOT_FOUND, ENTITY_IS_DELETED, CANNOT_UPDATE_CONVERTED_LEAD,
  REQUIRED_FIELD_MISSING (a required field set to null);
- upsert: NOT_FOUND (not an external id / idLookup field), MISSING_ARGUMENT (no value),
  :class:`sfsync.emulator.errors.MultipleMatches` (several records match).

A new record gets a fresh id, the system fields (CreatedDate, CreatedById, LastModified*,
SystemModstamp = the transaction's stamp; OwnerId the writer when not given), its default record
type, its auto numbers and, for a custom object without a Name, its id as Name. Every write sets
the derived fields (:mod:`sfsync.emulator.derived`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.derived import DerivedFields
from sfsync.emulator.errors import ApiError, MultipleMatches
from sfsync.emulator.model import Row
from sfsync.emulator.tables import Table, Tables
from sfsync.emulator.transactions import Transactions
from sfsync.emulator.values import ValueConverter, default_record_type


def converted_lead() -> ApiError:
    """CANNOT_UPDATE_CONVERTED_LEAD: a converted lead is read-only."""
    return ApiError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])


def _external_id_field_missing(ext_field: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {ext_field}")


class RecordWriter:
    """Validates and stores record saves; holds the store's lock through each call."""

    def __init__(
        self, tables: Tables, transactions: Transactions, values: ValueConverter, derived: DerivedFields
    ) -> None:
        self.tables = tables
        self.transactions = transactions
        self.values = values
        self.derived = derived

    def create(self, sobject: str, values: Mapping[str, Any], *, user_id: str | None = None) -> str:
        """Insert one record; its new 18-character Id."""
        with self.transactions.transaction(user_id=user_id):
            table = self.tables.table(sobject)
            if not table.obj.createable:
                raise ApiError(
                    400, "INVALID_TYPE_FOR_OPERATION", f"entity type {table.obj.name} does not support insert"
                )
            return self.insert(table, self.values.changes(table, values, creating=True), user_id)

    def insert(self, table: Table, changes: Row, user_id: str | None) -> str:
        """Store a new record of ``table`` from converted ``changes``; its new id."""
        obj = table.obj
        missing = [f.name for f in table.required if changes.get(f.name) is None]
        if obj.name == "CampaignMember" and not changes.get("ContactId") and not changes.get("LeadId"):
            missing.extend(["ContactId", "LeadId"])
        if missing:
            raise ApiError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        actor = self.transactions.actor(user_id)
        record_id = ids.new_id(obj.key_prefix)
        row = dict(table.template)
        row.update(changes)
        now = self.transactions.stamp(record_id, table)
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
            row["RecordTypeId"] = default_record_type(obj)
        if obj.name == "User":
            row.pop("IsDeleted", None)
        for definition in table.auto_numbers:
            row[definition.name] = self.derived.next_number(table, definition)
        if obj.custom and row.get("Name") is None and "name" in obj.fields:
            row["Name"] = record_id
        self.derived.derive(table, row, creating=True)
        self.tables.check_unique(table, row, row.keys())
        self.tables.put(table, row)
        return record_id

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any], *, user_id: str | None = None) -> None:
        """Update one record (fields set to None are cleared)."""
        with self.transactions.transaction(user_id=user_id):
            table = self.tables.table(sobject)
            canonical, old = self.tables.live_row(table, record_id)
            if table.obj.name == "Lead" and old.get("IsConverted"):
                raise converted_lead()
            changes = self.values.changes(table, values, creating=False)
            self.apply(table, canonical, old, changes, user_id)

    def apply(
        self,
        table: Table,
        record_id: str,
        old: Row,
        changes: Row,
        user_id: str | None,
        *,
        bump_last_modified: bool = True,
    ) -> None:
        """Store ``old`` with converted ``changes`` as the new version of ``record_id``: a new
        SystemModstamp and, with ``bump_last_modified``, LastModifiedDate/LastModifiedById."""
        missing = [n for n, v in changes.items() if v is None and n in table.required_on_update]
        if missing:
            raise ApiError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        row = {**old, **changes}
        now = self.transactions.stamp(record_id, table)
        row["SystemModstamp"] = now
        if bump_last_modified:
            row["LastModifiedDate"] = now
            row["LastModifiedById"] = self.transactions.actor(user_id)
        self.derived.derive(table, row, creating=False)
        self.tables.check_unique(table, row, changes.keys())
        self.tables.put(table, row)

    def system_touch(self, sobject: str, record_id: str, values: Mapping[str, Any] | None = None) -> None:
        """An automated process writes (or just touches) a record: SystemModstamp moves, LastModifiedDate
        and LastModifiedById do not. ``values`` bypass field-level security like a system context."""
        with self.transactions.transaction():
            table = self.tables.table(sobject)
            canonical, old = self.tables.live_row(table, record_id)
            changes: Row = {}
            for key, value in (values or {}).items():
                definition = table.obj.field(key)
                if definition is None:
                    raise ApiError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {table.obj.name}")
                changes[definition.name] = self.values.convert(table, definition, value)
            self.apply(table, canonical, old, changes, None, bump_last_modified=False)

    def upsert(
        self, sobject: str, ext_field: str, ext_value: Any, values: Mapping[str, Any], *, user_id: str | None = None
    ) -> tuple[str, bool]:
        """Insert or update by an external id (or idLookup) field: ``(id, created)``."""
        with self.transactions.transaction(user_id=user_id):
            table = self.tables.table(sobject)
            definition = table.obj.field(ext_field)
            if definition is None or not (definition.external_id or definition.id_lookup):
                raise _external_id_field_missing(ext_field)
            if definition.name == "Id":
                if ext_value is None or ext_value == "":
                    return self.insert(table, self.values.changes(table, values, creating=True), user_id), True
                self.update(sobject, str(ext_value), values, user_id=user_id)
                return ids.normalize(str(ext_value)), False
            typed = self.values.convert(table, definition, ext_value)
            if typed is None:
                raise ApiError(400, "MISSING_ARGUMENT", f"{definition.name} not specified", [definition.name])
            matches = table.find(definition, typed)
            if len(matches) > 1:
                raise MultipleMatches(table.obj.name, definition.name, matches)
            body = {k: v for k, v in values.items() if k.lower() != definition.name.lower()}
            if matches:
                record_id = matches[0]
                old = table.live[record_id]
                if table.obj.name == "Lead" and old.get("IsConverted"):
                    raise converted_lead()
                self.apply(table, record_id, old, self.values.changes(table, body, creating=False), user_id)
                return record_id, False
            body[definition.name] = ext_value
            return self.insert(table, self.values.changes(table, body, creating=True), user_id), True

    def match_external_id(self, sobject: str, ext_field: str, ext_value: Any) -> list[str]:
        """Ids of the live records whose external id (or idLookup) field equals ``ext_value``, matched as an
        upsert matches: case-insensitively unless the field is case-sensitive. NOT_FOUND for other fields."""
        with self.tables.lock:
            table = self.tables.table(sobject)
            definition = table.obj.field(ext_field)
            if definition is None or not (definition.external_id or definition.id_lookup):
                raise _external_id_field_missing(ext_field)
            if definition.name == "Id":
                canonical = ids.try_normalize(ext_value)
                return [canonical] if canonical is not None and canonical in table.live else []
            typed = self.values.convert(table, definition, ext_value)
            if typed is None:
                return []
            return table.find(definition, typed)
