"""The inbound states as the rules fold into them: copies, with every required key present."""

from __future__ import annotations

from sfsync.processors.inbound.state import SeenState, WrittenState, copy_seen, copy_written


def test_nothing_known_gives_an_empty_state() -> None:
    assert copy_written(None) == {
        "mapping": None, "sobject": None, "salesforce_id": None, "member_id": None, "workspace_id": None,
        "links": {}, "written": {},
    }  # fmt: skip
    assert copy_seen(None) == {"mapping": None, "member_id": None, "links": {}, "seen": {}}


def test_a_copy_keeps_every_key_and_shares_no_links_or_fields_with_the_state() -> None:
    written: WrittenState = {
        "mapping": "members", "sobject": "Contact", "salesforce_id": "003A", "member_id": "u-1", "workspace_id": "w",
        "links": {"salesforce:id": "003A"}, "written": {"Title": {"value": "X", "product_at": 1, "written_at": 2}},
        "acknowledged_at": 2, "key": "w|Contact:Email:a@x",
    }  # fmt: skip
    copy = copy_written(written)
    assert copy == written
    copy["links"]["salesforce:owner_id"] = "005A"
    copy["written"]["FirstName"] = {"value": "Ada", "product_at": 3, "written_at": 4}
    assert written["links"] == {"salesforce:id": "003A"} and list(written["written"]) == ["Title"]

    seen: SeenState = {
        "mapping": "members",
        "member_id": "u-1",
        "links": {},
        "seen": {},
        "links_sent": {"at": 1, "links": {}},
    }
    copied = copy_seen(seen)
    assert copied == seen
    copied["seen"]["Title"] = {"value": "X", "at": 5, "sent": True}
    assert seen["seen"] == {}


def test_a_state_without_later_keys_reads_as_it_was_stored() -> None:
    """A state stored before ``links_sent``/``acknowledged_at`` existed (or with null collections)."""
    old = {"mapping": "members", "member_id": "u-1", "links": None, "seen": None}
    assert copy_seen(old) == {"mapping": "members", "member_id": "u-1", "links": {}, "seen": {}}
