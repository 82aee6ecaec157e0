r"""The outbound processor's work, without Kafka: one product record in, the writes it causes out.

It is done in two steps, because the two need different partitioning (see
:mod:`sfsync.processors.outbound.app`):

1. :meth:`Processor.plan_record` (read from a product topic, keyed by entity): decodes the record's
   bytes (Confluent wire format, :class:`~sfsync.serde.codec.AvroDecoder`),
   :func:`~sfsync.processors.outbound.plan.plan`\ s the writes it causes with its workspace's mapping
   file (``mappings_for(workspace_id)``; by default the configured mapping for every workspace) and
   encodes them, each keyed by its record key (:mod:`sfsync.keys`: the workspace first). It reads no
   state.
2. :meth:`Processor.order_write` (read from a topic keyed by record key): one planned write against
   what is known of its record: the object it is (``identity``, learnt from ``sfsync.identities``: record
   key -> ``[sobject, salesforce_id]``, person records only: :func:`sfsync.keys.person_identity`)
   orders a person's ``search_objects``
   (:func:`~sfsync.processors.outbound.plan.known_first`), and its clock
   (:func:`~sfsync.processors.outbound.plan.drop_stale`, ``record_clock``: record key -> field ->
   ``updated_at``) drops what is older than what was already planned, so a late event never
   overwrites newer values. What is left goes to ``sfsync.writes``.

:meth:`Processor.handle` does both for one record at once (one process, no Kafka in between).

An event of a type no enabled mapping acts on causes no write, and is never dropped silently: it is
counted (``counts["unmapped"]``, ``sfsync_processor_events_unmapped_total``) and the first one of each
type is logged at WARNING with what to do about it.

A workspace's state changes nothing here: a PAUSED or DISCONNECTED workspace's events are planned
as an ACTIVE one's (the sink holds their writes until the workspace resumes).

A record that cannot be decoded, an event whose workspace has no usable mapping (``mappings_for``
raised a :class:`~sfsync.errors.SkippableRecordError`: an unknown workspace where one is required, an
invalid workspace mapping: only that workspace's events park), a mapping that cannot evaluate the
event (a plan's rejects) and a write that does not fit its schema come back as
:class:`~sfsync.processors.faust_runtime.parking.Parked` records with the original bytes and why; the
other writes of the event still go out. A write Kafka refuses (:func:`send_writes`) is parked the same
way. Transient faults (the registry down) are raised. The Faust app around it is
:mod:`sfsync.processors.outbound.app`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sfsync.errors import SkippableRecordError
from sfsync.kafka.errors import RecordRejectedError
from sfsync.mapping import Mapping as MappingRule
from sfsync.mapping import MappingFile
from sfsync.ops.dlq import OriginalRecord, Stage
from sfsync.processors.faust_runtime.parking import Parked
from sfsync.processors.outbound.metrics import ProcessorMetrics
from sfsync.processors.outbound.plan import (
    NO_IDENTITY,
    Identity,
    IdentityView,
    Plan,
    drop_stale,
    known_first,
    plan,
)

__all__ = ["Handled", "Processor", "TableIdentity", "per_event_mappings", "send_writes"]

log = logging.getLogger(__name__)


_PROFILES_KEPT = 512
"""How many mapping files' derived facts a processor keeps (more than a mapping library's files)."""


@dataclass
class _Profile:
    """What the processor derives from one mapping file."""

    mappings: MappingFile
    unclocked: frozenset[str]
    """:func:`per_event_mappings`: their writes skip the clock."""
    mapped: dict[str, bool] = field(default_factory=dict)
    """Event type -> whether an enabled mapping acts on it."""


class Handled(NamedTuple):
    """What one product record causes: the writes to send (in order) and the records to park."""

    writes: list[tuple[bytes, bytes]]
    """(key, value) for ``sfsync.writes``: the record key and the Avro Write."""
    parked: list[Parked]
    planned: list[dict[str, Any]]
    """The writes as dicts, after :func:`drop_stale` (what ``writes`` encodes)."""


class TableIdentity:
    """An :class:`~sfsync.processors.outbound.plan.IdentityView` over a table of key -> ``[sobject, salesforce_id]``."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> Identity | None:
        value = self.table.get(key)
        if not value:
            return None
        return Identity(str(value[0]), str(value[1]))


def per_event_mappings(mappings: MappingFile) -> frozenset[str]:
    """Mappings whose records only their own event writes: every identity is the product event's ``event_id``.

    Such a record (e.g. the activity record of each event) needs no clock: no other event can
    write it, and a replay plans the same values. Keeping one would only grow the ``record_clock``
    table (and its changelog) by a key per event. A mapping is left out when another mapping
    matches the same object and field from something else (it could write the same record).
    """

    def sources(mapping: MappingRule) -> list[tuple[str, str | None]]:
        return [(key.field, key.from_) for keys in mapping.match_alternatives for key in keys]

    enabled = [m for m in mappings.mappings if m.enabled]
    out = set()
    for mapping in enabled:
        keys = sources(mapping)
        if not keys or any(len(alt) != 1 for alt in mapping.match_alternatives):
            continue
        if any(source != "event_id" for _, source in keys):
            continue
        fields = {f for f, _ in keys}
        shared = any(
            other.target == mapping.target and any(f in fields and src != "event_id" for f, src in sources(other))
            for other in enabled
            if other is not mapping
        )
        if not shared:
            out.add(mapping.name)
    return frozenset(out)


@dataclass
class Processor:
    """Decode, plan, order and encode one product record (see the module doc)."""

    decoder: Any
    """``decode(bytes) -> (record name, dict)``: :class:`~sfsync.serde.codec.AvroDecoder`, best with
    ``uuids_as_text=True`` (the plan takes a uuid as text; a ``uuid.UUID`` costs a conversion back)."""
    encoder: Any
    """``encode_checked("Write", dict) -> bytes``: :class:`~sfsync.serde.codec.AvroEncoder` for sfsync.writes."""
    mappings: MappingFile
    """The configured mapping: every workspace's, unless ``mappings_for`` says otherwise."""
    external_ids: Collection[str] | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"events": 0, "writes": 0, "stale": 0, "parked": 0, "unmapped": 0}
    )
    metrics: ProcessorMetrics | None = None
    """Observes each record handled (type, writes sent, stale writes, time); None: counts only."""
    plans_decoder: Any = None
    """Decodes the planned Writes :meth:`order_write` reads, in storage form (epoch milliseconds, as
    planned): ``AvroDecoder(registry, logical_types=False)``; only :meth:`order_write` needs it."""
    mappings_for: Callable[[str], MappingFile] | None = None
    """The mapping file of a workspace's events (``mappings_for(workspace_id)``, e.g.
    :class:`~sfsync.workspaces.routing.WorkspaceMappings`); a :class:`~sfsync.errors.SkippableRecordError`
    it raises (an unknown workspace, an invalid workspace mapping) parks the event. None: ``mappings``
    for every workspace."""
    unmapped: dict[str, int] = field(init=False, default_factory=dict)
    """Per event type no enabled mapping acts on: how many such events were read."""

    def __post_init__(self) -> None:
        self._profiles: OrderedDict[int, _Profile] = OrderedDict()
        self._uuids_as_text = getattr(self.decoder, "uuids_as_text", False) is True
        """The decoder gives uuids as text: the plan takes its payloads as they are."""

    def mappings_of(self, workspace_id: str) -> MappingFile:
        """The mapping file that plans ``workspace_id``'s events.

        Raises:
            SkippableRecordError: the workspace's events cannot be planned (``mappings_for`` says why).
        """
        return self.mappings if self.mappings_for is None else self.mappings_for(workspace_id)

    def _profile(self, mappings: MappingFile) -> _Profile:
        """What the processor derives from one mapping file, derived once (for the newest files used)."""
        found = self._profiles.get(id(mappings))
        if found is not None and found.mappings is mappings:
            self._profiles.move_to_end(id(mappings))
            return found
        found = self._profiles[id(mappings)] = _Profile(mappings, per_event_mappings(mappings))
        if len(self._profiles) > _PROFILES_KEPT:
            self._profiles.popitem(last=False)
        return found

    def _unclocked(self, write: dict[str, Any]) -> bool:
        """Whether ``write`` skips the clock (a mapping of :func:`per_event_mappings` in its workspace's file);
        a workspace whose mapping cannot be had now keeps a clock (never wrong, only larger)."""
        try:
            mappings = self.mappings_of(str(write.get("workspace_id") or ""))
        except SkippableRecordError:
            return False
        return write.get("mapping") in self._profile(mappings).unclocked

    def _count_if_unmapped(self, event_type: str, mappings: MappingFile) -> None:
        """Count (and the first time, log) an event whose type no enabled mapping of ``mappings`` acts on."""
        mapped_types = self._profile(mappings).mapped
        mapped = mapped_types.get(event_type)
        if mapped is None:
            mapped = mapped_types[event_type] = bool(mappings.for_event(event_type))
        if mapped:
            return
        self.counts["unmapped"] += 1
        seen = self.unmapped.get(event_type, 0)
        self.unmapped[event_type] = seen + 1
        if self.metrics is not None:
            self.metrics.unmapped(event_type)
        if not seen:
            log.warning(
                "no enabled mapping acts on %s events: they cause no write (counted in "
                "sfsync_processor_events_unmapped_total). Map the type, or ignore this if it is meant",
                event_type,
            )

    def handle(
        self,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        *,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
        identity: IdentityView = NO_IDENTITY,
        clock: MutableMapping[str, Any] | None = None,
    ) -> Handled:
        """Plan the writes of one record read at ``topic``/``partition``/``offset`` and order them
        (:meth:`plan_record` then :meth:`order_write` for each write, without encoding in between).

        ``clock`` (record key -> field -> ``updated_at``) is read and updated for every write
        that goes out, except those of :func:`per_event_mappings`; None keeps no clock (no write
        is dropped as stale).
        Raises only what is not the record's fault (e.g. the registry being unreachable).
        """
        started = time.perf_counter()
        original = OriginalRecord(topic, partition, offset, key, value, tuple(headers))
        planned = self._plan(value, original, started)
        if isinstance(planned, Handled):
            return planned
        event_type, planned_writes, parked = planned
        writes: list[tuple[bytes, bytes]] = []
        kept: list[dict[str, Any]] = []
        stale: list[dict[str, Any]] = []
        for write in planned_writes.writes:
            fresh = self._order(write, identity, clock)
            if fresh is None:
                stale.append(write)
                continue
            try:
                data = self.encoder.encode_checked("Write", fresh)
            except SkippableRecordError as exc:
                parked.append(Parked(original, exc, Stage.TRANSFORMATION, mapping=str(write.get("mapping") or "")))
                continue
            writes.append((str(fresh["key"]).encode(), data))
            kept.append(fresh)
        self.counts["writes"] += len(writes)
        self.counts["parked"] += len(parked)
        self._observe(event_type, kept, stale, started)
        return Handled(writes, parked, kept)

    def plan_record(
        self,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        *,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
    ) -> Handled:
        """The writes one product record causes, encoded and keyed by record key, not yet ordered
        (no identity, no clock: :meth:`order_write` does that, where the writes of a record meet).

        Counts the event (and what it parks); the writes are counted once ordered.
        Raises only what is not the record's fault (e.g. the registry being unreachable).
        """
        started = time.perf_counter()
        original = OriginalRecord(topic, partition, offset, key, value, tuple(headers))
        planned = self._plan(value, original, started)
        if isinstance(planned, Handled):
            return planned
        event_type, planned_writes, parked = planned
        writes: list[tuple[bytes, bytes]] = []
        kept: list[dict[str, Any]] = []
        for write in planned_writes.writes:
            try:
                data = self.encoder.encode_checked("Write", write)
            except SkippableRecordError as exc:
                parked.append(Parked(original, exc, Stage.TRANSFORMATION, mapping=str(write.get("mapping") or "")))
                continue
            writes.append((str(write["key"]).encode(), data))
            kept.append(write)
        self.counts["parked"] += len(parked)
        self._observe(event_type, [], [], started)
        return Handled(writes, parked, kept)

    def order_write(
        self,
        value: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        *,
        key: bytes | None = None,
        headers: Iterable[tuple[str, bytes]] = (),
        identity: IdentityView = NO_IDENTITY,
        clock: MutableMapping[str, Any] | None = None,
    ) -> Handled:
        """One write :meth:`plan_record` planned (its bytes, read at ``topic``/``partition``/``offset``)
        ordered against its record: the write to send (its bytes as they came when nothing changed),
        none when it is stale, or the record parked when it is not a planned write.

        ``identity`` and ``clock`` as in :meth:`handle`. Raises only what is not the record's fault.
        """
        original = OriginalRecord(topic, partition, offset, key, value, tuple(headers))
        try:
            if value is None:
                raise SkippableRecordError("empty value (a tombstone is not a planned write)")
            name, write = self.plans_decoder.decode(value)
            if name.rsplit(".", 1)[-1] != "Write":
                raise SkippableRecordError(f"a {name} is not a planned Write")
        except SkippableRecordError as exc:
            self.counts["parked"] += 1
            return Handled([], [Parked(original, exc, Stage.VALUE_CONVERTER)], [])
        fresh = self._order(write, identity, clock)
        if fresh is None:
            self._settled([], [write])
            return Handled([], [], [])
        if fresh is not write:
            try:
                value = self.encoder.encode_checked("Write", fresh)
            except SkippableRecordError as exc:
                self.counts["parked"] += 1
                parked = Parked(original, exc, Stage.TRANSFORMATION, mapping=str(write.get("mapping") or ""))
                return Handled([], [parked], [])
        self.counts["writes"] += 1
        self._settled([fresh], [])
        return Handled([(str(fresh["key"]).encode(), value)], [], [fresh])

    def _plan(
        self, value: bytes | None, original: OriginalRecord, started: float
    ) -> tuple[str, Plan, list[Parked]] | Handled:
        """(event type, its plan, its rejects parked), or what the record comes to when it cannot be planned."""
        self.counts["events"] += 1
        try:
            if value is None:
                raise SkippableRecordError("empty value (a tombstone is not a product event)")
            event_type, event = self.decoder.decode(value)
        except SkippableRecordError as exc:
            self.counts["parked"] += 1
            self._observe("unknown", [], [], started)
            return Handled([], [Parked(original, exc, Stage.VALUE_CONVERTER)], [])
        try:
            mappings = self.mappings_of(str(event.get("workspace_id") or ""))
        except SkippableRecordError as exc:  # this workspace's events park; the others' plan
            self.counts["parked"] += 1
            self._observe(event_type, [], [], started)
            return Handled([], [Parked(original, exc, Stage.TRANSFORMATION)], [])
        self._count_if_unmapped(event_type, mappings)
        try:
            planned = plan(  # the record's coordinates are the plan's source
                event_type, event, original, mappings, external_ids=self.external_ids, uuids_as_text=self._uuids_as_text
            )
        except Exception as exc:  # noqa: BLE001 - a bug in a rule parks the record, never blocks the stream
            self.counts["parked"] += 1
            self._observe(event_type, [], [], started)
            return Handled([], [Parked(original, exc, Stage.TRANSFORMATION)], [])
        parked = [Parked(original, r, Stage.TRANSFORMATION, mapping=r.mapping) for r in planned.rejects]
        return event_type, planned, parked

    def _order(
        self, write: dict[str, Any], identity: IdentityView, clock: MutableMapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """``write`` with its person objects in known order and its stale fields dropped (``write``
        itself when neither changes anything); None when all of it is stale. Moves the record's clock."""
        searched = known_first(write, identity)
        if searched is not None:
            write = {**write, "search_objects": searched}
        record_key = str(write["key"])
        clocked = clock if clock is not None and not self._unclocked(write) else None
        if clocked is None:
            return write
        before = clocked.get(record_key) or {}
        fresh, after = drop_stale(write, before)
        if fresh is None:
            self.counts["stale"] += 1
            return None
        if after != before:
            clocked[record_key] = after
        if len(fresh.get("fields") or ()) == len(write.get("fields") or ()):
            return write  # nothing dropped
        return fresh

    def _observe(
        self, event_type: str, sent: list[dict[str, Any]], stale: list[dict[str, Any]], started: float
    ) -> None:
        if self.metrics is not None:
            self.metrics.handled(
                event_type,
                [str(w.get("sobject") or "") for w in sent],
                [str(w.get("sobject") or "") for w in stale],
                time.perf_counter() - started,
            )

    def _settled(self, sent: list[dict[str, Any]], stale: list[dict[str, Any]]) -> None:
        if self.metrics is not None:
            self.metrics.settled(
                [str(w.get("sobject") or "") for w in sent], [str(w.get("sobject") or "") for w in stale]
            )


def send_writes(
    send: Callable[[bytes, bytes], None], handled: Handled, original: Callable[[], OriginalRecord]
) -> list[Parked]:
    """Send ``handled``'s writes in order; the parked records of ``handled`` plus one per write Kafka
    refused (:class:`~sfsync.kafka.errors.RecordRejectedError` from ``send``): ``original()`` (the record
    the writes were planned or read from) at stage ``KAFKA_PRODUCE``, with the write's mapping.
    Anything else ``send`` raises propagates (not the record's fault)."""
    parked = handled.parked
    for (key, value), write in zip(handled.writes, handled.planned, strict=True):
        try:
            send(key, value)
        except RecordRejectedError as exc:
            mapping = str(write.get("mapping") or "") or None
            parked = [*parked, Parked(original(), exc, Stage.KAFKA_PRODUCE, mapping=mapping)]
    return parked
