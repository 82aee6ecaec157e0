"""The sink worker's batching with carried writes: fake Kafka clients, the real sink core on the emulator in process."""

from __future__ import annotations

import asyncio
from typing import Any

from sfsync.emulator.server import build
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.loop import SinkWorker
from sfsync.sinks.settings import SinkSettings
from tests.kit import FakeConsumer, FakeMessage, FakeProducer
from tests.kit.sink import ByKey, Recorder, campaign, make_sink, member, message, registration


async def run_worker(
    messages: list[FakeMessage], writes: list[dict[str, Any]], batch_size: int = 4
) -> tuple[FakeConsumer, FakeProducer, Recorder, SinkWorker]:
    """Run a worker over ``messages`` until it read them all and carries nothing."""
    consumer, producer = FakeConsumer(messages), FakeProducer()
    rec = Recorder()
    client, sink = make_sink(build(), rec, max_parent_waits=50)
    settings = SinkSettings(batch_size=batch_size, batch_linger_s=0.01, poll_timeout_s=0.01, max_parent_waits=50)

    async def no_sleep(seconds: float) -> None:
        pass

    async def on_parked(write: IncomingWrite, error: Any) -> None:
        raise AssertionError(f"parked {write.write['key']}: {error}")

    async with client:
        worker = SinkWorker(
            sink,
            settings=settings,
            consumer=consumer,
            producer=producer,
            decoder=ByKey({w["key"].encode(): w for w in writes}),
            encoder=ByKey({}),
            identity_encoder=ByKey({}),
            on_parked=on_parked,
            sleep=no_sleep,
        )

        def stop_when_done() -> None:
            if not worker._carry:
                worker.stopping.set()

        consumer.on_idle = stop_when_done
        await asyncio.wait_for(worker.run(max_batches=20), 30)
    return consumer, producer, rec, worker


async def test_a_carry_as_large_as_a_batch_does_not_stop_the_worker_reading_the_parents() -> None:
    # A full batch of children (partition 0) whose parents only come later (partition 1): the
    # worker must keep reading fresh writes next to the carried ones, or it never sees the parents.
    children = [registration("evt-1", f"member{i}@example.org") for i in range(4)]
    parents = [campaign("evt-1"), *(member(i) for i in range(4))]
    messages = [message(w, 0, n) for n, w in enumerate(children)]
    messages += [message(w, 1, n) for n, w in enumerate(parents)]
    consumer, producer, rec, worker = await run_worker(messages, children + parents)
    assert not rec.parked
    assert sorted(producer.keys("sfsync.results")) == sorted(w["key"].encode() for w in children + parents)
    assert consumer.commits == {0: len(children), 1: len(parents)}
    assert not worker._carry


async def test_writes_done_behind_a_carried_write_are_committed_once_it_is_done() -> None:
    # Batch 1 reads a child (waiting for its parents) and two members after it on partition 0: the
    # commit stays at the child. Batch 2 reads the parents and writes the child: partition 0 must now
    # be committed past the members too, though batch 2 holds none of them.
    child = registration("evt-1", "member0@example.org")
    later = [member(5), member(6)]
    parents = [campaign("evt-1"), member(0)]
    messages = [message(w, 0, n) for n, w in enumerate([child, *later])]
    messages += [message(w, 1, n) for n, w in enumerate(parents)]
    consumer, producer, rec, _ = await run_worker(messages, [child, *later, *parents], batch_size=3)
    assert not rec.parked and len(producer.keys("sfsync.results")) == 5
    assert consumer.commits == {0: 3, 1: 2}


class _Taking:
    """A sink that writes every write it is given at once (what reached the org, in order)."""

    def __init__(self) -> None:
        self.given: list[tuple[int, int]] = []

    async def put(self, writes: Any) -> Any:
        from sfsync.sinks.contract import BatchOutcome, committed_offsets

        self.given += [(w.partition, w.offset) for w in writes]
        return BatchOutcome(committed=committed_offsets(writes, ()))


async def test_a_write_read_before_a_revocation_is_dropped_even_when_its_partition_comes_straight_back() -> None:
    # Write A (partition 0, offset 0) is read; before the batch closes, partition 0 goes to another worker, which
    # writes A and the later B (offset 1), and comes back, from offset 2 (C). A, read before the revocation, must
    # not be written here: it would land after the other worker's newer B (a create after its delete).
    from confluent_kafka import TopicPartition

    writes = [member(0), member(1), member(2)]
    first, later = message(writes[0], 0, 0), message(writes[2], 0, 2)
    consumer, sink = FakeConsumer([first]), _Taking()
    settings = SinkSettings(batch_size=4, batch_linger_s=5, batch_max_age_s=5, poll_timeout_s=0.01)

    async def no_sleep(seconds: float) -> None:
        pass

    async def on_parked(write: IncomingWrite, error: Any) -> None:
        raise AssertionError(f"parked {write.write['key']}: {error}")

    worker = SinkWorker(
        sink,  # type: ignore[arg-type]
        settings=settings,
        consumer=consumer,
        producer=FakeProducer(),
        decoder=ByKey({w["key"].encode(): w for w in writes}),
        encoder=ByKey({}),
        identity_encoder=ByKey({}),
        on_parked=on_parked,
        sleep=no_sleep,
    )
    moved: list[bool] = []

    def away_and_back() -> None:  # idle after A: the partition is revoked and assigned again, C next
        if not moved:
            moved.append(True)
            at = [TopicPartition(worker.writes_topic, 0)]
            consumer.rebalance(revoke=at, assign=at)
            consumer.messages.append(later)
        elif sink.given:
            worker.stopping.set()

    consumer.on_idle = away_and_back
    await asyncio.wait_for(worker.run(max_batches=3), 30)

    assert sink.given == [(0, 2)]  # C only: A was read in the partition's previous assignment
