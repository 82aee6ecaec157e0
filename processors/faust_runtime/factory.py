"""The one way sfsync builds a ``faust.App`` and what it works with.

Both processors build their app here, so a Faust option means the same in each, and every app
recovers its tables with :class:`~sfsync.processors.faust_runtime.recovery.SeekFirstTableManager`.
:func:`surroundings` is the rest every app needs before its agents: its topics created, the
registry, the mapping file, the DLQ.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust

from sfsync.kafka.admin import ensure_topics
from sfsync.mapping import MappingFile, load_configured_mappings, require_valid
from sfsync.ops.dlq import DeadLetterQueue
from sfsync.processors.faust_runtime.connection import broker_credentials, broker_urls
from sfsync.processors.faust_runtime.recovery import SeekFirstTableManager
from sfsync.processors.faust_runtime.settings import FaustAppSettings
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import TopicSpec

__all__ = ["Surroundings", "new_app", "surroundings"]


def new_app(settings: FaustAppSettings, *, topic_partitions: int, **options: Any) -> faust.App:
    """A ``faust.App`` (not started) configured from ``settings``; ``options`` are further Faust options.

    Internal topics get ``topic_partitions`` partitions; modules are never autodiscovered (each app
    registers its agents itself).
    """
    return faust.App(
        settings.app_id,
        broker=broker_urls(settings),
        broker_credentials=broker_credentials(settings),
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=settings.broker_commit_every,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_size,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        topic_partitions=topic_partitions,
        topic_disable_leader=True,
        autodiscover=False,
        TableManager=SeekFirstTableManager,  # no record lost when a (re)start recovers the tables
        **options,
    )


@dataclass(frozen=True)
class Surroundings:
    """What an app works with besides Faust (see :func:`surroundings`)."""

    prefix: str
    kafka: dict[str, Any]
    registry: SchemaRegistry
    mappings: MappingFile
    dlq: DeadLetterQueue
    register_schemas: bool

    def encoder(self, spec: TopicSpec) -> AvroEncoder:
        """An encoder for ``spec``'s topic (its schema registered if the settings say so)."""
        return AvroEncoder(
            self.registry, spec.name(self.prefix), load_topic_schema(spec.base), register=self.register_schemas
        )


def surroundings(
    settings: FaustAppSettings,
    *,
    component: str,
    topics: Iterable[TopicSpec],
    registry: SchemaRegistry | None = None,
    mappings: MappingFile | None = None,
) -> Surroundings:
    """``topics`` created where missing, the registry and the mapping file (the settings' ones unless
    given) and a DLQ that names ``component`` in its records' context.

    The mapping file is checked first, before Kafka is touched, against every rule that needs no org
    (:func:`~sfsync.mapping.require_valid`): an app never starts on a mapping it would fail on.

    Raises:
        ConfigError / MappingError: invalid mapping settings or an invalid mapping file (every problem).
        ServiceUnavailableError: Kafka or the registry did not answer.
    """
    mappings = require_valid(mappings if mappings is not None else load_configured_mappings())
    if registry is None:
        registry = SchemaRegistry.from_settings(settings, ride_out_outages=True)
    prefix = settings.topic_prefix
    kafka = settings.kafka_client_config()
    ensure_topics(kafka, tuple(topics), prefix)
    dlq = DeadLetterQueue(
        kafka, prefix=prefix, component=component, delivery_timeout_s=settings.producer_flush_timeout_s
    )
    return Surroundings(prefix, kafka, registry, mappings, dlq, settings.register_schemas)
