"""sfsync.processors.outbound.plan over the shipped default mapping and the fake community's events (no services)."""

from __future__ import annotations

import datetime as dt
import io
import re
from functools import cache
from typing import Any, NamedTuple

import fastavro
import pytest
from fastavro.validation import validate

from sfsync.mapping import MappingEvaluationError, MappingFile, load_mappings, parse_mappings
from sfsync.processors.outbound.plan import DELETED, Identity, drop_stale, learn_salesforce_edit, plan
from sfsync.producers import events as ev
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.schema import load_topic_schema
from tests.kit import BROKEN_MAPPING
from tests.kit.outbound import decoded


class Src(NamedTuple):
    topic: str
    partition: int
    offset: int


SRC = Src("product.attendance", 3, 42)
T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
MS0 = 1_772_357_400_000
ENV: dict[str, Any] = {"occurred_at": T0, "workspace_id": "w-1"}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
MEMBER_EVENTS = ["members", "activities"]
ATTENDANCE = ["members", "events", "attendance", "activities"]
EXPECTED: dict[str, list[str]] = {
    "UserCreated": MEMBER_EVENTS,
    "UserProfileUpdate": MEMBER_EVENTS,
    "UserOnboarding": MEMBER_EVENTS,
    "UserApprovalChange": MEMBER_EVENTS,
    "UserTypeChange": MEMBER_EVENTS,
    "UserAddedToSpace": MEMBER_EVENTS,
    "UserRemovedFromSpace": MEMBER_EVENTS,
    "UserJoinedClub": MEMBER_EVENTS,
    "UserLeftClub": MEMBER_EVENTS,
    "UserJoinedWaitlist": MEMBER_EVENTS,
    "UserDeleted": [],  # member_deleted: ignore
    "NewEventPublished": ["events", "activities"],
    "EventUpdated": ["events"],
    "EventUnpublished": ["events"],  # event_unpublished: update
    "EventRegistration": ATTENDANCE,
    "EventRegistrationCancel": ATTENDANCE,
    "EventAttend": ATTENDANCE,
    "EventCheckIn": ATTENDANCE,
    "EventUnCheckIn": ATTENDANCE,
    "ForumPostCaseRequested": ["forum_cases"],
}


@cache
def fake_events() -> dict[str, dict[str, Any]]:
    """The first event of every type the fake community produces (same seed, same events)."""
    found: dict[str, dict[str, Any]] = {}
    for event in CommunitySimulator(seed=3).stream(3000):
        if event.RECORD_NAME not in found:
            found[event.RECORD_NAME] = decoded(event)
    assert len(found) == 20
    return found


@cache
def mappings(**variables: Any) -> MappingFile:
    return load_mappings(variables=variables or None)


def run(event_type: str, event: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    result = plan(event_type, event or fake_events()[event_type], SRC, kw.pop("mappings", mappings()), **kw)
    assert result.rejects == []
    return result.writes


def assert_valid_writes(writes: list[dict[str, Any]]) -> None:
    schema = load_topic_schema("sfsync.writes")
    _, strict, plain = schema.branches["Write"]
    for write in writes:
        assert validate(write, strict, strict=True)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, plain, write)
        buf.seek(0)
        assert fastavro.schemaless_reader(buf, plain, None) == write  # nothing dropped or coerced


# ---------------------------------------------------------------------- every event type
@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_every_event_type_plans_the_writes_of_its_mappings_and_they_fit_the_write_schema(event_type: str) -> None:
    event = fake_events()[event_type]
    writes = run(event_type, event)
    assert [w["mapping"] for w in writes] == EXPECTED[event_type]
    assert_valid_writes(writes)
    for n, write in enumerate(writes):
        assert write["write_id"] == f"{event['event_id']}:{write['mapping']}:{n}"
        assert write["key"].startswith(f"ws-demo|{write['sobject']}:")  # the event's workspace, then the record
        assert write["source"] == {
            "topic": SRC.topic,
            "partition": SRC.partition,
            "offset": SRC.offset,
            "event_id": str(event["event_id"]),
            "event_type": event_type,
            "occurred_at": int(event["occurred_at"].timestamp() * 1000),
        }
        assert write["workspace_id"] == event["workspace_id"] == "ws-demo"
        assert {f["updated_at"] for f in write["fields"].values()} <= {write["source"]["occurred_at"]}


def test_an_event_registration_plans_person_campaign_member_then_activity_with_parent_keys() -> None:
    event = fake_events()["EventRegistration"]
    email, event_id = event["member"]["email"], event["event"]["id"]
    member_id = event["member"]["member_id"]
    person, campaign, member, activity = run("EventRegistration", event)
    person_key, campaign_key = f"ws-demo|Contact:Member_Id__c:{member_id}", f"ws-demo|Campaign:Event_Id__c:{event_id}"
    assert (person["key"], person["sobject"], person["search_objects"]) == (person_key, "Contact", ["Contact", "Lead"])
    # the member id (an external ID) first, then Email for a person who predates sfsync
    assert person["external_id"] == {"field": "Member_Id__c", "value": member_id}
    assert person["match"] == [{"field": "Email", "value": email}]
    assert (campaign["key"], campaign["external_id"]) == (campaign_key, {"field": "Event_Id__c", "value": event_id})
    assert member["key"] == f'ws-demo|CampaignMember:CampaignId+ContactId:["{campaign_key}","{person_key}"]'
    assert member["match"] == [{"field": "CampaignId+ContactId", "value": ""}]
    assert member["parents"] == {
        "CampaignId": {"key": campaign_key, "sobject": "Campaign"},
        "ContactId": {"key": person_key, "sobject": "Contact"},
    }
    assert member["fields"]["Attendee_Status__c"]["value"] == "registered"
    assert activity["key"] == f"ws-demo|Community_Activity__c:Event_Key__c:{event['event_id']}"
    assert activity["parents"] == {"Contact__c": {"key": person_key, "sobject": "Contact"}}
    # the parents are only *ensured* from what a registration carries: fill empty fields, clear nothing
    assert {f["policy"] for w in (person, campaign) for f in w["fields"].values()} == {"IF_EMPTY"}
    assert None not in {f["value"] for f in person["fields"].values()}
    assert (
        person["fields"]["Email"]["value"] == email and campaign["fields"]["Name"]["value"] == event["event"]["title"]
    )


def test_attendance_status_and_cancellation_follow_the_event_type_and_option() -> None:
    statuses = {t: run(t)[2]["fields"]["Attendee_Status__c"]["value"] for t in ("EventAttend", "EventCheckIn")}
    assert statuses == {"EventAttend": "attended", "EventCheckIn": "attended"}
    assert run("EventUnCheckIn")[2]["fields"]["Attendee_Status__c"]["value"] == "registered"
    cancel = run("EventRegistrationCancel")[2]
    assert (cancel["operation"], cancel["fields"], cancel["create_if_missing"]) == ("DELETE", {}, False)
    assert set(cancel["parents"]) == {"CampaignId", "ContactId"}  # the sink matches the member through them
    by_status = run("EventRegistrationCancel", mappings=mappings(attendance_cancelled="update"))[2]
    assert by_status["operation"] == "UPSERT" and not by_status["create_if_missing"]
    assert by_status["fields"]["Attendee_Status__c"]["value"] == "cancelled"


def test_write_ids_and_keys_are_deterministic_and_stable_across_events() -> None:
    event = fake_events()["EventRegistration"]
    first = plan("EventRegistration", event, SRC, mappings())
    again = plan("EventRegistration", event, Src("product.attendance", 0, 7), mappings())
    assert [w["write_id"] for w in first.writes] == [w["write_id"] for w in again.writes]
    assert [w["key"] for w in first.writes] == [w["key"] for w in again.writes]
    assert first.writes == plan("EventRegistration", event, SRC, mappings()).writes
    # the same person and campaign have the same key whichever event touches them
    member = ev.MemberRef(member_id="u-9", email="grace@example.com", first_name="Grace", last_name="Hopper")
    created = ev.UserCreated(
        member=ev.MemberProfile(
            member_id="u-9", email="grace@example.com", first_name="Grace", last_name="Hopper", signed_up_at=T0
        ),
        **ENV,
    )
    published = ev.NewEventPublished(
        event=ev.CommunityEvent(id="evt-9", title="Meetup", start_at=T0, published=True), **ENV
    )
    attended = ev.EventAttend(member=member, event=ev.EventRef(id="evt-9", title="Meetup"), **ENV)
    keys = [w["key"] for w in run("EventAttend", decoded(attended))]
    assert keys[0] == run("UserCreated", decoded(created))[0]["key"] == "w-1|Contact:Member_Id__c:u-9"
    # a new email is the same person: the key is the member id, not the email
    moved = ev.UserProfileUpdate(
        member=ev.MemberProfile(member_id="u-9", email="grace@navy.mil", last_name="Hopper", signed_up_at=T0), **ENV
    )
    (person, _) = run("UserProfileUpdate", decoded(moved))
    assert person["key"] == "w-1|Contact:Member_Id__c:u-9"
    assert person["match"] == [{"field": "Email", "value": "grace@navy.mil"}]
    assert keys[1] == run("NewEventPublished", decoded(published))[0]["key"] == "w-1|Campaign:Event_Id__c:evt-9"


def test_values_are_salesforce_json() -> None:
    published = ev.NewEventPublished(
        event=ev.CommunityEvent(
            id="evt-1",
            title="x" * 90,
            type="virtual",
            published=True,
            start_at=T0,
            end_at=T0 + dt.timedelta(days=1, hours=1),
        ),
        **ENV,
    )
    campaign = run("NewEventPublished", decoded(published))[0]["fields"]
    values = {name: f["value"] for name, f in campaign.items()}
    assert values["Event_Start__c"] == "2026-03-01T09:30:00.000+0000"
    assert values["Event_End__c"] == "2026-03-02T10:30:00.000+0000"
    assert (values["StartDate"], values["EndDate"]) == ("2026-03-01", "2026-03-02")
    assert values["Name"] == "x" * 80 and values["Type"] == "Webinar" and values["IsActive"] is True
    assert {f["updated_at"] for f in campaign.values()} == {MS0}
    member, _ = run("UserCreated")
    for name in ("Joined_At__c", "Sign_Up_At__c"):
        assert DATETIME.match(member["fields"][name]["value"])
    spaces = run("UserAddedToSpace")[0]["fields"]["Spaces__c"]["value"]
    assert spaces == ";".join(fake_events()["UserAddedToSpace"]["spaces"])


def test_unpublished_events_follow_the_option() -> None:
    unpublished = run("EventUnpublished")[0]
    assert unpublished["operation"] == "UPSERT" and not unpublished["create_if_missing"]
    assert {n: f["value"] for n, f in unpublished["fields"].items()} == {"Is_Published__c": False, "IsActive": False}
    deleted = run("EventUnpublished", mappings=mappings(event_unpublished="delete"))
    assert [(w["mapping"], w["operation"]) for w in deleted] == [("events", "DELETE")]
    assert run("EventUnpublished", mappings=mappings(event_unpublished="ignore")) == []
    draft = ev.EventUpdated(event=ev.CommunityEvent(id="evt-2", title="Draft", start_at=T0, published=False), **ENV)
    assert run("EventUpdated", decoded(draft)) == []  # only published events become campaigns


def test_deleted_members_follow_the_option() -> None:
    assert run("UserDeleted") == []
    (delete,) = run("UserDeleted", mappings=mappings(member_deleted="delete"))
    assert (delete["operation"], delete["key"]) == (
        "DELETE",
        f"ws-demo|Contact:Member_Id__c:{fake_events()['UserDeleted']['member']['member_id']}",
    )


def test_contacts_then_leads_and_lead_placeholders_follow_the_variables() -> None:
    profile = ev.MemberProfile(member_id="u-3", email="ada@example.com", last_name=None, company=None, signed_up_at=T0)
    created = decoded(ev.UserCreated(member=profile, **ENV))
    contact = run("UserCreated", created)[0]
    assert (contact["sobject"], contact["search_objects"]) == ("Contact", ["Contact", "Lead"])
    assert "Company" not in contact["fields"] and "MailingCity" in contact["fields"]
    leads = mappings(member_object="Lead")
    lead, activity = run("UserCreated", created, mappings=leads)
    assert (lead["key"], lead["sobject"], lead["search_objects"]) == (
        "w-1|Lead:Member_Id__c:u-3",
        "Lead",
        ["Lead", "Contact"],
    )
    assert lead["fields"]["Company"]["value"] == lead["fields"]["LastName"]["value"] == "[not provided]"
    assert "City" in lead["fields"] and "MailingCity" not in lead["fields"]
    assert activity["parents"] == {"Lead__c": {"key": "w-1|Lead:Member_Id__c:u-3", "sobject": "Lead"}}
    # a registration carries no company: the placeholder only fills an empty field
    registration = run("EventRegistration", mappings=leads)
    assert registration[0]["fields"]["Company"] == {
        "value": "[not provided]",
        "policy": "IF_EMPTY",
        "updated_at": registration[0]["source"]["occurred_at"],
    }
    assert "LeadId" in registration[2]["parents"]
    # a person already known as a Lead is searched there first
    known = {contact["key"]: Identity("Lead", "00Q000000000001")}
    assert run("UserCreated", created, identity=known)[0]["search_objects"] == ["Lead", "Contact"]
    # the person is upserted on the user-id external ID, else looked up by it, then by Email
    assert contact["key"] == "w-1|Contact:Member_Id__c:u-3"
    assert contact["external_id"] == {"field": "Member_Id__c", "value": "u-3"}
    assert contact["match"] == [{"field": "Email", "value": "ada@example.com"}]
    no_external = run("UserCreated", created, external_ids=())[0]
    assert no_external["external_id"] is None
    assert no_external["match"] == [
        {"field": "Member_Id__c", "value": "u-3"},
        {"field": "Email", "value": "ada@example.com"},
    ]
    # Email only, as the variables allow
    by_email = mappings(member_match_field="Email", member_match_from="member.email")
    person = run("UserCreated", created, mappings=by_email)[0]
    assert (person["key"], person["external_id"]) == ("w-1|Contact:Email:ada@example.com", None)
    assert person["match"] == [{"field": "Email", "value": "ada@example.com"}]


def test_the_mapping_record_type_rides_on_its_upserts_and_a_delete_carries_none() -> None:
    typed = mappings(member_record_type="Community_Member")
    person, activity = run("UserCreated", mappings=typed)
    assert (person["mapping"], person["record_type"]) == ("members", "Community_Member")
    assert activity["record_type"] is None  # the activities mapping names no record type
    assert_valid_writes([person, activity])
    registration = run("EventRegistration", mappings=typed)
    assert [w["record_type"] for w in registration] == ["Community_Member", None, None, None]
    assert [w["record_type"] for w in run("UserCreated")] == [None, None]  # "" = the org's default
    deleting = mappings(member_record_type="Community_Member", member_deleted="delete")
    (delete,) = run("UserDeleted", mappings=deleting)
    assert (delete["operation"], delete["record_type"]) == ("DELETE", None)
    assert_valid_writes([delete])


def test_policies_come_from_the_mapping() -> None:
    member = run("UserCreated")[0]["fields"]
    assert member["LeadSource"]["policy"] == "IF_EMPTY" and member["Email"]["policy"] == "ALWAYS"


# ---------------------------------------------------------------------- rejects
def test_a_mapping_that_fails_on_an_event_is_a_reject_and_the_other_writes_still_go_out() -> None:
    broken = parse_mappings(BROKEN_MAPPING)
    result = plan("UserCreated", fake_events()["UserCreated"], SRC, broken)
    assert [type(r) for r in result.rejects] == [MappingEvaluationError]
    assert result.rejects[0].mapping == "members" and "LastName" in str(result.rejects[0])
    (activity,) = result.writes
    assert activity["mapping"] == "activities" and activity["parents"] == {}
    # a child that needs the failed parent is rejected too (the caller parks the event)
    result = plan("EventRegistration", fake_events()["EventRegistration"], SRC, broken)
    assert sorted(r.mapping for r in result.rejects) == ["attendance", "members"]
    assert [w["mapping"] for w in result.writes] == ["activities"]


def test_a_registration_without_the_persons_match_key_rejects_the_campaign_member_only() -> None:
    anonymous = ev.EventRegistration(member=ev.MemberRef(member_id=""), event=ev.EventRef(id="evt-4"), **ENV)
    result = plan("EventRegistration", decoded(anonymous), SRC, mappings())
    assert [r.mapping for r in result.rejects] == ["attendance"]
    # no title: the campaign's Name cannot be evaluated, so it is not ensured (its key still is)
    assert [w["mapping"] for w in result.writes] == ["activities"]
    assert result.writes[0]["parents"] == {}  # the activity's member lookup is optional


def test_a_registration_without_the_persons_email_finds_them_by_member_id() -> None:
    no_email = ev.EventRegistration(member=ev.MemberRef(member_id="u-4"), event=ev.EventRef(id="evt-4"), **ENV)
    result = plan("EventRegistration", decoded(no_email), SRC, mappings())
    assert result.rejects == []
    person, member, activity = result.writes
    assert (person["key"], person["match"]) == ("w-1|Contact:Member_Id__c:u-4", [])
    assert member["parents"]["ContactId"] == {"key": "w-1|Contact:Member_Id__c:u-4", "sobject": "Contact"}
    assert activity["parents"] == {"Contact__c": {"key": "w-1|Contact:Member_Id__c:u-4", "sobject": "Contact"}}


# ---------------------------------------------------------------------- drop_stale
def write(fields: dict[str, Any], at: int, op: str = "UPSERT") -> dict[str, Any]:
    return {
        "key": "w-1|Contact:Email:a@x.org",
        "operation": op,
        "fields": {n: {"value": v, "policy": "ALWAYS", "updated_at": at} for n, v in fields.items()},
        "source": {"occurred_at": at},
    }


def test_an_older_event_never_overwrites_a_newer_value() -> None:
    newer, clock = drop_stale(write({"Title": "CTO", "Phone": "1"}, 200), {})
    assert newer is not None and set(newer["fields"]) == {"Title", "Phone"}
    assert clock == {"Title": 200, "Phone": 200}
    older, clock2 = drop_stale(write({"Title": "Engineer", "City": "Paris"}, 100), clock)
    assert older is not None and set(older["fields"]) == {"City"}  # Title is stale, City is new
    assert clock2 == {"Title": 200, "Phone": 200, "City": 100}
    stale, clock3 = drop_stale(write({"Title": "Intern"}, 150), clock2)
    assert stale is None and clock3 == clock2


def test_a_salesforce_edit_makes_older_product_values_of_its_fields_stale() -> None:
    """A rep edits Title at 300; a product event stamped 250, in flight, must not overwrite it."""
    _, clock = drop_stale(write({"Title": "CTO", "Phone": "1"}, 200), {})
    learned = learn_salesforce_edit(clock, ["Title", "MailingCity"], 300)
    assert learned == {"Title": 300, "Phone": 200, "MailingCity": 300} and clock["Title"] == 200
    in_flight, _ = drop_stale(write({"Title": "Engineer", "Phone": "2"}, 250), learned)
    assert in_flight is not None and set(in_flight["fields"]) == {"Phone"}  # Title stays the rep's
    later, _ = drop_stale(write({"Title": "VP"}, 350), learned)
    assert later is not None and set(later["fields"]) == {"Title"}  # a newer product change wins again
    assert learn_salesforce_edit(learned, ["Title"], 100) == learned  # older, or a replay: nothing changes


def test_events_in_order_all_pass_and_a_replay_writes_again() -> None:
    first, clock = drop_stale(write({"Title": "Engineer"}, 100), {})
    second, clock = drop_stale(write({"Title": "CTO"}, 200), clock)
    assert first is not None and second is not None and second["fields"]["Title"]["value"] == "CTO"
    replay, clock = drop_stale(write({"Title": "CTO"}, 200), clock)
    assert replay is not None and clock == {"Title": 200}


def test_deletes_and_late_writes_are_ordered_by_occurrence() -> None:
    _, clock = drop_stale(write({"Status": "registered"}, 100), {})
    deleted, clock = drop_stale(write({}, 150, "DELETE"), clock)
    assert deleted is not None and clock[DELETED] == 150
    late, clock = drop_stale(write({"Status": "attended"}, 120), clock)
    assert late is None  # would recreate what a newer event deleted
    again, clock = drop_stale(write({"Status": "registered"}, 300), clock)
    assert again is not None
    late_delete, _ = drop_stale(write({}, 250, "DELETE"), clock)
    assert late_delete is None  # a late cancel must not delete a newer registration


def test_a_fill_if_empty_value_does_not_make_an_older_real_value_stale() -> None:
    # a registration (t=300) ensures its Campaign with the title it knows, fill-if-empty; the
    # EventUpdated (t=200) that set that title is planned later (another topic): it must go out
    ensured = write({"Name": "Launch (updated)"}, 300)
    ensured["fields"]["Name"]["policy"] = "IF_EMPTY"
    kept, clock = drop_stale(ensured, {"Name": 100})
    assert kept is not None and clock == {"Name": 100, "if_empty:Name": 300}
    update, clock = drop_stale(write({"Name": "Launch (updated)"}, 200), clock)
    assert update is not None and update["fields"]["Name"]["value"] == "Launch (updated)"
    assert clock == {"Name": 200, "if_empty:Name": 300}
    late_fill, _ = drop_stale(ensured | {"fields": {"Name": {**ensured["fields"]["Name"], "updated_at": 150}}}, clock)
    assert late_fill is None  # older than a real value: nothing to fill
