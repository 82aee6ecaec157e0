"""Delivering records to Kafka through librdkafka: queue now, confirm before anything depends on them.

:class:`Outbox` is sfsync's one deliver-and-flush: :meth:`~Outbox.send` queues a record in
librdkafka (waiting, bounded, while its queue is full) and :meth:`~Outbox.flush` returns only once
Kafka acknowledged every record queued before it, with the producer's ``acks`` (``all`` for every
producer :func:`sfsync.kafka.clients.new_producer` builds), else raises
:class:`~sfsync.errors.DeliveryError` naming what was not stored. A record sent with its own
``on_delivery`` reports to it (a :class:`DeliveryReport`) instead.

:class:`TransactionalProducer` writes lists of records atomically (one Kafka transaction each).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message

from sfsync.errors import DeliveryError, FatalError, RetriableError
from sfsync.kafka.clients import RawDeliveryCallback, new_producer
from sfsync.kafka.errors import FENCED_CODES, ProducerFencedError, error_of, produce_error, show_key, translate

__all__ = [
    "ANY_TOPIC",
    "MAX_FAILURES_KEPT",
    "DeliveryReport",
    "Outbox",
    "ProducerLike",
    "TransactionalProducer",
]

ANY_TOPIC = "*"
"""The :class:`Outbox` label of one that writes to several topics."""

MAX_FAILURES_KEPT = 20
"""Failed deliveries an :class:`Outbox` lists in its DeliveryError (the others are counted)."""


class ProducerLike(Protocol):
    """What an :class:`Outbox` needs of a producer: confluent-kafka's ``Producer`` (or a fake)."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class DeliveryReport:
    """What Kafka did with one record: stored at ``partition``/``offset``, or not (``error``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    error: str | None = None
    """librdkafka's reason when the record was not stored; None when it was."""


def _report_of(err: KafkaError | None, msg: Message) -> DeliveryReport:
    raw_key, partition, offset = msg.key(), msg.partition(), msg.offset()
    return DeliveryReport(
        topic=str(msg.topic()),
        partition=partition if partition is not None else -1,
        offset=offset if offset is not None else -1,
        key=raw_key.encode() if isinstance(raw_key, str) else raw_key,
        error=None if err is None else str(err.str()),
    )


def _reporting_to(on_delivery: Callable[[DeliveryReport], None]) -> RawDeliveryCallback:
    def callback(err: KafkaError | None, msg: Message) -> None:
        on_delivery(_report_of(err, msg))

    return callback


class Outbox:
    """Queues records on one producer; :meth:`flush` returns once Kafka acknowledged each, or raises.

    Build it with ``factory``, which makes the producer with the outbox's delivery callback as its
    own (``factory(on_delivery)``, e.g. ``new_producer(..., on_delivery=on_delivery, errors_only=True)``),
    or hand it a ``producer`` that has none: the outbox then passes its callback with each record.

    ``label``: the topic it writes to, or :data:`ANY_TOPIC` when it writes to several (each failure
    then names its record's topic).
    ``timeout_s`` bounds the wait for room in librdkafka's queue, and :meth:`flush`'s default wait is
    that plus 5 s. ``sticky``: a failed delivery fails every later :meth:`flush` (for a producer
    whose lost record must never let a later commit pass). ``poll_every``: serve delivery reports
    after every that many records.
    """

    def __init__(
        self,
        producer: ProducerLike | None = None,
        *,
        factory: Callable[[RawDeliveryCallback], ProducerLike] | None = None,
        label: str,
        timeout_s: float,
        sticky: bool = False,
        poll_every: int = 1000,
    ) -> None:
        if (producer is None) == (factory is None):
            raise TypeError("Outbox takes exactly one of producer and factory")
        self.label = label
        self.timeout_s = timeout_s
        self.sticky = sticky
        self.sent = 0
        """Records queued so far."""
        self._poll_every = max(1, poll_every)
        self._failures: list[tuple[str, str | None, str]] = []
        self._failed = 0
        self._lock = threading.Lock()
        self._own_callback: RawDeliveryCallback | None
        if factory is not None:
            self.producer = factory(self._on_delivery)
            self._own_callback = None
        else:
            assert producer is not None
            self.producer = producer
            self._own_callback = self._on_delivery

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        with self._lock:
            self._failed += 1
            if len(self._failures) < MAX_FAILURES_KEPT:
                topic = self.label if self.label != ANY_TOPIC else str(msg.topic())
                self._failures.append((topic, show_key(msg.key()), str(err.str())))

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[DeliveryReport], None] | None = None,
    ) -> None:
        """Queue one record (to ``partition``, else the key's); ``on_delivery`` receives its report.

        Raises:
            RecordRejectedError: Kafka refuses this record whenever it is sent (e.g. larger than the
                topic allows, ``MSG_SIZE_TOO_LARGE``); nothing was queued.
            DeliveryError: it could not be queued (librdkafka's queue stayed full for ``timeout_s``,
                unknown topic...).
            FatalError: the producer failed for good.
        """
        callback = self._own_callback if on_delivery is None else _reporting_to(on_delivery)
        produce = self.producer.produce
        deadline: float | None = None
        while True:
            try:
                if callback is None and partition is None and headers is None:
                    produce(topic, value, key)
                else:
                    extra: dict[str, Any] = {}
                    if partition is not None:
                        extra["partition"] = partition
                    if headers is not None:
                        extra["headers"] = list(headers)
                    produce(topic, value=value, key=key, on_delivery=callback, **extra)
                break
            except BufferError:
                # librdkafka's queue is full: serve delivery reports until there is room (bounded)
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.timeout_s
                if now > deadline:
                    raise DeliveryError([(topic, show_key(key), f"local queue full for {self.timeout_s:g}s")]) from None
                self.producer.poll(0.05)
            except KafkaException as exc:
                raise produce_error(exc, topic, key) from exc
        self.sent += 1
        if not self.sent % self._poll_every:
            self.producer.poll(0)

    def poll(self, timeout_s: float = 0) -> int:
        """Serve delivery reports (waiting at most ``timeout_s``); how many were served."""
        return self.producer.poll(timeout_s)

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every record queued so far was acknowledged (at most ``timeout_s``, default
        ``timeout_s`` + 5 s); when it returns, Kafka stored them all.

        Raises:
            DeliveryError: a record without its own ``on_delivery`` failed, or records were not
                acknowledged in time. With ``sticky``, every later call raises too.
        """
        timeout = self.timeout_s + 5 if timeout_s is None else timeout_s
        try:
            remaining = self.producer.flush(timeout)
        except KafkaException as exc:
            raise translate(exc, f"delivering to {self.label}") from exc
        with self._lock:
            failures, failed = list(self._failures), self._failed
            if not self.sticky:
                self._failures, self._failed = [], 0
        if failed > len(failures):
            failures.append((self.label, None, f"{failed} failed deliveries in all"))
        if remaining:
            failures.append((self.label, None, f"{remaining} record(s) unacknowledged after {timeout:g}s"))
        if failures:
            raise DeliveryError(failures)

    def __len__(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self.producer)

    def topic_names(self, timeout_s: float) -> set[str]:
        """The names of the cluster's topics.

        Raises:
            ServiceUnavailableError: Kafka did not answer within ``timeout_s``.
        """
        try:
            return set(self.producer.list_topics(timeout=timeout_s).topics)
        except KafkaException as exc:
            raise translate(exc, "reading metadata") from exc

    def close(self, timeout_s: float) -> int:
        """Deliver what is queued, waiting at most ``timeout_s`` (best effort: raises nothing); how
        many records are left unacknowledged."""
        try:
            return self.producer.flush(timeout_s)
        except Exception:  # noqa: BLE001 - closing never raises; the caller reports what is left
            return len(self)


class TransactionalProducer:
    """One transactional id's producer: :meth:`commit` writes records atomically, or raises.

    Creating it calls ``init_transactions``, which fences an older producer of the same id (its
    open transaction is aborted). ``timeout_s`` bounds each transaction and each wait for Kafka. It
    batches as :data:`~sfsync.kafka.clients.FLUSHED_AT_ONCE`: the commit sends a transaction's
    records at once, in one batch per partition.

    Raises (creating it):
        ConfigError: the Kafka settings are invalid.
        ServiceUnavailableError / FatalError: Kafka did not answer, or refused the id.
    """

    def __init__(self, kafka_config: dict[str, Any], transactional_id: str, timeout_s: float) -> None:
        self.transactional_id = transactional_id
        self._timeout_s = timeout_s
        self._producer = new_producer(
            kafka_config,
            transactional_id,
            options={"transactional.id": transactional_id, "transaction.timeout.ms": int(timeout_s * 1000)},
        )
        try:
            self._producer.init_transactions(timeout_s)
        except KafkaException as exc:
            raise translate(exc, f"starting transactions as {transactional_id}") from exc

    def commit(self, records: list[tuple[str, bytes, bytes, int | None]]) -> None:
        """Produce ``(topic, key, value, partition)`` records in one transaction; when it returns,
        they are committed (visible to ``read_committed`` readers).

        Raises:
            ProducerFencedError: this producer was fenced (a newer one took the id over).
            FatalError: the producer failed for good.
            RetriableError: the transaction was aborted; nothing of it is visible.
        """
        producer = self._producer
        try:
            producer.begin_transaction()
            for topic, key, value, partition in records:
                if partition is None:
                    producer.produce(topic, key=key, value=value)
                else:
                    producer.produce(topic, key=key, value=value, partition=partition)
                producer.poll(0)
            producer.commit_transaction(self._timeout_s)
        except BufferError as exc:
            self._abort()
            raise RetriableError(f"{self.transactional_id}: producer queue full") from exc
        except KafkaException as exc:
            error = error_of(exc)
            if error is not None and error.code() in FENCED_CODES:
                raise ProducerFencedError(f"{self.transactional_id}: fenced by a newer producer: {error}") from exc
            if error is not None and error.fatal():
                raise FatalError(f"{self.transactional_id}: the producer failed for good: {error}") from exc
            self._abort()
            raise RetriableError(f"{self.transactional_id}: transaction aborted: {error or exc}") from exc

    def _abort(self) -> None:
        with contextlib.suppress(KafkaException):
            self._producer.abort_transaction(self._timeout_s)

    def close(self) -> None:
        """Deliver what is queued (at most 1 s; an open transaction is left to time out)."""
        with contextlib.suppress(KafkaException):
            self._producer.flush(1)
