"""The Salesforce client's HTTP stack finds what it looks for on every request (no failing import per call)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from httpcore._synchronization import current_async_library

ROOT = Path(__file__).resolve().parents[3]


async def test_httpcore_finds_sniffio_instead_of_retrying_a_failing_import_per_lock() -> None:
    assert current_async_library() == "asyncio"
    assert "sniffio" in sys.modules  # imported once, found in sys.modules by every later lock setup


def test_the_workers_pin_sniffio_exactly() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("worker", "emulator", "dev"):
        assert [d for d in extras[extra] if d.startswith("sniffio")] == ["sniffio==1.3.1"], extra
