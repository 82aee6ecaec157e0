"""`sfsync stack`: a second, private stack on other ports goes up, reports, refuses a taken port,
and comes down leaving no process and no bound port behind."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sfsync.devtools.stack import Stack, pid_alive, port_in_use
from sfsync.errors import StackError
from sfsync.settings import StackSettings

BASE = 29100  # far from the default ports, so the shared stack keeps running beside this one


def processes_under(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.fixture
def private_stack(tmp_path: Path):
    settings = StackSettings(
        home=tmp_path / "stack",
        cache=StackSettings().home / "dist",  # reuse the downloads of the shared stack
        kafka_port=BASE,
        controller_port=BASE + 1,
        registry_port=BASE + 2,
        registry_management_port=BASE + 3,
        external_kafka=None,
        external_registry=None,
    )
    stack = Stack(settings)
    yield stack
    stack.down(timeout_s=10)


def test_up_status_idempotent_up_and_clean_down(private_stack: Stack) -> None:
    report = private_stack.up()
    assert report.started == ("kafka", "registry")
    assert report.kafka == f"127.0.0.1:{BASE}"
    assert report.seconds < 60
    states = {s.name: s for s in private_stack.status()}
    assert states["kafka"].state == states["registry"].state == "running"
    assert states["kafka"].log == private_stack.logs / "kafka.log"
    assert (private_stack.logs / "kafka.log").stat().st_size > 0
    pids = [states["kafka"].pid, states["registry"].pid]

    assert private_stack.up().started == ()  # already running: nothing started twice

    assert private_stack.down() == ["registry", "kafka"]
    assert not any(pid_alive(p) for p in pids if p)
    assert processes_under(private_stack.home) == []
    for port in range(BASE, BASE + 4):
        assert not port_in_use("127.0.0.1", port)
    assert not list((private_stack.home / "run").glob("*.pid"))


def test_a_taken_port_is_reported_with_its_holder(private_stack: Stack) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", BASE))
        squatter.listen()
        with pytest.raises(StackError) as err:
            private_stack.up()
    assert f"port 127.0.0.1:{BASE} is already taken by pid {os.getpid()}" in str(err.value)
    assert processes_under(private_stack.home) == []


def java_exactly(major: int) -> Path:
    from sfsync.devtools.stack import java_major

    for home in sorted(Path("/usr/lib/jvm").iterdir()):
        if (home / "bin" / "java").exists() and java_major(home) == major:
            return home / "bin" / "java"
    raise AssertionError(f"this machine has no Java {major} under /usr/lib/jvm")


class Java17Machine(Stack):
    """A stack on a machine whose newest Java is 17 (the registry must fall back)."""

    def registry_choice(self) -> tuple[str, Path]:
        from sfsync.devtools.stack import APICURIO_JAVA17_VERSION

        return APICURIO_JAVA17_VERSION, java_exactly(17)


def test_without_java_21_the_registry_falls_back_and_still_serves(tmp_path: Path) -> None:
    from sfsync.producers import events as ev
    from sfsync.serde.codec import AvroDecoder, AvroEncoder
    from sfsync.serde.registry import SchemaRegistry
    from sfsync.serde.schema import load_topic_schema

    base = BASE + 10
    stack = Java17Machine(
        StackSettings(
            home=tmp_path / "stack",
            cache=StackSettings().home / "dist",
            kafka_port=base,
            controller_port=base + 1,
            registry_port=base + 2,
            registry_management_port=base + 3,
            external_kafka=None,
            external_registry=None,
        )
    )
    try:
        report = stack.up()
        assert "apicurio-3.0.9" in str(stack.registry_jar())
        with SchemaRegistry(report.registry) as registry:
            encoder = AvroEncoder(registry, "product.members", load_topic_schema("product.members"))
            event = ev.UserDeleted(workspace_id="w", member=ev.MemberRef(member_id="u-1"))
            name, value = AvroDecoder(registry).decode(encoder.encode_checked(event.RECORD_NAME, event.to_avro()))
        assert (name, value["member"]["member_id"]) == ("UserDeleted", "u-1")
    finally:
        stack.down(timeout_s=10)
    assert processes_under(stack.home) == []
