"""The outbound processor: ``product.*`` topics -> write plans on ``sfsync.writes`` (a Faust app).

The Faust layer is thin: the work of one record is
:meth:`~sfsync.processors.outbound.processor.Processor.handle`, which needs no Kafka. Records it
parks go to the DLQ with their original bytes and why; transient faults (registry or Kafka down)
stop the worker without committing, so the record replays on restart.

:func:`build_app` wires one agent per product topic plus one on ``sfsync.results``; tables keep
their state in changelog topics (Faust creates those, and its other internal topics; sfsync's own
topics are created up front because auto-creation is off on the broker). :func:`run_processor`
runs it (``sfsync processor``, ``python -m sfsync.processors.outbound.app``).

Delivery: ``sfsync.writes`` is at least once, whatever the guarantee. The writes go out through a
librdkafka producer of their own (:mod:`sfsync.processors.outbound.writes`: queued in C per write, no Faust or
aiokafka work per message), outside Faust's transactions; before every offset commit (timer,
rebalance, stop) the processor waits until Kafka acknowledged every write queued so far
(:mod:`sfsync.processors.faust_runtime.commit`), and a failed delivery commits nothing and stops the worker. An event's
offset is committed only after the agent moved past it, so a worker killed mid-stream plans again
the events after its last commit, and their writes can appear twice on ``sfsync.writes``
(``tests/integration/test_crash_recovery.py`` measures it). That is harmless by design: every
write is idempotent at the sink (upsert by external ID, or match then write; DESIGN §4.2), and the
record clock keeps ties, so a re-planned event plans the same values. The test checks the org ends
with zero duplicates.

Tables: ``record_clock`` and ``identity`` change at once in memory, but their changelogs get each
changed key's value once per commit, sent just before the offsets commit (in the same transaction
under ``exactly_once``) rather than a record per set (:class:`~.commit.CoalescedTable`):
the changelog holds every key's value as of the committed offsets, or newer.

``at_least_once`` is the default: the transactions of ``exactly_once`` buy nothing for the writes
(the sink's idempotence is the guarantee), and cost ~30 % more processor CPU per event and twice the
broker CPU (a transactional producer per partition, commit markers): ``bench/e2e.py`` measured 773
vs 505 events/s through the whole pipeline. Since the writes are flushed before every commit (above),
a restarted processor plans every event whose offset was not committed (with Faust's recovery
patched so that a restart loses no record: :mod:`sfsync.processors.faust_runtime.recovery`; the DLQ
replay and crash tests run under both guarantees). Without transactions the
``record_clock`` changelog can run ahead of the committed offsets after a crash; the replayed
events then meet clock entries of their own (ties: written again) or of later events that replay
too (older fields: dropped, as the later event writes newer ones), so the org ends the same.

Scaling note: the clock and identity tables are partitioned like the topics that feed them, which
is exact for one worker; several workers would need a repartition by record key first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

import faust
from prometheus_client import CollectorRegistry

from sfsync.errors import SkippableRecordError
from sfsync.mapping import MappingFile
from sfsync.ops.dlq import DeadLetterQueue, Stage
from sfsync.processors.faust_runtime.changelogs import ensure_changelogs
from sfsync.processors.faust_runtime.commit import CoalescedTable, install_before_commit
from sfsync.processors.faust_runtime.connection import raw_topic
from sfsync.processors.faust_runtime.factory import new_app, surroundings
from sfsync.processors.faust_runtime.parking import Parked, message_headers, original_record, park_all
from sfsync.processors.faust_runtime.worker import command_main, run_faust_worker
from sfsync.processors.outbound.edits import learn_edit
from sfsync.processors.outbound.metrics import LagProbe, ProcessorMetrics
from sfsync.processors.outbound.processor import Processor, TableIdentity, identity_of_result, send_writes
from sfsync.processors.outbound.settings import ProcessorSettings, load_processor_settings
from sfsync.processors.outbound.writes import WritesProducer
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import DLQ, PRODUCT_TOPICS, RESULTS, SALESFORCE_EDITS, WRITES, TopicSpec

__all__ = ["COMPONENT", "build_app", "run_processor"]

log = logging.getLogger(__name__)

COMPONENT = "processors.OutboundProcessor"
"""The class name the DLQ's context headers give for records parked here."""


# ---------------------------------------------------------------------- the Faust app
def _coalesced_table(app: Any, name: str, partitions: int) -> Any:
    """``app.Table(name, ...)`` as a :class:`~.commit.CoalescedTable` (record key -> value, None: unknown)."""
    table = CoalescedTable(app, name=name, default=None, key_type=str, partitions=partitions, beacon=app.tables.beacon)
    return app.tables.add(table)


def build_app(
    settings: ProcessorSettings,
    *,
    registry: SchemaRegistry | None = None,
    mappings: MappingFile | None = None,
    external_ids: Collection[str] | None = None,
) -> faust.App:
    """The processor as a ``faust.App`` (not started). Creates sfsync's topics that are missing.

    Without ``mappings``, it runs the mapping setting's file (:func:`~sfsync.mapping.load_configured_mappings`).

    Raises:
        ConfigError / MappingError: invalid mapping settings or an invalid mapping file.
        ServiceUnavailableError: Kafka or the registry did not answer.
    """
    return _build(settings, registry=registry, mappings=mappings, external_ids=external_ids).app


class _Built(NamedTuple):
    app: faust.App
    processor: Processor
    dlq: DeadLetterQueue
    writes: WritesProducer
    metrics: ProcessorMetrics
    lag_probe: LagProbe | None


def _build(
    settings: ProcessorSettings,
    *,
    registry: SchemaRegistry | None,
    mappings: MappingFile | None,
    external_ids: Collection[str] | None,
    metrics: ProcessorMetrics | None = None,
) -> _Built:
    """The app and what it holds; ``metrics`` default to a private registry (served by :func:`run_processor`)."""
    if metrics is None:
        metrics = ProcessorMetrics(CollectorRegistry())

    env = surroundings(
        settings,
        component=COMPONENT,
        topics=(*PRODUCT_TOPICS, WRITES, RESULTS, SALESFORCE_EDITS, DLQ),
        registry=registry,
        mappings=mappings,
    )
    prefix, kafka, registry, mappings, dlq = env.prefix, env.kafka, env.registry, env.mappings, env.dlq
    processor = Processor(
        AvroDecoder(registry), env.encoder(WRITES), mappings, external_ids=external_ids, metrics=metrics
    )
    app = new_app(
        settings,
        topic_partitions=WRITES.partitions,
    )
    clock = _coalesced_table(app, "record_clock", WRITES.partitions)
    identity_table = _coalesced_table(app, "identity", RESULTS.partitions)
    identity = TableIdentity(identity_table)
    writes = WritesProducer(kafka, WRITES.name(prefix), delivery_timeout_s=settings.producer_flush_timeout_s)

    async def crash(exc: BaseException) -> None:
        log.error("stopping: %s", exc)
        await app.crash(exc)

    async def before_commit(offsets: Mapping[Any, int]) -> None:
        """Deliver the writes and send the tables' changes before ``offsets`` commit (faust_runtime.commit)."""
        try:
            writes.flush()  # blocks the loop: no event is handled (nor acked) until every write is in
            changes = [(table, table.take_changes()) for table in (clock, identity_table)]
            for table, changed in changes:
                await table.send_changes(changed)
        except Exception as exc:
            log.error("not committing %d partition(s): %s", len(offsets), exc)
            await crash(exc)
            raise

    install_before_commit(app, before_commit)

    # Every agent acks by hand, once a record is handled: a record whose handling failed (the registry or
    # Kafka away) stays unacked, so uncommitted, and is handled again after the restart. Faust's own
    # acking acks the record an agent is on when it leaves its loop, and the commit at stop would then
    # skip that record for good (as in the inbound app).
    def plan_agent(spec: TopicSpec) -> None:
        async def planner(stream: Any) -> None:
            send = writes.send
            manual = stream.noack()
            async for event in manual.events():
                message = event.message
                try:
                    handled = processor.handle(
                        message.value,
                        message.topic,
                        message.partition,
                        message.offset,
                        key=message.key,
                        headers=message_headers(message),
                        identity=identity,
                        clock=clock,
                    )
                    parked = send_writes(send, handled, message)
                    if len(parked) > len(handled.parked):  # writes Kafka refused: parked, not sent
                        refused = len(parked) - len(handled.parked)
                        processor.counts["writes"] -= refused
                        processor.counts["parked"] += refused
                    if parked:
                        await park_all(dlq, parked, metrics.parked)
                except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                    await crash(exc)
                    return
                await manual.ack(event)

        app.agent(raw_topic(app, spec, prefix), name=f"plan_{spec.base.replace('.', '_')}")(planner)

    for spec in PRODUCT_TOPICS:
        plan_agent(spec)

    decoder = AvroDecoder(registry)

    async def identities(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            try:
                try:
                    _, result = decoder.decode(message.value or b"")
                except SkippableRecordError as exc:
                    await park_all(dlq, [Parked(original_record(message), exc, Stage.VALUE_CONVERTER)], metrics.parked)
                else:
                    entry = identity_of_result(result)
                    # an identity already known is not set again: each set is a changelog record
                    if entry is not None and identity_table.get(entry[0]) != entry[1]:
                        metrics.identity_learnt(entry[1][0])
                        identity_table[entry[0]] = entry[1]
            except Exception as exc:  # noqa: BLE001
                await crash(exc)
                return
            await manual.ack(event)

    app.agent(raw_topic(app, RESULTS, prefix), name="identities")(identities)

    async def salesforce_edits(stream: Any) -> None:
        """Salesforce-side edits the product accepted: on the record clock (sfsync.processors.outbound.edits)."""
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            try:
                if not learn_edit(decoder, message.value, clock):
                    reason = SkippableRecordError("not a decodable SalesforceEdit")
                    parked = [Parked(original_record(message), reason, Stage.VALUE_CONVERTER)]
                    await park_all(dlq, parked, metrics.parked)
            except Exception as exc:  # noqa: BLE001
                await crash(exc)
                return
            await manual.ack(event)

    app.agent(raw_topic(app, SALESFORCE_EDITS, prefix), name="salesforce_edits")(salesforce_edits)

    lag_probe = None
    if settings.metrics_port:
        # committed offsets vs end offsets of this worker's source partitions (see sfsync.processors.outbound.metrics)
        lag_probe = LagProbe(kafka, settings.app_id, reset=settings.auto_offset_reset)
        probe = lag_probe
        sources = {spec.name(prefix) for spec in (*PRODUCT_TOPICS, RESULTS, SALESFORCE_EDITS)}

        async def observe_lag() -> None:
            try:
                assigned = [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in sources]
                lags = await asyncio.to_thread(probe.measure, assigned)
            except Exception as exc:  # noqa: BLE001 - metrics never stop the processor
                log.debug("consumer lag not observed: %s", exc)
                return
            if lags is not None:
                metrics.set_lags(lags)

        app.timer(settings.lag_interval_s, name="consumer_lag")(observe_lag)
    ensure_changelogs(app, kafka)  # before the worker's first assignment, which may miss a lazily created one
    return _Built(app, processor, dlq, writes, metrics, lag_probe)


def run_processor(
    settings: ProcessorSettings | None = None, *, max_seconds: float | None = None, loglevel: str = "info"
) -> int:
    """Build the app and run a Faust worker until SIGTERM/SIGINT (or ``max_seconds``); the exit status.

    Startup problems (settings, mappings, Kafka or registry unreachable) raise sfsync errors
    before the worker starts; a worker that crashes returns a non-zero status (logged, not raised).
    Installs signal handlers: run it in the process's main thread. Serves ``/metrics`` on
    ``settings.metrics_port`` (see :mod:`sfsync.processors.outbound.metrics`; a port that is taken is a FatalError).
    """
    settings = settings if settings is not None else load_processor_settings()
    metrics = ProcessorMetrics()  # the global registry: with the process_* and python_* collectors
    server = metrics.serve(settings.metrics_port) if settings.metrics_port else None  # a taken port fails first
    try:
        app, processor, dlq, writes, _, lag_probe = _build(
            settings, registry=None, mappings=None, external_ids=None, metrics=metrics
        )
    except BaseException:
        if server is not None:
            server.stop()
        raise
    closers = [writes.close, dlq.close]
    if lag_probe is not None:
        closers.append(lag_probe.close)
    if server is not None:
        closers.append(server.stop)
    code = run_faust_worker(app, max_seconds=max_seconds, loglevel=loglevel, closers=closers)
    c = processor.counts
    log.info(
        "events %d  writes %d  stale %d  parked %d  unmapped %d",
        c["events"], c["writes"], c["stale"], c["parked"], c["unmapped"],
    )  # fmt: skip
    return code


def main() -> None:
    """``python -m sfsync.processors.outbound.app [max_seconds]``."""
    command_main(run_processor)


if __name__ == "__main__":
    main()
