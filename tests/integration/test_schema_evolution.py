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

from sfsync.errors import SchemaError
from sfsync.serde.schema import RELEASED_DIR, load_topic_schema
from sfsync.topics import CONTRACT_TOPICS


def released(topic_base: str) -> str:
    return (RELEASED_DIR / f"{topic_base}.json").read_text()


def subject_with_release(registry, prefix: str, topic_base: str) -> str:
    subject = f"{prefix}{topic_base}-value"
    registry.set_compatibility(subject, "BACKWARD")
    registry.register(subject, released(topic_base))
    return subject


@pytest.mark.parametrize("spec", CONTRACT_TOPICS, ids=lambda s: s.base)
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


def test_the_schemas_commands_cover_the_inbound_contract(services, registry, prefix, monkeypatch) -> None:
    """``sfsync schemas register/check`` handle product.members.inbound with the product topics: a
    breaking change to what the product reads back from Salesforce is caught like one to its events."""
    from typer.testing import CliRunner

    from sfsync.cli.main import app

    monkeypatch.setenv("SFSYNC_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", services.bootstrap)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", services.registry)
    cli = CliRunner()
    registered = cli.invoke(app, ["schemas", "register"])
    assert registered.exit_code == 0, registered.output
    subjects = [line.split()[0] for line in registered.output.splitlines() if line.strip()]
    assert subjects == [f"{prefix}{spec.base}-value" for spec in CONTRACT_TOPICS]
    assert f"{prefix}product.members.inbound-value" in subjects
    checked = cli.invoke(app, ["schemas", "check"])
    assert checked.exit_code == 0 and checked.output.count("compatible") == len(CONTRACT_TOPICS), checked.output

    schema = json.loads(released("product.members.inbound"))  # the product relies on member_id: retype it
    update = next(b for b in schema if b["name"].endswith("MemberFieldUpdate"))
    next(f for f in update["fields"] if f["name"] == "member_id")["type"] = "long"
    assert not registry.is_compatible(f"{prefix}product.members.inbound-value", json.dumps(schema))
