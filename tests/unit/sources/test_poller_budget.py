"""What the poller spends on an idle org, and how it meets the API governor's pause.

An idle day runs on a fake clock against the emulator (in process): the object's polls at the pace
:meth:`ObjectPoller.schedule` sets, the delete log and the reconciliations they trigger, every API
call counted at the transport. The figure held to is the one ``sources/settings.py`` states.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from sfsync.emulator.app import Emulator
from sfsync.emulator.server import build
from sfsync.salesforce import BudgetTracker, SalesforceClient, SalesforceSettings, StaticTokenAuth
from sfsync.salesforce.governor import BudgetPausedError, Governor
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import ObjectPoller, partition_for
from sfsync.sources.settings import SourceSettings
from tests.kit import Clock, FaultyOrg

INSTANCE = "https://127.0.0.1"
DAY_S = 86_400.0
START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


class Transactions:
    """Stands for the transactional producer: counts the transactions committed."""

    def __init__(self) -> None:
        self.commits = 0

    def commit(self, records: list[Any]) -> None:
        self.commits += 1

    def close(self) -> None:
        pass


def org_with_contacts(clock: Clock, count: int) -> Emulator:
    """The org with ``count`` Contacts, the last one modified a minute before the clock's time, a second apart."""
    emulator = build(clock=clock)
    now = clock.now
    for n in range(count):
        clock.now = now - dt.timedelta(seconds=60 + count - n)
        emulator.store.create("Contact", {"LastName": f"Member{n}", "FirstName": "F"})
    clock.now = now
    return emulator


def object_poller(
    emulator: Emulator, clock: Clock, settings: SourceSettings, governor_pause_s: float = 300.0
) -> tuple[ObjectPoller, SalesforceClient, FaultyOrg]:
    token = emulator.auth.issue_session().access_token
    org = FaultyOrg(httpx.ASGITransport(app=emulator.asgi()))  # no fault: it records every request
    budget = BudgetTracker()
    client = SalesforceClient(
        SalesforceSettings(instance_url=INSTANCE, auth_flow="access_token", access_token=SecretStr(token)),
        auth=StaticTokenAuth(access_token=SecretStr(token), instance_url=INSTANCE),
        transport=org,
        budget=budget,
    )
    governor = Governor(budget, pause_s=governor_pause_s, clock=clock, sleep=clock.sleep)
    poller = ObjectPoller(
        core.ObjectPlan("Contact", ("FirstName", "LastName")),
        core.Checkpoint("Contact"),
        settings=settings,
        client=client,
        governor=governor,
        transactions=Transactions(),  # type: ignore[arg-type]
        encode=orjson.dumps,
        metrics=SourceMetrics(CollectorRegistry()),
        checkpoint_partition=partition_for("Contact", settings.checkpoint_partitions),
        clock=clock,
    )
    return poller, client, org


async def idle_day_calls(contacts: int) -> tuple[int, int]:
    """(API calls, polls) of one idle day of the default settings, after a first poll read ``contacts``."""
    clock = Clock(START)
    emulator = org_with_contacts(clock, contacts)
    settings = SourceSettings()  # the defaults under test
    poller, client, org = object_poller(emulator, clock, settings)
    elapsed = 0.0  # the loop's time.monotonic, on the fake clock
    async with client:
        assert await poller.poll_once() == contacts  # the first read: every record once
        poller.schedule(True, elapsed)
        before, polls = len(org.sent), 0
        while poller.next_due < DAY_S:
            clock.advance(poller.next_due - elapsed)
            elapsed = poller.next_due
            assert await poller.poll_once() == 0  # idle: nothing changes in the org
            poller.schedule(False, elapsed)
            polls += 1
    return len(org.sent) - before, polls


async def test_an_idle_poller_spends_the_stated_calls_a_day() -> None:
    # 4,500 Contacts: a reconciliation reads 3 pages of ids. Stated: 1,440 polls + 144 delete-log
    # reads + 4 reconciliations x 3 pages = 1,596 calls a day.
    calls, polls = await idle_day_calls(4_500)
    ramp = 6  # polls 1, 2, 4 ... 32 s apart before the idle interval of 60 s is reached
    assert polls <= DAY_S / 60 + ramp
    assert 1_596 - 2 <= calls <= 1_596 + ramp  # every part ran, and nothing more


async def test_a_governor_pause_ends_a_poll_at_once_without_a_call_or_a_sleep() -> None:
    # The poller's loop must keep serving its checkpoint group (consumer.poll) through a pause of
    # pause_s (300 s, librdkafka's max.poll.interval.ms by default): no poll may sleep it out.
    clock = Clock(START)
    emulator = org_with_contacts(clock, 3)
    poller, client, org = object_poller(emulator, clock, SourceSettings(), governor_pause_s=300)
    poller.governor.budget.observe("api-usage=950/1000")  # the 10 % reserve is reached
    async with client:
        with pytest.raises(BudgetPausedError) as paused:
            await poller.poll_once()
    assert org.sent == [] and clock.sleeps == []
    assert paused.value.retry_after == pytest.approx(300)
    assert poller.governor.pause_left_s() == pytest.approx(300)
    poller.schedule(False, 10.0, not_before_s=poller.governor.pause_left_s())
    assert poller.next_due == pytest.approx(310)  # the next poll is due when the pause ends


async def test_a_changed_object_is_polled_again_after_the_base_interval() -> None:
    poller, client, _ = object_poller(org_with_contacts(Clock(START), 0), Clock(START), SourceSettings())
    await client.aclose()
    for _ in range(10):
        poller.schedule(False, 0.0)
    assert poller.interval_s == 60.0  # the idle interval: what bounds the latency after a quiet spell
    poller.schedule(True, 100.0)
    assert (poller.interval_s, poller.next_due) == (1.0, 101.0)
