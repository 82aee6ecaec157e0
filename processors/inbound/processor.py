"""The inbound processor's work, without Kafka: one ``sfsync.results`` or ``salesforce.changes`` record in.

:class:`InboundProcessor` decodes a record, applies the inbound rules against the record's
state (:func:`~sfsync.processors.inbound.identity.apply_result` for a WriteResult,
:func:`~sfsync.processors.inbound.decide.decide` for a Change) and encodes what they give for
``product.members.inbound`` and ``sfsync.salesforce_edits``; a record it cannot decode, or whose
inbound filter fails, comes back as a :class:`~sfsync.processors.faust_runtime.parking.Parked`.
:mod:`~sfsync.processors.inbound.hold` keeps the changes that wait for their result. The Faust app
around them is :mod:`sfsync.processors.inbound.app`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from sfsync.errors import SkippableRecordError
from sfsync.mapping import MappingFile
from sfsync.ops.dlq import OriginalRecord, Stage
from sfsync.processors.faust_runtime.parking import Parked
from sfsync.processors.inbound.decide import decide
from sfsync.processors.inbound.echo import echo_writer, hold_until, same_user
from sfsync.processors.inbound.identity import apply_result
from sfsync.processors.inbound.metrics import InboundMetrics
from sfsync.processors.inbound.state import Change, Decision, Output, SeenState, WriteResult, WrittenState
from sfsync.time import now_millis

__all__ = ["InboundHandled", "InboundProcessor"]

log = logging.getLogger(__name__)


class InboundHandled(NamedTuple):
    """What one record causes: (key, value) pairs for ``product.members.inbound``, records to park,
    and (key, value) pairs for ``sfsync.salesforce_edits``."""

    sends: list[tuple[bytes, bytes]]
    parked: list[Parked]
    outputs: list[Output]
    edits: list[tuple[bytes, bytes]] = []
    record: str = ""
    """The Salesforce Id of the record a WriteResult was about ("" for a change, or no record)."""


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
        return self._encode(decision, original, result["mapping"] or None)._replace(record=sf_id)

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
