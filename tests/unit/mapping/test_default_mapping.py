"""The shipped default mapping of a community product: it validates against the emulator's default
org, and it does what docs/mappings.md promises for members, events, attendance, activities and
forum posts."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest

from sfsync.cli.mappings import emulator_describes
from sfsync.mapping import (
    DEFAULT_MAPPING_FILE,
    Mapping,
    MappingFile,
    ParentLookup,
    evaluate_fields,
    json_schema,
    load_mappings,
    match_values,
    validate_against_describe,
)
from sfsync.mapping.products import entity_event_types, sample_event
from tests.kit import DEFAULT_ACTIVITY_TYPES

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def describes() -> dict[str, dict[str, Any]]:
    return emulator_describes()


def mapping(name: str, **variables: Any) -> Mapping:
    found = load_mappings(variables=variables or None).get(name)
    assert found is not None
    return found


def envelope(event_id: str = "e-1") -> dict[str, Any]:
    return {"event_id": event_id, "occurred_at": T0, "workspace_id": "w-1"}


def profile(**fields: Any) -> dict[str, Any]:
    member = {
        "member_id": "u-1",
        "email": "ada@example.com",
        "phone": None,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "title": "Engineer",
        "company": "Analytical Engines",
        "location": {"country": "United Kingdom", "state": "England", "city": "London"},
        "member_type": "LIMITED_APPROVAL",
        "approval_status": "PENDING",
        "spaces": ["Makers", "Writers"],
        "clubs": ["Chess"],
        "signed_up_at": T0,
        "joined_at": T0 + dt.timedelta(days=1),
        "last_login_at": None,
        "onboarding_at": None,
    }
    member.update(fields)
    return member


def ref(**fields: Any) -> dict[str, Any]:
    return {"member_id": "u-1", "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", **fields}


def community_event(**fields: Any) -> dict[str, Any]:
    event = {
        "id": "ev-1",
        "title": "Spring meetup",
        "description": "Talks",
        "type": "virtual",
        "start_at": T0,
        "end_at": T0 + dt.timedelta(hours=2),
        "published": True,
        "url": None,
    }
    event.update(fields)
    return event


# ---------------------------------------------------------------------- validity
@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"member_object": "Lead"},
        {"activity_tasks": True, "attendance_cancelled": "delete", "event_unpublished": "delete"},
        {"member_match_field": "Email", "member_match_from": "member.email"},
        {"member_object": "Lead", "activity_tasks": True, "member_deleted": "delete"},
    ],
)
def test_the_default_mapping_validates_cleanly_against_the_default_org(
    describes: dict[str, Any], variables: dict[str, Any]
) -> None:
    mappings = load_mappings(variables=variables)
    assert validate_against_describe(mappings, describes) == []


def test_the_default_mapping_ships_next_to_the_code_and_every_mapping_is_there() -> None:
    assert DEFAULT_MAPPING_FILE.is_file()
    mappings = load_mappings()
    assert [m.name for m in mappings.mappings] == [
        "members",
        "events",
        "attendance",
        "activities",
        "activity_tasks",
        "forum_cases",
    ]
    tasks = mappings.get("activity_tasks")
    assert tasks is not None and not tasks.enabled  # opt-in


def test_custom_names_are_configurable_not_hard_coded(describes: dict[str, Any]) -> None:
    mappings = load_mappings(variables={"prefix": "acme__"})
    custom = _custom_names(mappings)
    assert custom and all(name.startswith("acme__") for name in custom), custom
    # ...and the validator tells which of them the org lacks
    problems = validate_against_describe(mappings, describes)
    assert any("Contact has no field acme__Member_Id__c (did you mean Member_Id__c?)" in p for p in problems)


def _custom_names(mappings: MappingFile) -> set[str]:
    names: set[str] = set()
    for m in mappings.mappings:
        fields = [*m.fields, *(m.delete.fields if m.delete else [])]
        names |= {f.sf for f in fields} | set(m.parents) | {m.target}
        names |= {k.field for keys in m.match_alternatives for k in keys}
    return {n for n in names if n.endswith("__c")}


def test_the_default_mapping_uses_only_keys_the_json_schema_knows() -> None:
    import yaml

    schema = json_schema()
    defs = schema["$defs"]
    data = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    assert set(data) <= set(schema["properties"])
    for item in data["mappings"]:
        assert set(item) <= set(defs["Mapping"]["properties"]), item["name"]
        for field in item["fields"]:
            assert set(field) <= set(defs["FieldMap"]["properties"])


def test_cancel_by_status_needs_the_status_in_the_picklist(describes: dict[str, Any]) -> None:
    mappings = load_mappings(variables={"attendance_cancelled": "update"})
    problems = validate_against_describe(mappings, describes)
    assert len(problems) == 1
    assert "constant 'cancelled' is not an active value of picklist CampaignMember.Attendee_Status__c" in problems[0]
    ok = load_mappings(variables={"attendance_cancelled": "update", "cancelled_status": "registered"})
    assert validate_against_describe(ok, describes) == []


# ---------------------------------------------------------------------- members
def test_a_new_member_becomes_a_contact_with_every_member_field() -> None:
    values = evaluate_fields(mapping("members"), {**envelope(), "member": profile()}, "UserCreated")
    assert values == {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@example.com",
        "Title": "Engineer",
        "Member_Id__c": "u-1",
        "MailingCountry": "United Kingdom",
        "MailingState": "England",
        "MailingCity": "London",
        "Member_Type__c": "Limited Approval",
        "Approval_Status__c": "pending",
        "Spaces__c": "Makers;Writers",
        "Clubs__c": "Chess",
        "Joined_At__c": "2026-03-02T09:30:00.000Z",
        "Last_Login_At__c": None,
        "Onboarding_At__c": None,
        "Sign_Up_At__c": "2026-03-01T09:30:00.000Z",
        "LeadSource": "Web",
    }


def test_one_switch_sends_members_to_leads_with_lead_fields() -> None:
    values = evaluate_fields(
        mapping("members", member_object="Lead"), {**envelope(), "member": profile()}, "UserCreated"
    )
    assert values is not None
    assert values["Company"] == "Analytical Engines"
    assert values["Country"] == "United Kingdom" and values["City"] == "London"
    assert "MailingCountry" not in values
    assert mapping("members", member_object="Lead").target == "Lead"


def test_lead_placeholders_for_last_name_and_company() -> None:
    leads = mapping("members", member_object="Lead", missing_company="Community member")
    nameless = {**envelope(), "member": profile(last_name=None, company="")}
    values = evaluate_fields(leads, nameless, "UserCreated")
    assert values is not None
    assert values["LastName"] == "[not provided]"
    assert values["Company"] == "Community member"
    # An event that does not carry the company (a MemberRef) fills it only where Salesforce has none
    onboarding = {**envelope(), "member": ref(), "onboarding_at": T0, "answers": []}
    new = evaluate_fields(leads, onboarding, "UserOnboarding")
    assert new is not None and new["Company"] == "Community member"
    kept = evaluate_fields(leads, onboarding, "UserOnboarding", current={"Company": "Real Co"})
    assert kept is not None and "Company" not in kept
    # ...while a profile that has a company always updates it
    updated = evaluate_fields(leads, {**envelope(), "member": profile()}, "UserProfileUpdate", current={"Company": "X"})
    assert updated is not None and updated["Company"] == "Analytical Engines"


def test_lead_source_is_only_set_when_empty() -> None:
    members = mapping("members")
    values = evaluate_fields(
        members, {**envelope(), "member": profile()}, "UserProfileUpdate", current={"LeadSource": "Partner Referral"}
    )
    assert values is not None and "LeadSource" not in values


def test_onboarding_answers_become_one_json_field() -> None:
    members = mapping("members")
    answers = [
        {"question_id": "q1", "question": "What do you do?", "answer": "Engineering"},
        {"question_id": "q2", "question": "Topics?", "answer": ["Kafka", "Salesforce"]},
        {"question_id": "q3", "question": "Where?", "answer": "London"},
    ]
    first = {**envelope(), "member": ref(), "onboarding_at": T0, "answers": answers}
    values = evaluate_fields(members, first, "UserOnboarding")
    assert values is not None
    assert json.loads(values["Onboarding_Answers__c"]) == {
        "What do you do?": "Engineering",
        "Topics?": ["Kafka", "Salesforce"],
        "Where?": "London",
    }
    assert values["Onboarding_At__c"] == "2026-03-01T09:30:00.000Z"
    # the product deleted question q3: the next sync leaves it out of the JSON
    second = {**envelope("e-2"), "member": ref(), "onboarding_at": T0, "answers": answers[:2]}
    again = evaluate_fields(members, second, "UserOnboarding")
    assert again is not None
    assert json.loads(again["Onboarding_Answers__c"]) == {
        "What do you do?": "Engineering",
        "Topics?": ["Kafka", "Salesforce"],
    }
    # events without answers leave the field alone
    profile_values = evaluate_fields(members, {**envelope(), "member": profile()}, "UserProfileUpdate")
    assert profile_values is not None and "Onboarding_Answers__c" not in profile_values


def test_member_changes_carry_their_own_fields() -> None:
    members = mapping("members")
    joined = {**envelope(), "member": ref(), "club": {"id": "c", "name": "Go"}, "clubs": ["Chess", "Go"]}
    assert evaluate_fields(members, joined, "UserJoinedClub") == {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Email": "ada@example.com",
        "Member_Id__c": "u-1",
        "Clubs__c": "Chess;Go",
        "LeadSource": "Web",
    }
    approval = {**envelope(), "member": ref(), "approval_status": "UNAPPROVED", "previous_approval_status": None}
    values = evaluate_fields(members, approval, "UserApprovalChange")
    assert values is not None and values["Approval_Status__c"] == "unapproved"


def test_members_match_on_the_member_id_first_then_on_email() -> None:
    source = {**envelope(), "member": profile()}
    members = mapping("members")
    assert match_values(members, source, "UserCreated") == [{"Member_Id__c": "u-1"}, {"Email": "ada@example.com"}]
    # a member without an email is still matched, on the member id; the mapping fires
    assert match_values(members, {**envelope(), "member": profile(email=None)}, "UserCreated") == [
        {"Member_Id__c": "u-1"}
    ]
    assert evaluate_fields(members, {**envelope(), "member": profile(email=None)}, "UserCreated") is not None
    # Email only, as the variables allow: the two keys are the same one, which counts once
    by_email = mapping("members", member_match_field="Email", member_match_from="member.email")
    assert [[k.field for k in keys] for keys in by_email.match_alternatives] == [["Email"]]
    assert match_values(by_email, source, "UserCreated") == [{"Email": "ada@example.com"}]
    # without its match key the member cannot be matched: the mapping does not fire
    assert evaluate_fields(by_email, {**envelope(), "member": profile(email=None)}, "UserCreated") is None


def test_create_if_missing_and_record_type_are_switches() -> None:
    members = mapping("members", create_members=False, member_record_type="Community")
    assert members.create_if_missing is False and members.record_type == "Community"
    assert mapping("members").create_if_missing is True and mapping("members").record_type is None


# ---------------------------------------------------------------------- events
def test_published_events_become_campaigns_and_updates_propagate() -> None:
    events = mapping("events")
    published = evaluate_fields(events, {**envelope(), "event": community_event()}, "NewEventPublished")
    assert published == {
        "Event_Id__c": "ev-1",
        "Name": "Spring meetup",
        "Description": "Talks",
        "Event_Start__c": "2026-03-01T09:30:00.000Z",
        "Event_End__c": "2026-03-01T11:30:00.000Z",
        "StartDate": "2026-03-01",
        "EndDate": "2026-03-01",
        "Is_Published__c": True,
        "IsActive": True,
        "Type": "Webinar",
    }
    change = {
        **envelope("e-2"),
        "event": community_event(title="Summer meetup", end_at=None),
        "changed_fields": ["title"],
    }
    updated = evaluate_fields(events, change, "EventUpdated")
    assert updated is not None and updated["Name"] == "Summer meetup" and updated["Event_End__c"] is None
    assert match_values(events, change, "EventUpdated") == [{"Event_Id__c": "ev-1"}]


def test_only_published_events_sync() -> None:
    draft = {**envelope(), "event": community_event(published=False), "changed_fields": []}
    assert evaluate_fields(mapping("events"), draft, "EventUpdated") is None


def test_unpublish_per_option() -> None:
    unpublished = {**envelope(), "event": {"id": "ev-1", "title": None}}
    assert evaluate_fields(mapping("events"), unpublished, "EventUnpublished") == {
        "Is_Published__c": False,
        "IsActive": False,
    }
    deleting = mapping("events", event_unpublished="delete")
    assert deleting.action_for("EventUnpublished") == "delete"
    assert evaluate_fields(deleting, unpublished, "EventUnpublished") is None
    assert match_values(deleting, unpublished, "EventUnpublished") == [{"Event_Id__c": "ev-1"}]
    assert mapping("events", event_unpublished="ignore").action_for("EventUnpublished") == "ignore"


# ---------------------------------------------------------------------- attendance
def test_attendance_becomes_a_campaign_member_with_a_status() -> None:
    attendance = mapping("attendance")
    source = {**envelope(), "member": ref(), "event": {"id": "ev-1", "title": "Spring meetup"}}
    assert evaluate_fields(attendance, source, "EventRegistration") == {"Attendee_Status__c": "registered"}
    assert evaluate_fields(attendance, source, "EventAttend") == {"Attendee_Status__c": "attended"}
    assert evaluate_fields(attendance, source, "EventCheckIn") == {"Attendee_Status__c": "attended"}
    assert evaluate_fields(attendance, source, "EventUnCheckIn") == {"Attendee_Status__c": "registered"}
    # one member per campaign: matched on (campaign, person), so a second registration updates
    assert match_values(attendance, source, "EventAttend") == [
        {"CampaignId": ParentLookup("events"), "ContactId": ParentLookup("members")}
    ]
    leads = mapping("attendance", member_object="Lead")
    assert set(leads.parents) == {"CampaignId", "LeadId"}


def test_cancel_per_option_delete_or_status() -> None:
    source = {**envelope(), "member": ref(), "event": {"id": "ev-1", "title": None}}
    assert mapping("attendance").action_for("EventRegistrationCancel") == "delete"
    by_status = mapping("attendance", attendance_cancelled="update", cancelled_status="registered")
    assert evaluate_fields(by_status, source, "EventRegistrationCancel") == {"Attendee_Status__c": "registered"}


# ---------------------------------------------------------------------- activities
def test_the_sixteen_activity_types_become_activity_records() -> None:
    activities = mapping("activities")
    assert activities.event_types() == DEFAULT_ACTIVITY_TYPES
    for event_type in DEFAULT_ACTIVITY_TYPES:
        source, env = sample_event(event_type)
        values = evaluate_fields(activities, source, env)
        assert values is not None, event_type
        assert values["Type__c"] == event_type
        assert values["Event_Key__c"] == source["event_id"]
        assert json.loads(values["Details__c"])["event_id"] == source["event_id"]
        assert ("Member_Id__c" in values) == (event_type != "NewEventPublished")
    assert activities.parents["Contact__c"].mapping == "members"
    assert activities.parents["Contact__c"].required is False
    assert "Lead__c" in mapping("activities", member_object="Lead").parents


def test_activities_also_as_tasks_when_switched_on() -> None:
    tasks = mapping("activity_tasks", activity_tasks=True)
    assert tasks.enabled
    source = {**envelope("e-9"), "member": ref(), "event": {"id": "ev-1", "title": None}}
    values = evaluate_fields(tasks, source, "EventAttend")
    assert values is not None
    assert values["Subject"] == "Community: EventAttend [e-9]"
    assert values["ActivityDate"] == "2026-03-01" and values["Status"] == "Completed"
    assert match_values(tasks, source, "EventAttend") == [{"Subject": "Community: EventAttend [e-9]"}]
    assert set(entity_event_types(tasks.entities)) >= set(tasks.event_types())


# ---------------------------------------------------------------------- forum
def test_a_forum_post_becomes_a_case() -> None:
    post = {
        "id": "p-1",
        "title": "Login broken",
        "body": "I cannot log in.",
        "url": "https://community.example.com/p/1",
        "status": "New",
        "priority": "High",
        "created_at": T0,
        "author": ref(last_name=None),
    }
    values = evaluate_fields(
        mapping("forum_cases"), {**envelope(), "post": post, "requested_by": None}, "ForumPostCaseRequested"
    )
    assert values is not None
    assert values["Subject"] == "Login broken"
    assert values["SuppliedEmail"] == "ada@example.com"
    assert values["SuppliedName"] == "Ada"
    assert values["Status"] == "New" and values["Priority"] == "High" and values["Origin"] == "Web"
    assert values["Description"].startswith(
        "I cannot log in.\n\nPost: https://community.example.com/p/1\nPosted: 2026-03-01"
    )
    assert re.search(r"Posted: 2026-03-01T09:30:00", values["Description"])
