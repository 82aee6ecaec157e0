"""The sink of many orgs end to end: real Kafka and registry, three emulated orgs over real HTTP, the workspace
registry written with sfsync's own writer and read by a directory.

The writes of three workspaces reach only their own org (counted in each org); then org B goes down: A's and
C's writes keep flowing, B's wait uncommitted (a CONNECTION entry names workspace B); once B is back its
writes converge, none lost, none twice. A poison record of C parks as always, its DLQ record and error-log
entry naming workspace C.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningOrg, RunningOrgs, serve_orgs_in_thread
from sfsync.errors import Category
from sfsync.ops.dlq import DeadLetterQueue
from sfsync.ops.errorlog import tail
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.sinks.main import SinkRunner, build_runner
from sfsync.sinks.metrics import SinkMetrics
from sfsync.sinks.router import CONNECTION_RESTORED
from sfsync.sinks.routing import HoldCause
from sfsync.workspaces import ConnectionFlow, Directory, RegistryWriter, WorkspacesSettings
from tests.integration.helpers import caught_up, group_offsets, make_topics, wait_until
from tests.integration.secrets_audit import SecretsAudit
from tests.integration.sink_runner import produce_writes, sink_settings
from tests.kit.routing import in_workspace
from tests.kit.sink import fv, member, write
from tests.kit.workspaces import connection, keys, workspace

pytestmark = pytest.mark.usefixtures("secrets_audit")

SPACES = {"ws-a": 0, "ws-b": 1, "ws-c": 2}
"""Each workspace and the index of its org."""


@pytest.fixture
def orgs() -> Iterator[RunningOrgs]:
    running = serve_orgs_in_thread(3)
    try:
        yield running
    finally:
        running.stop()


def members_of(space: str, numbers: range) -> list[dict[str, Any]]:
    """Members of ``space``: a letter of their own in their emails, so an org's Contacts say whose they are."""
    letter = space[-1]
    return [
        in_workspace(member(i, email=f"{letter}{i}@example.org", last=f"{letter.upper()}{i}"), space) for i in numbers
    ]


def contacts(org: RunningOrg) -> list[str]:
    """The emails of the org's Contacts (its store, no API call: org B may be down)."""
    return sorted(str(row.get("Email")) for row in org.emulator.store.rows("Contact"))


def expected(space: str, numbers: range) -> list[str]:
    return sorted(f"{space[-1]}{i}@example.org" for i in numbers)


def register(
    services: Any, prefix: str, registry: SchemaRegistry, orgs: RunningOrgs
) -> tuple[RegistryWriter, list[str]]:
    """Each org's connection (refresh-token flow) and its workspace, written as ``sfsync connections|workspaces
    add`` write them; the writer, and the secrets they hold."""
    writer = RegistryWriter({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix)
    shown: list[str] = []
    for space, index in SPACES.items():
        org = orgs[index]
        connection_id = f"org-{space[-1]}"
        secrets = {"refresh_token": org.refresh_token(), "client_secret": org.client_secret}
        shown += secrets.values()
        writer.put_connection(
            connection(
                connection_id,
                secrets,
                sealed_with=keys("k1"),
                flow=ConnectionFlow.REFRESH_TOKEN,
                login_url=org.login_url,
                client_id=org.client_id,
            )
        )
        writer.put_workspace(workspace(space, connection_id))
    return writer, shown


def runner_of(
    services: Any, prefix: str, group: str, registry: SchemaRegistry, directory: Directory, writer: RegistryWriter
) -> SinkRunner:
    settings = sink_settings(services, prefix, group, metrics_port=0, hold_recheck_initial_s=0.2, hold_recheck_max_s=1)
    workspaces = WorkspacesSettings(
        bootstrap_servers=services.bootstrap,
        schema_registry_url=services.registry,
        topic_prefix=prefix,
        enabled=True,
        required=True,
    )
    return build_runner(
        settings,
        None,  # no environment's connection: every workspace is in the registry
        governor_settings=GovernorSettings(auth_pause_s=0.5, auth_pause_max_s=1),
        registry=registry,
        metrics=SinkMetrics(CollectorRegistry()),
        workspaces=workspaces,
        directory=directory,
        store=writer,
    )


async def test_three_workspaces_reach_only_their_own_orgs_and_one_org_down_holds_only_its_own_writes(
    services: Any, prefix: str, registry: SchemaRegistry, orgs: RunningOrgs, secrets_audit: SecretsAudit
) -> None:
    make_topics(services, prefix)
    writer, secrets = register(services, prefix, registry, orgs)
    kafka = {"bootstrap.servers": services.bootstrap}
    writes_topic = prefix + "sfsync.writes"
    group = f"sink-{uuid.uuid4().hex[:8]}"
    a, b, c = orgs[0], orgs[1], orgs[2]
    poison = in_workspace(
        write("Contact:Email:bad@x.org", "Contact", {"Email": fv("bad@x.org")}, match=[("Email", "bad@x.org")]),
        "ws-c",
    )  # no LastName: Salesforce refuses it
    first = [*members_of("ws-a", range(10)), *members_of("ws-b", range(10)), *members_of("ws-c", range(10)), poison]
    produce_writes(services, registry, prefix, first)

    with Directory.open(kafka, registry, prefix=prefix, keys=keys("k1")) as directory:
        runner = runner_of(services, prefix, group, registry, directory, writer)
        secrets_audit.metrics("the sink", runner.metrics.registry)
        task = asyncio.create_task(runner.run(signals=False))
        try:
            await wait_until(lambda: runner.results >= 30 and runner.parked >= 1, 60, "the first writes written")
            for space, org in zip(SPACES, (a, b, c), strict=True):
                assert contacts(org) == expected(space, range(10))  # its own only: none of A in B or C...

            b.down()
            second = [*members_of("ws-a", range(10, 20)), *members_of("ws-b", range(10, 20))]
            produce_writes(services, registry, prefix, [*second, *members_of("ws-c", range(10, 20))])
            await wait_until(
                lambda: len(contacts(a)) == 20 and len(contacts(c)) == 20, 60, "A and C written while B is down"
            )
            assert contacts(b) == expected("ws-b", range(10))  # B's new writes wait...
            samples = runner.metrics.registry
            await wait_until(  # (A's and C's writes are delivered without waiting for B's batch to come back)
                lambda: samples.get_sample_value("sfsync_sink_connections_held", {"cause": "org_down"}) == 1,
                30,
                "B's connection held",
            )  # a count by cause: no series names a workspace or a connection
            assert runner.router is not None and runner.router.held()[HoldCause.ORG_DOWN] == 1
            committed, ends = await asyncio.to_thread(group_offsets, services.bootstrap, group, writes_topic)
            assert sum(committed) < sum(ends)  # ...uncommitted

            b.up()
            await wait_until(lambda: len(contacts(b)) == 20, 60, "B's writes converged once it is back")
            await wait_until(lambda: caught_up(services.bootstrap, group, writes_topic), 60, "every write committed")
        finally:
            runner.stop()
            report = await asyncio.wait_for(task, 30)
            writer.close()

    for space, org in zip(SPACES, (a, b, c), strict=True):
        assert contacts(org) == expected(space, range(20))  # each once: nothing lost, nothing twice
    labelled = {v for m in runner.metrics.registry.collect() for sample in m.samples for v in sample.labels.values()}
    assert not {v for v in labelled if v.startswith(("ws-", "org-"))}
    assert report.results == 60 and report.parked == 1

    (parked,) = DeadLetterQueue(kafka, prefix=prefix).list_parked()
    assert parked.context.workspace == "ws-c" and parked.context.code == "REQUIRED_FIELD_MISSING"
    entries = list(tail(kafka, registry, prefix=prefix, last=None))
    (refused,) = [e for e in entries if e.code == "REQUIRED_FIELD_MISSING"]
    assert refused.workspace_id == "ws-c"
    down = [e for e in entries if e.category is Category.CONNECTION and e.details.get("connection_id") == "org-b"]
    assert {e.workspace_id for e in down} == {"ws-b"}
    assert [e.code for e in down][-1] == CONNECTION_RESTORED and len(down) == 2  # held once, restored once
    assert not [s for s in secrets if s in str(entries)]  # no secret in the error log
