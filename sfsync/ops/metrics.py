"""Metrics pieces every process shares: the ``/metrics`` server, consumer lag, bucket bounds.

Each component keeps its own series in its own module (``sinks/metrics.py``,
``processors/outbound/metrics.py``, ...); what the operations pieces (DLQ, error log) count goes
through the two small protocols here, so they need no component's metrics class.
"""

from __future__ import annotations

import threading
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from sfsync.errors import FatalError

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 150, 200, 500, 1000, 2000, 5000, 10000)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ParkedCounter(Protocol):
    """Counts the records the DLQ parks (``sfsync_dlq_records_total``)."""

    def parked(self, mapping: str, code: str) -> None: ...


class ErrorCounter(Protocol):
    """Counts the entries the error log writes (``sfsync_errors_total``)."""

    def error(self, category: str, code: str) -> None: ...


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


def serve_registry(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
    """Serve ``registry`` as ``/metrics`` on ``addr:port`` (0: any free port) in a daemon thread.

    Raises:
        FatalError: the port cannot be bound.
    """
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
