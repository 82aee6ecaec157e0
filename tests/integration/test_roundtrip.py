"""Every record type through the real broker and registry, read back by two Kafka libraries."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid

import fastavro
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from sfsync.producers import events as ev
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder
from sfsync.topics import PRODUCT_TOPICS, by_base

from .helpers import consume_all, normalize, open_publisher


@pytest.fixture
def one_of_each(services, prefix):
    sample: dict[str, ev.ProductEvent] = {}
    for event in CommunitySimulator(seed=21).stream(20_000):
        sample.setdefault(event.RECORD_NAME, event)
    assert len(sample) == 20
    with open_publisher(services, prefix) as publisher:
        for event in sample.values():
            publisher.publish(event)
    return sample


def expected_key(event: ev.ProductEvent) -> str:
    return by_base(event.TOPIC).key_of(event.to_avro())


def test_every_record_type_round_trips_with_confluent_kafka(services, prefix, one_of_each, registry) -> None:
    topics = [spec.name(prefix) for spec in PRODUCT_TOPICS]
    messages = consume_all(services.bootstrap, topics, expected=len(one_of_each))
    assert len(messages) == len(one_of_each)
    decoder = AvroDecoder(registry)
    by_event_id = {e.event_id: e for e in one_of_each.values()}
    for msg in messages:
        name, value = decoder.decode(msg.value())
        sent = by_event_id[str(value["event_id"])]
        assert name == sent.RECORD_NAME
        assert msg.topic() == f"{prefix}{sent.TOPIC}"
        assert msg.key().decode() == expected_key(sent)
        assert normalize(value) == sent.to_avro()


async def _read_with_aiokafka(bootstrap: str, topics: list[str], expected: int) -> list:
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=f"aio-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(30):
            while len(records) < expected:
                batches = await consumer.getmany(timeout_ms=1000)
                for batch in batches.values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_every_record_type_decodes_from_raw_bytes_with_aiokafka(services, prefix, one_of_each) -> None:
    """Another client library, and no sfsync code on the read side: header, registry REST, fastavro."""
    topics = [spec.name(prefix) for spec in PRODUCT_TOPICS]
    records = await _read_with_aiokafka(services.bootstrap, topics, len(one_of_each))
    assert len(records) == len(one_of_each)
    by_event_id = {e.event_id: e for e in one_of_each.values()}
    schemas: dict[int, object] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for record in records:
            magic, schema_id = struct.unpack(">bI", record.value[:5])
            assert magic == 0
            if schema_id not in schemas:
                response = await http.get(f"{services.registry}/schemas/ids/{schema_id}")
                assert response.status_code == 200
                schemas[schema_id] = fastavro.parse_schema(json.loads(response.json()["schema"]))
            value = fastavro.schemaless_reader(io.BytesIO(record.value[5:]), schemas[schema_id], None)
            sent = by_event_id[str(value["event_id"])]
            assert record.key.decode() == expected_key(sent)
            assert normalize(value) == sent.to_avro()
