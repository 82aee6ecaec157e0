"""The thin loop around a :class:`~sfsync.sinks.contract.Sink`: Kafka in, Salesforce, Kafka out, commit.

Per batch: consume ``sfsync.writes`` (manual commits, ``read_committed``) until ``batch_size`` or
``batch_linger_s`` after the first write (under load a batch fills; at low rates it goes after the
linger); decode (:func:`write_decoder`: timestamps stay epoch milliseconds; undecodable records are
parked); ``await sink.put``; produce the results (:class:`WriteResultEncoder`) to
``sfsync.results``, and the person identities they give that this process has not published yet
(:class:`PublishedIdentities`) to ``sfsync.identities``, with one idempotent producer and flush; only
then commit the offsets the outcome says are done. Writes still pending (a missing parent, a
transient fault inside its retry deadline) are carried into the next batch, where the sink retries
them; their offsets stay uncommitted, so a crash replays them. The carry is bounded: the sink parks
a write whose retries outlast ``retry_timeout_s`` and a child whose parent is still missing after
``max_parent_waits`` batches.

The API budget's pause (the outcome's ``budget_pause_s``; the connection router, which holds a paused
connection's writes while the others go on, never sets it): the loop does not sleep it out inside a
batch, which would outlast ``max.poll.interval.ms`` and get it evicted from its group. It pauses
every assigned partition (``consumer.pause``) and keeps calling ``consume`` with short timeouts
(``poll_timeout_s``), so the group keeps it and rebalances are served, until the pause is over or
it is stopping; then it resumes the partitions and hands the carried writes to the next ``put``
first. A partition assigned during the pause is paused too (records the assigning call handed out
are carried, not dropped); a revoked one's carried writes are dropped, as always. Nothing is
committed at or past a carried write.

The carry is bounded in memory too (``carry_max``): while the sink leaves that many writes or more
pending (an org down for long, a workspace paused: :mod:`sfsync.sinks.router` holds their writes),
the partitions holding carried writes are paused, as the budget's pause pauses them, and the
consumer keeps polling the others; they are resumed once fewer are carried. A sink whose writes may
still be on their way when ``put`` returns (:class:`~sfsync.sinks.contract.Settling`) is settled
before the loop ends: what is done then is delivered and committed.

SIGTERM/SIGINT finish the batch in hand, commit and close. On a rebalance the revoked partitions'
records (in hand or carried) are dropped without committing: their new owner replays them. Before that,
the revocation waits until no write of a :class:`~sfsync.sinks.contract.Settling` sink is on its way, so
nothing this worker sent reaches Salesforce after the new owner started replaying.
A fatal error stops the loop without committing; the process exits and is restarted (by then a
human fixed the mapping, the permissions or the credentials).

Outages are ridden out, not crashed on:

- Kafka (a broker restart, the group coordinator loading or moving, the group rebalancing): a
  commit or a ``consume`` that fails with a transient fault (:class:`~sfsync.errors.RetriableError`,
  or :class:`~sfsync.errors.ServiceUnavailableError`: no answer, a member the group no longer
  knows) leaves the offsets uncommitted and the loop goes on; the next batch's commit (or, idle, the
  loop's next turn) commits them with its own. The writes themselves are already in Salesforce and
  their results in Kafka; a crash before the next commit replays them, and the sink's writes are
  idempotent (upsert by external ID, or match then update: docs/decisions/0006-one-retry-owner.md),
  so a replay does not duplicate a record. One WARNING when such a streak starts, one INFO when
  Kafka answers again; a streak longer than ``kafka_retry_timeout_s`` stops the loop with the last
  error (the process exits uncommitted, as before). Refused credentials and librdkafka's fatal
  errors stop it at once.
- The schema registry: the writer schema of a write whose schema id is new is fetched off the event
  loop (:meth:`~sfsync.serde.codec.AvroDecoder.prefetch`), retried until the registry's deadline
  (``SCHEMA_REGISTRY_RETRY_TIMEOUT_S``), while the loop keeps serving its stop signal: stopped
  meanwhile, that write and those after it are not read (nor committed) and the batch in hand ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sfsync.errors import RetriableError, ServiceUnavailableError, SfsyncError, SkippableRecordError
from sfsync.kafka.clients import TopicPartition, new_consumer, new_producer
from sfsync.kafka.delivery import ANY_TOPIC, Outbox
from sfsync.keys import person_identity
from sfsync.ops.dlq import SourceEvent
from sfsync.sinks.contract import (
    BatchOutcome,
    ErrorEntry,
    IncomingWrite,
    OnParked,
    RetriesExhaustedError,
    Settling,
    Sink,
    committed_offsets,
)
from sfsync.sinks.settings import SinkSettings

if TYPE_CHECKING:
    from sfsync.serde.codec import AvroDecoder, AvroEncoder
    from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import collect_named, load_topic_schema
from sfsync.time import now_millis, to_millis
from sfsync.topics import IDENTITIES as IDENTITIES_SPEC

__all__ = [
    "IdentityEncoder",
    "PublishedIdentities",
    "ResultEncoder",
    "SinkWorker",
    "SyncParker",
    "WriteDecoder",
    "WriteResultEncoder",
    "dlq_parker",
    "identity_record",
    "log_error_entry",
    "write_decoder",
]

log = logging.getLogger(__name__)

WRITES = "sfsync.writes"
RESULTS = "sfsync.results"
IDENTITIES = IDENTITIES_SPEC.base

_READING = "reading sfsync.writes"
_COMMITTING = "committing offsets"


class WriteDecoder(Protocol):
    """Decodes one Kafka value (``sfsync.serde.codec.AvroDecoder``)."""

    def prefetch(self, data: bytes | None) -> Awaitable[None] | None:
        """What to await before :meth:`decode` of ``data`` (its writer schema fetched), None when nothing."""
        ...

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]: ...


class ResultEncoder(Protocol):
    """Encodes a WriteResult (``sfsync.serde.codec.AvroEncoder`` for ``sfsync.results``)."""

    def encode(self, record_name: str, value: Any) -> bytes: ...


class IdentityEncoder(Protocol):
    """Encodes an Identity in Avro's storage form (``sfsync.serde.codec.AvroEncoder`` for ``sfsync.identities``)."""

    def encode_checked(self, record_name: str, value: Mapping[str, Any]) -> bytes: ...


def write_decoder(registry: SchemaRegistry) -> AvroDecoder:
    """The sink's decoder of ``sfsync.writes``: timestamps stay epoch milliseconds (``updated_at``,
    ``source.occurred_at``), which is what the sink computes with, instead of datetimes made per value;
    each Write is read by a reader compiled for its writer schema, and the sink merges its decoded
    ``fields`` as they are (:mod:`sfsync.sinks.merge`)."""
    return AvroDecoder(registry, logical_types=False)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MILLISECOND = dt.timedelta(milliseconds=1)


def _epoch_millis(value: object) -> int | None:
    """A timestamp-millis value in Avro's storage form (what fastavro would write), None if not one."""
    if type(value) is int:
        return value
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return (value - _EPOCH) // _MILLISECOND
    return None


class WriteResultEncoder:
    """Encodes the sink's WriteResults for ``sfsync.results``: the bytes of ``AvroEncoder.encode``, for less.

    ``encode`` checks every value field by field before writing, which is over half its time. The
    sink builds each WriteResult itself, from a decoded Write and Salesforce's answer: when one has
    exactly the WriteResult's fields (and its ``source`` exactly SourceRef's) and ``created`` is a
    bool, its timestamps are put in storage form (the sink's are already: then it is not copied) and
    it goes to ``encode_checked``, which checks only to explain a value fastavro refused. Anything
    else goes to ``encode``, as before.
    """

    def __init__(self, avro: AvroEncoder) -> None:
        self.avro = avro
        named: dict[str, Any] = {}
        collect_named(avro.schema.schema, named, keep_first=False)
        result = named.get("sfsync.pipeline.WriteResult")
        self._keys: frozenset[str] = frozenset()
        self._source_keys: frozenset[str] = frozenset()
        if result is not None:
            self._keys = frozenset(str(f["name"]) for f in result["fields"])
            source = next((f["type"] for f in result["fields"] if f["name"] == "source"), None)
            source = named.get(source, source) if isinstance(source, str) else source
            if isinstance(source, dict):
                self._source_keys = frozenset(str(f["name"]) for f in source["fields"])

    def encode(self, record_name: str, value: Any) -> bytes:
        stored = self._storage_form(value) if record_name == "WriteResult" else None
        if stored is None:
            return self.avro.encode(record_name, value)
        return self.avro.encode_checked(record_name, stored)

    def _storage_form(self, value: Any) -> Mapping[str, Any] | None:
        # (a dict is a Mapping: looked at first, isinstance of an ABC costs a call through its __instancecheck__)
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        if value.keys() != self._keys or type(value["created"]) is not bool:
            return None
        source = value["source"]
        if (type(source) is not dict and not isinstance(source, Mapping)) or source.keys() != self._source_keys:
            return None
        acknowledged = value["acknowledged_at"]
        if type(acknowledged) is int and type(source["occurred_at"]) is int:
            return value  # in storage form already, as the sink builds it: written as it is
        acknowledged = _epoch_millis(acknowledged)
        occurred = _epoch_millis(source["occurred_at"])
        if acknowledged is None or occurred is None:
            return None
        if type(source["occurred_at"]) is not int:
            source = {**source, "occurred_at": occurred}
        return {**value, "acknowledged_at": acknowledged, "source": source}


def identity_record(result: Mapping[str, Any], sobject: str, salesforce_id: str) -> dict[str, Any]:
    """The Identity (``sfsync.identities``) of the person record ``result`` (a WriteResult) wrote, in
    storage form: learnt when Salesforce acknowledged the write (a naive time read as UTC; none: now)."""
    acknowledged = result.get("acknowledged_at")
    learnt = to_millis(acknowledged) if isinstance(acknowledged, int | dt.datetime) else None
    return {
        "key": str(result["key"]),
        "sobject": sobject,
        "salesforce_id": salesforce_id,
        "workspace_id": str(result.get("workspace_id") or ""),
        "learnt_at": learnt if learnt is not None else now_millis(),
    }


class PublishedIdentities:
    """The person identities this sink process published to ``sfsync.identities``: record key ->
    ``(sobject, salesforce_id)``, the ``size`` most recently used (0: none kept, every one published).

    A result whose identity is here with the same value publishes nothing; a new key or a changed
    value (a Lead converted to a Contact) publishes one. Forgetting a key (evicted, or a restart)
    publishes its identity once more: harmless, the topic is compacted and the processor sets only a
    value that changed.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._known: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def published(self, key: str, identity: tuple[str, str]) -> bool:
        """Whether ``identity`` is what this process last published for ``key`` (kept recently used)."""
        if self._known.get(key) != identity:
            return False
        self._known.move_to_end(key)
        return True

    def remember(self, key: str, identity: tuple[str, str]) -> None:
        """``identity`` was published for ``key`` (Kafka acknowledged it)."""
        if self.size <= 0:
            return
        self._known[key] = identity
        self._known.move_to_end(key)
        while len(self._known) > self.size:
            self._known.popitem(last=False)


class SyncParker(Protocol):
    """``sfsync.ops.dlq.DeadLetterQueue.park``: blocks until the DLQ acknowledged the record."""

    def __call__(
        self,
        original: Any,
        reason: BaseException,
        *,
        stage: str,
        mapping: str | None = None,
        field: str | None = None,
        attempts: int = 1,
        source: SourceEvent | None = None,
        workspace: str | None = None,
    ) -> object: ...


def dlq_parker(park: SyncParker, *, stage: str = "TASK_PUT") -> OnParked:
    """Adapt a blocking DLQ ``park`` to the sink's ``on_parked`` (run off the event loop).

    The parked record names the product event its Write was planned from, so ``sfsync dlq replay``
    can re-publish that event for the processor to plan again; a write whose retries ran out
    (:class:`~sfsync.sinks.contract.RetriesExhaustedError`) carries its attempts in the headers.
    """

    async def on_parked(write: IncomingWrite, error: SfsyncError) -> None:
        fields = ", ".join(str(f) for f in getattr(error, "fields", [])) or None
        mapping = str(write.write.get("mapping") or "") or None
        source = SourceEvent.of_write(write.write)
        attempts = error.attempts if isinstance(error, RetriesExhaustedError) else 1
        workspace = str(write.write.get("workspace_id") or "") or None
        await asyncio.to_thread(
            park,
            write,
            error,
            stage=stage,
            mapping=mapping,
            field=fields,
            attempts=attempts,
            source=source,
            workspace=workspace,
        )

    return on_parked


async def log_error_entry(entry: ErrorEntry) -> None:
    """A default ``on_error_entry``: the process log (wire ``sfsync.ops.errorlog`` in production)."""
    level = logging.INFO if entry.severity == "INFO" else logging.WARNING
    log.log(
        level,
        "%s %s %s [%s] %s: %s",
        entry.category,
        entry.code,
        entry.mapping,
        entry.field,
        entry.record_key,
        entry.message,
    )


REQUIRED_WRITE_FIELDS = ("key", "sobject", "write_id")
"""What the sink cannot do without: a Write lacking one (a record of another schema or producer) is parked."""


class MalformedWriteError(SkippableRecordError):
    """A record of ``sfsync.writes`` that decodes, but is not a Write the sink can carry out."""

    default_code = "MALFORMED_WRITE"


class SinkWorker:
    """Runs the sink over a consumer and a producer: a :class:`~sfsync.kafka.clients.KafkaConsumer` and a
    confluent-kafka producer (:meth:`connect`), or fakes with the same methods.

    Kafka's errors reach it as sfsync's (:mod:`sfsync.kafka.errors`): a transient one on a commit or a
    ``consume`` is ridden out for ``kafka_retry_timeout_s`` (module doc), any other stops :meth:`run`,
    uncommitted.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        settings: SinkSettings,
        consumer: Any,
        producer: Any,
        decoder: WriteDecoder,
        encoder: ResultEncoder,
        identity_encoder: IdentityEncoder,
        on_parked: OnParked,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.sink = sink
        self.settings = settings
        self.consumer = consumer
        self.decoder = decoder
        self.encoder = encoder
        self.identity_encoder = identity_encoder
        self._on_parked = on_parked
        self._clock = clock
        self._sleep = sleep
        self.writes_topic = settings.topic_prefix + WRITES
        self.results_topic = settings.topic_prefix + RESULTS
        self.identities_topic = settings.topic_prefix + IDENTITIES
        self.published = PublishedIdentities(settings.published_identities_size)
        # the results and the identities they give: one producer, one flush before each commit
        self._results = Outbox(producer, label=ANY_TOPIC, timeout_s=settings.producer_flush_timeout_s, poll_every=1)
        self.stopping = asyncio.Event()
        self._carry: list[IncomingWrite] = []
        self._revoked: set[tuple[str, int]] = set()
        self._revoked_now: set[tuple[str, int]] = set()  # revoked during the ``consume`` call under way
        self._committed: dict[tuple[str, int], int] = {}
        self._consumed: dict[tuple[str, int], int] = {}  # per partition: the offset after the last write read
        self._held: set[tuple[str, int]] = set()  # partitions this loop paused for the budget
        self._capped: set[tuple[str, int]] = set()  # partitions this loop paused: too many writes carried
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop running :meth:`run`, and its thread
        self._loop_thread = 0
        self._kafka_failing_since: dict[str, float] = {}  # per Kafka call: the first failure of its streak
        self._commit_owed = False  # a commit failed: the offsets read are not all committed
        self.batches = 0

    # -- construction with real clients ----------------------------------------------------
    @property
    def producer(self) -> Any:
        """The producer the results and identities go out on (replacing it replaces it for them too)."""
        return self._results.producer

    @producer.setter
    def producer(self, producer: Any) -> None:
        self._results.producer = producer

    @classmethod
    def connect(
        cls, sink: Sink, *, settings: SinkSettings, on_parked: OnParked, registry: Any | None = None
    ) -> SinkWorker:
        """A worker with Kafka clients (:mod:`sfsync.kafka.clients`) and Avro codecs built from ``settings``.

        Raises:
            ConfigError: the Kafka settings are invalid.
        """
        if registry is None:
            registry = SchemaRegistry.from_settings(settings, ride_out_outages=True)
        base = settings.kafka_client_config()
        consumer = new_consumer(
            base,
            settings.group_id,
            fetch=settings.fetch(),
            options={
                "client.id": settings.client_id,
                "isolation.level": "read_committed",
                "session.timeout.ms": settings.session_timeout_ms,
                "max.poll.interval.ms": settings.max_poll_interval_ms,
            },
        )
        producer = new_producer(base, settings.client_id)
        encoder = AvroEncoder(
            registry,
            settings.topic_prefix + RESULTS,
            load_topic_schema(RESULTS),
            register=settings.register_schemas,
        )
        identity_encoder = AvroEncoder(
            registry,
            settings.topic_prefix + IDENTITIES,
            load_topic_schema(IDENTITIES),
            register=settings.register_schemas,
        )
        return cls(
            sink,
            settings=settings,
            consumer=consumer,
            producer=producer,
            decoder=write_decoder(registry),
            encoder=WriteResultEncoder(encoder),
            identity_encoder=identity_encoder,
            on_parked=on_parked,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT: finish the batch in hand, commit, close."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)

    def _on_assign(self, consumer: Any, partitions: Sequence[Any]) -> None:
        for tp in partitions:
            self._revoked.discard((tp.topic, tp.partition))

    def _on_revoke(self, consumer: Any, partitions: Sequence[Any]) -> None:
        """The partitions go to another worker: first wait until none of this worker's writes is on its way
        (:meth:`_release`), then forget them: their carried writes, and those read for the batch in hand, are
        dropped uncommitted (the new owner replays them), even when a partition comes straight back in the
        same ``consume`` call: another worker may have written their records' later writes meanwhile."""
        self._release({(tp.topic, tp.partition) for tp in partitions})
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._revoked.add(key)
            self._revoked_now.add(key)
            self._committed.pop(key, None)
            self._consumed.pop(key, None)
            self._held.discard(key)
            self._capped.discard(key)
        self._carry = [w for w in self._carry if (w.topic, w.partition) not in self._revoked]

    def _release(self, partitions: set[tuple[str, int]]) -> None:
        """Wait (in the consumer's thread, inside ``consume``) until a :class:`Settling` sink has no write on
        its way, and let it forget what it did of ``partitions``' writes (:meth:`Settling.release`). A batch
        still on its way when the revocation returned could reach Salesforce after the new owner replayed the
        same records' later writes (a registration's create landing after the replayed cancellation's
        delete). Not on the event loop's thread (``close`` at the end: :meth:`_settle` waited)."""
        loop = self._loop
        if loop is None or not isinstance(self.sink, Settling) or threading.get_ident() == self._loop_thread:
            return
        started = self._clock()
        asyncio.run_coroutine_threadsafe(self.sink.release(partitions), loop).result()
        waited = self._clock() - started
        if waited >= 0.001:
            log.info("partitions revoked: waited %.1fs for the writes on their way before giving them up", waited)

    async def run(self, *, max_batches: int | None = None) -> None:
        """Consume and sync until :attr:`stopping` is set (or ``max_batches`` batches ran)."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self.consumer.subscribe([self.writes_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.stopping.is_set() and (max_batches is None or self.batches < max_batches):
                fresh = await self._collect()
                batch = [*self._carry, *fresh]
                self._carry = []
                if not batch:
                    if self._commit_owed:
                        self._commit(self._done_offsets((), ()))
                    continue
                real = [w for w in batch if w.write]  # tombstones and parked undecodables are done already
                outcome = await self.sink.put(real) if real else BatchOutcome()
                await self._deliver(outcome)
                self._commit(self._done_offsets(batch, outcome.pending))
                self._carry = [w for w in outcome.pending if (w.topic, w.partition) not in self._revoked]
                self.batches += 1
                self._bound_carry()
                if outcome.budget_pause_s is not None:
                    await self._sit_out_budget_pause(outcome.budget_pause_s)
                elif outcome.pending and not outcome.results and not outcome.parked:
                    await self._sleep(self.settings.retry_wait_initial_s)  # nothing moved: do not spin
            await self._settle()
        finally:
            with contextlib.suppress(Exception):
                self.consumer.close()

    async def _settle(self) -> None:
        """Before the loop ends: wait for the writes a :class:`Settling` sink still has on their way, then
        deliver and commit what they did (the rest stays uncommitted and replays)."""
        if not isinstance(self.sink, Settling) or not self._carry:
            return
        carried = [w for w in self._carry if w.write]
        outcome = await self.sink.settle(carried)
        await self._deliver(outcome)
        self._commit(self._done_offsets(carried, outcome.pending))
        self._carry = [w for w in outcome.pending if (w.topic, w.partition) not in self._revoked]

    def _bound_carry(self) -> None:
        """``carry_max`` writes carried or more: pause the partitions that hold them (and keep polling);
        fewer: resume those this paused (unless the budget's pause holds them)."""
        if len(self._carry) >= self.settings.carry_max:
            holding = {(w.topic, w.partition) for w in self._carry}
            fresh = [tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) in holding - self._capped]
            if fresh:
                if not self._capped:
                    log.warning(
                        "%d writes carried (SFSYNC_SINK_CARRY_MAX=%d): the partitions holding them are paused "
                        "until fewer are",
                        len(self._carry),
                        self.settings.carry_max,
                    )
                self.consumer.pause(fresh)
                self._capped.update((tp.topic, tp.partition) for tp in fresh)
        elif self._capped:
            capped, self._capped = self._capped, set()
            resume = [tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) in capped - self._held]
            if resume:
                self.consumer.resume(resume)
            log.info("%d writes carried: the partitions paused for the carry are read again", len(self._carry))

    async def _sit_out_budget_pause(self, seconds: float) -> None:
        """Stay in the group for ``seconds`` without reading on: the assigned partitions paused, ``consume``
        called every ``poll_timeout_s`` at most; resumed at the end (or when stopping)."""
        deadline = self._clock() + seconds
        log.info("Salesforce API budget paused: partitions paused for %.0fs, polling on", seconds)
        self._pause_assigned()
        while not self.stopping.is_set():
            left = deadline - self._clock()
            if left <= 0:
                break
            timeout = min(self.settings.poll_timeout_s, left)
            messages = await self._consume(self.settings.batch_size, timeout)
            for message in messages:  # from a partition assigned by this very call, before its pause
                incoming = await self._decode(message)
                if incoming is None:
                    break  # stopping: it and the records after it are not read
                if (incoming.topic, incoming.partition) not in self._revoked:
                    self._carry.append(incoming)
            self._pause_assigned()
        held, self._held = self._held, set()
        assigned = [tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) in held - self._capped]
        if assigned:
            self.consumer.resume(assigned)

    def _pause_assigned(self) -> None:
        """Pause every assigned partition not paused yet (a new assignment comes unpaused)."""
        fresh = [tp for tp in self.consumer.assignment() if (tp.topic, tp.partition) not in self._held]
        if fresh:
            self.consumer.pause(fresh)
            self._held.update((tp.topic, tp.partition) for tp in fresh)

    async def _collect(self) -> list[IncomingWrite]:
        """Up to ``batch_size`` decoded writes, waiting at most ``batch_linger_s`` after the first (or, with writes
        carried, after the call): under load a batch fills first, at low rates it goes after the linger."""
        out: list[IncomingWrite] = []
        first_at: float | None = None
        # Carried writes wait for parents that may sit further on in other partitions: always read
        # fresh writes too, or a carry as large as a batch would stop the sink reading at all (and
        # park the children after max_parent_waits batches without ever reading their parents).
        want = max(self.settings.batch_size - len(self._carry), (self.settings.batch_size + 1) // 2)
        while len(out) < want and not self.stopping.is_set():
            timeout = self.settings.poll_timeout_s
            if first_at is not None or self._carry:
                start = first_at if first_at is not None else self._clock()
                first_at = start
                timeout = min(timeout, self.settings.batch_linger_s - (self._clock() - start))
                if timeout <= 0:
                    break
            self._revoked_now.clear()
            # librdkafka's consume(n) waits its whole timeout for fewer than n: with nothing in hand, wait for
            # one write only (it returns as that one arrives), then linger for the rest
            count = want - len(out) if first_at is not None or self._carry else 1
            messages = await self._consume(count, timeout)
            if self._revoked_now:  # read before a revocation: stale even if the partition came straight back
                out = [w for w in out if (w.topic, w.partition) not in self._revoked_now]
            for message in messages:
                incoming = await self._decode(message)
                if incoming is None:
                    break  # stopping: it and the records after it are not read (the batch ends here)
                out.append(incoming)
                first_at = first_at if first_at is not None else self._clock()
            if not messages and first_at is None and not self._carry:
                break  # idle: let the caller check for shutdown
        revoked = self._revoked
        return [w for w in out if (w.topic, w.partition) not in revoked]

    async def _consume(self, count: int, timeout: float) -> list[Any]:
        """``consumer.consume`` off the event loop; a transient Kafka fault gives no records (after
        waiting ``timeout``, so a failing call does not spin) until its streak outlasts the deadline."""
        try:
            messages: list[Any] = await asyncio.to_thread(self.consumer.consume, count, timeout)
        except (RetriableError, ServiceUnavailableError) as error:
            self._kafka_failed(error, _READING)
            await self._sleep(timeout)
            return []
        self._kafka_answered(_READING)
        return messages

    def _kafka_failed(self, error: SfsyncError, what: str) -> None:
        """A transient Kafka fault while doing ``what``: a WARNING when a streak of them starts; the
        error raised once the streak has lasted ``kafka_retry_timeout_s``."""
        now = self._clock()
        since = self._kafka_failing_since.get(what)
        if since is None:
            self._kafka_failing_since[what] = now
            log.warning(
                "Kafka: %s failed, retrying for up to %.0fs (offsets stay uncommitted meanwhile): %s",
                what,
                self.settings.kafka_retry_timeout_s,
                error,
            )
            return
        if now - since >= self.settings.kafka_retry_timeout_s:
            log.error("Kafka: %s still failing after %.0fs: stopping", what, now - since)
            raise error
        log.debug("Kafka: %s failed again (%.0fs into the outage): %s", what, now - since, error)

    def _kafka_answered(self, what: str) -> None:
        """``what`` went through: a streak of its faults, if any, is over."""
        since = self._kafka_failing_since.pop(what, None)
        if since is not None:
            log.info("Kafka: %s works again (after %.0fs of faults)", what, self._clock() - since)

    async def _until_fetched(self, fetch: Awaitable[None]) -> bool:
        """Await ``fetch`` (a writer schema's); False when the worker is stopping first (``fetch`` cancelled)."""
        fetching = asyncio.ensure_future(fetch)
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({fetching, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not fetching.done():
                fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetching
        if fetching.cancelled():
            return False
        fetching.result()  # ServiceUnavailableError: the registry did not answer until its deadline
        return True

    async def _decode(self, message: Any) -> IncomingWrite | None:
        """The write ``message`` carries (a parked one's offset done, with an empty write); None when
        the worker began stopping while its writer schema was being fetched (it was not read)."""
        value = message.value()
        fetch = self.decoder.prefetch(value)
        if fetch is not None and not await self._until_fetched(fetch):
            return None
        coords = {
            "topic": str(message.topic()),
            "partition": int(message.partition()),
            "offset": int(message.offset()),
            "key": message.key(),
            "value": value,
            "headers": tuple(message.headers() or ()),
        }
        if value is None:
            return IncomingWrite(write={}, **coords)  # tombstone: nothing to write, offset is done
        try:
            name, decoded = self.decoder.decode(value)
            if name != "Write":
                raise SkippableRecordError(f"{coords['topic']} carries {name}, not Write")
            missing = [f for f in REQUIRED_WRITE_FIELDS if not isinstance(decoded.get(f), str) or not decoded[f]]
            if missing:
                raise MalformedWriteError(f"a Write without {', '.join(missing)} (written by another producer?)")
        except SkippableRecordError as error:
            key = coords["key"].decode(errors="replace") if isinstance(coords["key"], bytes) else ""
            await self._on_parked(IncomingWrite(write={"key": key, "mapping": ""}, **coords), error)
            return IncomingWrite(write={}, **coords)
        return IncomingWrite(write=decoded, **coords)

    async def _deliver(self, outcome: BatchOutcome) -> None:
        """Produce every result, and after it the identity it gives when it is a person's
        (:func:`sfsync.keys.person_identity`) that :attr:`published` does not hold, then wait for
        Kafka's acknowledgement of them all (before any commit); only then are those identities remembered.

        Raises:
            DeliveryError: a result or identity was not stored (nothing of the batch may be committed).
        """
        learnt: dict[str, tuple[str, str]] = {}
        for result in outcome.results:
            value = self.encoder.encode("WriteResult", result)
            key = result["key"].encode()
            self._results.send(self.results_topic, value, key)
            found = person_identity(result)
            if found is None:
                continue
            record_key, identity = found
            known = learnt.get(record_key)
            if known == identity or (known is None and self.published.published(record_key, identity)):
                continue
            learnt[record_key] = identity
            record = identity_record(result, *identity)
            self._results.send(self.identities_topic, self.identity_encoder.encode_checked("Identity", record), key)
        await asyncio.to_thread(self._results.flush, self.settings.producer_flush_timeout_s)
        for record_key, identity in learnt.items():
            self.published.remember(record_key, identity)

    def _done_offsets(
        self, batch: Sequence[IncomingWrite], pending: Sequence[IncomingWrite]
    ) -> dict[tuple[str, int], int]:
        """Per partition the offset to commit: every write read so far below it is done (not pending).

        Not just this batch's: once a carried write is done, the writes read after it in earlier
        batches (done then, but held back by it) are committed too, else the commit stalls below them.
        """
        for tp, offset in committed_offsets(batch, ()).items():
            if tp not in self._revoked:
                self._consumed[tp] = max(self._consumed.get(tp, 0), offset)
        offsets = dict(self._consumed)
        for w in pending:
            tp = (w.topic, w.partition)
            offsets[tp] = min(offsets.get(tp, w.offset), w.offset)
        return offsets

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        advance = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
            if (topic, partition) not in self._revoked and offset > self._committed.get((topic, partition), -1)
        ]
        if not advance:
            self._commit_owed = False
            return
        try:
            self.consumer.commit(offsets=advance, asynchronous=False)
        except (RetriableError, ServiceUnavailableError) as error:
            self._commit_owed = True  # at-least-once: a later commit (or a replay after a crash) covers them
            self._kafka_failed(error, _COMMITTING)
            return
        self._kafka_answered(_COMMITTING)
        self._commit_owed = False
        for tp in advance:
            self._committed[(tp.topic, tp.partition)] = tp.offset
