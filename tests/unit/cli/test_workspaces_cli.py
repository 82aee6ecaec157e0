"""``sfsync workspaces`` / ``sfsync connections``: what each command refuses before it asks Kafka anything, and
how a secret is read (a file, stdin, a prompt; never a command-line argument, never echoed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from sfsync.cli.main import app
from sfsync.cli.workspaces import read_secret
from sfsync.errors import ConfigError
from sfsync.workspaces import parse_keys
from tests.kit.workspaces import key_item

NOWHERE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "SCHEMA_REGISTRY_URL": "http://127.0.0.1:1"}
"""Nothing listens there: a command that asked Kafka would fail another way, after its timeout."""


def run(*args: str, env: dict[str, str | None] | None = None, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={**NOWHERE, **(env or {})}, input=stdin)


def command(*path: str) -> Any:
    """The click command at ``path`` (typer's own click types: looked up by attribute)."""
    found: Any = get_command(app)
    for name in path:
        found = found.commands[name]
    return found


def test_no_option_of_connections_add_takes_a_secret_value() -> None:
    options = {name for param in command("connections", "add").params for name in param.opts}
    secretive = {o for o in options if any(word in o for word in ("secret", "token", "key", "password"))}
    assert secretive == {"--private-key-file", "--client-secret-file", "--refresh-token-file"}
    refused = run("connections", "add", "c1", "--flow", "client_credentials", "--client-id", "x",
                  "--client-secret", "s3cr3t-on-the-command-line")  # fmt: skip
    assert refused.exit_code == 2
    assert "No such option: --client-secret" in refused.output


def test_connections_add_lists_every_argument_problem_before_asking_kafka(tmp_path: Path) -> None:
    result = run(
        "connections", "add", "acme:org", "--flow", "jwt_bearer", "--client-id", "x",
        "--refresh-token-file", str(tmp_path / "token"),
        env={"SFSYNC_CONNECTION_KEYS": key_item("k1")},
    )  # fmt: skip
    assert result.exit_code == 2
    for problem in (
        "connection id 'acme:org': expected 1-200 letters",
        "--refresh-token-file: the jwt_bearer flow takes no refresh token",
        "--username: the jwt_bearer flow needs the integration user's username",
        "--private-key-file: the jwt_bearer flow needs the private key's file",
    ):
        assert problem in result.output
    assert "did not answer" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("connections", "add", "c1", "--flow", "client_credentials", "--client-id", "x"),
        ("connections", "test", "c1"),
        ("connections", "reencrypt"),
    ],
)
def test_commands_that_seal_or_open_refuse_without_keys(args: tuple[str, ...]) -> None:
    result = run(*args, env={"SFSYNC_CONNECTION_KEYS": None})
    assert result.exit_code == 2
    assert "SFSYNC_CONNECTION_KEYS is not set" in result.output


def test_bad_keys_are_reported_each_before_kafka_is_asked() -> None:
    result = run("connections", "list", env={"SFSYNC_CONNECTION_KEYS": f"{key_item('k1')},k1:AAAA,junk"})
    assert result.exit_code == 2
    assert "SFSYNC_CONNECTION_KEYS key 'k1': the id is given twice" in result.output
    assert "SFSYNC_CONNECTION_KEYS item 3: expected key_id:base64(32 bytes), found no ':'" in result.output
    assert key_item("k1").split(":")[1] not in result.output


def test_workspaces_add_lists_every_argument_problem_before_asking_kafka() -> None:
    result = run("workspaces", "add", "acme|1", "--connection", "c1", "--set", "novalue", "--mapping", " ")
    assert result.exit_code == 2
    for problem in ("workspace id 'acme|1'", "--set 'novalue': expected NAME=VALUE", "--mapping: empty"):
        assert problem in result.output


def test_keygen_prints_a_key_the_setting_takes() -> None:
    result = CliRunner().invoke(app, ["connections", "keygen", "--id", "k2026"])
    assert result.exit_code == 0, result.output
    item = result.stdout.strip()
    assert parse_keys(item).key_ids == ["k2026"]
    assert "sfsync connections reencrypt" in result.stderr


# ---------------------------------------------------------------------- reading a secret
reader = typer.Typer()


@reader.command()
def read(source: str = "", field: str = "client_secret", required: bool = True, twice: bool = False) -> None:
    """Read one secret as `connections add` does, and say what was read (in tests only)."""
    used: list[str] = []
    try:
        value = read_secret(source or None, field, required=required, stdin_used=used)
        if twice:
            read_secret(source or None, field, required=required, stdin_used=used)
    except ConfigError as exc:
        typer.echo(f"refused: {exc}")
        raise typer.Exit(2) from None
    typer.echo(f"read {len(value.get_secret_value()) if value else 'nothing'} {value!r}")


def read_with(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(reader, list(args), input=stdin)


def test_a_secret_is_read_from_a_file_without_its_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("  s3cr3t-from-file\n")
    result = read_with("--source", str(path))
    assert result.output.strip() == "read 16 SecretStr('**********')"


def test_a_secret_is_read_from_stdin_once_per_command() -> None:
    assert read_with("--source", "-", stdin="s3cr3t-stdin\n").output.strip() == "read 12 SecretStr('**********')"
    twice = read_with("--source", "-", "--twice", stdin="s3cr3t-stdin\n")
    assert twice.exit_code == 2
    assert "stdin is already read for --client-secret-file" in twice.output


def test_without_a_source_a_required_secret_is_prompted_for_without_echo() -> None:
    result = read_with("--field", "refresh_token", stdin="5Aep861-PROMPTED\n")
    assert result.exit_code == 0, result.output
    assert "refresh token: " in result.output
    assert "5Aep861-PROMPTED" not in result.output
    assert result.output.strip().endswith("read 16 SecretStr('**********')")
    assert read_with("--no-required").output.strip() == "read nothing None"


def test_an_empty_or_unreadable_secret_is_refused_without_its_content(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n \n")
    assert "--client-secret-file: the client secret is empty" in read_with("--source", str(empty)).output
    missing = read_with("--source", str(tmp_path / "nope"), "--field", "private_key")
    assert missing.exit_code == 2
    assert f"--private-key-file: cannot read {tmp_path / 'nope'}: No such file or directory" in missing.output
