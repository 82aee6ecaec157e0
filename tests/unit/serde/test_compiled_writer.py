"""Compiled Avro writers write exactly fastavro's bytes, for every record type of every topic.

The reference is ``fastavro.schemaless_writer`` on the same record (the storage-form branch
``AvroEncoder.encode_checked`` writes), over values generated from each schema: nulls and every union
branch, logical types in storage form, empty and filled maps and arrays, edge numbers and non-ASCII
text, optional fields left out. Values that do not fit end the same way as with fastavro (its bytes,
or an error).
"""

from __future__ import annotations

import io
import zlib
from typing import Any

import fastavro
import pytest

from sfsync.errors import RecordValidationError
from sfsync.schemas import SCHEMA_DIR
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.compiled_writer import UnsupportedSchemaError, compile_writer, write_like_fastavro
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import ALL_TOPICS
from tests.kit import FakeRegistry
from tests.kit.avro_values import AvroValues, named_types

# every topic with an Avro schema (the DLQ keeps raw bytes)
TOPIC_BASES = sorted({spec.base for spec in ALL_TOPICS if (SCHEMA_DIR / f"{spec.base}.avsc").exists()})
RECORD_TYPES = [(base, name) for base in TOPIC_BASES for name in load_topic_schema(base).record_names]


def _fastavro(schema: Any, value: Any, prefix: bytes = b"") -> bytes:
    buf = io.BytesIO()
    buf.write(prefix)
    fastavro.schemaless_writer(buf, schema, value)
    return buf.getvalue()


def _encoder(base: str) -> AvroEncoder:
    return AvroEncoder(FakeRegistry(), base, load_topic_schema(base))  # type: ignore[arg-type]


@pytest.mark.parametrize(("base", "record_name"), RECORD_TYPES)
def test_every_record_type_compiles_and_writes_fastavros_bytes_for_varied_values(base: str, record_name: str) -> None:
    topic = load_topic_schema(base)
    union = [plain for _, _, plain in topic.branches.values()]
    plain = topic.branches[record_name][2]
    writer = compile_writer(plain, union)
    encoder = _encoder(base)
    prefix, _ = encoder._plain[record_name]
    values = AvroValues(zlib.crc32(f"{base}:{record_name}".encode()), named_types(union, {}))
    for _ in range(150):
        value = values.of(plain)
        out = bytearray()
        writer(out, value)  # the compiled writer takes every value that fits: no fallback hides a difference
        assert bytes(out) == _fastavro(plain, value), value
        assert encoder.encode_checked(record_name, value) == _fastavro(plain, value, prefix), value


def test_the_planned_writes_shape_of_values_encodes_like_fastavro() -> None:
    plain = load_topic_schema("sfsync.writes").branches["Write"][2]
    write = {
        "write_id": "e1:members:0",
        "key": "ws|Contact:Member_Id__c:m-1",
        "mapping": "members",
        "sobject": "Contact",
        "operation": "DELETE",
        "external_id": {"field": "Member_Id__c", "value": "m-1"},
        "match": [{"field": "Email", "value": "ada@example.com"}],
        "search_objects": ["Contact", "Lead"],
        "create_if_missing": False,
        "record_type": "Member",
        "fields": {
            "LastName": {"value": "Lovelace", "policy": "ALWAYS", "updated_at": 1772357400123},
            "Count__c": {"value": 12, "policy": "IF_EMPTY", "updated_at": 1},
            "Score__c": {"value": 2.5, "policy": "ALWAYS", "updated_at": 1},
            "Flag__c": {"value": False, "policy": "ALWAYS", "updated_at": 1},
            "Cleared__c": {"value": None, "policy": "ALWAYS", "updated_at": 1},
            "Big__c": {"value": 2**63 + 5, "policy": "ALWAYS", "updated_at": 1},  # too big a long: a double
        },
        "parents": {"Contact__c": {"key": "ws|Contact:Email:a@b.c", "sobject": "Contact"}},
        "workspace_id": "ws",
        "source": {
            "topic": "product.members",
            "partition": 3,
            "offset": 2**40,
            "event_id": "e1",
            "event_type": "UserCreated",
            "occurred_at": 1772357400123,
        },
    }
    encoder = _encoder("sfsync.writes")
    prefix, _ = encoder._plain["Write"]
    assert encoder.encode_checked("Write", write) == _fastavro(plain, write, prefix)
    minimal = {k: write[k] for k in ("write_id", "key", "mapping", "sobject")}  # the rest from defaults
    minimal |= {"workspace_id": "ws", "source": write["source"]}
    assert encoder.encode_checked("Write", minimal) == _fastavro(plain, minimal, prefix)


@pytest.mark.parametrize(
    "change",
    [
        {"create_if_missing": 1},  # an int for a boolean: fastavro writes it as true
        {"operation": "MERGE"},  # not a symbol
        {"key": None},  # null for a string
        {"search_objects": "Contact"},  # a string for an array
        {"match": ({"field": "Email", "value": "x"},)},  # a tuple for an array
        {"fields": {"A": {"value": ("string", "x"), "updated_at": 1}}},  # fastavro's tuple notation in a union
        {"fields": {"A": {"value": b"bytes", "updated_at": 1}}},  # no branch takes bytes
        {"fields": {"A": {"value": "x", "updated_at": 1.0}}},  # a float for a long
        {"fields": {"A": {"value": "x"}}},  # a required field missing
        {"external_id": {"field": "F", "value": "v", "-type": "sfsync.pipeline.MatchKey"}},
    ],
)
def test_a_value_that_does_not_fit_ends_as_with_fastavro(change: dict[str, Any]) -> None:
    plain = load_topic_schema("sfsync.writes").branches["Write"][2]
    write = {
        "write_id": "w",
        "key": "k",
        "mapping": "m",
        "sobject": "Contact",
        "workspace_id": "ws",
        "source": {"topic": "t", "partition": 0, "offset": 0, "event_id": "e", "event_type": "T", "occurred_at": 0},
        **change,
    }
    encoder = _encoder("sfsync.writes")
    prefix, _ = encoder._plain["Write"]
    try:
        expected: bytes | None = _fastavro(plain, write, prefix)
    except Exception:  # fastavro refuses it: so must encode_checked
        expected = None
    if expected is None:
        with pytest.raises(RecordValidationError):
            encoder.encode_checked("Write", write)
    else:
        assert encoder.encode_checked("Write", write) == expected
        assert write_like_fastavro(compile_writer(plain), plain, write, prefix) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"A": None, "B": "é€", "C": True, "D": -(2**63), "E": 2.5, "F": 7},  # every branch, written inline
        {"A": b"bytes"},  # no branch takes bytes
        {"A": ("string", "x")},  # fastavro's tuple notation
        {"A": 2**63},  # out of a long's range: a double for fastavro
        {1: "x"},  # a key that is not a string
        {"A": {"value": "x"}},  # a record for a union of primitives
    ],
)
def test_a_results_fields_map_is_written_as_fastavro_writes_it_or_refused_as_it_refuses_it(
    fields: dict[Any, Any],
) -> None:
    plain = load_topic_schema("sfsync.results").branches["WriteResult"][2]
    result = {
        "write_id": "w",
        "key": "k",
        "mapping": "m",
        "sobject": "Contact",
        "salesforce_id": "003",
        "created": False,
        "fields": fields,
        "acknowledged_at": 1,
        "workspace_id": "ws",
        "source": {"topic": "t", "partition": 0, "offset": 0, "event_id": "e", "event_type": "T", "occurred_at": 0},
    }
    encoder = _encoder("sfsync.results")
    prefix, _ = encoder._plain["WriteResult"]
    try:
        expected: bytes | None = _fastavro(plain, result, prefix)
    except Exception:  # fastavro refuses it: so must encode_checked
        expected = None
    if expected is None:
        with pytest.raises(RecordValidationError):
            encoder.encode_checked("WriteResult", result)
    else:
        assert encoder.encode_checked("WriteResult", result) == expected
        assert write_like_fastavro(compile_writer(plain), plain, result, prefix) == expected


def test_a_union_no_python_type_decides_is_left_to_fastavro() -> None:
    for union in (["string", {"type": "enum", "name": "E", "symbols": ["A"]}], ["null", "int", "long"], ["float"]):
        record = fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "f", "type": union}]})
        with pytest.raises(UnsupportedSchemaError):
            compile_writer(record)


def test_a_recursive_record_compiles_and_writes_fastavros_bytes() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"], "default": None}],
        }
    )
    value = {"v": 1, "next": {"v": -300, "next": {"v": 2**40}}}
    out = bytearray()
    compile_writer(schema)(out, value)
    assert bytes(out) == _fastavro(schema, value)


def test_records_written_inside_each_other_mutually_recursive_write_fastavros_bytes() -> None:
    # records, arrays and maps are written inline inside a record's writer, down to a reference to a
    # record being written further out
    inner = {
        "type": "record",
        "name": "t.B",
        "fields": [
            {"name": "a", "type": ["null", "t.A"]},
            {"name": "xs", "type": {"type": "array", "items": {"type": "map", "values": ["null", "t.B", "long"]}}},
        ],
    }
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "t.A",
            "fields": [
                {"name": "b", "type": ["null", inner]},
                {"name": "n", "type": "string"},
                {"name": "bs", "type": {"type": "array", "items": "t.B"}},
            ],
        }
    )
    writer = compile_writer(schema)
    values = [
        {"b": None, "n": "x", "bs": []},
        {
            "b": {
                "a": {"b": None, "n": "y", "bs": [{"a": None, "xs": []}]},
                "xs": [{"k": None, "j": {"a": None, "xs": [{"z": 3}]}, "m": -5}],
            },
            "n": "é",
            "bs": [{"a": None, "xs": [{}]}, {"a": {"b": {"a": None, "xs": []}, "n": "", "bs": []}, "xs": []}],
        },
    ]
    for value in values:
        out = bytearray()
        writer(out, value)
        assert bytes(out) == _fastavro(schema, value)


def test_longs_repeated_and_changing_across_items_write_fastavros_bytes() -> None:
    # a long inside an array or map keeps its last value's bytes for the next item: each item must still
    # get its own value's bytes
    item = {
        "type": "record",
        "name": "t.Item",
        "fields": [{"name": "at", "type": "long"}, {"name": "n", "type": ["null", "int", "string"]}],
    }
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "t.Outer",
            "fields": [
                {"name": "by", "type": {"type": "map", "values": item}},
                {"name": "xs", "type": {"type": "array", "items": "t.Item"}},
                {"name": "ls", "type": {"type": "array", "items": "long"}},
            ],
        }
    )
    at = 1_772_357_400_123
    runs = [at, at, at + 1, at, 0, 0, -1, -1, 2**63 - 1, 2**63 - 1, -(2**63), 63, 64, 64]
    value = {
        "by": {f"k{i}": {"at": v, "n": v % 2**31 if i % 2 else None} for i, v in enumerate(runs)},
        "xs": [{"at": v, "n": str(v)} for v in reversed(runs)],
        "ls": runs,
    }
    writer = compile_writer(schema)
    for _ in range(2):  # a second call starts afresh
        out = bytearray()
        writer(out, value)
        assert bytes(out) == _fastavro(schema, value)
    out = bytearray()
    writer(out, {"by": {"a": {"at": 5, "n": None}}, "xs": [{"at": at, "n": 1}], "ls": [at]})
    assert bytes(out) == _fastavro(schema, {"by": {"a": {"at": 5, "n": None}}, "xs": [{"at": at, "n": 1}], "ls": [at]})
