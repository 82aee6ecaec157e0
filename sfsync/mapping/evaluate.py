"""Evaluating a mapping on one event: the pure rules both directions run.

Outbound, :func:`evaluate_fields` takes one product event and gives the Salesforce field values of
one mapping (outbound filter, direction, update policy, defaults and value maps applied), and
:func:`match_values` the match keys to find its record. Inbound, :func:`evaluate_inbound` takes a
Salesforce record and gives the product field values that flow back. Nothing here talks to Kafka or
Salesforce; a failing expression raises :class:`~sfsync.mapping.errors.MappingEvaluationError`.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sfsync.mapping.cel import OutboundEvaluation, run_cel
from sfsync.mapping.errors import MappingEvaluationError
from sfsync.mapping.model import FieldMap, Mapping
from sfsync.mapping.products import envelope_of
from sfsync.mapping.values import to_salesforce_value

_ABSENT = object()


def get_path(source: MappingABC[str, Any], path: str) -> Any:
    """The value at dotted ``path``, or the ``_ABSENT`` marker when the payload does not carry it."""
    node: Any = source
    for part in _path_parts(path):
        if type(node) is dict:  # one lookup (the payload's maps are dicts)
            node = node.get(part, _ABSENT)
            if node is _ABSENT:
                return _ABSENT
            continue
        if not isinstance(node, MappingABC) or part not in node:
            return _ABSENT
        node = node[part]
    return node


@lru_cache(maxsize=4096)
def _path_parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | tuple) and not value)


def _current_value(current: MappingABC[str, Any], field: str) -> Any:
    if field in current:
        return current[field]
    lowered = field.lower()
    return next((v for k, v in current.items() if k.lower() == lowered), None)


def apply_value_map(value: Any, value_map: MappingABC[str, str] | None) -> Any:
    """``value`` through a field's ``value_map`` (each item of a list; values it does not name unchanged)."""
    if not value_map:
        return value
    if isinstance(value, list):
        return [value_map.get(str(v), v) for v in value]
    return value_map.get(str(value), value) if isinstance(value, str) else value


def outbound_evaluation(
    mapping: Mapping, source: MappingABC[str, Any], event: MappingABC[str, Any]
) -> OutboundEvaluation:
    """Where ``mapping``'s outbound expressions run for one event (``source`` its payload, ``event`` its
    envelope; neither changed meanwhile): one CEL context of what they read, built on first use."""
    return OutboundEvaluation(mapping.outbound_scope(), source, event)


def passes_outbound_filter(
    mapping: Mapping,
    source: MappingABC[str, Any],
    event: MappingABC[str, Any],
    evaluation: OutboundEvaluation | None = None,
) -> bool:
    """Whether the mapping's outbound filter lets this event through (no filter: yes). ``evaluation``:
    the event's :func:`outbound_evaluation` for ``mapping``, when the caller has one."""
    if not mapping.outbound_filter:
        return True
    if evaluation is None:
        evaluation = outbound_evaluation(mapping, source, event)
    try:
        result = evaluation.run(mapping.outbound_filter)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise MappingEvaluationError(mapping.name, "outbound_filter", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(result, bool):
        raise MappingEvaluationError(mapping.name, "outbound_filter", f"must be true or false, got {result!r}")
    return result


def field_value(
    mapping: Mapping,
    field: FieldMap,
    source: MappingABC[str, Any],
    event: MappingABC[str, Any],
    evaluation: OutboundEvaluation | None = None,
) -> Any:
    """One field's raw value for this event (before defaults and conversion); ``_ABSENT`` when the
    event does not carry it (a ``from`` path it lacks, or a CEL expression reading a missing key).
    ``evaluation``: as for :func:`passes_outbound_filter`."""
    if field.constant is not None:
        return field.constant
    if field.expr is not None:
        if evaluation is None:
            evaluation = outbound_evaluation(mapping, source, event)
        try:
            return evaluation.run(field.expr)
        except KeyError:
            return _ABSENT
        except (ValueError, TypeError, RuntimeError) as exc:
            raise MappingEvaluationError(mapping.name, f"field {field.sf}", f"{type(exc).__name__}: {exc}") from exc
    paths = field.from_
    if isinstance(paths, str):
        return get_path(source, paths)
    for path in paths or ():
        found = get_path(source, path)
        if found is not _ABSENT:
            return found
    return _ABSENT


def _envelope(source: MappingABC[str, Any], event: MappingABC[str, Any] | str | None) -> dict[str, Any]:
    if event is None or type(event) is str:
        return envelope_of(source, event)  # already filled from the payload
    envelope = dict(event) if isinstance(event, MappingABC) else envelope_of(source, event)
    for key, value in envelope_of(source, None).items():
        if envelope.get(key) is None:
            envelope[key] = value
    return envelope


def evaluate_fields(
    mapping: Mapping,
    source: MappingABC[str, Any],
    event: MappingABC[str, Any] | str | None = None,
    *,
    current: MappingABC[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The Salesforce values ``mapping`` writes for one product event.

    ``source`` is the decoded event payload; ``event`` its envelope (or just its type name). Returns
    None when the mapping does not write for this event: not one of its event types, a delete or
    ignore action (see :meth:`Mapping.action_for`), or the outbound filter said no. Otherwise
    ``{sf_field: value}`` with values ready for the REST API.

    Only ``to_salesforce`` / ``both`` fields count. A field the event does not carry is left out.
    ``current`` is the existing record's values (None: a new record): ``if_empty`` fields are left
    out when the record already has a value, and so is a ``default`` standing in for a field the
    event does not carry at all.
    """
    return _evaluate(mapping, source, event, current, None)


def evaluate_outbound(
    mapping: Mapping, source: MappingABC[str, Any], event: MappingABC[str, Any] | str | None = None
) -> tuple[dict[str, Any], set[str]] | None:
    """``evaluate_fields(mapping, source, event)`` and, in the same pass, the fields it still writes when
    the record already has every field filled (no ``if_empty`` policy, no ``default`` standing in for an
    absent value): what ``evaluate_fields(..., current=<every field set>)`` would keep."""
    always: set[str] = set()
    values = _evaluate(mapping, source, event, None, always)
    return None if values is None else (values, always)


def _evaluate(
    mapping: Mapping,
    source: MappingABC[str, Any],
    event: MappingABC[str, Any] | str | None,
    current: MappingABC[str, Any] | None,
    always: set[str] | None,
) -> dict[str, Any] | None:
    envelope = _envelope(source, event)
    event_type = envelope.get("type")
    fields: list[FieldMap] = mapping.fields
    if event_type is not None:
        action = mapping.action_for(str(event_type))
        if action in ("delete", "ignore"):
            return None
        if action == "update" and mapping.delete is not None:
            fields = mapping.delete.fields
    evaluation = outbound_evaluation(mapping, source, envelope)
    if not passes_outbound_filter(mapping, source, envelope, evaluation):
        return None
    out: dict[str, Any] = {}
    for field, sf, path, policy, default, value_map in mapping.outbound_specs(fields):
        value = (
            get_path(source, path) if path is not None else field_value(mapping, field, source, envelope, evaluation)
        )
        if value is _ABSENT:
            if default is None:
                continue
            value, policy = default, "if_empty"
        if value_map:
            value = apply_value_map(value, value_map)
        if default is not None and _empty(value):
            value = default
        if policy == "if_empty" and current is not None and not _empty(_current_value(current, sf)):
            continue
        if always is not None and policy != "if_empty":
            always.add(sf)
        out[sf] = to_salesforce_value(value)
    return out


def match_values(
    mapping: Mapping, source: MappingABC[str, Any], event: MappingABC[str, Any] | str | None = None
) -> list[dict[str, Any]]:
    """The match alternatives this event can use, in order: ``{field: value}`` each. A key without
    ``from`` (a parent lookup) maps to ``ParentLookup``; alternatives whose value is empty are left out."""
    envelope = _envelope(source, event)
    evaluation: OutboundEvaluation | None = None
    out: list[dict[str, Any]] = []
    for keys in mapping.match_alternatives:
        values: dict[str, Any] = {}
        for key in keys:
            if key.from_ is None and key.expr is None:
                ref = mapping.parents.get(key.field)
                values[key.field] = ParentLookup(ref.mapping if ref else key.field)
                continue
            if key.expr is not None:
                if evaluation is None:
                    evaluation = outbound_evaluation(mapping, source, envelope)
                try:
                    found = evaluation.run(key.expr)
                except KeyError:
                    found = _ABSENT
                except (ValueError, TypeError, RuntimeError) as exc:
                    raise MappingEvaluationError(mapping.name, f"match {key.field}", f"{exc}") from exc
            else:
                found = get_path(source, str(key.from_))
            if found is _ABSENT or _empty(found):
                break
            values[key.field] = to_salesforce_value(found)
        else:
            out.append(values)
    return out


@dataclass(frozen=True)
class ParentLookup:
    """Stands for "the Id of the record mapping ``mapping`` matches for this event"."""

    mapping: str


def evaluate_inbound(mapping: Mapping, record: MappingABC[str, Any]) -> dict[str, Any] | None:
    """Product field path -> value for a Salesforce record (``to_product`` / ``both`` fields with a
    ``from`` path); None when the inbound filter (CEL over ``record``) says no."""
    if mapping.inbound_filter:
        try:
            keep = run_cel(mapping.program(mapping.inbound_filter), {"record": dict(record)})
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise MappingEvaluationError(mapping.name, "inbound_filter", f"{type(exc).__name__}: {exc}") from exc
        if keep is not True:
            return None
    out: dict[str, Any] = {}
    for field in mapping.active_fields():
        if not field.inbound or not field.paths:
            continue
        value = _current_value(record, field.sf)
        if field.value_map:
            reverse = {v: k for k, v in field.value_map.items()}
            value = reverse.get(value, value) if isinstance(value, str) else value
        out[field.paths[0]] = value
    return out
