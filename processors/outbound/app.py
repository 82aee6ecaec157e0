"""The outbound processor: ``product.*`` topics -> write plans on ``sfsync.writes`` (a Faust app).

The Faust layer is thin: the work of one record is in
:class:`~sfsync.processors.outbound.processor.Processor`, which needs no Kafka. Records it parks go
to the DLQ with their original bytes and why; transient faults (registry or Kafka down) stop the
worker without committing, so the record replays on restart. :func:`run_processor` runs it
(``sfsync processor``, ``python -m sfsync.processors.outbound.app``).

A registry outage is ridden out first (:mod:`sfsync.serde.registry`, ``SCHEMA_REGISTRY_RETRY_TIMEOUT_S``):
at start-up, before the worker joins its group, the schemas are registered with blocking retries;
afterwards the registry is only needed to decode a record whose schema id is new, and the processor
decodes on the event loop, which also runs the consumer's heartbeats (a loop held longer than
``session_timeout_s`` gets the worker evicted from its group). So each agent awaits its decoder's
:meth:`~sfsync.serde.codec.AvroDecoder.prefetch` before the record's work: the fetch runs in a
worker thread, one attempt at a time, with ``asyncio.sleep`` between attempts, so the loop, its
heartbeats and the other agents run on through the outage. The record waits unacked meanwhile (so
uncommitted); a registry still away at the deadline stops the worker as before.

Two steps, partitioned for what each needs, so that any number of workers (one consumer group, the
app id) plans exactly what one would:

1. one agent per product topic plans each event (:meth:`~.processor.Processor.plan_record`: no
   state) with its workspace's mapping and sends its writes, keyed by record key
   (:mod:`sfsync.keys`: ``<workspace_id>|<sobject>:<identity>``), to the app's own repartition topic
   (:func:`sfsync.topics.planned_writes`, ``<prefix><app_id>-writes-repartition``), packed per partition
   (:mod:`sfsync.processors.outbound.packs`: one record carries many writes, so the ordering agent pays
   Faust's per-message cost once a pack; decision 0011). The writes of one
   Salesforce record come from several product topics and keys (a Campaign from its event's records
   and from every registration to it), so they only meet after this step.
2. the ``order_writes`` agent reads that topic: each write of each pack, in order, against its record's
   clock and identity (:meth:`~.processor.Processor.order_write`), what is left goes to ``sfsync.writes``. The tables
   are keyed by record key and fed only by topics keyed by record key: the repartition topic,
   ``sfsync.identities`` (``identity``) and ``sfsync.salesforce_edits`` (``record_clock``). Every
   producer of those partitions like the Java client (murmur2: sfsync's librdkafka producers and
   Faust's), and they have one partition count, so a record key is on the same partition number
   of each, and Faust assigns that partition of every one of them (and of the changelogs) to one
   worker: the one that orders that record's writes holds its whole clock and identity.
   :func:`_build` refuses to start when their partition counts differ (a ``ConfigError`` naming each).

Tables: ``record_clock`` and ``identity`` change at once in memory, but their changelogs get each
changed key's value once per commit, sent just before the offsets commit (in the same transaction
under ``exactly_once``) rather than a record per set (:class:`~sfsync.processors.faust_runtime.commit.CoalescedTable`):
the changelog holds every key's value as of the committed offsets, or newer.

Delivery: the planned and the ordered writes go out through librdkafka producers of their own
(:mod:`sfsync.processors.outbound.writes`: queued in C per write, no Faust or aiokafka work per
message), outside Faust's transactions; before every offset commit (timer, rebalance, stop) the
processor waits until Kafka acknowledged every write queued so far, planned and ordered
(:mod:`sfsync.processors.faust_runtime.commit`), and a failed delivery commits nothing and stops the
worker. An offset is committed only after the agent moved past its record, so a worker killed
mid-stream plans (or orders) again what followed its last commit, and those writes can appear twice
on ``sfsync.writes`` (``tests/integration/test_crash_recovery.py`` measures it). That is harmless by
design: every write is idempotent at the sink (upsert by external ID, or match then write; DESIGN
§4.2), and the record clock keeps ties, so a write planned again is ordered the same way. The
test checks the org ends with zero duplicates.

``at_least_once`` is the default: the transactions of ``exactly_once`` buy nothing for the writes
(the sink's idempotence is the guarantee), and cost ~30 % more processor CPU per event and twice the
broker CPU (a transactional producer per partition, commit markers): ``bench/e2e.py`` measured 773
vs 505 events/s through the whole pipeline. Since the writes are flushed before every commit (above),
a restarted processor handles every record whose offset was not committed (with Faust's recovery
patched so that a restart loses no record: :mod:`sfsync.processors.faust_runtime.recovery`; the DLQ
replay and crash tests run under both guarantees). Without transactions the
``record_clock`` changelog can run ahead of the committed offsets after a crash; the replayed
writes then meet clock entries of their own (ties: written again) or of later writes that replay
too (older fields: dropped, as the later write carries newer ones), so the org ends the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any, NamedTuple

import faust
from prometheus_client import CollectorRegistry

from sfsync.errors import SkippableRecordError
from sfsync.kafka.admin import copartitioned, ensure_topics
from sfsync.keys import person_identity
from sfsync.mapping import MappingFile, MappingLibrary, load_mapping_settings
from sfsync.ops.dlq import DeadLetterQueue, OriginalRecord, Stage
from sfsync.processors.faust_runtime.changelogs import changelog_specs, ensure_changelogs
from sfsync.processors.faust_runtime.commit import CoalescedTable, install_before_commit
from sfsync.processors.faust_runtime.connection import raw_topic
from sfsync.processors.faust_runtime.factory import Surroundings, new_app, surroundings
from sfsync.processors.faust_runtime.parking import Parked, message_headers, original_record, park_all
from sfsync.processors.faust_runtime.worker import command_main, run_faust_worker
from sfsync.processors.outbound.edits import learn_edit
from sfsync.processors.outbound.metrics import LagProbe, ProcessorMetrics
from sfsync.processors.outbound.packs import WritePacks, is_pack, unpack
from sfsync.processors.outbound.processor import Processor, TableIdentity, send_writes
from sfsync.processors.outbound.settings import ProcessorSettings, load_processor_settings
from sfsync.processors.outbound.writes import WritesProducer, pack_budget
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import (
    DLQ,
    IDENTITIES,
    OUTBOUND_TABLE_FEEDS,
    PRODUCT_TOPICS,
    REGISTRY_TOPICS,
    SALESFORCE_EDITS,
    WRITES,
    TopicSpec,
    planned_writes,
)
from sfsync.workspaces.directory import Directory
from sfsync.workspaces.routing import WorkspaceMappings
from sfsync.workspaces.settings import WorkspacesSettings, load_workspaces_settings

__all__ = ["COMPONENT", "build_app", "run_processor"]

log = logging.getLogger(__name__)

COMPONENT = "processors.OutboundProcessor"
"""The class name the DLQ's context headers give for records parked here."""

WHO = "the outbound processor"
"""Who needs its topics co-partitioned, in the error that says they are not."""


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
    """The processor as a ``faust.App`` (not started). Creates sfsync's topics that are missing, its
    repartition topic and its table changelogs (with the partition count of the topics that feed its
    tables).

    Without ``mappings``, it runs the mapping setting's file (:func:`~sfsync.mapping.load_configured_mappings`).
    Either way the file is validated first (:func:`~sfsync.mapping.require_valid`, the rules that need
    no org): a CEL expression that does not compile, a sixth constant, an unknown product field...
    refuse the start, all listed, instead of parking every event.

    With the workspace registry on (``SFSYNC_WORKSPACES_ENABLED``), each event is planned with its
    workspace's mapping (see :func:`_workspace_mappings`); a workspace mapping is checked when first
    used, and an invalid one parks that workspace's events instead of refusing the start. The registry
    is then followed by a daemon thread for the life of the process (:func:`run_processor` stops it).

    Raises:
        ConfigError / MappingError: invalid mapping or workspace settings, or an invalid mapping file (every
            problem); topics that must be co-partitioned have different partition counts (each named with
            its count).
        ServiceUnavailableError: Kafka or the registry did not answer; the workspace registry was not read
            in time.
    """
    return _build(settings, registry=registry, mappings=mappings, external_ids=external_ids).app


class _Built(NamedTuple):
    app: faust.App
    processor: Processor
    dlq: DeadLetterQueue
    planned: WritesProducer
    writes: WritesProducer
    metrics: ProcessorMetrics
    lag_probe: LagProbe | None
    directory: Directory | None


def _workspace_mappings(
    workspaces: WorkspacesSettings, library: MappingLibrary, env: Surroundings
) -> tuple[WorkspaceMappings, Directory]:
    """``mappings_for`` over the workspace registry, read to its end (a directory that follows it from then on).

    A workspace's mapping is its ``mapping`` (a file of ``SFSYNC_MAPPING_LIBRARY``; none: the configured
    one) with its ``variables`` over ``SFSYNC_MAPPING_VARS``, as ``sfsync mappings validate --set``
    sets them; a workspace the registry does not know runs the configured mapping (the ``env``
    connection serves it), unless ``SFSYNC_WORKSPACES_REQUIRED``.
    """
    # no keys: planning opens no connection's secrets
    directory = Directory.open(env.kafka, env.registry, prefix=env.prefix, timeout_s=workspaces.load_timeout_s)
    log.info(
        "planning each workspace's events with its mapping (%d workspace(s) in the registry%s)",
        len(directory.workspaces()),
        "; unknown workspaces parked" if workspaces.required else "",
    )
    return WorkspaceMappings(directory, library, required=workspaces.required), directory


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
    workspaces = load_workspaces_settings()
    library = MappingLibrary(load_mapping_settings()) if workspaces.enabled else None

    env = surroundings(
        settings,
        component=COMPONENT,
        topics=(*PRODUCT_TOPICS, WRITES, IDENTITIES, SALESFORCE_EDITS, DLQ, *(REGISTRY_TOPICS if library else ())),
        registry=registry,
        mappings=mappings,
    )
    prefix, kafka, registry, mappings, dlq = env.prefix, env.kafka, env.registry, env.mappings, env.dlq
    feeds = [spec.name(prefix) for spec in OUTBOUND_TABLE_FEEDS]
    partitions = copartitioned(kafka, feeds, WHO)  # the count the tables and the repartition topic take
    planned_spec = planned_writes(settings.app_id, partitions)
    planned_topic = planned_spec.name(prefix)
    ensure_topics(kafka, [planned_spec], prefix)
    processor = Processor(
        AvroDecoder(registry, uuids_as_text=True),
        env.encoder(WRITES),
        mappings,
        external_ids=external_ids,
        metrics=metrics,
        plans_decoder=AvroDecoder(registry, logical_types=False),
    )
    app = new_app(settings, topic_partitions=partitions)
    clock = _coalesced_table(app, "record_clock", partitions)
    identity_table = _coalesced_table(app, "identity", partitions)
    identity = TableIdentity(identity_table)
    timeout_s = settings.producer_flush_timeout_s
    # a write too large for sfsync.writes is refused when planned (its event parked), not when ordered
    tuning = settings.writes_tuning()
    planned = WritesProducer(
        kafka,
        planned_topic,
        delivery_timeout_s=timeout_s,
        limit_topics=[planned_topic, WRITES.name(prefix)],
        tuning=tuning,
    )
    writes = WritesProducer(kafka, WRITES.name(prefix), delivery_timeout_s=timeout_s, tuning=tuning)
    packs = WritePacks(
        partitions,
        planned.send_pack,
        planned.send,
        max_writes=settings.writes_pack_max_writes,
        max_bytes=pack_budget(planned.max_message_bytes, settings.writes_batch_bytes),
    )

    async def crash(exc: BaseException) -> None:
        log.error("stopping: %s", exc)
        await app.crash(exc)

    async def before_commit(offsets: Mapping[Any, int]) -> None:
        """Deliver the writes and send the tables' changes before ``offsets`` commit (faust_runtime.commit)."""
        try:
            packs.seal()
            planned.flush()  # blocks the loop: no record is handled (nor acked) until every write is in
            writes.flush()
            changes = [(table, table.take_changes()) for table in (clock, identity_table)]
            for table, changed in changes:
                await table.send_changes(changed)
        except Exception as exc:
            log.error("not committing %d partition(s): %s", len(offsets), exc)
            await crash(exc)
            raise

    install_before_commit(app, before_commit, settings.consumer_fetch())

    async def seal_packs() -> None:
        """The planned writes waiting in packs go out (every ``writes_pack_linger_ms``)."""
        try:
            packs.seal()
        except Exception as exc:  # noqa: BLE001 - a write not queued: stop, uncommitted
            await crash(exc)

    app.timer(settings.writes_pack_linger_ms / 1000, name="seal_packs")(seal_packs)

    # Every agent acks by hand, once a record is handled: a record whose handling failed (the registry or
    # Kafka away) stays unacked, so uncommitted, and is handled again after the restart. Faust's own
    # acking acks the record an agent is on when it leaves its loop, and the commit at stop would then
    # skip that record for good (as in the inbound app).
    def plan_agent(spec: TopicSpec) -> None:
        async def planner(stream: Any) -> None:
            send = packs.add
            manual = stream.noack()
            async for event in manual.events():
                message = event.message
                try:
                    fetch = processor.decoder.prefetch(message.value)  # off the loop through an outage
                    if fetch is not None:
                        await fetch
                    handled = processor.plan_record(
                        message.value,
                        message.topic,
                        message.partition,
                        message.offset,
                        key=message.key,
                        headers=message_headers(message),
                    )
                    parked = send_writes(send, handled, partial(original_record, message))
                    processor.counts["parked"] += len(parked) - len(handled.parked)  # writes Kafka refused
                    if parked:
                        await park_all(dlq, parked, metrics.parked)
                except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                    await crash(exc)
                    return
                await manual.ack(event)

        app.agent(raw_topic(app, spec, prefix), name=f"plan_{spec.base.replace('.', '_')}")(planner)

    for spec in PRODUCT_TOPICS:
        plan_agent(spec)

    async def order_writes(stream: Any) -> None:
        send = writes.send
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            try:
                headers = message_headers(message)
                try:
                    packed = is_pack(headers)
                    planned_writes = unpack(message.value) if packed else [(message.key, message.value)]
                except SkippableRecordError as exc:
                    await park_all(dlq, [Parked(original_record(message), exc, Stage.VALUE_CONVERTER)], metrics.parked)
                    planned_writes = []
                at = (message.topic, message.partition, message.offset)
                for key, value in planned_writes:
                    fetch = processor.plans_decoder.prefetch(value)
                    if fetch is not None:
                        await fetch
                    own = () if packed else headers  # a packed write is parked (and replayed) as one write alone
                    handled = processor.order_write(value, *at, key=key, headers=own, identity=identity, clock=clock)
                    parked = send_writes(send, handled, partial(OriginalRecord, *at, key, value, tuple(own)))
                    if len(parked) > len(handled.parked):  # Kafka refused the write: parked, not sent
                        processor.counts["writes"] -= 1
                        processor.counts["parked"] += 1
                    if parked:
                        await park_all(dlq, parked, metrics.parked)
            except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                await crash(exc)
                return
            await manual.ack(event)

    planned_source = app.topic(
        planned_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    app.agent(planned_source, name="order_writes")(order_writes)

    decoder = AvroDecoder(registry)

    async def identities(stream: Any) -> None:
        """Person records' identities the sink published (``sfsync.identities``): on the ``identity`` table."""
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            try:
                fetch = decoder.prefetch(message.value)
                if fetch is not None:
                    await fetch
                try:
                    _, learnt = decoder.decode(message.value or b"")
                except SkippableRecordError as exc:
                    await park_all(dlq, [Parked(original_record(message), exc, Stage.VALUE_CONVERTER)], metrics.parked)
                else:
                    entry = person_identity(learnt)
                    # an identity already known is not set again: each set is a changelog record
                    if entry is not None and identity_table.get(entry[0]) != list(entry[1]):
                        metrics.identity_learnt(entry[1][0])
                        identity_table[entry[0]] = list(entry[1])
            except Exception as exc:  # noqa: BLE001
                await crash(exc)
                return
            await manual.ack(event)

    app.agent(raw_topic(app, IDENTITIES, prefix), name="identities")(identities)

    async def salesforce_edits(stream: Any) -> None:
        """Salesforce-side edits the product accepted: on the record clock (sfsync.processors.outbound.edits)."""
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            try:
                fetch = decoder.prefetch(message.value)
                if fetch is not None:
                    await fetch
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
        sources = {spec.name(prefix) for spec in (*PRODUCT_TOPICS, IDENTITIES, SALESFORCE_EDITS)} | {planned_topic}

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
    changelogs = [spec.name() for spec in changelog_specs(app)]
    copartitioned(kafka, [*feeds, planned_topic, *changelogs], WHO)  # e.g. a changelog left with another count
    directory = None
    if library is not None:  # last: nothing after it can fail and leave it open
        library.configured = mappings
        processor.mappings_for, directory = _workspace_mappings(workspaces, library, env)
    return _Built(app, processor, dlq, planned, writes, metrics, lag_probe, directory)


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
        app, processor, dlq, planned, writes, _, lag_probe, directory = _build(
            settings, registry=None, mappings=None, external_ids=None, metrics=metrics
        )
    except BaseException:
        if server is not None:
            server.stop()
        raise
    closers = [planned.close, writes.close, dlq.close]
    if directory is not None:
        closers.append(directory.close)
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
