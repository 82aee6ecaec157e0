"""The local stack's helpers that need no Kafka: who holds a port, which Java, pid handling."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfsync.devtools.stack import Stack, find_java, java_major, pid_alive, port_holder, stop_process_group
from sfsync.errors import StackError
from sfsync.settings import StackSettings

SPAWN_CHILD_THEN_SLEEP = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_port_holder_names_the_process(listening: socket.socket) -> None:
    import os

    holder = port_holder(listening.getsockname()[1])
    assert holder is not None
    assert holder.startswith(f"pid {os.getpid()}:")
    assert "python" in holder


def test_a_taken_port_is_reported_with_what_holds_it(listening: socket.socket, tmp_path: Path) -> None:
    import os

    port = listening.getsockname()[1]
    stack = Stack(StackSettings(home=tmp_path, kafka_port=port, external_kafka=None, external_registry=None))
    with pytest.raises(StackError) as err:
        stack._check_ports_free("Kafka", [port])
    assert f"127.0.0.1:{port} is already taken by pid {os.getpid()}" in str(err.value)


def test_java_is_found_by_version() -> None:
    java = find_java(17)
    assert java_major(java.parents[1]) >= 17
    with pytest.raises(StackError, match="no Java 99\\+ found"):
        find_java(99)


def test_stop_process_group_ends_the_whole_group() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SPAWN_CHILD_THEN_SLEEP,
        ],
        start_new_session=True,
    )
    time.sleep(0.5)
    children = subprocess.run(["pgrep", "-g", str(parent.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2
    stop_process_group(parent.pid, timeout_s=5)
    assert not pid_alive(parent.pid)
    parent.wait(timeout=1)
    time.sleep(0.2)
    assert not any(pid_alive(int(pid)) for pid in children)


def test_status_of_a_stack_never_started(tmp_path: Path) -> None:
    stack = Stack(StackSettings(home=tmp_path, external_kafka=None, external_registry=None))
    states = {s.name: s for s in stack.status()}
    assert states["kafka"].state == "stopped"
    assert states["kafka"].log == tmp_path / "logs" / "kafka.log"
    assert stack.down() == []


def test_cluster_ids_never_look_like_options() -> None:
    from sfsync.devtools.stack import new_cluster_id

    ids = {new_cluster_id() for _ in range(3000)}  # a leading "-" is 1 in 64 per draw
    assert len(ids) == 3000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
