"""The Avro contracts as schemas: ``schemas/<topic>.avsc`` loaded, expanded and explained. Pure (fastavro only).

- :func:`load_topic_schema` reads ``schemas/<topic>.avsc`` (a union of named record types, each in
  its own ``<namespace>.<Name>.avsc``) into one self-contained schema.
- :func:`explain_invalid` / :func:`first_problem` say which field of a value does not fit, and why.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema

from sfsync.errors import RecordValidationError, SchemaError
from sfsync.schemas import SCHEMA_DIR

RELEASED_DIR = SCHEMA_DIR / "released"
NAMESPACE = "sfsync.product"


@dataclass(frozen=True)
class TopicSchema:
    """The value schema of one topic: a union of record types."""

    topic_base: str
    schema: Any  # the expanded JSON-compatible schema (list for a union)
    schema_str: str
    parsed: Any
    record_names: tuple[str, ...]  # short names, e.g. ("UserCreated", ...)
    branches: dict[str, tuple[bytes, Any, Any]]
    """short name -> (union index as Avro bytes, parsed branch, parsed branch without logical types)"""

    def full_name(self, record_name: str) -> str:
        return record_name if "." in record_name else f"{NAMESPACE}.{record_name}"


def strip_private(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_private(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [strip_private(v) for v in node]
    return node


@cache
def load_topic_schema(topic_base: str, schema_dir: Path = SCHEMA_DIR) -> TopicSchema:
    """Load and expand ``<schema_dir>/<topic_base>.avsc``; raises :class:`SchemaError` if invalid."""
    path = schema_dir / f"{topic_base}.avsc"
    if not path.exists():
        raise SchemaError(f"no schema for topic {topic_base}: {path} is missing")
    try:
        expanded = strip_private(load_schema(str(path), _write_hint=False))
        parsed = fastavro.parse_schema(expanded)
    except Exception as exc:
        raise SchemaError(f"{path.name}: {exc}") from exc
    if not isinstance(expanded, list):
        raise SchemaError(f"{path.name}: a topic schema is a union (JSON array) of record names")
    names = tuple(str(b["name"]).rsplit(".", 1)[-1] for b in expanded)
    plain = fastavro.parse_schema(storage_schema(expanded))
    branches = {name: (zigzag_varint(i), parsed[i], plain[i]) for i, name in enumerate(names)}
    return TopicSchema(topic_base, expanded, json.dumps(expanded, separators=(",", ":")), parsed, names, branches)


def storage_schema(node: Any) -> Any:
    """``node`` (a JSON schema) with every ``logicalType`` annotation dropped: the same bytes, read and
    written in Avro's storage form (a timestamp as its long, a decimal as its bytes or fixed)."""
    if isinstance(node, dict):
        return {k: (v if k == "default" else storage_schema(v)) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [storage_schema(v) for v in node]
    return node


def zigzag_varint(n: int) -> bytes:
    """Avro's encoding of an int (here: a union branch index)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# ---------------------------------------------------------------------- validation messages
def explain_invalid(schema: TopicSchema, record_name: str, value: Any, cause: Exception) -> RecordValidationError:
    """Find which field of ``value`` does not fit and say why, naming the record type and field."""
    branches = schema.schema if isinstance(schema.schema, list) else [schema.schema]
    named: dict[str, Any] = {}
    for b in branches:
        collect_named(b, named, keep_first=False)
    branch = next(b for b in branches if str(b["name"]).endswith(f".{record_name}"))
    problem = first_problem(branch, value, record_name, named)
    if problem is None:
        return RecordValidationError(record_name, "?", str(cause))
    path, reason = problem
    return RecordValidationError(record_name, path.split(".", 1)[1] if "." in path else path, reason)


def collect_named(schema: Any, named: dict[str, Any], *, keep_first: bool) -> None:
    """Index every named type (record, enum, fixed) defined inside ``schema`` by its full name, into ``named``.

    Looks through union branches, record fields, array items, map values and a nested ``{"type": <schema>}``.
    ``keep_first``: a name defined twice (or already in ``named``) keeps its first definition (what a
    reader or writer compiled over a topic's union resolves to); otherwise the last one seen wins.
    """
    if isinstance(schema, list):
        for branch in schema:
            collect_named(branch, named, keep_first=keep_first)
    elif isinstance(schema, dict):
        name = schema.get("name")
        if schema.get("type") in ("record", "enum", "fixed") and isinstance(name, str):
            if keep_first:
                named.setdefault(name, schema)
            else:
                named[name] = schema
        for fld in schema.get("fields", ()):
            collect_named(fld["type"], named, keep_first=keep_first)
        for key in ("items", "values", "type"):
            if isinstance(schema.get(key), dict | list):
                collect_named(schema[key], named, keep_first=keep_first)


PRIMITIVE_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "bytes": (bytes, bytearray),
    "string": (str,),
}
"""The Python types a value of each primitive Avro type may be (what fastavro's validation accepts, narrowed to
exact types)."""


def first_problem(schema: Any, value: Any, path: str, named: dict[str, Any]) -> tuple[str, str] | None:
    """The first ``(field path, reason)`` where ``value`` does not fit ``schema``, else None."""
    if isinstance(schema, str):
        if schema in named:
            return first_problem(named[schema], value, path, named)
        expected = PRIMITIVE_TYPES.get(schema)
        if expected is None:
            return None
        if isinstance(value, bool) and schema in ("int", "long", "float", "double"):
            return path, f"expected {schema}, got a boolean"
        if not isinstance(value, expected):
            return path, f"expected {schema}, got {_describe(value)}"
        if schema == "int" and isinstance(value, int) and not -(2**31) <= value < 2**31:
            return path, f"{value} does not fit a 32-bit int"
        return None
    if isinstance(schema, list):
        for branch in schema:
            if first_problem(branch, value, path, named) is None:
                return None
        kinds = ", ".join(_type_name(b) for b in schema)
        if value is None:
            return path, f"required (not nullable), got null; expected {kinds}"
        return path, f"expected one of [{kinds}], got {_describe(value)}"
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if logical == "timestamp-millis":
        if isinstance(value, dt.datetime):
            return None if value.tzinfo is not None else (path, "datetime must be timezone-aware (UTC)")
        return first_problem(kind, value, path, named)
    if logical == "uuid":
        if isinstance(value, uuid.UUID):
            return None
        if isinstance(value, str):
            try:
                uuid.UUID(value)
            except ValueError:
                return path, f"{value!r} is not a uuid"
            return None
        return path, f"expected a uuid, got {_describe(value)}"
    if kind == "record":
        named[schema["name"]] = schema
        if not isinstance(value, Mapping):
            return path, f"expected a {schema['name'].rsplit('.', 1)[-1]} record, got {_describe(value)}"
        known = {f["name"] for f in schema["fields"]}
        unknown = sorted(set(value) - known)
        for fld in schema["fields"]:
            sub = f"{path}.{fld['name']}"
            if fld["name"] not in value:
                if "default" in fld:
                    continue
                return sub, "missing (required, no default)"
            problem = first_problem(fld["type"], value[fld["name"]], sub, named)
            if problem:
                return problem
        if unknown:
            return f"{path}.{unknown[0]}", "not a field of this record"
        return None
    if kind == "enum":
        named[schema["name"]] = schema
        if value not in schema["symbols"]:
            return path, f"{value!r} is not one of {', '.join(schema['symbols'])}"
        return None
    if kind == "array":
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            return path, f"expected an array, got {_describe(value)}"
        for i, item in enumerate(value):
            problem = first_problem(schema["items"], item, f"{path}[{i}]", named)
            if problem:
                return problem
        return None
    if kind == "map":
        if not isinstance(value, Mapping):
            return path, f"expected a map, got {_describe(value)}"
        for k, item in value.items():
            problem = first_problem(schema["values"], item, f"{path}[{k!r}]", named)
            if problem:
                return problem
        return None
    if kind == "fixed":
        named[schema["name"]] = schema
        if not isinstance(value, (bytes, bytearray)) or len(value) != schema["size"]:
            return path, f"expected {schema['size']} bytes"
        return None
    return first_problem(kind, value, path, named)


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    if isinstance(schema, dict):
        return str(schema.get("logicalType") or schema.get("name", schema.get("type"))).rsplit(".", 1)[-1]
    return "union"


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
