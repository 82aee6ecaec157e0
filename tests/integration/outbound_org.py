"""The org the outbound pipeline should leave: what the shipped default mapping implies for a run of
product events, worked out from the events alone (``plan()`` is not used), the emulated org read
back in the same shape, and the check that the two agree with no record twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sfsync.emulator.server import RunningEmulator

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


def assert_org(running: RunningEmulator, expected: dict[str, Any]) -> dict[str, int]:
    """The org holds exactly ``expected`` (:func:`expected_org`'s shape), and no record twice (Tasks
    included); the record counts."""
    got = actual_org(running)
    counts: dict[str, Counter[Any]] = got.pop("counts")
    tasks = Counter(r.get("Subject") for r in running.emulator.store.rows("Task"))
    for name, counter in {**counts, "tasks": tasks}.items():
        duplicated = {k: n for k, n in counter.items() if n > 1}
        assert not duplicated, f"{name}: more than one record for {list(duplicated.items())[:5]}"
    for name in ("contacts", "campaigns", "members", "cases", "activities"):
        missing = {k: v for k, v in expected[name].items() if got[name].get(k) != v}
        extra = set(got[name]) - set(expected[name])
        assert not missing and not extra, (
            f"{name} differ from what the events imply: {len(missing)} missing or different "
            f"(e.g. {list(missing.items())[:3]}, found {[got[name].get(k) for k in list(missing)[:3]]}), "
            f"{len(extra)} unexpected (e.g. {list(extra)[:3]})"
        )
    return {name: sum(c.values()) for name, c in counts.items()}
