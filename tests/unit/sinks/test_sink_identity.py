"""Member identity and order per Salesforce record: the sink on the emulator, in process, fed the writes
the shipped default mapping plans (``planned_member``: keyed by the member id, then matched on Email).

- an email change updates the member's record (found by member id): no DUPLICATE_VALUE, no second record;
- a record that predates sfsync (an Email, no member id) is found by Email and gets the member id;
  a record holding another member id is never taken;
- matching stays batched: one query per (object, key field) and batch, never one per record;
- an older write never overwrites a newer value of the same record, across batches and write keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sfsync.emulator.server import build
from sfsync.sinks.contract import BatchOutcome
from tests.kit import EpochClock, FaultyOrg
from tests.kit.sink import T0, TOPIC, Harness, Recorder, make_sink, member, planned_member


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    emulator = build()
    rec = Recorder()
    client, sink = make_sink(emulator, rec)
    async with client:
        yield Harness(emulator, client, sink, rec)


async def contacts(h: Harness) -> list[dict[str, Any]]:
    return await h.query("SELECT Id, Email, LastName, Title, Member_Id__c FROM Contact ORDER BY Id")


def queries(org: FaultyOrg) -> int:
    """The SOQL queries that reached the org, alone or inside a ``/composite``."""
    return len(org.writes("GET", "query"))


def query_calls(h: Harness, org: FaultyOrg) -> int:
    """The API calls those queries cost: each alone, or each ``/composite`` of queries."""
    packed = sum(1 for sent in org.composites if all(s.path == "query" for s in sent))
    return h.emulator.calls_by_endpoint.get("GET query", 0) + packed


def assert_clean(h: Harness, *outcomes: BatchOutcome) -> None:
    assert not h.rec.parked, [(w.write["key"], e) for w, e in h.rec.parked]
    assert not [e for e in h.rec.entries if e.severity == "ERROR"]
    for outcome in outcomes:
        assert not outcome.pending and not outcome.parked


# ---------------------------------------------------------------------- identity
async def test_an_email_change_updates_the_same_contact_without_duplicate_value_or_a_second_record(
    h: Harness,
) -> None:
    created = await h.put(planned_member("u-1", "ada@old.org", last="Lovelace", event_type="UserCreated"))
    (before,) = await contacts(h)
    moved = await h.put(planned_member("u-1", "ada@new.org", last="Lovelace", at=T0 + 10, n=1))
    titled = await h.put(planned_member("u-1", "ada@new.org", last="Lovelace", title="CTO", at=T0 + 20, n=2))
    assert_clean(h, created, moved, titled)
    (after,) = await contacts(h)
    assert after["Id"] == before["Id"]
    assert (after["Email"], after["Title"], after["Member_Id__c"]) == ("ada@new.org", "CTO", "u-1")
    assert [r["created"] for o in (created, moved, titled) for r in o.results] == [True, False, False]
    assert {r["salesforce_id"] for o in (created, moved, titled) for r in o.results} == {before["Id"]}


async def test_a_contact_that_predates_sfsync_is_found_by_email_and_gets_the_member_id(h: Harness) -> None:
    existing = h.emulator.store.create("Contact", {"LastName": "Rep entered", "Email": "ada@x.org"})
    first = await h.put(planned_member("u-1", "ADA@x.org", last="Lovelace"))  # Email compares as Salesforce does
    (row,) = await contacts(h)
    assert (row["Id"], row["Member_Id__c"], row["LastName"]) == (existing, "u-1", "Lovelace")
    # from then on it is found by the member id: a new email moves it, no second record
    later = await h.put(planned_member("u-1", "ada@new.org", last="Lovelace", at=T0 + 10, n=1))
    assert_clean(h, first, later)
    (row,) = await contacts(h)
    assert (row["Id"], row["Email"]) == (existing, "ada@new.org")


async def test_a_contact_holding_another_member_id_is_not_taken_by_email(h: Harness) -> None:
    other = h.emulator.store.create("Contact", {"LastName": "Sibling", "Email": "family@x.org", "Member_Id__c": "u-2"})
    outcome = await h.put(planned_member("u-1", "family@x.org", last="Lovelace"))
    assert_clean(h, outcome)
    rows = {r["Member_Id__c"]: r for r in await contacts(h)}
    assert set(rows) == {"u-1", "u-2"}
    assert (rows["u-2"]["Id"], rows["u-2"]["LastName"]) == (other, "Sibling")  # untouched
    assert rows["u-1"]["Email"] == "family@x.org" and outcome.results[0]["created"] is True


async def test_matching_costs_one_query_per_key_field_and_object_per_batch_not_per_record(faulty: Faulty) -> None:
    h, org = faulty.h, faulty.org
    for i in range(0, 40, 2):  # half of them were in the org before sfsync: an Email, no member id
        h.emulator.store.create("Contact", {"LastName": f"Old{i}", "Email": f"m{i}@x.org"})
    first = await h.put(*(planned_member(f"u-{i}", f"m{i}@x.org", last=f"M{i}") for i in range(40)))
    # member id in Contact, in Lead; then Email in Contact, in Lead for those not found yet
    assert queries(org) == 4
    # one call: the first step's query with the later steps' in the room its /composite leaves
    assert query_calls(h, org) == 1
    assert sum(r["created"] for r in first.results) == 20
    before, calls_before = queries(org), query_calls(h, org)
    again = await h.put(*(planned_member(f"u-{i}", f"new{i}@x.org", last=f"M{i}", at=T0 + 5, n=1) for i in range(40)))
    assert queries(org) - before == 4  # every one found by its member id (the later steps asked ahead)
    assert query_calls(h, org) - calls_before == 1
    assert_clean(h, first, again)
    rows = await contacts(h)
    assert len(rows) == 40 and {r["Member_Id__c"] for r in rows} == {f"u-{i}" for i in range(40)}
    assert {r["Email"] for r in rows} == {f"new{i}@x.org" for i in range(40)}


# ---------------------------------------------------------------------- order per Salesforce record
async def test_an_older_write_under_another_key_never_overwrites_a_newer_value_of_the_same_record(
    h: Harness,
) -> None:
    # the same person under two keys: a write keyed by Email (planned before the member id was the key)
    # and one keyed by the member id
    by_email = member(1, email="ada@x.org", last="Older", at=T0 + 50)
    newer = planned_member("u-1", "ada@x.org", last="Newer", at=T0 + 100)
    # across batches
    await h.put(newer)
    outcome = await h.put(by_email)
    (row,) = await contacts(h)
    assert row["LastName"] == "Newer" and outcome.results == []
    # in one batch, the newer first: the older one waits for its turn at the record, then has nothing newer
    newest = planned_member("u-1", "ada@x.org", last="Newest", at=T0 + 300, n=1)
    outcome = await h.put(newest, member(1, email="ada@x.org", last="Old again", at=T0 + 200, n=2))
    assert_clean(h, outcome)
    (row,) = await contacts(h)
    assert row["LastName"] == "Newest"


@dataclass
class Faulty:
    h: Harness
    org: FaultyOrg

    async def put(self, *writes: dict[str, Any], carry: BatchOutcome | None = None) -> BatchOutcome:
        """One batch: the writes ``carry`` left pending, then ``writes`` read fresh (as the loop does)."""
        pending = list(carry.pending) if carry is not None else []
        return await self.h.sink.put([*pending, *self.h.incoming(*writes)])


@pytest.fixture
async def faulty() -> AsyncIterator[Faulty]:
    emulator = build()
    rec = Recorder()
    wrapped: list[FaultyOrg] = []

    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        wrapped.append(FaultyOrg(transport))
        return wrapped[0]

    client, sink = make_sink(emulator, rec, wrap=wrap, clock=EpochClock(), retry_wait_initial_s=0.1)
    async with client:
        yield Faulty(Harness(emulator, client, sink, rec), wrapped[0])


async def test_a_write_retried_across_batches_never_overwrites_a_later_write_to_the_same_record(
    faulty: Faulty,
) -> None:
    h, org = faulty.h, faulty.org
    record = h.emulator.store.create("Contact", {"LastName": "Rep", "Email": "ada@x.org", "Member_Id__c": "u-1"})
    org.lock(lambda body: body.get("LastName") == "Older")  # that write's record is locked for now
    older = member(1, email="ada@x.org", last="Older", at=T0 + 50)  # keyed by Email
    outcome = await faulty.put(older)
    assert [w.write["key"] for w in outcome.pending] == [older["key"]]
    # while it is carried, a later write for the same record (under the member id key) goes through
    outcome = await faulty.put(planned_member("u-1", "ada@x.org", last="Newer", at=T0 + 100), carry=outcome)
    assert [r["salesforce_id"] for r in outcome.results] == [record]
    assert [w.write["key"] for w in outcome.pending] == [older["key"]]
    org.unlock()
    outcome = await faulty.put(carry=outcome)  # the carried write has nothing newer: done, no call
    assert not outcome.pending and not outcome.parked and outcome.results == []
    assert outcome.committed == {(TOPIC, 0): 1}  # the carried write (offset 0) is done
    (row,) = await contacts(h)
    assert (row["Id"], row["LastName"]) == (record, "Newer")
