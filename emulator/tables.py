"""The emulated org's row storage: every object's records by id, the indexes saves look them up by,
and the lock that guards all of it.

A :class:`Table` holds one object's live rows and its recycle-bin rows, plus what is precomputed
from the object's describe to write it fast (the row template, createable/updateable/required
fields). :class:`Tables` holds every table and the cross-object bookkeeping: which table an id
belongs to, the cascade-delete children of every record (reference fields with ``cascade_delete``),
and the duplicate-rule index (:class:`sfsync.emulator.matching.DuplicateIndex`).

Rows are ``dict``s of typed values (see :mod:`sfsync.emulator.model`) that are never mutated once
stored: a write stores a new dict (:meth:`Tables.put`). That makes a snapshot a shallow copy of the
id -> row maps, and lets :meth:`Tables.restore` re-index only the rows that changed since.

Everything here is bookkeeping without validation or timestamps; callers hold :attr:`Tables.lock`
(an ``RLock`` every part of the store shares) around each call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.errors import ApiError, entity_deleted, not_found
from sfsync.emulator.matching import DuplicateIndex, index_key
from sfsync.emulator.model import FieldDef, ObjectDef, Row, Schema


@dataclass
class Table:
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
    def build(cls, obj: ObjectDef) -> Table:
        """An empty table for ``obj``."""
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

    def find(self, definition: FieldDef, value: Any) -> list[str]:
        """Ids (sorted) of the live rows whose indexed field ``definition`` matches the typed ``value``."""
        return sorted(self.indexes[definition.name].get(index_key(definition, value), ()))

    def clear(self) -> None:
        """Drop every row."""
        self.live.clear()
        self.deleted.clear()
        for index in self.indexes.values():
            index.clear()


class Tables:
    """Every object's :class:`Table`, which table holds each id, and the cascade-delete children."""

    def __init__(self, schema: Schema, duplicate_rules: Iterable[tuple[str, tuple[str, ...]]] = ()) -> None:
        self.schema = schema
        self.lock = threading.RLock()
        self.duplicates = DuplicateIndex(duplicate_rules)
        self.by_name: dict[str, Table] = {}  # lower-cased object name -> table
        self.owner: dict[str, Table] = {}  # id -> table holding it (live or deleted)
        self.children: dict[str, set[str]] = {}  # parent id -> ids of cascade-delete children
        self._prefixes: dict[str, str] = {}
        self.compile()
        self.clear()

    def compile(self) -> None:
        """Build empty tables for the schema as it is now (its objects or fields changed); :meth:`clear` or
        a full :meth:`restore` must follow."""
        self.by_name = {name: Table.build(obj) for name, obj in self.schema.objects.items()}
        self._prefixes = {obj.key_prefix: name for name, obj in self.schema.objects.items()}
        self.duplicates.compile(self.schema)

    def clear(self) -> None:
        """Remove every record."""
        for table in self.by_name.values():
            table.clear()
        self.owner = {}
        self.children = {}
        self.duplicates.clear()

    # ----------------------------------------------------------------- lookups
    def find(self, sobject: str) -> Table | None:
        """The table of ``sobject`` (any case), or None."""
        return self.by_name.get(sobject.lower())

    def table(self, sobject: str) -> Table:
        """The table of ``sobject`` (any case); NOT_FOUND for an unknown object."""
        table = self.by_name.get(sobject.lower())
        if table is None:
            raise not_found()
        return table

    def by_prefix(self, record_id: str) -> Table | None:
        """The table of the object whose key prefix starts ``record_id``, or None."""
        name = self._prefixes.get(record_id[:3])
        return self.by_name[name] if name is not None else None

    def live_row(self, table: Table, record_id: str) -> tuple[str, Row]:
        """The canonical id and live row of ``record_id`` in ``table``: MALFORMED_ID, ENTITY_IS_DELETED or
        NOT_FOUND otherwise."""
        canonical = ids.try_normalize(record_id)
        if canonical is None:
            raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}", [])
        row = table.live.get(canonical)
        if row is None:
            if canonical in table.deleted:
                raise entity_deleted()
            raise not_found()
        return canonical, row

    # ----------------------------------------------------------------- rows and indexes
    def put(self, table: Table, row: Row) -> None:
        """Store ``row`` as the live version of its record (replacing and un-indexing the one before)."""
        record_id = row["Id"]
        self.unindex(table, record_id)
        table.live[record_id] = row
        self.owner[record_id] = table
        self.index(table, row)

    def index(self, table: Table, row: Row) -> None:
        """Add the live row ``row`` to every index."""
        record_id = row["Id"]
        for definition in table.indexed:
            value = row.get(definition.name)
            if value is not None:
                table.indexes[definition.name].setdefault(index_key(definition, value), set()).add(record_id)
        self.duplicates.add(table.obj.name, row)
        for name in table.cascade_fields:
            parent = row.get(name)
            if parent:
                self.children.setdefault(parent, set()).add(record_id)

    def unindex(self, table: Table, record_id: str) -> None:
        """Remove the live row of ``record_id`` (if any) from every index."""
        row = table.live.get(record_id)
        if row is not None:
            self.unindex_row(table, row)

    def unindex_row(self, table: Table, row: Row) -> None:
        """Remove ``row`` (the version that was indexed) from every index."""
        record_id = row["Id"]
        for definition in table.indexed:
            value = row.get(definition.name)
            if value is not None:
                bucket = table.indexes[definition.name].get(index_key(definition, value))
                if bucket is not None:
                    bucket.discard(record_id)
                    if not bucket:
                        del table.indexes[definition.name][index_key(definition, value)]
        self.duplicates.remove(table.obj.name, row)
        for name in table.cascade_fields:
            parent = row.get(name)
            if parent and parent in self.children:
                self.children[parent].discard(record_id)

    def check_unique(self, table: Table, row: Row, changed: Iterable[str]) -> None:
        """Raise if saving ``row`` duplicates another live record: DUPLICATE_VALUE for a unique field among
        ``changed`` (field names), else what :meth:`DuplicateIndex.check` raises."""
        record_id = row["Id"]
        changed_set = set(changed)
        for definition in table.indexed:
            if not definition.unique or definition.name not in changed_set:
                continue
            value = row.get(definition.name)
            if value is None:
                continue
            others = table.indexes[definition.name].get(index_key(definition, value), set()) - {record_id}
            if others:
                other = min(others)
                raise ApiError(
                    400,
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {definition.name} duplicates value on record with id: {other[:15]}",
                    [],
                )
        self.duplicates.check(table.obj.name, row)

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> dict[str, Any]:
        """Every table's live and deleted rows (the maps are copied, the immutable rows shared)."""
        return {name: {"live": dict(t.live), "deleted": dict(t.deleted)} for name, t in self.by_name.items()}

    def restore(self, saved: Mapping[str, Any], *, full: bool = False) -> None:
        """Go back to the rows of a :meth:`snapshot`. Only the rows that changed since are re-indexed,
        unless ``full`` or the objects changed: then every table is rebuilt from the saved rows (which
        take the current template's fields)."""
        if full or set(saved) != set(self.by_name):
            self._restore_full(saved)
            return
        for name, table in self.by_name.items():
            saved_live: dict[str, Row] = saved[name]["live"]
            saved_deleted: dict[str, Row] = saved[name]["deleted"]
            for record_id, row in table.live.items():
                if saved_live.get(record_id) is not row:
                    self.unindex_row(table, row)
            changed = [row for record_id, row in saved_live.items() if table.live.get(record_id) is not row]
            for record_id in (table.live.keys() | table.deleted.keys()) - saved_live.keys() - saved_deleted.keys():
                self.owner.pop(record_id, None)
            table.live = dict(saved_live)
            table.deleted = dict(saved_deleted)
            for row in changed:
                self.owner[row["Id"]] = table
                self.index(table, row)
            for record_id in saved_deleted:
                self.owner[record_id] = table

    def _restore_full(self, saved: Mapping[str, Any]) -> None:
        self.clear()
        for name, rows in saved.items():
            table = self.by_name.get(name)
            if table is None:
                continue
            for record_id, row in rows["live"].items():
                full = {**table.template, **row}
                table.live[record_id] = full
                self.owner[record_id] = table
                self.index(table, full)
            for record_id, row in rows["deleted"].items():
                table.deleted[record_id] = {**table.template, **row}
                self.owner[record_id] = table
