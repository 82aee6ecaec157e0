"""Three workspaces on three emulated orgs, end to end with real processes: product events published with the
SDK, planned by the outbound processor (``python -m sfsync.processors.outbound.app``) with each workspace's own
mapping variant, written by the sink (``sfsync sink``) with the workspace registry on; the registry written
with sfsync's own writer (sealed connections, ``SFSYNC_CONNECTION_KEYS``); three orgs on real HTTP.

- Isolation, counted: every event of a workspace reaches its own org once (one person record per member,
  one activity per event) and none reaches another org; each org shows its workspace's variant.
- Org B goes down and org C's daily API limit runs out while every workspace keeps publishing: org A's
  p99 product -> Salesforce latency (a WriteResult's ``acknowledged_at`` minus its event's ``occurred_at``,
  the last write of the event, as ``bench/e2e.py`` measures it) stays within 20 % of its value before;
  B and C write nothing meanwhile.
- Once B is up and C's budget is back, B and C converge: every event's records once, none in the DLQ.

Why these settings (a p99 that is stable on 2 busy shared cores, in about two minutes):

- ``SFSYNC_SINK_BATCH_MAX_AGE_S=2`` (the production default): at these rates a sink batch closes on age, so a
  write waits up to two seconds in the sink, plus its batch's calls. A's p99 (~2.5-3.5 s) is then set by that
  deterministic wait more than by scheduling noise, which moves a p99 of a few hundred milliseconds (the kit's
  0.3 s age) by more than 20 %; and the age is the most one org's slow batch could add to another's (the sink's
  ``put`` waits that long at most for a batch), so the bar sees such a spill-over. 40 s per phase is ~800
  events of A each; 5 s of steady publishing before the measure let the processes settle into the rates.
- The sink's retry waits are the production defaults (0.5 s, at most 10 s per batch): they decide how long a
  batch sent to an org that just went down stays on its way (about 10 s of retries before its connection is
  held), which is when one org's outage can spill over onto the others' batches. The holds are short (a down
  org re-checked after 1 s, at most 4 s; the governor's pause 3 s) only so that B and C converge soon once
  their causes clear.
- Rates: A 20 events/s, B and C 5 each (two writes per event of A and B, one of C), the same in every phase,
  so the faults are the only change. Higher rates load the processor enough, on a shared machine, that its
  queueing (seconds at times) and not the sink sets the p99.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sfsync.emulator.server import RunningOrg, RunningOrgs, serve_orgs_in_thread
from sfsync.errors import Category, Level
from sfsync.keys import workspace_of
from sfsync.mapping import DEFAULT_MAPPING_FILE
from sfsync.ops.errorlog import tail
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.workspaces import ConnectionFlow, RegistryWriter
from tests.integration.helpers import caught_up, consume_all, end_offsets, open_publisher
from tests.integration.processes import Spawned, pipeline_env, processor_env, unexpected_tracebacks
from tests.kit.workspaces import connection, key_item, keys, workspace

SPACES = ("ws-a", "ws-b", "ws-c")
"""The workspaces; workspace i is on org i."""
VARIANTS: dict[str, dict[str, Any]] = {
    "ws-a": {},  # the configured mapping (the shipped default): Contacts, an activity per event
    "ws-b": {"variables": {"member_object": "Lead", "lead_source": "Partner"}},  # Leads from partners
    "ws-c": {"mapping": "community", "variables": {"activities": "false"}},  # its own file: no activities
}
PERSON = {"ws-a": "Contact", "ws-b": "Lead", "ws-c": "Contact"}
"""The object each workspace's variant writes its members to."""
WARM_UP = 10
"""Events of each workspace before the measure (the processes' first batches, logins and describes)."""
STEP_S = 1 / 20
"""A publishes one event per step (20/s); B and C one every fourth step (5/s each)."""
OTHERS_EVERY = 4
SETTLE_S = 5.0
BEFORE_S = 40.0
FAULT_S = 40.0
BATCH_MAX_AGE_S = 2.0
TOLERANCE = 1.2
"""A's p99 during the faults may be at most this times its p99 before."""


@dataclasses.dataclass
class Sent:
    """An event published: its workspace, member, event id and ``occurred_at`` (epoch seconds), and phase."""

    workspace: str
    member_id: str
    event_id: str
    occurred_at: float
    phase: str


class Community:
    """UserCreated events of the three workspaces, each member's id and email naming its workspace (``a-00001``,
    ``a1@example.org``), stamped ``occurred_at`` = when published."""

    def __init__(self) -> None:
        self.sims = {space: CommunitySimulator(seed=13 + i, workspace_id=space) for i, space in enumerate(SPACES)}
        self.counts = Counter[str]()
        self.sent: list[Sent] = []

    def publish(self, publisher: Any, space: str, phase: str) -> None:
        self.counts[space] += 1
        n, letter = self.counts[space], space[-1]
        created = self.sims[space].new_member()
        member = dataclasses.replace(created.member, member_id=f"{letter}-{n:05d}", email=f"{letter}{n}@example.org")
        event = dataclasses.replace(created, member=member, occurred_at=dt.datetime.now(dt.UTC))
        publisher.publish(event)
        self.sent.append(Sent(space, member.member_id, event.event_id, event.occurred_at.timestamp(), phase))

    def of(self, space: str, *phases: str) -> list[Sent]:
        return [s for s in self.sent if s.workspace == space and (not phases or s.phase in phases)]


@pytest.fixture
def orgs() -> Iterator[RunningOrgs]:
    running = serve_orgs_in_thread(3)
    try:
        yield running
    finally:
        running.stop()


def people(org: RunningOrg, sobject: str) -> Counter[str]:
    """How many records of ``sobject`` the org holds per member id (its store: org B may be down)."""
    return Counter(str(row.get("Member_Id__c")) for row in org.emulator.store.rows(sobject))


def activities(org: RunningOrg) -> list[dict[str, Any]]:
    return list(org.emulator.store.rows("Community_Activity__c"))


def register(services: Any, prefix: str, registry: SchemaRegistry, orgs: RunningOrgs) -> None:
    """Each org's connection (refresh-token flow, sealed under key ``k1``) and its workspace with its variant,
    as ``sfsync connections|workspaces add`` write them."""
    with RegistryWriter({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix) as writer:
        for space, org in zip(SPACES, orgs, strict=True):
            connection_id = f"org-{space[-1]}"
            writer.put_connection(
                connection(
                    connection_id,
                    {"refresh_token": org.refresh_token(), "client_secret": org.client_secret},
                    sealed_with=keys("k1"),
                    flow=ConnectionFlow.REFRESH_TOKEN,
                    login_url=org.login_url,
                    client_id=org.client_id,
                )
            )
            writer.put_workspace(workspace(space, connection_id, **VARIANTS[space]))


def holds_all(org: RunningOrg, space: str, community: Community) -> Callable[[], bool]:
    """Whether ``org`` holds a person record of every member of ``space`` published so far."""
    expected = {s.member_id for s in community.of(space)}
    return lambda: set(people(org, PERSON[space])) == expected


def admin(org: RunningOrg, path: str, payload: dict[str, Any]) -> None:
    httpx.post(f"{org.base_url}/__admin/{path}", json=payload, timeout=10).raise_for_status()


def wait_for(condition: Any, timeout_s: float, what: str, *procs: Spawned) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for proc in procs:
            assert proc.running, f"{what}: a worker exited\n{proc.log_tail()}"
        assert time.monotonic() < deadline, f"not in {timeout_s:.0f}s: {what}\n" + "\n".join(
            p.log_tail(2000) for p in procs
        )
        time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def acknowledged(services: Any, prefix: str, registry: SchemaRegistry) -> dict[str, tuple[str, float]]:
    """Per event id: its workspace (from its record keys) and when Salesforce acknowledged its last write."""
    topic = prefix + "sfsync.results"
    decoder = AvroDecoder(registry)
    out: dict[str, tuple[str, float]] = {}
    for message in consume_all(services.bootstrap, [topic], end_offsets(services.bootstrap, topic), 60):
        _, result = decoder.decode(message.value())
        event_id = str(result["source"]["event_id"])
        space = workspace_of(str(result["key"])) or ""
        at = result["acknowledged_at"].timestamp()
        out[event_id] = (space, max(at, out.get(event_id, (space, 0.0))[1]))
    return out


def test_three_workspaces_stay_in_their_orgs_and_a_down_org_and_a_spent_budget_leave_the_others_latency_alone(
    services: Any, prefix: str, registry: SchemaRegistry, orgs: RunningOrgs, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "community.yaml").write_text(DEFAULT_MAPPING_FILE.read_text())
    publisher = open_publisher(services, prefix)  # creates the test's topics
    register(services, prefix, registry, orgs)
    a, b, c = orgs[0], orgs[1], orgs[2]
    group, app_id = f"sink-{uuid.uuid4().hex[:8]}", f"proc-{uuid.uuid4().hex[:10]}"
    registry_on = {"SFSYNC_WORKSPACES_ENABLED": "true", "SFSYNC_WORKSPACES_REQUIRED": "true"}
    processor = Spawned(
        "sfsync.processors.outbound.app",
        "400",
        env=processor_env(services, prefix, app_id, SFSYNC_MAPPING_LIBRARY=str(library), **registry_on),
        log=tmp_path / "processor.log",
    )
    sink_env = pipeline_env(
        services,
        prefix,
        SFSYNC_CONNECTION_KEYS=key_item("k1"),
        SFSYNC_SINK_GROUP_ID=group,
        SFSYNC_SINK_BATCH_MAX_AGE_S=str(BATCH_MAX_AGE_S),
        SFSYNC_SINK_POLL_TIMEOUT_S="0.2",
        SFSYNC_SINK_SESSION_TIMEOUT_MS="10000",
        SFSYNC_SINK_HOLD_RECHECK_INITIAL_S="1",
        SFSYNC_SINK_HOLD_RECHECK_MAX_S="4",
        SFSYNC_SINK_METRICS_PORT="0",
        SFSYNC_GOVERNOR_PAUSE_S="3",
        SFSYNC_GOVERNOR_AUTH_PAUSE_S="1",
        SFSYNC_GOVERNOR_AUTH_PAUSE_MAX_S="4",
        **registry_on,
    )
    sink = Spawned("sfsync.cli.main", "sink", env=sink_env, log=tmp_path / "sink.log")
    community = Community()
    writes_topic = prefix + "sfsync.writes"
    try:
        # warm-up: each workspace's first events reach its org (and only its org)
        for space in SPACES:
            for _ in range(WARM_UP):
                community.publish(publisher, space, "warm-up")
        publisher.flush()
        wait_for(
            lambda: all(sum(people(org, PERSON[s]).values()) == WARM_UP for s, org in zip(SPACES, orgs, strict=True)),
            120,
            "the warm-up events written",
            processor,
            sink,
        )

        def steady(phase: str, seconds: float) -> None:
            start, step = time.monotonic(), 0
            while (due := start + step * STEP_S) < start + seconds:
                time.sleep(max(0.0, due - time.monotonic()))
                community.publish(publisher, "ws-a", phase)
                if step % OTHERS_EVERY == 0:
                    community.publish(publisher, "ws-b", phase)
                    community.publish(publisher, "ws-c", phase)
                step += 1
            publisher.flush()

        steady("warm-up", SETTLE_S)  # the processes settle into the steady rates (not measured)
        steady("before", BEFORE_S)
        b.down()  # every call to org B answered 503
        admin(c, "limits", {"spent_after": 0})  # org C's daily allocation runs out: REQUEST_LIMIT_EXCEEDED
        fault_at = time.time()
        steady("fault", FAULT_S)
        fault_ids = {s.member_id for s in community.sent if s.phase == "fault"}
        wait_for(
            lambda: {s.member_id for s in community.of("ws-a")} <= set(people(a, "Contact")),
            60,
            "A's events of the fault phase written",
            processor,
            sink,
        )
        for org, space in ((b, "ws-b"), (c, "ws-c")):  # neither wrote anything of the fault phase
            assert not set(people(org, PERSON[space])) & fault_ids, space

        b.up()
        admin(c, "limits", {"restore": True})
        for space, org in zip(SPACES, orgs, strict=True):
            wait_for(holds_all(org, space, community), 90, f"{space} converged", processor, sink)
        wait_for(lambda: caught_up(services.bootstrap, group, writes_topic), 60, "every write committed", sink)
    finally:
        publisher.close()
        sink.stop(timeout_s=30)
        processor.stop(timeout_s=30)
    for proc in (sink, processor):
        assert proc.returncode == 0, proc.log_tail()
        assert not unexpected_tracebacks(proc.output()), proc.log_tail()

    # isolation, counted: each member once in its own org, as its variant says, and in no other
    for space, org in zip(SPACES, orgs, strict=True):
        mine = community.of(space)
        assert people(org, PERSON[space]) == Counter({s.member_id: 1 for s in mine}), space
        other = "Lead" if PERSON[space] == "Contact" else "Contact"
        assert not people(org, other), f"{space}: {other} records in its org"
        rows = activities(org)
        if space == "ws-c":
            assert not rows  # its variant writes no activities
            continue
        assert Counter(str(r.get("Event_Key__c")) for r in rows) == Counter({s.event_id: 1 for s in mine}), space
        lookup, unused = ("Contact__c", "Lead__c") if PERSON[space] == "Contact" else ("Lead__c", "Contact__c")
        assert all(r.get(lookup) and not r.get(unused) for r in rows), space
    assert {r.get("LeadSource") for r in b.emulator.store.rows("Lead")} == {"Partner"}
    assert consume_all(services.bootstrap, [prefix + "sfsync.dlq"], 1, timeout_s=5) == []
    entries = list(tail({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix, last=None))
    troubled = {(e.workspace_id, e.category) for e in entries if e.level is not Level.INFO}
    assert troubled == {("ws-b", Category.CONNECTION), ("ws-c", Category.RATE_LIMIT)}  # each cause names its own

    # A's latency before and during the faults (events published up to two batch ages before the faults
    # count as during them: their batches met the faults)
    acked = acknowledged(services, prefix, registry)
    assert {e: w for e, (w, _) in acked.items()} == {s.event_id: s.workspace for s in community.sent}
    edge = fault_at - 2 * BATCH_MAX_AGE_S
    before = [acked[s.event_id][1] - s.occurred_at for s in community.of("ws-a", "before") if s.occurred_at < edge]
    during = [
        acked[s.event_id][1] - s.occurred_at for s in community.of("ws-a", "before", "fault") if s.occurred_at >= edge
    ]
    p99_before, p99_during = percentile(before, 0.99), percentile(during, 0.99)
    print(
        f"\nA's latency: before p50 {percentile(before, 0.5):.3f}s p99 {p99_before:.3f}s ({len(before)} events); "
        f"faults p50 {percentile(during, 0.5):.3f}s p99 {p99_during:.3f}s ({len(during)} events); "
        f"ratio {p99_during / p99_before:.2f}"
    )
    assert p99_during <= TOLERANCE * p99_before, (p99_before, p99_during)
