"""The sink worker over the connection router: commits stay behind a held org's oldest carried write while the
other orgs' partitions commit, the carried writes are bounded (their partitions paused past
``carry_max``), a slow org does not hold the others' results up, and a stopping worker waits for the
batches on their way and commits what they did.

Fake Kafka clients (the kit's), the real worker, router and sinks over emulators in process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from sfsync.emulator.faults import Faults
from sfsync.errors import SfsyncError
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.loop import SinkWorker
from tests.kit import FakeConsumer, FakeMessage, FakeProducer
from tests.kit.routing import RoutedRig, in_workspace
from tests.kit.sink import TOPIC, ByKey, member, message


@pytest.fixture
async def rig() -> AsyncIterator[RoutedRig]:
    found = RoutedRig(batch_size=4, carry_max=4)
    try:
        found.add_org("org-a")
        found.add_org("org-b")
        found.add_workspace("ws-a", "org-a")
        found.add_workspace("ws-b", "org-b")
        yield found
    finally:
        await found.close()


def worker_over(rig: RoutedRig, consumer: FakeConsumer, writes: list[dict[str, Any]]) -> SinkWorker:
    async def no_parking(write: IncomingWrite, error: SfsyncError) -> None:
        raise AssertionError(f"parked {write.write['key']}: {error}")

    return SinkWorker(
        rig.router,
        settings=rig.settings,
        consumer=consumer,
        producer=FakeProducer(),
        decoder=ByKey({w["key"].encode(): w for w in writes}),
        encoder=ByKey({}),
        identity_encoder=ByKey({}),
        on_parked=no_parking,
    )


def idle_a_moment() -> None:
    """The consumer's idle hook: a real consumer waits for records; this one waits a little (off the event loop)."""
    time.sleep(0.005)


async def run_until(worker: SinkWorker, condition: Callable[[], bool], timeout_s: float = 20) -> None:
    """Run ``worker`` (again: it keeps what it carries) until ``condition`` holds, then stop it (its batches on
    their way settled)."""
    worker.stopping.clear()
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "condition not met"
            assert not task.done() or task.result() is None
            await asyncio.sleep(0.02)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 20)


def at(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in partitions]


async def test_a_down_orgs_partitions_commit_behind_its_oldest_write_the_others_commit_and_all_do_once_it_is_back(
    rig: RoutedRig,
) -> None:
    a_writes = [in_workspace(member(i), "ws-a") for i in range(3)]
    b_writes = [in_workspace(member(i), "ws-b") for i in range(10, 12)]
    mixed = [in_workspace(member(20), "ws-a"), b_writes[1], in_workspace(member(21), "ws-a")]
    messages: list[FakeMessage] = [message(w, 0, n) for n, w in enumerate(a_writes)]
    messages += [message(b_writes[0], 1, 0)] + [message(w, 2, n) for n, w in enumerate(mixed)]
    consumer = FakeConsumer(messages, assigned=at(0, 1, 2), on_idle=idle_a_moment)
    worker = worker_over(rig, consumer, a_writes + b_writes + mixed)
    a, b = rig.orgs["org-a"], rig.orgs["org-b"]
    b.down()

    await run_until(worker, lambda: len(a.emails()) == 5 and consumer.commits.get(2) == 1)
    assert b.emails() == [] and consumer.commits.get(0) == 3
    assert consumer.commits.get(1, 0) == 0 and consumer.commits[2] == 1  # behind B's oldest carried write
    assert sorted(worker.producer.keys("sfsync.results")) == sorted(
        w["key"].encode() for w in [*a_writes, mixed[0], mixed[2]]
    )

    b.up()
    await run_until(worker, lambda: consumer.commits.get(1) == 1 and consumer.commits.get(2) == 3)
    assert b.emails() == ["member10@example.org", "member11@example.org"]
    assert len(worker.producer.keys("sfsync.results")) == 7  # every result once
    assert not worker._carry


async def test_past_carry_max_the_partitions_holding_carried_writes_are_paused_and_resumed_once_fewer(
    rig: RoutedRig,
) -> None:
    b_writes = [in_workspace(member(i), "ws-b") for i in range(10, 15)]
    a_writes = [in_workspace(member(i), "ws-a") for i in range(3)]
    consumer = FakeConsumer([message(w, 1, n) for n, w in enumerate(b_writes)], assigned=at(0, 1))
    consumer.on_idle = idle_a_moment
    worker = worker_over(rig, consumer, b_writes + a_writes)
    a, b = rig.orgs["org-a"], rig.orgs["org-b"]
    b.down()

    await run_until(worker, lambda: (TOPIC, 1) in consumer.paused)
    assert consumer.pauses == [[(TOPIC, 1)]]  # only the partition holding the carried writes
    left = [m for m in consumer.messages if m.partition() == 1]
    assert left  # the rest of partition 1 is not read while so many are carried...
    consumer.messages += [message(w, 0, n) for n, w in enumerate(a_writes)]
    await run_until(worker, lambda: len(a.emails()) == 3)  # ...while partition 0 is read and written
    assert consumer.commits.get(0) == 3 and consumer.messages == left

    b.up()
    await run_until(worker, lambda: consumer.commits.get(1) == 5)
    assert consumer.resumes == [[(TOPIC, 1)]] and not consumer.paused
    assert b.emails() == sorted(f"member{i}@example.org" for i in range(10, 15))


async def test_a_slow_org_does_not_hold_the_other_orgs_results_up(rig: RoutedRig) -> None:
    a, b = rig.orgs["org-a"], rig.orgs["org-b"]
    b.emulator.faults = Faults.parse("latency=700ms")  # every call of org B takes 0.7 s
    writes = rig.incoming(in_workspace(member(1), "ws-b"), in_workspace(member(2), "ws-a"))

    started = time.monotonic()
    outcome = await rig.router.put(writes)

    assert time.monotonic() - started < 0.7  # waited at most batch_max_age_s (0.2 s), not for org B
    assert [r["workspace_id"] for r in outcome.results] == ["ws-a"] and a.emails() == ["member2@example.org"]
    assert [w.write["workspace_id"] for w in outcome.pending] == ["ws-b"]  # on its way: uncommitted
    later = await rig.until_done(outcome.pending)
    assert not later.pending and b.emails() == ["member1@example.org"]


async def test_a_stopping_worker_waits_for_the_batches_on_their_way_and_commits_what_they_did(
    rig: RoutedRig,
) -> None:
    b = rig.orgs["org-b"]
    b.emulator.faults = Faults.parse("latency=150ms")  # a batch (login, query, create) outlasts the router's wait
    writes = [in_workspace(member(i), "ws-b") for i in range(2)]
    consumer = FakeConsumer([message(w, 0, n) for n, w in enumerate(writes)], assigned=at(0))
    worker = worker_over(rig, consumer, writes)

    await asyncio.wait_for(worker.run(max_batches=1), 20)

    assert b.emails() == ["member0@example.org", "member1@example.org"]
    assert consumer.commits == {0: 2} and len(worker.producer.keys("sfsync.results")) == 2
    assert not rig.router.busy()


async def test_a_revocation_waits_for_the_batches_on_their_way_so_none_lands_after_the_new_owner_replays(
    rig: RoutedRig,
) -> None:
    b = rig.orgs["org-b"]
    b.emulator.faults = Faults.parse("latency=300ms")  # a batch (login, query, create) outlasts the router's wait
    writes = [in_workspace(member(i), "ws-b") for i in range(2)]
    consumer = FakeConsumer([message(w, 0, n) for n, w in enumerate(writes)], assigned=at(0), on_idle=idle_a_moment)
    worker = worker_over(rig, consumer, writes)
    seen_at_revocation: list[list[str]] = []
    revoke = worker._on_revoke

    def on_revoke(consumer: Any, partitions: Any) -> None:
        revoke(consumer, partitions)
        seen_at_revocation.append(b.emails())  # what the org holds when the partition is handed over

    consumer.subscribe = lambda topics, **callbacks: FakeConsumer.subscribe(  # type: ignore[method-assign]
        consumer, topics, **{**callbacks, "on_revoke": on_revoke}
    )

    revoking: list[bool] = []

    def revoke_once_on_their_way() -> bool:
        if rig.router.busy() and not revoking:
            revoking.append(True)
            consumer.rebalance(revoke=at(0))
        return bool(seen_at_revocation)

    await run_until(worker, revoke_once_on_their_way)

    assert seen_at_revocation == [["member0@example.org", "member1@example.org"]]  # landed before, not after
    assert consumer.commits.get(0, 0) == 0  # revoked: nothing committed, the new owner replays both
