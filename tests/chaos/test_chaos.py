"""The chaos run (``bench/chaos.py``) at a small size, on the session's Kafka and registry: 3,000 product
events through 2 processors, 2 sinks, the poller and the inbound app, each a process of its own, while
workers are SIGKILLed, the broker and the registry are restarted, and the emulated org answers 503s,
row locks, writes committed then answered 504, expiring tokens and a spent daily allocation while a sales
rep edits the same Contacts.

The org must then hold exactly what the events (and the rep's edits) imply: nothing lost, duplicated or
stale; the DLQ exactly the poison records sent; every rep edit back on the product's inbound topic. The
faults must really have happened, so that the run cannot pass by doing nothing.

The run restarts the broker and the registry: it needs the sfsync stack (``sfsync stack up``; the
``SFSYNC_STACK_*`` settings say which) at the addresses of the session's services, and fails when
there is none (it is never skipped).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3000
RATE = 30  # events/s: the stream lasts 100 s, the faults fall inside it


@pytest.mark.timeout(340)
def test_chaos_leaves_the_org_as_the_events_imply_with_only_the_poison_parked(
    stack_services: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack_services.bootstrap,
        "SCHEMA_REGISTRY_URL": stack_services.registry,
    }
    command = [sys.executable, str(ROOT / "bench" / "chaos.py"), "--events", str(EVENTS), "--rate", str(RATE)]
    # batches of a quarter second and tokens living 30 s: enough API calls and expiries in 100 s that every
    # kind of org fault happens; commit-then-504 at 8 % of the write calls (at the full run's 1 % the few
    # hundred write calls of a small run might meet none)
    small = ["--batch-age", "0.25", "--expire-every", "30", "--commit504", "0.08", "--converge-timeout", "120"]
    run = subprocess.Popen(
        [*command, *small, "--work-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = run.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGINT)  # it stops the workers, the emulator and any stack restart it began
        out, err = run.communicate(timeout=40)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no figures (exit {run.returncode}):\n{err[-6000:]}"
    figures = json.loads(lines[-1])
    why = f"{json.dumps(figures, indent=1)}\n{err[-6000:]}"

    # the faults happened
    assert figures["events"] == EVENTS, why
    assert figures["kills"] >= 3, why
    assert figures["broker_restarts"] == 1 and figures["registry_restarts"] == 1, why
    injected = figures["faults_injected"]
    assert "commit504=0.08" in figures["org_faults"], why
    assert injected.get("503", 0) > 0 and injected.get("lock", 0) > 0, why
    assert injected.get("commit504", 0) > 0, why  # writes committed, then answered 504
    assert injected.get("expire_every", 0) > 0, why  # calls that met an expired token
    assert injected["limit_windows"] == 1 and injected.get("daily_limit", 0) > 0, why  # calls refused then
    assert figures["inbound_edits"] > 0, why
    assert not figures["fault_errors"], why

    # and the org is what the events imply
    assert figures["converged"], why
    assert (figures["lost"], figures["duplicated"], figures["stale"]) == (0, 0, 0), why
    assert sum(figures["poison"].values()) == 4 and not figures["poison_unsent"], why
    assert figures["parked"] == {"RECORD_SKIPPED": 2, "UNKNOWN_SCHEMA_ID": 2}, why
    assert not figures["parked_unexpected"] and figures["poison_missing"] == 0, why
    assert figures["inbound_missing"] == 0, why
    assert run.returncode == 0, why
