"""sfsync's topics (DESIGN.md §3): names, keys, partitions and configuration (created by
:func:`sfsync.kafka.admin.ensure_topics`).

The records a product topic may carry are not listed here: they are the union in
``schemas/<topic>.avsc``, registered under ``<topic>-value`` (TopicNameStrategy), so the registry
itself refuses a record type that does not belong on a topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
