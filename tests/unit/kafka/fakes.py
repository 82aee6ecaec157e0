"""Fakes of confluent-kafka's clients and messages for the tests of sfsync.kafka (injected, never patched)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException


def kafka_exception(
    code: int, reason: str | None = None, *, fatal: bool = False, retriable: bool = False
) -> KafkaException:
    """What librdkafka raises: a KafkaException carrying a KafkaError."""
    return KafkaException(KafkaError(code, reason, fatal=fatal, retriable=retriable))


@dataclass
class FakeMessage:
    """A consumed record, or an error event (``error`` set), as confluent-kafka's ``Message`` presents it."""

    topic_: str = "t"
    partition_: int = 0
    offset_: int = 0
    key_: bytes | None = None
    value_: bytes | None = None
    error_: KafkaError | None = None

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def error(self) -> KafkaError | None:
        return self.error_


def eof(partition: int = 0, topic: str = "t") -> FakeMessage:
    return FakeMessage(topic, partition, -1, error_=KafkaError(KafkaError._PARTITION_EOF))


@dataclass
class FakeProducer:
    """Records produce() calls; ``raises`` are raised by the next produce() calls, in order; ``stuck``:
    records flush() reports as unacknowledged."""

    on_delivery: Callable[[Any, Any], None] | None = None
    produced: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    raises: list[BaseException] = field(default_factory=list)
    polls: int = 0
    stuck: int = 0
    pending: list[tuple[int, KafkaError | None, FakeMessage]] = field(default_factory=list)

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        if self.raises:
            raise self.raises.pop(0)
        self.produced.append(((topic, *args), kwargs))

    def report(self, index: int, err: KafkaError | None, msg: FakeMessage) -> None:
        """A delivery report for the ``index``-th record produced, handed out by the next flush(): to the
        record's own ``on_delivery`` when it had one, else to the producer's."""
        self.pending.append((index, err, msg))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        for index, err, msg in self.pending:
            callback = self.produced[index][1].get("on_delivery") or self.on_delivery
            if callback is not None:
                callback(err, msg)
        self.pending = []
        return self.stuck

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        raise kafka_exception(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure")

    def __len__(self) -> int:
        return self.stuck


@dataclass
class FakeRawConsumer:
    """confluent-kafka's Consumer: poll() hands out ``queue`` (None once empty); ``fail`` makes every call raise it."""

    queue: list[FakeMessage] = field(default_factory=list)
    fail: BaseException | None = None
    assigned: list[Any] = field(default_factory=list)
    watermarks: dict[int, tuple[int, int]] = field(default_factory=dict)
    partitions: dict[str, list[int]] = field(default_factory=dict)
    closed: bool = False

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    def assign(self, partitions: list[Any]) -> None:
        self._maybe_fail()
        self.assigned = list(partitions)

    def poll(self, timeout: float) -> FakeMessage | None:
        self._maybe_fail()
        return self.queue.pop(0) if self.queue else None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self._maybe_fail()
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out

    def commit(self, **kwargs: Any) -> list[Any]:
        self._maybe_fail()
        return []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self._maybe_fail()

    def get_watermark_offsets(self, partition: Any, timeout: float = -1, cached: bool = False) -> tuple[int, int]:
        self._maybe_fail()
        return self.watermarks[partition.partition]

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self._maybe_fail()
        known = {name: _TopicMeta({p: object() for p in parts}) for name, parts in self.partitions.items()}
        return _ClusterMeta(known)

    def close(self) -> None:
        self.closed = True


@dataclass
class _TopicMeta:
    partitions: dict[int, object]
    error: KafkaError | None = None


@dataclass
class _ClusterMeta:
    topics: dict[str, _TopicMeta]
