"""A SASL mechanism that librdkafka does not know, given to ``Publisher()`` / ``AsyncPublisher()``: sfsync's
ConfigError naming ``KAFKA_SASL_MECHANISM``, raised before anything connects, never a ``cimpl.KafkaException``
(no broker here: nothing listens on the bootstrap address).
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from pydantic import SecretStr

from sfsync.errors import ConfigError
from sfsync.producers.publisher import AsyncPublisher, Publisher
from sfsync.settings import PublisherSettings

SASL_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-999",
    "KAFKA_SASL_USERNAME": "svc-sfsync",
    "KAFKA_SASL_PASSWORD": "s3cret-value",
}


@pytest.fixture
def mistyped_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SASL_ENV.items():
        monkeypatch.setenv(name, value)


def unchecked_settings() -> PublisherSettings:
    """Settings that skipped validation (built in code): librdkafka itself refuses the mechanism."""
    return PublisherSettings.model_construct(
        bootstrap_servers="127.0.0.1:9",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-999",
        sasl_username="svc-sfsync",
        sasl_password=SecretStr("s3cret-value"),
        connect_timeout_s=1.0,
    )


def assert_names_the_setting(error: BaseException) -> None:
    assert isinstance(error, ConfigError), repr(error)
    assert not isinstance(error, KafkaException)
    assert "KAFKA_SASL_MECHANISM" in str(error) and "SCRAM-SHA-999" in str(error)
    assert "s3cret-value" not in str(error)


def test_publisher_from_the_environment(mistyped_env: None) -> None:
    with pytest.raises(ConfigError) as caught:
        Publisher()
    assert_names_the_setting(caught.value)


def test_publisher_with_settings_built_in_code() -> None:
    with pytest.raises(ConfigError) as caught:
        Publisher(unchecked_settings())
    assert_names_the_setting(caught.value)


def test_publisher_with_the_mechanism_in_extra_config() -> None:
    settings = PublisherSettings(
        bootstrap_servers="127.0.0.1:9",
        security_protocol="SASL_SSL",
        sasl_username="svc-sfsync",
        sasl_password=SecretStr("s3cret-value"),
    )
    with pytest.raises(ConfigError) as caught:
        Publisher(settings, {"sasl.mechanism": "SCRAM-SHA-999"})
    assert_names_the_setting(caught.value)


async def test_async_publisher_from_the_environment(mistyped_env: None) -> None:
    with pytest.raises(ConfigError) as caught:
        async with AsyncPublisher():
            pass
    assert_names_the_setting(caught.value)


async def test_async_publisher_with_settings_built_in_code() -> None:
    with pytest.raises(ConfigError) as caught:
        async with AsyncPublisher(unchecked_settings()):
            pass
    assert_names_the_setting(caught.value)


def test_the_setting_accepts_any_case_of_a_known_mechanism(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "scram-sha-512")
    assert PublisherSettings().sasl_mechanism == "SCRAM-SHA-512"
