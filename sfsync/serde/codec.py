"""Avro in the Confluent wire format: ``0x00 | schema id (4 bytes, big endian) | Avro binary``.

- :class:`AvroEncoder` writes one topic's records with the topic's schema registered under
  ``<topic>-value`` (TopicNameStrategy, set explicitly).
- :class:`AvroDecoder` reads any such message, fetching the writer schema by id (cached); code on an
  event loop awaits :meth:`AvroDecoder.prefetch` first, so that a fetch through a registry outage
  never blocks the loop (:mod:`sfsync.serde.registry`).
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Awaitable, Mapping
from contextlib import suppress
from typing import Any

import fastavro

from sfsync.errors import RecordValidationError, SkippableRecordError
from sfsync.serde.compiled_reader import Reader, UnreadableSchemaError, compile_reader
from sfsync.serde.compiled_writer import UnsupportedSchemaError, Writer, compile_writer
from sfsync.serde.logical_values import Converter, UnsupportedLogicalTypeError, compile_converter
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import (
    TopicSchema,
    collect_named,
    explain_invalid,
    first_problem,
    storage_schema,
    strip_private,
)

MAGIC = 0
HEADER = struct.Struct(">bI")


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
            self.schema_id = registry.lookup(subject, schema.schema_str)
        header = HEADER.pack(MAGIC, self.schema_id)
        # Writing the chosen union branch directly gives the same bytes as writing the union,
        # without fastavro searching the union for the branch.
        self._strict = {n: (header + idx, branch) for n, (idx, branch, _) in schema.branches.items()}
        self._plain = {n: (header + idx, plain) for n, (idx, _, plain) in schema.branches.items()}
        # encode_checked writes each record type with a writer compiled for it (the same bytes as
        # fastavro's, which still writes what the compiled writer refuses: see compiled_writer)
        self._compiled: dict[str, tuple[bytes, Writer]] = {}
        union = [plain for _, plain in self._plain.values()]
        for name, (prefix, plain) in self._plain.items():
            with suppress(UnsupportedSchemaError):
                self._compiled[name] = (prefix, compile_writer(plain, union))
        self._named: dict[str, Any] = {}
        collect_named(schema.schema, self._named, keep_first=False)
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
        the encoding time). Plain types are still checked by the writer.

        The bytes are fastavro's: written by a writer compiled for the record type, which leaves any
        value it does not take exactly as fastavro would to fastavro (:mod:`sfsync.serde.compiled_writer`)."""
        compiled = self._compiled.get(record_name)
        if compiled is not None:
            prefix, writer = compiled
            out = bytearray(prefix)
            try:
                writer(out, value)
            except Exception:  # noqa: BLE001, S110 - refused: fastavro writes it, or says why it does not fit
                pass
            else:
                return bytes(out)
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


class AvroDecoder:
    """Decodes Confluent-wire-format Avro from any topic into ``(record short name, dict)``.

    ``logical_types=False`` leaves logical-type values in Avro's storage form instead of converting
    each one (timestamps stay epoch milliseconds/microseconds, dates days since the epoch, uuids
    strings, decimals bytes): for a consumer that wants the numbers anyway (the sink). Every other
    value is the same either way. In storage form, each record type of a topic is read by a reader
    compiled for its writer schema (:mod:`sfsync.serde.compiled_reader`): fastavro's values, for less.

    ``uuids_as_text=True`` (with logical types) gives a uuid as the text of its ``uuid.UUID`` (checked
    and canonical: a record whose uuid is none fails to decode as without it), where the ``uuid.UUID``
    would be made only to be turned back into text (the outbound processor plans from text).
    """

    def __init__(self, registry: SchemaRegistry, *, logical_types: bool = True, uuids_as_text: bool = False) -> None:
        self.registry = registry
        self.logical_types = logical_types
        self.uuids_as_text = uuids_as_text
        self._storage: dict[int, tuple[Any, list[_Branch] | None]] = {}
        """schema id -> (writer schema without logical types, its record branches when read one by one)"""
        self._converters: dict[int, dict[str, Converter | None] | None] = {}
        """schema id -> per record branch, the conversion of its logical values from storage form (None:
        the schema is read by fastavro with logical types)"""
        self._unknown: dict[int, SkippableRecordError] = {}
        """schema id -> why :meth:`prefetch` found no such schema: the next :meth:`decode` of it raises that"""

    def prefetch(self, data: bytes | None) -> Awaitable[None] | None:
        """None when :meth:`decode` of ``data`` needs nothing from the registry (its writer schema is
        cached, or ``data`` is not in the wire format); else what to await first, on an event loop: it
        fetches the writer schema without blocking the loop, retrying through an outage until the
        registry's deadline (:meth:`~sfsync.serde.registry.SchemaRegistry.awriter_schema`).

        Awaiting it raises :class:`~sfsync.errors.ServiceUnavailableError` when the registry did not answer
        by then; an unknown schema id is not raised there but by the :meth:`decode` that follows.
        """
        if data is None or len(data) < HEADER.size or data[0] != MAGIC:
            return None
        _, schema_id = HEADER.unpack_from(data)
        if schema_id in self._storage or self.registry.has_writer_schema(schema_id):
            return None
        return self._fetch(schema_id)

    async def _fetch(self, schema_id: int) -> None:
        try:
            await self.registry.awriter_schema(schema_id)
        except SkippableRecordError as exc:
            self._unknown[schema_id] = exc

    def _writer_schema(self, schema_id: int) -> Any:
        if self._unknown:
            unknown = self._unknown.pop(schema_id, None)
            if unknown is not None:
                raise unknown
        return self.registry.writer_schema(schema_id)

    def _storage_schema(self, schema_id: int) -> tuple[Any, list[_Branch] | None]:
        cached = self._storage.get(schema_id)
        if cached is None:
            plain = fastavro.parse_schema(storage_schema(strip_private(self._writer_schema(schema_id))))
            cached = plain, _record_branches(plain)
            self._storage[schema_id] = cached
        return cached

    def _logical_converters(self, schema_id: int, writer: Any) -> dict[str, Converter | None] | None:
        """Per record branch of the writer schema (by short name), the conversion of its logical values; None when
        fastavro must read it with logical types (not a union of records read one by one, or a
        logical type :mod:`~sfsync.serde.logical_values` does not convert)."""
        _, records = self._storage_schema(schema_id)
        branches = strip_private(writer)
        if records is None or not isinstance(branches, list) or len(branches) != len(records):
            return None
        try:
            return {
                name: compile_converter(branch, within=branches, uuids_as_text=self.uuids_as_text)
                for (name, _, _), branch in zip(records, branches, strict=True)
            }
        except UnsupportedLogicalTypeError:
            return None

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if len(data) < HEADER.size or data[0] != MAGIC:
            raise SkippableRecordError("not Confluent wire format (missing magic byte 0 and schema id)")
        _, schema_id = HEADER.unpack_from(data)
        if self.logical_types:
            writer = self._writer_schema(schema_id)
            if schema_id not in self._converters:
                self._converters[schema_id] = self._logical_converters(schema_id, writer)
            converters = self._converters[schema_id]
            if converters is not None:
                # storage form, then only the schema's logical values converted: fastavro's record, cheaper
                _, records = self._storage_schema(schema_id)
                assert records is not None
                name, record = _read_branch(data, schema_id, records)
                convert = converters[name]
                if convert is not None:
                    try:
                        convert(record)
                    except Exception as exc:
                        raise SkippableRecordError(f"cannot decode with schema id {schema_id}: {exc}") from exc
                return name, record
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
        if self.logical_types and self.uuids_as_text:
            value = _uuids_as_text(value)
        return str(name).rsplit(".", 1)[-1], value


def _uuids_as_text(value: Any) -> Any:
    """``value`` (as fastavro decodes it with logical types) with every ``uuid.UUID`` as its text."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _uuids_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_uuids_as_text(v) for v in value]
    return value


_Branch = tuple[str, Any, Reader | None]
"""A record branch of a topic's union: (short name, its parsed schema, its compiled reader or None)."""


def _record_branches(schema: Any) -> list[_Branch] | None:
    """The record branches of a union of records, when each branch may be read on its own: no union
    inside holds several records (a record name would be returned there). None otherwise.

    Each comes with its compiled reader (:mod:`sfsync.serde.compiled_reader`), or None where fastavro
    reads it."""
    if not isinstance(schema, list) or not all(isinstance(b, dict) and b.get("type") == "record" for b in schema):
        return None
    named: dict[str, Any] = {}
    collect_named(schema, named, keep_first=False)

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
    return [(str(b["name"]).rsplit(".", 1)[-1], b, _compiled(b, named)) for b in schema]


def _compiled(branch: Any, named: dict[str, Any]) -> Reader | None:
    try:
        return compile_reader(branch, named)
    except UnreadableSchemaError:
        return None


def _read_branch(data: bytes, schema_id: int, branches: list[_Branch]) -> tuple[str, dict[str, Any]]:
    """Read the union index, then that record alone: what ``schemaless_reader`` of the union gives with
    record names, without looking for a record name in every union inside (with the branch's compiled
    reader: the same values, for a fraction of the cost)."""
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
        name, branch, reader = branches[index]
        if reader is not None:
            value, _ = reader(data, pos)
        else:
            value = fastavro.schemaless_reader(io.BytesIO(data[pos:]), branch, None)
    except Exception as exc:
        raise SkippableRecordError(f"cannot decode with schema id {schema_id}: {exc}") from exc
    assert isinstance(value, dict)  # every branch is a record
    return name, value
