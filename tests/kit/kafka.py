"""Fakes of the confluent-kafka clients, shaped as the code under test calls them (injected, never patched).

- :class:`FakeMessage`: a ``confluent_kafka.Message`` (what ``consume()`` hands out and a delivery
  report carries);
- :class:`FakeKafkaError`: the ``KafkaError`` of a failed delivery report;
- :class:`FakeConsumer`: a ``Consumer`` that hands out a list of messages in order and records commits;
- :class:`FakeProducer`: a ``Producer`` that records what was produced and reports deliveries at
  ``flush()``, with knobs for a full queue, failed deliveries and records never acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["DeliveryReport", "FakeConsumer", "FakeKafkaError", "FakeMessage", "FakeProducer"]

DeliveryReport = Callable[[Any, Any], None]
"""``on_delivery(err, msg)``: ``err`` is None for a delivered record."""


class FakeMessage:
    """A ``confluent_kafka.Message``: every attribute read through its method, as on the real one."""

    def __init__(
        self,
        value: bytes | None = None,
        key: bytes | None = None,
        topic: str = "",
        partition: int = 0,
        offset: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
        error: Any = None,
    ) -> None:
        self._value, self._key, self._topic = value, key, topic
        self._partition, self._offset = partition, offset
        self._headers = headers or []
        self._error = error

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def error(self) -> Any:
        return self._error

    def __repr__(self) -> str:
        return f"FakeMessage({self._topic}[{self._partition}]@{self._offset} key={self._key!r})"


class FakeKafkaError:
    """A ``confluent_kafka.KafkaError`` as a delivery report carries it (``str()`` is its text)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def str(self) -> str:  # what confluent-kafka's KafkaError calls it
        return self.text


class FakeConsumer:
    """A ``confluent_kafka.Consumer`` over ``messages``: ``consume(n)`` hands out the next ``n`` in order
    (list them a partition at a time to mimic a fetch from one partition after another).

    ``commits``: the last committed offset per partition. ``on_idle``: called whenever ``consume``
    finds nothing left (a test stops the loop under test there). ``assigned``: what
    ``assignment()`` answers.
    """

    def __init__(
        self,
        messages: Sequence[FakeMessage] = (),
        *,
        on_idle: Callable[[], None] | None = None,
        assigned: Sequence[Any] = (),
    ) -> None:
        self.messages = list(messages)
        self.commits: dict[int, int] = {}
        self.on_idle = on_idle
        self.assigned = list(assigned)
        self.subscribed: list[str] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = list(topics)

    def assignment(self) -> list[Any]:
        return list(self.assigned)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        out, self.messages = self.messages[:num_messages], self.messages[num_messages:]
        if not out and self.on_idle is not None:
            self.on_idle()
        return out

    def commit(self, offsets: list[Any] | None = None, asynchronous: bool = True, **kwargs: Any) -> None:
        for tp in offsets or []:
            self.commits[tp.partition] = tp.offset

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """A ``confluent_kafka.Producer``: records every ``produce()`` in :attr:`produced` as ``(topic, key, value)``.

    ``on_delivery``: the producer-wide delivery report (the ``on_delivery`` config); a report given
    to ``produce()`` takes its place for that record. Delivery reports are served at ``flush()``:
    each record queued since the last flush is delivered, but those whose key is in :attr:`fail`
    fail (keys in :attr:`fail` that were never produced are reported failed too, through the
    producer-wide report). Knobs: ``full``: that many ``produce()`` calls raise ``BufferError``
    (librdkafka's queue is full) before one goes through; :attr:`stuck`: records the next
    ``flush()`` reports as still unacknowledged (its return value).
    """

    failure_text = "Broker: Message size too large"

    def __init__(self, on_delivery: DeliveryReport | None = None, *, full: int = 0) -> None:
        self.on_delivery = on_delivery
        self.full = full
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []
        self.fail: list[bytes] = []
        self.stuck = 0
        self.polls = 0
        self.flushes = 0
        self._queued: list[tuple[DeliveryReport | None, FakeMessage]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        on_delivery: DeliveryReport | None = None,
        **kwargs: Any,
    ) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.produced.append((topic, key, value))
        self._queued.append((on_delivery or self.on_delivery, FakeMessage(value, key, topic)))

    def keys(self) -> list[bytes | None]:
        """The key of every record produced, in order."""
        return [key for _, key, _ in self.produced]

    def poll(self, timeout: float | None = None) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float | None = None) -> int:
        self.flushes += 1
        queued, self._queued = self._queued, []
        failing, self.fail = list(self.fail), []
        seen = set()
        for report, message in queued:
            seen.add(message.key())
            if report is not None:
                report(FakeKafkaError(self.failure_text) if message.key() in failing else None, message)
        for key in failing:
            if key not in seen and self.on_delivery is not None:
                self.on_delivery(FakeKafkaError(self.failure_text), FakeMessage(key=key))
        stuck, self.stuck = self.stuck, 0
        return stuck

    def __len__(self) -> int:
        """Records queued and not yet acknowledged (what librdkafka's ``len()`` counts)."""
        return len(self._queued) + self.stuck
