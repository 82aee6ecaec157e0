"""How the sink finds the Salesforce record a write is for (pure: no Salesforce, no Kafka).

A write names its record by *strategies* in order: its external ID (when it has one), then its
``match`` keys. A match list with several entries means: try them in order; the first that finds a
record wins. :func:`candidates` lists what to look for, strategy by strategy and, within one
strategy, object by object (Contacts then Leads), so a stable key (the member id) is looked for in
every object before a fallback (Email) is. The sink runs one query per (object, key fields) and
step for the whole batch, never one per record.

An external ID names one record: :func:`pick` takes the record a *fallback* key finds (Email) only
when the record's external-ID field is empty (it predates sfsync: the write fills the field in, so
the record is found by it next time) or already holds the write's own value. A record that carries
another value there is another entity's (two members sharing an email): it is not the write's
record. Among the records a key finds, the one with the smallest Id wins, so every replay picks
the same one.

A match key's ``field`` may name several fields joined by ``+`` (``CampaignId+ContactId``); a
component that is one of the write's ``parents`` takes the parent's resolved Id, the others take
the key's ``value`` (a JSON array of strings when there are several of them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sfsync.sinks.merge import _EMPTY, _Segment

__all__ = ["Candidate", "candidates", "index_rows", "norm", "pick", "usable"]


class Candidate(NamedTuple):
    """One lookup of a write's record: ``sobject`` rows whose ``names`` hold ``values``.

    ``guard``: for a fallback key of a write with an external ID, (that field, the write's value):
    a row found must hold that value or nothing there (see :func:`pick`); None for the first key.
    """

    sobject: str
    names: tuple[str, ...]
    values: tuple[Any, ...]
    guard: tuple[str, str] | None = None


def norm(value: Any) -> Any:
    """A key value as Salesforce compares it: text case-insensitively."""
    return value.casefold() if isinstance(value, str) else value


def usable(seg: _Segment, match: tuple[str, str]) -> bool:
    """Whether the write can look for its record by ``match``: every own component has a value."""
    fields, value = match
    own = [f for f in fields.split("+") if f not in seg.parents]
    return not own or value != ""


def _strategies(seg: _Segment) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = [seg.external_id] if seg.external_id else []
    for match in seg.match:
        if usable(seg, match) and match not in out:
            out.append(match)
    return out


def _lookup(seg: _Segment, fields_text: str, value: str) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
    """(key field names, values) of one strategy; None when its value is malformed."""
    if "+" not in fields_text and fields_text not in seg.parents:
        return (fields_text,), (value,)  # one field of the write's own: what the general case gives
    components = fields_text.split("+")
    own = [c for c in components if c not in seg.parents]
    own_values: list[Any] = [value]
    if len(own) > 1:
        try:
            own_values = [str(v) for v in json.loads(value)]
        except (ValueError, TypeError):
            return None
        if len(own_values) != len(own):
            return None
    by_field = dict(zip(own, own_values, strict=False))
    names: list[str] = []
    values: list[Any] = []
    for comp in components:
        if comp in seg.parents:
            name, parent_id = seg.parent_ids[comp]
            names.append(name)
            values.append(parent_id)
        else:
            names.append(comp)
            values.append(by_field[comp])
    return tuple(names), tuple(values)


def candidates(seg: _Segment) -> list[Candidate]:
    """What to look for, in order: each strategy (external ID, then ``match``) in each of the write's
    objects. Parent components take the resolved Ids in ``seg.parent_ids``; a key whose value is
    malformed is left out."""
    out: list[Candidate] = []
    for i, (fields_text, value) in enumerate(_strategies(seg)):
        found = _lookup(seg, fields_text, value)
        if found is None:
            continue
        names, values = found
        guard = seg.external_id if i > 0 and seg.external_id and seg.external_id[0] not in names else None
        out.extend(Candidate(obj, names, values, guard) for obj in seg.objects)
    return out


def index_rows(
    rows: Iterable[Mapping[str, Any]], names: Sequence[str]
) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    """The rows of one lookup by their (normalised) key values, each list in Id order."""
    out: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: str(r["Id"])):
        out.setdefault(tuple(norm(row.get(n)) for n in names), []).append(row)
    return out


def pick(
    candidate: Candidate, found: Mapping[tuple[Any, ...], Sequence[Mapping[str, Any]]]
) -> Mapping[str, Any] | None:
    """The row ``candidate`` finds among ``found`` (:func:`index_rows`): the first in Id order whose
    guard field, if the candidate has a guard, is empty or holds the write's value; None: no record."""
    rows = found.get(tuple(norm(v) for v in candidate.values), ())
    if candidate.guard is None:
        return rows[0] if rows else None
    field, value = candidate.guard
    for row in rows:
        held = row.get(field)
        if held in _EMPTY or norm(held) == norm(value):
            return row
    return None
