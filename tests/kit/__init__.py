"""The one test kit: fakes and builders every test suite shares (import them from here, never copy them).

Plain modules, no pytest fixtures: each test builds the fakes with the parameters it needs (a start
time, a tick, an error to inject) and keeps its own fixtures next to the tests that use them.

- ``clock``: clocks; ``kafka``: the confluent-kafka fakes; ``registry``: the in-memory schema registry;
  ``mappings``: mapping files (and the ones several suites share); ``salesforce``: the recorded
  Salesforce responses; ``outbound``: product events as the outbound processor decodes them, a
  processor over the in-memory registry;
- ``sink``: ``sfsync.writes`` records and a sink over the emulator (its constants, ``T0``, ``TOPIC``,
  ``INSTANCE``, are imported from ``tests.kit.sink``).

A test module imports shared helpers from here, never from another test module.
"""

from __future__ import annotations

from tests.kit.clock import EPOCH_2026, Clock, EpochClock, WallClock, recent_minute
from tests.kit.kafka import (
    FakeClusterMetadata,
    FakeConsumer,
    FakeMessage,
    FakePartitionMetadata,
    FakeProducer,
    FakeTopicMetadata,
    cluster_metadata,
    eof,
    kafka_exception,
)
from tests.kit.mappings import (
    BAD_MAPPING,
    BROKEN_MAPPING,
    DEFAULT_ACTIVITY_TYPES,
    fill,
    mappings_from,
    members_yaml,
    write_mappings,
)
from tests.kit.org_faults import FaultyOrg
from tests.kit.outbound import MEMBERS_TOPIC, ProcessorRig, decoded, user_created
from tests.kit.registry import FakeRegistry
from tests.kit.salesforce import RECORDED, recorded_json, recorded_text
from tests.kit.sink import Recorder, campaign, fv, make_sink, member, registration, write

__all__ = [
    "BAD_MAPPING",
    "BROKEN_MAPPING",
    "DEFAULT_ACTIVITY_TYPES",
    "EPOCH_2026",
    "MEMBERS_TOPIC",
    "RECORDED",
    "Clock",
    "EpochClock",
    "FakeClusterMetadata",
    "FakeConsumer",
    "FakeMessage",
    "FakePartitionMetadata",
    "FakeProducer",
    "FakeRegistry",
    "FakeTopicMetadata",
    "FaultyOrg",
    "ProcessorRig",
    "Recorder",
    "WallClock",
    "campaign",
    "cluster_metadata",
    "decoded",
    "eof",
    "fill",
    "fv",
    "kafka_exception",
    "make_sink",
    "mappings_from",
    "member",
    "members_yaml",
    "recent_minute",
    "recorded_json",
    "recorded_text",
    "registration",
    "user_created",
    "write",
    "write_mappings",
]
