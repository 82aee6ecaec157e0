"""Publish typed product events to Kafka: Avro (Confluent wire format) via the schema registry.

Two front doors over one core:

- :class:`Publisher` for synchronous code: ``publish()`` queues, ``flush()`` waits and raises
  :class:`~sfsync.errors.DeliveryError` for anything Kafka did not acknowledge.
- :class:`AsyncPublisher` for asyncio: ``await publish()`` returns where the event landed.

The producer is idempotent (``enable.idempotence``, ``acks=all``), keys follow DESIGN.md §3
(member id, event id, post id), and an event that does not fit its schema raises
:class:`~sfsync.errors.RecordValidationError` naming the record type and field before anything is
sent. A broker or registry that does not answer gives a bounded
:class:`~sfsync.errors.ServiceUnavailableError`, never a hang.

Example::

    from sfsync.producers import Publisher, events
    with Publisher() as pub:
        pub.publish(events.UserDeleted(workspace_id="w1", member=events.MemberRef(member_id="u1")))
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

from sfsync.errors import DeliveryError, FatalError, RecordValidationError, ServiceUnavailableError
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.settings import PublisherSettings, load
from sfsync.topics import PRODUCT_TOPICS, TopicSpec


class Event(Protocol):
    """What the publisher needs of an event: the generated classes in :mod:`sfsync.producers.events`."""

    RECORD_NAME: ClassVar[str]
    TOPIC: ClassVar[str]

    def to_avro(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Delivered:
    """Where Kafka stored an event."""

    topic: str
    partition: int
    offset: int
    key: str


class _Core:
    """Connection, serializers and the librdkafka producer shared by both publishers."""

    def __init__(self, settings: PublisherSettings, extra_config: Mapping[str, Any] | None = None) -> None:
        from confluent_kafka import KafkaException, Producer

        self.settings = settings
        kafka_conf = settings.kafka_client_config()
        conf: dict[str, Any] = {
            **kafka_conf,
            "client.id": "sfsync-publisher",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_size_bytes,
            "compression.type": settings.compression,
            "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
            "queue.buffering.max.messages": 500_000,
            "socket.connection.setup.timeout.ms": int(settings.connect_timeout_s * 1000),
            "log_level": 3,
            **(extra_config or {}),
        }
        self.producer = Producer(conf)
        try:
            metadata = self.producer.list_topics(timeout=settings.connect_timeout_s)
        except KafkaException as exc:
            raise ServiceUnavailableError(
                f"Kafka at {settings.bootstrap_servers} did not answer within "
                f"{settings.connect_timeout_s:.0f}s; is it running? (`sfsync stack status`)"
            ) from exc
        prefix = settings.topic_prefix
        missing = [s.name(prefix) for s in PRODUCT_TOPICS if s.name(prefix) not in metadata.topics]
        if missing:
            raise FatalError(
                f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}; "
                "create them with `sfsync topics ensure`"
            )
        registry = SchemaRegistry.from_settings(settings)
        self.routes: dict[str, tuple[str, TopicSpec, AvroEncoder]] = {}
        with registry:  # schema ids are resolved once, here; the registry is not needed afterwards
            for spec in PRODUCT_TOPICS:
                topic = spec.name(prefix)
                encoder = AvroEncoder(registry, topic, load_topic_schema(spec.base), register=settings.register_schemas)
                for record_name in encoder.schema.record_names:
                    self.routes[record_name] = (topic, spec, encoder)

    def prepare(self, record_name: str, value: Mapping[str, Any], typed: bool = True) -> tuple[str, str, bytes]:
        """(topic, key, bytes) for one event given as an Avro dict (``typed``: from ``to_avro()``)."""
        route = self.routes.get(record_name)
        if route is None:
            raise RecordValidationError(record_name, "(record type)", "not a product event type")
        topic, spec, encoder = route
        try:
            key = spec.key_of(value)
        except (KeyError, TypeError):
            raise RecordValidationError(
                record_name, ".".join(spec.key_path), "missing (it is the record key)"
            ) from None
        if typed:
            return topic, key, encoder.encode_checked(record_name, value)
        return topic, key, encoder.encode(record_name, value)

    def produce(self, topic: str, key: str, data: bytes, on_delivery: Any = None) -> None:
        deadline: float | None = None
        while True:
            try:
                if on_delivery is None:
                    self.producer.produce(topic, data, key)
                else:
                    self.producer.produce(topic, data, key, on_delivery=on_delivery)
                return
            except BufferError:
                # librdkafka's queue is full: serve delivery reports until there is room (bounded).
                now = time.monotonic()
                deadline = deadline or now + self.settings.delivery_timeout_s
                if now > deadline:
                    raise DeliveryError([(topic, key, "local queue full for the whole delivery timeout")]) from None
                self.producer.poll(0.05)


class Publisher:
    """Synchronous publisher. Not thread-safe for ``flush`` bookkeeping; use one per thread."""

    def __init__(
        self, settings: PublisherSettings | None = None, extra_config: Mapping[str, Any] | None = None
    ) -> None:
        self._failures: list[tuple[str, str | None, str]] = []
        config = {"delivery.report.only.error": True, "on_delivery": self._on_delivery, **(extra_config or {})}
        self._core = _Core(settings or load(PublisherSettings, "publisher"), config)
        self._producer = self._core.producer
        self._produced = 0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            key = msg.key().decode() if msg.key() else None
            self._failures.append((msg.topic(), key, err.str()))

    def publish(self, event: Event) -> None:
        """Queue one typed event. Raises RecordValidationError if it does not fit its schema."""
        topic, key, data = self._core.prepare(event.RECORD_NAME, event.to_avro())
        try:
            self._producer.produce(topic, data, key)
        except BufferError:
            self._core.produce(topic, key, data)  # waits for room, bounded
        self._produced += 1
        if not self._produced % 1000:
            self._producer.poll(0)

    def publish_record(self, record_name: str, value: Mapping[str, Any]) -> None:
        """Queue one event given as an Avro dict (e.g. from another system); validated the same way."""
        topic, key, data = self._core.prepare(record_name, value, typed=False)
        self._core.produce(topic, key, data)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued event is acknowledged; raise DeliveryError for those that were not."""
        timeout = self._core.settings.delivery_timeout_s + 5 if timeout_s is None else timeout_s
        remaining = self._core.producer.flush(timeout)
        failures, self._failures = self._failures, []
        if remaining:
            failures.append(("*", None, f"{remaining} event(s) still unacknowledged after {timeout:.0f}s"))
        if failures:
            raise DeliveryError(failures)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the original error; still try to deliver what was queued
            self._core.producer.flush(5)


class AsyncPublisher:
    """asyncio publisher: ``await publish(event)`` resolves when Kafka acknowledged the event.

    A daemon thread serves librdkafka's delivery reports; results reach the event loop through
    ``call_soon_threadsafe``. Use ``async with AsyncPublisher() as pub:``.
    """

    def __init__(
        self, settings: PublisherSettings | None = None, extra_config: Mapping[str, Any] | None = None
    ) -> None:
        self._settings = settings
        self._extra = extra_config
        self._core: _Core | None = None
        self._running = False
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        settings = self._settings or load(PublisherSettings, "publisher")
        self._core = await asyncio.to_thread(_Core, settings, self._extra)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="sfsync-publisher-poll", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._core is not None
        while self._running:
            self._core.producer.poll(0.05)

    def send(self, event: Event) -> asyncio.Future[Delivered]:
        """Queue ``event`` now; the returned future resolves on acknowledgement (or DeliveryError)."""
        if self._core is None:
            raise FatalError("AsyncPublisher used before start() (use `async with AsyncPublisher()`)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()
        topic, key, data = self._core.prepare(event.RECORD_NAME, event.to_avro())

        def settle(err: Any, msg: Any) -> None:
            if err is not None:
                outcome: Delivered | BaseException = DeliveryError([(topic, key, err.str())])
            else:
                outcome = Delivered(msg.topic(), msg.partition(), msg.offset(), key)
            loop.call_soon_threadsafe(_settle, future, outcome)

        self._core.produce(topic, key, data, on_delivery=settle)
        return future

    async def publish(self, event: Event) -> Delivered:
        """Publish one event and wait for Kafka's acknowledgement."""
        return await self.send(event)

    async def close(self) -> None:
        if self._core is None:
            return
        core = self._core
        remaining = await asyncio.to_thread(core.producer.flush, core.settings.delivery_timeout_s + 5)
        self._running = False
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
        if remaining:
            raise DeliveryError([("*", None, f"{remaining} event(s) unacknowledged at close")])

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _settle(future: asyncio.Future[Delivered], outcome: Delivered | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
