"""The Salesforce sink's Prometheus metrics, all in one place.

Names follow the Prometheus naming guide (``_total`` counters, ``_seconds`` durations, no record
ids in labels). One :class:`SinkMetrics` per process, on the default registry unless one is
injected (tests do); :meth:`SinkMetrics.serve` exposes ``/metrics`` over HTTP.

=========================================  =========  ==================================
name                                       kind       labels
=========================================  =========  ==================================
sfsync_events_in_total                     counter    event_type
sfsync_writes_total                        counter    sobject, outcome
sfsync_salesforce_api_calls_total          counter    endpoint
sfsync_salesforce_api_usage_ratio          gauge      -
sfsync_sink_budget_paused                  gauge      - (1 while the API budget's pause holds the writes)
sfsync_sink_connections_held               gauge      cause (org_down, credentials, refused, budget, workspace)
sfsync_batch_size                          histogram  -
sfsync_end_to_end_latency_seconds          histogram  - (occurred_at -> acknowledged)
sfsync_consumer_lag                        gauge      topic, partition
sfsync_dlq_records_total                   counter    mapping, code
sfsync_errors_total                        counter    category, code
sfsync_mapping_quarantined                 gauge      mapping (1: quarantined for drift, 0: not)
=========================================  =========  ==================================

Mapping names are bounded by the mapping file: a gauge per mapping, set when one first enters quarantine.
No series has a workspace or connection label (their number is the customers'): how many connections are
held is counted by cause; which ones, the error log says (decision 0009).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from sfsync.ops.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, MetricsServer, consumer_lag_gauge, serve_registry
from sfsync.salesforce.limits import ApiBudget, endpoint_of

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class SinkMetrics:
    """The sink's series; ``registry`` defaults to prometheus-client's global one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.events_in = Counter(
            "sfsync_events_in_total", "Records consumed by the sink, by event type.", ["event_type"], registry=r
        )
        self.writes = Counter(
            "sfsync_writes_total",
            "Salesforce record writes by object and outcome (created, updated, deleted, parked, skipped, failed).",
            ["sobject", "outcome"],
            registry=r,
        )
        self.api_calls = Counter(
            "sfsync_salesforce_api_calls_total", "Salesforce API calls by endpoint.", ["endpoint"], registry=r
        )
        self.api_usage_ratio = Gauge(
            "sfsync_salesforce_api_usage_ratio",
            "Share of the org's daily API allocation used, from the newest Sforce-Limit-Info.",
            registry=r,
        )
        self.budget_paused_gauge = Gauge(
            "sfsync_sink_budget_paused",
            "1 while the sink waits out the Salesforce API governor's pause (its partitions paused, its writes "
            "carried, the consumer still polling), else 0.",
            registry=r,
        )
        self.connections_held_gauge = Gauge(
            "sfsync_sink_connections_held",
            "Connections whose writes wait (carried, uncommitted), by cause: org_down (the org answers no call), "
            "credentials (the login is refused, or the connection cannot be opened), refused (the org refuses the "
            "integration), budget (its API budget is paused), workspace (one of its workspaces is PAUSED or "
            "DISCONNECTED).",
            ["cause"],
            registry=r,
        )
        self.batch_size = Histogram(
            "sfsync_batch_size", "Records per Salesforce write batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.end_to_end_latency = Histogram(
            "sfsync_end_to_end_latency_seconds",
            "From the product event's occurred_at to Salesforce's acknowledgement of the write.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = consumer_lag_gauge(r)
        self.dlq_records = Counter(
            "sfsync_dlq_records_total", "Records parked in the DLQ.", ["mapping", "code"], registry=r
        )
        self.errors = Counter("sfsync_errors_total", "Error-log entries written.", ["category", "code"], registry=r)
        self.mapping_quarantined = Gauge(
            "sfsync_mapping_quarantined",
            "1 while a mapping is quarantined (a field or permission it uses was removed from the org), else 0.",
            ["mapping"],
            registry=r,
        )

    # the sink calls these
    def event_in(self, event_type: str, n: int = 1) -> None:
        self.events_in.labels(event_type=event_type).inc(n)

    def write(self, sobject: str, outcome: str, n: int = 1) -> None:
        self.writes.labels(sobject=sobject, outcome=outcome).inc(n)

    def api_call(self, path_or_endpoint: str) -> None:
        """Count one call; a full path is reduced with :func:`endpoint_of`."""
        self.api_calls.labels(endpoint=endpoint_of(path_or_endpoint)).inc()

    def observe_budget(self, budget: ApiBudget | None) -> None:
        if budget is not None:
            self.api_usage_ratio.set(budget.ratio)

    def budget_paused(self, paused: bool) -> None:
        """Whether the API budget's pause holds writes now (of any connection)."""
        self.budget_paused_gauge.set(1 if paused else 0)

    def connections_held(self, by_cause: Mapping[str, int]) -> None:
        """How many connections are held now, by cause (every cause given is set, 0 included)."""
        for cause, count in by_cause.items():
            self.connections_held_gauge.labels(cause=str(cause)).set(count)

    def batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def acknowledged(self, occurred_at: dt.datetime | int, now: dt.datetime | None = None) -> float:
        """Observe the end-to-end latency of one write; returns it in seconds (never negative).

        ``occurred_at``: a datetime (naive ones are UTC) or epoch milliseconds (as the sink decodes it).
        """
        now = now or dt.datetime.now(dt.UTC)
        if isinstance(occurred_at, dt.datetime):
            aware = occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=dt.UTC)
            seconds = (now - aware).total_seconds()
        else:
            seconds = (now - _EPOCH).total_seconds() - occurred_at / 1000
        seconds = max(seconds, 0.0)
        self.end_to_end_latency.observe(seconds)
        return seconds

    def lag(self, topic: str, partition: int, records: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(records, 0))

    def lag_from_stats(self, stats_json: str) -> None:
        """Update consumer lag from librdkafka statistics (``stats_cb``, ``statistics.interval.ms``)."""
        stats: dict[str, Any] = json.loads(stats_json)
        for topic, tstats in (stats.get("topics") or {}).items():
            for part, pstats in (tstats.get("partitions") or {}).items():
                lag = pstats.get("consumer_lag")
                if part.lstrip("-").isdigit() and int(part) >= 0 and isinstance(lag, int) and lag >= 0:
                    self.lag(topic, int(part), lag)

    def parked(self, mapping: str, code: str) -> None:
        self.dlq_records.labels(mapping=mapping, code=code).inc()

    def error(self, category: str, code: str) -> None:
        self.errors.labels(category=str(category), code=code).inc()

    def quarantined(self, mapping: str, on: bool) -> None:
        """A mapping entered (``on``) or left quarantine (the sink's ``on_quarantine``)."""
        self.mapping_quarantined.labels(mapping=mapping).set(1 if on else 0)

    def serve(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104 - a pod's metrics port
        """Serve ``/metrics`` on ``addr:port`` (0: any free port) in a daemon thread."""
        return serve_registry(self.registry, port, addr)
