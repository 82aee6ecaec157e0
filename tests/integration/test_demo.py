"""``sfsync demo`` end to end, as a user runs it, against the running Kafka and registry.

With ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` set the demo starts no stack and stops
none; it starts the emulated org, the outbound processor, the sink, the poller and the inbound
processor, streams 400 events (4 of them bad on purpose) while sales reps edit records, and reports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BAD = ["Contact Title too long", "Case Subject too long", "Case email invalid", "not Avro"]


def _env(services: Any, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
        "SCHEMA_REGISTRY_URL": services.registry,
        "SFSYNC_STACK_HOME": str(home),  # the run's logs and Faust data land here
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


# Ctrl-C in a terminal reaches a foreground program whose SIGINT is at its default. A program started from a
# shell's background job (as a CI runner may start the suite) inherits SIGINT *ignored*, and Python then
# installs no KeyboardInterrupt handler: start the demo as the terminal would, SIGINT back at its default.
AS_FROM_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
]


def _gone(pid: int) -> bool:
    """No process is left in ``pid``'s process group (each child leads its own)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_demo_shows_both_directions_parks_the_bad_records_and_leaves_nothing_running(
    services: Any, tmp_path: Path
) -> None:
    report_file = tmp_path / "report.json"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sfsync.cli.main",
            "demo",
            "--events",
            "400",
            "--pace",
            "fast",
            "--json",
            str(report_file),
        ],
        env=_env(services, tmp_path / "home"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    assert time.monotonic() - started < 180
    report = json.loads(report_file.read_text())

    # outbound: records in the org, acknowledged writes, latency and API economy measured
    assert report["org_records"]["Contact"] > 20 and report["org_records"]["Community_Activity__c"] > 200
    assert report["results"] > 400 and report["outbound_latency_s"]["p50"] is not None
    assert 0 < report["api_calls_per_record"] < 1
    # inbound: every Contact a sales rep edited came back to the product, with its latency
    assert report["rep_edits"]["Contact"] >= 3
    assert report["contact_edits_back"] == report["rep_edits"]["Contact"]
    assert report["inbound_by_kind"]["MemberFieldUpdate by the sales reps"] >= report["rep_edits"]["Contact"]
    assert report["inbound_latency_s"]["p50"] is not None
    # ...and none of sfsync's own writes came back as an update (everything starts at once here: the
    # results and changes streams race), nor did one wait out the echo hold (30 s) in front of them
    assert "MemberFieldUpdate by sfsync (echo)" not in report["inbound_by_kind"], report["inbound_by_kind"]
    assert report["inbound_latency_s"]["p99"] < 15, report["inbound_latency_s"]
    assert report["campaign_edits_kept"] == report["rep_edits"]["Campaign"]
    # the four bad records, each named in the DLQ, and nothing else parked
    assert report["bad_sent"] == BAD or sorted(report["bad_sent"]) == sorted(BAD)
    assert sorted(p["bad_on_purpose"] for p in report["parked"]) == sorted(BAD)
    codes = {p["bad_on_purpose"]: p["code"] for p in report["parked"]}
    assert codes["Case Subject too long"] == "STRING_TOO_LONG"
    assert codes["Case email invalid"] == "INVALID_EMAIL_ADDRESS"
    assert report["errors"].get("SYNC STRING_TOO_LONG") == 2
    # the printed report says the same
    assert "Dead letter queue (sfsync.dlq): 4 record(s), 4 of the 4 bad on purpose" in output
    assert re.search(r"Contact edits back on product\.members\.inbound: (\d+)/\1\b", output)
    assert "/metrics" in output
    # nothing it started is left running
    assert len(report["pids"]) == 4
    assert all(_gone(pid) for pid in report["pids"])


def test_ctrl_c_stops_everything_the_demo_started_without_a_traceback(services: Any, tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [*AS_FROM_A_TERMINAL, "-m", "sfsync.cli.main", "demo", "--events", "3000", "--pace", "40"],
        env=_env(services, tmp_path / "home"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    pids: list[int] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 90
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("started "):
                pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", line)]
            if "streaming" in line and pids:
                break
            assert time.monotonic() < deadline, "".join(lines)
        demo.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends the demo (its children have their own)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()  # left open after a timeout, it fails a later test as an unraisable warning
    output = "".join(lines) + rest
    assert demo.returncode == 130, output[-3000:]
    assert "interrupted: stopping what the demo started" in output
    assert "Traceback" not in output
    assert len(pids) == 4
    assert all(_gone(pid) for pid in pids), output[-3000:]
