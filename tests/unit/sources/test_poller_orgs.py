"""Many orgs in one poller (issue 13): fair turns on the fake clock (a busy org beside 50 idle ones), a down org
or one whose login is refused held apart while the others keep their pace, checkpoints keyed per connection,
and which orgs a replica polls."""

from __future__ import annotations

import asyncio
import itertools

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sfsync.errors import Category, Level
from sfsync.ops.errorlog import ErrorLogEntry
from sfsync.salesforce import SalesforceSettings
from sfsync.salesforce.governor import GovernorSettings
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.orgs import ORG_RESTORED, OrgPoller, PollerReport, Turns
from sfsync.sources.ownership import change_workspace, owned_connections
from sfsync.sources.poller import partition_for
from sfsync.sources.schedule import HoldCause, pick_due
from sfsync.sources.settings import SourceSettings
from sfsync.workspaces import WorkspaceState
from tests.kit import EpochClock, tls_contexts
from tests.kit.mappings import mappings_from, members_yaml
from tests.kit.polling import CommittedPages, PolledOrg, polled_org, rid
from tests.kit.workspaces import workspace

SETTINGS = SourceSettings(
    poll_interval_s=1.0,
    max_idle_interval_s=60.0,
    delete_log_interval_s=0,
    reconcile_interval_s=0,
    concurrent_polls=1,  # one poll at a time: any turn one org takes is a turn another waits for
    hold_recheck_s=2.0,
    hold_recheck_max_s=60.0,
    retry_timeout_s=30.0,
)


def turns_of(orgs: dict[str, OrgPoller], clock: EpochClock, metrics: SourceMetrics | None = None) -> Turns:
    def release(org: OrgPoller, name: str) -> None:
        org.objects.pop(name)

    return Turns(
        orgs,
        settings=SETTINGS,
        governor_settings=GovernorSettings(auth_pause_s=30, auth_pause_max_s=300),
        metrics=metrics or SourceMetrics(CollectorRegistry()),
        report=PollerReport(),
        release=release,
        isolated=True,
        monotonic=clock,
    )


async def run_until(turns: Turns, clock: EpochClock, until_s: float) -> None:
    """The poller's loop on the fake clock: start what is due, wait for it (a call moves the clock on by
    its duration), else move the clock to when something is due."""
    while clock.now < until_s:
        turns.harvest()
        upcoming = turns.dispatch(clock())
        flying = turns.in_flight
        if flying:
            await asyncio.wait(flying, return_when=asyncio.FIRST_COMPLETED)
        else:
            clock.now = max(clock.now, upcoming)
    await turns.settle()


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_a_busy_org_does_not_take_the_turns_of_fifty_idle_orgs() -> None:
    clock = EpochClock(0.0)
    entries: list[ErrorLogEntry] = []
    # The busy org polls five objects, each finding a change at every poll and taking 0.5 s: one of them is
    # always due (five polls take longer than the 1 s interval), so it could have every turn.
    busy = PolledOrg(clock, busy=True, call_s=0.5)
    idle = {f"idle-{n:02d}": PolledOrg(clock, call_s=0.05) for n in range(50)}
    objects = ("Account", "Campaign", "Contact", "Lead", "Task")
    orgs = {"busy": polled_org("busy", busy, settings=SETTINGS, record=entries.append, objects=objects)}
    orgs |= {cid: polled_org(cid, org, settings=SETTINGS, record=entries.append) for cid, org in idle.items()}
    turns = turns_of(orgs, clock)
    await run_until(turns, clock, 900)  # 15 minutes on the fake clock

    # The busy org keeps its minimum interval in every round of turns: between two of its polls, at most one
    # turn of each idle org (50 x 0.05 s); each of its objects is polled at least every five rounds.
    assert max(gaps(busy.queries)) <= 0.5 + 2.5 + 0.01
    assert all(o.interval_s == 1.0 for o in orgs["busy"].objects.values())
    # Each idle org backs off to 60 s, and is polled then, at most one round of turns late (the busy org's and
    # each other idle org's): it is not starved by an org that always has something due.
    for cid, org in idle.items():
        assert len(org.queries) >= 900 / 63, cid
        assert max(gaps(org.queries)) <= 60 + 0.5 + 2.5 + 0.01, cid
        assert orgs[cid].objects["Contact"].interval_s == 60.0
    assert entries == []


def test_turns_go_round_the_orgs_from_the_one_after_the_last_served() -> None:
    due = {"a": {"Contact": 0.0, "Lead": 0.0}, "b": {"Contact": 5.0}, "c": {"Contact": 1.0}, "d": {"Lead": 0.5}}
    assert pick_due(due, 1.0, after=None, slots=10) == [("a", "Contact"), ("c", "Contact"), ("d", "Lead")]
    assert pick_due(due, 1.0, after="a", slots=1) == [("c", "Contact")]  # not a again: the turn moves on
    assert pick_due(due, 1.0, after="d", slots=2) == [("a", "Contact"), ("c", "Contact")]  # round again
    assert pick_due(due, 1.0, after=None, busy={"a"}, held={"c"}, slots=10) == [("d", "Lead")]
    assert pick_due(due, 1.0, after=None, slots=0) == []


async def test_a_down_org_is_held_on_a_backoff_while_the_others_keep_their_pace() -> None:
    clock = EpochClock(0.0)
    entries: list[ErrorLogEntry] = []
    metrics = SourceMetrics(CollectorRegistry())
    down = PolledOrg(clock, busy=True, call_s=0.5)  # its failed calls take time too
    down.down = True
    busy = PolledOrg(clock, busy=True, call_s=0.05)
    idle = PolledOrg(clock, call_s=0.05)
    orgs = {
        "org-down": polled_org(
            "org-down", down, settings=SETTINGS, record=entries.append, workspaces=[workspace("ws-d", "org-down")]
        ),
        "org-busy": polled_org("org-busy", busy, settings=SETTINGS, record=entries.append),
        "org-idle": polled_org("org-idle", idle, settings=SETTINGS, record=entries.append),
    }
    turns = turns_of(orgs, clock, metrics)
    await run_until(turns, clock, 600)

    assert max(gaps(busy.queries)) <= 1.0 + 0.5 + 0.05 + 0.01  # at most one (failing) turn of the down org
    assert max(gaps(idle.queries)) <= 60 + 1.0
    # The down org is tried on a doubling backoff (2, 4 ... 60 s), not at every turn.
    tries = gaps(down.queries)
    assert len(down.queries) <= 6 + 600 / 60 + 1
    assert tries[:5] == pytest.approx([2 + 0.5, 4 + 0.5, 8 + 0.5, 16 + 0.5, 32 + 0.5], abs=0.2)
    assert orgs["org-down"].objects["Contact"].checkpoint == core.Checkpoint("Contact")  # nothing moved
    held = metrics.registry.get_sample_value("sfsync_poller_orgs_held", {"cause": "org_down"})
    assert held == 1
    warning, outage = entries  # when the hold began, and once it outlasted retry_timeout_s; nothing else
    assert (warning.level, outage.level) == (Level.WARNING, Level.ERROR)
    for entry in (warning, outage):
        assert entry.category is Category.CONNECTION and entry.code == "SERVER_UNAVAILABLE"
        assert entry.workspace_id == "ws-d" and entry.details["connection_id"] == "org-down"
        assert entry.details["hold"] == "org_down"

    down.down = False  # back: polled again from its checkpoint, one INFO entry
    await run_until(turns, clock, 700)
    assert entries[-1].code == ORG_RESTORED and entries[-1].level is Level.INFO and entries[-1].workspace_id == "ws-d"
    assert metrics.registry.get_sample_value("sfsync_poller_orgs_held", {"cause": "org_down"}) == 0
    pages = orgs["org-down"].objects["Contact"].transactions
    assert isinstance(pages, CommittedPages) and pages.committed  # its changes flow again


async def test_an_org_whose_login_is_refused_is_held_on_the_auth_backoff_the_others_polled() -> None:
    clock = EpochClock(0.0)
    entries: list[ErrorLogEntry] = []
    refused = PolledOrg(clock)
    refused.refused = True
    busy = PolledOrg(clock, busy=True, call_s=0.05)
    orgs = {
        "org-r": polled_org("org-r", refused, settings=SETTINGS, record=entries.append),
        "org-b": polled_org("org-b", busy, settings=SETTINGS, record=entries.append),
    }
    turns = turns_of(orgs, clock)
    await run_until(turns, clock, 120)
    assert orgs["org-r"].hold is not None and orgs["org-r"].hold.cause is HoldCause.CREDENTIALS
    assert len(refused.queries) == 3  # at 0, then after 30 s and 60 s more (the governor's auth backoff)
    assert max(gaps(busy.queries)) <= 1.0 + 0.06
    (entry,) = entries  # one ERROR when the hold began: a human must reconnect the org
    assert entry.level is Level.ERROR and entry.code == "AUTH_FAILED" and entry.details["hold"] == "credentials"


# ---------------------------------------------------------------------- many orgs' clients
async def test_the_clients_of_many_orgs_share_one_tls_context() -> None:
    async def no_sleep(seconds: float) -> None:
        return None

    before = tls_contexts()
    orgs = [
        OrgPoller(
            f"org-{i}",
            SalesforceSettings.model_validate(
                {"auth_flow": "access_token", "access_token": "00Dx!t", "instance_url": "https://org.example.test"}
            ),
            files=[mappings_from(members_yaml("{sf: FirstName, from: member.first_name, direction: both}"))],
            settings=SETTINGS,
            governor_settings=GovernorSettings(),
            on_response=lambda request, response: None,
            record=lambda entry: None,
            sleep=no_sleep,
            governed_sleep=no_sleep,
        )  # each with its own transport
        for i in range(10)
    ]
    try:
        assert tls_contexts() - before <= 1  # not one CA bundle per org (200 orgs: 160 MB and 7 s)
    finally:
        for org in orgs:
            await org.client.aclose()


# ---------------------------------------------------------------------- checkpoints per connection
def test_checkpoints_are_keyed_per_connection_and_env_keeps_the_single_org_key() -> None:
    assert core.checkpoint_key("env", "Contact") == "Contact"  # what a poller without the registry wrote
    assert core.checkpoint_key("acme-org", "Contact") == "acme-org:Contact"
    assert core.sobject_of("acme-org:Contact") == core.sobject_of("Contact") == "Contact"
    checkpoint = core.Checkpoint("Contact", cursor_ms=7, known={rid(1), rid(2)})
    mine = dict(checkpoint.records(set(), key="acme-org:Contact"))
    assert "acme-org:Contact" in mine and all(k.startswith("acme-org:Contact") for k in mine)
    assert core.Checkpoint.from_records("Contact", mine, key="acme-org:Contact") == checkpoint
    assert core.Checkpoint.from_records("Contact", mine) is None  # env's checkpoint is another
    theirs = dict(core.Checkpoint("Contact", cursor_ms=9, known={rid(3)}).records(set(), key="other:Contact"))
    both = {**mine, **theirs}
    assert core.Checkpoint.from_records("Contact", both, key="acme-org:Contact") == checkpoint  # no mix-up
    assert partition_for("Contact", 6) == partition_for("contact", 6)  # env's partition as before


async def test_an_orgs_pages_commit_its_changes_with_its_workspace_and_its_own_checkpoint() -> None:
    clock = EpochClock(0.0)
    single = polled_org(
        "acme-org",
        PolledOrg(clock, busy=True),
        settings=SETTINGS,
        record=print,
        workspaces=[workspace("ws-1", "acme-org")],
    )
    shared = polled_org(
        "shared-org",
        PolledOrg(clock, busy=True),
        settings=SETTINGS,
        record=print,
        workspaces=[workspace("ws-2", "shared-org"), workspace("ws-3", "shared-org")],
    )
    for org, workspace_id in ((single, "ws-1"), (shared, None)):
        poller = org.objects["Contact"]
        assert await poller.poll_once() == 1
        await org.aclose()
        pages = poller.transactions
        assert isinstance(pages, CommittedPages)
        (transaction,) = pages.committed
        changes = [orjson.loads(v) for topic, _, v, _ in transaction if topic == "salesforce.changes"]
        assert [c["workspace_id"] for c in changes] == [workspace_id]
        keys = [k.decode() for topic, k, _, p in transaction if topic == "sfsync.poller.checkpoints"]
        assert keys[-1] == f"{org.connection_id}:Contact"
        assert {p for topic, _, _, p in transaction if topic == "sfsync.poller.checkpoints"} == {
            partition_for(f"{org.connection_id}:Contact", SETTINGS.checkpoint_partitions)
        }


# ---------------------------------------------------------------------- which orgs a replica polls
def test_a_connection_is_polled_by_the_owner_of_its_smallest_workspace_while_one_is_active() -> None:
    spaces = [
        workspace("ws-b", "shared"),
        workspace("ws-a", "shared"),
        workspace("ws-c", "solo"),
        workspace("ws-d", "paused-org", WorkspaceState.PAUSED),
        workspace("ws-e", "half-paused", WorkspaceState.PAUSED),
        workspace("ws-f", "half-paused"),
    ]
    assert set(owned_connections({"ws-a", "ws-c", "ws-d"}, spaces)) == {"shared", "solo"}
    assert owned_connections({"ws-b"}, spaces) == {}  # ws-a's replica polls the shared org: once
    assert set(owned_connections({"ws-e"}, spaces)) == {"half-paused"}  # ws-f is ACTIVE
    assert [w.workspace_id for w in owned_connections({"ws-a"}, spaces)["shared"]] == ["ws-a", "ws-b"]
    assert change_workspace([workspace("ws-c", "solo")]) == "ws-c"
    assert change_workspace([workspace("ws-a", "shared"), workspace("ws-b", "shared")]) is None
