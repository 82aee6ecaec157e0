"""When a batch goes to Salesforce: under load it fills to ``batch_size``; at low rates it goes ``batch_linger_s``
after its first write (fake Kafka clients and a fake clock the consumer moves on while it waits)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from sfsync.sinks.contract import BatchOutcome, IncomingWrite
from sfsync.sinks.loop import SinkWorker
from sfsync.sinks.settings import SinkSettings
from tests.kit import EpochClock, FakeConsumer, FakeProducer
from tests.kit.sink import ByKey, member, message

LINGER_S, MAX_AGE_S = 0.3, 2.0


class TimedSink:
    """A sink that writes everything at once, and notes when each batch reached it and how large it was."""

    def __init__(self, clock: EpochClock) -> None:
        self.clock = clock
        self.started = clock()
        self.batches: list[tuple[float, int]] = []

    async def put(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        self.batches.append((self.clock() - self.started, len(writes)))
        return BatchOutcome(results=[{"key": w.write["key"]} for w in writes])


async def run(messages: list[Any], writes: list[dict[str, Any]], batch_size: int) -> TimedSink:
    clock = EpochClock()
    consumer = FakeConsumer(messages, clock=clock)
    sink = TimedSink(clock)
    settings = SinkSettings(
        batch_size=batch_size, batch_linger_s=LINGER_S, batch_max_age_s=MAX_AGE_S, poll_timeout_s=1.0
    )

    async def on_parked(write: IncomingWrite, error: Any) -> None:
        raise AssertionError(f"parked {write.write['key']}: {error}")

    worker = SinkWorker(
        sink,
        settings=settings,
        consumer=consumer,
        producer=FakeProducer(),
        decoder=ByKey({w["key"].encode(): w for w in writes}),
        encoder=ByKey({w["key"]: w["key"].encode() for w in writes}),
        identity_encoder=ByKey({}),
        on_parked=on_parked,
        clock=clock,
        sleep=clock.sleep,
    )
    consumer.on_idle = lambda: worker.stopping.set() if not consumer.messages else None
    await asyncio.wait_for(worker.run(max_batches=10), 10)
    return sink


async def test_at_a_low_rate_a_batch_goes_its_linger_after_its_first_write_not_after_a_whole_poll_timeout() -> None:
    # consume(n) waits its whole timeout (1 s here) for fewer than n writes: the first is waited for alone
    writes = [member(1)]
    sink = await run([message(writes[0], 0, 0)], writes, batch_size=400)
    assert sink.batches == [(pytest.approx(LINGER_S), 1)]


async def test_under_load_a_batch_fills_to_batch_size_without_waiting() -> None:
    writes = [member(i) for i in range(10)]
    sink = await run([message(w, 0, n) for n, w in enumerate(writes)], writes, batch_size=4)
    assert sink.batches[:2] == [(0.0, 4), (0.0, 4)]  # full at once: no linger
    assert sink.batches[2] == (pytest.approx(LINGER_S), 2)  # the rest: partial, after the linger


def test_a_linger_longer_than_the_max_age_is_refused_with_both_names() -> None:
    with pytest.raises(ValueError, match="batch_max_age_s must be >= batch_linger_s"):
        SinkSettings(batch_linger_s=5.0, batch_max_age_s=1.0)
