"""The records the inbound rules read and give: inputs, the two states per Salesforce record, outputs.

Types only (:class:`~typing.TypedDict`: plain dicts at run time). The states are JSON-able dicts in
Faust tables keyed by Salesforce Id (:mod:`sfsync.processors.inbound.app`), each written by one side
only so that its changelog keeps one record's states in order:

- the *written* state (:class:`WrittenState`), folded from ``sfsync.results`` WriteResults by
  :func:`~sfsync.processors.inbound.identity.apply_result`: which member the record is, and per field
  the value sfsync last wrote, the product time it comes from (the write's ``source.occurred_at``)
  and when Salesforce acknowledged it;
- the *seen* state (:class:`SeenState`), kept by :func:`~sfsync.processors.inbound.decide.decide`:
  what the inbound side last saw from Salesforce per field, at which SystemModstamp.

A state read back from a table may predate a key marked ``NotRequired`` here: the rules read such
keys with a default. :func:`copy_written` and :func:`copy_seen` give a state to fold into, with
every required key present.

Inputs are decoded Avro records (``sfsync.inbound.Change``, ``sfsync.pipeline.WriteResult``);
outputs are the records for ``product.members.inbound`` (``MemberFieldUpdate``,
``MemberIdentityLink``, ``MemberDelete``, ``ImportCandidate``) and ``SalesforceEdit`` for
``sfsync.salesforce_edits``, as :class:`Output` in a :class:`Decision`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Generic, Literal, NotRequired, TypedDict, TypeVar, final

__all__ = [
    "Change",
    "Decision",
    "EarlierWrite",
    "FieldValue",
    "ImportCandidate",
    "Links",
    "LinksSent",
    "MemberDelete",
    "MemberFieldUpdate",
    "MemberIdentityLink",
    "Output",
    "OutputValue",
    "RecordBase",
    "RecordName",
    "SalesforceEdit",
    "SeenField",
    "SeenState",
    "SourceRef",
    "Timestamp",
    "WriteResult",
    "WrittenField",
    "WrittenState",
    "copy_seen",
    "copy_written",
]

FieldValue = str | bool | int | float | None
"""A Salesforce field value as the Avro records carry it (null, string, boolean, long, double)."""
Timestamp = dt.datetime | int
"""A ``timestamp-millis`` value: a datetime as decoded (naive: UTC), or epoch milliseconds."""
Links = dict[str, str | None]
"""Identity links, ``salesforce:id`` or ``salesforce:<link name>`` -> value (None: the link is gone)."""


# ---------------------------------------------------------------------- inputs
class SourceRef(TypedDict):
    """The product event a write came from (``sfsync.pipeline.SourceRef``)."""

    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str
    occurred_at: Timestamp


class WriteResult(TypedDict):
    """What the sink wrote to one Salesforce record (``sfsync.pipeline.WriteResult``)."""

    write_id: str
    key: str
    """The record's write key (:mod:`sfsync.keys`: ``<workspace_id>|<sobject>:<field>:<value>``)."""
    mapping: str
    sobject: str
    salesforce_id: str
    created: bool
    fields: dict[str, FieldValue]
    acknowledged_at: Timestamp
    workspace_id: str
    source: SourceRef


class Change(TypedDict):
    """One Salesforce change as the poller saw it (``sfsync.inbound.Change``)."""

    change_id: str
    sobject: str
    id: str
    change_type: str
    """``CREATE``, ``UPDATE``, ``DELETE`` or ``UNDELETE``."""
    fields: dict[str, FieldValue]
    system_modstamp: Timestamp
    last_modified_date: Timestamp | None
    last_modified_by_id: str | None
    polled_at: Timestamp


# ---------------------------------------------------------------------- the written state
class EarlierWrite(TypedDict):
    """An earlier value sfsync wrote to a field, and when Salesforce acknowledged it (epoch ms)."""

    value: FieldValue
    written_at: int | None


class WrittenField(TypedDict):
    """One field of the written state: the value sfsync last wrote."""

    value: FieldValue
    product_at: int | None
    """The product time of the value (the write's ``source.occurred_at``, epoch ms)."""
    written_at: int | None
    """When Salesforce acknowledged the write (epoch ms)."""
    first_written_at: NotRequired[int | None]
    """When sfsync's first known write of the field was acknowledged (absent: ``written_at``)."""
    earlier: NotRequired[list[EarlierWrite]]
    """Earlier writes, newest first, bounded (:data:`~sfsync.processors.inbound.echo.ECHO_HISTORY`)."""


class WrittenState(TypedDict):
    """What sfsync's writes taught about one Salesforce record (the ``inbound_written`` table)."""

    mapping: str | None
    sobject: str | None
    salesforce_id: str | None
    member_id: str | None
    workspace_id: str | None
    links: Links
    """The links sent for the record from the results side."""
    written: dict[str, WrittenField]
    """Salesforce field name -> what sfsync last wrote to it."""
    acknowledged_at: NotRequired[int]
    """The latest acknowledgement of any write of the record, fields or none (epoch ms)."""
    key: NotRequired[str]
    """The record's write key, from its latest write (the key of its ``SalesforceEdit``)."""
    links_sent_by: NotRequired[str]
    """The ``inbound_id`` of the link the results side sent last (a replay of it sends it again)."""


# ---------------------------------------------------------------------- the seen state
class SeenField(TypedDict):
    """One field of the seen state: the value last seen from Salesforce."""

    value: FieldValue
    at: int
    """The SystemModstamp it was seen at (epoch ms)."""
    sent: bool
    """Whether that change sent it to the product."""


class LinksSent(TypedDict):
    """The links the latest change that sent any sent, at its SystemModstamp (epoch ms)."""

    at: int
    links: Links


class SeenState(TypedDict):
    """What earlier changes showed of one Salesforce record (the ``inbound_seen`` table)."""

    mapping: str | None
    member_id: str | None
    links: Links
    """The links sent for the record from the changes side."""
    seen: dict[str, SeenField]
    """Salesforce field name -> the value last seen."""
    links_sent: NotRequired[LinksSent]


def copy_written(state: WrittenState | None) -> WrittenState:
    """A copy of ``state`` to fold into (its ``links`` and ``written`` copied too); None: an empty state."""
    out: WrittenState = {"mapping": None, "sobject": None, "salesforce_id": None, "member_id": None,
                         "workspace_id": None, "links": {}, "written": {}}  # fmt: skip
    if state:
        out.update(state)
        out["links"], out["written"] = dict(state.get("links") or {}), dict(state.get("written") or {})
    return out


def copy_seen(state: SeenState | None) -> SeenState:
    """A copy of ``state`` to fold into (its ``links`` and ``seen`` copied too); None: an empty state."""
    out: SeenState = {"mapping": None, "member_id": None, "links": {}, "seen": {}}
    if state:
        out.update(state)
        out["links"], out["seen"] = dict(state.get("links") or {}), dict(state.get("seen") or {})
    return out


# ---------------------------------------------------------------------- outputs
class RecordBase(TypedDict):
    """The fields every ``product.members.inbound`` record carries besides its ``inbound_id``."""

    member_id: str | None
    workspace_id: str | None
    mapping: str
    sobject: str
    salesforce_id: str
    system_modstamp: Timestamp | None
    last_modified_date: Timestamp | None
    last_modified_by_id: str | None


@final
class MemberFieldUpdate(RecordBase):
    """Fields a Salesforce user changed: product path -> value, and the Salesforce values they come from."""

    inbound_id: str
    fields: dict[str, FieldValue]
    salesforce_fields: dict[str, FieldValue]


@final
class MemberIdentityLink(RecordBase):
    """The member's Salesforce identities that are new or changed."""

    inbound_id: str
    links: Links


@final
class MemberDelete(RecordBase):
    """A deleted (``DELETE``, ``FLAG``) or undeleted (``UNFLAG``) member record."""

    inbound_id: str
    action: str
    flag_field: str | None
    change_type: str


@final
class ImportCandidate(RecordBase):
    """A record linked to no member, offered to the product for import."""

    inbound_id: str
    fields: dict[str, FieldValue]
    salesforce_fields: dict[str, FieldValue]


@final
class SalesforceEdit(TypedDict):
    """Fields a Salesforce user changed, for the outbound processor's record clock (``sfsync.salesforce_edits``)."""

    edit_id: str
    key: str
    mapping: str
    sobject: str
    salesforce_id: str
    fields: list[str]
    edited_at: int


RecordName = Literal["MemberFieldUpdate", "MemberIdentityLink", "MemberDelete", "ImportCandidate", "SalesforceEdit"]
OutputValue = MemberFieldUpdate | MemberIdentityLink | MemberDelete | ImportCandidate | SalesforceEdit

S = TypeVar("S")


@dataclass(frozen=True)
class Output:
    """One record to send: its key, record type and Avro value (``SalesforceEdit``: for
    ``sfsync.salesforce_edits``; every other: for ``product.members.inbound``)."""

    key: str
    record: RecordName
    value: OutputValue


@dataclass
class Decision(Generic[S]):
    """What one change (or result) causes: records to send, the record's new state (None: keep
    none), and why fields were dropped (``echo``, ``unchanged``, ``conflict:<policy>``, ``filtered``...)."""

    outputs: list[Output] = field(default_factory=list)
    state: S | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    """(policy, winner: ``product`` | ``salesforce``) per field changed on both sides."""

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
