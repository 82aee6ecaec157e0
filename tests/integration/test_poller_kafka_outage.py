"""The poller rides out Kafka refusing to hand it an object (a broker restart: its transactional
producer or its checkpoint not reachable in time): real Kafka, registry and emulator, the refusals
injected where the poller opens an object."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningEmulator
from sfsync.errors import ServiceUnavailableError
from sfsync.mapping import load_mappings
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import Poller
from sfsync.sources.rules import Checkpoint
from tests.integration.helpers import salesforce_settings
from tests.integration.polling import MAPPING, Changes, source_settings
from tests.kit import write_mappings


async def test_the_poller_retries_taking_an_object_over_while_kafka_does_not_answer_then_polls_it(
    services: Any,
    prefix: str,
    registry: SchemaRegistry,
    running: RunningEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sfsync.sources.poller")
    ids = [running.emulator.store.create("Contact", {"LastName": f"P{n}", "Email": f"p{n}@x.test"}) for n in range(3)]
    refusals = [
        ServiceUnavailableError(f"reading checkpoints of Contact from {prefix}sfsync.poller.checkpoints: took over 30s")
        for _ in range(3)
    ]
    opened: list[Poller] = []

    def open_object(sobject: str, partition: int) -> tuple[Any, Checkpoint]:
        if refusals:
            raise refusals.pop(0)
        return opened[0]._open_object(sobject, partition)

    poller = Poller(
        source_settings(services, prefix),
        salesforce_settings(running),
        governor_settings=GovernorSettings(),
        mappings=load_mappings(write_mappings(tmp_path, MAPPING)),
        metrics=SourceMetrics(CollectorRegistry()),
        open_object=open_object,
    )
    opened.append(poller)
    changes = Changes(services, registry, prefix)
    task = asyncio.create_task(poller.run(signals=False))
    try:
        await changes.until(lambda rs: len(rs) >= len(ids) or task.done())
        assert not task.done(), "the poller stopped on a refused take-over"
        assert not refusals  # each refusal met, and ridden out
        assert sorted(r["id"] for r in changes.records) == sorted(ids)
    finally:
        poller.stop()
        await asyncio.wait_for(task, 30)
        await poller.close()
        changes.close()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "assigned object" in r.getMessage()]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]  # one per outage, not per attempt
