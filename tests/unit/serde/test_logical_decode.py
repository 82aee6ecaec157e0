"""AvroDecoder reads logical types from storage form plus a compiled conversion: the same records as
fastavro's reader with logical types, for every record type of every topic."""

from __future__ import annotations

import io
import uuid
import zlib
from typing import Any

import fastavro
import pytest

from sfsync.errors import SkippableRecordError
from sfsync.producers.fake import CommunitySimulator
from sfsync.schemas import SCHEMA_DIR
from sfsync.serde.codec import HEADER, AvroDecoder, AvroEncoder
from sfsync.serde.codec import _uuids_as_text as uuids_as_text  # the fallback path's, an oracle here
from sfsync.serde.logical_values import UnsupportedLogicalTypeError, compile_converter
from sfsync.serde.schema import load_topic_schema, storage_schema
from sfsync.topics import ALL_TOPICS, PRODUCT_TOPICS
from tests.kit import FakeRegistry
from tests.kit.avro_values import AvroValues, named_types

TOPIC_BASES = sorted({spec.base for spec in ALL_TOPICS if (SCHEMA_DIR / f"{spec.base}.avsc").exists()})


def _fastavro_logical(decoder: AvroDecoder, data: bytes) -> tuple[str, Any]:
    writer = decoder.registry.writer_schema(HEADER.unpack_from(data)[1])
    decoded = fastavro.schemaless_reader(
        io.BytesIO(data[HEADER.size :]), writer, None, return_record_name=True, return_record_name_override=True
    )
    name, value = decoded if isinstance(decoded, tuple) else (writer[0]["name"], decoded)  # a union of one record
    return str(name).rsplit(".", 1)[-1], value


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same Python types all the way down (a UUID is not its text, an int not a datetime)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or a != a  # NaN


@pytest.mark.parametrize("base", TOPIC_BASES)
def test_every_record_type_decodes_as_fastavro_with_logical_types(base: str) -> None:
    registry = FakeRegistry()
    topic = load_topic_schema(base)
    encoder = AvroEncoder(registry, base, topic)  # type: ignore[arg-type]
    decoder = AvroDecoder(registry)  # type: ignore[arg-type]
    storage = storage_schema(topic.schema)
    values = AvroValues(zlib.crc32(base.encode()), named_types(topic.schema, {}))
    for name, (_, _, _) in topic.branches.items():
        branch = next(b for b in topic.schema if str(b["name"]).rsplit(".", 1)[-1] == name)
        for _ in range(60):
            data = encoder.encode_checked(name, values.of(branch))
            found = decoder.decode(data)
            assert _same(found, _fastavro_logical(decoder, data)), (name, found)
    assert decoder._converters, "the compiled conversion was used"
    assert storage  # the topic has a storage form (no logical annotation left to convert by fastavro)


def test_the_simulators_product_events_decode_as_fastavro_with_logical_types() -> None:
    registry = FakeRegistry()
    encoders = {}
    for spec in PRODUCT_TOPICS:
        encoder = AvroEncoder(registry, spec.base, load_topic_schema(spec.base))  # type: ignore[arg-type]
        encoders.update(dict.fromkeys(encoder.schema.record_names, encoder))
    decoder = AvroDecoder(registry)  # type: ignore[arg-type]
    for event in CommunitySimulator(seed=5).stream(1500):
        data = encoders[event.RECORD_NAME].encode_checked(event.RECORD_NAME, event.to_avro())
        assert _same(decoder.decode(data), _fastavro_logical(decoder, data))


def test_a_uuid_that_is_not_one_parks_as_with_fastavro() -> None:
    registry = FakeRegistry()
    topic = load_topic_schema("product.members")
    encoder = AvroEncoder(registry, "product.members", topic)  # type: ignore[arg-type]
    event = next(e for e in CommunitySimulator(seed=5).stream(50) if e.RECORD_NAME == "UserCreated").to_avro()
    event["event_id"] = "not-a-uuid"
    data = encoder.encode_checked("UserCreated", event)
    with pytest.raises(SkippableRecordError, match="cannot decode"):
        AvroDecoder(registry).decode(data)  # type: ignore[arg-type]


def test_a_logical_type_it_does_not_convert_is_left_to_fastavro() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "d", "type": {"type": "int", "logicalType": "date"}}]}
    with pytest.raises(UnsupportedLogicalTypeError):
        compile_converter(schema)


@pytest.mark.parametrize("base", TOPIC_BASES)
def test_with_uuids_as_text_every_record_type_decodes_as_fastavro_with_each_uuid_as_its_text(base: str) -> None:
    registry = FakeRegistry()
    topic = load_topic_schema(base)
    encoder = AvroEncoder(registry, base, topic)  # type: ignore[arg-type]
    decoder = AvroDecoder(registry, uuids_as_text=True)  # type: ignore[arg-type]
    values = AvroValues(zlib.crc32(base.encode()), named_types(topic.schema, {}))
    for name in topic.branches:
        branch = next(b for b in topic.schema if str(b["name"]).rsplit(".", 1)[-1] == name)
        for _ in range(30):
            data = encoder.encode_checked(name, values.of(branch))
            name_found, value = _fastavro_logical(decoder, data)
            assert _same(decoder.decode(data), (name_found, uuids_as_text(value))), name


@pytest.mark.parametrize(
    ("stored", "decoded"),
    [
        ("0B6F3F4E-5F1C-4B8E-9A57-1F2E3D4C5B6A", "0b6f3f4e-5f1c-4b8e-9a57-1f2e3d4c5b6a"),
        ("{0b6f3f4e-5f1c-4b8e-9a57-1f2e3d4c5b6a}", "0b6f3f4e-5f1c-4b8e-9a57-1f2e3d4c5b6a"),
        ("0b6f3f4e5f1c4b8e9a571f2e3d4c5b6a", "0b6f3f4e-5f1c-4b8e-9a57-1f2e3d4c5b6a"),
        ("0b6f3f4e-5f1c-4b8e-9a57-1f2e3d4c5b6a", "0b6f3f4e-5f1c-4b8e-9a57-1f2e3d4c5b6a"),
    ],
    ids=["upper-case", "braces", "no-hyphens", "canonical"],
)
def test_with_uuids_as_text_a_uuid_decodes_to_the_text_of_its_uuid(stored: str, decoded: str) -> None:
    registry = FakeRegistry()
    encoder = AvroEncoder(registry, "product.members", load_topic_schema("product.members"))  # type: ignore[arg-type]
    event = next(e for e in CommunitySimulator(seed=5).stream(50) if e.RECORD_NAME == "UserCreated").to_avro()
    event["event_id"] = stored
    _, value = AvroDecoder(registry, uuids_as_text=True).decode(encoder.encode_checked("UserCreated", event))  # type: ignore[arg-type]
    assert value["event_id"] == decoded == str(uuid.UUID(stored))


def test_with_uuids_as_text_a_uuid_that_is_not_one_parks_as_with_fastavro() -> None:
    registry = FakeRegistry()
    encoder = AvroEncoder(registry, "product.members", load_topic_schema("product.members"))  # type: ignore[arg-type]
    event = next(e for e in CommunitySimulator(seed=5).stream(50) if e.RECORD_NAME == "UserCreated").to_avro()
    event["event_id"] = "not-a-uuid"
    with pytest.raises(SkippableRecordError, match="cannot decode"):
        AvroDecoder(registry, uuids_as_text=True).decode(encoder.encode_checked("UserCreated", event))  # type: ignore[arg-type]
