"""The sink process end to end: real Kafka + registry, the emulator over real HTTP (OAuth client credentials)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sfsync.emulator.server import RunningEmulator
from sfsync.errors import Category
from sfsync.ops.dlq import DeadLetterQueue
from sfsync.ops.errorlog import tail
from sfsync.salesforce import SalesforceClient, SalesforceSettings, StaticTokenAuth
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.main import build_runner
from sfsync.sinks.metrics import SinkMetrics
from tests.integration.helpers import (
    committed,
    consume_all,
    group_members,
    make_topics,
    salesforce_settings,
    wait_until,
)
from tests.integration.sink_runner import runner_for, sink_settings
from tests.kit.sink import campaign, fv, member, registration, write


def produce(services: Any, registry: SchemaRegistry, prefix: str, records: list[dict[str, Any]]) -> None:
    make_topics(services, prefix)
    topic = prefix + "sfsync.writes"
    encoder = AvroEncoder(registry, topic, load_topic_schema("sfsync.writes"))
    producer = Producer({"bootstrap.servers": services.bootstrap, "enable.idempotence": True})
    for record in records:
        producer.produce(topic, key=record["key"].encode(), value=encoder.encode("Write", record))
    assert producer.flush(30) == 0


async def org_query(running: RunningEmulator, soql: str) -> list[dict[str, Any]]:
    token = running.emulator.auth.issue_session().access_token
    settings = SalesforceSettings(
        instance_url=running.base_url, auth_flow="access_token", access_token=SecretStr(token)
    )
    auth = StaticTokenAuth(access_token=SecretStr(token), instance_url=running.base_url)
    async with SalesforceClient(settings, auth=auth) as client:
        return [r async for r in client.query(soql)]


async def until(condition: Callable[[], bool], timeout_s: float = 45) -> None:
    await wait_until(condition, timeout_s, "condition met", 0.1)


async def test_the_sink_process_writes_the_org_publishes_results_parks_logs_and_serves_metrics(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator
) -> None:
    bad = write("ws-1|Contact:Email:bad@x.org", "Contact", {"Email": fv("bad@x.org")}, match=[("Email", "bad@x.org")])
    records = [*(member(i) for i in range(10)), campaign("evt-1"), registration("evt-1", "member1@example.org"), bad]
    produce(services, registry, prefix, records)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    runner = runner_for(services, prefix, group, running, registry)
    task = asyncio.create_task(runner.run(signals=False, idle_exit_s=60))
    await until(lambda: runner.results >= 12 and runner.parked >= 1)
    assert runner.metrics_server is not None
    async with httpx.AsyncClient() as http:
        exposed = (await http.get(f"http://127.0.0.1:{runner.metrics_server.port}/metrics")).text
    runner.stop()
    report = await asyncio.wait_for(task, 30)

    assert report.results == 12 and report.parked == 1 and report.auth_failures == 0
    assert len(await org_query(running, "SELECT Id FROM Contact")) == 10
    assert len(await org_query(running, "SELECT Id FROM CampaignMember")) == 1
    assert committed(services.bootstrap, group, prefix + "sfsync.writes") == len(records)

    decoder = AvroDecoder(registry)
    results = [decoder.decode(m.value()) for m in consume_all(services.bootstrap, [prefix + "sfsync.results"], 12)]
    assert {name for name, _ in results} == {"WriteResult"}
    assert {r["key"] for _, r in results} == {r["key"] for r in records if r is not bad}

    kafka = {"bootstrap.servers": services.bootstrap}
    parked = DeadLetterQueue(kafka, prefix=prefix).list_parked()
    assert len(parked) == 1
    ctx = parked[0].context
    assert parked[0].key == bad["key"].encode() and decoder.decode(parked[0].value or b"")[1]["key"] == bad["key"]
    assert (ctx.topic, ctx.mapping, ctx.field, ctx.code) == (
        prefix + "sfsync.writes",
        "members",
        "LastName",
        "REQUIRED_FIELD_MISSING",
    )
    assert ctx.stage == "TASK_PUT" and ctx.offset >= 0

    entries = list(tail(kafka, registry, prefix=prefix, last=None))
    about_bad = [e for e in entries if e.record_key == bad["key"]]
    assert len(about_bad) == 1  # logged once (by the DLQ), not again by the sink's own entry
    entry = about_bad[0]
    assert (entry.category, entry.mapping, entry.field, entry.code) == (
        Category.SYNC,
        "members",
        "LastName",
        "REQUIRED_FIELD_MISSING",
    )
    assert entry.source is not None and entry.source.offset == ctx.offset

    assert 'sfsync_writes_total{outcome="created",sobject="Contact"} 10.0' in exposed
    assert 'sfsync_writes_total{outcome="parked",sobject="Contact"} 1.0' in exposed
    assert 'sfsync_salesforce_api_calls_total{endpoint="composite/sobjects"}' in exposed
    assert "sfsync_salesforce_api_usage_ratio " in exposed and "sfsync_batch_size_count" in exposed
    assert "sfsync_end_to_end_latency_seconds_count" in exposed
    for partition in range(6):  # lag of every partition of sfsync.writes, the empty ones too: all caught up
        assert f'sfsync_consumer_lag{{partition="{partition}",topic="{prefix}sfsync.writes"}} 0.0' in exposed
    calls = running.emulator.api_calls
    assert report.api_calls <= calls  # every call counted came from this sink (the org also saw the test's)


async def test_a_spent_daily_limit_pauses_the_sink_logs_rate_limit_and_commits_nothing_unwritten(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator
) -> None:
    produce(services, registry, prefix, [member(i) for i in range(20)])
    group = f"sink-{uuid.uuid4().hex[:8]}"
    first = runner_for(services, prefix, group, running, registry, batch_size=5)
    await asyncio.wait_for(first.run(signals=False, max_batches=1), 60)
    written = len(await org_query(running, "SELECT Id FROM Contact"))
    assert 0 < written <= 5
    assert committed(services.bootstrap, group, prefix + "sfsync.writes") == written

    # other integrations spend the rest of the day's allocation; the sink restarts and does not know
    running.emulator.daily_limit = running.emulator.api_calls
    second = runner_for(services, prefix, group, running, registry, batch_size=5, pause_s=120)
    task = asyncio.create_task(second.run(signals=False))
    await until(lambda: second.governor.pauses >= 1)
    await asyncio.sleep(0.5)  # the sink keeps waiting (it is paused, not spinning or crashing)
    assert not task.done()
    second.stop()
    report = await asyncio.wait_for(task, 30)

    assert report.results == 0 and report.governor_pauses == 1
    assert running.emulator.store.count("Contact") == written  # (an API query would be refused now)
    assert committed(services.bootstrap, group, prefix + "sfsync.writes") == written
    kafka = {"bootstrap.servers": services.bootstrap}
    limits = list(tail(kafka, registry, prefix=prefix, last=None, category=Category.RATE_LIMIT))
    assert [(e.code, e.details.get("trigger")) for e in limits] == [("RATE_LIMIT_PAUSE", "daily_limit")]


async def test_a_refused_login_logs_a_connection_entry_pauses_and_commits_nothing(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator
) -> None:
    produce(services, registry, prefix, [member(i) for i in range(3)])
    group = f"sink-{uuid.uuid4().hex[:8]}"
    settings = salesforce_settings(running).model_copy(update={"client_secret": SecretStr("wrong")})
    runner = build_runner(
        sink_settings(services, prefix, group, metrics_port=0),
        settings,
        governor_settings=GovernorSettings(auth_pause_s=0.2, auth_pause_max_s=0.4),
        registry=registry,
        metrics=SinkMetrics(CollectorRegistry()),
    )
    task = asyncio.create_task(runner.run(signals=False))
    await until(lambda: runner.auth_failures >= 3)
    assert not task.done()  # paused and tried again: no crash loop
    runner.stop()
    report = await asyncio.wait_for(task, 30)

    assert report.results == 0 and running.emulator.store.count("Contact") == 0
    assert committed(services.bootstrap, group, prefix + "sfsync.writes") == 0
    kafka = {"bootstrap.servers": services.bootstrap}
    entries = list(tail(kafka, registry, prefix=prefix, last=None, category=Category.CONNECTION))
    assert len(entries) >= 3 and {e.code for e in entries} == {"AUTH_FAILED"}


def test_governor_settings_report_every_problem_at_once() -> None:
    from sfsync.errors import ConfigError
    from sfsync.salesforce.governor import load_governor_settings

    with pytest.raises(ConfigError) as caught:
        load_governor_settings(reserve_ratio=1.5, slow_from_ratio=-1, pause_s=0)
    assert len(caught.value.problems) == 3


def test_an_auth_pause_longer_than_the_poll_interval_is_refused(
    services: Any, prefix: str, running: RunningEmulator
) -> None:
    # (A budget pause is not slept out inside a batch, so SFSYNC_GOVERNOR_PAUSE_S may be longer.)
    from sfsync.errors import ConfigError

    with pytest.raises(ConfigError, match="AUTH_PAUSE_MAX_S"):
        build_runner(
            sink_settings(services, prefix, "g", max_poll_interval_ms=60_000),
            salesforce_settings(running),
            governor_settings=GovernorSettings(pause_s=120, auth_pause_max_s=120),
            metrics=SinkMetrics(CollectorRegistry()),
        )


async def test_a_budget_pause_past_max_poll_interval_keeps_the_sink_in_its_group_and_it_writes_after(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator
) -> None:
    # The org's usable budget is spent (95 % of the allocation used, 10 % kept in reserve): the
    # governor pauses and probes, each probe answered, the budget still spent. A batch that needs
    # several calls (Contacts, Campaigns, then their CampaignMembers) would sit a pause per call.
    records = [*(member(i) for i in range(6)), campaign("evt-1"), campaign("evt-2")]
    records += [registration("evt-1", "member1@example.org"), registration("evt-2", "member2@example.org")]
    make_topics(services, prefix)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    writes = prefix + "sfsync.writes"
    metrics = SinkMetrics(CollectorRegistry())
    runner = build_runner(
        sink_settings(
            services, prefix, group, max_poll_interval_ms=10_000, session_timeout_ms=6_000, budget_wait_max_s=2
        ),
        salesforce_settings(running),
        governor_settings=GovernorSettings(pause_s=5, auth_pause_s=1, auth_pause_max_s=5),
        registry=registry,
        metrics=metrics,
    )
    task = asyncio.create_task(runner.run(signals=False))
    try:
        await until(lambda: runner.org_checked)  # the mappings checked against the org: the sink joins its group
        running.emulator.usage.set(daily_limit=10_000, used=9_500)
        produce(services, registry, prefix, records)
        await until(lambda: runner.governor.pauses >= 1)
        await asyncio.sleep(15)  # the budget stays spent past max.poll.interval.ms (10 s)
        assert not task.done()
        assert await asyncio.to_thread(group_members, services.bootstrap, group) == ("STABLE", 1)
        assert committed(services.bootstrap, group, writes) < len(records)

        running.emulator.usage.set(daily_limit=1_000_000)  # the rolling window freed calls
        await until(lambda: runner.results >= len(records))
        await until(lambda: committed(services.bootstrap, group, writes) == len(records))
    finally:
        runner.stop()
        report = await asyncio.wait_for(task, 30)

    assert report.results == len(records) and report.governor_pauses == 1
    for sobject, count in (("Contact", 6), ("Campaign", 2), ("CampaignMember", 2)):  # each written once
        assert len(await org_query(running, f"SELECT Id FROM {sobject}")) == count
    assert metrics.registry.get_sample_value("sfsync_sink_budget_paused") == 0
    kafka = {"bootstrap.servers": services.bootstrap}
    limits = list(tail(kafka, registry, prefix=prefix, last=None, category=Category.RATE_LIMIT))
    assert [(e.code, e.details.get("trigger")) for e in limits] == [("RATE_LIMIT_PAUSE", "reserve")]
