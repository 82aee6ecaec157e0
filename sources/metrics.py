"""The poller's Prometheus metrics, all in one place (one :class:`SourceMetrics` per process).

=============================================  =========  ==================================
name                                           kind       labels
=============================================  =========  ==================================
sfsync_poller_poll_duration_seconds            histogram  sobject
sfsync_poller_records_per_poll                 histogram  sobject (rows read by one poll)
sfsync_poller_changes_total                    counter    sobject, change_type
sfsync_poller_cursor_lag_seconds               gauge      sobject (now - checkpoint cursor)
sfsync_poller_inbound_latency_seconds          histogram  - (SystemModstamp -> produced)
sfsync_salesforce_api_calls_total              counter    endpoint
sfsync_poller_assigned_objects                 gauge      -
sfsync_poller_quarantined                      gauge      sobject (1: polls quarantined for drift)
sfsync_poller_orgs                             gauge      - (orgs this replica polls, with the registry)
sfsync_poller_orgs_held                        gauge      cause (orgs not polled for a while, and why)
=============================================  =========  ==================================
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sfsync.errors import FatalError
from sfsync.ops.metrics import LATENCY_BUCKETS, MetricsServer
from sfsync.salesforce.limits import endpoint_of

RECORD_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class SourceMetrics:
    """The poller's series; ``registry`` defaults to prometheus-client's global one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.poll_duration = Histogram(
            "sfsync_poller_poll_duration_seconds",
            "One poll of one object (every page).",
            ["sobject"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.records_per_poll = Histogram(
            "sfsync_poller_records_per_poll", "Rows read by one poll.", ["sobject"], buckets=RECORD_BUCKETS, registry=r
        )
        self.changes = Counter(
            "sfsync_poller_changes_total",
            "Changes produced to salesforce.changes.",
            ["sobject", "change_type"],
            registry=r,
        )
        self.cursor_lag = Gauge(
            "sfsync_poller_cursor_lag_seconds",
            "Now minus the checkpoint's SystemModstamp cursor.",
            ["sobject"],
            registry=r,
        )
        self.inbound_latency = Histogram(
            "sfsync_poller_inbound_latency_seconds",
            "From a change's SystemModstamp to its commit in salesforce.changes.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.api_calls = Counter(
            "sfsync_salesforce_api_calls_total", "Salesforce API calls by endpoint.", ["endpoint"], registry=r
        )
        self.assigned = Gauge("sfsync_poller_assigned_objects", "Objects this replica polls.", registry=r)
        self.quarantined = Gauge(
            "sfsync_poller_quarantined",
            "1 while an object's polls are quarantined (a field it selects, or access to it, removed), else 0.",
            ["sobject"],
            registry=r,
        )

        self.orgs = Gauge(
            "sfsync_poller_orgs",
            "Orgs (connections) this replica polls, with the workspace registry; no series names one.",
            registry=r,
        )
        self.orgs_held = Gauge(
            "sfsync_poller_orgs_held",
            "Orgs not polled for a while (org_down, credentials, refused, mapping); which ones: sfsync.errors.",
            ["cause"],
            registry=r,
        )

    def api_call(self, path: str) -> None:
        self.api_calls.labels(endpoint=endpoint_of(path)).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104 - a pod's metrics port
        """Serve ``/metrics`` on ``addr:port`` (0: any free port) in a daemon thread."""
        try:
            server, thread = start_http_server(port, addr, registry=self.registry)
        except OSError as exc:
            raise FatalError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from exc
        return MetricsServer(int(server.server_port), server, thread)
