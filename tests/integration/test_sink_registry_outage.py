"""The sink rides out a schema-registry outage: real Kafka, the real registry behind a stand-in on its own
port (taken away and brought back; the shared registry itself is never touched), the emulator over HTTP."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningEmulator, free_port
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.sinks.main import build_runner
from sfsync.sinks.metrics import SinkMetrics
from tests.integration.helpers import caught_up, salesforce_settings, wait_until
from tests.integration.sink_runner import produce_writes, sink_settings
from tests.kit import RegistryStandIn
from tests.kit.sink import member


async def test_the_sink_waits_out_a_registry_outage_at_start_and_while_decoding_then_writes_everything(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sfsync.serde.registry")
    produce_writes(services, registry, prefix, [])  # the topics (the writes come later)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    with RegistryStandIn(free_port(), upstream=services.registry) as stand_in:
        settings = sink_settings(
            services, prefix, group, schema_registry_url=stand_in.url, schema_registry_retry_timeout_s=60
        )
        # Started while nothing listens where its registry should be: it waits instead of exiting.
        building = asyncio.create_task(
            asyncio.to_thread(
                build_runner,
                settings,
                salesforce_settings(running),
                governor_settings=GovernorSettings(),
                metrics=SinkMetrics(CollectorRegistry()),
            )
        )
        await asyncio.sleep(3)
        assert not building.done(), "the sink gave up on the registry at start"
        stand_in.start()
        runner = await asyncio.wait_for(building, 30)

        # Running: the registry goes away, then writes arrive whose schema the sink has not fetched yet.
        stand_in.stop()
        produce_writes(services, registry, prefix, [member(i) for i in range(5)])  # through the real registry
        task = asyncio.create_task(runner.run(signals=False))
        await asyncio.sleep(10)
        assert not task.done(), "the sink stopped while the registry was away"
        assert runner.results == 0
        stand_in.start()
        await wait_until(lambda: runner.results >= 5, 45, "the writes of the outage written")
        await wait_until(lambda: caught_up(services.bootstrap, group, prefix + "sfsync.writes"), 30, "committed")
        runner.stop()
        await asyncio.wait_for(task, 30)

    assert runner.parked == 0
    emails = sorted(r["Email"] for r in running.emulator.store.rows("Contact"))
    assert emails == sorted(member(i)["fields"]["Email"]["value"] for i in range(5))  # each once
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sfsync.serde.registry"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO] * 2  # one pair per outage
    assert all(text.startswith("schema registry unreachable, retrying until ") for _, text in lines[::2])
