"""The Avro contracts: what each topic carries, shared named types, the envelope."""

from __future__ import annotations

import json

import fastavro
import pytest

from sfsync.schemas import SCHEMA_DIR
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import PRODUCT_TOPICS

# DESIGN.md §3: the contract the schemas must implement.
EXPECTED = {
    "product.members": {
        "UserCreated",
        "UserProfileUpdate",
        "UserOnboarding",
        "UserApprovalChange",
        "UserTypeChange",
        "UserAddedToSpace",
        "UserRemovedFromSpace",
        "UserJoinedClub",
        "UserLeftClub",
        "UserJoinedWaitlist",
        "UserDeleted",
    },
    "product.events": {"NewEventPublished", "EventUpdated", "EventUnpublished"},
    "product.attendance": {
        "EventRegistration",
        "EventRegistrationCancel",
        "EventAttend",
        "EventCheckIn",
        "EventUnCheckIn",
    },
    "product.forum": {"ForumPostCaseRequested"},
}


def record_files() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in SCHEMA_DIR.glob("sfsync.product.*.avsc")}


def test_each_topic_carries_exactly_its_records() -> None:
    assert {s.base for s in PRODUCT_TOPICS} == set(EXPECTED)
    for spec in PRODUCT_TOPICS:
        assert set(load_topic_schema(spec.base).record_names) == EXPECTED[spec.base]


def test_one_file_per_named_type_named_after_it() -> None:
    files = record_files()
    for name, schema in files.items():
        assert name == f"{schema['namespace']}.{schema['name']}.avsc"
    event_records = set().union(*EXPECTED.values())
    assert event_records <= {s["name"] for s in files.values()}


@pytest.mark.parametrize("record", sorted(set().union(*EXPECTED.values())))
def test_every_event_carries_the_envelope(record: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"sfsync.product.{record}.avsc").read_text())
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    assert fields["event_id"] == {"type": "string", "logicalType": "uuid"}
    assert fields["occurred_at"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["workspace_id"] == "string"
    assert schema.get("doc"), f"{record} has no doc"


def _inline_named_definitions(node: object, top: bool = True) -> list[str]:
    found = []
    if isinstance(node, dict):
        if not top and node.get("type") in ("record", "enum", "fixed"):
            found.append(node["name"])
        for key, value in node.items():
            if key != "default":
                found += _inline_named_definitions(value, top=False)
    elif isinstance(node, list):
        for value in node:
            found += _inline_named_definitions(value, top=False)
    return found


def test_shared_parts_are_named_types_referenced_not_copied() -> None:
    for name, schema in record_files().items():
        assert _inline_named_definitions(schema) == [], f"{name} defines a named type inline"
    # the member identity is one type used by every member-bound event
    users = [n for n in set().union(*EXPECTED.values()) if n not in ("UserCreated", "UserProfileUpdate")]
    referencing = [
        n for n in users if "sfsync.product.MemberRef" in (SCHEMA_DIR / f"sfsync.product.{n}.avsc").read_text()
    ]
    assert len(referencing) >= 15


def test_topic_schemas_are_self_contained_and_parse() -> None:
    for spec in PRODUCT_TOPICS:
        schema = load_topic_schema(spec.base)
        reparsed = fastavro.parse_schema(json.loads(schema.schema_str))
        assert len(reparsed) == len(EXPECTED[spec.base])


def test_onboarding_answer_is_text_or_list_of_text() -> None:
    schema = json.loads((SCHEMA_DIR / "sfsync.product.OnboardingAnswer.avsc").read_text())
    answer = next(f for f in schema["fields"] if f["name"] == "answer")
    assert answer["type"] == ["string", {"type": "array", "items": "string"}]


def test_member_profile_covers_what_a_community_knows() -> None:
    schema = json.loads((SCHEMA_DIR / "sfsync.product.MemberProfile.avsc").read_text())
    fields = {f["name"] for f in schema["fields"]}
    assert {
        "member_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "title",
        "company",
        "location",
        "member_type",
        "approval_status",
        "spaces",
        "clubs",
        "joined_at",
        "last_login_at",
        "onboarding_at",
        "signed_up_at",
    } <= fields
    member_type = json.loads((SCHEMA_DIR / "sfsync.product.MemberType.avsc").read_text())
    assert member_type["symbols"] == ["GUEST", "STANDARD", "LIMITED_APPROVAL"]
    approval = json.loads((SCHEMA_DIR / "sfsync.product.ApprovalStatus.avsc").read_text())
    assert approval["symbols"] == ["APPROVED", "PENDING", "UNAPPROVED"]
