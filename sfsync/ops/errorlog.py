"""The error log: one Avro ``ErrorLogEntry`` per failure or notable decision, on ``sfsync.errors``.

- :func:`entry_for` (pure) turns an error of sfsync's taxonomy or a classified Salesforce error
  into an entry: category (CONNECTION / SYNC / RATE_LIMIT), code, level, retryable.
- :func:`lookup_policy_skip`, :func:`source_of_truth_conflict`, :func:`rate_limit_pause` build the
  informational and governor entries.
- :class:`ErrorLog` publishes entries (``record()`` queues, ``flush()`` confirms delivery).
- :func:`tail` reads them back.

Messages are redacted (tokens, bearer headers, JWTs, URL credentials) before they are kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from sfsync.errors import (
    Category,
    DeliveryError,
    Level,
    RetriableError,
    SfsyncError,
    SkippableRecordError,
)
from sfsync.kafka.clients import new_producer
from sfsync.kafka.delivery import Outbox
from sfsync.kafka.errors import RecordRejectedError
from sfsync.kafka.reading import read_messages
from sfsync.redaction import redact
from sfsync.time import utcnow
from sfsync.topics import ERRORS

if TYPE_CHECKING:
    from sfsync.ops.metrics import ErrorCounter
    from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.schema import load_topic_schema

log = logging.getLogger(__name__)

RECORD_NAME = "ErrorLogEntry"

# sfsync's own codes (Salesforce's errorCode is used as is otherwise).
AUTH_FAILED = "AUTH_FAILED"
RATE_LIMIT_PAUSE = "RATE_LIMIT_PAUSE"
LOOKUP_POLICY_SKIP = "LOOKUP_POLICY_SKIP"
SOURCE_OF_TRUTH_CONFLICT = "SOURCE_OF_TRUTH_CONFLICT"


def scrub(text: str) -> str:
    """``text`` without tokens, bearer headers, JWTs or ``user:password@`` in URLs."""
    return redact(text)


@dataclass(frozen=True)
class SourceRef:
    """The Kafka record (and product event) an entry is about."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    event_id: str | None = None


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ErrorLogEntry:
    """One record of ``sfsync.errors`` (``schemas/sfsync.ops.ErrorLogEntry.avsc``)."""

    category: Category
    code: str
    message: str
    level: Level = Level.ERROR
    mapping: str | None = None
    sobject: str | None = None
    field: str | None = None
    record_key: str | None = None
    salesforce_id: str | None = None
    source: SourceRef | None = None
    retryable: bool = False
    details: Mapping[str, str] = dc_field(default_factory=dict)
    entry_id: str = dc_field(default_factory=_new_id)
    occurred_at: dt.datetime = dc_field(default_factory=utcnow)
    workspace_id: str | None = None
    """The workspace concerned (decision 0009), when one is."""

    def to_avro(self) -> dict[str, Any]:
        src = self.source or SourceRef()
        return {
            "entry_id": self.entry_id,
            "occurred_at": self.occurred_at,
            "level": str(self.level),
            "category": str(self.category),
            "code": self.code,
            "message": self.message,
            "mapping": self.mapping,
            "sobject": self.sobject,
            "field": self.field,
            "record_key": self.record_key,
            "salesforce_id": self.salesforce_id,
            "source_topic": src.topic,
            "source_partition": src.partition,
            "source_offset": src.offset,
            "source_event_id": src.event_id,
            "retryable": self.retryable,
            "details": dict(self.details),
            "workspace_id": self.workspace_id,
        }

    @classmethod
    def from_avro(cls, value: Mapping[str, Any]) -> ErrorLogEntry:
        """The entry a decoded ``ErrorLogEntry`` dict describes."""
        refs = (value.get("source_topic"), value.get("source_partition"), value.get("source_offset"))
        event_id = value.get("source_event_id")
        source = SourceRef(*refs, event_id) if any(r is not None for r in (*refs, event_id)) else None
        occurred = value["occurred_at"]
        if isinstance(occurred, int):
            occurred = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=occurred)
        return cls(
            category=Category(value["category"]),
            code=value["code"],
            message=value["message"],
            level=Level(value["level"]),
            mapping=value.get("mapping"),
            sobject=value.get("sobject"),
            field=value.get("field"),
            record_key=value.get("record_key"),
            salesforce_id=value.get("salesforce_id"),
            source=source,
            retryable=bool(value.get("retryable", False)),
            details=dict(value.get("details") or {}),
            entry_id=str(value["entry_id"]),
            occurred_at=occurred,
            workspace_id=value.get("workspace_id"),
        )

    def one_line(self, *, with_record: bool = True) -> str:
        """A log line: time, level, category, code, where, message. ``with_record=False`` leaves out
        the record key and Salesforce id (a key may hold a member's email); the Kafka coordinates stay."""
        record = (("key", self.record_key), ("id", self.salesforce_id)) if with_record else ()
        where = [
            f"{name}={val}"
            for name, val in (
                ("workspace", self.workspace_id),
                ("mapping", self.mapping),
                ("sobject", self.sobject),
                ("field", self.field),
                *record,
                ("component", self.details.get("component")),
            )
            if val
        ]
        if self.source and self.source.topic:
            where.append(f"at={self.source.topic}[{self.source.partition}]@{self.source.offset}")
        stamp = self.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return f"{stamp} {self.level:<7} {self.category:<10} {self.code} {' '.join(where)} {self.message}".replace(
            "  ", " "
        ).rstrip()


# ---------------------------------------------------------------------- classification
def _classify(error: BaseException) -> tuple[Category, str, Level, bool]:
    """(category, code, level, retryable) for one error, as the error's own class states them."""
    if isinstance(error, SfsyncError):
        return error.log_category(), error.log_code(), error.log_level(), isinstance(error, RetriableError)
    own = getattr(error, "code", None)
    return Category.SYNC, own if isinstance(own, str) else "ERROR", Level.ERROR, False


def category_and_code(error: BaseException) -> tuple[Category, str]:
    """The error-log category and code of ``error`` (what DLQ headers and metrics carry)."""
    category, code, _, _ = _classify(error)
    return category, code


def entry_for(
    error: SfsyncError,
    *,
    mapping: str | None = None,
    sobject: str | None = None,
    field: str | None = None,
    key: str | None = None,
    refs: SourceRef | None = None,
    salesforce_id: str | None = None,
    now: dt.datetime | None = None,
    workspace: str | None = None,
) -> ErrorLogEntry:
    """The error-log entry for ``error`` (pure); ``workspace``: the workspace concerned, if any.

    The category, code, level, message, fields and details are the error's own
    (:meth:`sfsync.errors.SfsyncError.log_category` and its siblings): Salesforce errors keep
    Salesforce's ``errorCode`` (an OAuth refusal becomes ``AUTH_FAILED``, with Salesforce's code
    under ``details["salesforce_code"]``); the field defaults to the first one the error names.
    """
    category, code, level, retryable = _classify(error)
    details: dict[str, str] = {"error_class": type(error).__name__}
    if isinstance(error, SfsyncError):
        message = error.log_message()
        details.update(error.log_details())
        fields = list(error.log_fields())
    else:
        message, fields = str(error), []
    if field is None and fields:
        field = fields[0]
    if len(fields) > 1:
        details["fields"] = ",".join(fields)
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int | float):
        details["retry_after_s"] = f"{retry_after:g}"
    return ErrorLogEntry(
        category=category,
        code=code,
        message=scrub(message)[:2000],
        level=level,
        mapping=mapping,
        sobject=sobject,
        field=field,
        record_key=key,
        salesforce_id=salesforce_id,
        source=refs,
        retryable=retryable,
        details=details,
        occurred_at=now or utcnow(),
        workspace_id=workspace or None,
    )


def lookup_policy_skip(
    message: str,
    *,
    mapping: str,
    sobject: str | None = None,
    field: str | None = None,
    key: str | None = None,
    refs: SourceRef | None = None,
    now: dt.datetime | None = None,
) -> ErrorLogEntry:
    """INFO: a write was skipped on purpose by a mapping's lookup policy (e.g. parent not found)."""
    return ErrorLogEntry(
        Category.SYNC,
        LOOKUP_POLICY_SKIP,
        scrub(message),
        Level.INFO,
        mapping=mapping,
        sobject=sobject,
        field=field,
        record_key=key,
        source=refs,
        occurred_at=now or utcnow(),
    )


def source_of_truth_conflict(
    message: str,
    *,
    mapping: str,
    sobject: str | None = None,
    field: str | None = None,
    key: str | None = None,
    salesforce_id: str | None = None,
    refs: SourceRef | None = None,
    now: dt.datetime | None = None,
) -> ErrorLogEntry:
    """INFO: a value was not written because the other side owns the field (conflict policy)."""
    return ErrorLogEntry(
        Category.SYNC,
        SOURCE_OF_TRUTH_CONFLICT,
        scrub(message),
        Level.INFO,
        mapping=mapping,
        sobject=sobject,
        field=field,
        record_key=key,
        salesforce_id=salesforce_id,
        source=refs,
        occurred_at=now or utcnow(),
    )


def rate_limit_pause(
    message: str, *, until: dt.datetime, details: Mapping[str, str] | None = None, now: dt.datetime | None = None
) -> ErrorLogEntry:
    """WARNING: the governor paused Salesforce calls until ``until`` to keep the API reserve."""
    return ErrorLogEntry(
        Category.RATE_LIMIT,
        RATE_LIMIT_PAUSE,
        message,
        Level.WARNING,
        retryable=True,
        details={"paused_until": until.astimezone(dt.UTC).isoformat(timespec="seconds"), **(details or {})},
        occurred_at=now or utcnow(),
    )


# ---------------------------------------------------------------------- publishing
def log_entry(logger: logging.Logger, entry: ErrorLogEntry) -> None:
    """Log ``entry`` as the process's own line: INFO entries without the record (no personal data at
    INFO), the others at WARNING with it."""
    if entry.level is Level.INFO:
        logger.info("%s", entry.one_line(with_record=False))
    else:
        logger.warning("%s", entry.one_line())


class ErrorLog:
    """Publishes :class:`ErrorLogEntry` records to ``<prefix>sfsync.errors``.

    ``record()`` queues (and counts the entry in ``sfsync_errors_total`` when metrics are given);
    ``flush()`` waits for Kafka's acknowledgement and raises
    :class:`~sfsync.errors.DeliveryError` for entries that were not stored.
    """

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        registry: SchemaRegistry,
        *,
        prefix: str = "",
        register: bool = True,
        metrics: ErrorCounter | None = None,
        delivery_timeout_s: float = 30.0,
    ) -> None:
        self.topic = ERRORS.name(prefix)
        self._metrics = metrics
        self._encoder = AvroEncoder(registry, self.topic, load_topic_schema(ERRORS.base), register=register)
        self._outbox = Outbox(
            new_producer(kafka_config, "sfsync-errorlog", delivery_timeout_s=delivery_timeout_s),
            label=self.topic,
            timeout_s=delivery_timeout_s,
            poll_every=1,
        )

    def record(self, entry: ErrorLogEntry) -> None:
        """Queue ``entry``.

        Raises:
            RecordValidationError: it does not fit the schema.
            DeliveryError: Kafka cannot take it (unknown topic, too large, queue full for the
                delivery timeout).
        """
        data = self._encoder.encode(RECORD_NAME, entry.to_avro())
        try:
            self._outbox.send(self.topic, data)
        except RecordRejectedError as exc:  # a log that cannot hold the entry: the log failed, not the entry
            raise DeliveryError([(self.topic, None, str(exc))]) from exc
        if self._metrics is not None:
            self._metrics.error(entry.category, entry.code)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued entry is stored (at most ``timeout_s``, default the delivery
        timeout + 5 s); DeliveryError for the entries that were not."""
        self._outbox.flush(timeout_s)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._outbox.close(5)


# ---------------------------------------------------------------------- reading
def tail(
    kafka_config: Mapping[str, Any],
    registry: SchemaRegistry,
    *,
    prefix: str = "",
    last: int | None = 20,
    follow: bool = False,
    category: Category | str | None = None,
    poll_s: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    on_unreadable: Callable[[str], None] | None = None,
) -> Iterator[ErrorLogEntry]:
    """Entries of ``<prefix>sfsync.errors``, oldest first.

    ``last``: start that many records before the end (``None``: from the beginning). Without
    ``follow`` the iterator ends at the end of the log as it was when called; with it, it waits
    for new entries until ``stop()`` returns True. Never joins or commits a consumer group.
    A record that is not an entry (:func:`entry_of`) is passed over: ``on_unreadable`` is told where
    it sits and why (default: a WARNING log line), and the entries after it follow.
    """
    wanted = Category(category) if category is not None else None
    decoder = AvroDecoder(registry)
    topic = ERRORS.name(prefix)
    for msg in read_messages(kafka_config, topic, last=last, follow=follow, poll_s=poll_s, stop=stop):
        try:
            entry = entry_of(decoder, msg.value())
        except SkippableRecordError as exc:
            where = f"{topic}[{msg.partition()}]@{msg.offset()}: {exc}"
            if on_unreadable is not None:
                on_unreadable(where)
            else:
                log.warning("not an error-log entry, passed over: %s", where)
            continue
        if wanted is None or entry.category == wanted:
            yield entry


def entry_of(decoder: AvroDecoder, value: bytes | None) -> ErrorLogEntry:
    """The entry one record of ``sfsync.errors`` holds.

    Raises:
        SkippableRecordError: the record is not an ``ErrorLogEntry`` (undecodable, or another schema's record).
    """
    name, decoded = decoder.decode(value or b"")
    if name != RECORD_NAME:
        raise SkippableRecordError(f"a {name} record, not an {RECORD_NAME}")
    return ErrorLogEntry.from_avro(decoded)
