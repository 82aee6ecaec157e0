"""Every recorded Salesforce response in tests/fixtures/salesforce has a twin here: the same request to the
emulator answers with the same shape (keys, JSON types, status codes, the headers that matter)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sfsync.emulator.server import build
from tests.kit import RECORDED, recorded_json, recorded_text

from .conftest import Org, V, same_shape


def request_of(name: str, version: str = "62.0") -> dict:
    text = recorded_text(name).replace("vxx.0", f"v{version}").replace("v49.0", f"v{version}")
    return json.loads(text)


def test_every_fixture_has_a_test_here() -> None:
    source = Path(__file__).read_text()
    names = sorted(p.name for p in RECORDED.glob("*.json"))
    assert len(names) >= 30
    untested = [n for n in names if n.removesuffix(".json").removesuffix(".request") not in source]
    assert untested == []


def test_versions(org: Org) -> None:  # restforce_versions
    response = org.http.get("/services/data/")
    assert response.status_code == 200
    same_shape(response.json(), recorded_json("restforce_versions.json"))
    assert {"version": "62.0", "url": "/services/data/v62.0", "label": "Winter '25"} in response.json()


def test_create_answers_201_with_id(org: Org) -> None:  # cci_sobject_create_account_201
    response = org.post("sobjects/Account/", {"Name": "Acme"})
    assert response.status_code == 201
    same_shape(response.json(), recorded_json("cci_sobject_create_account_201.json"))
    assert response.json()["id"].startswith("001") and len(response.json()["id"]) == 18


def test_collection_create(org: Org) -> None:  # cci_collections_create_leads
    response = org.post("composite/sobjects", request_of("cci_collections_create_leads.request.json"))
    assert response.status_code == 200
    expected = recorded_json("cci_collections_create_leads.json")
    same_shape(response.json(), expected)
    assert [r["success"] for r in response.json()] == [r["success"] for r in expected]
    assert all(r["id"].startswith("00Q") for r in response.json())


def test_collection_upsert_by_email(org: Org) -> None:  # cci_collections_upsert_contact_by_email
    body = request_of("cci_collections_upsert_contact_by_email.request.json")
    expected = recorded_json("cci_collections_upsert_contact_by_email.json")
    for record, outcome in zip(body["records"], expected, strict=True):
        if not outcome["created"]:
            org.create("Contact", LastName=record["LastName"], Email=record["Email"].lower())
    response = org.patch("composite/sobjects/Contact/Email", body)
    assert response.status_code == 200
    same_shape(response.json(), expected)
    assert [r["created"] for r in response.json()] == [r["created"] for r in expected]


def test_parent_to_child_subquery_is_null_when_empty(org: Org) -> None:  # cci_query_parent_to_child_subquery
    org.create("Contact", FirstName="Ada", LastName="Lovelace")
    response = org.get("query/", params={"q": "select FirstName,(select Name from Opportunities) from Contact"})
    assert response.status_code == 200
    expected = recorded_json("cci_query_parent_to_child_subquery.json")
    same_shape(response.json(), expected)
    assert response.json()["records"][0]["Opportunities"] is None


def test_count_id_aggregate(org: Org) -> None:  # cci_query_count_id_aggregate
    org.create("Account", Name="A")
    response = org.get("query/", params={"q": "select count(Id) from Account"})
    same_shape(response.json(), recorded_json("cci_query_count_id_aggregate.json"))
    assert response.json()["records"][0]["expr0"] == 1


def test_record_count(org: Org) -> None:  # cci_limits_record_count
    org.create("Account", Name="A")
    response = org.get("limits/recordCount", params={"sObjects": "Account"})
    assert response.json() == {"sObjects": [{"count": 1, "name": "Account"}]}
    same_shape(response.json(), recorded_json("cci_limits_record_count.json"))


def test_typeof_polymorphic_who(org: Org) -> None:  # cci_query_typeof_polymorphic_who
    contact = org.create("Contact", LastName="Bluth")
    org.create("Task", Subject="Call", WhoId=contact)
    query = "SELECT Id, Subject, TYPEOF Who WHEN Contact THEN LastName ELSE Name END FROM Task"
    response = org.get("query/", params={"q": query})
    assert response.status_code == 200, response.text
    who = response.json()["records"][0]["Who"]
    assert who["attributes"]["type"] == "Contact"
    assert who["LastName"] == "Bluth"
    assert recorded_json("cci_query_typeof_polymorphic_who.json")["records"][0]["Who"]["attributes"]["type"]


def test_composite_subrequest_not_found(org: Org) -> None:  # cci_composite_subrequest_not_found
    response = org.post("composite", request_of("cci_composite_subrequest_not_found.request.json"))
    assert response.status_code == 200
    expected = recorded_json("cci_composite_subrequest_not_found.json")
    same_shape(response.json(), expected)
    assert response.json()["compositeResponse"][0]["httpStatusCode"] == 404
    assert response.json()["compositeResponse"][0]["body"][0]["errorCode"] == "NOT_FOUND"


def test_composite_count_and_invalid_type(org: Org) -> None:  # cci_composite_count_and_invalid_type
    org.create("Account", Name="A")
    response = org.post("composite", request_of("cci_composite_count_and_invalid_type.request.json"))
    expected = recorded_json("cci_composite_count_and_invalid_type.json")
    same_shape(response.json(), expected)
    first, second = response.json()["compositeResponse"]
    assert first["body"]["totalSize"] == 1 and first["body"]["records"] == []
    assert second["httpStatusCode"] == 400 and second["body"][0]["errorCode"] == "INVALID_TYPE"


def test_composite_304_if_modified_since(org: Org) -> None:  # cci_composite_304_if_modified_since
    body = request_of("cci_composite_304_if_modified_since.request.json")
    for sub in body["compositeRequest"]:
        sub["httpHeaders"]["If-Modified-Since"] = "Thu, 03 Sep 2099 21:35:07 GMT"
    response = org.post("composite", body)
    expected = recorded_json("cci_composite_304_if_modified_since.json")
    same_shape(response.json(), expected)
    assert [r["httpStatusCode"] for r in response.json()["compositeResponse"]] == [304, 304, 304]
    assert set(response.json()["compositeResponse"][0]["httpHeaders"]) == {"ETag", "Last-Modified"}
    stale = org.get("sobjects", headers={"If-Modified-Since": "Thu, 03 Sep 2020 21:35:07 GMT"})
    assert stale.status_code == 200


def test_describe_lead(org: Org) -> None:  # cci_describe_lead
    response = org.get("sobjects/Lead/describe")
    expected = recorded_json("cci_describe_lead.json")
    assert set(response.json()) == set(expected)
    assert set(response.json()["fields"][0]) == set(expected["fields"][0])
    assert response.json()["keyPrefix"] == "00Q"


def test_describe_custom_object(org: Org) -> None:  # cci_describe_custom_object
    response = org.get("sobjects/Community_Activity__c/describe")
    expected = recorded_json("cci_describe_custom_object.json")
    assert set(response.json()) == set(expected)
    assert response.json()["custom"] is True


def test_describe_global(org: Org) -> None:  # cci_describe_global_EXCERPT
    response = org.get("sobjects")
    expected = recorded_json("cci_describe_global_EXCERPT.json")
    assert set(expected) <= set(response.json())
    names = {s["name"] for s in response.json()["sobjects"]}
    assert {s["name"] for s in expected["sobjects"] if not s["name"].endswith("__c")} <= names
    assert set(response.json()["sobjects"][0]) == set(expected["sobjects"][0])


def test_get_organization(org: Org) -> None:  # cci_sobject_get_organization
    response = org.get("query/", params={"q": "SELECT Id, Name FROM Organization"})
    assert response.status_code == 200, response.text
    record = response.json()["records"][0]
    expected = recorded_json("cci_sobject_get_organization.json")
    full = org.get(f"sobjects/Organization/{record['Id']}").json()
    missing = {k for k in expected if k not in full}
    assert missing == set(), f"Organization lacks {sorted(missing)}"
    same_shape({k: full[k] for k in expected}, expected)


def test_oauth_token_success_shape(org: Org) -> None:  # restforce_oauth_token_success
    app = org.emulator.auth.config.connected_apps[0]
    user = org.emulator.auth.config.users[0]
    response = org.http.post(
        "/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "username": user.username,
            "password": user.password + user.security_token,
        },
    )
    assert response.status_code == 200
    expected = recorded_json("restforce_oauth_token_success.json")
    same_shape(response.json(), expected, optional=frozenset({"scope", "token_type"}))
    assert "expires_in" not in response.json()
    assert response.json()["issued_at"].isdigit()


def test_oauth_invalid_grant(org: Org) -> None:  # restforce_oauth_token_error_invalid_grant
    app = org.emulator.auth.config.connected_apps[0]
    response = org.http.post(
        "/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "username": "nobody@example.com",
            "password": "wrong",
        },
    )
    assert response.status_code == 400
    same_shape(response.json(), recorded_json("restforce_oauth_token_error_invalid_grant.json"))
    assert response.json() == {"error": "invalid_grant", "error_description": "authentication failure"}


def test_oauth_refresh_expired(org: Org) -> None:  # restforce_oauth_refresh_error_expired
    app = org.emulator.auth.config.connected_apps[0]
    response = org.http.post(
        "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "refresh_token": "5Aep8614iLM.Dq661ePDmPEgaAW9Oh_L3JKkDpB4xReb54_pZebnUG0h6Sb4KUVDpNtWEofWM39yg==",
        },
    )
    assert response.status_code == 400
    assert response.json() == recorded_json("restforce_oauth_refresh_error_expired.json")


def test_invalid_session(org: Org) -> None:  # restforce_error_invalid_session_id
    response = org.http.get(f"{V}/sobjects", headers={"Authorization": "Bearer 00Dxx!nope"})
    assert response.status_code == 401
    assert response.json() == recorded_json("restforce_error_invalid_session_id.json")


def test_get_updated_and_deleted() -> None:  # restforce_sobject_get_updated, restforce_sobject_get_deleted
    moments = [dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)]
    emulator = build(clock=lambda: moments[0])
    org = Org(emulator)
    contact = org.create("Contact", LastName="Gone")
    kept = org.create("Contact", LastName="Stays")
    assert org.delete(f"sobjects/Contact/{contact}").status_code == 204
    moments[0] += dt.timedelta(minutes=10)  # replication covers whole minutes that have passed
    window = {"start": (moments[0] - dt.timedelta(hours=1)).isoformat(), "end": moments[0].isoformat()}
    updated = org.get("sobjects/Contact/updated/", params=window)
    assert updated.status_code == 200, updated.text
    same_shape(updated.json(), recorded_json("restforce_sobject_get_updated.json"))
    assert kept in updated.json()["ids"]
    deleted = org.get("sobjects/Contact/deleted/", params=window)
    assert deleted.status_code == 200, deleted.text
    same_shape(deleted.json(), recorded_json("restforce_sobject_get_deleted.json"))
    assert [r["id"] for r in deleted.json()["deletedRecords"]] == [contact]


def test_query_pages_with_next_records_url(org: Org) -> None:  # restforce_query_page1_nextRecordsUrl
    for i in range(250):
        org.emulator.store.create("Contact", {"LastName": f"P{i}"})
    first = org.get(
        "query/", params={"q": "SELECT LastName FROM Contact"}, headers={"Sforce-Query-Options": "batchSize=200"}
    )
    same_shape(
        first.json(),
        recorded_json("restforce_query_page1_nextRecordsUrl.json"),
        optional=frozenset({"Text_Label", "LastName"}),
    )
    assert first.json()["done"] is False and len(first.json()["records"]) == 200
    second = org.http.get(first.json()["nextRecordsUrl"])
    assert second.json()["done"] is True and len(second.json()["records"]) == 50
    assert "nextRecordsUrl" not in second.json()


def test_query_relationships(org: Org) -> None:  # restforce_query_relationships
    account = org.create("Account", Name="Parent Co")
    org.create("Contact", LastName="Child", AccountId=account)
    response = org.get("query/", params={"q": "SELECT Name, (SELECT LastName FROM Contacts) FROM Account"})
    record = response.json()["records"][0]
    expected = recorded_json("restforce_query_relationships.json")["records"][0]
    same_shape(record["Contacts"], expected["Whizbangs__r"], optional=frozenset({"Name", "LastName"}))
    child = org.get("query/", params={"q": "SELECT LastName, Account.Name FROM Contact"}).json()["records"][0]
    same_shape(child["Account"], {"attributes": expected["ParentWhizbang__r"]["attributes"], "Name": "x"})


def test_group_by_aggregate(org: Org) -> None:  # restforce_query_group_by_aggregate
    account = org.create("Account", Name="A")
    for amount in (100, 200):
        org.create(
            "Opportunity", Name="O", StageName="Prospecting", CloseDate="2026-12-01", Amount=amount, AccountId=account
        )
    response = org.get("query/", params={"q": "SELECT AccountId, SUM(Amount) FROM Opportunity GROUP BY AccountId"})
    assert response.status_code == 200, response.text
    same_shape(
        response.json(),
        recorded_json("restforce_query_group_by_aggregate.json"),
        optional=frozenset({"CampaignId", "AccountId"}),
    )
    assert response.json()["records"][0]["expr0"] == 300


def test_upsert_multiple_matches_is_300(org: Org) -> None:  # restforce_upsert_300_multiple_choices
    org.create("Contact", LastName="A", Email="twin@example.com")
    org.create("Contact", LastName="B", Email="twin@example.com")
    response = org.patch("sobjects/Contact/Email/twin@example.com", {"LastName": "C"})
    assert response.status_code == 300
    same_shape(response.json(), recorded_json("restforce_upsert_300_multiple_choices.json"))
    assert all(url.startswith(f"{V}/sobjects/Contact/003") for url in response.json())


def test_upsert_unknown_external_id_field_is_404(org: Org) -> None:  # restforce_upsert_404_bad_extid_field
    response = org.patch("sobjects/Contact/Namez/x", {"LastName": "C"})
    assert response.status_code == 404
    assert response.json() == recorded_json("restforce_upsert_404_bad_extid_field.json")


def test_unknown_field_is_invalid_field(org: Org) -> None:  # restforce_error_invalid_field
    response = org.post("sobjects/Contact/", {"LastName": "X", "foo": 1})
    assert response.status_code == 400
    same_shape(response.json(), recorded_json("restforce_error_invalid_field.json"), optional=frozenset({"fields"}))
    assert response.json()[0]["message"] == "No such column 'foo' on sobject of type Contact"


def test_search_without_braces(org: Org) -> None:  # restforce_search_error_malformed_search
    response = org.get("search/", params={"q": "FIND Acme"})
    assert response.status_code == 400
    assert response.json() == recorded_json("restforce_search_error_malformed_search.json")


def test_bulk_ingest_job(org: Org) -> None:  # restforce_bulk2_ingest_create_job
    response = org.post("jobs/ingest", {"object": "Contact", "operation": "insert", "lineEnding": "LF"})
    assert response.status_code == 200
    same_shape(response.json(), recorded_json("restforce_bulk2_ingest_create_job.json"))
    job = response.json()["id"]
    upload = org.http.put(
        f"{V}/jobs/ingest/{job}/batches",
        content=b"LastName,Email\nBulk,b@example.com\n",
        headers={"Content-Type": "text/csv"},
    )
    assert upload.status_code == 201 and upload.content == b""
    assert org.patch(f"jobs/ingest/{job}", {"state": "UploadComplete"}).status_code == 200
    assert org.get(f"jobs/ingest/{job}").json()["state"] == "JobComplete"
    results = org.get(f"jobs/ingest/{job}/successfulResults").text
    assert results.splitlines()[0] == '"sf__Id","sf__Created",LastName,Email'


def test_bulk_query_job(org: Org) -> None:  # airbyte_bulk2_query_job_info
    org.create("Contact", LastName="Q")
    response = org.post("jobs/query", {"operation": "queryAll", "query": "SELECT Id, LastName FROM Contact"})
    assert response.status_code == 200
    same_shape(response.json(), recorded_json("airbyte_bulk2_query_job_info.json"), optional=frozenset({"jobType"}))
    results = org.get(f"jobs/query/{response.json()['id']}/results")
    assert results.headers["Sforce-Locator"] == "null"
    assert results.headers["Sforce-NumberOfRecords"] == "1"


def test_composite_all_or_none_rolls_back(org: Org) -> None:  # camel_composite_response_failure
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "NewPayment1", "body": {"Name": "Kept?"}},
            {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "NewPayment2", "body": {"Nope__c": 1}},
        ],
    }
    response = org.post("composite", body)
    expected = recorded_json("camel_composite_response_failure.json")
    same_shape(response.json(), expected, optional=frozenset({"fields"}))
    first, second = response.json()["compositeResponse"]
    assert first["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert second["body"][0]["errorCode"] == "INVALID_FIELD"
    assert org.get("query/", params={"q": "SELECT COUNT() FROM Account"}).json()["totalSize"] == 0


def test_limits(org: Org) -> None:  # camel_limits
    response = org.get("limits")
    expected = recorded_json("camel_limits.json")
    assert set(expected) <= set(response.json())
    same_shape({k: response.json()[k] for k in expected}, expected)
    assert response.headers["Sforce-Limit-Info"] == f"api-usage=1/{org.emulator.daily_limit}"
