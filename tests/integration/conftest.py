"""Integration fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sfsync.emulator.server import RunningEmulator, RunningOrg, RunningOrgs, serve_in_thread
from sfsync.serde.registry import SchemaRegistry
from tests.integration.secrets_audit import SecretsAudit


@pytest.fixture
def registry(services: Any) -> Iterator[SchemaRegistry]:
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


@pytest.fixture
def secrets_audit(request: pytest.FixtureRequest, services: Any, prefix: str) -> Iterator[SecretsAudit]:
    """After the test, no secret it knows is in its workers' logs and ``/metrics`` pages nor in any record of its
    topics (the error log, the DLQ's headers...): :mod:`tests.integration.secrets_audit`. The emulated orgs among
    the test's fixtures are audited; a test names others, in-process metrics registries and command outputs
    through the fixture. A module of tests that handle secrets uses it for every test:
    ``pytestmark = pytest.mark.usefixtures("secrets_audit")``."""
    audit = SecretsAudit(services, prefix)
    with audit.capturing_logs():
        yield audit
    audit.org(*(value for value in request.node.funcargs.values() if isinstance(value, RunningOrg | RunningOrgs)))
    audit.check()
