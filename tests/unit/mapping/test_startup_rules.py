"""The one rule set every process runs at start (``sfsync.mapping.validate_mappings``): without an org
(the processors) the structural, constant, product-field and CEL rules; with the org's describes (the
sink, the poller, ``sfsync mappings validate``) the org rules too. Every problem is reported at once,
and ``require_valid`` refuses a file with any."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sfsync.mapping import MappingError, gather_describes, objects_to_describe, require_valid, validate_mappings
from tests.kit.mappings import BAD_MAPPING, mappings_from
from tests.kit.salesforce import recorded_json

LEAD = recorded_json("cci_describe_lead.json")
CUSTOM = recorded_json("cci_describe_custom_object.json")


def custom_object(**changes: Any) -> dict[str, Any]:
    """The recorded describe of ``Custom__c`` with ``CustomField__c``'s attributes changed."""
    describe = copy.deepcopy(CUSTOM)
    for field in describe["fields"]:
        if field["name"] == "CustomField__c":
            field.update(changes)
    return describe


def texts(problems: list[str]) -> list[str]:
    return [p.split(": ", 2)[2] for p in problems]


ACTIVITIES = """
mappings:
  - name: activities
    entity: member
    events: [UserCreated]
    target: Custom__c
    match: [{field: CustomField__c, from: event_id}]
    fields:
      - {sf: CustomField__c, from: event_id}
      - {sf: Name, expr: "{expr}"}
"""


def activities(expr: str = "event.type") -> Any:
    return mappings_from(ACTIVITIES.replace("{expr}", expr))


def test_cel_that_does_not_compile_is_a_problem_without_an_org() -> None:
    broken = mappings_from("""
        mappings:
          - name: members
            entity: member
            target: Contact
            match: [{field: Email, from: member.email}, {field: Phone, expr: "source.member.phone +"}]
            outbound_filter: "source.member.email !="
            fields:
              - {sf: Email, from: member.email}
              - {sf: Title, expr: "source.member.title +"}
        """)
    problems = validate_mappings(broken)  # no describes: the processors' check
    assert [p.split(": ", 2)[1] for p in problems] == ["members", "members.Title", "members.match"]
    assert all("does not compile" in p and "Syntax error" in p for p in problems)
    with pytest.raises(MappingError) as refused:
        require_valid(broken)
    assert refused.value.problems == problems and "3 problem(s)" in str(refused.value)


def test_an_undefined_cel_function_is_found_by_the_dry_run_without_an_org() -> None:
    problems = validate_mappings(activities("shout(event.type)"))
    assert len(problems) == 1 and "expression fails: Undefined variable or function: 'shout'" in problems[0]
    assert validate_mappings(activities()) == []


def test_six_constants_and_every_other_constant_rule_are_problems_without_an_org() -> None:
    found = texts(validate_mappings(mappings_from(BAD_MAPPING)))
    assert found == [
        "constant is 256 characters; at most 255",
        "constants only go to Salesforce (direction is both)",
        "6 constants; at most 5 per mapping",
    ]


def test_a_constant_into_a_date_field_is_a_problem_against_the_org() -> None:
    dated = mappings_from("""
        mappings:
          - name: leads
            entity: member
            target: Lead
            match: [{field: Email, from: member.email}]
            create_if_missing: false
            fields:
              - {sf: Email, from: member.email}
              - {sf: ConvertedDate, constant: "2024-01-01"}
        """)
    assert validate_mappings(dated) == []  # which type a field has only the org says
    found = texts(validate_mappings(dated, {"Lead": LEAD}))
    assert "constants only go to text and picklist fields; Lead.ConvertedDate is date" in found
    assert "Lead.ConvertedDate is read-only; it cannot be written" in found


def test_a_custom_match_field_that_is_no_external_id_is_a_problem_against_the_org() -> None:
    file = activities()
    assert validate_mappings(file, {"Custom__c": CUSTOM}) == []  # recorded: idLookup, so it can be upserted on
    plain = custom_object(idLookup=False, externalId=False)
    [problem] = validate_mappings(file, {"Custom__c": plain})
    assert problem.startswith("test.yaml:7: activities.match: Custom__c.CustomField__c is not an External ID field")
    assert "INVALID_FIELD" in problem
    assert validate_mappings(file, {"Custom__c": custom_object(idLookup=False, externalId=True)}) == []


def test_a_custom_field_in_a_composite_key_needs_no_external_id() -> None:
    composite = mappings_from("""
        mappings:
          - name: activities
            entity: member
            events: [UserCreated]
            target: Custom__c
            match: [[{field: CustomField__c, from: event_id}, {field: Name, from: member.email}]]
            fields:
              - {sf: CustomField__c, from: event_id}
        """)
    assert validate_mappings(composite, {"Custom__c": custom_object(idLookup=False)}) == []


def test_fields_and_objects_the_integration_user_may_not_write_are_problems() -> None:
    file = activities()
    read_only = custom_object(updateable=False)
    assert "Custom__c.CustomField__c cannot be updated (not updateable)" in " ".join(
        validate_mappings(file, {"Custom__c": read_only})
    )
    create_only = {**CUSTOM, "createable": False}
    assert texts(validate_mappings(file, {"Custom__c": create_only})) == [
        "the integration user may not create Custom__c records (createable false)"
    ]


def test_every_problem_of_every_mapping_is_reported_at_once() -> None:
    both = mappings_from("""
        mappings:
          - name: leads
            entity: member
            target: Lead
            match: [{field: Email, from: member.email}]
            create_if_missing: false
            fields:
              - {sf: Email, from: member.email}
              - {sf: ConvertedDate, constant: "2024-01-01"}
              - {sf: Titel, from: member.title}
          - name: activities
            entity: member
            events: [UserCreated]
            target: Custom__c
            match: [{field: CustomField__c, from: event_id}]
            fields:
              - {sf: Name, expr: "shout(event.type)"}
        """)
    found = validate_mappings(both, {"Lead": LEAD, "Custom__c": custom_object(idLookup=False)})
    assert [p.split(": ", 2)[1] for p in found] == [
        "leads.ConvertedDate",
        "leads.ConvertedDate",
        "leads.Titel",
        "activities.Name",
        "activities.match",
    ]


def test_no_enabled_mapping_is_refused() -> None:
    with pytest.raises(MappingError, match="no enabled mapping"):
        require_valid(mappings_from("mappings: []"))


async def test_gather_describes_each_object_once_and_leaves_unknown_ones_out() -> None:
    file = mappings_from("""
        mappings:
          - name: leads
            entity: member
            target: Lead
            match: [{field: Email, from: member.email}]
            fields:
              - {sf: Email, from: member.email}
              - {sf: Owner.Name, from: member.title, direction: to_product}
          - name: others
            entity: member
            target: Lead
            fields: [{sf: Title, from: member.title}]
          - name: ghosts
            entity: member
            target: Ghost__c
            fields: [{sf: Name, from: member.title}]
        """)
    asked: list[str] = []

    async def describe(sobject: str) -> dict[str, Any] | None:
        asked.append(sobject)
        return {"Lead": LEAD, "User": {"name": "User", "fields": []}}.get(sobject)

    assert objects_to_describe(file) == ["Lead", "Ghost__c"]
    found = await gather_describes(file, describe)
    assert sorted(asked) == ["Ghost__c", "Group", "Lead", "User"]  # each target once, then where Owner leads
    assert set(found) == {"Lead", "User"}
    assert "unknown Salesforce object Ghost__c" in " ".join(validate_mappings(file, found))
