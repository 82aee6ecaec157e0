"""The inbound processor: ``salesforce.changes`` -> ``product.members.inbound`` (a Faust app).

Thin agents around the pure rules (:mod:`~sfsync.processors.inbound.identity`,
:mod:`~sfsync.processors.inbound.decide`, :mod:`~sfsync.processors.inbound.echo`, over the records of
:mod:`~sfsync.processors.inbound.state`); :class:`InboundProcessor` does the work of one record without Kafka:

- ``sfsync.results`` (what the sink wrote): :func:`~sfsync.processors.inbound.identity.apply_result` folds each
  WriteResult into the ``inbound_written`` table (Salesforce Id -> member, mapping, the values
  sfsync last wrote with their product times, the links sent), and sends ``salesforce:id`` when a
  member's record is first known;
- ``salesforce.changes`` (the poller's): :func:`~sfsync.processors.inbound.decide.decide` applies identity,
  delete policy, unlinked policy, inbound filter, echo suppression and conflict rules against
  that table and ``inbound_seen`` (what earlier changes showed, written by this agent only); the
  records it gives go to ``product.members.inbound`` (keyed by member id; import candidates by
  ``salesforce:<sobject>:<Id>``), and the edits it delivered to ``sfsync.salesforce_edits`` (keyed by
  the record's write key) for the outbound processor's record clock (last write wins both ways).

A record that cannot be decoded, or whose inbound filter fails, is parked in the DLQ with its
original bytes (as :mod:`sfsync.processors.outbound.app` does); transient faults stop the worker uncommitted. With
``exactly_once`` (the default) what a record sends, the table changelog and the consumed offsets
commit in one Kafka transaction. Run it with ``sfsync inbound`` or ``python -m sfsync.processors.inbound.app
[max_seconds]``; its app id (``SFSYNC_INBOUND_APP_ID``) is its own, never the outbound processor's.

Partitioning: results are keyed ``<sobject>:<identity>``, changes ``<sobject>:<Id>``, so the same
record's result and change usually sit on different partition numbers, while both tables are keyed
by Salesforce Id; each table is written by one agent, so its changelog keeps a record's entries in
one partition and in order (a record whose write key changes, e.g. a new email as match key,
may move partition). With one worker (every partition assigned to it) this is exact. Several
workers would need the results re-keyed to ``<sobject>:<Id>`` through a repartition topic with the
changes' partition count first, so that a record's results and changes meet on one worker.

Echo race: the poller may read sfsync's own write before its WriteResult reaches this app. A
change made by a user sfsync writes as (``SFSYNC_INBOUND_WRITER_USER_IDS``, plus users learned from
recognised echoes) that no result covers yet waits in the changes agent (:class:`EchoHold`) until a
result arrives that covers it, or until ``SFSYNC_INBOUND_ECHO_HOLD_S`` after its poll has passed
and the results agent has folded in every result that was in Kafka when the change was looked at
(:class:`ResultsProgress`: after a restart, a backlog's results come first), at most
``SFSYNC_INBOUND_ECHO_HOLD_S`` after it was looked at (:func:`~sfsync.processors.inbound.echo.hold_wait_ms`).
Its offset is not committed while it waits, so a crash loses nothing. Changes behind it wait too
(one stream), at most as long (docs/decisions/0004-inbound-echo-hold.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sfsync.errors import SkippableRecordError
from sfsync.kafka.admin import ensure_topics
from sfsync.mapping import MappingFile, load_configured_mappings
from sfsync.ops.dlq import DeadLetterQueue, OriginalRecord, Stage
from sfsync.processors.faust_runtime.changelogs import ensure_changelogs
from sfsync.processors.faust_runtime.worker import command_main, run_faust_worker
from sfsync.processors.inbound.decide import decide
from sfsync.processors.inbound.echo import echo_writer, hold_until, hold_wait_ms, same_user
from sfsync.processors.inbound.identity import apply_result
from sfsync.processors.inbound.metrics import InboundMetrics
from sfsync.processors.inbound.settings import InboundProcessorSettings, load_inbound_settings
from sfsync.processors.inbound.state import Change, Decision, Output, SeenState, WriteResult, WrittenState
from sfsync.processors.outbound.app import Parked, _brokers, _credentials, _headers, _park_all, _raw_topic
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.time import now_millis
from sfsync.topics import CHANGES, DLQ, MEMBERS_INBOUND, RESULTS, SALESFORCE_EDITS

if TYPE_CHECKING:
    import faust

__all__ = [
    "COMPONENT",
    "EchoHold",
    "InboundHandled",
    "InboundProcessor",
    "ResultsProgress",
    "build_inbound_app",
    "run_inbound",
]

log = logging.getLogger(__name__)

COMPONENT = "processors.InboundProcessor"
"""The class name the DLQ's context headers give for records parked here."""


class InboundHandled(NamedTuple):
    """What one record causes: (key, value) pairs for ``product.members.inbound``, records to park,
    and (key, value) pairs for ``sfsync.salesforce_edits``."""

    sends: list[tuple[bytes, bytes]]
    parked: list[Parked]
    outputs: list[Output]
    edits: list[tuple[bytes, bytes]] = []


@dataclass
class InboundProcessor:
    """Decode one record, apply the inbound rules against the record's state, encode what they give."""

    decoder: Any
    """``decode(bytes) -> (record name, dict)``: :class:`~sfsync.serde.codec.AvroDecoder`."""
    encoder: Any
    """``encode(record name, dict) -> bytes``: :class:`~sfsync.serde.codec.AvroEncoder` for product.members.inbound."""
    mappings: MappingFile
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "results": 0, "changes": 0, "sent": 0, "parked": 0, "echo": 0, "conflict": 0, "held": 0,
        }
    )  # fmt: skip
    metrics: InboundMetrics | None = None
    """Observes each record (what the rules decided, latency, DLQ); None: counts only."""
    writers: set[str] = field(default_factory=set)
    """Salesforce user ids sfsync writes as (configured, then learned from recognised echoes)."""
    hold_ms: int = 0
    """Longest wait of a writer's change for the result that covers it (0: never wait)."""
    edits_encoder: Any = None
    """``encode(record name, dict) -> bytes`` for ``sfsync.salesforce_edits``; None: edits are not sent."""

    def _decode(self, value: bytes | None, original: OriginalRecord) -> tuple[object, list[Parked]]:
        """The decoded record (None: parked), whose shape is its topic's Avro schema."""
        try:
            if value is None:
                raise SkippableRecordError("empty value (a tombstone is not a record here)")
            _, record = self.decoder.decode(value)
        except SkippableRecordError as exc:
            self.counts["parked"] += 1
            return None, [Parked(original, exc, Stage.VALUE_CONVERTER)]
        return record, []

    def _encode(
        self, decision: Decision[WrittenState] | Decision[SeenState], original: OriginalRecord, mapping: str | None
    ) -> InboundHandled:
        sends: list[tuple[bytes, bytes]] = []
        edits: list[tuple[bytes, bytes]] = []
        parked: list[Parked] = []
        for output in decision.outputs:
            try:
                if output.record == "SalesforceEdit":
                    if self.edits_encoder is not None:
                        edits.append((output.key.encode(), self.edits_encoder.encode(output.record, output.value)))
                    continue
                sends.append((output.key.encode(), self.encoder.encode(output.record, output.value)))
            except SkippableRecordError as exc:
                parked.append(Parked(original, exc, Stage.TRANSFORMATION, mapping=mapping))
        for reason, n in decision.dropped.items():
            kind = reason.split(":", 1)[0]
            if kind in self.counts:
                self.counts[kind] += n
        self.counts["sent"] += len(sends)
        self.counts["parked"] += len(parked)
        self._observe_parked(parked)
        return InboundHandled(sends, parked, decision.outputs, edits)

    def _observe_parked(self, parked: list[Parked]) -> None:
        if self.metrics is not None:
            for p in parked:
                self.metrics.parked(p.stage)

    def on_result(
        self,
        value: bytes | None,
        original: OriginalRecord,
        written: MutableMapping[str, WrittenState],
    ) -> InboundHandled:
        """Fold one ``sfsync.results`` record into ``written`` (Salesforce Id -> written state)."""
        self.counts["results"] += 1
        decoded, parked = self._decode(value, original)
        result = cast("WriteResult | None", decoded)
        if result is None:
            self._observe_parked(parked)
            if self.metrics is not None:
                self.metrics.result(None)
            return InboundHandled([], parked, [])
        sf_id = result["salesforce_id"] or ""
        if not sf_id:
            return InboundHandled([], [], [])
        decision = apply_result(written.get(sf_id), result, self.mappings)
        if self.metrics is not None:
            self.metrics.result(decision)
        if decision.state is not None:
            written[sf_id] = decision.state
        return self._encode(decision, original, result["mapping"] or None)

    def on_change(
        self,
        value: bytes | None,
        original: OriginalRecord,
        written: Mapping[str, WrittenState],
        seen: MutableMapping[str, SeenState],
    ) -> InboundHandled:
        """Apply the inbound rules to one ``salesforce.changes`` record (``written`` is only read;
        ``seen``: Salesforce Id -> seen state, updated), without waiting (see :meth:`hold_until`)."""
        change, handled = self.decode_change(value, original)
        return handled if change is None else self.judge(change, original, written, seen)

    def decode_change(self, value: bytes | None, original: OriginalRecord) -> tuple[Change | None, InboundHandled]:
        """The decoded change, or None and what parks the undecodable record."""
        self.counts["changes"] += 1
        decoded, parked = self._decode(value, original)
        change = cast("Change | None", decoded)
        if change is None:
            self._observe_parked(parked)
            if self.metrics is not None:
                self.metrics.decided(None, None)
        return change, InboundHandled([], parked, [])

    def hold_until(self, change: Change, written: Mapping[str, WrittenState]) -> int | None:
        """Until when (epoch ms) the change waits for its WriteResult (:func:`~.echo.hold_until`)."""
        return hold_until(written.get(change["id"] or ""), change, self.writers, self.hold_ms, self.mappings)

    def judge(
        self,
        change: Change,
        original: OriginalRecord,
        written: Mapping[str, WrittenState],
        seen: MutableMapping[str, SeenState],
    ) -> InboundHandled:
        """The rules on one decoded change; a recognised echo teaches which user sfsync writes as."""
        sf_id = change["id"] or ""
        try:
            decision = decide(written.get(sf_id), seen.get(sf_id), change, self.mappings)
        except SkippableRecordError as exc:  # the inbound filter failed on this record
            self.counts["parked"] += 1
            parked = [Parked(original, exc, Stage.TRANSFORMATION, mapping=getattr(exc, "mapping", None))]
            self._observe_parked(parked)
            return InboundHandled([], parked, [])
        if self.metrics is not None:
            self.metrics.decided(change["change_type"] or "", decision, now_millis())
        writer = echo_writer(written.get(sf_id), change, decision)
        if writer is not None and not same_user(writer, self.writers):
            self.writers.add(writer)
            log.info("sfsync writes as Salesforce user %s (learned from an echo)", writer)
        if decision.state is not None:
            seen[sf_id] = decision.state
        return self._encode(decision, original, decision.state["mapping"] if decision.state else None)


class ResultsProgress:
    """How far the results agent got in each ``sfsync.results`` partition, against the partitions'
    end offsets (``consumer``: Faust's, with ``assignment()``, ``highwaters()`` and ``position()``)."""

    def __init__(self, consumer: Callable[[], Any], topic: str, ask_timeout_s: float = 2.0) -> None:
        self._consumer = consumer
        self.topic = topic
        self.ask_timeout_s = ask_timeout_s
        """How long to wait for the consumer's answer (end offsets, positions): a hold never hangs on it
        (a ``position()`` of aiokafka waits, unbounded, for a partition's position to become valid)."""
        self.read: dict[int, int] = {}
        """Partition -> the offset after the last result folded in."""

    def folded(self, partition: int, offset: int) -> None:
        self.read[partition] = max(self.read.get(partition, 0), offset + 1)

    async def end_offsets(self) -> dict[Any, int]:
        """The end offset of each assigned results partition now ({} when they cannot be read)."""
        consumer = self._consumer()
        try:
            mine = [tp for tp in consumer.assignment() if tp.topic == self.topic]
            if not mine:
                return {}
            ends = await asyncio.wait_for(consumer.highwaters(*mine), self.ask_timeout_s)
            return {tp: int(end) for tp, end in ends.items()}
        except TimeoutError:
            log.warning("the consumer gave no results end offsets in %.0fs: not waiting on them", self.ask_timeout_s)
            return {}
        except Exception as exc:  # noqa: BLE001 - a rebalance or a broker hiccup: do not wait on it
            log.debug("results end offsets not read: %s", exc)
            return {}

    async def reached(self, target: Mapping[Any, int]) -> bool:
        """Whether every result before ``target`` was folded in (a partition none of whose results
        was folded in this run counts where the consumer stands; unanswered in time: not waited on)."""
        unread = [tp for tp in target if tp.partition not in self.read]
        if any(self.read[tp.partition] < end for tp, end in target.items() if tp.partition in self.read):
            return False
        if not unread:
            return True
        consumer = self._consumer()
        try:
            positions = await asyncio.wait_for(
                asyncio.gather(*(consumer.position(tp) for tp in unread), return_exceptions=True), self.ask_timeout_s
            )
        except TimeoutError:
            log.warning("the consumer gave no results position in %.0fs: not waiting on it", self.ask_timeout_s)
            return True
        return all(
            isinstance(done, BaseException) or int(done or 0) >= target[tp]
            for tp, done in zip(unread, positions, strict=True)
        )


class EchoHold:
    """Holds a change of sfsync's writer until the WriteResult covering it is folded in, within the
    bounds of :func:`~sfsync.processors.inbound.echo.hold_wait_ms`; woken by every result (:meth:`notify`)."""

    def __init__(
        self,
        processor: InboundProcessor,
        written: Mapping[str, WrittenState],
        results: ResultsProgress | None = None,
        now_ms: Callable[[], int] = now_millis,
    ) -> None:
        self.processor = processor
        self.written = written
        self.results = results
        self._now_ms = now_ms
        self._event = asyncio.Event()

    def notify(self, partition: int | None = None, offset: int | None = None) -> None:
        """A result (at ``partition``/``offset`` of sfsync.results) was folded in: look again."""
        if self.results is not None and partition is not None and offset is not None:
            self.results.folded(partition, offset)
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def hold(self, change: Change) -> bool:
        """Wait until ``change`` may be judged; True when it waited at all."""
        first_seen = self._now_ms()
        hold_ms = self.processor.hold_ms
        target: dict[Any, int] | None = None
        waited = False
        while True:
            now = self._now_ms()
            deadline = self.processor.hold_until(change, self.written)
            caught_up = True
            if deadline is not None and deadline <= now < first_seen + hold_ms and self.results is not None:
                if target is None:  # the results there are now: they are folded in before it is judged
                    target = await self.results.end_offsets()
                caught_up = await self.results.reached(target)
            wait_ms = hold_wait_ms(deadline, now, first_seen, hold_ms, caught_up)
            if wait_ms is None:
                return waited
            waited = True
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(wait_ms, 1000) / 1000)


def _original(message: Any) -> OriginalRecord:
    return OriginalRecord(
        message.topic, message.partition, message.offset, message.key, message.value, tuple(_headers(message))
    )


class _Built(NamedTuple):
    app: faust.App
    processor: InboundProcessor
    dlq: DeadLetterQueue


def build_inbound_app(
    settings: InboundProcessorSettings,
    *,
    registry: SchemaRegistry | None = None,
    mappings: MappingFile | None = None,
) -> faust.App:
    """The inbound processor as a ``faust.App`` (not started). Creates sfsync's topics that are missing.

    Without ``mappings``, it runs the mapping setting's file (:func:`~sfsync.mapping.load_configured_mappings`).

    Raises:
        ConfigError / MappingError: invalid mapping settings or an invalid mapping file.
        ServiceUnavailableError: Kafka or the registry did not answer.
    """
    return _build(settings, registry=registry, mappings=mappings).app


def _build(
    settings: InboundProcessorSettings,
    *,
    registry: SchemaRegistry | None,
    mappings: MappingFile | None,
    metrics: InboundMetrics | None = None,
) -> _Built:
    """The app and what it holds; ``metrics`` default to a private registry (served by :func:`run_inbound`)."""
    import faust
    from prometheus_client import CollectorRegistry

    from sfsync.processors.faust_runtime.recovery import SeekFirstTableManager, install_snapshot_consumer

    if metrics is None:
        metrics = InboundMetrics(CollectorRegistry())

    if mappings is None:
        mappings = load_configured_mappings()
    if registry is None:
        registry = SchemaRegistry.from_settings(settings)
    prefix = settings.topic_prefix
    kafka = settings.kafka_client_config()
    ensure_topics(kafka, (RESULTS, CHANGES, MEMBERS_INBOUND, SALESFORCE_EDITS, DLQ), prefix)
    encoder = AvroEncoder(
        registry,
        MEMBERS_INBOUND.name(prefix),
        load_topic_schema(MEMBERS_INBOUND.base),
        register=settings.register_schemas,
    )
    processor = InboundProcessor(
        AvroDecoder(registry),
        encoder,
        mappings,
        metrics=metrics,
        writers=set(settings.writer_user_ids),
        hold_ms=int(settings.echo_hold_s * 1000),
        edits_encoder=AvroEncoder(
            registry,
            SALESFORCE_EDITS.name(prefix),
            load_topic_schema(SALESFORCE_EDITS.base),
            register=settings.register_schemas,
        ),
    )
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
        consumer_auto_offset_reset=settings.auto_offset_reset,
        topic_partitions=CHANGES.partitions,
        topic_disable_leader=True,
        # On stop, commit what was judged and go: a change held for its result (EchoHold) is
        # neither judged nor committed, and is read again after the restart. Faust's default waits
        # for every change taken from the consumer to be judged, and with the results agent
        # stopped each held one would wait its full hold (docs/decisions/0004-inbound-echo-hold.md).
        stream_wait_empty=False,
        autodiscover=False,
        TableManager=SeekFirstTableManager,  # no record lost when a (re)start recovers the tables
    )
    # One table per side, each written by one agent only: a record's entries then sit in one
    # changelog partition (the partition its source records come from), in the order they were
    # written, and commit in the transaction of the records that caused them (Faust's exactly_once
    # model). The changes agent only reads the results' table.
    written = app.Table("inbound_written", default=None, key_type=str, partitions=RESULTS.partitions)
    seen = app.Table("inbound_seen", default=None, key_type=str, partitions=CHANGES.partitions)
    out_topic = _raw_topic(app, MEMBERS_INBOUND, prefix)
    edits_topic = _raw_topic(app, SALESFORCE_EDITS, prefix)

    echo_hold = EchoHold(processor, written, ResultsProgress(lambda: app.consumer, RESULTS.name(prefix)))

    async def on_result(value: bytes | None, original: OriginalRecord) -> InboundHandled:
        handled = processor.on_result(value, original, written)
        echo_hold.notify(original.partition, original.offset)
        return handled

    async def on_change(value: bytes | None, original: OriginalRecord) -> InboundHandled:
        change, handled = processor.decode_change(value, original)
        if change is None:
            return handled
        started = time.monotonic()
        if await echo_hold.hold(change):
            processor.counts["held"] += 1
            waited, covered = time.monotonic() - started, processor.hold_until(change, written) is None
            metrics.held(waited, covered=covered)
            if waited >= 1.0:
                why = "its result arrived" if covered else "no result covers it"
                log.info("held %s %s for %.1fs: %s", change["sobject"], change["id"], waited, why)
        return processor.judge(change, original, written, seen)

    def agent(handle: Any) -> Any:
        async def run(stream: Any) -> None:
            # Acked by hand once handled: a record whose handling a stop cancels (a change held
            # for its result, a send not yet made) stays unacked, so uncommitted. Faust's own
            # acking would ack it on the way out, and the commit at stop would skip it for good.
            manual = stream.noack()
            async for event in manual.events():
                message = event.message
                try:
                    handled: InboundHandled = await handle(message.value, _original(message))
                    for key, value in handled.sends:
                        await out_topic.send(key=key, value=value)
                    for key, value in handled.edits:
                        await edits_topic.send(key=key, value=value)
                    await _park_all(dlq, handled.parked)
                except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                    log.error("stopping: %s", exc)
                    await app.crash(exc)
                    return
                await manual.ack(event)

        return run

    app.agent(_raw_topic(app, RESULTS, prefix), name="inbound_results")(agent(on_result))
    app.agent(_raw_topic(app, CHANGES, prefix), name="inbound_changes")(agent(on_change))
    install_snapshot_consumer(app)
    ensure_changelogs(app, kafka)
    return _Built(app, processor, dlq)


def run_inbound(
    settings: InboundProcessorSettings | None = None, *, max_seconds: float | None = None, loglevel: str = "info"
) -> int:
    """Build the app and run a Faust worker until SIGTERM/SIGINT (or ``max_seconds``); the exit status.

    Startup problems raise sfsync errors before the worker starts; a crashed worker returns non-zero.
    Installs signal handlers: run it in the process's main thread. Serves ``/metrics`` on
    ``settings.metrics_port`` (:mod:`sfsync.processors.inbound.metrics`).
    """
    settings = settings if settings is not None else load_inbound_settings()
    metrics = InboundMetrics()  # the global registry: with the process_* and python_* collectors
    server = metrics.serve(settings.metrics_port) if settings.metrics_port else None  # a taken port fails first
    try:
        app, processor, dlq = _build(settings, registry=None, mappings=None, metrics=metrics)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    closers = [dlq.close] + ([server.stop] if server is not None else [])
    code = run_faust_worker(app, max_seconds=max_seconds, loglevel=loglevel, closers=closers)
    log.info("inbound: %s", "  ".join(f"{k} {v}" for k, v in processor.counts.items()))
    return code


def main(argv: Iterable[str] | None = None) -> None:
    """``python -m sfsync.processors.inbound.app [max_seconds]``."""
    command_main(run_inbound, argv)


if __name__ == "__main__":
    main()
