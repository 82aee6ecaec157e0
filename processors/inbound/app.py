"""The inbound processor: ``salesforce.changes`` -> ``product.members.inbound`` (a Faust app).

Thin agents around the pure rules (:mod:`~sfsync.processors.inbound.identity`,
:mod:`~sfsync.processors.inbound.decide`, :mod:`~sfsync.processors.inbound.echo`, over the records of
:mod:`~sfsync.processors.inbound.state`);
:class:`~sfsync.processors.inbound.processor.InboundProcessor` does the work of one record without Kafka:

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
original bytes (as :mod:`sfsync.processors.outbound.app` does); transient faults stop the worker uncommitted.
A registry outage is ridden out first, as there: the writer schema of a record whose schema id is new
is fetched off the event loop (:meth:`~sfsync.serde.codec.AvroDecoder.prefetch`, until
``SCHEMA_REGISTRY_RETRY_TIMEOUT_S``), so the consumer's heartbeats go on meanwhile. With
``exactly_once`` (the default) what a record sends, the table changelog and the consumed offsets
commit in one Kafka transaction. Run it with ``sfsync inbound`` or ``python -m sfsync.processors.inbound.app
[max_seconds]``; its app id (``SFSYNC_INBOUND_APP_ID``) is its own, never the outbound processor's.

Partitioning: results are keyed ``<sobject>:<identity>``, changes ``<sobject>:<Id>``, so the same
record's result and change usually sit on different partition numbers, while both tables are keyed
by Salesforce Id; each table is written by one agent, so its changelog keeps a record's entries in
one partition and in order (a record whose write key changes, e.g. a new email as match key,
may move partition). With one worker (every partition assigned to it) this is exact. Several
workers would need the results re-keyed to ``<sobject>:<Id>`` through a repartition topic with the
changes' partition count first, so that a record's results and changes meet on one worker (as the
outbound processor repartitions its planned writes: docs/decisions/0007-n-workers-co-partitioned.md).
Run one replica.

Echo race: the poller may read sfsync's own write before its WriteResult reaches this app. A
change made by a user sfsync writes as (``SFSYNC_INBOUND_WRITER_USER_IDS``, plus users learned from
recognised echoes) that no result covers yet is kept aside in the hold
(:class:`~sfsync.processors.inbound.hold.EchoHold`), with the later changes of its record behind it,
while the changes agent goes on with other records; a task judges it once a result covers it, or
once ``SFSYNC_INBOUND_ECHO_HOLD_S`` after its poll has passed and the results agent has folded in
every result that was in Kafka when the change was looked at (after a restart, a backlog's results
come first; at most ``SFSYNC_INBOUND_CATCH_UP_HOLD_S``), at most ``SFSYNC_INBOUND_ECHO_HOLD_S`` after it
was looked at for a result that does not come
(:func:`~sfsync.processors.inbound.echo.hold_wait_ms`). Changes are acked in offset order per
partition (:class:`~sfsync.processors.faust_runtime.aside.InOrderAcks`), so a held change's offset is
not committed while it waits and a crash loses nothing. Past ``SFSYNC_INBOUND_HOLD_MAX`` held changes
the app stops fetching changes until half are judged (docs/decisions/0004-inbound-echo-hold.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import faust
from prometheus_client import CollectorRegistry

from sfsync.mapping import MappingFile
from sfsync.ops.dlq import DeadLetterQueue, OriginalRecord
from sfsync.processors.faust_runtime.aside import InOrderAcks, acting_for
from sfsync.processors.faust_runtime.changelogs import ensure_changelogs
from sfsync.processors.faust_runtime.connection import raw_topic
from sfsync.processors.faust_runtime.factory import new_app, surroundings
from sfsync.processors.faust_runtime.parking import original_record, park_all
from sfsync.processors.faust_runtime.recovery import install_snapshot_consumer
from sfsync.processors.faust_runtime.worker import command_main, run_faust_worker
from sfsync.processors.inbound.hold import EchoHold, HeldChange, ResultsProgress
from sfsync.processors.inbound.metrics import InboundMetrics
from sfsync.processors.inbound.processor import InboundHandled, InboundProcessor
from sfsync.processors.inbound.settings import InboundProcessorSettings, load_inbound_settings
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import CHANGES, DLQ, MEMBERS_INBOUND, RESULTS, SALESFORCE_EDITS

__all__ = ["COMPONENT", "build_inbound_app", "run_inbound"]

log = logging.getLogger(__name__)

COMPONENT = "processors.InboundProcessor"
"""The class name the DLQ's context headers give for records parked here."""


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
    Either way the file is validated first (:func:`~sfsync.mapping.require_valid`, the rules that need
    no org): a CEL expression that does not compile, a sixth constant, an unknown product field...
    refuse the start, all listed, instead of parking every event.

    Raises:
        ConfigError / MappingError: invalid mapping settings or an invalid mapping file (every problem).
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
    if metrics is None:
        metrics = InboundMetrics(CollectorRegistry())

    env = surroundings(
        settings,
        component=COMPONENT,
        topics=(RESULTS, CHANGES, MEMBERS_INBOUND, SALESFORCE_EDITS, DLQ),
        registry=registry,
        mappings=mappings,
    )
    prefix, kafka, registry, mappings, dlq = env.prefix, env.kafka, env.registry, env.mappings, env.dlq
    processor = InboundProcessor(
        AvroDecoder(registry),
        env.encoder(MEMBERS_INBOUND),
        mappings,
        metrics=metrics,
        writers=set(settings.writer_user_ids),
        hold_ms=int(settings.echo_hold_s * 1000),
        edits_encoder=env.encoder(SALESFORCE_EDITS),
    )
    app = new_app(
        settings,
        topic_partitions=CHANGES.partitions,
        # On stop, commit what was judged and go: a change held for its result (EchoHold) is
        # neither judged nor committed, and is read again after the restart. Faust's default waits
        # for every change taken from the consumer to be judged, and with the results agent
        # stopped each held one would wait its full hold (docs/decisions/0004-inbound-echo-hold.md).
        stream_wait_empty=False,
    )
    # One table per side, each written by one agent only: a record's entries then sit in one
    # changelog partition (the partition its source records come from), in the order they were
    # written, and commit in the transaction of the records that caused them (Faust's exactly_once
    # model). The changes agent only reads the results' table.
    written = app.Table("inbound_written", default=None, key_type=str, partitions=RESULTS.partitions)
    seen = app.Table("inbound_seen", default=None, key_type=str, partitions=CHANGES.partitions)
    out_topic = raw_topic(app, MEMBERS_INBOUND, prefix)
    edits_topic = raw_topic(app, SALESFORCE_EDITS, prefix)

    changes_topic = CHANGES.name(prefix)
    echo_hold = EchoHold(
        processor,
        written,
        ResultsProgress(lambda: app.consumer, RESULTS.name(prefix)),
        catch_up_ms=int(settings.catch_up_hold_s * 1000),
        limit=settings.hold_max,
    )
    acks: InOrderAcks | None = None
    paused = False

    async def finish(handled: InboundHandled) -> None:
        for key, value in handled.sends:
            await out_topic.send(key=key, value=value)
        for key, value in handled.edits:
            await edits_topic.send(key=key, value=value)
        await park_all(dlq, handled.parked)

    def flow() -> None:
        """Stop fetching changes while the hold is full; fetch again once it is half empty.

        Through Faust's own buffer-full switch (``on_buffer_full``/``on_buffer_drop``), not
        ``pause_partitions``: Faust drops, unread and never to be read again, the records of a
        fetch already under way for a partition paused meanwhile, while a partition marked
        buffered still gets them."""
        nonlocal paused
        if echo_hold.full:
            if not paused:
                log.warning("%d changes wait for their results: fetching no more until half are judged",
                            len(echo_hold))  # fmt: skip
            for tp in app.consumer.assignment():
                if tp.topic == changes_topic:
                    app.consumer.on_buffer_full(tp)  # again each time: Faust's own drop may have undone it
            paused = True
        elif paused and len(echo_hold) < settings.hold_max // 2:
            for tp in app.consumer.assignment():
                if tp.topic == changes_topic:
                    app.consumer.on_buffer_drop(tp)
            paused = False

    async def on_result(value: bytes | None, original: OriginalRecord) -> InboundHandled:
        handled = processor.on_result(value, original, written)
        echo_hold.notify(original.partition, original.offset, handled.record)
        return handled

    async def changes_agent(stream: Any) -> None:
        """Judge each change now, or keep it aside in the hold (:func:`release_held` judges it later):
        this loop never waits on a hold. Acked in offset order per partition (:class:`InOrderAcks`)."""
        nonlocal acks
        manual = stream.noack()
        acks = InOrderAcks(manual.ack)
        async for event in manual.events():
            message = event.message
            acks.take(event)
            try:
                original = original_record(message)
                fetch = processor.decoder.prefetch(message.value)  # off the loop through an outage
                if fetch is not None:
                    await fetch
                change, handled = processor.decode_change(message.value, original)
                if change is not None:
                    if echo_hold.admit(change, event):
                        flow()
                        continue
                    handled = processor.judge(change, original, written, seen)
                await finish(handled)
            except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                log.error("stopping: %s", exc)
                await app.crash(exc)
                return
            await acks.finish(event)

    held_report = _HeldReport()

    async def release_held() -> None:
        """Judge the held changes as :meth:`EchoHold.released` lets them go (covered, or at their bound)."""
        while True:
            for held in await echo_hold.released():
                event = held.token
                try:
                    original = original_record(event.message)
                    processor.counts["held"] += 1
                    metrics.held(held.waited_s, covered=held.covered)
                    held_report.add(held)
                    log.debug("held %s %s for %.1fs: %s", held.change["sobject"], held.change["id"], held.waited_s,
                              "its result arrived" if held.covered else "no result covers it")  # fmt: skip
                    with acting_for(event):  # seen's changelog: the change's partition
                        handled = processor.judge(held.change, original, written, seen)
                    await finish(handled)
                    echo_hold.done(held)  # after its sends: a later change of the record never overtakes them
                except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                    log.error("stopping: %s", exc)
                    await app.crash(exc)
                    return
                if acks is not None:
                    await acks.finish(event)
                flow()

    async def forget_revoked(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """Held changes of revoked partitions are forgotten: read again from their committed offset."""
        revoked = set(args[0]) if args else set()
        echo_hold.drop(lambda event: event.message.tp not in revoked)
        if acks is not None:
            acks.forget(revoked)

    app.task(release_held)
    app.on_partitions_revoked.connect(forget_revoked)

    def results_agent(handle: Any) -> Any:
        async def run(stream: Any) -> None:
            # Acked by hand once handled: a record whose handling a stop cancels (a send not yet
            # made) stays unacked, so uncommitted. Faust's own acking would ack it on the way
            # out, and the commit at stop would skip it for good.
            manual = stream.noack()
            async for event in manual.events():
                message = event.message
                try:
                    fetch = processor.decoder.prefetch(message.value)  # off the loop through an outage
                    if fetch is not None:
                        await fetch
                    await finish(await handle(message.value, original_record(message)))
                except Exception as exc:  # noqa: BLE001 - not the record's fault: stop, uncommitted
                    log.error("stopping: %s", exc)
                    await app.crash(exc)
                    return
                await manual.ack(event)

        return run

    app.agent(raw_topic(app, RESULTS, prefix), name="inbound_results")(results_agent(on_result))
    app.agent(raw_topic(app, CHANGES, prefix), name="inbound_changes")(changes_agent)
    install_snapshot_consumer(app, settings.consumer_fetch())
    ensure_changelogs(app, kafka)
    return _Built(app, processor, dlq)


class _HeldReport:
    """One INFO line per ``every_s`` about the changes that waited a second or more, not one per change."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._since = time.monotonic()
        self.judged = self.uncovered = 0
        self.longest_s = 0.0

    def add(self, held: HeldChange) -> None:
        if held.waited_s < 1.0:
            return
        self.judged += 1
        self.uncovered += not held.covered
        self.longest_s = max(self.longest_s, held.waited_s)
        now = time.monotonic()
        if now - self._since >= self.every_s:
            log.info(
                "%d changes held a second or more judged in %.0fs: %d with no result covering them; longest %.1fs",
                self.judged, now - self._since, self.uncovered, self.longest_s,
            )  # fmt: skip
            self._since, self.judged, self.uncovered, self.longest_s = now, 0, 0, 0.0


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
