"""Record keys: the Kafka key of every write to one Salesforce record, in the one format owned here.

A record key is ``<workspace_id>|<sobject>:<field>:<value>``: the workspace whose event planned the
write, the Salesforce object, and the record's identity in it (its external ID field, else its first
usable match key, and that key's value; a composite key's value is a JSON array). Two workspaces
never share a key, even when they share an org (docs/decisions/0009-workspaces-and-connections.md).
Keys of ``sfsync.writes``, ``sfsync.results``, the processor's tables and a write's parent
references all have this form; a key planned before workspaces (``<sobject>:<field>:<value>``) reads
as the workspace ``""``.

Which records' identities the pipeline keeps is decided here too, once, on the key's object
(:func:`person_identity`): the sink publishes them to ``sfsync.identities``, the outbound processor
keeps them in its ``identity`` table.

Workspace ids hold neither ``|`` nor ``:`` (:func:`sfsync.workspaces.records.id_problems` refuses
them), and Salesforce object and field API names hold neither, so a ``|`` before the first ``:``
ends the workspace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PERSON_OBJECTS",
    "WORKSPACE_SEPARATOR",
    "RecordKey",
    "parse_record_key",
    "person_identity",
    "record_key",
    "workspace_of",
]

WORKSPACE_SEPARATOR = "|"

PERSON_OBJECTS = ("Contact", "Lead")
"""The objects a person's record may be in (a Lead converts to a Contact; a person mapping searches both)."""


@dataclass(frozen=True)
class RecordKey:
    """A parsed record key."""

    workspace: str
    sobject: str
    field: str
    value: str

    def __str__(self) -> str:
        return record_key(self.workspace, self.sobject, self.field, self.value)


def record_key(workspace: str, sobject: str, field: str, value: str) -> str:
    """``ws-1|Campaign:Event_Id__c:evt-7``: the Kafka key of every write to that record."""
    return f"{workspace}{WORKSPACE_SEPARATOR}{sobject}:{field}:{value}"


def parse_record_key(key: str) -> RecordKey | None:
    """The parts of ``key``; None when it is not a record key (no object, field or value)."""
    workspace, rest = _split(key)
    parts = rest.split(":", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return RecordKey(workspace, parts[0], parts[1], parts[2])


def workspace_of(key: str) -> str:
    """The workspace of a record key (``""`` for a key without one)."""
    return _split(key)[0]


def _split(key: str) -> tuple[str, str]:
    """(workspace, the rest); a ``|`` after the first ``:`` is part of a value, not a workspace's end."""
    workspace, separator, rest = key.partition(WORKSPACE_SEPARATOR)
    if not separator or ":" in workspace:
        return "", key
    return workspace, rest


def person_identity(value: Mapping[str, Any]) -> tuple[str, tuple[str, str]] | None:
    """The identity a write's outcome gives, ``(record key, (sobject, salesforce_id))``, when it is one
    the pipeline keeps; None otherwise.

    ``value`` has ``key``, ``sobject`` and ``salesforce_id`` (a WriteResult, an Identity record). Kept:
    person records only (a record key of a Contact or Lead mapping; ``sobject`` is where the record is,
    a converted Lead's Contact). Planning reads identities only to order a person's ``search_objects``,
    and keeping the others (an activity record per event) would grow the table and its changelog
    without end. A value without a record key, an object or an id gives None.
    """
    key, sobject, sf_id = value.get("key"), value.get("sobject"), value.get("salesforce_id")
    parsed = parse_record_key(str(key or ""))
    if parsed is None or not sobject or not sf_id or parsed.sobject not in PERSON_OBJECTS:
        return None
    return str(key), (str(sobject), str(sf_id))
