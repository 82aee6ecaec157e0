"""A pass's sObject Collections requests go out packed in ``/composite`` (up to 5 a call, one API call
each), and each subrequest's answer is handled as the same answer to its own call was: the real sink
core on the emulator in process; the per-subrequest faults come from the kit's :class:`FaultyOrg`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sfsync.emulator.app import Emulator
from sfsync.emulator.server import build
from sfsync.errors import FatalError
from sfsync.keys import record_key
from sfsync.salesforce.errors import SalesforceRecordError
from sfsync.sinks.drift import QUARANTINED, MappingQuarantinedError
from tests.kit import FaultyOrg
from tests.kit.sink import (
    WORKSPACE,
    Harness,
    Recorder,
    campaign,
    fv,
    make_sink,
    member,
    planned_member,
    registration,
    write,
)

CAMPAIGN_UPSERTS = "composite/sobjects/Campaign/Event_Id__c"


@dataclass
class Rig:
    h: Harness
    org: FaultyOrg

    def calls(self, endpoint: str) -> int:
        """API calls the emulator charged to ``endpoint`` (``"POST composite"``, ``"POST composite/sobjects"``)."""
        return self.h.emulator.calls_by_endpoint.get(endpoint, 0)

    async def names(self, sobject: str) -> list[str]:
        field = "Email" if sobject == "Contact" else "Name"
        return sorted(str(r[field]) for r in await self.h.query(f"SELECT {field} FROM {sobject}"))


async def rig_on(emulator: Emulator, **overrides: Any) -> AsyncIterator[Rig]:
    """A :class:`Rig` on ``emulator`` (``overrides``: :class:`~sfsync.sinks.settings.SinkSettings` fields)."""
    rec = Recorder()
    wrapped: list[FaultyOrg] = []

    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        wrapped.append(FaultyOrg(transport))
        return wrapped[0]

    client, sink = make_sink(emulator, rec, wrap=wrap, **overrides)
    async with client:
        yield Rig(Harness(emulator, client, sink, rec), wrapped[0])


@pytest.fixture
async def r() -> AsyncIterator[Rig]:
    async for rig in rig_on(build()):
        yield rig


def lead(i: int) -> dict[str, object]:
    mail = f"lead{i}@example.org"
    fields = {"Email": fv(mail), "LastName": fv(f"Lead{i}"), "Company": fv("Acme")}
    return write(record_key(WORKSPACE, "Lead", "Email", mail), "Lead", fields, match=[("Email", mail)], mapping="leads")


# ---------------------------------------------------------------------- API calls
@pytest.mark.parametrize("campaigns", [400, 1000, 1001, 2200])
async def test_a_pass_costs_one_call_per_five_subrequests(r: Rig, campaigns: int) -> None:
    """Upserts by external ID need no query: the put's calls are its writes alone. A group of more than
    200 records is several subrequests; a call left with one subrequest goes as its plain collection."""
    outcome = await r.h.put(*(campaign(f"evt-{i}") for i in range(campaigns)))

    subrequests = math.ceil(campaigns / 200)
    assert outcome.api_calls == math.ceil(subrequests / 5) == r.h.emulator.api_calls
    assert r.calls("POST composite") == subrequests // 5 + (1 if subrequests % 5 > 1 else 0)
    assert r.calls("PATCH composite/sobjects/{sobject}/{field}") == (1 if subrequests % 5 == 1 else 0)
    assert len(outcome.results) == campaigns and all(res["created"] for res in outcome.results)
    assert len(await r.names("Campaign")) == campaigns


async def test_five_kinds_of_write_in_one_pass_go_in_one_call(r: Rig) -> None:
    await r.h.put(member(1), member(2))  # they exist: one is updated, the other deleted next
    r.h.emulator.calls_by_endpoint.clear()

    outcome = await r.h.put(
        member(1, last="Renamed", at=1_700_000_000_001, n=1),  # update Contact
        member(2, operation="DELETE", n=1),  # delete
        member(3),  # create Contact
        campaign("evt-1"),  # upsert Campaign by Event_Id__c
        lead(1),  # create Lead
    )

    assert not outcome.parked and not outcome.pending
    assert r.h.emulator.calls_by_endpoint == {"POST composite": 2}  # the match queries, then the five writes
    assert outcome.api_calls == 2
    queries, writes = r.org.composites
    assert [(s.method, s.path) for s in queries] == [("GET", "query")] * 2  # Contacts, Leads by Email
    assert sorted(s.method for s in writes) == ["DELETE", "PATCH", "PATCH", "POST", "POST"]
    created = {res["key"]: res["created"] for res in outcome.results}
    assert created == {
        member(1)["key"]: False,
        member(2)["key"]: False,
        member(3)["key"]: True,
        campaign("evt-1")["key"]: True,
        lead(1)["key"]: True,
    }
    assert await r.names("Contact") == ["member1@example.org", "member3@example.org"]
    assert await r.names("Campaign") == ["Meetup"]
    assert [row["LastName"] for row in await r.h.query("SELECT LastName FROM Contact WHERE LastName = 'Renamed'")]


# ---------------------------------------------------------------------- one subrequest's answer
async def test_a_subrequest_refused_with_a_record_error_parks_only_its_records(r: Rig) -> None:
    r.org.reject("PATCH", CAMPAIGN_UPSERTS, 400, "STRING_TOO_LONG", "Campaign Name: data value too large")

    outcome = await r.h.put(campaign("evt-1"), campaign("evt-2"), member(1), member(2))

    assert r.calls("POST composite") == 1
    parked = sorted((w.write["key"], type(e), e.log_code()) for w, e in r.h.rec.parked)
    assert parked == [
        (campaign("evt-1")["key"], SalesforceRecordError, "STRING_TOO_LONG"),
        (campaign("evt-2")["key"], SalesforceRecordError, "STRING_TOO_LONG"),
    ]
    assert sorted(res["key"] for res in outcome.results) == [member(1)["key"], member(2)["key"]]
    assert not outcome.pending and await r.names("Contact") == ["member1@example.org", "member2@example.org"]


async def test_a_subrequest_answered_unable_to_lock_row_retries_only_its_records(r: Rig) -> None:
    r.org.reject("PATCH", CAMPAIGN_UPSERTS, 400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access", times=1)

    outcome = await r.h.put(campaign("evt-1"), member(1), member(2))

    assert not outcome.parked and not outcome.pending and r.h.rec.sleeps  # the campaign waited, then went again
    assert r.calls("POST composite") == 1
    upserts = r.org.writes("PATCH", CAMPAIGN_UPSERTS)
    assert len(upserts) == 2  # refused inside the composite, then alone
    creates = r.org.writes("POST")
    assert len(creates) == 1  # the Contacts were written once, in the first round
    assert await r.names("Campaign") == ["Meetup"]
    assert await r.names("Contact") == ["member1@example.org", "member2@example.org"]


async def test_locked_records_inside_a_composite_are_retried_alone(r: Rig) -> None:
    r.org.lock(lambda record: record.get("Email") == "member2@example.org")
    first = await r.h.put(campaign("evt-1"), member(1), member(2))
    r.org.unlock()
    assert r.calls("POST composite") == 1
    assert [w.write["key"] for w in first.pending] == [member(2)["key"]]  # retried until the put's wait ran out
    assert sorted(res["key"] for res in first.results) == [campaign("evt-1")["key"], member(1)["key"]]

    second = await r.h.sink.put(first.pending)
    assert [res["key"] for res in second.results] == [member(2)["key"]] and not r.h.rec.parked


async def test_a_subrequest_refused_for_a_removed_field_quarantines_its_mapping_only(r: Rig) -> None:
    r.org.reject("PATCH", CAMPAIGN_UPSERTS, 400, "INVALID_FIELD", "No such column 'Name' on sobject of type Campaign")

    outcome = await r.h.put(campaign("evt-1"), member(1))

    assert r.calls("POST composite") == 1
    assert [(w.write["mapping"], type(e)) for w, e in r.h.rec.parked] == [("events", MappingQuarantinedError)]
    assert [e.mapping for e in r.h.rec.entries if e.code == QUARANTINED] == ["events"]
    assert [res["key"] for res in outcome.results] == [member(1)["key"]]
    assert r.h.sink.quarantine.get("members") is None


async def test_a_subrequest_refused_with_another_fatal_error_stops_the_sink(r: Rig) -> None:
    r.org.reject("PATCH", CAMPAIGN_UPSERTS, 403, "API_DISABLED_FOR_ORG", "API is not enabled for this Organization")

    with pytest.raises(FatalError):
        await r.h.put(campaign("evt-1"), member(1))
    assert r.calls("POST composite") == 1
    assert not r.h.rec.parked and not [e for e in r.h.rec.entries if e.code == QUARANTINED]


async def test_a_whole_composite_answered_503_retries_every_record_of_it(r: Rig) -> None:
    r.org.reject("POST", "composite", 503, "SERVER_UNAVAILABLE", "Server temporarily unavailable", times=1)

    outcome = await r.h.put(campaign("evt-1"), member(1))

    assert not outcome.parked and not outcome.pending and r.h.rec.sleeps
    assert len(r.org.writes("POST", "composite")) == 2  # refused, then sent again with both
    assert await r.names("Campaign") == ["Meetup"] and await r.names("Contact") == ["member1@example.org"]


async def test_a_composite_committed_but_answered_503_is_matched_again_not_written_twice(r: Rig) -> None:
    r.org.lose("POST", "composite")  # the org runs every subrequest, the answer is lost

    outcome = await r.h.put(campaign("evt-1"), member(1), member(2))

    assert not outcome.parked and not outcome.pending
    assert len(r.org.writes("POST")) == 1  # the Contacts' create went once: the next round matched and updated them
    assert await r.names("Contact") == ["member1@example.org", "member2@example.org"]
    assert await r.names("Campaign") == ["Meetup"]
    assert sorted(res["key"] for res in outcome.results) == sorted(
        [campaign("evt-1")["key"], member(1)["key"], member(2)["key"]]
    )


# ---------------------------------------------------------------------- match queries
def crowd(count: int) -> list[dict[str, object]]:
    """``count`` members whose match queries (by Email) fill several URL-sized chunks."""
    return [member(i) for i in range(count)]


@pytest.mark.parametrize("members", [20, 120, 200, 400])
async def test_a_step_needing_n_match_queries_costs_one_call_per_five(members: int) -> None:
    async for r in rig_on(build(), query_max_chars=1000):  # ~28 emails a query: several queries a step
        outcome = await r.h.put(*crowd(members))

        queries = len(r.org.writes("GET", "query"))  # sent alone or inside a /composite
        assert queries == math.ceil(members / 28)
        writes = math.ceil(math.ceil(members / 200) / 5)
        assert outcome.api_calls == r.h.emulator.api_calls == math.ceil(queries / 5) + writes
        assert [len(c) for c in r.org.composites if c[0].path == "query"] == [5] * (queries // 5) + (
            [queries % 5] if queries % 5 > 1 else []
        )
        assert r.calls("GET query") == (1 if queries % 5 == 1 else 0)  # a call left with one query: alone
        assert len(outcome.results) == members and not outcome.parked and not outcome.pending


async def test_a_query_refused_for_a_removed_field_quarantines_only_its_objects_mapping(r: Rig) -> None:
    r.org.reject(
        "GET", "query", 400, "INVALID_FIELD", "No such column 'Email' on entity 'Lead'", containing="FROM Lead"
    )

    outcome = await r.h.put(member(1), member(2), lead(1))

    assert [(w.write["mapping"], type(e)) for w, e in r.h.rec.parked] == [("leads", MappingQuarantinedError)]
    assert [e.mapping for e in r.h.rec.entries if e.code == QUARANTINED] == ["leads"]
    assert sorted(res["key"] for res in outcome.results) == [member(1)["key"], member(2)["key"]]
    assert not outcome.pending and r.h.sink.quarantine.get("members") is None
    first = r.org.composites[0]  # both objects' queries in one call; the Contacts' answer was not lost with it
    assert [(s.method, s.path) for s in first] == [("GET", "query")] * 2
    assert outcome.api_calls == 3  # the packed queries; the Contacts' again (the next round); their create


async def test_a_query_answered_503_inside_a_composite_fails_the_step_then_all_go_again(r: Rig) -> None:
    r.org.reject("GET", "query", 503, "SERVER_UNAVAILABLE", "down", times=1, containing="FROM Lead")

    outcome = await r.h.put(member(1), lead(1))

    assert not outcome.parked and not outcome.pending and r.h.rec.sleeps  # the step waited, then went again
    rounds = [[s.path for s in c] for c in r.org.composites]
    assert rounds == [["query", "query"], ["query", "query"], ["composite/sobjects", "composite/sobjects"]]
    assert len(r.org.writes("POST")) == 2  # the Contact's create and the Lead's, once each, in one call
    assert await r.names("Contact") == ["member1@example.org"]
    assert [row["Email"] for row in await r.h.query("SELECT Email FROM Lead")] == ["lead1@example.org"]


async def test_a_packed_query_with_more_rows_than_a_page_is_followed(r: Rig) -> None:
    crowded = [{"LastName": f"Twin{i}", "Email": "twin@example.org"} for i in range(2000)]  # one page's worth
    await r.h.client.create_many("Contact", crowded)
    await r.h.client.create_many("Contact", [{"LastName": "Member1", "Email": "member1@example.org"}])
    r.h.emulator.calls_by_endpoint.clear()

    outcome = await r.h.put(member(0, email="twin@example.org"), member(1, last="Renamed"), lead(1))

    assert [s.path for s in r.org.composites[0]] == ["query", "query"]  # Contacts and Leads, one call
    assert r.calls("GET query/{locator}") == 1  # member1's row is on the Contacts' second page
    assert outcome.api_calls == 3  # the packed queries, the further page, the writes
    by_key = {res["key"]: res["created"] for res in outcome.results}
    assert by_key == {member(0, email="twin@example.org")["key"]: False, member(1)["key"]: False, lead(1)["key"]: True}
    assert [
        row["LastName"] for row in await r.h.query("SELECT LastName FROM Contact WHERE Email = 'member1@example.org'")
    ] == ["Renamed"]


async def test_a_query_asked_ahead_but_never_needed_fails_nothing(r: Rig) -> None:
    for i in range(5):
        r.h.emulator.store.create("Contact", {"LastName": f"M{i}", "Email": f"m{i}@x.org", "Member_Id__c": f"u-{i}"})
    r.org.reject("GET", "query", 400, "INVALID_FIELD", "No such column 'Member_Id__c' on Lead", containing="FROM Lead")

    outcome = await r.h.put(*(planned_member(f"u-{i}", f"m{i}@x.org", last=f"New{i}") for i in range(5)))

    # the Contacts' member-id query and, in the room it left, the later steps' (the Leads' refused)
    assert [s.path for s in r.org.composites[0]] == ["query"] * 4
    assert len(r.org.writes("GET", "query")) == 4  # every member found at the first step: nothing asked again
    assert not r.h.rec.parked and not [e for e in r.h.rec.entries if e.code == QUARANTINED]
    assert sorted(res["created"] for res in outcome.results) == [False] * 5 and not outcome.pending


async def test_a_query_asked_ahead_that_failed_is_asked_again_by_the_step_that_needs_it(r: Rig) -> None:
    r.org.reject("GET", "query", 503, "SERVER_UNAVAILABLE", "down", times=1, containing="FROM Lead")

    outcome = await r.h.put(planned_member("u-1", "ada@x.org", last="Lovelace"))  # a new member: every step

    assert not r.h.rec.sleeps and not outcome.pending and not r.h.rec.parked  # no step failed: no retry
    assert [res["created"] for res in outcome.results] == [True]
    # Contact by member id with the later steps ahead (Lead by member id refused), then that one again
    assert [[s.path for s in c] for c in r.org.composites if c[0].path == "query"] == [["query"] * 4]
    assert r.calls("GET query") == 1 and len(r.org.writes("GET", "query")) == 5
    assert outcome.api_calls == 2 + 1  # two calls of queries, the create


async def test_a_query_ahead_whose_chunks_do_not_fit_the_room_left_is_passed_over_and_asked_by_its_step() -> None:
    async for r in rig_on(build(), query_max_chars=1000):  # ~28 emails a query: two for 40 members
        outcome = await r.h.put(*(planned_member(f"u-{i:03d}", f"member{i}@x.org") for i in range(40)))

        # Contact by member id (one query), in the room it leaves Lead by member id (one) and Contact
        # by Email (two); Lead by Email (two) does not fit the last room left: its own step asks it
        assert [len(c) for c in r.org.composites if c[0].path == "query"] == [4, 2]
        assert len(r.org.writes("GET", "query")) == 6
        assert outcome.api_calls == 3 and len(outcome.results) == 40 and not outcome.pending


async def test_the_parents_lookups_carry_the_match_queries_of_the_writes_without_parents(r: Rig) -> None:
    r.h.emulator.store.create("Campaign", {"Name": "Meetup", "Event_Id__c": "evt-1"})
    r.h.emulator.store.create("Contact", {"LastName": "Lovelace", "Email": "ada@x.org"})

    outcome = await r.h.put(registration("evt-1", "ada@x.org"), planned_member("u-9", "new@x.org", last="New"))

    # the registration's parents (Campaign, Contact) looked up, the new member's first three steps ahead
    first = r.org.composites[0]
    assert [s.path for s in first] == ["query"] * 5
    assert outcome.api_calls == 3  # that; the registration's match with the member's last step; the writes
    assert sorted((res["sobject"], res["created"]) for res in outcome.results) == [
        ("CampaignMember", True),
        ("Contact", True),
    ]
    assert not outcome.pending and not r.h.rec.parked


# ---------------------------------------------------------------------- parents and children in one round
async def test_a_child_whose_parents_id_is_known_goes_in_the_parents_round_one_call_for_both(r: Rig) -> None:
    await r.h.put(member(1), campaign("evt-1"))  # both parents exist: their Ids are known
    r.org.composites.clear()

    outcome = await r.h.put(
        member(1, last="Renamed", at=1_700_000_000_001, n=1), registration("evt-1", "member1@example.org")
    )

    assert not outcome.parked and not outcome.pending and len(outcome.results) == 2
    writes = [c for c in r.org.composites if any(s.method != "GET" for s in c)]
    assert len(writes) == 1  # the Contact's update and the CampaignMember's write: one call
    assert sorted(s.path for s in writes[0]) == ["composite/sobjects", "composite/sobjects"]
    assert outcome.api_calls == 2  # the match queries, then the writes
    members = await r.h.query("SELECT ContactId, CampaignId FROM CampaignMember")
    assert len(members) == 1


async def test_a_child_whose_parent_is_deleted_in_the_same_batch_is_not_written_with_the_delete(r: Rig) -> None:
    await r.h.put(member(1), campaign("evt-1"))
    r.org.sent.clear()

    outcome = await r.h.put(member(1, operation="DELETE", n=1), registration("evt-1", "member1@example.org"))

    assert [s.method for s in r.org.sent if s.method != "GET"] == ["DELETE"]  # the child did not ride along
    assert [w.write["sobject"] for w in outcome.pending] == ["CampaignMember"]  # its parent is gone: it waits
