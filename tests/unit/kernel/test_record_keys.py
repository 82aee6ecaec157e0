"""Record keys: one format, the workspace first."""

from __future__ import annotations

from sfsync.keys import RecordKey, parse_record_key, record_key, workspace_of


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
