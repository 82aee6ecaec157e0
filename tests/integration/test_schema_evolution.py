"""Schemas evolve BACKWARD-compatibly: the registry enforces it, and a breaking change fails here.

The released contract is ``schemas/released/<topic>.json`` (``sfsync schemas snapshot``). The
working tree's schemas must be registrable on top of it under BACKWARD compatibility.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from sfsync.avro import RELEASED_DIR, load_topic_schema
from sfsync.errors import SchemaError
from sfsync.topics import PRODUCT_TOPICS


def released(topic_base: str) -> str:
    return (RELEASED_DIR / f"{topic_base}.json").read_text()


def subject_with_release(registry, prefix: str, topic_base: str) -> str:
    subject = f"{prefix}{topic_base}-value"
    registry.set_compatibility(subject, "BACKWARD")
    registry.register(subject, released(topic_base))
    return subject


@pytest.mark.parametrize("spec", PRODUCT_TOPICS, ids=lambda s: s.base)
def test_working_tree_schemas_are_backward_compatible_with_the_release(registry, prefix, spec) -> None:
    subject = subject_with_release(registry, prefix, spec.base)
    current = load_topic_schema(spec.base).schema_str
    assert registry.is_compatible(subject, current), (
        f"schemas for {spec.base} break BACKWARD compatibility with the released contract"
    )
    registry.register(subject, current)


def _record(schema: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(b for b in schema if b["name"] == f"sfsync.product.{name}")


def _find_named(node: Any, name: str) -> dict[str, Any] | None:
    if isinstance(node, dict):
        if node.get("name") == name and node.get("type") in ("record", "enum"):
            return node
        for value in node.values():
            found = _find_named(value, name)
            if found:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_named(value, name)
            if found:
                return found
    return None


def drop_record_type(schema: list) -> None:
    schema[:] = [b for b in schema if b["name"] != "sfsync.product.UserLeftClub"]


def add_required_field(schema: list) -> None:
    _record(schema, "UserDeleted")["fields"].append({"name": "reason", "type": "string"})


def change_field_type(schema: list) -> None:
    member_ref = _find_named(schema, "sfsync.product.MemberRef")
    assert member_ref is not None
    next(f for f in member_ref["fields"] if f["name"] == "member_id")["type"] = "long"


def rename_field(schema: list) -> None:
    next(f for f in _record(schema, "UserDeleted")["fields"] if f["name"] == "workspace_id")["name"] = "tenant_id"


def add_optional_field(schema: list) -> None:
    _record(schema, "UserDeleted")["fields"].append({"name": "reason", "type": ["null", "string"], "default": None})


def add_record_type(schema: list) -> None:
    schema.append(
        {
            "type": "record",
            "name": "sfsync.product.UserBadgeAwarded",
            "fields": [{"name": "event_id", "type": "string"}, {"name": "badge", "type": "string"}],
        }
    )


@pytest.mark.parametrize("mutate", [drop_record_type, add_required_field, change_field_type, rename_field])
def test_a_breaking_change_is_refused(registry, prefix, mutate: Callable[[list], None]) -> None:
    subject = subject_with_release(registry, prefix, "product.members")
    schema = copy.deepcopy(json.loads(released("product.members")))
    mutate(schema)
    changed = json.dumps(schema)
    assert not registry.is_compatible(subject, changed)
    with pytest.raises(SchemaError, match="not compatible"):
        registry.register(subject, changed)


@pytest.mark.parametrize("mutate", [add_optional_field, add_record_type])
def test_a_compatible_change_is_accepted(registry, prefix, mutate: Callable[[list], None]) -> None:
    subject = subject_with_release(registry, prefix, "product.members")
    schema = copy.deepcopy(json.loads(released("product.members")))
    mutate(schema)
    changed = json.dumps(schema)
    assert registry.is_compatible(subject, changed)
    first = registry.register(subject, released("product.members"))
    assert registry.register(subject, changed) != first
