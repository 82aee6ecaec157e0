"""The poller of many orgs end to end (issue 13, routing step 3): real Kafka and registry, emulated orgs over real
HTTP, the workspace registry written with sfsync's own writer.

- One poller, three workspaces on three orgs: every org's changes arrive, each naming its workspace, and each
  org's checkpoint is its own (``<connection>:Contact``). A PAUSED workspace's org is not polled, and its changes
  arrive once it is ACTIVE again; a second workspace on an org makes that org's changes name none.
- Two replicas (processes) share six orgs through the group on ``sfsync.workspaces``: each polls some, together
  all; one is SIGKILLed while changes flow, the other takes its orgs over; counted per org, no change is lost
  and none comes twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningOrg, RunningOrgs, free_port, serve_orgs_in_thread
from sfsync.mapping import load_mappings
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import Poller, partition_for, read_checkpoint
from sfsync.topics import WORKSPACES
from sfsync.workspaces import ConnectionFlow, Directory, RegistryWriter, WorkspacesSettings, WorkspaceState
from tests.integration.helpers import make_topics, wait_until
from tests.integration.polling import MAPPING, Changes, source_settings
from tests.integration.processes import Spawned, pipeline_env
from tests.integration.secrets_audit import SecretsAudit
from tests.kit import write_mappings
from tests.kit.workspaces import connection, key_item, keys, workspace

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("secrets_audit")]


@pytest.fixture
def orgs(request: pytest.FixtureRequest) -> Iterator[RunningOrgs]:
    running = serve_orgs_in_thread(getattr(request, "param", 3))
    try:
        yield running
    finally:
        running.stop()


def register(writer: RegistryWriter, org: RunningOrg, connection_id: str, flow: ConnectionFlow) -> None:
    """``org``'s connection as ``sfsync connections add`` writes it (secrets sealed with key k1)."""
    secrets = {"client_secret": org.client_secret}
    if flow is ConnectionFlow.REFRESH_TOKEN:
        secrets["refresh_token"] = org.refresh_token()
    writer.put_connection(
        connection(
            connection_id, secrets, sealed_with=keys("k1"), flow=flow, login_url=org.login_url, client_id=org.client_id
        )
    )


def contacts(org: RunningOrg, tag: str, count: int) -> list[str]:
    """``count`` new Contacts in ``org`` (made in its store, as a sales rep's edits would be); their ids."""
    return [org.emulator.store.create("Contact", {"LastName": f"{tag}{n}"}) for n in range(count)]


def by_workspace(records: list[dict[str, Any]]) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for record in records:
        out.setdefault(record["workspace_id"], []).append(record["id"])
    return out


@pytest.mark.parametrize("orgs", [3], indirect=True)
async def test_one_poller_reads_three_orgs_each_change_naming_its_workspace(
    services: Any, prefix: str, registry: SchemaRegistry, orgs: RunningOrgs, tmp_path: Path, secrets_audit: SecretsAudit
) -> None:
    make_topics(services, prefix)
    kafka = {"bootstrap.servers": services.bootstrap}
    writer = RegistryWriter(kafka, registry, prefix=prefix)
    spaces = {"ws-a": orgs[0], "ws-b": orgs[1], "ws-c": orgs[2]}
    for space, org in spaces.items():
        register(writer, org, f"org-{space[-1]}", ConnectionFlow.REFRESH_TOKEN)  # logins rotate nothing here
        writer.put_workspace(workspace(space, f"org-{space[-1]}"))
    made = {space: contacts(org, space, 4) for space, org in spaces.items()}
    internal = orgs[0].emulator.store.create("Contact", {"LastName": "Staff", "Title": "internal"})
    changes = Changes(services, registry, prefix)
    settings = WorkspacesSettings(
        bootstrap_servers=services.bootstrap,
        schema_registry_url=services.registry,
        topic_prefix=prefix,
        enabled=True,
        required=True,
    )
    metrics = CollectorRegistry()
    secrets_audit.metrics("the poller", metrics)
    with Directory.open(kafka, registry, prefix=prefix, keys=keys("k1")) as directory:
        poller = Poller(
            source_settings(services, prefix),
            None,  # no environment's org: every workspace is in the registry
            governor_settings=GovernorSettings(),
            mappings=load_mappings(write_mappings(tmp_path, MAPPING)),
            metrics=SourceMetrics(metrics),
            registry=registry,
            workspaces=settings,
            directory=directory,
            store=writer,
        )
        task = asyncio.create_task(poller.run(signals=False))
        try:
            await changes.until(lambda rs: len(rs) >= 12)
            assert {w: sorted(ids) for w, ids in by_workspace(changes.records).items()} == {
                w: sorted(ids) for w, ids in made.items()
            }  # each org's own changes, each naming its workspace; nothing of one org under another
            assert set(poller.orgs) == {"org-a", "org-b", "org-c"}

            # ws-b paused: its org is no longer polled; its change waits in the org, nothing lost.
            writer.put_workspace(workspace("ws-b", "org-b", WorkspaceState.PAUSED))
            await wait_until(lambda: "org-b" not in poller.orgs, 30, "org-b let go while ws-b is paused")
            late_b = contacts(orgs[1], "late-b", 1)
            more_a = contacts(orgs[0], "more-a", 1)
            await changes.until(lambda rs: any(r["id"] == more_a[0] for r in rs))
            await asyncio.sleep(1.5)
            changes.drain()
            assert not changes.of(late_b[0])
            writer.put_workspace(workspace("ws-b", "org-b"))  # ACTIVE again: from its checkpoint
            await changes.until(lambda rs: any(r["id"] == late_b[0] for r in rs))
            assert changes.of(late_b[0])[0]["workspace_id"] == "ws-b"

            # A second workspace on org-c's connection: org-c's changes belong to the org, naming no workspace.
            writer.put_workspace(workspace("ws-c2", "org-c"))
            await wait_until(
                lambda: [w.workspace_id for w in poller.orgs["org-c"].workspaces] == ["ws-c", "ws-c2"], 30, "ws-c2 seen"
            )
            shared = contacts(orgs[2], "shared-c", 1)
            await changes.until(lambda rs: any(r["id"] == shared[0] for r in rs))
            await asyncio.sleep(1.5)
            changes.drain()
        finally:
            poller.stop()
            await task
            await poller.close()
            changes.close()
            writer.close()

    assert [r["workspace_id"] for r in changes.of(shared[0])] == [None]  # and polled once, not once per workspace
    ids = [r["change_id"] for r in changes.records]
    assert len(ids) == len(set(ids)) == 12 + 3  # none twice
    assert not changes.of(internal)  # the mapping's inbound filter, as with one org
    checkpoints = prefix + "sfsync.poller.checkpoints"
    for space in spaces:
        key = f"org-{space[-1]}:Contact"
        checkpoint = read_checkpoint(kafka, checkpoints, partition_for(key, 6), "Contact", key=key)
        assert checkpoint is not None and set(made[space]) <= checkpoint.known
    assert read_checkpoint(kafka, checkpoints, partition_for("Contact", 6), "Contact") is None  # no env org


# ---------------------------------------------------------------------- two replicas, one killed
def workspace_ids(partitions: int) -> list[str]:
    """Six workspace ids, three on the low half of the partitions of ``sfsync.workspaces`` and three on the high
    half (where the Java client's murmur2 puts their keys), so two replicas of a range assignment share them."""
    every = list(range(partitions))
    low: list[str] = []
    high: list[str] = []
    n = 0
    while len(low) < 3 or len(high) < 3:
        name = f"ws-{n}"
        side = low if int(DefaultPartitioner()(name.encode(), every, every)) < partitions // 2 else high
        if len(side) < 3:
            side.append(name)
        n += 1
    return sorted(low + high)


def orgs_polled(log: str) -> set[str]:
    """The connections a replica polls at the end of its log (``polling the org`` / ``stopped polling``)."""
    polled: set[str] = set()
    for match in re.finditer(r"(polling|stopped polling) the org of connection ([\w.@+-]+)", log):
        if match.group(1) == "polling":
            polled.add(match.group(2))
        else:
            polled.discard(match.group(2))
    return polled


@pytest.mark.parametrize("orgs", [6], indirect=True)
async def test_two_replicas_share_six_orgs_and_the_survivor_takes_over_a_killed_ones_orgs(
    services: Any, prefix: str, registry: SchemaRegistry, orgs: RunningOrgs, tmp_path: Path
) -> None:
    make_topics(services, prefix)
    kafka = {"bootstrap.servers": services.bootstrap}
    spaces = dict(zip(workspace_ids(WORKSPACES.partitions), orgs, strict=True))
    with RegistryWriter(kafka, registry, prefix=prefix) as writer:
        for space, org in spaces.items():
            register(writer, org, f"org-{space}", ConnectionFlow.CLIENT_CREDENTIALS)
            writer.put_workspace(workspace(space, f"org-{space}"))
    made = {space: contacts(org, space, 3) for space, org in spaces.items()}
    env = pipeline_env(
        services,
        prefix,
        SFSYNC_MAPPING_FILE=str(write_mappings(tmp_path, MAPPING)),
        SFSYNC_WORKSPACES_ENABLED="true",
        SFSYNC_WORKSPACES_REQUIRED="true",
        SFSYNC_CONNECTION_KEYS=key_item("k1"),
        SFSYNC_SOURCE_PAGE_SIZE="2",
        SFSYNC_SOURCE_POLL_INTERVAL_S="0.2",
        SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S="0.5",
        SFSYNC_SOURCE_LOOKBACK_S="2",
        SFSYNC_SOURCE_DELETE_LOG_INTERVAL_S="0",
        SFSYNC_SOURCE_METRICS_PORT="0",
        SFSYNC_SOURCE_SESSION_TIMEOUT_MS="6000",
        SFSYNC_SOURCE_TRANSACTION_TIMEOUT_S="10",
    )
    changes = Changes(services, registry, prefix)
    ports = free_port(), free_port()
    first, second = (
        Spawned(
            "sfsync.cli.main",
            "poller",
            env={**env, "SFSYNC_SOURCE_METRICS_PORT": str(port)},
            log=tmp_path / f"{name}.log",
            metrics_port=port,
        )
        for name, port in zip(("first", "second"), ports, strict=True)
    )
    writing = True

    async def keep_writing() -> None:  # sales reps keep adding Contacts in every org meanwhile
        n = 0
        while writing:
            for space, org in spaces.items():
                made[space] += contacts(org, f"{space}-w{n}-", 1)
            n += 1
            await asyncio.sleep(0.3)

    writer_task: asyncio.Task[None] | None = None
    try:
        await changes.until(lambda rs: len(rs) >= 18, timeout_s=120)

        def shared() -> bool:
            a, b = orgs_polled(first.output()), orgs_polled(second.output())
            return bool(a) and bool(b) and not (a & b) and a | b == {f"org-{s}" for s in spaces}

        await wait_until(shared, 90, "each replica polls a subset of the orgs, together all, none twice")
        polled_by_second = orgs_polled(second.output())
        writer_task = asyncio.create_task(keep_writing())
        await asyncio.sleep(3)
        second.kill()  # mid-stream: its orgs' changes keep coming, from its checkpoints, through the survivor
        await wait_until(
            lambda: orgs_polled(first.output()) == {f"org-{s}" for s in spaces},
            90,
            f"the survivor takes over {sorted(polled_by_second)}",
        )
        await asyncio.sleep(3)
        writing = False
        await writer_task
        expected = sum(len(ids) for ids in made.values())
        await changes.until(lambda rs: len({r["change_id"] for r in rs}) >= expected, timeout_s=120)
        await asyncio.sleep(3)  # more polls: nothing more may come
        changes.drain()
    finally:
        writing = False
        if writer_task is not None:
            await asyncio.gather(writer_task, return_exceptions=True)
        second.kill()
        first.stop()
        changes.close()

    assert first.returncode == 0, first.log_tail()
    got = by_workspace(changes.records)
    for space, ids in made.items():  # counted per org: every change once, under its workspace
        assert sorted(got.get(space, [])) == sorted(ids), space
    change_ids = [r["change_id"] for r in changes.records]
    assert len(change_ids) == len(set(change_ids)) == expected, "a change was delivered twice"
    assert polled_by_second, "the killed replica polled no org: the test proves nothing"
