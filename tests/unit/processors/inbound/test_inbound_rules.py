"""The inbound rules (processors/inbound/: decide, echo, identity, values), without Kafka: echo suppression,
conflicts in both orders, direction, identity and links, delete policy, unlinked records, the inbound filter."""

from __future__ import annotations

import datetime as dt
import textwrap
from typing import Any

import pytest

from sfsync.mapping import MappingEvaluationError, MappingFile, parse_mappings
from sfsync.processors.inbound.decide import decide
from sfsync.processors.inbound.echo import echo_writer, hold_until, hold_wait_ms, same_user
from sfsync.processors.inbound.identity import apply_result
from sfsync.processors.inbound.values import same_value
from tests.kit import fill, mappings_from

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
SF_ID = "003000000000001AAA"

MAPPINGS = """
version: 1
mappings:
  - name: members
    entity: member
    target: Contact
    match: [{field: Email, from: member.email}]
    conflict: {conflict}
    inbound_filter: "!has(record.Do_Not_Sync__c) || record.Do_Not_Sync__c != true"
    inbound:
      delete: {delete}
      flag_field: member.salesforce_deleted
      unlinked: {unlinked}
      links:
        - {{name: account_id, sf: AccountId}}
        - {{name: owner_id, sf: OwnerId}}
    fields:
      - {{sf: FirstName, from: member.first_name, direction: both}}
      - {{sf: Title, from: member.title, direction: both}}
      - {{sf: Email, from: member.email}}
      - {{sf: Member_Id__c, from: member.member_id}}
      - {{sf: Birthdate, from: member.birthdate, direction: both}}
      - {{sf: Score__c, from: member.score, direction: both}}
      - {{sf: Department, from: member.department, direction: to_product}}
      - {{sf: Level__c, from: member.member_type, direction: both, value_map: {{GUEST: Guest, STANDARD: Standard}}}}
      - {{sf: Nickname__c, from: member.nickname, direction: both, conflict: salesforce_wins}}
  - name: activities
    entity: [member, attendance]
    target: Task
    match: [{{field: Subject, from: event_id}}]
    fields:
      - {{sf: Subject, from: event_id, direction: both}}
"""


def mappings(conflict: str = "last_write_wins", delete: str = "ignore", unlinked: str = "ignore") -> MappingFile:
    return mappings_from(fill(MAPPINGS, conflict=conflict, delete=delete, unlinked=unlinked))


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def result(fields: dict[str, Any], *, at: dt.datetime = T0, key: str = "w-1|Contact:Email:ada@example.com", **kw: Any):
    return {
        "write_id": kw.get("write_id", "e-1:members:0"),
        "key": key,
        "mapping": kw.get("mapping", "members"),
        "sobject": "Contact",
        "salesforce_id": kw.get("salesforce_id", SF_ID),
        "created": True,
        "fields": fields,
        "acknowledged_at": at + dt.timedelta(seconds=1),
        "workspace_id": "w-1",
        "source": {
            "topic": "product.members", "partition": 0, "offset": 1, "event_id": "e-1",
            "event_type": "UserProfileUpdate", "occurred_at": at,
        },
    }  # fmt: skip


def change(fields: dict[str, Any], *, at: dt.datetime = T0, change_type: str = "UPDATE", sf_id: str = SF_ID, **kw):
    return {
        "change_id": f"Contact:{sf_id}:{ms(at)}",
        "sobject": kw.get("sobject", "Contact"),
        "id": sf_id,
        "change_type": change_type,
        "fields": fields,
        "system_modstamp": at,
        "last_modified_date": kw.get("last_modified", at),
        "last_modified_by_id": "005000000000009AAA",
        "polled_at": at + dt.timedelta(seconds=1),
    }


WRITTEN = {"FirstName": "Ada", "Title": "Engineer", "Email": "ada@example.com", "Member_Id__c": "u-1"}


def written_state(m: MappingFile, fields: dict[str, Any] | None = None, at: dt.datetime = T0) -> dict[str, Any]:
    decision = apply_result(None, result(fields or WRITTEN, at=at), m)
    assert decision.state is not None
    return decision.state


def updates(decision) -> list[dict[str, Any]]:
    return [o.value for o in decision.outputs if o.record == "MemberFieldUpdate"]


def links(decision) -> list[dict[str, Any]]:
    return [o.value["links"] for o in decision.outputs if o.record == "MemberIdentityLink"]


# ---------------------------------------------------------------------- value normalisation
@pytest.mark.parametrize(
    ("sent", "returned"),
    [
        ("2026-03-01T09:30:00.000Z", "2026-03-01T09:30:00.000+0000"),
        ("2026-03-01T10:30:00+01:00", "2026-03-01T09:30:00.000+0000"),
        ("2026-03-01T09:30:00.123456Z", "2026-03-01T09:30:00.123+0000"),
        ("2026-03-01", "2026-03-01"),
        (5, 5.0),
        ("5", 5.0),
        (12.5, "12.50"),
        ("", None),
        ("line one\r\nline two ", "line one\nline two"),
        (True, True),
    ],
)
def test_same_value_knows_salesforce_json_formats(sent: Any, returned: Any) -> None:
    assert same_value(sent, returned)


@pytest.mark.parametrize(
    ("sent", "returned"),
    [
        ("2026-03-01T09:30:00.000Z", "2026-03-01T09:30:01.000+0000"),
        (5, 6),
        ("Ada", "ada"),
        (True, False),
        (None, "x"),
        ("1", True),
        ("2026-03-01", "2026-03-02"),
    ],
)
def test_different_values_are_different(sent: Any, returned: Any) -> None:
    assert not same_value(sent, returned)


# ---------------------------------------------------------------------- echo suppression
def test_a_change_equal_to_what_sfsync_wrote_is_an_echo() -> None:
    m = mappings()
    state = written_state(m, {**WRITTEN, "Birthdate": "1815-12-10", "Score__c": 5})
    echo = {**WRITTEN, "Birthdate": "1815-12-10", "Score__c": 5.0}
    decision = decide(state, None, change(echo, at=T0 + dt.timedelta(seconds=2)), m)
    assert updates(decision) == []
    assert decision.dropped["echo"] == 4  # FirstName, Title, Birthdate, Score__c (Email: not inbound)


def test_only_the_fields_that_differ_are_kept() -> None:
    m = mappings()
    state = written_state(m)
    decision = decide(state, None, change({**WRITTEN, "Title": "Countess"}, at=T0 + dt.timedelta(minutes=5)), m)
    (update,) = updates(decision)
    assert update["fields"] == {"member.title": "Countess"}
    assert update["salesforce_fields"] == {"Title": "Countess"}
    assert update["member_id"] == "u-1" and update["workspace_id"] == "w-1"
    assert decision.dropped["echo"] == 1  # FirstName


def test_a_value_seen_before_is_not_sent_again_but_a_later_write_resets_it() -> None:
    m = mappings()
    later = T0 + dt.timedelta(minutes=5)
    written = written_state(m)
    first = decide(written, None, change({**WRITTEN, "Title": "Countess"}, at=later), m)
    assert updates(first)
    again = decide(
        written, first.state, change({**WRITTEN, "Title": "Countess"}, at=later + dt.timedelta(seconds=1)), m
    )
    assert updates(again) == [] and again.dropped["unchanged"] >= 1
    # sfsync writes Engineer again, later; the echo is dropped, a rep's Countess after it is news again
    rewritten = apply_result(written, result({"Title": "Engineer"}, at=later + dt.timedelta(minutes=1)), m).state
    echo = decide(
        rewritten, again.state, change({**WRITTEN, "Title": "Engineer"}, at=later + dt.timedelta(minutes=2)), m
    )
    assert updates(echo) == []
    news = decide(
        rewritten, echo.state, change({**WRITTEN, "Title": "Countess"}, at=later + dt.timedelta(minutes=3)), m
    )
    assert [u["fields"] for u in updates(news)] == [{"member.title": "Countess"}]


def test_an_echo_of_an_earlier_write_judged_after_the_next_write_is_folded_is_still_an_echo() -> None:
    """The demo's leak: sfsync writes Title "Engineer" (acknowledged T0+1 s), the poller reads it back
    (modstamp T0+0.5 s), sfsync writes "Architect" (acknowledged T0+4 s); the changes stream runs
    behind the results stream, so the first change is judged against "Architect"."""
    m = mappings()
    first = written_state(m)  # Engineer, acknowledged T0 + 1 s
    second = apply_result(first, result({"Title": "Architect"}, at=T0 + dt.timedelta(seconds=3)), m).state
    old_echo = decide(second, None, change(dict(WRITTEN), at=T0 + dt.timedelta(milliseconds=500)), m)
    assert updates(old_echo) == [] and old_echo.dropped["echo"] == 2  # FirstName, Title
    new_echo = decide(
        second, old_echo.state, change({**WRITTEN, "Title": "Architect"}, at=T0 + dt.timedelta(seconds=3.5)), m
    )
    assert updates(new_echo) == []
    # a rep who sets the earlier value back after sfsync's later write is not an echo: delivered
    rep = decide(second, new_echo.state, change({**WRITTEN, "Title": "Engineer"}, at=T0 + dt.timedelta(minutes=1)), m)
    assert [u["fields"] for u in updates(rep)] == [{"member.title": "Engineer"}]
    # nor is a value from a write acknowledged before the change (the change shows a rep's edit)
    late = decide(first, None, change({**WRITTEN, "Title": "Engineer"}, at=T0 + dt.timedelta(seconds=2)), m)
    assert updates(late) == []  # equal to the last write: an echo whatever its time


def test_empty_fields_of_a_record_sfsync_created_without_them_send_nothing_in_time_or_late() -> None:
    """The demo's other leak: a registration creates the Contact with name and email only; its CREATE
    shows Title and MailingCity null. Judged before or after sfsync's later write of Title, nothing goes out."""
    m = mappings()
    created = written_state(m, {"FirstName": "Ada", "Email": "ada@example.com", "Member_Id__c": "u-1"})
    create = change({"FirstName": "Ada", "Title": None, "Department": None}, at=T0 + dt.timedelta(milliseconds=500))
    in_time = decide(created, None, create, m)
    assert updates(in_time) == [] and in_time.dropped["empty"] == 2
    later = apply_result(created, result({"Title": "Engineer"}, at=T0 + dt.timedelta(seconds=3)), m).state
    late = decide(later, None, create, m)
    assert updates(late) == [] and late.dropped["empty"] == 2
    # a rep clearing a value seen before, or a value sfsync wrote before the change, is news
    rep_clears = decide(later, None, change({"Title": None}, at=T0 + dt.timedelta(minutes=1)), m)
    assert [u["fields"] for u in updates(rep_clears)] == [{"member.title": None}]


def test_a_result_that_wrote_no_field_still_covers_the_change_it_caused() -> None:
    m = mappings()
    first = written_state(m)  # acknowledged T0 + 1 s
    touch = apply_result(first, result({}, at=T0 + dt.timedelta(seconds=9)), m).state  # acknowledged T0 + 10 s
    echo = by(WRITER, dict(WRITTEN), T0 + dt.timedelta(seconds=9, milliseconds=500))
    assert hold_until(first, echo, {WRITER}, 30_000, m) is not None
    assert hold_until(touch, echo, {WRITER}, 30_000, m) is None
    assert updates(decide(touch, None, echo, m)) == []


def test_the_earlier_values_kept_per_field_are_bounded_in_number_and_age() -> None:
    m = mappings()
    state = written_state(m)
    for n in range(1, 10):
        state = apply_result(state, result({"Title": f"T{n}"}, at=T0 + dt.timedelta(seconds=n)), m).state
    earlier = state["written"]["Title"]["earlier"]
    assert [e["value"] for e in earlier] == ["T8", "T7", "T6", "T5"]
    much_later = apply_result(state, result({"Title": "Now"}, at=T0 + dt.timedelta(hours=1)), m).state
    assert [e["value"] for e in much_later["written"]["Title"]["earlier"]] == []  # all older than 10 minutes


def edits(decision) -> list[tuple[str, dict[str, Any]]]:
    return [(o.key, o.value) for o in decision.outputs if o.record == "SalesforceEdit"]


def test_a_delivered_edit_tells_the_outbound_record_clock_its_time() -> None:
    m = mappings()
    state = written_state(m)
    rep_at = T0 + dt.timedelta(minutes=5)
    decision = decide(state, None, change({**WRITTEN, "Title": "Countess", "Department": "R&D"}, at=rep_at), m)
    ((key, edit),) = edits(decision)
    assert key == edit["key"] == "w-1|Contact:Email:ada@example.com"  # the record's write key: its clock's key
    assert edit["fields"] == ["Department", "Title"] and edit["edited_at"] == ms(rep_at)
    assert edit["edit_id"] == updates(decision)[0]["inbound_id"] and edit["salesforce_id"] == SF_ID
    # nothing delivered (an echo, a conflict the product won), or a record sfsync never wrote: no edit
    assert edits(decide(state, None, change(dict(WRITTEN), at=rep_at), m)) == []
    lost = decide(written_state(m, at=rep_at + dt.timedelta(hours=1)), None, change({"Title": "X"}, at=rep_at), m)
    assert updates(lost) == [] and edits(lost) == []
    unknown = decide(None, None, change({"Title": "X", "Member_Id__c": "u-9"}, at=rep_at), m)
    assert updates(unknown) != [] and edits(unknown) == []
    # under product_wins, the product's values stand: its older events still go out
    pw = mappings(conflict="product_wins")
    assert edits(decide(written_state(pw), None, change({"Title": "Countess"}, at=rep_at), pw)) == []
    fresh = decide(written_state(pw), None, change({"Department": "R&D"}, at=rep_at), pw)
    assert updates(fresh) != [] and edits(fresh) == []


def test_fields_without_inbound_direction_are_ignored() -> None:
    m = mappings()
    state = written_state(m)
    decision = decide(state, None, change({**WRITTEN, "Email": "new@example.com"}, at=T0 + dt.timedelta(hours=1)), m)
    assert updates(decision) == []  # Email is to_salesforce only


def test_a_to_product_field_flows_and_value_maps_are_reversed() -> None:
    m = mappings()
    decision = decide(
        written_state(m),
        None,
        change({**WRITTEN, "Department": "R&D", "Level__c": "Guest"}, at=T0 + dt.timedelta(1)),
        m,
    )
    (update,) = updates(decision)
    assert update["fields"] == {"member.department": "R&D", "member.member_type": "GUEST"}
    assert update["salesforce_fields"] == {"Department": "R&D", "Level__c": "Guest"}


# ---------------------------------------------------------------------- conflicts, both orders
PRODUCT_FIRST = (T0, T0 + dt.timedelta(minutes=1))  # product event at T0, Salesforce edit a minute later
SALESFORCE_FIRST = (T0 + dt.timedelta(minutes=1), T0)  # Salesforce edit at T0, product event a minute later


@pytest.mark.parametrize(
    ("policy", "order", "applied"),
    [
        ("last_write_wins", PRODUCT_FIRST, True),
        ("last_write_wins", SALESFORCE_FIRST, False),
        ("product_wins", PRODUCT_FIRST, False),
        ("product_wins", SALESFORCE_FIRST, False),
        ("salesforce_wins", PRODUCT_FIRST, True),
        ("salesforce_wins", SALESFORCE_FIRST, True),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_conflict_policies_in_both_orders(policy: str, order: tuple[dt.datetime, dt.datetime], applied: bool) -> None:
    """The product wrote Title (its event's time: ``order[0]``); Salesforce changed it (LastModifiedDate
    ``order[1]``). Either way round the result reaches the processor before the change."""
    m = mappings(conflict=policy)
    product_at, salesforce_at = order
    state = written_state(m, at=product_at)
    decision = decide(state, None, change({**WRITTEN, "Title": "Countess"}, at=salesforce_at), m)
    assert [u["fields"] for u in updates(decision)] == ([{"member.title": "Countess"}] if applied else [])
    if not applied:
        assert decision.dropped[f"conflict:{policy}"] == 1


@pytest.mark.parametrize("policy", ["last_write_wins", "product_wins", "salesforce_wins"])
def test_salesforce_change_seen_before_the_product_write_is_delivered(policy: str) -> None:
    """Salesforce first *in arrival order*: nothing written yet, so no conflict on the inbound side;
    the product's later write then goes out (the outbound side), and its echo is dropped."""
    m = mappings(conflict=policy)
    first = decide(None, None, change({"Member_Id__c": "u-1", "Title": "Countess"}, at=T0), m)
    assert [u["fields"] for u in updates(first)] == [{"member.title": "Countess"}]
    state = apply_result(None, result({"Title": "Engineer"}, at=T0 + dt.timedelta(minutes=1)), m).state
    later = T0 + dt.timedelta(minutes=1, seconds=5)  # the write was acknowledged a second after the event
    echo = decide(state, first.state, change({"Member_Id__c": "u-1", "Title": "Engineer"}, at=later), m)
    assert updates(echo) == []


def test_a_tie_goes_to_the_product_under_last_write_wins() -> None:
    m = mappings()
    decision = decide(written_state(m, at=T0), None, change({**WRITTEN, "Title": "Countess"}, at=T0), m)
    assert updates(decision) == []


def test_last_write_wins_uses_last_modified_date_not_the_modstamp() -> None:
    m = mappings()
    state = written_state(m, at=T0)
    late_modstamp = change({**WRITTEN, "Title": "Countess"}, at=T0 + dt.timedelta(hours=1), last_modified=T0)
    assert updates(decide(state, None, late_modstamp, m)) == []


def test_field_conflict_overrides_the_mapping() -> None:
    m = mappings(conflict="product_wins")
    state = written_state(m, {**WRITTEN, "Nickname__c": "Ada"})
    decision = decide(
        state, None, change({**WRITTEN, "Nickname__c": "Countess", "Title": "X"}, at=T0 + dt.timedelta(1)), m
    )
    assert [u["fields"] for u in updates(decision)] == [{"member.nickname": "Countess"}]


def test_product_wins_lets_fields_the_product_never_set_flow_in() -> None:
    m = mappings(conflict="product_wins")
    decision = decide(written_state(m), None, change({**WRITTEN, "Department": "R&D"}, at=T0 + dt.timedelta(1)), m)
    assert [u["fields"] for u in updates(decision)] == [{"member.department": "R&D"}]


# ---------------------------------------------------------------------- identity and links
def test_member_comes_from_the_results_and_links_are_sent_once_then_on_change() -> None:
    m = mappings()
    first = apply_result(None, result({"FirstName": "Ada"}, key="w-1|Contact:Member_Id__c:u-1"), m)
    assert first.state is not None and first.state["member_id"] == "u-1"  # from the write key
    assert links(first) == [{"salesforce:id": SF_ID}]
    again = apply_result(
        first.state, result({"Title": "Engineer"}, key="w-1|Contact:Member_Id__c:u-1", write_id="e-2"), m
    )
    assert links(again) == []
    written = again.state
    seen = decide(written, None, change({"AccountId": "001A", "OwnerId": "005A", "FirstName": "Ada"}), m)
    assert links(seen) == [{"salesforce:account_id": "001A", "salesforce:owner_id": "005A"}]
    assert [o.key for o in seen.outputs] == ["u-1"]
    same = decide(written, seen.state, change({"AccountId": "001A", "OwnerId": "005A"}, at=T0 + dt.timedelta(1)), m)
    assert links(same) == []
    moved = decide(written, same.state, change({"AccountId": None, "OwnerId": "005B"}, at=T0 + dt.timedelta(2)), m)
    assert links(moved) == [{"salesforce:account_id": None, "salesforce:owner_id": "005B"}]


def test_member_id_field_is_the_fallback_identity() -> None:
    m = mappings()
    decision = decide(None, None, change({"Member_Id__c": "u-9", "Title": "Countess", "OwnerId": "005A"}), m)
    assert links(decision) == [{"salesforce:id": SF_ID, "salesforce:owner_id": "005A"}]
    assert [(o.key, o.record) for o in decision.outputs] == [
        ("u-9", "MemberIdentityLink"),
        ("u-9", "MemberFieldUpdate"),
    ]
    assert decision.state is not None and decision.state["member_id"] == "u-9"


def test_results_of_other_mappings_are_not_kept() -> None:
    m = mappings()
    decision = apply_result(None, result({"Subject": "e-1"}, mapping="activities"), m)
    assert decision.state is None and decision.outputs == []


def test_changes_to_objects_no_member_mapping_targets_send_nothing() -> None:
    decision = decide(None, None, change({"Subject": "x"}, sobject="Task"), mappings(unlinked="import"))
    assert decision.outputs == [] and decision.dropped == {"no_mapping": 1}


# ---------------------------------------------------------------------- deletes
@pytest.mark.parametrize(
    ("policy", "expected"),
    [("ignore", []), ("flag", [("FLAG", "member.salesforce_deleted")]), ("delete", [("DELETE", None)])],
)
def test_delete_policy(policy: str, expected: list[tuple[str, str | None]]) -> None:
    m = mappings(delete=policy)
    decision = decide(written_state(m), None, change({}, change_type="DELETE", at=T0 + dt.timedelta(1)), m)
    got = [(o.value["action"], o.value["flag_field"]) for o in decision.outputs if o.record == "MemberDelete"]
    assert got == expected
    assert all(o.key == "u-1" for o in decision.outputs)


def test_undelete_clears_the_flag_and_applies_the_values() -> None:
    m = mappings(delete="flag")
    state = written_state(m)
    undeleted = decide(
        state, None, change({**WRITTEN, "Title": "Countess"}, change_type="UNDELETE", at=T0 + dt.timedelta(1)), m
    )
    assert [o.record for o in undeleted.outputs] == ["MemberDelete", "MemberFieldUpdate", "SalesforceEdit"]
    assert undeleted.outputs[0].value["action"] == "UNFLAG"


def test_delete_of_an_unlinked_record_sends_nothing() -> None:
    m = mappings(delete="delete")
    assert decide(None, None, change({}, change_type="DELETE"), m).outputs == []


# ---------------------------------------------------------------------- unlinked records
def test_unlinked_records_are_ignored_by_default() -> None:
    decision = decide(None, None, change({"FirstName": "Grace", "Title": "Admiral"}), mappings())
    assert decision.outputs == [] and decision.dropped == {"unlinked": 1} and decision.state is None


def test_unlinked_records_become_import_candidates_when_asked() -> None:
    decision = decide(
        None, None, change({"FirstName": "Grace", "Title": "Admiral", "Email": "g@x"}), mappings(unlinked="import")
    )
    (output,) = decision.outputs
    assert output.record == "ImportCandidate" and output.key == f"salesforce:Contact:{SF_ID}"
    assert output.value["fields"] == {"member.first_name": "Grace", "member.title": "Admiral"}
    assert output.value["salesforce_fields"]["Email"] == "g@x"
    assert output.value["member_id"] is None


# ---------------------------------------------------------------------- inbound filter
def test_inbound_filter_drops_records() -> None:
    m = mappings(unlinked="import")
    state = written_state(m)
    blocked = decide(
        state, None, change({**WRITTEN, "Title": "Countess", "Do_Not_Sync__c": True}, at=T0 + dt.timedelta(1)), m
    )
    assert blocked.outputs == [] and blocked.dropped == {"filtered": 1}
    assert decide(None, None, change({"Title": "x", "Do_Not_Sync__c": True}), m).outputs == []


def test_a_failing_inbound_filter_is_a_skippable_error() -> None:
    text = MAPPINGS.replace("{conflict}", "last_write_wins").replace("{delete}", "ignore")
    text = text.replace("{unlinked}", "ignore").replace('"!has(record.Do_Not_Sync__c) || ', '"')
    m = parse_mappings(textwrap.dedent(text.replace("{{", "{").replace("}}", "}")), "t.yaml")
    with pytest.raises(MappingEvaluationError):
        decide(written_state(m), None, change({"Title": "x"}), m)


# ---------------------------------------------------------------------- replays (Faust re-runs records
# after an aborted transaction, while its in-memory tables keep what the aborted attempt did)
def test_a_replayed_change_is_sent_again_and_an_older_one_is_stale() -> None:
    m = mappings()
    written = written_state(m)
    t30, t31 = T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=31)
    first = decide(written, None, change({**WRITTEN, "FirstName": "Augusta", "Title": "Countess"}, at=t30), m)
    second = decide(written, first.state, change({**WRITTEN, "FirstName": "Augusta", "Title": "Duchess"}, at=t31), m)
    assert [u["fields"] for u in updates(second)] == [{"member.title": "Duchess"}]
    # both outputs were lost with the aborted transaction; the state was not rolled back
    replay_first = decide(
        written, second.state, change({**WRITTEN, "FirstName": "Augusta", "Title": "Countess"}, at=t30), m
    )
    assert [u["fields"] for u in updates(replay_first)] == [{"member.first_name": "Augusta"}]
    assert replay_first.dropped["stale"] == 1  # Countess: Duchess is newer
    replay_second = decide(
        written, replay_first.state, change({**WRITTEN, "FirstName": "Augusta", "Title": "Duchess"}, at=t31), m
    )
    assert updates(replay_second) == [{**updates(second)[0]}]  # the same record, same inbound_id
    # a later poll of the same values is no news
    later = decide(
        written,
        replay_second.state,
        change({**WRITTEN, "FirstName": "Augusta", "Title": "Duchess"}, at=t31 + dt.timedelta(1)),
        m,
    )
    assert updates(later) == []


def test_a_replayed_change_sends_its_links_again() -> None:
    m = mappings()
    written = written_state(m)
    first = decide(written, None, change({"OwnerId": "005A"}, at=T0 + dt.timedelta(1)), m)
    replay = decide(written, first.state, change({"OwnerId": "005A"}, at=T0 + dt.timedelta(1)), m)
    assert links(replay) == links(first) == [{"salesforce:owner_id": "005A"}]
    assert [o.value["inbound_id"] for o in replay.outputs] == [o.value["inbound_id"] for o in first.outputs]
    assert links(decide(written, replay.state, change({"OwnerId": "005A"}, at=T0 + dt.timedelta(2)), m)) == []


def test_a_replayed_result_sends_its_link_again_and_an_older_write_does_not_win() -> None:
    m = mappings()
    first = apply_result(None, result(WRITTEN, write_id="e-1"), m)
    newer = apply_result(first.state, result({"Title": "Countess"}, at=T0 + dt.timedelta(1), write_id="e-2"), m)
    replayed = apply_result(newer.state, result(WRITTEN, write_id="e-1"), m)
    assert replayed.state is not None and replayed.state["written"]["Title"]["value"] == "Countess"
    assert replayed.dropped["stale"] == 1
    # the link e-1 sent goes out again, with the same inbound_id (the product applies it once)
    assert [o.value for o in replayed.outputs] == [o.value for o in first.outputs]
    assert links(first) == [{"salesforce:id": SF_ID}]
    other = apply_result(newer.state, result(WRITTEN, write_id="e-3"), m)
    assert links(other) == []  # a new write of a known record: no link


# ---------------------------------------------------------------------- the echo race
WRITER = "005000000000007AAA"  # the user sfsync writes as
REP = "005000000000009AAA"


def by(user: str, fields: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {**change(fields, at=at), "last_modified_by_id": user}


def test_a_writers_change_no_result_covers_yet_is_held_until_its_poll_plus_the_bound() -> None:
    m = mappings()
    echo = by(WRITER, dict(WRITTEN), T0)  # sfsync's write read back before its result arrived
    assert hold_until(None, echo, {WRITER}, 30_000, m) == ms(T0 + dt.timedelta(seconds=1)) + 30_000  # polled_at + bound
    assert hold_until(None, echo, {WRITER[:15]}, 30_000, m) is not None  # 15- and 18-character ids are one user
    # only an earlier write (Title "Intern") is known; the write read back set "Engineer"
    older = written_state(m, {**WRITTEN, "Title": "Intern"}, at=T0 - dt.timedelta(minutes=5))
    assert hold_until(older, echo, {WRITER}, 30_000, m) is not None
    # its result arrives (acknowledged after the modstamp): judged now, and it is an echo
    folded = apply_result(older, result(WRITTEN, at=T0), m)
    covering = folded.state
    assert covering is not None
    assert hold_until(covering, echo, {WRITER}, 30_000, m) is None
    assert updates(decide(covering, None, echo, m)) == []
    # judged before its result, the same change would have gone out as an update: what the hold prevents
    assert updates(decide(older, None, echo, m)) != []


def test_others_changes_deletes_and_a_zero_bound_are_never_held() -> None:
    m = mappings()
    older = written_state(m, at=T0 - dt.timedelta(minutes=5))
    assert hold_until(older, by(REP, {"Title": "Countess"}, T0), {WRITER}, 30_000, m) is None
    assert hold_until(older, by(WRITER, {}, T0) | {"change_type": "DELETE"}, {WRITER}, 30_000, m) is None
    assert hold_until(older, by(WRITER, dict(WRITTEN), T0), {WRITER}, 0, m) is None
    assert hold_until(older, by(WRITER, dict(WRITTEN), T0), set(), 30_000, m) is None
    # a Campaign sfsync wrote: no member mapping reads it back, no result would ever cover it
    campaign = {**by(WRITER, {"Name": "Meetup"}, T0), "sobject": "Campaign"}
    assert hold_until(None, campaign, {WRITER}, 30_000, m) is None
    assert not same_user(None, {WRITER}) and same_user(WRITER[:15], {WRITER})


def test_the_writer_is_learned_from_an_echo_of_a_covered_write_not_from_a_rep() -> None:
    m = mappings()
    covering = written_state(m, at=T0)  # acknowledged at T0 + 1 s
    echo = by(WRITER, dict(WRITTEN), T0)
    assert echo_writer(covering, echo, decide(covering, None, echo, m)) == WRITER
    # a rep re-typing sfsync's value after the acknowledgement is an echo too, but not the writer
    retyped = by(REP, dict(WRITTEN), T0 + dt.timedelta(seconds=5))
    assert decide(covering, None, retyped, m).dropped.get("echo")
    assert echo_writer(covering, retyped, decide(covering, None, retyped, m)) is None
    edit = by(REP, {**WRITTEN, "Title": "Countess"}, T0)
    assert echo_writer(covering, edit, decide(covering, None, edit, m)) is None  # an update went out


def test_hold_waits_for_the_deadline_then_only_for_the_results_stream_and_never_past_its_bound() -> None:
    first_seen, hold = 1_000_000, 30_000
    assert hold_wait_ms(None, first_seen, first_seen, hold, False) is None  # not held (or covered now)
    assert hold_wait_ms(first_seen + 2_000, first_seen, first_seen, hold, False) == 2_000  # before the deadline
    assert hold_wait_ms(first_seen + 2_000, first_seen + 2_000, first_seen, hold, True) is None  # past: results in
    assert hold_wait_ms(first_seen + 2_000, first_seen + 2_000, first_seen, hold, False) == 200  # results behind
    assert hold_wait_ms(first_seen + 2_000, first_seen + hold, first_seen, hold, False) is None  # the bound
    assert hold_wait_ms(first_seen + 99_000, first_seen, first_seen, hold, False) == hold  # capped at the bound


def test_a_change_past_its_deadline_waits_for_a_lagging_results_stream_up_to_the_catch_up_bound() -> None:
    """The chaos run's inbound app, 100,000 records behind, judged 1,121 changes in 10 s with no result
    covering them: their results were still in Kafka, unread, when the 30 s bound let them go."""
    first_seen, hold, catch_up = 1_000_000, 30_000, 300_000
    past = first_seen - 1
    assert hold_wait_ms(past, first_seen + hold, first_seen, hold, False, catch_up) == 200  # still waits
    assert hold_wait_ms(past, first_seen + hold, first_seen, hold, True, catch_up) is None  # results in: judge
    assert hold_wait_ms(past, first_seen + catch_up, first_seen, hold, False, catch_up) is None  # the bound
    assert hold_wait_ms(first_seen + 99_000, first_seen + hold, first_seen, hold, False, catch_up) is None
