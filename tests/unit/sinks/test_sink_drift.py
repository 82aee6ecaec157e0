"""Drift while the sink runs: a field removed from the org (or made read-only) quarantines the mappings
that use it — their writes parked with one error-log entry and the gauge set — while the other
mappings' writes keep being written; the quarantine lifts once the org has the field again.

Against the emulator in process, the field removed with its admin API (``POST /__admin/fields``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from sfsync.emulator.app import Emulator
from sfsync.emulator.server import build
from sfsync.errors import FatalError, SfsyncError
from sfsync.keys import record_key
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.drift import QUARANTINED, RESTORED, DriftError, MappingQuarantinedError, concerns
from sfsync.sinks.merge import merge_writes
from sfsync.sinks.metrics import SinkMetrics
from sfsync.sinks.writer import SalesforceSink
from tests.kit.clock import EpochClock
from tests.kit.mappings import mappings_from
from tests.kit.org_faults import FaultyOrg
from tests.kit.sink import Harness, Recorder, campaign, make_sink, member, write

RECHECK_S = 60.0


class FieldNamedError(SfsyncError):
    """A Salesforce answer naming the fields it is about (``fields``)."""

    fields: list[str]


MEMBERS = """
mappings:
  - name: members
    entity: member
    target: Contact
    match: [{field: Email, from: member.email}]
    fields:
      - {sf: Email, from: member.email}
      - {sf: LastName, from: member.last_name, default: "[none]"}
      - {sf: Title, from: member.title}
  - name: events
    entity: event
    events: [NewEventPublished]
    target: Campaign
    match: [{field: Event_Id__c, from: event.id}]
    fields:
      - {sf: Event_Id__c, from: event.id}
      - {sf: Name, from: event.title}
"""


@dataclass
class Drift:
    """A sink with a fake clock and metrics on an emulator, and what it recorded."""

    h: Harness
    clock: EpochClock
    metrics: SinkMetrics
    faulty: FaultyOrg | None = None

    @property
    def emulator(self) -> Emulator:
        return self.h.emulator

    @property
    def rec(self) -> Recorder:
        return self.h.rec

    @property
    def sink(self) -> SalesforceSink:
        return self.h.sink

    def gauge(self, mapping: str) -> float | None:
        return self.metrics.registry.get_sample_value("sfsync_mapping_quarantined", {"mapping": mapping})

    def entries(self, code: str) -> list[Any]:
        return [e for e in self.rec.entries if e.code == code]

    def admin(self, **payload: Any) -> dict[str, Any]:
        return self.emulator.admin.fields(payload)


async def drifting(with_mappings: bool = True, wrap: bool = False) -> AsyncIterator[Drift]:
    emulator = build()
    rec = Recorder()
    clock = EpochClock()
    metrics = SinkMetrics(CollectorRegistry())
    faulty: list[FaultyOrg] = []

    def wrapped(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        faulty.append(FaultyOrg(inner))
        return faulty[0]

    client, sink = make_sink(
        emulator,
        rec,
        clock=clock,
        wrap=wrapped if wrap else None,
        mappings=mappings_from(MEMBERS) if with_mappings else None,
        on_quarantine=metrics.quarantined,
        quarantine_recheck_s=RECHECK_S,
    )
    async with client:
        yield Drift(Harness(emulator, client, sink, rec), clock, metrics, faulty[0] if faulty else None)


@pytest.fixture
async def d() -> AsyncIterator[Drift]:
    async for drift in drifting():
        yield drift


def titled(i: int, title: str, n: int = 0, policy: str = "ALWAYS") -> dict[str, Any]:
    """Member ``i``'s Contact with a Title (the field the tests remove)."""
    return member(i, title=title, title_policy=policy, n=n)


async def test_a_field_removed_mid_run_parks_its_mappings_writes_and_the_other_mappings_flow(d: Drift) -> None:
    first = await d.h.put(titled(1, "Countess"), campaign("evt-1"))
    assert len(first.results) == 2 and not first.parked

    d.admin(sobject="Contact", field="Title", action="remove")  # an administrator deletes the field
    outcome = await d.h.put(titled(1, "Dr", n=1), titled(2, "Prof", n=1), campaign("evt-2", n=1))

    assert [r["key"] for r in outcome.results] == ["ws-1|Campaign:Event_Id__c:evt-2"]  # the other mapping flows
    parked = {w.write["key"]: e for w, e in d.rec.parked}
    assert set(parked) == {"ws-1|Contact:Email:member1@example.org", "ws-1|Contact:Email:member2@example.org"}
    assert all(isinstance(e, MappingQuarantinedError) and e.log_code() == QUARANTINED for e in parked.values())
    assert not outcome.pending and outcome.committed  # parked, so committed: nothing stops the partition
    [entry] = d.entries(QUARANTINED)  # one entry for the quarantine, none per parked write
    assert entry.category == "CONNECTION" and entry.severity == "ERROR"
    assert entry.mapping == "members" and entry.sobject == "Contact" and entry.field == "Title"
    assert "INVALID_FIELD" in entry.message
    assert [e for e in d.rec.entries if e.severity == "ERROR"] == [entry]
    assert d.gauge("members") == 1 and d.gauge("events") is None

    queries = d.emulator.calls_by_endpoint["GET query"]
    later = await d.h.put(titled(3, "Ms", n=2), campaign("evt-3", n=2))  # still quarantined: parked at once
    assert [r["key"] for r in later.results] == ["ws-1|Campaign:Event_Id__c:evt-3"]
    assert len(d.rec.parked) == 3 and len(d.entries(QUARANTINED)) == 1
    assert d.emulator.calls_by_endpoint["GET query"] == queries  # not even matched


async def test_the_quarantine_lifts_once_the_field_is_back_and_the_next_writes_are_written(d: Drift) -> None:
    d.admin(sobject="Contact", field="Title", action="remove")
    await d.h.put(titled(1, "Dr"))
    assert d.gauge("members") == 1

    d.clock.advance(RECHECK_S)  # due, but the field is still gone: stays quarantined
    await d.h.put(titled(2, "Prof", n=1))
    assert len(d.rec.parked) == 2 and not d.entries(RESTORED)

    d.admin(sobject="Contact", field="Title", action="restore")
    d.clock.advance(RECHECK_S - 1)
    await d.h.put(titled(3, "Ms", n=2))  # not due yet
    assert len(d.rec.parked) == 3
    d.clock.advance(1)
    outcome = await d.h.put(titled(4, "Mx", n=3))
    assert [r["key"] for r in outcome.results] == ["ws-1|Contact:Email:member4@example.org"]
    [restored] = d.entries(RESTORED)
    assert restored.severity == "INFO" and restored.mapping == "members"
    assert d.gauge("members") == 0
    rows = await d.h.query("SELECT Title FROM Contact WHERE Email = 'member4@example.org'")
    assert rows[0]["Title"] == "Mx"


async def test_a_field_made_read_only_quarantines_like_a_removed_one(d: Drift) -> None:
    await d.h.put(titled(1, "Countess"))
    d.admin(sobject="Contact", field="Title", updateable=False)  # field-level security: read-only
    outcome = await d.h.put(titled(1, "Dr", n=1), campaign("evt-1", n=1))
    assert [r["key"] for r in outcome.results] == ["ws-1|Campaign:Event_Id__c:evt-1"]
    [entry] = d.entries(QUARANTINED)
    assert "INVALID_FIELD_FOR_INSERT_UPDATE" in entry.message and entry.field == "Title"


async def test_a_match_query_naming_a_removed_field_quarantines_its_mapping_and_the_others_flow(d: Drift) -> None:
    d.admin(sobject="Contact", field="Title", action="remove")
    # an if_empty value makes the match query select the field: Salesforce refuses the whole query
    outcome = await d.h.put(titled(1, "Dr", policy="IF_EMPTY"), member(2), campaign("evt-1"))
    parked = {w.write["key"] for w, _ in d.rec.parked}
    assert parked == {"ws-1|Contact:Email:member1@example.org", "ws-1|Contact:Email:member2@example.org"}
    assert [r["key"] for r in outcome.results] == ["ws-1|Campaign:Event_Id__c:evt-1"]
    [entry] = d.entries(QUARANTINED)
    assert entry.mapping == "members" and "No such column 'Title'" in entry.message


async def test_without_its_mapping_file_the_sink_lifts_a_quarantine_once_the_named_fields_are_back() -> None:
    async for d in drifting(with_mappings=False):
        d.admin(sobject="Contact", field="Title", action="remove")
        await d.h.put(titled(1, "Dr"))
        d.admin(sobject="Contact", field="Title", action="restore")
        d.clock.advance(RECHECK_S)
        outcome = await d.h.put(titled(2, "Prof", n=1))
        assert len(outcome.results) == 1 and len(d.entries(RESTORED)) == 1


async def test_a_whole_call_refused_for_a_removed_field_parks_its_mapping_and_resends_the_rest() -> None:
    async for d in drifting(wrap=True):
        assert d.faulty is not None
        # two mappings on Contact, one collection call: only the one naming the field is quarantined
        await d.h.put(titled(1, "Countess"), member(2, mapping="people"))  # both exist: next come updates
        d.faulty.reject(
            "PATCH",
            "composite/sobjects",
            400,
            "INVALID_FIELD",
            "No such column 'Title' on sobject of type Contact",
            times=1,
        )
        outcome = await d.h.put(titled(1, "Dr", n=1), member(2, last="Changed", n=1, mapping="people"))
        assert {w.write["key"] for w, _ in d.rec.parked} == {"ws-1|Contact:Email:member1@example.org"}
        assert [r["key"] for r in outcome.results] == ["ws-1|Contact:Email:member2@example.org"]  # sent again
        assert len(d.entries(QUARANTINED)) == 1


async def test_a_fatal_answer_that_is_no_drift_still_stops_the_sink() -> None:
    async for d in drifting(wrap=True):
        assert d.faulty is not None
        d.faulty.reject("PATCH", "composite/sobjects", 403, "API_DISABLED_FOR_ORG", "API is not enabled")
        d.faulty.reject("POST", "composite/sobjects", 403, "API_DISABLED_FOR_ORG", "API is not enabled")
        with pytest.raises(FatalError):
            await d.h.put(titled(1, "Dr"))
        assert not d.rec.parked and not d.entries(QUARANTINED)


def test_a_drift_concerns_the_writes_that_find_a_parent_by_the_field_its_record_key_names() -> None:
    """A CampaignMember's ContactId parent that is a Lead (the Contacts then Leads search): a drift of the Lead's
    member-id field concerns it, read from the parent's record key (workspace first), whatever was declared."""
    lead = record_key("ws-1", "Lead", "Member_Id__c", "u-1")
    child = write(
        record_key("ws-1", "CampaignMember", "ContactId", lead),
        "CampaignMember",
        {},
        mapping="attendance",
        parents={"ContactId": (lead, "Contact")},
    )
    ((seg,),) = merge_writes([IncomingWrite(child, "sfsync.writes", 0, 0)]).values()
    named = FieldNamedError("No such column 'Member_Id__c'")
    named.fields = ["Member_Id__c"]
    assert concerns(DriftError("Lead", named), seg)
    assert not concerns(DriftError("Account", named), seg)
