"""The echo hold without Kafka: changes kept aside per record until a result covers them or their bound passes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest

from sfsync.mapping import load_mappings
from sfsync.processors.faust_runtime.aside import InOrderAcks
from sfsync.processors.inbound.hold import EchoHold, ResultsProgress
from sfsync.processors.inbound.processor import InboundProcessor
from tests.kit.serde import Decoder, Encoder
from tests.unit.processors.inbound.test_inbound_app import WRITER, WRITTEN, original, result, writers_change


def processor(hold_ms: int, decoder: Decoder | None = None) -> InboundProcessor:
    return InboundProcessor(decoder or Decoder(), Encoder(), load_mappings(), writers={WRITER}, hold_ms=hold_ms)


def of_record(sf_id: str, fields: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {**writers_change(fields, at), "id": sf_id, "change_id": f"Contact:{sf_id}:{at.timestamp()}"}


async def released_within(hold: EchoHold, seconds: float) -> list[Any]:
    return await asyncio.wait_for(hold.released(), seconds)


async def test_a_held_change_is_released_as_soon_as_its_result_arrives() -> None:
    decoder = Decoder()
    work = processor(20_000, decoder)
    written: dict[str, Any] = {}
    hold = EchoHold(work, written)
    now = dt.datetime.now(dt.UTC)
    echo = writers_change(dict(WRITTEN), now)
    assert hold.admit(echo, "event-1") is True  # no result yet: it may be sfsync's own write
    assert len(hold) == 1

    async def result_arrives() -> None:
        await asyncio.sleep(0.2)
        late = {**result(), "acknowledged_at": now + dt.timedelta(milliseconds=50)}
        folded = work.on_result(decoder.add("WriteResult", late), original(), written)
        hold.notify(record=folded.record)

    started = time.monotonic()
    arrival = asyncio.create_task(result_arrives())
    [held] = await released_within(hold, 5)  # woken by the result, not by the 20 s bound
    await arrival
    assert time.monotonic() - started < 5 and held.token == "event-1" and held.covered
    assert work.judge(held.change, original(1), written, {}).sends == []  # recognised as sfsync's own write
    hold.done(held)
    assert len(hold) == 0


async def test_a_change_no_result_covers_is_released_at_its_bound_and_delivered() -> None:
    decoder = Decoder()
    work = processor(300, decoder)
    written: dict[str, Any] = {}
    work.on_result(decoder.add("WriteResult", result()), original(), written)  # acknowledged at T0
    flow = writers_change({**WRITTEN, "Title": "Set by a flow"}, dt.datetime.now(dt.UTC))
    hold = EchoHold(work, written)
    assert hold.admit(flow, "event") is True
    started = time.monotonic()
    [held] = await released_within(hold, 5)
    assert 0.2 < time.monotonic() - started < 5 and not held.covered and held.waited_s >= 0.2
    judged = work.judge(held.change, original(1), written, {})
    assert [v.split(b"|")[0] for _, v in judged.sends] == [b"MemberFieldUpdate"]


async def test_a_thousand_held_changes_are_released_together_after_one_hold_not_one_after_another() -> None:
    work = processor(300)
    hold = EchoHold(work, {})
    now = dt.datetime.now(dt.UTC)
    for i in range(1000):
        assert hold.admit(of_record(f"003{i:012d}AAA", dict(WRITTEN), now), i)
    started = time.monotonic()
    released: list[Any] = []
    while len(released) < 1000:
        batch = await released_within(hold, 5)
        for held in batch:
            hold.done(held)
        released += batch
    assert time.monotonic() - started < 1.5  # one hold of 0.3 s, not 1,000 of them
    assert [h.token for h in released] == list(range(1000))  # in the order they came
    assert len(hold) == 0


async def test_a_later_change_of_a_held_record_waits_behind_it_while_other_records_go_on() -> None:
    work = processor(300)
    hold = EchoHold(work, {})
    now = dt.datetime.now(dt.UTC)
    assert hold.admit(of_record("003A", dict(WRITTEN), now), "first") is True
    rep_edit = {**of_record("003A", {**WRITTEN, "Title": "x"}, now), "last_modified_by_id": "005REP000000001AAA"}
    other = {**of_record("003B", {**WRITTEN, "Title": "x"}, now), "last_modified_by_id": "005REP000000001AAA"}
    assert hold.admit(rep_edit, "second") is True  # needs no result, but its record's earlier change waits
    assert hold.admit(other, "other") is False  # another record, needing no result: judged at once
    [first] = await released_within(hold, 5)
    assert first.token == "first"
    with pytest.raises(TimeoutError):  # nothing more of that record comes out while "first" is being judged
        await released_within(hold, 0.3)
    hold.done(first)
    [second] = await released_within(hold, 1)  # comes forward at once: nothing to wait for
    assert second.token == "second" and second.covered


async def test_held_changes_of_a_revoked_partition_are_forgotten() -> None:
    hold = EchoHold(processor(60_000), {})
    now = dt.datetime.now(dt.UTC)
    for i, partition in enumerate([0, 1, 0, 1]):
        hold.admit(of_record(f"003{i}", dict(WRITTEN), now), (partition, i))
    dropped = hold.drop(lambda token: token[0] != 1)
    assert sorted(h.token for h in dropped) == [(1, 1), (1, 3)] and len(hold) == 2


class TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class FakeFaustConsumer:
    """Faust's consumer as the hold reads it: two results partitions and one changes partition."""

    def __init__(self, ends: dict[int, int], positions: dict[int, int]) -> None:
        self.tps = [TP("sfsync.results", p) for p in ends] + [TP("salesforce.changes", 0)]
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[Any]:
        return set(self.tps)

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        assert all(tp.topic == "sfsync.results" for tp in tps)
        return {tp: self.ends[tp.partition] for tp in tps}

    async def position(self, tp: Any) -> int:
        return self.positions[tp.partition]


async def test_a_backlog_change_past_its_bound_waits_for_the_results_already_in_kafka() -> None:
    """After a restart, a change polled long ago comes with its result still unread in the results
    backlog: it waits for that backlog (not for the bound), then is judged an echo."""
    decoder = Decoder()
    work = processor(10_000, decoder)
    written: dict[str, Any] = {}
    consumer = FakeFaustConsumer(ends={0: 40, 1: 7}, positions={0: 12, 1: 7})  # partition 1: nothing left to read
    results = ResultsProgress(lambda: consumer, "sfsync.results")
    hold = EchoHold(work, written, results)
    polled = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    old = writers_change(dict(WRITTEN), polled)
    assert hold.admit(old, "old") is True  # uncovered, its bound long past

    async def backlog() -> None:
        for offset in range(12, 40):  # the results agent works through partition 0
            await asyncio.sleep(0.01)
            if offset == 30:  # this one covers the change
                late = {**result(), "acknowledged_at": polled + dt.timedelta(milliseconds=50)}
                folded = work.on_result(decoder.add("WriteResult", late), original(offset), written)
                hold.notify(0, offset, folded.record)
            else:
                hold.notify(0, offset)

    started = time.monotonic()
    task = asyncio.create_task(backlog())
    [held] = await released_within(hold, 5)
    await task
    assert time.monotonic() - started < 5
    assert results.read[0] >= 31  # released by the covering result, not by the bound
    assert work.judge(held.change, original(1), written, {}).sends == []  # its result came first: an echo
    assert await results.reached({TP("sfsync.results", 1): 7})  # never read this run: where the consumer stands
    assert not await results.reached({TP("sfsync.results", 0): 41})


async def test_a_past_bound_change_with_no_results_behind_is_released_at_once() -> None:
    consumer = FakeFaustConsumer(ends={0: 5}, positions={0: 5})
    hold = EchoHold(processor(10_000), {}, ResultsProgress(lambda: consumer, "sfsync.results"))
    assert hold.admit(writers_change(dict(WRITTEN), dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)), "old")
    started = time.monotonic()
    [held] = await released_within(hold, 5)
    assert time.monotonic() - started < 1 and held.token == "old"


class SilentConsumer(FakeFaustConsumer):
    """A consumer that never answers: aiokafka's ``position()`` waits, unbounded, for a valid position."""

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def position(self, tp: Any) -> int:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_consumer_that_does_not_answer_never_holds_a_change_up() -> None:
    """The restarted inbound app of the e2e test stopped judging changes: its hold waited on the consumer."""
    consumer = SilentConsumer(ends={0: 5, 1: 9}, positions={})
    results = ResultsProgress(lambda: consumer, "sfsync.results", ask_timeout_s=0.2)
    started = time.monotonic()
    assert await results.end_offsets() == {}  # unanswered: nothing to wait for
    assert await results.reached({TP("sfsync.results", 0): 5, TP("sfsync.results", 1): 9})  # not waited on
    results.folded(0, 1)
    assert not await results.reached({TP("sfsync.results", 0): 5})  # what was folded still counts, without asking
    assert time.monotonic() - started < 2
    hold = EchoHold(processor(1_500), {}, ResultsProgress(lambda: consumer, "sfsync.results", ask_timeout_s=0.2))
    assert hold.admit(writers_change(dict(WRITTEN), dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)), "old")
    started = time.monotonic()
    await released_within(hold, 5)  # past its bound, no results known to wait for: released now
    assert time.monotonic() - started < 1


class Message:
    def __init__(self, tp: str, offset: int) -> None:
        self.tp, self.offset = tp, offset


class Event:
    def __init__(self, tp: str, offset: int) -> None:
        self.message = Message(tp, offset)


async def test_events_finished_out_of_order_are_acked_in_offset_order_per_partition() -> None:
    """faust-streaming commits past an unacked offset N when N+1 is acked first: acks wait for the earlier ones."""
    acked: list[tuple[str, int]] = []

    async def ack(event: Event) -> None:
        acked.append((event.message.tp, event.message.offset))

    acks = InOrderAcks(ack)
    events = [Event("p0", 0), Event("p0", 1), Event("p1", 0), Event("p0", 2)]
    for event in events:
        acks.take(event)
    await acks.finish(events[1])  # p0/1 before p0/0: waits
    await acks.finish(events[2])  # p1 has nothing earlier
    assert acked == [("p1", 0)]
    await acks.finish(events[0])
    assert acked == [("p1", 0), ("p0", 0), ("p0", 1)]
    acks.forget(["p0"])  # revoked: p0/2 is read again from the committed offset, never acked here
    await acks.finish(events[3])
    assert acked == [("p1", 0), ("p0", 0), ("p0", 1)] and acks.waiting() == 0


class CountingProcessor(InboundProcessor):
    """Counts how often the hold asks whether a change still waits."""

    asked = 0

    def hold_until(self, change: Any, written: Any) -> int | None:
        self.asked += 1
        return super().hold_until(change, written)


async def test_a_result_looks_again_at_its_own_records_change_only_not_at_every_held_one() -> None:
    """The chaos run's inbound app spent its CPU looking at 10,000 held changes again on every result."""
    decoder = Decoder()
    work = CountingProcessor(decoder, Encoder(), load_mappings(), writers={WRITER}, hold_ms=60_000)
    written: dict[str, Any] = {}
    hold = EchoHold(work, written)
    now = dt.datetime.now(dt.UTC)
    for i in range(10_000):
        hold.admit(of_record(f"003{i:012d}AAA", dict(WRITTEN), now), i)
    with pytest.raises(TimeoutError):  # the first look at each: all wait for their results
        await released_within(hold, 0.3)
    work.asked = 0
    covering = {**result(), "salesforce_id": "003000000000042AAA", "acknowledged_at": now + dt.timedelta(seconds=1)}
    folded = work.on_result(decoder.add("WriteResult", covering), original(), written)
    for _ in range(50):  # results of records no change waits for
        hold.notify(0, 1, "003999999999999AAA")
    hold.notify(0, 2, folded.record)
    [held] = await released_within(hold, 5)
    assert held.token == 42 and held.covered
    assert work.asked <= 2, work.asked
