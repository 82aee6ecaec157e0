"""Record keys: one format, the workspace first."""

from __future__ import annotations

from sfsync.keys import RecordKey, parse_record_key, person_identity, record_key, workspace_of


def test_a_record_key_round_trips_through_its_parts() -> None:
    key = record_key("ws-1", "Campaign", "Event_Id__c", "evt:7|x")
    assert key == "ws-1|Campaign:Event_Id__c:evt:7|x"
    assert parse_record_key(key) == RecordKey("ws-1", "Campaign", "Event_Id__c", "evt:7|x")
    assert str(parse_record_key(key)) == key
    assert workspace_of(key) == "ws-1"


def test_a_key_without_a_workspace_reads_as_the_empty_workspace() -> None:
    assert parse_record_key("Contact:Email:a@b.c") == RecordKey("", "Contact", "Email", "a@b.c")
    assert workspace_of("Contact:Email:a@b.c") == ""
    assert parse_record_key("Contact:Email:a|b") == RecordKey("", "Contact", "Email", "a|b")


def test_what_is_not_a_record_key_parses_to_none() -> None:
    assert parse_record_key("ws-1|Contact:Email:") is None
    assert parse_record_key("ws-1|Contact") is None
    assert parse_record_key("") is None


def test_a_person_records_outcome_gives_its_identity_where_the_record_is() -> None:
    key = record_key("ws-1", "Contact", "Member_Id__c", "m-1")
    # a Contact mapping's record found as a Lead (or a converted Lead's Contact): the object it is in
    assert person_identity({"key": key, "sobject": "Lead", "salesforce_id": "00Q000000000001"}) == (
        key,
        ("Lead", "00Q000000000001"),
    )
    lead_key = record_key("ws-1", "Lead", "Email", "a@b.c")
    assert person_identity({"key": lead_key, "sobject": "Contact", "salesforce_id": "003000000000001"}) == (
        lead_key,
        ("Contact", "003000000000001"),
    )


def test_only_person_records_with_an_object_and_an_id_give_an_identity() -> None:
    person = record_key("ws-1", "Contact", "Member_Id__c", "m-1")
    activity = record_key("ws-1", "Community_Activity__c", "Event_Key__c", "e-1")
    assert (
        person_identity({"key": activity, "sobject": "Community_Activity__c", "salesforce_id": "a00000000000001"})
        is None
    )
    assert person_identity({"key": person, "sobject": "Contact", "salesforce_id": ""}) is None
    assert person_identity({"key": person, "sobject": "", "salesforce_id": "003000000000001"}) is None
    assert (
        person_identity({"key": "not a record key", "sobject": "Contact", "salesforce_id": "003000000000001"}) is None
    )
    assert person_identity({}) is None
