"""The emulated org's metadata and the contract between its parts.

Every part of the emulator (the data store, SOQL/SOSL, Bulk, the HTTP app) shares these types:

- :class:`FieldDef` / :class:`ObjectDef` / :class:`Schema`: objects and fields with the attributes
  Salesforce's describe reports (names are matched case-insensitively, as Salesforce does).
- ``Row``: one stored record: canonical field API name -> Python value. Values are typed:
  ``str`` (id, string, textarea, email, phone, url, picklist, reference; multipicklist as
  ``"a;b"``), ``bool``, ``int`` / ``float`` (int, double, currency, percent), ``datetime.date``
  (date), aware ``datetime.datetime`` in UTC (datetime), or ``None``.
- :class:`RecordSource`: what query engines read (rows per object, a row by id).
- :func:`to_json_value` / :func:`parse_datetime`: Salesforce's wire formats for values;
  :func:`as_utc` / :func:`floor_ms`: a datetime as the org stores it (UTC, millisecond resolution).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Row = dict[str, Any]

TEXT_TYPES = frozenset(
    {
        "id",
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "picklist",
        "multipicklist",
        "reference",
        "combobox",
        "encryptedstring",
    }
)
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})


@dataclass(frozen=True)
class FieldDef:
    """One field, with the attributes of a describe ``fields[]`` entry."""

    name: str
    type: str  # describe type: id, string, textarea, email, phone, url, picklist, multipicklist,
    #            boolean, int, double, currency, percent, date, datetime, reference
    label: str = ""
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    filterable: bool = True
    sortable: bool = True
    external_id: bool = False
    id_lookup: bool = False
    unique: bool = False
    case_sensitive: bool = False
    custom: bool = False
    calculated: bool = False
    defaulted_on_create: bool = False
    name_field: bool = False
    precision: int = 0
    scale: int = 0
    picklist_values: tuple[str, ...] = ()
    restricted_picklist: bool = False
    default_value: Any = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    cascade_delete: bool = False


@dataclass(frozen=True)
class ChildRelationship:
    """A parent-to-child relationship: ``parent.<relationship_name>`` lists ``child`` rows whose
    ``field`` points at the parent."""

    relationship_name: str
    child_object: str
    field: str
    cascade_delete: bool = False


@dataclass
class ObjectDef:
    """One sObject type."""

    name: str
    key_prefix: str
    label: str = ""
    label_plural: str = ""
    custom: bool = False
    fields: dict[str, FieldDef] = field(default_factory=dict)  # lower-cased name -> field
    child_relationships: list[ChildRelationship] = field(default_factory=list)
    record_type_infos: list[dict[str, Any]] = field(default_factory=list)
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    queryable: bool = True
    searchable: bool = True

    def field(self, name: str) -> FieldDef | None:
        """The field called ``name`` (any case), or None."""
        return self.fields.get(name.lower())

    def add(self, definition: FieldDef) -> None:
        self.fields[definition.name.lower()] = definition

    def relationship(self, name: str) -> FieldDef | None:
        """The reference field whose relationshipName is ``name`` (any case), e.g. Account -> AccountId."""
        lowered = name.lower()
        for candidate in self.fields.values():
            if candidate.relationship_name and candidate.relationship_name.lower() == lowered:
                return candidate
        return None

    def child_relationship(self, name: str) -> ChildRelationship | None:
        lowered = name.lower()
        return next((c for c in self.child_relationships if c.relationship_name.lower() == lowered), None)


@dataclass
class Schema:
    """All objects of the org, by lower-cased name."""

    objects: dict[str, ObjectDef] = field(default_factory=dict)

    def get(self, name: str) -> ObjectDef | None:
        return self.objects.get(name.lower())

    def add(self, obj: ObjectDef) -> None:
        self.objects[obj.name.lower()] = obj

    def by_prefix(self, key_prefix: str) -> ObjectDef | None:
        return next((o for o in self.objects.values() if o.key_prefix == key_prefix), None)

    def __iter__(self) -> Iterator[ObjectDef]:
        return iter(self.objects.values())


class RecordSource(Protocol):
    """What SOQL, SOSL and Bulk query read. Implemented by the data store."""

    schema: Schema

    def rows(self, sobject: str, *, include_deleted: bool = False) -> Iterable[Row]:
        """Every row of ``sobject`` (canonical name); recycle-bin rows (IsDeleted) only when asked."""
        ...

    def row_by_id(self, record_id: str) -> tuple[ObjectDef, Row] | None:
        """The row with this 15- or 18-character id, deleted or not, with its object."""
        ...


def format_datetime(value: dt.datetime) -> str:
    """Salesforce's JSON datetime: ``2026-11-25T10:00:00.000+0000`` (always UTC, milliseconds)."""
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> dt.datetime:
    """Parse a Salesforce/ISO-8601 datetime (``Z``, ``+0000`` or ``+00:00``; fraction optional)."""
    cleaned = text.strip()
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    elif len(cleaned) > 5 and cleaned[-5] in "+-" and cleaned[-3] != ":":
        cleaned = f"{cleaned[:-2]}:{cleaned[-2:]}"
    parsed = dt.datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def floor_ms(value: dt.datetime) -> dt.datetime:
    """``value`` truncated to whole milliseconds (the resolution of Salesforce's datetimes)."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def to_json_value(value: Any) -> Any:
    """A stored value as Salesforce writes it in JSON."""
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_json_value(v) for k, v in row.items()}
