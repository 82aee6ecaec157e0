"""Mapping files built in tests: YAML written inline, a one-mapping ``members`` file, a file on disk."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfsync.mapping import MappingFile, parse_mappings

__all__ = [
    "BAD_MAPPING",
    "BROKEN_MAPPING",
    "DEFAULT_ACTIVITY_TYPES",
    "fill",
    "mappings_from",
    "members_yaml",
    "write_mappings",
]

BAD_MAPPING = f"""\
mappings:
  - name: members
    entity: member
    target: Contact
    match: [{{field: Email, from: member.email}}]
    create_if_missing: false
    fields:
      - {{sf: Department, constant: Community}}
      - {{sf: LeadSource, constant: web}}
      - {{sf: Birthdate, constant: "2020-01-01"}}
      - {{sf: DoNotCall, constant: "true"}}
      - {{sf: Description, constant: "{"x" * 256}"}}
      - {{sf: Title, constant: Member, direction: both}}
      - {{sf: Titel, from: member.title}}
"""
"""A members mapping that breaks every constant rule once and names an unknown field (``Titel``):
what validating it against the emulator's describe reports (also through ``sfsync mappings validate``)."""

BROKEN_MAPPING = """
mappings:
  - name: members
    entity: [member, attendance]
    target: Contact
    match: [{field: Email, from: member.email}]
    fields:
      - {sf: LastName, expr: "source.member.last_name + 1"}
  - name: activities
    entity: [member, attendance]
    target: Community_Activity__c
    match: [{field: Event_Key__c, from: event_id}]
    parents: {Contact__c: {mapping: members, required: false}}
    fields: [{sf: Event_Key__c, from: event_id}]
  - name: attendance
    entity: attendance
    target: CampaignMember
    parents: {ContactId: {mapping: members}}
    match: [[{field: ContactId}]]
    fields: [{sf: Status, constant: Sent}]
"""
"""A mapping file that parses but fails on every member event (``members``: a string plus 1), with
``activities`` (optional parent) and ``attendance`` (required parent) depending on ``members``."""

DEFAULT_ACTIVITY_TYPES = [
    "UserCreated",
    "UserOnboarding",
    "UserApprovalChange",
    "UserProfileUpdate",
    "UserTypeChange",
    "UserAddedToSpace",
    "UserRemovedFromSpace",
    "UserJoinedClub",
    "UserLeftClub",
    "UserJoinedWaitlist",
    "EventRegistration",
    "EventRegistrationCancel",
    "EventAttend",
    "EventCheckIn",
    "EventUnCheckIn",
    "NewEventPublished",
]
"""The event types the shipped default mapping logs as activities (``Community_Activity__c``), in its order."""


def mappings_from(text: str, source: str = "test.yaml", **variables: Any) -> MappingFile:
    """The mapping file ``text`` (YAML indented as it sits in the test: dedented here), parsed as the
    file ``source`` (the name problems and errors show); ``variables`` override the file's."""
    return parse_mappings(textwrap.dedent(text), source, variables=variables or None)


def fill(template: str, **values: str) -> str:
    """``template`` with every ``{name}`` replaced by ``values[name]``, then ``{{`` / ``}}`` turned into the
    braces of YAML flow maps. Unlike ``str.format``, a value may hold braces (``{delete: flag}``)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template.replace("{{", "{").replace("}}", "}")


def members_yaml(
    fields: str | Sequence[str],
    *,
    target: str = "Contact",
    inbound: str | None = None,
    inbound_filter: str | None = None,
) -> str:
    """A mapping file of one mapping, ``members``: the product's member onto ``target``, matched on Email.

    ``fields``: one YAML flow map per field (``{sf: Email, from: member.email}``), as a sequence or as
    the lines of a string. ``inbound``: the mapping's ``inbound:`` options (a YAML flow map);
    ``inbound_filter``: its CEL filter. The file's lines are fixed, whatever is given: line 1 is a
    comment, ``inbound`` (when given) is line 8, then ``inbound_filter``, then ``fields:`` and one
    line per field, so tests can name the line a problem is reported at.
    """
    lines = fields.strip().splitlines() if isinstance(fields, str) else list(fields)
    text = (
        "# members_yaml (tests/kit/mappings.py)\n"
        "version: 1\n"
        "mappings:\n"
        "  - name: members\n"
        "    entity: member\n"
        f"    target: {target}\n"
        "    match: [{field: Email, from: member.email}]\n"
    )
    if inbound is not None:
        text += f"    inbound: {inbound}\n"
    if inbound_filter is not None:
        text += f'    inbound_filter: "{inbound_filter}"\n'
    return text + "    fields:\n" + "".join(f"      - {line.strip()}\n" for line in lines)


def write_mappings(directory: Path, text: str, name: str = "mappings.yaml") -> Path:
    """``text`` written to ``directory / name`` (for the settings and commands that read a mapping file)."""
    path = directory / name
    path.write_text(text)
    return path
