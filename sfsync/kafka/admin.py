"""Kafka's admin side: sfsync's topics created and deleted, what the cluster holds, whether it answers.

Every admin client sfsync builds is built here (:func:`new_admin`), from the ``kafka_config`` of
:meth:`sfsync.settings.KafkaConnection.kafka_client_config`. Errors are sfsync's
(:mod:`sfsync.kafka.errors`); ``KafkaException`` never leaves this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from sfsync.errors import FatalError, ServiceUnavailableError
from sfsync.kafka.errors import construction_error, translate
from sfsync.topics import ALL_TOPICS, TopicSpec, shared_partitions

__all__ = [
    "copartitioned",
    "delete_topics",
    "ensure_topics",
    "max_message_bytes",
    "new_admin",
    "topic_partition_counts",
    "wait_for_cluster",
]


def new_admin(kafka_config: Mapping[str, Any], *, options: Mapping[str, Any] | None = None) -> AdminClient:
    """An admin client, librdkafka's own logging off (failures are reported as errors instead).

    Raises:
        ConfigError: librdkafka refused the configuration.
    """
    try:
        return AdminClient({"log_level": 0, **kafka_config, **(options or {})})
    except (KafkaException, ValueError) as exc:
        raise construction_error(exc, "admin client") from exc


def _topics(admin: AdminClient, timeout_s: float, kafka_config: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"Kafka at {kafka_config.get('bootstrap.servers')} did not answer within {timeout_s:.0f}s"
        ) from exc


def ensure_topics(
    kafka_config: Mapping[str, Any],
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    prefix: str = "",
    timeout_s: float = 15.0,
) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet (named with ``prefix``); the names created.
    Idempotent. When it returns, every topic of ``specs`` exists and has a leader for each partition.

    Raises:
        ServiceUnavailableError: Kafka did not answer, or a new topic did not become visible in time.
        FatalError: Kafka refused to create a topic.
    """
    admin = new_admin(kafka_config)
    existing = set(_topics(admin, timeout_s, kafka_config))
    wanted = [s for s in specs if s.name(prefix) not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name(prefix), s.partitions, replication_factor=-1, config=dict(s.config)) for s in wanted],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            raise FatalError(f"could not create topic {name}: {exc.args[0]}") from exc
    _wait_until_visible(admin, [s.name(prefix) for s in wanted], timeout_s)
    return created


def _wait_until_visible(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Return once the broker's metadata lists every topic in ``names`` with a leader for each partition.

    A create is acknowledged by the controller before every broker's metadata has the topic, so a
    client that asks right away can be told it does not exist (the tests saw this on a busy broker).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            topics = admin.list_topics(timeout=max(0.5, deadline - time.monotonic())).topics
        except KafkaException:  # retried until the deadline, then reported below
            topics = {}
        pending = [
            n for n in names
            if n not in topics or not topics[n].partitions or any(p.leader < 0 for p in topics[n].partitions.values())
        ]  # fmt: skip
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise ServiceUnavailableError(
                f"topic(s) {', '.join(pending)} not visible in {timeout_s:.0f}s after creation"
            )
        time.sleep(0.1)


def delete_topics(kafka_config: Mapping[str, Any], prefixes: Iterable[str], timeout_s: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` (a run's topics and its apps'
    changelogs); the names deleted, once Kafka confirmed each deletion.

    Raises:
        ServiceUnavailableError / FatalError: Kafka did not answer, or refused a deletion.
    """
    admin = new_admin(kafka_config)
    starts = tuple(prefixes)
    names = [t for t in _topics(admin, 10, kafka_config) if starts and t.startswith(starts)]
    if not names:
        return []
    try:
        for future in admin.delete_topics(names, operation_timeout=timeout_s).values():
            future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise translate(exc, f"deleting topics {', '.join(names)}") from exc
    return names


def topic_partition_counts(kafka_config: Mapping[str, Any], timeout_s: float = 10.0) -> dict[str, int]:
    """Every topic of the cluster and its number of partitions.

    Raises:
        ServiceUnavailableError: Kafka did not answer within ``timeout_s``.
    """
    topics = _topics(new_admin(kafka_config), timeout_s, kafka_config)
    return {name: len(meta.partitions) for name, meta in topics.items()}


def copartitioned(kafka_config: Mapping[str, Any], names: Iterable[str], what: str, timeout_s: float = 10.0) -> int:
    """The partition count the topics ``names`` share (:func:`sfsync.topics.shared_partitions`).

    Raises:
        ConfigError: a topic is missing, or their partition counts differ (each one named with its count).
        ServiceUnavailableError: Kafka did not answer within ``timeout_s``.
    """
    counts = topic_partition_counts(kafka_config, timeout_s)
    return shared_partitions({name: counts.get(name) for name in names}, what)


def max_message_bytes(kafka_config: Mapping[str, Any], topic: str, timeout_s: float = 10.0) -> int:
    """The ``max.message.bytes`` of ``topic``: the largest record batch it accepts.

    Raises:
        ServiceUnavailableError / FatalError: Kafka did not answer, or refused to describe the topic
            (e.g. no DescribeConfigs permission).
    """
    admin = new_admin(kafka_config)
    resource = ConfigResource("TOPIC", topic)
    try:
        described = admin.describe_configs([resource], request_timeout=timeout_s)[resource].result(timeout=timeout_s)
    except KafkaException as exc:
        raise translate(exc, f"describing topic {topic}") from exc
    entry = described.get("max.message.bytes")
    if entry is None or entry.value is None or not str(entry.value).isdigit():
        raise FatalError(f"topic {topic} has no readable max.message.bytes ({entry!r})")
    return int(entry.value)


def wait_for_cluster(
    kafka_config: Mapping[str, Any],
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
    *,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Return once the cluster answers a metadata request with at least one broker; ``check`` runs
    before each attempt and raises when waiting is pointless. ``options``: admin client properties
    (e.g. ``logger``).

    Raises:
        ServiceUnavailableError: no answer within ``timeout_s`` (at least 1 s).
    """
    deadline = time.monotonic() + max(timeout_s, 1.0)
    admin = new_admin(kafka_config, options=options)
    last = "no answer"
    while time.monotonic() < deadline:
        check()
        try:
            meta = admin.list_topics(timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
            if meta.brokers:
                return
        except KafkaException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ServiceUnavailableError(
        f"Kafka at {kafka_config.get('bootstrap.servers')} did not answer within {timeout_s:.0f}s ({last})"
    )
