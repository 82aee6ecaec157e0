"""The Salesforce poller as one process: Salesforce → ``salesforce.changes`` (``sfsync poller``).

A thin loop around :mod:`sfsync.sources.rules`, :mod:`sfsync.sources.schedule` and
:mod:`sfsync.sources.ownership`:

- **Ownership, one org** (without the workspace registry). Each object's checkpoint lives in one
  partition of a compacted checkpoint topic (:func:`partition_for`). Replicas join one consumer group
  on that topic; a replica polls only the objects whose checkpoint partition it is assigned, so each
  object has one active poller even with two replicas. Taking an object over, a replica first calls
  ``init_transactions`` on the object's transactional id (``<prefix><transactional_id_prefix>.<key>``,
  the key being the checkpoint's), which fences a zombie still holding it and aborts its open
  transaction, then reads the last committed checkpoint.
- **Ownership, many orgs** (``SFSYNC_WORKSPACES_ENABLED``). The replicas form the consumer group on the
  compacted ``sfsync.workspaces`` topic instead; the workspace records on the partitions a replica is
  assigned are its workspaces, and it polls the orgs (connections) :func:`~sfsync.sources.ownership.owned_connections`
  gives it: each connection by the replica owning its smallest workspace id, while one of its
  workspaces is ACTIVE; the environment's connection ``env`` (unless ``SFSYNC_WORKSPACES_REQUIRED``) by the
  replica of partition 0. Each org has its own Salesforce client (from the directory's connection, a
  rotated refresh token written back), its own governor over its own API budget, and its own checkpoint
  per object, keyed ``<connection_id>:<object>`` (``env`` keeps the single-org key, the object). A
  replica that leaves or dies hands its partitions over through the group's rebalance; the replica
  given them takes each org's objects over as above (fencing, then the committed checkpoint), so a
  change is neither lost nor emitted twice. Changes name their workspace when exactly one uses the
  connection (:func:`~sfsync.sources.ownership.change_workspace`).
- **Fair turns** (:func:`~sfsync.sources.schedule.pick_due`). Polls run as tasks, at most
  ``concurrent_polls`` at once and one per org at a time; the due (org, object) pairs are served in a
  round robin over orgs, so a busy org (polled every ``poll_interval_s``) never takes the turns of idle
  ones (backing off to ``max_idle_interval_s``), and an org slow to answer holds one task, not the loop.
- **Isolation** (with the registry). An org that answers no call (5xx, refused or timed-out connections)
  is held and tried again on a doubling backoff (``hold_recheck_s`` .. ``hold_recheck_max_s``); one whose
  login is refused, which refuses the integration, or whose connection cannot be opened, on the
  governor's auth backoff; one whose mapping it cannot answer, every ``quarantine_recheck_s``. Each
  hold is a CONNECTION entry per workspace (WARNING for an outage, ERROR once it outlasts
  ``retry_timeout_s``; ERROR for the others), an INFO ``ORG_RESTORED`` when it serves again, and
  ``sfsync_poller_orgs_held{cause}``; the other orgs are polled as usual, and the held org's
  checkpoints wait where they were. Without the registry a failure is handled as below (the one org
  is the whole poller).
- **Atomic checkpoints.** Every page of rows is one Kafka transaction: its change records and the
  object's new checkpoint are committed together, so a crash anywhere neither skips a change nor
  re-emits one (the checkpoint's de-duplication set covers the re-read lookback window).
- **The mappings first.** The mapping file is checked against the rules that need no org when the
  poller is built; before polling anything, :func:`check_org` describes every object the mappings
  write and poll (and the parents their relationship paths read), once each, and refuses to start
  with a :class:`~sfsync.mapping.MappingError` listing every problem: the rules every process runs
  (:func:`sfsync.mapping.validate_mappings`) and every selected field the org lacks or hides from the
  integration user (:func:`sfsync.sources.rules.org_problems`), instead of failing every poll on
  INVALID_FIELD. With the registry, each org is checked so (against the mapping files of its
  workspaces, their selections merged: :func:`~sfsync.sources.rules.merged_plans`) before its first
  poll, and an org whose mappings it cannot answer is held (``mapping``) instead of stopping the poller.
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
- **Salesforce budget.** Every Salesforce call waits for its org's :class:`~sfsync.salesforce.governor.Governor`
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
import uuid
import zlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import httpx
import stamina

from sfsync.errors import (
    Category,
    ConfigError,
    FatalError,
    Level,
    RetriableError,
    ServiceUnavailableError,
    SfsyncError,
)
from sfsync.kafka.admin import ensure_topics
from sfsync.kafka.clients import new_consumer
from sfsync.kafka.delivery import TransactionalProducer
from sfsync.kafka.errors import ProducerFencedError
from sfsync.kafka.reading import new_reader, read_partition
from sfsync.mapping import (
    MappingError,
    MappingFile,
    MappingLibrary,
    gather_describes,
    load_configured_mappings,
    load_mapping_settings,
    require_valid,
    validate_mappings,
)
from sfsync.ops.errorlog import ErrorLog, ErrorLogEntry, entry_for, log_entry
from sfsync.retry import RetryPolicy
from sfsync.salesforce import BudgetTracker, DailyLimitExceeded, SalesforceClient, SalesforceSettings
from sfsync.salesforce.auth import AuthProvider
from sfsync.salesforce.drift import is_drift, named_fields
from sfsync.salesforce.errors import NO_RESPONSE, AuthenticationError, SalesforceError, SalesforceFatalError
from sfsync.salesforce.governor import BudgetPausedError, Governor, GovernorSettings, load_governor_settings
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.ownership import ENV_PARTITION, change_workspace, owned_connections
from sfsync.sources.schedule import Hold, HoldCause, Pace, hold_after, pick_due
from sfsync.sources.settings import SourceSettings
from sfsync.topics import CHANGES, ERRORS, REGISTRY_TOPICS, WORKSPACES, TopicSpec
from sfsync.workspaces.directory import Directory
from sfsync.workspaces.logins import ConnectionStore, RefreshTokenWriteBack
from sfsync.workspaces.records import ENV_CONNECTION_ID, Connection, ConnectionNotFoundError, Workspace
from sfsync.workspaces.sealing import ConnectionKeys, SealError
from sfsync.workspaces.settings import WorkspacesSettings
from sfsync.workspaces.writer import RegistryWriter

__all__ = [
    "COMPONENT",
    "FencedError",
    "ObjectPoller",
    "OrgPoller",
    "Poller",
    "PollerReport",
    "check_org",
    "check_org_with_retries",
    "partition_for",
    "read_checkpoint",
    "read_checkpoints",
    "run_poller",
]

COMPONENT = "sources.SalesforcePoller"
"""How the poller names itself in ``sfsync.errors`` entries (``details.component``)."""
QUARANTINED = "POLL_QUARANTINED"
"""The error-log code of an object whose polls were quarantined for drift."""
RESTORED = "POLL_RESTORED"
"""The error-log code (INFO) of a quarantine lifted."""
ORG_RESTORED = "ORG_RESTORED"
"""The error-log code (INFO) of an org polled again after a hold (with the workspace registry)."""
CHECK = ""
"""The pseudo object of an org's check in the turns (it sorts before every object)."""

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_API_PREFIXES = ("/services/data/", "/services/async/")


def partition_for(key: str, partitions: int) -> int:
    """The checkpoint partition of a checkpoint key (:func:`~sfsync.sources.rules.checkpoint_key`: the
    object for ``env``), stable across processes and versions."""
    return zlib.crc32(key.lower().encode()) % partitions


def checkpoint_spec(settings: SourceSettings) -> TopicSpec:
    return TopicSpec(
        settings.checkpoint_topic,
        "<sobject> or <connection_id>:<sobject> (and their #known/NN buckets)",
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
def read_checkpoints(
    kafka_config: dict[str, Any], topic: str, partition: int, wanted: Mapping[str, str], timeout_s: float = 30.0
) -> dict[str, core.Checkpoint | None]:
    """The last committed checkpoint of each key of ``wanted`` (checkpoint key -> its object), read once
    (read_committed, to the end of ``partition``); None for a key never committed.

    Raises:
        ServiceUnavailableError: Kafka did not answer, or reading took over ``timeout_s``.
        FatalError: a wanted checkpoint's records cannot be read.
    """
    latest: dict[str, bytes] = {}
    consumer = new_reader(kafka_config, f"sfsync-checkpoint-reader-{time.monotonic_ns()}", read_committed=True)
    try:
        what = f"reading checkpoints of {', '.join(sorted(wanted))} from {topic}"
        for msg in read_partition(consumer, topic, partition, what=what, timeout_s=timeout_s):
            raw_key, value = msg.key(), msg.value()
            key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else str(raw_key)
            if value is not None and key.split("#known/", 1)[0] in wanted:
                latest[key] = value
    finally:
        consumer.close()
    found: dict[str, core.Checkpoint | None] = {}
    for key, sobject in wanted.items():
        try:
            found[key] = core.Checkpoint.from_records(sobject, latest, key=key)
        except (ValueError, KeyError, TypeError) as exc:
            raise FatalError(f"checkpoint of {key} in {topic} cannot be read: {exc}") from exc
    return found


def read_checkpoint(
    kafka_config: dict[str, Any],
    topic: str,
    partition: int,
    sobject: str,
    timeout_s: float = 30.0,
    *,
    key: str | None = None,
) -> core.Checkpoint | None:
    """The last committed checkpoint of ``sobject`` keyed ``key`` (default: the object, the key of ``env``)
    (:func:`read_checkpoints`)."""
    wanted = key if key is not None else sobject
    return read_checkpoints(kafka_config, topic, partition, {wanted: sobject}, timeout_s)[wanted]


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


# ---------------------------------------------------------------------- one org
def is_outage(error: SfsyncError) -> bool:
    """Whether Salesforce answered nothing (a timeout, a refused connection, a 5xx): the org is down."""
    return isinstance(error, SalesforceError) and (error.status == NO_RESPONSE or error.status >= 500)


class OrgPoller:
    """One org's share of the poller (a connection): its Salesforce client, its own governor over its own
    API budget, the mapping files its workspaces run and what they select, and a poller per object it has
    taken over.

    ``files``: the distinct mapping files (one for ``env``: the configured one); ``workspaces``: every
    workspace using the connection (none for ``env``); ``built_from``: the registry's record it was opened
    from and ``write_back`` the hook writing a rotated refresh token back (None for ``env``).
    ``on_response``: every answer of its client; ``record``: an error-log entry; ``sleep`` / ``governed_sleep``:
    the process's sleeps, cut short when it stops.
    """

    def __init__(
        self,
        connection_id: str,
        salesforce_settings: SalesforceSettings,
        *,
        files: Sequence[MappingFile],
        settings: SourceSettings,
        governor_settings: GovernorSettings,
        on_response: Callable[[httpx.Request, httpx.Response], None],
        record: Callable[[ErrorLogEntry], None],
        sleep: Callable[[float], Awaitable[None]],
        governed_sleep: Callable[[float], Awaitable[None]],
        workspaces: Sequence[Workspace] = (),
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        built_from: Connection | None = None,
        write_back: RefreshTokenWriteBack | None = None,
    ) -> None:
        self.connection_id = connection_id
        self.files = list(files)
        self.settings = settings
        self.plans = {p.sobject: p for p in core.merged_plans(self.files, settings.objects)}
        self.workspaces = tuple(workspaces)
        self.built_from = built_from
        self.write_back = write_back
        self._record = record
        self.budget = BudgetTracker()
        self.governor = Governor.from_settings(
            self.budget, governor_settings, sleep=governed_sleep, on_pause=self.record
        )
        self.client = SalesforceClient(
            salesforce_settings,
            auth=auth,
            transport=_ObservingTransport(transport or httpx.AsyncHTTPTransport(), on_response),
            budget=self.budget,
            sleep=sleep,
            on_refresh_token=write_back,
        )
        self.objects: dict[str, ObjectPoller] = {}
        """The objects taken over, by name."""
        self.fenced_until: dict[str, float] = {}
        """Objects another replica took over, and when this one may try them again (``time.monotonic``)."""
        self.checked = False
        """Whether the org answered what its mappings select (:meth:`Poller._check`)."""
        self.check_due = 0.0
        """When the check may run (after a budget pause)."""
        self.hold: Hold | None = None
        """Why and until when the org is not polled (None: it is)."""
        self.hold_reported = False
        """Whether the hold's outage outlasted ``retry_timeout_s`` and its ERROR entry was recorded."""

    def __repr__(self) -> str:
        return f"OrgPoller({self.connection_id!r}, objects={sorted(self.objects)})"

    @property
    def workspace_id(self) -> str | None:
        """The workspace its changes name (:func:`~sfsync.sources.ownership.change_workspace`)."""
        return change_workspace(self.workspaces)

    def key_of(self, sobject: str) -> str:
        """The checkpoint key of one of its objects (:func:`~sfsync.sources.rules.checkpoint_key`)."""
        return core.checkpoint_key(self.connection_id, sobject)

    def checks(self, only: str | None = None) -> list[tuple[MappingFile, list[core.ObjectPlan]]]:
        """Each mapping file with the plans of the objects it polls (``only``: that object's), to check."""
        out = []
        for file in self.files:
            plans = core.plans_from_mappings(file, [only] if only is not None else self.settings.objects)
            if plans or only is None:
                out.append((file, plans))
        return out

    def record(self, entry: ErrorLogEntry) -> None:
        """Record ``entry`` about this org: once per workspace of the connection (each naming it), with the
        connection's id in its details; ``env``'s as it comes."""
        if self.connection_id == ENV_CONNECTION_ID:
            self._record(entry)
            return
        details = {**entry.details, "connection_id": self.connection_id}
        spaces: list[str | None] = [w.workspace_id for w in self.workspaces] or [None]
        for index, workspace in enumerate(spaces):
            entry_id = entry.entry_id if index == 0 else str(uuid.uuid4())
            self._record(replace(entry, details=details, workspace_id=workspace, entry_id=entry_id))

    def on_daily_limit(self, error: DailyLimitExceeded) -> None:
        """Salesforce refused a call, the allocation is spent: the governor pauses every call of this org.

        Salesforce sends no Retry-After (the client's default is an hour): pause at most
        ``pause_s``, then one probe call looks again. The governor records the pause (``on_pause``).
        """
        pause_s = self.governor.policy.pause_s
        if error.retry_after is None or error.retry_after > pause_s:
            error.retry_after = pause_s
        self.governor.on_daily_limit(error)

    def due(self) -> dict[str, float]:
        """Object -> when it is due (a quarantined one: its recheck), or the org's check when not checked."""
        if not self.checked:
            return {CHECK: self.check_due}
        return {
            name: (o.recheck_at if o.quarantined is not None else o.next_due)
            for name, o in self.objects.items()
            if o.active
        }

    async def aclose(self) -> None:
        await self.client.aclose()


class WorkspaceDirectory(Protocol):
    """What the poller reads of the workspace registry (a :class:`~sfsync.workspaces.Directory`)."""

    keys: ConnectionKeys | None

    def workspaces(self) -> list[Workspace]: ...

    def connection(self, connection_id: str) -> Connection | None: ...

    def salesforce_settings(self, connection_id: str) -> SalesforceSettings: ...


# ---------------------------------------------------------------------- the process
class Poller:
    """Every org and object this replica owns, polled in one asyncio loop (see the module docstring).

    ``salesforce_settings``: the environment's connection ``env`` (None: there is none; only with the
    registry required). ``auth``/``transport``: the ``env`` client's (tests); ``transports``: the HTTP
    transport of a registry connection by id (tests). ``open_object(checkpoint key, partition)``: what
    taking an object over opens, its transactional producer and its last checkpoint (default
    :meth:`_open_object`, from Kafka). ``workspaces``: the registry's settings (None or not enabled: ``env``
    is the one org, as before the registry); with it on, ``directory`` (default: opened from ``workspaces``,
    read to its end first), ``store`` (where a rotated refresh token is written back; default: a
    :class:`~sfsync.workspaces.RegistryWriter` when keys are set) and ``library`` (the workspaces' mapping
    files; default: the mapping setting's, ``mappings`` being its configured file).
    """

    def __init__(
        self,
        settings: SourceSettings,
        salesforce_settings: SalesforceSettings | None,
        *,
        governor_settings: GovernorSettings | None = None,
        mappings: MappingFile | None = None,
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: Any | None = None,
        metrics: SourceMetrics | None = None,
        after_page: Callable[[str, int], None] | None = None,
        open_object: Callable[[str, int], tuple[Any, core.Checkpoint]] | None = None,
        workspaces: WorkspacesSettings | None = None,
        directory: WorkspaceDirectory | None = None,
        store: ConnectionStore | None = None,
        library: MappingLibrary | None = None,
        transports: Callable[[str], httpx.AsyncBaseTransport | None] | None = None,
    ) -> None:
        self.settings = settings
        self.enabled = workspaces is not None and workspaces.enabled
        required = self.enabled and workspaces is not None and workspaces.required
        if salesforce_settings is None and not required:
            raise ConfigError(
                "poller",
                [
                    "the environment's Salesforce connection (SALESFORCE_*) is the org polled without the workspace "
                    "registry, and with it the org of the workspaces it does not know: configure it, or set "
                    "SFSYNC_WORKSPACES_ENABLED and SFSYNC_WORKSPACES_REQUIRED"
                ],
            )
        mappings = require_valid(mappings if mappings is not None else load_configured_mappings())
        self.mappings = mappings
        self.gs = governor_settings if governor_settings is not None else load_governor_settings()
        self.metrics = metrics if metrics is not None else SourceMetrics()
        self.report = PollerReport()
        self.kafka = settings.kafka_client_config()
        topics = [CHANGES, ERRORS, checkpoint_spec(settings), *(REGISTRY_TOPICS if self.enabled else ())]
        ensure_topics(self.kafka, topics, settings.topic_prefix)
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
        self._auth = auth
        self._transport = transport
        self._transports = transports
        self._env_settings = salesforce_settings
        self.orgs: dict[str, OrgPoller] = {}
        """The orgs this replica polls, by connection id."""
        self._closing: list[OrgPoller] = []
        self._owned: list[Any] = []  # what close() closes besides (a directory, a registry writer)
        self._directory: WorkspaceDirectory | None = None
        self._store = store
        self._library = library
        self._open_holds: dict[str, Hold] = {}  # connections that could not be opened, and until when
        self._poll_env = not required and salesforce_settings is not None
        if self.enabled and workspaces is not None:
            self._open_registry(workspaces, directory)
        else:
            assert salesforce_settings is not None  # refused above
            env = self._new_org(ENV_CONNECTION_ID, salesforce_settings, [mappings], auth=auth, transport=transport)
            if not env.plans:
                raise FatalError(
                    "no mapping reads anything back from Salesforce (no to_product/both field or inbound_filter)"
                    + (f" for {', '.join(settings.objects)}" if settings.objects else "")
                )
            self.orgs[ENV_CONNECTION_ID] = env
        self.checkpoint_topic = settings.topic_prefix + settings.checkpoint_topic
        self.workspaces_topic = WORKSPACES.name(settings.topic_prefix)
        self.consumer = new_consumer(
            self.kafka,
            settings.topic_prefix + settings.group_id,
            options={
                "auto.offset.reset": "earliest" if self.enabled else "latest",
                "session.timeout.ms": settings.session_timeout_ms,
            },
        )
        self._assigned: set[int] | None = None
        self._pending: set[int] | None = None
        self._owned_keys: dict[int, set[str]] = {}  # with the registry: the workspaces on each assigned partition
        self._open: Callable[[str, int], tuple[Any, core.Checkpoint]] | None = open_object
        self._takeover_failing_since: float | None = None  # objects assigned but not taken over since then
        self._takeover_attempts = 0
        self._takeover_retry_at = 0.0
        self._stopping = asyncio.Event()
        self._after_page = after_page
        self._metrics_server: Any = None
        self._tasks: dict[str, _Flight] = {}  # the polls in flight, by connection id
        self._last_turn: str | None = None

    def _open_registry(self, workspaces: WorkspacesSettings, directory: WorkspaceDirectory | None) -> None:
        """The directory, the store of rotated refresh tokens and the mapping library of the registry's orgs."""
        if directory is None:
            keys = workspaces.keys() if workspaces.connection_keys is not None else None
            opened = Directory.open(
                workspaces.kafka_client_config(),
                self.registry,
                prefix=workspaces.topic_prefix,
                keys=keys,
                timeout_s=workspaces.load_timeout_s,
            )
            self._owned.append(opened)
            directory = opened
        self._directory = directory
        if self._store is None and directory.keys is not None:
            writer = RegistryWriter(
                workspaces.kafka_client_config(),
                self.registry,
                prefix=workspaces.topic_prefix,
                delivery_timeout_s=workspaces.delivery_timeout_s,
            )
            self._owned.append(writer)
            self._store = writer
        if self._library is None:
            self._library = MappingLibrary(load_mapping_settings(), configured=self.mappings)

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def objects(self) -> dict[str, ObjectPoller]:
        """Every object taken over, by checkpoint key (an ``env`` object's is its name)."""
        return {o.checkpoint_key: o for org in self.orgs.values() for o in org.objects.values()}

    @property
    def env(self) -> OrgPoller:
        """The environment's org (``env``). Raises KeyError when this replica does not poll it."""
        return self.orgs[ENV_CONNECTION_ID]

    @property
    def client(self) -> SalesforceClient:
        """The ``env`` org's client."""
        return self.env.client

    @property
    def governor(self) -> Governor:
        """The ``env`` org's governor."""
        return self.env.governor

    @property
    def plans(self) -> dict[str, core.ObjectPlan]:
        """The ``env`` org's plans, by object."""
        return self.env.plans

    def _new_org(
        self,
        connection_id: str,
        salesforce_settings: SalesforceSettings,
        files: Sequence[MappingFile],
        *,
        workspaces: Sequence[Workspace] = (),
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        built_from: Connection | None = None,
        write_back: RefreshTokenWriteBack | None = None,
    ) -> OrgPoller:
        return OrgPoller(
            connection_id,
            salesforce_settings,
            files=files,
            settings=self.settings,
            governor_settings=self.gs,
            on_response=self._on_response,
            record=self.record,
            sleep=self.sleep,
            governed_sleep=self._governed_sleep,
            workspaces=workspaces,
            auth=auth,
            transport=transport,
            built_from=built_from,
            write_back=write_back,
        )

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
        """:func:`check_org_with_retries` for every object of ``env``'s mappings (once per process; without
        the registry, before joining the group).

        Raises :class:`StoppingError` when :meth:`stop` is called meanwhile (a wait between attempts
        is cut short too)."""
        env = self.env
        if not env.checked:
            await self._unless_stopped(
                check_org_with_retries(
                    env.client,
                    self.mappings,
                    list(env.plans.values()),
                    env.governor.before_call,
                    policy=self.settings.retry_policy(),
                    on_daily_limit=env.on_daily_limit,
                )
            )
            env.checked = True

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

    # -- the group -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._pending = {p.partition for p in partitions}
        if self.enabled:
            self._owned_keys = {p: set() for p in self._pending}  # each read again from its beginning

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        revoked = {p.partition for p in partitions}
        if self.enabled:
            for partition in revoked:
                self._owned_keys.pop(partition, None)
            self._release_unowned()
        else:
            env = self.orgs[ENV_CONNECTION_ID]
            for name in [n for n, o in env.objects.items() if o.checkpoint_partition in revoked]:
                self._release(env, name)
        self._pending = set()

    def _release(self, org: OrgPoller, name: str) -> None:
        poller = org.objects.pop(name)
        poller.active = False
        poller.transactions.close()
        log.info("released %s", poller.checkpoint_key)

    def service_group(self) -> bool:
        """Serve the group protocol (and apply a new assignment; with the registry, read the workspace records
        of the assigned partitions); True."""
        if self.enabled:
            self._read_workspace_records()
        else:
            self.consumer.poll(0)
        pending, self._pending = self._pending, None
        if pending is not None:
            self._assigned = pending
            if not self.enabled:
                self._assign(pending)
        elif (
            not self.enabled
            and self._takeover_failing_since is not None
            and time.monotonic() >= self._takeover_retry_at
        ):
            self._assign(self._assigned or set())  # objects of the assignment not taken over yet: try them again
        self.metrics.assigned.set(sum(len(org.objects) for org in self.orgs.values()))
        return True

    def _read_workspace_records(self) -> None:
        """The records of the assigned partitions of ``sfsync.workspaces`` read so far: which workspaces are this
        replica's (a tombstone removes one). The group never commits: an assigned partition is read from its
        beginning."""
        while True:
            messages = self.consumer.consume(500, 0)
            for message in messages:
                raw = message.key()
                key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                owned = self._owned_keys.get(message.partition() or 0)
                if not key or owned is None:
                    continue
                if message.value() is None:
                    owned.discard(key)
                else:
                    owned.add(key)
            if len(messages) < 500:
                return

    def _assign(self, partitions: set[int]) -> None:
        """Without the registry: take over ``env``'s objects whose checkpoint partitions are ``partitions``."""
        self._assigned = partitions
        env = self.orgs[ENV_CONNECTION_ID]
        count = self.settings.checkpoint_partitions
        for name in [n for n, o in env.objects.items() if o.checkpoint_partition not in partitions]:
            self._release(env, name)
        wanted = [n for n in env.plans if partition_for(n, count) in partitions and n not in env.objects]
        self._take_over(env, wanted)

    def _take_over(self, org: OrgPoller, names: Sequence[str]) -> None:
        """Open ``names`` of ``org`` (fencing a zombie of each, then its last committed checkpoint); a transient
        Kafka fault is retried (:meth:`_takeover_failed`)."""
        if not names:
            self._takeover_done()
            return
        count = self.settings.checkpoint_partitions
        keys = {org.key_of(n): n for n in names}
        try:
            opened = self._open_keys({k: partition_for(k, count) for k in keys})
        except (RetriableError, ServiceUnavailableError) as exc:
            self._takeover_failed(exc)
            opened = {}
        for key, (transactions, checkpoint, partition) in opened.items():
            name = keys[key]
            org.objects[name] = ObjectPoller(
                org.plans[name],
                checkpoint,
                settings=self.settings,
                client=org.client,
                governor=org.governor,
                transactions=transactions,
                encode=self._encode,
                metrics=self.metrics,
                checkpoint_partition=partition,
                between_pages=partial(self._between_pages, org, name),
                checkpoint_key=key,
                workspace_id=org.workspace_id,
            )
            if key not in self.report.objects:
                self.report.objects.append(key)
            log.info("polling %s (checkpoint partition %d, cursor %s)", key, partition, checkpoint.cursor_ms)
        if len(opened) == len(keys):
            self._takeover_done()

    def _open_keys(self, partitions: Mapping[str, int]) -> dict[str, tuple[Any, core.Checkpoint, int]]:
        """Checkpoint key -> its transactional producer, its last checkpoint and its partition: every producer
        first (each fencing a zombie), then each partition read once. With ``open_object``, one key at a time
        (what it opened is kept when a later key fails).

        Raises:
            ServiceUnavailableError / RetriableError: Kafka did not answer (nothing of this call is kept open).
        """
        opened: dict[str, tuple[Any, core.Checkpoint, int]] = {}
        if self._open is not None:
            for key, partition in partitions.items():
                transactions, checkpoint = self._open(key, partition)
                opened[key] = (transactions, checkpoint, partition)
            return opened
        producers: dict[str, Any] = {}
        try:
            for key in partitions:
                producers[key] = self._transactions(key)
            by_partition: dict[int, dict[str, str]] = {}
            for key, partition in partitions.items():
                by_partition.setdefault(partition, {})[key] = core.sobject_of(key)
            for partition, wanted in sorted(by_partition.items()):
                found = read_checkpoints(self.kafka, self.checkpoint_topic, partition, wanted)
                for key, sobject in wanted.items():
                    opened[key] = (producers[key], found[key] or core.Checkpoint(sobject), partition)
        except BaseException:
            for producer in producers.values():
                producer.close()
            raise
        return opened

    def _transactions(self, key: str) -> Transactions:
        return Transactions(
            self.kafka,
            f"{self.settings.topic_prefix}{self.settings.transactional_id_prefix}.{key}",
            self.settings.transaction_timeout_s,
        )

    def _open_object(self, key: str, partition: int) -> tuple[Any, core.Checkpoint]:
        """The transactional producer of the object keyed ``key`` (fencing a zombie of it) and its last
        committed checkpoint.

        Raises:
            ServiceUnavailableError / RetriableError: Kafka did not answer (retried by :meth:`_assign`'s caller).
        """
        transactions = self._transactions(key)
        sobject = core.sobject_of(key)
        try:
            checkpoint = read_checkpoint(self.kafka, self.checkpoint_topic, partition, sobject, key=key)
        except BaseException:
            transactions.close()
            raise
        return transactions, checkpoint or core.Checkpoint(sobject)

    def _takeover_done(self) -> None:
        if self._takeover_failing_since is not None:
            log.info(
                "Kafka answers again: every assigned object taken over (after %.0fs)",
                time.monotonic() - self._takeover_failing_since,
            )
            self._takeover_failing_since = None

    def _takeover_failed(self, error: SfsyncError) -> None:
        """Taking an object over failed on a transient Kafka fault: tried again after the policy's wait
        (:meth:`service_group`, or the registry's next reconciliation); a WARNING when a streak starts; the
        error raised once it outlasts ``retry_timeout_s``."""
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

    def _between_pages(self, org: OrgPoller, name: str) -> bool:
        poller = org.objects.get(name)
        if poller is not None and self._after_page is not None:
            self._after_page(name, poller.pages)
        self.service_group()
        return poller is not None and poller.active and org.objects.get(name) is poller and not self._stopping.is_set()

    # -- the registry's orgs -------------------------------------------------------------------

    def _wanted(self) -> dict[str, tuple[Workspace, ...]]:
        """With the registry: the connections this replica polls now (:func:`owned_connections`), ``env`` too
        when it is polled and partition :data:`ENV_PARTITION` is this replica's."""
        assert self._directory is not None
        owned = {key for keys in self._owned_keys.values() for key in keys}
        wanted = owned_connections(owned, self._directory.workspaces())
        wanted.pop(ENV_CONNECTION_ID, None)  # no stored connection is called env
        if self._poll_env and ENV_PARTITION in self._owned_keys:
            wanted[ENV_CONNECTION_ID] = ()
        return wanted

    def _release_unowned(self) -> None:
        """Let go of the orgs that are no longer this replica's (a revoke: nothing is opened here)."""
        wanted = self._wanted()
        for connection_id in [c for c in self.orgs if c not in wanted]:
            self._drop(connection_id, "no longer this replica's")

    def _drop(self, connection_id: str, why: str) -> None:
        """Let go of an org: its objects released now, its client closed by the loop once its poll ended."""
        org = self.orgs.pop(connection_id)
        for name in list(org.objects):
            self._release(org, name)
        if org.hold is not None:
            self.metrics.orgs_held.labels(cause=org.hold.cause).dec()
        self._closing.append(org)
        log.info("stopped polling the org of connection %s: %s", connection_id, why)

    def _reconcile(self) -> None:
        """With the registry: the orgs polled follow the assignment and the directory (see
        :mod:`sfsync.sources.ownership`): an org no longer this replica's is let go, one newly its own
        opened, one whose connection record or workspaces' mappings an operator changed opened again; the
        objects of each taken over."""
        assert self._directory is not None
        wanted = self._wanted()
        for connection_id in [c for c in self.orgs if c not in wanted]:
            self._drop(connection_id, "no longer this replica's, or none of its workspaces is ACTIVE")
        for connection_id in [c for c in self._open_holds if c not in wanted]:
            del self._open_holds[connection_id]
        now = time.monotonic()
        retrying = self._takeover_failing_since is not None and now < self._takeover_retry_at
        for connection_id, members in wanted.items():
            org = self.orgs.get(connection_id)
            if org is not None and self._changed(org, members):
                self._drop(connection_id, "its connection or its workspaces' mappings changed")
                org = None
            if org is None:
                org = self._open_org(connection_id, members, now)
                if org is None:
                    continue
            if org.workspaces != members:
                org.workspaces = members
                for poller in org.objects.values():
                    poller.workspace_id = org.workspace_id
            if retrying:
                continue
            names = [
                n
                for n in org.plans
                if n not in org.objects and org.fenced_until.get(n, 0.0) <= now and not self._stopping.is_set()
            ]
            self._take_over(org, names)
            if self._takeover_failing_since is not None:
                retrying = True
        self.metrics.orgs.set(len(self.orgs))

    def _changed(self, org: OrgPoller, members: Sequence[Workspace]) -> bool:
        """Whether an org must be opened again: an operator rewrote or removed its connection (not this
        process's write-back of a rotated token), or a workspace of it runs another mapping."""
        if org.connection_id == ENV_CONNECTION_ID or self._directory is None:
            return False
        if _mapping_choices(org.workspaces) != _mapping_choices(members):
            return True
        current = self._directory.connection(org.connection_id)
        if current is None:
            return True
        if current == org.built_from:
            return False
        written = org.write_back.written if org.write_back is not None else None
        if written is not None and current.updated_at <= written.updated_at:
            org.built_from = current  # its own write-back, read back
            return False
        return True

    def _open_org(self, connection_id: str, members: Sequence[Workspace], now: float) -> OrgPoller | None:
        """A new org poller of ``connection_id`` (its objects not taken over yet), or None when it cannot be
        opened (held as ``credentials``, or ``mapping`` for a workspace's mapping, and tried again later)."""
        hold = self._open_holds.get(connection_id)
        if hold is not None and hold.until > now:
            return None
        try:
            org = self._build_org(connection_id, members)
        except (ConnectionNotFoundError, SealError, ConfigError, MappingError) as exc:
            cause = HoldCause.MAPPING if isinstance(exc, MappingError) else HoldCause.CREDENTIALS
            initial, most = self._hold_waits(cause)
            self._open_holds[connection_id] = hold_after(
                hold, cause, now, exc.log_code(), initial_s=initial, max_s=most
            )
            if hold is None or hold.cause is not cause:
                what = "a workspace's mapping cannot be used" if cause is HoldCause.MAPPING else "it cannot be opened"
                entry = replace(
                    entry_for(exc),
                    category=Category.CONNECTION,
                    level=Level.ERROR,
                    message=f"the org of connection {connection_id} is not polled: {what}: {exc}",
                    details={**entry_for(exc).details, "hold": str(cause), "connection_id": connection_id},
                )
                spaces: list[str | None] = [w.workspace_id for w in members] or [None]
                for workspace_id in spaces:
                    self.record(replace(entry, workspace_id=workspace_id, entry_id=str(uuid.uuid4())))
            return None
        if hold is not None:
            del self._open_holds[connection_id]
        self.orgs[connection_id] = org
        log.info("polling the org of connection %s (%d object(s))", connection_id, len(org.plans))
        return org

    def _build_org(self, connection_id: str, members: Sequence[Workspace]) -> OrgPoller:
        """Raises ConnectionNotFoundError, SealError, ConfigError (the connection), MappingError (a mapping)."""
        assert self._library is not None
        assert self._directory is not None
        library = self._library
        if connection_id == ENV_CONNECTION_ID:
            assert self._env_settings is not None
            return self._new_org(
                connection_id, self._env_settings, [self.mappings], auth=self._auth, transport=self._transport
            )
        files: list[MappingFile] = []
        for workspace in members:
            file = library.compiled(workspace.mapping, workspace.variables)
            if all(file is not f for f in files):
                files.append(file)
        directory = self._directory
        record = directory.connection(connection_id)
        if record is None:
            raise ConnectionNotFoundError(connection_id)
        settings = directory.salesforce_settings(connection_id)
        write_back = None
        if self._store is not None and directory.keys is not None:
            write_back = RefreshTokenWriteBack(
                connection_id, connections=directory, keys=directory.keys, store=self._store
            )
        transport = self._transports(connection_id) if self._transports is not None else None
        return self._new_org(
            connection_id,
            settings,
            files,
            workspaces=members,
            transport=transport,
            built_from=record,
            write_back=write_back,
        )

    async def _close_dropped(self) -> None:
        """Close the clients of the orgs let go whose poll in flight ended."""
        flying = [flight.org for flight in self._tasks.values()]
        for org in [o for o in self._closing if all(o is not f for f in flying)]:
            self._closing.remove(org)
            await org.aclose()

    # -- holds ---------------------------------------------------------------------------------

    def _hold_waits(self, cause: HoldCause) -> tuple[float, float]:
        """(first wait, longest wait) of a hold of ``cause``."""
        if cause is HoldCause.ORG_DOWN:
            return self.settings.hold_recheck_s, self.settings.hold_recheck_max_s
        if cause is HoldCause.MAPPING:
            recheck = self.settings.quarantine_recheck_s or float("inf")
            return recheck, recheck
        return self.gs.auth_pause_s, self.gs.auth_pause_max_s

    def _hold(self, org: OrgPoller, cause: HoldCause, error: SfsyncError) -> None:
        """The org answered no call, refused the login or the integration, or cannot answer its mappings: it
        is not polled until the hold ends (the others are). A CONNECTION entry per workspace when the hold
        starts or changes cause (WARNING for an outage, ERROR for the others), and one ERROR once an
        outage outlasts ``retry_timeout_s``."""
        now = time.monotonic()
        previous = org.hold
        initial, most = self._hold_waits(cause)
        org.hold = hold_after(previous, cause, now, error.log_code(), initial_s=initial, max_s=most)
        if previous is None or previous.cause is not cause:
            if previous is not None:
                self.metrics.orgs_held.labels(cause=previous.cause).dec()
            self.metrics.orgs_held.labels(cause=cause).inc()
            org.hold_reported = False
            level = Level.WARNING if cause is HoldCause.ORG_DOWN else Level.ERROR
        elif cause is HoldCause.ORG_DOWN and not org.hold_reported:
            if not self.settings.retry_policy().expired(org.hold.since, now):
                return
            org.hold_reported = True
            level = Level.ERROR
        else:
            return
        wait = org.hold.until - now
        base = entry_for(error)
        message = (
            f"the org of connection {org.connection_id} is held ({cause}) for {now - org.hold.since:.0f}s: "
            f"{base.message}; tried again in {wait:.0f}s, the other orgs are polled as usual"
        )
        details = {**base.details, "hold": str(cause), "retry_in_s": f"{wait:.0f}"}
        org.record(replace(base, category=Category.CONNECTION, level=level, message=message, details=details))

    def _served(self, org: OrgPoller) -> None:
        """The org answered: a hold of it, if any, is over (one INFO entry)."""
        if org.hold is None:
            return
        hold, org.hold = org.hold, None
        self.metrics.orgs_held.labels(cause=hold.cause).dec()
        org.record(
            ErrorLogEntry(
                category=Category.CONNECTION,
                code=ORG_RESTORED,
                message=f"the org of connection {org.connection_id} answers again after {hold.cause} "
                f"({time.monotonic() - hold.since:.0f}s): polling resumes from its checkpoints",
                level=Level.INFO,
                details={"hold": str(hold.cause)},
            )
        )

    # -- one turn's work -----------------------------------------------------------------------

    async def _check(self, org: OrgPoller) -> int:
        """With the registry: describe what the org's mapping files select (:func:`check_org`, one attempt); a
        failure holds the org."""

        async def go() -> None:  # a budget pause ends the check: tried again when it ends
            await org.governor.before_call(wait_max_s=self.settings.poll_interval_s)

        try:
            for file, plans in org.checks():
                await check_org(org.client, file, plans, go)
        except StoppingError:
            return 0
        except BudgetPausedError as exc:
            org.check_due = time.monotonic() + (exc.retry_after or self.settings.poll_interval_s)
            return 0
        except DailyLimitExceeded as exc:
            org.on_daily_limit(exc)
            org.check_due = time.monotonic() + (org.governor.pause_left_s() or self.settings.poll_interval_s)
            return 0
        except MappingError as exc:
            self._hold(org, HoldCause.MAPPING, exc)
            return 0
        except RetriableError as exc:
            self._hold(org, HoldCause.ORG_DOWN, exc)
            return 0
        except FatalError as exc:
            self._hold(org, _refusal(exc), exc)
            return 0
        org.checked = True
        self._served(org)
        return 0

    async def _poll(self, org: OrgPoller, poller: ObjectPoller) -> int:
        isolated = self.enabled
        try:
            found = await poller.poll_once()
            poller.recovered()
            self._served(org)
        except StoppingError:
            return 0
        except BudgetPausedError as exc:  # the governor holds calls: poll again when it lets them go
            poller.next_due = time.monotonic() + (exc.retry_after or self.settings.poll_interval_s)
            return 0
        except DailyLimitExceeded as exc:  # the governor's pause, not a failure of this object's polls
            org.on_daily_limit(exc)
            found = 0
        except RetriableError as exc:  # retried at the next poll: this loop is the poll's one retry owner
            if isolated and is_outage(exc):
                self._hold(org, HoldCause.ORG_DOWN, exc)
                return 0
            entry = poller.failed(exc, time.monotonic())
            if entry is not None:
                org.record(entry)
            else:
                log.warning("%s: poll failed again, retrying at the next poll: %s", poller.checkpoint_key, exc)
            found = 0
        except FencedError as exc:
            log.warning("%s: another replica took it over: %s", poller.checkpoint_key, exc)
            if org.objects.get(poller.sobject) is poller:
                self._release(org, poller.sobject)
                org.fenced_until[poller.sobject] = time.monotonic() + self.settings.session_timeout_ms / 1000
            return 0
        except FatalError as exc:
            if is_drift(exc):  # a field it selects, or the object, is gone: quarantine this object only
                self._quarantine(org, poller, exc)
                return 0
            if isolated:
                self._hold(org, _refusal(exc), exc)
                return 0
            org.record(entry_for(exc, sobject=poller.sobject))
            raise
        self.report.polls += 1
        self.report.changes += found
        self.report.pages = sum(o.pages for o in self.objects.values())
        poller.schedule(found > 0, time.monotonic(), not_before_s=org.governor.pause_left_s())
        return found

    def _quarantine(self, org: OrgPoller, poller: ObjectPoller, error: FatalError) -> None:
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
        org.record(
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

    async def _recheck(self, org: OrgPoller, poller: ObjectPoller) -> int:
        """Describe a quarantined object again (no cache); lift the quarantine once
        :func:`~sfsync.sources.rules.org_problems` finds nothing wrong with its query."""
        poller.recheck_at = time.monotonic() + self.settings.quarantine_recheck_s

        async def go() -> None:  # the other objects' polls are not held longer than a poll interval
            await org.governor.before_call(wait_max_s=self.settings.poll_interval_s)

        problems: list[str] = []
        try:
            for file, plans in org.checks(poller.sobject):
                describes = await _describes(org.client, file, plans, go, refresh=True)
                problems += core.org_problems(file, plans, describes)
        except RetriableError:  # a transient fault, the budget's pause, stopping: looked at again later
            return 0
        if problems:
            return 0
        poller.quarantined = None
        poller.next_due = time.monotonic()
        self.metrics.quarantined.labels(sobject=poller.sobject).set(0)
        org.record(
            ErrorLogEntry(
                category=Category.CONNECTION,
                code=RESTORED,
                message=f"the org answers the polls of {poller.sobject} again: polling resumes from its checkpoint",
                level=Level.INFO,
                sobject=poller.sobject,
            )
        )
        return 0

    # -- the loop ------------------------------------------------------------------------------

    def _dispatch(self, now: float) -> float:
        """Start the polls due at ``now`` (:func:`pick_due`: a round robin over the orgs, one poll in flight per
        org, at most ``concurrent_polls``); returns when something not started is due next."""
        due = {cid: org.due() for cid, org in self.orgs.items()}
        held = {cid for cid, org in self.orgs.items() if org.hold is not None and org.hold.until > now}
        slots = self.settings.concurrent_polls - len(self._tasks)
        for cid, name in pick_due(due, now, after=self._last_turn, busy=self._tasks, held=held, slots=slots):
            org = self.orgs[cid]
            self._last_turn = cid
            if name == CHECK:
                work: Awaitable[int] = self._check(org)
            else:
                poller = org.objects[name]
                work = self._recheck(org, poller) if poller.quarantined is not None else self._poll(org, poller)
            self._tasks[cid] = _Flight(org, asyncio.ensure_future(work))
        if len(self._tasks) >= self.settings.concurrent_polls:
            return now + 0.2
        upcoming = [
            org.hold.until if cid in held and org.hold is not None else min(due[cid].values(), default=now + 0.2)
            for cid, org in self.orgs.items()
            if cid not in self._tasks and (due[cid] or cid in held)
        ]
        return min(upcoming, default=now + 0.2)

    def _harvest(self) -> int:
        """Collect the polls that ended: the changes they found (a fatal error of one is raised here)."""
        found = 0
        for cid, flight in [(c, f) for c, f in self._tasks.items() if f.task.done()]:
            del self._tasks[cid]
            if not flight.task.cancelled():
                found += flight.task.result()
        return found

    async def _settle(self) -> None:
        """Wait for the polls in flight to end (a stopping poll ends at its next page or call)."""
        tasks = [flight.task for flight in self._tasks.values()]
        self._tasks.clear()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, StoppingError | asyncio.CancelledError):
                log.warning("a poll in flight ended with %s: %s", type(outcome).__name__, outcome)

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
            if self.enabled:
                self.consumer.subscribe([self.workspaces_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            else:
                try:
                    await self.check_org()
                except StoppingError:
                    return self.report
                self.consumer.subscribe([self.checkpoint_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            last_change: float | None = None
            while not self._stopping.is_set():
                self.service_group()
                if self.enabled:
                    self._reconcile()
                await self._close_dropped()
                if self._harvest():
                    last_change = time.monotonic()
                if max_polls is not None and self.report.polls >= max_polls:
                    return self.report
                now = time.monotonic()
                if self.objects and last_change is None:
                    last_change = now
                if idle_exit_s is not None and last_change is not None and now - last_change > idle_exit_s:
                    return self.report
                upcoming = self._dispatch(now)
                wait = min(0.2, max(0.0, upcoming - time.monotonic()))
                if self._tasks:
                    flying = {flight.task for flight in self._tasks.values()}
                    await asyncio.wait(flying, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await self.sleep(wait)
            return self.report
        finally:
            await self._settle()
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def close(self) -> None:
        """Leave the group, close producers, the Salesforce clients, the registry's reader and writer and the
        metrics endpoint."""
        await self._settle()
        for org in list(self.orgs.values()):
            for name in list(org.objects):
                self._release(org, name)
        with contextlib.suppress(Exception):
            self.consumer.close()
        for org in [*self.orgs.values(), *self._closing]:
            await org.aclose()
        self._closing.clear()
        try:
            self.error_log.flush(10)
        except SfsyncError as exc:
            log.warning("error log: %s", exc)
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        for owned in reversed(self._owned):
            with contextlib.suppress(Exception):
                owned.close()
        self._owned.clear()
        if self._owned_registry:
            self.registry.close()


def _refusal(error: FatalError) -> HoldCause:
    """Why a fatal answer holds an org: its login refused, or the integration refused."""
    return HoldCause.CREDENTIALS if isinstance(error, AuthenticationError) else HoldCause.REFUSED


@dataclass
class _Flight:
    """A poll (or an org's check, or a quarantine's recheck) in flight, and the org it is of."""

    org: OrgPoller
    task: asyncio.Future[int]


def _mapping_choices(workspaces: Sequence[Workspace]) -> list[tuple[str | None, tuple[tuple[str, str], ...]]]:
    """The (mapping, variables) each workspace runs, in order."""
    return [(w.mapping, tuple(sorted(w.variables.items()))) for w in workspaces]


async def run_poller(
    settings: SourceSettings,
    salesforce_settings: SalesforceSettings | None,
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
