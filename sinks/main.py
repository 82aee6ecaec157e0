"""The Salesforce sink as one process: ``sfsync.writes`` -> Salesforce -> ``sfsync.results``.

:func:`build_runner` wires the pieces of ``sinks/`` together; :func:`run_sink` builds, runs and
closes them (``sfsync sink``):

- a :class:`~salesforce.SalesforceClient` whose :class:`~salesforce.BudgetTracker` is shared with
  the :class:`~sfsync.salesforce.governor.Governor` (``before_call`` of every Salesforce call);
- an :class:`~sfsync.ops.errorlog.ErrorLog` and a :class:`~sfsync.ops.dlq.DeadLetterQueue` on the configured
  topic prefix. The DLQ writes the SYNC entry of every record it parks (with the record's Kafka
  coordinates), so the sink's own SYNC/ERROR entry of a parked write is not logged a second time;
  its INFO entries (policy skips) are;
- :class:`~sfsync.sinks.metrics.SinkMetrics` and its ``/metrics`` endpoint: API calls per endpoint (every
  HTTP request to the REST/async API, retries included), the budget ratio, batch sizes, writes per
  object and outcome, end-to-end latency and consumer lag;
- a :class:`~sfsync.sinks.loop.SinkWorker` with ``on_parked`` = the DLQ.

The mappings first: the sink reads the mapping setting as every process does (``SFSYNC_MAPPING_FILE``,
``SFSYNC_MAPPING_VARS``). :func:`build_runner` refuses a file that breaks a rule needing no org, and
:meth:`SinkRunner.run`, before consuming anything, describes every object the mappings write and
refuses to start on a mapping the org cannot take (:func:`~sfsync.mapping.require_valid`: a missing
or read-only field, a custom match field that is not an External ID...), listing every problem
(a MappingError: ``sfsync sink`` exits 2). A transient fault there is retried for
``retry_timeout_s``. Afterwards, a field or permission removed from the org quarantines the
mappings using it (:mod:`sfsync.sinks.drift`; ``sfsync_mapping_quarantined``) while the others go on.

Failures: a daily-limit 403 (``REQUEST_LIMIT_EXCEEDED`` / ``TotalRequests``) calls
:meth:`Governor.on_daily_limit`, which pauses calls and records one RATE_LIMIT entry. No batch
sleeps through a budget pause: the governor holds a call at most what is left of
``SFSYNC_SINK_BUDGET_WAIT_MAX_S`` in the batch, else the batch ends with its unwritten writes pending
and ``budget_pause_s`` set, and the worker pauses its partitions and keeps polling Kafka until the
pause is over (``sfsync_sink_budget_paused`` is 1 meanwhile). A refused
login (the client already refreshed once) records a CONNECTION entry and pauses, doubling up to
a bound, with nothing of the batch committed, instead of crashing and restarting in a loop. Drift
(a field, object or permission a mapping uses, gone from the org) quarantines that mapping. Other
fatal errors (the API disabled for the org...) stop the process without committing. SIGTERM/SIGINT stop
cleanly, also during a pause: the batch in hand is not committed and replays on restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import stamina

from sfsync.errors import Category, ConfigError, DeliveryError, Level, RetriableError, SfsyncError
from sfsync.kafka.clients import TopicPartition
from sfsync.mapping import MappingFile, gather_describes, load_configured_mappings, require_valid
from sfsync.ops.dlq import DeadLetterQueue
from sfsync.ops.errorlog import ErrorLog, ErrorLogEntry, SourceRef, entry_for, log_entry
from sfsync.ops.metrics import MetricsServer, lag_of
from sfsync.salesforce import (
    AuthenticationError,
    BudgetTracker,
    DailyLimitExceeded,
    SalesforceClient,
    SalesforceSettings,
)
from sfsync.salesforce.auth import AuthProvider
from sfsync.salesforce.drift import is_drift
from sfsync.salesforce.errors import SalesforceFatalError, parse_error_body
from sfsync.salesforce.governor import Governor, GovernorSettings, load_governor_settings
from sfsync.salesforce.limits import LIMIT_INFO_HEADER, parse_limit_info
from sfsync.serde.registry import SchemaRegistry
from sfsync.sinks.contract import BatchOutcome, ErrorEntry, IncomingWrite
from sfsync.sinks.loop import SinkWorker, dlq_parker
from sfsync.sinks.metrics import SinkMetrics
from sfsync.sinks.settings import SinkSettings
from sfsync.sinks.writer import SalesforceSink

__all__ = [
    "RunReport",
    "SinkRunner",
    "StoppingError",
    "build_runner",
    "run_sink",
]

log = logging.getLogger(__name__)

_API_PREFIXES = ("/services/data/", "/services/async/", "/services/apexrest/")


class StoppingError(RetriableError):
    """The process is stopping: a pause was cut short; the batch in hand is not committed."""


@dataclass
class RunReport:
    """What one run did."""

    batches: int
    results: int
    parked: int
    api_calls: int
    governor_pauses: int
    auth_failures: int


# ---------------------------------------------------------------------- HTTP observation
class _ObservingTransport(httpx.AsyncBaseTransport):
    """Counts API calls, feeds the usage gauge and spots the daily-limit 403 on every response."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, on_response: Callable[[httpx.Response], Awaitable[None]]
    ) -> None:
        self._inner = inner
        self._on_response = on_response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        response.request = request
        await self._on_response(response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# ---------------------------------------------------------------------- the sink, observed
class _RunnerSink(SalesforceSink):
    """The sink plus what the process around it needs: metrics per batch, the auth pause, stop."""

    runner: SinkRunner

    async def put(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        runner = self.runner
        runner.in_put = True
        runner.governed_s = 0.0
        try:
            outcome = await super().put(writes)
            runner.auth_failures_in_row = 0
        except AuthenticationError as error:
            outcome = await runner.on_auth_failure(error, writes)
        except StoppingError:
            outcome = BatchOutcome(pending=list(writes))  # nothing of it is committed: it replays
        finally:
            runner.in_put = False
            runner.last_activity = time.monotonic()
        runner.metrics.budget_paused(outcome.budget_pause_s is not None)
        runner.after_batch(writes, outcome)
        return outcome


class SinkRunner:
    """The wired sink process; :meth:`run` until stopped (or bounded), then :meth:`close`."""

    def __init__(
        self,
        *,
        settings: SinkSettings,
        governor_settings: GovernorSettings,
        client: SalesforceClient,
        governor: Governor,
        metrics: SinkMetrics,
        error_log: ErrorLog,
        dlq: DeadLetterQueue,
        mappings: MappingFile | None = None,
    ) -> None:
        self.settings = settings
        self.mappings = mappings
        self.governor_settings = governor_settings
        self.client = client
        self.governor = governor
        self.metrics = metrics
        self.error_log = error_log
        self.dlq = dlq
        self.sink: _RunnerSink
        self.worker: SinkWorker
        self.metrics_server: MetricsServer | None = None
        self.in_put = False
        self.governed_s = 0.0
        """How long the governor held calls in the batch in hand (bounded by ``budget_wait_max_s``)."""
        self.last_activity = time.monotonic()
        self.auth_failures = 0
        self.auth_failures_in_row = 0
        self.results = 0
        self.parked = 0
        self.api_calls = 0
        self._closed = False
        self.org_checked = False
        """True once the mappings passed the check against the org (:meth:`check_org`)."""
        self.owned_registry: Any | None = None

    # -- hooks --------------------------------------------------------------------------------
    @property
    def stopping(self) -> asyncio.Event:
        return self.worker.stopping

    def stop(self) -> None:
        """Finish (or abandon, during a pause) the batch in hand and stop."""
        self.worker.stopping.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, cut short by :meth:`stop` (then :class:`StoppingError` is raised)."""
        if self.stopping.is_set():
            raise StoppingError("stopping")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(seconds, 0.0))
        if self.stopping.is_set():
            raise StoppingError("stopping")

    async def before_call(self, kind: str) -> None:
        """The governor's go for one call; it holds the batch at most ``budget_wait_max_s`` in all, else
        raises :class:`~sfsync.salesforce.governor.BudgetPausedError` (the batch ends with its writes pending)."""
        started = time.monotonic()
        try:
            await self.governor.before_call(wait_max_s=max(0.0, self.settings.budget_wait_max_s - self.governed_s))
        finally:
            self.governed_s += time.monotonic() - started
        self.metrics.observe_budget(self.client.budget.latest)

    async def on_error_entry(self, entry: ErrorEntry) -> None:
        if entry.category == "SYNC" and entry.severity == "ERROR":
            return  # the DLQ recorded this one when it parked the write (with its Kafka coordinates)
        self.record(
            ErrorLogEntry(
                category=Category(entry.category),
                code=entry.code,
                message=entry.message,
                level=Level(entry.severity),
                mapping=entry.mapping or None,
                sobject=entry.sobject or None,
                field=entry.field,
                record_key=entry.record_key or None,
                salesforce_id=entry.salesforce_id,
                details={"write_id": entry.write_id} if entry.write_id else {},
            )
        )

    def record(self, entry: ErrorLogEntry) -> None:
        """Queue an error-log entry; a failure to queue is logged, never raised (it is diagnostics)."""
        try:
            self.error_log.record(entry)
        except SfsyncError as exc:
            log.warning("error log: could not record %s %s: %s", entry.category, entry.code, exc)
        log_entry(log, entry)

    async def on_response(self, response: httpx.Response) -> None:
        path = response.request.url.path
        if not path.startswith(_API_PREFIXES):
            return  # OAuth token calls do not count against the API allocation
        self.metrics.api_call(path)
        self.api_calls += 1
        self.metrics.observe_budget(parse_limit_info(response.headers.get(LIMIT_INFO_HEADER)))
        if response.status_code != 403:
            return
        try:
            body: object = orjson.loads(await response.aread())
        except (orjson.JSONDecodeError, httpx.HTTPError):
            return  # the client classifies (and raises) what it cannot read
        error = parse_error_body(403, body)
        if isinstance(error, DailyLimitExceeded):
            # Salesforce sends no Retry-After here (the client's default is an hour): pause at most
            # pause_s, then one probe call looks again (the worker keeps polling Kafka meanwhile).
            pause_s = self.governor_settings.pause_s
            if error.retry_after is None or error.retry_after > pause_s:
                error.retry_after = pause_s
            self.governor.on_daily_limit(error)

    async def on_auth_failure(self, error: AuthenticationError, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        """A refused login (after the client's one refresh): CONNECTION entry, bounded pause, no commit."""
        self.auth_failures += 1
        self.auth_failures_in_row += 1
        gs = self.governor_settings
        pause = min(gs.auth_pause_max_s, gs.auth_pause_s * 2.0 ** (self.auth_failures_in_row - 1))
        first = writes[0] if writes else None
        entry = entry_for(error, refs=SourceRef(first.topic, first.partition, first.offset) if first else None)
        self.record(entry)
        log.error("Salesforce refused the login (%s); pausing %.0fs before trying again", error.error_code, pause)
        with contextlib.suppress(StoppingError):
            await self.sleep(pause)
        return BatchOutcome(pending=list(writes))

    def after_batch(self, writes: Sequence[IncomingWrite], outcome: BatchOutcome) -> None:
        m = self.metrics
        real = [w for w in writes if w.write]
        m.batch(len(real))
        for w in real:
            source = w.write.get("source") or {}
            m.event_in(str(source.get("event_type") or "unknown"))
        operations = {str(w.write.get("write_id")): str(w.write.get("operation") or "") for w in real}
        now = dt.datetime.now(dt.UTC)
        for result in outcome.results:
            if operations.get(str(result.get("write_id"))) == "DELETE":
                kind = "deleted"
            else:
                kind = "created" if result.get("created") else "updated"
            m.write(str(result.get("sobject") or ""), kind)
            occurred = (result.get("source") or {}).get("occurred_at")  # epoch ms as the worker decodes it
            if isinstance(occurred, dt.datetime) or (isinstance(occurred, int) and not isinstance(occurred, bool)):
                m.acknowledged(occurred, now)
        for parked in outcome.parked:
            m.write(str(parked.write.write.get("sobject") or ""), "parked")
        self.results += len(outcome.results)
        self.parked += len(outcome.parked)
        self._observe_lag()
        try:
            self.error_log.flush(timeout_s=self.settings.producer_flush_timeout_s)
        except DeliveryError as exc:
            log.warning("error log: entries not stored: %s", exc)

    def _observe_lag(self) -> None:
        consumer = self.worker.consumer
        try:
            assigned = consumer.assignment()
            if not assigned:
                return
            positions = consumer.position(assigned)
            # a partition the sink consumed nothing from since its assignment has no position yet
            # (an empty one, or one still waiting its turn): count from where the group committed
            unknown = [tp for tp in positions if tp.offset < 0]
            offsets = {(tp.topic, tp.partition): tp.offset for tp in positions if tp.offset >= 0}
            if unknown:
                for tp in consumer.committed(unknown, timeout=2.0):
                    offsets[(tp.topic, tp.partition)] = tp.offset
            for (topic, partition), offset in offsets.items():
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
                lag = lag_of(offset, low, high)
                if lag is not None:
                    self.metrics.lag(topic, partition, lag)
        except (SfsyncError, RuntimeError) as exc:  # metrics never stop the sink
            log.debug("consumer lag not observed: %s", exc)

    # -- lifecycle ----------------------------------------------------------------------------
    async def check_org(self) -> None:
        """Validate the mappings against the org's describes (once per process): every problem at
        once, as a :class:`~sfsync.mapping.MappingError`. Transient faults are retried with the
        sink's retry policy (``retry_timeout_s``), then the last one is raised; a spent daily
        allocation waits for the governor; a refused login is recorded and paused like one in a
        batch, then tried again. Raises :class:`StoppingError` when stopped meanwhile. A runner
        wired without its mappings (by hand, not :func:`build_runner`) checks nothing."""
        if self.org_checked or self.mappings is None:
            return
        mappings = self.mappings

        async def describe(sobject: str) -> dict[str, Any] | None:
            # no consumer group joined yet: the governor's pause, however long, is waited out here
            await self.governor.before_call()
            self.metrics.observe_budget(self.client.budget.latest)
            try:
                return await self.client.describe_body(sobject)
            except SalesforceFatalError as exc:
                if is_drift(exc):
                    return None  # unknown or invisible object: the rules name it
                raise

        retrying = self.settings.retry_policy().stamina(
            RetriableError, unless=(StoppingError,), waited_elsewhere=(DailyLimitExceeded,)
        )
        while True:
            try:
                async for attempt in stamina.retry_context(**retrying):
                    with attempt:
                        describes = await gather_describes(mappings, describe)
                break
            except AuthenticationError as error:
                await self.on_auth_failure(error, [])  # a CONNECTION entry and a bounded pause
                if self.stopping.is_set():
                    raise StoppingError("stopping") from None
        require_valid(mappings, describes, against="the org")
        self.org_checked = True

    async def _idle_watch(self, idle_exit_s: float) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(min(0.1, idle_exit_s))
            idle = time.monotonic() - self.last_activity >= idle_exit_s
            if idle and not self.in_put and not self.worker._carry:
                log.info("no writes for %.1fs: stopping", idle_exit_s)
                self.stop()

    async def run(
        self, *, max_batches: int | None = None, idle_exit_s: float | None = None, signals: bool = True
    ) -> RunReport:
        """Sync until stopped (SIGTERM/SIGINT, :meth:`stop`), ``max_batches`` batches ran, or no write
        arrived for ``idle_exit_s`` seconds. Closes the process's clients when done."""
        if signals:
            self.worker.install_signal_handlers()
        if self.settings.metrics_port and self.metrics_server is None:
            self.metrics_server = self.metrics.serve(self.settings.metrics_port)
        self.last_activity = time.monotonic()
        watch = asyncio.create_task(self._idle_watch(idle_exit_s)) if idle_exit_s is not None else None
        try:
            try:
                await self.check_org()
            except StoppingError:
                log.info("stopped while checking the mappings against the org: nothing consumed")
            else:
                await self.worker.run(max_batches=max_batches)
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            await self.close()
        return RunReport(
            batches=self.worker.batches,
            results=self.results,
            parked=self.parked,
            api_calls=self.api_calls,
            governor_pauses=self.governor.pauses,
            auth_failures=self.auth_failures,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(SfsyncError):
            self.error_log.flush(timeout_s=10)
        with contextlib.suppress(SfsyncError):
            self.dlq.close()
        await self.client.aclose()
        if self.owned_registry is not None:
            with contextlib.suppress(Exception):
                self.owned_registry.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()


def build_runner(
    sink_settings: SinkSettings,
    salesforce_settings: SalesforceSettings,
    *,
    governor_settings: GovernorSettings | None = None,
    auth: AuthProvider | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    registry: Any | None = None,
    metrics: SinkMetrics | None = None,
    mappings: MappingFile | None = None,
) -> SinkRunner:
    """Wire the sink process (nothing runs until :meth:`SinkRunner.run`).

    ``auth``/``transport``: override the client's (tests); ``registry``: a schema-registry client
    (default: from ``sink_settings``); ``metrics``: default on prometheus-client's global registry;
    ``mappings``: default the mapping setting's file.

    Raises:
        ConfigError: settings that do not fit together (every problem at once), or Kafka settings
            librdkafka refuses (a client could not be built).
        MappingError: the mapping file breaks a rule that needs no org (every problem at once).
    """
    mappings = require_valid(mappings if mappings is not None else load_configured_mappings())
    owned = registry is None
    gs = governor_settings if governor_settings is not None else load_governor_settings()
    problems = []
    poll_s = sink_settings.max_poll_interval_ms / 1000
    if gs.auth_pause_max_s >= poll_s:  # (a budget pause is not sat out inside a batch: pause_s may be longer)
        problems.append(
            f"SFSYNC_GOVERNOR_AUTH_PAUSE_MAX_S={gs.auth_pause_max_s:g} must be below SFSYNC_SINK_MAX_POLL_INTERVAL_MS "
            f"({poll_s:g}s): a pause inside a batch would get the sink thrown out of its consumer group"
        )
    if problems:
        raise ConfigError("sink", problems)
    if registry is None:
        registry = SchemaRegistry.from_settings(sink_settings, ride_out_outages=True)
    metrics = metrics if metrics is not None else SinkMetrics()
    kafka = sink_settings.kafka_client_config()
    prefix = sink_settings.topic_prefix
    error_log = ErrorLog(
        kafka,
        registry,
        prefix=prefix,
        register=sink_settings.register_schemas,
        metrics=metrics,
        delivery_timeout_s=sink_settings.producer_flush_timeout_s,
    )
    dlq = DeadLetterQueue(
        kafka,
        prefix=prefix,
        error_log=error_log,
        metrics=metrics,
        delivery_timeout_s=sink_settings.producer_flush_timeout_s,
    )
    budget = BudgetTracker()
    holder: list[SinkRunner] = []

    async def sleep(seconds: float) -> None:
        await holder[0].sleep(seconds)

    async def on_response(response: httpx.Response) -> None:
        await holder[0].on_response(response)

    def on_pause(entry: ErrorLogEntry) -> None:
        holder[0].record(entry)

    client = SalesforceClient(
        salesforce_settings,
        auth=auth,
        transport=_ObservingTransport(transport or httpx.AsyncHTTPTransport(), on_response),
        budget=budget,
        sleep=sleep,
    )
    governor = Governor.from_settings(budget, gs, sleep=sleep, on_pause=on_pause)
    runner = SinkRunner(
        settings=sink_settings,
        governor_settings=gs,
        client=client,
        governor=governor,
        metrics=metrics,
        error_log=error_log,
        dlq=dlq,
        mappings=mappings,
    )
    holder.append(runner)
    if owned:
        runner.owned_registry = registry

    async def on_error_entry(entry: ErrorEntry) -> None:
        await runner.on_error_entry(entry)

    async def before_call(kind: str) -> None:
        await runner.before_call(kind)

    on_parked = dlq_parker(dlq.park)
    sink = _RunnerSink(
        client,
        settings=sink_settings,
        on_parked=on_parked,
        on_error_entry=on_error_entry,
        before_call=before_call,
        sleep=sleep,
        pause_left=governor.pause_left_s,
        mappings=mappings,
        on_quarantine=metrics.quarantined,
    )
    sink.runner = runner
    runner.sink = sink
    runner.worker = SinkWorker.connect(sink, settings=sink_settings, on_parked=on_parked, registry=registry)
    return runner


async def run_sink(
    sink_settings: SinkSettings,
    salesforce_settings: SalesforceSettings,
    *,
    governor_settings: GovernorSettings | None = None,
    max_batches: int | None = None,
    idle_exit_s: float | None = None,
    signals: bool = True,
    **wiring: Any,
) -> RunReport:
    """Build the sink process, run it until stopped (or bounded), close it; returns what it did."""
    runner = build_runner(sink_settings, salesforce_settings, governor_settings=governor_settings, **wiring)
    try:
        return await runner.run(max_batches=max_batches, idle_exit_s=idle_exit_s, signals=signals)
    finally:
        await runner.close()
