"""The inbound rules: Salesforce changes in, what the product should apply out (pure, no Kafka).

Two inputs, two states per Salesforce record (JSON-able dicts; Faust tables keyed by Salesforce Id
in :mod:`sfsync.processors.inbound.app`, each written by one side only so that its changelog keeps one
record's states in order):

- :func:`apply_result` folds one ``sfsync.results`` WriteResult into the record's *written*
  state ``{"mapping", "sobject", "salesforce_id", "member_id", "workspace_id", "links",
  "acknowledged_at", "key", "written": {sf_field: {"value", "product_at", "written_at", "first_written_at",
  "earlier"}}}``: which member the record is
  (the mapping's member id field in the values written, or the write key when it is that field),
  and per field the value sfsync last wrote, the product time it comes from (the write's
  ``source.occurred_at``) and when Salesforce acknowledged it;
- :func:`decide` reads the written state and the record's *seen* state ``{"mapping",
  "member_id", "links", "seen": {sf_field: {"value", "at"}}}`` (what the inbound side last saw
  from Salesforce, at which SystemModstamp) and turns one ``salesforce.changes`` Change into
  ``product.members.inbound`` records (``MemberFieldUpdate``, ``MemberIdentityLink``,
  ``MemberDelete``, ``ImportCandidate``) and the new seen state.

The rules, per change:

1. *Mapping*: the one that wrote the record (from the results), else the first enabled member
   mapping targeting the object. Only mappings of the ``member`` entity alone feed this topic.
2. *Identity*: the member is the one the results name; failing that, the record's member id field
   (e.g. ``Member_Id__c``). Links (``salesforce:id`` and the mapping's ``inbound.links``) are sent
   when first seen and when they change.
3. *Deletes* follow ``inbound.delete``: ignore, ``FLAG`` (``UNFLAG`` on undelete), or ``DELETE``.
4. *Unlinked* records (no member) are ignored, or sent as import candidates
   (``inbound.unlinked: import``).
5. *Inbound filter*: a record the mapping's ``inbound_filter`` rejects sends nothing.
6. *Echo suppression*, per field: a value equal (:func:`same_value`, which knows Salesforce's
   JSON formats) to the latest known value is dropped — what was last seen from Salesforce, if
   seen (SystemModstamp) no earlier than sfsync's last write of the field was acknowledged, else
   what sfsync last wrote, or an earlier value sfsync wrote and Salesforce acknowledged at or after
   the change's SystemModstamp (:func:`is_echo`: the changes stream may run behind the results
   stream, so a change is judged after a later write's result). A change whose every field is
   dropped sends no update. An empty value of a field neither written by sfsync before the change
   nor seen before (a record sfsync created without that field) tells nothing: dropped as ``empty``.
   A field value older (SystemModstamp) than the one seen is dropped as stale; the very change
   seen last, seen again (Faust replays records after an aborted transaction, while its in-memory
   tables keep what the aborted attempt did), is sent again with the same ``inbound_id``, so a
   replay neither loses nor invents an update. Only ``to_product``/``both``
   fields count; others are ignored.
7. *Conflicts*, per field that sfsync wrote (the field's ``conflict``, else the mapping's):
   ``salesforce_wins`` applies the change; ``product_wins`` drops it (the product's value stands
   and its next change overwrites Salesforce); ``last_write_wins`` applies it only when the
   Salesforce time (LastModifiedDate, else SystemModstamp) is later than the product time of the
   value sfsync wrote — a tie goes to the product. A field sfsync never wrote has no conflict:
   the Salesforce value applies under every policy (``product_wins`` protects what the product
   set, not fields it never had).
8. *Both ways*: a delivered update of a record sfsync writes also gives a ``SalesforceEdit`` (keyed
   by the record's write key, for ``sfsync.salesforce_edits``): the outbound processor's record clock
   learns the edit's time, so a product event stamped before it, still in flight, does not
   overwrite it in Salesforce (:func:`sfsync.processors.outbound.plan.learn_salesforce_edit`).

Echo race (:func:`hold_until`, :func:`hold_wait_ms`): the poller may read sfsync's own write
before that write's WriteResult has reached the inbound processor; judged then, the echo would
look like a rep's edit. A change made by a user sfsync writes as (``writers``: configured, or
learned from echoes by :func:`echo_writer`) that no known result covers yet (no field
acknowledged at or after the change's SystemModstamp) is held until one does, or until
``polled_at + hold_ms`` has passed and the results stream has caught up with what it held when
the change was looked at (a backlog after a restart folds its results first), and only then
judged; never longer than ``hold_ms`` after it was first looked at. Held in vain (a flow running
as the integration user: no result ever covers it), it is judged by the same rules and
delivered: the bound costs latency, never a change.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Collection
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

from sfsync.mapping import Mapping, MappingFile, evaluate_inbound

__all__ = [
    "Decision",
    "Output",
    "apply_result",
    "decide",
    "echo_writer",
    "hold_until",
    "hold_wait_ms",
    "inbound_mapping",
    "is_echo",
    "member_mappings",
    "millis",
    "same_user",
    "same_value",
]

_ABSENT = object()
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


# ---------------------------------------------------------------------- values
def millis(value: Any) -> int | None:
    """Epoch milliseconds of a datetime (naive = UTC) or an int; None for None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    return int(value)


def _datetime_millis(text: str) -> int | None:
    found = _DATETIME.match(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    offset = dt.timedelta(0)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        offset = -offset if zone[0] == "-" else offset
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]), tzinfo=dt.UTC,
        ) - offset  # fmt: skip
    except ValueError:
        return None
    return millis(moment)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            found = float(value.strip())
        except ValueError:
            return None
        return found if math.isfinite(found) else None
    return None


def _canonical(value: Any) -> Any:
    """A comparable form of a Salesforce JSON value: empty text is null, datetimes are epoch ms in
    any notation (``Z``, ``+0000``, ``+00:00``, any fraction), numbers are floats, text is stripped
    with ``\\n`` line ends."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, dt.datetime):
        return ("datetime", millis(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).replace("\r\n", "\n").strip()
    if not text:
        return None
    moment = _datetime_millis(text)
    if moment is not None:
        return ("datetime", moment)
    return text


def same_value(sent: Any, returned: Any) -> bool:
    """Whether ``returned`` (as Salesforce gives it back) is the value sfsync ``sent``: same text,
    same instant whatever its notation, same number (``5``, ``5.0``, ``"5"``), ``""`` is null."""
    a, b = _canonical(sent), _canonical(returned)
    if a == b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        return False
    number_a = a[1] if isinstance(a, tuple) and a[0] == "number" else _number(a) if isinstance(a, str) else None
    number_b = b[1] if isinstance(b, tuple) and b[0] == "number" else _number(b) if isinstance(b, str) else None
    return number_a is not None and number_a == number_b


def _get(values: MappingABC[str, Any], name: str) -> Any:
    """A field's value by Salesforce name (case-insensitive, as Salesforce names are); ``_ABSENT``."""
    if name in values:
        return values[name]
    lowered = name.lower()
    return next((v for k, v in values.items() if k.lower() == lowered), _ABSENT)


# ---------------------------------------------------------------------- mappings
def member_mappings(mappings: MappingFile) -> list[Mapping]:
    """The enabled mappings that feed ``product.members.inbound``: those of the member entity alone."""
    return [m for m in mappings.enabled() if m.entities == ["member"]]


def inbound_mapping(mappings: MappingFile, sobject: str, name: str | None = None) -> Mapping | None:
    """The member mapping named ``name`` (the one that wrote the record), else the first that targets ``sobject``."""
    candidates = member_mappings(mappings)
    if name:
        found = next((m for m in candidates if m.name == name), None)
        if found is not None:
            return found
    return next((m for m in candidates if m.target.lower() == sobject.lower()), None)


# ---------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class Output:
    """One record for ``product.members.inbound``: its key, record type and Avro value (a dict)."""

    key: str
    record: str
    value: dict[str, Any]


@dataclass
class Decision:
    """What one change (or result) causes: records to send, the record's new state (None: keep
    none), and why fields were dropped (``echo``, ``unchanged``, ``conflict:<policy>``, ``filtered``...)."""

    outputs: list[Output] = field(default_factory=list)
    state: dict[str, Any] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    """(policy, winner: ``product`` | ``salesforce``) per field changed on both sides."""

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def _written_state(state: MappingABC[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"mapping": None, "sobject": None, "salesforce_id": None, "member_id": None,
                           "workspace_id": None, "links": {}, "written": {}}  # fmt: skip
    if state:
        out.update({k: v for k, v in state.items() if k not in ("links", "written")})
        out["links"], out["written"] = dict(state.get("links") or {}), dict(state.get("written") or {})
    return out


def _seen_state(state: MappingABC[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"mapping": None, "member_id": None, "links": {}, "seen": {}}
    if state:
        out.update({k: v for k, v in state.items() if k not in ("links", "seen")})
        out["links"], out["seen"] = dict(state.get("links") or {}), dict(state.get("seen") or {})
    return out


def _key_value(key: str, field_name: str) -> str | None:
    """The value of ``key`` (``<sobject>:<field>:<value>``) when its field is ``field_name``."""
    parts = key.split(":", 2)
    if len(parts) == 3 and parts[1].lower() == field_name.lower() and parts[2]:
        return parts[2]
    return None


def _links_output(
    remember: dict[str, Any],
    known: MappingABC[str, Any],
    current: MappingABC[str, str | None],
    base: dict[str, Any],
    inbound_id: str,
) -> Output | None:
    """A MemberIdentityLink with the links that differ from ``known`` (remembered in ``remember``)."""
    sent = {**known, **remember}
    changed = {name: value for name, value in current.items() if name not in sent or sent[name] != value}
    changed = {n: v for n, v in changed.items() if v is not None or n in sent}  # null only removes a known link
    if not changed or not base.get("member_id"):
        return None
    remember.update(changed)
    return Output(str(base["member_id"]), "MemberIdentityLink", {**base, "inbound_id": inbound_id, "links": changed})


# ---------------------------------------------------------------------- results
def apply_result(state: MappingABC[str, Any] | None, result: MappingABC[str, Any], mappings: MappingFile) -> Decision:
    """Fold one WriteResult into its record's written state; sends ``salesforce:id`` when a member's
    record is first known (or moves, e.g. a converted Lead). ``state`` None: nothing known yet.

    Results of mappings that do not feed the members' inbound topic change nothing (state None)."""
    mapping = inbound_mapping(mappings, str(result.get("sobject") or ""), str(result.get("mapping") or ""))
    decision = Decision()
    if mapping is None or mapping.name != result.get("mapping"):
        decision.drop("not_inbound")
        return decision
    new = _written_state(state)
    values: MappingABC[str, Any] = result.get("fields") or {}
    member_field = mapping.member_id_field()
    if member_field:
        member = _get(values, member_field)
        if member is _ABSENT or member in (None, ""):
            member = _key_value(str(result.get("key") or ""), member_field)
        if member not in (None, "", _ABSENT):
            new["member_id"] = str(member)
    source: MappingABC[str, Any] = result.get("source") or {}
    product_at = millis(source.get("occurred_at"))
    written_at = millis(result.get("acknowledged_at"))
    for name, value in values.items():
        before = _entry(new["written"], name)
        if before is not None and int(before.get("written_at") or 0) > (written_at or 0):
            decision.drop("stale")  # a later write of this field is known (a replay, or out of order)
            continue
        new["written"][name] = {
            "value": value,
            "product_at": product_at,
            "written_at": written_at,
            "first_written_at": written_at
            if before is None
            else before.get("first_written_at", before.get("written_at")),
            "earlier": _earlier_values(before, written_at),
        }
    if written_at is not None:  # a write of no field still touches the record (and its SystemModstamp)
        if written_at >= int(new.get("acknowledged_at") or 0) and result.get("key"):
            new["key"] = str(result["key"])  # the record's write key, for SalesforceEdit
        new["acknowledged_at"] = max(int(new.get("acknowledged_at") or 0), written_at)
    sf_id = str(result.get("salesforce_id") or "")
    new.update(mapping=mapping.name, sobject=result.get("sobject"), workspace_id=result.get("workspace_id"))
    new["salesforce_id"] = sf_id
    decision.state = new
    if new["member_id"] and sf_id:
        base = _base(new, mapping.name, str(result.get("sobject")), sf_id, written_at, None, None)
        link_id = f"{result.get('write_id')}:links"
        link = _links_output(new["links"], {}, {"salesforce:id": sf_id}, base, link_id)
        if link is not None:
            new["links_sent_by"] = link_id
        elif new.get("links_sent_by") == link_id:  # this very result again (a replay): send the link again
            link = Output(str(new["member_id"]), "MemberIdentityLink", {**base, "inbound_id": link_id,
                          "links": {"salesforce:id": sf_id}})  # fmt: skip
        if link is not None:
            decision.outputs.append(link)
    return decision


ECHO_HISTORY = 4
"""How many earlier values sfsync wrote to a field are kept beside the last one (see :func:`is_echo`)."""
ECHO_HISTORY_MS = 10 * 60 * 1000
"""...and for how long (before the last write's acknowledgement): a change older than that is not an echo."""


def _earlier_values(before: MappingABC[str, Any] | None, written_at: int | None) -> list[dict[str, Any]]:
    """The field's recent earlier writes ``[{"value", "written_at"}]``, newest first, bounded."""
    if before is None:
        return []
    horizon = (written_at or 0) - ECHO_HISTORY_MS
    entries = [{"value": before.get("value"), "written_at": before.get("written_at")}, *(before.get("earlier") or [])]
    return [e for e in entries if int(e.get("written_at") or 0) >= horizon][:ECHO_HISTORY]


def _written_before(written: MappingABC[str, Any] | None, modstamp: int) -> bool:
    """Whether sfsync's first known write of the field was acknowledged before ``modstamp``."""
    if written is None:
        return False
    first = written.get("first_written_at", written.get("written_at"))
    return first is not None and int(first) < modstamp


def is_echo(written: MappingABC[str, Any], value: Any, modstamp: int) -> bool:
    """Whether a field value Salesforce shows at ``modstamp`` is what sfsync wrote: the value it last
    wrote, or an earlier value of a write acknowledged at or after ``modstamp`` (that write's own
    echo, read by the poller before sfsync's next write of the field; judged after the next write's
    result was folded in, e.g. when the changes stream runs behind the results stream)."""
    if same_value(written.get("value"), value):
        return True
    return any(
        int(e.get("written_at") or 0) >= modstamp and same_value(e.get("value"), value)
        for e in written.get("earlier") or ()
        if isinstance(e, MappingABC)
    )


def _base(
    state: MappingABC[str, Any],
    mapping: str,
    sobject: str,
    sf_id: str,
    modstamp: Any,
    last_modified: Any,
    modified_by: str | None,
) -> dict[str, Any]:
    return {
        "member_id": state.get("member_id"),
        "workspace_id": state.get("workspace_id"),
        "mapping": mapping,
        "sobject": sobject,
        "salesforce_id": sf_id,
        "system_modstamp": modstamp,
        "last_modified_date": last_modified,
        "last_modified_by_id": modified_by,
    }


# ---------------------------------------------------------------------- changes
def decide(
    written_state: MappingABC[str, Any] | None,
    seen_state: MappingABC[str, Any] | None,
    change: MappingABC[str, Any],
    mappings: MappingFile,
) -> Decision:
    """What one Salesforce change means for the product (see the module doc for the rules).

    ``change`` is a decoded ``sfsync.inbound.Change``; ``written_state`` what the results taught
    about the record and ``seen_state`` what earlier changes did (None: nothing). The decision's
    ``state`` is the new seen state (None: keep none). Raises
    :class:`~sfsync.mapping.MappingEvaluationError` when the inbound filter fails on the record (a
    skippable record error)."""
    decision = Decision()
    sobject, sf_id = str(change["sobject"]), str(change["id"])
    known = _written_state(written_state)
    mapping = inbound_mapping(mappings, sobject, known["mapping"] or (seen_state or {}).get("mapping"))
    if mapping is None:
        decision.drop("no_mapping")
        return decision
    new = _seen_state(seen_state)
    values: MappingABC[str, Any] = change.get("fields") or {}
    member = known["member_id"] or new["member_id"]
    if not member:
        member_field = mapping.member_id_field()
        found = _get(values, member_field) if member_field else _ABSENT
        if found not in (_ABSENT, None, ""):
            member = new["member_id"] = str(found)
    new["mapping"] = mapping.name
    change_type = str(change.get("change_type") or "UPDATE")
    inbound_id = f"{change['change_id']}:{mapping.name}"
    base = _base(
        {"member_id": member, "workspace_id": known["workspace_id"]}, mapping.name, sobject, sf_id,
        change["system_modstamp"], change.get("last_modified_date"), change.get("last_modified_by_id"),
    )  # fmt: skip
    keep = bool(member) or seen_state is not None

    if change_type in ("DELETE", "UNDELETE"):
        action = mapping.inbound.delete
        if member and action != "ignore" and not (change_type == "UNDELETE" and action == "delete"):
            symbol = "DELETE" if action == "delete" else "FLAG" if change_type == "DELETE" else "UNFLAG"
            flag = mapping.inbound.flag_field if action == "flag" else None
            decision.outputs.append(
                Output(str(member), "MemberDelete", {
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
    fields = [f for f in mapping.inbound_fields() if _get(values, f.sf) is not _ABSENT]

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

    salesforce_at = millis(change.get("last_modified_date")) or millis(change["system_modstamp"]) or 0
    updates: dict[str, Any] = {}
    sf_updates: dict[str, Any] = {}
    modstamp = millis(change["system_modstamp"]) or 0
    for fmap in fields:
        value = _get(values, fmap.sf)
        written = _entry(known["written"], fmap.sf)
        seen = _entry(new["seen"], fmap.sf)
        seen_at = int(seen.get("at") or 0) if seen is not None else -1
        seen_is_latest = seen is not None and (written is None or seen_at >= int(written.get("written_at") or 0))
        if seen is not None and modstamp < seen_at:
            decision.drop("stale")  # a newer value of this field was seen already (a replay, or out of order)
            continue
        if seen_is_latest and seen is not None and same_value(seen.get("value"), value):
            if modstamp == seen_at and seen.get("sent"):  # this very change again (a replay): send it again
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
            product_at = written.get("product_at")
            wins = policy == "salesforce_wins" or (
                policy == "last_write_wins" and (product_at is None or salesforce_at > int(product_at))
            )
            decision.conflicts.append((policy, "salesforce" if wins else "product"))
            if not wins:
                decision.drop(f"conflict:{policy}")
                continue
        new["seen"][fmap.sf]["sent"] = True
        updates[fmap.paths[0]] = converted.get(fmap.paths[0])
        sf_updates[fmap.sf] = value
    current: dict[str, str | None] = {"salesforce:id": sf_id}
    for link in mapping.active_links():
        found = _get(values, link.sf)
        if found is not _ABSENT:
            current[f"salesforce:{link.name}"] = None if found in (None, "") else str(found)
    last = new.get("links_sent") or {}
    link_output = _links_output(new["links"], known["links"], current, base, f"{inbound_id}:links")
    if link_output is not None:
        new["links_sent"] = {"at": modstamp, "links": link_output.value["links"]}
    elif last.get("at") == modstamp and last.get("links"):  # this very change again (a replay): send its links again
        link_output = Output(str(member), "MemberIdentityLink", {
            **base, "inbound_id": f"{inbound_id}:links", "links": dict(last["links"]),
        })  # fmt: skip
    if link_output is not None:  # the link first: the product may need it to apply the update
        decision.outputs.append(link_output)
    if updates:
        decision.outputs.append(
            Output(str(member), "MemberFieldUpdate", {
                **base, "inbound_id": inbound_id, "fields": updates, "salesforce_fields": sf_updates,
            })
        )  # fmt: skip
        edited = sorted(f.sf for f in fields if f.sf in sf_updates and mapping.conflict_for(f) != "product_wins")
        if known.get("key") and edited:  # the outbound record clock learns it: an older product value no longer wins
            decision.outputs.append(
                Output(str(known["key"]), "SalesforceEdit", {
                    "edit_id": inbound_id, "key": known["key"], "mapping": mapping.name, "sobject": sobject,
                    "salesforce_id": sf_id, "fields": edited, "edited_at": salesforce_at,
                })
            )  # fmt: skip
    decision.state = new
    return decision


def _entry(entries: MappingABC[str, Any], name: str) -> MappingABC[str, Any] | None:
    found = _get(entries, name)
    return found if isinstance(found, MappingABC) else None


# ---------------------------------------------------------------------- the echo race
def same_user(user_id: str | None, users: Collection[str]) -> bool:
    """Whether ``user_id`` is one of ``users`` (Salesforce Ids: 15 and 18 characters compare on the first 15)."""
    if not user_id:
        return False
    short = user_id[:15]
    return any(u[:15] == short for u in users if u)


def acknowledged_until(written_state: MappingABC[str, Any] | None) -> int | None:
    """The latest time (epoch ms) a result of the record was acknowledged; None: no result known."""
    entries = (written_state or {}).get("written") or {}
    times = [int(e.get("written_at") or 0) for e in entries.values() if isinstance(e, MappingABC)]
    if (written_state or {}).get("acknowledged_at") is not None:
        times.append(int((written_state or {})["acknowledged_at"]))
    return max(times) if times else None


def hold_until(
    written_state: MappingABC[str, Any] | None,
    change: MappingABC[str, Any],
    writers: Collection[str],
    hold_ms: int,
    mappings: MappingFile,
) -> int | None:
    """Until when (epoch ms) to hold ``change`` before :func:`decide` judges it; None: judge it now.

    Held: a change (not a delete) whose ``last_modified_by_id`` is one of ``writers`` (the users
    sfsync writes as) while no WriteResult of the record was acknowledged at or after its
    SystemModstamp: it may be sfsync's own write whose result is still on its way. The bound is
    ``polled_at + hold_ms`` (a replayed change long past it is judged at once). ``hold_ms`` 0 or no
    writers: never held. Nor is a change of an object no member mapping reads back (e.g. a Campaign):
    no result would ever cover it, and :func:`decide` drops it anyway."""
    if hold_ms <= 0 or not same_user(change.get("last_modified_by_id"), writers):
        return None
    known = (written_state or {}).get("mapping")
    if inbound_mapping(mappings, str(change.get("sobject") or ""), str(known) if known else None) is None:
        return None
    if str(change.get("change_type") or "UPDATE") == "DELETE":
        return None
    modstamp = millis(change.get("system_modstamp")) or 0
    acknowledged = acknowledged_until(written_state)
    if acknowledged is not None and acknowledged >= modstamp:
        return None
    polled = millis(change.get("polled_at")) or modstamp
    return polled + hold_ms


HOLD_RECHECK_MS = 200
"""How often a held change past its deadline looks again whether the results stream caught up."""


def hold_wait_ms(
    deadline_ms: int | None, now_ms: int, first_seen_ms: int, hold_ms: int, results_caught_up: bool
) -> int | None:
    """How long a held change waits before it is looked at again (None: judge it now).

    Until ``deadline_ms`` (:func:`hold_until`; None: not held, or covered by a result now) it
    waits for its result. Past it (a replay, or a backlog read after a restart) it waits only
    until the results stream has caught up with the results that existed when it looked
    (``results_caught_up``), so a result already in Kafka is folded first; never beyond
    ``first_seen_ms + hold_ms``."""
    if deadline_ms is None:
        return None
    cap = first_seen_ms + hold_ms
    if now_ms >= cap:
        return None
    if now_ms < deadline_ms:
        return min(deadline_ms, cap) - now_ms
    return None if results_caught_up else min(HOLD_RECHECK_MS, cap - now_ms)


def echo_writer(
    written_state: MappingABC[str, Any] | None, change: MappingABC[str, Any], decision: Decision
) -> str | None:
    """The user a judged change shows sfsync writes as, or None: the change was an echo (every
    field dropped as ``echo`` or ``unchanged``) of a write acknowledged at or after its SystemModstamp,
    i.e. the write itself. A rep who re-types the same value after sfsync's write changes the
    record later than the acknowledgement, so is not taken for sfsync."""
    user = change.get("last_modified_by_id")
    if not user or not decision.dropped.get("echo") or set(decision.dropped) - {"echo", "unchanged"}:
        return None  # a field that differs (sent, or lost a conflict) is somebody's edit
    if decision.conflicts or any(o.record == "MemberFieldUpdate" for o in decision.outputs):
        return None
    acknowledged = acknowledged_until(written_state)
    modstamp = millis(change.get("system_modstamp")) or 0
    return str(user) if acknowledged is not None and acknowledged >= modstamp else None
