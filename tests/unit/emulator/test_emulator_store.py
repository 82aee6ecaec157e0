"""The emulated org's record store: Salesforce's validation rules and wording, system fields,
upsert, recycle bin, replication feeds, lead conversion, snapshots; and org files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sfsync.emulator import ids, org
from sfsync.emulator.errors import ApiError
from sfsync.emulator.store import DuplicatesDetected, MultipleMatches, OrgStore
from tests.kit import Clock

T0 = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(clock: Clock) -> OrgStore:
    return OrgStore.from_org_file(None, clock=clock)


def _raises(fn: object, *args: object, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value


def _rep(store: OrgStore) -> str:
    return next(i for i, u in store.users.items() if u["Username"] == "rep@acme.test")


# ---------------------------------------------------------------- org file


def test_default_org_file_declares_the_community_objects(store: OrgStore) -> None:
    assert store.org.name == "Acme Community"
    assert store.org.daily_api_limit == 15000
    assert store.org_id.startswith("00D") and len(store.org_id) == 18
    usernames = {u["Username"] for u in store.users.values()}
    assert usernames == {"integration@acme.test", "rep@acme.test"}
    assert store.users[store.integration_user_id]["Username"] == "integration@acme.test"
    contact = store.schema.get("Contact")
    assert contact is not None
    member_id = contact.field("Member_Id__c")
    assert member_id is not None and member_id.external_id and member_id.unique and member_id.custom
    assert contact.field("Onboarding_Answers__c").length == 131072  # type: ignore[union-attr]
    assert store.schema.get("Lead").field("Sign_Up_At__c").type == "datetime"  # type: ignore[union-attr]
    assert store.schema.get("Campaign").field("Event_Id__c").external_id  # type: ignore[union-attr]
    status = store.schema.get("CampaignMember").field("Attendee_Status__c")  # type: ignore[union-attr]
    assert status is not None and status.picklist_values == ("registered", "attended")
    activity = store.schema.get("Community_Activity__c")
    assert activity is not None and activity.custom and activity.key_prefix.startswith("a0")
    assert activity.field("Lead__c").relationship_name == "Lead__r"  # type: ignore[union-attr]


def test_org_file_reports_every_error_at_once(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(
        "org: {id: 00D8d0000000001}\n"
        "objects:\n"
        "  Widget__c:\n"
        "    fields:\n"
        "      - {name: Kind__c, type: picklist}\n"
        "      - {name: Owner__c, type: reference, to: Nothing__c}\n"
        "      - {name: Bad, type: string}\n"
        "      - {name: Flag__c, type: checkbox, external_id: true}\n"
        "  Gizmo: {}\n"
        "duplicate_rules: [{object: Contact, fields: [Nope]}]\n"
    )
    with pytest.raises(org.OrgFileError) as info:
        org.load(path)
    text = "\n".join(info.value.errors)
    assert len(info.value.errors) == 6
    assert "Kind__c: a picklist needs values" in text
    assert "reference to unknown object Nothing__c" in text
    assert "Bad: custom field names look like" in text
    assert "Flag__c: only text, email and number fields can be external ids" in text
    assert "objects.Gizmo: unknown standard object" in text
    assert "no field Nope on Contact" in text


def test_org_file_schema_errors_come_from_pydantic_all_at_once() -> None:
    with pytest.raises(org.OrgFileError) as info:
        org.parse({"org": {"daily_api_limit": 0, "colour": "red"}, "objects": {"X__c": {"fields": [{"name": "A__c"}]}}})
    assert len(info.value.errors) == 3
    assert any("daily_api_limit" in e for e in info.value.errors)
    assert any("colour" in e for e in info.value.errors)
    assert any("type" in e and "fields" in e for e in info.value.errors)


def test_org_file_custom_lookup_child_relationship_and_duplicate_rules(clock: Clock) -> None:
    definition = org.parse(
        {
            "objects": {
                "Visit__c": {
                    "label": "Visit",
                    "fields": [
                        {"name": "Contact__c", "type": "lookup", "to": "Contact"},
                        {"name": "Score__c", "type": "number", "precision": 5, "scale": 2},
                    ],
                }
            },
            "duplicate_rules": [{"object": "Contact", "fields": ["Email"]}],
        }
    )
    contact = definition.schema.get("Contact")
    assert contact is not None
    rel = contact.child_relationship("Visits__r")
    assert rel is not None and rel.child_object == "Visit__c" and rel.field == "Contact__c"
    assert definition.duplicate_rules == [("Contact", ("Email",))]
    store = OrgStore(
        definition.schema,
        org_id=definition.settings.id,
        integration_user_id=definition.integration_user_id,
        clock=clock,
        duplicate_rules=definition.duplicate_rules,
    )
    first = store.create("Contact", {"LastName": "A", "Email": "same@x.test"})
    with pytest.raises(DuplicatesDetected) as info:
        store.create("Contact", {"LastName": "B", "Email": "SAME@x.test"})
    assert info.value.error_code == "DUPLICATES_DETECTED"
    assert info.value.message == "Use one of these records?"
    body = info.value.item()
    assert body["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"] == first
    visit = store.create("Visit__c", {"Contact__c": first, "Score__c": "12.345"})
    row = store.get("Visit__c", visit)
    assert row is not None and row["Score__c"] == 12.35 and row["Name"] == visit


# ---------------------------------------------------------------- create / system fields


def test_create_sets_system_fields_name_and_defaults(store: OrgStore, clock: Clock) -> None:
    lead_id = store.create("lead", {"lastname": "Smith", "FirstName": "Ann", "Company": "Acme"})
    assert lead_id.startswith("00Q") and len(lead_id) == 18 and ids.is_valid_id(lead_id)
    row = store.get("Lead", lead_id)
    assert row is not None
    assert row["Name"] == "Ann Smith"
    assert row["Status"] == "Open - Not Contacted"
    assert row["IsConverted"] is False and row["IsDeleted"] is False
    assert row["CreatedDate"] == row["LastModifiedDate"] == row["SystemModstamp"] == T0
    assert row["CreatedById"] == row["LastModifiedById"] == row["OwnerId"] == store.integration_user_id
    assert row["Email"] is None  # every field is present, unset ones as None
    member = store.create(
        "CampaignMember", {"CampaignId": store.create("Campaign", {"Name": "Summit"}), "LeadId": lead_id}
    )
    member_row = store.get("CampaignMember", member)
    assert member_row is not None and member_row["Status"] == "Sent" and member_row["Type"] == "Lead"
    case_id = store.create("Case", {"Subject": "Help"})
    case_row = store.get("Case", case_id)
    assert case_row is not None
    assert (case_row["Status"], case_row["Priority"], case_row["CaseNumber"]) == ("New", "Medium", "00001001")
    task = store.get("Task", store.create("Task", {"Subject": "Call", "WhoId": lead_id}))
    assert task is not None and (task["Status"], task["Priority"]) == ("Not Started", "Normal")


def test_typed_values_from_rest_json(store: OrgStore) -> None:
    contact_id = store.create(
        "Contact",
        {
            "LastName": "Typed",
            "Birthdate": "1990-02-03",
            "Joined_At__c": "2026-11-25T10:00:00.123456+0100",
            "Last_Login_At__c": "2026-11-25T10:00:00Z",
            "HasOptedOutOfEmail": "true",
            "Title": 42,
            "Phone": "",
        },
    )
    row = store.get("Contact", contact_id)
    assert row is not None
    assert row["Birthdate"] == dt.date(1990, 2, 3)
    assert row["Joined_At__c"] == dt.datetime(2026, 11, 25, 9, 0, 0, 123000, tzinfo=dt.UTC)
    assert row["Last_Login_At__c"] == T0
    assert row["HasOptedOutOfEmail"] is True
    assert row["Title"] == "42"
    assert row["Phone"] is None  # empty strings are stored as null


def test_system_modstamp_strictly_increases_per_record_and_may_repeat_across(store: OrgStore) -> None:
    first = store.create("Contact", {"LastName": "A"})
    second = store.create("Contact", {"LastName": "B"})
    rows = {i: store.get("Contact", i) for i in (first, second)}
    assert rows[first]["SystemModstamp"] == rows[second]["SystemModstamp"] == T0  # type: ignore[index]
    stamps = []
    for n in range(3):
        store.update("Contact", first, {"Title": f"t{n}"})
        stamps.append(store.get("Contact", first)["SystemModstamp"])  # type: ignore[index]
    assert stamps == [T0 + dt.timedelta(milliseconds=n) for n in (1, 2, 3)]


# ---------------------------------------------------------------- validation wording


def test_unknown_field(store: OrgStore) -> None:
    error = _raises(store.create, "Contact", {"LastName": "X", "foo": 1})
    assert (error.status, error.error_code) == (400, "INVALID_FIELD")
    assert error.message == "No such column 'foo' on sobject of type Contact"


def test_read_only_fields(store: OrgStore) -> None:
    error = _raises(store.create, "Contact", {"LastName": "X", "IsDeleted": True, "Name": "Y"})
    assert error.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert error.message.startswith("Unable to create/update fields: IsDeleted, Name. Please check the security")
    assert error.fields == ["IsDeleted", "Name"]
    member = store.create(
        "CampaignMember",
        {
            "CampaignId": store.create("Campaign", {"Name": "C"}),
            "ContactId": store.create("Contact", {"LastName": "P"}),
        },
    )
    error = _raises(store.update, "CampaignMember", member, {"CampaignId": store.create("Campaign", {"Name": "D"})})
    assert error.error_code == "INVALID_FIELD_FOR_INSERT_UPDATE" and error.fields == ["CampaignId"]
    assert _raises(store.create, "Contact", {"Id": ids.new_id("003"), "LastName": "X"}).error_code == "INVALID_FIELD"


def test_required_fields(store: OrgStore) -> None:
    error = _raises(store.create, "Lead", {"FirstName": "No"})
    assert error.error_code == "REQUIRED_FIELD_MISSING"
    assert error.message == "Required fields are missing: [LastName, Company]"
    assert error.fields == ["LastName", "Company"]
    contact_id = store.create("Contact", {"LastName": "Here"})
    error = _raises(store.update, "Contact", contact_id, {"LastName": None})
    assert (error.error_code, error.fields) == ("REQUIRED_FIELD_MISSING", ["LastName"])
    error = _raises(store.create, "CampaignMember", {"CampaignId": store.create("Campaign", {"Name": "C"})})
    assert error.error_code == "REQUIRED_FIELD_MISSING"


def test_string_too_long_uses_the_label(store: OrgStore) -> None:
    error = _raises(store.create, "Contact", {"LastName": "x" * 81})
    assert error.error_code == "STRING_TOO_LONG"
    assert error.message == f"Last Name: data value too large: {'x' * 81} (max length=80)"
    assert error.fields == ["LastName"]
    assert store.create("Contact", {"LastName": "x" * 80})


def test_restricted_picklist(store: OrgStore) -> None:
    error = _raises(store.create, "Community_Activity__c", {"Type__c": "Dancing"})
    assert error.error_code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert error.message == "Type: bad value for restricted picklist field: Dancing"
    assert error.fields == ["Type__c"]
    # unrestricted picklists take any value, like a real org's
    lead_id = store.create("Lead", {"LastName": "L", "Company": "C", "LeadSource": "Community"})
    assert store.get("Lead", lead_id)["LeadSource"] == "Community"  # type: ignore[index]


def test_wrong_json_types(store: OrgStore) -> None:
    error = _raises(store.create, "Account", {"Name": "A", "NumberOfEmployees": "many"})
    assert error.error_code == "JSON_PARSER_ERROR"
    assert "Cannot deserialize instance of int from VALUE_STRING value many" in error.message
    assert (
        _raises(store.create, "Contact", {"LastName": "X", "Birthdate": "31/12/1999"}).error_code == "JSON_PARSER_ERROR"
    )
    assert _raises(store.create, "Contact", {"LastName": {"a": 1}}).error_code == "JSON_PARSER_ERROR"
    assert _raises(store.create, "Contact", {"LastName": "X", "DoNotCall": "yes"}).error_code == "JSON_PARSER_ERROR"
    error = _raises(store.create, "Account", {"Name": "A", "NumberOfEmployees": 2.5})
    assert (error.error_code, error.fields) == ("INVALID_TYPE_ON_FIELD_IN_RECORD", ["NumberOfEmployees"])
    assert (
        _raises(store.create, "Contact", {"LastName": "X", "Email": "not-an-email"}).error_code
        == "INVALID_EMAIL_ADDRESS"
    )
    account = store.get("Account", store.create("Account", {"Name": "A", "NumberOfEmployees": "12"}))
    assert account is not None and account["NumberOfEmployees"] == 12


def test_references(store: OrgStore) -> None:
    error = _raises(store.create, "Contact", {"LastName": "X", "AccountId": "garbage"})
    assert (error.error_code, error.fields) == ("MALFORMED_ID", ["AccountId"])
    lead_id = store.create("Lead", {"LastName": "L", "Company": "C"})
    assert (
        _raises(store.create, "Contact", {"LastName": "X", "AccountId": lead_id}).error_code
        == "FIELD_INTEGRITY_EXCEPTION"
    )
    missing = ids.new_id("001")
    error = _raises(store.create, "Contact", {"LastName": "X", "AccountId": missing})
    assert (error.error_code, error.message) == ("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    account = store.create("Account", {"Name": "A"})
    contact_id = store.create("Contact", {"LastName": "X", "AccountId": account[:15]})
    assert store.get("Contact", contact_id)["AccountId"] == account  # type: ignore[index]
    task = store.create("Task", {"Subject": "s", "WhoId": contact_id, "WhatId": account})
    assert store.get("Task", task)["AccountId"] == account  # type: ignore[index]
    # a parent given by external id under the relationship name
    store.create("Contact", {"LastName": "M", "Member_Id__c": "m-1"})
    activity = store.create("Community_Activity__c", {"Contact__r": {"Member_Id__c": "M-1"}, "Type__c": "UserCreated"})
    row = store.get("Community_Activity__c", activity)
    assert row is not None and row["Contact__c"] == store.upsert("Contact", "Member_Id__c", "m-1", {})[0]
    error = _raises(store.create, "Community_Activity__c", {"Contact__r": {"Member_Id__c": "nope"}})
    assert error.message == "Foreign key external ID: nope not found for field Member_Id__c in entity Contact"


def test_unique_external_id_and_campaign_member_duplicates(store: OrgStore) -> None:
    first = store.create("Contact", {"LastName": "A", "Member_Id__c": "abc"})
    error = _raises(store.create, "Contact", {"LastName": "B", "Member_Id__c": "ABC"})
    assert error.error_code == "DUPLICATE_VALUE"
    assert error.message == f"duplicate value found: Member_Id__c duplicates value on record with id: {first[:15]}"
    campaign = store.create("Campaign", {"Name": "Summit", "Event_Id__c": "ev-1"})
    store.create("CampaignMember", {"CampaignId": campaign, "ContactId": first})
    error = _raises(store.create, "CampaignMember", {"CampaignId": campaign, "ContactId": first})
    assert (error.error_code, error.message) == ("DUPLICATE_VALUE", "Already a campaign member.")


def test_not_found_deleted_and_malformed(store: OrgStore) -> None:
    error = _raises(store.update, "Contact", ids.new_id("003"), {"Title": "x"})
    assert (error.status, error.error_code, error.message) == (
        404,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
    contact_id = store.create("Contact", {"LastName": "A"})
    store.delete("Contact", contact_id)
    error = _raises(store.update, "Contact", contact_id, {"Title": "x"})
    assert (error.status, error.error_code, error.message) == (404, "ENTITY_IS_DELETED", "entity is deleted")
    assert _raises(store.delete, "Contact", contact_id).error_code == "ENTITY_IS_DELETED"
    assert _raises(store.update, "Contact", "001RM000003oLrB000", {}).error_code == "MALFORMED_ID"
    assert _raises(store.create, "Nope__c", {}).error_code == "NOT_FOUND"


# ---------------------------------------------------------------- upsert


def test_upsert_creates_then_updates_case_insensitively(store: OrgStore, clock: Clock) -> None:
    record_id, created = store.upsert("Contact", "Member_Id__c", "M-9", {"LastName": "Nine"})
    assert created
    assert store.get("Contact", record_id)["Member_Id__c"] == "M-9"  # type: ignore[index]
    clock.advance(seconds=5)
    again, created = store.upsert("Contact", "member_id__c", "m-9", {"Title": "Boss"})
    assert (again, created) == (record_id, False)
    row = store.get("Contact", record_id)
    assert row is not None and row["Title"] == "Boss" and row["LastName"] == "Nine"
    assert row["LastModifiedDate"] == T0 + dt.timedelta(seconds=5)
    by_email, created = store.upsert("Contact", "Email", "Michael.Bluth@example.com", {"LastName": "Bluth"})
    assert created
    assert store.upsert("Contact", "Email", "michael.bluth@example.com", {"FirstName": "M"}) == (by_email, False)
    by_id = store.upsert("Contact", "Id", by_email.lower(), {"Title": "x"})
    assert by_id == (by_email, False)


def test_upsert_errors(store: OrgStore) -> None:
    error = _raises(store.upsert, "Contact", "Namez", "x", {})
    assert (error.status, error.error_code) == (404, "NOT_FOUND")
    assert error.message == "Provided external ID field does not exist or is not accessible: Namez"
    assert _raises(store.upsert, "Contact", "Title", "x", {}).status == 404  # not an external id
    a = store.create("Contact", {"LastName": "A", "Email": "dup@x.test"})
    b = store.create("Contact", {"LastName": "B", "Email": "dup@x.test"})
    with pytest.raises(MultipleMatches) as info:
        store.upsert("Contact", "Email", "dup@x.test", {"Title": "x"})
    assert sorted(info.value.ids) == sorted([a, b])
    assert info.value.status == 300
    assert info.value.urls("59.0") == [f"/services/data/v59.0/sobjects/Contact/{i}" for i in sorted([a, b])]


def test_converted_lead_cannot_be_updated(store: OrgStore, clock: Clock) -> None:
    lead_id = store.create(
        "Lead",
        {
            "FirstName": "Lee",
            "LastName": "Convert",
            "Company": "Co",
            "Email": "lee@x.test",
            "Member_Id__c": "L-1",
            "Member_Type__c": "Guest",
        },
    )
    clock.advance(days=1)
    account_id, contact_id = store.convert_lead(lead_id)
    lead = store.get("Lead", lead_id)
    assert lead is not None
    assert lead["IsConverted"] is True and lead["Status"] == "Closed - Converted"
    assert (lead["ConvertedAccountId"], lead["ConvertedContactId"]) == (account_id, contact_id)
    assert lead["ConvertedDate"] == dt.date(2026, 11, 26)
    contact = store.get("Contact", contact_id)
    assert contact is not None
    assert (contact["AccountId"], contact["Email"], contact["Member_Type__c"]) == (account_id, "lee@x.test", "Guest")
    assert store.get("Account", account_id)["Name"] == "Co"  # type: ignore[index]
    error = _raises(store.update, "Lead", lead_id, {"Title": "x"})
    assert error.error_code == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert _raises(store.convert_lead, lead_id).error_code == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_convert_lead_into_existing_contact(store: OrgStore) -> None:
    account = store.create("Account", {"Name": "Existing"})
    contact = store.create("Contact", {"LastName": "Known", "AccountId": account})
    lead_id = store.create("Lead", {"LastName": "L", "Company": "C"})
    assert store.convert_lead(lead_id, contact_id=contact) == (account, contact)
    assert store.count("Contact") == 1


# ---------------------------------------------------------------- users


def test_edit_as_records_the_editing_user(store: OrgStore, clock: Clock) -> None:
    contact_id = store.create("Contact", {"LastName": "A"})
    rep = _rep(store)
    clock.advance(minutes=1)
    store.edit_as(rep, "Contact", contact_id, {"Title": "Edited"})
    row = store.get("Contact", contact_id)
    assert row is not None
    assert row["LastModifiedById"] == rep and row["CreatedById"] == store.integration_user_id
    assert row["LastModifiedDate"] == row["SystemModstamp"] == T0 + dt.timedelta(minutes=1)
    clock.advance(minutes=1)
    store.system_touch("Contact", contact_id)
    touched = store.get("Contact", contact_id)
    assert touched is not None
    assert touched["SystemModstamp"] == T0 + dt.timedelta(minutes=2)
    assert touched["LastModifiedDate"] == T0 + dt.timedelta(minutes=1)
    owned = store.create("Contact", {"LastName": "Mine"}, user_id=rep)
    assert store.get("Contact", owned)["OwnerId"] == rep  # type: ignore[index]


# ---------------------------------------------------------------- recycle bin and replication


def test_delete_cascades_hides_rows_and_undelete_restores(store: OrgStore) -> None:
    contact_id = store.create("Contact", {"LastName": "A", "Member_Id__c": "m"})
    campaign = store.create("Campaign", {"Name": "C"})
    member = store.create("CampaignMember", {"CampaignId": campaign, "ContactId": contact_id})
    activity = store.create("Community_Activity__c", {"Contact__c": contact_id})
    store.delete("Contact", contact_id)
    assert store.get("Contact", contact_id) is None
    assert store.get("CampaignMember", member) is None  # cascade delete
    assert store.get("Community_Activity__c", activity) is not None  # plain lookup: no cascade
    assert [r["Id"] for r in store.rows("Contact")] == []
    deleted = store.rows("Contact", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in deleted] == [(contact_id, True)]
    found = store.row_by_id(contact_id[:15])
    assert found is not None and found[0].name == "Contact" and found[1]["IsDeleted"] is True
    # the external id is free while the record is in the recycle bin
    assert store.upsert("Contact", "Member_Id__c", "m", {"LastName": "New"})[1] is True
    store.delete("Contact", store.upsert("Contact", "Member_Id__c", "m", {})[0])
    store.undelete(contact_id)
    assert store.get("Contact", contact_id) is not None
    assert store.get("CampaignMember", member) is not None
    assert _raises(store.undelete, contact_id).error_code == "UNDELETE_FAILED"


def test_purge_removes_for_good_but_keeps_the_delete_log(store: OrgStore, clock: Clock) -> None:
    contact_id = store.create("Contact", {"LastName": "A"})
    clock.advance(minutes=5)
    store.purge(contact_id)
    assert store.row_by_id(contact_id) is None
    assert store.rows("Contact", include_deleted=True) == []
    clock.advance(minutes=5)
    records, _, _ = store.deleted("Contact", T0, T0 + dt.timedelta(minutes=10))
    assert [r["id"] for r in records] == [contact_id]
    assert _raises(store.purge, contact_id).error_code == "NOT_FOUND"


def test_get_updated_window_and_latest_date_covered(store: OrgStore, clock: Clock) -> None:
    early = store.create("Contact", {"LastName": "Early"})
    clock.advance(minutes=3, seconds=20)
    late = store.create("Contact", {"LastName": "Late"})
    clock.advance(minutes=2)  # now = 10:05:20
    found, latest = store.updated_ids("Contact", "2026-11-25T09:59:59Z", "2026-11-25T11:00:00+00:00")
    assert found == [early, late]
    assert latest == dt.datetime(2026, 11, 25, 10, 5, tzinfo=dt.UTC)  # now, floored to the minute
    found, latest = store.updated_ids("Contact", T0 + dt.timedelta(seconds=30), T0 + dt.timedelta(minutes=3))
    assert found == [early]  # seconds are ignored: the window starts at 10:00
    assert latest == T0 + dt.timedelta(minutes=3)
    error = _raises(store.updated_ids, "Contact", T0, T0 + dt.timedelta(seconds=30))
    assert error.error_code == "INVALID_REPLICATION_DATE"
    error = _raises(store.updated_ids, "Contact", T0 - dt.timedelta(days=31), T0)
    assert (error.error_code, error.message) == (
        "INVALID_REPLICATION_DATE",
        "startDate cannot be more than 30 days ago",
    )


def test_get_deleted_entries_and_earliest_date_available(store: OrgStore, clock: Clock) -> None:
    contact_id = store.create("Contact", {"LastName": "Gone"})
    clock.advance(minutes=1, seconds=30)
    store.delete("Contact", contact_id)
    clock.advance(minutes=5)
    records, earliest, latest = store.deleted("Contact", T0, T0 + dt.timedelta(hours=1))
    assert records == [{"id": contact_id, "deletedDate": T0 + dt.timedelta(minutes=1, seconds=30)}]
    assert earliest == T0 + dt.timedelta(minutes=6) - dt.timedelta(days=15)
    assert latest == T0 + dt.timedelta(minutes=6)
    assert store.deleted("Lead", T0, T0 + dt.timedelta(hours=1))[0] == []
    store.expire_delete_log(T0 + dt.timedelta(minutes=4))
    records, earliest, _ = store.deleted("Contact", T0, T0 + dt.timedelta(hours=1))
    assert records == [] and earliest == T0 + dt.timedelta(minutes=4)
    store.undelete(contact_id)
    assert store.get("Contact", contact_id) is not None


# ---------------------------------------------------------------- snapshots


def test_snapshot_restore_and_reset(store: OrgStore) -> None:
    kept = store.create("Contact", {"LastName": "Kept", "Member_Id__c": "k"})
    saved = store.snapshot()
    added = store.create("Contact", {"LastName": "Added", "Member_Id__c": "a"})
    store.update("Contact", kept, {"Member_Id__c": "k2"})
    store.delete("Contact", kept)
    store.restore(saved)
    assert store.get("Contact", added) is None and store.row_by_id(added) is None
    row = store.get("Contact", kept)
    assert row is not None and row["Member_Id__c"] == "k"
    # indexes follow the restored state
    assert store.upsert("Contact", "Member_Id__c", "k", {})[0] == kept
    assert store.upsert("Contact", "Member_Id__c", "a", {"LastName": "Again"})[1] is True
    assert store.upsert("Contact", "Member_Id__c", "k2", {"LastName": "Other"})[1] is True
    store.reset()
    assert store.rows("Contact") == []
    assert {u["Username"] for u in store.users.values()} == {"integration@acme.test", "rep@acme.test"}


def test_rows_are_replaced_not_mutated(store: OrgStore) -> None:
    contact_id = store.create("Contact", {"LastName": "Before"})
    before = store.get("Contact", contact_id)
    store.update("Contact", contact_id, {"LastName": "After"})
    assert before is not None and before["LastName"] == "Before"
    assert store.get("Contact", contact_id)["LastName"] == "After"  # type: ignore[index]


# ---------------------------------------------------------------- transactions and late visibility


def test_a_transaction_shares_one_stamp_and_can_commit_late(store: OrgStore, clock: Clock) -> None:
    existing = store.create("Contact", {"LastName": "Existing", "Title": "Old"})
    clock.advance(seconds=1)
    with store.transaction(user_id=_rep(store), visibility_delay=dt.timedelta(seconds=2)):
        created = store.create("Contact", {"LastName": "New"}, user_id=_rep(store))
        clock.advance(milliseconds=300)  # a long transaction: the stamp is still its start
        store.update("Contact", existing, {"Title": "New"}, user_id=_rep(store))
    stamp = T0 + dt.timedelta(seconds=1)
    assert store.get("Contact", created) is None
    assert store.get("Contact", existing)["Title"] == "Old"  # type: ignore[index]
    assert [r["Id"] for r in store.rows("Contact")] == [existing] and store.count("Contact") == 1
    assert [p["id"] for p in store.pending_visibility()] == [created, existing]
    clock.advance(seconds=2)
    rows = {r["Id"]: r for r in store.rows("Contact")}
    assert rows[created]["SystemModstamp"] == rows[existing]["SystemModstamp"] == stamp
    assert rows[existing]["Title"] == "New" and store.pending_visibility() == []


def test_a_later_write_commits_a_late_one_first(store: OrgStore, clock: Clock) -> None:
    with store.transaction(visibility_delay=dt.timedelta(minutes=1)):
        contact = store.create("Contact", {"LastName": "Late"})
    assert store.get("Contact", contact) is None
    clock.advance(seconds=1)
    store.update("Contact", contact, {"Title": "Now"})
    assert store.get("Contact", contact)["Title"] == "Now"  # type: ignore[index]


# ---------------------------------------------------------------- record types

_RECORD_TYPE_ORG = {
    "objects": {
        "Contact": {
            "record_types": [
                {"name": "Business_Contact", "label": "Business Contact"},
                {"name": "Community_Member", "label": "Community Member", "default": True},
                {"name": "Retired", "active": False},
            ]
        },
        "Lead": {"record_types": [{"name": "Community_Lead"}]},
    }
}


def _record_type_store(clock: Clock) -> OrgStore:
    definition = org.parse(_RECORD_TYPE_ORG)
    return OrgStore(
        definition.schema, org_id="00D8d0000000001", integration_user_id=definition.integration_user_id, clock=clock
    )


def _record_type_ids(store: OrgStore) -> dict[str, str]:
    return {f"{r['SobjectType']}.{r['DeveloperName']}": r["Id"] for r in store.rows("RecordType")}


def test_record_types_are_queryable_rows_with_describe_entries_and_a_record_type_id_field(clock: Clock) -> None:
    from sfsync.emulator.describe import describe_sobject
    from sfsync.emulator.soql import run_query

    store = _record_type_store(clock)
    result = run_query(
        store,
        "SELECT Id, SobjectType, DeveloperName, Name, IsActive FROM RecordType ORDER BY DeveloperName",
        include_deleted=False,
        api_version="59.0",
        now=T0,
    )
    rows = [(r["SobjectType"], r["DeveloperName"], r["Name"], r["IsActive"]) for r in result.records]
    assert rows == [
        ("Contact", "Business_Contact", "Business Contact", True),
        ("Lead", "Community_Lead", "Community Lead", True),
        ("Contact", "Community_Member", "Community Member", True),
        ("Contact", "Retired", "Retired", False),
    ]
    assert all(r["Id"].startswith("012") and len(r["Id"]) == 18 for r in result.records)
    ids_by_name = _record_type_ids(store)
    contact = store.schema.get("Contact")
    assert contact is not None
    infos = describe_sobject(contact, "59.0")["recordTypeInfos"]
    assert [(i["developerName"], i["active"], i["defaultRecordTypeMapping"], i["master"]) for i in infos] == [
        ("Business_Contact", True, False, False),
        ("Community_Member", True, True, False),
        ("Retired", False, False, False),
        ("Master", True, False, True),  # listed last, no longer the default once record types exist
    ]
    assert infos[1]["recordTypeId"] == ids_by_name["Contact.Community_Member"]
    field = next(f for f in describe_sobject(contact, "59.0")["fields"] if f["name"] == "RecordTypeId")
    assert (field["type"], field["referenceTo"], field["relationshipName"]) == (
        "reference",
        ["RecordType"],
        "RecordType",
    )
    # objects without record types have no RecordTypeId field and only the master
    account = store.schema.get("Account")
    assert account is not None and account.field("RecordTypeId") is None
    assert [i["developerName"] for i in describe_sobject(account, "59.0")["recordTypeInfos"]] == ["Master"]
    # the relationship resolves in SOQL
    store.create("Contact", {"LastName": "Rel"})
    (row,) = run_query(
        store, "SELECT RecordType.DeveloperName FROM Contact", include_deleted=False, api_version="59.0", now=T0
    ).records
    assert row["RecordType"]["DeveloperName"] == "Community_Member"


def test_a_created_record_gets_its_record_type_or_the_default(clock: Clock) -> None:
    store = _record_type_store(clock)
    ids_by_name = _record_type_ids(store)
    business = ids_by_name["Contact.Business_Contact"]
    chosen = store.create("Contact", {"LastName": "A", "RecordTypeId": business[:15]})  # 15 characters do
    defaulted = store.create("Contact", {"LastName": "B"})
    assert store.get("Contact", chosen)["RecordTypeId"] == business  # type: ignore[index]
    assert store.get("Contact", defaulted)["RecordTypeId"] == ids_by_name["Contact.Community_Member"]  # type: ignore[index]
    # the only record type is the default; objects without record types have no RecordTypeId
    lead = store.create("Lead", {"LastName": "L", "Company": "Acme"})
    assert store.get("Lead", lead)["RecordTypeId"] == ids_by_name["Lead.Community_Lead"]  # type: ignore[index]
    assert "RecordTypeId" not in store.get("Account", store.create("Account", {"Name": "Acme"}))  # type: ignore[operator]
    # an update may switch to another active record type
    store.update("Contact", defaulted, {"RecordTypeId": business})
    assert store.get("Contact", defaulted)["RecordTypeId"] == business  # type: ignore[index]


@pytest.mark.parametrize("which", ["Contact.Retired", "Lead.Community_Lead", "unknown", "master"])
def test_an_inactive_unknown_master_or_other_objects_record_type_is_refused(clock: Clock, which: str) -> None:
    store = _record_type_store(clock)
    record_type_id = {
        **_record_type_ids(store),
        "unknown": ids.stable_id("012", "no such record type"),
        "master": "012000000000000AAA",
    }[which]
    error = _raises(store.create, "Contact", {"LastName": "A", "RecordTypeId": record_type_id})
    assert error.error_code == "INVALID_CROSS_REFERENCE_KEY"
    assert error.message == f"Record Type ID: this ID value isn't valid for the user: {record_type_id}"
    assert error.fields == ["RecordTypeId"]
    existing = store.create("Contact", {"LastName": "B"})
    error = _raises(store.update, "Contact", existing, {"RecordTypeId": record_type_id})
    assert error.error_code == "INVALID_CROSS_REFERENCE_KEY"
    assert store.count("Contact") == 1


def test_record_types_survive_reset_and_are_read_only(clock: Clock) -> None:
    store = _record_type_store(clock)
    before = _record_type_ids(store)
    store.reset()
    assert _record_type_ids(store) == before
    error = _raises(store.create, "RecordType", {"Name": "X", "DeveloperName": "X", "SobjectType": "Contact"})
    assert error.error_code == "INVALID_TYPE_FOR_OPERATION"


def test_the_default_org_gives_contacts_record_types(store: OrgStore) -> None:
    ids_by_name = _record_type_ids(store)
    assert set(ids_by_name) == {"Contact.Business_Contact", "Contact.Community_Member", "Contact.Partner_Contact"}
    created = store.create("Contact", {"LastName": "D"})
    assert store.get("Contact", created)["RecordTypeId"] == ids_by_name["Contact.Business_Contact"]  # type: ignore[index]


def test_org_file_record_type_errors_are_reported_at_once() -> None:
    with pytest.raises(org.OrgFileError) as info:
        org.parse(
            {
                "objects": {
                    "Contact": {
                        "record_types": [
                            {"name": "Member", "default": True},
                            {"name": "member"},
                            {"name": "Old", "active": False, "default": True},
                            {"name": "Bad Name"},
                        ]
                    },
                    "User": {"record_types": [{"name": "Staff"}]},
                }
            }
        )
    text = "\n".join(info.value.errors)
    assert len(info.value.errors) == 5, text
    assert "Contact.record_types.member: declared twice" in text
    assert "Old: an inactive record type cannot be the default" in text
    assert "Contact.record_types: only one default record type" in text
    assert "Bad Name: developer names are letters" in text
    assert "User.record_types: User has no record types" in text
