"""Record keys: the Kafka key of every write to one Salesforce record, in the one format owned here.

A record key is ``<workspace_id>|<sobject>:<field>:<value>``: the workspace whose event planned the
write, the Salesforce object, and the record's identity in it (its external ID field, else its first
usable match key, and that key's value; a composite key's value is a JSON array). Two workspaces
never share a key, even when they share an org (docs/decisions/0009-workspaces-and-connections.md).
Keys of ``sfsync.writes``, ``sfsync.results``, the processor's tables and a write's parent
references all have this form; a key planned before workspaces (``<sobject>:<field>:<value>``) reads
as the workspace ``""``.

Workspace ids hold neither ``|`` nor ``:`` (:func:`sfsync.workspaces.records.id_problems` refuses
them), and Salesforce object and field API names hold neither, so a ``|`` before the first ``:``
ends the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WORKSPACE_SEPARATOR", "RecordKey", "parse_record_key", "record_key", "workspace_of"]

WORKSPACE_SEPARATOR = "|"


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
