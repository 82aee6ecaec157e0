"""The directory: what the registry's two compacted topics hold, read from their beginning, then followed.

- :class:`DirectoryState` (pure) holds the last record of each key of ``sfsync.connections`` and
  ``sfsync.workspaces`` (a tombstone removes its key) and answers the questions.
- :class:`Directory` fills one from Kafka in a thread of its own (a consumer of :mod:`sfsync.kafka.reading`
  that never joins a group), and answers ``workspace(id)``, ``connection(id)``, ``workspaces()`` and
  ``salesforce_settings(connection_id)`` (the connection's secrets opened with the sealing keys).

A record that does not decode, or whose id is not its key, is passed over with a WARNING naming where it
sits; the directory goes on. A failure of Kafka or of the schema registry is logged and the reading starts
again at the first record not applied yet (the state it holds stays as it was meanwhile); before the
directory loaded, a refusal (a topic missing, credentials refused) ends it instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from sfsync.errors import ConfigError, FatalError, ServiceUnavailableError, SfsyncError, SkippableRecordError
from sfsync.kafka.clients import Message
from sfsync.kafka.reading import read_topics
from sfsync.redaction import redact
from sfsync.salesforce.settings import SalesforceSettings
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import CONNECTIONS, WORKSPACES
from sfsync.workspaces.logins import salesforce_settings
from sfsync.workspaces.records import Connection, ConnectionNotFoundError, Workspace
from sfsync.workspaces.sealing import ConnectionKeys

__all__ = ["Directory", "DirectoryState"]

log = logging.getLogger(__name__)


class DirectoryState:
    """The registry as its topics hold it: the last connection and workspace of each key. Pure."""

    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}
        self._workspaces: dict[str, Workspace] = {}

    def put_connection(self, key: str, connection: Connection | None) -> None:
        """``connection`` is ``key``'s now (None: a tombstone, the key is removed)."""
        if connection is None:
            self._connections.pop(key, None)
        else:
            self._connections[key] = connection

    def put_workspace(self, key: str, workspace: Workspace | None) -> None:
        """``workspace`` is ``key``'s now (None: a tombstone, the key is removed)."""
        if workspace is None:
            self._workspaces.pop(key, None)
        else:
            self._workspaces[key] = workspace

    def connection(self, connection_id: str) -> Connection | None:
        return self._connections.get(connection_id)

    def workspace(self, workspace_id: str) -> Workspace | None:
        return self._workspaces.get(workspace_id)

    def connections(self) -> list[Connection]:
        """Every connection, by id."""
        return [self._connections[k] for k in sorted(self._connections)]

    def workspaces(self) -> list[Workspace]:
        """Every workspace, by id."""
        return [self._workspaces[k] for k in sorted(self._workspaces)]

    def workspaces_of(self, connection_id: str) -> list[Workspace]:
        """The workspaces whose org ``connection_id`` reaches, by id."""
        return [w for w in self.workspaces() if w.connection_id == connection_id]


class Directory:
    """The registry's topics read into a :class:`DirectoryState` and followed, in a thread of its own.

    ``start()`` it, then ``wait_loaded()`` (or use :meth:`open`); ``close()`` stops it. Its answers are
    the state as read so far; :meth:`wait_for` waits for a condition on it (a change written elsewhere).
    ``keys`` open connections' secrets (:meth:`salesforce_settings`); None: nothing secret is opened.
    ``read`` is :func:`sfsync.kafka.reading.read_topics` (tests give a fake with its arguments).
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        registry: SchemaRegistry,
        *,
        prefix: str = "",
        keys: ConnectionKeys | None = None,
        poll_s: float = 0.5,
        retry_wait_s: float = 2.0,
        read: Callable[..., Iterator[Message]] = read_topics,
    ) -> None:
        self._kafka = dict(kafka_config)
        self._read = read
        self._decoder = AvroDecoder(registry)
        self.keys = keys
        self.connections_topic = CONNECTIONS.name(prefix)
        self.workspaces_topic = WORKSPACES.name(prefix)
        self._poll_s = poll_s
        self._retry_wait_s = retry_wait_s
        self._state = DirectoryState()
        self._changed = threading.Condition()
        self._loaded = False
        self._failure: SfsyncError | None = None
        self._last_error: SfsyncError | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Directory(topics={[self.connections_topic, self.workspaces_topic]!r}, keys={self.keys!r})"

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        kafka_config: Mapping[str, Any],
        registry: SchemaRegistry,
        *,
        prefix: str = "",
        keys: ConnectionKeys | None = None,
        timeout_s: float = 30.0,
        poll_s: float = 0.5,
    ) -> Directory:
        """A started directory that has read both topics to their end (see :meth:`wait_loaded`)."""
        directory = cls(kafka_config, registry, prefix=prefix, keys=keys, poll_s=poll_s).start()
        try:
            directory.wait_loaded(timeout_s)
        except BaseException:
            directory.close()
            raise
        return directory

    def start(self) -> Self:
        """Start reading (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, name="sfsync-workspace-directory", daemon=True)
            self._thread.start()
        return self

    def wait_loaded(self, timeout_s: float) -> None:
        """Return once both topics were read to their end as they were at the start.

        Raises:
            FatalError: a topic does not exist (``sfsync topics ensure`` creates it), or Kafka refused the read.
            ServiceUnavailableError: not loaded within ``timeout_s`` (the last error met is named).
        """
        with self._changed:
            self._changed.wait_for(lambda: self._loaded or self._failure is not None, timeout_s)
            if self._failure is not None:
                raise self._failure
            if not self._loaded:
                why = f": {redact(str(self._last_error))}" if self._last_error is not None else ""
                raise ServiceUnavailableError(
                    f"the workspace directory did not read {self.connections_topic} and {self.workspaces_topic} "
                    f"to their end within {timeout_s:g}s{why}"
                )

    @property
    def loaded(self) -> bool:
        """Whether both topics were read to their end once."""
        return self._loaded

    def wait_for(self, condition: Callable[[DirectoryState], bool], timeout_s: float) -> bool:
        """Wait until ``condition(state)`` holds (checked at each change); whether it did within ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self._state), timeout_s)

    def close(self) -> None:
        """Stop reading (waits for the thread, at most a few polls)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._poll_s * 4 + 5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- answers --------------------------------------------------------------------------------

    def connection(self, connection_id: str) -> Connection | None:
        with self._changed:
            return self._state.connection(connection_id)

    def workspace(self, workspace_id: str) -> Workspace | None:
        with self._changed:
            return self._state.workspace(workspace_id)

    def connections(self) -> list[Connection]:
        with self._changed:
            return self._state.connections()

    def workspaces(self) -> list[Workspace]:
        with self._changed:
            return self._state.workspaces()

    def workspaces_of(self, connection_id: str) -> list[Workspace]:
        with self._changed:
            return self._state.workspaces_of(connection_id)

    def salesforce_settings(self, connection_id: str, **options: Any) -> SalesforceSettings:
        """The settings that log in to ``connection_id``'s org, its secrets opened (``options``: other
        SalesforceSettings fields, e.g. timeouts).

        Raises:
            ConnectionNotFoundError: no such connection.
            ConfigError: the directory has no keys (``SFSYNC_CONNECTION_KEYS``), or the connection cannot
                make valid settings.
            SealError: its secrets do not open with the keys.
        """
        connection = self.connection(connection_id)
        if connection is None:
            raise ConnectionNotFoundError(connection_id)
        if self.keys is None:
            raise ConfigError("workspaces", ["SFSYNC_CONNECTION_KEYS is not set: connections' secrets stay sealed"])
        return salesforce_settings(connection, self.keys.open(connection_id, connection.secrets), **options)

    # -- reading --------------------------------------------------------------------------------

    def _mark_loaded(self) -> None:
        with self._changed:
            if not self._loaded:
                self._loaded = True
                self._changed.notify_all()

    def _follow(self) -> None:
        topics = [self.connections_topic, self.workspaces_topic]
        starts: dict[tuple[str, int], int] = {}
        while not self._stopping.is_set():
            try:
                for message in self._read(
                    self._kafka,
                    topics,
                    follow=True,
                    poll_s=self._poll_s,
                    stop=self._stopping.is_set,
                    starts=starts or None,
                    on_end=self._mark_loaded,
                ):
                    self._apply(message)
                    starts[(str(message.topic()), message.partition() or 0)] = (message.offset() or 0) + 1
            except SfsyncError as exc:
                final = isinstance(exc, FatalError) and not isinstance(exc, ServiceUnavailableError)
                with self._changed:
                    self._last_error = exc
                    if final and not self._loaded:
                        self._failure = exc
                        self._changed.notify_all()
                        return
                log.warning("workspace directory: %s; reading again in %gs", redact(str(exc)), self._retry_wait_s)
                self._stopping.wait(self._retry_wait_s)
            except Exception as exc:  # a bug: told to whoever waits, then raised with its traceback
                with self._changed:
                    self._failure = FatalError(f"the workspace directory stopped: {type(exc).__name__}")
                    self._changed.notify_all()
                raise

    def _apply(self, message: Message) -> None:
        topic, where = str(message.topic()), f"{message.topic()}[{message.partition()}]@{message.offset()}"
        raw_key = message.key()
        key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
        if not key:
            log.warning("workspace directory: passed over %s: a record without a key", where)
            return
        value = message.value()
        connection: Connection | None = None
        workspace: Workspace | None = None
        try:
            if value is not None and topic == self.connections_topic:
                connection = Connection.from_avro(self._decoded(value, "Connection", topic))
            elif value is not None:
                workspace = Workspace.from_avro(self._decoded(value, "Workspace", topic))
        except (SkippableRecordError, KeyError, ValueError, TypeError) as exc:  # the record; not the registry down
            log.warning("workspace directory: passed over %s: %s", where, redact(str(exc))[:300])
            return
        record_id = connection.connection_id if connection else workspace.workspace_id if workspace else key
        if record_id != key:
            log.warning("workspace directory: passed over %s: the record's id is not its key", where)
            return
        with self._changed:
            if topic == self.connections_topic:
                self._state.put_connection(key, connection)
            else:
                self._state.put_workspace(key, workspace)
            self._changed.notify_all()

    def _decoded(self, value: bytes, expected: str, topic: str) -> dict[str, Any]:
        name, decoded = self._decoder.decode(value)
        if name != expected:
            raise ValueError(f"a {name} record does not belong on {topic}")
        return decoded
