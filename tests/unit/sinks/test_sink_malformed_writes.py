"""A record of ``sfsync.writes`` that decodes but lacks what the sink needs (a key, an object, a
write id: another producer's record) is parked with MALFORMED_WRITE, and the worker goes on with
the next records instead of stopping on it (and again after every restart)."""

from __future__ import annotations

import asyncio
from typing import Any

from sfsync.emulator.server import build
from sfsync.ops.errorlog import category_and_code
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.loop import MalformedWriteError, SinkWorker
from sfsync.sinks.settings import SinkSettings
from tests.kit import FakeConsumer, FakeProducer
from tests.kit.sink import ByKey, Recorder, make_sink, member, message


async def test_a_write_without_its_object_is_parked_and_the_next_writes_are_done() -> None:
    broken = {k: v for k, v in member(1).items() if k != "sobject"}
    writes = [broken, member(2), member(3)]
    consumer, producer = FakeConsumer([message(w, 0, n) for n, w in enumerate(writes)]), FakeProducer()
    rec = Recorder()
    parked: list[tuple[IncomingWrite, Any]] = []
    client, sink = make_sink(build(), rec)
    settings = SinkSettings(batch_size=10, batch_linger_s=0.01, poll_timeout_s=0.01)

    async def on_parked(write: IncomingWrite, error: Any) -> None:
        parked.append((write, error))

    async def no_sleep(seconds: float) -> None:
        pass

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
        consumer.on_idle = worker.stopping.set
        await asyncio.wait_for(worker.run(max_batches=5), 30)

    [(write, error)] = parked
    assert write.offset == 0 and isinstance(error, MalformedWriteError)
    assert "sobject" in str(error) and category_and_code(error)[1] == "MALFORMED_WRITE"
    assert len(producer.keys("sfsync.results")) == 2  # the two good writes' results
    assert consumer.commits == {0: 3}  # past the parked record
