"""The sink owns its writes' retries: one deadline per write, across rounds and batches, then the DLQ.

The real sink core on the emulator in process; time is the kit's :class:`EpochClock`, moved by the
sink's own retry waits (and by the test, for the time between batches). Faults come from the
emulator's injection (503, the daily limit) and from :class:`FaultyOrg` (one record locked for good,
a create committed whose answer is lost).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sfsync.emulator.faults import Faults
from sfsync.emulator.server import build
from sfsync.errors import Category, Level, SfsyncError
from sfsync.ops.errorlog import category_and_code, entry_for
from sfsync.salesforce.errors import SalesforceRetriableError, classify
from sfsync.sinks.contract import BatchOutcome, IncomingWrite, RetriesExhaustedError
from sfsync.sinks.loop import dlq_parker
from tests.kit import EpochClock, FaultyOrg
from tests.kit.sink import TOPIC, Harness, Recorder, make_sink, member

TIMEOUT_S = 60.0
MEMBER1 = "member1@example.org"


@dataclass
class Faulty:
    h: Harness
    org: FaultyOrg
    clock: EpochClock

    async def put(self, *writes: dict[str, Any], carry: BatchOutcome | None = None) -> BatchOutcome:
        """One batch: the writes ``carry`` left pending, then ``writes`` read fresh (as the loop does)."""
        pending = list(carry.pending) if carry is not None else []
        return await self.h.sink.put([*pending, *self.h.incoming(*writes)])

    async def emails(self) -> list[str]:
        return sorted(str(r["Email"]) for r in await self.h.query("SELECT Id, Email FROM Contact"))


@pytest.fixture
async def f() -> AsyncIterator[Faulty]:
    emulator = build()
    rec = Recorder()
    clock = EpochClock()
    wrapped: list[FaultyOrg] = []

    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        wrapped.append(FaultyOrg(transport))
        return wrapped[0]

    client, sink = make_sink(
        emulator, rec, wrap=wrap, clock=clock, retry_timeout_s=TIMEOUT_S, retry_wait_initial_s=0.1, retry_wait_max_s=1.0
    )
    async with client:
        yield Faulty(Harness(emulator, client, sink, rec), wrapped[0], clock)


def is_member1(record: Any) -> bool:
    return record.get("Email") == MEMBER1


async def test_a_lock_that_never_clears_is_parked_after_the_retry_timeout_and_the_partition_goes_on(f: Faulty) -> None:
    f.org.lock(is_member1)
    started = f.clock.now
    outcome = await f.put(member(1), member(2))
    assert [r["key"] for r in outcome.results] == [member(2)["key"]]
    assert outcome.committed == {(TOPIC, 0): 0} and not f.h.rec.parked  # pinned at member1 while it is retried
    n = 3
    while not f.h.rec.parked:
        assert n < 100, "never parked"
        assert outcome.committed[(TOPIC, 0)] == 0
        f.clock.advance(2.0)  # the loop collects the next batch
        outcome = await f.put(member(n), carry=outcome)
        n += 1

    ((parked, error),) = f.h.rec.parked
    assert parked.write["key"] == member(1)["key"] and parked.offset == 0
    assert isinstance(error, RetriesExhaustedError)
    assert error.log_code() == error.error_code == "UNABLE_TO_LOCK_ROW"
    assert TIMEOUT_S <= error.waited_s <= TIMEOUT_S + 2.0 + 1.0  # the first failure after the deadline parks it
    assert f.clock.now - started >= TIMEOUT_S
    assert error.attempts > n - 3  # tried in every batch it was carried through, and more within them
    (entry,) = [e for e in f.h.rec.entries if e.severity == "ERROR"]
    assert entry.code == "UNABLE_TO_LOCK_ROW" and "retries ran out" in entry.message
    # its offset commits, and the later writes of the partition were written all along
    assert not outcome.pending and outcome.committed == {(TOPIC, 0): f.h.offset}
    assert await f.emails() == sorted(f"member{i}@example.org" for i in range(2, n))


async def test_a_write_whose_retries_ran_out_is_filed_under_its_last_code_in_the_error_log_and_dlq_headers() -> None:
    last = classify(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access", fields=["Email"])
    assert isinstance(last, SalesforceRetriableError)
    error = RetriesExhaustedError(last, attempts=7, waited_s=61.2, timeout_s=60)
    entry = entry_for(error)
    assert (entry.code, entry.category, entry.level) == ("UNABLE_TO_LOCK_ROW", Category.SYNC, Level.ERROR)
    assert entry.field == "Email"
    assert not entry.retryable and entry.details["retries"] == "exhausted" and entry.details["attempts"] == "7"
    assert "retries ran out" in entry.message and "unable to obtain exclusive access" in entry.message
    assert category_and_code(error) == (Category.SYNC, "UNABLE_TO_LOCK_ROW")  # the DLQ's code and category headers
    assert error.__cause__ is last

    calls: list[dict[str, Any]] = []

    def park(original: Any, reason: BaseException, **kwargs: Any) -> None:
        calls.append(kwargs)

    write = IncomingWrite(member(1), TOPIC, 0, 5, b"k", b"v")
    await dlq_parker(park)(write, error)
    assert calls[0]["attempts"] == 7 and calls[0]["field"] == "Email"


async def test_a_fault_that_clears_before_the_deadline_is_retried_by_the_sink_alone_and_written_once(f: Faulty) -> None:
    f.h.emulator.faults = Faults.parse("503=1")  # every call answers 503 SERVER_UNAVAILABLE
    first = await f.put(member(1))
    assert first.pending and first.committed == {(TOPIC, 0): 0}
    f.clock.advance(TIMEOUT_S - 10)
    second = await f.put(carry=first)
    assert second.pending and not f.h.rec.parked  # still inside its deadline: carried, not parked
    f.h.emulator.faults = Faults.parse("")
    third = await f.put(carry=second)

    assert not third.pending and not f.h.rec.parked and third.committed == {(TOPIC, 0): 1}
    assert [r["key"] for r in [*first.results, *second.results, *third.results]] == [member(1)["key"]]
    assert await f.emails() == [MEMBER1] and len(f.org.writes("POST")) == 1  # created once
    assert f.h.rec.sleeps == []  # the Salesforce client never waited or resent: one owner
    assert f.clock.sleeps  # the sink waited between its attempts


async def test_a_create_answered_503_after_salesforce_committed_it_is_matched_next_round_not_created_twice(
    f: Faulty,
) -> None:
    f.org.lose("POST", "composite/sobjects")  # the org creates the Contact, the answer is lost
    outcome = await f.put(member(1))

    assert not outcome.pending and not f.h.rec.parked
    assert len(f.org.writes("POST")) == 1  # never sent twice as a create
    assert len(f.org.writes("PATCH")) == 1  # the next round matched it by Email and updated it
    ids = [r["Id"] for r in await f.h.query(f"SELECT Id FROM Contact WHERE Email = '{MEMBER1}'")]
    assert len(ids) == 1 and [r["salesforce_id"] for r in outcome.results] == ids


async def test_the_deadline_spans_batches_a_carried_write_keeps_its_first_failure_time(f: Faulty) -> None:
    f.org.lock(lambda r: r.get("Email") in {MEMBER1, "member3@example.org"})
    first = await f.put(member(1))
    assert first.pending and not f.h.rec.parked
    f.clock.advance(TIMEOUT_S + 1)  # the time between the two batches
    second = await f.put(member(3), carry=first)

    ((parked, error),) = f.h.rec.parked  # member1 at its first failure of this batch; member3 starts its own clock
    assert parked.write["key"] == member(1)["key"] and isinstance(error, RetriesExhaustedError)
    assert error.waited_s >= TIMEOUT_S + 1 and error.attempts >= 2
    assert [w.write["key"] for w in second.pending] == [member(3)["key"]]
    assert second.committed == {(TOPIC, 0): 1}


async def test_whole_call_failures_of_an_org_that_answers_spend_the_deadline_and_a_spent_daily_limit_does_not(
    f: Faulty,
) -> None:
    emulator = f.h.emulator
    emulator.daily_limit = emulator.api_calls  # the org's allocation is spent: every call is refused
    outcome = await f.put(member(1))
    f.clock.advance(2 * TIMEOUT_S)
    outcome = await f.put(carry=outcome)
    assert outcome.pending and not f.h.rec.parked  # the governor's pause, not the write's failure

    emulator.daily_limit = 1_000_000
    f.org.reject("POST", "composite/sobjects", 503, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
    outcome = await f.put(carry=outcome)  # the org answers the match query; every create is refused
    assert outcome.pending and not f.h.rec.parked and outcome.unreachable is None  # its clock starts now
    f.clock.advance(TIMEOUT_S)
    outcome = await f.put(carry=outcome)

    ((_, error),) = f.h.rec.parked
    assert isinstance(error, SfsyncError) and error.log_code() == "SERVER_UNAVAILABLE"
    assert error.log_category() is Category.CONNECTION
    f.org.stop_rejecting()
    later = await f.put(member(2), carry=outcome)
    assert later.committed == {(TOPIC, 0): 2} and await f.emails() == ["member2@example.org"]


async def test_an_org_that_serves_no_call_spends_no_deadline_its_writes_wait_and_go_once_it_is_back(
    f: Faulty,
) -> None:
    f.h.emulator.faults = Faults.parse("503=1")  # the org is down: every call answers 503
    outcome = await f.put(member(1))
    assert outcome.pending and outcome.unreachable is not None
    assert outcome.unreachable.log_code() == "SERVER_UNAVAILABLE"
    for _ in range(80):  # down for far longer than the retry timeout, tried again and again: neither the time
        f.clock.advance(TIMEOUT_S / 4)  # between its batches nor their own retries (1 s each) count
        outcome = await f.put(carry=outcome)
        assert outcome.pending and outcome.unreachable is not None
    assert not f.h.rec.parked and outcome.committed == {(TOPIC, 0): 0}

    f.h.emulator.faults = Faults.parse("")
    outcome = await f.put(member(2), carry=outcome)
    assert not outcome.pending and outcome.unreachable is None and not f.h.rec.parked
    assert outcome.committed == {(TOPIC, 0): 2}
    assert await f.emails() == [MEMBER1, "member2@example.org"]
