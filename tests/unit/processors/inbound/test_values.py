"""Field values by Salesforce name (case-insensitive); a missing field is not a null one."""

from __future__ import annotations

from sfsync.processors.inbound.values import ABSENT, field_entry, field_value


def test_field_value_matches_names_case_insensitively_and_tells_absent_from_null() -> None:
    values = {"Title": "Countess", "member_id__c": None}
    assert field_value(values, "Title") == "Countess"
    assert field_value(values, "title") == "Countess"
    assert field_value(values, "Member_Id__c") is None
    assert field_value(values, "Email") is ABSENT


def test_field_entry_is_a_states_entry_or_none() -> None:
    entries = {"Title": {"value": "X", "at": 1, "sent": False}, "Broken": None}
    assert field_entry(entries, "TITLE") == {"value": "X", "at": 1, "sent": False}
    assert field_entry(entries, "Email") is None
    assert field_entry(entries, "Broken") is None  # not an entry
