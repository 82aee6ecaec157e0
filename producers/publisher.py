"""Publish typed product events to Kafka: Avro (Confluent wire format) via the schema registry.

Two front doors over one core:

- :class:`Publisher` for synchronous code: ``publish()`` queues, ``flush()`` waits and raises
  :class:`~sfsync.errors.DeliveryError` for anything Kafka did not acknowledge.
- :class:`AsyncPublisher` for asyncio: ``await publish()`` returns where the event landed.

The producer is idempotent (``enable.idempotence``, ``acks=all``), keys follow DESIGN.md §3
(member id, event id, post id), and an event that does not fit its schema raises
:class:`~sfsync.errors.RecordValidationError` naming the record type and field before anything is
sent. A broker or registry that does not answer gives a bounded
:class:`~sfsync.errors.ServiceUnavailableError`, never a hang; settings librdkafka refuses (e.g. an
unknown ``KAFKA_SASL_MECHANISM``) give a :class:`~sfsync.errors.ConfigError` naming the setting.

Example::

    from sfsync.producers import Publisher, events
    with Publisher() as pub:
        pub.publish(events.UserDeleted(workspace_id="w1", member=events.MemberRef(member_id="u1")))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self

from sfsync.errors import DeliveryError, FatalError, RecordValidationError, ServiceUnavailableError
from sfsync.kafka.clients import ProducerTuning, RawDeliveryCallback, new_producer
from sfsync.kafka.delivery import ANY_TOPIC, DeliveryReport, Outbox, ProducerLike
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
    """Connection, serializers and the outbox (librdkafka producer) shared by both publishers.

    Raises (building it):
        ConfigError: the settings are invalid (e.g. a SASL mechanism librdkafka does not know).
        ServiceUnavailableError: Kafka or the registry did not answer.
        FatalError: a product topic does not exist.
    """

    def __init__(
        self, settings: PublisherSettings, extra_config: Mapping[str, Any] | None = None, *, per_record: bool = False
    ) -> None:
        self.settings = settings
        options: dict[str, Any] = {
            "compression.type": settings.compression,
            "queue.buffering.max.messages": 500_000,
            "socket.connection.setup.timeout.ms": int(settings.connect_timeout_s * 1000),
            **(extra_config or {}),
        }
        tuning = ProducerTuning(linger_ms=settings.linger_ms, batch_bytes=settings.batch_size_bytes)

        def producer(own_callback: RawDeliveryCallback | None) -> ProducerLike:
            return new_producer(
                settings.kafka_client_config(),
                "sfsync-publisher",
                delivery_timeout_s=settings.delivery_timeout_s,
                on_delivery=own_callback,
                errors_only=own_callback is not None,
                tuning=tuning,
                options=options,
            )

        if per_record:  # each record reports to the callback it is sent with
            self.outbox = Outbox(producer(None), label=ANY_TOPIC, timeout_s=settings.delivery_timeout_s)
        else:  # failed deliveries only, collected by the outbox: flush() raises them
            self.outbox = Outbox(factory=producer, label=ANY_TOPIC, timeout_s=settings.delivery_timeout_s)
        try:
            existing = self.outbox.topic_names(settings.connect_timeout_s)
        except ServiceUnavailableError as exc:
            raise ServiceUnavailableError(
                f"Kafka at {settings.bootstrap_servers} did not answer within "
                f"{settings.connect_timeout_s:.0f}s; is it running? (`sfsync stack status`)"
            ) from exc
        prefix = settings.topic_prefix
        missing = [s.name(prefix) for s in PRODUCT_TOPICS if s.name(prefix) not in existing]
        if missing:
            raise FatalError(
                f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}; "
                "create them with `sfsync topics ensure`"
            )
        registry = SchemaRegistry.from_settings(settings, ride_out_outages=False)
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


class Publisher:
    """Synchronous publisher. Not thread-safe for ``flush`` bookkeeping; use one per thread.

    Raises (building it): ConfigError (invalid settings, e.g. an unknown ``KAFKA_SASL_MECHANISM``),
    ServiceUnavailableError (Kafka or the registry did not answer), FatalError (a product topic is
    missing).
    """

    def __init__(
        self, settings: PublisherSettings | None = None, extra_config: Mapping[str, Any] | None = None
    ) -> None:
        self._core = _Core(settings or load(PublisherSettings, "publisher"), extra_config)
        self._outbox = self._core.outbox

    def publish(self, event: Event) -> None:
        """Queue one typed event (waits, bounded, while librdkafka's queue is full).

        Raises:
            RecordValidationError: it does not fit its schema; nothing was queued.
            RecordRejectedError: Kafka refuses it whenever it is sent (e.g. larger than librdkafka
                accepts, ``MSG_SIZE_TOO_LARGE``); nothing was queued.
            DeliveryError: it could not be queued within the delivery timeout.
        """
        topic, key, data = self._core.prepare(event.RECORD_NAME, event.to_avro())
        self._outbox.send(topic, data, key.encode())

    def publish_record(self, record_name: str, value: Mapping[str, Any]) -> None:
        """Queue one event given as an Avro dict (e.g. from another system); validated the same way."""
        topic, key, data = self._core.prepare(record_name, value, typed=False)
        self._outbox.send(topic, data, key.encode())

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued event is acknowledged (at most ``timeout_s``, default the
        delivery timeout + 5 s); when it returns, Kafka stored them all.

        Raises:
            DeliveryError: events Kafka did not acknowledge (they are not stored).
        """
        self._outbox.flush(timeout_s)

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
            self._outbox.close(5)


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
        """Connect (see :class:`Publisher` for what building one raises) and start serving delivery reports."""
        settings = self._settings or load(PublisherSettings, "publisher")
        self._core = await asyncio.to_thread(partial(_Core, settings, self._extra, per_record=True))
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="sfsync-publisher-poll", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._core is not None
        while self._running:
            self._core.outbox.poll(0.05)

    def send(self, event: Event) -> asyncio.Future[Delivered]:
        """Queue ``event`` now; the returned future resolves on acknowledgement (or DeliveryError).

        Raises:
            RecordValidationError: it does not fit its schema; nothing was queued.
            RecordRejectedError: Kafka refuses it whenever it is sent; nothing was queued.
            DeliveryError: it could not be queued within the delivery timeout.
        """
        if self._core is None:
            raise FatalError("AsyncPublisher used before start() (use `async with AsyncPublisher()`)")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()
        topic, key, data = self._core.prepare(event.RECORD_NAME, event.to_avro())

        def settle(report: DeliveryReport) -> None:
            if report.error is not None:
                outcome: Delivered | BaseException = DeliveryError([(topic, key, report.error)])
            else:
                outcome = Delivered(report.topic, report.partition, report.offset, key)
            loop.call_soon_threadsafe(_settle, future, outcome)

        self._core.outbox.send(topic, data, key.encode(), on_delivery=settle)
        return future

    async def publish(self, event: Event) -> Delivered:
        """Publish one event and wait for Kafka's acknowledgement."""
        return await self.send(event)

    async def close(self) -> None:
        if self._core is None:
            return
        core = self._core
        remaining = await asyncio.to_thread(core.outbox.close, core.settings.delivery_timeout_s + 5)
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
