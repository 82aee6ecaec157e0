"""The drain patch (sfsync.processors.faust_runtime.draining): a message's hand-over to its streams that
does not suspend costs no task; one that suspends finishes under Faust's race against a flow suspension,
which can still interrupt it, exactly as Faust runs it."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer

from sfsync.processors.faust_runtime.draining import Continued, hand_over
from sfsync.processors.faust_runtime.fetching import FetchTunedConsumer
from sfsync.processors.faust_runtime.recovery import SnapshotConsumer

FAUST_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"
"""faust-streaming 0.15.3's ``Consumer._drain_messages``, which ``drain_messages`` copies."""


class Race:
    """Faust's ``Service.wait_first`` as the drain loop uses it: each awaitable a task, the first to finish
    wins, the others are cancelled (and awaited, so their cancellation has run)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def __call__(self, *awaitables: Any) -> None:
        self.calls.append(awaitables)
        tasks = [asyncio.ensure_future(a) for a in awaitables]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()


async def test_a_hand_over_that_does_not_suspend_runs_to_its_end_without_the_race() -> None:
    steps: list[str] = []
    lock = asyncio.Lock()  # an uncontended lock, as the conductor takes one per message, does not suspend

    async def deliver() -> None:
        async with lock:
            steps.append("delivered")

    race = Race()
    await hand_over(deliver(), race, asyncio.Event().wait)
    assert steps == ["delivered"]
    assert race.calls == []


async def test_a_hand_over_that_suspends_finishes_under_the_race_with_the_flow_suspension() -> None:
    room = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def deliver() -> None:
        steps.append("waiting for room")
        await room
        steps.append(f"delivered after {room.result()}")

    race = Race()
    suspended = asyncio.Event()
    handing = asyncio.ensure_future(hand_over(deliver(), race, suspended.wait))
    await asyncio.sleep(0)
    assert steps == ["waiting for room"]
    room.set_result("the buffer drained")
    await handing
    assert steps == ["waiting for room", "delivered after the buffer drained"]
    ((rest, _),) = race.calls
    assert isinstance(rest, Continued)


async def test_a_flow_suspension_interrupts_a_suspended_hand_over_and_its_cleanup_runs() -> None:
    steps: list[str] = []

    async def deliver() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # a buffer that never drains
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise
        finally:
            steps.append("cleaned up")

    suspended = asyncio.Event()
    handing = asyncio.ensure_future(hand_over(deliver(), Race(), suspended.wait))
    await asyncio.sleep(0)
    suspended.set()  # a rebalance suspends the flow
    await asyncio.wait_for(handing, 5)
    assert steps == ["cancelled", "cleaned up"]


async def test_an_error_after_a_suspension_reaches_the_drain_loop() -> None:
    async def deliver() -> None:
        await asyncio.sleep(0)
        raise ValueError("a channel failed")

    with pytest.raises(ValueError, match="a channel failed"):
        await hand_over(deliver(), Race(), asyncio.Event().wait)


async def test_an_error_before_any_suspension_reaches_the_drain_loop() -> None:
    async def deliver() -> None:
        raise ValueError("no such partition")

    race = Race()
    with pytest.raises(ValueError, match="no such partition"):
        await hand_over(deliver(), race, asyncio.Event().wait)
    assert race.calls == []


async def test_a_continued_coroutine_returns_its_value_after_several_suspensions() -> None:
    async def deliver() -> str:
        for _ in range(3):
            await asyncio.sleep(0)
        return "done"

    coro = deliver()
    yielded = coro.send(None)
    assert await Continued(coro, yielded) == "done"


def test_both_apps_consumers_drain_with_the_patch_and_faust_s_loop_is_the_one_it_copies() -> None:
    for consumer in (FetchTunedConsumer, SnapshotConsumer):
        assert consumer._drain_messages is FetchTunedConsumer._drain_messages
        assert consumer._drain_messages is not FaustConsumer._drain_messages
    source = inspect.getsource(FaustConsumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest() == FAUST_DRAIN_SHA256, (
        "faust's _drain_messages changed: re-copy it into sfsync.processors.faust_runtime.draining"
    )
