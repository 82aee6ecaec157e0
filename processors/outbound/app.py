"""The outbound processor: ``product.*`` topics -> write plans on ``sfsync.writes`` (a Faust app).

The Faust layer is thin; the work is :meth:`Processor.handle`, which needs no Kafka:

1. decode the record's bytes (Confluent wire format, :class:`~sfsync.serde.codec.AvroDecoder`);
2. :func:`sfsync.processors.outbound.plan.plan` the writes it causes, with what ``sfsync.results`` taught about
   identities (``identity`` table: record key -> ``[sobject, salesforce_id]``);
3. :func:`sfsync.processors.outbound.plan.drop_stale` each write against its record's clock (``record_clock``
   table: record key -> field -> ``updated_at``), so a late event never overwrites newer values;
4. encode what is left for ``sfsync.writes`` (keyed by the write's record key).

A record that cannot be decoded, a mapping that cannot evaluate the event (a plan's rejects), a
write that does not fit its schema and a write Kafka refuses (larger than ``sfsync.writes``
accepts: stage ``KAFKA_PRODUCE``, code ``MSG_SIZE_TOO_LARGE``) are parked in the DLQ with the
original bytes and why; the other writes of the event still go out. Transient faults (registry or
Kafka down) stop the worker without committing, so the record replays on restart.

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
a restarted processor plans every event whose offset was not committed. Restarts once lost records
or stopped committing (2 of 3 events ``sfsync dlq replay`` re-published handled; a crash test that
planned 2,297 of 2,500): two races of Faust's table recovery, closed by :mod:`sfsync.processors.faust_runtime.recovery`
(the DLQ replay and crash tests run under both guarantees). Without transactions the
``record_clock`` changelog can run ahead of the committed offsets after a crash; the replayed
events then meet clock entries of their own (ties: written again) or of later events that replay
too (older fields: dropped, as the later event writes newer ones), so the org ends the same.

Scaling note: the clock and identity tables are partitioned like the topics that feed them, which
is exact for one worker; several workers would need a repartition by record key first.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from sfsync.errors import SkippableRecordError
from sfsync.kafka.admin import ensure_topics
from sfsync.kafka.errors import RecordRejectedError
from sfsync.mapping import Mapping as MappingRule
from sfsync.mapping import MappingFile, load_configured_mappings
from sfsync.ops.dlq import DeadLetterQueue, OriginalRecord, Stage
from sfsync.processors.faust_runtime.changelogs import ensure_changelogs
from sfsync.processors.faust_runtime.worker import command_main, run_faust_worker
from sfsync.processors.outbound.edits import learn_edit
from sfsync.processors.outbound.metrics import LagProbe, ProcessorMetrics
from sfsync.processors.outbound.plan import NO_IDENTITY, PERSON_OBJECTS, Identity, IdentityView, drop_stale, plan
from sfsync.processors.outbound.settings import ProcessorSettings, load_processor_settings
from sfsync.processors.outbound.writes import WritesProducer
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import DLQ, PRODUCT_TOPICS, RESULTS, SALESFORCE_EDITS, WRITES, TopicSpec

if TYPE_CHECKING:
    import faust

__all__ = [
    "COMPONENT",
    "Handled",
    "Parked",
    "Processor",
    "TableIdentity",
    "build_app",
    "identity_of_result",
    "per_event_mappings",
    "run_processor",
    "send_writes",
]

log = logging.getLogger(__name__)

COMPONENT = "processors.OutboundProcessor"
"""The class name the DLQ's context headers give for records parked here."""


# ---------------------------------------------------------------------- the glue (no Kafka)
@dataclass(frozen=True)
class _Source:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Parked:
    """A record to park in the DLQ, and why."""

    original: OriginalRecord
    reason: BaseException
    stage: Stage
    mapping: str | None = None
    field: str | None = None


class Handled(NamedTuple):
    """What one product record causes: the writes to send (in order) and the records to park."""

    writes: list[tuple[bytes, bytes]]
    """(key, value) for ``sfsync.writes``: the record key and the Avro Write."""
    parked: list[Parked]
    planned: list[dict[str, Any]]
    """The writes as dicts, after :func:`drop_stale` (what ``writes`` encodes)."""


class TableIdentity:
    """An :class:`~sfsync.processors.outbound.plan.IdentityView` over a table of key -> ``[sobject, salesforce_id]``."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> Identity | None:
        value = self.table.get(key)
        if not value:
            return None
        return Identity(str(value[0]), str(value[1]))


def per_event_mappings(mappings: MappingFile) -> frozenset[str]:
    """Mappings whose records only their own event writes: every identity is the product event's ``event_id``.

    Such a record (e.g. the activity record of each event) needs no clock: no other event can
    write it, and a replay plans the same values. Keeping one would only grow the ``record_clock``
    table (and its changelog) by a key per event. A mapping is left out when another mapping
    matches the same object and field from something else (it could write the same record).
    """

    def sources(mapping: MappingRule) -> list[tuple[str, str | None]]:
        return [(key.field, key.from_) for keys in mapping.match_alternatives for key in keys]

    enabled = [m for m in mappings.mappings if m.enabled]
    out = set()
    for mapping in enabled:
        keys = sources(mapping)
        if not keys or any(len(alt) != 1 for alt in mapping.match_alternatives):
            continue
        if any(source != "event_id" for _, source in keys):
            continue
        fields = {f for f, _ in keys}
        shared = any(
            other.target == mapping.target and any(f in fields and src != "event_id" for f, src in sources(other))
            for other in enabled
            if other is not mapping
        )
        if not shared:
            out.add(mapping.name)
    return frozenset(out)


def identity_of_result(result: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The identity table entry a WriteResult gives: (record key, [sobject, salesforce_id]).

    Only for person records (a key of a Contact or Lead mapping): planning reads identities only to
    order a person's ``search_objects``, and keeping the others (an activity record per event) would
    grow the table and its changelog without end.
    """
    key, sobject, sf_id = result.get("key"), result.get("sobject"), result.get("salesforce_id")
    if not key or not sobject or not sf_id or str(key).split(":", 1)[0] not in PERSON_OBJECTS:
        return None
    return str(key), [str(sobject), str(sf_id)]


@dataclass
class Processor:
    """Decode, plan, order and encode one product record (see the module doc)."""

    decoder: Any
    """``decode(bytes) -> (record name, dict)``: :class:`~sfsync.serde.codec.AvroDecoder`."""
    encoder: Any
    """``encode_checked("Write", dict) -> bytes``: :class:`~sfsync.serde.codec.AvroEncoder` for sfsync.writes."""
    mappings: MappingFile
    external_ids: Collection[str] | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"events": 0, "writes": 0, "stale": 0, "parked": 0})
    metrics: ProcessorMetrics | None = None
    """Observes each record handled (type, writes sent, stale writes, time); None: counts only."""
    unclocked: frozenset[str] = field(init=False)
    """:func:`per_event_mappings`: their writes skip the clock."""

    def __post_init__(self) -> None:
        self.unclocked = per_event_mappings(self.mappings)

    def handle(
        self,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        *,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
        identity: IdentityView = NO_IDENTITY,
        clock: MutableMapping[str, Any] | None = None,
    ) -> Handled:
        """Plan the writes of one record read at ``topic``/``partition``/``offset``.

        ``clock`` (record key -> field -> ``updated_at``) is read and updated for every write
        that goes out, except those of :func:`per_event_mappings`; None keeps no clock (no write
        is dropped as stale).
        Raises only what is not the record's fault (e.g. the registry being unreachable).
        """
        started = time.perf_counter()
        original = OriginalRecord(topic, partition, offset, key, value, tuple(headers))
        self.counts["events"] += 1
        try:
            if value is None:
                raise SkippableRecordError("empty value (a tombstone is not a product event)")
            event_type, event = self.decoder.decode(value)
        except SkippableRecordError as exc:
            self.counts["parked"] += 1
            self._observe("unknown", [], [], started)
            return Handled([], [Parked(original, exc, Stage.VALUE_CONVERTER)], [])
        parked: list[Parked] = []
        try:
            planned = plan(
                event_type, event, _Source(topic, partition, offset), self.mappings, identity,
                external_ids=self.external_ids,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a bug in a rule parks the record, never blocks the stream
            self.counts["parked"] += 1
            self._observe(event_type, [], [], started)
            return Handled([], [Parked(original, exc, Stage.TRANSFORMATION)], [])
        for reject in planned.rejects:
            parked.append(Parked(original, reject, Stage.TRANSFORMATION, mapping=reject.mapping))
        writes: list[tuple[bytes, bytes]] = []
        kept: list[dict[str, Any]] = []
        stale: list[dict[str, Any]] = []
        for write in planned.writes:
            record_key = str(write["key"])
            clocked = clock if write.get("mapping") not in self.unclocked else None
            before = (clocked.get(record_key) if clocked is not None else None) or {}
            fresh, after = drop_stale(write, before)
            if fresh is None:
                self.counts["stale"] += 1
                stale.append(write)
                continue
            try:
                data = self.encoder.encode_checked("Write", fresh)
            except SkippableRecordError as exc:
                parked.append(Parked(original, exc, Stage.TRANSFORMATION, mapping=str(write.get("mapping") or "")))
                continue
            if clocked is not None and after != before:
                clocked[record_key] = after
            writes.append((record_key.encode(), data))
            kept.append(fresh)
        self.counts["writes"] += len(writes)
        self.counts["parked"] += len(parked)
        self._observe(event_type, kept, stale, started)
        return Handled(writes, parked, kept)

    def _observe(
        self, event_type: str, sent: list[dict[str, Any]], stale: list[dict[str, Any]], started: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.handled(
                event_type,
                [str(w.get("sobject") or "") for w in sent],
                [str(w.get("sobject") or "") for w in stale],
                time.perf_counter() - started,
            )


# ---------------------------------------------------------------------- the Faust app
def _brokers(settings: ProcessorSettings) -> list[str]:
    return [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")]


def _credentials(settings: ProcessorSettings) -> Any:
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl.create_default_context())
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=password,
        mechanism=settings.sasl_mechanism or "PLAIN",
        ssl_context=ssl.create_default_context() if protocol == "SASL_SSL" else None,
    )


def _raw_topic(app: Any, spec: TopicSpec, prefix: str) -> Any:
    return app.topic(
        spec.name(prefix),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
    )


def _coalesced_table(app: Any, name: str, partitions: int) -> Any:
    """``app.Table(name, ...)`` as a :class:`~.commit.CoalescedTable` (record key -> value, None: unknown)."""
    from sfsync.processors.faust_runtime.commit import CoalescedTable

    table = CoalescedTable(app, name=name, default=None, key_type=str, partitions=partitions, beacon=app.tables.beacon)
    return app.tables.add(table)


def _headers(message: Any) -> list[tuple[str, bytes]]:
    headers = message.headers or ()
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), bytes(v or b"")) for k, v in items]


def _original(message: Any) -> OriginalRecord:
    """The record a Faust ``message`` carries, as the DLQ parks it."""
    return OriginalRecord(
        message.topic, message.partition, message.offset, message.key, message.value, tuple(_headers(message))
    )


def send_writes(send: Callable[[bytes, bytes], None], handled: Handled, message: Any) -> list[Parked]:
    """Send ``handled``'s writes in order; the parked records of ``handled`` plus one per write Kafka
    refused (:class:`~sfsync.kafka.errors.RecordRejectedError` from ``send``): ``message`` (the Faust
    message the writes were planned from) at stage ``KAFKA_PRODUCE``, with the write's mapping.
    Anything else ``send`` raises propagates (not the record's fault)."""
    parked = handled.parked
    for (key, value), write in zip(handled.writes, handled.planned, strict=True):
        try:
            send(key, value)
        except RecordRejectedError as exc:
            mapping = str(write.get("mapping") or "") or None
            parked = [*parked, Parked(_original(message), exc, Stage.KAFKA_PRODUCE, mapping=mapping)]
    return parked


async def _park_all(dlq: DeadLetterQueue, parked: Sequence[Parked], metrics: ProcessorMetrics | None = None) -> None:
    for p in parked:
        log.warning(
            "parked %s[%d]@%d (%s%s): %s",
            p.original.topic,
            p.original.partition,
            p.original.offset,
            p.stage,
            f", mapping {p.mapping}" if p.mapping else "",
            p.reason,
        )
        await asyncio.to_thread(dlq.park, p.original, p.reason, stage=p.stage, mapping=p.mapping or None, field=p.field)
        if metrics is not None:
            metrics.parked(p.stage)


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
    import faust
    from prometheus_client import CollectorRegistry

    from sfsync.processors.faust_runtime.commit import install_before_commit
    from sfsync.processors.faust_runtime.recovery import SeekFirstTableManager

    if metrics is None:
        metrics = ProcessorMetrics(CollectorRegistry())

    if mappings is None:
        mappings = load_configured_mappings()
    if registry is None:
        registry = SchemaRegistry.from_settings(settings)
    prefix = settings.topic_prefix
    kafka = settings.kafka_client_config()
    ensure_topics(kafka, (*PRODUCT_TOPICS, WRITES, RESULTS, SALESFORCE_EDITS, DLQ), prefix)
    encoder = AvroEncoder(
        registry, WRITES.name(prefix), load_topic_schema(WRITES.base), register=settings.register_schemas
    )
    processor = Processor(AvroDecoder(registry), encoder, mappings, external_ids=external_ids, metrics=metrics)
    dlq = DeadLetterQueue(
        kafka, prefix=prefix, component=COMPONENT, delivery_timeout_s=settings.producer_flush_timeout_s
    )
    app = faust.App(
        settings.app_id,
        broker=_brokers(settings),
        broker_credentials=_credentials(settings),
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=settings.broker_commit_every,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_size,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        topic_partitions=WRITES.partitions,
        topic_disable_leader=True,
        autodiscover=False,
        TableManager=SeekFirstTableManager,  # no record lost when a (re)start recovers the tables
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

    def plan_agent(spec: TopicSpec) -> None:
        async def planner(stream: Any) -> None:
            send = writes.send
            async for event in stream.events():
                message = event.message
                try:
                    handled = processor.handle(
                        message.value,
                        message.topic,
                        message.partition,
                        message.offset,
                        key=message.key,
                        headers=_headers(message),
                        identity=identity,
                        clock=clock,
                    )
                    parked = send_writes(send, handled, message)
                    if len(parked) > len(handled.parked):  # writes Kafka refused: parked, not sent
                        refused = len(parked) - len(handled.parked)
                        processor.counts["writes"] -= refused
                        processor.counts["parked"] += refused
                    if parked:
                        await _park_all(dlq, parked, metrics)
                except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                    await crash(exc)
                    return

        app.agent(_raw_topic(app, spec, prefix), name=f"plan_{spec.base.replace('.', '_')}")(planner)

    for spec in PRODUCT_TOPICS:
        plan_agent(spec)

    decoder = AvroDecoder(registry)

    async def identities(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            try:
                try:
                    _, result = decoder.decode(message.value or b"")
                except SkippableRecordError as exc:
                    await _park_all(dlq, [Parked(_original(message), exc, Stage.VALUE_CONVERTER)], metrics)
                    continue
                entry = identity_of_result(result)
                # an identity already known is not set again: each set is a changelog record
                if entry is not None and identity_table.get(entry[0]) != entry[1]:
                    metrics.identity_learnt(entry[1][0])
                    identity_table[entry[0]] = entry[1]
            except Exception as exc:  # noqa: BLE001
                await crash(exc)
                return

    app.agent(_raw_topic(app, RESULTS, prefix), name="identities")(identities)

    async def salesforce_edits(stream: Any) -> None:
        """Salesforce-side edits the product accepted: on the record clock (sfsync.processors.outbound.edits)."""
        async for event in stream.events():
            message = event.message
            try:
                if not learn_edit(decoder, message.value, clock):
                    reason = SkippableRecordError("not a decodable SalesforceEdit")
                    await _park_all(dlq, [Parked(_original(message), reason, Stage.VALUE_CONVERTER)], metrics)
            except Exception as exc:  # noqa: BLE001
                await crash(exc)
                return

    app.agent(_raw_topic(app, SALESFORCE_EDITS, prefix), name="salesforce_edits")(salesforce_edits)

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
    log.info("events %d  writes %d  stale %d  parked %d", c["events"], c["writes"], c["stale"], c["parked"])
    return code


def main() -> None:
    """``python -m sfsync.processors.outbound.app [max_seconds]``."""
    command_main(run_processor)


if __name__ == "__main__":
    main()
