"""Avro in the Confluent wire format, through a Confluent-compatible schema registry.

- :func:`load_topic_schema` reads ``schemas/<topic>.avsc`` (a union of named record types, each in
  its own ``<namespace>.<Name>.avsc``) into one self-contained schema.
- :class:`SchemaRegistry` wraps confluent-kafka's registry client; its errors become ours.
- :class:`AvroEncoder` writes ``0x00 | schema id (4 bytes, big endian) | Avro binary`` with the
  topic's schema registered under ``<topic>-value`` (TopicNameStrategy, set explicitly).
- :class:`AvroDecoder` reads any such message, fetching the writer schema by id (cached).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema

from sfsync.errors import RecordValidationError, SchemaError, ServiceUnavailableError, SkippableRecordError
from sfsync.schemas import SCHEMA_DIR
from sfsync.settings import RegistryConnection

RELEASED_DIR = SCHEMA_DIR / "released"
MAGIC = 0
HEADER = struct.Struct(">bI")
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


def _strip_private(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_private(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_strip_private(v) for v in node]
    return node


@cache
def load_topic_schema(topic_base: str, schema_dir: Path = SCHEMA_DIR) -> TopicSchema:
    """Load and expand ``<schema_dir>/<topic_base>.avsc``; raises :class:`SchemaError` if invalid."""
    path = schema_dir / f"{topic_base}.avsc"
    if not path.exists():
        raise SchemaError(f"no schema for topic {topic_base}: {path} is missing")
    try:
        expanded = _strip_private(load_schema(str(path), _write_hint=False))
        parsed = fastavro.parse_schema(expanded)
    except Exception as exc:
        raise SchemaError(f"{path.name}: {exc}") from exc
    if not isinstance(expanded, list):
        raise SchemaError(f"{path.name}: a topic schema is a union (JSON array) of record names")
    names = tuple(str(b["name"]).rsplit(".", 1)[-1] for b in expanded)
    plain = fastavro.parse_schema(storage_schema(expanded))
    branches = {name: (_zigzag_varint(i), parsed[i], plain[i]) for i, name in enumerate(names)}
    return TopicSchema(topic_base, expanded, json.dumps(expanded, separators=(",", ":")), parsed, names, branches)


def storage_schema(node: Any) -> Any:
    """``node`` (a JSON schema) with every ``logicalType`` annotation dropped: the same bytes, read and
    written in Avro's storage form (a timestamp as its long, a decimal as its bytes or fixed)."""
    if isinstance(node, dict):
        return {k: (v if k == "default" else storage_schema(v)) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [storage_schema(v) for v in node]
    return node


def _zigzag_varint(n: int) -> bytes:
    """Avro's encoding of an int (here: a union branch index)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# ---------------------------------------------------------------------- registry
class SchemaRegistry:
    """A Confluent-compatible registry (Apicurio's ccompat API here). Errors become sfsync's."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, username: str | None = None, password: str | None = None
    ) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf: dict[str, Any] = {
            "url": url,
            "timeout": timeout_s,
            "max.retries": 2,
            "retries.wait.ms": 200,
            "retries.max.wait.ms": 1000,
        }
        if username:
            conf["basic.auth.user.info"] = f"{username}:{password or ''}"
        self.url = url
        self._client = SchemaRegistryClient(conf)
        self._by_id: dict[int, Any] = {}

    def _call(self, what: str, func: Any, *args: Any) -> Any:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return func(*args)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise SchemaError(f"registry refused {what}: not compatible ({exc.error_message})") from exc
            if exc.http_status_code in (422, 400):
                raise SchemaError(f"registry refused {what}: {exc.error_message}") from exc
            if exc.http_status_code >= 500:
                raise ServiceUnavailableError(
                    f"schema registry at {self.url} failed on {what}: HTTP {exc.http_status_code}"
                ) from exc
            raise SchemaError(f"registry: {what}: HTTP {exc.http_status_code} {exc.error_message}") from exc
        except Exception as exc:
            raise ServiceUnavailableError(
                f"schema registry at {self.url} did not answer ({what}): {type(exc).__name__}"
            ) from exc

    @classmethod
    def from_settings(cls, conn: RegistryConnection) -> SchemaRegistry:
        """The registry a component's settings point at (URL, timeout, basic auth)."""
        password = conn.schema_registry_password
        return cls(
            conn.schema_registry_url,
            timeout_s=conn.schema_registry_timeout_s,
            username=conn.schema_registry_username,
            password=password.get_secret_value() if password else None,
        )

    def close(self) -> None:
        """Release the HTTP connections (schemas already fetched stay cached)."""
        self._client.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, subject: str, schema_str: str) -> int:
        """Register (or find) ``schema_str`` under ``subject``; the registry enforces compatibility."""
        from confluent_kafka.schema_registry import Schema

        return int(
            self._call(f"registering {subject}", self._client.register_schema, subject, Schema(schema_str, "AVRO"))
        )

    def is_compatible(self, subject: str, schema_str: str) -> bool:
        """Whether ``schema_str`` may be registered under ``subject`` (True when the subject is new)."""
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return bool(self._client.test_compatibility(subject, Schema(schema_str, "AVRO")))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return True
            raise SchemaError(f"registry: compatibility check of {subject}: {exc.error_message}") from exc
        except Exception as exc:
            raise ServiceUnavailableError(f"schema registry at {self.url} did not answer") from exc

    def set_compatibility(self, subject: str, level: str) -> None:
        from confluent_kafka.schema_registry import ConfigCompatibilityLevel, ServerConfig

        self._call(
            f"setting compatibility of {subject}",
            self._client.set_config,
            subject,
            ServerConfig(compatibility=ConfigCompatibilityLevel(level)),
        )

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id`` (fetched once, then cached)."""
        parsed = self._by_id.get(schema_id)
        if parsed is None:
            schema = self._call(f"fetching schema id {schema_id}", self._client.get_schema, schema_id)
            parsed = fastavro.parse_schema(json.loads(schema.schema_str))
            self._by_id[schema_id] = parsed
        return parsed


# ---------------------------------------------------------------------- encode / decode
class AvroEncoder:
    """Encodes one topic's records in the Confluent wire format.

    ``register=True`` registers the topic schema (idempotent: the same schema gets the same id);
    otherwise it must already be registered (``sfsync schemas register``) and is looked up.
    """

    def __init__(self, registry: SchemaRegistry, topic: str, schema: TopicSchema, *, register: bool = True) -> None:
        self.topic = topic
        self.schema = schema
        subject = f"{topic}-value"
        if register:
            self.schema_id = registry.register(subject, schema.schema_str)
        else:
            self.schema_id = _lookup(registry, subject, schema.schema_str)
        header = HEADER.pack(MAGIC, self.schema_id)
        # Writing the chosen union branch directly gives the same bytes as writing the union,
        # without fastavro searching the union for the branch.
        self._strict = {n: (header + idx, branch) for n, (idx, branch, _) in schema.branches.items()}
        self._plain = {n: (header + idx, plain) for n, (idx, _, plain) in schema.branches.items()}
        self._named: dict[str, Any] = {}
        collect_named(schema.schema, self._named)
        self._branch_schemas = {str(b["name"]).rsplit(".", 1)[-1]: b for b in schema.schema}

    def _unknown(self, record_name: str) -> RecordValidationError:
        return RecordValidationError(
            record_name,
            "(record type)",
            f"not carried by topic {self.topic} (it carries {', '.join(self.schema.record_names)})",
        )

    def encode(self, record_name: str, value: Mapping[str, Any]) -> bytes:
        """Bytes for ``value`` as record ``record_name``; :class:`RecordValidationError` if it does not fit.

        Accepts logical-type values (aware ``datetime`` for timestamps, ``UUID`` or uuid strings).
        The value is checked field by field first: fastavro alone would write a string given for
        an array as its characters and silently drop unknown fields.
        """
        entry = self._strict.get(record_name)
        if entry is None:
            raise self._unknown(record_name)
        problem = first_problem(self._branch_schemas[record_name], value, record_name, self._named)
        if problem is not None:
            path, reason = problem
            raise RecordValidationError(record_name, path.split(".", 1)[1] if "." in path else path, reason)
        return self._write(entry, record_name, value)

    def encode_checked(self, record_name: str, value: Mapping[str, Any]) -> bytes:
        """Like :meth:`encode` for values whose logical types are already in Avro's storage form
        (timestamps as epoch milliseconds, uuids as checked strings), as the generated events'
        ``to_avro()`` gives them: skips per-value logical-type conversion (about a quarter of
        the encoding time). Plain types are still checked by the writer."""
        entry = self._plain.get(record_name)
        if entry is None:
            raise self._unknown(record_name)
        return self._write(entry, record_name, value)

    def _write(self, entry: tuple[bytes, Any], record_name: str, value: Mapping[str, Any]) -> bytes:
        prefix, schema = entry
        buf = io.BytesIO()
        buf.write(prefix)
        try:
            fastavro.schemaless_writer(buf, schema, value)
        except Exception as exc:  # noqa: BLE001 - fastavro raises ValueError/TypeError/AttributeError...
            raise explain_invalid(self.schema, record_name, value, exc) from None
        return buf.getvalue()


def _lookup(registry: SchemaRegistry, subject: str, schema_str: str) -> int:
    from confluent_kafka.schema_registry import Schema

    registered = registry._call(
        f"looking up {subject}", registry._client.lookup_schema, subject, Schema(schema_str, "AVRO")
    )
    return int(registered.schema_id)


class AvroDecoder:
    """Decodes Confluent-wire-format Avro from any topic into ``(record short name, dict)``.

    ``logical_types=False`` leaves logical-type values in Avro's storage form instead of converting
    each one (timestamps stay epoch milliseconds/microseconds, dates days since the epoch, uuids
    strings, decimals bytes): for a consumer that wants the numbers anyway (the sink). Every other
    value is the same either way.
    """

    def __init__(self, registry: SchemaRegistry, *, logical_types: bool = True) -> None:
        self.registry = registry
        self.logical_types = logical_types
        self._storage: dict[int, tuple[Any, list[tuple[str, Any]] | None]] = {}
        """schema id -> (writer schema without logical types, its record branches when read one by one)"""

    def _storage_schema(self, schema_id: int) -> tuple[Any, list[tuple[str, Any]] | None]:
        cached = self._storage.get(schema_id)
        if cached is None:
            plain = fastavro.parse_schema(storage_schema(_strip_private(self.registry.writer_schema(schema_id))))
            cached = plain, _record_branches(plain)
            self._storage[schema_id] = cached
        return cached

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if len(data) < HEADER.size or data[0] != MAGIC:
            raise SkippableRecordError("not Confluent wire format (missing magic byte 0 and schema id)")
        _, schema_id = HEADER.unpack_from(data)
        if self.logical_types:
            writer = self.registry.writer_schema(schema_id)
        else:
            writer, records = self._storage_schema(schema_id)
            if records is not None:
                return _read_branch(data, schema_id, records)
        try:
            # Names only where a union holds several records (a topic's union); an optional enum or
            # record comes back as its plain value.
            decoded = fastavro.schemaless_reader(
                io.BytesIO(data[HEADER.size :]),
                writer,
                None,
                return_record_name=True,
                return_record_name_override=True,
            )
        except Exception as exc:
            raise SkippableRecordError(f"cannot decode with schema id {schema_id}: {exc}") from exc
        if isinstance(decoded, tuple):
            name, value = decoded
        else:  # a single-record schema, or a union of one record
            branches = writer if isinstance(writer, list) else [writer]
            name, value = branches[0].get("name", "?"), decoded
        if not isinstance(value, dict):
            raise SkippableRecordError(f"schema id {schema_id} is not a record schema")
        return str(name).rsplit(".", 1)[-1], value


def _record_branches(schema: Any) -> list[tuple[str, Any]] | None:
    """(short name, branch) of a union of records, when each branch may be read on its own: no union
    inside holds several records (a record name would be returned there). None otherwise."""
    if not isinstance(schema, list) or not all(isinstance(b, dict) and b.get("type") == "record" for b in schema):
        return None
    named: dict[str, Any] = {}
    collect_named(schema, named)

    def is_record(node: Any) -> bool:
        node = named.get(node, node) if isinstance(node, str) else node
        return isinstance(node, dict) and node.get("type") == "record"

    def has_record_choice(node: Any) -> bool:
        if isinstance(node, list):
            return sum(map(is_record, node)) > 1 or any(has_record_choice(b) for b in node)
        if isinstance(node, dict):
            return any(has_record_choice(f["type"]) for f in node.get("fields", ())) or any(
                has_record_choice(node[k]) for k in ("items", "values") if k in node
            )
        return False

    if any(has_record_choice(f["type"]) for b in schema for f in b["fields"]):
        return None
    return [(str(b["name"]).rsplit(".", 1)[-1], b) for b in schema]


def _read_branch(data: bytes, schema_id: int, branches: list[tuple[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Read the union index, then that record alone: what ``schemaless_reader`` of the union gives with
    record names, without looking for a record name in every union inside."""
    try:
        pos, shift, z = HEADER.size, 0, 0
        while True:
            byte = data[pos]
            z |= (byte & 0x7F) << shift
            pos += 1
            shift += 7
            if not byte & 0x80:
                break
        index = (z >> 1) ^ -(z & 1)
        if not 0 <= index < len(branches):
            raise IndexError(f"union index {index} out of range")
        name, branch = branches[index]
        value = fastavro.schemaless_reader(io.BytesIO(data[pos:]), branch, None)
    except Exception as exc:
        raise SkippableRecordError(f"cannot decode with schema id {schema_id}: {exc}") from exc
    assert isinstance(value, dict)  # every branch is a record
    return name, value


# ---------------------------------------------------------------------- validation messages
def explain_invalid(schema: TopicSchema, record_name: str, value: Any, cause: Exception) -> RecordValidationError:
    """Find which field of ``value`` does not fit and say why, naming the record type and field."""
    branches = schema.schema if isinstance(schema.schema, list) else [schema.schema]
    named: dict[str, Any] = {}
    for b in branches:
        collect_named(b, named)
    branch = next(b for b in branches if str(b["name"]).endswith(f".{record_name}"))
    problem = first_problem(branch, value, record_name, named)
    if problem is None:
        return RecordValidationError(record_name, "?", str(cause))
    path, reason = problem
    return RecordValidationError(record_name, path.split(".", 1)[1] if "." in path else path, reason)


def collect_named(schema: Any, named: dict[str, Any]) -> None:
    """Index every named type defined inside ``schema`` by its full name."""
    if isinstance(schema, list):
        for branch in schema:
            collect_named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            named[schema["name"]] = schema
        for fld in schema.get("fields", ()):
            collect_named(fld["type"], named)
        for key in ("items", "values", "type"):
            if isinstance(schema.get(key), (dict, list)):
                collect_named(schema[key], named)


_PRIMITIVE_CHECKS: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "bytes": (bytes, bytearray),
    "string": (str,),
}


def first_problem(schema: Any, value: Any, path: str, named: dict[str, Any]) -> tuple[str, str] | None:
    """The first ``(field path, reason)`` where ``value`` does not fit ``schema``, else None."""
    if isinstance(schema, str):
        if schema in named:
            return first_problem(named[schema], value, path, named)
        expected = _PRIMITIVE_CHECKS.get(schema)
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
