"""Writes through librdkafka: queued per write, delivered before the offsets that caused them commit.

The outbound processor has two: its planned writes (to its own repartition topic) and its ordered
writes (to ``sfsync.writes``), see :mod:`sfsync.processors.outbound.app`.

Faust's own producer (aiokafka) costs pure-Python work per message in the event loop, the same loop
that plans; librdkafka queues a record in C and delivers it from its own threads. The contract that
keeps this safe is :meth:`WritesProducer.flush`, which the processor calls before every offset
commit (:mod:`sfsync.processors.faust_runtime.commit`): a commit covers only events whose writes Kafka acknowledged, so
a crash at any point loses no write (the uncommitted events are planned again after a restart).

``sfsync.writes`` is at least once whatever the processing guarantee (see :mod:`sfsync.processors.outbound.app`);
the records are partitioned like the Java client and aiokafka do (murmur2 of the key), so a record
key keeps its partition.

A write larger than the topic accepts (its ``max.message.bytes``, read when the producer is built;
the smallest of ``limit_topics``' when given) is refused by :meth:`WritesProducer.send` before it is queued
(:class:`~sfsync.kafka.errors.RecordRejectedError`, code ``MSG_SIZE_TOO_LARGE``): the processor parks
its event in the DLQ and goes on, instead of failing the flush before every commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from sfsync.errors import DeliveryError, SfsyncError
from sfsync.kafka.admin import max_message_bytes
from sfsync.kafka.clients import (
    FLUSHED_AT_ONCE,
    RECORD_BATCH_OVERHEAD,
    ProducerTuning,
    RawDeliveryCallback,
    new_producer,
)
from sfsync.kafka.delivery import MAX_FAILURES_KEPT, Outbox, ProducerLike
from sfsync.kafka.errors import RecordRejectedError
from sfsync.processors.outbound.packs import PACK_FORMAT, PACK_HEADER, Pack

__all__ = ["MAX_FAILURES_KEPT", "WritesProducer", "new_writes_producer", "pack_budget"]

log = logging.getLogger(__name__)


def new_writes_producer(
    kafka_config: Mapping[str, Any],
    on_delivery: RawDeliveryCallback,
    delivery_timeout_s: float,
    max_message_bytes: int | None = None,
    tuning: ProducerTuning = FLUSHED_AT_ONCE,
) -> ProducerLike:
    """An idempotent ``acks=all`` librdkafka producer batching as ``tuning`` says, that reports failed
    deliveries only, to ``on_delivery``; with ``max_message_bytes`` (the topic's), it refuses in
    ``produce()`` a record the topic would refuse.

    Raises:
        ConfigError: the Kafka settings are invalid.
    """
    return new_producer(
        kafka_config,
        "sfsync-processor-writes",
        delivery_timeout_s=delivery_timeout_s,
        on_delivery=on_delivery,
        errors_only=True,  # no Python callback per delivered record
        max_message_bytes=max_message_bytes,
        tuning=tuning,
    )


def _topic_limit(kafka_config: Mapping[str, Any], topic: str) -> int | None:
    try:
        return max_message_bytes(kafka_config, topic)
    except SfsyncError as exc:
        log.warning(
            "%s: max.message.bytes unknown (%s); a write larger than the topic accepts fails its delivery", topic, exc
        )
        return None


PACK_MARGIN_BYTES = 4_096
"""Room a pack leaves under the topic's limit for its key, headers and record overhead."""
UNKNOWN_LIMIT_PACK_BYTES = 256 * 1024
"""The most bytes of a pack when the topics' ``max.message.bytes`` is unknown (a quarter of Kafka's default)."""


def pack_budget(max_message_bytes: int | None, ceiling: int) -> int:
    """The most bytes of a pack of writes (:class:`~sfsync.processors.outbound.packs.WritePacks` ``max_bytes``)
    for topics that accept ``max_message_bytes`` (None: unknown): at most ``ceiling``, always under the
    limit by :data:`PACK_MARGIN_BYTES`, so a pack is never refused for its size, and a write packed is
    smaller than the topics accept (a larger one goes alone, and is refused at once)."""
    if max_message_bytes is None:
        return min(ceiling, UNKNOWN_LIMIT_PACK_BYTES)
    return max(1, min(ceiling, max_message_bytes - RECORD_BATCH_OVERHEAD - PACK_MARGIN_BYTES))


class WritesProducer:
    """Queues writes for one topic; :meth:`flush` returns once each was acknowledged, or raises.

    ``factory(on_delivery)`` builds the producer (a ``confluent_kafka.Producer``-like object:
    ``produce``, ``poll``, ``flush``, ``len``); the default is :func:`new_writes_producer`, fitted
    to the smallest ``max.message.bytes`` of ``limit_topics`` (default: ``topic``), e.g. the topic
    the writes go on to after this one, so that a write too large for it is refused here, and
    batching as ``tuning`` says (the processor's ``writes_*`` settings).

    Raises (building it):
        ConfigError: the Kafka settings are invalid.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topic: str,
        *,
        delivery_timeout_s: float = 30.0,
        factory: Callable[[RawDeliveryCallback], ProducerLike] | None = None,
        limit_topics: Sequence[str] | None = None,
        tuning: ProducerTuning = FLUSHED_AT_ONCE,
    ) -> None:
        self.topic = topic
        self.delivery_timeout_s = delivery_timeout_s
        self.limited_by = topic
        """The topic whose ``max.message.bytes`` bounds the writes (named when one is refused)."""
        self.max_message_bytes: int | None = None
        """That topic's ``max.message.bytes`` (None: unknown, or a ``factory`` given)."""
        if factory is None:
            limits = {t: n for t in limit_topics or [topic] if (n := _topic_limit(kafka_config, t)) is not None}
            if limits:
                self.limited_by = min(limits, key=lambda t: (limits[t], t != topic))
                self.max_message_bytes = limits[self.limited_by]
            factory = partial(
                new_writes_producer,
                kafka_config,
                delivery_timeout_s=delivery_timeout_s,
                max_message_bytes=limits.get(self.limited_by),
                tuning=tuning,
            )
        self._outbox = Outbox(factory=factory, label=topic, timeout_s=delivery_timeout_s, sticky=True)

    @property
    def sent(self) -> int:
        """Records queued so far."""
        return self._outbox.sent

    def send(self, key: bytes, value: bytes) -> None:
        """Queue one write (waits, at most the delivery timeout, while librdkafka's queue is full).

        Raises:
            RecordRejectedError: Kafka refuses this write whenever it is sent (larger than the topic
                accepts: ``MSG_SIZE_TOO_LARGE``); it was not queued, park its event.
            DeliveryError: the write could not be queued; do not commit its event's offset.
        """
        try:
            self._outbox.send(self.topic, value, key)
        except RecordRejectedError as exc:
            if self.limited_by == self.topic:
                raise
            reason = f"{exc.reason} (the limit of {self.limited_by}, where the write goes next)"
            raise RecordRejectedError(self.limited_by, exc.key, exc.code, reason) from exc

    def send_pack(self, pack: Pack) -> None:
        """Queue a pack of writes (:mod:`sfsync.processors.outbound.packs`) to its partition, with the pack header.

        Raises:
            DeliveryError: it could not be queued, or Kafka refuses it (a pack is never larger than the
                topics accept, see :func:`pack_budget`): do not commit the offsets of its writes' events.
        """
        headers = [(PACK_HEADER, PACK_FORMAT)]
        try:
            self._outbox.send(self.topic, pack.value, pack.key, partition=pack.partition, headers=headers)
        except RecordRejectedError as exc:
            raise DeliveryError([(self.topic, None, f"a pack of {pack.writes} writes refused: {exc.reason}")]) from exc

    def flush(self) -> None:
        """Block until every write queued so far was acknowledged.

        Raises:
            DeliveryError: a write failed or was not acknowledged in time: do not commit the
                offsets of the events that caused it (they are planned again after a restart).
                Every later call raises too: this producer lost a write, only a restart recovers.
        """
        self._outbox.flush()

    def __len__(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self._outbox)

    def close(self) -> None:
        """Deliver what is queued (best effort: a commit never follows a close)."""
        left = self._outbox.close(min(self.delivery_timeout_s, 10.0))
        if left:
            log.warning("%s producer closed with %d write(s) unacknowledged", self.topic, left)
