"""Every benchmark script loads (its imports and module-level wiring hold) and answers ``--help``:
a refactor that moves a helper a bench imports breaks here, not in a 40-minute run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def test_the_benchmarks_are_all_here() -> None:
    assert {"e2e.py", "inbound.py", "outbound.py", "processor_peer.py", "plan.py", "produce.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_script_loads_and_shows_its_options(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
