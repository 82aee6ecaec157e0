"""Describe bodies: the same keys and JSON types as a real org's (recorded fixtures), plus the
standard objects' attributes clients derive required fields and upsert keys from."""

from __future__ import annotations

from typing import Any

import pytest

from sfsync.emulator import org, standard
from sfsync.emulator.describe import describe_global, describe_sobject
from sfsync.emulator.model import Schema
from tests.kit import recorded_json


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return org.load(None).schema


def _real_field_types() -> dict[str, set[str]]:
    """The JSON types each field key takes across every field of both recorded describes."""
    types: dict[str, set[str]] = {}
    for name in ("cci_describe_lead.json", "cci_describe_custom_object.json"):
        for entry in recorded_json(name)["fields"]:
            for key, value in entry.items():
                types.setdefault(key, set()).add(_json_type(value))
    # Keys whose value is null on the recorded fields but a string on others (e.g. a lookup's relationshipName).
    for key in ("relationshipName", "extraTypeInfo", "compoundFieldName", "inlineHelpText"):
        types[key] |= {"null", "string"}
    types["defaultValue"] |= {"null", "string", "boolean", "number"}
    return types


def _assert_same_shape(ours: dict[str, Any], real: dict[str, Any]) -> None:
    assert set(ours) == set(real)
    real_fields = {f["name"]: f for f in real["fields"]}
    allowed = _real_field_types()
    field_keys = set(real["fields"][0])
    for entry in ours["fields"]:
        assert set(entry) == field_keys, entry["name"]
        for key, value in entry.items():
            kind = _json_type(value)
            if entry["name"] in real_fields:  # same field: exactly the same JSON type
                assert kind == _json_type(real_fields[entry["name"]][key]), (entry["name"], key)
            else:
                assert kind in allowed[key], (entry["name"], key, kind)
        for value in entry["picklistValues"]:
            assert set(value) == {"active", "defaultValue", "label", "validFor", "value"}
    for key, value in real.items():
        if value is not None and key != "keyPrefix":
            assert _json_type(ours[key]) == _json_type(value), key


def test_lead_describe_has_the_real_keys_and_types(schema: Schema) -> None:
    real = recorded_json("cci_describe_lead.json")
    lead = schema.get("Lead")
    assert lead is not None
    ours = describe_sobject(lead, "59.0")
    _assert_same_shape(ours, real)
    assert ours["keyPrefix"] == "00Q"
    child = real["childRelationships"][0]
    assert all(set(c) == set(child) for c in ours["childRelationships"])
    assert ours["recordTypeInfos"] == real["recordTypeInfos"]
    for key, url in real["urls"].items():
        if key.startswith("ui"):
            continue
        assert ours["urls"][key] == url


def test_lead_field_attributes_match_the_recorded_org(schema: Schema) -> None:
    real = {f["name"]: f for f in recorded_json("cci_describe_lead.json")["fields"]}
    lead = schema.get("Lead")
    assert lead is not None
    ours = {f["name"]: f for f in describe_sobject(lead, "59.0")["fields"]}
    compared = [
        "type",
        "length",
        "byteLength",
        "nillable",
        "createable",
        "updateable",
        "defaultedOnCreate",
        "idLookup",
        "externalId",
        "soapType",
        "referenceTo",
        "relationshipName",
        "nameField",
        "polymorphicForeignKey",
        "defaultValue",
        "calculated",
        "digits",
        "precision",
        "scale",
    ]
    shared = sorted(set(real) & set(ours))
    assert len(shared) >= 40
    for name in shared:
        for key in compared:
            assert ours[name][key] == real[name][key], (name, key)
    status = ours["Status"]["picklistValues"]
    assert status == real["Status"]["picklistValues"]


def test_required_on_create_as_clients_compute_it(schema: Schema) -> None:
    def required(name: str) -> set[str]:
        obj = schema.get(name)
        assert obj is not None
        return {
            f["name"]
            for f in describe_sobject(obj, "59.0")["fields"]
            if f["createable"] and not f["nillable"] and not f["defaultedOnCreate"]
        }

    assert required("Lead") == {"LastName", "Company"}
    assert required("Contact") == {"LastName"}
    assert required("CampaignMember") == {"CampaignId"}
    assert required("Opportunity") == {"Name", "StageName", "CloseDate"}


def test_custom_object_describe_has_the_real_keys_and_types(schema: Schema) -> None:
    real = recorded_json("cci_describe_custom_object.json")
    activity = schema.get("Community_Activity__c")
    assert activity is not None
    ours = describe_sobject(activity, "59.0")
    _assert_same_shape(ours, real)
    assert ours["custom"] is True
    assert ours["keyPrefix"].startswith("a")
    fields = {f["name"]: f for f in ours["fields"]}
    assert fields["Name"]["autoNumber"] is True and fields["Name"]["createable"] is False
    assert fields["Event_Key__c"]["externalId"] is True and fields["Event_Key__c"]["unique"] is True
    assert fields["Contact__c"]["referenceTo"] == ["Contact"]
    assert fields["Contact__c"]["relationshipName"] == "Contact__r"
    assert fields["Type__c"]["restrictedPicklist"] is True
    assert len(fields["Type__c"]["picklistValues"]) == 16
    assert fields["OwnerId"]["referenceTo"] == ["Group", "User"]


def test_child_relationships_are_computed_from_references(schema: Schema) -> None:
    contact = schema.get("Contact")
    assert contact is not None
    children = {c["relationshipName"]: c for c in describe_sobject(contact, "59.0")["childRelationships"]}
    assert children["CampaignMembers"]["childSObject"] == "CampaignMember"
    assert children["CampaignMembers"]["field"] == "ContactId"
    assert children["CampaignMembers"]["cascadeDelete"] is True
    assert children["Tasks"]["field"] == "WhoId"
    assert children["Cases"]["childSObject"] == "Case"
    assert children["Community_Activities__r"]["childSObject"] == "Community_Activity__c"
    assert children["Community_Activities__r"]["cascadeDelete"] is False
    account = schema.get("Account")
    assert account is not None
    names = {c.relationship_name for c in account.child_relationships}
    assert {"Contacts", "Opportunities", "Cases", "Tasks"} <= names


def test_standard_schema_is_fresh_each_time() -> None:
    first, second = standard.standard_schema(), standard.standard_schema()
    assert first.get("Contact") is not second.get("Contact")
    contact = first.get("Contact")
    assert contact is not None and contact.field("email") is not None
    assert contact.field("Email").id_lookup  # type: ignore[union-attr]
    assert first.get("Task").field("WhoId").reference_to == ("Contact", "Lead")  # type: ignore[union-attr]
    prefixes = {o.name: o.key_prefix for o in first}
    assert prefixes == {
        "Account": "001",
        "Contact": "003",
        "Lead": "00Q",
        "Opportunity": "006",
        "Campaign": "701",
        "CampaignMember": "00v",
        "Case": "500",
        "Task": "00T",
        "User": "005",
        "Organization": "00D",
        "RecordType": "012",
    }


def test_describe_global_matches_the_recorded_entries(schema: Schema) -> None:
    real = recorded_json("cci_describe_global_EXCERPT.json")
    ours = describe_global(schema, "52.0")
    assert set(ours) == set(real)
    assert ours["encoding"] == "UTF-8" and ours["maxBatchSize"] == 200
    by_name = {s["name"]: s for s in ours["sobjects"]}
    for entry in real["sobjects"]:
        if entry["name"] not in by_name:
            continue
        mine = by_name[entry["name"]]
        assert set(mine) == set(entry), entry["name"]
        assert mine["urls"] == entry["urls"], entry["name"]
        for key in ("createable", "deletable", "queryable", "updateable", "custom", "label", "labelPlural"):
            assert mine[key] == entry[key], (entry["name"], key)
        if entry["keyPrefix"] is not None:
            assert mine["keyPrefix"] == entry["keyPrefix"]
    assert by_name["Community_Activity__c"]["custom"] is True
    assert by_name["Contact"]["urls"]["describe"] == "/services/data/v52.0/sobjects/Contact/describe"
