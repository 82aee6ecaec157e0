"""The dead letter queue: records with bad data, parked on ``sfsync.dlq`` byte for byte.

:meth:`DeadLetterQueue.park` writes the ORIGINAL key, value and headers unchanged, plus context
headers in Kafka Connect's ``DeadLetterQueueReporter`` shape (``__connect.errors.topic``,
``.partition``, ``.offset``, ``.stage``, ``.class.name``, ``.exception.class.name``,
``.exception.message``, ``.exception.stacktrace``) and sfsync's own (``sfsync.errors.mapping``,
``.field``, ``.code``, ``.category``, ``.attempts``, ``.parked_at``). It returns only once Kafka
has acknowledged the record, so the caller may then commit the original offset (guarantee 1).

:meth:`DeadLetterQueue.replay` re-produces parked records to their original topic with a
``sfsync.replayed_from`` header and remembers what it replayed in its own consumer group
(committed offset plus, in the commit metadata, the offsets replayed beyond it), so running the
same replay twice does not send a record twice. Replay is at-least-once: if the commit fails
after the records were delivered, the next replay sends them again (sink writes are idempotent).
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sfsync.errors import DeliveryError, ServiceUnavailableError, SfsyncError
from sfsync.topics import DLQ

from ._kafka import new_consumer, new_producer, partitions_of, read_messages
from .errorlog import SourceRef, entry_for, scrub

if TYPE_CHECKING:
    from .errorlog import ErrorLog
    from .metrics import SinkMetrics

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
REPLAYED_FROM = "sfsync.replayed_from"

STACKTRACE_MAX_CHARS = 4000
_METADATA_MAX_CHARS = 3000  # brokers keep up to offset.metadata.max.bytes (4096 by default)


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

    @classmethod
    def from_headers(cls, headers: Mapping[str, bytes]) -> ErrorContext:
        def text(name: str) -> str:
            return headers.get(name, b"").decode("utf-8", "replace")

        def number(name: str) -> int:
            raw = text(name)
            return int(raw) if raw.lstrip("-").isdigit() else -1

        parked = text(H_PARKED_AT)
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
            parked_at=dt.datetime.fromisoformat(parked) if parked else None,
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

    def matches(self, record: ParkedRecord) -> bool:
        ctx = record.context
        return (
            (self.mapping is None or ctx.mapping == self.mapping)
            and (self.code is None or ctx.code == self.code)
            and (self.category is None or ctx.category == self.category)
            and (self.topic is None or ctx.topic == self.topic)
        )


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
    record (queued; the error log's own ``flush()`` confirms it). ``metrics``: counts
    ``sfsync_dlq_records_total{mapping,code}``.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        *,
        prefix: str = "",
        component: str = "sinks.SalesforceSink",
        error_log: ErrorLog | None = None,
        metrics: SinkMetrics | None = None,
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
        self._producer: Any = None

    def _get_producer(self) -> Any:
        if self._producer is None:
            self._producer = new_producer(self._config, "sfsync-dlq", self._timeout_s)
        return self._producer

    def _send(self, topic: str, key: bytes | None, value: bytes | None, headers: list[Header]) -> _Delivery:
        """Produce one record; the delivery report is filled in by the next poll/flush."""
        from confluent_kafka import KafkaException

        report = _Delivery()

        def on_delivery(err: Any, msg: Any) -> None:
            report.done = True
            if err is not None:
                report.error = str(err.str())
            else:
                report.partition, report.offset = msg.partition(), msg.offset()

        producer = self._get_producer()
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return report
            except BufferError:
                producer.poll(0.1)
            except KafkaException as exc:
                raise DeliveryError([(topic, _show_key(key), str(exc))]) from exc

    def _flush(self) -> None:
        remaining = self._get_producer().flush(self._timeout_s + 5)
        if remaining:
            raise DeliveryError([(self.topic, None, f"{remaining} record(s) unacknowledged")])

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
    ) -> tuple[int, int]:
        """Park ``original`` because of ``reason``; return its (partition, offset) in the DLQ.

        Returns only after Kafka acknowledged the record; raises
        :class:`~sfsync.errors.DeliveryError` otherwise (then do not commit the original offset).
        """
        record = OriginalRecord.of(original)
        refs = SourceRef(record.topic, record.partition, record.offset)
        if isinstance(reason, SfsyncError):
            entry = entry_for(reason, mapping=mapping, field=field, key=_show_key(record.key), refs=refs, now=now)
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
        headers = [h for h in record.headers if not _is_context(h[0])]
        headers += [(name, val.encode()) for name, val in context]
        report = self._send(self.topic, record.key, record.value, headers)
        self._flush()
        if not report.done or report.error is not None:
            raise DeliveryError([(self.topic, _show_key(record.key), report.error or "no delivery report")])
        if self._metrics is not None:
            self._metrics.parked(mapping or "", code)
        if self._error_log is not None and entry is not None:
            self._error_log.record(entry)
        return report.partition, report.offset

    # ------------------------------------------------------------------ read
    def _read_state(self, consumer: Any, partitions: Sequence[int]) -> dict[int, _ReplayState]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            committed = consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=10)
        except KafkaException as exc:
            raise ServiceUnavailableError(f"cannot read the replay state of {self.topic}: {exc}") from exc
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
    def replay(self, where: ReplayFilter | None = None, *, dry_run: bool = False) -> int:
        """Send the parked records matching ``where`` (all when ``None``), not yet replayed, back
        to their original topics; return how many were sent (or would be, with ``dry_run``).

        Each keeps its original key, value and headers plus ``sfsync.replayed_from:
        <dlq topic>:<partition>:<offset>``. Delivery is confirmed before the replay group
        records them as done.
        """
        from confluent_kafka import KafkaException, TopicPartition

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
            if dry_run or not chosen:
                return len(chosen)
            reports = []
            for r in chosen:
                origin = f"{self.topic}:{r.dlq_partition}:{r.dlq_offset}".encode()
                headers = [h for h in r.headers if h[0] != REPLAYED_FROM] + [(REPLAYED_FROM, origin)]
                reports.append((r, self._send(r.context.topic, r.key, r.value, headers)))
            self._flush()
            failed = [
                (r.context.topic, _show_key(r.key), rep.error or "no delivery report")
                for r, rep in reports
                if not rep.done or rep.error is not None
            ]
            if failed:
                raise DeliveryError(failed)
            offsets = [
                TopicPartition(self.topic, p, s.committed, metadata=encode_offsets(sorted(s.extra)))
                for p, s in new_state.items()
            ]
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                raise ServiceUnavailableError(
                    f"replayed {len(chosen)} record(s) but could not record it in group {self.replay_group}: {exc}; "
                    "a new replay may send them again"
                ) from exc
            return len(chosen)
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._flush()


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
