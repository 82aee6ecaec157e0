"""The chaos run's scenario (sfsync.devtools.chaos_scenario): the stream is repeatable, the org it implies
is what the chaos mapping makes of it, and every kind of difference is counted (so that a run cannot
come out clean because the comparison looked away)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from typing import Any

from sfsync.devtools.chaos_scenario import (
    UNKNOWN_SCHEMA_ID_BASE,
    ChaosCommunity,
    RepEdit,
    compare,
    expected_org,
    inbound_missing,
    parked_report,
    poison_records,
)
from sfsync.producers import events as ev

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def clock() -> Any:
    ticks = itertools.count()
    return lambda: T0 + dt.timedelta(milliseconds=next(ticks))


def stream(seed: int, count: int) -> list[ev.ProductEvent]:
    return list(ChaosCommunity(seed).stream(count, clock()))


def test_the_same_seed_gives_the_same_stream_of_every_kind() -> None:
    first, again = stream(5, 3000), stream(5, 3000)
    assert [e.to_avro() for e in first] == [e.to_avro() for e in again]
    assert [e.to_avro() for e in stream(6, 50)] != [e.to_avro() for e in first[:50]]
    kinds = Counter(type(e).__name__ for e in first)
    assert set(kinds) == {
        "UserCreated",
        "UserProfileUpdate",
        "UserTypeChange",
        "UserApprovalChange",
        "NewEventPublished",
        "EventUpdated",
        "EventRegistration",
        "EventAttend",
        "EventRegistrationCancel",
    }
    occurred = [e.occurred_at for e in first]
    assert occurred == sorted(occurred) and len(set(occurred)) == len(occurred)


def member(member_id: str, first: str, email: str, kind: Any = ev.UserProfileUpdate) -> Any:
    profile = ev.MemberProfile(member_id=member_id, email=email, first_name=first, last_name="L", signed_up_at=T0)
    return kind(workspace_id="w", occurred_at=T0, member=profile)


def attendance(kind: Any, member_id: str, event_id: str) -> Any:
    return kind(workspace_id="w", member=ev.MemberRef(member_id=member_id), event=ev.EventRef(id=event_id))


def published(event_id: str, title: str, kind: Any = ev.NewEventPublished) -> Any:
    return kind(workspace_id="w", event=ev.CommunityEvent(id=event_id, title=title, start_at=T0, published=True))


def test_the_expected_org_holds_the_latest_values_and_no_cancelled_registration() -> None:
    events = [
        member("m-1", "Ada", "a@x.org", ev.UserCreated),
        ev.UserTypeChange(workspace_id="w", member=ev.MemberRef(member_id="m-1"), member_type=ev.MemberType.GUEST),
        member("m-1", "Grace", "g@x.org"),
        published("e-1", "Launch"),
        published("e-1", "Launch v2", ev.EventUpdated),
        attendance(ev.EventRegistration, "m-1", "e-1"),
        attendance(ev.EventAttend, "m-1", "e-1"),
        attendance(ev.EventRegistration, "m-1", "e-2"),
        attendance(ev.EventRegistrationCancel, "m-1", "e-2"),
    ]
    org = expected_org(events, [RepEdit("m-1", "003x", {"Phone": "1"}), RepEdit("m-1", "003x", {"Phone": "2"})])
    assert org.contacts["m-1"] == {
        "FirstName": "Grace",
        "LastName": "L",
        "Email": "g@x.org",
        "Member_Type__c": "Standard",  # the profile update came after the type change, with the profile's type
        "Approval_Status__c": "pending",
        "Title": None,
        "Phone": "2",
    }
    assert org.campaigns == {"e-1": {"Name": "Launch v2", "IsActive": True}}
    assert org.attendance == {("m-1", "e-1"): "attended"}
    assert org.cancelled == {("m-1", "e-2")}
    again = expected_org([*events, attendance(ev.EventRegistration, "m-1", "e-2")])
    assert again.attendance[("m-1", "e-2")] == "registered" and not again.cancelled


def org_rows(org: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of an org that is exactly ``org``."""
    contacts = [{"Id": f"003{m}", "Member_Id__c": m, **values} for m, values in org.contacts.items()]
    campaigns = [{"Id": f"701{e}", "Event_Id__c": e, **values} for e, values in org.campaigns.items()]
    members = [
        {"Id": f"00v{m}{e}", "ContactId": f"003{m}", "CampaignId": f"701{e}", "Attendee_Status__c": status}
        for (m, e), status in org.attendance.items()
    ]
    return contacts, campaigns, members


def test_an_org_that_is_what_the_events_imply_differs_in_nothing() -> None:
    org = expected_org(stream(3, 2000))
    found = compare(org, *org_rows(org))
    assert (found.lost, found.duplicated, found.stale) == (0, 0, 0), found.examples


def test_every_kind_of_difference_is_counted() -> None:
    org = expected_org(stream(3, 2000))
    contacts, campaigns, members = org_rows(org)
    altered = {str(c["Member_Id__c"]) for c in contacts[:4]}  # the contacts changed below
    # a cancellation of a member whose contact stays as it is (the first in order: set order is per process)
    cancelled = min(pair for pair in org.cancelled - set(org.attendance) if pair[0] not in altered)
    contacts[0]["Email"] = "older@x.org"  # stale value
    contacts[1]["LastName"] = None  # lost value
    lost_contact = contacts.pop(2)["Member_Id__c"]  # lost record
    contacts.append({**contacts[3], "Id": "003copy"})  # one identity twice
    contacts.append({"Id": "003none", "Member_Id__c": None})  # a record of no member
    members.pop()  # a registration lost
    members.append(  # a cancellation that did not happen
        {"Id": "00vgone", "ContactId": f"003{cancelled[0]}", "CampaignId": f"701{cancelled[1]}"}
    )
    found = compare(org, contacts, campaigns, members)
    assert found.stale == 2, found.examples
    assert found.duplicated == 2, found.examples
    assert found.lost == 3, found.examples  # the contact, the value, the registration
    assert any(lost_contact in e for e in found.examples["lost"])


def test_an_edit_missing_from_the_inbound_topic_is_found_by_its_latest_value() -> None:
    edits = [
        RepEdit("m-1", "003a", {"Title": "CTO", "Phone": "1"}),
        RepEdit("m-1", "003a", {"Phone": "2"}),
        RepEdit("m-2", "003b", {"Phone": "3"}),
    ]
    inbound = [
        ("MemberFieldUpdate", {"member_id": "m-1", "fields": {"member.title": "CTO", "member.phone": "1"}}),
        ("MemberIdentityLink", {"member_id": "m-2"}),
        ("MemberFieldUpdate", {"member_id": "m-1", "fields": {"member.phone": "2"}}),
    ]
    assert inbound_missing(edits, inbound) == ["m-2"]
    assert inbound_missing(edits[:1], inbound) == ["m-1"]  # the topic's latest phone is not the edit's


def test_the_dlq_is_held_against_the_poison_sent() -> None:
    poison = poison_records(1, 4)
    assert [p.reason for p in poison] == ["random bytes", "unknown schema id"] * 2
    assert all(p.value[0] != 0 for p in poison if p.reason == "random bytes")
    assert all(
        p.value[0] == 0 and int.from_bytes(p.value[1:5]) >= UNKNOWN_SCHEMA_ID_BASE
        for p in poison
        if p.reason == "unknown schema id"
    )
    sent = {("t", 0, offset): p for offset, p in enumerate(poison)}
    parked = [
        (("t", 0, 0), "RECORD_SKIPPED", ""),
        (("t", 0, 0), "RECORD_SKIPPED", ""),  # parked twice: a worker killed before its commit
        (("t", 0, 1), "UNKNOWN_SCHEMA_ID", ""),
        (("t", 0, 2), "RECORD_SKIPPED", ""),
        (("writes", 3, 9), "DUPLICATE_VALUE", "a write Salesforce refused"),
    ]
    report = parked_report(sent, parked)
    assert report.by_reason == {"RECORD_SKIPPED": 2, "UNKNOWN_SCHEMA_ID": 1, "DUPLICATE_VALUE": 1}
    assert report.unexpected == {"DUPLICATE_VALUE": 1}
    assert report.missing == 1 and report.repeats == 1
    assert report.examples == ["writes[3]@9 DUPLICATE_VALUE: a write Salesforce refused"]
