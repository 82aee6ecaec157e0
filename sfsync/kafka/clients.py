"""Every librdkafka producer and consumer sfsync builds (confluent-kafka), from its Kafka settings.

``kafka_config`` is what :meth:`sfsync.settings.KafkaConnection.kafka_client_config` returns (where
Kafka is and how to log in); each builder adds its preset, then ``options`` (librdkafka properties,
added last). A client that cannot be built raises :class:`~sfsync.errors.ConfigError` naming the
setting at fault (:func:`sfsync.kafka.errors.construction_error`), never ``KafkaException``.

- Producers (:func:`new_producer`, :func:`build_producer`) are handed to
  :class:`sfsync.kafka.delivery.Outbox` or :class:`~sfsync.kafka.delivery.TransactionalProducer`,
  which own their calls. Every one partitions like the Java client, Faust and aiokafka
  (:data:`JAVA_PARTITIONER`): a key lands on the same partition whichever of them wrote it, which is
  what keeps the tables of several processor workers co-partitioned with the topics that feed them.
- Consumers (:func:`new_consumer`) come as a :class:`KafkaConsumer`: the confluent-kafka methods sfsync
  uses, with the same names and arguments, raising sfsync errors (:func:`sfsync.kafka.errors.translate`).

The admin client is built in :mod:`sfsync.kafka.admin`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from sfsync.errors import ConfigError, FatalError
from sfsync.kafka.errors import construction_error, translate

__all__ = [
    "FLUSHED_AT_ONCE",
    "JAVA_PARTITIONER",
    "OFFSET_BEGINNING",
    "RECORD_BATCH_OVERHEAD",
    "FetchTuning",
    "KafkaConsumer",
    "Message",
    "ProducerTuning",
    "RawDeliveryCallback",
    "TopicPartition",
    "build_producer",
    "new_consumer",
    "new_consumer_config",
    "new_producer",
    "new_producer_config",
    "producer_config",
]

log = logging.getLogger(__name__)

RawDeliveryCallback = Callable[[KafkaError | None, Message], None]
"""librdkafka's delivery report callback: ``(error or None, message)``."""

RECORD_BATCH_OVERHEAD = 61
"""Bytes a record batch adds to its records (Kafka's v2 batch header). A topic's ``max.message.bytes``
bounds a whole batch; a producer whose ``message.max.bytes`` is that minus this refuses, in
``produce()``, each record the topic would refuse, and builds no batch the topic refuses."""

_MIN_MESSAGE_MAX_BYTES = 1000  # librdkafka's lower bound for message.max.bytes

JAVA_PARTITIONER = "murmur2_random"
"""librdkafka's name for the Java client's default partitioner: murmur2 of the key bytes, positive,
modulo the partition count (a record without a key goes to a random partition). Faust and aiokafka
(``DefaultPartitioner``) choose the same partition; librdkafka's own default (``consistent_random``,
CRC32) does not, for most keys."""


@dataclass(frozen=True)
class ProducerTuning:
    """How a producer batches: what one produce request to the broker carries.

    The broker pays per request, not per record (batched ~2 µs a record, one record a request ~260 µs
    of broker CPU), so a producer that sends steadily waits ``linger_ms`` for a batch to fill, up to
    ``batch_bytes`` per partition. ``flush()`` (and a transaction's commit) sends at once whatever the
    linger: a producer flushed after each burst pays no latency for lingering longer.
    """

    linger_ms: int
    """``linger.ms``: how long a record waits for others to join its batch (the latency it adds)."""
    batch_bytes: int
    """``batch.size``: the most bytes one partition's batch holds (a full batch goes at once)."""

    def librdkafka(self) -> dict[str, Any]:
        """The librdkafka properties of this tuning."""
        return {"linger.ms": self.linger_ms, "batch.size": self.batch_bytes}


FLUSHED_AT_ONCE = ProducerTuning(linger_ms=50, batch_bytes=1_000_000)
"""The tuning of producers flushed (or whose transaction is committed) right after what they send:
the sink's results, the poller's transactions, the DLQ, the error log, the workspace registry's
writer. ``flush()`` sends at once whatever the linger, so the linger costs them no latency; a long
one keeps what is produced between two flushes in one batch per partition instead of splitting it
when producing takes longer than the linger. librdkafka's own batch size."""


@dataclass(frozen=True)
class FetchTuning:
    """How a consumer fetches: the broker answers a fetch once it holds ``min_bytes`` for it, or after
    ``wait_max_ms``.

    A tailing consumer with ``min_bytes`` 1 gets a fetch answered per record or two (~144 µs of broker
    CPU a record); at 64 KB / 100 ms, ~22 µs. ``wait_max_ms`` is what a record may wait at the broker
    when traffic is too low to fill ``min_bytes``: the latency it adds at low rates.
    """

    min_bytes: int
    """``fetch.min.bytes``: what the broker gathers before it answers a fetch."""
    wait_max_ms: int
    """``fetch.wait.max.ms``: the longest the broker holds a fetch short of ``min_bytes``."""

    def librdkafka(self) -> dict[str, Any]:
        """The librdkafka properties of this tuning."""
        return {"fetch.min.bytes": self.min_bytes, "fetch.wait.max.ms": self.wait_max_ms}


def producer_config(config: Mapping[str, Any], client: str) -> dict[str, Any]:
    """``config`` with the :data:`JAVA_PARTITIONER`: the librdkafka properties of every producer
    :func:`build_producer` builds.

    Raises:
        ConfigError: ``config`` names another partitioner (a key would then land on another partition
            than where sfsync's other clients, Faust and Java producers put it).
    """
    partitioner = config.get("partitioner", JAVA_PARTITIONER)
    if partitioner != JAVA_PARTITIONER:
        raise ConfigError(
            "Kafka",
            [
                f"producer {client}: partitioner {partitioner!r} is not allowed; sfsync's producers partition "
                f"like the Java client and Faust ({JAVA_PARTITIONER!r}), so that a key has one partition"
            ],
        )
    return {**config, "partitioner": JAVA_PARTITIONER}


def build_producer(config: Mapping[str, Any], client: str) -> Producer:
    """A producer with the librdkafka properties ``config`` and the :data:`JAVA_PARTITIONER`;
    ``client`` names it in errors. Every producer sfsync builds is built here.

    Raises:
        ConfigError: librdkafka refused the configuration, or ``config`` names another partitioner
            (a key would then land on another partition than where sfsync's other clients put it).
    """
    try:
        return Producer(producer_config(config, client))
    except (KafkaException, ValueError) as exc:
        raise construction_error(exc, f"producer {client}") from exc


def new_producer(
    kafka_config: Mapping[str, Any],
    client_id: str,
    *,
    delivery_timeout_s: float | None = None,
    on_delivery: RawDeliveryCallback | None = None,
    errors_only: bool = False,
    max_message_bytes: int | None = None,
    tuning: ProducerTuning = FLUSHED_AT_ONCE,
    options: Mapping[str, Any] | None = None,
) -> Producer:
    """A producer with the properties of :func:`new_producer_config` (same arguments), partitioned like
    the Java client (:func:`build_producer`).

    Raises:
        ConfigError: librdkafka refused the configuration (e.g. an unknown SASL mechanism).
    """
    config = new_producer_config(
        kafka_config,
        client_id,
        delivery_timeout_s=delivery_timeout_s,
        on_delivery=on_delivery,
        errors_only=errors_only,
        max_message_bytes=max_message_bytes,
        tuning=tuning,
        options=options,
    )
    return build_producer(config, client_id)


def new_producer_config(
    kafka_config: Mapping[str, Any],
    client_id: str,
    *,
    delivery_timeout_s: float | None = None,
    on_delivery: RawDeliveryCallback | None = None,
    errors_only: bool = False,
    max_message_bytes: int | None = None,
    tuning: ProducerTuning = FLUSHED_AT_ONCE,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The librdkafka properties of an idempotent producer (``enable.idempotence``, ``acks=all``)
    batching as ``tuning`` says (its role's: see each component's settings), librdkafka's own
    logging at errors only.

    ``delivery_timeout_s`` bounds each record's delivery (``message.timeout.ms``; None: librdkafka's
    default); ``on_delivery`` receives the delivery reports, only the failed ones with
    ``errors_only``; ``max_message_bytes`` is the ``max.message.bytes`` of the topic it writes to: a
    record the topic would refuse is then refused by ``produce()`` (``MSG_SIZE_TOO_LARGE``), before
    it is queued. ``options`` (librdkafka properties) come last.
    """
    config: dict[str, Any] = {
        **kafka_config,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        **tuning.librdkafka(),
        "log_level": 3,
    }
    if delivery_timeout_s is not None:
        config["message.timeout.ms"] = int(delivery_timeout_s * 1000)
    if on_delivery is not None:
        config["on_delivery"] = on_delivery
    if errors_only:
        config["delivery.report.only.error"] = True
    if max_message_bytes is not None:
        config["message.max.bytes"] = max(_MIN_MESSAGE_MAX_BYTES, max_message_bytes - RECORD_BATCH_OVERHEAD)
    config.update(options or {})
    return config


def new_consumer(
    kafka_config: Mapping[str, Any],
    group_id: str | None = None,
    *,
    fetch: FetchTuning | None = None,
    options: Mapping[str, Any] | None = None,
) -> KafkaConsumer:
    """A consumer with the properties of :func:`new_consumer_config` (same arguments).

    Raises:
        ConfigError: librdkafka refused the configuration.
    """
    config = new_consumer_config(kafka_config, group_id, fetch=fetch, options=options)
    group = config["group.id"]
    try:
        return KafkaConsumer(Consumer(config), f"consumer of group {group}")
    except (KafkaException, ValueError) as exc:
        raise construction_error(exc, f"consumer of group {group}") from exc


def new_consumer_config(
    kafka_config: Mapping[str, Any],
    group_id: str | None = None,
    *,
    fetch: FetchTuning | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The librdkafka properties of a consumer that never commits on its own (``group_id`` defaults to
    a throwaway one), reading from the earliest offset where its group has none, librdkafka's own
    logging at errors only. ``fetch``: how a consumer that tails a busy topic fetches (its role's: see
    each component's settings); None keeps librdkafka's defaults (a fetch answered as soon as it has a
    record, else after 500 ms), for reads to an end and rare records. ``options`` come last.
    """
    return {
        **kafka_config,
        "group.id": group_id or f"sfsync-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "log_level": 3,
        **(fetch.librdkafka() if fetch is not None else {}),
        **(options or {}),
    }


class KafkaConsumer:
    """A confluent-kafka ``Consumer`` whose calls raise sfsync errors instead of ``KafkaException``.

    The methods are confluent-kafka's (same names and arguments). :meth:`poll` and :meth:`consume`
    return records only: a fatal error event raises :class:`~sfsync.errors.FatalError`, other error
    events (librdkafka recovers from them on its own) are logged at debug level and dropped. ``raw``
    is the confluent-kafka consumer, for :mod:`sfsync.kafka` itself.
    """

    __slots__ = ("name", "raw")

    def __init__(self, raw: Consumer, name: str) -> None:
        self.raw = raw
        self.name = name

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[[Any, list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[Any, list[TopicPartition]], None] | None = None,
    ) -> None:
        """Join the group for ``topics``; the callbacks run inside :meth:`poll` / :meth:`consume`."""
        kwargs: dict[str, Any] = {}
        if on_assign is not None:
            kwargs["on_assign"] = on_assign
        if on_revoke is not None:
            kwargs["on_revoke"] = on_revoke
        try:
            self.raw.subscribe(topics, **kwargs)
        except KafkaException as exc:
            raise translate(exc, f"subscribing to {', '.join(topics)}") from exc

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly ``partitions`` (from their offsets), outside any group assignment."""
        try:
            self.raw.assign(list(partitions))
        except KafkaException as exc:
            raise translate(exc, "assigning partitions") from exc

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop fetching ``partitions`` (still assigned, the group membership kept); :meth:`resume` undoes it."""
        try:
            self.raw.pause(list(partitions))
        except KafkaException as exc:
            raise translate(exc, "pausing partitions") from exc

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        """Fetch ``partitions`` again after :meth:`pause`, from the position reached."""
        try:
            self.raw.resume(list(partitions))
        except KafkaException as exc:
            raise translate(exc, "resuming partitions") from exc

    def poll(self, timeout: float = -1) -> Message | None:
        """The next record, or None after ``timeout`` seconds (error events: see the class doc)."""
        try:
            message = self.raw.poll(timeout)
        except KafkaException as exc:
            raise translate(exc, "polling") from exc
        if message is None or self._record(message):
            return message
        return None

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        """Up to ``num_messages`` records, waiting at most ``timeout`` seconds (error events: see the class doc)."""
        try:
            messages = self.raw.consume(num_messages, timeout)
        except KafkaException as exc:
            raise translate(exc, "consuming") from exc
        return [m for m in messages if self._record(m)]

    def _record(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise FatalError(f"Kafka consumer ({self.name}) failed for good: {error.str()}")
        log.debug("%s: %s", self.name, error.str())
        return False

    def commit(self, offsets: Sequence[TopicPartition], asynchronous: bool = False) -> None:
        """Commit ``offsets`` for the group (waits for the broker unless ``asynchronous``)."""
        try:
            if asynchronous:
                self.raw.commit(offsets=list(offsets), asynchronous=True)
            else:
                self.raw.commit(offsets=list(offsets), asynchronous=False)
        except KafkaException as exc:
            raise translate(exc, "committing offsets") from exc

    def committed(self, partitions: Sequence[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        """The group's committed offsets (and commit metadata) of ``partitions``."""
        try:
            return self.raw.committed(list(partitions), timeout=timeout)
        except KafkaException as exc:
            raise translate(exc, "reading committed offsets") from exc

    def position(self, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        """This consumer's next offset in each of ``partitions`` (negative: none yet)."""
        try:
            return self.raw.position(list(partitions))
        except KafkaException as exc:
            raise translate(exc, "reading positions") from exc

    def assignment(self) -> list[TopicPartition]:
        """The partitions assigned to this consumer now."""
        try:
            return self.raw.assignment()
        except KafkaException as exc:
            raise translate(exc, "reading the assignment") from exc

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        """``(low, high)`` offsets of ``partition`` (``cached``: as last fetched, without asking)."""
        try:
            low, high = self.raw.get_watermark_offsets(partition, timeout=timeout, cached=cached)
        except KafkaException as exc:
            raise translate(exc, f"reading the offsets of {partition.topic}[{partition.partition}]") from exc
        return int(low), int(high)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        """The cluster's metadata (``.topics``: name -> topic metadata), of ``topic`` only when given."""
        try:
            return self.raw.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise translate(exc, "reading metadata") from exc

    def close(self) -> None:
        """Leave the group (if any) and free the client; raises RuntimeError when already closed."""
        try:
            self.raw.close()
        except KafkaException as exc:
            raise translate(exc, "closing the consumer") from exc
