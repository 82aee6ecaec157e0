"""Settings: every problem reported at once, secrets never shown."""

from __future__ import annotations

import pytest

from sfsync.errors import ConfigError
from sfsync.settings import PublisherSettings, RegistryConnection, StackSettings, load


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


@pytest.mark.parametrize(
    ("url", "shown"),
    [("htps://alice:s3cret@registry.example/apis", "htps://registry.example"), ("alice:s3cret@registry:8081", None)],
)
def test_a_refused_registry_url_is_named_without_its_credentials(
    monkeypatch: pytest.MonkeyPatch, url: str, shown: str | None
) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", url)
    with pytest.raises(ConfigError) as err:
        load(RegistryConnection, "registry")
    assert "s3cret" not in f"{err.value}{err.value!r}" and "must start with http:// or https://" in str(err.value)
    assert shown is None or shown in str(err.value)


def test_settings_repr_shows_a_url_without_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://alice:s3cret@registry.example/apis/ccompat/v7")
    settings = load(PublisherSettings, "publisher")
    assert settings.schema_registry_url == "https://alice:s3cret@registry.example/apis/ccompat/v7"  # in use, intact
    for shown in (repr(settings), str(settings)):
        assert "s3cret" not in shown and "https://[redacted]@registry.example/apis/ccompat/v7" in shown


def test_a_schemeless_user_password_in_a_setting_is_left_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "alice:s3cret@registry.example:8081")  # the stack takes it as is
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "alice@example.org")
    stack = load(StackSettings, "stack")
    assert "s3cret" not in repr(stack) and "[redacted]@registry.example:8081" in repr(stack)
    assert "alice@example.org" in repr(load(PublisherSettings, "publisher", schema_registry_url="http://r:1"))
