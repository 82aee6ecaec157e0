"""Which records a save duplicates: the org's duplicate rules and one membership per campaign and person.

Values are compared as Salesforce matches them: text case-insensitively unless the field is
case-sensitive (:func:`index_key`; external id and unique fields are matched the same way, see
:class:`sfsync.emulator.tables.Table`).

:class:`DuplicateIndex` keeps, for the live records, the key of every duplicate rule (the values of
the rule's fields; a record with one of them empty has no key) and every campaign member's
``(CampaignId, ContactId | LeadId)`` pairs. Rules are ``(object, fields)`` pairs as the org file
declares them; a rule on an unknown object is ignored, unknown fields are left out of its key.
:meth:`DuplicateIndex.check` raises DUPLICATE_VALUE ("Already a campaign member.") or
:class:`sfsync.emulator.errors.DuplicatesDetected` (naming the rule ``<Object>_Duplicate_Rule_<n>``,
n counting from 1 in declaration order).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sfsync.emulator.errors import ApiError, DuplicatesDetected
from sfsync.emulator.model import FieldDef, Row, Schema


def index_key(definition: FieldDef, value: Any) -> Any:
    """``value`` as matches against ``definition`` compare it: lower-cased text unless case-sensitive."""
    if isinstance(value, str) and not definition.case_sensitive:
        return value.lower()
    return value


def _rule_key(fields: tuple[FieldDef, ...], row: Row) -> tuple[Any, ...] | None:
    key = tuple(index_key(f, row.get(f.name)) for f in fields)
    return None if any(part is None for part in key) else key


def _member_keys(row: Row) -> list[tuple[str, str]]:
    return [(row["CampaignId"], person) for person in (row.get("ContactId"), row.get("LeadId")) if person]


class DuplicateIndex:
    """Duplicate-rule keys and campaign memberships of the live records. Not thread-safe: the store's
    lock guards it."""

    def __init__(self, rules: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        self._rules = [(name, tuple(fields)) for name, fields in rules]
        self._by_object: dict[str, list[tuple[int, tuple[FieldDef, ...]]]] = {}
        self._keys: dict[int, dict[tuple[Any, ...], set[str]]] = {}
        self._members: dict[tuple[str, str], str] = {}  # (campaign, person) -> CampaignMember id

    def compile(self, schema: Schema) -> None:
        """Resolve the rules against ``schema`` (again after it changed); :meth:`clear` must follow."""
        self._by_object = {}
        for number, (sobject, names) in enumerate(self._rules):
            obj = schema.get(sobject)
            if obj is None:
                continue
            fields = tuple(f for f in (obj.field(n) for n in names) if f is not None)
            self._by_object.setdefault(obj.name.lower(), []).append((number, fields))

    def clear(self) -> None:
        """Forget every record."""
        self._keys = {n: {} for rules in self._by_object.values() for n, _ in rules}
        self._members = {}

    def add(self, sobject: str, row: Row) -> None:
        """Index the live row ``row`` of ``sobject`` (its canonical name)."""
        record_id = row["Id"]
        for number, fields in self._by_object.get(sobject.lower(), ()):
            key = _rule_key(fields, row)
            if key is not None:
                self._keys[number].setdefault(key, set()).add(record_id)
        if sobject == "CampaignMember":
            for key in _member_keys(row):
                self._members[key] = record_id

    def remove(self, sobject: str, row: Row) -> None:
        """Undo :meth:`add` for ``row`` (the version that was indexed)."""
        record_id = row["Id"]
        for number, fields in self._by_object.get(sobject.lower(), ()):
            key = _rule_key(fields, row)
            if key is not None:
                self._keys[number].get(key, set()).discard(record_id)
        if sobject == "CampaignMember":
            for key in _member_keys(row):
                if self._members.get(key) == record_id:
                    del self._members[key]

    def check(self, sobject: str, row: Row) -> None:
        """Raise if saving ``row`` would duplicate another live record of ``sobject``: DUPLICATE_VALUE for a
        second membership of the same person in a campaign, :class:`DuplicatesDetected` for a rule's match."""
        record_id = row["Id"]
        if sobject == "CampaignMember":
            for key in _member_keys(row):
                if self._members.get(key, record_id) != record_id:
                    raise ApiError(400, "DUPLICATE_VALUE", "Already a campaign member.")
        for number, fields in self._by_object.get(sobject.lower(), ()):
            rule_key = _rule_key(fields, row)
            if rule_key is None:
                continue
            others = self._keys[number].get(rule_key, set()) - {record_id}
            if others:
                raise DuplicatesDetected(sobject, f"{sobject}_Duplicate_Rule_{number + 1}", sorted(others))
