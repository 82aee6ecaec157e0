"""sfsync's own writes read back from Salesforce: echoes, and the hold that waits for their results (pure).

*Echo*, per field (:func:`is_echo`): a value Salesforce shows at a SystemModstamp is sfsync's own
when it equals (:func:`~sfsync.processors.inbound.values.same_value`) the value sfsync last wrote,
or an earlier value sfsync wrote and Salesforce acknowledged at or after that SystemModstamp: the
changes stream may run behind the results stream, so a change can be judged after a later write's
result was folded in. The written state keeps :data:`ECHO_HISTORY` earlier values per field, none
acknowledged more than :data:`ECHO_HISTORY_MS` before the latest (:func:`earlier_writes`).
:func:`~sfsync.processors.inbound.decide.decide` drops echoes, unless what was last seen from
Salesforce is newer than sfsync's last write of the field.

*Echo hold* (:func:`hold_until`, :func:`hold_wait_ms`): the poller may read sfsync's own write
before that write's WriteResult has reached the inbound processor; judged then, the echo would
look like a rep's edit. A change made by a user sfsync writes as (``writers``: configured, or
learned from echoes by :func:`echo_writer`) that no known result covers yet (no field
acknowledged at or after the change's SystemModstamp) is held until one does, or until
``polled_at + hold_ms`` has passed and the results stream has caught up with what it held when
the change was looked at (a backlog after a restart folds its results first), and only then
judged; never longer than ``hold_ms`` for its result, nor than the catch-up bound for the results
stream, after it was first looked at. Held in vain (a flow running
as the integration user: no result ever covers it), it is judged by the same rules and
delivered: the bound costs latency, never a change (docs/decisions/0004-inbound-echo-hold.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sfsync.mapping import MappingFile
from sfsync.processors.inbound.mappings import inbound_mapping
from sfsync.processors.inbound.state import (
    Change,
    Decision,
    EarlierWrite,
    FieldValue,
    SeenState,
    WrittenField,
    WrittenState,
)
from sfsync.processors.inbound.values import millis, same_value

__all__ = [
    "ECHO_HISTORY",
    "ECHO_HISTORY_MS",
    "HOLD_RECHECK_MS",
    "acknowledged_until",
    "earlier_writes",
    "echo_writer",
    "hold_until",
    "hold_wait_ms",
    "is_echo",
    "same_user",
]

ECHO_HISTORY = 4
"""How many earlier values sfsync wrote to a field are kept beside the last one (see :func:`is_echo`)."""
ECHO_HISTORY_MS = 10 * 60 * 1000
"""...and for how long (before the last write's acknowledgement): a change older than that is not an echo."""
HOLD_RECHECK_MS = 200
"""How often a held change past its deadline looks again whether the results stream caught up."""


# ---------------------------------------------------------------------- echoes
def earlier_writes(before: WrittenField | None, written_at: int | None) -> list[EarlierWrite]:
    """The earlier writes to keep beside a new write acknowledged at ``written_at``: ``before`` (the
    field's entry until now) and its own earlier writes, newest first, bounded in number
    (:data:`ECHO_HISTORY`) and age (:data:`ECHO_HISTORY_MS`)."""
    if before is None:
        return []
    horizon = (written_at or 0) - ECHO_HISTORY_MS
    entries: list[EarlierWrite] = [
        {"value": before["value"], "written_at": before["written_at"]},
        *(before.get("earlier") or []),
    ]
    return [e for e in entries if int(e["written_at"] or 0) >= horizon][:ECHO_HISTORY]


def is_echo(written: WrittenField, value: FieldValue, modstamp: int) -> bool:
    """Whether a field value Salesforce shows at ``modstamp`` is what sfsync wrote: the value it last
    wrote, or an earlier value of a write acknowledged at or after ``modstamp`` (that write's own
    echo, read by the poller before sfsync's next write of the field; judged after the next write's
    result was folded in, e.g. when the changes stream runs behind the results stream)."""
    if same_value(written["value"], value):
        return True
    return any(
        int(e["written_at"] or 0) >= modstamp and same_value(e["value"], value)
        for e in written.get("earlier") or ()
        if isinstance(e, Mapping)
    )


# ---------------------------------------------------------------------- the echo hold
def same_user(user_id: str | None, users: Collection[str]) -> bool:
    """Whether ``user_id`` is one of ``users`` (Salesforce Ids: 15 and 18 characters compare on the first 15)."""
    if not user_id:
        return False
    short = user_id[:15]
    return any(u[:15] == short for u in users if u)


def acknowledged_until(written_state: WrittenState | None) -> int | None:
    """The latest time (epoch ms) a result of the record was acknowledged; None: no result known."""
    if not written_state:
        return None
    entries = written_state["written"] or {}
    times = [int(e["written_at"] or 0) for e in entries.values() if isinstance(e, Mapping)]
    acknowledged = written_state.get("acknowledged_at")
    if acknowledged is not None:
        times.append(int(acknowledged))
    return max(times) if times else None


def hold_until(
    written_state: WrittenState | None,
    change: Change,
    writers: Collection[str],
    hold_ms: int,
    mappings: MappingFile,
) -> int | None:
    """Until when (epoch ms) to hold ``change`` before :func:`~sfsync.processors.inbound.decide.decide`
    judges it; None: judge it now.

    Held: a change (not a delete) whose ``last_modified_by_id`` is one of ``writers`` (the users
    sfsync writes as) while no WriteResult of the record was acknowledged at or after its
    SystemModstamp: it may be sfsync's own write whose result is still on its way. The bound is
    ``polled_at + hold_ms`` (a replayed change long past it is judged at once). ``hold_ms`` 0 or no
    writers: never held. Nor is a change of an object no member mapping reads back (e.g. a Campaign):
    no result would ever cover it, and :func:`~sfsync.processors.inbound.decide.decide` drops it anyway."""
    if hold_ms <= 0 or not same_user(change["last_modified_by_id"], writers):
        return None
    known = written_state["mapping"] if written_state else None
    if inbound_mapping(mappings, change["sobject"] or "", known or None) is None:
        return None
    if (change["change_type"] or "UPDATE") == "DELETE":
        return None
    modstamp = millis(change["system_modstamp"]) or 0
    acknowledged = acknowledged_until(written_state)
    if acknowledged is not None and acknowledged >= modstamp:
        return None
    polled = millis(change["polled_at"]) or modstamp
    return polled + hold_ms


def hold_wait_ms(
    deadline_ms: int | None,
    now_ms: int,
    first_seen_ms: int,
    hold_ms: int,
    results_caught_up: bool,
    catch_up_ms: int = 0,
) -> int | None:
    """How long a held change waits before it is looked at again (None: judge it now).

    Until ``deadline_ms`` (:func:`hold_until`; None: not held, or covered by a result now), and at
    most ``hold_ms`` after it was first looked at, it waits for its result. Past its deadline (a
    replay, a backlog read after a restart, or a results stream running behind) it waits until the
    results stream has caught up with the results that existed when it looked
    (``results_caught_up``), so a result already in Kafka is folded before the change is judged;
    never beyond ``first_seen_ms + max(hold_ms, catch_up_ms)``."""
    if deadline_ms is None:
        return None
    if now_ms < deadline_ms:
        cap = first_seen_ms + hold_ms
        return None if now_ms >= cap else min(deadline_ms, cap) - now_ms
    cap = first_seen_ms + max(hold_ms, catch_up_ms)
    if results_caught_up or now_ms >= cap:
        return None
    return min(HOLD_RECHECK_MS, cap - now_ms)


def echo_writer(written_state: WrittenState | None, change: Change, decision: Decision[SeenState]) -> str | None:
    """The user a judged change shows sfsync writes as, or None: the change was an echo (every
    field dropped as ``echo`` or ``unchanged``) of a write acknowledged at or after its SystemModstamp,
    i.e. the write itself. A rep who re-types the same value after sfsync's write changes the
    record later than the acknowledgement, so is not taken for sfsync."""
    user = change["last_modified_by_id"]
    if not user or not decision.dropped.get("echo") or set(decision.dropped) - {"echo", "unchanged"}:
        return None  # a field that differs (sent, or lost a conflict) is somebody's edit
    if decision.conflicts or any(o.record == "MemberFieldUpdate" for o in decision.outputs):
        return None
    acknowledged = acknowledged_until(written_state)
    modstamp = millis(change["system_modstamp"]) or 0
    return str(user) if acknowledged is not None and acknowledged >= modstamp else None
