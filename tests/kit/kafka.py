"""Fakes of the confluent-kafka clients, shaped as the code under test calls them (injected, never patched).

- :class:`FakeMessage`: a ``confluent_kafka.Message``: a record, an error event (``error`` set; :func:`eof`
  builds the end-of-partition one), or what a delivery report carries;
- :func:`kafka_exception`: what librdkafka raises, a ``KafkaException`` carrying a real ``KafkaError``;
- :class:`FakeConsumer`: a ``confluent_kafka.Consumer``. sfsync's :class:`~sfsync.kafka.clients.KafkaConsumer`
  has the same methods, so the one fake stands for either: inject it bare where code takes a
  ``KafkaConsumer`` (it hands out the records it is given), or wrap it (``KafkaConsumer(FakeConsumer(...),
  name)``) to test the wrapper itself, with error events among the messages and ``fail`` to raise;
- :class:`FakeProducer`: a ``confluent_kafka.Producer`` that records what was produced and serves delivery
  reports at ``flush()``, with knobs for a full queue, refused records, failed deliveries and records
  never acknowledged;
- :class:`FakeClusterMetadata`, :class:`FakeTopicMetadata`, :class:`FakePartitionMetadata`: what
  ``list_topics()`` answers (:func:`cluster_metadata` builds one from topic names and partitions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException

__all__ = [
    "DeliveryCallback",
    "FakeClusterMetadata",
    "FakeConsumer",
    "FakeMessage",
    "FakePartitionMetadata",
    "FakeProducer",
    "FakeTopicMetadata",
    "MovableClock",
    "cluster_metadata",
    "eof",
    "kafka_exception",
]

DeliveryCallback = Callable[[Any, Any], None]
"""``on_delivery(err, msg)``: ``err`` (a ``KafkaError``) is None for a delivered record."""

NO_BROKER = "Failed to get metadata: Local: Broker transport failure"
"""librdkafka's text when no broker answers a metadata request."""


def kafka_exception(
    code: int, reason: str | None = None, *, fatal: bool = False, retriable: bool = False
) -> KafkaException:
    """What librdkafka raises: a ``KafkaException`` carrying a ``KafkaError`` (``code``: ``KafkaError.<NAME>``)."""
    return KafkaException(KafkaError(code, reason, fatal=fatal, retriable=retriable))


class FakeMessage:
    """A ``confluent_kafka.Message``: every attribute read through its method, as on the real one.

    Compares by identity, as the real one does.
    """

    def __init__(
        self,
        *,
        topic: str = "t",
        partition: int = 0,
        offset: int = 0,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        error: Any = None,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value = key, value
        self._headers = headers or []
        self._error = error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def error(self) -> Any:
        """The ``KafkaError`` of an error event; None for a record."""
        return self._error

    def __repr__(self) -> str:
        error = f" error={self._error!r}" if self._error is not None else ""
        return f"FakeMessage({self._topic}[{self._partition}]@{self._offset} key={self._key!r}{error})"


def eof(partition: int = 0, topic: str = "t") -> FakeMessage:
    """The event a consumer with ``enable.partition.eof`` hands out at the end of ``partition``."""
    return FakeMessage(topic=topic, partition=partition, offset=-1, error=KafkaError(KafkaError._PARTITION_EOF))


@dataclass
class FakePartitionMetadata:
    """A ``confluent_kafka.admin.PartitionMetadata`` (its id only)."""

    id: int


@dataclass
class FakeTopicMetadata:
    """A ``confluent_kafka.admin.TopicMetadata``: ``partitions`` by id; ``error`` a ``KafkaError`` or None."""

    partitions: dict[int, FakePartitionMetadata]
    error: Any = None


@dataclass
class FakeClusterMetadata:
    """A ``confluent_kafka.admin.ClusterMetadata``: ``topics`` by name."""

    topics: dict[str, FakeTopicMetadata] = field(default_factory=dict)


def cluster_metadata(partitions: Mapping[str, Sequence[int]]) -> FakeClusterMetadata:
    """The metadata of a cluster whose topics have these partitions (topic name -> partition ids)."""
    return FakeClusterMetadata(
        {name: FakeTopicMetadata({p: FakePartitionMetadata(p) for p in ids}) for name, ids in partitions.items()}
    )


def _answer(partitions: Mapping[str, Sequence[int]] | None) -> FakeClusterMetadata:
    if partitions is None:
        raise kafka_exception(KafkaError._TRANSPORT, NO_BROKER)
    return cluster_metadata(partitions)


class MovableClock(Protocol):
    """A fake clock the consumer moves on while it waits (the kit's ``Clock`` or ``EpochClock``)."""

    def __call__(self) -> Any: ...

    def advance(self, seconds: float = 0.0) -> None: ...


class FakeConsumer:
    """A ``confluent_kafka.Consumer`` (or sfsync's ``KafkaConsumer``: see the module doc) over ``messages``.

    ``poll()`` hands out the next message (None once none is left), ``consume(n)`` the next ``n`` in
    order (list them a partition at a time to mimic a fetch from one partition after another). Tests
    may append to :attr:`messages` between calls. A paused partition's messages (:meth:`pause`) stay
    queued, in order, until :meth:`resume`.

    Knobs: ``on_idle``: called whenever ``poll``/``consume`` find nothing left (a test stops the loop
    under test there); ``fail``: every call but ``close`` raises it; :attr:`commit_fails`: what the next
    ``commit`` calls raise, one each, in order (a broker restart's ``COORDINATOR_LOAD_IN_PROGRESS``...:
    :func:`kafka_exception`), committing nothing; ``assigned``: what
    ``assignment()`` answers (``assign()`` replaces it); ``watermarks``: ``(low, high)`` per partition
    (keyed by ``(topic, partition)``, or by the partition alone for every topic), what
    ``get_watermark_offsets`` answers; ``partitions``: topic name -> partition ids, what
    ``list_topics`` answers (None, the default: it raises as when no broker answers); ``clock``: a
    fake clock that a ``poll`` finding nothing, or a ``consume(n)`` finding fewer than ``n``, moves on by its
    timeout (as librdkafka's waits do: ``consume`` returns early only with ``n`` messages), and that stamps
    every such call in :attr:`polled_at`.

    :meth:`rebalance` queues a group rebalance that the next ``poll``/``consume`` serves first, calling
    the ``on_revoke`` / ``on_assign`` given to ``subscribe`` from inside the call, as librdkafka does
    (a revoked partition forgets its pause; an assigned one comes unpaused).

    Records: :attr:`commits` (the last committed offset per partition), :attr:`commit_log` (every
    commit: ``(partition, offset)``, in order), :attr:`pauses` / :attr:`resumes` (the partitions of
    each call, ``(topic, partition)``), :attr:`subscribed`, :attr:`closed`.
    """

    def __init__(
        self,
        messages: Sequence[FakeMessage] = (),
        *,
        on_idle: Callable[[], None] | None = None,
        fail: BaseException | None = None,
        assigned: Sequence[Any] = (),
        watermarks: Mapping[int | tuple[str, int], tuple[int, int]] | None = None,
        partitions: Mapping[str, Sequence[int]] | None = None,
        clock: MovableClock | None = None,
    ) -> None:
        self.messages = list(messages)
        self.on_idle = on_idle
        self.fail = fail
        self.assigned = list(assigned)
        self.watermarks = dict(watermarks or {})
        self.partitions = partitions
        self.clock = clock
        self.commit_fails: list[BaseException] = []
        self.commits: dict[int, int] = {}
        self.commit_log: list[tuple[int, int]] = []
        self.polled_at: list[Any] = []
        self.paused: set[tuple[str, int]] = set()
        self.pauses: list[list[tuple[str, int]]] = []
        self.resumes: list[list[tuple[str, int]]] = []
        self.subscribed: list[str] = []
        self.closed = False
        self._callbacks: dict[str, Any] = {}
        self._rebalances: list[tuple[list[Any], list[Any]]] = []

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    def _idle(self) -> None:
        if self.on_idle is not None:
            self.on_idle()

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._maybe_fail()
        self.subscribed = list(topics)
        self._callbacks = dict(callbacks)

    def rebalance(self, *, revoke: Sequence[Any] = (), assign: Sequence[Any] = ()) -> None:
        """Queue a rebalance (``TopicPartition``s revoked, then assigned), served by the next poll/consume."""
        self._rebalances.append((list(revoke), list(assign)))

    def _serve_rebalances(self) -> None:
        rebalances, self._rebalances = self._rebalances, []
        for revoke, assign in rebalances:
            if revoke:
                if "on_revoke" in self._callbacks:
                    self._callbacks["on_revoke"](self, revoke)
                gone = {(tp.topic, tp.partition) for tp in revoke}
                self.assigned = [tp for tp in self.assigned if (tp.topic, tp.partition) not in gone]
                self.paused -= gone
            if assign:
                if "on_assign" in self._callbacks:
                    self._callbacks["on_assign"](self, assign)
                self.assigned += list(assign)

    def pause(self, partitions: list[Any]) -> None:
        self._maybe_fail()
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.pauses.append(keys)
        self.paused.update(keys)

    def resume(self, partitions: list[Any]) -> None:
        self._maybe_fail()
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self.resumes.append(keys)
        self.paused.difference_update(keys)

    def _take(self, n: int) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        kept: list[FakeMessage] = []
        for message in self.messages:
            if len(out) < n and (message.topic(), message.partition()) not in self.paused:
                out.append(message)
            else:
                kept.append(message)
        self.messages = kept
        return out

    def _waited(self, timeout: float, found: bool) -> None:
        if self.clock is None:
            return
        self.polled_at.append(self.clock())
        if not found and timeout > 0:
            self.clock.advance(timeout)

    def assign(self, partitions: list[Any]) -> None:
        self._maybe_fail()
        self.assigned = list(partitions)

    def assignment(self) -> list[Any]:
        self._maybe_fail()
        return list(self.assigned)

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        self._maybe_fail()
        self._serve_rebalances()
        out = self._take(1)
        self._waited(timeout, bool(out))
        if not out:
            self._idle()
            return None
        return out[0]

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        self._maybe_fail()
        self._serve_rebalances()
        out = self._take(num_messages)
        self._waited(timeout, len(out) >= num_messages)  # librdkafka waits its whole timeout for fewer than asked
        if not out:
            self._idle()
        return out

    def commit(self, message: Any = None, offsets: list[Any] | None = None, asynchronous: bool = True) -> None:
        self._maybe_fail()
        if self.commit_fails:
            raise self.commit_fails.pop(0)
        for tp in offsets or []:
            self.commits[tp.partition] = tp.offset
            self.commit_log.append((tp.partition, tp.offset))

    def get_watermark_offsets(self, partition: Any, timeout: float = -1, cached: bool = False) -> tuple[int, int]:
        self._maybe_fail()
        found = self.watermarks.get((partition.topic, partition.partition))
        return found if found is not None else self.watermarks[partition.partition]

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> FakeClusterMetadata:
        self._maybe_fail()
        return _answer(self.partitions)

    def close(self) -> None:
        self.closed = True


_PRODUCE_ARGS = ("value", "key", "partition", "on_delivery", "timestamp", "headers")
"""``Producer.produce``'s arguments after the topic, in their positional order."""


class FakeProducer:
    """A ``confluent_kafka.Producer`` that records every ``produce()``: :attr:`produced` as
    ``(topic, key, value)``, :attr:`calls` as made (``(positional arguments, keyword arguments)``).

    ``on_delivery``: the producer-wide delivery report (the ``on_delivery`` config); one given to
    ``produce()`` takes its place for that record. Delivery reports are served at ``flush()``: each
    record queued since the last flush is delivered (at its partition, 0 unless given, at the next
    offset there) unless :meth:`report` gave it a report of its own; those whose key is in
    :attr:`fail` fail with :attr:`failure_text` (keys in :attr:`fail` never produced are reported
    failed too, through the producer-wide report).

    Knobs: :attr:`raises`: exceptions the next ``produce()`` calls raise, in order (``BufferError``:
    librdkafka's queue is full; :func:`kafka_exception`: a refused record); :attr:`stuck`: records
    librdkafka never gets acknowledged (every ``flush()`` returns it, ``len()`` counts it);
    ``partitions``: what ``list_topics`` answers (see :class:`FakeConsumer`).
    Counts: :attr:`polls`, :attr:`flushes`.
    """

    failure_text = "Broker: Message size too large"

    def __init__(
        self,
        on_delivery: DeliveryCallback | None = None,
        *,
        raises: Sequence[BaseException] = (),
        partitions: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.on_delivery = on_delivery
        self.raises = list(raises)
        self.partitions = partitions
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.fail: list[bytes] = []
        self.stuck = 0
        self.polls = 0
        self.flushes = 0
        self._callbacks: list[DeliveryCallback | None] = []
        self._messages: list[FakeMessage] = []
        self._queued: list[int] = []
        self._reports: list[tuple[int, Any, FakeMessage]] = []
        self._next_offset: dict[tuple[str, int], int] = {}

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        if self.raises:
            raise self.raises.pop(0)
        self.calls.append(((topic, *args), kwargs))
        given = {**dict(zip(_PRODUCE_ARGS, args, strict=False)), **kwargs}
        key, value = given.get("key"), given.get("value")
        partition = given.get("partition")
        partition = 0 if partition is None or partition < 0 else int(partition)
        offset = self._next_offset.get((topic, partition), 0)
        self._next_offset[(topic, partition)] = offset + 1
        self.produced.append((topic, key, value))
        self._callbacks.append(given.get("on_delivery") or self.on_delivery)
        message = FakeMessage(topic=topic, partition=partition, offset=offset, key=key, value=value)
        self._messages.append(message)
        self._queued.append(len(self.produced) - 1)

    def keys(self, topic: str | None = None) -> list[bytes | None]:
        """The key of every record produced (to ``topic``; None: to any), in order."""
        return [key for to, key, _ in self.produced if topic is None or to == topic]

    def report(self, index: int, err: Any, msg: FakeMessage) -> None:
        """The delivery report of the ``index``-th record produced, served by the next ``flush()`` in
        place of the automatic one: to the record's own ``on_delivery`` when it had one, else to the
        producer's."""
        self._reports.append((index, err, msg))

    def poll(self, timeout: float | None = None) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float | None = None) -> int:
        self.flushes += 1
        queued, self._queued = self._queued, []
        reports, self._reports = self._reports, []
        failing, self.fail = list(self.fail), []
        reported = {index for index, _, _ in reports}
        for index in queued:
            message = self._messages[index]
            if index not in reported:
                failed = message.key() in failing
                self._deliver(self._callbacks[index], self._failure() if failed else None, message)
        for index, err, message in reports:
            self._deliver(self._callbacks[index], err, message)
        produced = {self._messages[index].key() for index in queued}
        for key in failing:
            if key not in produced:
                self._deliver(self.on_delivery, self._failure(), FakeMessage(key=key))
        return self.stuck

    def _failure(self) -> KafkaError:
        return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, self.failure_text)

    @staticmethod
    def _deliver(callback: DeliveryCallback | None, err: Any, message: FakeMessage) -> None:
        if callback is not None:
            callback(err, message)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> FakeClusterMetadata:
        return _answer(self.partitions)

    def __len__(self) -> int:
        """Records queued and not yet acknowledged (what librdkafka's ``len()`` counts)."""
        return len(self._queued) + self.stuck
