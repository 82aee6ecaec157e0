"""The sink worker through a Kafka outage: a commit refused while the group coordinator loads (a broker
restart) or while the broker is away leaves the offsets uncommitted, the worker goes on and commits them
later; only a streak of faults longer than ``kafka_retry_timeout_s`` stops it.

librdkafka's errors come from the kit's fake consumer as real ``KafkaException`` values, through sfsync's
``KafkaConsumer`` wrapper (their translation is part of what is tested)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError

from sfsync.emulator.server import build
from sfsync.errors import RetriableError
from sfsync.kafka.clients import KafkaConsumer
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.loop import SinkWorker
from sfsync.sinks.settings import SinkSettings
from tests.kit import EpochClock, FakeConsumer, FakeProducer, kafka_exception
from tests.kit.sink import ByKey, Recorder, make_sink, member, message

TRANSIENT = [
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,  # right after a broker restart
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TRANSPORT,  # the broker away
    KafkaError.UNKNOWN_MEMBER_ID,  # the group moved on: the partitions come back (or go) at the next poll
]


def worker_over(fake: FakeConsumer, writes: list[dict[str, Any]], clock: EpochClock, **settings: Any) -> Any:
    rec = Recorder()
    client, sink = make_sink(build(), rec, max_parent_waits=50)

    async def on_parked(write: IncomingWrite, error: Any) -> None:
        raise AssertionError(f"parked {write.write['key']}: {error}")

    worker = SinkWorker(
        sink,
        settings=SinkSettings(batch_size=2, batch_linger_s=0.01, poll_timeout_s=0.5, **settings),
        consumer=KafkaConsumer(fake, "consumer of group sink"),  # type: ignore[arg-type]
        producer=FakeProducer(),
        decoder=ByKey({w["key"].encode(): w for w in writes}),
        encoder=ByKey({}),
        identity_encoder=ByKey({}),
        on_parked=on_parked,
        clock=clock,
        sleep=clock.sleep,
    )
    return client, worker


@pytest.mark.parametrize("code", TRANSIENT, ids=[KafkaError(c).name() for c in TRANSIENT])
async def test_a_commit_refused_by_a_restarting_broker_is_made_later_and_the_worker_goes_on(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sfsync.sinks.loop")
    writes = [member(i) for i in range(4)]
    clock = EpochClock()
    fake = FakeConsumer([message(w, 0, n) for n, w in enumerate(writes)], clock=clock)
    fake.commit_fails = [kafka_exception(code, f"Commit failed: {KafkaError(code).str()}")] * 3
    client, worker = worker_over(fake, writes, clock)

    def stop_once_committed() -> None:
        if not worker._commit_owed and fake.commits:
            worker.stopping.set()

    fake.on_idle = stop_once_committed
    async with client:
        await asyncio.wait_for(worker.run(max_batches=20), 30)

    assert not fake.commit_fails  # the three refusals were met, and ridden out
    assert fake.commits == {0: 4}  # every write committed in the end, by a later commit
    assert len(worker.producer.keys("sfsync.results")) == 4  # each write's result once: nothing replayed in-process
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sfsync.sinks.loop"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]  # one per outage, not per attempt
    assert lines[0][1].startswith("Kafka: committing offsets failed, retrying for up to 120s")


async def test_commits_refused_for_longer_than_the_deadline_stop_the_worker_with_the_last_error() -> None:
    writes = [member(i) for i in range(2)]
    clock = EpochClock()
    fake = FakeConsumer([message(w, 0, n) for n, w in enumerate(writes)], clock=clock)
    fake.commit_fails = [kafka_exception(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "Coordinator load in progress")] * 100
    client, worker = worker_over(fake, writes, clock, kafka_retry_timeout_s=10)
    async with client:
        with pytest.raises(RetriableError, match="COORDINATOR_LOAD_IN_PROGRESS"):
            await asyncio.wait_for(worker.run(max_batches=100), 30)
    assert fake.commits == {}  # nothing committed: the writes replay after the restart
    assert 10 <= clock.now - min(fake.polled_at) <= 12  # it tried for the deadline (idle polls move the clock)
