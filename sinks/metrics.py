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
sfsync_batch_size                          histogram  -
sfsync_end_to_end_latency_seconds          histogram  - (occurred_at -> acknowledged)
sfsync_consumer_lag                        gauge      topic, partition
sfsync_dlq_records_total                   counter    mapping, code
sfsync_errors_total                        counter    category, code
=========================================  =========  ==================================
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from sfsync.errors import FatalError
from sfsync.salesforce.limits import ApiBudget

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 150, 200, 500, 1000, 2000, 5000, 10000)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

_VERSION = re.compile(r"^/?services/(data|async)/v\d+\.\d+/?")
_SF_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_HAS_DIGIT = re.compile(r"\d")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def endpoint_of(path: str) -> str:
    """A low-cardinality endpoint label for a Salesforce REST path.

    ``/services/data/v62.0/sobjects/Contact/003xx...`` -> ``sobjects/Contact/{id}``;
    ``/services/data/v62.0/composite/sobjects`` -> ``composite/sobjects``; query strings dropped.
    """
    path = path.split("?", 1)[0]
    path = _VERSION.sub("", path).strip("/")
    parts = []
    for part in path.split("/"):
        if _SF_ID.match(part) and _HAS_DIGIT.search(part):
            parts.append("{id}")
        elif part.isdigit():
            parts.append("{n}")
        else:
            parts.append(part)
    return "/".join(parts) or "/"


def lag_of(committed: int, low: int, high: int, reset: Literal["earliest", "latest"] = "earliest") -> int | None:
    """Records between ``committed`` (a group's committed offset, or a consumer's position) and the
    partition's end ``high``; None if the end is unknown.

    ``committed`` < 0 means the group committed nothing there yet: with ``earliest`` every record
    still retained is pending, with ``latest`` none is. A committed offset below the low watermark
    (records deleted by retention) counts from the low watermark, where the consumer resumes.
    """
    if high < 0:
        return None
    if committed < 0:
        return max(high - max(low, 0), 0) if reset == "earliest" else 0
    return max(high - max(committed, low), 0)


def consumer_lag_gauge(registry: CollectorRegistry) -> Gauge:
    """``sfsync_consumer_lag`` (topic, partition): one name, help and labels in every process that consumes."""
    return Gauge(
        "sfsync_consumer_lag", "Records behind the end of each partition.", ["topic", "partition"], registry=registry
    )


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

    def serve(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104 - a pod's metrics port
        """Serve ``/metrics`` on ``addr:port`` (0: any free port) in a daemon thread."""
        return serve_registry(self.registry, port, addr)


def serve_registry(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
    """Serve ``registry`` as ``/metrics`` on ``addr:port`` (0: any free port) in a daemon thread.

    Raises:
        FatalError: the port cannot be bound.
    """
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr, registry=registry)
    except OSError as exc:
        raise FatalError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from exc
    return MetricsServer(int(server.server_port), server, thread)


class MetricsServer:
    """A running ``/metrics`` endpoint: its ``port``, and ``stop()``."""

    def __init__(self, port: int, server: Any, thread: threading.Thread) -> None:
        self.port = port
        self._server = server
        self._thread = thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
