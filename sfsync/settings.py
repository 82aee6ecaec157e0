"""Typed settings, one pydantic-settings object per component.

Connection fields are shared through mixins so every component reads the same environment names
(``KAFKA_BOOTSTRAP_SERVERS``, ``SCHEMA_REGISTRY_URL``, ...). :func:`load` turns a validation
failure into one :class:`~sfsync.errors.ConfigError` that lists every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sfsync.errors import ConfigError

DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_REGISTRY = "http://127.0.0.1:18081/apis/ccompat/v7"
SASL_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"})
"""The SASL mechanisms Kafka clients know (librdkafka's and aiokafka's ``sasl.mechanism`` values)."""

S = TypeVar("S", bound=BaseSettings)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_PORT = re.compile(r"[0-9]{1,5}")


def shown_url(value: str) -> str:
    """A URL setting's value as a message may show it: ``scheme://host[:port]``. Never the ``user:password@``
    before the host, nor a path or query (either may carry a token)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return "a value without a scheme (no ://)"
    if not _SCHEME.fullmatch(scheme):
        return "a value whose scheme is not one"
    host = re.split(r"[/?#]", rest.rsplit("@", 1)[-1], maxsplit=1)[0]
    if not host.endswith("]"):  # an IPv6 address ends with "]"; else a part after ":" is a port or nothing shown
        name, colon, port = host.rpartition(":")
        host = (host if _PORT.fullmatch(port) else name) if colon else host
    return f"{scheme}://{host}"


def without_credentials(value: str) -> str:
    """``value`` with a URL's ``user:password@`` (scheme or none) replaced by ``[redacted]@``; anything else,
    ``alice@example.org`` too, unchanged."""
    scheme, sep, rest = value.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        scheme, sep, rest = "", "", value
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return value
    return f"{scheme}{sep}[redacted]@{host}"


class _Base(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The fields as ``repr`` shows them: a URL's credentials (``SCHEMA_REGISTRY_URL=https://user:pw@...``)
        left out, as secrets are."""
        for name, value in super().__repr_args__():
            yield name, without_credentials(value) if isinstance(value, str) else value


class KafkaConnection(_Base):
    """Where Kafka is. Unset means the project's own local stack (``sfsync stack up``)."""

    bootstrap_servers: str = Field(DEFAULT_KAFKA, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    security_protocol: str = Field("PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL")
    sasl_mechanism: str | None = Field(None, validation_alias="KAFKA_SASL_MECHANISM")
    sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME")
    sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD")
    topic_prefix: str = Field("", validation_alias="SFSYNC_TOPIC_PREFIX")

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value

    @field_validator("security_protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        allowed = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if value.upper() not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}")
        return value.upper()

    @field_validator("sasl_mechanism")
    @classmethod
    def _mechanism(cls, value: str | None) -> str | None:
        if not value:
            return value
        if value.upper() not in SASL_MECHANISMS:
            raise ValueError(f"must be one of {sorted(SASL_MECHANISMS)}, got {value!r}")
        return value.upper()

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka properties for these connection settings (secrets in clear: never log them)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


class RegistryConnection(_Base):
    """Where the Confluent-compatible schema registry is (Apicurio's ``/apis/ccompat/v7`` locally)."""

    schema_registry_url: str = Field(
        DEFAULT_REGISTRY,
        validation_alias="SCHEMA_REGISTRY_URL",
        description="The registry's Confluent-compatible API (http:// or https://).",
    )
    schema_registry_username: str | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_USERNAME", description="Basic auth user, if the registry wants one."
    )
    schema_registry_password: SecretStr | None = Field(
        None, validation_alias="SCHEMA_REGISTRY_PASSWORD", description="Basic auth password (never logged)."
    )
    schema_registry_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        validation_alias="SCHEMA_REGISTRY_TIMEOUT_S",
        description="How long one request to the registry may take.",
    )
    schema_registry_retry_timeout_s: float = Field(
        120.0,
        ge=0,
        le=3_600,
        validation_alias="SCHEMA_REGISTRY_RETRY_TIMEOUT_S",
        description=(
            "How long a worker (processor, sink, poller, inbound app) retries a registry call that got no "
            "answer or a 408/429/5xx, counted from the call's first failure; then it stops as when the registry "
            "is down (exit 2, nothing committed). 2 minutes rides out a registry restart. 0: no retry. Commands "
            "a person runs never retry (they report the fault at once)."
        ),
    )

    @field_validator("schema_registry_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {shown_url(value)}")
        return value.rstrip("/")


class PublisherSettings(KafkaConnection, RegistryConnection):
    """The product-side publisher (``producers/``)."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_PUBLISHER_", extra="ignore", populate_by_name=True)

    linger_ms: int = Field(
        10,
        ge=0,
        le=10_000,
        description=(
            "How long a published event waits for others to join its batch (linger.ms): latency added to every "
            "event at low rates; under load what makes the batches (the broker pays ~260 µs per produce request, "
            "~2 µs per batched record). flush() sends at once whatever the linger."
        ),
    )
    batch_size_bytes: int = Field(
        262_144, ge=1_024, description="The most bytes of a partition's batch (batch.size); a full one goes at once."
    )
    compression: str = Field(
        "lz4",
        description=(
            "Batch compression (none, gzip, snappy, lz4, zstd): lz4 costs little CPU and shrinks the JSON-like "
            "Avro of product events on the wire and on the broker's disk."
        ),
    )
    delivery_timeout_s: float = Field(
        30.0, gt=0, le=3_600, description="How long an event may take to be acknowledged before it counts as failed."
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, le=300, description="How long the first contact with Kafka (and its topics' metadata) may take."
    )
    register_schemas: bool = Field(
        True, description="Register the product topics' schemas at start-up (else they must be registered already)."
    )

    @field_validator("compression")
    @classmethod
    def _codec(cls, value: str) -> str:
        allowed = {"none", "gzip", "snappy", "lz4", "zstd"}
        if value not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}")
        return value


class StackSettings(_Base):
    """The local single-node Kafka + Apicurio stack (``sfsync stack``)."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_STACK_", extra="ignore", populate_by_name=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".cache" / "sfsync")
    cache: Path | None = None  # downloads (default <home>/dist); share it between stacks
    kafka_version: str = "4.4.0"
    apicurio_version: str = "3.3.3"
    host: str = "127.0.0.1"
    kafka_port: int = Field(19092, ge=1, le=65535)
    controller_port: int = Field(19093, ge=1, le=65535)
    registry_port: int = Field(18081, ge=1, le=65535)
    registry_management_port: int = Field(18091, ge=1, le=65535)
    kafka_heap: str = "1g"
    registry_heap: str = "384m"
    start_timeout_s: float = Field(120.0, gt=0)
    java_home: Path | None = Field(None, validation_alias=AliasChoices("SFSYNC_STACK_JAVA_HOME"))
    external_kafka: str | None = Field(None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    external_registry: str | None = Field(None, validation_alias="SCHEMA_REGISTRY_URL")


def load(settings_class: type[S], component: str, **overrides: Any) -> S:
    """Build ``settings_class`` from the environment, reporting every invalid value at once."""
    try:
        return settings_class(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError(component, problems) from None
