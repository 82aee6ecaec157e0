"""The inbound contract: product.members.inbound's schemas (shape, released snapshot, what the rules
produce fits them) and the mapping's inbound options (model, describe checks, the default mapping)."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import fastavro
import pytest

from sfsync.cli.mappings import emulator_describes
from sfsync.mapping import MappingError, load_mappings, validate_against_describe
from sfsync.processors.inbound.decide import decide
from sfsync.processors.inbound.identity import apply_result
from sfsync.schemas import SCHEMA_DIR
from sfsync.serde.schema import RELEASED_DIR, load_topic_schema
from sfsync.topics import MEMBERS_INBOUND, SALESFORCE_EDITS
from tests.kit import mappings_from, members_yaml

RECORDS = ("MemberFieldUpdate", "MemberIdentityLink", "MemberDelete", "ImportCandidate")
T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


def test_topic_carries_the_four_inbound_records() -> None:
    assert load_topic_schema(MEMBERS_INBOUND.base).record_names == RECORDS


def test_one_file_per_named_type_with_docs() -> None:
    files = list(SCHEMA_DIR.glob("sfsync.inbound.*.avsc"))
    names = {json.loads(p.read_text())["name"] for p in files}
    assert {*RECORDS, "DeleteAction", "Change", "ChangeType"} <= names
    for path in files:
        schema = json.loads(path.read_text())
        assert path.name == f"{schema['namespace']}.{schema['name']}.avsc"
        assert schema.get("doc")
    for record in RECORDS:
        schema = json.loads((SCHEMA_DIR / f"sfsync.inbound.{record}.avsc").read_text())
        fields = {f["name"] for f in schema["fields"]}
        assert {"inbound_id", "member_id", "mapping", "sobject", "salesforce_id", "system_modstamp"} <= fields
        assert {"last_modified_date", "last_modified_by_id"} <= fields


def test_released_snapshot_is_the_current_schema() -> None:
    released = json.loads((RELEASED_DIR / "product.members.inbound.json").read_text())
    assert released == load_topic_schema(MEMBERS_INBOUND.base).schema


def _round_trip(record: str, value: dict[str, Any], topic_base: str = MEMBERS_INBOUND.base) -> dict[str, Any]:
    topic = load_topic_schema(topic_base)
    _, branch, _ = topic.branches[record]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, branch, value)
    buf.seek(0)
    decoded: dict[str, Any] = fastavro.schemaless_reader(buf, branch, None)
    return decoded


def test_what_the_rules_produce_fits_the_schemas() -> None:
    mappings = load_mappings(variables={"salesforce_deleted": "flag", "salesforce_unlinked": "import"})
    written = {"FirstName": "Ada", "Title": "Engineer", "Member_Id__c": "u-1"}
    result = {
        "write_id": "e-1:members:0", "key": "w-1|Contact:Email:ada@example.com", "mapping": "members",
        "sobject": "Contact", "salesforce_id": "003A", "created": True, "fields": written,
        "acknowledged_at": T0, "workspace_id": "w-1",
        "source": {"topic": "t", "partition": 0, "offset": 0, "event_id": "e-1", "event_type": "UserCreated",
                   "occurred_at": T0},
    }  # fmt: skip
    state = apply_result(None, result, mappings)
    outputs = list(state.outputs)

    def change(sf_id: str, fields: dict[str, Any], change_type: str = "UPDATE") -> dict[str, Any]:
        return {
            "change_id": f"Contact:{sf_id}:1", "sobject": "Contact", "id": sf_id, "change_type": change_type,
            "fields": fields, "system_modstamp": T0 + dt.timedelta(minutes=1), "last_modified_date": None,
            "last_modified_by_id": None, "polled_at": T0,
        }  # fmt: skip

    edited = decide(state.state, None, change("003A", {**written, "Title": "Countess", "OwnerId": "005A"}), mappings)
    outputs += edited.outputs
    outputs += decide(state.state, edited.state, change("003A", {}, "DELETE"), mappings).outputs
    outputs += decide(None, None, change("003B", {"FirstName": "Grace", "Title": None}), mappings).outputs
    assert {o.record for o in outputs} == {*RECORDS, "SalesforceEdit"}
    (edit,) = [o for o in outputs if o.record == "SalesforceEdit"]  # for sfsync.salesforce_edits
    assert _round_trip("SalesforceEdit", edit.value, SALESFORCE_EDITS.base) == {
        **edit.value,
        "edited_at": T0 + dt.timedelta(minutes=1),
    }
    assert edit.key == "w-1|Contact:Email:ada@example.com"
    for output in outputs:
        if output.record == "SalesforceEdit":
            continue
        decoded = _round_trip(output.record, output.value)
        assert decoded["member_id"] == output.value["member_id"]
        assert output.key in (output.value["member_id"], f"salesforce:Contact:{output.value['salesforce_id']}")


# ---------------------------------------------------------------------- mapping options
FIELDS = [
    "{sf: LastName, from: member.last_name, default: x, direction: both}",
    "{sf: Email, from: member.email}",
    "{sf: Member_Id__c, from: member.member_id}",
]


def parse(inbound: str, target: str = "Contact") -> Any:
    return mappings_from(members_yaml(FIELDS, target=target, inbound=inbound), "t.yaml")


def test_inbound_defaults_ignore_deletes_and_unlinked_records() -> None:
    mapping = parse("{}").mappings[0]
    assert (mapping.inbound.delete, mapping.inbound.unlinked) == ("ignore", "ignore")
    assert mapping.member_id_field() == "Member_Id__c"  # the field mapped from member.member_id
    assert mapping.inbound_read_fields() == ["LastName", "Member_Id__c"]


def test_flag_needs_a_flag_field() -> None:
    with pytest.raises(MappingError, match="flag_field"):
        parse("{delete: flag}")
    assert parse("{delete: flag, flag_field: member.gone}").mappings[0].inbound.flag_field == "member.gone"


def test_unknown_inbound_values_are_refused() -> None:
    with pytest.raises(MappingError):
        parse("{unlinked: sometimes}")


def test_link_and_member_id_fields_are_checked_against_the_describe() -> None:
    describes = emulator_describes()
    good = parse("{links: [{name: owner_id, sf: OwnerId}, {name: account_id, sf: AccountId, only_for: [Contact]}]}")
    assert validate_against_describe(good, describes) == []
    lead = parse("{links: [{name: account_id, sf: AccountId, only_for: [Contact]}]}", target="Lead")
    assert not any("AccountId" in p for p in validate_against_describe(lead, describes))
    bad = parse("{member_id_field: Member_Idd__c, links: [{name: owner_id, sf: Owner}]}")
    problems = validate_against_describe(bad, describes)
    assert any("inbound.member_id_field" in p and "Member_Idd__c" in p for p in problems)
    assert any("inbound.links.owner_id" in p and "no field Owner" in p for p in problems)


@pytest.mark.parametrize("member_object", ["Contact", "Lead"])
def test_default_mapping_reads_back_people_edits(member_object: str) -> None:
    members = load_mappings(variables={"member_object": member_object}).get("members")
    assert members is not None
    inbound = {f.sf for f in members.inbound_fields()}
    assert {"FirstName", "LastName", "Title"} <= inbound
    assert "Email" not in inbound  # the match key does not flow back
    assert members.member_id_field() == "Member_Id__c"
    links = {k.name for k in members.active_links()}
    assert links == ({"account_id", "owner_id"} if member_object == "Contact" else {"owner_id"})
    assert members.conflict == "last_write_wins" and members.inbound.delete == "ignore"
