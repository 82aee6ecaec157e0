"""The processor's Prometheus metrics: names and labels, what Processor.handle feeds them, lag rules, /metrics."""

from __future__ import annotations

import copy
import socket
import urllib.request
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from sfsync.errors import ConfigError, FatalError
from sfsync.ops.dlq import Stage
from sfsync.processors.outbound.metrics import LagProbe, ProcessorMetrics, lag_of
from sfsync.processors.outbound.settings import ProcessorSettings
from sfsync.settings import load
from tests.kit.outbound import ProcessorRig, user_created


def test_series_are_recorded_under_their_names() -> None:
    registry = CollectorRegistry()
    m = ProcessorMetrics(registry)
    m.handled("UserCreated", ["Contact", "Activity__c", "Contact"], ["Lead"], 0.003)
    m.handled("ForumPost", [], [], -1.0)  # a clock step back is not a negative duration
    m.parked(Stage.TRANSFORMATION)
    m.identity_learnt("Contact")
    m.lag("product.members", 3, 42)
    m.lag("product.members", 4, -5)  # never negative
    get = registry.get_sample_value
    assert get("sfsync_processor_events_in_total", {"event_type": "UserCreated"}) == 1
    assert get("sfsync_processor_events_in_total", {"event_type": "ForumPost"}) == 1
    assert get("sfsync_processor_writes_planned_total", {"sobject": "Contact"}) == 2
    assert get("sfsync_processor_writes_planned_total", {"sobject": "Activity__c"}) == 1
    assert get("sfsync_processor_stale_writes_dropped_total", {"sobject": "Lead"}) == 1
    assert get("sfsync_processor_dlq_records_total", {"stage": "TRANSFORMATION"}) == 1
    assert get("sfsync_processor_identities_learnt_total", {"sobject": "Contact"}) == 1
    assert get("sfsync_processor_planning_seconds_count") == 2
    assert get("sfsync_processor_planning_seconds_bucket", {"le": "0.005"}) == 2
    assert get("sfsync_processor_planning_seconds_sum") == pytest.approx(0.003)
    assert get("sfsync_consumer_lag", {"topic": "product.members", "partition": "3"}) == 42
    assert get("sfsync_consumer_lag", {"topic": "product.members", "partition": "4"}) == 0


def test_set_lags_drops_partitions_this_worker_no_longer_holds() -> None:
    registry = CollectorRegistry()
    m = ProcessorMetrics(registry)
    m.set_lags({("product.members", 0): 5, ("product.members", 1): 7})
    m.set_lags({("product.members", 1): 0, ("sfsync.results", 2): 3})
    get = registry.get_sample_value
    assert get("sfsync_consumer_lag", {"topic": "product.members", "partition": "0"}) is None
    assert get("sfsync_consumer_lag", {"topic": "product.members", "partition": "1"}) == 0
    assert get("sfsync_consumer_lag", {"topic": "sfsync.results", "partition": "2"}) == 3


def test_lag_counts_from_the_committed_offset_or_from_where_a_reset_would_start() -> None:
    assert lag_of(committed=10, low=0, high=25) == 15
    assert lag_of(committed=25, low=0, high=25) == 0
    assert lag_of(committed=3, low=8, high=20) == 12  # retention deleted 3..7: the consumer resumes at 8
    assert lag_of(committed=-1001, low=4, high=20) == 16  # nothing committed, earliest: all retained records
    assert lag_of(committed=-1001, low=4, high=20, reset="latest") == 0
    assert lag_of(committed=-1001, low=0, high=0) == 0  # an empty partition
    assert lag_of(committed=5, low=-1, high=-1) is None  # end unknown


def test_handle_feeds_events_writes_stale_and_planning_time() -> None:
    registry = CollectorRegistry()
    rig = ProcessorRig()
    rig.processor.metrics = ProcessorMetrics(registry)
    newer = user_created()
    older = copy.deepcopy(newer)
    older["event_id"] = "00000000-0000-4000-8000-000000000001"
    older["occurred_at"] = newer["occurred_at"] - 60_000
    first = rig.handle(rig.members.encode_checked("UserCreated", newer), 1)
    late = rig.handle(rig.members.encode_checked("UserCreated", older), 2)
    junk = rig.handle(b"\x07junk", 3)
    assert junk.parked and not junk.writes

    get = registry.get_sample_value
    sent = Counter(str(w["sobject"]) for w in [*first.planned, *late.planned])
    assert len(sent) == 2 and sum(sent.values()) == 3  # person + activity, then the late event's activity only
    for sobject, n in sent.items():
        assert get("sfsync_processor_writes_planned_total", {"sobject": sobject}) == n
    person = str(first.planned[0]["sobject"])
    assert get("sfsync_processor_stale_writes_dropped_total", {"sobject": person}) == 1
    assert get("sfsync_processor_events_in_total", {"event_type": "UserCreated"}) == 2
    assert get("sfsync_processor_events_in_total", {"event_type": "unknown"}) == 1
    assert get("sfsync_processor_planning_seconds_count") == 3
    assert rig.processor.counts == {"events": 3, "writes": 3, "stale": 1, "parked": 1, "unmapped": 0}


def test_serve_exposes_metrics_over_http_and_a_taken_port_is_fatal() -> None:
    m = ProcessorMetrics(CollectorRegistry())
    m.handled("EventRegistration", ["CampaignMember"], [], 0.001)
    server = m.serve(0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
        with pytest.raises(FatalError, match="cannot serve metrics"):
            ProcessorMetrics(CollectorRegistry()).serve(server.port, "127.0.0.1")
    finally:
        server.stop()
    assert 'sfsync_processor_events_in_total{event_type="EventRegistration"} 1.0' in body
    assert 'sfsync_processor_writes_planned_total{sobject="CampaignMember"} 1.0' in body


def test_the_lag_probe_reports_nothing_when_kafka_does_not_answer() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    probe = LagProbe({"bootstrap.servers": f"127.0.0.1:{port}"}, "g", timeout_s=0.5)
    try:
        assert probe.measure([("product.members", 0)]) is None
    finally:
        probe.close()
    assert probe.measure([("product.members", 0)]) is None  # closed


def test_metrics_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFSYNC_PROCESSOR_METRICS_PORT", raising=False)
    assert ProcessorSettings().metrics_port == 9465
    assert ProcessorSettings(metrics_port=0).metrics_port == 0  # off
    monkeypatch.setenv("SFSYNC_PROCESSOR_METRICS_PORT", "70000")
    monkeypatch.setenv("SFSYNC_PROCESSOR_LAG_INTERVAL_S", "0")
    with pytest.raises(ConfigError) as caught:
        load(ProcessorSettings, "processor")
    assert "METRICS_PORT" in str(caught.value).upper() and "LAG_INTERVAL_S" in str(caught.value).upper()
