"""The registry's records: Avro round trips through the topic schemas, the released snapshots, ids, reprs."""

from __future__ import annotations

import json

import pytest

from sfsync.schemas import SCHEMA_DIR
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import ALL_TOPICS, CONNECTIONS, REGISTRY_TOPICS, WORKSPACES
from sfsync.workspaces import Connection, ConnectionFlow, Workspace, WorkspaceState
from sfsync.workspaces.records import id_problems
from tests.kit import FakeRegistry
from tests.kit.workspaces import connection, keys, workspace


def round_trip(topic: str, record_name: str, value: dict) -> dict:
    registry = FakeRegistry()
    encoder = AvroEncoder(registry, topic, load_topic_schema(topic))  # type: ignore[arg-type]
    name, decoded = AvroDecoder(registry).decode(encoder.encode(record_name, value))  # type: ignore[arg-type]
    assert name == record_name
    return decoded


def test_a_connection_round_trips_through_its_topic_schema() -> None:
    original = connection(
        "acme-org",
        flow=ConnectionFlow.JWT_BEARER,
        secrets={"private_key": "-----BEGIN PRIVATE KEY-----"},
        username="integration@acme.example",
        org_id="00Dx0000000BV7z",
        instance_url="https://acme.my.salesforce.com",
    )
    assert Connection.from_avro(round_trip(CONNECTIONS.base, "Connection", original.to_avro())) == original


def test_a_workspace_round_trips_through_its_topic_schema() -> None:
    original = workspace(
        "ws-1", state=WorkspaceState.PAUSED, mapping="leads.yaml", variables={"member_object": "Lead"}, reason="x"
    )
    assert Workspace.from_avro(round_trip(WORKSPACES.base, "Workspace", original.to_avro())) == original
    bare = workspace("ws-2")
    assert Workspace.from_avro(round_trip(WORKSPACES.base, "Workspace", bare.to_avro())) == bare


def test_the_registry_topics_are_compacted_and_created_with_the_others() -> None:
    assert [spec.base for spec in REGISTRY_TOPICS] == ["sfsync.connections", "sfsync.workspaces"]
    assert all(spec.config.get("cleanup.policy") == "compact" for spec in REGISTRY_TOPICS)
    assert all(spec in ALL_TOPICS for spec in REGISTRY_TOPICS)


@pytest.mark.parametrize("topic", ["sfsync.connections", "sfsync.workspaces"])
def test_the_released_snapshot_is_the_current_schema(topic: str) -> None:
    """Records of a compacted topic live for ever: a schema change must stay readable (snapshot it on purpose)."""
    released = json.loads((SCHEMA_DIR / "released" / f"{topic}.json").read_text())
    assert released == load_topic_schema(topic).schema


def test_the_enums_match_the_schema_symbols() -> None:
    flows = json.loads((SCHEMA_DIR / "sfsync.workspaces.ConnectionFlow.avsc").read_text())["symbols"]
    states = json.loads((SCHEMA_DIR / "sfsync.workspaces.WorkspaceState.avsc").read_text())["symbols"]
    assert flows == [str(f) for f in ConnectionFlow]
    assert states == [str(s) for s in WorkspaceState]


def test_a_record_repr_shows_no_secret_nor_ciphertext() -> None:
    sealed = connection("acme-org", {"refresh_token": "5Aep861-REFRESH", "client_secret": "CLIENT-42"})
    for text in (repr(sealed), str(sealed), repr(sealed.secrets)):
        assert "5Aep861-REFRESH" not in text and "CLIENT-42" not in text
        assert repr(sealed.secrets.ciphertext) not in text
    assert "key_id='k1'" in repr(sealed.secrets)
    assert keys("k1").open("acme-org", sealed.secrets)["client_secret"].get_secret_value() == "CLIENT-42"


@pytest.mark.parametrize(
    ("value", "what", "ok"),
    [
        ("ws-demo", "workspace id", True),
        ("6c1f0a3e-0000-4000-8000-000000000001", "workspace id", True),
        ("acme|Contact", "workspace id", False),  # a write key's separator
        ("acme:org", "connection id", False),  # a checkpoint's separator
        ("env", "connection id", False),  # the environment's connection
        ("env", "workspace id", True),
        ("", "workspace id", False),
        (" ws", "workspace id", False),
        ("x" * 201, "connection id", False),
    ],
)
def test_ids_that_would_break_a_key_are_refused(value: str, what: str, ok: bool) -> None:
    assert (id_problems(value, what) == []) is ok
