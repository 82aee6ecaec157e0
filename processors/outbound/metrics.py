"""The outbound processor's Prometheus metrics, all in one place.

Names follow the Prometheus naming guide (``_total`` counters, ``_seconds`` durations, no record
ids in labels). One :class:`ProcessorMetrics` per process, on the default registry unless one is
injected (tests do); :meth:`ProcessorMetrics.serve` exposes ``/metrics`` over HTTP
(``SFSYNC_PROCESSOR_METRICS_PORT``, apart from Faust's own web server). Series the sink also has
(``sfsync_consumer_lag``) keep the sink's name and labels: each process serves its own ``/metrics``.

=============================================  =========  ===================================
name                                           kind       labels
=============================================  =========  ===================================
sfsync_processor_events_in_total               counter    event_type (``unknown``: undecodable)
sfsync_processor_events_unmapped_total         counter    event_type (no enabled mapping acts on it)
sfsync_processor_writes_planned_total          counter    sobject (sent to ``sfsync.writes``)
sfsync_processor_stale_writes_dropped_total    counter    sobject (older than the record's clock)
sfsync_processor_dlq_records_total             counter    stage (VALUE_CONVERTER, TRANSFORMATION, KAFKA_PRODUCE)
sfsync_processor_planning_seconds              histogram  - (decode -> plan -> encode, per event)
sfsync_processor_identities_learnt_total       counter    sobject (new or changed identities)
sfsync_consumer_lag                            gauge      topic, partition
=============================================  =========  ===================================

Consumer lag is the group's *committed* offset against the partition's end offset, for the
partitions assigned to this worker (:class:`LagProbe`, every ``SFSYNC_PROCESSOR_LAG_INTERVAL_S``).
Committed, not fetched: Faust prefetches records into its buffers, so its consumer position runs
ahead of what is processed; the committed offset is where a restart resumes, which is what an
operator means by lag. The probe is a separate confluent-kafka consumer that never subscribes (so
it never joins the group) and only reads the group's committed offsets and the watermarks: one
OffsetFetch and one ListOffsets per partition each interval, off the event loop. A partition where
the group committed nothing yet counts every retained record (``auto_offset_reset=earliest``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from sfsync.errors import SfsyncError
from sfsync.kafka.clients import KafkaConsumer, TopicPartition, new_consumer
from sfsync.ops.metrics import MetricsServer, consumer_lag_gauge, lag_of, serve_registry

__all__ = ["PLANNING_BUCKETS", "LagProbe", "ProcessorMetrics", "lag_of"]

log = logging.getLogger(__name__)

PLANNING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

Partition = tuple[str, int]
"""(topic, partition)."""


class ProcessorMetrics:
    """The processor's series; ``registry`` defaults to prometheus-client's global one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        r = self.registry
        self.events_in = Counter(
            "sfsync_processor_events_in_total", "Product records consumed, by event type.", ["event_type"], registry=r
        )
        self.events_unmapped = Counter(
            "sfsync_processor_events_unmapped_total",
            "Product records of a type no enabled mapping acts on (they cause no write), by event type.",
            ["event_type"],
            registry=r,
        )
        self.writes_planned = Counter(
            "sfsync_processor_writes_planned_total",
            "Writes planned and sent to sfsync.writes, by Salesforce object.",
            ["sobject"],
            registry=r,
        )
        self.stale_writes = Counter(
            "sfsync_processor_stale_writes_dropped_total",
            "Planned writes dropped because every field was older than the record's clock.",
            ["sobject"],
            registry=r,
        )
        self.dlq_records = Counter(
            "sfsync_processor_dlq_records_total", "Records parked in the DLQ by the processor.", ["stage"], registry=r
        )
        self.planning = Histogram(
            "sfsync_processor_planning_seconds",
            "Time to decode, plan and encode one product record.",
            buckets=PLANNING_BUCKETS,
            registry=r,
        )
        self.identities = Counter(
            "sfsync_processor_identities_learnt_total",
            "Identities (record key -> Salesforce id) learnt from sfsync.identities, new or changed.",
            ["sobject"],
            registry=r,
        )
        self.consumer_lag = consumer_lag_gauge(r)
        self._lag_seen: set[Partition] = set()
        self._lock = threading.Lock()
        # labelled children, looked up once per label value: ``labels()`` costs more than ``inc()`` itself
        self._events_in: dict[str, Any] = {}
        self._planned: dict[str, Any] = {}
        self._stale: dict[str, Any] = {}

    # Processor.handle calls this once per record: keep it cheap
    def handled(self, event_type: str, written: Iterable[str], stale: Iterable[str], seconds: float) -> None:
        """One product record: its type, the objects of the writes sent and of those dropped as stale
        (none yet when its writes are ordered later: :meth:`settled`), the time it took."""
        child = self._events_in.get(event_type)
        if child is None:
            child = self._events_in[event_type] = self.events_in.labels(event_type=event_type)
        child.inc()
        self.settled(written, stale)
        self.planning.observe(seconds if seconds > 0.0 else 0.0)

    def settled(self, written: Iterable[str], stale: Iterable[str]) -> None:
        """Planned writes ordered against their records: the objects of those sent to ``sfsync.writes``
        and of those dropped as stale."""
        planned = self._planned
        for sobject in written:
            child = planned.get(sobject)
            if child is None:
                child = planned[sobject] = self.writes_planned.labels(sobject=sobject)
            child.inc()
        for sobject in stale:
            child = self._stale.get(sobject)
            if child is None:
                child = self._stale[sobject] = self.stale_writes.labels(sobject=sobject)
            child.inc()

    def unmapped(self, event_type: str) -> None:
        """One product record of a type no enabled mapping acts on."""
        self.events_unmapped.labels(event_type=event_type).inc()

    def parked(self, stage: str) -> None:
        self.dlq_records.labels(stage=str(stage)).inc()

    def identity_learnt(self, sobject: str) -> None:
        self.identities.labels(sobject=sobject).inc()

    def lag(self, topic: str, partition: int, records: int) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(records, 0))

    def set_lags(self, lags: Mapping[Partition, int]) -> None:
        """Replace the lag series: partitions no longer assigned to this worker disappear."""
        with self._lock:
            for topic, partition in self._lag_seen - set(lags):
                self.consumer_lag.remove(topic, str(partition))
            for (topic, partition), records in lags.items():
                self.lag(topic, partition, records)
            self._lag_seen = set(lags)

    def serve(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104 - a pod's metrics port
        """Serve ``/metrics`` on ``addr:port`` (0: any free port) in a daemon thread (FatalError if it cannot)."""
        return serve_registry(self.registry, port, addr)


class LagProbe:
    """Reads a consumer group's committed offsets and the end offsets of partitions (blocking calls).

    Uses a consumer (:func:`sfsync.kafka.clients.new_consumer`) that never subscribes, so it never
    joins the group. Call :meth:`measure` from a thread (``asyncio.to_thread``); :meth:`close` when done.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        group_id: str,
        *,
        reset: Literal["earliest", "latest"] = "earliest",
        timeout_s: float = 5.0,
    ) -> None:
        self._kafka_config = dict(kafka_config)
        self._group_id = group_id
        self._reset: Literal["earliest", "latest"] = reset
        self._timeout_s = timeout_s
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._closed = False

    def measure(self, partitions: Iterable[Partition]) -> dict[Partition, int] | None:
        """Lag per partition; None when Kafka did not answer (logged; metrics never stop the processor)."""
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        with self._lock:
            if self._closed:
                return None
            try:
                if self._consumer is None:
                    self._consumer = new_consumer(self._kafka_config, self._group_id)
                consumer = self._consumer
                lags: dict[Partition, int] = {}
                if not wanted:
                    return lags
                for tp in consumer.committed(wanted, timeout=self._timeout_s):
                    if tp.error is not None:
                        continue
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(tp.topic, tp.partition), timeout=self._timeout_s, cached=False
                    )
                    lag = lag_of(tp.offset, low, high, self._reset)
                    if lag is not None:
                        lags[(tp.topic, tp.partition)] = lag
                return lags
            except (SfsyncError, RuntimeError) as exc:
                log.debug("consumer lag not observed: %s", exc)
                return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # noqa: BLE001 - closing a diagnostics client never fails the stop
                log.debug("lag probe close: %s", exc)
