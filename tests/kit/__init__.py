"""The one test kit: fakes and builders every test suite shares (import them from here, never copy them).

Plain modules, no pytest fixtures: each test builds the fakes with the parameters it needs (a start
time, a tick, an error to inject) and keeps its own fixtures next to the tests that use them. A test
module imports what it shares with other test modules from the kit, never from another test module.

Exported here:

- ``clock``: clocks; ``kafka``: the confluent-kafka fakes (messages, consumer, producer, errors,
  cluster metadata); ``registry``: the in-memory schema registry, and one over real HTTP that a test can
  take away and bring back (``RegistryStandIn``);
- ``mappings``: mapping files built in tests, and the ones several suites share;
- ``salesforce``: the recorded Salesforce responses of ``tests/fixtures/salesforce``, and a fake OAuth token
  endpoint answering with them (``TokenEndpoint``, ``signed_success``), and how many TLS contexts the process
  holds (``tls_contexts``); ``org_faults``:
  faults around an org transport the emulator cannot inject itself (``FaultyOrg``).

Imported from their own modules (they load large parts of sfsync, which the modules above do not, and
some of their names are short, the way the tests that use them write them):

- ``tests.kit.events``: product events as sfsync's consumers decode them (``decoded``);
- ``tests.kit.sink``: ``sfsync.writes`` records (``write``, ``member``, ``planned_member``...) and a
  sink over the emulator;
- ``tests.kit.polling``: Salesforce query rows as the poller reads them (``row``, ``rid``, ``ms``);
- ``tests.kit.query_org``: the small org the emulator's SOQL and SOSL engines are tested on;
- ``tests.kit.outbound``: product events as the outbound processor decodes them (``decoded``, from
  ``tests.kit.events``), a processor over the in-memory registry (``ProcessorRig``).
- ``tests.kit.emulated_orgs``: the settings sfsync's Salesforce client logs in to one emulated org
  with, per OAuth flow, and a transport trusting the org's certificate.
- ``tests.kit.routing``: the sink's connection router over several emulated orgs in process and the
  workspace registry in memory (``RoutedRig``), writes moved to another workspace (``in_workspace``).
- ``tests.kit.leaks``: known secrets looked for in texts (``Secrets``), what the integration suite's secrets
  audit finds with.
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
from tests.kit.registry import FakeRegistry, RegistryStandIn
from tests.kit.salesforce import (
    RECORDED,
    TOKEN_CLIENT_SECRET,
    TOKEN_URL,
    TokenEndpoint,
    http_for,
    recorded_json,
    recorded_text,
    signed_success,
    tls_contexts,
)

__all__ = [
    "BAD_MAPPING",
    "BROKEN_MAPPING",
    "DEFAULT_ACTIVITY_TYPES",
    "EPOCH_2026",
    "RECORDED",
    "TOKEN_CLIENT_SECRET",
    "TOKEN_URL",
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
    "RegistryStandIn",
    "TokenEndpoint",
    "WallClock",
    "cluster_metadata",
    "eof",
    "fill",
    "http_for",
    "kafka_exception",
    "mappings_from",
    "members_yaml",
    "recent_minute",
    "recorded_json",
    "recorded_text",
    "signed_success",
    "tls_contexts",
    "write_mappings",
]
