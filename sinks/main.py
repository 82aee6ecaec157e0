"""The Salesforce sink as one process: ``sfsync.writes`` -> Salesforce -> ``sfsync.results``, for every org.

:func:`build_runner` wires the pieces of ``sinks/`` together; :func:`run_sink` builds, runs and
closes them (``sfsync sink``):

- a :class:`~sfsync.sinks.router.ConnectionRouter` that sends each write to its workspace's org
  (docs/decisions/0009-workspaces-and-connections.md): without the workspace registry
  (``SFSYNC_WORKSPACES_ENABLED`` off, the default) every write goes to ``env``, the environment's
  ``SALESFORCE_*`` connection, as a single-org sink always did; with it, the registry's
  :class:`~sfsync.workspaces.Directory` (read with a registry client that rides out outages) says each
  workspace's connection and state. Each connection has its own client, its own
  :class:`~sfsync.salesforce.governor.Governor` over its own budget (``before_call`` of every one of its
  calls) and its own sink (:mod:`sfsync.sinks.connections`), opened on its first write;
- an :class:`~sfsync.ops.errorlog.ErrorLog` and a :class:`~sfsync.ops.dlq.DeadLetterQueue` on the configured
  topic prefix. The DLQ writes the SYNC entry of every record it parks (with the record's Kafka
  coordinates and workspace), so the sink's own SYNC/ERROR entry of a parked write is not logged a
  second time; its INFO entries (policy skips) are;
- :class:`~sfsync.sinks.metrics.SinkMetrics` and its ``/metrics`` endpoint: API calls per endpoint (every
  HTTP request to the REST/async API, retries included), the budget ratio, batch sizes, writes per
  object and outcome, end-to-end latency, consumer lag, and the connections held by cause (no series
  has a workspace or connection label);
- a :class:`~sfsync.sinks.loop.SinkWorker` with ``on_parked`` = the DLQ.

The mappings first: the sink reads the mapping setting as every process does (``SFSYNC_MAPPING_FILE``,
``SFSYNC_MAPPING_VARS``). :func:`build_runner` refuses a file that breaks a rule needing no org, and
:meth:`SinkRunner.run`, before consuming anything, describes every object the mappings write and
refuses to start on a mapping the org cannot take (:func:`~sfsync.mapping.require_valid`: a missing
or read-only field, a custom match field that is not an External ID...), listing every problem
(a MappingError: ``sfsync sink`` exits 2). A transient fault there is retried for
``retry_timeout_s``. That check is of the ``env`` org, without the registry; with it, the orgs are
many and come and go, and each one's drift is caught as its writes go. Afterwards, a field or
permission removed from an org quarantines the mappings using it there
(:mod:`sfsync.sinks.drift`; ``sfsync_mapping_quarantined``) while the others go on.

Failures are a connection's, never the process's: its writes wait (carried, uncommitted) while the
other connections' go on (:mod:`sfsync.sinks.router`). A daily-limit 403 (``REQUEST_LIMIT_EXCEEDED`` /
``TotalRequests``) calls that connection's :meth:`Governor.on_daily_limit`, which pauses its calls and
records one RATE_LIMIT entry. No batch sleeps through a budget pause: the governor holds a call at most
what is left of ``SFSYNC_SINK_BUDGET_WAIT_MAX_S`` in the batch, else the batch ends with its unwritten
writes pending and the connection is held until the pause is over (``sfsync_sink_budget_paused`` is 1
meanwhile). An org that answers no call is held and tried again on a backoff; a refused login (the
client already refreshed once) records a CONNECTION entry and is tried again on a slow backoff,
doubling up to a bound, instead of crashing and restarting in a loop; so is an org that refuses the
integration as a whole (the API disabled for it...). Drift quarantines the mapping concerned. The
carried writes are bounded (``SFSYNC_SINK_CARRY_MAX``: the partitions holding them are paused past
it). SIGTERM/SIGINT stop cleanly: the batches on their way are waited for, what they did committed;
the rest replays on restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import stamina

from sfsync.errors import Category, ConfigError, DeliveryError, Level, RetriableError, SfsyncError
from sfsync.kafka.clients import TopicPartition
from sfsync.mapping import MappingFile, gather_describes, load_configured_mappings, require_valid
from sfsync.ops.dlq import DeadLetterQueue
from sfsync.ops.errorlog import ErrorLog, ErrorLogEntry, SourceRef, entry_for, log_entry
from sfsync.ops.metrics import MetricsServer, lag_of
from sfsync.salesforce import AuthenticationError, DailyLimitExceeded, SalesforceClient, SalesforceSettings
from sfsync.salesforce.auth import AuthProvider
from sfsync.salesforce.drift import is_drift
from sfsync.salesforce.errors import SalesforceFatalError
from sfsync.salesforce.governor import Governor, GovernorSettings, load_governor_settings
from sfsync.salesforce.limits import LIMIT_INFO_HEADER, parse_limit_info
from sfsync.serde.registry import SchemaRegistry
from sfsync.sinks.connections import API_PREFIXES, ConnectionCatalog, ProcessHooks, WorkspaceDirectory
from sfsync.sinks.contract import BatchOutcome, ErrorEntry, IncomingWrite
from sfsync.sinks.loop import SinkWorker, dlq_parker
from sfsync.sinks.metrics import SinkMetrics
from sfsync.sinks.router import ConnectionRouter
from sfsync.sinks.routing import HoldCause
from sfsync.sinks.settings import SinkSettings
from sfsync.workspaces import Directory, RegistryWriter, WorkspacesSettings
from sfsync.workspaces.logins import ConnectionStore
from sfsync.workspaces.records import ENV_CONNECTION_ID

__all__ = [
    "RunReport",
    "SinkRunner",
    "StoppingError",
    "build_runner",
    "run_sink",
]

log = logging.getLogger(__name__)


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


# ---------------------------------------------------------------------- the router, observed
class _RunnerSink:
    """The router plus what the process around it needs: metrics per batch, idle tracking."""

    def __init__(self, router: ConnectionRouter, runner: SinkRunner) -> None:
        self.router = router
        self.runner = runner

    async def put(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        return await self._observed(writes, self.router.put)

    async def settle(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        return await self._observed(writes, self.router.settle)

    async def release(self, partitions: Collection[tuple[str, int]]) -> None:
        await self.router.release(partitions)

    async def _observed(
        self, writes: Sequence[IncomingWrite], step: Callable[[Sequence[IncomingWrite]], Awaitable[BatchOutcome]]
    ) -> BatchOutcome:
        runner = self.runner
        runner.in_put = True
        try:
            outcome = await step(writes)
        finally:
            runner.in_put = False
            runner.last_activity = time.monotonic()
        runner.after_batch(writes, outcome)
        return outcome


class SinkRunner:
    """The wired sink process; :meth:`run` until stopped (or bounded), then :meth:`close`."""

    def __init__(
        self,
        *,
        settings: SinkSettings,
        governor_settings: GovernorSettings,
        metrics: SinkMetrics,
        error_log: ErrorLog,
        dlq: DeadLetterQueue,
        mappings: MappingFile | None = None,
    ) -> None:
        self.settings = settings
        self.mappings = mappings
        self.governor_settings = governor_settings
        self.metrics = metrics
        self.error_log = error_log
        self.dlq = dlq
        self.router: ConnectionRouter | None = None
        self.check_env_org = True
        """Whether :meth:`check_org` checks the mappings against the ``env`` org (not with the registry on)."""
        self.sink: _RunnerSink
        self.worker: SinkWorker
        self.metrics_server: MetricsServer | None = None
        self.in_put = False
        self.last_activity = time.monotonic()
        self._carried: set[tuple[str, int, int]] = set()  # the writes the last batch left pending
        self.auth_failures = 0
        self.auth_failures_in_row = 0
        self.results = 0
        self.parked = 0
        self.api_calls = 0
        self._closed = False
        self.org_checked = False
        """True once the mappings passed the check against the org (:meth:`check_org`)."""
        self.owned: list[Any] = []
        """What :meth:`close` closes besides the router: a registry client, a directory, a registry writer."""

    @property
    def client(self) -> SalesforceClient:
        """The ``env`` connection's client (opened if it is not)."""
        assert self.router is not None
        return self.router.sink_of(ENV_CONNECTION_ID).client

    @property
    def governor(self) -> Governor:
        """The ``env`` connection's governor (opened if it is not)."""
        assert self.router is not None
        return self.router.sink_of(ENV_CONNECTION_ID).governor

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
                workspace_id=entry.workspace_id,
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
        """Every answer of every connection's client: API calls counted, the usage gauge fed (the connection
        tells its own governor of a daily-limit 403: :class:`~sfsync.sinks.connections.ConnectionSink`)."""
        path = response.request.url.path
        if not path.startswith(API_PREFIXES):
            return  # OAuth token calls do not count against the API allocation
        self.metrics.api_call(path)
        self.api_calls += 1
        self.metrics.observe_budget(parse_limit_info(response.headers.get(LIMIT_INFO_HEADER)))

    async def on_auth_failure(self, error: AuthenticationError, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        """A refused login of the start-up check (after the client's one refresh): CONNECTION entry, bounded
        pause. (A refused login while running holds its connection only: :mod:`sfsync.sinks.router`.)"""
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
        """The metrics of one turn of the loop: writes read (each once, not again while carried), written
        and parked, latency, lag, the connections held."""
        m = self.metrics
        real = [w for w in writes if w.write]
        carried, self._carried = self._carried, {(w.topic, w.partition, w.offset) for w in outcome.pending}
        for w in real:
            if (w.topic, w.partition, w.offset) in carried:
                continue
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
        if self.router is not None:
            held = self.router.held()
            m.connections_held({str(cause): count for cause, count in held.items()})
            m.budget_paused(held[HoldCause.BUDGET] > 0)
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
        wired without its mappings (by hand, not :func:`build_runner`) checks nothing, nor does one that
        reads the workspace registry (its orgs are many; each one's drift is caught as its writes go)."""
        if self.org_checked or self.mappings is None or not self.check_env_org:
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
        self,
        *,
        max_batches: int | None = None,
        idle_exit_s: float | None = None,
        signals: bool = True,
        tune_collector: bool = False,
    ) -> RunReport:
        """Sync until stopped (SIGTERM/SIGINT, :meth:`stop`), ``max_batches`` batches ran, or no write
        arrived for ``idle_exit_s`` seconds. Closes the process's clients when done.

        ``tune_collector``: once the org is checked, before the first write is consumed, the garbage
        collector is set for batches (:func:`tune_collector_for_batches`); for the process that is the
        sink (``sfsync sink``), not for one that runs it beside other work (a test)."""
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
                if tune_collector:
                    tune_collector_for_batches()
                await self.worker.run(max_batches=max_batches)
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            await self.close()
        router = self.router
        return RunReport(
            batches=self.worker.batches,
            results=self.results,
            parked=self.parked,
            api_calls=self.api_calls,
            governor_pauses=router.governor_pauses if router is not None else 0,
            auth_failures=self.auth_failures + (router.auth_failures if router is not None else 0),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.router is not None:
            await self.router.aclose()
        with contextlib.suppress(SfsyncError):
            self.error_log.flush(timeout_s=10)
        with contextlib.suppress(SfsyncError):
            self.dlq.close()
        for owned in reversed(self.owned):
            with contextlib.suppress(Exception):
                owned.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()


YOUNG_COLLECTION_THRESHOLD = 10_000
"""Allocations (net of deallocations) of tracked objects between two young collections in the sink
process (Python's default: 700)."""


def tune_collector_for_batches() -> None:
    """Set the garbage collector for a process that works in batches, once start-up is done: collect,
    freeze what is left (``gc.freeze()``), and collect the young generation every
    :data:`YOUNG_COLLECTION_THRESHOLD` allocations instead of 700.

    - Start-up leaves some 90,000 tracked objects (the imported modules, mostly) that live as long as
      the process; the older generations' collections walked them all, every few hundred writes.
      Frozen, they are never walked: decoding batches of writes took ~5 µs less CPU per write (30 →
      24-25). Frozen objects are never collected: a cycle among them that became garbage later would
      stay in memory, which start-up's long-lived objects do not make.
    - A batch's own objects (its decoded writes, requests, answers: some 20,000 containers for 200
      writes) live as long as the batch. Collected every 700 allocations, they were walked again and
      again and moved to the older generations on the way, which made those collect too; with the
      larger threshold most of them are gone before a collection (``bench/sink_cpu.py``: 470 young
      collections a round → 8, and 116-134 → 96-127 µs of CPU per write, run by run). At most that
      many more objects in unreachable cycles wait for their collection.

    Process-wide: called once, by the process that is the sink.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


def build_runner(
    sink_settings: SinkSettings,
    salesforce_settings: SalesforceSettings | None,
    *,
    governor_settings: GovernorSettings | None = None,
    auth: AuthProvider | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    registry: Any | None = None,
    metrics: SinkMetrics | None = None,
    mappings: MappingFile | None = None,
    workspaces: WorkspacesSettings | None = None,
    directory: WorkspaceDirectory | None = None,
    store: ConnectionStore | None = None,
    transports: Callable[[str], httpx.AsyncBaseTransport | None] | None = None,
) -> SinkRunner:
    """Wire the sink process (nothing runs until :meth:`SinkRunner.run`).

    ``salesforce_settings``: the ``env`` connection (None: there is none; with the registry required,
    none is needed). ``auth``/``transport``: override the ``env`` client's (tests); ``transports``: the
    HTTP transport of a registry connection by id (tests); ``registry``: a schema-registry client
    (default: from ``sink_settings``, riding out outages); ``metrics``: default on prometheus-client's
    global registry; ``mappings``: default the mapping setting's file. ``workspaces``: the registry's
    settings (None: no registry, ``env`` serves every workspace); with it on, ``directory`` (default:
    opened from ``workspaces``, read to its end first) and ``store`` (where a rotated refresh token is
    written back; default: a :class:`~sfsync.workspaces.RegistryWriter` when keys are set).

    Raises:
        ConfigError: settings that do not fit together (every problem at once), or Kafka settings
            librdkafka refuses (a client could not be built).
        MappingError: the mapping file breaks a rule that needs no org (every problem at once).
        ServiceUnavailableError / FatalError: the registry's topics could not be read to their end.
    """
    mappings = require_valid(mappings if mappings is not None else load_configured_mappings())
    owned = registry is None
    gs = governor_settings if governor_settings is not None else load_governor_settings()
    enabled = workspaces is not None and workspaces.enabled
    problems = []
    poll_s = sink_settings.max_poll_interval_ms / 1000
    if gs.auth_pause_max_s >= poll_s:  # (a budget pause is not sat out inside a batch: pause_s may be longer)
        problems.append(
            f"SFSYNC_GOVERNOR_AUTH_PAUSE_MAX_S={gs.auth_pause_max_s:g} must be below SFSYNC_SINK_MAX_POLL_INTERVAL_MS "
            f"({poll_s:g}s): a pause inside a batch would get the sink thrown out of its consumer group"
        )
    if salesforce_settings is None and not (enabled and workspaces is not None and workspaces.required):
        problems.append(
            "the environment's Salesforce connection (SALESFORCE_*) serves every workspace the registry does not "
            "know: configure it, or set SFSYNC_WORKSPACES_ENABLED and SFSYNC_WORKSPACES_REQUIRED"
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
    runner = SinkRunner(
        settings=sink_settings,
        governor_settings=gs,
        metrics=metrics,
        error_log=error_log,
        dlq=dlq,
        mappings=mappings,
    )
    if owned:
        runner.owned.append(registry)
    if enabled and workspaces is not None:
        runner.check_env_org = False
        if directory is None:
            keys = workspaces.keys() if workspaces.connection_keys is not None else None
            opened = Directory.open(
                workspaces.kafka_client_config(),
                registry,
                prefix=workspaces.topic_prefix,
                keys=keys,
                timeout_s=workspaces.load_timeout_s,
            )
            runner.owned.append(opened)
            directory = opened
        if store is None and directory.keys is not None:
            writer = RegistryWriter(
                workspaces.kafka_client_config(),
                registry,
                prefix=workspaces.topic_prefix,
                delivery_timeout_s=workspaces.delivery_timeout_s,
            )
            runner.owned.append(writer)
            store = writer

    async def sleep(seconds: float) -> None:
        await runner.sleep(seconds)

    async def on_response(response: httpx.Response) -> None:
        await runner.on_response(response)

    async def on_error_entry(entry: ErrorEntry) -> None:
        await runner.on_error_entry(entry)

    on_parked = dlq_parker(dlq.park)
    hooks = ProcessHooks(
        settings=sink_settings,
        governor_settings=gs,
        on_parked=on_parked,
        on_error_entry=on_error_entry,
        record=runner.record,
        sleep=sleep,
        on_response=on_response,
        observe_budget=metrics.observe_budget,
        mappings=mappings,
        on_quarantine=metrics.quarantined,
    )

    def transport_of(connection_id: str) -> httpx.AsyncBaseTransport | None:
        if connection_id == ENV_CONNECTION_ID:
            return transport
        return transports(connection_id) if transports is not None else None

    catalog = ConnectionCatalog(
        hooks,
        env=salesforce_settings,
        env_auth=auth,
        directory=directory if enabled else None,
        store=store,
        enabled=enabled,
        required=enabled and workspaces is not None and workspaces.required,
        transport=transport_of,
    )
    router = ConnectionRouter(
        catalog,
        settings=sink_settings,
        governor_settings=gs,
        on_parked=on_parked,
        on_error_entry=on_error_entry,
        record=runner.record,
        is_stopping=lambda error: isinstance(error, StoppingError) or runner.stopping.is_set(),
        observe_batch=metrics.batch,
    )
    runner.router = router
    if runner.check_env_org and salesforce_settings is not None:
        router.sink_of(ENV_CONNECTION_ID)  # the start-up check's client and governor
    runner.sink = _RunnerSink(router, runner)
    runner.worker = SinkWorker.connect(runner.sink, settings=sink_settings, on_parked=on_parked, registry=registry)
    return runner


async def run_sink(
    sink_settings: SinkSettings,
    salesforce_settings: SalesforceSettings | None,
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
        return await runner.run(max_batches=max_batches, idle_exit_s=idle_exit_s, signals=signals, tune_collector=True)
    finally:
        await runner.close()
