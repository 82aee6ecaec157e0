"""Helpers for integration tests: settings for a test's own topics, consuming what was published (at
once, or in phases with a :class:`Reader`), a group's committed offsets and members, waiting for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from sfsync.emulator.server import RunningEmulator
from sfsync.kafka.admin import ensure_topics
from sfsync.producers.publisher import Publisher
from sfsync.salesforce import SalesforceSettings
from sfsync.settings import PublisherSettings
from sfsync.topics import ALL_TOPICS, planned_writes

PARTITIONS = 6


def publisher_settings(services: Any, prefix: str, **overrides: Any) -> PublisherSettings:
    return PublisherSettings(
        bootstrap_servers=services.bootstrap,
        schema_registry_url=services.registry,
        topic_prefix=prefix,
        **overrides,
    )


def make_topics(services: Any, prefix: str) -> None:
    ensure_topics({"bootstrap.servers": services.bootstrap}, ALL_TOPICS, prefix)


def open_publisher(services: Any, prefix: str, **overrides: Any) -> Publisher:
    make_topics(services, prefix)
    return Publisher(publisher_settings(services, prefix, **overrides))


def publish_all(services: Any, prefix: str, events: Iterable[Any]) -> dict[str, int]:
    """Publish ``events`` (product events) to the test's topics and wait until Kafka has them all;
    how many went to each topic (by its full name)."""
    publisher = open_publisher(services, prefix)
    per_topic: dict[str, int] = {}
    for event in events:
        publisher.publish(event)
        per_topic[prefix + event.TOPIC] = per_topic.get(prefix + event.TOPIC, 0) + 1
    publisher.flush()
    publisher.close()
    return per_topic


def salesforce_settings(running: RunningEmulator) -> SalesforceSettings:
    """The emulated org's first connected app (OAuth client credentials)."""
    app = running.emulator.auth.config.connected_apps[0]
    return SalesforceSettings(
        login_url=running.base_url,
        auth_flow="client_credentials",
        client_id=app.client_id,
        client_secret=SecretStr(app.client_secret),
    )


def consume_all(
    bootstrap: str, topics: list[str], expected: int, timeout_s: float = 30, *, read_committed: bool = False
) -> list[Any]:
    """Read ``expected`` messages from the start of ``topics`` with confluent-kafka (bounded);
    ``read_committed``: only what committed transactions wrote."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if read_committed:
        config["isolation.level"] = "read_committed"
    consumer = Consumer(config)
    consumer.subscribe(topics)
    messages = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()
    return messages


_SETTLING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE}
"""Errors a partition created a moment ago answers with until its leader has taken it over."""


class Offsets:
    """A group's committed offsets and the end offsets of topics, through one consumer that never joins
    the group (``close()`` it, or use ``with``).

    ``stable`` (the default): a committed offset is asked for as a read_committed consumer asks (KIP-447),
    so while a transaction of the group holds offsets not yet committed the broker answers only once it
    ends. False: the offsets committed so far, at once (e.g. right after a transactional worker was killed
    mid-transaction, which stays open until its restart fences it)."""

    def __init__(self, bootstrap: str, group: str, partitions: int = PARTITIONS, *, stable: bool = True) -> None:
        config = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        if not stable:
            config["isolation.level"] = "read_uncommitted"
        self.consumer = Consumer(config)
        self.partitions = partitions

    def by_partition(self, topic: str) -> list[int]:
        """Committed offsets per partition (0 where the group committed nothing)."""
        tps = [TopicPartition(topic, p) for p in range(self.partitions)]
        return [max(tp.offset, 0) for tp in self.consumer.committed(tps, timeout=10)]

    def committed(self, topic: str) -> int:
        return sum(self.by_partition(topic))

    def ends(self, topic: str) -> list[int]:
        """End offsets per partition (asked again while a just-created partition's leader settles)."""
        return [self._end(TopicPartition(topic, p)) for p in range(self.partitions)]

    def _end(self, tp: TopicPartition, attempts: int = 20) -> int:
        for attempt in range(attempts):
            try:
                return int(self.consumer.get_watermark_offsets(tp, timeout=10)[1])
            except KafkaException as exc:  # NOT_LEADER_FOR_PARTITION right after creation, on a busy broker
                if attempt == attempts - 1 or exc.args[0].code() not in _SETTLING:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def end(self, topic: str) -> int:
        return sum(self.ends(topic))

    def caught_up(self, topic: str) -> bool:
        """Whether the group committed every partition of ``topic`` up to its end."""
        return all(c >= e for c, e in zip(self.by_partition(topic), self.ends(topic), strict=True))

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> Offsets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def end_offsets(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> int:
    with Offsets(bootstrap, "offsets", partitions) as offsets:
        return offsets.end(topic)


def group_offsets(bootstrap: str, group: str, topic: str) -> tuple[list[int], list[int]]:
    """``group``'s committed offsets and the end offsets of ``topic``, per partition."""
    with Offsets(bootstrap, group) as offsets:
        return offsets.by_partition(topic), offsets.ends(topic)


def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """``group``'s state as the broker sees it (``STABLE``, ``EMPTY``, ``PREPARING_REBALANCE``...) and its
    member count."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return description.state.name, len(description.members)


def caught_up(bootstrap: str, group: str, topic: str, timeout_s: float = 0) -> bool:
    """Whether ``group`` committed every partition of ``topic`` up to its end (asking every 0.5 s for up
    to ``timeout_s``)."""
    with Offsets(bootstrap, group) as offsets:
        deadline = time.monotonic() + timeout_s
        while not offsets.caught_up(topic):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
        return True


def processed_all(bootstrap: str, group: str, expected: Mapping[str, int]) -> bool:
    """Whether ``group`` committed at least ``expected[topic]`` records of each topic."""
    with Offsets(bootstrap, group) as offsets:
        return all(offsets.committed(topic) >= count for topic, count in expected.items())


def planned_topic(prefix: str, app_id: str) -> str:
    """The repartition topic of the outbound processor ``app_id``: the writes it planned, to be ordered."""
    return planned_writes(app_id, PARTITIONS).name(prefix)


def processor_done(bootstrap: str, app_id: str, prefix: str, expected: Mapping[str, int]) -> bool:
    """Whether the outbound processor ``app_id`` committed at least ``expected[topic]`` records of each
    product topic and ordered every write it planned (its :func:`planned_topic` committed to its end:
    the planned writes of an event are in that topic before the event's offset commits)."""
    with Offsets(bootstrap, app_id) as offsets:
        if not all(offsets.committed(topic) >= count for topic, count in expected.items()):
            return False
        return offsets.caught_up(planned_topic(prefix, app_id))


async def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    """Check ``condition`` every ``interval_s`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout_s:.0f}s: {what}"
        await asyncio.sleep(interval_s)


def normalize(value: Any) -> Any:
    """Decoded Avro in storage form: datetimes as epoch ms, uuids as strings."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def committed(bootstrap: str, group: str, topic: str, partitions: int = 6) -> int:
    """How many records of ``topic`` ``group`` committed (summed over its partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


class Reader:
    """One read_committed consumer over a topic, read in phases."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe([topic])
        self.messages: list[Any] = []

    def until(self, total: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < total and time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                self.messages.append(msg)
        return len(self.messages)

    def close(self) -> None:
        self.consumer.close()


def drain(reader: Reader, quiet_s: float = 3) -> int:
    """Read until nothing more came for ``quiet_s``; how many records the reader holds."""
    while True:
        before = len(reader.messages)
        if reader.until(before + 1, quiet_s) == before:
            return before


LAST_OFFSETS: dict[str, list[tuple[int, int]]] = {}
"""(committed, end) per partition of each topic :func:`committed_to_end` last found a group behind on;
:func:`until` names them when it gives up."""


def committed_to_end(bootstrap: str, group: str, topic: str, transactional: bool) -> bool:
    """Whether ``group`` committed every partition of ``topic`` to its end. A topic written in
    transactions ends with a commit marker, which takes an offset but is never consumed."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in range(6)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in partitions]
        committed = [tp.offset for tp in consumer.committed(partitions, timeout=10)]
    finally:
        consumer.close()
    marker = 1 if transactional else 0
    done = all(end == 0 or at >= end - marker for at, end in zip(committed, ends, strict=True))
    if not done:
        LAST_OFFSETS[topic] = list(zip(committed, ends, strict=True))  # named when a wait gives up
    return done


async def until(condition: Any, timeout_s: float, what: str) -> None:
    """Until ``condition()`` (checked in a thread when it is blocking: the sink and poller share this loop)."""
    deadline = time.monotonic() + timeout_s
    while not (await condition() if inspect.iscoroutinefunction(condition) else condition()):
        assert time.monotonic() < deadline, f"not in {timeout_s:.0f}s: {what} (committed/end: {LAST_OFFSETS})"
        await asyncio.sleep(0.25)


class Gate:
    """A TCP forwarder on loopback to ``host:port``: open, it passes every connection through; shut,
    nothing listens on its port (connections are refused, those open are cut), as when the service
    behind it is down. ``url_for(url)`` is ``url`` through the gate."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def url_for(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
