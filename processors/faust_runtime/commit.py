"""A hook into faust-streaming 0.15.3's commit: what the outbound processor settles before offsets commit.

Faust commits the offsets of the events its agents moved past, every ``commit_interval_s``, on
rebalance and on stop. The processor keeps two things off its per-event path and settles them at
that moment instead, before the offsets (and, under ``exactly_once``, the transaction) commit:

- the writes, queued in librdkafka (:class:`sfsync.processors.outbound.writes.WritesProducer`): flushed, and a
  failed delivery stops the commit;
- the ``record_clock`` changelog (:class:`CoalescedTable`): a set changes the table at once but
  only marks its key; the hook sends each marked key's value once, so the changelog gets the
  last value per key per commit instead of a record per set, in the same transaction as the offsets.

:class:`HookedTransport` is Faust's aiokafka transport whose consumer awaits
``before_commit(offsets)`` after choosing the offsets to commit and before committing them (the
only Faust step between the two, where Faust itself publishes "attached" messages: the pinned
faust-streaming 0.15.3's ``Consumer._handle_attached``). Every commit path (timer,
``broker_commit_every``, rebalance, stop) goes through it. An exception there commits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from faust.tables.table import Table
from faust.types import TP

from sfsync.kafka.clients import FetchTuning
from sfsync.processors.faust_runtime.recovery import SnapshotConsumer, SnapshotTransport

__all__ = ["BeforeCommit", "CoalescedTable", "HookedTransport", "install_before_commit"]

log = logging.getLogger(__name__)

BeforeCommit = Callable[[Mapping[TP, int]], Awaitable[None]]
"""``before_commit(offsets)``: called with the offsets about to be committed; raising stops the commit."""


class _HookedConsumer(SnapshotConsumer):
    """Faust's aiokafka consumer, awaiting its transport's ``before_commit`` before each commit."""

    async def _handle_attached(self, commit_offsets: Mapping[TP, int]) -> None:
        hook: BeforeCommit | None = getattr(self.transport, "before_commit", None)
        if hook is not None:
            await hook(commit_offsets)
        await super()._handle_attached(commit_offsets)


class HookedTransport(SnapshotTransport):
    """Faust's aiokafka transport with :class:`_HookedConsumer`; set ``before_commit`` on it."""

    Consumer = _HookedConsumer
    before_commit: BeforeCommit | None = None


def install_before_commit(app: Any, before_commit: BeforeCommit, fetch: FetchTuning | None = None) -> None:
    """Give ``app`` (a ``faust.App`` whose consumer does not exist yet) a consumer that awaits ``before_commit``
    and fetches as ``fetch`` says (None: as Faust does)."""
    transport = HookedTransport(app.conf.broker_consumer, app)
    transport.before_commit = before_commit
    transport.fetch = fetch
    app.transport = transport


class CoalescedTable(Table[Any, Any]):
    """A Faust table whose changelog gets each changed key once per commit (see the module doc).

    Reads and writes change the table's data at once, as a ``faust.Table``'s do. A set (or
    delete) remembers the key and the partition of the event that made it (the changelog partition
    Faust would have used); :meth:`take_changes` hands those over with their values at that moment
    and :meth:`send_changes` sends them, tombstones for deleted keys.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._changed: dict[Any, int] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key`` (``default`` when missing), straight from the store."""
        return self.data.get(key, default)

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.partition_for_key(key)
        self._changed[key] = partition if partition is not None else -1

    def on_key_del(self, key: Any) -> None:
        partition = self.partition_for_key(key)
        self._changed[key] = partition if partition is not None else -1

    @property
    def pending_changes(self) -> int:
        """Keys changed since the last :meth:`take_changes`."""
        return len(self._changed)

    def take_changes(self) -> list[tuple[Any, int, Any]]:
        """(key, partition, value or None when deleted) of each key changed since the last call."""
        changed, self._changed = self._changed, {}
        data = self.data
        missing = object()
        out = []
        for key, partition in changed.items():
            value = data.get(key, missing)
            out.append((key, partition, None if value is missing else value))
        return out

    async def send_changes(self, changes: list[tuple[Any, int, Any]]) -> None:
        """Send :meth:`take_changes`'s entries to the changelog (queued in Faust's producer: awaited, not delivered)."""
        topic = self.changelog_topic
        for key, partition, value in changes:
            deleted = value is None
            await topic.send(
                key=key,
                value=value,
                partition=None if partition < 0 else partition,
                key_serializer=self.key_serializer,
                value_serializer="raw" if deleted else self.value_serializer,
                callback=self._on_changelog_sent,
            )

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        # Changes of partitions this worker no longer has are another worker's now: never send them.
        kept = {tp.partition for tp in assigned}
        gone = {tp.partition for tp in revoked} - kept
        if gone:
            self._changed = {k: p for k, p in self._changed.items() if p not in gone}
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
