"""The outbound processor's tables and the topics that feed them are co-partitioned, or it does not start.

Its ``identity`` and ``record_clock`` tables are keyed by write key and fed by ``sfsync.identities``,
``sfsync.salesforce_edits`` and its own repartition topic of planned writes; a key is on the same
partition number of each only when they have one partition count. Built on a real broker, the app
takes that count from the topics that feed its tables, and refuses (a ConfigError naming every topic
and its count) when they, or a changelog or repartition topic left by an earlier run, differ.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from sfsync.errors import ConfigError
from sfsync.kafka.admin import ensure_topics, topic_partition_counts
from sfsync.processors.outbound.app import build_app
from sfsync.processors.outbound.settings import ProcessorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import IDENTITIES, SALESFORCE_EDITS, TopicSpec, planned_writes


def settings(services: Any, prefix: str) -> ProcessorSettings:
    return ProcessorSettings.model_validate(
        {
            "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
            "SCHEMA_REGISTRY_URL": services.registry,
            "SFSYNC_TOPIC_PREFIX": prefix,
            "app_id": f"{prefix}processor-{uuid.uuid4().hex[:8]}",  # its changelogs go with the test's topics
        }
    )


def with_partitions(spec: TopicSpec, partitions: int) -> TopicSpec:
    return TopicSpec(spec.base, spec.key_doc, partitions=partitions, config=spec.config)


def test_the_processor_gives_its_own_topics_the_partition_count_of_the_topics_that_feed_its_tables(
    services: Any, prefix: str, registry: SchemaRegistry
) -> None:
    kafka = {"bootstrap.servers": services.bootstrap}
    ensure_topics(kafka, [with_partitions(IDENTITIES, 4), with_partitions(SALESFORCE_EDITS, 4)], prefix)
    app_settings = settings(services, prefix)
    build_app(app_settings, registry=registry)  # built, never started
    app_id = app_settings.app_id
    counts = topic_partition_counts(kafka)
    own = [planned_writes(app_id, 0).name(prefix), f"{app_id}-record_clock-changelog", f"{app_id}-identity-changelog"]
    assert {name: counts.get(name) for name in own} == dict.fromkeys(own, 4)


def test_the_processor_refuses_to_start_when_the_topics_that_feed_its_tables_differ_in_partitions(
    services: Any, prefix: str, registry: SchemaRegistry
) -> None:
    kafka = {"bootstrap.servers": services.bootstrap}
    ensure_topics(kafka, [with_partitions(IDENTITIES, 6), with_partitions(SALESFORCE_EDITS, 12)], prefix)
    app_settings = settings(services, prefix)
    with pytest.raises(ConfigError) as caught:
        build_app(app_settings, registry=registry)
    message = str(caught.value)
    assert "the outbound processor needs these topics co-partitioned" in message
    assert f"{IDENTITIES.name(prefix)} has 6" in message and f"{SALESFORCE_EDITS.name(prefix)} has 12" in message
    assert planned_writes(app_settings.app_id, 0).name(prefix) not in topic_partition_counts(kafka)  # nothing made


def test_a_changelog_left_with_another_partition_count_stops_the_processor_before_it_starts(
    services: Any, prefix: str, registry: SchemaRegistry
) -> None:
    kafka = {"bootstrap.servers": services.bootstrap}
    app_settings = settings(services, prefix)
    changelog = f"{app_settings.app_id}-record_clock-changelog"
    ensure_topics(kafka, [TopicSpec(changelog, "record key", partitions=3, config={"cleanup.policy": "compact"})])
    with pytest.raises(ConfigError) as caught:
        build_app(app_settings, registry=registry)
    message = str(caught.value)
    assert f"{changelog} has 3" in message and f"{IDENTITIES.name(prefix)} has {IDENTITIES.partitions}" in message
