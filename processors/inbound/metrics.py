"""The inbound processor's Prometheus metrics, all in one place.

Names follow the Prometheus naming guide (``_total`` counters, ``_seconds`` durations, no record
ids in labels). One :class:`InboundMetrics` per process, on the default registry unless one is
injected (tests do); :meth:`InboundMetrics.serve` exposes ``/metrics`` over HTTP
(``SFSYNC_INBOUND_METRICS_PORT``).

=============================================  =========  ===========================================
name                                           kind       labels
=============================================  =========  ===========================================
sfsync_inbound_changes_in_total                counter    change_type (``unknown``: undecodable)
sfsync_inbound_results_in_total                counter    - (WriteResults folded into the state)
sfsync_inbound_records_out_total               counter    record (MemberFieldUpdate, ...)
sfsync_inbound_echoes_suppressed_total         counter    - (fields equal to what sfsync wrote)
sfsync_inbound_fields_dropped_total            counter    reason (unchanged, filtered, unlinked, ...)
sfsync_inbound_conflicts_total                 counter    policy, winner (product | salesforce)
sfsync_inbound_latency_seconds                 histogram  - (Salesforce modification -> update sent)
sfsync_inbound_dlq_records_total               counter    stage
sfsync_inbound_echo_holds_total                counter    outcome (covered: its result came; expired)
sfsync_inbound_echo_hold_seconds               histogram  - (how long a writer's change waited)
=============================================  =========  ===========================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from sfsync.ops.metrics import serve_registry
from sfsync.processors.inbound.values import millis
from sfsync.time import now_millis

if TYPE_CHECKING:
    from sfsync.ops.metrics import MetricsServer
    from sfsync.processors.inbound.state import Decision, SeenState, WrittenState

__all__ = ["LATENCY_BUCKETS", "InboundMetrics", "now_millis"]

LATENCY_BUCKETS = (0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)


class InboundMetrics:
    """The inbound processor's series; ``registry`` defaults to prometheus-client's global one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.changes_in = Counter(
            "sfsync_inbound_changes_in_total",
            "Salesforce changes consumed, by change type.",
            ["change_type"],
            registry=r,
        )
        self.results_in = Counter("sfsync_inbound_results_in_total", "WriteResults consumed.", registry=r)
        self.records_out = Counter(
            "sfsync_inbound_records_out_total", "Records sent to product.members.inbound.", ["record"], registry=r
        )
        self.echoes = Counter(
            "sfsync_inbound_echoes_suppressed_total", "Changed fields dropped as sfsync's own writes.", registry=r
        )
        self.dropped = Counter(
            "sfsync_inbound_fields_dropped_total", "Fields or records dropped, by reason.", ["reason"], registry=r
        )
        self.conflicts = Counter(
            "sfsync_inbound_conflicts_total",
            "Fields changed on both sides, by conflict policy and the side that won.",
            ["policy", "winner"],
            registry=r,
        )
        self.latency = Histogram(
            "sfsync_inbound_latency_seconds",
            "From the Salesforce modification (SystemModstamp) to the update being sent.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dlq_records = Counter(
            "sfsync_inbound_dlq_records_total",
            "Records parked in the DLQ by the inbound processor.",
            ["stage"],
            registry=r,
        )
        self.echo_holds = Counter(
            "sfsync_inbound_echo_holds_total",
            "Changes by the user sfsync writes as that waited for their WriteResult, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.echo_hold = Histogram(
            "sfsync_inbound_echo_hold_seconds",
            "How long such a change waited for its WriteResult.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def held(self, seconds: float, *, covered: bool) -> None:
        """A change of sfsync's writer waited ``seconds`` for its WriteResult (``covered``: it came)."""
        self.echo_holds.labels(outcome="covered" if covered else "expired").inc()
        self.echo_hold.observe(seconds)

    def decided(self, change_type: str | None, decision: Decision[SeenState] | None, now_ms: int | None = None) -> None:
        """One change: its type and what the rules made of it (None: it could not be decoded)."""
        self.changes_in.labels(change_type=change_type or "unknown").inc()
        if decision is not None:
            self._observe(decision, now_ms)

    def result(self, decision: Decision[WrittenState] | None) -> None:
        self.results_in.inc()
        if decision is not None:
            self._observe(decision, None)

    def _observe(self, decision: Decision[SeenState] | Decision[WrittenState], now_ms: int | None) -> None:
        for output in decision.outputs:
            self.records_out.labels(record=output.record).inc()
            if now_ms is not None and output.record == "MemberFieldUpdate" and "system_modstamp" in output.value:
                modstamp = millis(output.value["system_modstamp"])
                if modstamp is not None:
                    self.latency.observe(max(now_ms - modstamp, 0) / 1000)
        for reason, n in decision.dropped.items():
            if reason == "echo":
                self.echoes.inc(n)
            elif not reason.startswith("conflict:"):
                self.dropped.labels(reason=reason).inc(n)
        for policy, winner in decision.conflicts:
            self.conflicts.labels(policy=policy, winner=winner).inc()

    def parked(self, stage: str) -> None:
        self.dlq_records.labels(stage=str(stage)).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104 - a pod's metrics port
        """Serve ``/metrics`` on ``addr:port`` (0: any free port) in a daemon thread (FatalError if it cannot)."""
        return serve_registry(self.registry, port, addr)
