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
"""

from __future__ import annotations

from collections.abc import Sequence


class SfsyncError(Exception):
    """Root of every error sfsync raises on purpose."""


class FatalError(SfsyncError):
    """Processing cannot go on until someone changes something."""


class RetriableError(SfsyncError):
    """A transient fault; the same call may succeed later.

    ``retry_after`` is the wait the other side asked for, in seconds, when it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SkippableRecordError(SfsyncError):
    """One record cannot be processed as it is; the stream goes on without it."""


class ConfigError(FatalError):
    """Settings are invalid. Carries every problem found, not just the first."""

    def __init__(self, component: str, problems: Sequence[str]) -> None:
        self.component = component
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {component} settings ({len(self.problems)} problem(s)):\n{lines}")


class ServiceUnavailableError(FatalError):
    """A service (Kafka, the schema registry, Salesforce) did not answer within its bounded wait."""


class StackError(FatalError):
    """The local stack could not be fetched, started or stopped."""


class SchemaError(FatalError):
    """A schema file is invalid, or the registry refused a schema (e.g. not BACKWARD compatible)."""


class RecordValidationError(SkippableRecordError):
    """A record does not fit its Avro schema. Names the record type and the offending field."""

    def __init__(self, record_type: str, field: str, reason: str) -> None:
        self.record_type = record_type
        self.field = field
        self.reason = reason
        super().__init__(f"{record_type}.{field}: {reason}")


class DeliveryError(RetriableError):
    """Kafka did not acknowledge one or more records; ``failures`` lists them (topic, key, reason)."""

    def __init__(self, failures: Sequence[tuple[str, str | None, str]]) -> None:
        self.failures = list(failures)
        shown = "; ".join(f"{t}[{k}]: {r}" for t, k, r in self.failures[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(f"{len(self.failures)} record(s) not delivered: {shown}{more}")
