"""Merging a batch's writes per record key, in order, and the record clock (pure: no Salesforce, no Kafka).

A record key's consecutive writes become one *segment*, executed as one Salesforce record
operation: UPSERTs merge field by field (an older value never overwrites a newer one); a DELETE
absorbs the UPSERTs before it; an UPSERT after a DELETE starts a new segment that runs only once
the delete is done.

Across batches and write keys the order holds per Salesforce record: the sink keeps, per record
Id, the ``updated_at`` of the newest value it wrote to each field (:func:`written_times`), and
a later segment for that record writes only the fields it has no older value of
(:func:`drop_older`). Two writes for one record under different keys (one keyed by Email before
the member id was its key) or a write carried as pending while a later one was written cannot put
an older value back.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sfsync.sinks.contract import IncomingWrite
from sfsync.time import to_millis

Value = str | bool | int | float | None
_EMPTY: tuple[Any, ...] = (None, "")
IF_EMPTY = "IF_EMPTY"

FieldValue = Mapping[str, Any]
"""One field of a Write as decoded: a ``FieldValue`` record in storage form, ``{"value": ..., "policy":
"ALWAYS" | "IF_EMPTY", "updated_at": <epoch milliseconds, an int>}``. The sink merges these records as
they are (it never mutates them): see :func:`_fields`."""


@dataclass(slots=True)
class _Segment:
    """Consecutive writes to one key, merged; executed as one Salesforce record operation."""

    key: str
    op: str
    writes: list[IncomingWrite]
    sobject: str
    mapping: str
    fields: Mapping[str, FieldValue]
    """Field name -> its newest value (:func:`_merged`); the decoded Write's own map for a single write."""
    match: list[tuple[str, str]]
    external_id: tuple[str, str] | None
    search_objects: list[str]
    create_if_missing: bool
    parents: dict[str, tuple[str, str]]
    record_type: str | None = None
    if_empty: tuple[str, ...] = ()
    """The names of ``fields`` whose policy is IF_EMPTY, in field order (kept with ``fields``)."""
    objects: tuple[str, ...] = ()
    """The objects to look for the record in, in order, no repeats: ``search_objects``, else ``sobject``."""
    attempts: int = 0
    """Retriable failures of its writes so far (across batches: the sink keeps the count)."""
    failure: Exception | None = None
    """The retriable error of its last round, when that round failed; it is retried after a backoff."""
    rematched: bool = False
    blocked: bool = False
    orphan: bool = False
    again: bool = False
    # per round
    parent_ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    parents_from_cache: list[str] = field(default_factory=list)
    target: tuple[str, str] | None = None
    current: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> Mapping[str, Any]:
        return self.writes[-1].write


def _objects(search_objects: list[str], sobject: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(search_objects or [sobject]))


def _millis(value: Any) -> int:
    """A timestamp-millis value that is not already an int (the sink decodes timestamps as ints; see
    ``_fields``) as epoch milliseconds: a datetime (naive = UTC), else ``int(value or 0)``."""
    return to_millis(value) or 0


def _enum(value: Any, default: str) -> str:
    return str(value) if value is not None else default


def _if_empty(fields: Mapping[str, FieldValue]) -> tuple[str, ...]:
    return tuple(name for name, fv in fields.items() if fv["policy"] == IF_EMPTY)


def _normalised(fv: Mapping[str, Any]) -> FieldValue:
    """A field value decoded otherwise (datetimes, a writer schema without defaults) in storage form."""
    policy = fv.get("policy")
    at = fv.get("updated_at")
    return {
        "value": fv.get("value"),
        "policy": policy if type(policy) is str else _enum(policy, "ALWAYS"),
        "updated_at": at if type(at) is int else _millis(at),
    }


def _fields(raw: Mapping[str, Mapping[str, Any]] | None) -> tuple[Mapping[str, FieldValue], tuple[str, ...]]:
    """A Write's ``fields`` as the sink merges them, and the names of those whose policy is IF_EMPTY
    (:func:`_if_empty`), in one pass: the decoded map itself when every value is in storage form (what
    the sink worker's decoder gives: nothing is copied), else a normalised copy (this runs for every
    write, so the common case only looks)."""
    if not raw:
        return {}, ()
    if_empty: list[str] = []
    try:
        for name, fv in raw.items():
            policy = fv["policy"]
            if type(fv["updated_at"]) is not int or type(policy) is not str or "value" not in fv:
                break
            if type(name) is not str:
                break
            if policy == IF_EMPTY:
                if_empty.append(name)
        else:
            return raw, tuple(if_empty)
    except (KeyError, TypeError):
        pass
    normalised = {str(name): _normalised(fv) for name, fv in raw.items()}
    return normalised, _if_empty(normalised)


def _segment(incoming: IncomingWrite) -> _Segment:
    w = incoming.write
    ext = w.get("external_id")
    fields, if_empty = _fields(w.get("fields"))
    sobject = str(w["sobject"])
    raw_objects = w.get("search_objects")
    search_objects = [str(o) for o in raw_objects] if raw_objects else []
    op = w.get("operation")
    match = w.get("match")
    parents = w.get("parents")
    return _Segment(
        key=str(w["key"]),
        op=op if type(op) is str else _enum(op, "UPSERT"),
        writes=[incoming],
        sobject=sobject,
        mapping=str(w.get("mapping", "")),
        fields=fields,
        match=[(str(m["field"]), str(m["value"])) for m in match] if match else [],
        external_id=(str(ext["field"]), str(ext["value"])) if ext else None,
        search_objects=search_objects,
        create_if_missing=bool(w.get("create_if_missing", True)),
        parents={str(k): (str(p["key"]), str(p["sobject"])) for k, p in parents.items()} if parents else {},
        record_type=str(w["record_type"]) if w.get("record_type") else None,
        if_empty=if_empty,
        objects=_objects(search_objects, sobject),
    )


def _merged(old: FieldValue | None, new: FieldValue) -> FieldValue:
    """One field of two writes to a record, ``new`` arriving later: what the record should get.

    Values of one policy: the newest ``updated_at`` wins (ties: the later write). An IF_EMPTY value
    (a parent ensured by a child's event) only fills an empty field, so it never displaces an ALWAYS
    value, whichever is newer or first in the batch: the ALWAYS value is written. A fill newer than an
    ALWAYS value that clears the field fills it (as the two would, applied in time order).
    """
    if old is None:
        return new
    if (old["policy"] == IF_EMPTY) == (new["policy"] == IF_EMPTY):
        return new if new["updated_at"] >= old["updated_at"] else old
    fill, real = (new, old) if new["policy"] == IF_EMPTY else (old, new)
    fill_is_later = fill["updated_at"] > real["updated_at"] or (
        fill["updated_at"] == real["updated_at"] and fill is new
    )
    if real["value"] in _EMPTY and fill_is_later:
        # fills what the ALWAYS value cleared
        return {"value": fill["value"], "policy": real["policy"], "updated_at": fill["updated_at"]}
    return real


def _fold(into: _Segment, later: _Segment) -> None:
    """Merge ``later`` (an UPSERT) into ``into``, field by field (:func:`_merged`), into a map of its own
    (the writes' decoded maps are left as they are)."""
    fields = dict(into.fields)
    for name, value in later.fields.items():
        fields[name] = _merged(fields.get(name), value)
    into.fields = fields
    into.if_empty = _if_empty(fields)
    into.match = list(dict.fromkeys([*later.match, *into.match]))
    into.external_id = later.external_id or into.external_id
    into.search_objects = later.search_objects or into.search_objects
    # A write that may create keeps that right when an update-only write follows in the same batch
    # (e.g. an event published then unpublished): the record must exist for the update to land.
    into.create_if_missing = into.create_if_missing or later.create_if_missing
    into.parents = {**into.parents, **later.parents}
    into.record_type = later.record_type or into.record_type
    into.sobject, into.mapping = later.sobject, later.mapping
    into.objects = _objects(into.search_objects, into.sobject)
    into.writes.extend(later.writes)


def merge_writes(writes: Iterable[IncomingWrite]) -> OrderedDict[str, deque[_Segment]]:
    """Group writes by record key (first-seen order) and merge each key's writes in order.

    UPSERTs merge field by field (an older value never overwrites a newer one). A DELETE absorbs
    the UPSERTs before it (they would be deleted anyway); an UPSERT after a DELETE starts a new
    segment that runs only once the delete is done. Within a partition writes arrive in offset
    order; ``writes`` is taken in the order given.
    """
    out: OrderedDict[str, deque[_Segment]] = OrderedDict()
    for incoming in writes:
        seg = _segment(incoming)
        queue = out.setdefault(seg.key, deque())
        tail = queue[-1] if queue else None
        if tail is None or (tail.op == "DELETE" and seg.op == "UPSERT"):
            queue.append(seg)
        elif seg.op == "DELETE":
            seg.writes = [*tail.writes, *seg.writes]
            seg.match = list(dict.fromkeys([*seg.match, *tail.match]))
            seg.external_id = seg.external_id or tail.external_id
            if tail.op == "DELETE":
                seg.search_objects = seg.search_objects or tail.search_objects
                seg.objects = _objects(seg.search_objects, seg.sobject)
            queue[-1] = seg
        else:
            _fold(tail, seg)
    return out


def drop_older(fields: Mapping[str, FieldValue], written: Mapping[str, int]) -> Mapping[str, FieldValue]:
    """The ``fields`` no newer value was written for: ``written`` is the record's field -> ``updated_at``
    of the newest value written (:func:`written_times`); a field older than that is left out, a tie is
    kept (a replay writes the same value again). ``fields`` itself when none is left out (read-only)."""
    if written:
        for name, value in fields.items():
            if value["updated_at"] < written.get(name, -1):
                return {n: v for n, v in fields.items() if v["updated_at"] >= written.get(n, -1)}
    return fields


def kept_values(
    fields: Mapping[str, FieldValue], written: Mapping[str, int]
) -> tuple[Mapping[str, FieldValue], dict[str, Value]]:
    """:func:`drop_older` of ``fields`` (``fields`` itself when none is left out), and the value of each
    field kept, by name in field order: both in one pass over the fields."""
    if not written:
        return fields, {name: fv["value"] for name, fv in fields.items()}
    values: dict[str, Value] = {}
    older = False
    times = written.get
    for name, fv in fields.items():
        if fv["updated_at"] < times(name, -1):
            older = True
        else:
            values[name] = fv["value"]
    return ({name: fields[name] for name in values} if older else fields), values


def written_times(written: Mapping[str, int], fields: Mapping[str, FieldValue], sent: Iterable[str]) -> dict[str, int]:
    """The record's ``written`` times once the ``sent`` names of ``fields`` were written.

    An IF_EMPTY value does not move its field's time: it only fills an empty field, so it is no
    newer value, and an older real value still goes out after it (as the processor's clock has it).
    """
    out = dict(written)
    advance_written(out, fields, sent)
    return out


def advance_written(written: dict[str, int], fields: Mapping[str, FieldValue], sent: Iterable[str]) -> None:
    """Move the record's ``written`` times on, in place, to :func:`written_times` of them (no copy: the
    sink keeps one map per record and moves it on with every write)."""
    times = written.get
    for name in sent:
        value = fields.get(name)
        if value is not None and value["policy"] != IF_EMPTY:
            at = value["updated_at"]
            if at > times(name, -1):
                written[name] = at
