"""The echo hold's bookkeeping: changes that wait, aside from the stream, for the WriteResult that covers them.

A change of a user sfsync writes as that no known result covers yet
(:func:`~sfsync.processors.inbound.echo.hold_until`) may be sfsync's own write, read by the poller
before its WriteResult reached the inbound app. :class:`EchoHold` keeps such a change aside, with
every later change of the same record queued behind it (order per record), while the changes agent
goes on with the other records: the agent never waits on a hold, so Faust's one fetcher, which
feeds the results agent too, is never blocked behind a full changes buffer (it was: with every
buffered change waiting for results that could not be fetched, each waited out its full hold, one
after another). :meth:`EchoHold.released` gives the changes that may be judged now, per
:func:`~sfsync.processors.inbound.echo.hold_wait_ms`: covered by a result, or past
``polled_at + hold`` once the results stream has folded every result that was in Kafka when the
change was first looked at (:class:`ResultsProgress`); never later than ``hold`` (waiting for its
result) or the catch-up bound (waiting for a results stream that runs behind) after that first
look (docs/decisions/0004-inbound-echo-hold.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sfsync.processors.inbound.echo import HOLD_RECHECK_MS, hold_wait_ms
from sfsync.processors.inbound.processor import InboundProcessor
from sfsync.processors.inbound.state import Change, WrittenState
from sfsync.time import now_millis

__all__ = ["EchoHold", "HeldChange", "ResultsProgress"]

log = logging.getLogger(__name__)


class ResultsProgress:
    """How far the results agent got in each ``sfsync.results`` partition, against the partitions'
    end offsets (``consumer``: Faust's, with ``assignment()``, ``highwaters()`` and ``position()``)."""

    def __init__(self, consumer: Callable[[], Any], topic: str, ask_timeout_s: float = 2.0) -> None:
        self._consumer = consumer
        self.topic = topic
        self.ask_timeout_s = ask_timeout_s
        """How long to wait for the consumer's answer (end offsets, positions): a hold never hangs on it
        (a ``position()`` of aiokafka waits, unbounded, for a partition's position to become valid)."""
        self.read: dict[int, int] = {}
        """Partition -> the offset after the last result folded in."""

    def folded(self, partition: int, offset: int) -> None:
        self.read[partition] = max(self.read.get(partition, 0), offset + 1)

    async def end_offsets(self) -> dict[Any, int]:
        """The end offset of each assigned results partition now ({} when they cannot be read)."""
        consumer = self._consumer()
        try:
            mine = [tp for tp in consumer.assignment() if tp.topic == self.topic]
            if not mine:
                return {}
            ends = await asyncio.wait_for(consumer.highwaters(*mine), self.ask_timeout_s)
            return {tp: int(end) for tp, end in ends.items()}
        except TimeoutError:
            log.warning("the consumer gave no results end offsets in %.0fs: not waiting on them", self.ask_timeout_s)
            return {}
        except Exception as exc:  # noqa: BLE001 - a rebalance or a broker hiccup: do not wait on it
            log.debug("results end offsets not read: %s", exc)
            return {}

    async def reached(self, target: Mapping[Any, int]) -> bool:
        """Whether every result before ``target`` was folded in (a partition none of whose results
        was folded in this run counts where the consumer stands; unanswered in time: not waited on)."""
        unread = [tp for tp in target if tp.partition not in self.read]
        if any(self.read[tp.partition] < end for tp, end in target.items() if tp.partition in self.read):
            return False
        if not unread:
            return True
        consumer = self._consumer()
        try:
            positions = await asyncio.wait_for(
                asyncio.gather(*(consumer.position(tp) for tp in unread), return_exceptions=True), self.ask_timeout_s
            )
        except TimeoutError:
            log.warning("the consumer gave no results position in %.0fs: not waiting on it", self.ask_timeout_s)
            return True
        return all(
            isinstance(done, BaseException) or int(done or 0) >= target[tp]
            for tp, done in zip(unread, positions, strict=True)
        )


@dataclass(eq=False)
class HeldChange:
    """One change kept aside, with what the app needs to finish it (``token``: its Faust event)."""

    change: Change
    token: Any
    first_seen_ms: int
    seq: int = 0
    """Its place in the order changes were admitted."""
    target: Mapping[Any, int] | None = None
    """The results end offsets when it was first looked at past its bound (None: not yet)."""
    released_ms: int | None = None
    """When :meth:`EchoHold.released` gave it out (None: still held)."""
    covered: bool = False
    """Whether a result covered it when it was released (else: judged at its bound)."""

    @property
    def waited_s(self) -> float:
        return max(0, (self.released_ms or self.first_seen_ms) - self.first_seen_ms) / 1000


@dataclass(eq=False)
class EchoHold:
    """The changes that wait for their WriteResult, per record, in the order they came.

    :meth:`admit` keeps a change aside (or says it may be judged now); :meth:`released` waits until
    some may be judged and gives them, at most one per record at a time; :meth:`done` after a
    released change was judged lets the next change of its record come forward.

    A record's head is looked at again only when something can have changed for it: a result of
    that record was folded (:meth:`notify`), its bound came, or the results stream reached the end
    offsets it waits for. With 10,000 changes held, a result costs one look, not 10,000.
    """

    processor: InboundProcessor
    written: Mapping[str, WrittenState]
    results: ResultsProgress | None = None
    now_ms: Callable[[], int] = now_millis
    catch_up_ms: int = 0
    """How long after its first look a change past its deadline may wait for the results stream
    (:func:`~sfsync.processors.inbound.echo.hold_wait_ms`; below the hold: the hold)."""
    limit: int = 10_000
    """How many changes it holds before :attr:`full` asks the app to stop fetching changes."""
    settle_s: float = 0.02
    """After a wake-up, how long to let more results fold before looking (one look per burst of results)."""
    _held: dict[str, deque[HeldChange]] = field(default_factory=dict)
    _count: int = 0
    _seq: int = 0
    _dirty: set[str] = field(default_factory=set)
    """Records whose head is looked at next time: a new head, or a result of the record came."""
    _due: list[tuple[int, int, str]] = field(default_factory=list)
    """A heap of (when, seq, record): the bounds at which a record's head is looked at again."""
    _catching_up: dict[int, tuple[Mapping[Any, int], set[str]]] = field(default_factory=dict)
    """id(target) -> (target, records whose head waits for the results stream to reach it)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __len__(self) -> int:
        """How many changes are held (released ones not yet :meth:`done` included)."""
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.limit

    def notify(self, partition: int | None = None, offset: int | None = None, record: str | None = None) -> None:
        """A result (at ``partition``/``offset`` of sfsync.results, of Salesforce record ``record``)
        was folded in: its record's held change may be covered, the results stream moved on."""
        if self.results is not None and partition is not None and offset is not None:
            self.results.folded(partition, offset)
        if record and record in self._held:
            self._dirty.add(record)
            self._wake.set()
        elif self._catching_up:
            self._wake.set()

    def admit(self, change: Change, token: Any) -> bool:
        """Keep ``change`` aside (True): a change of its record is already held, or no result covers it
        yet. False: judge it now (nothing of its record waits, and it needs no result)."""
        key = change["id"] or ""
        queue = self._held.get(key)
        if queue is None:
            if self.processor.hold_until(change, self.written) is None:
                return False
            queue = self._held[key] = deque()
            self._dirty.add(key)
        self._seq += 1
        queue.append(HeldChange(change, token, self.now_ms(), self._seq))
        self._count += 1
        self._wake.set()
        return True

    def done(self, held: HeldChange) -> None:
        """``held`` (given by :meth:`released`) was judged: the next change of its record comes forward."""
        key = held.change["id"] or ""
        queue = self._held.get(key)
        if not queue or queue[0] is not held:
            return  # dropped meanwhile (its partition was revoked)
        queue.popleft()
        self._count -= 1
        if not queue:
            del self._held[key]
        else:
            queue[0].first_seen_ms = max(queue[0].first_seen_ms, self.now_ms())  # its own wait starts now
            self._dirty.add(key)
            self._wake.set()

    def drop(self, keep: Callable[[Any], bool]) -> list[HeldChange]:
        """Forget the held changes whose token ``keep`` rejects (their partition was revoked: they are
        read again from the committed offset, here or by another worker); the ones forgotten."""
        dropped: list[HeldChange] = []
        for key in list(self._held):
            queue = self._held[key]
            gone = [h for h in queue if not keep(h.token)]
            if gone:
                dropped += gone
                kept = deque(h for h in queue if keep(h.token))
                if kept:
                    self._held[key] = kept
                    self._dirty.add(key)
                else:
                    del self._held[key]
        self._count -= len(dropped)
        return dropped

    async def released(self) -> list[HeldChange]:
        """Wait until at least one held change may be judged; those that may (the heads of their
        records, in the order they were admitted). Call :meth:`done` for each once it is judged."""
        while True:
            ready, wait_ms = await self._look()
            if ready:
                return ready
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(wait_ms, 1000) / 1000)
            if self._wake.is_set() and self.settle_s:
                await asyncio.sleep(self.settle_s)

    async def _look(self) -> tuple[list[HeldChange], int]:
        """The heads that may be judged now, and how long until the next look is due (ms)."""
        now = self.now_ms()
        keys, self._dirty = self._dirty, set()
        while self._due and self._due[0][0] <= now:
            keys.add(heapq.heappop(self._due)[2])
        reached: dict[int, bool] = {}
        if self.results is not None:
            for tid, (target, waiting) in list(self._catching_up.items()):
                reached[tid] = await self.results.reached(target)
                if reached[tid]:
                    keys |= waiting
                    del self._catching_up[tid]
        ready: list[HeldChange] = []
        hold_ms = self.processor.hold_ms
        ends: Mapping[Any, int] | None = None  # asked once per look, shared by the heads first past their bound
        for key in keys:
            queue = self._held.get(key)
            if not queue or queue[0].released_ms is not None:
                continue
            head = queue[0]
            deadline = self.processor.hold_until(head.change, self.written)
            cap = head.first_seen_ms + max(hold_ms, self.catch_up_ms)
            catching_up = deadline is not None and deadline <= now < cap and self.results is not None
            caught_up = True
            if catching_up and self.results is not None:
                if head.target is None:
                    if ends is None:
                        ends = await self.results.end_offsets()
                    head.target = ends
                if id(head.target) not in reached:
                    reached[id(head.target)] = await self.results.reached(head.target)
                caught_up = reached[id(head.target)]
            wait_ms = hold_wait_ms(deadline, now, head.first_seen_ms, hold_ms, caught_up, self.catch_up_ms)
            if wait_ms is None:
                head.released_ms, head.covered = now, deadline is None
                ready.append(head)
            elif catching_up and head.target is not None:  # looked at again when the results get there, or at its cap
                self._catching_up.setdefault(id(head.target), (head.target, set()))[1].add(key)
                heapq.heappush(self._due, (cap, head.seq, key))
            else:
                heapq.heappush(self._due, (now + wait_ms, head.seq, key))
        ready.sort(key=lambda h: h.seq)
        next_ms = self._due[0][0] - now if self._due else 1000
        if self._catching_up:
            next_ms = min(next_ms, HOLD_RECHECK_MS)
        return ready, max(1, next_ms)
