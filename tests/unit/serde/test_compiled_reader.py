"""The compiled Avro readers (sfsync.serde.compiled_reader) read what fastavro's generic reader reads, value
for value: every record type of every topic, and a schema with every kind of type (nulls, unions, logical
types, maps, arrays, enums, fixed, recursion), over seeded random values; bad bytes raise."""

from __future__ import annotations

import io
import math
import random
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest

from sfsync.errors import SkippableRecordError
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.compiled_reader import UnreadableSchemaError, compile_reader
from sfsync.serde.schema import SCHEMA_DIR, load_topic_schema, storage_schema, strip_private, zigzag_varint
from tests.kit import FakeRegistry

EVERY_KIND: dict[str, Any] = {
    "type": "record",
    "name": "Everything",
    "namespace": "test.kinds",
    "fields": [
        {"name": "nothing", "type": "null"},
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "exact", "type": "double"},
        {"name": "raw", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
        {"name": "scalar", "type": ["null", "string", "boolean", "long", "double"]},
        {"name": "maybe_colour", "type": ["null", "Colour"]},
        {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "at_us", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {
            "name": "values",
            "type": {
                "type": "map",
                "values": {
                    "type": "record",
                    "name": "Value",
                    "fields": [
                        {"name": "value", "type": ["null", "string", "boolean", "long", "double"]},
                        {"name": "colour", "type": "Colour"},
                        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                    ],
                },
            },
        },
        {"name": "list", "type": {"type": "array", "items": ["null", "Value"]}},
        {"name": "names", "type": {"type": "map", "values": {"type": "array", "items": "string"}}},
        {
            "name": "chain",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Link",
                    "fields": [{"name": "n", "type": "int"}, {"name": "next", "type": ["null", "Link"]}],
                },
            ],
        },
        {"name": "digests", "type": {"type": "array", "items": "Digest"}},
    ],
}


def _topics() -> list[str]:
    out = []
    for path in sorted(Path(SCHEMA_DIR).glob("*.avsc")):
        text = path.read_text()
        if text.lstrip().startswith("["):  # a topic's schema is the union of its record types
            out.append(path.stem)
    return out


def _random_value(schema: Any, named: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A random value of ``schema`` (parsed, storage form) that fastavro writes."""
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):
        if depth > 3 and "null" in schema:
            return None
        return _random_value(rng.choice(schema), named, rng, depth + 1)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(kind, (dict, list)):
        return _random_value(kind, named, rng, depth)
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 63, -64, 64, -(2**31), 2**31 - 1, rng.randint(-(2**31), 2**31 - 1)])
    if kind == "long":
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 1_772_357_400_123, rng.randint(-(2**63), 2**63 - 1)])
    if kind == "float":
        return struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0]
    if kind == "double":
        return rng.choice([0.0, -0.0, math.inf, -math.inf, 1e300, rng.uniform(-1e9, 1e9)])
    if kind == "bytes":
        return rng.randbytes(rng.choice([0, 1, 63, 64, 200]))
    if kind == "string":
        alphabet = "abcXYZ09 @.-_éß漢字😀\x00"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 63, 64, 300])))
    if kind == "fixed":
        return rng.randbytes(int(schema["size"]))
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "array":
        return [_random_value(schema["items"], named, rng, depth + 1) for _ in range(rng.choice([0, 1, 3, 70]))]
    if kind == "map":
        count = rng.choice([0, 1, 3, 17])
        return {
            f"k{i}-{rng.random():.3f}": _random_value(schema["values"], named, rng, depth + 1) for i in range(count)
        }
    if kind == "record":
        return {f["name"]: _random_value(f["type"], named, rng, depth + 1) for f in schema["fields"]}
    raise AssertionError(f"unexpected type {kind!r}")


def _named(schema: Any, named: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, list):
        for branch in schema:
            _named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            named.setdefault(schema["name"], schema)
        for f in schema.get("fields", ()):
            _named(f["type"], named)
        for key in ("items", "values", "type"):
            if isinstance(schema.get(key), (dict, list)):
                _named(schema[key], named)
    return named


def _fastavro(data: bytes, schema: Any) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), schema, None)


def _written(value: Any, schema: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    return buf.getvalue()


def test_a_schema_of_every_kind_reads_as_fastavro_reads_it() -> None:
    schema = fastavro.parse_schema(storage_schema(EVERY_KIND))
    named = _named(schema, {})
    reader = compile_reader(schema)
    rng = random.Random(14)
    for _ in range(300):
        value = _random_value(schema, named, rng)
        data = _written(value, schema)
        read, end = reader(data + b"trailing", 0)
        assert read == _fastavro(data, schema) and end == len(data)
        assert list(read) == [f["name"] for f in EVERY_KIND["fields"]]  # the fields in schema order


def test_logical_types_stay_in_storage_form_as_fastavro_reads_them_without_conversion() -> None:
    schema = fastavro.parse_schema(storage_schema(EVERY_KIND))
    named = _named(schema, {})
    value = _random_value(schema, named, random.Random(1))
    value.update(at_ms=1_772_357_400_123, at_us=-5, day=20_000, id="6f1c0d0e-8c1e-4c5e-9b7a-1d2e3f4a5b6c")
    read, _ = compile_reader(schema)(_written(value, schema), 0)
    assert (read["at_ms"], read["at_us"], read["day"], read["id"]) == (1_772_357_400_123, -5, 20_000, value["id"])
    assert type(read["at_ms"]) is int and type(read["amount"]) is bytes


@pytest.mark.parametrize("topic", _topics())
def test_every_record_type_of_every_topic_reads_as_fastavro_reads_it(topic: str) -> None:
    union = fastavro.parse_schema(storage_schema(strip_private(load_topic_schema(topic).schema)))
    named = _named(union, {})
    rng = random.Random(topic)
    for branch in union:
        reader = compile_reader(branch, named)
        for _ in range(40):
            data = _written(_random_value(branch, named, rng), branch)
            assert reader(data, 0) == (_fastavro(data, branch), len(data))


def test_blocks_with_a_byte_size_read_as_fastavro_reads_them() -> None:
    # A writer may give a block's count negated, then the block's size in bytes (fastavro never writes it).
    schema = fastavro.parse_schema({"type": "map", "values": {"type": "array", "items": "long"}})
    items = zigzag_varint(-2) + zigzag_varint(2) + zigzag_varint(7) + zigzag_varint(-300)
    array = zigzag_varint(-2) + zigzag_varint(len(items) - 2) + items[2:] + zigzag_varint(0)
    data = zigzag_varint(-1) + zigzag_varint(99) + zigzag_varint(1) + b"a" + array + zigzag_varint(0)
    assert compile_reader(schema)(data, 0) == (_fastavro(data, schema), len(data)) == ({"a": [7, -300]}, len(data))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (zigzag_varint(5) + b"ab", "truncated string"),
        (zigzag_varint(-3) + b"abc", "negative length"),
        (b"\xff" * 11, "varint too long"),
    ],
)
def test_bad_bytes_raise(data: bytes, why: str) -> None:
    with pytest.raises((ValueError, IndexError)):
        compile_reader("string")(data, 0)


def test_a_union_or_enum_index_out_of_range_raises() -> None:
    union = compile_reader(fastavro.parse_schema(["null", "string"]))
    enum = compile_reader(fastavro.parse_schema({"type": "enum", "name": "E", "symbols": ["A", "B"]}))
    for reader, data in [
        (union, zigzag_varint(2)),
        (union, zigzag_varint(-1)),
        (enum, zigzag_varint(2)),
        (enum, zigzag_varint(-1)),
    ]:
        with pytest.raises(IndexError):
            reader(data, 0)


def test_a_union_of_several_records_is_left_to_fastavro() -> None:
    a = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]}
    b = {"type": "record", "name": "B", "fields": [{"name": "y", "type": "int"}]}
    with pytest.raises(UnreadableSchemaError):
        compile_reader(
            fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "u", "type": [a, b]}]})
        )


def test_names_from_the_schema_never_become_code() -> None:
    hostile = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "x'): import os  #", "type": {"type": "enum", "name": "E", "symbols": ["__import__"]}}],
    }
    schema = fastavro.parse_schema(hostile)
    data = zigzag_varint(0)
    assert compile_reader(schema)(data, 0) == ({"x'): import os  #": "__import__"}, 1) == (_fastavro(data, schema), 1)


def test_the_storage_decoder_reads_writes_and_results_with_compiled_readers_as_fastavro_does() -> None:
    registry = FakeRegistry()
    decoder = AvroDecoder(registry, logical_types=False)  # type: ignore[arg-type]
    rng = random.Random(7)
    for topic, record in [("sfsync.writes", "Write"), ("sfsync.results", "WriteResult")]:
        encoder = AvroEncoder(registry, topic, load_topic_schema(topic))  # type: ignore[arg-type]
        _, branches = decoder._storage_schema(encoder.schema_id)
        assert branches is not None and all(reader is not None for _, _, reader in branches)
        union = fastavro.parse_schema(storage_schema(strip_private(load_topic_schema(topic).schema)))
        named = _named(union, {})
        for _ in range(50):
            value = _random_value(union[0], named, rng)
            data = encoder.encode_checked(record, value)
            assert decoder.decode(data) == (record, _fastavro(data[6:], union[0]))
        with pytest.raises(SkippableRecordError):
            decoder.decode(data[:-1] if len(data) > 7 else data + b"\x80")
