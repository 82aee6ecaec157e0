"""The poller's pure rules: SOQL per object, keyset paging with a lookback window, de-duplication,
change types, inbound filters, the delete log, reconciliation and the idle backoff."""

from __future__ import annotations

import datetime as dt
import random
import textwrap
from typing import Any

import pytest

from sfsync.mapping import MappingEvaluationError, load_mappings, parse_mappings
from sfsync.sources import rules as core
from sfsync.sources.rules import Checkpoint, Limits, ObjectPlan
from tests.kit.polling import BASE, WindowedOrg, ms, rid, row, stamp

MAPPINGS = textwrap.dedent(
    """
    version: 1
    mappings:
      - name: members
        entity: member
        target: Contact
        match: [{field: Email, from: member.email}]
        inbound_filter: "record.Sync_To_Product__c != false"
        fields:
          - {sf: Email, from: member.email, direction: both}
          - {sf: FirstName, from: member.first_name, direction: to_product}
          - {sf: Title, from: member.title}
          - {sf: Account.Name, from: member.company, direction: to_product}
      - name: events
        entity: event
        target: Campaign
        match: [{field: Name, from: event.title}]
        fields:
          - {sf: Name, from: event.title}
    """
)


def contact_plan() -> ObjectPlan:
    (plan,) = core.plans_from_mappings(parse_mappings(MAPPINGS, "test.yaml"))
    return plan


# ---------------------------------------------------------------------- what to read
def test_plans_read_only_inbound_fields_relationships_and_filter_fields() -> None:
    plans = core.plans_from_mappings(parse_mappings(MAPPINGS, "test.yaml"))
    assert [p.sobject for p in plans] == ["Contact"]  # Campaign maps nothing back
    select = plans[0].select_list()
    assert select[:6] == list(core.SYSTEM_FIELDS)
    assert set(select[6:]) == {"Email", "FirstName", "Account.Name", "Sync_To_Product__c"}
    assert "Title" not in select  # to_salesforce only
    assert core.plans_from_mappings(parse_mappings(MAPPINGS, "test.yaml"), only=["Lead"]) == []


@pytest.mark.parametrize("member_object", ["Contact", "Lead"])
def test_plans_select_what_the_inbound_rules_read(member_object: str) -> None:
    """The poller and the inbound processor share one definition: Mapping.inbound_read_fields."""
    mappings = load_mappings(variables={"member_object": member_object})
    plans = {p.sobject: p for p in core.plans_from_mappings(mappings)}
    assert set(plans) == {member_object}  # campaigns, activities and cases map nothing back
    select = {name.lower() for name in plans[member_object].select_list()}
    members = mappings.get("members")
    assert members is not None
    read = members.inbound_read_fields()
    assert {name.lower() for name in read} <= select
    assert {"member_id__c", "ownerid"} <= select  # identity: the member id field and the owner link
    assert ("accountid" in select) == (member_object == "Contact")  # the account link is Contact-only
    assert "email" not in select  # to_salesforce only


def test_poll_soql_reads_the_window_in_cursor_order() -> None:
    plan = contact_plan()
    soql = plan.poll_soql(ms(0))
    assert soql.startswith("SELECT Id, SystemModstamp, CreatedDate, LastModifiedDate, LastModifiedById, IsDeleted")
    assert soql.endswith(
        "FROM Contact WHERE SystemModstamp >= 2026-11-25T12:00:00.000Z ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert "LIMIT" not in soql and "OFFSET" not in soql  # pages come through the query cursor
    assert "WHERE" not in plan.poll_soql(None)  # first load: everything
    assert plan.ids_soql() == "SELECT Id FROM Contact"
    with pytest.raises(ValueError, match="not Salesforce API names"):
        ObjectPlan("Contact; DELETE", ("Id",))
    with pytest.raises(ValueError, match="not Salesforce API names"):
        ObjectPlan("Contact", ("Name FROM User --",))


# ---------------------------------------------------------------------- paging and de-duplication
class FakeOrg:
    """Rows by (SystemModstamp, Id), with visibility: a row may commit after its stamp (late)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.hidden: dict[str, dict[str, Any]] = {}

    def put(self, r: dict[str, Any], *, visible: bool = True) -> None:
        (self.rows if visible else self.hidden)[r["Id"]] = r

    def reveal(self) -> None:
        self.rows.update(self.hidden)
        self.hidden.clear()

    def query(self, since: int | None) -> list[dict[str, Any]]:
        """The rows a query cursor returns (a snapshot at query time), in (SystemModstamp, Id) order."""

        def key(r: dict[str, Any]) -> tuple[int, str]:
            return core.to_ms(core.parse_sf_datetime(r["SystemModstamp"])), r["Id"]

        return [r for r in sorted(self.rows.values(), key=key) if since is None or key(r)[0] >= since]


def poll(org: FakeOrg, plan: ObjectPlan, checkpoint: Checkpoint, limits: Limits, page_size: int) -> tuple:
    """What the loop does: one query, a commit every ``page_size`` rows; returns (changes, checkpoint, pages)."""
    changes: list[dict[str, Any]] = []
    rows = org.query(checkpoint.window_start(limits.lookback_ms))
    pages = 0
    for start in range(0, len(rows), page_size):
        result = core.apply_page(plan, checkpoint, rows[start : start + page_size], limits, polled_ms=ms(100))
        checkpoint = result.checkpoint
        changes += result.changes
        pages += 1
    return changes, checkpoint, pages


def test_records_sharing_a_modstamp_across_page_boundaries_are_each_emitted_once() -> None:
    org = FakeOrg()
    for n in range(7):
        org.put(row(rid(n), ms(1)))  # seven records, one SystemModstamp
    org.put(row(rid(99), ms(2)))
    changes, checkpoint, pages = poll(org, ObjectPlan("Contact", ()), Checkpoint("Contact"), Limits(5000), 3)
    assert pages == 3
    assert sorted(c["id"] for c in changes) == sorted([rid(n) for n in range(7)] + [rid(99)])
    assert checkpoint.cursor_ms == ms(2)
    again, _, _ = poll(org, ObjectPlan("Contact", ()), checkpoint, Limits(5000), 3)
    assert again == []  # the lookback re-read is absorbed by the seen-set


def test_late_visible_records_inside_the_lookback_window_are_found_once() -> None:
    org = FakeOrg()
    plan = ObjectPlan("Contact", ())
    limits = Limits(lookback_ms=3000)
    org.put(row(rid(1), ms(10)))
    org.put(row(rid(2), ms(9)), visible=False)  # a long transaction: committed after the cursor passed
    org.put(row(rid(3), ms(5)), visible=False)  # ... and one beyond the window (documented limit)
    first, checkpoint, _ = poll(org, plan, Checkpoint("Contact"), limits, 10)
    assert [c["id"] for c in first] == [rid(1)]
    org.reveal()
    second, checkpoint, _ = poll(org, plan, checkpoint, limits, 10)
    assert [c["id"] for c in second] == [rid(2)]
    third, _, _ = poll(org, plan, checkpoint, limits, 10)
    assert third == []


def test_random_histories_emit_every_version_exactly_once() -> None:
    """Edits (many sharing stamps), polls with random page sizes and late commits inside the window."""
    rng = random.Random(7)
    for _ in range(30):
        org = FakeOrg()
        plan = ObjectPlan("Contact", ())
        limits = Limits(lookback_ms=2000)
        checkpoint = Checkpoint("Contact")
        emitted: list[tuple[str, int]] = []
        written: set[tuple[str, int]] = set()
        clock = 0
        for _step in range(20):
            clock += rng.choice([0, 1, 1, 250, 700])
            for _edit in range(rng.randint(0, 6)):
                n = rng.randint(0, 15)
                late = rng.random() < 0.2
                at = clock - (rng.randint(1, 1500) if late else 0)
                previous = org.rows.get(rid(n)) or org.hidden.get(rid(n))
                if previous is not None and core.to_ms(core.parse_sf_datetime(previous["SystemModstamp"])) >= ms(
                    at / 1000
                ):
                    continue  # SystemModstamp only moves forward per record
                if previous is not None:  # the older version may never have been visible: fine
                    org.rows.pop(rid(n), None)
                    org.hidden.pop(rid(n), None)
                    written.discard((rid(n), core.to_ms(core.parse_sf_datetime(previous["SystemModstamp"]))))
                org.put(row(rid(n), ms(at / 1000)), visible=not late)
                written.add((rid(n), ms(at / 1000)))
            changes, checkpoint, _ = poll(org, plan, checkpoint, limits, rng.randint(1, 5))
            emitted += [(c["id"], c["system_modstamp"]) for c in changes]
            org.reveal()
        changes, checkpoint, _ = poll(org, plan, checkpoint, limits, 3)
        emitted += [(c["id"], c["system_modstamp"]) for c in changes]
        assert len(emitted) == len(set(emitted)), "a version was emitted twice"
        final = {(r["Id"], core.to_ms(core.parse_sf_datetime(r["SystemModstamp"]))) for r in org.rows.values()}
        assert final <= set(emitted), "the newest version of a record was never emitted"


def test_seen_set_is_bounded_to_the_window_and_max_seen() -> None:
    org = FakeOrg()
    for n in range(10):
        org.put(row(rid(n), ms(n)))
    _, checkpoint, _ = poll(org, ObjectPlan("Contact", ()), Checkpoint("Contact"), Limits(lookback_ms=2500), 4)
    assert checkpoint.seen == {(rid(n), ms(n)) for n in (7, 8, 9)}
    _, small, _ = poll(org, ObjectPlan("Contact", ()), Checkpoint("Contact"), Limits(10_000, max_seen=100), 4)
    assert len(small.seen) == 10
    bounded = core.apply_page(
        ObjectPlan("Contact", ()), Checkpoint("Contact"), [row(rid(n), ms(0)) for n in range(150)], Limits(1, 100), 0
    )
    assert len(bounded.checkpoint.seen) == 100


# ---------------------------------------------------------------------- change records
def test_change_types_and_record_shape() -> None:
    plan = ObjectPlan("Contact", ("FirstName", "Account.Name"))
    created = row(rid(1), ms(1), created_ms=ms(1), FirstName="Ada", Account={"attributes": {}, "Name": "Acme"})
    result = core.apply_page(plan, Checkpoint("Contact"), [created], Limits(5000), polled_ms=ms(2))
    (change,) = result.changes
    assert change == {
        "change_id": f"Contact:{rid(1)}:{ms(1)}",
        "sobject": "Contact",
        "id": rid(1),
        "change_type": "CREATE",
        "fields": {"FirstName": "Ada", "Account.Name": "Acme"},
        "system_modstamp": ms(1),
        "last_modified_date": ms(1),
        "last_modified_by_id": "005000000000001AAA",
        "polled_at": ms(2),
    }
    checkpoint = result.checkpoint
    edited = row(rid(1), ms(3), FirstName="Ada L.", Account=None)
    automation = {**edited, "SystemModstamp": stamp(ms(4))}  # a trigger: only SystemModstamp moves
    kinds = []
    for r in (edited, automation, {**edited, "SystemModstamp": stamp(ms(5)), "IsDeleted": True}):
        result = core.apply_page(plan, checkpoint, [r], Limits(5000), polled_ms=ms(6))
        kinds += [c["change_type"] for c in result.changes]
        checkpoint = result.checkpoint
    assert kinds == ["UPDATE", "UPDATE", "DELETE"]
    assert rid(1) in checkpoint.deleted and rid(1) not in checkpoint.known
    again = core.apply_page(
        plan, checkpoint, [{**edited, "SystemModstamp": stamp(ms(5)), "IsDeleted": True}], Limits(5000), 0
    )
    assert again.changes == [] and again.duplicates == 1
    undeleted = core.apply_page(plan, checkpoint, [{**edited, "SystemModstamp": stamp(ms(7))}], Limits(5000), 0)
    assert [c["change_type"] for c in undeleted.changes] == ["UNDELETE"]
    assert undeleted.changes[0]["change_id"].endswith(":UNDELETE")
    assert undeleted.changes[0]["fields"]["Account"] is None  # a null relationship stays visible as null


def test_inbound_filter_drops_records_but_not_deletes() -> None:
    plan = contact_plan()
    rows = [
        row(rid(1), ms(1), Sync_To_Product__c=True, Email="a@x.io"),
        row(rid(2), ms(1), Sync_To_Product__c=False, Email="b@x.io"),
        row(rid(3), ms(2), Sync_To_Product__c=False, deleted=True),
    ]
    result = core.apply_page(plan, Checkpoint("Contact"), rows, Limits(5000), 0)
    assert [(c["id"], c["change_type"]) for c in result.changes] == [(rid(1), "UPDATE"), (rid(3), "DELETE")]
    assert result.filtered == 1
    assert (rid(2), ms(1)) in result.checkpoint.seen  # not evaluated again on the re-read
    broken = parse_mappings(MAPPINGS.replace("record.Sync_To_Product__c != false", "record.Missing__c"), "t.yaml")
    (bad_plan,) = core.plans_from_mappings(broken)
    # a filter that fails on a record lets it through: the inbound processor evaluates the same filter
    # and parks the change in the DLQ with the reason, so the poller neither stops nor loses it
    passed = core.apply_page(
        ObjectPlan("Contact", (), bad_plan.mappings), Checkpoint("Contact"), rows[:1], Limits(1), 0
    )
    assert [c["id"] for c in passed.changes] == [rid(1)] and passed.filtered == 0
    with pytest.raises(MappingEvaluationError, match="inbound_filter"):
        core.passes_inbound_filter(bad_plan.mappings[0], rows[0])


def test_checkpoint_round_trips_through_bytes() -> None:
    checkpoint = Checkpoint("Contact", ms(3), {(rid(1), ms(3))}, {rid(1)}, {rid(2)}, ms(0), ms(1), False)
    records = dict(checkpoint.records(set()))
    assert list(records)[-1] == "Contact" and len(records) == 2  # one known-id bucket, then the main record
    assert Checkpoint.from_records("Contact", records) == checkpoint
    assert Checkpoint.from_records("Lead", records) is None
    many = Checkpoint("Contact", ms(3), known={rid(n) for n in range(500)})
    every = dict(many.records(set()))
    assert len(every) == core.KNOWN_BUCKETS + 1
    one_more = Checkpoint("Contact", ms(4), known=many.known | {rid(999)})
    delta = one_more.records(many.known)
    assert [k for k, _ in delta] == [core.known_key("Contact", core.known_bucket(rid(999))), "Contact"]
    assert Checkpoint.from_records("Contact", {**every, **dict(delta)}) == one_more
    with pytest.raises(ValueError, match="version"):
        Checkpoint.from_bytes(b'{"version": 99}')


# ---------------------------------------------------------------------- deletes
def test_delete_log_emits_deletes_not_yet_seen_and_moves_its_window() -> None:
    checkpoint = Checkpoint("Contact", ms(10), known={rid(1), rid(2)}, deleted={rid(3)})
    changes, after = core.delete_log_changes(
        "Contact",
        checkpoint,
        [(rid(1), BASE + dt.timedelta(seconds=5)), (rid(3), BASE)],
        BASE + dt.timedelta(minutes=1),
        polled_ms=ms(70),
    )
    assert [(c["id"], c["change_type"], c["system_modstamp"]) for c in changes] == [(rid(1), "DELETE", ms(5))]
    assert changes[0]["fields"] == {}
    assert after.known == {rid(2)} and after.deleted == {rid(1), rid(3)}
    assert after.delete_log_ms == ms(60)


def test_reconciliation_turns_purged_ids_into_deletes() -> None:
    checkpoint = Checkpoint("Contact", ms(10), known={rid(1), rid(2), rid(4)}, deleted={rid(3), rid(5)})
    present = {rid(2), rid(5), rid(4)}
    changes, after = core.reconcile("Contact", checkpoint, {rid(1), rid(2)}, present, polled_ms=ms(20))
    assert [(c["id"], c["change_type"]) for c in changes] == [(rid(1), "DELETE")]
    assert after.known == {rid(2), rid(4)}  # rid(4) came after the snapshot: left alone
    assert after.deleted == {rid(5)}  # purged from the recycle bin: forgotten
    assert after.reconciled_ms == ms(20)


def test_tracking_stops_beyond_max_tracked_ids() -> None:
    rows = [row(rid(n), ms(1)) for n in range(5)]
    result = core.apply_page(ObjectPlan("Contact", ()), Checkpoint("Contact"), rows, Limits(1000, 100, 3), 0)
    assert result.checkpoint.tracking_overflow and result.checkpoint.known == set()
    assert len(result.changes) == 5


def test_idle_backoff_grows_to_the_maximum_and_resets_on_changes() -> None:
    waits = [1.0]
    for _ in range(6):
        waits.append(core.next_interval(waits[-1], False, 1.0, 2.0, 10.0))
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert core.next_interval(10.0, True, 1.0, 2.0, 10.0) == 1.0


def test_salesforce_datetimes_parse_in_every_form() -> None:
    assert core.parse_sf_datetime("2026-11-25T12:00:01.500+0000") == BASE + dt.timedelta(seconds=1.5)
    assert core.parse_sf_datetime("2026-11-25T12:00:01.500Z") == BASE + dt.timedelta(seconds=1.5)
    assert core.soql_datetime(ms(1.5)) == "2026-11-25T12:00:01.500Z"


@pytest.mark.parametrize("value", [b"[]", b"1", b'"Contact"', b"null"])
def test_a_checkpoint_value_that_is_no_json_object_is_refused_as_unreadable(value: bytes) -> None:
    with pytest.raises(ValueError, match="a checkpoint is a JSON object"):
        Checkpoint.from_bytes(value)  # read_checkpoint reports it as a FatalError naming the checkpoint


# ---------------------------------------------------------------------- covered time
ROUND_TRIP = dt.timedelta(milliseconds=40)


def poll_covering(
    org: WindowedOrg, plan: ObjectPlan, checkpoint: Checkpoint, limits: Limits, page_size: int = 500
) -> tuple[list[dict[str, Any]], Checkpoint, int]:
    """What the loop does: the query's first response dates it (the org's ``Date``), its rows commit every
    ``page_size``, then the window is covered. Returns (changes, checkpoint, API calls of the poll)."""
    started = core.query_started_ms(org.date(), ROUND_TRIP)
    calls = org.calls
    rows = org.query(checkpoint.window_start(limits.lookback_ms))
    changes: list[dict[str, Any]] = []
    for start in range(0, len(rows), page_size):
        result = core.apply_page(plan, checkpoint, rows[start : start + page_size], limits, polled_ms=org.now_ms)
        checkpoint = result.checkpoint
        changes += result.changes
    return changes, core.cover_window(checkpoint, started, len(rows), limits), org.calls - calls


def test_an_idle_poll_after_a_burst_of_more_than_a_query_page_costs_one_call_once_covered_passes_it() -> None:
    org = WindowedOrg(ms(100))
    plan = ObjectPlan("Contact", ())
    limits = Limits(lookback_ms=10_000)
    for n in range(2500):  # a burst of 2,500 changes within its last second: two query pages
        org.put(row(rid(n), ms(99) + n % 1000))
    first, checkpoint, calls = poll_covering(org, plan, Checkpoint("Contact"), limits)
    assert len(first) == 2500 and calls == 2
    costs = []
    for _ in range(6):  # the org goes quiet
        org.advance(5)
        before = checkpoint
        changes, checkpoint, calls = poll_covering(org, plan, checkpoint, limits)
        assert changes == []
        costs.append(calls)
    assert costs == [2, 2, 2, 1, 1, 1]  # the window re-reads the burst until covered - lookback passes it
    assert checkpoint == before and checkpoint.seen == set()  # idle: no new checkpoint to commit
    assert checkpoint.covered_ms == ms(115) - 1000 - 40  # the org's Date at the last poll that read rows
    org.put(row(rid(9999), org.now_ms))  # and a new change is still found, in one call
    changes, checkpoint, calls = poll_covering(org, plan, checkpoint, limits)
    assert [c["id"] for c in changes] == [rid(9999)] and calls == 1


def test_a_late_visible_record_is_found_exactly_once_with_a_covered_window() -> None:
    org = WindowedOrg(ms(100))
    plan = ObjectPlan("Contact", ())
    limits = Limits(lookback_ms=10_000)
    org.put(row(rid(1), ms(100)))
    found: list[str] = []
    changes, checkpoint, _ = poll_covering(org, plan, Checkpoint("Contact"), limits)
    found += [c["id"] for c in changes]
    org.advance(3.5)
    org.put(row(rid(3), ms(103.5)), visible_at_ms=ms(113.5))  # commits the full lookback after its stamp
    org.advance(1.5)
    org.put(row(rid(2), ms(105)), visible_at_ms=ms(112))
    for at in (108, 113, 118, 125, 140):
        org.now_ms = ms(at)
        changes, checkpoint, _ = poll_covering(org, plan, checkpoint, limits)
        found += [c["id"] for c in changes]
        if at == 113:
            assert checkpoint.window_start(limits.lookback_ms) == ms(113) - 1040 - 10_000  # past the cursor, 105
    assert found == [rid(1), rid(2), rid(3)]


def test_random_histories_with_a_covered_window_emit_every_version_exactly_once() -> None:
    """Edits (many sharing stamps), polls at random moments with random page sizes, commits up to the
    lookback late: every final version is emitted, none twice."""
    rng = random.Random(11)
    plan = ObjectPlan("Contact", ())
    limits = Limits(lookback_ms=2000)
    for _ in range(40):
        org = WindowedOrg(ms(0), batch=3)
        checkpoint = Checkpoint("Contact")
        emitted: list[tuple[str, int]] = []
        for _step in range(25):
            org.advance(rng.choice([0.001, 0.25, 0.7, 1.3, 3.0]))
            for _edit in range(rng.randint(0, 6)):
                record_id = rid(rng.randint(0, 15))
                versions = org.versions.get(record_id, [])
                if versions and (
                    versions[-1][0] > org.now_ms or versions[-1][1]["SystemModstamp"] >= stamp(org.now_ms)
                ):
                    continue  # a record locked by a pending transaction, or already written this millisecond
                delay = rng.choice([0, 0, rng.randint(1, limits.lookback_ms)])
                org.put(row(record_id, org.now_ms), visible_at_ms=org.now_ms + delay)
            changes, checkpoint, _ = poll_covering(org, plan, checkpoint, limits, rng.randint(1, 5))
            emitted += [(c["id"], c["system_modstamp"]) for c in changes]
        org.advance(limits.lookback_ms / 1000 + 2)
        changes, checkpoint, _ = poll_covering(org, plan, checkpoint, limits, 3)
        emitted += [(c["id"], c["system_modstamp"]) for c in changes]
        assert len(emitted) == len(set(emitted)), "a version was emitted twice"
        final = {(r["Id"], core.to_ms(core.parse_sf_datetime(r["SystemModstamp"]))) for r in org.visible()}
        assert final <= set(emitted), "the newest version of a record was never emitted"


def test_the_query_start_is_the_orgs_date_less_its_resolution_and_the_round_trip() -> None:
    assert core.query_started_ms(BASE, dt.timedelta(milliseconds=250.4)) == ms(0) - 1000 - 251


def test_a_version_1_checkpoint_reads_without_a_covered_time() -> None:
    old = b'{"version": 1, "sobject": "Contact", "cursor_ms": %d, "seen": [], "deleted": []}' % ms(5)
    checkpoint = Checkpoint.from_bytes(old)
    assert checkpoint.covered_ms is None and checkpoint.window_start(1000) == ms(4)
    covered = Checkpoint("Contact", ms(5), covered_ms=ms(9))
    assert Checkpoint.from_bytes(covered.to_bytes()) == covered and covered.window_start(1000) == ms(8)
