"""The Faust processor with the workspace registry on, on the real Kafka and registry: each workspace's events
are planned with its own mapping and keyed by its workspace; an invalid workspace mapping parks that
workspace's events only.

The directory is the real one, reading ``<prefix>sfsync.workspaces`` (written here with the registry's own writer);
the processor runs as its own process (``python -m sfsync.processors.outbound.app``), as in production.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from sfsync.emulator.server import free_port
from sfsync.keys import RecordKey, parse_record_key
from sfsync.mapping import DEFAULT_MAPPING_FILE, load_mappings
from sfsync.ops.dlq import H_CODE, H_STAGE
from sfsync.processors.outbound.plan import plan
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.workspaces import RegistryWriter, WorkspaceState
from tests.integration.helpers import consume_all, normalize, open_publisher
from tests.integration.processes import Spawned, processor_env
from tests.kit.outbound import decoded
from tests.kit.workspaces import connection, key_item, workspace

pytestmark = pytest.mark.usefixtures("secrets_audit")

EVENTS = 8
VARIANTS: dict[str, dict[str, str]] = {
    "ws-a": {},  # the configured mapping
    "ws-b": {"member_object": "Lead", "lead_source": "Partner"},  # the library's file, as Leads
}


def member_events(workspace_id: str) -> list[Any]:
    """The fake community's first product.members events, in ``workspace_id`` (the same members in each)."""
    stream = CommunitySimulator(seed=11, workspace_id=workspace_id).stream(400)
    return [e for e in stream if e.TOPIC == "product.members"][:EVENTS]


def test_each_workspace_is_planned_with_its_mapping_variant_and_keyed_by_its_workspace(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "community.yaml").write_text(DEFAULT_MAPPING_FILE.read_text())
    publisher = open_publisher(services, prefix)  # creates the test's topics, the registry's among them
    with RegistryWriter({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix) as writer:
        secrets = {
            "refresh_token": "5Aep861-REFRESH-of-acme-processor-4b1d",
            "client_secret": "CLIENT-secret-acme-9e2f",
        }
        writer.put_connection(connection("acme-org", secrets))  # the workspaces' org: the processor needs none of it
        writer.put_workspace(workspace("ws-a"))
        writer.put_workspace(workspace("ws-b", WorkspaceState.PAUSED, mapping="community", variables=VARIANTS["ws-b"]))
        writer.put_workspace(workspace("ws-bad", variables={"activities": "maybe"}))
    events = {name: member_events(name) for name in (*VARIANTS, "ws-bad")}
    for name in ("ws-a", "ws-b", "ws-bad"):
        for event in events[name]:
            publisher.publish(event)
    publisher.flush()
    publisher.close()

    class Src:
        topic, partition, offset = "", 0, 0

    expected: dict[tuple[str, str], tuple[str, str]] = {}  # (workspace, write id) -> (record key, object)
    for name, variables in VARIANTS.items():
        mappings = load_mappings(variables=variables)
        for event in events[name]:
            planned = plan(event.RECORD_NAME, decoded(event), Src(), mappings)
            assert not planned.rejects
            expected.update({(name, w["write_id"]): (w["key"], w["sobject"]) for w in planned.writes})

    port = free_port()
    env = processor_env(
        services,
        prefix,
        f"proc-{uuid.uuid4().hex[:10]}",
        SFSYNC_WORKSPACES_ENABLED="true",
        SFSYNC_MAPPING_LIBRARY=str(library),
        SFSYNC_CONNECTION_KEYS=key_item("k1"),  # every worker is given the keys' Secret; this one opens nothing
        SFSYNC_PROCESSOR_METRICS_PORT=str(port),
    )
    proc = Spawned("sfsync.processors.outbound.app", "75", env=env, log=tmp_path / "processor.log", metrics_port=port)
    try:
        writes = consume_all(services.bootstrap, [prefix + "sfsync.writes"], len(expected), timeout_s=60)
        parked = consume_all(services.bootstrap, [prefix + "sfsync.dlq"], EVENTS, timeout_s=20)
    finally:
        proc.stop(timeout_s=20)
    log = proc.output()
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    decoder = AvroDecoder(registry)
    got: dict[tuple[str, str], tuple[str, str]] = {}
    for message in writes:
        name, write = decoder.decode(message.value())
        write = normalize(write)
        assert name == "Write" and message.key().decode() == write["key"]
        key = parse_record_key(write["key"])
        assert key is not None and key.workspace == write["workspace_id"]
        got[(write["workspace_id"], write["write_id"])] = (write["key"], write["sobject"])
    assert got == expected, log[-3000:]  # each workspace's own variant, and nothing of ws-bad
    people: dict[str, set[RecordKey]] = {name: set() for name in VARIANTS}
    for (name, _), (key, _) in got.items():
        parsed = parse_record_key(key)
        if parsed is not None and parsed.sobject in ("Contact", "Lead"):
            people[name].add(parsed)
    assert {k.sobject for k in people["ws-a"]} == {"Contact"}
    assert {k.sobject for k in people["ws-b"]} == {"Lead"}
    # the same members in both workspaces: a record in each, never a shared key
    assert {k.value for k in people["ws-a"]} == {k.value for k in people["ws-b"]} and people["ws-a"]
    assert not {str(k) for k in people["ws-a"]} & {str(k) for k in people["ws-b"]}

    assert len(parked) == EVENTS  # every event of the workspace whose mapping is invalid, and only those
    for record in parked:
        headers = {k: v.decode() for k, v in record.headers() or []}
        assert (headers[H_CODE], headers[H_STAGE]) == ("INVALID_WORKSPACE_MAPPING", "TRANSFORMATION")
        assert decoder.decode(record.value())[1]["workspace_id"] == "ws-bad"
