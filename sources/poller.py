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
  re-emits one (the checkpoint's de-duplication set covers the re-read lookback window). The window
  starts at ``max(cursor, covered) - lookback_s``, ``covered`` being the org's ``Date`` when the last
  poll that read all its pages ran its query (:mod:`sfsync.sources.rules`, "Covered time"): an object
  gone quiet after a burst costs one query call per poll, not one per 2,000 rows of the burst.
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
import logging
import signal
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any, Protocol, TypeVar

import httpx

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
from sfsync.kafka.reading import new_reader, read_partition
from sfsync.mapping import (
    MappingError,
    MappingFile,
    MappingLibrary,
    load_configured_mappings,
    load_mapping_settings,
    require_valid,
)
from sfsync.ops.errorlog import ErrorLog, ErrorLogEntry, entry_for, log_entry
from sfsync.salesforce import SalesforceClient, SalesforceSettings
from sfsync.salesforce.auth import AuthProvider
from sfsync.salesforce.governor import Governor, GovernorSettings, load_governor_settings
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sources import rules as core
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.objects import (
    FencedError,
    ObjectPoller,
    StoppingError,
    Transactions,
    check_org,
    check_org_with_retries,
)
from sfsync.sources.orgs import CHECK, ORG_RESTORED, QUARANTINED, RESTORED, OrgPoller, PollerReport, Turns
from sfsync.sources.ownership import ENV_PARTITION, owned_connections
from sfsync.sources.schedule import Hold, HoldCause, hold_after
from sfsync.sources.settings import SourceSettings
from sfsync.topics import CHANGES, ERRORS, REGISTRY_TOPICS, WORKSPACES, TopicSpec
from sfsync.workspaces.directory import Directory
from sfsync.workspaces.logins import ConnectionStore, RefreshTokenWriteBack
from sfsync.workspaces.records import ENV_CONNECTION_ID, Connection, ConnectionNotFoundError, Workspace
from sfsync.workspaces.sealing import ConnectionKeys, SealError
from sfsync.workspaces.settings import WorkspacesSettings
from sfsync.workspaces.writer import RegistryWriter

__all__ = [
    "CHECK",
    "COMPONENT",
    "ORG_RESTORED",
    "QUARANTINED",
    "RESTORED",
    "FencedError",
    "ObjectPoller",
    "OrgPoller",
    "Poller",
    "PollerReport",
    "StoppingError",
    "Transactions",
    "check_org",
    "check_org_with_retries",
    "partition_for",
    "read_checkpoint",
    "read_checkpoints",
    "run_poller",
]

COMPONENT = "sources.SalesforcePoller"
"""How the poller names itself in ``sfsync.errors`` entries (``details.component``)."""

log = logging.getLogger(__name__)

_T = TypeVar("_T")


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
        self._owned: list[Any] = []  # what close() closes besides (a directory, a registry writer)
        self._directory: WorkspaceDirectory | None = None
        self._store = store
        self._library = library
        self._open_holds: dict[str, Hold[HoldCause]] = {}  # connections that could not be opened, and until when
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
        self.turns = Turns(
            self.orgs,
            settings=settings,
            governor_settings=self.gs,
            metrics=self.metrics,
            report=self.report,
            release=self._release,
            isolated=self.enabled,
        )

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
        self._take_over([(env, wanted)])

    def _take_over(self, wanted: Sequence[tuple[OrgPoller, Sequence[str]]]) -> None:
        """Open the objects ``wanted`` (each org with names of its objects): fence a zombie of each, then read
        its last committed checkpoint. A transient Kafka fault is retried (:meth:`_takeover_failed`); what
        opened before it is kept."""
        count = self.settings.checkpoint_partitions
        keys = {org.key_of(name): (org, name) for org, names in wanted for name in names}
        opened, failed = self._open_keys({k: partition_for(k, count) for k in keys})
        for key, (transactions, checkpoint, partition) in opened.items():
            org, name = keys[key]
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
        if failed is not None:
            self._takeover_failed(failed)
        else:
            self._takeover_done()

    def _open_keys(
        self, partitions: Mapping[str, int]
    ) -> tuple[dict[str, tuple[Any, core.Checkpoint, int]], SfsyncError | None]:
        """(checkpoint key -> its transactional producer, its last checkpoint and its partition; the transient
        Kafka fault that kept others from opening, if any). Every producer first, made side by side (each
        fencing a zombie: one round trip to the transaction coordinator each), then each partition read once;
        a fault opens none of them. With ``open_object``, one key at a time, each fault only its key's.
        """
        opened: dict[str, tuple[Any, core.Checkpoint, int]] = {}
        failed: SfsyncError | None = None
        if self._open is not None:
            for key, partition in partitions.items():
                try:
                    transactions, checkpoint = self._open(key, partition)
                except (RetriableError, ServiceUnavailableError) as exc:
                    failed = exc
                    continue
                opened[key] = (transactions, checkpoint, partition)
            return opened, failed
        if not partitions:
            return opened, None
        producers: dict[str, Any] = {}
        try:
            with ThreadPoolExecutor(max_workers=min(16, len(partitions))) as pool:
                made = {key: pool.submit(self._transactions, key) for key in partitions}
            errors: list[BaseException] = []
            for key, future in made.items():
                error = future.exception()
                if error is None:
                    producers[key] = future.result()
                else:
                    errors.append(error)
            if errors:
                raise errors[0]
            by_partition: dict[int, dict[str, str]] = {}
            for key, partition in partitions.items():
                by_partition.setdefault(partition, {})[key] = core.sobject_of(key)
            for partition, wanted in sorted(by_partition.items()):
                found = read_checkpoints(self.kafka, self.checkpoint_topic, partition, wanted)
                for key, sobject in wanted.items():
                    opened[key] = (producers[key], found[key] or core.Checkpoint(sobject), partition)
        except (RetriableError, ServiceUnavailableError) as exc:
            for producer in producers.values():
                producer.close()
            return {}, exc
        except BaseException:
            for producer in producers.values():
                producer.close()
            raise
        return opened, None

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
        self.turns.retire(org)
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
        taking: list[tuple[OrgPoller, Sequence[str]]] = []
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
            names = [n for n in org.plans if n not in org.objects and org.fenced_until.get(n, 0.0) <= now]
            if names:
                taking.append((org, names))
        retrying = self._takeover_failing_since is not None and now < self._takeover_retry_at
        if taking and not retrying and not self._stopping.is_set():
            self._take_over(taking)
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
            initial, most = self.turns.hold_waits(cause)
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
                await self.turns.close_retired()
                if self.turns.harvest():
                    last_change = time.monotonic()
                if max_polls is not None and self.report.polls >= max_polls:
                    return self.report
                now = time.monotonic()
                if self.objects and last_change is None:
                    last_change = now
                if idle_exit_s is not None and last_change is not None and now - last_change > idle_exit_s:
                    return self.report
                upcoming = self.turns.dispatch(now)
                wait = min(0.2, max(0.0, upcoming - time.monotonic()))
                flying = self.turns.in_flight
                if flying:
                    await asyncio.wait(flying, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await self.sleep(wait)
            return self.report
        finally:
            await self.turns.settle()
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def close(self) -> None:
        """Leave the group, close producers, the Salesforce clients, the registry's reader and writer and the
        metrics endpoint."""
        await self.turns.settle()
        for org in list(self.orgs.values()):
            for name in list(org.objects):
                self._release(org, name)
        with contextlib.suppress(Exception):
            self.consumer.close()
        await self.turns.close_retired(every=True)
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
