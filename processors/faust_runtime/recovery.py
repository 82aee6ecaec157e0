"""Patches of faust-streaming 0.15.3's end of table recovery, so that a restart loses no record.

**Seek before resume** (upstream: faust-streaming/faust#596; #217 fixed the same order in the
no-table path only). After a rebalance (a start is one) Faust keeps the input partitions paused
while it reads the tables' changelogs; its ``Recovery.on_recovery_completed`` then *resumes* the
input partitions and only afterwards seeks them back to their committed offsets. While the seek
awaits the broker the fetcher reads the resumed partitions; those records are cleared from the
stream queues unhandled, and the records the seek makes the broker send again are dropped as
already read. Their offsets are never acked, so nothing later on their partitions is committed.
:class:`SeekFirstRecovery` seeks while the input partitions are still paused, then resumes them;
:class:`SeekFirstTableManager` is the table manager that uses it (``faust.App(TableManager=...)``).
A partition with no committed offset yet is sought to its beginning (under
``auto_offset_reset="earliest"``), since the fetcher may already have read past its first records.

**A snapshot of the active partitions** (no upstream issue yet). Faust hands its *live* set of
active partitions to the aiokafka thread. At the end of recovery that set is briefly empty, and
aiokafka reads an empty set as "every partition": it hands over, and moves its position past,
records of the paused input partitions, which Faust then drops as not active.
:class:`SnapshotConsumer` gives aiokafka a copy of the set as it was when the fetch started, and
fetches nothing while it is empty; :func:`install_snapshot_consumer` gives an app a transport with it.

Why these exist and how they were found: docs/decisions/0005-faust-patches.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import ensure_aiokafka_TPset
from faust.types import TP

from sfsync.kafka.clients import FetchTuning
from sfsync.processors.faust_runtime.fetching import FetchTunedConsumer, FetchTunedTransport

__all__ = [
    "SeekFirstRecovery",
    "SeekFirstTableManager",
    "SnapshotConsumer",
    "SnapshotTransport",
    "install_snapshot_consumer",
]


class SeekFirstRecovery(Recovery):
    """Faust's ``Recovery`` that seeks the input partitions to their committed offsets before resuming them."""

    async def _seek_then_resume(self) -> None:
        consumer: Any = self.app.consumer
        assignment = consumer.assignment()
        streams = {tp for tp in assignment if not self._is_changelog_tp(tp)}
        if assignment:
            self.log.info("Seek stream partitions to committed offsets (before resuming them).")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        # A partition with no committed offset is not moved by that seek, and the fetcher may have
        # read past its first records during recovery: under "earliest" it starts from its beginning.
        never_committed = {tp for tp in streams if not consumer._committed_offset.get(tp)}
        if never_committed and self.app.conf.consumer_auto_offset_reset == "earliest":
            self.log.info("Seek %d never-committed stream partition(s) to their beginning.", len(never_committed))
            await self._wait(
                consumer._thread.seek_to_beginning(*ensure_aiokafka_TPset(never_committed)),
                timeout=self.app.conf.broker_request_timeout,
            )
            for tp in never_committed:
                consumer._read_offset[tp] = None
        consumer.resume_partitions(streams)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Faust 0.15.3's, with the seek moved before the input partitions resume (see the module doc)."""
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callback_coros = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callback_coros:
            await asyncio.wait(callback_coros)
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
            )
            return
        await self._seek_then_resume()
        await self._resume_flow(standbys_ready=not self.app.assignor.assigned_standbys())

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """Faust 0.15.3's (the path without tables), with the same order."""
        await self.app.on_rebalance_complete.send()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._seek_then_resume()
        await self._resume_flow(standbys_ready=True)

    async def _resume_flow(self, *, standbys_ready: bool) -> None:
        app: Any = self.app
        self.completed.set()
        app.flow_control.resume()
        app.consumer.resume_flow()
        await app._fetcher.maybe_start()  # make sure the fetcher runs
        self.tables.on_actives_ready()
        if standbys_ready:
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


class SeekFirstTableManager(TableManager):
    """Faust's ``TableManager`` whose recovery is :class:`SeekFirstRecovery`."""

    @property
    def recovery(self) -> Recovery:
        """Recovery service used by this table manager."""
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class SnapshotConsumer(FetchTunedConsumer):
    """Faust's aiokafka consumer, fetching for a snapshot of its active partitions (see the module doc)."""

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        if active_partitions is None:  # a client-only app: every partition
            return await super()._getmany(active_partitions, timeout)
        snapshot = set(active_partitions)
        if not snapshot:  # aiokafka would read an empty set as "all of them"
            await asyncio.sleep(min(timeout, 0.1))
            return {}
        return await super()._getmany(snapshot, timeout)


class SnapshotTransport(FetchTunedTransport):
    """Faust's aiokafka transport with :class:`SnapshotConsumer` (fetching as its ``fetch`` says)."""

    Consumer = SnapshotConsumer


def install_snapshot_consumer(app: Any, fetch: FetchTuning | None = None) -> None:
    """Give ``app`` (a ``faust.App`` whose consumer does not exist yet) a :class:`SnapshotConsumer` that
    fetches as ``fetch`` says (None: as Faust does)."""
    transport = SnapshotTransport(app.conf.broker_consumer, app)
    transport.fetch = fetch
    app.transport = transport
