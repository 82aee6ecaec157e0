"""What one Salesforce change means for the product (pure, no Kafka).

:func:`decide` reads the record's written state (what sfsync's writes taught,
:mod:`~sfsync.processors.inbound.identity`) and its seen state (what earlier changes showed, at
which SystemModstamp) and turns one ``salesforce.changes`` Change into ``product.members.inbound``
records (``MemberFieldUpdate``, ``MemberIdentityLink``, ``MemberDelete``, ``ImportCandidate``),
``SalesforceEdit`` records and the new seen state (:mod:`~sfsync.processors.inbound.state`).

The rules, per change:

1. *Mapping*: the one that wrote the record, else the first enabled member mapping targeting the
   object (:mod:`~sfsync.processors.inbound.mappings`); none: nothing is sent.
2. *Identity*: the member the results name, else the record's member id field; links are sent
   when first seen and when they change (:mod:`~sfsync.processors.inbound.identity`).
3. *Deletes* follow ``inbound.delete``: ignore, ``FLAG`` (``UNFLAG`` on undelete), or ``DELETE``.
4. *Unlinked* records (no member) are ignored, or sent as import candidates
   (``inbound.unlinked: import``).
5. *Inbound filter*: a record the mapping's ``inbound_filter`` rejects sends nothing.
6. *Per field*, only ``to_product``/``both`` fields count; others are ignored. A value equal
   (:func:`~sfsync.processors.inbound.values.same_value`) to the latest known value is dropped:
   what was last seen from Salesforce, if seen (SystemModstamp) no earlier than sfsync's last
   write of the field was acknowledged (``unchanged``), else what sfsync wrote
   (``echo``: :func:`~sfsync.processors.inbound.echo.is_echo`). A change whose every field is
   dropped sends no update. An empty value of a field neither written by sfsync before the change
   nor seen before (a record sfsync created without that field) tells nothing: dropped as
   ``empty``. A field value older (SystemModstamp) than the one seen is dropped as ``stale``; the
   very change seen last, seen again (Faust replays records after an aborted transaction, while
   its in-memory tables keep what the aborted attempt did), is sent again with the same
   ``inbound_id``, so a replay neither loses nor invents an update.
7. *Conflicts*, per field that sfsync wrote (the field's ``conflict``, else the mapping's):
   ``salesforce_wins`` applies the change; ``product_wins`` drops it (the product's value stands
   and its next change overwrites Salesforce); ``last_write_wins`` applies it only when the
   Salesforce time (LastModifiedDate, else SystemModstamp) is later than the product time of the
   value sfsync wrote — a tie goes to the product. A field sfsync never wrote has no conflict:
   the Salesforce value applies under every policy (``product_wins`` protects what the product
   set, not fields it never had).
8. *Both ways*: a delivered update of a record sfsync writes also gives a ``SalesforceEdit`` (keyed
   by the record's write key, for ``sfsync.salesforce_edits``) naming the fields whose policy is
   not ``product_wins``: the outbound processor's record clock learns the edit's time, so a
   product event stamped before it, still in flight, does not overwrite it in Salesforce
   (:func:`sfsync.processors.outbound.plan.learn_salesforce_edit`).

A change by a user sfsync writes as may have to wait for its WriteResult before it is judged
(:func:`~sfsync.processors.inbound.echo.hold_until`).
"""

from __future__ import annotations

from sfsync.mapping import MappingFile, evaluate_inbound
from sfsync.processors.inbound.echo import is_echo
from sfsync.processors.inbound.identity import links_update, record_base
from sfsync.processors.inbound.mappings import inbound_mapping
from sfsync.processors.inbound.state import (
    Change,
    Decision,
    FieldValue,
    Links,
    Output,
    SeenState,
    WrittenField,
    WrittenState,
    copy_seen,
    copy_written,
)
from sfsync.processors.inbound.values import ABSENT, field_entry, field_value, millis, same_value

__all__ = ["decide", "salesforce_wins"]


def salesforce_wins(policy: str, salesforce_at: int, product_at: int | None) -> bool:
    """Whether a Salesforce change of a field sfsync wrote applies under conflict ``policy``:
    always under ``salesforce_wins``, never under ``product_wins``, under ``last_write_wins`` when
    its time (``salesforce_at``) is later than the product time of the value sfsync wrote (a tie
    goes to the product; no product time: Salesforce)."""
    return policy == "salesforce_wins" or (
        policy == "last_write_wins" and (product_at is None or salesforce_at > int(product_at))
    )


def _written_before(written: WrittenField | None, modstamp: int) -> bool:
    """Whether sfsync's first known write of the field was acknowledged before ``modstamp``."""
    if written is None:
        return False
    first = written.get("first_written_at", written["written_at"])
    return first is not None and int(first) < modstamp


def decide(
    written_state: WrittenState | None,
    seen_state: SeenState | None,
    change: Change,
    mappings: MappingFile,
) -> Decision[SeenState]:
    """What one Salesforce change means for the product (see the module doc for the rules).

    ``change`` is a decoded ``sfsync.inbound.Change``; ``written_state`` what the results taught
    about the record and ``seen_state`` what earlier changes did (None: nothing). The decision's
    ``state`` is the new seen state (None: keep none). Raises
    :class:`~sfsync.mapping.MappingEvaluationError` when the inbound filter fails on the record (a
    skippable record error)."""
    decision: Decision[SeenState] = Decision()
    sobject, sf_id = change["sobject"], change["id"]
    known = copy_written(written_state)
    seen_mapping = seen_state["mapping"] if seen_state else None
    mapping = inbound_mapping(mappings, sobject, known["mapping"] or seen_mapping)
    if mapping is None:
        decision.drop("no_mapping")
        return decision
    new = copy_seen(seen_state)
    values = change["fields"] or {}
    member = known["member_id"] or new["member_id"]
    if not member:
        member_field = mapping.member_id_field()
        found = field_value(values, member_field) if member_field else ABSENT
        if found not in (ABSENT, None, ""):
            member = new["member_id"] = str(found)
    new["mapping"] = mapping.name
    change_type = change["change_type"] or "UPDATE"
    inbound_id = f"{change['change_id']}:{mapping.name}"
    base = record_base(
        member, known["workspace_id"], mapping.name, sobject, sf_id,
        change["system_modstamp"], change["last_modified_date"], change["last_modified_by_id"],
    )  # fmt: skip
    keep = bool(member) or seen_state is not None

    if change_type in ("DELETE", "UNDELETE"):
        action = mapping.inbound.delete
        if member and action != "ignore" and not (change_type == "UNDELETE" and action == "delete"):
            symbol = "DELETE" if action == "delete" else "FLAG" if change_type == "DELETE" else "UNFLAG"
            flag = mapping.inbound.flag_field if action == "flag" else None
            decision.outputs.append(
                Output(member, "MemberDelete", {
                    **base, "inbound_id": inbound_id, "action": symbol, "flag_field": flag, "change_type": change_type,
                })
            )  # fmt: skip
        elif change_type == "DELETE":
            decision.drop("delete_ignored" if member else "unlinked")
        if change_type == "DELETE":
            decision.state = new if keep else None
            return decision

    converted = evaluate_inbound(mapping, values)
    if converted is None:
        decision.drop("filtered")
        decision.state = new if keep else None
        return decision
    fields = [f for f in mapping.inbound_fields() if field_value(values, f.sf) is not ABSENT]

    if not member:
        if mapping.inbound.unlinked == "import":
            carried = {f.paths[0]: converted.get(f.paths[0]) for f in fields}
            decision.outputs.append(
                Output(f"salesforce:{sobject}:{sf_id}", "ImportCandidate", {
                    **base, "inbound_id": inbound_id, "fields": carried, "salesforce_fields": dict(values),
                })
            )  # fmt: skip
        else:
            decision.drop("unlinked")
        return decision

    salesforce_at = millis(change["last_modified_date"]) or millis(change["system_modstamp"]) or 0
    updates: dict[str, FieldValue] = {}
    sf_updates: dict[str, FieldValue] = {}
    modstamp = millis(change["system_modstamp"]) or 0
    for fmap in fields:
        value = field_value(values, fmap.sf)
        if value is ABSENT:  # not among ``fields``
            continue
        written = field_entry(known["written"], fmap.sf)
        seen = field_entry(new["seen"], fmap.sf)
        seen_at = int(seen["at"] or 0) if seen is not None else -1
        seen_is_latest = seen is not None and (written is None or seen_at >= int(written["written_at"] or 0))
        if seen is not None and modstamp < seen_at:
            decision.drop("stale")  # a newer value of this field was seen already (a replay, or out of order)
            continue
        if seen_is_latest and seen is not None and same_value(seen["value"], value):
            if modstamp == seen_at and seen["sent"]:  # this very change again (a replay): send it again
                updates[fmap.paths[0]] = converted.get(fmap.paths[0])
                sf_updates[fmap.sf] = value
                decision.drop("replayed")
            else:
                decision.drop("unchanged")
            continue
        new["seen"][fmap.sf] = {"value": value, "at": modstamp, "sent": False}
        if seen is None and value in (None, "") and not _written_before(written, modstamp):
            decision.drop("empty")  # e.g. a field of a record sfsync created without it: nothing to tell
            continue
        if not seen_is_latest and written is not None and is_echo(written, value, modstamp):
            decision.drop("echo")
            continue
        if written is not None:
            policy = mapping.conflict_for(fmap)
            wins = salesforce_wins(policy, salesforce_at, written["product_at"])
            decision.conflicts.append((policy, "salesforce" if wins else "product"))
            if not wins:
                decision.drop(f"conflict:{policy}")
                continue
        new["seen"][fmap.sf]["sent"] = True
        updates[fmap.paths[0]] = converted.get(fmap.paths[0])
        sf_updates[fmap.sf] = value
    current: Links = {"salesforce:id": sf_id}
    for link in mapping.active_links():
        found = field_value(values, link.sf)
        if found is not ABSENT:
            current[f"salesforce:{link.name}"] = None if found in (None, "") else str(found)
    last = new.get("links_sent")
    link_update = links_update(new["links"], known["links"], current, base, f"{inbound_id}:links")
    if link_update is not None:
        new["links_sent"] = {"at": modstamp, "links": link_update["links"]}
    elif last and last["at"] == modstamp and last["links"]:  # this very change again (a replay): again
        link_update = {**base, "inbound_id": f"{inbound_id}:links", "links": dict(last["links"])}
    if link_update is not None:  # the link first: the product may need it to apply the update
        decision.outputs.append(Output(member, "MemberIdentityLink", link_update))
    if updates:
        decision.outputs.append(
            Output(member, "MemberFieldUpdate", {
                **base, "inbound_id": inbound_id, "fields": updates, "salesforce_fields": sf_updates,
            })
        )  # fmt: skip
        edited = sorted(f.sf for f in fields if f.sf in sf_updates and mapping.conflict_for(f) != "product_wins")
        key = known.get("key")
        if key and edited:  # the outbound record clock learns it: an older product value no longer wins
            decision.outputs.append(
                Output(key, "SalesforceEdit", {
                    "edit_id": inbound_id, "key": key, "mapping": mapping.name, "sobject": sobject,
                    "salesforce_id": sf_id, "fields": edited, "edited_at": salesforce_at,
                })
            )  # fmt: skip
    decision.state = new
    return decision
