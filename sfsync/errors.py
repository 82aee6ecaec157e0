"""The one error taxonomy of sfsync.

Every failure that crosses a package boundary is one of three kinds, grouped by what the caller
must do (like Kafka Connect's ``RetriableException`` / ``DataException`` and Meltano's
fatal / retriable / skippable split):

- :class:`FatalError`: stop and tell a human (bad configuration, broken credentials, a service
  that does not answer within its bounded wait).
- :class:`RetriableError`: try again later, after ``retry_after`` seconds when known.
- :class:`SkippableRecordError`: this one record is bad; park it (DLQ) and go on with the stream.

Third-party exceptions are wrapped (``raise X from e``) and never escape a package. Messages are
written for the person reading them and never contain secrets.

Each class also knows how the error log files it (:meth:`SfsyncError.log_category`,
:meth:`~SfsyncError.log_code`, :meth:`~SfsyncError.log_level`): the error log, the DLQ headers and
the metrics ask the error itself, so there is no second classifier anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import ClassVar


class Category(StrEnum):
    """An error-log entry's category: who has to act."""

    CONNECTION = "CONNECTION"
    SYNC = "SYNC"
    RATE_LIMIT = "RATE_LIMIT"


class Level(StrEnum):
    """An error-log entry's level."""

    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class SfsyncError(Exception):
    """Root of every error sfsync raises on purpose."""

    category: ClassVar[Category] = Category.SYNC
    level: ClassVar[Level] = Level.ERROR
    default_code: ClassVar[str] = "ERROR"
    log_each_record: ClassVar[bool] = True
    """Whether each record parked for this error gets an error-log entry of its own (False: one entry
    covers them all, recorded where the error arose, e.g. a quarantined mapping's)."""

    def log_category(self) -> Category:
        """The error-log category of this error."""
        return self.category

    def log_level(self) -> Level:
        """The error-log level of this error."""
        return self.level

    def log_code(self) -> str:
        """The error-log code: the error's own ``code`` attribute when it has one, else its class's."""
        own = getattr(self, "code", None)
        return own if isinstance(own, str) and own else self.default_code

    def log_message(self) -> str:
        """The message an error-log entry carries."""
        return str(self)

    def log_fields(self) -> Sequence[str]:
        """The fields the error names (the entry's ``field`` is the first)."""
        return ()

    def log_details(self) -> dict[str, str]:
        """Extra details for the entry (string values), beyond the error's class and fields."""
        return {}


class FatalError(SfsyncError):
    """Processing cannot go on until someone changes something."""

    category = Category.CONNECTION
    default_code = "FATAL"


class RetriableError(SfsyncError):
    """A transient fault; the same call may succeed later.

    ``retry_after`` is the wait the other side asked for, in seconds, when it said so.
    """

    category = Category.CONNECTION
    level = Level.WARNING
    default_code = "TRANSIENT"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SkippableRecordError(SfsyncError):
    """One record cannot be processed as it is; the stream goes on without it."""

    default_code = "RECORD_SKIPPED"


class ConfigError(FatalError):
    """Settings are invalid. Carries every problem found, not just the first."""

    default_code = "CONFIG_INVALID"

    def __init__(self, component: str, problems: Sequence[str]) -> None:
        self.component = component
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {component} settings ({len(self.problems)} problem(s)):\n{lines}")


class ServiceUnavailableError(FatalError):
    """A service (Kafka, the schema registry, Salesforce) did not answer within its bounded wait."""

    default_code = "SERVICE_UNAVAILABLE"


class StackError(FatalError):
    """The local stack could not be fetched, started or stopped."""


class SchemaError(FatalError):
    """A schema file is invalid, or the registry refused a schema (e.g. not BACKWARD compatible)."""

    category = Category.SYNC
    default_code = "SCHEMA_ERROR"


class RecordValidationError(SkippableRecordError):
    """A record does not fit its Avro schema. Names the record type and the offending field."""

    default_code = "RECORD_VALIDATION"

    def __init__(self, record_type: str, field: str, reason: str) -> None:
        self.record_type = record_type
        self.field = field
        self.reason = reason
        super().__init__(f"{record_type}.{field}: {reason}")

    def log_fields(self) -> Sequence[str]:
        return (self.field,)


class DeliveryError(RetriableError):
    """Kafka did not acknowledge one or more records; ``failures`` lists them (topic, key, reason)."""

    default_code = "KAFKA_DELIVERY_FAILED"

    def __init__(self, failures: Sequence[tuple[str, str | None, str]]) -> None:
        self.failures = list(failures)
        shown = "; ".join(f"{t}[{k}]: {r}" for t, k, r in self.failures[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(f"{len(self.failures)} record(s) not delivered: {shown}{more}")
