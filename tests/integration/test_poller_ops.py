"""The poller in operation, on real Kafka and the emulator over HTTP: it refuses to start with
fields the org cannot give (every problem at once, nothing polled), and it writes its governor
pauses and retried Salesforce errors to ``sfsync.errors`` like the sink, then resumes and loses
nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningEmulator
from sfsync.errors import Category
from sfsync.mapping import MappingError, load_mappings
from sfsync.ops.errorlog import ErrorLogEntry, tail
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import COMPONENT, Poller
from tests.integration.helpers import salesforce_settings
from tests.integration.polling import MAPPING, Changes, admin, source_settings
from tests.integration.processes import pipeline_env, salesforce_env
from tests.kit import write_mappings

pytestmark = pytest.mark.integration

BROKEN = MAPPING.replace("{sf: Title,", "{sf: Titel,").replace("Account.Name", "Account.Nme") + (
    "      - {sf: Nickname__c, from: member.title, direction: to_product}\n"
)


def error_entries(services: Any, registry: SchemaRegistry, prefix: str) -> list[ErrorLogEntry]:
    return list(tail({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix, last=None))


async def wait_for_entries(
    services: Any, registry: SchemaRegistry, prefix: str, done: Callable[[list[ErrorLogEntry]], bool]
) -> list[ErrorLogEntry]:
    deadline = time.monotonic() + 60
    while True:
        entries = error_entries(services, registry, prefix)
        if done(entries):
            return entries
        assert time.monotonic() < deadline, [e.one_line() for e in entries]
        await asyncio.sleep(0.3)


def query_calls(running: RunningEmulator) -> int:
    return sum(n for endpoint, n in running.emulator.calls_by_endpoint.items() if "query" in endpoint.lower())


async def test_the_poller_refuses_fields_the_org_lacks_before_polling(
    services, prefix, registry, running, tmp_path
) -> None:
    path = write_mappings(tmp_path, BROKEN)
    running.emulator.store.create("Contact", {"LastName": "Ada"})
    poller = Poller(
        source_settings(services, prefix),
        salesforce_settings(running),
        governor_settings=GovernorSettings(),
        mappings=load_mappings(path),
        metrics=SourceMetrics(CollectorRegistry()),
    )
    try:
        with pytest.raises(MappingError) as caught:
            await poller.run(signals=False)
    finally:
        await poller.close()
    labels = [p.split(": ", 2)[1] for p in caught.value.problems]
    assert sorted(labels) == ["members.Account.Nme", "members.Nickname__c", "members.Titel"]
    assert "did you mean Title?" in str(caught.value)
    assert query_calls(running) == 0 and poller.report.polls == 0  # nothing polled, no INVALID_FIELD loop
    describes = [e for e in running.emulator.calls_by_endpoint if "describe" in e.lower()]
    assert describes and poller.report.api_calls == 2  # Contact and Account, once each

    # The command exits at once, listing every problem (a supervisor sees one clear failure).
    env = pipeline_env(services, prefix, SFSYNC_MAPPING_FILE=str(path), **salesforce_env(running))
    done = subprocess.run(
        [sys.executable, "-m", "sfsync.cli.main", "poller"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    for name in ("members.Titel", "members.Account.Nme", "members.Nickname__c", "3 problem(s)"):
        assert name in done.stderr
    assert query_calls(running) == 0


async def test_pauses_and_retried_errors_reach_the_error_log_and_nothing_is_lost(
    services, prefix, registry, running, tmp_path
) -> None:
    store = running.emulator.store
    ids = [store.create("Contact", {"LastName": f"R{n}", "Email": f"r{n}@acme.test"}) for n in range(3)]
    changes = Changes(services, registry, prefix)
    poller = Poller(
        source_settings(services, prefix, reconcile_interval_s=0, retry_timeout_s=1.5),
        salesforce_settings(running),
        governor_settings=GovernorSettings(reserve_ratio=0.0, pause_s=1.5, max_sleep_s=0.2),
        mappings=load_mappings(write_mappings(tmp_path, MAPPING)),
        metrics=SourceMetrics(CollectorRegistry()),
    )
    task = asyncio.create_task(poller.run(signals=False))
    try:
        await changes.until(lambda rs: len(rs) >= 3)

        # The org's daily allocation is spent: Salesforce refuses with REQUEST_LIMIT_EXCEEDED (TotalRequests).
        limits = await admin(running, "limits", {"daily_api_limit": running.emulator.api_calls})
        ids += [store.create("Contact", {"LastName": f"P{n}"}) for n in range(3)]
        entries = await wait_for_entries(
            services, registry, prefix, lambda es: any(e.code == "RATE_LIMIT_PAUSE" for e in es)
        )
        (pause,) = [e for e in entries if e.code == "RATE_LIMIT_PAUSE"]
        assert pause.category is Category.RATE_LIMIT and pause.retryable
        assert pause.details["component"] == COMPONENT and pause.details["trigger"] == "daily_limit"
        assert "REQUEST_LIMIT_EXCEEDED" in pause.message and "paused_until" in pause.details
        assert f"component={COMPONENT}" in pause.one_line()  # what `sfsync errors tail` prints
        await asyncio.sleep(2.5)  # a probe after the pause finds the limit still spent: the same pause goes on
        changes.drain()
        assert len(changes.records) == 3  # nothing read while refused
        assert [e.code for e in error_entries(services, registry, prefix)].count("RATE_LIMIT_PAUSE") == 1
        await admin(running, "limits", {"daily_api_limit": 1_000_000})
        await changes.until(lambda rs: len(rs) >= 6)

        # Salesforce unavailable for a while: the first failed poll is a WARNING (CONNECTION), the polls
        # are retried, and once they have failed for retry_timeout_s (1.5 s) one ERROR reports the outage.
        await admin(running, "faults", {"spec": "503=1"})
        ids += [store.create("Contact", {"LastName": f"U{n}"}) for n in range(2)]

        def outage_reported(es: list[ErrorLogEntry]) -> bool:
            return any(e.level == "ERROR" and e.category is Category.CONNECTION for e in es)

        await wait_for_entries(services, registry, prefix, outage_reported)
        await asyncio.sleep(1.0)  # more failed polls of the same outage: nothing more is recorded
        await admin(running, "faults", {"spec": ""})
        entries = error_entries(services, registry, prefix)
        (warning, outage) = [e for e in entries if e.category is Category.CONNECTION]
        assert (warning.level, outage.level) == ("WARNING", "ERROR")
        for entry in (warning, outage):
            assert entry.code == "SERVER_UNAVAILABLE" and entry.retryable and entry.sobject == "Contact"
            assert entry.details["component"] == COMPONENT and entry.details["http_status"] == "503"
        assert "have failed for" in outage.message and outage.details["retrying"] == "next poll"
        await changes.until(lambda rs: len(rs) >= len(ids))
        await asyncio.sleep(1.5)
        changes.drain()
        keys = [r["change_id"] for r in changes.records]
        assert len(keys) == len(set(keys)) == len(ids)  # resumed: every record once, none lost
        assert {r["id"] for r in changes.records} == set(ids)
        assert limits["daily_limit"] > 0 and poller.governor.pauses == 1
    finally:
        poller.stop()
        await task
        await poller.close()
        changes.close()
