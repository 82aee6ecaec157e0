"""The sink's contract, as Kafka Connect's ``SinkTask.put`` states one: what goes in and out, what a raise means.

:class:`Sink` is what the loop (:mod:`sfsync.sinks.loop`) drives. ``put(writes)`` is handed decoded
``sfsync.writes`` records with their Kafka coordinates and returns a :class:`BatchOutcome`:

- ``results``: one WriteResult per write Salesforce acknowledged (for ``sfsync.results``), in Avro's
  storage form as the sink builds it (``acknowledged_at`` epoch milliseconds, ``source`` as decoded);
- ``parked``: the writes that were bad as they are (a :class:`~sfsync.errors.SkippableRecordError`),
  each already handed to ``on_parked`` (the DLQ) and awaited;
- ``pending``: writes not done yet (a transient fault inside its retry deadline, a parent not there
  yet): the loop hands them to the next ``put`` and does not commit past them;
- ``committed``: per (topic, partition), the offset below which every write is acknowledged or
  parked — the only offsets the loop may commit;
- ``budget_pause_s``: set when the Salesforce API budget stopped the batch (the governor's pause,
  a spent daily allocation): the loop must not call ``put`` again for that many seconds. It keeps
  its consumer in the group meanwhile (partitions paused, polling on), then hands the pending
  writes to the next ``put`` first. A pause is no write's failure: it spends no retry deadline.
- ``unreachable``: set when Salesforce answered no call of the batch (5xx, connections refused or
  timing out, past the batch's retries): the org is down as far as it can tell. Its writes are
  pending, and the outage spent none of their retry deadlines: whoever drives the sink may hold them
  (the connection router re-checks the org on a backoff) without their being parked meanwhile.

A sink whose writes may still be on their way when ``put`` returns (the connection router:
:mod:`sfsync.sinks.router`) is :class:`Settling`: the loop calls ``settle`` before it stops, which
waits for them and starts nothing new.

The sink is the one owner of its writes' retries (the Salesforce client makes one attempt per call).
A Salesforce transient fault does not escape ``put``: a write it hits is retried in later rounds and,
carried as ``pending``, in later batches, until ``retry_timeout_s`` has passed since its first
failure; a failure after that parks it (:class:`RetriesExhaustedError`, with its last error's code), so its
offset commits and the partition goes on. Anything ``put`` raises (a
:class:`~sfsync.errors.FatalError`: credentials, permissions, metadata) means nothing of the batch
may be committed: the loop stops, and the batch replays after a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from sfsync.errors import Category, RetriableError, SfsyncError, SkippableRecordError


@dataclass(frozen=True)
class IncomingWrite:
    """One ``sfsync.writes`` record: the decoded Write and where it came from (raw bytes for the DLQ)."""

    write: Mapping[str, Any]
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()

    def __init__(
        self,
        write: Mapping[str, Any],
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        # The generated __init__ of a frozen dataclass sets each field through object.__setattr__: one
        # call per field, made for every write consumed. The same attributes, set in one update.
        self.__dict__.update(
            write=write, topic=topic, partition=partition, offset=offset, key=key, value=value, headers=headers
        )


@dataclass(frozen=True)
class ErrorEntry:
    """An error-log entry (``sfsync.errors``): SYNC for record problems, INFO severity for policy skips."""

    category: Literal["SYNC", "CONNECTION", "RATE_LIMIT"]
    severity: Literal["INFO", "WARNING", "ERROR"]
    code: str
    message: str
    mapping: str
    record_key: str
    write_id: str
    sobject: str
    field: str | None = None
    salesforce_id: str | None = None
    workspace_id: str | None = None
    """The workspace the entry is about (the write's), when one is."""


@dataclass(frozen=True)
class ParkedWrite:
    """A write sent to the DLQ, and why."""

    write: IncomingWrite
    error: SfsyncError


@dataclass
class BatchOutcome:
    """What one :meth:`SalesforceSink.put` did.

    ``committed`` maps (topic, partition) to the offset to commit (the next one to read): every
    write of this batch below it was acknowledged by Salesforce or parked. ``pending`` are the
    writes not done yet (a missing parent, a transient fault within its retry deadline): hand them
    to the next ``put``. ``budget_pause_s``: the API budget is paused (None: it is not); the
    pending writes wait that many seconds before the next ``put``. ``unreachable``: the error of a
    batch Salesforce answered no call of (see the module's contract).
    """

    results: list[dict[str, Any]] = field(default_factory=list)
    parked: list[ParkedWrite] = field(default_factory=list)
    pending: list[IncomingWrite] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    api_calls: int = 0
    budget_pause_s: float | None = None
    unreachable: SfsyncError | None = None


class OnParked(Protocol):
    """Parks one write in the DLQ (e.g. ``DeadLetterQueue.park``); must be durable when it returns."""

    def __call__(self, write: IncomingWrite, error: SfsyncError) -> Awaitable[None]: ...


class OnErrorEntry(Protocol):
    """Records one error-log entry."""

    def __call__(self, entry: ErrorEntry) -> Awaitable[None]: ...


class UnsafeWriteError(SkippableRecordError):
    """A write the sink refuses: it could not be replayed without creating a duplicate, or it is malformed."""

    def __init__(self, message: str, *, code: str = "CONFIG", fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.error_code = code
        self.fields = list(fields)

    def log_code(self) -> str:
        return self.error_code

    def log_fields(self) -> Sequence[str]:
        return self.fields


class ParentNotFoundError(SkippableRecordError):
    """A child's parent never appeared in Salesforce within ``max_parent_waits`` batches."""

    def __init__(self, message: str, *, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.error_code = "PARENT_NOT_FOUND"
        self.fields = list(fields)

    def log_code(self) -> str:
        return self.error_code

    def log_fields(self) -> Sequence[str]:
        return self.fields


class RetriesExhaustedError(SkippableRecordError):
    """A write's retriable failure outlasted its retry deadline: it is parked like a bad record.

    ``last`` is the error of its last attempt; the error log and the DLQ headers file it under that
    error's code, category and fields (``UNABLE_TO_LOCK_ROW``, ``SERVER_UNAVAILABLE``...), at ERROR
    level, with a message saying that the retries ran out. ``attempts`` and ``waited_s`` (since the
    first failure) are counted in this process: a restart starts the clock again.
    """

    def __init__(self, last: RetriableError, *, attempts: int, waited_s: float, timeout_s: float) -> None:
        self.last = last
        self.attempts = attempts
        self.waited_s = waited_s
        self.timeout_s = timeout_s
        self.error_code = last.log_code()
        self.fields = list(last.log_fields())
        super().__init__(
            f"retries ran out: still {self.error_code} after {attempts} attempt(s) over {waited_s:.0f}s "
            f"(retry timeout {timeout_s:g}s): {last.log_message()}"
        )
        self.__cause__ = last

    def log_code(self) -> str:
        return self.last.log_code()

    def log_category(self) -> Category:
        return self.last.log_category()

    def log_fields(self) -> Sequence[str]:
        return self.last.log_fields()

    def log_details(self) -> dict[str, str]:
        return {
            **self.last.log_details(),
            "retries": "exhausted",
            "attempts": str(self.attempts),
            "retried_for_s": f"{self.waited_s:.0f}",
            "retry_timeout_s": f"{self.timeout_s:g}",
        }


def committed_offsets(
    consumed: Iterable[IncomingWrite], pending: Iterable[IncomingWrite]
) -> dict[tuple[str, int], int]:
    """Per (topic, partition) the offset to commit: below it every consumed write is done (not pending)."""
    done: dict[tuple[str, int], int] = {}
    for w in consumed:
        tp = (w.topic, w.partition)
        done[tp] = max(done.get(tp, w.offset + 1), w.offset + 1)
    for w in pending:
        tp = (w.topic, w.partition)
        done[tp] = min(done[tp], w.offset) if tp in done else w.offset
    return done


class Sink(Protocol):
    """What the loop drives: see the module's contract."""

    async def put(self, writes: Sequence[IncomingWrite]) -> BatchOutcome: ...


@runtime_checkable
class Settling(Protocol):
    """A sink whose writes may still be on their way to Salesforce when ``put`` returns."""

    async def settle(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        """What became of ``writes`` (the carried ones) once every write on its way is done; starts nothing."""
        ...

    async def release(self, partitions: Collection[tuple[str, int]]) -> None:
        """``partitions`` are revoked: return once no write is on its way (nothing this sink sent can reach
        Salesforce afterwards), and forget which of their writes the batches did, so that their replays (the
        same topic, partition and offset, read again) are written again, all of them, in order. A later
        ``put`` still delivers what those batches did (a result is a fact, whoever reads it)."""
        ...
