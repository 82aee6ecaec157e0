"""The sink process in integration tests: its settings on the test's topics, a runner over the emulated
org (OAuth client credentials, its own metrics port), writes produced to ``sfsync.writes``, and waiting
until it has drained its writes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningEmulator, free_port
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.main import SinkRunner, build_runner
from sfsync.sinks.metrics import SinkMetrics
from sfsync.sinks.settings import SinkSettings
from tests.integration.helpers import caught_up, group_offsets, make_topics, salesforce_settings


def sink_settings(services: Any, prefix: str, group: str, **overrides: Any) -> SinkSettings:
    """The sink's settings on the test's topics and group, with short waits; ``overrides`` win."""
    defaults: dict[str, Any] = {
        "bootstrap_servers": services.bootstrap,
        "schema_registry_url": services.registry,
        "topic_prefix": prefix,
        "group_id": group,
        "batch_linger_s": 0.3,
        "poll_timeout_s": 0.2,
        "max_parent_waits": 1000,
        "retry_wait_initial_s": 0.01,
        "retry_wait_max_s": 0.05,
    }
    return SinkSettings(**{**defaults, **overrides})


def runner_for(
    services: Any, prefix: str, group: str, running: RunningEmulator, registry: SchemaRegistry, **governor: Any
) -> SinkRunner:
    return build_runner(
        sink_settings(services, prefix, group, batch_size=governor.pop("batch_size", 200), metrics_port=free_port()),
        salesforce_settings(running),
        governor_settings=GovernorSettings(**governor),
        registry=registry,
        metrics=SinkMetrics(CollectorRegistry()),
    )


async def drain_sink(runner: SinkRunner, bootstrap: str, group: str, writes_topic: str, timeout_s: float = 60) -> None:
    """Until the sink's results stopped growing for 3 s and its group committed every write."""
    deadline = time.monotonic() + timeout_s
    seen, since = -1, time.monotonic()
    while True:
        if runner.results != seen:
            seen, since = runner.results, time.monotonic()
        elif time.monotonic() - since >= 3 and caught_up(bootstrap, group, writes_topic):
            return
        assert time.monotonic() < deadline, (
            f"sink not drained in {timeout_s:.0f}s: results {runner.results}, "
            f"committed/end {group_offsets(bootstrap, group, writes_topic)}"
        )
        await asyncio.sleep(0.2)


def produce_writes(services: Any, registry: SchemaRegistry, prefix: str, records: list[dict[str, Any]]) -> None:
    """``records`` (Writes, e.g. from ``tests.kit.sink``) produced to the test's ``sfsync.writes``, acknowledged."""
    make_topics(services, prefix)
    topic = prefix + "sfsync.writes"
    encoder = AvroEncoder(registry, topic, load_topic_schema("sfsync.writes"))
    producer = Producer({"bootstrap.servers": services.bootstrap, "enable.idempotence": True})
    for record in records:
        producer.produce(topic, key=record["key"].encode(), value=encoder.encode("Write", record))
    assert producer.flush(30) == 0
