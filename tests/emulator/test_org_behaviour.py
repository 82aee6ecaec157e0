"""What the pipeline relies on: faults, the admin API, upsert semantics, collections, composite."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from sfsync.emulator.faults import Faults, FaultSpecError
from sfsync.emulator.server import serve_in_thread
from tests.kit import Clock

from .conftest import Org, V


def contacts(n: int, start: int = 0) -> list[dict]:
    return [
        {"attributes": {"type": "Contact"}, "LastName": f"C{i}", "Email": f"c{i}@example.com"}
        for i in range(start, start + n)
    ]


def test_every_response_carries_one_date_header_from_the_orgs_clock() -> None:
    clock = Clock(dt.datetime(2026, 3, 4, 5, 6, 7, 900_000, tzinfo=dt.UTC))  # far from the host's time
    running = serve_in_thread(clock=clock)
    try:
        with httpx.Client(base_url=running.base_url) as http:
            answers = [http.get(f"{V}/query", params={"q": "SELECT Id FROM Contact"}), http.get(f"{V}/nowhere")]
    finally:
        running.stop()
    for answer in answers:  # an error too; whole seconds (truncated), not the host's time
        assert answer.headers.get_list("Date") == ["Wed, 04 Mar 2026 05:06:07 GMT"], answer.headers


def test_upsert_answers_by_api_version(org: Org) -> None:
    created = org.http.patch(f"{V}/sobjects/Contact/Email/ann@example.com", json={"LastName": "Ann"})
    assert created.status_code == 201 and created.json()["created"] is True
    updated = org.http.patch(f"{V}/sobjects/Contact/Email/ann@example.com", json={"Title": "CTO"})
    assert updated.status_code == 200 and updated.json()["created"] is False
    old = org.http.patch("/services/data/v45.0/sobjects/Contact/Email/ann@example.com", json={"Title": "CEO"})
    assert old.status_code == 204 and old.content == b""
    assert updated.json()["id"] == created.json()["id"]


def test_a_second_campaign_membership_is_duplicate_value(org: Org) -> None:
    campaign = org.create("Campaign", Name="Meetup")
    contact = org.create("Contact", LastName="Member")
    member = {"attributes": {"type": "CampaignMember"}, "CampaignId": campaign, "ContactId": contact}
    response = org.post("composite/sobjects", {"allOrNone": False, "records": [member, member]})
    first, second = response.json()
    assert first["success"] is True
    assert second["errors"][0]["statusCode"] == "DUPLICATE_VALUE"


def test_collections_refuse_more_than_200_records(org: Org) -> None:
    response = org.post("composite/sobjects", {"allOrNone": False, "records": contacts(201)})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_all_or_none_rolls_the_whole_collection_back(org: Org) -> None:
    records = [*contacts(2), {"attributes": {"type": "Contact"}, "Email": "nolastname@example.com"}]
    response = org.post("composite/sobjects", {"allOrNone": True, "records": records})
    assert [r["success"] for r in response.json()] == [False, False, False]
    assert response.json()[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert org.get("query/", params={"q": "SELECT COUNT() FROM Contact"}).json()["totalSize"] == 0


def test_composite_references_earlier_results(org: Org) -> None:
    body = {
        "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "acct", "body": {"Name": "Acme"}},
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "person",
                "body": {"LastName": "Ref", "AccountId": "@{acct.id}"},
            },
            {"method": "GET", "url": f"{V}/sobjects/Contact/@{{person.id}}?fields=AccountId", "referenceId": "read"},
        ]
    }
    responses = org.post("composite", body).json()["compositeResponse"]
    assert [r["httpStatusCode"] for r in responses] == [201, 201, 200]
    assert responses[2]["body"]["AccountId"] == responses[0]["body"]["id"]


def test_composite_allows_at_most_25_subrequests(org: Org) -> None:
    body = {"compositeRequest": [{"method": "GET", "url": f"{V}/limits", "referenceId": f"r{i}"} for i in range(26)]}
    response = org.post("composite", body)
    assert response.status_code == 400


def collection_subrequests(n: int) -> list[dict]:
    return [
        {
            "method": "POST",
            "url": f"{V}/composite/sobjects",
            "referenceId": f"c{i}",
            "body": {"records": contacts(1, i)},
        }
        for i in range(n)
    ]


def test_composite_allows_at_most_5_collection_or_query_subrequests_and_runs_none_of_more(org: Org) -> None:
    query = {"method": "GET", "url": f"{V}/query/?q=SELECT+Id+FROM+Contact", "referenceId": "q"}
    others = [{"method": "GET", "url": f"{V}/limits", "referenceId": f"l{i}"} for i in range(19)]
    six = {"allOrNone": False, "compositeRequest": [*collection_subrequests(5), query, *others]}
    response = org.post("composite", six)
    assert response.status_code == 400
    (error,) = response.json()
    assert error["errorCode"] == "LIMIT_EXCEEDED" and "5 sObject Collections or query subrequests" in error["message"]
    assert org.get("query/", params={"q": "SELECT COUNT() FROM Contact"}).json()["totalSize"] == 0  # none ran

    five = {"allOrNone": False, "compositeRequest": [*collection_subrequests(4), query, *others]}
    answers = org.post("composite", five).json()["compositeResponse"]
    assert [a["httpStatusCode"] for a in answers] == [200] * 24


def test_a_composite_is_one_api_call_and_its_subrequests_none(org: Org) -> None:
    before = org.emulator.api_calls
    body = {"allOrNone": False, "compositeRequest": collection_subrequests(5)}
    response = org.post("composite", body)
    assert [a["body"][0]["success"] for a in response.json()["compositeResponse"]] == [True] * 5
    assert org.emulator.api_calls == before + 1
    assert org.emulator.calls_by_endpoint == {"POST composite": 1}
    assert response.headers["Sforce-Limit-Info"].startswith(f"api-usage={before + 1}/")


def test_query_offset_is_capped_at_2000(org: Org) -> None:
    response = org.get("query/", params={"q": "SELECT Id FROM Contact LIMIT 10 OFFSET 2001"})
    assert response.status_code == 400
    assert "Maximum SOQL offset allowed is 2000" in response.json()[0]["message"]


def test_deleted_rows_only_through_query_all(org: Org) -> None:
    contact = org.create("Contact", LastName="Binned")
    org.delete(f"sobjects/Contact/{contact}")
    assert org.get("query/", params={"q": "SELECT Id FROM Contact"}).json()["totalSize"] == 0
    everything = org.get("queryAll/", params={"q": "SELECT Id, IsDeleted FROM Contact"}).json()
    assert everything["records"][0]["IsDeleted"] is True


def test_unknown_api_version_is_not_found(org: Org) -> None:
    response = org.http.get("/services/data/v12.0/limits")
    assert response.status_code == 404
    assert response.json()[0]["errorCode"] == "NOT_FOUND"


# ---------------------------------------------------------------------- admin API
def test_admin_counts_calls_per_endpoint_and_records_the_client(org: Org) -> None:
    org.post("sobjects/Contact/", {"LastName": "Tagged"}, headers={"Sforce-Call-Options": "client=sfsync"})
    org.post("sobjects/Contact/", {"LastName": "Untagged"})
    org.get("limits")
    stats = org.http.get("/__admin/stats").json()
    assert stats["api_calls"] == 3
    assert stats["by_endpoint"] == {"POST sobjects/{sobject}": 2, "GET limits": 1}
    clients = [c["client"] for c in org.http.get("/__admin/call-options").json()]
    assert clients == ["sfsync", None]


def test_admin_edit_as_a_sales_rep(org: Org) -> None:
    contact = org.create("Contact", LastName="Edited")
    response = org.http.post(
        "/__admin/edit",
        json={"user": "rep@acme.test", "sobject": "Contact", "id": contact, "values": {"Title": "VP Sales"}},
    )
    assert response.status_code == 200, response.text
    row = org.get(f"sobjects/Contact/{contact}", params={"fields": "Title,LastModifiedById"}).json()
    assert row["Title"] == "VP Sales"
    assert row["LastModifiedById"] == response.json()["by"]
    assert row["LastModifiedById"] != org.emulator.store.integration_user_id


def test_admin_converts_a_lead(org: Org) -> None:
    lead = org.create("Lead", LastName="Prospect", Company="Acme")
    converted = org.http.post("/__admin/convert-lead", json={"lead_id": lead}).json()
    row = org.get(f"sobjects/Lead/{lead}", params={"fields": "IsConverted,ConvertedContactId"}).json()
    assert row == {**row, "IsConverted": True, "ConvertedContactId": converted["contactId"]}
    refused = org.patch(f"sobjects/Lead/{lead}", {"Title": "x"})
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_admin_snapshot_restore_and_reset(org: Org) -> None:
    org.create("Contact", LastName="Kept")
    key = org.http.post("/__admin/snapshot").json()["snapshot"]
    org.create("Contact", LastName="Dropped")
    org.http.post("/__admin/restore", json={"snapshot": key})
    names = [r["LastName"] for r in org.get("query/", params={"q": "SELECT LastName FROM Contact"}).json()["records"]]
    assert names == ["Kept"]
    org.http.post("/__admin/reset")
    assert org.get("query/", params={"q": "SELECT COUNT() FROM Contact"}).json()["totalSize"] == 0
    assert org.http.get("/__admin/stats").json()["api_calls"] == 1


# ---------------------------------------------------------------------- faults
def test_a_fault_script_plays_in_order(org: Org) -> None:
    org.http.post("/__admin/faults", json={"spec": "script=503|expire|concurrent|lock|ok"})
    first = org.get("limits")
    assert (first.status_code, first.json()[0]["errorCode"]) == (503, "SERVER_UNAVAILABLE")
    second = org.get("limits")
    assert (second.status_code, second.json()[0]["errorCode"]) == (401, "INVALID_SESSION_ID")
    third = org.get("limits")
    assert (third.status_code, third.json()[0]["message"]) == (403, "ConcurrentPerOrgLongTxn Limit exceeded.")
    locked = org.post("composite/sobjects", {"allOrNone": False, "records": contacts(3)}).json()
    assert {e["errors"][0]["statusCode"] for e in locked} == {"UNABLE_TO_LOCK_ROW"}
    assert org.post("composite/sobjects", {"allOrNone": False, "records": contacts(3)}).json()[0]["success"]
    assert org.get("limits").status_code == 200


def test_a_lock_rate_fails_some_records_of_a_batch_and_not_others(org: Org) -> None:
    org.http.post("/__admin/faults", json={"spec": "lock=0.3,seed=4"})
    results = org.post("composite/sobjects", {"allOrNone": False, "records": contacts(200)}).json()
    locked = [r for r in results if not r["success"]]
    assert 30 < len(locked) < 90
    assert all(r["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW" for r in locked)
    stored = org.get("query/", params={"q": "SELECT COUNT() FROM Contact"}).json()["totalSize"]
    assert stored == 200 - len(locked)


def test_fault_specs_are_validated_all_at_once() -> None:
    with pytest.raises(FaultSpecError) as err:
        Faults.parse("503=2,latency=soon,script=503|boom,nope=1")
    message = str(err.value)
    for part in ("503=2", "latency=soon", "boom", "nope"):
        assert part in message
    parsed = Faults.parse("503=0.1,latency=20ms,seed=3")
    assert parsed.rates == {"503": 0.1} and parsed.latency_ms == 20.0 and parsed.seed == 3
