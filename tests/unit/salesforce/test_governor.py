"""The API governor (guarantee 7): go, slow down, pause before the daily limit; one entry per pause."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from sfsync.errors import Category, ConfigError
from sfsync.ops.errorlog import RATE_LIMIT_PAUSE, ErrorLogEntry
from sfsync.salesforce.errors import classify
from sfsync.salesforce.governor import Action, BudgetPausedError, Governor, Policy, decide
from sfsync.salesforce.limits import ApiBudget, BudgetTracker
from tests.kit import Clock

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def make(time: Clock, **kwargs):
    tracker = BudgetTracker()
    entries: list[ErrorLogEntry] = []
    gov = Governor(tracker, clock=time, sleep=time.sleep, on_pause=entries.append, **kwargs)
    return gov, tracker, entries


def seen(time: Clock, used: int, limit: int = 1000) -> ApiBudget:
    return ApiBudget(used=used, limit=limit, observed_at=time.now)


def test_pure_decision_zones() -> None:
    policy = Policy(reserve_ratio=0.1, slow_from_ratio=0.8, pause_s=900)
    assert decide(None, T0, policy).action is Action.GO
    assert decide(ApiBudget(100, 1000, T0), T0, policy).action is Action.GO
    slow = decide(ApiBudget(750, 1000, T0), T0, policy, next_slot=T0 + dt.timedelta(seconds=30))
    assert (slow.action, slow.wait_s) == (Action.SLOW, 30.0)
    # usable = 900: the reserve of 100 calls is never touched
    paused = decide(ApiBudget(900, 1000, T0), T0, policy)
    assert (paused.action, paused.wait_s) == (Action.PAUSE, 900)
    assert "900/1000" in paused.reason
    assert decide(ApiBudget(899, 1000, T0), T0, policy).action is Action.SLOW


async def test_goes_without_waiting_below_the_slow_zone() -> None:
    time = Clock(T0)
    gov, tracker, entries = make(time)
    tracker.update(seen(time, 100))
    for _ in range(5):
        assert (await gov.before_call()).action is Action.GO
    assert time.sleeps == []
    assert entries == []


async def test_slow_zone_spreads_the_remaining_budget_over_the_window() -> None:
    time = Clock(T0)
    gov, tracker, _ = make(time)
    tracker.update(seen(time, 750))  # usable 900, 150 left -> one call per 86400/150 = 576 s
    decisions = [await gov.before_call() for _ in range(3)]
    assert {d.action for d in decisions} == {Action.SLOW}
    assert time.sleeps == [576.0, 576.0]


async def test_concurrent_callers_get_distinct_slots() -> None:
    time = Clock(T0)
    gov, tracker, _ = make(time)
    tracker.update(seen(time, 750))
    released: list[float] = []

    async def call() -> None:
        await gov.before_call()
        released.append((time.now - T0).total_seconds())

    await asyncio.gather(*(call() for _ in range(3)))
    assert sorted(released) == [0.0, 576.0, 1152.0]
    assert sorted(time.sleeps) == [576.0, 1152.0]  # each caller reserved its own slot


async def test_pauses_before_the_limit_and_reports_once_per_pause() -> None:
    time = Clock(T0)
    gov, tracker, entries = make(time, pause_s=900, max_sleep_s=60)
    tracker.update(seen(time, 900))
    probe = await gov.before_call()
    assert probe.probe and probe.action is Action.GO
    assert sum(time.sleeps) == pytest.approx(900)
    assert max(time.sleeps) <= 60
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.category, entry.code) == (Category.RATE_LIMIT, RATE_LIMIT_PAUSE)
    assert entry.details["trigger"] == "reserve"
    assert entry.details["used"] == "900"

    tracker.update(seen(time, 905))  # the probe's answer: still spent -> the same pause goes on
    time.sleeps.clear()
    assert (await gov.before_call()).probe
    assert sum(time.sleeps) == pytest.approx(900)
    assert len(entries) == 1
    assert gov.pauses == 1

    tracker.update(seen(time, 500))  # the rolling window freed calls
    assert (await gov.before_call()).action is Action.GO
    assert gov.paused_until is None
    tracker.update(seen(time, 950))
    time.sleeps.clear()
    await gov.before_call()
    assert len(entries) == 2


async def test_one_probe_at_a_time_after_a_pause() -> None:
    time = Clock(T0)
    gov, tracker, _ = make(time, pause_s=100, max_sleep_s=100)
    tracker.update(seen(time, 900))
    assert (await gov.before_call()).probe
    time.sleeps.clear()
    # no answer to the first probe yet: a second caller waits (bounded), then probes again
    assert (await gov.before_call()).probe
    assert sum(time.sleeps) == pytest.approx(30)


async def test_daily_limit_response_pauses_for_retry_after_even_if_the_budget_looked_fine() -> None:
    time = Clock(T0)
    gov, tracker, entries = make(time, pause_s=900, max_sleep_s=600)
    tracker.update(seen(time, 10))  # stale and optimistic
    error = classify(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", retry_after=120)
    gov.on_daily_limit(error)
    gov.on_daily_limit(error)  # a second refusal during the same pause: no second entry
    assert len(entries) == 1
    assert entries[0].details["trigger"] == "daily_limit"
    assert "daily API limit" in entries[0].message
    decision = await gov.before_call()
    assert decision.probe
    assert sum(time.sleeps) == pytest.approx(120)


async def test_a_bounded_caller_is_told_how_long_a_pause_lasts_instead_of_sleeping_it() -> None:
    # The sink and the poller must keep serving Kafka during a pause: they bound their wait.
    time = Clock(T0)
    gov, tracker, entries = make(time, pause_s=900)
    tracker.update(seen(time, 900))
    with pytest.raises(BudgetPausedError) as paused:
        await gov.before_call(wait_max_s=10)
    assert paused.value.retry_after == 900 and time.sleeps == []
    assert len(entries) == 1 and gov.pause_left_s() == 900  # the pause started, reported once
    time.advance(600)
    with pytest.raises(BudgetPausedError) as again:
        await gov.before_call(wait_max_s=10)
    assert again.value.retry_after == 300 and len(entries) == 1
    time.advance(295)
    assert (await gov.before_call(wait_max_s=10)).probe  # the last 5 s fit the bound: waited, then a probe
    assert time.sleeps == [5.0]


async def test_a_bounded_caller_does_not_take_a_slow_zone_slot_it_cannot_wait_for() -> None:
    time = Clock(T0)
    gov, tracker, _ = make(time)
    tracker.update(seen(time, 750))  # one call per 576 s
    assert (await gov.before_call(wait_max_s=10)).action is Action.SLOW
    with pytest.raises(BudgetPausedError) as held:
        await gov.before_call(wait_max_s=10)
    assert held.value.retry_after == 576 and time.sleeps == []
    time.advance(576)
    assert (await gov.before_call(wait_max_s=10)).action is Action.SLOW  # its slot was kept for it
    assert time.sleeps == []


def test_pause_left_starts_the_pause_a_spent_budget_calls_for() -> None:
    # A caller refused for the daily limit stops calling and asks how long to stay away: the pause
    # starts then, so it finds the pause over when it comes back (not a second pause starting then).
    time = Clock(T0)
    gov, tracker, entries = make(time, pause_s=300)
    assert gov.pause_left_s() is None
    tracker.update(seen(time, 1000))
    assert gov.pause_left_s() == 300 and len(entries) == 1
    time.advance(300)
    assert gov.pause_left_s() is None  # over: the next call is the probe


def test_every_invalid_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Governor(BudgetTracker(), reserve_ratio=1.5, pause_s=0)
    assert len(info.value.problems) == 2
    assert "reserve_ratio" in str(info.value)
    assert "pause_s" in str(info.value)
