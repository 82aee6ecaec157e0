"""The outbound rule: one product event in, the Salesforce writes it causes out (pure).

:func:`plan` evaluates every mapping that acts on the event (``MappingFile.for_event``) and the
parent mappings they point at, and returns ``sfsync.pipeline.Write`` dicts ready for
``AvroEncoder.encode("Write", ...)`` on ``sfsync.writes``:

- parents first: an ``EventRegistration`` plans the person, the Campaign, the CampaignMember and
  the activity record, in that order (parents in mapping-file order, each before its children).
  A parent mapping that does not act on the event itself still *ensures* its record from what the
  event carries (the registration's name and email for the person), so the sink can resolve the
  child's lookup without waiting for another topic. Such an *ensure* write only fills empty
  fields (IF_EMPTY, no nulls): it never overwrites what the parent's own events set, and a parent
  field that fails to evaluate leaves just the parent's key for the child;
- ``write_id`` is ``<event_id>:<mapping>:<n>`` (``n``: position in the plan), so a replay
  produces the same writes;
- ``key`` is the record key (:mod:`sfsync.keys`: ``<workspace_id>|<sobject>:<field>:<value>``) of the
  record's identity in the event's workspace: its external ID, else its first usable match key. A
  composite key's value is a JSON array of its components, where a component that is a parent lookup
  holds the parent's key (the sink resolves it to an Id). So the same member in two workspaces is two
  records, even when the workspaces share an org;
- field values are Salesforce JSON (datetimes ``2026-03-01T09:30:00.000+0000``, dates
  ``2026-03-01``), each with its policy and ``updated_at`` = the event's ``occurred_at``.

:func:`drop_stale` is the per-record, per-field clock that keeps a late event from overwriting a
newer value (DESIGN.md §4, guarantee 3). Nothing here talks to Kafka or Salesforce: ``identity``
only refines what is already known from ``sfsync.identities``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sfsync.keys import PERSON_OBJECTS, record_key
from sfsync.mapping import (
    Mapping as MappingRule,
)
from sfsync.mapping import (
    MappingEvaluationError,
    MappingFile,
    MappingIndex,
    ParentLookup,
    evaluate_fields,
    evaluate_outbound,
    match_values,
    passes_outbound_filter,
)
from sfsync.mapping.values import compact_json

__all__ = [
    "DELETED",
    "NO_IDENTITY",
    "Identity",
    "IdentityView",
    "Plan",
    "SourceLike",
    "drop_stale",
    "event_millis",
    "known_first",
    "learn_salesforce_edit",
    "plan",
    "salesforce_datetime",
]

DELETED = "__deleted__"
"""The clock entry of a record's last DELETE (see :func:`drop_stale`)."""

_Z_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MILLISECOND = dt.timedelta(milliseconds=1)


# ---------------------------------------------------------------------- inputs
class SourceLike(Protocol):
    """Where the event was read (a Kafka message's coordinates)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class Identity(NamedTuple):
    """A record sfsync already wrote or found (from ``sfsync.identities``)."""

    sobject: str
    salesforce_id: str


class IdentityView(Protocol):
    """Record key -> the Salesforce record it is, as far as known (a Faust table, a dict...)."""

    def get(self, key: str) -> Identity | None: ...


class _NoIdentity:
    def get(self, key: str) -> Identity | None:
        return None


NO_IDENTITY: IdentityView = _NoIdentity()
"""Nothing known yet: plan works without it."""


class Plan(NamedTuple):
    """The writes one event causes, parents first, and the mappings that could not evaluate it."""

    writes: list[dict[str, Any]]
    rejects: list[MappingEvaluationError]


# ---------------------------------------------------------------------- values
def event_millis(value: Any) -> int:
    """A timestamp-millis value (aware datetime or epoch ms) as epoch milliseconds."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // _MILLISECOND
    return int(value)


def salesforce_datetime(text: str) -> str:
    """``2026-03-01T09:30:00.000Z`` -> ``2026-03-01T09:30:00.000+0000``: the form Salesforce returns,
    so what sfsync writes compares equal to what the poller reads back."""
    size = len(text)  # only 24 characters match (25 with a final newline, which ``$`` allows)
    return text[:-1] + "+0000" if (size == 24 or size == 25) and _Z_DATETIME.match(text) else text


def _wire_value(value: Any) -> Any:
    """A value as a Write carries it, from one ``to_salesforce_value`` already converted (the evaluated
    fields and match values are): that conversion gives back what it is given, so only the datetime
    form Salesforce returns is left to apply."""
    return salesforce_datetime(value) if isinstance(value, str) else value


def _text(value: Any) -> str:
    value = _wire_value(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _json(values: Iterable[str]) -> str:
    return compact_json(list(values))


def _plain(value: Any) -> Any:
    """The decoded payload with uuids as text (CEL cannot take a ``uuid.UUID``), maps as dicts: ``value``
    itself when it holds neither (decoded with uuids as text, the processor's payloads are left as they are)."""
    kind = type(value)
    if kind is dict:
        out: dict[str, Any] | None = None
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is str or item_kind is int or item_kind is bool or item_kind is float or item is None:
                continue
            plain = _plain(item)
            if plain is not item:
                if out is None:
                    out = dict(value)
                out[key] = plain
        return value if out is None else out
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if kind is list:
        items = [_plain(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------- planning
@dataclass
class _Planned:
    """One mapping's record for this event: its key (None: the event does not identify it)."""

    key: str | None
    sobject: str
    written: bool


@dataclass
class _Planner:
    event_type: str
    event: Mapping[str, Any]
    source: SourceLike
    mappings: MappingFile
    identity: IdentityView
    external_ids: Collection[str] | None
    index: MappingIndex
    occurred_at: int | None = None
    """The event's ``occurred_at`` in epoch ms, once a write needs it."""
    firing: set[str] = field(default_factory=set)
    done: dict[str, _Planned | MappingEvaluationError] = field(default_factory=dict)
    visiting: set[str] = field(default_factory=set)
    writes: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[MappingEvaluationError] = field(default_factory=list)

    @property
    def workspace(self) -> str:
        """The event's workspace: the first part of every record key it plans."""
        return str(self.event.get("workspace_id") or "")

    def run(self) -> Plan:
        acting = self.index.for_event(self.event_type)
        self.firing = {m.name for m in acting}
        for mapping in acting:
            self.resolve(mapping)
        return Plan(self.writes, self.rejects)

    def resolve(self, mapping: MappingRule) -> _Planned | MappingEvaluationError:
        found = self.done.get(mapping.name)
        if found is not None:
            return found
        if mapping.name in self.visiting:
            return MappingEvaluationError(mapping.name, "parents", "parent mappings form a cycle")
        self.visiting.add(mapping.name)
        try:
            result: _Planned | MappingEvaluationError = self.plan_one(mapping)
        except MappingEvaluationError as exc:
            result = exc
        self.visiting.discard(mapping.name)
        self.done[mapping.name] = result
        if isinstance(result, MappingEvaluationError):
            self.rejects.append(result)
        return result

    def plan_one(self, mapping: MappingRule) -> _Planned:
        firing = mapping.name in self.firing
        event_type: str | None = self.event_type if firing else None
        action = mapping.action_for(self.event_type) if firing else "upsert"
        ensure_only = not firing and mapping.delete is not None and self.event_type in mapping.delete.when
        always: set[str] = set()
        if action == "delete" or ensure_only:
            passes = passes_outbound_filter(mapping, self.event, self._env(event_type))
            values: dict[str, Any] | None = {} if passes else None
        elif firing:
            evaluated = evaluate_outbound(mapping, self.event, event_type)
            values, always = evaluated if evaluated is not None else (None, always)
        else:
            try:
                values = evaluate_fields(mapping, self.event, None)
            except MappingEvaluationError:  # ensuring a parent is best effort: its identity is what counts
                ensure_only, values = True, {}
        if values is None:
            return _Planned(None, mapping.target, written=False)
        alternatives = match_values(mapping, self.event, event_type)
        parents = self.parents(mapping)
        if parents is None:
            return _Planned(None, mapping.target, written=False)
        external, match = self.identities(mapping, alternatives, parents)
        key_field, key_value = external if external else (match[0] if match else (None, None))
        if key_field is None or key_value is None:
            return _Planned(None, mapping.target, written=False)
        key = record_key(self.workspace, mapping.target, key_field, key_value)
        if ensure_only:
            return _Planned(key, mapping.target, written=False)
        if firing:
            policies = self.policies(
                mapping, values, always, reads_before_write=self.index.reads_before_write[mapping.name]
            )
        else:  # ensuring a parent: fill what is empty, never overwrite what the parent's own events set
            values = {name: value for name, value in values.items() if value is not None}
            policies = dict.fromkeys(values, "IF_EMPTY")
        at = self.occurred_at
        if at is None:
            at = self.occurred_at = event_millis(self.event["occurred_at"])
        write = {
            "write_id": f"{self.event['event_id']}:{mapping.name}:{len(self.writes)}",
            "key": key,
            "mapping": mapping.name,
            "sobject": mapping.target,
            "operation": "DELETE" if action == "delete" else "UPSERT",
            "external_id": {"field": external[0], "value": external[1]} if external else None,
            "match": [{"field": f, "value": v} for f, v in self.own_match(mapping, alternatives, external)],
            "search_objects": self.search_objects(mapping.target, key),
            "create_if_missing": mapping.create_if_missing and action == "upsert",
            "record_type": mapping.record_type if action == "upsert" else None,
            "fields": {
                name: {"value": _wire_value(value), "policy": policies[name], "updated_at": at}
                for name, value in values.items()
            },
            "parents": {lookup: {"key": k, "sobject": s} for lookup, (k, s) in parents.items()},
            "workspace_id": self.workspace,
            "source": {
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
                "event_id": str(self.event["event_id"]),
                "event_type": self.event_type,
                "occurred_at": at,
            },
        }
        self.writes.append(write)
        return _Planned(key, mapping.target, written=True)

    def _env(self, event_type: str | None) -> dict[str, Any]:
        return {
            "type": event_type,
            "event_id": self.event.get("event_id"),
            "occurred_at": self.event.get("occurred_at"),
            "workspace_id": self.event.get("workspace_id"),
        }

    def parents(self, mapping: MappingRule) -> dict[str, tuple[str, str]] | None:
        """Lookup -> (parent key, parent object); None when a required parent is not identified."""
        out: dict[str, tuple[str, str]] = {}
        for lookup, ref, parent in self.index.parents[mapping.name]:
            found: _Planned | MappingEvaluationError | None = self.resolve(parent) if parent is not None else None
            if isinstance(found, _Planned) and found.key is not None:
                out[lookup] = (found.key, found.sobject)
            elif ref.required:
                reason = (
                    f"parent {ref.mapping} failed: {found}"
                    if isinstance(found, MappingEvaluationError)
                    else f"the event does not identify its {ref.mapping} record (no match key, or filtered out)"
                )
                raise MappingEvaluationError(mapping.name, f"parents.{lookup}", reason)
        return out

    def identities(
        self,
        mapping: MappingRule,
        alternatives: list[dict[str, Any]],
        parents: Mapping[str, tuple[str, str]],
    ) -> tuple[tuple[str, str] | None, list[tuple[str, str]]]:
        """(external ID, key identities in order) as (field, key value); parent components as their keys."""
        keys: list[tuple[str, str]] = []
        for values in alternatives:
            parts: list[str] = []
            for name, value in values.items():
                if isinstance(value, ParentLookup):
                    if name not in parents:
                        break
                    parts.append(parents[name][0])
                else:
                    parts.append(_text(value))
            else:
                keys.append(("+".join(values), parts[0] if len(parts) == 1 else _json(parts)))
        external = None
        if alternatives and len(alternatives[0]) == 1:
            (name, value), *_ = alternatives[0].items()
            if not isinstance(value, ParentLookup) and self.is_external(mapping.target, name):
                external = (name, _text(value))
        return external, keys

    def own_match(
        self, mapping: MappingRule, alternatives: list[dict[str, Any]], external: tuple[str, str] | None
    ) -> list[tuple[str, str]]:
        """The Write's ``match``: own components' values ("" / one value / JSON array of several)."""
        out: list[tuple[str, str]] = []
        for values in alternatives:
            fields = "+".join(values)
            own = [_text(v) for v in values.values() if not isinstance(v, ParentLookup)]
            value = "" if not own else own[0] if len(own) == 1 else _json(own)
            if external is not None and (fields, value) == external:
                continue
            out.append((fields, value))
        return out

    def is_external(self, sobject: str, name: str) -> bool:
        if self.external_ids is not None:
            return f"{sobject}.{name}" in self.external_ids
        return name.endswith("__c")

    def search_objects(self, target: str, key: str) -> list[str]:
        """Contacts then Leads for a person (the mapping's object first; a known one before both)."""
        if target not in PERSON_OBJECTS:
            return []
        return _known_first([target, *(o for o in PERSON_OBJECTS if o != target)], self.identity.get(key))

    @staticmethod
    def policies(
        mapping: MappingRule, values: Mapping[str, Any], always: Collection[str], *, reads_before_write: bool
    ) -> dict[str, str]:
        """ALWAYS, or IF_EMPTY for what the mapping leaves out when the record already has a value
        (``always``: the fields :func:`~sfsync.mapping.evaluate_outbound` writes over a filled record;
        ``reads_before_write``: the mapping's :attr:`~sfsync.mapping.Mapping.reads_before_write`)."""
        if not values or not reads_before_write:
            return dict.fromkeys(values, "ALWAYS")
        return {name: "ALWAYS" if name in always else "IF_EMPTY" for name in values}


def plan(
    event_type: str,
    event: Mapping[str, Any],
    source: SourceLike,
    mappings: MappingFile,
    identity: IdentityView = NO_IDENTITY,
    *,
    external_ids: Collection[str] | None = None,
    uuids_as_text: bool = False,
) -> Plan:
    """The writes ``event`` (decoded payload of type ``event_type``) causes, parents first.

    ``uuids_as_text``: ``event`` is a tree of dicts, lists and values that holds no ``uuid.UUID``
    (decoded by ``AvroDecoder(..., uuids_as_text=True)``), used as it is; otherwise uuids are made text first.

    ``external_ids`` names the ``Object.Field`` match fields that are external IDs (upserted on);
    None: a custom field (``__c``) that is a mapping's first, single match key is one (as in the
    default mapping and org). Mappings that fail on this event (:class:`MappingEvaluationError`) are
    in ``rejects`` together with the children that needed them; the other writes still go out.
    """
    payload = event if uuids_as_text else _plain(event)
    planner = _Planner(event_type, payload, source, mappings, identity, external_ids, mappings.index())
    return planner.run()


# ---------------------------------------------------------------------- ordering
def _known_first(order: list[str], known: Identity | None) -> list[str]:
    if known is None or known.sobject not in order or order[0] == known.sobject:
        return order
    return [known.sobject, *(o for o in order if o != known.sobject)]


def known_first(write: Mapping[str, Any], identity: IdentityView) -> list[str] | None:
    """A person write's ``search_objects`` with the object its record is known to be (``identity``
    of its key) first, as :func:`plan` orders them given the same ``identity``; None when that
    changes nothing (not a person write, nothing known, or already first)."""
    order = list(write.get("search_objects") or ())
    if not order:
        return None
    refined = _known_first(order, identity.get(str(write["key"])))
    return None if refined == order else refined


def drop_stale(write: Mapping[str, Any], clock: Mapping[str, int]) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """Keep only what is newer than what was already planned for this record.

    ``clock`` is the record's field -> ``updated_at`` of the newest value planned so far (plus
    :data:`DELETED`: when it was last deleted). A field older than the clock is dropped (ties are
    kept: a replay writes the same value again). IF_EMPTY values have their own entry
    (``if_empty:<field>``), since they only fill an empty field: they never make an older event's
    real value planned after them stale (a parent ensured by a child's event). An UPSERT
    left with no field, whose fields were all stale, becomes None; so does a DELETE older than a
    value already planned (a late cancel must not delete a newer registration). Returns (the write
    or None, the new clock).
    """
    new_clock = dict(clock)
    occurred = int(write["source"]["occurred_at"])
    deleted_at = new_clock.get(DELETED, -1)
    if write.get("operation") == "DELETE":
        if any(at > occurred for name, at in clock.items() if name != DELETED):
            return None, new_clock
        new_clock[DELETED] = max(deleted_at, occurred)
        return dict(write), new_clock
    fields = write.get("fields") or {}
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        at = int(value["updated_at"])
        if at < deleted_at or at < new_clock.get(name, -1):
            continue
        if value.get("policy") == "IF_EMPTY":  # a fill is no newer value: an older real one still goes out
            fill = f"if_empty:{name}"
            if at < new_clock.get(fill, -1):
                continue
            new_clock[fill] = at
        else:
            new_clock[name] = at
        kept[name] = value
    if fields and not kept:
        return None, dict(clock)
    return {**write, "fields": kept}, new_clock


def learn_salesforce_edit(clock: Mapping[str, int], fields: Iterable[str], edited_at: int) -> dict[str, int]:
    """The record's clock after a Salesforce-side edit of ``fields`` at ``edited_at`` (epoch ms) that
    the inbound side delivered to the product (a ``SalesforceEdit``): a product value of those fields
    stamped before the edit is then stale for :func:`drop_stale` — last write wins both ways. A
    field's newer product time stays; a replayed edit changes nothing."""
    learned = dict(clock)
    for name in fields:
        learned[name] = max(learned.get(name, -1), int(edited_at))
    return learned
