"""The sink's Prometheus metrics: names, labels without ids, the /metrics endpoint."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

from prometheus_client import CollectorRegistry

from sfsync.salesforce.limits import ApiBudget, endpoint_of
from sfsync.sinks.contract import BatchOutcome, IncomingWrite
from sfsync.sinks.metrics import SinkMetrics
from tests.kit.sink import TOPIC, member, runner_without_kafka

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def test_endpoint_labels_carry_no_record_ids() -> None:
    assert endpoint_of("/services/data/v62.0/sobjects/Contact/003000000000001AAA") == "sobjects/Contact/{id}"
    assert endpoint_of("/services/data/v62.0/composite/sobjects?allOrNone=false") == "composite/sobjects"
    assert endpoint_of("/services/data/v62.0/query?q=SELECT+Id") == "query"
    assert endpoint_of("/services/data/v62.0/sobjects/Contact/describe") == "sobjects/Contact/describe"
    assert endpoint_of("/services/data/v62.0/jobs/ingest/7505e000000AbCdAAK/batches") == "jobs/ingest/{id}/batches"


def test_series_are_recorded_under_their_names() -> None:
    registry = CollectorRegistry()
    m = SinkMetrics(registry)
    m.event_in("UserCreated", 3)
    m.write("Contact", "created", 2)
    m.api_call("/services/data/v62.0/composite/sobjects")
    m.observe_budget(ApiBudget(250, 1000, T0))
    m.batch(200)
    assert m.acknowledged(T0, now=T0 + dt.timedelta(seconds=2.5)) == 2.5
    assert m.acknowledged(T0, now=T0 - dt.timedelta(seconds=1)) == 0.0  # clock skew is not negative latency
    m.lag("product.members", 3, 42)
    m.parked("members", "REQUIRED_FIELD_MISSING")
    m.error("SYNC", "REQUIRED_FIELD_MISSING")
    get = registry.get_sample_value
    assert get("sfsync_events_in_total", {"event_type": "UserCreated"}) == 3
    assert get("sfsync_writes_total", {"sobject": "Contact", "outcome": "created"}) == 2
    assert get("sfsync_salesforce_api_calls_total", {"endpoint": "composite/sobjects"}) == 1
    assert get("sfsync_salesforce_api_usage_ratio") == 0.25
    assert get("sfsync_batch_size_count") == 1
    assert get("sfsync_batch_size_sum") == 200
    assert get("sfsync_end_to_end_latency_seconds_count") == 2
    assert get("sfsync_end_to_end_latency_seconds_bucket", {"le": "2.5"}) == 2
    assert get("sfsync_consumer_lag", {"topic": "product.members", "partition": "3"}) == 42
    assert get("sfsync_dlq_records_total", {"mapping": "members", "code": "REQUIRED_FIELD_MISSING"}) == 1
    assert get("sfsync_errors_total", {"category": "SYNC", "code": "REQUIRED_FIELD_MISSING"}) == 1


def test_lag_from_librdkafka_statistics_skips_unknown_partitions() -> None:
    registry = CollectorRegistry()
    m = SinkMetrics(registry)
    stats = {"topics": {"sfsync.writes": {"partitions": {"0": {"consumer_lag": 7}, "-1": {"consumer_lag": 99}}}}}
    m.lag_from_stats(json.dumps(stats))
    assert registry.get_sample_value("sfsync_consumer_lag", {"topic": "sfsync.writes", "partition": "0"}) == 7
    assert registry.get_sample_value("sfsync_consumer_lag", {"topic": "sfsync.writes", "partition": "-1"}) is None


def test_serve_exposes_metrics_over_http() -> None:
    m = SinkMetrics(CollectorRegistry())
    m.parked("members", "STRING_TOO_LONG")
    server = m.serve(0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.stop()
    assert 'sfsync_dlq_records_total{code="STRING_TOO_LONG",mapping="members"} 1.0' in body


def test_connections_held_are_counted_by_cause_with_no_connection_or_workspace_label() -> None:
    registry = CollectorRegistry()
    m = SinkMetrics(registry)
    m.connections_held({"org_down": 2, "credentials": 0, "budget": 1})
    get = registry.get_sample_value
    assert get("sfsync_sink_connections_held", {"cause": "org_down"}) == 2
    assert get("sfsync_sink_connections_held", {"cause": "budget"}) == 1
    labels = {name for metric in registry.collect() for sample in metric.samples for name in sample.labels}
    assert not labels & {"workspace", "workspace_id", "connection", "connection_id", "org"}


def test_a_write_carried_from_batch_to_batch_is_counted_in_once() -> None:
    metrics = SinkMetrics(CollectorRegistry())
    runner = runner_without_kafka(metrics)
    held, fresh = IncomingWrite(member(1), TOPIC, 0, 0), IncomingWrite(member(2), TOPIC, 0, 1)
    runner.after_batch([held], BatchOutcome(pending=[held]))
    runner.after_batch([held, fresh], BatchOutcome(pending=[held]))  # its org is down: carried again
    runner.after_batch([held], BatchOutcome())
    assert metrics.registry.get_sample_value("sfsync_events_in_total", {"event_type": "UserCreated"}) == 2
