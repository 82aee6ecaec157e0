"""``Mapping.outbound_specs``: what the outbound rule reads of each outbound field, the same fields as
``outbound_fields`` and their own values, following the field list and the target."""

from __future__ import annotations

from sfsync.mapping import load_mappings


def test_outbound_specs_are_the_outbound_fields_with_their_values() -> None:
    for mapping in load_mappings().mappings:
        lists = [mapping.fields, *([mapping.delete.fields] if mapping.delete is not None else [])]
        for fields in lists:
            specs = mapping.outbound_specs(fields)
            assert [s.field for s in specs] == mapping.outbound_fields(fields)
            for spec in specs:
                field = spec.field
                assert (spec.sf, spec.policy, spec.default, spec.value_map) == (
                    field.sf,
                    field.policy,
                    field.default,
                    field.value_map,
                )
                assert spec.path == (field.from_ if isinstance(field.from_, str) else None)


def test_outbound_specs_follow_the_target_and_the_field_list() -> None:
    members = next(m for m in load_mappings().mappings if m.name == "members")
    contact = [s.sf for s in members.outbound_specs(members.fields)]
    lead = members.model_copy(update={"target": "Lead"})
    assert "MailingCity" in contact and "Company" not in contact
    lead_fields = [s.sf for s in lead.outbound_specs(lead.fields)]
    assert "Company" in lead_fields and "MailingCity" not in lead_fields
    grown = [*members.fields, members.fields[0].model_copy(update={"sf": "Extra__c"})]
    assert [s.sf for s in members.outbound_specs(grown)] == [*contact, "Extra__c"]
