"""sfsync's topics (DESIGN.md §3): names, keys, which records they carry, and how they are created.

The records a product topic may carry are not listed here: they are the union in
``schemas/<topic>.avsc``, registered under ``<topic>-value`` (TopicNameStrategy), so the registry
itself refuses a record type that does not belong on a topic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sfsync.errors import FatalError, ServiceUnavailableError


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its base name (before the prefix), its key and its configuration."""

    base: str
    key_doc: str
    key_path: tuple[str, ...] = ()
    """Where the key lives in a value, for product topics (e.g. ``("member", "member_id")``)."""
    partitions: int = 6
    config: Mapping[str, str] = field(default_factory=dict)
    avro_value: bool = True

    def name(self, prefix: str = "") -> str:
        return f"{prefix}{self.base}"

    def key_of(self, value: Mapping[str, Any]) -> str:
        """The record key of ``value`` (a product event as an Avro dict)."""
        node: Any = value
        for part in self.key_path:
            node = node[part]
        return str(node)


MEMBERS = TopicSpec("product.members", "member id", ("member", "member_id"))
EVENTS = TopicSpec("product.events", "event id", ("event", "id"))
ATTENDANCE = TopicSpec("product.attendance", "member id", ("member", "member_id"))
FORUM = TopicSpec("product.forum", "post id", ("post", "id"))
WRITES = TopicSpec("sfsync.writes", "<sobject>:<identity>")
RESULTS = TopicSpec("sfsync.results", "<sobject>:<identity>")
CHANGES = TopicSpec("salesforce.changes", "<sobject>:<Id>")
MEMBERS_INBOUND = TopicSpec("product.members.inbound", "member id")
SALESFORCE_EDITS = TopicSpec("sfsync.salesforce_edits", "<sobject>:<identity>")
"""Salesforce-side edits the inbound processor delivered, for the outbound processor's record clock."""
ERRORS = TopicSpec("sfsync.errors", "none", partitions=1, config={"retention.ms": str(30 * 86_400_000)})
DLQ = TopicSpec(
    "sfsync.dlq", "original key", partitions=1, avro_value=False, config={"retention.ms": str(30 * 86_400_000)}
)

PRODUCT_TOPICS: tuple[TopicSpec, ...] = (MEMBERS, EVENTS, ATTENDANCE, FORUM)
CONTRACT_TOPICS: tuple[TopicSpec, ...] = (*PRODUCT_TOPICS, MEMBERS_INBOUND)
"""The topics the product reads or writes: their schemas are a released contract (``schemas/released``),
evolved BACKWARD-compatibly (``sfsync schemas register/check/snapshot``)."""
ALL_TOPICS: tuple[TopicSpec, ...] = (
    *PRODUCT_TOPICS, WRITES, RESULTS, CHANGES, MEMBERS_INBOUND, SALESFORCE_EDITS, ERRORS, DLQ,
)  # fmt: skip


def by_base(base: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if spec.base == base:
            return spec
    raise KeyError(base)


def ensure_topics(
    kafka_config: Mapping[str, Any],
    specs: Iterable[TopicSpec] = ALL_TOPICS,
    prefix: str = "",
    timeout_s: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Idempotent."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    # librdkafka's own connection chatter stays out of the terminal; failures are reported below.
    admin = AdminClient({"log_level": 0, **kafka_config})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"Kafka at {kafka_config.get('bootstrap.servers')} did not answer within {timeout_s:.0f}s"
        ) from exc
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


def _wait_until_visible(admin: Any, names: list[str], timeout_s: float) -> None:
    """Return once the broker's metadata lists every topic in ``names`` with a leader for each partition.

    A create is acknowledged by the controller before every broker's metadata has the topic, so a
    client that asks right away can be told it does not exist (the tests saw this on a busy broker).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            topics = admin.list_topics(timeout=max(0.5, deadline - time.monotonic())).topics
        except Exception:  # noqa: BLE001 - retried until the deadline, then reported below
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
    changelogs); the names deleted. Raises what the admin client raises when a deletion fails."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"log_level": 0, **kafka_config})
    starts = tuple(prefixes)
    names = [t for t in admin.list_topics(timeout=10).topics if starts and t.startswith(starts)]
    for future in admin.delete_topics(names, operation_timeout=timeout_s).values() if names else ():
        future.result(timeout=timeout_s)
    return names
