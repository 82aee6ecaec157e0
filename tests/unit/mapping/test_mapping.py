"""The mapping model: loading (line-numbered errors, variables), validation against an org's
describe (every problem at once), JSON Schema, and the pure outbound/inbound evaluation."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from sfsync.cli.mappings import emulator_describes, mappings_app
from sfsync.errors import ConfigError, SkippableRecordError
from sfsync.mapping import (
    MappingError,
    MappingEvaluationError,
    evaluate_fields,
    evaluate_inbound,
    json_schema,
    match_values,
    validate_against_describe,
)
from sfsync.mapping.products import product_field_type
from tests.kit import BAD_MAPPING, mappings_from

runner = CliRunner()
T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def describes() -> dict[str, dict[str, Any]]:
    return emulator_describes()


def problems_of(text: str, describes: dict[str, dict[str, Any]], **variables: Any) -> list[str]:
    return validate_against_describe(mappings_from(text, **variables), describes)


def member_event(**member: Any) -> dict[str, Any]:
    profile = {
        "member_id": "u-1",
        "email": "ada@example.com",
        "phone": None,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "title": "Engineer",
        "company": "Analytical Engines",
        "location": {"country": "UK", "state": None, "city": "London"},
        "member_type": "STANDARD",
        "approval_status": "APPROVED",
        "spaces": [],
        "clubs": [],
        "signed_up_at": T0,
        "joined_at": None,
        "last_login_at": None,
        "onboarding_at": None,
    }
    profile.update(member)
    return {"event_id": "e-1", "occurred_at": T0, "workspace_id": "w-1", "member": profile}


# ---------------------------------------------------------------------- loading
def test_shape_errors_are_all_reported_with_line_numbers() -> None:
    with pytest.raises(MappingError) as caught:
        mappings_from(
            """
            mappings:
              - name: members
                entity: member
                target: Contact
                fields:
                  - {sf: FirstName, from: member.first_name, constant: Ada}
                  - {sf: Title, from: member.title, policy: sometimes}
              - name: Bad Name
                entity: planets
                target: Contact
            """
        )
    error = caught.value
    assert isinstance(error, ConfigError)  # callers that catch configuration errors catch this too
    text = "\n".join(error.problems)
    assert "test.yaml:7:" in text and "exactly one of from, constant, expr" in text
    assert "test.yaml:8:" in text and "policy" in text
    assert "test.yaml:9:" in text and "lower_snake_case" in text
    assert "test.yaml:10:" in text and "entity" in text
    assert len(error.problems) >= 4


def test_variables_are_substituted_typed_and_unknown_ones_reported() -> None:
    text = """
        variables: {prefix: "acme__", person: Contact, tasks: false, id_field: "${prefix}Member_Id__c"}
        mappings:
          - name: members
            entity: member
            target: ${person}
            enabled: ${tasks}
            fields:
              - {sf: "${id_field}", from: member.member_id}
    """
    mappings = mappings_from(text)
    members = mappings.mappings[0]
    assert members.target == "Contact"
    assert members.enabled is False  # a whole-value variable keeps its YAML type
    assert members.fields[0].sf == "acme__Member_Id__c"  # variables may use variables
    assert mappings_from(text, person="Lead", tasks=True).mappings[0].target == "Lead"
    with pytest.raises(MappingError) as caught:
        mappings_from(text.replace("${person}", "${persn}"))
    assert any("test.yaml:6:" in p and "unknown variable ${persn}" in p for p in caught.value.problems)


def test_invalid_yaml_is_one_clear_problem() -> None:
    with pytest.raises(MappingError, match="not valid YAML"):
        mappings_from("mappings: [unclosed")


def test_a_variable_in_a_key_is_substituted_as_text_whatever_it_holds() -> None:
    text = """
        variables: {lookup: [AccountId], flag: true}
        mappings:
          - name: members
            entity: member
            target: Contact
            fields:
              - {sf: LastName, from: member.last_name, value_map: {"${flag}": "yes", "${lookup}": "no"}}
    """
    with pytest.raises(MappingError, match=r"variables\.lookup"):  # a list is no variable value: reported, not a crash
        mappings_from(text)
    value_map = mappings_from(text.replace("[AccountId]", "AccountId")).mappings[0].fields[0].value_map
    assert value_map == {"true": "yes", "AccountId": "no"}


@pytest.mark.parametrize("depth", [65, 400, 3000])
def test_a_file_nested_deeper_than_a_mapping_file_is_refused_with_one_problem(depth: int) -> None:
    with pytest.raises(MappingError) as caught:
        mappings_from("mappings: " + "[" * depth + "]" * depth)
    assert caught.value.problems == ["nested deeper than 64 levels"]


# ---------------------------------------------------------------------- validation
def test_every_constant_rule_and_an_unknown_field_are_reported_in_one_run(describes: dict[str, Any]) -> None:
    problems = problems_of(BAD_MAPPING, describes)
    text = "\n".join(problems)
    assert "6 constants; at most 5 per mapping" in text
    assert "'web' is not an active value of picklist Contact.LeadSource (did you mean 'Web'?)" in text
    assert "constants only go to text and picklist fields; Contact.Birthdate is date" in text
    assert "constants only go to text and picklist fields; Contact.DoNotCall is boolean" in text
    assert "constant is 256 characters; at most 255" in text
    assert "constants only go to Salesforce (direction is both)" in text
    assert "Contact has no field Titel (did you mean Title?)" in text
    assert "test.yaml:14: members.Titel:" in text  # each problem points at its line
    assert len(problems) == 7


def test_number_constants_and_non_text_constants_are_refused(describes: dict[str, Any]) -> None:
    problems = problems_of(
        """
        mappings:
          - name: leads
            entity: member
            target: Lead
            create_if_missing: false
            fields:
              - {sf: NumberOfEmployees, constant: "10"}
              - {sf: Rating, constant: 3}
        """,
        describes,
    )
    assert any("Lead.NumberOfEmployees is int" in p for p in problems)
    assert any("a constant must be text (got int)" in p for p in problems)


def test_type_mismatches_of_product_fields_and_expressions(describes: dict[str, Any]) -> None:
    problems = problems_of(
        """
        mappings:
          - name: members
            entity: member
            events: [UserCreated]
            target: Contact
            create_if_missing: false
            fields:
              - {sf: HasOptedOutOfEmail, from: member.signed_up_at}
              - {sf: Birthdate, from: member.first_name}
              - {sf: Member_Type__c, from: member.member_type}
              - {sf: EmailBouncedDate, expr: "source.member.email != null"}
              - {sf: Title, from: member.title}
        """,
        describes,
    )
    text = "\n".join(problems)
    assert "type mismatch: product field is timestamp, Contact.HasOptedOutOfEmail is boolean" in text
    assert "type mismatch: product field is string, Contact.Birthdate is date" in text
    assert "product value GUEST becomes 'GUEST', not a value of picklist Contact.Member_Type__c" in text
    assert "expression result (on UserCreated) is boolean, Contact.EmailBouncedDate is datetime" in text
    assert not any("members.Title" in p for p in problems)  # string -> string is fine
    assert len(problems) == 4


def test_value_maps_and_expression_results_are_checked_against_picklists(describes: dict[str, Any]) -> None:
    problems = problems_of(
        """
        mappings:
          - name: members
            entity: member
            events: [UserCreated]
            target: Contact
            create_if_missing: false
            fields:
              - sf: Member_Type__c
                from: member.member_type
                value_map: {GUEST: Guest, STANDARD: Standard, LIMITED_APPROVAL: Limited}
              - {sf: Approval_Status__c, expr: "'Approved'"}
              - {sf: LeadSource, expr: "source.member.title"}
        """,
        describes,
    )
    text = "\n".join(problems)
    assert "value_map 'Limited' is not an active value of picklist Contact.Member_Type__c" in text
    assert "expression gives 'Approved' on UserCreated, not a value of picklist Contact.Approval_Status__c" in text
    # a result that follows the product's text cannot be known statically: not reported
    assert not any("LeadSource" in p for p in problems)


def test_structure_problems_against_the_org(describes: dict[str, Any]) -> None:
    problems = problems_of(
        """
        mappings:
          - name: members
            entity: member
            target: Lead
            record_type: Partner
            match: [{field: Email, from: member.emial}]
            fields:
              - {sf: FirstName, from: member.first_name}
              - {sf: Name, from: member.first_name}
              - {sf: Title, expr: "source.member.title +"}
          - name: registrations
            entity: attendance
            events: [EventRegistration, UserCreated, EventRegistered]
            target: CampaignMember
            parents: {ContactId: {mapping: members}, CampaignId: {mapping: nowhere}}
            match: [[{field: ContactId}, {field: CampaignId}]]
            fields: []
          - name: things
            entity: forum
            target: Thing__c
        """,
        describes,
    )
    text = "\n".join(problems)
    assert "Lead has no active record type Partner" in text
    assert "no event of this mapping has a product field member.emial" in text
    assert "Lead.Name is read-only" in text
    assert "members.Title: expression does not compile" in text
    assert "Lead.LastName is required to create a record" in text
    assert "Lead.Company is required to create a record" in text
    assert "unknown product event type EventRegistered (did you mean EventRegistration?)" in text
    assert "UserCreated is not an event of attendance" in text
    assert "CampaignMember.ContactId points to Contact, not to Lead (the target of members)" in text
    assert "no mapping named nowhere" in text
    assert "unknown Salesforce object Thing__c" in text


def test_a_required_field_from_a_nullable_product_field_needs_a_default(describes: dict[str, Any]) -> None:
    text = """
        mappings:
          - name: members
            entity: member
            target: Contact
            events: [UserCreated]
            fields:
              - {sf: LastName, from: member.last_name}
    """
    assert any("Contact.LastName is required but the product value may be empty" in p for p in problems_of(
        text, describes))  # fmt: skip
    fixed = text.replace("from: member.last_name}", 'from: member.last_name, default: "[none]"}')
    assert problems_of(fixed, describes) == []


def test_disabled_mappings_are_not_checked(describes: dict[str, Any]) -> None:
    text = """
        mappings:
          - {name: things, entity: forum, target: Thing__c, enabled: false}
    """
    assert problems_of(text, describes) == []


def test_product_field_types_come_from_the_avro_schemas() -> None:
    email = product_field_type("UserOnboarding", "member.email")
    assert email is not None and email.kind == "string" and email.nullable
    kind = product_field_type("UserCreated", "member.member_type")
    assert kind is not None and kind.kind == "enum" and kind.symbols == ("GUEST", "STANDARD", "LIMITED_APPROVAL")
    assert product_field_type("UserOnboarding", "member.title") is None  # a MemberRef has no title
    start = product_field_type("NewEventPublished", "event.start_at")
    assert start is not None and start.kind == "timestamp" and not start.nullable


# ---------------------------------------------------------------------- evaluation
MEMBERS = """
    mappings:
      - name: members
        entity: member
        target: Contact
        match: [{field: Email, from: member.email}, {field: Member_Id__c, from: member.member_id}]
        outbound_filter: "source.member.email != null && source.member.email.endsWith('@example.com')"
        fields:
          - {sf: FirstName, from: member.first_name, direction: both}
          - {sf: Title, from: member.title, policy: if_empty}
          - {sf: Description, from: member.company, direction: to_product}
          - {sf: LeadSource, constant: Web}
          - sf: Member_Type__c
            from: [member.member_type, member_type]
            value_map: {GUEST: Guest, STANDARD: Standard}
          - {sf: Spaces__c, from: [member.spaces, spaces]}
          - {sf: Joined_At__c, from: member.joined_at}
          - {sf: Sign_Up_At__c, from: member.signed_up_at}
          - {sf: Department, expr: "event.type + '/' + event.workspace_id"}
"""


def test_evaluate_fields_applies_sources_direction_and_conversions() -> None:
    mapping = mappings_from(MEMBERS).mappings[0]
    values = evaluate_fields(mapping, member_event(spaces=["Makers", "Writers"]), "UserCreated")
    assert values == {
        "FirstName": "Ada",  # both: goes out
        "Title": "Engineer",  # if_empty, new record: written
        "LeadSource": "Web",
        "Member_Type__c": "Standard",
        "Spaces__c": "Makers;Writers",
        "Joined_At__c": None,  # null in the product clears the field
        "Sign_Up_At__c": "2026-03-01T09:30:00.000Z",
        "Department": "UserCreated/w-1",
    }
    assert "Description" not in values  # to_product only: never written to Salesforce


def test_fields_an_event_does_not_carry_are_left_out() -> None:
    mapping = mappings_from(MEMBERS).mappings[0]
    change = {
        "event_id": "e-2",
        "occurred_at": T0,
        "workspace_id": "w-1",
        "member": {"member_id": "u-1", "email": "ada@example.com", "first_name": "Ada", "last_name": "L"},
        "member_type": "GUEST",
        "previous_member_type": "STANDARD",
    }
    values = evaluate_fields(mapping, change, "UserTypeChange")
    assert values is not None
    assert values["Member_Type__c"] == "Guest"  # the second `from` path
    assert "Title" not in values and "Spaces__c" not in values and "Sign_Up_At__c" not in values


def test_if_empty_policy_keeps_what_salesforce_already_has() -> None:
    mapping = mappings_from(MEMBERS).mappings[0]
    existing = evaluate_fields(mapping, member_event(), "UserProfileUpdate", current={"title": "CEO"})
    assert existing is not None and "Title" not in existing and existing["FirstName"] == "Ada"
    empty = evaluate_fields(mapping, member_event(), "UserProfileUpdate", current={"Title": None})
    assert empty is not None and empty["Title"] == "Engineer"
    assert mapping.reads_before_write


def test_outbound_filter_decides_whether_the_mapping_fires() -> None:
    mapping = mappings_from(MEMBERS).mappings[0]
    assert evaluate_fields(mapping, member_event(email="ada@elsewhere.org"), "UserCreated") is None
    assert evaluate_fields(mapping, member_event(email=None), "UserCreated") is None
    assert evaluate_fields(mapping, member_event(), "UserCreated") is not None
    broken = mappings_from(MEMBERS.replace("source.member.email != null && ", "")).mappings[0]
    with pytest.raises(MappingEvaluationError, match="outbound_filter") as caught:
        evaluate_fields(broken, member_event(email=None), "UserCreated")
    assert isinstance(caught.value, SkippableRecordError)  # one bad record is parked, not fatal


def test_event_types_and_delete_actions() -> None:
    mapping = mappings_from(
        """
        mappings:
          - name: events
            entity: event
            events: [NewEventPublished, EventUpdated]
            target: Campaign
            delete:
              when: [EventUnpublished]
              action: update
              fields: [{sf: IsActive, expr: "false"}]
            fields: [{sf: Name, from: event.title}]
        """
    ).mappings[0]
    event = {"event_id": "e", "occurred_at": T0, "workspace_id": "w", "event": {"id": "ev-1", "title": "Meetup"}}
    assert mapping.action_for("EventUpdated") == "upsert"
    assert mapping.action_for("EventUnpublished") == "update"
    assert mapping.action_for("UserCreated") == "ignore"
    assert evaluate_fields(mapping, event, "EventUpdated") == {"Name": "Meetup"}
    assert evaluate_fields(mapping, event, "EventUnpublished") == {"IsActive": False}
    assert evaluate_fields(mapping, event, "UserCreated") is None


def test_a_failing_expression_names_the_mapping_and_field() -> None:
    mapping = mappings_from(
        """
        mappings:
          - name: members
            entity: member
            target: Contact
            fields: [{sf: Title, expr: "source.member.title + 1"}]
        """
    ).mappings[0]
    with pytest.raises(MappingEvaluationError, match="mapping members, field Title"):
        evaluate_fields(mapping, member_event(), "UserCreated")


def test_match_values_in_order_skipping_empty_keys() -> None:
    mapping = mappings_from(MEMBERS).mappings[0]
    assert match_values(mapping, member_event(), "UserCreated") == [
        {"Email": "ada@example.com"},
        {"Member_Id__c": "u-1"},
    ]
    assert match_values(mapping, member_event(email=None), "UserCreated") == [{"Member_Id__c": "u-1"}]


def test_inbound_fields_map_back_to_product_paths() -> None:
    mapping = mappings_from(
        MEMBERS.replace("        fields:", '        inbound_filter: "record.Email != null"\n        fields:')
    )
    members = mapping.mappings[0]
    record = {"FirstName": "Ada", "Title": "CTO", "Description": "Engines Ltd", "Email": "a@example.com"}
    assert evaluate_inbound(members, record) == {"member.first_name": "Ada", "member.company": "Engines Ltd"}
    assert evaluate_inbound(members, {**record, "Email": None}) is None


# ---------------------------------------------------------------------- JSON Schema and CLI
def test_json_schema_describes_the_yaml_keys() -> None:
    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    field = schema["$defs"]["FieldMap"]["properties"]
    assert {"sf", "from", "constant", "expr", "direction", "policy", "default", "value_map"} <= set(field)
    assert schema["$defs"]["FieldMap"]["required"] == ["sf"]
    enabled = schema["$defs"]["Mapping"]["properties"]["enabled"]
    assert {"type": "boolean"} in enabled["anyOf"]  # and "${variable}" text
    assert set(schema["$defs"]["Mapping"]["properties"]["conflict"]["enum"]) == {
        "last_write_wins",
        "product_wins",
        "salesforce_wins",
    }


def test_cli_schema_prints_json() -> None:
    result = runner.invoke(mappings_app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "sfsync mapping file"


def test_cli_validate_lists_every_problem_and_fails(tmp_path: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mappings:\n"
        "  - name: members\n"
        "    entity: member\n"
        "    target: Contact\n"
        "    create_if_missing: false\n"
        "    fields:\n"
        "      - {sf: Titel, from: member.title}\n"
        "      - {sf: LeadSource, constant: web}\n"
    )
    result = runner.invoke(mappings_app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:7: members.Titel: Contact has no field Titel" in result.output
    assert f"{bad}:8: members.LeadSource: constant 'web'" in result.output
    assert "2 problem(s)" in result.output


def test_cli_validate_against_another_org_file(tmp_path: Any) -> None:
    org = tmp_path / "org.yaml"
    org.write_text("org: {id: 00D8d0000000002, name: Bare}\nobjects: {}\n")
    result = runner.invoke(mappings_app, ["validate", "--org", str(org)])
    assert result.exit_code == 1
    assert "Contact has no field Member_Id__c" in result.output
    assert "unknown Salesforce object Community_Activity__c" in result.output


def test_cli_validate_default_and_live_needs_the_salesforce_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SALESFORCE_AUTH_FLOW", "SALESFORCE_CLIENT_ID", "SALESFORCE_USERNAME", "SALESFORCE_PRIVATE_KEY"):
        monkeypatch.delenv(name, raising=False)
    ok = runner.invoke(mappings_app, ["validate", "--set", "member_object=Lead"])
    assert ok.exit_code == 0, ok.output
    assert "valid" in ok.output
    live = runner.invoke(mappings_app, ["validate", "--live"])
    assert live.exit_code == 2 and "invalid salesforce settings" in live.output
    assert "needs SALESFORCE_CLIENT_ID" in live.output
    bad_set = runner.invoke(mappings_app, ["validate", "--set", "oops"])
    assert bad_set.exit_code == 2 and "expected NAME=VALUE" in bad_set.output
