"""One object of one org, polled: the org's check against the mappings, and :class:`ObjectPoller` (pages of
rows → changes and the checkpoint, one Kafka transaction per page). :mod:`sfsync.sources.poller` describes
the whole; :mod:`sfsync.sources.orgs` runs these per org.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

import httpx
import stamina

from sfsync.errors import Level, RetriableError
from sfsync.kafka.delivery import TransactionalProducer
from sfsync.kafka.errors import ProducerFencedError
from sfsync.mapping import MappingError, MappingFile, gather_describes, validate_mappings
from sfsync.ops.errorlog import ErrorLogEntry, entry_for
from sfsync.retry import RetryPolicy
from sfsync.salesforce import DailyLimitExceeded, SalesforceClient, ServerTime
from sfsync.salesforce.drift import is_drift
from sfsync.salesforce.errors import SalesforceFatalError
from sfsync.salesforce.governor import Governor
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.schedule import Pace
from sfsync.sources.settings import SourceSettings
from sfsync.topics import CHANGES

__all__ = [
    "API_PREFIXES",
    "FencedError",
    "ObjectPoller",
    "ObservingTransport",
    "StoppingError",
    "Transactions",
    "check_org",
    "check_org_with_retries",
    "describe_plans",
]

log = logging.getLogger(__name__)

API_PREFIXES = ("/services/data/", "/services/async/")
"""The paths of calls that count against the org's API allocation (OAuth token calls do not)."""

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
    describes = await describe_plans(client, mappings, plans, before_call)
    problems = validate_mappings(mappings, describes)
    said = {tuple(p.split(": ", 2)[:2]) for p in problems}  # a field both rule sets find missing: once
    problems += [p for p in core.org_problems(mappings, plans, describes) if tuple(p.split(": ", 2)[:2]) not in said]
    if problems:
        raise MappingError(f"{mappings.source} (against the org)", problems)
    return describes


async def describe_plans(
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


class ObservingTransport(httpx.AsyncBaseTransport):
    """Counts Salesforce API calls per endpoint and spots the daily-limit refusal."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, on_response: Callable[[httpx.Request, httpx.Response], None]
    ) -> None:
        self._inner = inner
        self._on_response = on_response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path.startswith(API_PREFIXES):
            self._on_response(request, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class ObjectPoller:
    """Polls one object of one org: pages of rows → changes + checkpoint, one transaction per page.

    ``checkpoint_key``: the checkpoint's key in the checkpoint topic (default: the object, the key of
    ``env``); ``workspace_id``: the workspace its changes name (None: none, see
    :func:`~sfsync.sources.ownership.change_workspace`)."""

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
        checkpoint_key: str | None = None,
        workspace_id: str | None = None,
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
        self.checkpoint_key = checkpoint_key if checkpoint_key is not None else plan.sobject
        self.workspace_id = workspace_id
        prefix = settings.topic_prefix
        self.changes_topic = CHANGES.name(prefix)
        self.checkpoint_topic = prefix + settings.checkpoint_topic
        self.limits = core.Limits(
            lookback_ms=int(settings.lookback_s * 1000),
            max_seen=settings.max_seen,
            max_tracked_ids=settings.max_tracked_ids,
        )
        self.pace = Pace(settings.poll_interval_s, settings.idle_backoff_factor, settings.max_idle_interval_s)
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

    @property
    def next_due(self) -> float:
        """When the next poll is due (``time.monotonic``)."""
        return self.pace.next_due

    @next_due.setter
    def next_due(self, value: float) -> None:
        self.pace.next_due = value

    @property
    def interval_s(self) -> float:
        """The wait after the last poll, before the budget's pause (:class:`~sfsync.sources.schedule.Pace`)."""
        return self.pace.interval_s

    def _now_ms(self) -> int:
        return core.to_ms(self.clock())

    async def _call(self) -> None:
        """The governor's go for one call, waited at most ``poll_interval_s`` (else :class:`BudgetPausedError`)."""
        await self.governor.before_call(wait_max_s=self.settings.poll_interval_s)

    def schedule(self, found_changes: bool, now: float, *, not_before_s: float | None = None) -> None:
        """When the next poll is due after one at ``now`` (``time.monotonic``): ``poll_interval_s`` after
        changes, else the idle interval grown by ``idle_backoff_factor`` up to ``max_idle_interval_s``;
        no sooner than ``not_before_s`` (the governor's pause) when given."""
        self.pace.after_poll(found_changes, now, not_before_s=not_before_s)

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
            (
                self.changes_topic,
                f"{c['sobject']}:{c['id']}".encode(),
                self.encode({**c, "workspace_id": self.workspace_id}),
                None,
            )
            for c in changes
        ]
        records += [
            (self.checkpoint_topic, key.encode(), value, self.checkpoint_partition)
            for key, value in checkpoint.records(self.checkpoint.known, key=self.checkpoint_key)
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
        answered: list[ServerTime] = []
        rows = cast(
            "AsyncGenerator[dict[str, Any], None]",
            self.client.query(soql, batch_size=batch, include_deleted=True, on_first_response=answered.append),
        )
        read_all = True
        async with contextlib.aclosing(rows):
            async for row in rows:
                page.append(row)
                rows_read += 1
                if len(page) >= self.settings.page_size:
                    produced += self._apply(page, polled_ms)
                    page = []
                    if not self.between_pages():
                        read_all = False
                        break
                if rows_read % batch == 0:  # the next row comes with another query page: an API call
                    await self._call()
                    polled_ms = self._now_ms()
        if self.active:
            produced += self._apply(
                page, polled_ms, covered=answered[0] if read_all and answered else None, rows_read=rows_read
            )
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

    def _apply(
        self, rows: list[dict[str, Any]], polled_ms: int, *, covered: ServerTime | None = None, rows_read: int = 0
    ) -> int:
        """Commit the changes of ``rows`` with the checkpoint (nothing when neither changes); ``covered``:
        the poll read every page, and its query's first response answered then
        (:func:`~sfsync.sources.rules.cover_window`)."""
        result = core.apply_page(self.plan, self.checkpoint, rows, self.limits, polled_ms) if rows else None
        before = self.checkpoint
        after = result.checkpoint if result is not None else before
        if covered is not None and covered.date is not None:
            started_ms = core.query_started_ms(covered.date, covered.round_trip)
            after = core.cover_window(after, started_ms, rows_read, self.limits)
        changes = result.changes if result is not None else []
        if changes or after.to_bytes() != before.to_bytes() or after.known != before.known:
            self._commit(changes, after)
            self.pages += 1
        return len(changes)

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
