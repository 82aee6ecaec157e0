"""The API budget's pause keeps the sink in its consumer group.

With the daily allocation spent, a batch must not sleep the governor's pauses out inside ``put``
(300 s each, probed again and again: far past ``max.poll.interval.ms``). The sink ends the batch
with its unwritten writes pending and ``budget_pause_s`` set; the worker pauses its partitions and
keeps polling the consumer until the pause is over, then writes the carried writes first.

The real sink core and the real governor on the emulator in process; fake Kafka clients; one fake
clock (:class:`EpochClock`) for the loop, the consumer's waits, the sink's retry deadlines and the
governor, so an hour of pauses runs in a blink.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition

from sfsync.emulator.app import Emulator
from sfsync.emulator.server import build
from sfsync.ops.errorlog import RATE_LIMIT_PAUSE, ErrorLogEntry
from sfsync.salesforce.governor import Governor
from sfsync.salesforce.limits import LIMIT_INFO_HEADER, BudgetTracker
from sfsync.sinks.contract import IncomingWrite, RetriesExhaustedError
from sfsync.sinks.loop import SinkWorker
from sfsync.sinks.settings import SinkSettings
from sfsync.sinks.writer import SalesforceSink
from tests.kit import EpochClock, FakeConsumer, FakeProducer, FaultyOrg
from tests.kit.sink import TOPIC, ByKey, Harness, Recorder, campaign, make_sink, member, message

PAUSE_S = 300.0
POLL_S = 5.0
MAX_POLL_INTERVAL_S = 600.0  # the sink's default max.poll.interval.ms
WAIT_MAX_S = 10.0  # the sink's default budget_wait_max_s


class Observed(httpx.AsyncBaseTransport):
    """Feeds every answer's ``Sforce-Limit-Info`` to the governor's budget, stamped with the fake clock
    (the client stamps its own budget with the real one, which the fake governor must not compare with)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, budget: BudgetTracker, clock: EpochClock) -> None:
        self.inner, self.budget, self.clock = inner, budget, clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.budget.observe(response.headers.get(LIMIT_INFO_HEADER), observed_at=fake_utc(self.clock))
        return response


def fake_utc(clock: EpochClock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock(), dt.UTC)


@dataclass
class Rig:
    """A sink whose calls go through a governor (as ``sfsync sink`` wires it), on one fake clock."""

    emulator: Emulator
    org: FaultyOrg
    sink: SalesforceSink
    client: Any
    governor: Governor
    clock: EpochClock
    rec: Recorder
    pauses: list[ErrorLogEntry]

    def spend_the_daily_limit(self) -> None:
        self.emulator.daily_limit = self.emulator.api_calls

    def raise_the_daily_limit(self) -> None:
        self.emulator.daily_limit = 1_000_000


def rig(**settings: Any) -> Rig:
    emulator = build()
    rec = Recorder()
    clock = EpochClock()
    pauses: list[ErrorLogEntry] = []
    governor = Governor(
        BudgetTracker(), pause_s=PAUSE_S, clock=lambda: fake_utc(clock), sleep=clock.sleep, on_pause=pauses.append
    )
    wrapped: list[FaultyOrg] = []

    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        # no fault unless a test asks: it records every request that reaches the org
        wrapped.append(FaultyOrg(Observed(transport, governor.budget, clock)))
        return wrapped[0]

    async def before_call(kind: str) -> None:  # as the sink process wires it (sinks/main.py)
        await governor.before_call(wait_max_s=WAIT_MAX_S)

    client, sink = make_sink(
        emulator, rec, wrap=wrap, clock=clock, before_call=before_call, pause_left=governor.pause_left_s, **settings
    )
    return Rig(emulator, wrapped[0], sink, client, governor, clock, rec, pauses)


def worker_over(r: Rig, consumer: FakeConsumer, writes: list[dict[str, Any]]) -> SinkWorker:
    async def no_parking(write: IncomingWrite, error: Any) -> None:
        raise AssertionError(f"parked {write.write['key']}: {error}")

    return SinkWorker(
        r.sink,
        settings=SinkSettings(batch_size=50, batch_linger_s=0.5, poll_timeout_s=POLL_S),
        consumer=consumer,
        producer=FakeProducer(),
        decoder=ByKey({w["key"].encode(): w for w in writes}),
        encoder=ByKey({}),
        identity_encoder=ByKey({}),
        on_parked=no_parking,
        clock=r.clock,
        sleep=r.clock.sleep,
    )


def at(partitions: list[int]) -> list[TopicPartition]:
    return [TopicPartition(TOPIC, p) for p in partitions]


def on_idle(r: Rig, worker: SinkWorker, *steps: tuple[float, Callable[[], None]]) -> Callable[[], None]:
    """The consumer's idle hook: each step's action once the clock is that many seconds on; then stop
    the worker once it carries nothing."""
    start = r.clock()
    todo = list(steps)

    def idle() -> None:
        while todo and r.clock() - start >= todo[0][0]:
            todo.pop(0)[1]()
        if not todo and not worker._carry and not r.sink._failing:
            worker.stopping.set()

    return idle


async def test_a_long_budget_pause_keeps_polling_pauses_then_resumes_and_writes_the_carry_once_in_order() -> None:
    r = rig()
    first, second = member(0, last="First", n=0), member(0, last="Second", n=1)  # one record, in order
    writes = [first, second, member(1), member(2), member(3)]
    messages = [message(w, 0, n) for n, w in enumerate(writes[:3])]
    messages += [message(w, 1, n) for n, w in enumerate(writes[3:])]
    consumer = FakeConsumer(messages, assigned=at([0, 1]), clock=r.clock)
    worker = worker_over(r, consumer, writes)
    r.spend_the_daily_limit()
    limit_raised_after_s = 1_000.0  # the first call and three probes, 300 s apart, are refused
    consumer.on_idle = on_idle(r, worker, (limit_raised_after_s, r.raise_the_daily_limit))
    async with r.client:
        await asyncio.wait_for(worker.run(max_batches=10), 30)
        sent = [(s.method, s.path) for s in r.org.sent]
        contacts = [c async for c in r.client.query("SELECT Email, LastName FROM Contact ORDER BY Email")]

    gaps = [b - a for a, b in zip(consumer.polled_at, consumer.polled_at[1:], strict=False)]
    assert r.clock() - consumer.polled_at[0] > MAX_POLL_INTERVAL_S  # the pause outlasted max.poll.interval...
    assert max(gaps) <= POLL_S  # ...and the consumer was polled all along, every poll_timeout_s at most
    assert consumer.pauses[0] == [(TOPIC, 0), (TOPIC, 1)]  # paused, then resumed after each pause
    assert len(consumer.resumes) == len(consumer.pauses) == 4 and consumer.paused == set()
    assert r.governor.pauses == 1 and [e.code for e in r.pauses] == [RATE_LIMIT_PAUSE]  # one entry per pause

    # the first batch commits where its carried writes start, nothing more while paused; then all
    assert sorted(consumer.commit_log) == [(0, 0), (0, 3), (1, 0), (1, 2)]
    keys = worker.producer.keys("sfsync.results")
    assert sorted(keys) == sorted({w["key"].encode() for w in writes})  # each record's result once
    assert [(c["Email"], c["LastName"]) for c in contacts] == [
        ("member0@example.org", "Second"),  # the later write of the record won: written in order
        ("member1@example.org", "Member1"),
        ("member2@example.org", "Member2"),
        ("member3@example.org", "Member3"),
    ]
    probes = len(consumer.resumes)  # the first call, then one probe after each pause
    # one refused call per pause (none per write), then the batch's match query and its create
    assert sent == [("GET", "query")] * (probes + 1) + [("POST", "composite/sobjects")]


async def test_partitions_assigned_during_a_pause_are_paused_and_a_revoked_partitions_carry_is_dropped() -> None:
    r = rig()
    writes = [member(0), member(1), member(2)]
    messages = [message(writes[0], 0, 0), message(writes[1], 1, 0)]
    consumer = FakeConsumer(messages, assigned=at([0, 1]), clock=r.clock)
    worker = worker_over(r, consumer, writes)
    r.spend_the_daily_limit()

    def rebalance() -> None:  # partition 1 goes to another sink; partition 2 (with a write) comes to this one
        consumer.rebalance(revoke=at([1]), assign=at([2]))
        consumer.messages.append(message(writes[2], 2, 0))

    consumer.on_idle = on_idle(r, worker, (100.0, rebalance), (200.0, r.raise_the_daily_limit))
    async with r.client:
        await asyncio.wait_for(worker.run(max_batches=10), 30)
        emails = sorted([c["Email"] async for c in r.client.query("SELECT Email FROM Contact")])

    assert consumer.pauses[0] == [(TOPIC, 0), (TOPIC, 1)]
    assert [(TOPIC, 2)] in consumer.pauses  # the new partition, paused once assigned
    assert sorted(consumer.resumes[0]) == [(TOPIC, 0), (TOPIC, 2)]  # the revoked one is not resumed here
    assert consumer.commits == {0: 1, 1: 0, 2: 1}  # partition 1: its new owner writes it, from offset 0
    assert emails == ["member0@example.org", "member2@example.org"]


async def test_a_governor_pause_before_a_call_carries_every_write_without_a_call_or_a_long_sleep() -> None:
    r = rig()
    h = Harness(r.emulator, r.client, r.sink, r.rec)
    r.governor.budget.observe("api-usage=950/1000", fake_utc(r.clock))  # the 10 % reserve is reached
    async with r.client:
        outcome = await h.put(campaign("evt-1"), member(1))
    assert [w.write["key"] for w in outcome.pending] == [campaign("evt-1")["key"], member(1)["key"]]
    assert outcome.budget_pause_s == pytest.approx(PAUSE_S)
    assert outcome.committed == {(TOPIC, 0): 0} and not outcome.results and not r.rec.parked
    assert r.org.sent == [] and sum(r.clock.sleeps) <= WAIT_MAX_S  # no call, no pause slept out in the batch
    assert len(r.pauses) == 1


async def test_a_daily_limit_refusal_mid_batch_makes_no_further_call_and_carries_the_rest() -> None:
    r = rig()
    h = Harness(r.emulator, r.client, r.sink, r.rec)
    async with r.client:
        await h.put(member(9))  # the governor saw a budget with room
        r.spend_the_daily_limit()  # other integrations spend the rest: the org refuses the next call
        sent = len(r.org.sent)
        outcome = await h.put(campaign("evt-1"), member(1), member(2))
    assert len(r.org.sent) - sent == 1  # the refused call, and no other call of the batch after it
    assert len(outcome.pending) == 3 and outcome.budget_pause_s == pytest.approx(PAUSE_S)
    assert not r.rec.parked and not r.sink._failing  # no write's deadline or attempts spent


async def test_time_in_a_budget_pause_is_not_counted_against_a_failing_writes_retry_deadline() -> None:
    timeout_s = 60.0
    r = rig(retry_timeout_s=timeout_s, retry_wait_initial_s=0.1, retry_wait_max_s=1.0)
    h = Harness(r.emulator, r.client, r.sink, r.rec)
    r.org.lock(lambda record: record.get("Email") == "member1@example.org")
    async with r.client:
        outcome = await h.put(member(1))
        assert outcome.pending and not r.rec.parked  # locked: retried within its deadline
        r.spend_the_daily_limit()
        outcome = await r.sink.put(outcome.pending)  # the pause starts: carried, no attempt spent
        assert outcome.budget_pause_s is not None
        r.clock.advance(outcome.budget_pause_s + 5 * timeout_s)  # the loop sat the pause out (and more)
        r.raise_the_daily_limit()
        outcome = await r.sink.put(outcome.pending)
        assert outcome.pending and not r.rec.parked  # still inside its deadline: the pause was not its time
        r.org.unlock()
        outcome = await r.sink.put(outcome.pending)
    assert not outcome.pending and [res["key"] for res in outcome.results] == [member(1)["key"]]
    assert not any(isinstance(e, RetriesExhaustedError) for _, e in r.rec.parked)


def test_the_governor_may_not_hold_a_batch_near_max_poll_interval() -> None:
    with pytest.raises(ValueError, match="budget_wait_max_s"):
        SinkSettings(max_poll_interval_ms=10_000, budget_wait_max_s=9, retry_wait_max_s=2)
    assert SinkSettings(max_poll_interval_ms=10_000, budget_wait_max_s=2, retry_wait_max_s=2).budget_wait_max_s == 2
