"""Writing the registry: workspaces and connections (and the tombstones that remove them) to their compacted
topics, through one idempotent producer; each write returns once Kafka stored the record."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from sfsync.kafka.clients import new_producer
from sfsync.kafka.delivery import ANY_TOPIC, Outbox
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import CONNECTIONS, WORKSPACES
from sfsync.workspaces.records import Connection, Workspace

__all__ = ["RegistryWriter"]


class RegistryWriter:
    """Writes :class:`Connection` and :class:`Workspace` records, and tombstones, to ``<prefix>sfsync.connections``
    and ``<prefix>sfsync.workspaces`` (keyed by id). Every method returns once Kafka stored the record.

    The value schemas are registered (``<topic>-value``) when it is made.

    Raises (every write):
        RecordValidationError: a record does not fit its schema.
        DeliveryError / ServiceUnavailableError: Kafka did not store it within the delivery timeout.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        registry: SchemaRegistry,
        *,
        prefix: str = "",
        delivery_timeout_s: float = 30.0,
    ) -> None:
        self.connections_topic = CONNECTIONS.name(prefix)
        self.workspaces_topic = WORKSPACES.name(prefix)
        self._connections = AvroEncoder(registry, self.connections_topic, load_topic_schema(CONNECTIONS.base))
        self._workspaces = AvroEncoder(registry, self.workspaces_topic, load_topic_schema(WORKSPACES.base))
        self._outbox = Outbox(
            new_producer(kafka_config, "sfsync-workspaces", delivery_timeout_s=delivery_timeout_s),
            label=ANY_TOPIC,
            timeout_s=delivery_timeout_s,
            poll_every=1,
        )

    def __repr__(self) -> str:
        return f"RegistryWriter(topics={[self.connections_topic, self.workspaces_topic]!r})"

    def _write(self, topic: str, key: str, value: bytes | None) -> None:
        self._outbox.send(topic, value, key.encode())
        self._outbox.flush()

    def put_connection(self, connection: Connection) -> None:
        """Write ``connection`` (its secrets sealed, as it holds them)."""
        value = self._connections.encode("Connection", connection.to_avro())
        self._write(self.connections_topic, connection.connection_id, value)

    def remove_connection(self, connection_id: str) -> None:
        """Write the tombstone of ``connection_id``."""
        self._write(self.connections_topic, connection_id, None)

    def put_workspace(self, workspace: Workspace) -> None:
        """Write ``workspace``."""
        value = self._workspaces.encode("Workspace", workspace.to_avro())
        self._write(self.workspaces_topic, workspace.workspace_id, value)

    def remove_workspace(self, workspace_id: str) -> None:
        """Write the tombstone of ``workspace_id``."""
        self._write(self.workspaces_topic, workspace_id, None)

    def close(self) -> None:
        """Deliver what is queued (best effort, at most 5 s)."""
        self._outbox.close(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
