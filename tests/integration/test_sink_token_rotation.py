"""A refresh token that the org rotates survives a restart of the worker (issue 13, decision 0009).

The real ``sfsync sink`` process (its own process, as deployed) serves a workspace whose connection, sealed in the
workspace registry, logs in with a refresh token to an emulated org whose connected app rotates refresh tokens:
each refresh answers with a new refresh token and retires the one sent, and a retired token sent again is refused
and revokes the whole chain (Salesforce's single-use refresh tokens). The sink logs in, writes the rotated token
back to ``sfsync.connections`` and writes the first members; it is SIGKILLed; started again, it must log in with the
rotated token, which the org then retires in turn, and its writes must reach the org. Had the first run not
written the token back, the restart would send the retired one: refused, and the chain revoked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sfsync.emulator.orgs import OrgSpec
from sfsync.emulator.server import RunningOrg, RunningOrgs, free_port, serve_orgs_in_thread
from sfsync.serde.registry import SchemaRegistry
from sfsync.workspaces import ConnectionFlow, Directory, RegistryWriter
from tests.integration.helpers import caught_up, make_topics, wait_until
from tests.integration.processes import Spawned, pipeline_env, unexpected_tracebacks
from tests.integration.sink_runner import produce_writes
from tests.kit.routing import in_workspace
from tests.kit.sink import member
from tests.kit.workspaces import connection, key_item, keys, workspace

pytestmark = pytest.mark.usefixtures("secrets_audit")

WORKSPACE, CONNECTION = "ws-rot", "org-rot"


@pytest.fixture
def orgs() -> Iterator[RunningOrgs]:
    running = serve_orgs_in_thread([OrgSpec(name="rotating", rotate_refresh_tokens=True)])
    try:
        yield running
    finally:
        running.stop()


def members(numbers: range) -> list[dict[str, Any]]:
    return [in_workspace(member(i, email=f"rot{i}@example.org", last=f"Rot{i}"), WORKSPACE) for i in numbers]


def emails(org: RunningOrg) -> list[str]:
    """The emails of the org's Contacts (read in its store: no API call, no login)."""
    return sorted(str(row.get("Email")) for row in org.emulator.store.rows("Contact"))


def expected(numbers: range) -> list[str]:
    return sorted(f"rot{i}@example.org" for i in numbers)


def active(org: RunningOrg, refresh_token: str) -> bool:
    """Whether the org holds ``refresh_token`` as valid (OAuth introspection: asking does not use it up)."""
    form = {"token": refresh_token, "client_id": org.client_id, "client_secret": org.client_secret}
    answer = httpx.post(f"{org.base_url}/services/oauth2/introspect", data=form, timeout=10)
    answer.raise_for_status()
    return bool(answer.json()["active"])


def stored_refresh_token(services: Any, prefix: str, registry: SchemaRegistry) -> str:
    """The refresh token ``sfsync.connections`` holds for the connection now, opened (as a restart reads it)."""
    kafka = {"bootstrap.servers": services.bootstrap}
    with Directory.open(kafka, registry, prefix=prefix, keys=keys("k1")) as directory:
        token = directory.salesforce_settings(CONNECTION).refresh_token
    assert token is not None
    return token.get_secret_value()


async def test_a_sink_restarted_after_the_org_rotated_its_refresh_token_logs_in_with_the_rotated_token(
    services: Any, prefix: str, registry: SchemaRegistry, orgs: RunningOrgs, tmp_path: Path
) -> None:
    (org,) = orgs
    make_topics(services, prefix)
    issued = org.refresh_token()  # what the browser flow left the connection with
    with RegistryWriter({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix) as writer:
        secrets = {"refresh_token": issued, "client_secret": org.client_secret}
        writer.put_connection(
            connection(
                CONNECTION,
                secrets,
                sealed_with=keys("k1"),
                flow=ConnectionFlow.REFRESH_TOKEN,
                login_url=org.login_url,
                client_id=org.client_id,
            )
        )
        writer.put_workspace(workspace(WORKSPACE, CONNECTION))
    group = f"sink-{uuid.uuid4().hex[:8]}"
    writes_topic = prefix + "sfsync.writes"

    def start(name: str) -> Spawned:
        port = free_port()
        env = pipeline_env(
            services,
            prefix,
            SFSYNC_SINK_GROUP_ID=group,
            SFSYNC_SINK_BATCH_MAX_AGE_S="0.3",
            SFSYNC_SINK_POLL_TIMEOUT_S="0.2",
            SFSYNC_SINK_SESSION_TIMEOUT_MS="6000",
            SFSYNC_SINK_METRICS_PORT=str(port),
            SFSYNC_WORKSPACES_ENABLED="true",
            SFSYNC_WORKSPACES_REQUIRED="true",  # no SALESFORCE_*: the registry's connection is the only one
            SFSYNC_CONNECTION_KEYS=key_item("k1"),
        )
        return Spawned("sfsync.cli.main", "sink", env=env, log=tmp_path / f"{name}.log", metrics_port=port)

    produce_writes(services, registry, prefix, members(range(5)))
    first = start("first")
    try:
        await wait_until(
            lambda: emails(org) == expected(range(5)) and caught_up(services.bootstrap, group, writes_topic),
            90,
            "the first run's writes in the org and committed",
        )
    finally:
        first.kill()  # SIGKILL: nothing flushed, nothing said goodbye
    rotated = stored_refresh_token(services, prefix, registry)
    assert rotated != issued, "the rotated refresh token was not written back:\n" + first.log_tail()
    assert not active(org, issued) and active(org, rotated)  # the org retired the first token, holds the new one

    produce_writes(services, registry, prefix, members(range(5, 10)))
    second = start("second")
    try:
        await wait_until(lambda: emails(org) == expected(range(10)), 90, "the restarted sink's writes reach the org")
        assert second.stop() == 0, second.log_tail()
    finally:
        second.kill()
    assert not active(org, rotated)  # the restart logged in with the rotated token: the org retired it in turn
    latest = stored_refresh_token(services, prefix, registry)
    assert latest not in (issued, rotated) and active(org, latest)  # ...and that rotation was written back too
    for run in (first, second):
        assert not unexpected_tracebacks(run.output()), run.log_tail()

    form = {"grant_type": "refresh_token", "client_id": org.client_id, "client_secret": org.client_secret}
    refused = httpx.post(org.token_url, data={**form, "refresh_token": issued}, timeout=10)  # the first token again
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
