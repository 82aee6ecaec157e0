"""Both Faust apps' table changelog topics exist, compacted and with the table's partitions, before
their workers start (processors/faust_runtime/changelogs.py): a worker that creates them lazily can
stop with PartitionsMismatch on its first start."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from sfsync.processors.inbound.app import build_inbound_app
from sfsync.processors.inbound.settings import InboundProcessorSettings
from sfsync.processors.outbound.app import build_app
from sfsync.processors.outbound.settings import ProcessorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import CHANGES, IDENTITIES, RESULTS, WRITES


def _assert_compacted_changelogs(admin: AdminClient, names: dict[str, int]) -> None:
    topics = admin.list_topics(timeout=10).topics
    for name, partitions in names.items():
        assert name in topics and len(topics[name].partitions) == partitions, sorted(topics)[:20]
        (config,) = admin.describe_configs([ConfigResource("topic", name)]).values()
        assert config.result(10)["cleanup.policy"].value == "compact"
    admin.delete_topics(list(names))


def test_the_outbound_processor_creates_its_changelogs_before_it_starts(
    services: Any, prefix: str, registry: SchemaRegistry
) -> None:
    app_id = f"{prefix}processor-{uuid.uuid4().hex[:8]}"
    settings = ProcessorSettings.model_validate(
        {
            "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
            "SCHEMA_REGISTRY_URL": services.registry,
            "SFSYNC_TOPIC_PREFIX": prefix,
            "app_id": app_id,
        }
    )
    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    names = {
        f"{app_id}-record_clock-changelog": WRITES.partitions,
        f"{app_id}-identity-changelog": IDENTITIES.partitions,
    }
    assert not set(names) & set(admin.list_topics(timeout=10).topics)
    build_app(settings, registry=registry)  # built, never started
    _assert_compacted_changelogs(admin, names)


def test_the_inbound_app_creates_its_changelogs_before_it_starts(
    services: Any, prefix: str, registry: SchemaRegistry
) -> None:
    app_id = f"{prefix}inbound-{uuid.uuid4().hex[:8]}"
    settings = InboundProcessorSettings.model_validate(
        {
            "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
            "SCHEMA_REGISTRY_URL": services.registry,
            "SFSYNC_TOPIC_PREFIX": prefix,
            "app_id": app_id,
        }
    )
    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    names = {
        f"{app_id}-inbound_written-changelog": RESULTS.partitions,
        f"{app_id}-inbound_seen-changelog": CHANGES.partitions,
    }
    assert not set(names) & set(admin.list_topics(timeout=10).topics)
    build_inbound_app(settings, registry=registry)  # built, never started
    _assert_compacted_changelogs(admin, names)
