"""Create a Faust app's table changelog topics before its worker starts.

A Faust worker creates them itself, lazily, but its first partition assignment can run on metadata
that does not list a topic created a moment earlier; the table then has no changelog partitions
and the app stops with ``PartitionsMismatch`` at its first record. :func:`ensure_changelogs`
creates them first: compacted, with the table's partition count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sfsync.kafka.admin import ensure_topics
from sfsync.topics import TopicSpec

__all__ = ["changelog_specs", "ensure_changelogs"]


def changelog_specs(app: Any) -> list[TopicSpec]:
    """One compacted topic per table of ``app`` (a ``faust.App``), named as Faust names it."""
    return [
        TopicSpec(
            table.changelog_topic.get_topic_name(),
            f"{name} table key",
            partitions=int(table.partitions),
            config={"cleanup.policy": "compact"},
        )
        for name, table in app.tables.items()
    ]


def ensure_changelogs(app: Any, kafka_config: Mapping[str, Any]) -> list[str]:
    """Create the changelog topics of ``app``'s tables that do not exist yet; the names created."""
    return ensure_topics(kafka_config, changelog_specs(app))
