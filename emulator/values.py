"""Field values in: REST JSON values checked and converted to the typed values the store keeps.

:meth:`ValueConverter.changes` turns a create/update body into ``{canonical field name: typed value}``
(see :mod:`sfsync.emulator.model` for the types); :meth:`ValueConverter.convert` does one value. Each
rejection is the :class:`sfsync.emulator.errors.ApiError` Salesforce answers, with its wording:

- unknown field: INVALID_FIELD; not createable/updateable: INVALID_FIELD_FOR_INSERT_UPDATE (all
  such fields at once); ``Id`` in an insert: INVALID_FIELD;
- text: STRING_TOO_LONG, INVALID_EMAIL_ADDRESS, INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST (``""`` is
  null; multipicklist values are trimmed and de-duplicated);
- numbers: INVALID_TYPE_ON_FIELD_IN_RECORD (a fraction for an int), NUMBER_OUTSIDE_VALID_RANGE
  (precision and scale; doubles are rounded to the scale);
- a JSON value of the wrong kind, or an unreadable date/datetime: JSON_PARSER_ERROR;
- references: MALFORMED_ID, FIELD_INTEGRITY_EXCEPTION (an id of another object),
  INVALID_CROSS_REFERENCE_KEY (no such record), ENTITY_IS_DELETED (in the recycle bin); a record
  type must be an active, available one of the object;
- a relationship name given ``{"attributes": {"type"}, "<External_Id__c>": value}`` is resolved to
  the one live record with that external id (INVALID_FIELD when none or several match).

A boolean set to null is false; a datetime is kept in UTC at millisecond resolution, a date-only
string is midnight UTC.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import FieldDef, ObjectDef, Row, as_utc, floor_ms, parse_datetime
from sfsync.emulator.tables import Table, Tables

_TEXT = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring"}
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SECURITY = (
    "Please check the security settings of this field and verify that it is read/write for your "
    "profile or permission set."
)


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


def _text(definition: FieldDef, value: Any) -> str | None:
    kind = definition.type
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


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _parser_error("boolean", value)


def _number(definition: FieldDef, value: Any) -> int | float:
    kind = definition.type
    soap = "int" if kind == "int" else "double"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _parser_error(soap, value)
    number: int | float
    if isinstance(value, str):
        try:
            number = (
                float(value.strip()) if kind != "int" or "." in value or "e" in value.lower() else int(value.strip())
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


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return as_utc(value).date()
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


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return floor_ms(as_utc(value))
    if isinstance(value, str):
        try:
            if len(value.strip()) == 10:
                day = dt.date.fromisoformat(value.strip())
                return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return floor_ms(parse_datetime(value))
        except ValueError:
            pass
    raise ApiError(
        400,
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of datetime from VALUE_STRING "
        f"value {value} or value is invalid or request may be missing a required field",
    )


def default_record_type(obj: ObjectDef) -> str | None:
    """The record type of ``obj``'s records created without one (None: the master)."""
    info = next((i for i in obj.record_type_infos if i["defaultRecordTypeMapping"] and not i["master"]), None)
    return ids.normalize(str(info["recordTypeId"])) if info is not None else None


class ValueConverter:
    """Converts and checks values for the store's tables; references are checked against their rows."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def changes(self, table: Table, values: Mapping[str, Any], *, creating: bool) -> Row:
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
                    changes[reference.name] = self.foreign_key(reference, value)
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
                changes[name] = self.convert(table, obj.fields[name.lower()], value)
        return changes

    def convert(self, table: Table, definition: FieldDef, value: Any) -> Any:
        """One value of field ``definition`` of ``table``'s object, typed; raises when it is invalid."""
        kind = definition.type
        if value is None:
            return False if kind == "boolean" else None
        if kind in _TEXT:
            return _text(definition, value)
        if kind == "boolean":
            return _boolean(value)
        if kind in ("int", "double", "currency", "percent"):
            return _number(definition, value)
        if kind == "date":
            return _date(value)
        if kind == "datetime":
            return _datetime(value)
        if kind == "reference":
            if definition.name == "RecordTypeId":
                return self._record_type(table.obj, definition, value)
            return self.reference(definition, value)
        return value

    def reference(self, definition: FieldDef, value: Any) -> str:
        """The canonical id ``value`` for reference field ``definition``: a live record of an object the
        field points to."""
        canonical = ids.try_normalize(value) if isinstance(value, str) else None
        if canonical is None:
            raise ApiError(
                400, "MALFORMED_ID", f"{_label(definition)}: id value of incorrect type: {value}", [definition.name]
            )
        table = self._tables.by_prefix(canonical)
        if table is None or table.obj.name not in definition.reference_to:
            if canonical[:3] == "00G" and "Group" in definition.reference_to:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [definition.name])
            raise ApiError(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                f"{_label(definition)}: id value of incorrect type: {value}",
                [definition.name],
            )
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

    def foreign_key(self, definition: FieldDef, value: Any) -> str:
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
        table = self._tables.find(str(target))
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
            return self.reference(definition, raw)
        matches = table.find(ext, self.convert(table, ext, raw))
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
