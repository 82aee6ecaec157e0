"""The Salesforce poller as one process: Salesforce → ``salesforce.changes`` (``sfsync poller``).

A thin loop around :mod:`sfsync.sources.rules`:

- **Ownership.** Each object's checkpoint lives in one partition of a compacted checkpoint topic
  (:func:`partition_for`). Replicas join one consumer group on that topic; a replica polls only
  the objects whose checkpoint partition it is assigned, so each object has one active poller
  even with two replicas. Taking an object over, a replica first calls ``init_transactions`` on
  the object's transactional id (``<prefix><transactional_id_prefix>.<object>``), which fences a
  zombie still holding it and aborts its open transaction, then reads the last committed checkpoint.
- **Atomic checkpoints.** Every page of rows is one Kafka transaction: its change records and the
  object's new checkpoint are committed together, so a crash anywhere neither skips a change nor
  re-emits one (the checkpoint's de-duplication set covers the re-read lookback window).
- **The mappings first.** The mapping file is checked against the rules that need no org when the
  poller is built; before polling anything, :func:`check_org` describes every object the mappings
  write and poll (and the parents their relationship paths read), once each, and refuses to start
  with a :class:`~sfsync.mapping.MappingError` listing every problem: the rules every process runs
  (:func:`sfsync.mapping.validate_mappings`) and every selected field the org lacks or hides from the
  integration user (:func:`sfsync.sources.rules.org_problems`), instead of failing every poll on
  INVALID_FIELD.
- **Drift.** A poll Salesforce refuses because a field it selects, or access to the object, was
  removed while the poller runs (:func:`sfsync.salesforce.drift.is_drift`) quarantines that object's
  polls: one ERROR entry (CONNECTION, ``POLL_QUARANTINED``), ``sfsync_poller_quarantined`` = 1; the
  other objects keep polling. Every ``quarantine_recheck_s`` the object is described again; once
  its query passes :func:`~sfsync.sources.rules.org_problems` again, an INFO ``POLL_RESTORED`` entry
  and polling resumes from its checkpoint (nothing is skipped: the checkpoint did not move).
- **Retries** (the poller owns them; the Salesforce client makes one attempt per call): a failed
  poll is retried at the object's next poll; the first failure of a streak is a WARNING entry, and
  once an object's polls have failed for ``retry_timeout_s`` one ERROR entry is recorded for the
  outage (:meth:`ObjectPoller.failed`); polling goes on. The start-up check is retried with stamina
  until ``retry_timeout_s`` (:func:`check_org_with_retries`), then its last error stops the poller.
  Taking an assigned object over (``init_transactions``, reading its checkpoint) while Kafka does
  not answer (a broker restart, the transaction coordinator loading) is retried with the policy's
  waits at the loop's next turns, the other objects polling meanwhile: one WARNING when it first
  fails, one INFO once every assigned object is taken over; still failing after
  ``retry_timeout_s``, the last error stops the poller (as before, but not at the first fault).
  Registry calls (schemas registered at start-up) are retried until ``SCHEMA_REGISTRY_RETRY_TIMEOUT_S``.
- **Salesforce budget.** Every Salesforce call waits for the shared :class:`~sfsync.salesforce.governor.Governor`
  (``SFSYNC_GOVERNOR_*``: reserve, slow-down, pause); a daily-limit refusal pauses it (at most
  ``pause_s``, then one probe call). A poll never sleeps through a pause: the governor holds one of
  its calls at most ``poll_interval_s``, else raises
  :class:`~sfsync.salesforce.governor.BudgetPausedError` and the object's next poll is due when the
  pause ends. The loop meanwhile keeps serving the checkpoint group (``consumer.poll``), whose
  ``max.poll.interval.ms`` a pause of ``pause_s`` (300 s) would otherwise outlast, handing the
  objects to another replica. Only the start-up check of the org, before the poller joins its
  group, waits a pause out.
- **Error log.** Governor pauses (RATE_LIMIT ``RATE_LIMIT_PAUSE``), failed polls that will be retried
  (CONNECTION, or RATE_LIMIT for the concurrent-request limit; a WARNING once per failure streak of
  an object, an ERROR once the streak outlasts ``retry_timeout_s``) and the fatal error that stops
  the poller go to ``sfsync.errors`` like the sink's, with ``details.component`` = :data:`COMPONENT`.
- **Pace.** ``poll_interval_s`` after a poll that found changes, growing by ``idle_backoff_factor``
  up to ``max_idle_interval_s`` while polls find none (:meth:`ObjectPoller.schedule`). What an
  idle object costs a day is stated in :mod:`sfsync.sources.settings`.
- **Deletes.** Soft deletes come with the incremental ``/queryAll`` (IsDeleted rows); the delete
  log (getDeleted) every ``delete_log_interval_s``; purged records by id-set reconciliation every
  ``reconcile_interval_s``.

Test hook for late-visible records (helper H7's emulator feature): a record committed with a
SystemModstamp below the cursor is found as long as it is within ``lookback_s``; a test sets the
emulator's visibility delay below ``lookback_s`` and expects exactly one change per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import time
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar, cast

import httpx
import stamina

from sfsync.errors import Category, FatalError, Level, RetriableError, ServiceUnavailableError, SfsyncError
from sfsync.kafka.admin import ensure_topics
from sfsync.kafka.clients import new_consumer
from sfsync.kafka.delivery import TransactionalProducer
from sfsync.kafka.errors import ProducerFencedError
from sfsync.kafka.reading import new_reader, read_partition
from sfsync.mapping import (
    MappingError,
    MappingFile,
    gather_describes,
    load_configured_mappings,
    require_valid,
    validate_mappings,
)
from sfsync.ops.errorlog import ErrorLog, ErrorLogEntry, entry_for, log_entry
from sfsync.retry import RetryPolicy
from sfsync.salesforce import BudgetTracker, DailyLimitExceeded, SalesforceClient, SalesforceSettings
from sfsync.salesforce.auth import AuthProvider
from sfsync.salesforce.drift import is_drift, named_fields
from sfsync.salesforce.errors import SalesforceFatalError
from sfsync.salesforce.governor import BudgetPausedError, Governor, GovernorSettings, load_governor_settings
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.settings import SourceSettings
from sfsync.topics import CHANGES, ERRORS, TopicSpec

__all__ = [
    "COMPONENT",
    "FencedError",
    "ObjectPoller",
    "Poller",
    "PollerReport",
    "check_org",
    "check_org_with_retries",
    "partition_for",
    "read_checkpoint",
    "run_poller",
]

COMPONENT = "sources.SalesforcePoller"
"""How the poller names itself in ``sfsync.errors`` entries (``details.component``)."""
QUARANTINED = "POLL_QUARANTINED"
"""The error-log code of an object whose polls were quarantined for drift."""
RESTORED = "POLL_RESTORED"
"""The error-log code (INFO) of a quarantine lifted."""

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_API_PREFIXES = ("/services/data/", "/services/async/")


def partition_for(sobject: str, partitions: int) -> int:
    """The checkpoint partition of an object (stable across processes and versions)."""
    return zlib.crc32(sobject.lower().encode()) % partitions


def checkpoint_spec(settings: SourceSettings) -> TopicSpec:
    return TopicSpec(
        settings.checkpoint_topic,
        "<sobject>",
        partitions=settings.checkpoint_partitions,
        config={"cleanup.policy": "compact"},
        avro_value=False,
    )


@dataclass
class PollerReport:
    """What one run did."""

    polls: int = 0
    pages: int = 0
    changes: int = 0
    api_calls: int = 0
    objects: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- Kafka pieces
def read_checkpoint(
    kafka_config: dict[str, Any], topic: str, partition: int, sobject: str, timeout_s: float = 30.0
) -> core.Checkpoint | None:
    """The last committed checkpoint of ``sobject`` (read_committed, to the end of its partition).

    Raises:
        ServiceUnavailableError: Kafka did not answer, or reading took over ``timeout_s``.
        FatalError: the checkpoint records cannot be read.
    """
    latest: dict[str, bytes] = {}
    mine = (sobject, core.known_key(sobject, 0)[:-2])
    consumer = new_reader(kafka_config, f"sfsync-checkpoint-reader-{time.monotonic_ns()}", read_committed=True)
    try:
        what = f"reading checkpoints of {sobject} from {topic}"
        for msg in read_partition(consumer, topic, partition, what=what, timeout_s=timeout_s):
            raw_key, value = msg.key(), msg.value()
            key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else str(raw_key)
            if value is not None and (key == mine[0] or key.startswith(mine[1])):
                latest[key] = value
    finally:
        consumer.close()
    try:
        return core.Checkpoint.from_records(sobject, latest)
    except (ValueError, KeyError, TypeError) as exc:
        raise FatalError(f"checkpoint of {sobject} in {topic} cannot be read: {exc}") from exc


FencedError = ProducerFencedError
"""Another replica started transactions for the same object: this one must let it go."""


class StoppingError(RetriableError):
    """The poller is stopping: a governor pause was cut short; nothing of the poll in hand is committed."""


async def check_org_with_retries(
    client: SalesforceClient,
    mappings: MappingFile,
    plans: list[core.ObjectPlan],
    before_call: Callable[[], Awaitable[object]],
    *,
    policy: RetryPolicy,
    on_daily_limit: Callable[[DailyLimitExceeded], None],
) -> dict[str, dict[str, Any]]:
    """:func:`check_org`, retried (stamina, ``policy``) on transient faults until ``policy.timeout_s``.

    A mapping the org cannot answer (:class:`~sfsync.mapping.MappingError`) and any other fatal error
    are raised at once; a transient fault still failing at the deadline is raised as it is, and so
    is :class:`StoppingError`. A spent daily allocation is handed to ``on_daily_limit`` (the
    governor, which then holds ``before_call`` until its pause ends) and retried without waiting
    for its ``retry_after`` here.
    """
    retrying = policy.stamina(RetriableError, unless=(StoppingError,), waited_elsewhere=(DailyLimitExceeded,))
    async for attempt in stamina.retry_context(**retrying):
        with attempt:
            try:
                return await check_org(client, mappings, plans, before_call)
            except DailyLimitExceeded as exc:
                on_daily_limit(exc)
                raise
    raise AssertionError("unreachable: stamina raises the last error")


async def check_org(
    client: SalesforceClient,
    mappings: MappingFile,
    plans: list[core.ObjectPlan],
    before_call: Callable[[], Awaitable[object]],
) -> dict[str, dict[str, Any]]:
    """Describe what the mappings write and the poller will read (each object once; the client caches)
    and return the describes; raises :class:`~sfsync.mapping.MappingError` listing every problem
    the rules every process runs find (:func:`sfsync.mapping.validate_mappings`) and every one
    :func:`sfsync.sources.rules.org_problems` finds. An object the org does not have is reported,
    not raised."""
    describes = await _describes(client, mappings, plans, before_call)
    problems = validate_mappings(mappings, describes)
    said = {tuple(p.split(": ", 2)[:2]) for p in problems}  # a field both rule sets find missing: once
    problems += [p for p in core.org_problems(mappings, plans, describes) if tuple(p.split(": ", 2)[:2]) not in said]
    if problems:
        raise MappingError(f"{mappings.source} (against the org)", problems)
    return describes


async def _describes(
    client: SalesforceClient,
    mappings: MappingFile,
    plans: list[core.ObjectPlan],
    before_call: Callable[[], Awaitable[object]],
    *,
    refresh: bool = False,
) -> dict[str, dict[str, Any]]:
    """Object name -> describe of what the mappings of ``plans`` (all enabled mappings, unless
    ``refresh``: a recheck, only those of ``plans``, not from the cache) write and read."""

    async def describe(sobject: str) -> dict[str, Any] | None:
        await before_call()
        try:
            return await client.describe_body(sobject, refresh=refresh)
        except SalesforceFatalError as exc:
            if is_drift(exc):
                return None  # unknown (or invisible) object: the rules name it
            raise

    only = [m.name for plan in plans for m in plan.mappings] if refresh else None
    found = await gather_describes(mappings, describe, reads=core.plan_reads(plans), only=only)
    for plan in plans:  # polled objects, also when no mapping writes them
        if plan.sobject.lower() not in {k.lower() for k in found}:
            body = await describe(plan.sobject)
            if body is not None:
                found[plan.sobject] = body
    return {k: dict(v) for k, v in found.items()}


Transactions = TransactionalProducer
"""One object's transactional producer: ``commit`` writes records atomically, or raises."""


class _ObservingTransport(httpx.AsyncBaseTransport):
    """Counts Salesforce API calls per endpoint and spots the daily-limit refusal."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, on_response: Callable[[httpx.Request, httpx.Response], None]
    ) -> None:
        self._inner = inner
        self._on_response = on_response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path.startswith(_API_PREFIXES):
            self._on_response(request, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# ---------------------------------------------------------------------- one object
class ObjectPoller:
    """Polls one object: pages of rows → changes + checkpoint, one transaction per page."""

    def __init__(
        self,
        plan: core.ObjectPlan,
        checkpoint: core.Checkpoint,
        *,
        settings: SourceSettings,
        client: SalesforceClient,
        governor: Governor,
        transactions: Transactions,
        encode: Callable[[dict[str, Any]], bytes],
        metrics: SourceMetrics,
        checkpoint_partition: int,
        between_pages: Callable[[], bool] = lambda: True,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.plan = plan
        self.checkpoint = checkpoint
        self.settings = settings
        self.client = client
        self.governor = governor
        self.transactions = transactions
        self.encode = encode
        self.metrics = metrics
        self.checkpoint_partition = checkpoint_partition
        self.between_pages = between_pages
        self.clock = clock
        prefix = settings.topic_prefix
        self.changes_topic = CHANGES.name(prefix)
        self.checkpoint_topic = prefix + settings.checkpoint_topic
        self.limits = core.Limits(
            lookback_ms=int(settings.lookback_s * 1000),
            max_seen=settings.max_seen,
            max_tracked_ids=settings.max_tracked_ids,
        )
        self.interval_s = settings.poll_interval_s
        self.next_due = 0.0
        self.pages = 0
        self.active = True
        self.failing: str | None = None
        """The error code of the current streak of failed polls (recorded once), None after a good poll."""
        self.failing_since: float | None = None
        """When the current streak of failed polls began (``time.monotonic``), None after a good poll."""
        self.outage_reported = False
        """Whether the current streak outlasted ``retry_timeout_s`` and its ERROR entry was recorded."""
        self.quarantined: str | None = None
        """Why the org refused this object's polls (drift), while they are quarantined; None: polled."""
        self.recheck_at = 0.0
        """When a quarantined object is described again (``time.monotonic``)."""

    @property
    def sobject(self) -> str:
        return self.plan.sobject

    def _now_ms(self) -> int:
        return core.to_ms(self.clock())

    async def _call(self) -> None:
        """The governor's go for one call, waited at most ``poll_interval_s`` (else :class:`BudgetPausedError`)."""
        await self.governor.before_call(wait_max_s=self.settings.poll_interval_s)

    def schedule(self, found_changes: bool, now: float, *, not_before_s: float | None = None) -> None:
        """When the next poll is due after one at ``now`` (``time.monotonic``): ``poll_interval_s`` after
        changes, else the idle interval grown by ``idle_backoff_factor`` up to ``max_idle_interval_s``;
        no sooner than ``not_before_s`` (the governor's pause) when given."""
        s = self.settings
        self.interval_s = core.next_interval(
            self.interval_s, found_changes, s.poll_interval_s, s.idle_backoff_factor, s.max_idle_interval_s
        )
        self.next_due = now + max(self.interval_s, not_before_s or 0.0)

    def failed(self, error: RetriableError, now: float) -> ErrorLogEntry | None:
        """Account for a failed poll (retried at the next poll); the error-log entry to record, if any.

        A WARNING for the first failure of a streak (and when the error code changes), one ERROR
        once the streak has lasted ``retry_timeout_s`` (``now`` and the streak's start are
        ``time.monotonic`` readings), nothing for the polls in between.
        """
        entry = entry_for(error, sobject=self.sobject)
        entry = replace(entry, details={**entry.details, "retrying": "next poll"})
        if self.failing_since is None:
            self.failing_since = now
        if self.settings.retry_policy().expired(self.failing_since, now):
            if self.outage_reported:
                return None
            self.outage_reported = True
            self.failing = entry.code
            failing_for = now - self.failing_since
            message = (
                f"polls of {self.sobject} have failed for {failing_for:.0f}s (retry timeout "
                f"{self.settings.retry_timeout_s:g}s), still retried at every poll: {entry.message}"
            )
            details = {**entry.details, "outage": "outlasted the retry timeout", "failing_for_s": f"{failing_for:.0f}"}
            return replace(entry, level=Level.ERROR, message=message, details=details)
        if self.failing == entry.code:
            return None
        self.failing = entry.code
        return entry

    def recovered(self) -> None:
        """A poll succeeded: the streak of failures, if any, is over."""
        self.failing = None
        self.failing_since = None
        self.outage_reported = False

    def _commit(self, changes: list[dict[str, Any]], checkpoint: core.Checkpoint) -> None:
        records: list[tuple[str, bytes, bytes, int | None]] = [
            (self.changes_topic, f"{c['sobject']}:{c['id']}".encode(), self.encode(c), None) for c in changes
        ]
        records += [
            (self.checkpoint_topic, key.encode(), value, self.checkpoint_partition)
            for key, value in checkpoint.records(self.checkpoint.known)
        ]
        self.transactions.commit(records)
        self.checkpoint = checkpoint
        now_ms = self._now_ms()
        for change in changes:
            self.metrics.changes.labels(sobject=self.sobject, change_type=change["change_type"]).inc()
            self.metrics.inbound_latency.observe(max(0.0, (now_ms - change["system_modstamp"]) / 1000))

    async def poll_once(self) -> int:
        """One poll: every page since the window start, then the delete log and reconciliation when
        due. Returns the number of changes committed."""
        started = time.monotonic()
        produced = rows_read = 0
        soql = self.plan.poll_soql(self.checkpoint.window_start(self.limits.lookback_ms))
        page: list[dict[str, Any]] = []
        await self._call()
        polled_ms = self._now_ms()
        batch = self.settings.query_batch_size
        rows = cast(
            "AsyncGenerator[dict[str, Any], None]",
            self.client.query(soql, batch_size=batch, include_deleted=True),
        )
        async with contextlib.aclosing(rows):
            async for row in rows:
                page.append(row)
                rows_read += 1
                if len(page) >= self.settings.page_size:
                    produced += self._apply(page, polled_ms)
                    page = []
                    if not self.between_pages():
                        break
                if rows_read % batch == 0:  # the next row comes with another query page: an API call
                    await self._call()
                    polled_ms = self._now_ms()
        if page and self.active:
            produced += self._apply(page, polled_ms)
        if self.active:
            produced += await self._delete_log()
        if self.active:
            produced += await self._reconcile()
        self.metrics.poll_duration.labels(sobject=self.sobject).observe(time.monotonic() - started)
        self.metrics.records_per_poll.labels(sobject=self.sobject).observe(rows_read)
        if self.checkpoint.cursor_ms is not None:
            self.metrics.cursor_lag.labels(sobject=self.sobject).set(
                max(0.0, (self._now_ms() - self.checkpoint.cursor_ms) / 1000)
            )
        return produced

    def _apply(self, rows: list[dict[str, Any]], polled_ms: int) -> int:
        result = core.apply_page(self.plan, self.checkpoint, rows, self.limits, polled_ms)
        before, after = self.checkpoint, result.checkpoint
        if result.changes or after.to_bytes() != before.to_bytes() or after.known != before.known:
            self._commit(result.changes, result.checkpoint)
            self.pages += 1
        return len(result.changes)

    async def _delete_log(self) -> int:
        interval = self.settings.delete_log_interval_s
        if interval <= 0:
            return 0
        now = self.clock()
        start_ms = self.checkpoint.delete_log_ms
        if start_ms is None:
            start_ms = core.to_ms(now) - self.limits.lookback_ms
        start = core.from_ms(start_ms)
        due = start + dt.timedelta(seconds=max(interval, 61))
        if now < due:
            return 0
        await self._call()
        result = await self.client.get_deleted(self.sobject, start, now)
        if result.earliest_date_available is not None and result.earliest_date_available > start:
            log.warning(
                "%s: the delete log starts at %s, after %s: reconciling ids for deletes it no longer holds",
                self.sobject,
                result.earliest_date_available,
                start,
            )
            self.checkpoint.reconciled_ms = 0
        changes, after = core.delete_log_changes(
            self.sobject,
            self.checkpoint,
            ((r.id, r.deleted_date) for r in result.deleted_records),
            result.latest_date_covered,
            self._now_ms(),
        )
        self._commit(changes, after)
        return len(changes)

    async def _reconcile(self) -> int:
        interval = self.settings.reconcile_interval_s
        if interval <= 0 or self.checkpoint.tracking_overflow or self.checkpoint.cursor_ms is None:
            return 0
        last = self.checkpoint.reconciled_ms
        if last is None or self._now_ms() - last < interval * 1000:
            return 0
        known_before = set(self.checkpoint.known)
        await self._call()
        present = {str(r["Id"]) async for r in self.client.query(self.plan.ids_soql(), include_deleted=True)}
        changes, after = core.reconcile(self.sobject, self.checkpoint, known_before, present, self._now_ms())
        self._commit(changes, after)
        return len(changes)


# ---------------------------------------------------------------------- the process
class Poller:
    """Every object this replica owns, polled in one asyncio loop (see the module docstring)."""

    def __init__(
        self,
        settings: SourceSettings,
        salesforce_settings: SalesforceSettings,
        *,
        governor_settings: GovernorSettings | None = None,
        mappings: MappingFile | None = None,
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: Any | None = None,
        metrics: SourceMetrics | None = None,
        after_page: Callable[[str, int], None] | None = None,
        open_object: Callable[[str, int], tuple[Any, core.Checkpoint]] | None = None,
    ) -> None:
        """``open_object(sobject, checkpoint partition)``: what taking an object over opens, its
        transactional producer and its last checkpoint (default :meth:`_open_object`, from Kafka)."""
        self.settings = settings
        mappings = require_valid(mappings if mappings is not None else load_configured_mappings())
        self.mappings = mappings
        self.plans = {p.sobject: p for p in core.plans_from_mappings(mappings, settings.objects)}
        if not self.plans:
            raise FatalError(
                "no mapping reads anything back from Salesforce (no to_product/both field or inbound_filter)"
                + (f" for {', '.join(settings.objects)}" if settings.objects else "")
            )
        self.metrics = metrics if metrics is not None else SourceMetrics()
        self.report = PollerReport()
        self.kafka = settings.kafka_client_config()
        ensure_topics(self.kafka, [CHANGES, ERRORS, checkpoint_spec(settings)], settings.topic_prefix)
        self._owned_registry = registry is None
        self.registry = (
            registry if registry is not None else SchemaRegistry.from_settings(settings, ride_out_outages=True)
        )
        encoder = AvroEncoder(
            self.registry,
            CHANGES.name(settings.topic_prefix),
            load_topic_schema(CHANGES.base),
            register=settings.register_schemas,
        )
        self._encode: Callable[[dict[str, Any]], bytes] = lambda c: encoder.encode_checked("Change", c)
        self.error_log = ErrorLog(
            self.kafka, self.registry, prefix=settings.topic_prefix, register=settings.register_schemas
        )
        gs = governor_settings if governor_settings is not None else load_governor_settings()
        self.budget = BudgetTracker()
        self.governor = Governor.from_settings(self.budget, gs, sleep=self._governed_sleep, on_pause=self.record)
        self.client = SalesforceClient(
            salesforce_settings,
            auth=auth,
            transport=_ObservingTransport(transport or httpx.AsyncHTTPTransport(), self._on_response),
            budget=self.budget,
            sleep=self.sleep,
        )
        self.checkpoint_topic = settings.topic_prefix + settings.checkpoint_topic
        self.consumer = new_consumer(
            self.kafka,
            settings.topic_prefix + settings.group_id,
            options={"auto.offset.reset": "latest", "session.timeout.ms": settings.session_timeout_ms},
        )
        self.objects: dict[str, ObjectPoller] = {}
        self._assigned: set[int] | None = None
        self._pending: set[int] | None = None
        self._open: Callable[[str, int], tuple[Any, core.Checkpoint]] = open_object or self._open_object
        self._takeover_failing_since: float | None = None  # objects assigned but not taken over since then
        self._takeover_attempts = 0
        self._takeover_retry_at = 0.0
        self._stopping = asyncio.Event()
        self._after_page = after_page
        self._metrics_server: Any = None
        self._org_checked = False

    # -- plumbing ------------------------------------------------------------------------------

    def _on_response(self, request: httpx.Request, response: httpx.Response) -> None:
        self.report.api_calls += 1
        self.metrics.api_call(request.url.path)

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))

    async def _governed_sleep(self, seconds: float) -> None:
        """A governor wait, cut short by :meth:`stop` (then :class:`StoppingError`)."""
        await self.sleep(seconds)
        if self._stopping.is_set():
            raise StoppingError("stopping")

    def stop(self) -> None:
        self._stopping.set()

    def record(self, entry: ErrorLogEntry) -> None:
        """Queue an ``sfsync.errors`` entry naming the poller; a failure to queue is logged, never raised."""
        entry = replace(entry, details={**entry.details, "component": COMPONENT})
        try:
            self.error_log.record(entry)
        except SfsyncError as exc:
            log.warning("error log: could not record %s %s: %s", entry.category, entry.code, exc)
        log_entry(log, entry)

    async def check_org(self) -> None:
        """:func:`check_org_with_retries` for every object of this poller's mappings (once per process).

        Raises :class:`StoppingError` when :meth:`stop` is called meanwhile (a wait between attempts
        is cut short too)."""
        if not self._org_checked:
            await self._unless_stopped(
                check_org_with_retries(
                    self.client,
                    self.mappings,
                    list(self.plans.values()),
                    self.governor.before_call,
                    policy=self.settings.retry_policy(),
                    on_daily_limit=self._on_daily_limit,
                )
            )
            self._org_checked = True

    def _on_daily_limit(self, error: DailyLimitExceeded) -> None:
        """Salesforce refused a call, the allocation is spent: the governor pauses every call.

        Salesforce sends no Retry-After (the client's default is an hour): pause at most
        ``pause_s``, then one probe call looks again. The governor records the pause (``on_pause``).
        """
        pause_s = self.governor.policy.pause_s
        if error.retry_after is None or error.retry_after > pause_s:
            error.retry_after = pause_s
        self.governor.on_daily_limit(error)

    async def _unless_stopped(self, work: Awaitable[_T]) -> _T:
        """``work``'s result, or :class:`StoppingError` as soon as :meth:`stop` is called (``work`` is cancelled)."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            raise StoppingError("stopping")
        return task.result()

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._pending = {p.partition for p in partitions}

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        revoked = {p.partition for p in partitions}
        for name in [n for n, o in self.objects.items() if o.checkpoint_partition in revoked]:
            self._release(name)
        self._pending = set()

    def _release(self, name: str) -> None:
        poller = self.objects.pop(name)
        poller.active = False
        poller.transactions.close()
        log.info("released %s", name)

    def service_group(self) -> bool:
        """Serve the group protocol (and apply a new assignment); False when this replica must stop
        the object in hand (it was revoked)."""
        self.consumer.poll(0)
        pending, self._pending = self._pending, None
        if pending is None and self._takeover_failing_since is not None and time.monotonic() >= self._takeover_retry_at:
            pending = self._assigned  # objects of the assignment not taken over yet: try them again
        if pending is not None:
            self._assign(pending)
        self.metrics.assigned.set(len(self.objects))
        return True

    def _assign(self, partitions: set[int]) -> None:
        self._assigned = partitions
        count = self.settings.checkpoint_partitions
        failed: SfsyncError | None = None
        for name in [n for n, o in self.objects.items() if o.checkpoint_partition not in partitions]:
            self._release(name)
        for name, plan in self.plans.items():
            partition = partition_for(name, count)
            if partition not in partitions or name in self.objects:
                continue
            try:
                transactions, checkpoint = self._open(name, partition)
            except (RetriableError, ServiceUnavailableError) as exc:
                failed = exc
                continue
            self.objects[name] = ObjectPoller(
                plan,
                checkpoint,
                settings=self.settings,
                client=self.client,
                governor=self.governor,
                transactions=transactions,
                encode=self._encode,
                metrics=self.metrics,
                checkpoint_partition=partition,
                between_pages=partial(self._between_pages, name),
            )
            if name not in self.report.objects:
                self.report.objects.append(name)
            log.info("polling %s (checkpoint partition %d, cursor %s)", name, partition, checkpoint.cursor_ms)
        if failed is not None:
            self._takeover_failed(failed)
        elif self._takeover_failing_since is not None:
            log.info(
                "Kafka answers again: every assigned object taken over (after %.0fs)",
                time.monotonic() - self._takeover_failing_since,
            )
            self._takeover_failing_since = None

    def _open_object(self, sobject: str, partition: int) -> tuple[Any, core.Checkpoint]:
        """``sobject``'s transactional producer (fencing a zombie of it) and its last committed checkpoint.

        Raises:
            ServiceUnavailableError / RetriableError: Kafka did not answer (retried by :meth:`_assign`'s caller).
        """
        transactions = Transactions(
            self.kafka,
            f"{self.settings.topic_prefix}{self.settings.transactional_id_prefix}.{sobject}",
            self.settings.transaction_timeout_s,
        )
        try:
            checkpoint = read_checkpoint(self.kafka, self.checkpoint_topic, partition, sobject)
        except BaseException:
            transactions.close()
            raise
        return transactions, checkpoint or core.Checkpoint(sobject)

    def _takeover_failed(self, error: SfsyncError) -> None:
        """Taking an object over failed on a transient Kafka fault: tried again after the policy's wait
        (:meth:`service_group`); a WARNING when a streak starts; the error raised once it outlasts
        ``retry_timeout_s``."""
        now = time.monotonic()
        policy = self.settings.retry_policy()
        if self._takeover_failing_since is None:
            self._takeover_failing_since = now
            self._takeover_attempts = 0
            log.warning(
                "Kafka: taking over assigned objects failed, retrying for up to %.0fs: %s", policy.timeout_s, error
            )
        elif policy.expired(self._takeover_failing_since, now):
            log.error("Kafka: assigned objects still not taken over after %.0fs: stopping", policy.timeout_s)
            raise error
        self._takeover_attempts += 1
        self._takeover_retry_at = now + policy.delay(self._takeover_attempts)

    def _between_pages(self, name: str) -> bool:
        poller = self.objects.get(name)
        if poller is not None and self._after_page is not None:
            self._after_page(name, poller.pages)
        self.service_group()
        return name in self.objects and not self._stopping.is_set()

    # -- the loop ------------------------------------------------------------------------------

    async def _poll(self, poller: ObjectPoller) -> int:
        try:
            found = await poller.poll_once()
            poller.recovered()
        except StoppingError:
            return 0
        except BudgetPausedError as exc:  # the governor holds calls: poll again when it lets them go
            poller.next_due = time.monotonic() + (exc.retry_after or self.settings.poll_interval_s)
            return 0
        except DailyLimitExceeded as exc:  # the governor's pause, not a failure of this object's polls
            self._on_daily_limit(exc)
            found = 0
        except RetriableError as exc:  # retried at the next poll: this loop is the poll's one retry owner
            entry = poller.failed(exc, time.monotonic())
            if entry is not None:
                self.record(entry)
            else:
                log.warning("%s: poll failed again, retrying at the next poll: %s", poller.sobject, exc)
            found = 0
        except FencedError as exc:
            log.warning("%s: another replica took it over: %s", poller.sobject, exc)
            if poller.sobject in self.objects:
                self._release(poller.sobject)
            return 0
        except FatalError as exc:
            if is_drift(exc):  # a field it selects, or the object, is gone: quarantine this object only
                self._quarantine(poller, exc)
                return 0
            self.record(entry_for(exc, sobject=poller.sobject))
            raise
        self.report.polls += 1
        self.report.changes += found
        self.report.pages = sum(o.pages for o in self.objects.values())
        poller.schedule(found > 0, time.monotonic(), not_before_s=self.governor.pause_left_s())
        return found

    def _quarantine(self, poller: ObjectPoller, error: FatalError) -> None:
        """Stop polling ``poller``'s object until the org can answer its query again (see the module
        docstring): one ERROR entry, the gauge at 1, a recheck in ``quarantine_recheck_s``."""
        entry = entry_for(error, sobject=poller.sobject)
        fields = named_fields(error)
        where = ", ".join(f"{poller.sobject}.{f}" for f in fields) or poller.sobject
        recheck = self.settings.quarantine_recheck_s
        message = (
            f"polls of {poller.sobject} are quarantined: {where}: {entry.code} {entry.message}; the other objects "
            + (f"keep polling; checked again every {recheck:g}s" if recheck > 0 else "keep polling until a restart")
        )
        self.record(
            replace(
                entry,
                category=Category.CONNECTION,
                code=QUARANTINED,
                message=message,
                details={**entry.details, "salesforce_code": entry.code},
            )
        )
        poller.quarantined = entry.code
        poller.recheck_at = time.monotonic() + recheck if recheck > 0 else float("inf")
        self.metrics.quarantined.labels(sobject=poller.sobject).set(1)

    async def _recheck(self, poller: ObjectPoller) -> None:
        """Describe a quarantined object again (no cache); lift the quarantine once
        :func:`~sfsync.sources.rules.org_problems` finds nothing wrong with its query."""
        poller.recheck_at = time.monotonic() + self.settings.quarantine_recheck_s

        async def go() -> None:  # the other objects' polls are not held longer than a poll interval
            await self.governor.before_call(wait_max_s=self.settings.poll_interval_s)

        try:
            describes = await _describes(self.client, self.mappings, [poller.plan], go, refresh=True)
        except RetriableError:  # a transient fault, the budget's pause, stopping: looked at again later
            return
        if core.org_problems(self.mappings, [poller.plan], describes):
            return
        poller.quarantined = None
        poller.next_due = time.monotonic()
        self.metrics.quarantined.labels(sobject=poller.sobject).set(0)
        self.record(
            ErrorLogEntry(
                category=Category.CONNECTION,
                code=RESTORED,
                message=f"the org answers the polls of {poller.sobject} again: polling resumes from its checkpoint",
                level=Level.INFO,
                sobject=poller.sobject,
            )
        )

    async def run(
        self, *, max_polls: int | None = None, idle_exit_s: float | None = None, signals: bool = True
    ) -> PollerReport:
        """Poll until stopped (SIGTERM/SIGINT, :meth:`stop`), ``max_polls`` polls, or ``idle_exit_s``
        seconds without a change once objects are assigned."""
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if self.settings.metrics_port and self._metrics_server is None:
            self._metrics_server = self.metrics.serve(self.settings.metrics_port)
        try:
            await self.check_org()
        except StoppingError:
            return self.report
        self.consumer.subscribe([self.checkpoint_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        last_change: float | None = None
        try:
            while not self._stopping.is_set():
                self.service_group()
                now = time.monotonic()
                if self.objects and last_change is None:
                    last_change = now
                for poller in sorted(self.objects.values(), key=lambda o: o.next_due):
                    if poller.quarantined is not None:
                        if poller.recheck_at <= time.monotonic() and not self._stopping.is_set():
                            await self._recheck(poller)
                        continue
                    if poller.next_due > time.monotonic() or self._stopping.is_set() or not poller.active:
                        continue
                    if await self._poll(poller):
                        last_change = time.monotonic()
                    if max_polls is not None and self.report.polls >= max_polls:
                        return self.report
                if idle_exit_s is not None and last_change is not None and time.monotonic() - last_change > idle_exit_s:
                    return self.report
                upcoming = min((o.next_due for o in self.objects.values()), default=now + 0.2)
                await self.sleep(min(0.2, max(0.0, upcoming - time.monotonic())))
            return self.report
        finally:
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def close(self) -> None:
        """Leave the group, close producers, the Salesforce client and the metrics endpoint."""
        for name in list(self.objects):
            self._release(name)
        with contextlib.suppress(Exception):
            self.consumer.close()
        await self.client.aclose()
        try:
            self.error_log.flush(10)
        except SfsyncError as exc:
            log.warning("error log: %s", exc)
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        if self._owned_registry:
            self.registry.close()


async def run_poller(
    settings: SourceSettings,
    salesforce_settings: SalesforceSettings,
    *,
    max_polls: int | None = None,
    idle_exit_s: float | None = None,
    signals: bool = True,
    **wiring: Any,
) -> PollerReport:
    """Build the poller, run it until stopped (or bounded), close it; returns what it did."""
    poller = Poller(settings, salesforce_settings, **wiring)
    try:
        return await poller.run(max_polls=max_polls, idle_exit_s=idle_exit_s, signals=signals)
    finally:
        await poller.close()
