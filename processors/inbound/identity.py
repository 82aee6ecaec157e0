"""Which member a Salesforce record is, and what sfsync wrote to it (pure, no Kafka).

:func:`apply_result` folds one ``sfsync.results`` WriteResult into the record's written state
(:class:`~sfsync.processors.inbound.state.WrittenState`):

- *Identity*: the member is the mapping's member id field (e.g. ``Member_Id__c``) in the values
  written, or the write key's value when the key is that field; a change of a record no result
  named takes it from the same field in the change (:func:`~sfsync.processors.inbound.decide.decide`).
- *Written values*, per field: the value sfsync last wrote, the product time it comes from (the
  write's ``source.occurred_at``), when Salesforce acknowledged it, and the earlier writes an echo
  may still show (:func:`~sfsync.processors.inbound.echo.earlier_writes`). A result older than the
  field's last known write changes nothing of it (dropped as ``stale``).
- *Links* (``salesforce:id`` and the mapping's ``inbound.links``) are sent, as a
  ``MemberIdentityLink``, when first known and when they change (:func:`links_update`); a
  member's ``salesforce:id`` when its record is first known or moves (e.g. a converted Lead). A
  replayed result or change sends its link again, with the same ``inbound_id``.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC

from sfsync.keys import parse_record_key
from sfsync.mapping import MappingFile
from sfsync.processors.inbound.echo import earlier_writes
from sfsync.processors.inbound.mappings import inbound_mapping
from sfsync.processors.inbound.state import (
    Decision,
    Links,
    MemberIdentityLink,
    Output,
    RecordBase,
    Timestamp,
    WriteResult,
    WrittenState,
    copy_written,
)
from sfsync.processors.inbound.values import ABSENT, field_entry, field_value, millis

__all__ = ["apply_result", "links_update", "record_base"]


def record_base(
    member_id: str | None,
    workspace_id: str | None,
    mapping: str,
    sobject: str,
    salesforce_id: str,
    modstamp: Timestamp | None,
    last_modified: Timestamp | None,
    modified_by: str | None,
) -> RecordBase:
    """The fields every ``product.members.inbound`` record of one Salesforce record carries."""
    return {
        "member_id": member_id,
        "workspace_id": workspace_id,
        "mapping": mapping,
        "sobject": sobject,
        "salesforce_id": salesforce_id,
        "system_modstamp": modstamp,
        "last_modified_date": last_modified,
        "last_modified_by_id": modified_by,
    }


def links_update(
    remember: Links,
    known: MappingABC[str, str | None],
    current: MappingABC[str, str | None],
    base: RecordBase,
    inbound_id: str,
) -> MemberIdentityLink | None:
    """A MemberIdentityLink with the ``current`` links that differ from those sent (``known`` and
    ``remember``), remembered in ``remember``; None when none differs or no member is known. A null
    only removes a link sent before."""
    sent = {**known, **remember}
    changed = {name: value for name, value in current.items() if name not in sent or sent[name] != value}
    changed = {n: v for n, v in changed.items() if v is not None or n in sent}
    if not changed or not base["member_id"]:
        return None
    remember.update(changed)
    return {**base, "inbound_id": inbound_id, "links": changed}


def _key_value(key: str, field_name: str) -> str | None:
    """The value of the record key ``key`` (:mod:`sfsync.keys`) when its field is ``field_name``."""
    parsed = parse_record_key(key)
    if parsed is not None and parsed.field.lower() == field_name.lower():
        return parsed.value
    return None


def apply_result(state: WrittenState | None, result: WriteResult, mappings: MappingFile) -> Decision[WrittenState]:
    """Fold one WriteResult into its record's written state; sends ``salesforce:id`` when a member's
    record is first known (or moves, e.g. a converted Lead). ``state`` None: nothing known yet.

    Results of mappings that do not feed the members' inbound topic change nothing (state None)."""
    mapping = inbound_mapping(mappings, result["sobject"] or "", result["mapping"] or "")
    decision: Decision[WrittenState] = Decision()
    if mapping is None or mapping.name != result["mapping"]:
        decision.drop("not_inbound")
        return decision
    new = copy_written(state)
    values = result["fields"] or {}
    member_field = mapping.member_id_field()
    if member_field:
        member = field_value(values, member_field)
        if member is ABSENT or member in (None, ""):
            member = _key_value(result["key"] or "", member_field)
        if member not in (None, "", ABSENT):
            new["member_id"] = str(member)
    product_at = millis(result["source"]["occurred_at"])
    written_at = millis(result["acknowledged_at"])
    for name, value in values.items():
        before = field_entry(new["written"], name)
        if before is not None and int(before["written_at"] or 0) > (written_at or 0):
            decision.drop("stale")  # a later write of this field is known (a replay, or out of order)
            continue
        new["written"][name] = {
            "value": value,
            "product_at": product_at,
            "written_at": written_at,
            "first_written_at": written_at if before is None else before.get("first_written_at", before["written_at"]),
            "earlier": earlier_writes(before, written_at),
        }
    if written_at is not None:  # a write of no field still touches the record (and its SystemModstamp)
        if written_at >= int(new.get("acknowledged_at") or 0) and result["key"]:
            new["key"] = result["key"]  # the record's write key, for SalesforceEdit
        new["acknowledged_at"] = max(int(new.get("acknowledged_at") or 0), written_at)
    sf_id = result["salesforce_id"] or ""
    new["mapping"], new["sobject"], new["workspace_id"] = mapping.name, result["sobject"], result["workspace_id"]
    new["salesforce_id"] = sf_id
    decision.state = new
    member_id = new["member_id"]
    if member_id and sf_id:
        sobject = result["sobject"]
        base = record_base(member_id, new["workspace_id"], mapping.name, sobject, sf_id, written_at, None, None)
        link_id = f"{result['write_id']}:links"
        link = links_update(new["links"], {}, {"salesforce:id": sf_id}, base, link_id)
        if link is not None:
            new["links_sent_by"] = link_id
        elif new.get("links_sent_by") == link_id:  # this very result again (a replay): send the link again
            link = {**base, "inbound_id": link_id, "links": {"salesforce:id": sf_id}}
        if link is not None:
            decision.outputs.append(Output(member_id, "MemberIdentityLink", link))
    return decision
