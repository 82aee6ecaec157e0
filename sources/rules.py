"""The poller's pure rules: what to ask Salesforce for, and which changes a page of rows makes.

Nothing here talks to Kafka or Salesforce; :mod:`sfsync.sources.poller` is the thin loop around it.

Cursor and window (guarantee 5, research/anchors.md §4). Each poll of an object runs one query
through ``/queryAll`` (so soft-deleted rows come too)::

    SELECT <fields> FROM <object> WHERE SystemModstamp >= <cursor - lookback>
      ORDER BY SystemModstamp ASC, Id ASC

- ``>=`` and the lookback window re-read the last ``lookback_s`` seconds on every poll, so a record
  that becomes visible late below the cursor (a long transaction commits after its SystemModstamp)
  is still found while it is inside the window;
- the rows come page by page through Salesforce's query cursor (``nextRecordsUrl``): no LIMIT or
  OFFSET (2,000 at most) applies, and records sharing one SystemModstamp across a page boundary are
  neither skipped nor read twice. The poller commits every ``page_size`` rows (a "page" here: the
  changes and the checkpoint of those rows, one Kafka transaction). Keyset paging on
  ``(SystemModstamp, Id)`` is not used: it needs ``Id > '...'`` to collate exactly like
  ``ORDER BY Id``, which Salesforce does not document (and the emulator does not do);
- de-duplication on ``(Id, SystemModstamp)``: the checkpoint keeps the versions already emitted
  whose SystemModstamp is inside the window (older ones cannot be read again), bounded by
  ``max_seen``.

Covered time (:attr:`Checkpoint.covered_ms`, :func:`cover_window`). Re-reading ``cursor - lookback``
alone costs an object that went quiet after a burst a query page per 2,000 rows of the burst left in
that window at every poll, forever. So the checkpoint also keeps ``covered``: the org's time, no
later than the moment the last poll that read all its pages ran its query (the first response's HTTP
``Date``, minus its 1 s resolution and minus the call's round trip: the org's clock, never the
poller's, so clock skew cannot move it). The next poll reads from
``max(cursor, covered) - lookback``. Nothing is skipped: the poller already assumes a transaction is
visible at most ``lookback`` after its SystemModstamp, so every transaction stamped below
``covered - lookback`` was visible when that poll's query ran; if stamped at or above that poll's
lower bound it was read by that poll, and if below, by an earlier one (the same argument, by
induction back to the first full read). An idle object's window thus moves past an old burst: one
call per poll. ``seen`` is pruned by the same bound, so it still covers every row the next query
returns.

Change types (:func:`change_type`): ``IsDeleted`` → DELETE; a record whose DELETE was emitted and
that is live again → UNDELETE; a record never emitted whose ``CreatedDate == LastModifiedDate``
→ CREATE (no user or API change since it was created: automation moves only SystemModstamp);
otherwise UPDATE. On a first full load, records never edited since creation come as CREATE.

Deletes also come from the delete log (:func:`delete_log_changes`, getDeleted) and from an
id-set reconciliation (:func:`reconcile`): ids emitted before that ``/queryAll`` no longer returns
were purged (hard-deleted) → DELETE.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from sfsync.mapping import Mapping as SyncMapping
from sfsync.mapping import (
    MappingEvaluationError,
    MappingFile,
    describes_needed_for_reads,
    run_cel,
    validate_reads,
)
from sfsync.workspaces.records import ENV_CONNECTION_ID

ChangeType = Literal["CREATE", "UPDATE", "DELETE", "UNDELETE"]

SYSTEM_FIELDS = ("Id", "SystemModstamp", "CreatedDate", "LastModifiedDate", "LastModifiedById", "IsDeleted")
CHECKPOINT_VERSION = 2
"""Version 2 added ``covered_ms``; a version 1 checkpoint reads with ``covered_ms`` None."""
_READABLE_VERSIONS = (1, CHECKPOINT_VERSION)
KNOWN_BUCKETS = 64
"""Records holding the checkpoint's ``known`` ids (fixed: changing it would strand old buckets)."""
_RECORD_PATH = re.compile(r"\brecord\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


# ---------------------------------------------------------------------- time
def parse_sf_datetime(value: str) -> dt.datetime:
    """``2026-01-02T03:04:05.000+0000`` (or ``Z``) as an aware UTC datetime."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = text[:-2] + ":" + text[-2:]
    parsed = dt.datetime.fromisoformat(text)
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_ms(value: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact: no float rounding)."""
    return (value - _EPOCH) // dt.timedelta(milliseconds=1)


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def soql_datetime(ms: int) -> str:
    """A SOQL datetime literal (UTC, milliseconds): ``2026-01-02T03:04:05.678Z``."""
    value = from_ms(ms)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# ---------------------------------------------------------------------- what to read
@dataclass(frozen=True)
class ObjectPlan:
    """One Salesforce object the poller reads: its fields and the mappings that filter it."""

    sobject: str
    fields: tuple[str, ...]
    """What the inbound rules read (``Mapping.inbound_read_fields``: inbound fields, relationship paths
    such as ``Account.Name``, the member id field, link fields) and the fields the filters read."""
    mappings: tuple[SyncMapping, ...] = ()

    def __post_init__(self) -> None:
        bad = [n for n in (self.sobject, *self.fields) if not _FIELD_NAME.match(n)]
        if bad or "." in self.sobject:
            raise ValueError(f"not Salesforce API names: {', '.join(bad or [self.sobject])}")

    def select_list(self) -> list[str]:
        chosen: dict[str, str] = {}
        for name in (*SYSTEM_FIELDS, *self.fields):
            chosen.setdefault(name.lower(), name)
        return list(chosen.values())

    def poll_soql(self, since_ms: int | None) -> str:
        """The query of one poll: rows at or after ``since_ms`` (None: every row), in cursor order."""
        # API names are checked in __post_init__; the only literal is built from an int.
        select = f"SELECT {', '.join(self.select_list())} FROM {self.sobject}"  # noqa: S608
        where = f" WHERE SystemModstamp >= {soql_datetime(since_ms)}" if since_ms is not None else ""
        return f"{select}{where} ORDER BY SystemModstamp ASC, Id ASC"

    def ids_soql(self) -> str:
        """Every Id of the object (``/queryAll``: the recycle bin too), for reconciliation."""
        return f"SELECT Id FROM {self.sobject}"  # noqa: S608 - a checked API name

    def passes(self, record: Mapping[str, Any]) -> bool:
        """Whether any mapping of this object lets the record in (a mapping without a filter does).

        A filter that fails on the record (a value of an unexpected type...) lets it in: the inbound
        processor evaluates the same filter and parks the change in the DLQ with the reason, so one
        bad record neither stops the poller nor vanishes."""
        if not self.mappings:
            return True
        for mapping in self.mappings:
            try:
                if passes_inbound_filter(mapping, record):
                    return True
            except MappingEvaluationError:
                return True
        return False


def filter_fields(expression: str) -> list[str]:
    """The Salesforce fields an inbound filter reads (``record.Field`` / ``record.Parent.Field``); a
    method called on one (``record.Email.endsWith('x')``) is no field."""
    found = []
    for match in _RECORD_PATH.finditer(expression):
        path = match.group(1)
        if expression[match.end() :].lstrip().startswith("("):
            path = path.rpartition(".")[0]
        if path:
            found.append(path)
    return list(dict.fromkeys(found))


def plans_from_mappings(mappings: MappingFile, only: Iterable[str] | None = None) -> list[ObjectPlan]:
    """One plan per target object of the enabled mappings that read anything back (a ``to_product``
    / ``both`` field, or an inbound filter); ``only``: restrict to these objects.

    A mapping's fields are :meth:`~sfsync.mapping.Mapping.inbound_read_fields` (what the inbound
    rules read: the inbound fields, the member id field, the link fields) plus what its inbound
    filter reads: one definition for the poller and the processor."""
    wanted = {o.lower() for o in only} if only is not None else None
    by_object: dict[str, tuple[str, dict[str, str], list[SyncMapping]]] = {}
    for mapping in mappings.enabled():
        if not mapping.inbound_fields() and not mapping.inbound_filter:
            continue
        inbound = mapping_reads(mapping)
        key = mapping.target.lower()
        if wanted is not None and key not in wanted:
            continue
        _, fields, owners = by_object.setdefault(key, (mapping.target, {}, []))
        for sf in inbound:
            if not _FIELD_NAME.match(sf):
                raise ValueError(f"mapping {mapping.name}: {sf!r} is not a field name")
            fields.setdefault(sf.lower(), sf)
        owners.append(mapping)
    return [
        ObjectPlan(name, tuple(fields.values()), tuple(owners))
        for name, fields, owners in (by_object[k] for k in sorted(by_object))
    ]


def merged_plans(files: Iterable[MappingFile], only: Iterable[str] | None = None) -> list[ObjectPlan]:
    """One plan per object that any of ``files`` reads back (:func:`plans_from_mappings` of each): what
    every one selects, and every mapping of every file (a row passes when any lets it in). The plans of
    one org whose workspaces run different mapping files; one file gives its own plans."""
    wanted = list(only) if only is not None else None
    by_object: dict[str, tuple[str, dict[str, str], list[SyncMapping]]] = {}
    for file in files:
        for plan in plans_from_mappings(file, wanted):
            _, fields, owners = by_object.setdefault(plan.sobject.lower(), (plan.sobject, {}, []))
            for name in plan.fields:
                fields.setdefault(name.lower(), name)
            owners.extend(plan.mappings)
    return [
        ObjectPlan(name, tuple(fields.values()), tuple(owners))
        for name, fields, owners in (by_object[k] for k in sorted(by_object))
    ]


def mapping_reads(mapping: SyncMapping) -> list[str]:
    """The Salesforce fields and relationship paths one mapping makes the poller select on its target."""
    names = mapping.inbound_read_fields()
    if mapping.inbound_filter:
        names += filter_fields(mapping.inbound_filter)
    return list(dict.fromkeys(names))


def plan_reads(plans: Iterable[ObjectPlan]) -> dict[str, list[str]]:
    """Mapping name -> what it makes the poller select, for the mappings of ``plans``."""
    return {m.name: mapping_reads(m) for plan in plans for m in plan.mappings}


def describes_needed(
    mappings: MappingFile, plans: Sequence[ObjectPlan], describes: Mapping[str, Mapping[str, Any]]
) -> set[str]:
    """The objects to describe before :func:`org_problems` can judge ``plans`` (polled objects, then
    the parents their relationship paths read); empty once every describe it can use is there."""
    have = {k.lower() for k in describes}
    needed = {p.sobject for p in plans if p.sobject.lower() not in have}
    return needed | describes_needed_for_reads(mappings, plan_reads(plans), describes)


def org_problems(
    mappings: MappingFile, plans: Sequence[ObjectPlan], describes: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every reason the org cannot answer the poller's queries (pure): a selected field or relationship
    path it lacks or hides from the integration user, an unknown or unqueryable object, a missing
    system field (:data:`SYSTEM_FIELDS`). Lines like ``sfsync mappings validate`` prints; empty: fine."""
    problems = validate_reads(mappings, plan_reads(plans), describes)
    by_name = {k.lower(): v for k, v in describes.items()}
    for plan in plans:
        describe = by_name.get(plan.sobject.lower())
        if describe is None:
            continue
        present = {str(f.get("name", "")).lower() for f in describe.get("fields", [])}
        for name in SYSTEM_FIELDS:
            if name.lower() not in present:
                problems.append(f"{mappings.source}: {plan.sobject}: no field {name}; the poller cannot read it")
    return problems


def passes_inbound_filter(mapping: SyncMapping, record: Mapping[str, Any]) -> bool:
    """The mapping's inbound filter (CEL over ``record``, relationship fields nested) on one row."""
    if not mapping.inbound_filter:
        return True
    plain = {k: _plain(v) for k, v in record.items() if k != "attributes"}
    try:
        result = run_cel(mapping.program(mapping.inbound_filter), {"record": plain})
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise MappingEvaluationError(mapping.name, "inbound_filter", f"{type(exc).__name__}: {exc}") from exc
    return result is True


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != "attributes"}
    return value


# ---------------------------------------------------------------------- the checkpoint
@dataclass
class Checkpoint:
    """Where one object's polling stands; stored as a record of the checkpoint topic (key: object)."""

    sobject: str
    cursor_ms: int | None = None
    """The highest SystemModstamp read (None: nothing read yet, the first poll loads everything)."""
    seen: set[tuple[str, int]] = field(default_factory=set)
    """(Id, SystemModstamp ms) already emitted (or filtered out) inside the lookback window."""
    known: set[str] = field(default_factory=set)
    """Ids emitted live (CREATE/UPDATE/UNDELETE) and not deleted since: what reconciliation checks."""
    deleted: set[str] = field(default_factory=set)
    """Ids whose DELETE was emitted while they may still be in the recycle bin (for UNDELETE)."""
    delete_log_ms: int | None = None
    """Where the next getDeleted window starts (its last ``latestDateCovered``)."""
    reconciled_ms: int | None = None
    """When the last id-set reconciliation finished (0: reconcile at the next poll)."""
    tracking_overflow: bool = False
    """``known`` outgrew ``max_tracked_ids``: reconciliation is off for this object."""
    covered_ms: int | None = None
    """The org's time, no later than when the query of the last poll that read all its pages ran
    (:func:`cover_window`); None: none yet, the window starts at the cursor alone."""

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "sobject": self.sobject,
                "cursor_ms": self.cursor_ms,
                "seen": sorted([i, m] for i, m in self.seen),
                "deleted": sorted(self.deleted),
                "delete_log_ms": self.delete_log_ms,
                "reconciled_ms": self.reconciled_ms,
                "tracking_overflow": self.tracking_overflow,
                "covered_ms": self.covered_ms,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """The checkpoint :meth:`to_bytes` wrote; ValueError, KeyError or TypeError for anything else."""
        raw = orjson.loads(data)
        if not isinstance(raw, dict):
            raise ValueError(f"a checkpoint is a JSON object, not {type(raw).__name__}")
        if raw.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"unknown checkpoint version {raw.get('version')!r}")
        return cls(
            sobject=str(raw["sobject"]),
            cursor_ms=raw.get("cursor_ms"),
            seen={(str(i), int(m)) for i, m in raw.get("seen", [])},
            deleted=set(raw.get("deleted", [])),
            delete_log_ms=raw.get("delete_log_ms"),
            reconciled_ms=raw.get("reconciled_ms"),
            tracking_overflow=bool(raw.get("tracking_overflow", False)),
            covered_ms=_optional_int(raw.get("covered_ms")),
        )

    def records(self, before: set[str], key: str | None = None) -> list[tuple[str, bytes]]:
        """``(key, value)`` records of this checkpoint for the checkpoint topic: the ``known`` buckets
        that differ from ``before`` (the ids last committed), then the main record (key: ``key``, by
        default the object; :func:`checkpoint_key` gives a connection's). ``known`` lives in
        :data:`KNOWN_BUCKETS` records so a page rewrites only the buckets it touched."""
        main_key = key if key is not None else self.sobject
        touched = sorted({known_bucket(i) for i in before ^ self.known})
        by_bucket: dict[int, list[str]] = {b: [] for b in touched}
        for record_id in self.known:
            bucket = known_bucket(record_id)
            if bucket in by_bucket:
                by_bucket[bucket].append(record_id)
        out = [(known_key(main_key, b), orjson.dumps(sorted(by_bucket[b]))) for b in touched]
        out.append((main_key, self.to_bytes()))
        return out

    @classmethod
    def from_records(cls, sobject: str, values: Mapping[str, bytes], key: str | None = None) -> Checkpoint | None:
        """The checkpoint of ``sobject`` whose main record is keyed ``key`` (default: the object) from the
        latest value of each key (None: never committed)."""
        main_key = key if key is not None else sobject
        main = values.get(main_key)
        if main is None:
            return None
        checkpoint = cls.from_bytes(main)
        prefix = known_prefix(main_key)
        for name, value in values.items():
            if name.startswith(prefix):
                checkpoint.known.update(str(i) for i in orjson.loads(value))
        return checkpoint

    def copy(self) -> Checkpoint:
        return Checkpoint(
            self.sobject,
            self.cursor_ms,
            set(self.seen),
            set(self.known),
            set(self.deleted),
            self.delete_log_ms,
            self.reconciled_ms,
            self.tracking_overflow,
            self.covered_ms,
        )

    def window_start(self, lookback_ms: int) -> int | None:
        """The lower bound of the next poll: ``max(cursor, covered) - lookback`` (None: nothing read and
        nothing covered yet, the poll reads every row). See the module's "Covered time"."""
        reached = [m for m in (self.cursor_ms, self.covered_ms) if m is not None]
        return max(reached) - lookback_ms if reached else None


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"covered_ms is an integer or null, not {type(value).__name__}")
    return value


def known_bucket(record_id: str) -> int:
    return zlib.crc32(record_id.encode()) % KNOWN_BUCKETS


def known_key(key: str, bucket: int) -> str:
    """The checkpoint-topic key of one bucket of the known ids of the checkpoint keyed ``key``."""
    return f"{known_prefix(key)}{bucket:02d}"


def known_prefix(key: str) -> str:
    """What the keys of the known-id buckets of the checkpoint keyed ``key`` start with."""
    return f"{key}#known/"


def sobject_of(key: str) -> str:
    """The object of a checkpoint key (:func:`checkpoint_key`)."""
    return key.rpartition(":")[2]


def checkpoint_key(connection_id: str, sobject: str) -> str:
    """The checkpoint-topic key of one org's object: ``<connection_id>:<sobject>``; the environment's
    connection (``env``) keeps the key of a single-org poller, the object alone, so its checkpoints
    carry over. Neither part can hold ``:`` (connection ids and API names refuse it), so no two pairs
    share a key."""
    return sobject if connection_id == ENV_CONNECTION_ID else f"{connection_id}:{sobject}"


@dataclass(frozen=True)
class Limits:
    """Bounds of the checkpoint's sets."""

    lookback_ms: int
    max_seen: int = 20_000
    max_tracked_ids: int = 200_000


# ---------------------------------------------------------------------- rows -> changes
def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A Salesforce JSON row as ``{field or relationship path: scalar}`` (``Account.Name``); compound
    values (addresses) as JSON text; ``attributes`` dropped. A null relationship gives no paths."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if "attributes" in value:
                out.update(flatten(value, f"{name}."))
            else:
                out[name] = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        elif isinstance(value, list):
            out[name] = orjson.dumps(value).decode()
        else:
            out[name] = value
    return out


def change_type(record: Mapping[str, Any], checkpoint: Checkpoint) -> ChangeType | None:
    """CREATE / UPDATE / DELETE / UNDELETE for a row, or None when it repeats a DELETE already emitted."""
    record_id = str(record["Id"])
    if record.get("IsDeleted") is True:
        return None if record_id in checkpoint.deleted else "DELETE"
    if record_id in checkpoint.deleted:
        return "UNDELETE"
    if record_id not in checkpoint.known and record.get("CreatedDate") == record.get("LastModifiedDate"):
        return "CREATE"
    return "UPDATE"


def change_record(
    sobject: str,
    record_id: str,
    kind: ChangeType,
    modstamp_ms: int,
    polled_ms: int,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``sfsync.inbound.Change`` value (timestamps in epoch ms)."""
    values = values or {}
    last_modified = values.get("LastModifiedDate")
    fields = {} if kind == "DELETE" else {k: _avro_scalar(v) for k, v in values.items() if k not in _ENVELOPE}
    suffix = f":{kind}" if kind in ("DELETE", "UNDELETE") else ""
    return {
        "change_id": f"{sobject}:{record_id}:{modstamp_ms}{suffix}",
        "sobject": sobject,
        "id": record_id,
        "change_type": kind,
        "fields": fields,
        "system_modstamp": modstamp_ms,
        "last_modified_date": to_ms(parse_sf_datetime(last_modified)) if isinstance(last_modified, str) else None,
        "last_modified_by_id": values.get("LastModifiedById"),
        "polled_at": polled_ms,
    }


_ENVELOPE = frozenset({"Id", "SystemModstamp", "IsDeleted", "LastModifiedById", "LastModifiedDate", "CreatedDate"})


def _avro_scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value
    return orjson.dumps(value).decode()


@dataclass
class PageResult:
    """What one page of rows makes: the changes to emit and the checkpoint to commit with them."""

    changes: list[dict[str, Any]]
    checkpoint: Checkpoint
    filtered: int = 0
    duplicates: int = 0


def apply_page(
    plan: ObjectPlan,
    checkpoint: Checkpoint,
    rows: Sequence[Mapping[str, Any]],
    limits: Limits,
    polled_ms: int,
) -> PageResult:
    """The changes one page of rows (ordered by SystemModstamp, Id) makes, and the new checkpoint.

    A row whose ``(Id, SystemModstamp)`` is in ``seen`` is a duplicate; a live row the inbound
    filters refuse is remembered in ``seen`` but not emitted. The checkpoint's cursor moves to the
    highest SystemModstamp read; ``seen`` keeps only the window below it, and at most ``max_seen``.
    """
    after = checkpoint.copy()
    changes: list[dict[str, Any]] = []
    filtered = duplicates = 0
    for row in rows:
        record_id = str(row["Id"])
        stamp = to_ms(parse_sf_datetime(str(row["SystemModstamp"])))
        after.cursor_ms = stamp if after.cursor_ms is None else max(after.cursor_ms, stamp)
        if (record_id, stamp) in after.seen:
            duplicates += 1
            continue
        after.seen.add((record_id, stamp))
        kind = change_type(row, after)
        if kind is None:
            duplicates += 1
            continue
        if kind != "DELETE" and not plan.passes(row):
            filtered += 1
            continue
        changes.append(change_record(plan.sobject, record_id, kind, stamp, polled_ms, flatten(row)))
        _remember(after, record_id, kind, limits)
    if after.reconciled_ms is None:
        after.reconciled_ms = polled_ms  # the first reconciliation is one interval after the first read
    if after.delete_log_ms is None:
        after.delete_log_ms = polled_ms - limits.lookback_ms  # the delete log is read from the first poll on
    _prune(after, limits)
    return PageResult(changes, after, filtered, duplicates)


def _remember(checkpoint: Checkpoint, record_id: str, kind: ChangeType, limits: Limits) -> None:
    if kind == "DELETE":
        checkpoint.known.discard(record_id)
        checkpoint.deleted.add(record_id)
        return
    checkpoint.deleted.discard(record_id)
    if checkpoint.tracking_overflow:
        return
    checkpoint.known.add(record_id)
    if len(checkpoint.known) > limits.max_tracked_ids:
        checkpoint.known.clear()
        checkpoint.tracking_overflow = True


def _prune(checkpoint: Checkpoint, limits: Limits) -> None:
    start = checkpoint.window_start(limits.lookback_ms)
    if start is not None:
        checkpoint.seen = {(i, m) for i, m in checkpoint.seen if m >= start}
    if len(checkpoint.seen) > limits.max_seen:
        newest = sorted(checkpoint.seen, key=lambda e: (e[1], e[0]))[-limits.max_seen :]
        checkpoint.seen = set(newest)


def query_started_ms(server_date: dt.datetime, round_trip: dt.timedelta) -> int:
    """The org's time, in epoch ms, no later than the moment it ran a query whose response carried
    ``server_date`` (its HTTP ``Date``) after a call of ``round_trip``: the header has a 1 s resolution
    (truncated, or at worst rounded), and the query ran after the request reached the org, which is at
    most the round trip before the response was dated."""
    return to_ms(server_date) - 1000 - math.ceil(round_trip / dt.timedelta(milliseconds=1))


def cover_window(checkpoint: Checkpoint, started_ms: int, rows_read: int, limits: Limits) -> Checkpoint:
    """The checkpoint after a poll that read every page of its query: ``covered_ms`` moves to
    ``started_ms`` (:func:`query_started_ms` of the query's first response; never back) and ``seen``
    keeps only the versions inside the next poll's window (:meth:`Checkpoint.window_start`).

    A poll that read no row leaves the checkpoint as it is: its window was empty, so moving its start
    saves no call, and the unchanged checkpoint needs no commit (an idle object costs one query per poll
    and no Kafka transaction)."""
    if rows_read == 0 or (checkpoint.covered_ms is not None and started_ms <= checkpoint.covered_ms):
        return checkpoint
    after = checkpoint.copy()
    after.covered_ms = started_ms
    _prune(after, limits)
    return after


# ---------------------------------------------------------------------- deletes
def delete_log_changes(
    sobject: str,
    checkpoint: Checkpoint,
    deleted: Iterable[tuple[str, dt.datetime]],
    latest_covered: dt.datetime,
    polled_ms: int,
) -> tuple[list[dict[str, Any]], Checkpoint]:
    """DELETE changes for getDeleted's ``(id, deletedDate)`` entries not yet emitted as deletes; the
    next delete-log window starts at ``latest_covered``."""
    after = checkpoint.copy()
    changes = []
    for record_id, deleted_at in deleted:
        if record_id in after.deleted:
            continue
        changes.append(change_record(sobject, record_id, "DELETE", to_ms(deleted_at), polled_ms))
        after.known.discard(record_id)
        after.deleted.add(record_id)
    after.delete_log_ms = to_ms(latest_covered)
    return changes, after


def reconcile(
    sobject: str, checkpoint: Checkpoint, known_before: set[str], present: set[str], polled_ms: int
) -> tuple[list[dict[str, Any]], Checkpoint]:
    """Hard/purged deletes: ids known before ``/queryAll SELECT Id`` ran (``known_before``) that it did
    not return (``present``) → DELETE. Ids deleted earlier and now purged leave the ``deleted`` set."""
    after = checkpoint.copy()
    changes = []
    for record_id in sorted(known_before - present):
        if record_id not in after.known:
            continue
        changes.append(change_record(sobject, record_id, "DELETE", polled_ms, polled_ms))
        after.known.discard(record_id)
    after.deleted &= present
    after.reconciled_ms = polled_ms
    return changes, after


def next_interval(current_s: float, found_changes: bool, base_s: float, factor: float, max_s: float) -> float:
    """The wait before the next poll: the base interval after changes, growing by ``factor`` up to
    ``max_s`` while polls find nothing."""
    if found_changes:
        return base_s
    return min(max_s, max(base_s, current_s * factor))
