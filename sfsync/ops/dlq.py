"""The dead letter queue: records with bad data, parked on ``sfsync.dlq`` byte for byte.

:meth:`DeadLetterQueue.park` writes the ORIGINAL key, value and headers unchanged, plus context
headers in Kafka Connect's ``DeadLetterQueueReporter`` shape (``__connect.errors.topic``,
``.partition``, ``.offset``, ``.stage``, ``.class.name``, ``.exception.class.name``,
``.exception.message``, ``.exception.stacktrace``) and sfsync's own (``sfsync.errors.mapping``,
``.field``, ``.code``, ``.category``, ``.attempts``, ``.parked_at``). A Write parked by the sink
also names the product event it was planned from (``sfsync.errors.source.topic``, ``.partition``,
``.offset``, from the Write's ``source``) and its workspace (``sfsync.errors.workspace``, decision 0009; absent
from records parked before workspaces). :meth:`~DeadLetterQueue.park` returns only once Kafka has
acknowledged the record, so the caller may then commit the original offset (guarantee 1).

:meth:`DeadLetterQueue.replay` sends parked records back, to one of two targets
(:class:`ReplayTarget`):

- ``SOURCE`` (default): a parked Write that names its source is settled by re-publishing that
  product event, read from its topic at its offset byte for byte (key, value, headers), once per
  event however many of its writes were parked. The processor plans it again with the mapping it
  runs now, so a fixed mapping applies. Its per-field clock keeps ties, so the replayed event
  re-plans every field that no newer event has changed since (newer values are not overwritten).
  A source event no longer in its topic (retention, compaction) is reported in
  :attr:`ReplayReport.missing` and its parked writes stay unreplayed (``AS_PARKED`` can send them);
  the rest go on. Records parked by the processor (the product event itself) and writes without a
  source go back to their original topic as they are.
- ``AS_PARKED``: every parked record goes back to its original topic as it is (for when the org
  was fixed instead of the mapping, e.g. a picklist value added).

Every replayed record carries ``sfsync.replayed_from: <dlq topic>:<partition>:<offset>`` (several,
comma-separated, for a source event that settles several parked writes). The replay remembers what
it settled in its own consumer group (committed offset plus, in the commit metadata, the offsets
settled beyond it), so running the same replay twice does not send a record twice. Replay is
at-least-once: if the commit fails after the records were delivered, the next replay sends them
again (sink writes are idempotent).
"""

from __future__ import annotations

import datetime as dt
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sfsync.errors import DeliveryError, ServiceUnavailableError, SfsyncError
from sfsync.kafka.clients import KafkaConsumer, TopicPartition, new_consumer, new_producer
from sfsync.kafka.delivery import DeliveryReport, Outbox
from sfsync.kafka.errors import RecordRejectedError
from sfsync.kafka.reading import new_reader, partitions_of, read_at, read_messages
from sfsync.ops.errorlog import SourceRef, entry_for, scrub
from sfsync.topics import DLQ

if TYPE_CHECKING:
    from sfsync.ops.errorlog import ErrorLog
    from sfsync.ops.metrics import ParkedCounter

CONNECT_PREFIX = "__connect.errors."
SFSYNC_PREFIX = "sfsync.errors."
H_TOPIC = "__connect.errors.topic"
H_PARTITION = "__connect.errors.partition"
H_OFFSET = "__connect.errors.offset"
H_STAGE = "__connect.errors.stage"
H_CLASS = "__connect.errors.class.name"
H_EXC_CLASS = "__connect.errors.exception.class.name"
H_EXC_MESSAGE = "__connect.errors.exception.message"
H_EXC_STACKTRACE = "__connect.errors.exception.stacktrace"
H_MAPPING = "sfsync.errors.mapping"
H_FIELD = "sfsync.errors.field"
H_CODE = "sfsync.errors.code"
H_CATEGORY = "sfsync.errors.category"
H_ATTEMPTS = "sfsync.errors.attempts"
H_PARKED_AT = "sfsync.errors.parked_at"
H_SOURCE_TOPIC = "sfsync.errors.source.topic"
H_SOURCE_PARTITION = "sfsync.errors.source.partition"
H_SOURCE_OFFSET = "sfsync.errors.source.offset"
H_WORKSPACE = "sfsync.errors.workspace"
REPLAYED_FROM = "sfsync.replayed_from"

STACKTRACE_MAX_CHARS = 4000
_METADATA_MAX_CHARS = 3000  # brokers keep up to offset.metadata.max.bytes (4096 by default)
_HEADER_NUMBER = re.compile(r"-?[0-9]{1,19}")
"""A number header as :meth:`DeadLetterQueue.park` writes it (ASCII digits, a Kafka offset at most)."""


class Stage(StrEnum):
    """Where processing failed, in Kafka Connect's ``Stage`` names.

    sfsync's sink: decoding a record is ``VALUE_CONVERTER``/``KEY_CONVERTER``, applying a mapping
    ``TRANSFORMATION``, the Salesforce write ``TASK_PUT``.
    """

    KEY_CONVERTER = "KEY_CONVERTER"
    VALUE_CONVERTER = "VALUE_CONVERTER"
    HEADER_CONVERTER = "HEADER_CONVERTER"
    TRANSFORMATION = "TRANSFORMATION"
    TASK_PUT = "TASK_PUT"
    KAFKA_CONSUME = "KAFKA_CONSUME"
    KAFKA_PRODUCE = "KAFKA_PRODUCE"


class MessageLike(Protocol):
    """A consumed record as confluent-kafka's ``Message`` presents it."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


Header = tuple[str, bytes]


@dataclass(frozen=True, order=True)
class SourceEvent:
    """The product event a Write was planned from: where it sits in its topic."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def of_write(cls, write: Mapping[str, Any]) -> SourceEvent | None:
        """From a decoded Write's ``source`` (None when it has none, or an incomplete one)."""
        source = write.get("source")
        if not isinstance(source, Mapping):
            return None
        topic, partition, offset = source.get("topic"), source.get("partition"), source.get("offset")
        if not topic or not isinstance(partition, int) or not isinstance(offset, int):
            return None
        return cls(str(topic), partition, offset)

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class OriginalRecord:
    """A consumed record: where it was read and its exact bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()

    @classmethod
    def of(cls, message: MessageLike | OriginalRecord | Any) -> OriginalRecord:
        """From a confluent-kafka ``Message``, an aiokafka ``ConsumerRecord`` or an OriginalRecord."""
        if isinstance(message, OriginalRecord):
            return message

        def get(name: str) -> Any:
            attr = getattr(message, name)
            return attr() if callable(attr) else attr

        headers = tuple((str(k), bytes(v or b"")) for k, v in (get("headers") or ()))
        return cls(str(get("topic")), int(get("partition")), int(get("offset")), get("key"), get("value"), headers)


@dataclass(frozen=True)
class ErrorContext:
    """What the context headers of a parked record say."""

    topic: str
    partition: int
    offset: int
    stage: str
    class_name: str
    exception_class: str
    message: str
    stacktrace: str
    mapping: str | None
    field: str | None
    code: str
    category: str
    attempts: int
    parked_at: dt.datetime | None
    source: SourceEvent | None = None
    """The product event a parked Write was planned from (None for anything else)."""
    workspace: str | None = None
    """The workspace of a parked Write (None when the record names none, or was parked before workspaces)."""

    @classmethod
    def from_headers(cls, headers: Mapping[str, bytes]) -> ErrorContext:
        """What the headers say; a header that is absent or unreadable (written by hand, or by another
        tool) reads as unknown: -1 for a number, None for the time, never an error."""

        def text(name: str) -> str:
            return headers.get(name, b"").decode("utf-8", "replace")

        def number(name: str) -> int:
            raw = text(name)
            return int(raw) if _HEADER_NUMBER.fullmatch(raw) else -1

        def moment(name: str) -> dt.datetime | None:
            try:
                return dt.datetime.fromisoformat(text(name)) if text(name) else None
            except ValueError:
                return None

        source_topic, source_partition, source_offset = (
            text(H_SOURCE_TOPIC),
            number(H_SOURCE_PARTITION),
            number(H_SOURCE_OFFSET),
        )
        ok = bool(source_topic) and source_partition >= 0 and source_offset >= 0
        source = SourceEvent(source_topic, source_partition, source_offset) if ok else None
        return cls(
            topic=text(H_TOPIC),
            partition=number(H_PARTITION),
            offset=number(H_OFFSET),
            stage=text(H_STAGE),
            class_name=text(H_CLASS),
            exception_class=text(H_EXC_CLASS),
            message=text(H_EXC_MESSAGE),
            stacktrace=text(H_EXC_STACKTRACE),
            mapping=text(H_MAPPING) or None,
            field=text(H_FIELD) or None,
            code=text(H_CODE),
            category=text(H_CATEGORY),
            attempts=max(number(H_ATTEMPTS), 0),
            parked_at=moment(H_PARKED_AT),
            source=source,
            workspace=text(H_WORKSPACE) or None,
        )


@dataclass(frozen=True)
class ParkedRecord:
    """One record of the DLQ: where it sits, the original bytes and headers, and why it is there."""

    dlq_partition: int
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    """The original record's headers (context headers removed)."""
    context: ErrorContext
    replayed: bool = False


@dataclass(frozen=True)
class ReplayFilter:
    """Which parked records to replay; ``None`` fields match everything."""

    mapping: str | None = None
    code: str | None = None
    category: str | None = None
    topic: str | None = None
    workspace: str | None = None

    def matches(self, record: ParkedRecord) -> bool:
        ctx = record.context
        return (
            (self.workspace is None or ctx.workspace == self.workspace)
            and (self.mapping is None or ctx.mapping == self.mapping)
            and (self.code is None or ctx.code == self.code)
            and (self.category is None or ctx.category == self.category)
            and (self.topic is None or ctx.topic == self.topic)
        )


class ReplayTarget(StrEnum):
    """Where :meth:`DeadLetterQueue.replay` sends parked records (see the module doc)."""

    SOURCE = "source"
    """Re-publish the product event a parked Write was planned from (re-plans it with today's mapping)."""
    AS_PARKED = "as-parked"
    """Send every parked record itself back to its original topic."""


@dataclass(frozen=True)
class ReplaySend:
    """One record a replay produces and the parked records it settles.

    ``source`` set: re-publish that product event (read from its topic); None: send the one parked
    record as it is to its original topic.
    """

    parked: tuple[ParkedRecord, ...]
    source: SourceEvent | None = None

    @property
    def topic(self) -> str:
        return self.source.topic if self.source is not None else self.parked[0].context.topic


@dataclass(frozen=True)
class MissingSource:
    """A source event a replay could not read back, and the parked writes left unreplayed because of it."""

    source: SourceEvent
    reason: str
    parked: tuple[ParkedRecord, ...]

    def __str__(self) -> str:
        at = ", ".join(f"{r.dlq_partition}:{r.dlq_offset}" for r in self.parked)
        return f"{self.source}: {self.reason} (parked write(s) at {at} left in the DLQ)"


@dataclass(frozen=True)
class ReplayReport:
    """What :meth:`DeadLetterQueue.replay` did (or, with ``dry_run``, would do)."""

    settled: int = 0
    """Parked records now marked as replayed."""
    sent: int = 0
    """Records produced: parked records as they are, plus source events re-published."""
    republished: int = 0
    """Of ``sent``, the source events re-published."""
    missing: tuple[MissingSource, ...] = ()
    """Source events no longer readable; their parked writes stay in the DLQ, unreplayed."""


def plan_replay(chosen: Sequence[ParkedRecord], target: ReplayTarget) -> list[ReplaySend]:
    """What to produce for ``chosen`` (in DLQ order), one send per source event at its first parked write.

    With :attr:`ReplayTarget.SOURCE`, parked records that name their source event are grouped by
    it; the others (and everything with :attr:`ReplayTarget.AS_PARKED`) are sent as they are.
    """
    sends: list[ReplaySend] = []
    by_source: dict[SourceEvent, list[ParkedRecord]] = {}
    for record in chosen:
        source = record.context.source if target is ReplayTarget.SOURCE else None
        if source is None:
            sends.append(ReplaySend((record,)))
        elif source in by_source:
            by_source[source].append(record)
        else:
            by_source[source] = [record]
            sends.append(ReplaySend((), source))
    return [ReplaySend(tuple(by_source[s.source]), s.source) if s.source is not None else s for s in sends]


def replay_headers(original: Sequence[Header], origins: Sequence[str]) -> list[Header]:
    """``original`` without an earlier ``sfsync.replayed_from``, plus one naming ``origins``."""
    return [h for h in original if h[0] != REPLAYED_FROM] + [(REPLAYED_FROM, ",".join(origins).encode())]


@dataclass
class _Delivery:
    error: str | None = None
    partition: int = -1
    offset: int = -1
    done: bool = False


@dataclass
class _ReplayState:
    committed: int
    extra: set[int] = dc_field(default_factory=set)


def short_stacktrace(error: BaseException, limit: int = 6) -> str:
    """Up to ``limit`` frames per exception of the chain, redacted, at most 4000 characters."""
    text = "".join(traceback.format_exception(error, limit=limit))
    text = scrub(text)
    return text if len(text) <= STACKTRACE_MAX_CHARS else text[: STACKTRACE_MAX_CHARS - 15] + "\n...[truncated]"


def _qualified(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_offsets(offsets: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` as ``"1-3,7"`` (sorted, de-duplicated)."""
    parts: list[str] = []
    ordered = sorted(set(offsets))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def decode_offsets(text: str) -> set[int]:
    """Inverse of :func:`encode_offsets`; anything unreadable counts as nothing."""
    out: set[int] = set()
    for part in (text or "").split(","):
        low, sep, high = part.partition("-")
        if low.isdigit() and (not sep or high.isdigit()):
            out.update(range(int(low), int(high if sep else low) + 1))
    return out


class DeadLetterQueue:
    """Parks, lists and replays records of ``<prefix>sfsync.dlq``.

    ``error_log``: when given, :meth:`park` also records the SYNC entry naming mapping, field and
    record (queued; the error log's own ``flush()`` confirms it), unless the error covers its records
    with one entry of its own (``log_each_record`` False: a quarantined mapping). ``metrics``: counts
    ``sfsync_dlq_records_total{mapping,code}``.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        *,
        prefix: str = "",
        component: str = "sinks.SalesforceSink",
        error_log: ErrorLog | None = None,
        metrics: ParkedCounter | None = None,
        delivery_timeout_s: float = 30.0,
        replay_group: str | None = None,
    ) -> None:
        self.topic = DLQ.name(prefix)
        self.component = component
        self.replay_group = replay_group or f"{prefix}sfsync.dlq.replay"
        self._config = dict(kafka_config)
        self._error_log = error_log
        self._metrics = metrics
        self._timeout_s = delivery_timeout_s
        self._outbox: Outbox | None = None

    def _get_outbox(self) -> Outbox:
        if self._outbox is None:
            producer = new_producer(self._config, "sfsync-dlq", delivery_timeout_s=self._timeout_s)
            self._outbox = Outbox(producer, label=self.topic, timeout_s=self._timeout_s)
        return self._outbox

    def _send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[Header], partition: int | None = None
    ) -> _Delivery:
        """Produce one record (to ``partition``, else the key's); the delivery report is filled in by the next
        poll/flush. Raises DeliveryError when it cannot be queued (a record too large included:
        it cannot be parked, so the caller must not go on as if it were)."""
        report = _Delivery()

        def on_delivery(delivered: DeliveryReport) -> None:
            report.done = True
            report.error = delivered.error
            report.partition, report.offset = delivered.partition, delivered.offset

        try:
            self._get_outbox().send(topic, value, key, partition=partition, headers=headers, on_delivery=on_delivery)
        except RecordRejectedError as exc:
            raise DeliveryError([(topic, _show_key(key), str(exc))]) from exc
        return report

    def _flush(self) -> None:
        self._get_outbox().flush()

    # ------------------------------------------------------------------ park
    def park(
        self,
        original: MessageLike | OriginalRecord | Any,
        reason: BaseException,
        *,
        stage: Stage | str,
        mapping: str | None = None,
        field: str | None = None,
        attempts: int = 1,
        now: dt.datetime | None = None,
        source: SourceEvent | None = None,
        workspace: str | None = None,
    ) -> tuple[int, int]:
        """Park ``original`` because of ``reason``; return its (partition, offset) in the DLQ.

        ``source``: the product event a parked Write was planned from (lets :meth:`replay` re-plan it);
        ``workspace``: the workspace it belongs to (a header, and the error-log entry's workspace).

        Returns only after Kafka acknowledged the record; raises
        :class:`~sfsync.errors.DeliveryError` otherwise (then do not commit the original offset).
        """
        record = OriginalRecord.of(original)
        refs = SourceRef(record.topic, record.partition, record.offset)
        if isinstance(reason, SfsyncError):
            entry = entry_for(
                reason, mapping=mapping, field=field, key=_show_key(record.key), refs=refs, now=now, workspace=workspace
            )
            category, code, message, field = str(entry.category), entry.code, entry.message, entry.field
        else:  # a bug in a rule still parks the record, and says what happened
            entry = None
            category, code, message = "SYNC", "UNEXPECTED_ERROR", scrub(str(reason))[:2000]
        parked_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="milliseconds")
        context: list[tuple[str, str]] = [
            (H_TOPIC, record.topic),
            (H_PARTITION, str(record.partition)),
            (H_OFFSET, str(record.offset)),
            (H_STAGE, str(stage)),
            (H_CLASS, self.component),
            (H_EXC_CLASS, _qualified(reason)),
            (H_EXC_MESSAGE, message),
            (H_EXC_STACKTRACE, short_stacktrace(reason)),
            (H_MAPPING, mapping or ""),
            (H_FIELD, field or ""),
            (H_CODE, code),
            (H_CATEGORY, category),
            (H_ATTEMPTS, str(attempts)),
            (H_PARKED_AT, parked_at),
        ]
        if source is not None:
            context += [
                (H_SOURCE_TOPIC, source.topic),
                (H_SOURCE_PARTITION, str(source.partition)),
                (H_SOURCE_OFFSET, str(source.offset)),
            ]
        if workspace:
            context.append((H_WORKSPACE, workspace))
        headers = [h for h in record.headers if not _is_context(h[0])]
        headers += [(name, val.encode()) for name, val in context]
        report = self._send(self.topic, record.key, record.value, headers)
        self._flush()
        if not report.done or report.error is not None:
            raise DeliveryError([(self.topic, _show_key(record.key), report.error or "no delivery report")])
        if self._metrics is not None:
            self._metrics.parked(mapping or "", code)
        if self._error_log is not None and entry is not None and getattr(reason, "log_each_record", True):
            self._error_log.record(entry)
        return report.partition, report.offset

    # ------------------------------------------------------------------ read
    def _read_state(self, consumer: KafkaConsumer, partitions: Sequence[int]) -> dict[int, _ReplayState]:
        committed = consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=10)
        state: dict[int, _ReplayState] = {}
        for tp in committed:
            state[tp.partition] = _ReplayState(max(tp.offset, 0), decode_offsets(tp.metadata or ""))
        return state

    def _parked(self, msg: Any, state: Mapping[int, _ReplayState]) -> ParkedRecord:
        headers = [(str(k), bytes(v or b"")) for k, v in (msg.headers() or ())]
        seen = state.get(msg.partition())
        replayed = seen is not None and (msg.offset() < seen.committed or msg.offset() in seen.extra)
        return ParkedRecord(
            dlq_partition=msg.partition(),
            dlq_offset=msg.offset(),
            key=msg.key(),
            value=msg.value(),
            headers=tuple(h for h in headers if not _is_context(h[0])),
            context=ErrorContext.from_headers(dict(headers)),
            replayed=replayed,
        )

    def list_parked(self, *, last: int | None = None, where: ReplayFilter | None = None) -> list[ParkedRecord]:
        """Parked records, oldest first: the ``last`` ones (all when ``None``) that match ``where``.

        ``replayed`` tells whether :meth:`replay` already sent a record back.
        """
        consumer = new_consumer(self._config, self.replay_group)
        try:
            state = self._read_state(consumer, list(partitions_of(consumer, self.topic)))
            found = [self._parked(m, state) for m in read_messages(self._config, self.topic, last=None)]
        finally:
            consumer.close()
        if where is not None:
            found = [r for r in found if where.matches(r)]
        return found if last is None else found[-last:] if last > 0 else []

    # ------------------------------------------------------------------ replay
    def replay(
        self,
        where: ReplayFilter | None = None,
        *,
        target: ReplayTarget = ReplayTarget.SOURCE,
        dry_run: bool = False,
    ) -> ReplayReport:
        """Send back the parked records matching ``where`` (all when ``None``) not replayed yet.

        ``target`` says where (see :class:`ReplayTarget` and the module doc). Delivery is confirmed
        before the replay group records the parked records as settled. ``dry_run`` reports what
        would be sent without reading source events (so ``missing`` stays empty).

        Raises:
            DeliveryError: a record was not acknowledged (nothing is recorded as settled).
            ServiceUnavailableError: Kafka did not answer.
        """
        where = where or ReplayFilter()
        consumer = new_consumer(self._config, self.replay_group)
        try:
            state = self._read_state(consumer, list(partitions_of(consumer, self.topic)))
            starts = {p: s.committed for p, s in state.items()}
            records = [
                self._parked(m, state)
                for m in read_messages(self._config, self.topic, starts=starts, consumer=consumer)
            ]
            chosen = [r for r in records if not r.replayed and where.matches(r) and r.context.topic]
            chosen, new_state = _plan(records, chosen, state)
            sends = plan_replay(chosen, target)
            if dry_run or not sends:
                return _report(sends)
            found, reasons = self._read_sources([s.source for s in sends if s.source is not None])
            missing = tuple(
                MissingSource(s.source, reasons[s.source], s.parked)
                for s in sends
                if s.source is not None and s.source in reasons
            )
            if missing:
                left_out = {(r.dlq_partition, r.dlq_offset) for m in missing for r in m.parked}
                chosen = [r for r in chosen if (r.dlq_partition, r.dlq_offset) not in left_out]
                chosen, new_state = _plan(records, chosen, state)
                sends = plan_replay(chosen, target)
            reports = []
            for send in sends:
                origins = [f"{self.topic}:{r.dlq_partition}:{r.dlq_offset}" for r in send.parked]
                if send.source is not None:  # back to its own partition: the key's order stays as it was
                    event, partition = found[send.source], send.source.partition
                    key, value, headers = event.key, event.value, event.headers
                else:
                    key, value, headers = send.parked[0].key, send.parked[0].value, send.parked[0].headers
                    partition = None
                delivery = self._send(send.topic, key, value, replay_headers(headers, origins), partition)
                reports.append((send, key, delivery))
            self._flush()
            failed = [
                (send.topic, _show_key(key), rep.error or "no delivery report")
                for send, key, rep in reports
                if not rep.done or rep.error is not None
            ]
            if failed:
                raise DeliveryError(failed)
            offsets = [
                TopicPartition(self.topic, p, s.committed, metadata=encode_offsets(sorted(s.extra)))
                for p, s in new_state.items()
            ]
            report = _report(sends, missing)
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except SfsyncError as exc:
                raise ServiceUnavailableError(
                    f"replayed {report.settled} record(s) but could not record it in group {self.replay_group}: "
                    f"{exc}; a new replay may send them again"
                ) from exc
            return report
        finally:
            consumer.close()

    def _read_sources(
        self, sources: Sequence[SourceEvent], timeout_s: float = 15.0
    ) -> tuple[dict[SourceEvent, OriginalRecord], dict[SourceEvent, str]]:
        """Read each source event at its offset: (found, why the others could not be read)."""
        found: dict[SourceEvent, OriginalRecord] = {}
        reasons: dict[SourceEvent, str] = {}
        by_partition: dict[tuple[str, int], list[SourceEvent]] = {}
        for source in sorted(set(sources)):
            by_partition.setdefault((source.topic, source.partition), []).append(source)
        if not by_partition:
            return found, reasons
        consumer = new_reader(self._config)
        try:
            for (topic, partition), wanted in by_partition.items():
                try:
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
                except SfsyncError as exc:
                    for source in wanted:
                        reasons[source] = f"cannot read {topic}[{partition}]: {exc}"
                    continue
                for source in wanted:
                    if source.offset < low:
                        reasons[source] = f"no longer in the topic (retention: its first offset is now {low})"
                    elif source.offset >= high:
                        reasons[source] = f"not in the topic (its end offset is {high})"
                    else:
                        record = read_at(consumer, topic, partition, source.offset, timeout_s)
                        if record is None:
                            reasons[source] = "no longer in the topic (compacted or deleted)"
                        else:
                            found[source] = OriginalRecord.of(record)
        finally:
            consumer.close()
        return found, reasons

    def close(self) -> None:
        """Deliver what is queued; DeliveryError when Kafka did not store it."""
        if self._outbox is not None:
            self._flush()


def _report(sends: Sequence[ReplaySend], missing: Sequence[MissingSource] = ()) -> ReplayReport:
    return ReplayReport(
        settled=sum(len(s.parked) for s in sends),
        sent=len(sends),
        republished=sum(1 for s in sends if s.source is not None),
        missing=tuple(missing),
    )


def _plan(
    records: Sequence[ParkedRecord], chosen: Sequence[ParkedRecord], state: Mapping[int, _ReplayState]
) -> tuple[list[ParkedRecord], dict[int, _ReplayState]]:
    """The records to replay now and the replay state after them (committed offset = first record
    not handled; offsets handled beyond it go to the commit metadata, which is bounded: when it
    would not fit, the highest chosen records wait for the next replay)."""
    picked = list(chosen)
    while True:
        done: dict[int, set[int]] = {}
        for r in picked:
            done.setdefault(r.dlq_partition, set()).add(r.dlq_offset)
        new_state: dict[int, _ReplayState] = {}
        for p, old in state.items():
            handled = old.extra | done.get(p, set())
            offsets = sorted(r.dlq_offset for r in records if r.dlq_partition == p)
            committed = old.committed
            for off in offsets:  # the first record not handled (gaps in offsets are skipped)
                if off < committed:
                    continue
                if off not in handled:
                    break
                committed = off + 1
            new_state[p] = _ReplayState(committed, {o for o in handled if o >= committed})
        if all(len(encode_offsets(sorted(s.extra))) <= _METADATA_MAX_CHARS for s in new_state.values()) or not picked:
            return picked, new_state
        picked.pop()


def _is_context(name: str) -> bool:
    return name.startswith((CONNECT_PREFIX, SFSYNC_PREFIX))


def _show_key(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace") if key is not None else None
