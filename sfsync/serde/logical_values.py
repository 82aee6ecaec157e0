"""Logical-type values from Avro's storage form, converted only where a schema has them.

Reading a record in storage form (no logical types) and then converting just its logical-type values
gives the same record as fastavro's reader with logical types (an aware UTC ``datetime`` per
``timestamp-millis``, a ``uuid.UUID`` per ``uuid``), without fastavro looking up a logical reader for
every value read. :func:`compile_converter` compiles the conversion of one schema once.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any

from sfsync.serde.schema import collect_named

__all__ = ["Converter", "compile_converter"]

Converter = Callable[[Any], Any]
"""The value with its logical-type values converted (records, maps and arrays converted in place)."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class UnsupportedLogicalTypeError(ValueError):
    """A schema whose logical values this module does not convert (another logical type, a union
    with several non-null branches one of which is logical, a recursive type)."""


def _timestamp_millis(value: Any) -> Any:
    return _EPOCH + dt.timedelta(microseconds=value * 1000)  # fastavro's read_timestamp_millis


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_text(value: Any) -> Any:
    """``str(uuid.UUID(value))`` (ValueError when ``value`` is no uuid), without making the UUID when
    ``value`` is that text already (lower-case, hyphenated: what ``str`` of a UUID gives)."""
    return value if _CANONICAL_UUID.fullmatch(value) else str(uuid.UUID(value))


_LOGICAL: dict[tuple[str, str], Converter] = {
    ("long", "timestamp-millis"): _timestamp_millis,
    ("string", "uuid"): uuid.UUID,
}
"""(Avro type, logical type) -> its conversion from storage form."""
_UUIDS_AS_TEXT: dict[tuple[str, str], Converter] = {**_LOGICAL, ("string", "uuid"): _uuid_text}


def compile_converter(schema: Any, *, within: Any = None, uuids_as_text: bool = False) -> Converter | None:
    """The conversion of a value read in storage form with ``schema`` (a writer schema as JSON, with
    its logical types), or None when it holds nothing to convert. ``within``: the schema it is part of
    (a topic's union), where the named types it refers to are defined. ``uuids_as_text``: a uuid
    becomes the text of its ``uuid.UUID`` (checked and canonical), without the ``uuid.UUID``.

    Raises:
        UnsupportedLogicalTypeError: see the class; read such a schema with fastavro's logical types.
    """
    named: dict[str, Any] = {}
    collect_named(within, named, keep_first=True)
    return _compile(schema, named, _UUIDS_AS_TEXT if uuids_as_text else _LOGICAL, ())


def _compile(
    schema: Any, named: dict[str, Any], logical: dict[tuple[str, str], Converter], seen: tuple[str, ...]
) -> Converter | None:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return None
        if schema in seen:
            raise UnsupportedLogicalTypeError(f"recursive type {schema}")
        if schema not in named:
            raise UnsupportedLogicalTypeError(f"unknown named type {schema}")
        return _compile(named[schema], named, logical, (*seen, schema))
    if isinstance(schema, list):
        converters = [(b, _compile(b, named, logical, seen)) for b in schema]
        if all(c is None for _, c in converters):
            return None
        others = [b for b in schema if b != "null" and not (isinstance(b, dict) and b.get("type") == "null")]
        if len(others) != 1:
            raise UnsupportedLogicalTypeError("a union with a logical type and other branches")
        inner = next(c for _, c in converters if c is not None)
        return lambda value: None if value is None else inner(value)
    kind = schema["type"]
    name = schema.get("name")
    if isinstance(name, str) and kind in ("record", "enum", "fixed"):
        named.setdefault(name, schema)
    if "logicalType" in schema:
        found = logical.get((str(kind), str(schema["logicalType"])))
        if found is None:
            raise UnsupportedLogicalTypeError(f"logical type {schema['logicalType']} of {kind}")
        return found
    if not isinstance(kind, str) or kind not in ("record", "enum", "fixed", "array", "map", *_PRIMITIVES):
        return _compile(kind, named, logical, seen)
    if kind == "record":
        fields = []
        for field in schema["fields"]:
            converter = _compile(field["type"], named, logical, (*seen, str(name)))
            if converter is not None:
                fields.append((field["name"], converter))
        if not fields:
            return None
        layout = tuple(fields)

        def convert_record(value: Any) -> Any:
            for field_name, convert in layout:
                value[field_name] = convert(value[field_name])
            return value

        return convert_record
    if kind == "array":
        items = _compile(schema["items"], named, logical, seen)
        if items is None:
            return None
        return lambda value: [items(v) for v in value]
    if kind == "map":
        values = _compile(schema["values"], named, logical, seen)
        if values is None:
            return None
        return lambda value: {k: values(v) for k, v in value.items()}
    return None
