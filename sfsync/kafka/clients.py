"""Kafka plumbing shared by the sink's side channels (error log, DLQ): clients whose errors are ours."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sfsync.errors import FatalError, ServiceUnavailableError


def new_producer(kafka_config: Mapping[str, Any], client_id: str, delivery_timeout_s: float) -> Any:
    """An idempotent producer (``acks=all``) that waits at most ``delivery_timeout_s`` per record."""
    from confluent_kafka import KafkaException, Producer

    try:
        return Producer(
            {
                **kafka_config,
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": int(delivery_timeout_s * 1000),
                "log_level": 3,
            }
        )
    except KafkaException as exc:
        raise ServiceUnavailableError(f"cannot create a Kafka producer ({client_id}): {exc}") from exc


def new_consumer(kafka_config: Mapping[str, Any], group_id: str | None = None) -> Any:
    """A consumer that never commits on its own (``group_id`` defaults to a throwaway one)."""
    from confluent_kafka import Consumer, KafkaException

    try:
        return Consumer(
            {
                **kafka_config,
                "group.id": group_id or f"sfsync-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "log_level": 3,
            }
        )
    except KafkaException as exc:
        raise ServiceUnavailableError(f"cannot create a Kafka consumer: {exc}") from exc


def partitions_of(consumer: Any, topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` watermarks of ``topic``; FatalError if it does not exist."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise FatalError(f"topic {topic} does not exist; create it with `sfsync topics ensure`")
        return {
            p: tuple(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s))
            for p in sorted(meta.partitions)
        }
    except KafkaException as exc:
        raise ServiceUnavailableError(f"Kafka did not answer for topic {topic}: {exc}") from exc


def read_messages(
    kafka_config: Mapping[str, Any],
    topic: str,
    *,
    last: int | None = None,
    follow: bool = False,
    poll_s: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    starts: Mapping[int, int] | None = None,
    consumer: Any = None,
) -> Iterator[Any]:
    """Raw messages of every partition of ``topic``, partition by partition in offset order.

    Starts at ``starts[partition]`` when given, else ``last`` records before the end (``None``:
    the beginning). Without ``follow`` it ends at the end of the topic as it was when called.
    Never commits. A ``consumer`` passed in is used and left open.
    """
    from confluent_kafka import KafkaException, TopicPartition

    own = consumer is None
    consumer = consumer or new_consumer(kafka_config)
    try:
        ends: dict[int, int] = {}
        pending: set[int] = set()
        assignment = []
        for p, (low, high) in partitions_of(consumer, topic).items():
            if starts is not None and p in starts:
                start = max(low, starts[p])
            else:
                start = low if last is None else max(low, high - last)
            ends[p] = high
            if start < high:
                pending.add(p)
            assignment.append(TopicPartition(topic, p, start))
        try:
            consumer.assign(assignment)
        except KafkaException as exc:
            raise ServiceUnavailableError(f"cannot read {topic}: {exc}") from exc
        while not stop():
            if not follow and not pending:
                return
            try:
                msg = consumer.poll(poll_s)
            except KafkaException as exc:
                raise ServiceUnavailableError(f"reading {topic} failed: {exc}") from exc
            if msg is None:
                continue
            if msg.error() is not None:
                raise ServiceUnavailableError(f"reading {topic} failed: {msg.error().str()}")
            if msg.offset() >= ends.get(msg.partition(), 0) - 1:
                pending.discard(msg.partition())
            yield msg
    finally:
        if own:
            consumer.close()
