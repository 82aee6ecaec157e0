"""Publisher throughput vs a bare confluent-kafka Producer with the same serializer, in one run.

Both sides publish the same synthetic events (generated before timing) to the same topics on the
same broker, with the same producer settings (idempotent, acks=all, linger, compression):

- ``bare``: ``Producer.produce(topic, serialize(event), key)`` with topic and key known up front,
  where ``serialize`` is the same serializer the publisher uses: the event's ``to_avro()`` then the
  Avro encoder (as confluent-kafka's ``AvroSerializer(to_dict=...)`` would call it);
- ``publisher``: ``Publisher.publish(event)``: routing, key derivation, the same serializer, produce.

Rounds alternate (bare, publisher, bare, ...) and the best round of each is kept. Prints one JSON
line. Goals: ratio >= 0.8 and publisher >= 50,000 events/s.

    python bench/produce.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

from sfsync.kafka.admin import ensure_topics
from sfsync.kafka.clients import build_producer
from sfsync.producers.fake import CommunitySimulator
from sfsync.producers.publisher import Publisher
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.settings import PublisherSettings, load
from sfsync.topics import ALL_TOPICS, PRODUCT_TOPICS


def bare_round(
    settings: PublisherSettings, rows: list[tuple[str, str, Any]], encoders: dict[str, AvroEncoder]
) -> float:
    producer = build_producer(  # partitioned as the Publisher's producer is
        {
            **settings.kafka_client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_size_bytes,
            "compression.type": settings.compression,
            "queue.buffering.max.messages": 500_000,
            "delivery.report.only.error": True,
        },
        "bench-bare",
    )
    started = time.perf_counter()
    for i, (topic, key, event) in enumerate(rows):
        data = encoders[topic].encode_checked(event.RECORD_NAME, event.to_avro())
        while True:
            try:
                producer.produce(topic, data, key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise SystemExit("bare producer did not deliver everything")
    return time.perf_counter() - started


def publisher_round(settings: PublisherSettings, events: list[Any]) -> float:
    publisher = Publisher(settings)
    started = time.perf_counter()
    for event in events:
        publisher.publish(event)
    publisher.flush()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    settings = load(PublisherSettings, "publisher")
    ensure_topics(settings.kafka_client_config(), ALL_TOPICS, settings.topic_prefix)
    events = list(CommunitySimulator(seed=11).stream(args.events))
    registry = SchemaRegistry(settings.schema_registry_url)
    encoders: dict[str, AvroEncoder] = {}
    by_record: dict[str, tuple[str, Any]] = {}
    for spec in PRODUCT_TOPICS:
        topic = spec.name(settings.topic_prefix)
        encoders[topic] = AvroEncoder(registry, topic, load_topic_schema(spec.base))
        for name in encoders[topic].schema.record_names:
            by_record[name] = (topic, spec)
    registry.close()
    rows = []
    for event in events:
        topic, spec = by_record[event.RECORD_NAME]
        rows.append((topic, spec.key_of(event.to_avro()), event))

    bare, pub = [], []
    for _ in range(args.rounds):
        bare.append(bare_round(settings, rows, encoders))
        pub.append(publisher_round(settings, events))
    bare_eps = args.events / min(bare)
    pub_eps = args.events / min(pub)
    print(
        json.dumps(
            {
                "bench": "produce",
                "events": args.events,
                "rounds": args.rounds,
                "publisher_events_per_s": round(pub_eps),
                "bare_confluent_kafka_events_per_s": round(bare_eps),
                "ratio": round(pub_eps / bare_eps, 3),
                "goal_ratio": 0.8,
                "goal_events_per_s": 50_000,
                "meets_goals": pub_eps / bare_eps >= 0.8 and pub_eps >= 50_000,
                "python": platform.python_version(),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
