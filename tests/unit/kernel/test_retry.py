"""The retry policy (sfsync/retry.py): the backoff, the deadline, and stamina configured from it."""

from __future__ import annotations

import random

import pytest
import stamina

from sfsync.errors import FatalError, RetriableError
from sfsync.retry import RetryPolicy, retry_after
from tests.kit import EpochClock


def test_the_backoff_grows_from_the_initial_wait_to_the_maximum_with_bounded_jitter() -> None:
    policy = RetryPolicy(timeout_s=900, wait_initial_s=0.5, wait_max_s=10, wait_jitter_s=0.5)
    rng = random.Random(7)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)]:
        for _ in range(50):
            assert base <= policy.backoff(attempt, rng) <= min(10.0, base + 0.5)
    assert all(policy.backoff(n, rng) == 10.0 for n in (6, 20, 5000))  # capped, never overflowing
    assert RetryPolicy(timeout_s=1, wait_initial_s=0.2).jitter_s == 0.2  # jitter defaults to the first wait


def test_a_retry_after_longer_than_the_backoff_is_honoured_even_past_the_maximum() -> None:
    policy = RetryPolicy(timeout_s=900, wait_initial_s=0.5, wait_max_s=10)
    asked = RetriableError("busy", retry_after=42.0)
    assert policy.delay(1, asked) == 42.0
    assert 0.5 <= policy.delay(1, RetriableError("busy", retry_after=0.1)) <= 1.0
    assert 0.5 <= policy.delay(1, FatalError("no")) <= 1.0  # only a retriable error's retry_after counts
    assert retry_after(RetriableError("x")) is None and retry_after(None) is None


def test_the_deadline_counts_from_the_first_failure_on_the_callers_clock() -> None:
    clock = EpochClock()
    policy = RetryPolicy(timeout_s=60)
    first = clock()
    clock.advance(59.9)
    assert not policy.expired(first, clock())
    clock.advance(0.1)
    assert policy.expired(first, clock()) and policy.deadline(first) == first + 60


def test_a_policy_that_cannot_work_is_refused_with_every_problem() -> None:
    with pytest.raises(ValueError, match=r"timeout_s must be > 0.*wait_max_s .* must be >= wait_initial_s"):
        RetryPolicy(timeout_s=0, wait_initial_s=2, wait_max_s=1)


def test_the_stamina_hook_retries_the_retriable_honours_retry_after_and_refuses_what_cannot_fit() -> None:
    policy = RetryPolicy(timeout_s=30, wait_initial_s=0.5, wait_max_s=5)
    hook = policy.stamina(RetriableError, unless=(KeyError,), waited_elsewhere=(TimeoutError,))["on"]
    assert hook(RetriableError("lock")) is True  # stamina's own jittered backoff
    assert hook(RetriableError("limit", retry_after=5.0)) == 5.0
    assert hook(RetriableError("now", retry_after=0.0)) == 0.5  # never a busy loop
    assert hook(RetriableError("tomorrow", retry_after=3600.0)) is False  # longer than the whole deadline
    assert hook(FatalError("config")) is False and hook(ValueError("bug")) is False

    class PausedError(RetriableError, TimeoutError):
        pass

    assert hook(PausedError("the governor waits this out", retry_after=3600.0)) is True
    args = policy.stamina()
    assert (args["attempts"], args["timeout"], args["wait_initial"], args["wait_max"]) == (None, 30, 0.5, 5)


async def test_a_one_off_call_is_retried_by_stamina_until_it_succeeds_and_a_fatal_error_is_raised_at_once() -> None:
    policy = RetryPolicy(timeout_s=5, wait_initial_s=0.001, wait_max_s=0.002)
    calls = {"flaky": 0, "fatal": 0}

    async def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RetriableError("try again")
        return "ok"

    async def fatal() -> None:
        calls["fatal"] += 1
        raise FatalError("bad credentials")

    async def once(call: object) -> object:
        async for attempt in stamina.retry_context(**policy.stamina()):
            with attempt:
                return await call()  # type: ignore[operator]
        raise AssertionError("unreachable")

    assert await once(flaky) == "ok" and calls["flaky"] == 3
    with pytest.raises(FatalError):
        await once(fatal)
    assert calls["fatal"] == 1


async def test_a_one_off_call_that_keeps_failing_raises_its_last_error_at_the_deadline() -> None:
    policy = RetryPolicy(timeout_s=0.05, wait_initial_s=0.005, wait_max_s=0.01)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise RetriableError(f"down #{calls}")

    async def with_retries() -> None:
        async for attempt in stamina.retry_context(**policy.stamina()):
            with attempt:
                await down()

    with pytest.raises(RetriableError) as caught:
        await with_retries()
    assert calls > 1 and str(caught.value) == f"down #{calls}"
