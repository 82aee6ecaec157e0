"""The records' common fields, and identity links sent when first known and when they change."""

from __future__ import annotations

from sfsync.processors.inbound.identity import links_update, record_base
from sfsync.processors.inbound.state import Links

BASE = record_base("u-1", "w-1", "members", "Contact", "003A", 1_000, None, "005A")


def test_record_base_names_the_member_the_record_and_its_salesforce_times() -> None:
    assert BASE == {
        "member_id": "u-1", "workspace_id": "w-1", "mapping": "members", "sobject": "Contact",
        "salesforce_id": "003A", "system_modstamp": 1_000, "last_modified_date": None, "last_modified_by_id": "005A",
    }  # fmt: skip


def test_links_go_out_when_first_known_and_when_changed_and_are_remembered() -> None:
    remember: Links = {}
    first = links_update(remember, {"salesforce:id": "003A"}, {"salesforce:id": "003A", "salesforce:owner_id": "005A"},
                         BASE, "c-1:links")  # fmt: skip
    assert first == {**BASE, "inbound_id": "c-1:links", "links": {"salesforce:owner_id": "005A"}}
    assert remember == {"salesforce:owner_id": "005A"}
    assert links_update(remember, {}, {"salesforce:owner_id": "005A"}, BASE, "c-2:links") is None  # sent already
    gone = links_update(remember, {}, {"salesforce:owner_id": None, "salesforce:account_id": None}, BASE, "c-3:links")
    assert gone is not None and gone["links"] == {"salesforce:owner_id": None}  # null only removes a known link


def test_no_member_no_link() -> None:
    nobody = record_base(None, None, "members", "Contact", "003A", 1_000, None, None)
    remember: Links = {}
    assert links_update(remember, {}, {"salesforce:id": "003A"}, nobody, "c-1:links") is None
    assert remember == {}
