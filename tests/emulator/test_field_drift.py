"""An administrator removes a field, or the right to edit it, while clients run (``POST /__admin/fields``):
the org answers as Salesforce does from then on (describe, SOQL, single-record and collection writes)."""

from __future__ import annotations

from tests.emulator.conftest import Org


def field_names(org: Org, sobject: str) -> set[str]:
    return {f["name"] for f in org.get(f"sobjects/{sobject}/describe").json()["fields"]}


def test_a_removed_field_is_gone_from_describe_queries_and_writes_until_restored(org: Org) -> None:
    record = org.create("Contact", LastName="Lovelace", Title="Countess")
    described = org.get("sobjects/Contact/describe")
    removed = org.http.post("/__admin/fields", json={"sobject": "Contact", "field": "Title", "action": "remove"})
    assert removed.status_code == 200 and removed.json() == {"removed": "Contact.Title"}

    assert "Title" not in field_names(org, "Contact")
    since = described.headers["Last-Modified"]  # a client's cached describe is no longer current
    assert org.get("sobjects/Contact/describe", headers={"If-Modified-Since": since}).status_code == 200
    query = org.get("query", params={"q": "SELECT Id, Title FROM Contact"})
    assert query.status_code == 400
    assert query.json()[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Title' on entity 'Contact'" in query.json()[0]["message"]
    single = org.patch(f"sobjects/Contact/{record}", {"Title": "Ms"})
    assert single.status_code == 400
    # the shape of the recorded answer (restforce_error_invalid_field.json): no "fields" key
    assert single.json() == [
        {"message": "No such column 'Title' on sobject of type Contact", "errorCode": "INVALID_FIELD"}
    ]
    batch = org.patch(
        "composite/sobjects",
        {"records": [{"attributes": {"type": "Contact"}, "id": record, "Title": "Ms"}]},
    )
    assert batch.status_code == 200 and batch.json()[0]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert "Title" not in org.get(f"sobjects/Contact/{record}").json()

    restored = org.http.post("/__admin/fields", json={"sobject": "Contact", "field": "Title", "action": "restore"})
    assert restored.status_code == 200 and restored.json()["name"] == "Title"
    assert org.get(f"sobjects/Contact/{record}").json()["Title"] == "Countess"  # its values come back
    assert org.get("query", params={"q": "SELECT Id, Title FROM Contact"}).status_code == 200


def test_field_level_security_hides_and_shows_a_field_like_remove_and_restore(org: Org) -> None:
    hidden = org.http.post("/__admin/fields", json={"sobject": "Lead", "field": "Title", "readable": False})
    assert hidden.status_code == 200 and "Title" not in field_names(org, "Lead")
    shown = org.http.post("/__admin/fields", json={"sobject": "Lead", "field": "Title", "readable": True})
    assert shown.status_code == 200 and "Title" in field_names(org, "Lead")


def test_a_field_made_read_only_refuses_writes_naming_it(org: Org) -> None:
    record = org.create("Contact", LastName="Hopper")
    changed = org.http.post("/__admin/fields", json={"sobject": "Contact", "field": "Title", "updateable": False})
    assert changed.status_code == 200 and changed.json()["updateable"] is False
    describe = {f["name"]: f for f in org.get("sobjects/Contact/describe").json()["fields"]}
    assert describe["Title"]["updateable"] is False and describe["Title"]["createable"] is True
    answer = org.patch(f"sobjects/Contact/{record}", {"Title": "Rear Admiral"})
    assert answer.status_code == 400
    assert answer.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert answer.json()[0]["message"].startswith("Unable to create/update fields: Title.")


def test_bad_field_requests_are_refused(org: Org) -> None:
    unknown = org.http.post("/__admin/fields", json={"sobject": "Contact", "field": "Nope__c", "action": "remove"})
    assert unknown.status_code == 400 and "bad admin request" in unknown.json()["error"]
    never_removed = org.http.post("/__admin/fields", json={"sobject": "Contact", "field": "Title", "action": "restore"})
    assert never_removed.status_code == 400
    the_id = org.http.post("/__admin/fields", json={"sobject": "Contact", "field": "Id", "action": "remove"})
    assert the_id.status_code == 400
