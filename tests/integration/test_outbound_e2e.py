"""Outbound end to end: fake community events -> processor (Faust, own process) -> sink -> org.

300 events of a seeded community are published on real Kafka, planned by ``python -m processors.app``
and written by the sink into an emulated org over real HTTP. The org is then compared with the state
the default mapping implies, worked out here from the events alone (``plan()`` is not used); a second
sink with a new consumer group replays every write and must leave the org exactly as it was.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from emulator.server import RunningEmulator, serve_in_thread
from producers.fake import CommunitySimulator
from sfsync.avro import SchemaRegistry
from sfsync.topics import PRODUCT_TOPICS
from sinks.runner import SinkRunner
from tests.integration.helpers import open_publisher
from tests.integration.test_sink_runner import runner_for

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261125
EVENT_COUNT = 300
PARTITIONS = 6
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
def _offsets(bootstrap: str, group: str, topic: str) -> tuple[list[int], list[int]]:
    """``group``'s committed offsets and the end offsets of ``topic``, per partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        done = [max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        return done, ends
    finally:
        consumer.close()


def _caught_up(bootstrap: str, group: str, topic: str) -> bool:
    done, ends = _offsets(bootstrap, group, topic)
    return done == ends


async def _wait(condition: Any, timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout_s:.0f}s: {what}"
        await asyncio.sleep(interval_s)


async def _drain(runner: SinkRunner, bootstrap: str, group: str, writes_topic: str, timeout_s: float = 60) -> None:
    """Until the sink's results stopped growing for 3 s and its group committed every write."""
    deadline = time.monotonic() + timeout_s
    seen, since = -1, time.monotonic()
    while True:
        if runner.results != seen:
            seen, since = runner.results, time.monotonic()
        elif time.monotonic() - since >= 3 and _caught_up(bootstrap, group, writes_topic):
            return
        assert time.monotonic() < deadline, (
            f"sink not drained in {timeout_s:.0f}s: results {runner.results}, "
            f"committed/end {_offsets(bootstrap, group, writes_topic)}"
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
def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def test_community_events_end_in_the_org_as_the_default_mapping_says_and_a_replay_changes_nothing(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    events = list(CommunitySimulator(seed=SEED).stream(EVENT_COUNT))
    publisher = open_publisher(services, prefix)
    for event in events:
        publisher.publish(event)
    publisher.flush()
    publisher.close()
    per_topic = Counter(e.TOPIC for e in events)

    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
        "SCHEMA_REGISTRY_URL": services.registry,
        "SFSYNC_TOPIC_PREFIX": prefix,
        "SFSYNC_PROCESSOR_APP_ID": app_id,
        "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
        "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": "0.5",
        "SFSYNC_PROCESSOR_METRICS_PORT": "0",  # no fixed port: tests run side by side
    }
    log_path = tmp_path / "processor.log"
    writes_topic = prefix + "sfsync.writes"
    running = None
    with log_path.open("wb") as log_file:  # a file, not a pipe: a full pipe would block the processor
        proc = subprocess.Popen(
            [sys.executable, "-m", "processors.app", "240"],
            cwd=tmp_path,  # Faust's table data directory lands here, not in the checkout
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            running = serve_in_thread()
            group = f"sink-{uuid.uuid4().hex[:8]}"
            runner = runner_for(services, prefix, group, running, registry)
            task = asyncio.create_task(runner.run(signals=False))
            try:

                def planned_everything() -> bool:
                    for spec in PRODUCT_TOPICS:
                        topic = spec.name(prefix)
                        done, _ = _offsets(services.bootstrap, app_id, topic)
                        if sum(done) < per_topic.get(spec.base, 0):
                            return False
                    return True

                await _wait(planned_everything, 50, "the processor committed every product event", 0.5)
                assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
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
            _stop(proc)
            if running is not None:
                running.stop()
    log = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
