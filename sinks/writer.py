"""The heart of the Salesforce sink: turn a batch of ``sfsync.writes`` into sObject Collection calls.

Like Kafka Connect's ``SinkTask.put``: the worker hands over decoded writes with their Kafka
coordinates; :meth:`SalesforceSink.put` returns what was written, what was parked and which offsets
are now safe to commit. It never imports Kafka.

One ``put`` runs in *rounds*. Each round takes the oldest unfinished piece of work of every record
key (a *segment*: the key's consecutive writes merged in order), so a later write to a key always
waits for the earlier one, and:

1. resolves parents (identity cache fed by this sink's own results, else one SOQL per parent
   object and key field); a child whose parent is in the same batch waits for a later round, one
   whose parent is nowhere stays pending (retried next batch, parked after ``max_parent_waits``);
2. matches (:mod:`sfsync.sinks.matching`): for every (object, key fields) one ``SELECT Id, <key>,
   <if_empty fields>[, <external ID>][, IsConverted, ConvertedContactId] FROM X WHERE key IN (...)``;
   strategies in order (the external ID, then the match keys: the first that finds a record wins),
   each in the objects in order (Contacts then Leads); a fallback key only takes a record whose
   external-ID field is empty or the write's own; a converted Lead resolves to its Contact;
   the queries of one step (the parents' lookups; one strategy's match queries; the converted
   Leads' Contacts), each chunked to a URL's length, go packed five to a ``/composite`` call
   (:meth:`~sfsync.salesforce.composite.CompositeApi.queries`, one API call; a further page of a
   result is a call of its own), and their answers are taken in order as if each had been its own
   call: the first failure fails the step, as it would have stopped it; the room a step's last call
   leaves carries the later match steps' queries (as if no record were found before them; the
   parents' lookups carry those of the writes without parents): a later step uses their rows
   (a superset of what it selects) instead of asking again, and one of them that failed is asked
   again by the step that needs it (never a failure of its own). They cost no call, only the org's
   work of answering them when every record is found early;
3. writes with sObject Collections: ``upsert_many`` by external ID, ``update_many`` for matches
   (a record found by a fallback key gets the external ID written, so it is found by it next time),
   ``create_many`` only when a match key guarantees a replay finds the record, ``delete_many``;
   a field is left out when a newer value of it was already written to that record, in this batch
   or an earlier one, under any write key (:func:`~sfsync.sinks.merge.drop_older`); the round's
   collection requests (one per kind, object and external ID and 200 records, in that order) go out
   packed five to a ``/composite`` call (:meth:`~sfsync.salesforce.composite.CompositeApi.collections`,
   one API call; a call left with one request sends it alone, the same one call), and each request's
   answer is handled as its own call's would be: its records' results, or its error for all of them;
4. classifies every record's result: success → a WriteResult; retriable → retried (below);
   skippable → parked (awaited) with a SYNC error entry; fatal → raised.

Retries: the sink is the one owner of its writes' retries; the Salesforce client makes one attempt
per call. A retriable failure — a record's own (``UNABLE_TO_LOCK_ROW``, ``UNKNOWN_EXCEPTION``) or a
whole call's (a match query or a collection answered 5xx, a timeout), which counts against every
write of the call — is retried in a later round after the policy's jittered backoff (at least the
error's ``retry_after``); one ``put`` waits at most ``retry_wait_max_s`` in all, and a write whose
next wait would not fit goes back as ``pending``, to be tried first thing in the next batch. A
write's first-failure time and attempt count are kept by this sink object, keyed by the write's
Kafka coordinates, while the loop carries it from batch to batch; once a failure comes
``retry_timeout_s`` or more after the first one, the write is parked (:class:`RetriesExhaustedError`,
with the last error's code) and its offset can be committed. A restart (or a rebalance that hands
the partition to another worker) starts the clock again.

The API budget: a spent daily allocation (:class:`DailyLimitExceeded`) or the governor holding
calls longer than a batch may wait (:class:`~sfsync.salesforce.governor.BudgetPausedError`, from
``before_call``) is the governor's pause, not a failure of the writes: the put makes no further
call, every write not yet written goes back as pending without spending its deadline or an
attempt, and the outcome's ``budget_pause_s`` tells whoever drives the sink how long to wait before
the next put (the connection router holds that connection's writes; a sink the loop drives alone has
its partitions paused while the loop keeps polling Kafka). The time spent in that pause
does not count against the retry deadline of a write that had already failed.

An org that is down: a put in which Salesforce answered no call (every one failed with a 5xx, a refused
or dropped connection, a timeout) and that ends with writes pending says so in its outcome
(``unreachable``). The outage is not the writes' failure: what the put's failures added to their
retry deadlines and attempts is taken back, and the time until the next put does not count either, so
writes never run out of retries while their org is down (whoever drives the sink holds them and tries
the org again later: :mod:`sfsync.sinks.router`). A put in which any call was answered counts as today.

Because nothing below the sink resends, a create answered 5xx (or timed out) that Salesforce did
commit is not created twice: the next round matches the record first and updates it.

Drift: a query or write Salesforce refuses because a field, object or permission a mapping uses is
gone from the org (:func:`sfsync.sinks.drift.is_drift`) quarantines the mappings concerned instead of
stopping the sink: their writes are parked (replayable), the other mappings' writes go on, and the
quarantine lifts once the org passes the start-up rules again (:mod:`sfsync.sinks.drift`).

At steady state a batch of 200 updates matched by Email costs two API calls (one query, one
collection): 0.01 calls per record.

Record keys are ``<workspace_id>|<sobject>:<field>:<value>`` (:mod:`sfsync.keys`, e.g.
``ws-1|Campaign:Event_Id__c:evt-7``): a parent's key names the field and value by which the sink
finds a parent that it did not write itself.

A match key's ``field`` may name several fields joined by ``+`` (``CampaignId+ContactId``, all of
which must match). A component that is one of the write's ``parents`` takes the parent's resolved
Id; the others take ``value`` (a JSON array of strings when there are several of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

from sfsync.errors import FatalError, SfsyncError
from sfsync.keys import parse_record_key
from sfsync.mapping import MappingFile
from sfsync.salesforce.client import SalesforceClient
from sfsync.salesforce.composite import COLLECTION_MAX, COMPOSITE_COLLECTIONS_MAX, CollectionOp, RecordResult
from sfsync.salesforce.errors import (
    NO_RESPONSE,
    DailyLimitExceeded,
    RequestLimitExceeded,
    RolledBack,
    SalesforceError,
    SalesforceFatalError,
    SalesforceRecordError,
    SalesforceRetriableError,
    SessionExpired,
    classify,
)
from sfsync.salesforce.governor import BudgetPausedError
from sfsync.salesforce.soql import Condition, Query, field_name, literal, select, soql_in
from sfsync.sinks.contract import (
    BatchOutcome,
    ErrorEntry,
    IncomingWrite,
    OnErrorEntry,
    OnParked,
    ParentNotFoundError,
    ParkedWrite,
    RetriesExhaustedError,
    UnsafeWriteError,
    committed_offsets,
)
from sfsync.sinks.drift import (
    QUARANTINED,
    RESTORED,
    DriftError,
    MappingQuarantine,
    MappingQuarantinedError,
    concerns,
    is_drift,
)
from sfsync.sinks.matching import Candidate, candidates, index_rows, norm, pick, usable
from sfsync.sinks.merge import (
    _EMPTY,
    FieldValue,
    _Segment,
    advance_written,
    kept_values,
    merge_writes,
)
from sfsync.sinks.settings import SinkSettings
from sfsync.time import monotonic as monotonic_clock
from sfsync.time import to_millis

__all__ = ["SalesforceSink"]

_LEAD_EXTRA = ("IsConverted", "ConvertedContactId")
_SEPARATOR_COST = len(quote(", ", safe=""))
_URL_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
"""The bytes ``urllib.parse.quote`` never escapes (with ``safe=""``); every other byte becomes ``%XX``."""


def _url_length(text: str) -> int:
    """``len(quote(text, safe=""))`` without building the quoted text: each UTF-8 byte of ``text`` counts
    1 if :data:`_URL_SAFE`, else 3 (its ``%XX``)."""
    data = text.encode()
    return len(data) + 2 * len(data.translate(None, _URL_SAFE))


_API_NAMES_KEPT = 10_000
_NO_TIMES: Mapping[str, int] = MappingProxyType({})
"""The clock of a record this sink wrote nothing to."""


# ---------------------------------------------------------------------- helpers
def _key_identity(key: str) -> tuple[str, str, str] | None:
    """``ws-1|Campaign:Event_Id__c:evt-7`` → ("Campaign", "Event_Id__c", "evt-7"); None when the key
    names no single field to find its record by."""
    parsed = parse_record_key(key)
    if parsed is None:
        return None
    try:
        field_name(parsed.field)
    except ValueError:
        return None
    return parsed.sobject, parsed.field, parsed.value


def _swap_lookup(lookup: str, declared: str, actual: str) -> str:
    """``ContactId`` → ``LeadId`` when the parent turned out to be a Lead (Contacts then Leads)."""
    if actual != declared and lookup.startswith(declared):
        return actual + lookup[len(declared) :]
    return lookup


def _is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the org did not serve a call at all: a 5xx, or no answer (refused, dropped,
    timed out); not a limit, an expired session, nor one record's failure."""
    if not isinstance(error, SalesforceRetriableError) or isinstance(
        error, DailyLimitExceeded | RequestLimitExceeded | SessionExpired | RolledBack | BudgetPausedError
    ):
        return False
    return error.status == NO_RESPONSE or error.status >= 500


def _workspace(seg: _Segment) -> str | None:
    """The workspace of a segment's writes (one record key, so one workspace)."""
    return str(seg.last.get("workspace_id") or "") or None


def _error_code(error: BaseException) -> str:
    return str(getattr(error, "error_code", type(error).__name__))


def _error_fields(error: BaseException) -> list[str]:
    return [str(f) for f in getattr(error, "fields", [])]


Coordinates = tuple[str, int, int]
_GroupKey = tuple[str, tuple[str, ...], str | None]
"""A match step's group: (object, key fields, the external-ID field its rows must be guarded on)."""


def _query_error(obj: str, error: SalesforceError) -> SalesforceError | DriftError:
    """What a failed query about ``obj`` raises: a drift answer as the object's :class:`DriftError`."""
    if isinstance(error, SalesforceFatalError) and is_drift(error):
        return DriftError(obj, error)
    return error


def _coordinates(write: IncomingWrite) -> Coordinates:
    return (write.topic, write.partition, write.offset)


_KAFKA_ORDER = attrgetter("topic", "partition", "offset")
"""A write's (topic, partition, offset): :func:`_coordinates` without a Python call, to sort by."""


def _operation(plans: Sequence[_Plan]) -> CollectionOp:
    """The collection request of ``plans`` (≤ 200, one kind, object and external ID, in order)."""
    first = plans[0]
    if first.kind == "delete":
        return CollectionOp("delete", ids=[p.record_id or "" for p in plans])
    if first.kind == "update":
        return CollectionOp("update", first.sobject, [p.body for p in plans], ids=[p.record_id or "" for p in plans])
    return CollectionOp(first.kind, first.sobject, [p.body for p in plans], ext_field=first.ext_field)


@dataclass(frozen=True)
class _Select:
    """Rows of ``obj`` (``Id`` and ``fields``) whose ``names`` hold one of ``keys`` (a tuple of values each)."""

    obj: str
    fields: tuple[str, ...]
    names: tuple[str, ...]
    keys: Sequence[tuple[Any, ...]]


_Asked = dict[_GroupKey, list[tuple[_Select, list[dict[str, Any]]]]]
"""Match groups asked ahead: the selects sent for each, and their rows."""


def _uncovered(
    sel: _Select, asked: Iterable[tuple[_Select, list[dict[str, Any]]]]
) -> tuple[list[dict[str, Any]], _Select | None]:
    """The rows the queries ``asked`` already answered that ``sel`` can use (those that read every
    field it reads), and ``sel`` over the keys they do not cover (None: none left to ask)."""
    usable = [(was, rows) for was, rows in asked if set(sel.fields) <= set(was.fields)]
    covered = {key for was, _ in usable for key in was.keys}
    missing = [key for key in sel.keys if key not in covered]
    rows = [row for _, answered in usable for row in answered]
    return rows, (replace(sel, keys=missing) if missing else None)


@dataclass
class _Failing:
    """One write's retriable failures so far, kept while the loop carries it from batch to batch."""

    since: float
    """When it first failed (the sink's ``monotonic`` clock)."""
    attempts: int


@dataclass
class _Plan:
    """The planned operation of one segment this round."""

    seg: _Segment
    kind: Literal["update", "create", "upsert", "delete"]
    sobject: str
    body: dict[str, Any]
    ext_field: str | None = None
    record_id: str | None = None
    fields: Mapping[str, FieldValue] | None = None
    """The segment's field values this plan sends (their times move the record's clock once written)."""
    refused: SalesforceError | None = None
    """Set when the record cannot be sent at all (e.g. an unknown record type): parked as is."""


# ---------------------------------------------------------------------- the sink
class SalesforceSink:
    """Writes batches of ``sfsync.writes`` to Salesforce (see the module docstring for the algorithm).

    Args:
        client: the Salesforce client; every call it makes carries ``Sforce-Call-Options: client=...``.
        settings: batching and retry settings.
        on_parked: parks a write in the DLQ; awaited before its offset counts as done.
        on_error_entry: records an error-log entry (SYNC errors, INFO policy skips).
        before_call: awaited before every Salesforce call with its kind (``query``/``update``/...),
            e.g. the API-budget governor; it may sleep or raise.
        clock: epoch seconds, for ``acknowledged_at`` (a result's, in epoch milliseconds).
        sleep: how to wait between retry rounds (tests pass a fake).
        monotonic: the clock of the retry deadlines (tests pass the fake clock that ``sleep`` moves).
        rng: the jitter of the retry waits.
        pause_left: seconds left of the API governor's pause, None when it is not paused
            (``Governor.pause_left_s``): how long writes refused for the daily limit wait; without
            it (or when it says None), the refusal's own ``retry_after``.
        mappings: the mapping file the process validated at start; a quarantined mapping is lifted
            once it passes those rules again (None: once the fields Salesforce named are back).
        on_quarantine: called with (mapping, True/False) when a mapping enters or leaves quarantine.
    """

    def __init__(
        self,
        client: SalesforceClient,
        *,
        settings: SinkSettings,
        on_parked: OnParked,
        on_error_entry: OnErrorEntry,
        before_call: Callable[[str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = monotonic_clock,
        rng: random.Random | None = None,
        pause_left: Callable[[], float | None] | None = None,
        mappings: MappingFile | None = None,
        on_quarantine: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self._on_parked = on_parked
        self._on_error_entry = on_error_entry
        self._before_call = before_call
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._pause_left = pause_left
        self._budget_pause_s: float | None = None
        """Set once this put met the budget's pause: the seconds to wait (no further call goes out)."""
        self._paused_at: float | None = None
        """When the last put ended in a budget pause (``monotonic``): that time is not a retry's."""
        self._policy = settings.retry_policy()
        self._failing: dict[Coordinates, _Failing] = {}
        self._answered = False
        """Whether Salesforce answered a call of the put in hand (anything but an outage)."""
        self._outage: SalesforceRetriableError | None = None
        """The last outage (a call Salesforce did not serve) the put in hand met."""
        self._identities: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._written: OrderedDict[tuple[str, str], dict[str, int]] = OrderedDict()
        self._parent_waits: dict[str, int] = {}
        self._describes: dict[str, frozenset[str]] = {}
        """object -> its fields' names, lower case (Salesforce's names are case-insensitive)"""
        self._described_names: dict[str, frozenset[str]] = {}
        """object -> its fields' names as the describe spells them (most writes name them so: checked first)"""
        self._record_types: dict[str, dict[str, str]] = {}
        self._if_empty_skips: dict[tuple[str, str, str], list[Any]] = {}
        self._calls = 0
        self._api_names: set[str] = set()  # names that passed field_name (the same few, write after write)
        self.quarantine = MappingQuarantine(
            recheck_s=settings.quarantine_recheck_s, monotonic=monotonic, mappings=mappings, on_change=on_quarantine
        )

    # -- identity cache -------------------------------------------------------------------
    def identity(self, key: str) -> tuple[str, str] | None:
        """(sobject, Id) this sink last wrote or found for ``key``."""
        return self._identities.get(key)

    def remember(self, key: str, sobject: str, record_id: str) -> None:
        """Feed the identity cache (e.g. from ``sfsync.results`` at start-up)."""
        if self.settings.identity_cache_size <= 0:
            return
        self._identities[key] = (sobject, record_id)
        self._identities.move_to_end(key)
        while len(self._identities) > self.settings.identity_cache_size:
            self._identities.popitem(last=False)

    def forget(self, key: str) -> None:
        self._identities.pop(key, None)

    # -- record clock -----------------------------------------------------------------------
    def written(self, record: tuple[str, str]) -> Mapping[str, int]:
        """Field -> ``updated_at`` of the newest value this sink wrote to ``record`` ((sobject, Id)): the
        sink's own map, moved on by later writes (read it, do not keep it)."""
        return self._written.get(record, _NO_TIMES)

    def _wrote(self, record: tuple[str, str], fields: Mapping[str, FieldValue], sent: Iterable[str]) -> None:
        if self.settings.record_clock_size <= 0:
            return
        times = self._written.get(record)
        if times is None:
            times = self._written[record] = {}
        else:
            self._written.move_to_end(record)
        advance_written(times, fields, sent)
        while len(self._written) > self.settings.record_clock_size:
            self._written.popitem(last=False)

    # -- put ------------------------------------------------------------------------------
    async def put(self, writes: Sequence[IncomingWrite]) -> BatchOutcome:
        """Write ``writes`` (plus any ``pending`` from the previous outcome) and say what is done.

        Raises:
            FatalError: a configuration, permission or metadata problem (the worker pauses; nothing
                of this batch is committed, so it replays once fixed).
        """
        self._calls = 0
        self._budget_pause_s = None
        self._answered, self._outage = False, None
        self._resume_deadlines()
        failing_before = {c: replace(f) for c, f in self._failing.items()}
        started = self._monotonic()
        outcome = BatchOutcome()
        queues = merge_writes(sorted(writes, key=_KAFKA_ORDER))
        await self._recheck_quarantines()
        for queue in queues.values():
            for seg in list(queue):
                problem = self._unsafe(seg)
                if problem is not None:
                    queue.remove(seg)
                    await self._park(seg, problem, outcome)
                elif self.quarantine.get(seg.mapping) is not None:
                    queue.remove(seg)
                    await self._park_quarantined(seg, outcome)
        policy = self._policy
        # each retry round waits at least wait_initial_s, and a put waits at most wait_max_s in all
        rounds = 2 * len(writes) + 4 + math.ceil(policy.wait_max_s / policy.wait_initial_s)
        waited = 0.0
        for _ in range(rounds):
            if self._budget_pause_s is not None:
                break  # the budget is paused: every write not written yet is carried
            heads = [q[0] for q in queues.values() if q and not q[0].blocked]
            waited += await self._back_off(heads, policy.wait_max_s - waited)
            heads = [seg for seg in heads if not seg.blocked]
            if not heads:
                break
            for seg in heads:
                seg.parent_ids, seg.parents_from_cache, seg.target, seg.current = {}, [], None, {}
                seg.again, seg.failure = False, None
            try:
                ready, early = await self._resolve_parents(heads, queues)
            except SalesforceRetriableError as exc:  # a parent lookup failed: every head of this round with it
                await self._fail_all(heads, exc, queues, outcome)
                continue
            except DriftError as drift:  # a parent lookup named what the org no longer has
                for seg in await self._drifted(drift, heads, outcome):
                    queues[seg.key].popleft()
                continue
            try:
                await self._match(ready, early)
            except SalesforceRetriableError as exc:  # a match query failed: every write it was matching with it
                await self._fail_all(ready, exc, queues, outcome)
                continue
            except DriftError as drift:  # a match query named what the org no longer has
                for seg in await self._drifted(drift, ready, outcome):
                    queues[seg.key].popleft()
                continue
            finished = await self._write(ready, outcome)
            for seg in finished:
                queues[seg.key].popleft()
                if self._parent_waits:  # (a child waiting for its parent: rare)
                    for w in seg.writes:
                        self._parent_waits.pop(str(w.write.get("write_id")), None)
            if not finished and not any(s.again and not s.blocked for s in ready):
                break
        await self._park_orphans(queues, outcome)
        await self._report_if_empty_skips()
        for queue in queues.values():
            for seg in queue:
                outcome.pending.extend(seg.writes)
        pending = {_coordinates(w) for w in outcome.pending}
        self._failing = {c: f for c, f in self._failing.items() if c in pending}
        outcome.committed = committed_offsets(writes, outcome.pending)
        outcome.api_calls = self._calls
        if self._budget_pause_s is not None and outcome.pending:
            outcome.budget_pause_s = self._budget_pause_s
            self._paused_at = self._monotonic()
        elif self._outage is not None and not self._answered and outcome.pending:
            outcome.unreachable = self._outage
            self._take_back_outage(failing_before, self._monotonic() - started)
            self._paused_at = self._monotonic()
        return outcome

    def _take_back_outage(self, before: Mapping[Coordinates, _Failing], lasted: float) -> None:
        """The org served no call of this put: the pending writes' retry deadlines and attempts are as they
        were before it (their first-failure time moved on by the put's length), a first failure forgotten."""
        for coordinates, failing in list(self._failing.items()):
            earlier = before.get(coordinates)
            if earlier is None:
                del self._failing[coordinates]
            else:
                failing.since, failing.attempts = earlier.since + lasted, earlier.attempts

    @contextlib.contextmanager
    def _answer(self) -> Iterator[None]:
        """Around one Salesforce call: notes whether Salesforce answered it (anything but an outage)."""
        try:
            yield
        except SalesforceError as exc:
            if not _is_outage(exc):
                self._answered = True
            raise
        self._answered = True

    # -- the budget's pause -----------------------------------------------------------------
    def _resume_deadlines(self) -> None:
        """After a budget pause, move the first-failure time of every failing write on by the pause."""
        if self._paused_at is None:
            return
        paused_for = max(0.0, self._monotonic() - self._paused_at)
        self._paused_at = None
        for failing in self._failing.values():
            failing.since += paused_for

    def _budget_paused(self, error: SalesforceRetriableError) -> None:
        """The budget stopped this put's calls: note how long (the longest of what was said)."""
        wait: float | None = None
        if isinstance(error, DailyLimitExceeded) and self._pause_left is not None:
            wait = self._pause_left()
        if wait is None:
            wait = error.retry_after if error.retry_after is not None and error.retry_after > 0 else 0.0
        self._budget_pause_s = max(self._budget_pause_s or 0.0, wait)

    # -- retries ----------------------------------------------------------------------------
    async def _back_off(self, heads: Sequence[_Segment], budget: float) -> float:
        """Wait before retrying the heads that failed last round; returns the time waited.

        The wait is the longest of their policy delays that fits ``budget`` (what is left of this
        put's ``retry_wait_max_s``); a head whose delay does not fit is blocked: it stays pending
        and is tried again in the next batch, without this put waiting for it.
        """
        wait = 0.0
        for seg in heads:
            if seg.failure is None:
                continue
            delay = self._policy.delay(seg.attempts, seg.failure, self._rng)
            if delay > budget:
                seg.blocked = True
            else:
                wait = max(wait, delay)
        if wait > 0:
            await self._sleep(wait)
        return wait

    async def _fail(self, seg: _Segment, error: SalesforceRetriableError, outcome: BatchOutcome) -> bool:
        """Account for a retriable failure of ``seg``; True when its deadline had passed and it was parked.

        Otherwise it is retried: in a later round of this put (after :meth:`_back_off`), or, pending,
        in the next batch. The budget's pause (a spent daily allocation, the governor holding calls)
        is not the write's failure: the write is carried at once and neither its deadline nor its
        attempts move.
        """
        seg.again = True
        if isinstance(error, DailyLimitExceeded | BudgetPausedError):
            seg.blocked = True
            self._budget_paused(error)
            return False
        if _is_outage(error):
            self._outage = error
        now = self._monotonic()
        since = now
        attempts = 0
        for w in seg.writes:
            failing = self._failing.setdefault(_coordinates(w), _Failing(now, 0))
            failing.attempts += 1
            since = min(since, failing.since)
            attempts = max(attempts, failing.attempts)
        seg.attempts = attempts
        if not self._policy.expired(since, now):
            seg.failure = error
            return False
        exhausted = RetriesExhaustedError(
            error, attempts=attempts, waited_s=now - since, timeout_s=self._policy.timeout_s
        )
        await self._park(seg, exhausted, outcome)
        return True

    async def _fail_all(
        self,
        segments: Iterable[_Segment],
        error: SalesforceRetriableError,
        queues: Mapping[str, deque[_Segment]],
        outcome: BatchOutcome,
    ) -> None:
        """A whole call failed: :meth:`_fail` every write it carried; the parked leave their queue."""
        for seg in segments:
            if await self._fail(seg, error, outcome):
                queues[seg.key].popleft()

    def _unsafe(self, seg: _Segment) -> UnsafeWriteError | None:
        problem = None if self._names_known(seg) else self._invalid_name(seg)
        if problem is not None:
            return problem
        for lookup, (parent_key, _) in seg.parents.items():
            if not parent_key:
                return UnsafeWriteError(f"parent {lookup} has no key", fields=[lookup])
        if seg.external_id is None and not any(usable(seg, m) for m in seg.match):
            return UnsafeWriteError(
                f"{seg.key}: the write has no match key and no external ID, so a replay would create a "
                f"duplicate; give mapping {seg.mapping!r} a match strategy or an external ID",
                code="NO_IDEMPOTENT_KEY",
            )
        return None

    def _names_known(self, seg: _Segment) -> bool:
        """Whether every name ``seg`` uses already passed ``field_name`` (the same few, write after write)."""
        valid = self._api_names
        return (
            seg.sobject in valid
            and valid.issuperset(seg.fields)
            and valid.issuperset(seg.objects)
            and valid.issuperset(seg.parents)
            and (seg.external_id is None or seg.external_id[0] in valid)
            and all(f in valid or valid.issuperset(f.split("+")) for f, _ in seg.match)
        )

    def _invalid_name(self, seg: _Segment) -> UnsafeWriteError | None:
        """The first name ``seg`` uses that is not a Salesforce API name; the good ones are kept as known."""
        names = [*seg.fields, *seg.parents, *(f for f, _ in seg.match for f in f.split("+"))]
        if seg.external_id:
            names.append(seg.external_id[0])
        valid = self._api_names
        for name in [seg.sobject, *seg.objects, *names]:
            if name in valid:
                continue
            try:
                field_name(name)
            except ValueError:
                return UnsafeWriteError(f"{name!r} is not a Salesforce API name", code="INVALID_NAME", fields=[name])
            if len(valid) < _API_NAMES_KEPT:
                valid.add(name)
        return None

    # -- parents --------------------------------------------------------------------------
    async def _resolve_parents(
        self, heads: list[_Segment], queues: Mapping[str, deque[_Segment]]
    ) -> tuple[list[_Segment], _Asked]:
        """Heads whose parents all have an Id; the others wait (in-batch parent) or stay pending.

        The match steps of the heads without parents (ready whatever the lookups find) ride in the
        room the lookups' last call leaves: what they answered comes second, for :meth:`_match`."""
        unresolved: dict[str, tuple[str, str, str]] = {}
        for seg in heads:
            for parent_key, _ in seg.parents.values():
                if self.identity(parent_key) is None and not queues.get(parent_key):
                    ident = _key_identity(parent_key)
                    if ident is not None:
                        unresolved[parent_key] = ident
        early: _Asked = {}
        if unresolved:
            alone = [(s, candidates(s)) for s in heads if not s.parents and self._needs_query(s)]
            depth = max((len(found) for _, found in alone), default=0)
            early = await self._lookup_parents(unresolved, self._later(alone, range(depth), {}))
        ready: list[_Segment] = []
        for seg in heads:
            waiting = False
            for lookup, (parent_key, declared) in seg.parents.items():
                found = self.identity(parent_key)
                parent_writes = queues.get(parent_key)
                if parent_writes and (found is None or any(p.op == "DELETE" for p in parent_writes)):
                    # the parent is written first, in an earlier round of this batch: its Id comes from that
                    # write, or its delete goes before the child's write as the events said. A parent whose
                    # Id is known and stays (updated) does not hold the child: both go in one round.
                    waiting = True
                    continue
                if found is None:
                    waiting = True
                    seg.blocked = seg.orphan = True  # nowhere yet: try again next batch
                    continue
                seg.parent_ids[lookup] = (_swap_lookup(lookup, declared, found[0]), found[1])
                seg.parents_from_cache.append(parent_key)
            if not waiting:
                ready.append(seg)
        return ready, early

    async def _lookup_parents(
        self, wanted: Mapping[str, tuple[str, str, str]], ahead: Iterable[tuple[_GroupKey, _Select]] = ()
    ) -> _Asked:
        """Remember the Id of every parent key ``wanted`` that a record holds; ``ahead``: match groups
        that ride in the room the lookups leave (:meth:`_select_all`), those answered returned."""
        groups: dict[tuple[str, str], dict[Any, list[str]]] = {}
        for parent_key, (sobject, key_field, value) in wanted.items():
            groups.setdefault((sobject, key_field), {}).setdefault(norm(value), []).append(parent_key)
        selects = [
            _Select(
                sobject,
                (key_field, *(_LEAD_EXTRA if sobject == "Lead" else ())),
                (key_field,),
                [(wanted[keys[0]][2],) for keys in by_value.values()],
            )
            for (sobject, key_field), by_value in groups.items()
        ]
        selected, answered = await self._select_all(selects, ahead)
        for ((sobject, key_field), by_value), rows in zip(groups.items(), selected, strict=True):
            for row in sorted(rows, key=lambda r: str(r["Id"]), reverse=True):
                keys = by_value.get(norm(row.get(key_field)), [])
                target = self._converted(sobject, row) or (sobject, str(row["Id"]))
                for parent_key in keys:
                    self.remember(parent_key, *target)
        return answered

    @staticmethod
    def _converted(sobject: str, row: Mapping[str, Any]) -> tuple[str, str] | None:
        if sobject == "Lead" and row.get("IsConverted") and row.get("ConvertedContactId"):
            return "Contact", str(row["ConvertedContactId"])
        return None

    # -- matching -------------------------------------------------------------------------
    def _needs_query(self, seg: _Segment) -> bool:
        # An update-only write must find its record: an upsert on the external ID would create it.
        if seg.op == "DELETE" or seg.match or not seg.create_if_missing:
            return True
        if seg.record_type is not None:
            return True  # the record type is for records sfsync creates: an upsert would re-type existing ones
        return bool(seg.if_empty) or len(seg.objects) > 1 or "Lead" in seg.objects

    async def _match(self, ready: list[_Segment], early: _Asked | None = None) -> None:
        """Set ``target`` and ``current`` of every ready segment that a record matches.

        Step by step through each segment's :func:`~sfsync.sinks.matching.candidates`: one query
        per (object, key fields) and step for all the segments still looking, never one per record.
        The later steps' queries, for every segment looking at this one (as if none were found
        here), ride in the room this step's last call leaves (:meth:`_select_all` ``ahead``);
        ``early``: those asked ahead with the parents' lookups. A group is asked only
        for the keys that no query asked ahead with every field it reads covered; those rows are a
        superset of what the group selects, and the match takes from them only the keys it looks for.
        """
        todo = {id(s): (s, candidates(s)) for s in ready if self._needs_query(s)}
        depth = max((len(found) for _, found in todo.values()), default=0)
        asked: _Asked = {key: list(known) for key, known in (early or {}).items()}
        step = 0
        while todo:
            for seg, found in list(todo.values()):
                if step >= len(found):
                    del todo[id(seg)]
            groups, selects = self._step(todo.values(), step)
            needed: list[_Select] = []
            sources: list[tuple[list[dict[str, Any]], int | None]] = []  # rows asked ahead, index in needed
            for key, sel in zip(groups, selects, strict=True):
                rows_ahead, rest = _uncovered(sel, asked.get(key, ()))
                sources.append((rows_ahead, len(needed) if rest is not None else None))
                if rest is not None:
                    needed.append(rest)
            ahead = self._later(todo.values(), range(step + 1, depth), asked)
            selected, answered = await self._select_all(needed, ahead)
            for ((obj, names, guard), members), (rows_ahead, n) in zip(groups.items(), sources, strict=True):
                rows = rows_ahead if n is None else [*rows_ahead, *selected[n]]
                index = index_rows(rows, names)
                for seg, cand in members:
                    hit = pick(cand if guard is not None or cand.guard is None else cand._replace(guard=None), index)
                    if hit is None:
                        continue
                    seg.target = self._converted(obj, hit) or (obj, str(hit["Id"]))
                    seg.current = {k: v for k, v in hit.items() if k != "attributes"}
                    seg.current["__matched_on__"] = names
                    del todo[id(seg)]
            for key, known in answered.items():
                asked.setdefault(key, []).extend(known)
            step += 1
        await self._reload_converted(ready)

    def _step(
        self, looking: Iterable[tuple[_Segment, list[Candidate]]], step: int
    ) -> tuple[dict[_GroupKey, list[tuple[_Segment, Candidate]]], list[_Select]]:
        """The ``step``-th candidates of the segments ``looking``, grouped per (object, key fields, guard),
        and one select per group (its key fields, the if_empty fields its segments read, the guard,
        and a Lead's conversion)."""
        groups: dict[_GroupKey, list[tuple[_Segment, Candidate]]] = {}
        for seg, found in looking:
            if step < len(found):
                cand = found[step]
                guard = cand.guard[0] if cand.guard and self._on(cand.sobject, cand.guard[0]) else None
                groups.setdefault((cand.sobject, cand.names, guard), []).append((seg, cand))
        selects = []
        for (obj, names, guard), members in groups.items():
            wanted = self._if_empty_fields(obj, [s for s, _ in members])
            if guard is not None and guard not in wanted:
                wanted.append(guard)
            if obj == "Lead":
                wanted += [f for f in _LEAD_EXTRA if f not in wanted]
            selects.append(_Select(obj, (*names, *wanted), names, [c.values for _, c in members]))
        return groups, selects

    async def _reload_converted(self, segments: list[_Segment]) -> None:
        """A converted Lead resolved to its Contact: read the Contact's values that if_empty needs."""
        moved = [
            s for s in segments if s.target is not None and s.target[0] == "Contact" and s.current.get("IsConverted")
        ]
        if not moved:
            return
        for seg in moved:
            seg.current = {"__matched_on__": ()}
        wanted = self._if_empty_fields("Contact", moved)
        if not wanted:
            return
        ids = [(s.target[1],) for s in moved if s.target is not None]
        (rows,), _ = await self._select_all([_Select("Contact", tuple(wanted), ("Id",), ids)])
        by_id = {str(r["Id"]): r for r in rows}
        for seg in moved:
            assert seg.target is not None
            seg.current = {**by_id.get(seg.target[1], {}), "__matched_on__": ()}

    def _if_empty_fields(self, obj: str, segments: Iterable[_Segment]) -> list[str]:
        names: dict[str, None] = {}
        for seg in segments:
            for name in seg.if_empty:
                if obj == seg.sobject or self._on(obj, name):
                    names[name] = None
        return list(names)

    def _on(self, obj: str, name: str) -> bool:
        known = self._describes.get(obj)
        return known is None or name.lower() in known

    async def _describe(self, obj: str) -> None:
        if obj not in self._describes:
            await self._call("describe")
            with self._answer():
                described = await self.client.describe(obj)
            self._describes[obj] = frozenset(f.name.lower() for f in described.fields)
            self._described_names[obj] = frozenset(f.name for f in described.fields)
            self._record_types[obj] = {
                name.lower(): info.record_type_id
                for info in described.record_type_infos
                if info.active and not info.master  # never assignable; no RecordTypeId without others
                for name in (info.developer_name, info.name)
                if name
            }

    async def _record_type_id(self, obj: str, record_type: str) -> str | None:
        """The Id of ``obj``'s active record type called ``record_type`` (developer name or label), or None."""
        await self._describe(obj)
        return self._record_types.get(obj, {}).get(record_type.lower())

    async def _select_all(
        self, selects: Sequence[_Select], ahead: Iterable[tuple[_GroupKey, _Select]] = ()
    ) -> tuple[list[list[dict[str, Any]]], _Asked]:
        """The rows of every select, in order: ``SELECT Id, fields FROM obj WHERE k1 IN (...) [AND k2 IN
        (...)]`` over its keys in URL-sized chunks, every chunk of every select packed
        :data:`COMPOSITE_COLLECTIONS_MAX` to a ``/composite`` call (one API call, one governor call; a
        call left with one query sends it alone, the same one call; a further page of a result is a
        call of its own, counted too). The queries' answers are taken in order, as if each had been its
        own call: the first that failed is raised (a drift answer as the :class:`DriftError` of its
        object), and no later call goes out.

        ``ahead``: match groups' selects that may be needed later, taken in order while room is left
        in the last call (one whose chunks do not all fit is passed over), so they cost no call of
        their own; those answered come second, per group. A failure of theirs is nobody's: the step
        that needs them asks again."""
        queries = [(n, sel.obj, query) for n, sel in enumerate(selects) for query in self._queries(sel)]
        per_call = COMPOSITE_COLLECTIONS_MAX if self.client.composite_collections else 1
        room = -len(queries) % per_call if queries else 0
        riding: list[tuple[_GroupKey, _Select]] = []
        for key, sel in ahead if room else ():
            chunks = list(self._chunks(sel.keys))  # sized first: a select passed over is never written out
            if len(chunks) <= room:
                queries += [(len(selects) + len(riding), sel.obj, self._query(sel, chunk)) for chunk in chunks]
                riding.append((key, sel))
                room -= len(chunks)
                if not room:
                    break
        rows: list[list[dict[str, Any]]] = [[] for _ in selects]
        early: list[list[dict[str, Any]] | None] = [[] for _ in riding]
        for start in range(0, len(queries), per_call):
            pack = queries[start : start + per_call]
            await self._call("query")
            try:
                with self._answer():
                    if len(pack) == 1:
                        rows_of = self.client.query(pack[0][2], before_next_page=self._next_page)
                        answers: list[list[dict[str, Any]] | SalesforceError] = [[row async for row in rows_of]]
                    else:
                        soqls = [query for _, _, query in pack]
                        answers = await self.client.queries(soqls, before_next_page=self._next_page)
            except SalesforceError as exc:  # the whole call failed: as its first query's failure
                raise _query_error(pack[0][1], exc) from exc
            for (n, obj, _), answer in zip(pack, answers, strict=True):
                if n < len(selects):
                    if isinstance(answer, SalesforceError):
                        raise _query_error(obj, answer) from answer
                    rows[n] += answer
                    continue
                got = early[n - len(selects)]
                if got is not None:
                    early[n - len(selects)] = None if isinstance(answer, SalesforceError) else [*got, *answer]
        answered: _Asked = {}
        for (key, sel), got in zip(riding, early, strict=True):
            if got is not None:
                answered.setdefault(key, []).append((sel, got))
        return rows, answered

    def _later(
        self, looking: Iterable[tuple[_Segment, list[Candidate]]], steps: range, asked: _Asked
    ) -> Iterator[tuple[_GroupKey, _Select]]:
        """The match groups of ``steps`` (for every segment ``looking``, as if none were found before
        them) over the keys the queries ``asked`` do not cover yet, step by step: what may be asked ahead."""
        looking = list(looking)
        for step in steps:
            groups, selects = self._step(looking, step)
            for key, sel in zip(groups, selects, strict=True):
                rest = _uncovered(sel, asked.get(key, ()))[1]
                if rest is not None:
                    yield key, rest

    async def _next_page(self) -> None:
        """A further page of a query's result: a call of its own, counted like any."""
        await self._call("query")

    def _queries(self, sel: _Select) -> Iterator[Query]:
        """The queries of ``sel``: one per URL-sized chunk of its keys."""
        for chunk in self._chunks(sel.keys):
            yield self._query(sel, chunk)

    @staticmethod
    def _query(sel: _Select, chunk: Sequence[tuple[Any, ...]]) -> Query:
        """The query of ``sel`` over one chunk of its keys."""
        condition: Condition | None = None
        for i, name in enumerate(sel.names):
            part = Condition(soql_in(name, [k[i] for k in chunk]))
            condition = part if condition is None else condition & part
        assert condition is not None
        return select(*dict.fromkeys(["Id", *sel.fields])).from_(sel.obj).where(condition)

    def _chunks(self, keys: Sequence[tuple[Any, ...]]) -> Iterable[list[tuple[Any, ...]]]:
        budget = self.settings.query_max_chars
        chunk: list[tuple[Any, ...]] = []
        size = 0
        for key in dict.fromkeys(keys):
            cost = sum(_url_length(literal(v)) + _SEPARATOR_COST for v in key)
            if chunk and size + cost > budget:
                yield chunk
                chunk, size = [], 0
            chunk.append(key)
            size += cost
        if chunk:
            yield chunk

    async def _call(self, kind: str) -> None:
        if self._budget_pause_s is not None:  # no call while the budget is paused (later rounds, other groups)
            raise BudgetPausedError(self._budget_pause_s, "this batch met the budget's pause")
        if self._before_call is not None:
            await self._before_call(kind)
        self._calls += 1

    # -- planning and writing -----------------------------------------------------------------
    async def _plan(self, seg: _Segment, claimed: set[Any]) -> _Plan | bool | None:
        """The operation for ``seg``; None: nothing to do (done); False: wait for the next round.

        A field is left out when a newer value of it was written to the record already (the record's
        clock, per Salesforce Id); a segment whose every field is older writes nothing (done).
        """
        if seg.op == "DELETE":
            if seg.target is None:
                return None
            if ("id", seg.target[1]) in claimed:
                return False
            claimed.add(("id", seg.target[1]))
            return _Plan(seg, "delete", seg.target[0], {}, record_id=seg.target[1])
        record = seg.target if seg.target is not None or self._needs_query(seg) else self.identity(seg.key)
        # Every field's value, in field order, less those older than what the record has (kept_values:
        # drop_older and the values in one pass), those the object lacks (what _on looks at, once per
        # segment) and the if_empty values of a record that has one already.
        fields, body = kept_values(seg.fields, self.written(record) if record is not None else _NO_TIMES)
        if seg.fields and not fields:
            return None  # every value is older than one already written to this record
        obj = seg.target[0] if seg.target else seg.sobject
        if obj != seg.sobject:
            await self._describe(obj)
        known = self._describes.get(obj)
        if (
            known is not None
            and not self._described_names.get(obj, frozenset()).issuperset(body)
            and not known.issuperset(map(str.lower, body))
        ):
            for name in [name for name in body if name.lower() not in known]:
                del body[name]
        if seg.target is not None:
            for name in seg.if_empty:
                if name in body:
                    current = seg.current.get(name)
                    if current not in _EMPTY and current is not None:
                        self._skip_if_empty(seg, obj, name)
                        del body[name]
        matched_on = set(seg.current.get("__matched_on__", ()))
        for name, parent_id in seg.parent_ids.values():
            if seg.target is not None and name in matched_on:
                continue  # equal by construction, and often create-only (CampaignMember.CampaignId)
            body[name] = parent_id
        if seg.target is not None:
            if ("id", seg.target[1]) in claimed:
                return False
            claimed.add(("id", seg.target[1]))
            if seg.external_id and self._on(obj, seg.external_id[0]):
                body.setdefault(seg.external_id[0], seg.external_id[1])
            return _Plan(seg, "update", obj, body, record_id=seg.target[1], fields=fields)
        if not seg.create_if_missing:
            await self._info(seg, "NO_MATCH_SKIP", f"no {seg.sobject} matches and create_if_missing is false", None)
            return None
        identities = {("key", c.names, tuple(norm(v) for v in c.values)) for c in candidates(seg)}
        if identities & claimed:
            return False  # another key creates the same record this round: match it next round
        claimed.update(identities)
        for fields_text, key_value in seg.match:
            if "+" not in fields_text and fields_text not in seg.parents and key_value:
                body.setdefault(fields_text, key_value)  # so a replay finds what this create made
        refused: SalesforceError | None = None
        if seg.record_type and obj == seg.sobject:
            record_type_id = await self._record_type_id(obj, seg.record_type)
            if record_type_id is None:
                refused = classify(
                    400,
                    "INVALID_CROSS_REFERENCE_KEY",
                    f"{obj} has no active record type {seg.record_type} (mapping {seg.mapping})",
                    fields=["RecordTypeId"],
                )
            else:
                body["RecordTypeId"] = record_type_id
        if seg.external_id:
            body[seg.external_id[0]] = seg.external_id[1]
            return _Plan(seg, "upsert", obj, body, ext_field=seg.external_id[0], fields=fields, refused=refused)
        return _Plan(seg, "create", obj, body, fields=fields, refused=refused)

    async def _write(self, ready: list[_Segment], outcome: BatchOutcome) -> list[_Segment]:
        finished: list[_Segment] = []
        claimed: set[Any] = set()
        plans: list[_Plan] = []
        for seg in ready:
            try:
                plan = await self._plan(seg, claimed)
            except SalesforceRetriableError as exc:  # a describe failed
                if await self._fail(seg, exc, outcome):
                    finished.append(seg)
                continue
            if plan is None:
                finished.append(seg)
            elif plan is not False:
                assert isinstance(plan, _Plan)
                if plan.refused is not None:
                    if await self._settle(plan, RecordResult(0, None, False, None, [plan.refused]), outcome):
                        finished.append(seg)
                    continue
                plans.append(plan)
        groups: dict[tuple[str, str, str | None], list[_Plan]] = {}
        for plan in plans:
            groups.setdefault((plan.kind, plan.sobject, plan.ext_field), []).append(plan)
        subrequests = [
            members[i : i + COLLECTION_MAX]
            for members in groups.values()
            for i in range(0, len(members), COLLECTION_MAX)
        ]
        per_call = COMPOSITE_COLLECTIONS_MAX if self.client.composite_collections else 1
        for start in range(0, len(subrequests), per_call):
            request = subrequests[start : start + per_call]
            answers: Sequence[list[RecordResult] | SalesforceError]
            try:
                answers = await self._send(request)
            except SalesforceError as exc:  # the whole call failed: every subrequest of it with it
                answers = [exc] * len(request)
            for members, answer in zip(request, answers, strict=True):
                finished += await self._settle_all(members, answer, outcome)
        return finished

    async def _send(self, request: list[list[_Plan]]) -> list[list[RecordResult] | SalesforceError]:
        """One API call for ``request`` (subrequests of ≤ 200 plans of one kind, object and external ID):
        one subrequest goes as its plain sObject Collections call (the same one call, without the
        envelope), several as one ``/composite``; per subrequest, its results or its error."""
        if len(request) == 1:
            op = _operation(request[0])
            await self._call(op.kind)
            with self._answer():
                return [await self._collection(op)]
        await self._call("composite")
        with self._answer():
            return await self.client.collections([_operation(members) for members in request])

    async def _collection(self, op: CollectionOp) -> list[RecordResult]:
        if op.kind == "delete":
            return await self.client.delete_many(op.ids)
        if op.kind == "update":
            return await self.client.update_many(op.sobject, op.records, ids=op.ids)
        if op.kind == "upsert":
            assert op.ext_field is not None
            return await self.client.upsert_many(op.sobject, op.ext_field, op.records)
        return await self.client.create_many(op.sobject, op.records)

    async def _settle_all(
        self, members: list[_Plan], answer: list[RecordResult] | SalesforceError, outcome: BatchOutcome
    ) -> list[_Segment]:
        """Account for one subrequest's answer (its results, or the error of the subrequest or of the
        whole call); returns the segments done. A retriable error retries each of its records, a
        record error fails each of them, drift quarantines their mappings, another fatal error is raised."""
        finished: list[_Segment] = []
        if isinstance(answer, SalesforceRetriableError):
            for plan in members:
                if await self._fail(plan.seg, answer, outcome):
                    finished.append(plan.seg)
            return finished
        if isinstance(answer, SalesforceRecordError):
            answer = [RecordResult(i, None, False, None, [answer]) for i in range(len(members))]
        elif isinstance(answer, SalesforceError):
            if isinstance(answer, SalesforceFatalError) and is_drift(answer):
                return await self._drifted(DriftError(members[0].sobject, answer), [p.seg for p in members], outcome)
            raise answer
        acknowledged = self._acknowledged()  # one answer: its records were acknowledged together
        for plan, result in zip(members, answer, strict=True):
            if await self._settle(plan, result, outcome, acknowledged):
                finished.append(plan.seg)
        return finished

    def _acknowledged(self) -> int:
        """Now, as a WriteResult's ``acknowledged_at`` in storage form: the epoch milliseconds of the
        clock's time to the microsecond (what the encoder made of that time as a datetime)."""
        return to_millis(datetime.fromtimestamp(self._clock(), UTC)) or 0

    async def _settle(
        self, plan: _Plan, result: RecordResult, outcome: BatchOutcome, acknowledged: int | None = None
    ) -> bool:
        """Account for one record's result; True when the segment is done (written or parked).
        ``acknowledged``: when Salesforce answered (None: now)."""
        seg = plan.seg
        if result.success:
            record_id = result.id or plan.record_id or ""
            if plan.kind == "delete":
                self.forget(seg.key)
                self._written.pop((plan.sobject, record_id), None)
            else:
                self.remember(seg.key, plan.sobject, record_id)
                self._wrote((plan.sobject, record_id), plan.fields or {}, plan.body.keys())
            created = bool(result.created) if plan.kind == "upsert" else plan.kind == "create"
            at = self._acknowledged() if acknowledged is None else acknowledged
            outcome.results.append(self._result(seg, plan, record_id, created, at))
            return True
        error: SalesforceError = (
            result.errors[0]
            if result.errors
            else SalesforceRecordError("failed without an error", error_code="UNKNOWN")
        )
        if isinstance(error, SalesforceRetriableError):
            return await self._fail(seg, error, outcome)
        if isinstance(error, SalesforceRecordError) and not seg.rematched:
            stale_parent = error.error_code in {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"}
            duplicate = plan.kind == "create" and error.error_code in {"DUPLICATE_VALUE", "DUPLICATES_DETECTED"}
            if (stale_parent and seg.parents_from_cache) or duplicate or (stale_parent and plan.kind == "update"):
                seg.rematched = seg.again = True  # already there / gone meanwhile: match again first
                for parent_key in seg.parents_from_cache:
                    self.forget(parent_key)
                return False
        if is_drift(error):
            await self._drifted(DriftError(plan.sobject, error), [seg], outcome)
            return True
        if isinstance(error, SalesforceFatalError | FatalError):
            raise error
        await self._park(seg, error, outcome)
        return True

    @staticmethod
    def _result(seg: _Segment, plan: _Plan, record_id: str, created: bool, acknowledged: int) -> dict[str, Any]:
        last = seg.last
        return {
            "write_id": str(last["write_id"]),
            "key": seg.key,
            "mapping": seg.mapping,
            "sobject": plan.sobject,
            "salesforce_id": record_id,
            "created": created,
            "fields": plan.body,  # as sent: nothing changes it once sent
            "acknowledged_at": acknowledged,
            "workspace_id": str(last.get("workspace_id", "")),
            "source": last.get("source"),
        }

    async def _park(self, seg: _Segment, error: SfsyncError, outcome: BatchOutcome) -> None:
        fields = _error_fields(error)
        for w in seg.writes:
            await self._on_parked(w, error)
            outcome.parked.append(ParkedWrite(w, error))
        await self._on_error_entry(
            ErrorEntry(
                category="SYNC",
                severity="ERROR",
                code=_error_code(error),
                message=str(getattr(error, "message", None) or error),
                mapping=seg.mapping,
                record_key=seg.key,
                write_id=str(seg.last.get("write_id", "")),
                sobject=seg.target[0] if seg.target else seg.sobject,
                field=", ".join(fields) or None,
                salesforce_id=seg.target[1] if seg.target else None,
                workspace_id=_workspace(seg),
            )
        )

    # -- drift (sfsync.sinks.drift) -----------------------------------------------------------
    async def _drifted(self, drift: DriftError, segments: Sequence[_Segment], outcome: BatchOutcome) -> list[_Segment]:
        """Quarantine the mappings of ``segments`` that ``drift`` concerns (every one, when it names
        nothing they use) and park their segments; the others go again next round. Returns the parked."""
        culprits = [seg for seg in segments if concerns(drift, seg)] or list(segments)
        for mapping in dict.fromkeys(seg.mapping for seg in culprits):
            quarantined = self.quarantine.enter(mapping, drift)
            workspaces = {_workspace(seg) for seg in culprits if seg.mapping == mapping}
            if quarantined is not None:
                await self._on_error_entry(
                    ErrorEntry(
                        category="CONNECTION",
                        severity="ERROR",
                        code=QUARANTINED,
                        message=f"{quarantined.describe()}; its writes are parked (replay them once fixed), "
                        "the other mappings go on",
                        mapping=mapping,
                        record_key="",
                        write_id="",
                        sobject=drift.sobject,
                        field=", ".join(drift.fields) or None,
                        workspace_id=next(iter(workspaces)) if len(workspaces) == 1 else None,
                    )
                )
        parked = []
        for seg in segments:
            if self.quarantine.get(seg.mapping) is not None:
                await self._park_quarantined(seg, outcome)
                parked.append(seg)
            else:
                seg.again = True
        return parked

    async def _park_quarantined(self, seg: _Segment, outcome: BatchOutcome) -> None:
        """Park a quarantined mapping's writes (the quarantine has the one error-log entry)."""
        quarantined = self.quarantine.get(seg.mapping)
        assert quarantined is not None
        error = MappingQuarantinedError(quarantined)
        for w in seg.writes:
            await self._on_parked(w, error)
            outcome.parked.append(ParkedWrite(w, error))

    async def _recheck_quarantines(self) -> None:
        """Describe again what the due quarantines are about (no cache); an INFO entry for each lifted."""

        async def describe(obj: str) -> dict[str, Any] | None:
            await self._call("describe")
            try:
                with self._answer():
                    return await self.client.describe_body(obj, refresh=True)
            except SalesforceFatalError as exc:
                if is_drift(exc):
                    return None
                raise

        for lifted in await self.quarantine.recheck(describe):
            self._describes.pop(lifted.sobject, None)
            self._described_names.pop(lifted.sobject, None)
            await self._on_error_entry(
                ErrorEntry(
                    category="CONNECTION",
                    severity="INFO",
                    code=RESTORED,
                    message=f"mapping {lifted.mapping} passes the start-up checks again: its writes go to "
                    "Salesforce; replay the writes parked meanwhile (code MAPPING_QUARANTINED)",
                    mapping=lifted.mapping,
                    record_key="",
                    write_id="",
                    sobject=lifted.sobject,
                )
            )

    def _skip_if_empty(self, seg: _Segment, obj: str, name: str) -> None:
        """Count an ``if_empty`` value left out because the record already has one (reported per batch)."""
        entry = self._if_empty_skips.get((seg.mapping, obj, name))
        if entry is None:
            self._if_empty_skips[(seg.mapping, obj, name)] = [1, seg]
        else:
            entry[0] += 1

    async def _report_if_empty_skips(self) -> None:
        """One INFO entry per (mapping, object, field) and batch: an if_empty skip is the policy working,
        and one entry per record would flood the error log (the first record is named as a sample)."""
        skips, self._if_empty_skips = self._if_empty_skips, {}
        for (_, obj, name), (count, seg) in skips.items():
            others = f" (and {count - 1} more record(s) of this batch)" if count > 1 else ""
            await self._info(seg, "LOOKUP_POLICY_SKIP", f"{obj}.{name} already has a value; if_empty{others}", name)

    async def _info(self, seg: _Segment, code: str, message: str, name: str | None) -> None:
        await self._on_error_entry(
            ErrorEntry(
                category="SYNC",
                severity="INFO",
                code=code,
                message=message,
                mapping=seg.mapping,
                record_key=seg.key,
                write_id=str(seg.last.get("write_id", "")),
                sobject=seg.target[0] if seg.target else seg.sobject,
                field=name,
                salesforce_id=seg.target[1] if seg.target else None,
                workspace_id=_workspace(seg),
            )
        )

    async def _park_orphans(self, queues: Mapping[str, deque[_Segment]], outcome: BatchOutcome) -> None:
        """A child whose parent is nowhere waits ``max_parent_waits`` batches, then it is parked."""
        for queue in queues.values():
            if not queue or not queue[0].orphan:
                continue
            seg = queue[0]
            write_id = str(seg.writes[0].write.get("write_id"))
            waits = self._parent_waits.get(write_id, 0) + 1
            if waits < self.settings.max_parent_waits:
                self._parent_waits[write_id] = waits
                continue
            self._parent_waits.pop(write_id, None)
            queue.popleft()
            missing = [k for k, (parent_key, _) in seg.parents.items() if self.identity(parent_key) is None]
            parents = ", ".join(seg.parents[k][0] for k in missing)
            await self._park(
                seg,
                ParentNotFoundError(f"{seg.key}: parent {parents} not found after {waits} batches", fields=missing),
                outcome,
            )
