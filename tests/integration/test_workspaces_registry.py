"""The workspace registry on the real Kafka and registry: workspaces and connections added, changed and removed
through the `sfsync` command line (a process of its own), seen by a directory in this process, kept across a
restart (the compacted state), keys rotated; and no secret in any topic's bytes nor in any command's output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sfsync.emulator.server import RunningEmulator
from sfsync.kafka.admin import ensure_topics
from sfsync.kafka.reading import read_messages
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import CONNECTIONS, REGISTRY_TOPICS, WORKSPACES
from sfsync.workspaces import (
    ConnectionFlow,
    ConnectionKeys,
    Directory,
    RegistryWriter,
    WorkspaceState,
    open_client,
    parse_keys,
)
from tests.kit import TokenEndpoint, recorded_json, signed_success
from tests.kit.workspaces import connection, key_item

from .processes import ROOT, pipeline_env
from .secrets_audit import SecretsAudit

pytestmark = pytest.mark.usefixtures("secrets_audit")

K1, K2 = key_item("k1"), key_item("k2")


class Cli:
    """`python -m sfsync.cli.main` against the test's topics, with ``SFSYNC_CONNECTION_KEYS`` = ``keys``; every
    output it printed is kept in :attr:`printed` (for the check that no secret was)."""

    def __init__(self, services: Any, prefix: str) -> None:
        self.services = services
        self.prefix = prefix
        self.printed: list[str] = []

    def __call__(self, *args: str, keys: str = K1, stdin: str | None = None, ok: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sfsync.cli.main", *args],
            env=pipeline_env(self.services, self.prefix, SFSYNC_CONNECTION_KEYS=keys),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        self.printed += [done.stdout, done.stderr]
        assert (done.returncode == 0) is ok, f"sfsync {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout + done.stderr


@pytest.fixture
def cli(services: Any, prefix: str, secrets_audit: SecretsAudit) -> Iterator[Cli]:
    """The command line; what it printed is audited for secrets after the test."""
    made = Cli(services, prefix)
    yield made
    for number, printed in enumerate(made.printed, 1):
        secrets_audit.text(f"output #{number} of the command line", printed)


@pytest.fixture
def open_directory(services: Any, prefix: str, registry: SchemaRegistry) -> Iterator[Any]:
    """Opens directories in this process (another process than the command line's), closed after the test."""
    opened: list[Directory] = []

    def open_one(keys: ConnectionKeys | None) -> Directory:
        found = Directory.open({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix, keys=keys)
        opened.append(found)
        return found

    yield open_one
    for directory in opened:
        directory.close()


def raw_bytes(services: Any, prefix: str) -> list[tuple[str, bytes | None, bytes | None]]:
    """Every record of the registry's topics as Kafka holds it: (topic, key, value)."""
    kafka = {"bootstrap.servers": services.bootstrap}
    return [
        (spec.name(prefix), m.key(), m.value())
        for spec in REGISTRY_TOPICS
        for m in read_messages(kafka, spec.name(prefix))
    ]


def assert_nowhere(secret: str, cli: Cli, services: Any, prefix: str) -> None:
    """``secret`` is in no record's key or value, and in no output of the command line."""
    records = raw_bytes(services, prefix)
    assert records
    assert not [r for r in records if secret.encode() in (r[1] or b"") + (r[2] or b"")]
    assert not [out for out in cli.printed if secret in out]


def test_a_workspace_and_its_connection_added_through_the_cli_are_seen_elsewhere_changed_removed_and_kept(
    cli: Cli, running: RunningEmulator, open_directory: Any, services: Any, prefix: str, tmp_path: Path
) -> None:
    app = running.emulator.auth.config.connected_apps[0]
    org_id = running.emulator.auth.config.org_id
    secret_file = tmp_path / "secret"
    secret_file.write_text(app.client_secret + "\n")
    added = cli("connections", "add", "acme", "--flow", "client_credentials", "--client-id", app.client_id,
                "--login-url", running.base_url, "--client-secret-file", str(secret_file))  # fmt: skip
    assert "added connection acme (client_credentials" in added and "sealed with key 'k1'" in added
    cli("workspaces", "add", "ws-acme", "--connection", "acme", "--set", "member_object=Lead")

    directory = open_directory(parse_keys(K1))
    workspace = directory.workspace("ws-acme")
    assert workspace is not None and workspace.state is WorkspaceState.ACTIVE
    assert workspace.connection_id == "acme" and dict(workspace.variables) == {"member_object": "Lead"}
    settings = directory.salesforce_settings("acme")
    assert settings.client_secret is not None and settings.client_secret.get_secret_value() == app.client_secret

    tested = cli("connections", "test", "acme")
    assert f"logged in to org {org_id}" in tested
    assert "00D" in tested and "Bearer" not in tested
    assert directory.wait_for(lambda state: state.connection("acme").org_id == org_id, 10)

    cli("workspaces", "pause", "ws-acme", "--reason", "migrating")
    assert directory.wait_for(lambda state: state.workspace("ws-acme").state is WorkspaceState.PAUSED, 10)
    assert "PAUSED" in cli("workspaces", "list")
    assert "state       PAUSED (migrating)" in cli("workspaces", "show", "ws-acme")
    cli("workspaces", "resume", "ws-acme")
    assert directory.wait_for(lambda state: state.workspace("ws-acme").state is WorkspaceState.ACTIVE, 10)

    refused = cli("connections", "remove", "acme", "--yes", ok=False)
    assert "connection 'acme' is used by workspace(s) ws-acme" in refused
    cli("workspaces", "remove", "ws-acme", "--yes")
    assert directory.wait_for(lambda state: state.workspace("ws-acme") is None, 10)
    last = [r for r in raw_bytes(services, prefix) if r[0] == WORKSPACES.name(prefix) and r[1] == b"ws-acme"][-1]
    assert last[2] is None  # a tombstone

    restarted = open_directory(parse_keys(K1))  # a restart reads the compacted state
    assert restarted.workspaces() == []
    kept = restarted.connection("acme")
    assert kept is not None and kept.org_id == org_id and kept.instance_url == running.base_url
    assert "client_secret set (sealed with key 'k1')" in cli("connections", "show", "acme")

    cli("connections", "remove", "acme", "--yes")
    assert directory.wait_for(lambda state: state.connection("acme") is None, 10)
    assert_nowhere(app.client_secret, cli, services, prefix)


def test_keys_rotate_reencrypt_moves_every_connection_to_the_new_key_and_the_old_one_can_go(
    cli: Cli, open_directory: Any, services: Any, prefix: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("CLIENT-secret-of-globex-7f3a")
    cli("connections", "add", "globex", "--flow", "client_credentials", "--client-id", "cid",
        "--login-url", "https://globex.my.salesforce.com", "--client-secret-file", str(secret_file))  # fmt: skip
    cli("connections", "add", "initech", "--flow", "refresh_token", "--client-id", "cid",
        "--refresh-token-file", "-", stdin="5Aep861-REFRESH-of-initech-91c2\n")  # fmt: skip

    rotated = cli("connections", "reencrypt", keys=f"{K2},{K1}")
    assert "re-encrypted 2 connection(s) with key 'k2'; 0 already were; 0 could not be opened" in rotated
    assert "no connection is sealed with 'k1' any more" in rotated
    assert "re-encrypted 0 connection(s) with key 'k2'; 2 already were" in cli(
        "connections", "reencrypt", keys=f"{K2},{K1}"
    )

    directory = open_directory(parse_keys(K2))  # the old key dropped
    assert {c.connection_id: c.secrets.key_id for c in directory.connections()} == {"globex": "k2", "initech": "k2"}
    token = directory.salesforce_settings("initech").refresh_token
    assert token is not None and token.get_secret_value() == "5Aep861-REFRESH-of-initech-91c2"
    assert "client_secret set (sealed with key 'k2')" in cli("connections", "show", "globex", keys=K2)
    refused = cli("connections", "show", "globex", keys=K1)
    assert "DO NOT OPEN" in refused and "sealed with key 'k2', which SFSYNC_CONNECTION_KEYS does not hold" in refused
    assert "refresh_token set, client_secret unset" in cli("connections", "list", keys=K2)

    for secret in ("CLIENT-secret-of-globex-7f3a", "5Aep861-REFRESH-of-initech-91c2"):
        assert_nowhere(secret, cli, services, prefix)


async def test_a_rotated_refresh_token_is_written_back_and_a_restarted_worker_logs_in_with_it(
    services: Any, prefix: str, registry: SchemaRegistry, open_directory: Any
) -> None:
    kafka = {"bootstrap.servers": services.bootstrap}
    ensure_topics(kafka, REGISTRY_TOPICS, prefix)
    keys = parse_keys(K1)
    with RegistryWriter(kafka, registry, prefix=prefix) as writer:
        writer.put_connection(connection("initech", {"refresh_token": "r1-initech"}, flow=ConnectionFlow.REFRESH_TOKEN))
        worker = open_directory(keys)

        def limits(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=recorded_json("camel_limits.json"))

        endpoint = TokenEndpoint((200, signed_success(refresh_token="5Aep861-ROTATED-initech")), other=limits)
        client = open_client(
            "initech", connections=worker, keys=keys, store=writer, transport=httpx.MockTransport(endpoint)
        )
        async with client:
            await client.limits()
    assert endpoint.forms[0]["refresh_token"] == "r1-initech"

    restarted = open_directory(keys)
    token = restarted.salesforce_settings("initech").refresh_token
    assert token is not None and token.get_secret_value() == "5Aep861-ROTATED-initech"
    records = raw_bytes(services, prefix)
    assert [r[0] for r in records] == [CONNECTIONS.name(prefix)] * 2
    assert not [r for r in records if b"ROTATED" in (r[2] or b"") or b"r1-initech" in (r[2] or b"")]
