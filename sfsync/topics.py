"""sfsync's topics (DESIGN.md §3): names, keys, partitions and configuration (created by
:func:`sfsync.kafka.admin.ensure_topics`).

Co-partitioning: a key is on partition ``murmur2(key) % partitions`` whoever wrote it (every
producer partitions like the Java client: :data:`sfsync.kafka.clients.JAVA_PARTITIONER`), so topics
with the same key and the same partition count put a key on the same partition number, which Faust
assigns to one worker. The outbound processor's tables rely on it: :data:`OUTBOUND_TABLE_FEEDS`, its
own :func:`planned_writes` topic and its table changelogs must have one partition count
(:func:`shared_partitions`; the processor refuses to start otherwise).

The records a product topic may carry are not listed here: they are the union in
``schemas/<topic>.avsc``, registered under ``<topic>-value`` (TopicNameStrategy), so the registry
itself refuses a record type that does not belong on a topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfsync.errors import ConfigError


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
WRITES = TopicSpec("sfsync.writes", "record key (sfsync.keys)")
RESULTS = TopicSpec("sfsync.results", "record key (sfsync.keys)")
"""Every write the sink carried out (a WriteResult each): the inbound processor's echo hold and identity links."""
CHANGES = TopicSpec("salesforce.changes", "<sobject>:<Id>")
MEMBERS_INBOUND = TopicSpec("product.members.inbound", "member id")
SALESFORCE_EDITS = TopicSpec("sfsync.salesforce_edits", "record key (sfsync.keys)")
"""Salesforce-side edits the inbound processor delivered, for the outbound processor's record clock."""
ERRORS = TopicSpec("sfsync.errors", "none", partitions=1, config={"retention.ms": str(30 * 86_400_000)})
DLQ = TopicSpec(
    "sfsync.dlq", "original key", partitions=1, avro_value=False, config={"retention.ms": str(30 * 86_400_000)}
)
_COMPACTED = {"cleanup.policy": "compact"}
CONNECTIONS = TopicSpec("sfsync.connections", "connection id", config=_COMPACTED)
"""The registry's connections: how to reach and log in to each org, secrets sealed (decision 0009)."""
WORKSPACES = TopicSpec("sfsync.workspaces", "workspace id", config=_COMPACTED)
"""The registry's workspaces: each one's connection, mapping and state (decision 0009)."""
IDENTITIES = TopicSpec("sfsync.identities", "record key (sfsync.keys)", config=_COMPACTED)
"""Person records' Salesforce identities (an Identity each: :func:`sfsync.keys.person_identity`), published
by the sink when it learns one it had not published yet: the outbound processor's ``identity`` table reads
only these, not every result. Compacted (a key's latest identity is all it needs), and partitioned like
``sfsync.writes`` (the same count, murmur2 by record key: :data:`OUTBOUND_TABLE_FEEDS`)."""
REGISTRY_TOPICS: tuple[TopicSpec, ...] = (CONNECTIONS, WORKSPACES)
"""The compacted topics of the workspace registry (:mod:`sfsync.workspaces`)."""

PRODUCT_TOPICS: tuple[TopicSpec, ...] = (MEMBERS, EVENTS, ATTENDANCE, FORUM)
CONTRACT_TOPICS: tuple[TopicSpec, ...] = (*PRODUCT_TOPICS, MEMBERS_INBOUND)
"""The topics the product reads or writes: their schemas are a released contract (``schemas/released``),
evolved BACKWARD-compatibly (``sfsync schemas register/check/snapshot``)."""
ALL_TOPICS: tuple[TopicSpec, ...] = (
    *PRODUCT_TOPICS, WRITES, RESULTS, IDENTITIES, CHANGES, MEMBERS_INBOUND, SALESFORCE_EDITS, ERRORS, DLQ,
    *REGISTRY_TOPICS,
)  # fmt: skip


OUTBOUND_TABLE_FEEDS: tuple[TopicSpec, ...] = (IDENTITIES, SALESFORCE_EDITS)
"""The topics, keyed by write key, whose records the outbound processor keeps in tables keyed the same
way (identities, the record clock): co-partitioned with its :func:`planned_writes` topic."""


def planned_writes(app_id: str, partitions: int) -> TopicSpec:
    """The outbound processor's own topic of planned writes, keyed by write key: its product agents
    write to it, its ordering agent reads it, co-partitioned with :data:`OUTBOUND_TABLE_FEEDS`.
    Named after the app, like the app's table changelogs (and, like every topic sfsync names, after
    the topic prefix: ``<prefix><app_id>-writes-repartition``)."""
    return TopicSpec(f"{app_id}-writes-repartition", "record key (sfsync.keys)", partitions=partitions)


def shared_partitions(counts: Mapping[str, int | None], what: str) -> int:
    """The partition count every topic of ``counts`` (name -> its partition count, None: missing) has.

    Raises:
        ConfigError: a topic is missing, or they do not all have the same count (``what`` says who
            needs them co-partitioned); the message lists each topic with its count.
    """
    missing = sorted(name for name, n in counts.items() if n is None)
    if missing:
        raise ConfigError("Kafka topic", [f"{what}: topic(s) {', '.join(missing)} do not exist"])
    found = {name: int(n) for name, n in counts.items() if n is not None}
    if not found:
        raise ConfigError("Kafka topic", [f"{what}: no topics given"])
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(found.items()))
        raise ConfigError(
            "Kafka topic",
            [
                f"{what} needs these topics co-partitioned (the same partition count, so that a key is on the "
                f"same partition of each), but {listed}"
            ],
        )
    return next(iter(found.values()))


def by_base(base: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if spec.base == base:
            return spec
    raise KeyError(base)
