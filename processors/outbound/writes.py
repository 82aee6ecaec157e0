"""``sfsync.writes`` through librdkafka: queued per write, delivered before the offsets that caused them commit.

Faust's own producer (aiokafka) costs pure-Python work per message in the event loop, the same loop
that plans; librdkafka queues a record in C and delivers it from its own threads. The contract that
keeps this safe is :meth:`WritesProducer.flush`, which the processor calls before every offset
commit (:mod:`sfsync.processors.faust_runtime.commit`): a commit covers only events whose writes Kafka acknowledged, so
a crash at any point loses no write (the uncommitted events are planned again after a restart).

``sfsync.writes`` is at least once whatever the processing guarantee (see :mod:`sfsync.processors.outbound.app`);
the records are partitioned like the Java client and aiokafka do (murmur2 of the key), so a record
key keeps its partition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from sfsync.errors import DeliveryError, ServiceUnavailableError

__all__ = ["WritesProducer", "new_writes_producer"]

log = logging.getLogger(__name__)

MAX_FAILURES_KEPT = 20


def new_writes_producer(
    kafka_config: Mapping[str, Any], on_delivery: Callable[[Any, Any], None], delivery_timeout_s: float
) -> Any:
    """An idempotent ``acks=all`` librdkafka producer that reports failed deliveries only."""
    from confluent_kafka import KafkaException, Producer

    try:
        return Producer(
            {
                **kafka_config,
                "client.id": "sfsync-processor-writes",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",  # the Java client's and aiokafka's: a key keeps its partition
                "message.timeout.ms": int(delivery_timeout_s * 1000),
                "delivery.report.only.error": True,  # no Python callback per delivered record
                "on_delivery": on_delivery,
                "log_level": 3,
            }
        )
    except KafkaException as exc:
        raise ServiceUnavailableError(f"cannot create the sfsync.writes producer: {exc}") from exc


class WritesProducer:
    """Queues writes for one topic; :meth:`flush` returns once each was acknowledged, or raises.

    ``producer``: a ``confluent_kafka.Producer``-like object (``produce``, ``poll``, ``flush``,
    ``len``) built by ``factory(on_delivery)``; the default is :func:`new_writes_producer`.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        topic: str,
        *,
        delivery_timeout_s: float = 30.0,
        factory: Callable[[Callable[[Any, Any], None]], Any] | None = None,
    ) -> None:
        self.topic = topic
        self.delivery_timeout_s = delivery_timeout_s
        self.sent = 0
        """Records queued so far."""
        self._failures: list[tuple[str, str | None, str]] = []
        self._failed = 0
        self._lock = threading.Lock()
        if factory is None:
            self._producer = new_writes_producer(kafka_config, self._on_delivery, delivery_timeout_s)
        else:
            self._producer = factory(self._on_delivery)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        key = msg.key() if msg is not None else None
        with self._lock:
            self._failed += 1
            if len(self._failures) < MAX_FAILURES_KEPT:
                shown = key.decode(errors="replace") if isinstance(key, bytes) else None
                self._failures.append((self.topic, shown, str(err.str() if hasattr(err, "str") else err)))

    def send(self, key: bytes, value: bytes) -> None:
        """Queue one write (waits for room while librdkafka's queue is full)."""
        produce = self._producer.produce
        while True:
            try:
                produce(self.topic, value, key)
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        if not self.sent % 1000:
            self._producer.poll(0)  # serve the (error-only) delivery reports now and then

    def flush(self) -> None:
        """Block until every write queued so far was acknowledged.

        Raises:
            DeliveryError: a write failed or was not acknowledged in time: do not commit the
                offsets of the events that caused it (they are planned again after a restart).
                Every later call raises too: this producer lost a write, only a restart recovers.
        """
        remaining = self._producer.flush(self.delivery_timeout_s + 5)
        with self._lock:  # kept: once a write is lost, no later flush may let a commit pass it
            failures, failed = list(self._failures), self._failed
        if failed > len(failures):
            failures.append((self.topic, None, f"{failed} failed deliveries in all"))
        if remaining:
            failures.append((self.topic, None, f"{remaining} record(s) unacknowledged"))
        if failures:
            raise DeliveryError(failures)

    def __len__(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self._producer)

    def close(self) -> None:
        """Deliver what is queued (best effort: a commit never follows a close)."""
        try:
            self._producer.flush(min(self.delivery_timeout_s, 10.0))
        except Exception as exc:  # noqa: BLE001 - closing never raises
            log.warning("sfsync.writes producer not flushed on close: %s", exc)
