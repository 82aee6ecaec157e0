"""Settings: every problem reported at once, secrets never shown."""

from __future__ import annotations

import pytest

from sfsync.errors import ConfigError
from sfsync.settings import PublisherSettings, StackSettings, load


def test_every_invalid_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "registry:8081")
    monkeypatch.setenv("SFSYNC_PUBLISHER_COMPRESSION", "brotli")
    monkeypatch.setenv("SFSYNC_PUBLISHER_LINGER_MS", "-1")
    with pytest.raises(ConfigError) as err:
        load(PublisherSettings, "publisher")
    problems = "\n".join(err.value.problems)
    assert len(err.value.problems) == 4
    assert "KAFKA_BOOTSTRAP_SERVERS" in problems and "host:port" in problems
    assert "SCHEMA_REGISTRY_URL" in problems
    assert "compression" in problems
    assert "linger_ms" in problems
    assert str(err.value).startswith("invalid publisher settings (4 problem(s))")


def test_secrets_stay_out_of_repr_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-kafka")
    monkeypatch.setenv("SCHEMA_REGISTRY_PASSWORD", "hunter2-registry")
    settings = load(PublisherSettings, "publisher")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert settings.kafka_client_config()["sasl.password"] == "hunter2-kafka"
    monkeypatch.setenv("SFSYNC_PUBLISHER_LINGER_MS", "soon")
    with pytest.raises(ConfigError) as err:
        load(PublisherSettings, "publisher")
    assert "hunter2" not in str(err.value)


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    moved = ("SFSYNC_STACK_KAFKA_PORT", "SFSYNC_STACK_REGISTRY_PORT")  # the defaults, not a CI run's moved stack
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", *moved):
        monkeypatch.delenv(name, raising=False)
    settings = load(PublisherSettings, "publisher")
    stack = load(StackSettings, "stack")
    assert settings.bootstrap_servers == f"{stack.host}:{stack.kafka_port}"
    assert settings.schema_registry_url == f"http://{stack.host}:{stack.registry_port}/apis/ccompat/v7"
