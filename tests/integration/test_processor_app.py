"""The Faust processor end to end: product events on real Kafka -> write plans on sfsync.writes.

The processor runs as its own process (``python -m sfsync.processors.outbound.app``) with a fresh app id, so no
group or changelog of another run is reused; it is stopped with SIGTERM (bounded by a hard timeout).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from sfsync.mapping import load_mappings
from sfsync.ops.dlq import H_STAGE, H_TOPIC
from sfsync.processors.outbound.packs import PACK_FORMAT, PACK_HEADER, unpack
from sfsync.processors.outbound.plan import plan
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from tests.integration.helpers import consume_all, normalize, open_publisher, planned_topic
from tests.integration.processes import Spawned, processor_env
from tests.kit.outbound import decoded


def member_events(count: int) -> list[Any]:
    """The fake community's first ``count`` product.members events (each member's in time order)."""
    return [e for e in CommunitySimulator(seed=11).stream(400) if e.TOPIC == "product.members"][:count]


def test_processor_plans_product_events_onto_sfsync_writes(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    events = member_events(25)
    publisher = open_publisher(services, prefix)
    for event in events:
        publisher.publish(event)
    publisher.flush()
    garbage_key = b"not-avro"
    raw = Producer({"bootstrap.servers": services.bootstrap})
    raw.produce(prefix + "product.members", value=b"\x07 definitely not avro", key=garbage_key)
    assert raw.flush(30) == 0

    mappings = load_mappings()

    class Src:
        topic, partition, offset = "", 0, 0

    expected: dict[str, str] = {}  # write_id -> record key
    for event in events:
        planned = plan(event.RECORD_NAME, decoded(event), Src(), mappings)
        assert not planned.rejects
        expected.update({w["write_id"]: w["key"] for w in planned.writes})
    assert len(expected) > len(events)

    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    env = processor_env(services, prefix, app_id)
    proc = Spawned("sfsync.processors.outbound.app", "75", env=env, log=tmp_path / "processor.log")
    try:
        # read_committed: what a transactional (exactly_once) processor wrote shows once committed
        writes = consume_all(
            services.bootstrap, [prefix + "sfsync.writes"], len(expected), timeout_s=60, read_committed=True
        )
        parked = consume_all(services.bootstrap, [prefix + "sfsync.dlq"], 1, timeout_s=10)
        repartition = consume_all(services.bootstrap, [planned_topic(prefix, app_id)], len(expected), timeout_s=8)
    finally:
        proc.stop(timeout_s=20)
    log = proc.output()
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    decoder = AvroDecoder(registry)
    got = []
    for message in writes:
        name, write = decoder.decode(message.value())
        assert name == "Write"
        assert message.key().decode() == write["key"]
        got.append((message.partition(), message.offset(), normalize(write)))
    assert {w["write_id"]: w["key"] for _, _, w in got} == expected, log[-3000:]
    # one record's writes share a partition, and follow their events' order
    by_key: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for partition, _offset, write in sorted(got, key=lambda g: (g[0], g[1])):
        by_key[write["key"]].append((partition, write["source"]["offset"], write["source"]["partition"]))
    for key, seen in by_key.items():
        assert len({p for p, _, _ in seen}) == 1, key  # keyed by record: one partition of sfsync.writes
        assert len({sp for _, _, sp in seen}) == 1, key  # one member's events: one source partition
        assert [o for _, o, _ in seen] == sorted(o for _, o, _ in seen), key  # in source order
    assert {w["source"]["topic"] for _, _, w in got} == {prefix + "product.members"}

    # the planned writes crossed the repartition topic packed: fewer records than writes, each a pack
    assert 0 < len(repartition) < len(expected) / 2
    assert all((PACK_HEADER, PACK_FORMAT) in (m.headers() or []) for m in repartition)
    assert sum(len(unpack(m.value())) for m in repartition) == len(expected)

    assert len(parked) == 1
    headers = {k: v.decode() for k, v in parked[0].headers() or []}
    assert parked[0].key() == garbage_key and parked[0].value() == b"\x07 definitely not avro"
    assert headers[H_TOPIC] == prefix + "product.members" and headers[H_STAGE] == "VALUE_CONVERTER"
