"""Helpers for integration tests: settings for a test's own topics, consuming what was published."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from producers.publisher import Publisher
from sfsync.settings import PublisherSettings
from sfsync.topics import ALL_TOPICS, ensure_topics


def publisher_settings(services: Any, prefix: str, **overrides: Any) -> PublisherSettings:
    return PublisherSettings(
        bootstrap_servers=services.bootstrap,
        schema_registry_url=services.registry,
        topic_prefix=prefix,
        **overrides,
    )


def make_topics(services: Any, prefix: str) -> None:
    ensure_topics({"bootstrap.servers": services.bootstrap}, ALL_TOPICS, prefix)


def open_publisher(services: Any, prefix: str, **overrides: Any) -> Publisher:
    make_topics(services, prefix)
    return Publisher(publisher_settings(services, prefix, **overrides))


def consume_all(bootstrap: str, topics: list[str], expected: int, timeout_s: float = 30) -> list[Any]:
    """Read ``expected`` messages from the start of ``topics`` with confluent-kafka (bounded)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    messages = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()
    return messages


def end_offsets(bootstrap: str, topic: str, partitions: int = 6) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


def normalize(value: Any) -> Any:
    """Decoded Avro in storage form: datetimes as epoch ms, uuids as strings."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
