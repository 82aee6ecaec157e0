"""The command line, and services that are down: clear, bounded errors, no traceback soup."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from sfsync.cli.main import app
from sfsync.emulator.server import free_port
from sfsync.errors import ServiceUnavailableError
from sfsync.producers.publisher import Publisher
from sfsync.serde.registry import SchemaRegistry
from sfsync.settings import PublisherSettings

runner = CliRunner()


def test_help_lists_the_commands_a_newcomer_needs() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("stack", "produce", "topics", "schemas", "demo"):
        assert command in result.output
    assert "sfsync stack up" in result.output


def test_demo_rejects_a_bad_pace_with_one_clear_message_before_starting_anything() -> None:
    result = runner.invoke(app, ["demo", "--pace", "quick"])
    assert result.exit_code == 2
    assert result.output.startswith("error: invalid demo settings")
    assert "--pace: expected 'fast' or events per second" in result.output
    assert "Traceback" not in result.output


def test_a_config_error_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "nohostport")
    result = runner.invoke(app, ["produce", "--fake", "1"])
    assert result.exit_code == 2
    assert result.output.startswith("error: invalid publisher settings")
    assert "Traceback" not in result.output


def test_a_broker_that_is_down_gives_a_bounded_error() -> None:
    settings = PublisherSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", connect_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="did not answer within 2s"):
        Publisher(settings)
    assert time.monotonic() - started < 6


def test_a_registry_that_is_down_gives_a_bounded_error() -> None:
    registry = SchemaRegistry(f"http://127.0.0.1:{free_port()}/apis/ccompat/v7", timeout_s=1)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="did not answer"):
        registry.register("x-value", '"string"')
    assert time.monotonic() - started < 10


def test_cli_with_registry_down_exits_2_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SCHEMA_REGISTRY_TIMEOUT_S", "1")
    result = runner.invoke(app, ["schemas", "register"])
    assert result.exit_code == 2
    assert "did not answer" in result.output
    assert "Traceback" not in result.output
