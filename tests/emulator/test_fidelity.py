"""Behaviours where the emulator once differed from a real org, each pinned to what Salesforce documents.

Sources: the REST API Developer Guide (sObject Collections, Composite, upsert/retrieve by external id),
restforce's recorded fixtures, and shared/research/salesforce-api.md (§2, §3, §11).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sfsync.emulator.server import build
from tests.kit import Clock

from .conftest import Org, V


def soql(org: Org, query: str) -> list[dict[str, Any]]:
    response = org.get("query/", params={"q": query})
    assert response.status_code == 200, response.text
    return list(response.json()["records"])


# ---------------------------------------------------------------------- sObject Collections
def test_collection_update_takes_the_id_field_in_any_case(org: Org) -> None:
    # The guide's example bodies send "id" (field names are case-insensitive in the REST API).
    contact = org.create("Contact", LastName="Lower")
    body = {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "id": contact, "Title": "CTO"}]}
    response = org.patch("composite/sobjects", body)
    assert response.json() == [{"id": contact, "success": True, "errors": []}]
    assert org.get(f"sobjects/Contact/{contact}", params={"fields": "Title"}).json()["Title"] == "CTO"


def test_failed_collection_items_carry_no_id(org: Org) -> None:
    # A SaveResult's id is set only when the record was saved; a failed item is {success, errors}.
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "Saved"},
        {"attributes": {"type": "Contact"}, "FirstName": "NoLastName"},
    ]
    saved, failed = org.post("composite/sobjects", {"allOrNone": False, "records": records}).json()
    assert saved["success"] is True and len(saved["id"]) == 18
    assert failed == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    rolled = org.post("composite/sobjects", {"allOrNone": True, "records": records}).json()
    assert "id" not in rolled[0] and rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"


def test_collection_delete_without_ids_is_a_400(org: Org) -> None:
    # restforce spec/fixtures/sobject/composite_sobjects_destroy_bad_request_response.json
    response = org.delete("composite/sobjects")
    assert response.status_code == 400
    assert response.json() == [{"message": "At least 1 Id is required.", "errorCode": "REQUIRED_FIELD_MISSING"}]


def test_collection_delete_reports_malformed_and_deleted_ids(org: Org) -> None:
    # Guide: a malformed id in a collections delete is MALFORMED_ID "malformed id <id>"; a DeleteResult
    # names the record it attempted.
    binned = org.create("Contact", LastName="Binned")
    org.delete(f"sobjects/Contact/{binned}")
    response = org.delete("composite/sobjects", params={"ids": f"001RM000003oLrB000,{binned}"})
    malformed, deleted = response.json()
    assert malformed == {
        "success": False,
        "errors": [{"statusCode": "MALFORMED_ID", "message": "malformed id 001RM000003oLrB000", "fields": []}],
    }
    assert deleted["id"] == binned and deleted["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"


def test_collection_upsert_with_several_matches_names_the_matching_records(org: Org) -> None:
    first = org.create("Contact", LastName="One", Email="twin@example.com")
    second = org.create("Contact", LastName="Two", Email="twin@example.com")
    body = {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "Email": "twin@example.com"}]}
    (item,) = org.patch("composite/sobjects/Contact/Email", body).json()
    assert item["success"] is False and item["created"] is False and "id" not in item
    error = item["errors"][0]
    assert error["statusCode"] == "DUPLICATE_EXTERNAL_ID"
    assert first in error["message"] and second in error["message"]


# ---------------------------------------------------------------------- composite
def test_composite_all_or_none_overrides_its_collections(org: Org) -> None:
    # Guide, "allOrNone Parameters in Composite and Collections Requests": a composite allOrNone=true
    # applies to each sObject Collections subrequest, overriding the subrequest's own allOrNone.
    records = [
        {"attributes": {"type": "Account"}, "Name": "Northern Trail Outfitters"},
        {"attributes": {"type": "Account"}},  # Name missing
    ]
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {
                "method": "POST",
                "url": f"{V}/composite/sobjects",
                "referenceId": "newAccounts",
                "body": {"allOrNone": False, "records": records},
            },
            {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "newContact", "body": {"LastName": "X"}},
        ],
    }
    collection, contact = org.post("composite", body).json()["compositeResponse"]
    assert [r["success"] for r in collection["body"]] == [False, False]
    assert collection["body"][0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert contact["httpStatusCode"] == 400 and contact["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert soql(org, "SELECT Id FROM Account") == [] and soql(org, "SELECT Id FROM Contact") == []


# ---------------------------------------------------------------------- by external id
def test_a_path_segment_that_is_no_id_is_read_as_an_external_id_field(org: Org) -> None:
    # restforce fixtures sobject_find_error_response.json / delete_error_response.json
    for method in ("GET", "DELETE"):
        response = org.http.request(method, f"{V}/sobjects/Contact/23foo")
        assert response.status_code == 404
        assert response.json() == [
            {
                "message": "Provided external ID field does not exist or is not accessible: 23foo",
                "errorCode": "NOT_FOUND",
            }
        ]


def test_get_by_an_id_lookup_field_with_several_matches_is_300_with_urls(org: Org) -> None:
    first = org.create("Contact", LastName="One", Email="twin@example.com")
    second = org.create("Contact", LastName="Two", Email="twin@example.com")
    response = org.get("sobjects/Contact/Email/twin@example.com")
    assert response.status_code == 300
    assert sorted(response.json()) == sorted(f"{V}/sobjects/Contact/{i}" for i in (first, second))


CASE_SENSITIVE_ORG = """
org: {id: 00D8d0000000001, name: Case Org}
objects:
  Contact:
    fields:
      - {name: Code__c, label: Code, type: string, length: 20, external_id: true, unique: true, case_sensitive: true}
"""


@pytest.fixture
def case_org(tmp_path: Path) -> Iterator[Org]:
    org_file = tmp_path / "org.yaml"
    org_file.write_text(CASE_SENSITIVE_ORG)
    client = Org(build(org_file))
    with client.http:
        yield client


def test_external_id_lookups_honour_a_case_sensitive_field(case_org: Org) -> None:
    # An external id marked case-sensitive matches "ABC" and "abc" as different values, for upsert and
    # for retrieve/delete by external id alike.
    upper = case_org.patch("sobjects/Contact/Code__c/ABC", {"LastName": "Upper"})
    assert upper.status_code == 201
    assert case_org.get("sobjects/Contact/Code__c/abc").status_code == 404
    assert case_org.delete("sobjects/Contact/Code__c/abc").status_code == 404
    found = case_org.get("sobjects/Contact/Code__c/ABC", params={"fields": "LastName"})
    assert found.status_code == 200 and found.json()["LastName"] == "Upper"


# ---------------------------------------------------------------------- SystemModstamp
def test_a_system_touch_moves_system_modstamp_only_and_replication_sees_it() -> None:
    clock = Clock()
    emulator = build(clock=clock)
    client = Org(emulator)
    with client.http:
        first = client.create("Contact", LastName="First")
        second = client.create("Contact", LastName="Second")
        created = client.get(f"sobjects/Contact/{first}").json()
        clock.now += dt.timedelta(minutes=5)
        touched = client.http.post("/__admin/touch", json={"sobject": "Contact", "id": first})
        assert touched.status_code == 200, touched.text
        row = client.get(f"sobjects/Contact/{first}").json()
        assert row["LastModifiedDate"] == created["LastModifiedDate"]
        assert row["SystemModstamp"] > created["SystemModstamp"]
        since = (clock.now - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        changed = soql(client, f"SELECT Id FROM Contact WHERE SystemModstamp >= {since} ORDER BY SystemModstamp, Id")
        assert [r["Id"] for r in changed] == [first]
        # records written in the same millisecond share a SystemModstamp; the Id breaks the tie
        client.http.post("/__admin/touch", json={"sobject": "Contact", "id": second})
        both = soql(
            client,
            f"SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp >= {since} ORDER BY SystemModstamp, Id",
        )
        assert [r["Id"] for r in both] == sorted([first, second], key=str.casefold)  # text sorts case-insensitively
        assert both[0]["SystemModstamp"] == both[1]["SystemModstamp"]
        clock.now += dt.timedelta(minutes=5)
        window = {
            "start": (clock.now - dt.timedelta(minutes=20)).isoformat(),
            "end": clock.now.isoformat(),
        }
        updated = client.get("sobjects/Contact/updated/", params=window).json()
        assert set(updated["ids"]) == {first, second}


def test_post_to_the_id_field_with_no_value_creates(org: Org) -> None:
    # Guide (upsert): POST /sobjects/{type}/Id inserts a record, as an upsert on Id with a null value.
    response = org.post("sobjects/Contact/Id", {"LastName": "ViaId"})
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "success": True, "errors": [], "created": True}
    assert soql(org, "SELECT LastName FROM Contact")[0]["LastName"] == "ViaId"


def test_method_not_allowed_lists_the_methods_the_resource_takes(org: Org) -> None:
    contact = org.create("Contact", LastName="Put")
    response = org.http.put(f"{V}/sobjects/Contact/{contact}", json={})
    assert response.status_code == 405
    assert response.json() == [
        {
            "message": "HTTP Method 'PUT' not allowed. Allowed are HEAD,GET,PATCH,DELETE",
            "errorCode": "METHOD_NOT_ALLOWED",
        }
    ]
