"""The hard cases an inbound poller meets in a real org, made to happen on purpose.

Late visibility below the cursor (a long transaction commits after its SystemModstamp), one timestamp
per transaction, and a sales rep's deletes, undeletes and purges as query, queryAll, getUpdated and
getDeleted report them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sfsync.emulator.faults import Faults, FaultSpecError
from sfsync.emulator.model import format_datetime
from sfsync.emulator.server import build
from tests.kit import Clock

from .conftest import Org, V

REP = "rep@acme.test"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def org_at(clock: Clock) -> Iterator[Org]:
    client = Org(build(clock=clock))
    with client.http:
        yield client


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def soql(org: Org, text: str, *, all_rows: bool = False) -> list[dict[str, Any]]:
    response = org.get("queryAll/" if all_rows else "query/", params={"q": text})
    assert response.status_code == 200, response.text
    return list(response.json()["records"])


def changed_since(org: Org, since: dt.datetime, *, all_rows: bool = False) -> list[dict[str, Any]]:
    """The poller's incremental query: SystemModstamp >= cursor, ordered by (SystemModstamp, Id)."""
    return soql(
        org,
        "SELECT Id, Title, IsDeleted, SystemModstamp, LastModifiedById FROM Contact "
        f"WHERE SystemModstamp >= {iso(since)} ORDER BY SystemModstamp, Id",
        all_rows=all_rows,
    )


def window(clock: Clock, minutes_back: int = 20) -> dict[str, str]:
    return {"start": (clock.now - dt.timedelta(minutes=minutes_back)).isoformat(), "end": clock.now.isoformat()}


def admin(org: Org, action: str, body: dict[str, Any]) -> dict[str, Any]:
    response = org.http.post(f"/__admin/{action}", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def user_id(org: Org, username: str) -> str:
    return next(i for i, u in org.emulator.store.users.items() if u["Username"] == username)


# ---------------------------------------------------------------------- late visibility
def test_a_late_commit_is_invisible_then_appears_below_later_writes(org_at: Org, clock: Clock) -> None:
    org = org_at
    cursor = clock.now
    existing = org.create("Contact", LastName="Existing", Title="Before")
    clock.advance(seconds=1)
    late = admin(
        org,
        "edit",
        {
            "user": REP,
            "visibility_delay_ms": 2500,
            "records": [
                {"sobject": "Contact", "values": {"LastName": "LateNew"}},
                {"sobject": "Contact", "id": existing, "values": {"Title": "After"}},
            ],
        },
    )
    late_new = late["ids"][0]
    late_stamp = late["SystemModstamp"]
    clock.advance(seconds=1)
    after = org.create("Contact", LastName="WrittenAfter")

    seen = changed_since(org, cursor)
    assert [r["Id"] for r in seen] == [existing, after]
    assert seen[0]["Title"] == "Before"  # the uncommitted update is not seen either
    assert org.get(f"sobjects/Contact/{late_new}").status_code == 404
    assert [r["Id"] for r in soql(org, "SELECT Id FROM Contact", all_rows=True)].count(late_new) == 0
    pending = org.http.get("/__admin/visibility").json()["pending"]
    assert {p["id"] for p in pending} == {late_new, existing}

    clock.advance(seconds=1)  # 2 s after the late transaction's commit: not yet
    assert late_new not in {r["Id"] for r in changed_since(org, cursor)}
    clock.advance(milliseconds=600)
    now_seen = changed_since(org, cursor)
    by_id = {r["Id"]: r for r in now_seen}
    assert set(by_id) == {existing, late_new, after}
    # visible now, with the stamp of its start: below a record written after it
    assert by_id[late_new]["SystemModstamp"] == by_id[existing]["SystemModstamp"] == late_stamp
    assert by_id[late_new]["SystemModstamp"] < by_id[after]["SystemModstamp"]
    assert [r["Id"] for r in now_seen][-1] == after
    assert by_id[existing]["Title"] == "After"
    assert by_id[existing]["LastModifiedById"] == user_id(org, REP)
    assert org.http.get("/__admin/visibility").json()["pending"] == []


def test_get_updated_holds_latest_date_covered_at_an_open_transaction(org_at: Org, clock: Clock) -> None:
    org = org_at
    early = org.create("Contact", LastName="Early")
    clock.advance(minutes=2)
    late = admin(
        org, "edit", {"user": REP, "sobject": "Contact", "values": {"LastName": "Late"}, "visibility_delay_ms": 90_000}
    )
    late_id = late["ids"][0]
    clock.advance(minutes=1)
    held = org.get("sobjects/Contact/updated/", params=window(clock)).json()
    assert held["ids"] == [early]
    late_minute = clock.now.replace(second=0) - dt.timedelta(minutes=1)
    assert held["latestDateCovered"].startswith(late_minute.strftime("%Y-%m-%dT%H:%M"))
    clock.advance(seconds=90)
    released = org.get("sobjects/Contact/updated/", params=window(clock)).json()
    assert released["ids"] == [early, late_id]
    assert released["latestDateCovered"] > held["latestDateCovered"]


def test_a_late_delete_keeps_the_row_until_it_commits(org_at: Org, clock: Clock) -> None:
    org = org_at
    contact = org.create("Contact", LastName="Doomed")
    clock.advance(minutes=1)
    deleted = admin(org, "delete", {"user": REP, "id": contact, "visibility_delay_ms": 90_000})
    clock.advance(minutes=1)
    assert [r["Id"] for r in soql(org, "SELECT Id FROM Contact")] == [contact]
    assert org.get("sobjects/Contact/deleted/", params=window(clock)).json()["deletedRecords"] == []
    clock.advance(seconds=40)
    assert soql(org, "SELECT Id FROM Contact") == []
    log = org.get("sobjects/Contact/deleted/", params=window(clock)).json()["deletedRecords"]
    assert [r["id"] for r in log] == [contact]
    assert log[0]["deletedDate"] == deleted["SystemModstamp"]


def test_the_visibility_fault_rule_picks_a_users_transactions_and_counts_them(org_at: Org, clock: Clock) -> None:
    org = org_at
    rule = org.http.post("/__admin/visibility", json={"delay_ms": 1000, "user": REP, "next": 1}).json()
    assert (rule["delay_ms"], rule["user"], rule["next"]) == (1000, REP, 1)
    mine = org.create("Contact", LastName="ByIntegration")  # another user's transaction: visible at once
    first = admin(org, "edit", {"user": REP, "sobject": "Contact", "values": {"LastName": "Rep1"}})["ids"][0]
    second = admin(org, "edit", {"user": REP, "sobject": "Contact", "values": {"LastName": "Rep2"}})["ids"][0]
    assert {r["Id"] for r in soql(org, "SELECT Id FROM Contact")} == {mine, second}
    clock.advance(seconds=1)
    assert {r["Id"] for r in soql(org, "SELECT Id FROM Contact")} == {mine, first, second}
    stats = org.http.get("/__admin/stats").json()["faults"]
    assert stats["injected"] == {"late": 1} and stats["visibility"]["next"] == 0


def test_the_faults_spec_delays_rest_writes_of_one_object(clock: Clock) -> None:
    org = Org(build(clock=clock, faults="visibility_delay=1500ms,visibility_object=Account"))
    with org.http:
        contact = org.create("Contact", LastName="Visible")
        account = org.create("Account", Name="Late")
        assert soql(org, "SELECT Id FROM Contact")[0]["Id"] == contact
        assert soql(org, "SELECT Id FROM Account") == []
        assert org.get(f"sobjects/Account/{account}").status_code == 404
        clock.advance(milliseconds=1500)
        assert soql(org, "SELECT Id FROM Account")[0]["Id"] == account


def test_visibility_spec_is_checked() -> None:
    faults = Faults.parse("visibility_delay=2000ms,visibility_user=rep@acme.test")
    assert faults.visibility.delay_ms == 2000 and faults.visibility.user == REP
    with pytest.raises(FaultSpecError) as error:
        Faults.parse("visibility_delay=soon,visibility_next=x,visibility_rate=2,visibility_colour=red")
    message = str(error.value)
    for part in ("visibility_delay=soon", "visibility_next=x", "visibility_rate=2", "visibility_colour"):
        assert part in message


def test_late_visibility_in_real_time(org: Org) -> None:
    """No clock injected: the write is hidden right after and shows up once the delay has passed."""
    late = admin(
        org, "edit", {"user": REP, "sobject": "Contact", "values": {"LastName": "Late"}, "visibility_delay_ms": 400}
    )
    after = org.create("Contact", LastName="After")
    assert [r["Id"] for r in soql(org, "SELECT Id FROM Contact")] == [after]
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = soql(org, "SELECT Id, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id")
        if len(rows) == 2:
            break
        time.sleep(0.1)
    by_id = {r["Id"]: r["SystemModstamp"] for r in rows}
    assert set(by_id) == {late["ids"][0], after}
    assert by_id[late["ids"][0]] == late["SystemModstamp"] <= by_id[after]


# ---------------------------------------------------------------------- one transaction, one timestamp
@pytest.fixture
def ticking() -> Iterator[tuple[Org, Clock]]:
    clock = Clock(tick=dt.timedelta(milliseconds=1))
    client = Org(build(clock=clock))
    with client.http:
        yield client, clock


def stamps(org: Org, record_ids: list[str]) -> list[str]:
    quoted = ",".join(f"'{i}'" for i in record_ids)
    rows = soql(org, f"SELECT Id, CreatedDate, LastModifiedDate, SystemModstamp FROM Contact WHERE Id IN ({quoted})")
    by_id = {r["Id"]: r for r in rows}
    for row in rows:
        assert row["LastModifiedDate"] == row["SystemModstamp"]
    return [by_id[i]["SystemModstamp"] for i in record_ids]


def contacts(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"attributes": {"type": "Contact"}, "LastName": f"{prefix}{i}"} for i in range(n)]


def test_one_collection_call_shares_one_stamp(ticking: tuple[Org, Clock]) -> None:
    org, _ = ticking
    created = [r["id"] for r in org.post("composite/sobjects", {"records": contacts(5, "C")}).json()]
    assert len(set(stamps(org, created))) == 1
    singles = [org.create("Contact", LastName=f"S{i}") for i in range(3)]
    assert len(set(stamps(org, singles))) == 3  # separate calls, separate transactions
    updates = [{"attributes": {"type": "Contact"}, "Id": i, "Title": "T"} for i in created]
    assert all(r["success"] for r in org.patch("composite/sobjects", {"records": updates}).json())
    updated = stamps(org, created)
    assert len(set(updated)) == 1 and updated[0] > stamps(org, singles)[-1]
    upserts = [{"attributes": {"type": "Contact"}, "Email": f"u{i}@example.com", "LastName": "U"} for i in range(4)]
    upserted = [r["id"] for r in org.patch("composite/sobjects/Contact/Email", {"records": upserts}).json()]
    assert len(set(stamps(org, upserted))) == 1


def test_composite_all_or_none_is_one_transaction(ticking: tuple[Org, Clock]) -> None:
    org, _ = ticking

    def composite(all_or_none: bool) -> list[str]:
        body = {
            "allOrNone": all_or_none,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": f"{V}/sobjects/Contact",
                    "referenceId": f"c{i}",
                    "body": {"LastName": f"K{i}"},
                }
                for i in range(3)
            ]
            + [
                {
                    "method": "PATCH",
                    "url": f"{V}/sobjects/Contact/@{{c0.id}}",
                    "referenceId": "again",
                    "body": {"Title": "x"},
                }
            ],
        }
        responses = org.post("composite", body).json()["compositeResponse"]
        return [r["body"]["id"] for r in responses[:3]]

    together = stamps(org, composite(True))
    # the record written twice in the transaction moves on by 1 ms; the others keep the transaction's stamp
    assert together[1] == together[2] and together[0] > together[1]
    apart = stamps(org, composite(False))
    assert len(set(apart)) == 3


def test_a_bulk_job_saves_in_chunks_of_200(ticking: tuple[Org, Clock]) -> None:
    org, _ = ticking
    job = org.post("jobs/ingest", {"object": "Contact", "operation": "insert", "lineEnding": "LF"}).json()
    csv_body = "LastName\n" + "".join(f"B{i}\n" for i in range(250))
    upload = org.http.put(
        f"{V}/jobs/ingest/{job['id']}/batches", content=csv_body, headers={"Content-Type": "text/csv"}
    )
    assert upload.status_code == 201, upload.text
    assert org.patch(f"jobs/ingest/{job['id']}", {"state": "UploadComplete"}).status_code == 200
    rows = soql(org, "SELECT LastName, SystemModstamp FROM Contact")
    by_name = {r["LastName"]: r["SystemModstamp"] for r in rows}
    assert len(by_name) == 250
    first = {by_name[f"B{i}"] for i in range(200)}
    rest = {by_name[f"B{i}"] for i in range(200, 250)}
    assert len(first) == 1 and len(rest) == 1 and first != rest


def test_admin_edit_of_many_records_is_one_rep_transaction(ticking: tuple[Org, Clock]) -> None:
    org, _ = ticking
    targets = [org.create("Contact", LastName=f"E{i}") for i in range(4)]
    result = admin(
        org,
        "edit",
        {"user": REP, "records": [{"sobject": "Contact", "id": i, "values": {"Title": "VP"}} for i in targets]},
    )
    assert result["ids"] == targets and result["by"] == user_id(org, REP)
    assert set(stamps(org, targets)) == {result["SystemModstamp"]}
    rows = soql(org, "SELECT Title, LastModifiedById FROM Contact")
    assert {(r["Title"], r["LastModifiedById"]) for r in rows} == {("VP", user_id(org, REP))}


# ---------------------------------------------------------------------- a rep's deletes
def test_rep_delete_undelete_purge_and_empty_as_a_poller_sees_them(org_at: Org, clock: Clock) -> None:
    org = org_at
    rep = user_id(org, REP)
    kept, binned, purged, emptied = (org.create("Contact", LastName=n) for n in ("Kept", "Binned", "Purged", "Emptied"))
    cursor = clock.now
    clock.advance(minutes=1)
    deleted = admin(org, "delete", {"user": REP, "ids": [binned, purged, emptied]})
    assert deleted["by"] == rep
    clock.advance(minutes=1)

    # soft delete: gone from query, in queryAll with IsDeleted and the rep as last modifier, in getDeleted
    assert [r["Id"] for r in soql(org, "SELECT Id FROM Contact")] == [kept]
    binned_rows = changed_since(org, cursor, all_rows=True)
    assert {r["Id"] for r in binned_rows} == {kept, binned, purged, emptied}
    for row in binned_rows:
        if row["Id"] != kept:
            assert row["IsDeleted"] is True and row["LastModifiedById"] == rep
            assert row["SystemModstamp"] == deleted["SystemModstamp"]
    log = org.get("sobjects/Contact/deleted/", params=window(clock)).json()
    assert {r["id"] for r in log["deletedRecords"]} == {binned, purged, emptied}
    assert {r["deletedDate"] for r in log["deletedRecords"]} == {deleted["SystemModstamp"]}
    assert org.get("sobjects/Contact/updated/", params=window(clock)).json()["ids"] == [kept]

    # undelete: back in query with a new stamp, no longer in getDeleted, in getUpdated
    restored = admin(org, "undelete", {"user": REP, "id": binned})
    clock.advance(minutes=1)
    back = {r["Id"]: r for r in soql(org, "SELECT Id, IsDeleted, SystemModstamp, LastModifiedById FROM Contact")}
    assert set(back) == {kept, binned}
    assert back[binned]["SystemModstamp"] == restored["SystemModstamp"] > deleted["SystemModstamp"]
    assert back[binned]["IsDeleted"] is False and back[binned]["LastModifiedById"] == rep
    log = org.get("sobjects/Contact/deleted/", params=window(clock)).json()
    assert {r["id"] for r in log["deletedRecords"]} == {purged, emptied}
    assert set(org.get("sobjects/Contact/updated/", params=window(clock)).json()["ids"]) == {kept, binned}

    # purge (hard delete): gone from queryAll; getDeleted still lists it
    admin(org, "purge", {"user": REP, "id": purged})
    assert purged not in {r["Id"] for r in soql(org, "SELECT Id FROM Contact", all_rows=True)}
    log = org.get("sobjects/Contact/deleted/", params=window(clock)).json()
    assert {r["id"] for r in log["deletedRecords"]} == {purged, emptied}
    assert org.get(f"sobjects/Contact/{purged}").status_code == 404

    # emptying the recycle bin: gone from queryAll, and the delete log goes with it
    emptied_bin = admin(org, "empty-recycle-bin", {})
    assert emptied_bin == {"purged": 1, "delete_log_truncated": True}
    assert {r["Id"] for r in soql(org, "SELECT Id FROM Contact", all_rows=True)} == {kept, binned}
    clock.advance(minutes=2)
    log = org.get("sobjects/Contact/deleted/", params=window(clock)).json()
    assert log["deletedRecords"] == []
    assert log["earliestDateAvailable"] == format_datetime(cursor + dt.timedelta(minutes=3))  # when it was emptied


def test_emptying_the_bin_can_keep_the_delete_log(org_at: Org, clock: Clock) -> None:
    org = org_at
    contact = org.create("Contact", LastName="Binned")
    clock.advance(minutes=1)
    admin(org, "delete", {"user": REP, "id": contact})
    assert admin(org, "empty-recycle-bin", {"truncate_delete_log": False})["purged"] == 1
    clock.advance(minutes=1)
    assert soql(org, "SELECT Id FROM Contact", all_rows=True) == []
    log = org.get("sobjects/Contact/deleted/", params=window(clock)).json()
    assert [r["id"] for r in log["deletedRecords"]] == [contact]


def test_admin_actions_name_unknown_users_and_records(org: Org) -> None:
    assert (
        org.http.post("/__admin/delete", json={"user": "nobody@acme.test", "id": "003000000000001AAA"}).status_code
        == 404
    )
    assert org.http.post("/__admin/delete", json={"user": REP, "id": "003000000000001AAA"}).status_code == 404
