"""The sink's core against the real emulator, in process (httpx.ASGITransport, no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfsync.emulator.app import Emulator
from sfsync.emulator.faults import Faults
from sfsync.emulator.server import build
from sfsync.errors import SfsyncError
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.merge import merge_writes
from sfsync.sinks.settings import load_sink_settings
from tests.kit.sink import T0, TOPIC, Harness, Recorder, campaign, fv, make_sink, member, registration, write


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    emulator = build()
    rec = Recorder()
    client, sink = make_sink(emulator, rec)
    async with client:
        yield Harness(emulator, client, sink, rec)


def writes_by(emulator: Emulator, method: str) -> int:
    return emulator.calls_by_endpoint.get(f"{method} composite/sobjects", 0)


async def count(h: Harness, soql: str) -> int:
    return len(await h.query(soql))


# ---------------------------------------------------------------------- API economy


async def test_thousand_members_matched_by_email_cost_at_most_0_011_calls_per_record(h: Harness) -> None:
    batches = [[member(i) for i in range(b, b + 200)] for b in range(0, 1000, 200)]
    for batch in batches:  # first pass: creates (one match query + one create per 200)
        outcome = await h.put(*batch)
        assert not outcome.pending and not outcome.parked
        assert all(r["created"] for r in outcome.results)
    assert await count(h, "SELECT Id FROM Contact WHERE Email LIKE 'member%'") == 1000
    before = h.emulator.api_calls
    for batch in batches:  # steady state: all updates
        changed = [
            member(i, last=f"Renamed{i}", at=T0 + 1, n=1)
            for i in (int(w["key"].split("member")[1].split("@")[0]) for w in batch)
        ]
        outcome = await h.put(*changed)
        assert len(outcome.results) == 200 and not any(r["created"] for r in outcome.results)
        assert outcome.api_calls == 2
    used = h.emulator.api_calls - before
    assert used / 1000 <= 0.011, used
    assert await count(h, "SELECT Id FROM Contact WHERE LastName LIKE 'Renamed%'") == 1000
    assert await count(h, "SELECT Id FROM Contact WHERE Email LIKE 'member%'") == 1000  # no duplicates


async def test_every_write_carries_the_sfsync_client_call_option(h: Harness) -> None:
    await h.put(*(member(i) for i in range(5)))
    await h.put(*(member(i, last="X", at=T0 + 5) for i in range(5)))
    assert h.emulator.call_options, "writes were recorded"
    assert {c["client"] for c in h.emulator.call_options} == {"sfsync"}


# ---------------------------------------------------------------------- merging and order


def test_merge_keeps_the_newest_value_per_field_and_a_delete_wins() -> None:
    a = member(1, last="New", at=T0 + 10)
    b = member(1, last="Old", at=T0 + 5, n=1)
    b["fields"]["Title"] = fv("CTO", T0 + 1)
    incoming = [IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate([a, b])]
    (segments,) = merge_writes(incoming).values()
    (seg,) = segments
    assert seg.fields["LastName"]["value"] == "New"  # the later-arriving but older value lost
    assert seg.fields["Title"]["value"] == "CTO"
    assert [w.offset for w in seg.writes] == [0, 1]
    d = member(1, operation="DELETE", n=2)
    c = member(1, last="Again", at=T0 + 20, n=3)
    incoming = [IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate([a, d, c])]
    (segments,) = merge_writes(incoming).values()
    assert [s.op for s in segments] == ["DELETE", "UPSERT"]
    assert len(segments[0].writes) == 2


async def test_a_newer_fill_if_empty_value_in_the_batch_does_not_cancel_an_update(h: Harness) -> None:
    # the Campaign exists; EventUpdated renames it, then a registration ensures it (fill if empty)
    key, ext = "ws-1|Campaign:Event_Id__c:evt-8", ("Event_Id__c", "evt-8")
    await h.put(write(key, "Campaign", {"Name": fv("Launch")}, external_id=ext, mapping="events"))
    renamed = write(key, "Campaign", {"Name": fv("Launch v2", T0 + 10)}, external_id=ext, mapping="events", n=1)
    ensured = write(key, "Campaign", {"Name": fv("Launch v2", T0 + 20, "IF_EMPTY")}, external_id=ext, n=2)
    (segments,) = merge_writes([IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate([renamed, ensured])]).values()
    assert segments[0].fields["Name"]["policy"] == "ALWAYS"
    await h.put(renamed, ensured)
    (row,) = await h.query("SELECT Name FROM Campaign WHERE Event_Id__c = 'evt-8'")
    assert row["Name"] == "Launch v2"


async def test_a_fill_if_empty_value_first_in_the_batch_does_not_cancel_an_older_update(h: Harness) -> None:
    # The chaos run's stale Emails: a member's registration (its own topic, processed first) ensures the
    # Contact with the new email (fill if empty, stamped later), then the profile update that changed the
    # email arrives in the same batch, stamped earlier. The update must still be written.
    key, ext = "ws-1|Contact:Member_Id__c:m-1", ("Member_Id__c", "m-1")
    fields = {"LastName": fv("Lovelace"), "Member_Id__c": fv("m-1")}
    await h.put(write(key, "Contact", {**fields, "Email": fv("old@example.org")}, external_id=ext))
    ensured = write(key, "Contact", {"Email": fv("new@example.org", T0 + 20, "IF_EMPTY")}, external_id=ext, n=1)
    updated = write(key, "Contact", {"Email": fv("new@example.org", T0 + 10)}, external_id=ext, mapping="members", n=2)
    (segments,) = merge_writes([IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate([ensured, updated])]).values()
    assert segments[0].fields["Email"]["policy"] == "ALWAYS"
    await h.put(ensured, updated)
    (row,) = await h.query("SELECT Email FROM Contact WHERE Member_Id__c = 'm-1'")
    assert row["Email"] == "new@example.org"


def test_a_fill_newer_than_a_cleared_value_fills_it_whichever_comes_first_in_the_batch() -> None:
    key, ext = "ws-1|Contact:Member_Id__c:m-2", ("Member_Id__c", "m-2")
    cleared = write(key, "Contact", {"Title": fv(None, T0 + 10)}, external_id=ext, mapping="members")
    filled = write(key, "Contact", {"Title": fv("CTO", T0 + 20, "IF_EMPTY")}, external_id=ext, n=1)
    stale_fill = write(key, "Contact", {"Title": fv("CEO", T0 + 5, "IF_EMPTY")}, external_id=ext, n=2)
    for order in ([cleared, filled], [filled, cleared]):
        (segments,) = merge_writes([IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate(order)]).values()
        assert segments[0].fields["Title"] == fv("CTO", T0 + 20, "ALWAYS")
    for order in ([cleared, stale_fill], [stale_fill, cleared]):
        (segments,) = merge_writes([IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate(order)]).values()
        assert segments[0].fields["Title"] == fv(None, T0 + 10, "ALWAYS")


async def test_an_older_write_never_overwrites_a_newer_value_across_batches(h: Harness) -> None:
    await h.put(member(1, last="Newest", at=T0 + 100))
    updates = writes_by(h.emulator, "PATCH")
    outcome = await h.put(member(1, last="Stale", at=T0 + 1, n=1), member(1, last="Newer", at=T0 + 50, n=2))
    (row,) = await h.query("SELECT LastName FROM Contact WHERE Email = 'member1@example.org'")
    assert row["LastName"] == "Newest"
    # nothing newer to write: no update call, no result, and the batch is done
    assert writes_by(h.emulator, "PATCH") == updates
    assert outcome.results == [] and not outcome.pending and not outcome.parked
    assert outcome.committed == {(TOPIC, 0): h.offset}
    # a newer value of one field goes out; the older value beside it still does not
    later = member(1, last="Older", at=T0 + 60, n=3)
    later["fields"]["Title"] = fv("CTO", T0 + 200)
    outcome = await h.put(later)
    (row,) = await h.query("SELECT LastName, Title FROM Contact WHERE Email = 'member1@example.org'")
    assert (row["LastName"], row["Title"]) == ("Newest", "CTO")
    assert set(outcome.results[0]["fields"]) == {"Title"}


async def test_a_create_then_an_update_only_write_in_one_batch_creates_the_record(h: Harness) -> None:
    # e.g. NewEventPublished (may create) then EventUnpublished (update only) for one Campaign
    created = member(1, last="Published", at=T0)
    update_only = member(1, last="Unpublished", at=T0 + 5, n=1, create_if_missing=False)
    outcome = await h.put(created, update_only)
    (row,) = await h.query("SELECT LastName FROM Contact WHERE Email = 'member1@example.org'")
    assert row["LastName"] == "Unpublished"
    assert len(outcome.results) == 1 and outcome.results[0]["created"] is True


async def test_an_update_only_write_alone_creates_nothing(h: Harness) -> None:
    await h.put(member(2, create_if_missing=False))
    assert await count(h, "SELECT Id FROM Contact WHERE Email = 'member2@example.org'") == 0


async def test_an_update_only_write_by_external_id_updates_a_record_of_an_earlier_batch(h: Harness) -> None:
    # NewEventPublished, then in a later batch EventUnpublished (update only, no match key but the external ID)
    key, ext = "ws-1|Campaign:Event_Id__c:evt-9", ("Event_Id__c", "evt-9")
    published = write(key, "Campaign", {"Name": fv("Launch"), "IsActive": fv(True)}, external_id=ext, mapping="events")
    await h.put(published)
    unpublished = write(
        key,
        "Campaign",
        {"IsActive": fv(False, T0 + 5)},
        external_id=ext,
        mapping="events",
        n=1,
        create_if_missing=False,
    )
    outcome = await h.put(unpublished)
    (row,) = await h.query("SELECT Name, IsActive FROM Campaign WHERE Event_Id__c = 'evt-9'")
    assert (row["Name"], row["IsActive"]) == ("Launch", False)
    assert len(outcome.results) == 1 and outcome.results[0]["created"] is False
    assert not [e for e in h.rec.entries if e.code == "NO_MATCH_SKIP"]


async def test_delete_after_upsert_in_one_batch_deletes(h: Harness) -> None:
    await h.put(member(1))
    outcome = await h.put(member(1, last="Changed", at=T0 + 1, n=1), member(1, operation="DELETE", n=2))
    assert await count(h, "SELECT Id FROM Contact WHERE Email = 'member1@example.org'") == 0
    assert len(outcome.results) == 1 and outcome.committed == {(TOPIC, 0): h.offset}


# ---------------------------------------------------------------------- if_empty


async def test_if_empty_reads_current_values_in_the_match_query_and_skips_filled_fields(h: Harness) -> None:
    h.emulator.store.create("Contact", {"LastName": "Rep", "Email": "m@x.org", "Title": "Keep me"})
    h.emulator.store.create("Contact", {"LastName": "Rep2", "Email": "n@x.org"})
    one = member(1, email="M@X.ORG")  # matching is case-insensitive, as Salesforce's
    one["fields"]["Title"] = fv("From product", policy="IF_EMPTY")
    two = member(2, email="n@x.org")
    two["fields"]["Title"] = fv("Filled", policy="IF_EMPTY")
    before = h.emulator.calls_by_endpoint.get("GET query", 0)
    outcome = await h.put(one, two)
    assert h.emulator.calls_by_endpoint.get("GET query", 0) - before == 1
    titles = {r["Email"].lower(): r["Title"] for r in await h.query("SELECT Email, Title FROM Contact")}
    assert titles == {"m@x.org": "Keep me", "n@x.org": "Filled"}
    assert [e.code for e in h.rec.entries] == ["LOOKUP_POLICY_SKIP"] and h.rec.entries[0].field == "Title"
    assert not any(r["created"] for r in outcome.results)


async def test_if_empty_skips_are_reported_once_per_field_and_batch_not_per_record(h: Harness) -> None:
    for i in range(5):
        h.emulator.store.create("Contact", {"LastName": f"Rep{i}", "Email": f"member{i}@example.org", "Title": "Set"})
    batch = [member(i) for i in range(5)]
    for w in batch:
        w["fields"]["Title"] = fv("From product", policy="IF_EMPTY")
    await h.put(*batch)
    assert [(e.code, e.field) for e in h.rec.entries] == [("LOOKUP_POLICY_SKIP", "Title")]
    assert "and 4 more record(s) of this batch" in h.rec.entries[0].message
    await h.put(*[member(i, n=1) | {"fields": {"Title": fv("Again", policy="IF_EMPTY")}} for i in range(2)])
    assert len(h.rec.entries) == 2  # the next batch reports its own


# ---------------------------------------------------------------------- Contacts then Leads


async def test_contacts_then_leads_and_a_converted_lead_resolves_to_its_contact(h: Harness) -> None:
    lead_id = h.emulator.store.create("Lead", {"LastName": "L", "Company": "Acme", "Email": "lead@x.org"})
    conv_id = h.emulator.store.create("Lead", {"LastName": "C", "Company": "Acme", "Email": "conv@x.org"})
    _, contact_id = h.emulator.store.convert_lead(conv_id)
    contact_first = h.emulator.store.create("Contact", {"LastName": "K", "Email": "both@x.org"})
    h.emulator.store.create("Lead", {"LastName": "K", "Company": "Acme", "Email": "both@x.org"})
    writes = [
        member(i, email=e, search_objects=["Contact", "Lead"])
        for i, e in enumerate(["lead@x.org", "conv@x.org", "both@x.org", "new@x.org"])
    ]
    for w in writes:
        w["fields"]["Title"] = fv("Member")
    outcome = await h.put(*writes)
    assert not outcome.parked and not outcome.pending
    by_key = {r["key"]: r for r in outcome.results}
    assert by_key["ws-1|Contact:Email:lead@x.org"]["sobject"] == "Lead"
    assert by_key["ws-1|Contact:Email:lead@x.org"]["salesforce_id"][:15] == lead_id[:15]
    assert by_key["ws-1|Contact:Email:conv@x.org"]["sobject"] == "Contact"
    assert by_key["ws-1|Contact:Email:conv@x.org"]["salesforce_id"][:15] == contact_id[:15]
    assert by_key["ws-1|Contact:Email:both@x.org"]["salesforce_id"][:15] == contact_first[:15]
    assert (
        by_key["ws-1|Contact:Email:new@x.org"]["created"] is True
        and by_key["ws-1|Contact:Email:new@x.org"]["sobject"] == "Contact"
    )
    (lead,) = await h.query(f"SELECT Title FROM Lead WHERE Id = '{lead_id}'")
    assert lead["Title"] == "Member"
    (contact,) = await h.query(f"SELECT Title FROM Contact WHERE Id = '{contact_id}'")
    assert contact["Title"] == "Member"


async def test_a_write_matched_to_a_lead_leaves_out_what_leads_lack_whatever_the_case_of_the_names(h: Harness) -> None:
    lead_id = h.emulator.store.create("Lead", {"LastName": "L", "Company": "Acme", "Email": "lead@x.org"})
    spelled = member(1, email="lead@x.org", search_objects=["Contact", "Lead"])
    spelled["fields"] |= {"Title": fv("Member"), "Department": fv("Ops"), "MailingCity": fv("Porto")}
    other_case = member(2, email="lead@x.org", search_objects=["Contact", "Lead"])
    other_case["fields"] |= {"title": fv("Chair", T0 + 1), "department": fv("Ops")}
    for w in (spelled, other_case):
        outcome = await h.put(w)
        assert not outcome.parked and not outcome.pending
        (result,) = outcome.results
        assert result["sobject"] == "Lead" and result["salesforce_id"][:15] == lead_id[:15]
        assert not {"Department", "department", "MailingCity"} & set(result["fields"])  # Contact's, not a Lead's
    (lead,) = await h.query(f"SELECT Title FROM Lead WHERE Id = '{lead_id}'")
    assert lead["Title"] == "Chair"  # a name in another case is still the field's


# ---------------------------------------------------------------------- parents


async def test_children_go_after_their_parents_and_a_replay_creates_nothing(h: Harness) -> None:
    # the children come first in the batch; they still wait for their parents
    batch = [registration("evt-1", "a@x.org"), registration("evt-1", "b@x.org"), campaign("evt-1")]
    batch += [member(1, email="a@x.org"), member(2, email="b@x.org")]
    outcome = await h.put(*batch)
    assert not outcome.parked and not outcome.pending, outcome
    assert [r["sobject"] for r in outcome.results][-2:] == ["CampaignMember", "CampaignMember"]
    assert await count(h, "SELECT Id FROM Campaign") == 1
    assert await count(h, "SELECT Id FROM CampaignMember") == 2
    ids = {(r["sobject"], r["salesforce_id"]) for r in outcome.results}
    # a replay after a crash (fresh sink: empty identity cache) updates what the first attempt made
    rec = Recorder()
    client, fresh = make_sink(h.emulator, rec)
    async with client:
        again = await fresh.put(h.incoming(*batch))
    assert not again.parked and not rec.parked and not again.pending
    assert not any(r["created"] for r in again.results)
    assert {(r["sobject"], r["salesforce_id"]) for r in again.results} == ids
    assert await count(h, "SELECT Id FROM Campaign") == 1
    assert await count(h, "SELECT Id FROM CampaignMember") == 2
    assert await count(h, "SELECT Id FROM Contact") == 2


async def test_a_replayed_registration_updates_the_member_instead_of_duplicate_value(h: Harness) -> None:
    await h.put(campaign("evt-2"), member(1, email="a@x.org"))
    await h.put(registration("evt-2", "a@x.org"))
    outcome = await h.put(registration("evt-2", "a@x.org", status="attended", n=1))
    assert not outcome.parked
    (row,) = await h.query("SELECT Attendee_Status__c FROM CampaignMember")
    assert row["Attendee_Status__c"] == "attended"
    assert not [e for e in h.rec.entries if e.code == "DUPLICATE_VALUE"]


async def test_a_child_whose_parent_is_missing_waits_and_never_creates_a_second_parent(h: Harness) -> None:
    rec = Recorder()
    client, sink = make_sink(h.emulator, rec, max_parent_waits=2)
    async with client:
        child = h.incoming(registration("evt-9", "a@x.org"))
        first = await sink.put(child)
        assert first.pending == child and first.committed == {(TOPIC, 0): child[0].offset}
        assert await count(h, "SELECT Id FROM Campaign") == 0
        assert await count(h, "SELECT Id FROM CampaignMember") == 0
        later = h.incoming(member(5, email="z@x.org"))
        second = await sink.put([*first.pending, *later])
        assert not second.pending and len(rec.parked) == 1
        assert rec.parked[0][1].__class__.__name__ == "ParentNotFoundError"
        assert second.committed == {(TOPIC, 0): later[0].offset + 1}


async def test_a_parent_written_earlier_by_someone_else_is_found_by_its_key(h: Harness) -> None:
    h.emulator.store.create("Campaign", {"Name": "Old", "Event_Id__c": "evt-3"})
    h.emulator.store.create("Contact", {"LastName": "A", "Email": "a@x.org"})
    outcome = await h.put(registration("evt-3", "a@x.org"))
    assert not outcome.pending and outcome.results[0]["created"] is True
    assert await count(h, "SELECT Id FROM Campaign") == 1


# ---------------------------------------------------------------------- record types


async def record_types(h: Harness, email: str) -> list[str]:
    rows = await h.query(f"SELECT RecordType.DeveloperName FROM Contact WHERE Email = '{email}'")
    return [r["RecordType"]["DeveloperName"] for r in rows]


async def test_an_external_id_upsert_with_a_record_type_never_re_types_an_existing_record(h: Harness) -> None:
    h.emulator.store.create("Contact", {"LastName": "Sales", "Email": "old@x.org", "Member_Id__c": "u-7"})
    by_member_id = {"external_id": ("Member_Id__c", "u-7"), "record_type": "Community_Member"}
    outcome = await h.put(
        write("ws-1|Contact:Member_Id__c:u-7", "Contact", {"LastName": fv("Seven", T0)}, **by_member_id),  # type: ignore[arg-type]
        write("ws-1|Contact:Member_Id__c:u-8", "Contact", {"LastName": fv("Eight", T0)},
              external_id=("Member_Id__c", "u-8"), record_type="Community_Member"),
    )  # fmt: skip
    assert [r["created"] for r in outcome.results] == [False, True] and not outcome.parked
    assert await record_types(h, "old@x.org") == ["Business_Contact"]  # updated, not re-typed
    rows = await h.query("SELECT LastName, RecordType.DeveloperName FROM Contact WHERE Member_Id__c = 'u-8'")
    assert [(r["LastName"], r["RecordType"]["DeveloperName"]) for r in rows] == [("Eight", "Community_Member")]


async def test_a_created_record_gets_the_mapping_record_type_and_later_updates_keep_it(h: Harness) -> None:
    outcome = await h.put(member(1, record_type="Community_Member"), member(2))
    assert [r["created"] for r in outcome.results] == [True, True]
    assert await record_types(h, "member1@example.org") == ["Community_Member"]
    assert await record_types(h, "member2@example.org") == ["Business_Contact"]  # none asked: the org's default
    # a person sales created (the default record type) is matched and updated, never re-typed
    h.emulator.store.create("Contact", {"LastName": "Sales", "Email": "sales@x.org"})
    renamed = [
        member(1, last="Renamed", at=T0 + 5, n=1, record_type="Community_Member"),
        member(3, email="sales@x.org", last="Member", at=T0 + 5, n=1, record_type="Community_Member"),
    ]
    outcome = await h.put(*renamed)
    assert not any(r["created"] for r in outcome.results) and not outcome.parked
    assert await record_types(h, "member1@example.org") == ["Community_Member"]
    assert await record_types(h, "sales@x.org") == ["Business_Contact"]
    (row,) = await h.query("SELECT LastName FROM Contact WHERE Email = 'sales@x.org'")
    assert row["LastName"] == "Member"


async def test_a_record_type_named_by_its_label_resolves_too(h: Harness) -> None:
    await h.put(member(1, record_type="Community Member"))
    assert await record_types(h, "member1@example.org") == ["Community_Member"]


async def test_an_unknown_or_inactive_record_type_parks_the_record_and_the_rest_is_written(h: Harness) -> None:
    unknown = member(1, email="unknown@x.org", record_type="No_Such_Type")
    inactive = member(2, email="inactive@x.org", record_type="Partner_Contact")
    master = member(3, email="master@x.org", record_type="Master")  # never assignable once others exist
    no_field = campaign("evt-rt")  # Campaign has no record types (and no RecordTypeId): upserted by external id
    no_field["record_type"] = "Master"
    good = [member(i, record_type="Community_Member") for i in range(10, 13)]
    outcome = await h.put(unknown, inactive, master, no_field, *good, campaign("evt-ok"))
    reasons = {w.write["key"]: getattr(e, "error_code", "") for w, e in h.rec.parked}
    assert reasons == {
        "ws-1|Contact:Email:unknown@x.org": "INVALID_CROSS_REFERENCE_KEY",
        "ws-1|Contact:Email:inactive@x.org": "INVALID_CROSS_REFERENCE_KEY",
        "ws-1|Contact:Email:master@x.org": "INVALID_CROSS_REFERENCE_KEY",
        "ws-1|Campaign:Event_Id__c:evt-rt": "INVALID_CROSS_REFERENCE_KEY",
    }
    assert len(outcome.results) == 4 and not outcome.pending
    assert outcome.committed == {(TOPIC, 0): h.offset}
    sync = {e.record_key: e for e in h.rec.entries if e.severity == "ERROR"}
    assert sync["ws-1|Contact:Email:unknown@x.org"].field == "RecordTypeId"
    assert "No_Such_Type" in sync["ws-1|Contact:Email:unknown@x.org"].message
    assert await count(h, "SELECT Id FROM Contact") == 3
    assert await count(h, "SELECT Id FROM Contact WHERE RecordType.DeveloperName = 'Community_Member'") == 3


def test_merging_keeps_the_record_type_of_either_write() -> None:
    typed = member(1, record_type="Community_Member")
    untyped = member(1, last="Later", at=T0 + 1, n=1)
    for order in ([typed, untyped], [untyped, typed]):
        (segments,) = merge_writes([IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate(order)]).values()
        (seg,) = segments
        assert seg.record_type == "Community_Member"
        assert seg.fields["LastName"]["value"] == "Later"


async def test_a_merged_batch_creates_the_record_with_its_record_type(h: Harness) -> None:
    outcome = await h.put(member(1, record_type="Community_Member"), member(1, last="Later", at=T0 + 1, n=1))
    assert len(outcome.results) == 1 and outcome.results[0]["created"] is True
    assert await record_types(h, "member1@example.org") == ["Community_Member"]


# ---------------------------------------------------------------------- bad records and faults


async def test_bad_records_are_parked_with_their_reason_while_the_rest_are_written(h: Harness) -> None:
    missing = write(
        "ws-1|Contact:Email:nolast@x.org", "Contact", {"Email": fv("nolast@x.org")}, match=[("Email", "nolast@x.org")]
    )
    too_long = member(2, email="long@x.org", last="x" * 81)
    bad_pick = write(
        "ws-1|Community_Activity__c:Event_Key__c:k1",
        "Community_Activity__c",
        {"Type__c": fv("NotAType")},
        mapping="activities",
        external_id=("Event_Key__c", "k1"),
    )
    good = [member(i) for i in range(10, 15)]
    outcome = await h.put(missing, too_long, bad_pick, *good)
    reasons = {w.write["key"]: getattr(e, "error_code", "") for w, e in h.rec.parked}
    assert reasons == {
        "ws-1|Contact:Email:nolast@x.org": "REQUIRED_FIELD_MISSING",
        "ws-1|Contact:Email:long@x.org": "STRING_TOO_LONG",
        "ws-1|Community_Activity__c:Event_Key__c:k1": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    }
    assert len(outcome.results) == 5 and not outcome.pending
    assert outcome.committed == {(TOPIC, 0): h.offset}
    sync = {e.record_key: e for e in h.rec.entries if e.severity == "ERROR"}
    assert sync["ws-1|Contact:Email:nolast@x.org"].field == "LastName"
    assert sync["ws-1|Contact:Email:long@x.org"].mapping == "members"
    assert await count(h, "SELECT Id FROM Contact") == 5


async def test_a_write_without_match_key_or_external_id_is_refused_not_created_blindly(h: Harness) -> None:
    blind = write("Contact:anon", "Contact", {"LastName": fv("Anon")})
    outcome = await h.put(blind, member(1))
    assert [getattr(e, "error_code", "") for _, e in h.rec.parked] == ["NO_IDEMPOTENT_KEY"]
    assert len(outcome.results) == 1 and await count(h, "SELECT Id FROM Contact") == 1


async def test_lock_errors_are_retried_and_end_written_in_order(h: Harness) -> None:
    h.emulator.faults = Faults.parse("lock=0.3,seed=1")
    outcome = await h.put(*(member(i) for i in range(40)))
    assert h.emulator.faults.injected.get("lock", 0) > 0
    assert not outcome.parked and not outcome.pending
    assert await count(h, "SELECT Id FROM Contact") == 40
    assert h.rec.sleeps, "retries waited"
    h.emulator.faults = Faults.parse("")


async def test_a_put_waits_for_retries_at_most_retry_wait_max_s_then_leaves_the_write_pending(h: Harness) -> None:
    rec = Recorder()
    client, sink = make_sink(h.emulator, rec, retry_wait_initial_s=0.01, retry_wait_max_s=0.05)
    h.emulator.faults = Faults.parse("lock=1")
    async with client:
        first = h.incoming(member(1))
        outcome = await sink.put(first)
    h.emulator.faults = Faults.parse("")
    assert outcome.pending == first and outcome.committed == {(TOPIC, 0): first[0].offset}
    assert not rec.parked and rec.sleeps and sum(rec.sleeps) <= 0.05  # retried in this put, then carried


async def test_upsert_by_external_id_costs_one_call_and_is_idempotent(h: Harness) -> None:
    batch = [campaign(f"evt-{i}") for i in range(50)]
    outcome = await h.put(*batch)
    assert outcome.api_calls == 1 and all(r["created"] for r in outcome.results)
    again = await h.put(*batch)
    assert not any(r["created"] for r in again.results)
    assert await count(h, "SELECT Id FROM Campaign") == 50


def test_settings_report_every_problem_at_once() -> None:
    with pytest.raises(SfsyncError) as caught:
        load_sink_settings(batch_size=5000, batch_max_age_s=0)
    text = str(caught.value)
    assert "batch_size" in text and "batch_max_age_s" in text


async def test_results_fit_the_write_result_contract(h: Harness) -> None:
    from fastavro.validation import validate

    outcome = await h.put(member(1), campaign("evt-c"))
    branch = load_topic_schema("sfsync.results").branches["WriteResult"][1]
    assert len(outcome.results) == 2
    for result in outcome.results:
        assert validate(result, branch, raise_errors=True)
