"""Crash recovery: the sink and the processor SIGKILLed mid-work and restarted leave the org as if they never died.

Sink: ``sfsync sink`` runs as its own process against the in-process emulator (real HTTP, 60 ms latency per
call so a call is in flight most of the time). It is killed three times while a batch is half written: the
emulator has served some of the batch's collection calls but the group has not committed the batch (checked
again after the kill, when nothing can commit any more). Restarted each time, then left to finish, the org
must hold exactly what the events imply, with no duplicate of any object.

Processor: ``python -m sfsync.processors.outbound.app`` (under each guarantee:
at_least_once, the default, and exactly_once)
is killed while it is still planning a stream of a few thousand events and restarted with the same app
id. Read with ``isolation.level=read_committed``, the writes of every event before the committed offsets
at the kill, ordered from planned writes before the committed offsets of the repartition topic, are in
``sfsync.writes`` exactly once; the others are planned or ordered again and their writes may appear
twice (see the test). The sink then writes everything and the org holds what the events imply, zero
duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from sfsync.emulator.server import RunningEmulator, serve_in_thread
from sfsync.mapping import load_mappings
from sfsync.processors.outbound.packs import is_pack, unpack
from sfsync.processors.outbound.processor import Processor
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import PRODUCT_TOPICS
from tests.integration.helpers import PARTITIONS, Offsets, make_topics, planned_topic, publish_all, wait_until
from tests.integration.outbound_org import ACTIVITY_EVENTS, assert_org, expected_org
from tests.integration.processes import Spawned, pipeline_env, processor_env, salesforce_env
from tests.integration.sink_runner import drain_sink, runner_for

SINK_EVENTS = 400
PROCESSOR_EVENTS = 2500
KILL_AFTER = 400  # events the processor committed before it is killed
KILLS = 3
LATENCY_MS = 60
WRITE_CALLS = ("POST composite/sobjects", "PATCH composite/sobjects", "DELETE composite/sobjects", "POST composite")
"""The calls that write: sObject Collections, and /composite (the sink sends its collections five to one)."""


# ---------------------------------------------------------------------- helpers
def _assert_org(running: RunningEmulator, events: list[Any]) -> dict[str, int]:
    """The org holds exactly what ``events`` imply, and no object twice; the record counts."""
    return assert_org(running, expected_org(events))


def _plan_writes(services: Any, registry: SchemaRegistry, prefix: str, events: list[Any]) -> int:
    """Plan ``events`` in order as the processor does (same :class:`Processor`) and produce the writes."""
    make_topics(services, prefix)
    writes_topic = prefix + "sfsync.writes"
    processor = Processor(
        AvroDecoder(registry), AvroEncoder(registry, writes_topic, load_topic_schema("sfsync.writes")), load_mappings()
    )
    encoders = {
        spec.base: AvroEncoder(registry, spec.name(prefix), load_topic_schema(spec.base)) for spec in PRODUCT_TOPICS
    }
    clock: dict[str, Any] = {}
    producer = Producer({"bootstrap.servers": services.bootstrap, "enable.idempotence": True, "linger.ms": 20})
    count = 0
    for offset, event in enumerate(events):
        value = encoders[event.TOPIC].encode_checked(event.RECORD_NAME, event.to_avro())
        handled = processor.handle(value, prefix + event.TOPIC, 0, offset, clock=clock)
        assert not handled.parked, handled.parked
        for key, data in handled.writes:
            producer.produce(writes_topic, key=key, value=data)
            count += 1
        producer.poll(0)
    assert producer.flush(30) == 0
    return count


# ---------------------------------------------------------------------- the sink
@dataclass
class Kill:
    committed: int
    write_calls: int
    rows_at_kill: int
    rows_after: int


def _rows(running: RunningEmulator) -> int:
    store = running.emulator.store
    return sum(len(store.rows(o)) for o in ("Contact", "Campaign", "CampaignMember", "Case", "Community_Activity__c"))


def _write_calls(running: RunningEmulator) -> int:
    by_endpoint = running.emulator.calls_by_endpoint
    return sum(by_endpoint.get(name, 0) for name in WRITE_CALLS)


async def test_sink_killed_mid_batch_three_times_ends_in_the_state_the_events_imply(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    events = list(CommunitySimulator(seed=4242).stream(SINK_EVENTS))
    total = _plan_writes(services, registry, prefix, events)
    writes_topic = prefix + "sfsync.writes"
    running = serve_in_thread(faults=f"latency={LATENCY_MS}ms")
    group = f"sink-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(
        services,
        prefix,
        SFSYNC_SINK_GROUP_ID=group,
        SFSYNC_SINK_BATCH_SIZE="50",
        SFSYNC_SINK_BATCH_MAX_AGE_S="0.3",
        SFSYNC_SINK_POLL_TIMEOUT_S="0.2",
        SFSYNC_SINK_SESSION_TIMEOUT_MS="6000",
        SFSYNC_SINK_MAX_PARENT_WAITS="1000",
        SFSYNC_SINK_RETRY_WAIT_INITIAL_S="0.01",
        SFSYNC_SINK_RETRY_WAIT_MAX_S="0.05",
        SFSYNC_SINK_METRICS_PORT="0",
        **salesforce_env(running),
    )
    log = tmp_path / "sink.log"
    offsets = Offsets(services.bootstrap, group)
    kills: list[Kill] = []
    proc = Spawned("sfsync.cli.main", "sink", env=env, log=log)
    try:
        # Kill when the emulator served a write call of a batch the group has not committed (a batch's
        # collections go five to a /composite: most batches are one or two calls, so one is the mark).
        while len(kills) < KILLS:
            needed = 1
            base_committed, base_calls = offsets.committed(writes_topic), _write_calls(running)
            deadline = time.monotonic() + 60
            while True:
                assert proc.running, proc.log_tail()
                assert time.monotonic() < deadline, f"no batch reached {needed} write calls; kills so far {kills}"
                committed = offsets.committed(writes_topic)
                assert committed < total, f"the sink finished before kill {len(kills) + 1}: {kills}"
                calls = _write_calls(running)
                if committed != base_committed:
                    base_committed, base_calls = committed, calls
                elif calls - base_calls >= needed and (not kills or committed > kills[-1].committed):
                    break  # (after a restart, once it committed a batch: each kill cuts a later batch)
                await asyncio.sleep(0.02)
            rows_at_kill = _rows(running)
            proc.kill()
            # nothing can commit any more: the batch was really cut in the middle
            if offsets.committed(writes_topic) != base_committed:
                proc = Spawned(
                    "sfsync.cli.main", "sink", env=env, log=log
                )  # a commit slipped in before the kill: again
                continue
            await asyncio.sleep(2 * LATENCY_MS / 1000)  # a collection call in flight lands now, unacknowledged
            kills.append(Kill(base_committed, _write_calls(running) - base_calls, rows_at_kill, _rows(running)))
            proc = Spawned("sfsync.cli.main", "sink", env=env, log=log)

        # the last restart finishes at full speed (the latency only served to catch calls in flight)
        httpx.post(f"{running.base_url}/__admin/faults", json={"spec": ""}, timeout=10).raise_for_status()
        deadline = time.monotonic() + 90
        while offsets.committed(writes_topic) < total:
            assert time.monotonic() < deadline, (
                f"restarted sink committed {offsets.committed(writes_topic)}/{total} writes in 90s; kills {kills}\n"
                + proc.log_tail(4000)
            )
            await asyncio.sleep(0.5)
        assert proc.running, proc.log_tail()
        assert proc.stop() == 0, proc.log_tail()
        counts = _assert_org(running, events)
    finally:
        proc.kill()
        offsets.close()
        running.stop()
    assert len(kills) == KILLS and all(k.committed < total and k.write_calls >= 1 for k in kills)
    assert kills[0].committed < kills[1].committed < kills[2].committed  # three different batches
    print(f"\nsink: {len(events)} events, {total} writes, org {counts}, kills {kills}")


# ---------------------------------------------------------------------- the processor
def _problems(log: Path) -> str:
    """The log lines that say what went wrong (with a little context), not the whole log."""
    lines = log.read_text(errors="replace").splitlines()
    hits = [i for i, line in enumerate(lines) if any(w in line for w in ("ERROR", "CRITICAL", "Error:", "crash"))]
    keep = sorted({j for i in hits[:10] for j in range(max(i - 2, 0), min(i + 8, len(lines)))})
    return "\n".join(lines[j] for j in keep)[-6000:]


def _read_writes(
    bootstrap: str, topic: str, isolation: str, decoder: AvroDecoder
) -> list[tuple[int, int, dict[str, Any]]]:
    """Every Write in ``topic`` as a consumer with ``isolation.level=isolation`` sees it: (partition, offset, Write);
    each write of a pack (:mod:`sfsync.processors.outbound.packs`) at the pack's offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        writes: list[tuple[int, int, dict[str, Any]]] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, f"{topic} not read to its end in 60s"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            at_end.discard(msg.partition())
            packed = is_pack(msg.headers() or [])  # the repartition topic: packs of writes
            for _, value in unpack(msg.value()) if packed else [(msg.key(), msg.value())]:
                writes.append((msg.partition(), msg.offset(), decoder.decode(value)[1]))
        return writes
    finally:
        consumer.close()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_processor_killed_mid_stream_and_restarted_plans_every_event_once(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path, guarantee: str
) -> None:
    events = list(CommunitySimulator(seed=7070).stream(PROCESSOR_EVENTS))
    publish_all(services, prefix, events)
    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    env = processor_env(
        services,
        prefix,
        app_id,
        SFSYNC_PROCESSOR_PROCESSING_GUARANTEE=guarantee,
        SFSYNC_PROCESSOR_SESSION_TIMEOUT_S="6",
        SFSYNC_PROCESSOR_HEARTBEAT_INTERVAL_S="1",
    )
    log = tmp_path / "processor.log"
    offsets = Offsets(services.bootstrap, app_id)
    topics = [spec.name(prefix) for spec in PRODUCT_TOPICS]
    repartition = planned_topic(prefix, app_id)

    def planned() -> int:
        return sum(offsets.committed(topic) for topic in topics)

    proc = Spawned("sfsync.processors.outbound.app", "150", env=env, log=log)
    try:
        await wait_until(lambda: planned() >= KILL_AFTER or not proc.running, 90, f"{KILL_AFTER} events planned", 0.1)
        assert proc.running, proc.log_tail()
        proc.kill()
        # as committed at the kill: a transaction it left open (exactly_once) is aborted when the restart fences it
        with contextlib.closing(Offsets(services.bootstrap, app_id, stable=False)) as at:
            at_kill = sum(at.committed(topic) for topic in topics)
            replay_from = {(topic, p): offset for topic in topics for p, offset in enumerate(at.by_partition(topic))}
            order_from = dict(enumerate(at.by_partition(repartition)))
        assert 0 < at_kill < len(events), f"not killed mid-stream: {at_kill}/{len(events)} events committed"
        proc = Spawned(
            "sfsync.processors.outbound.app", "150", env=env, log=log
        )  # same app id: same group, transactional ids
        deadline = time.monotonic() + 120
        while planned() < len(events) or not offsets.caught_up(repartition):
            assert proc.running, proc.log_tail()
            assert time.monotonic() < deadline, f"restarted processor planned {planned()}/{len(events)} in 120s"
            await asyncio.sleep(0.5)
        assert "Traceback" not in proc.output(), _problems(log)
        # Faust's own shutdown sometimes crashes on a changelog send still buffered when its producer
        # stops ("Producer service not yet started", exit 1): every offset was committed by then.
        proc.stop()
    finally:
        proc.kill()
        offsets.close()

    # read_committed: every event before its partition's committed offset at the kill has its writes
    # planned exactly once, and each planned write before its partition's committed offset (of the
    # repartition topic) at the kill was ordered exactly once; only the others (planned or ordered
    # again by the restart) may have their writes twice.
    # Why at all: Faust makes a send transactional only for a topic its consumer has metadata for
    # (and picks the transaction by the destination partition); sfsync.writes is not consumed by the
    # app, so the writes go out outside the transactions that commit the offsets and table changelogs.
    # (Sending them in the source partition's transaction is not enough either: Faust commits on a
    # timer with the offsets of the events acked so far, and an event is acked once the agent moves on.)
    # Replays restart at the committed offsets, and the sink's writes are idempotent.
    writes_topic = prefix + "sfsync.writes"
    decoder = AvroDecoder(registry)
    committed = [w for _, _, w in _read_writes(services.bootstrap, writes_topic, "read_committed", decoder)]
    copies = Counter(w["write_id"] for w in committed)
    twice = {w["write_id"]: w["source"] for w in committed if copies[w["write_id"]] > 1}
    ordered_again = {
        w["write_id"]
        for partition, offset, w in _read_writes(services.bootstrap, repartition, "read_committed", decoder)
        if offset >= order_from[partition]
    }
    early = {
        write_id: source
        for write_id, source in twice.items()
        if source["offset"] < replay_from[(source["topic"], source["partition"])] and write_id not in ordered_again
    }
    assert not early, f"writes of events committed before the kill appear twice: {list(early.items())[:5]}"
    planned_events = {w["source"]["event_id"] for w in committed}
    activity_events = {e.event_id for e in events if type(e).__name__ in ACTIVITY_EVENTS}
    assert activity_events <= planned_events  # no event lost: each of them has at least its activity write
    uncommitted = _read_writes(services.bootstrap, writes_topic, "read_uncommitted", decoder)
    aborted = len(uncommitted) - len(committed)

    # the sink writes them: the org is what the events imply, nothing twice
    running = serve_in_thread()
    try:
        group = f"sink-{uuid.uuid4().hex[:8]}"
        runner = runner_for(services, prefix, group, running, registry)
        task = asyncio.create_task(runner.run(signals=False))
        try:
            await drain_sink(runner, services.bootstrap, group, writes_topic, timeout_s=120)
        finally:
            runner.stop()
            report = await asyncio.wait_for(task, 30)
        assert report.parked == 0 and report.auth_failures == 0
        counts = _assert_org(running, events)
    finally:
        running.stop()
    print(
        f"\nprocessor: {len(events)} events, killed after {at_kill} committed; {len(committed)} committed writes, "
        f"{len(twice)} replayed twice, {aborted} aborted by the kill; org {counts}"
    )
