"""Shared fixtures.

Integration tests need a real Kafka broker and schema registry. Where they come from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``SCHEMA_REGISTRY_URL`` (what ``.ci/run`` sets after
   ``sfsync stack up``);
2. testcontainers, only when a Docker daemon answers a ping;
3. the project's own local stack (``sfsync.devtools.stack``), started here and stopped afterwards.
If none works, integration tests fail under ``REQUIRE_KAFKA=1`` and are skipped otherwise; the chaos
suite (``tests/chaos``, fixture ``stack_services``) always fails then: it is never skipped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from sfsync.settings import StackSettings

# Processors, sinks and pollers started by tests (often as subprocesses, several at once) serve no
# /metrics unless a test asks for a port: fixed default ports would collide between them.
for _setting in (
    "SFSYNC_PROCESSOR_METRICS_PORT",
    "SFSYNC_SINK_METRICS_PORT",
    "SFSYNC_SOURCE_METRICS_PORT",
    "SFSYNC_INBOUND_METRICS_PORT",
):
    os.environ.setdefault(_setting, "0")


@dataclass(frozen=True)
class Services:
    bootstrap: str
    registry: str
    origin: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath) or "/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _docker_answers() -> bool:
    """Whether a Docker daemon answers ``GET /_ping`` (the client binary alone is not enough)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            if not os.path.exists(host[7:]):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host[7:]
        elif host.startswith("tcp://"):
            name, _, port = host[6:].partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(3)
            sock.connect(address)  # type: ignore[arg-type]
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"200 OK" in sock.recv(1024)
    except OSError:
        return False


def _from_testcontainers(stack: ExitStack) -> Services:  # pragma: no cover - no Docker engine here
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft())
    registry = DockerContainer("apicurio/apicurio-registry:3.3.3").with_exposed_ports(8080)
    stack.enter_context(registry)
    wait_for_logs(registry, "Installed features", timeout=120)
    url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8080)}/apis/ccompat/v7"
    return Services(kafka.get_bootstrap_server(), url, "testcontainers")


@pytest.fixture(scope="session")
def found_services() -> Iterator[Services | str]:
    """The Kafka + registry of this session (see the module doc), or why there is none."""
    from sfsync.devtools.stack import running_stack, wait_kafka, wait_registry

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    registry = os.environ.get("SCHEMA_REGISTRY_URL")
    with ExitStack() as stack:
        found: Services | str
        try:
            if bootstrap and registry:
                wait_kafka(bootstrap, 30)
                wait_registry(registry, 30)
                found = Services(bootstrap, registry.rstrip("/"), "environment")
            elif _docker_answers():
                found = _from_testcontainers(stack)
            else:
                report = stack.enter_context(running_stack(StackSettings()))
                found = Services(report.kafka, report.registry, "local stack")
        except Exception as exc:
            found = f"no Kafka + schema registry for integration tests: {exc}"
        yield found


@pytest.fixture(scope="session")
def services(found_services: Services | str) -> Services:
    """The session's Kafka + registry; none: the test fails under ``REQUIRE_KAFKA=1``, else it is skipped."""
    if isinstance(found_services, str):
        if os.environ.get("REQUIRE_KAFKA") == "1":
            pytest.fail(f"REQUIRE_KAFKA=1 and {found_services}")
        pytest.skip(found_services)
    return found_services


@pytest.fixture(scope="session")
def stack_services(found_services: Services | str) -> Services:
    """The session's Kafka + registry for a test that must run wherever the suite runs (the chaos suite):
    none is a failure, never a skip."""
    if isinstance(found_services, str):
        pytest.fail(found_services)
    return found_services


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A topic prefix of this test's own, so tests never see each other's records.

    The topics it created are deleted afterwards (best effort): a single-node broker holding
    thousands of leftover test topics answers metadata requests slowly.
    """
    value = f"t{uuid.uuid4().hex[:10]}."
    yield value
    if "services" in request.fixturenames:
        _delete_topics(request.getfixturevalue("services").bootstrap, value)


def _delete_topics(bootstrap: str, prefix: str) -> None:
    from sfsync.kafka.admin import delete_topics

    with contextlib.suppress(Exception):  # cleanup only; the test's outcome stands
        delete_topics({"bootstrap.servers": bootstrap}, [prefix])
