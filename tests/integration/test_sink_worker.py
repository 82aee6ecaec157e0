"""The sink worker end to end: real Kafka + schema registry, the emulator in process."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from confluent_kafka import Producer

from sfsync.emulator.server import build
from sfsync.errors import SfsyncError
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.loop import SinkWorker
from sfsync.sinks.settings import SinkSettings
from tests.integration.helpers import committed, consume_all, make_topics
from tests.kit.sink import Recorder, campaign, make_sink, member, registration, write


async def test_worker_writes_the_org_produces_results_and_commits(
    services: Any, prefix: str, registry: SchemaRegistry
) -> None:
    make_topics(services, prefix)
    writes_topic = prefix + "sfsync.writes"
    encoder = AvroEncoder(registry, writes_topic, load_topic_schema("sfsync.writes"))
    bad = write(
        "ws-1|Contact:Email:bad@x.org",
        "Contact",
        {"Email": {"value": "bad@x.org", "updated_at": 1}},
        match=[("Email", "bad@x.org")],
    )
    records = [*(member(i) for i in range(30)), campaign("evt-1"), registration("evt-1", "member1@example.org"), bad]
    producer = Producer({"bootstrap.servers": services.bootstrap, "enable.idempotence": True})
    for record in records:
        producer.produce(writes_topic, key=record["key"].encode(), value=encoder.encode("Write", record))
    assert producer.flush(30) == 0

    emulator = build()
    rec = Recorder()
    client, sink = make_sink(emulator, rec)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    settings = SinkSettings(
        bootstrap_servers=services.bootstrap,
        schema_registry_url=services.registry,
        topic_prefix=prefix,
        group_id=group,
        batch_linger_s=0.5,
        max_parent_waits=1000,
    )
    parked: list[tuple[IncomingWrite, SfsyncError]] = []

    async def on_parked(w: IncomingWrite, e: SfsyncError) -> None:
        parked.append((w, e))

    async with client:
        worker = SinkWorker.connect(sink, settings=settings, on_parked=on_parked, registry=registry)
        task = asyncio.create_task(worker.run())
        for _ in range(60):
            await asyncio.sleep(0.5)
            found = [r async for r in client.query("SELECT Id FROM CampaignMember")]
            if found and worker.batches and not worker._carry:
                break
        worker.stopping.set()
        await asyncio.wait_for(task, 30)
        contacts = [r async for r in client.query("SELECT Id FROM Contact")]
        members = [r async for r in client.query("SELECT Id FROM CampaignMember")]
    assert len(contacts) == 30 and len(members) == 1
    assert [getattr(e, "error_code", "") for _, e in rec.parked] == ["REQUIRED_FIELD_MISSING"]
    assert not parked  # every record decoded
    results = consume_all(services.bootstrap, [prefix + "sfsync.results"], 32, timeout_s=30)
    decoder = AvroDecoder(registry)
    decoded = [decoder.decode(m.value()) for m in results]
    assert {name for name, _ in decoded} == {"WriteResult"} and len(decoded) == 32
    assert committed(services.bootstrap, group, writes_topic) == len(records)
