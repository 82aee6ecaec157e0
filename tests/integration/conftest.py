"""Integration fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfsync.emulator.server import RunningEmulator, serve_in_thread
from sfsync.serde.registry import SchemaRegistry


@pytest.fixture
def registry(services) -> Iterator[SchemaRegistry]:
    with SchemaRegistry(services.registry) as client:
        yield client


@pytest.fixture
def running() -> Iterator[RunningEmulator]:
    """An emulated org on loopback (real HTTP), in this process, stopped after the test."""
    emulator = serve_in_thread()
    try:
        yield emulator
    finally:
        emulator.stop()
