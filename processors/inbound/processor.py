"""The inbound processor's work, without Kafka: one ``sfsync.results`` or ``salesforce.changes`` record in.

:class:`InboundProcessor` decodes a record, applies the inbound rules against the record's
state (:func:`~sfsync.processors.inbound.identity.apply_result` for a WriteResult,
:func:`~sfsync.processors.inbound.decide.decide` for a Change) and encodes what they give for
``product.members.inbound`` and ``sfsync.salesforce_edits``; a record it cannot decode, or whose
inbound filter fails, comes back as a :class:`~sfsync.processors.faust_runtime.parking.Parked`.
:class:`ResultsProgress` and :class:`EchoHold` are the echo hold's bookkeeping (how far the results
stream has been folded in; which changes wait for it). The Faust app around them is
:mod:`sfsync.processors.inbound.app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from sfsync.errors import SkippableRecordError
from sfsync.mapping import MappingFile
from sfsync.ops.dlq import OriginalRecord, Stage
from sfsync.processors.faust_runtime.parking import Parked
from sfsync.processors.inbound.decide import decide
from sfsync.processors.inbound.echo import echo_writer, hold_until, hold_wait_ms, same_user
from sfsync.processors.inbound.identity import apply_result
from sfsync.processors.inbound.metrics import InboundMetrics
from sfsync.processors.inbound.state import Change, Decision, Output, SeenState, WriteResult, WrittenState
from sfsync.time import now_millis

__all__ = ["EchoHold", "InboundHandled", "InboundProcessor", "ResultsProgress"]

log = logging.getLogger(__name__)


class InboundHandled(NamedTuple):
    """What one record causes: (key, value) pairs for ``product.members.inbound``, records to park,
    and (key, value) pairs for ``sfsync.salesforce_edits``."""

    sends: list[tuple[bytes, bytes]]
    parked: list[Parked]
    outputs: list[Output]
    edits: list[tuple[bytes, bytes]] = []


@dataclass
class InboundProcessor:
    """Decode one record, apply the inbound rules against the record's state, encode what they give."""

    decoder: Any
    """``decode(bytes) -> (record name, dict)``: :class:`~sfsync.serde.codec.AvroDecoder`."""
    encoder: Any
    """``encode(record name, dict) -> bytes``: :class:`~sfsync.serde.codec.AvroEncoder` for product.members.inbound."""
    mappings: MappingFile
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "results": 0, "changes": 0, "sent": 0, "parked": 0, "echo": 0, "conflict": 0, "held": 0,
        }
    )  # fmt: skip
    metrics: InboundMetrics | None = None
    """Observes each record (what the rules decided, latency, DLQ); None: counts only."""
    writers: set[str] = field(default_factory=set)
    """Salesforce user ids sfsync writes as (configured, then learned from recognised echoes)."""
    hold_ms: int = 0
    """Longest wait of a writer's change for the result that covers it (0: never wait)."""
    edits_encoder: Any = None
    """``encode(record name, dict) -> bytes`` for ``sfsync.salesforce_edits``; None: edits are not sent."""

    def _decode(self, value: bytes | None, original: OriginalRecord, expected: str) -> tuple[object, list[Parked]]:
        """The decoded record (None: parked), a record ``expected`` (its topic's record type): a record of
        another schema (another topic's, or another producer's) is parked, not read as one it is not."""
        try:
            if value is None:
                raise SkippableRecordError("empty value (a tombstone is not a record here)")
            name, record = self.decoder.decode(value)
            if name != expected:
                raise SkippableRecordError(f"{original.topic} carries {expected} records, not {name}")
        except SkippableRecordError as exc:
            self.counts["parked"] += 1
            return None, [Parked(original, exc, Stage.VALUE_CONVERTER)]
        return record, []

    def _encode(
        self, decision: Decision[WrittenState] | Decision[SeenState], original: OriginalRecord, mapping: str | None
    ) -> InboundHandled:
        sends: list[tuple[bytes, bytes]] = []
        edits: list[tuple[bytes, bytes]] = []
        parked: list[Parked] = []
        for output in decision.outputs:
            try:
                if output.record == "SalesforceEdit":
                    if self.edits_encoder is not None:
                        edits.append((output.key.encode(), self.edits_encoder.encode(output.record, output.value)))
                    continue
                sends.append((output.key.encode(), self.encoder.encode(output.record, output.value)))
            except SkippableRecordError as exc:
                parked.append(Parked(original, exc, Stage.TRANSFORMATION, mapping=mapping))
        for reason, n in decision.dropped.items():
            kind = reason.split(":", 1)[0]
            if kind in self.counts:
                self.counts[kind] += n
        self.counts["sent"] += len(sends)
        self.counts["parked"] += len(parked)
        self._observe_parked(parked)
        return InboundHandled(sends, parked, decision.outputs, edits)

    def _observe_parked(self, parked: list[Parked]) -> None:
        if self.metrics is not None:
            for p in parked:
                self.metrics.parked(p.stage)

    def on_result(
        self,
        value: bytes | None,
        original: OriginalRecord,
        written: MutableMapping[str, WrittenState],
    ) -> InboundHandled:
        """Fold one ``sfsync.results`` record into ``written`` (Salesforce Id -> written state)."""
        self.counts["results"] += 1
        decoded, parked = self._decode(value, original, "WriteResult")
        result = cast("WriteResult | None", decoded)
        if result is None:
            self._observe_parked(parked)
            if self.metrics is not None:
                self.metrics.result(None)
            return InboundHandled([], parked, [])
        sf_id = result["salesforce_id"] or ""
        if not sf_id:
            return InboundHandled([], [], [])
        decision = apply_result(written.get(sf_id), result, self.mappings)
        if self.metrics is not None:
            self.metrics.result(decision)
        if decision.state is not None:
            written[sf_id] = decision.state
        return self._encode(decision, original, result["mapping"] or None)

    def on_change(
        self,
        value: bytes | None,
        original: OriginalRecord,
        written: Mapping[str, WrittenState],
        seen: MutableMapping[str, SeenState],
    ) -> InboundHandled:
        """Apply the inbound rules to one ``salesforce.changes`` record (``written`` is only read;
        ``seen``: Salesforce Id -> seen state, updated), without waiting (see :meth:`hold_until`)."""
        change, handled = self.decode_change(value, original)
        return handled if change is None else self.judge(change, original, written, seen)

    def decode_change(self, value: bytes | None, original: OriginalRecord) -> tuple[Change | None, InboundHandled]:
        """The decoded change, or None and what parks the undecodable record."""
        self.counts["changes"] += 1
        decoded, parked = self._decode(value, original, "Change")
        change = cast("Change | None", decoded)
        if change is None:
            self._observe_parked(parked)
            if self.metrics is not None:
                self.metrics.decided(None, None)
        return change, InboundHandled([], parked, [])

    def hold_until(self, change: Change, written: Mapping[str, WrittenState]) -> int | None:
        """Until when (epoch ms) the change waits for its WriteResult (:func:`~.echo.hold_until`)."""
        return hold_until(written.get(change["id"] or ""), change, self.writers, self.hold_ms, self.mappings)

    def judge(
        self,
        change: Change,
        original: OriginalRecord,
        written: Mapping[str, WrittenState],
        seen: MutableMapping[str, SeenState],
    ) -> InboundHandled:
        """The rules on one decoded change; a recognised echo teaches which user sfsync writes as."""
        sf_id = change["id"] or ""
        try:
            decision = decide(written.get(sf_id), seen.get(sf_id), change, self.mappings)
        except SkippableRecordError as exc:  # the inbound filter failed on this record
            self.counts["parked"] += 1
            parked = [Parked(original, exc, Stage.TRANSFORMATION, mapping=getattr(exc, "mapping", None))]
            self._observe_parked(parked)
            return InboundHandled([], parked, [])
        if self.metrics is not None:
            self.metrics.decided(change["change_type"] or "", decision, now_millis())
        writer = echo_writer(written.get(sf_id), change, decision)
        if writer is not None and not same_user(writer, self.writers):
            self.writers.add(writer)
            log.info("sfsync writes as Salesforce user %s (learned from an echo)", writer)
        if decision.state is not None:
            seen[sf_id] = decision.state
        return self._encode(decision, original, decision.state["mapping"] if decision.state else None)


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


class EchoHold:
    """Holds a change of sfsync's writer until the WriteResult covering it is folded in, within the
    bounds of :func:`~sfsync.processors.inbound.echo.hold_wait_ms`; woken by every result (:meth:`notify`)."""

    def __init__(
        self,
        processor: InboundProcessor,
        written: Mapping[str, WrittenState],
        results: ResultsProgress | None = None,
        now_ms: Callable[[], int] = now_millis,
    ) -> None:
        self.processor = processor
        self.written = written
        self.results = results
        self._now_ms = now_ms
        self._event = asyncio.Event()

    def notify(self, partition: int | None = None, offset: int | None = None) -> None:
        """A result (at ``partition``/``offset`` of sfsync.results) was folded in: look again."""
        if self.results is not None and partition is not None and offset is not None:
            self.results.folded(partition, offset)
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def hold(self, change: Change) -> bool:
        """Wait until ``change`` may be judged; True when it waited at all."""
        first_seen = self._now_ms()
        hold_ms = self.processor.hold_ms
        target: dict[Any, int] | None = None
        waited = False
        while True:
            now = self._now_ms()
            deadline = self.processor.hold_until(change, self.written)
            caught_up = True
            if deadline is not None and deadline <= now < first_seen + hold_ms and self.results is not None:
                if target is None:  # the results there are now: they are folded in before it is judged
                    target = await self.results.end_offsets()
                caught_up = await self.results.reached(target)
            wait_ms = hold_wait_ms(deadline, now, first_seen, hold_ms, caught_up)
            if wait_ms is None:
                return waited
            waited = True
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(wait_ms, 1000) / 1000)
