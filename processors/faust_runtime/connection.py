"""How a Faust app reaches Kafka: broker URLs and credentials from sfsync's Kafka settings, raw topics.

sfsync's Faust apps read and write bytes (the Confluent wire format is decoded and encoded by
:mod:`sfsync.serde`), so every topic they use is a raw topic.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust

from sfsync.settings import KafkaConnection
from sfsync.topics import TopicSpec

__all__ = ["broker_credentials", "broker_urls", "raw_topic"]


def broker_urls(settings: KafkaConnection) -> list[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` as Faust's ``kafka://`` URLs."""
    return [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")]


def broker_credentials(settings: KafkaConnection) -> Any:
    """Faust's credentials for ``KAFKA_SECURITY_PROTOCOL`` (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl.create_default_context())
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=password,
        mechanism=settings.sasl_mechanism or "PLAIN",
        ssl_context=ssl.create_default_context() if protocol == "SASL_SSL" else None,
    )


def raw_topic(app: Any, spec: TopicSpec, prefix: str) -> Any:
    """``spec``'s topic (with ``prefix``) on ``app``, as bytes in and bytes out."""
    return app.topic(
        spec.name(prefix),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
    )
