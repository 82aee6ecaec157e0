"""AvroDecoder(logical_types=False): logical-type values stay in storage form, everything else as before."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import uuid
from typing import Any

import fastavro
import pytest

from sfsync.errors import SkippableRecordError
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.schema import load_topic_schema, storage_schema
from sfsync.topics import PRODUCT_TOPICS
from tests.kit import FakeRegistry

T0 = dt.datetime(2026, 3, 1, 9, 30, 0, 123000, tzinfo=dt.UTC)
T0_MS = 1772357400123


def a_write() -> dict[str, Any]:
    return {
        "write_id": "e1:members:0",
        "key": "Contact:Email:a@example.com",
        "mapping": "members",
        "sobject": "Contact",
        "operation": "UPSERT",
        "external_id": None,
        "match": [{"field": "Email", "value": "a@example.com"}],
        "search_objects": ["Contact", "Lead"],
        "create_if_missing": True,
        "record_type": None,
        "fields": {
            "LastName": {"value": "Lovelace", "policy": "ALWAYS", "updated_at": T0},
            "NumberOfEmployees": {"value": 12, "policy": "IF_EMPTY", "updated_at": T0 + dt.timedelta(seconds=1)},
        },
        "parents": {"AccountId": {"key": "Account:Name:Acme", "sobject": "Account"}},
        "workspace_id": "w1",
        "source": {
            "topic": "product.members",
            "partition": 2,
            "offset": 7,
            "event_id": "e1",
            "event_type": "UserCreated",
            "occurred_at": T0,
        },
    }


def as_storage(value: Any) -> Any:
    """What the storage-form decoder should give for a value the default decoder gave."""
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: as_storage(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_storage(v) for v in value]
    return value


def test_write_timestamps_stay_epoch_millis_and_the_rest_is_the_same() -> None:
    registry = FakeRegistry()
    data = AvroEncoder(registry, "sfsync.writes", load_topic_schema("sfsync.writes")).encode("Write", a_write())  # type: ignore[arg-type]
    name, plain = AvroDecoder(registry, logical_types=False).decode(data)  # type: ignore[arg-type]
    default_name, logical = AvroDecoder(registry).decode(data)  # type: ignore[arg-type]
    assert name == default_name == "Write"
    assert plain["source"]["occurred_at"] == T0_MS and type(plain["source"]["occurred_at"]) is int
    assert plain["fields"]["LastName"]["updated_at"] == T0_MS
    assert plain["fields"]["NumberOfEmployees"]["updated_at"] == T0_MS + 1000
    assert logical["source"]["occurred_at"] == T0  # the default is unchanged: datetimes
    assert plain == as_storage(logical)
    assert plain["fields"]["NumberOfEmployees"]["value"] == 12 and plain["parents"] == a_write()["parents"]


def test_every_product_event_decodes_alike_but_for_logical_types() -> None:
    registry = FakeRegistry()
    encoders = {}
    for spec in PRODUCT_TOPICS:
        encoder = AvroEncoder(registry, spec.name(""), load_topic_schema(spec.base))  # type: ignore[arg-type]
        encoders.update({name: encoder for name in encoder.schema.record_names})
    plain_decoder = AvroDecoder(registry, logical_types=False)  # type: ignore[arg-type]
    default_decoder = AvroDecoder(registry)  # type: ignore[arg-type]
    seen: set[str] = set()
    for event in CommunitySimulator(seed=3).stream(400):
        data = encoders[event.RECORD_NAME].encode_checked(event.RECORD_NAME, event.to_avro())
        name, plain = plain_decoder.decode(data)
        assert (name, plain) == (event.RECORD_NAME, event.to_avro())  # storage form: what was written
        default_name, logical = default_decoder.decode(data)
        assert default_name == name and plain == as_storage(logical)
        seen.add(name)
    assert len(seen) >= 10  # a union of several record types per topic, nested records, enums


def test_the_storage_decoder_refuses_what_the_default_one_refuses() -> None:
    registry = FakeRegistry()
    data = AvroEncoder(registry, "sfsync.writes", load_topic_schema("sfsync.writes")).encode("Write", a_write())  # type: ignore[arg-type]
    decoder = AvroDecoder(registry, logical_types=False)  # type: ignore[arg-type]
    with pytest.raises(SkippableRecordError, match="not Confluent wire format"):
        decoder.decode(b"{}")
    with pytest.raises(SkippableRecordError, match="cannot decode with schema id"):
        decoder.decode(data[:20])


def test_storage_schema_drops_logical_types_only() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "id", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": None},
            {"name": "m", "type": {"type": "map", "values": "string"}, "default": {"logicalType": "kept"}},
        ],
    }
    assert storage_schema(schema) == {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "at", "type": {"type": "long"}},
            {"name": "id", "type": ["null", {"type": "string"}], "default": None},
            {"name": "m", "type": {"type": "map", "values": "string"}, "default": {"logicalType": "kept"}},
        ],
    }


def wire(registry: FakeRegistry, schema: Any, value: Any) -> bytes:
    schema_id = registry.register("custom-value", json.dumps(schema))
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
    return buf.getvalue()


A = {"type": "record", "name": "t.A", "fields": [{"name": "a", "type": "int"}]}
B = {"type": "record", "name": "t.B", "fields": [{"name": "b", "type": "string"}]}
STAMP = {"type": "long", "logicalType": "timestamp-millis"}


@pytest.mark.parametrize(
    ("schema", "value", "expected_name"),
    [
        # a union inside that holds several records: their names come back as with the default decoder
        (
            [
                {
                    "type": "record",
                    "name": "t.Outer",
                    "fields": [{"name": "at", "type": STAMP}, {"name": "x", "type": [A, B]}],
                }
            ],
            ("t.Outer", {"at": T0, "x": ("t.B", {"b": "bee"})}),
            "Outer",
        ),
        # a single record, not a union
        ({"type": "record", "name": "t.Solo", "fields": [{"name": "at", "type": STAMP}]}, {"at": T0}, "Solo"),
    ],
    ids=["nested-record-choice", "single-record"],
)
def test_schemas_not_read_branch_by_branch_decode_like_the_default(schema: Any, value: Any, expected_name: str) -> None:
    registry = FakeRegistry()
    data = wire(registry, schema, value)
    name, plain = AvroDecoder(registry, logical_types=False).decode(data)  # type: ignore[arg-type]
    default_name, logical = AvroDecoder(registry).decode(data)  # type: ignore[arg-type]
    assert name == default_name == expected_name
    assert plain["at"] == T0_MS and plain == as_storage(logical)
    if expected_name == "Outer":
        assert plain["x"] == ("t.B", {"b": "bee"})


@pytest.mark.parametrize("index", [b"\x04", b"\x01", b"\x80"], ids=["past-the-end", "negative", "truncated"])
def test_a_bad_union_index_is_refused(index: bytes) -> None:
    registry = FakeRegistry()
    data = wire(registry, [A, B], ("t.A", {"a": 1}))
    assert AvroDecoder(registry, logical_types=False).decode(data) == ("A", {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(SkippableRecordError, match="cannot decode with schema id"):
        AvroDecoder(registry, logical_types=False).decode(data[:5] + index)  # type: ignore[arg-type]
