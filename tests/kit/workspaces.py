"""The workspace registry in tests: fixed sealing keys, connection and workspace builders, an in-memory store,
and the registry's topics in memory for a directory to read (:class:`FakeRegistryTopics`).

Imported from its own module (``tests.kit.workspaces``): it loads ``sfsync.workspaces``, and so the
Salesforce client.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from sfsync.errors import SfsyncError
from sfsync.workspaces import (
    Connection,
    ConnectionFlow,
    ConnectionKeys,
    DirectoryState,
    Workspace,
    WorkspaceState,
    parse_keys,
)
from tests.kit.kafka import FakeMessage
from tests.kit.salesforce import TOKEN_CLIENT_SECRET

__all__ = [
    "T0",
    "FakeRegistryTopics",
    "MemoryStore",
    "connection",
    "key_item",
    "keys",
    "workspace",
]

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def key_item(key_id: str, fill: int | None = None) -> str:
    """A ``SFSYNC_CONNECTION_KEYS`` item ``key_id:base64(32 bytes)``, the bytes all ``fill`` (default: from the
    id), so that a test can make two keys of one id that differ."""
    byte = fill if fill is not None else sum(key_id.encode()) % 256
    return f"{key_id}:{base64.b64encode(bytes([byte]) * 32).decode()}"


def keys(*key_ids: str) -> ConnectionKeys:
    """The keys ``key_ids`` (each :func:`key_item`), the first sealing."""
    return parse_keys(",".join(key_item(k) for k in key_ids))


def connection(
    connection_id: str = "acme-org",
    secrets: Mapping[str, str] | None = None,
    *,
    sealed_with: ConnectionKeys | None = None,
    flow: ConnectionFlow = ConnectionFlow.REFRESH_TOKEN,
    updated_at: dt.datetime = T0,
    login_url: str = "https://login.salesforce.com",
    api_version: str = "62.0",
    client_id: str = "cid",
    instance_url: str | None = None,
    username: str | None = None,
    org_id: str | None = None,
) -> Connection:
    """A connection of ``flow`` whose ``secrets`` (default: a refresh token ``r1`` and the token endpoint's
    client secret) are sealed with ``sealed_with`` (default: key ``k1``)."""
    chosen = sealed_with or keys("k1")
    values = secrets if secrets is not None else {"refresh_token": "r1", "client_secret": TOKEN_CLIENT_SECRET}
    return Connection(
        connection_id,
        login_url=login_url,
        api_version=api_version,
        flow=flow,
        client_id=client_id,
        secrets=chosen.seal(connection_id, {k: SecretStr(v) for k, v in values.items()}),
        updated_at=updated_at,
        instance_url=instance_url,
        username=username,
        org_id=org_id,
    )


def workspace(
    workspace_id: str = "ws-1",
    connection_id: str = "acme-org",
    state: WorkspaceState = WorkspaceState.ACTIVE,
    **fields: object,
) -> Workspace:
    """A workspace on ``connection_id`` at :data:`T0`; ``fields`` set the others (mapping, variables, reason)."""
    return Workspace(workspace_id, connection_id, state, T0, **fields)  # type: ignore[arg-type]


class MemoryStore:
    """A registry writer over a :class:`DirectoryState`: what it is given is what a directory then reads
    (as Kafka would carry it), and :attr:`written` lists every connection written. ``fail`` is raised by
    the next writes instead (then cleared when ``fail_once``)."""

    def __init__(self, state: DirectoryState | None = None) -> None:
        self.state = state if state is not None else DirectoryState()
        self.written: list[Connection] = []
        self.fail: SfsyncError | None = None
        self.fail_once = True

    def put_connection(self, connection: Connection) -> None:
        if self.fail is not None:
            error = self.fail
            if self.fail_once:
                self.fail = None
            raise error
        self.written.append(connection)
        self.state.put_connection(connection.connection_id, connection)

    def connection(self, connection_id: str) -> Connection | None:
        return self.state.connection(connection_id)


class FakeRegistryTopics:
    """The registry's two topics in memory, read as :func:`sfsync.kafka.reading.read_topics` reads them: give it
    to a :class:`~sfsync.workspaces.Directory` as ``read``.

    Records are encoded with the topic schemas through ``registry`` (the kit's ``FakeRegistry``), each on
    partition 0 at the next offset. A read yields the records from its ``starts``, calls ``on_end`` once it
    has yielded those there were, then (``follow``) yields new ones as they are added, until ``stop()``.
    ``fail_next_read`` is raised by the next read when it begins; ``interrupt`` by a read that reached the end,
    once, before it yields anything more.
    :attr:`reads` lists each read's ``starts``.
    """

    def __init__(self, registry: Any, prefix: str = "") -> None:
        from sfsync.serde.codec import AvroEncoder
        from sfsync.serde.schema import load_topic_schema
        from sfsync.topics import CONNECTIONS, WORKSPACES

        self.connections_topic = CONNECTIONS.name(prefix)
        self.workspaces_topic = WORKSPACES.name(prefix)
        self._connections = AvroEncoder(registry, self.connections_topic, load_topic_schema(CONNECTIONS.base))
        self._workspaces = AvroEncoder(registry, self.workspaces_topic, load_topic_schema(WORKSPACES.base))
        self.records: list[FakeMessage] = []
        self.reads: list[dict[tuple[str, int], int] | None] = []
        self.fail_next_read: SfsyncError | None = None
        self.interrupt: SfsyncError | None = None
        self._added = threading.Condition()

    def add(self, topic: str, key: str, value: bytes | None) -> FakeMessage:
        with self._added:
            offset = sum(1 for m in self.records if m.topic() == topic)
            message = FakeMessage(topic=topic, partition=0, offset=offset, key=key.encode(), value=value)
            self.records.append(message)
            self._added.notify_all()
        return message

    def put_connection(self, connection: Connection) -> None:
        value = self._connections.encode("Connection", connection.to_avro())
        self.add(self.connections_topic, connection.connection_id, value)

    def remove_connection(self, connection_id: str) -> None:
        self.add(self.connections_topic, connection_id, None)

    def put_workspace(self, workspace: Workspace) -> None:
        self.add(
            self.workspaces_topic, workspace.workspace_id, self._workspaces.encode("Workspace", workspace.to_avro())
        )

    def remove_workspace(self, workspace_id: str) -> None:
        self.add(self.workspaces_topic, workspace_id, None)

    def __call__(
        self,
        kafka_config: Mapping[str, Any],
        topics: Sequence[str],
        *,
        follow: bool,
        poll_s: float,
        stop: Callable[[], bool],
        starts: Mapping[tuple[str, int], int] | None,
        on_end: Callable[[], None],
    ) -> Iterator[FakeMessage]:
        self.reads.append(dict(starts) if starts is not None else None)
        if self.fail_next_read is not None:
            error, self.fail_next_read = self.fail_next_read, None
            raise error
        seen = 0
        ended = False
        while not stop():
            if ended and self.interrupt is not None:
                error, self.interrupt = self.interrupt, None
                raise error
            with self._added:
                new, seen = self.records[seen:], len(self.records)
            for message in new:
                if message.topic() in topics and message.offset() >= (starts or {}).get((message.topic(), 0), 0):
                    yield message
            if not ended:
                ended = True
                on_end()
            if not follow:
                return
            with self._added:
                if len(self.records) == seen and self.interrupt is None:
                    self._added.wait(poll_s)
