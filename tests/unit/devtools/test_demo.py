"""``sfsync demo``'s pure parts: the bad records, the sales reps' schedule, the figures, the report,
and stopping what it started (real processes, no Kafka)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfsync.devtools.demo import Child, stop_children
from sfsync.devtools.demo_report import (
    DemoReport,
    ParkedView,
    contact_edits_back,
    errors_by,
    inbound_kinds,
    metric_by_label,
    metric_sum,
    parse_metrics,
    percentile,
    render_report,
)
from sfsync.devtools.demo_scenario import (
    CONTACT_BAD,
    RepEdit,
    bad_positions,
    bad_records,
    parse_pace,
    rep_edit_schedule,
)
from sfsync.emulator.errors import ApiError
from sfsync.emulator.store import OrgStore
from sfsync.errors import SkippableRecordError
from sfsync.producers import events as ev
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _simulator() -> CommunitySimulator:
    sim = CommunitySimulator(seed=5)
    list(sim.stream(200))
    return sim


def test_each_typed_bad_record_is_refused_by_the_default_org_for_the_reason_it_names() -> None:
    sim = _simulator()
    bad = bad_records(sim, NOW, sim.member_ids[3])
    assert [b.label for b in bad] == [
        "Contact Title too long",
        "Case Subject too long",
        "Case email invalid",
        "not Avro",
    ]
    store = OrgStore.from_org_file(None)
    contact_update = bad[CONTACT_BAD].event
    assert isinstance(contact_update, ev.UserProfileUpdate)
    assert contact_update.member.member_id == sim.member_ids[3]
    with pytest.raises(ApiError) as too_long:
        store.create("Contact", {"LastName": "X", "Email": "x@example.com", "Title": contact_update.member.title})
    assert too_long.value.error_code == "STRING_TOO_LONG"

    for record, code in ((bad[1], "STRING_TOO_LONG"), (bad[2], "INVALID_EMAIL_ADDRESS")):
        post = record.event
        assert isinstance(post, ev.ForumPostCaseRequested)
        with pytest.raises(ApiError) as refused:
            store.create("Case", {"Subject": post.post.title, "SuppliedEmail": post.post.author.email})
        assert refused.value.error_code == code


def test_the_raw_bad_record_cannot_be_decoded() -> None:
    raw = bad_records(_simulator(), NOW)[3]
    assert raw.event is None
    assert raw.topic == "product.members"
    with pytest.raises(SkippableRecordError, match="not Confluent wire format"):
        AvroDecoder(SchemaRegistry("http://127.0.0.1:9/unused")).decode(raw.raw)


def test_bad_records_and_rep_edits_fall_inside_the_stream_with_exact_counts() -> None:
    for events in (100, 400, 3000):
        positions = bad_positions(events, 4)
        assert positions == sorted(set(positions))
        assert all(10 <= p < events for p in positions)
        schedule = rep_edit_schedule(events)
        counts = {kind: list(schedule.values()).count(kind) for kind in ("Contact", "Campaign")}
        assert counts == {"Contact": max(3, events // 200), "Campaign": max(2, events // 600)}
        assert all(events // 4 <= p <= events * 9 // 10 for p in schedule)


def test_pace_is_fast_or_a_positive_rate() -> None:
    assert parse_pace("fast") is None
    assert parse_pace("50") == 50.0
    for bad in ("0", "-3", "quick"):
        with pytest.raises(ValueError, match="--pace"):
            parse_pace(bad)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) is None


def test_metrics_are_summed_by_name_and_label() -> None:
    samples = parse_metrics(
        "# TYPE sfsync_writes_total counter\n"
        'sfsync_writes_total{sobject="Contact",outcome="created"} 3\n'
        'sfsync_writes_total{sobject="Contact",outcome="updated"} 4\n'
        'sfsync_writes_total{sobject="Case",outcome="parked"} 1\n'
    )
    assert metric_sum(samples, "sfsync_writes_total") == 8
    assert metric_sum(samples, "sfsync_writes_total", sobject="Contact") == 7
    assert metric_by_label(samples, "sfsync_writes_total", "outcome") == {"created": 3, "updated": 4, "parked": 1}
    assert parse_metrics("not { an exposition") == []


def test_a_rep_edit_is_back_when_an_update_carries_its_value_and_echoes_are_told_apart() -> None:
    edits = [
        RepEdit("Contact", "003A", {"Title": "VP Sales"}, modstamp=100.0, by="005REP"),
        RepEdit("Contact", "003B", {"Title": "CTO"}, modstamp=100.0, by="005REP"),
        RepEdit("Campaign", "701C", {"Status": "Planned"}, modstamp=100.0, by="005REP"),
    ]
    inbound = [
        ("MemberIdentityLink", {"salesforce_id": "003A"}, 100_500),
        ("MemberFieldUpdate", {"salesforce_id": "003A", "salesforce_fields": {"Title": "old"}}, 101_000),
        (
            "MemberFieldUpdate",
            {"salesforce_id": "003A", "salesforce_fields": {"Title": "VP Sales"}, "last_modified_by_id": "005REP"},
            102_500,
        ),
        (
            "MemberFieldUpdate",
            {"salesforce_id": "003B", "salesforce_fields": {"Title": "x"}, "last_modified_by_id": "005SFS"},
            103_000,
        ),
    ]
    assert contact_edits_back(edits, inbound) == {"003A": 2.5}
    assert inbound_kinds(inbound, {"005REP"}, "005SFS") == {
        "MemberIdentityLink": 1,
        "MemberFieldUpdate by other users": 1,
        "MemberFieldUpdate by the sales reps": 1,
        "MemberFieldUpdate by sfsync (echo)": 1,
    }


def test_error_log_entries_split_into_errors_and_notices() -> None:
    entries = {("ERROR", "SYNC", "STRING_TOO_LONG"): 2, ("INFO", "SYNC", "LOOKUP_POLICY_SKIP"): 9}
    assert errors_by(entries, notices=False) == {"SYNC STRING_TOO_LONG": 2}
    assert errors_by(entries, notices=True) == {"SYNC LOOKUP_POLICY_SKIP": 9}
    assert errors_by(entries, notices=False, detail=False) == {"SYNC": 2}


def _report(**overrides: object) -> DemoReport:
    values: dict[str, object] = {
        "prefix": "demo-x.",
        "events": 404,
        "bad_sent": ["Case Subject too long", "not Avro"],
        "seconds_streaming": 8.0,
        "seconds_total": 40.0,
        "org_records": {"Contact": 66, "Case": 15},
        "written": {"Contact": 114, "Case": 15},
        "results": 129,
        "api_calls_sink": 35,
        "api_calls_poller": 18,
        "api_calls_org": 53,
        "outbound_latency_s": {"p50": 1.45, "p99": 4.77},
        "rep_edits": {"Contact": 3, "Campaign": 2},
        "contact_edits_back": 3,
        "inbound_records": 141,
        "inbound_by_kind": {"MemberIdentityLink": 132, "MemberFieldUpdate by the sales reps": 3},
        "inbound_latency_s": {"p50": 2.0, "p99": 3.0},
        "poller_latency_s": {"p50": 0.4, "p99": 0.9},
        "campaign_edits_kept": 2,
        "errors": {"SYNC STRING_TOO_LONG": 1},
        "notices": {"SYNC LOOKUP_POLICY_SKIP": 59},
        "parked": [
            ParkedView("Case 'Case:...'", "STRING_TOO_LONG", "TASK_PUT", "forum_cases", "Subject", "too large", None)
        ],
        "metrics": {"sink": "http://127.0.0.1:9102/metrics"},
        "logs": "/tmp/demo-x",
        "pids": [1],
        "drained": True,
    }
    values.update(overrides)
    return DemoReport(**values)  # type: ignore[arg-type]


def test_the_report_gives_the_figures_and_names_what_was_not_parked() -> None:
    text = "\n".join(render_report(_report()))
    assert re.search(r"\n  Contact +66\n  Case +15\n", text)
    assert "35: 0.271 per synced record" in text
    assert "p50 1.45 s  p99 4.77 s" in text
    assert "Contact edits back on product.members.inbound: 3/3" in text
    assert "SYNC STRING_TOO_LONG" in text
    assert "informational entries: SYNC LOOKUP_POLICY_SKIP 59" in text
    assert "STRING_TOO_LONG at TASK_PUT (forum_cases.Subject): too large" in text
    assert "NOT parked: Case Subject too long, not Avro" in text
    assert "http://127.0.0.1:9102/metrics" in text
    assert "had not caught up" not in text
    assert "had not caught up" in "\n".join(render_report(_report(drained=False)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stopping_kills_each_childs_whole_process_group_even_when_it_ignores_sigterm(tmp_path: Path) -> None:
    # the child ignores SIGTERM and starts a grandchild in its group: both must be gone
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(grandchild.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    stubborn = Child("stubborn", [sys.executable, "-c", script], dict(os.environ), tmp_path / "stubborn.log", 0)
    polite = Child(
        "polite", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path / "p.log", 0
    )
    stubborn.start(tmp_path)
    polite.start(tmp_path)
    deadline = time.monotonic() + 20
    while not stubborn.log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(stubborn.log.read_text().split()[0])
    assert stubborn.proc is not None and polite.proc is not None
    assert os.getpgid(stubborn.proc.pid) == stubborn.proc.pid != os.getpgid(0)

    started = time.monotonic()
    stop_children([stubborn, polite], grace_s=1.0)
    assert time.monotonic() - started < 10
    assert polite.proc.returncode == -signal.SIGTERM
    assert stubborn.proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild) or _zombie(grandchild)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False


def test_a_child_that_cannot_start_shows_its_log(tmp_path: Path) -> None:
    child = Child(
        "broken", [sys.executable, "-c", "print('no settings'); raise SystemExit(2)"], {}, tmp_path / "b.log", 0
    )
    child.start(tmp_path)
    assert child.proc is not None
    child.proc.wait(timeout=20)
    assert child.exited() == 2
    assert "no settings" in child.tail()
    stop_children([child])  # already gone: nothing to signal, no error
    assert subprocess.call([sys.executable, "-c", "pass"]) == 0
