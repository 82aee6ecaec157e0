"""Outbound end to end: fake community events -> processor (Faust, own process) -> sink -> org.

300 events of a seeded community are published on real Kafka, planned by ``python -m sfsync.processors.outbound.app``
and written by the sink into an emulated org over real HTTP. The org is then compared with the state
the default mapping implies, worked out here from the events alone (``plan()`` is not used); a second
sink with a new consumer group replays every write and must leave the org exactly as it was.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sfsync.emulator.server import RunningEmulator, serve_in_thread
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.registry import SchemaRegistry
from sfsync.sinks.main import SinkRunner
from tests.integration.helpers import caught_up, group_offsets, processed_all, publish_all, wait_until
from tests.integration.processes import Spawned, processor_env
from tests.integration.test_sink_runner import runner_for

SEED = 20261125
EVENT_COUNT = 300
MEMBER_EVENTS = {
    "UserCreated",
    "UserOnboarding",
    "UserApprovalChange",
    "UserProfileUpdate",
    "UserTypeChange",
    "UserAddedToSpace",
    "UserRemovedFromSpace",
    "UserJoinedClub",
    "UserLeftClub",
    "UserJoinedWaitlist",
}
ATTENDANCE_EVENTS = {"EventRegistration", "EventRegistrationCancel", "EventAttend", "EventCheckIn", "EventUnCheckIn"}
ACTIVITY_EVENTS = MEMBER_EVENTS | ATTENDANCE_EVENTS | {"NewEventPublished"}
# what the org changes on every write whatever the values: not part of a record's content
AUDIT_FIELDS = {"LastModifiedDate", "SystemModstamp", "LastModifiedById", "LastViewedDate", "LastReferencedDate"}


# ---------------------------------------------------------------------- Kafka bookkeeping
async def _drain(runner: SinkRunner, bootstrap: str, group: str, writes_topic: str, timeout_s: float = 60) -> None:
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


# ---------------------------------------------------------------------- what the org should hold
def expected_org(events: list[Any]) -> dict[str, Any]:
    """The org the default mapping implies for ``events`` (in order), worked out without ``plan()``."""
    contacts: dict[str, dict[str, Any]] = {}  # email -> fields
    campaigns: dict[str, dict[str, Any]] = {}  # product event id -> fields
    members: dict[tuple[str, str], str] = {}  # (email, event id) -> attendee status
    cases: dict[tuple[str, str], dict[str, Any]] = {}  # (email, subject) -> fields
    activities: dict[str, tuple[str, str | None]] = {}  # product event id -> (type, member email)
    for event in events:
        kind = type(event).__name__
        if kind in ("UserCreated", "UserProfileUpdate"):
            p = event.member
            contacts[p.email] = {
                "FirstName": p.first_name,
                "LastName": p.last_name,
                "Title": p.title,
                "Member_Id__c": p.member_id,
            }
        elif kind in ("NewEventPublished", "EventUpdated"):
            campaigns[event.event.id] = {"Name": event.event.title[:80], "IsActive": True, "Is_Published__c": True}
        elif kind == "EventUnpublished":
            campaigns[event.event.id].update(IsActive=False, Is_Published__c=False)
        elif kind in ATTENDANCE_EVENTS:
            key = (event.member.email, event.event.id)
            if kind == "EventRegistrationCancel":
                members.pop(key, None)
            else:
                members[key] = "attended" if kind in ("EventAttend", "EventCheckIn") else "registered"
        elif kind == "ForumPostCaseRequested":
            post = event.post
            cases[(post.author.email, post.title)] = {
                "Status": post.status,
                "Priority": post.priority,
                "SuppliedName": f"{post.author.first_name} {post.author.last_name}",
                "Origin": "Web",
            }
        if kind in ACTIVITY_EVENTS:
            member = getattr(event, "member", None)
            activities[event.event_id] = (kind, member.email if member is not None else None)
    return {
        "contacts": contacts,
        "campaigns": campaigns,
        "members": members,
        "cases": cases,
        "activities": activities,
    }


def actual_org(running: RunningEmulator) -> dict[str, Any]:
    """The org in the same shape as :func:`expected_org` (with duplicates counted, not hidden)."""
    store = running.emulator.store
    contact_rows = store.rows("Contact")
    campaign_rows = store.rows("Campaign")
    email_of = {r["Id"]: r["Email"] for r in contact_rows}
    event_of = {r["Id"]: r["Event_Id__c"] for r in campaign_rows}
    member_rows = store.rows("CampaignMember")
    case_rows = store.rows("Case")
    activity_rows = store.rows("Community_Activity__c")
    return {
        "counts": {
            "contacts": Counter(r["Email"] for r in contact_rows),
            "campaigns": Counter(r["Event_Id__c"] for r in campaign_rows),
            "members": Counter((email_of.get(r["ContactId"]), event_of.get(r["CampaignId"])) for r in member_rows),
            "cases": Counter((r["SuppliedEmail"], r["Subject"]) for r in case_rows),
            "activities": Counter(r["Event_Key__c"] for r in activity_rows),
        },
        "contacts": {
            r["Email"]: {f: r.get(f) for f in ("FirstName", "LastName", "Title", "Member_Id__c")} for r in contact_rows
        },
        "campaigns": {
            r["Event_Id__c"]: {f: r.get(f) for f in ("Name", "IsActive", "Is_Published__c")} for r in campaign_rows
        },
        "members": {
            (email_of.get(r["ContactId"]), event_of.get(r["CampaignId"])): r.get("Attendee_Status__c")
            for r in member_rows
        },
        "cases": {
            (r["SuppliedEmail"], r["Subject"]): {f: r.get(f) for f in ("Status", "Priority", "SuppliedName", "Origin")}
            for r in case_rows
        },
        "activities": {
            r["Event_Key__c"]: (r.get("Type__c"), email_of.get(r["Contact__c"]) if r.get("Contact__c") else None)
            for r in activity_rows
        },
    }


def org_snapshot(running: RunningEmulator) -> dict[str, dict[str, dict[str, Any]]]:
    """Every record of the synced objects, by Id, without the audit fields a write always touches."""
    store = running.emulator.store
    return {
        sobject: {r["Id"]: {k: v for k, v in r.items() if k not in AUDIT_FIELDS} for r in store.rows(sobject)}
        for sobject in ("Contact", "Campaign", "CampaignMember", "Case", "Community_Activity__c")
    }


# ---------------------------------------------------------------------- the test
async def test_community_events_end_in_the_org_as_the_default_mapping_says_and_a_replay_changes_nothing(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    events = list(CommunitySimulator(seed=SEED).stream(EVENT_COUNT))
    per_topic = publish_all(services, prefix, events)

    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    writes_topic = prefix + "sfsync.writes"
    running = None
    proc = Spawned(
        "sfsync.processors.outbound.app",
        "240",
        env=processor_env(services, prefix, app_id),
        log=tmp_path / "processor.log",
    )
    try:
        running = serve_in_thread()
        group = f"sink-{uuid.uuid4().hex[:8]}"
        runner = runner_for(services, prefix, group, running, registry)
        task = asyncio.create_task(runner.run(signals=False))
        try:
            await wait_until(
                lambda: processed_all(services.bootstrap, app_id, per_topic),
                50,
                "the processor committed every product event",
                0.5,
            )
            assert proc.running, proc.log_tail()
            await _drain(runner, services.bootstrap, group, writes_topic)
        finally:
            runner.stop()
            report = await asyncio.wait_for(task, 30)
        assert report.parked == 0 and report.auth_failures == 0

        expected = expected_org(events)
        got = actual_org(running)
        counts = got.pop("counts")
        for name, counter in counts.items():
            duplicated = {k: n for k, n in counter.items() if n > 1}
            assert not duplicated, f"{name}: more than one record for {duplicated}"
        assert got["contacts"] == expected["contacts"]
        assert got["campaigns"] == expected["campaigns"]
        assert got["members"] == expected["members"]
        assert got["cases"] == expected["cases"]
        assert got["activities"] == expected["activities"]

        # a second sink replays every write from the start: the org must not change at all
        before = org_snapshot(running)
        again = f"sink-{uuid.uuid4().hex[:8]}"
        replay = runner_for(services, prefix, again, running, registry)
        task = asyncio.create_task(replay.run(signals=False))
        try:
            await _drain(replay, services.bootstrap, again, writes_topic)
        finally:
            replay.stop()
            replayed = await asyncio.wait_for(task, 30)
        assert replayed.parked == 0 and replayed.auth_failures == 0
        after = org_snapshot(running)
        assert {s: len(r) for s, r in after.items()} == {s: len(r) for s, r in before.items()}
        assert after == before
    finally:
        proc.stop(timeout_s=20)
        if running is not None:
            running.stop()
    assert proc.returncode == 0, proc.log_tail()
    assert "Traceback" not in proc.output(), proc.log_tail()
