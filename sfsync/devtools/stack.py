"""The local stack: a real single-node Apache Kafka (KRaft) and Apicurio Registry on loopback.

No Docker engine runs on our machines, so the broker runs from the ``org.apache.kafka:kafka_2.13``
jars and the registry from the ``io.apicurio:apicurio-registry-app`` fast-jar, both fetched from
Maven Central with ``mvn`` (cached in ``~/.m2`` and under ``<home>/dist``). The registry keeps its
state in Kafka (``kafkasql`` storage), so the two can never disagree about schema ids after a
restart; ``down --wipe`` clears both.

Layout under ``home`` (``SFSYNC_STACK_HOME``, default ``~/.cache/sfsync``); downloads go to
``SFSYNC_STACK_CACHE`` (default ``<home>/dist``)::

    dist/kafka-<v>/libs/*.jar       dist/apicurio-<v>/quarkus-run.jar
    run/{kafka,registry}.pid        run/server.properties
    data/kafka/                     logs/{kafka,registry,fetch}.log
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from sfsync.errors import ServiceUnavailableError, StackError
from sfsync.settings import StackSettings

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local"
# Services this process started, so stopping them can also reap them (no zombie, no warning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
KAFKA_MIN_JAVA = 17
APICURIO_MIN_JAVA = 21  # Apicurio 3.3 is compiled for Java 21 (class file 65)

KAFKA_JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true")
"""The broker's JVM flags besides its heap: Kafka's own (``kafka-run-class.sh``'s G1 settings), for
throughput. Full tiered compilation (C2): the broker's request path is hot for as long as the stack
runs, and stopping at C1 (``-XX:TieredStopAtLevel=1``) cost it ~24 % more CPU per request under the
pipeline's load; C2's compiling costs nothing measurable at start-up (``sfsync stack up`` reports it)."""

REGISTRY_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
"""The registry's JVM flags besides its heap: for a quick start. Clients cache schemas by id, so the
registry serves a few requests per worker start, never a request per record; C1 only and the serial
collector start Quarkus fastest on a small machine."""
# Without a Java 21+, the newest Apicurio built for Java 17 (checked here: its ccompat API serves
# confluent-kafka; it predates 3.3's compatibility-harness fixes, hence only a fallback).
APICURIO_JAVA17_VERSION = "3.0.9"
APICURIO_JARS = ("quarkus-run.jar", "apicurio-registry-app-*-runner.jar")


@dataclass(frozen=True)
class ServiceState:
    name: str
    address: str
    state: str  # "running", "stopped", "external", "starting"
    pid: int | None
    log: Path | None


@dataclass(frozen=True)
class UpReport:
    kafka: str
    registry: str
    seconds: float
    fetch_seconds: float
    started: tuple[str, ...]


class Stack:
    """Fetch, start, stop and describe the local Kafka + registry."""

    def __init__(self, settings: StackSettings, echo: Callable[[str], None] = lambda _m: None) -> None:
        self.s = settings
        self.echo = echo
        self.home = settings.home.expanduser()
        self.dist = (settings.cache or self.home / "dist").expanduser()
        self.run_dir = self.home / "run"
        self.data_dir = self.home / "data" / "kafka"
        self.logs = self.home / "logs"
        self.kafka_libs = self.dist / f"kafka-{settings.kafka_version}" / "libs"
        self._registry_choice: tuple[str, Path] | None = None

    # ------------------------------------------------------------------ registry version
    def registry_choice(self) -> tuple[str, Path]:
        """(Apicurio version, java binary): the configured version on Java 21+, else the Java 17 build."""
        if self._registry_choice is None:
            try:
                self._registry_choice = (self.s.apicurio_version, find_java(APICURIO_MIN_JAVA, self.s.java_home))
            except StackError:
                java17 = find_java(KAFKA_MIN_JAVA, self.s.java_home)
                self.echo(
                    f"registry: no Java {APICURIO_MIN_JAVA}+ found, so Apicurio {APICURIO_JAVA17_VERSION} "
                    f"(built for Java 17) instead of {self.s.apicurio_version}"
                )
                self._registry_choice = (APICURIO_JAVA17_VERSION, java17)
        return self._registry_choice

    @property
    def apicurio_dir(self) -> Path:
        return self.dist / f"apicurio-{self.registry_choice()[0]}"

    def registry_jar(self) -> Path:
        for pattern in APICURIO_JARS:
            found = next(self.apicurio_dir.glob(pattern), None)
            if found is not None:
                return found
        raise StackError(f"no Apicurio runner jar in {self.apicurio_dir}; delete that folder to fetch it again")

    # ------------------------------------------------------------------ addresses
    @property
    def kafka_address(self) -> str:
        return self.s.external_kafka or f"{self.s.host}:{self.s.kafka_port}"

    @property
    def registry_url(self) -> str:
        if self.s.external_registry:
            return self.s.external_registry.rstrip("/")
        return f"http://{self.s.host}:{self.s.registry_port}/apis/ccompat/v7"

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    # ------------------------------------------------------------------ fetch
    def fetch(self) -> float:
        """Download what is missing; return the seconds it took (0 when everything was cached)."""
        started = time.monotonic()
        need_kafka = not self.s.external_kafka and not (self.kafka_libs / ".complete").exists()
        need_registry = not self.s.external_registry and not (self.apicurio_dir / ".complete").exists()
        if not (need_kafka or need_registry):
            return 0.0
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("Maven (mvn) is not on PATH: it fetches Kafka and Apicurio from Maven Central")
        self.logs.mkdir(parents=True, exist_ok=True)
        pom = DEPLOY_DIR / "pom.xml"
        if need_kafka:
            self.echo(f"fetching Apache Kafka {self.s.kafka_version} jars (once; cached after)...")
            self._mvn_into(
                self.kafka_libs,
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-Dkafka.version={self.s.kafka_version}",
                    "-DincludeScope=runtime",
                ],
            )
        if need_registry:
            version = self.registry_choice()[0]
            self.echo(f"fetching Apicurio Registry {version} (once; cached after)...")
            artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
            self._mvn_into(
                self.apicurio_dir,
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    "dependency:unpack",
                    f"-Dartifact={artifact}",
                ],
            )
            self.registry_jar()  # fail now, with the folder named, if the archive changed its layout
        return time.monotonic() - started

    def _mvn_into(self, target: Path, command: list[str]) -> None:
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with (self.logs / "fetch.log").open("a") as log:
            # Maven's own state (e.g. the unpack plugin's markers, which would skip a re-fetch)
            # goes to a scratch folder, never into the checkout.
            done = subprocess.run(
                [*command, f"-DoutputDirectory={partial}", f"-Dsfsync.build.dir={partial}.maven"],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=1800,
            )
        if done.returncode != 0:
            raise StackError(f"maven could not fetch into {target.name}; see {self.logs / 'fetch.log'}")
        shutil.rmtree(f"{partial}.maven", ignore_errors=True)
        (partial / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)

    # ------------------------------------------------------------------ up
    def up(self) -> UpReport:
        started_at = time.monotonic()
        fetch_seconds = self.fetch()
        started: list[str] = []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)

        if self.s.external_kafka:
            self.echo(f"Kafka: using existing cluster at {self.kafka_address} (nothing started)")
        elif not self._running("kafka"):
            self._check_ports_free("Kafka", [self.s.kafka_port, self.s.controller_port])
            self._start_kafka()
            started.append("kafka")
        if self.s.external_registry:
            self.echo(f"registry: using existing registry at {self.registry_url} (nothing started)")
        elif not self._running("registry"):
            self._check_ports_free("registry", [self.s.registry_port, self.s.registry_management_port])
            if "kafka" in started:  # kafkasql storage needs the broker listening first
                wait_tcp(self.s.host, self.s.kafka_port, self.s.start_timeout_s, self._exit_watch("kafka"))
            self._start_registry()
            started.append("registry")

        deadline = time.monotonic() + self.s.start_timeout_s
        try:
            wait_kafka(self.kafka_address, deadline - time.monotonic(), self._exit_watch("kafka"))
            wait_registry(self.registry_url, deadline - time.monotonic(), self._exit_watch("registry"))
        except ServiceUnavailableError as exc:
            raise StackError(f"{exc}; logs in {self.logs}") from None
        if "registry" in started:
            set_default_compatibility(self.registry_url, "BACKWARD", max(deadline - time.monotonic(), 30.0))
        return UpReport(
            kafka=self.kafka_address,
            registry=self.registry_url,
            seconds=time.monotonic() - started_at,
            fetch_seconds=fetch_seconds,
            started=tuple(started),
        )

    def _start_kafka(self) -> None:
        java = find_java(KAFKA_MIN_JAVA, self.s.java_home)
        props = self.run_dir / "server.properties"
        template = string.Template((DEPLOY_DIR / "server.properties.template").read_text())
        props.write_text(
            template.substitute(
                host=self.s.host,
                kafka_port=self.s.kafka_port,
                controller_port=self.s.controller_port,
                data_dir=self.data_dir,
                run_dir=self.run_dir,
            )
        )
        classpath = f"{self.kafka_libs}/*"
        log4j = f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}"
        if not (self.data_dir / "meta.properties").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            cluster_id = new_cluster_id()
            with (self.logs / "kafka.log").open("a") as log:
                done = subprocess.run(
                    [
                        str(java),
                        log4j,
                        "-cp",
                        classpath,
                        "kafka.tools.StorageTool",
                        "format",
                        "-t",
                        cluster_id,
                        "-c",
                        str(props),
                        "--ignore-formatted",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                    timeout=120,
                )
            if done.returncode != 0:
                raise StackError(f"formatting KRaft storage failed; see {self.logs / 'kafka.log'}")
        self._spawn(
            "kafka",
            [
                str(java),
                f"-Xms{self.s.kafka_heap}",
                f"-Xmx{self.s.kafka_heap}",
                *KAFKA_JVM_FLAGS,
                log4j,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
        )

    def _start_registry(self) -> None:
        java = self.registry_choice()[1]
        storage = (
            ["-Dapicurio.storage.kind=kafkasql", f"-Dapicurio.kafkasql.bootstrap.servers={self.kafka_address}"]
            if not self.s.external_kafka
            else []  # never write the registry's journal into someone else's cluster: in-memory then
        )
        if self.s.external_kafka:
            self.echo("registry: in-memory storage (Kafka is external); schemas vanish when it stops")
        self._spawn(
            "registry",
            [
                str(java),
                f"-Xmx{self.s.registry_heap}",
                *REGISTRY_JVM_FLAGS,
                f"-Dquarkus.http.host={self.s.host}",
                f"-Dquarkus.http.port={self.s.registry_port}",
                f"-Dquarkus.management.host={self.s.host}",
                f"-Dquarkus.management.port={self.s.registry_management_port}",
                *storage,
                "-jar",
                str(self.registry_jar()),
            ],
            cwd=self.apicurio_dir,
        )

    def _spawn(self, name: str, command: list[str], cwd: Path | None = None) -> None:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=cwd,
            )
        _CHILDREN[proc.pid] = proc
        self._pid_file(name).write_text(str(proc.pid))

    def _exit_watch(self, name: str) -> Callable[[], None]:
        def check() -> None:
            pid = read_pid(self._pid_file(name))
            if pid is not None and not pid_alive(pid):
                tail = tail_lines(self.logs / f"{name}.log", 15)
                raise ServiceUnavailableError(f"{name} exited while starting; last log lines:\n{tail}")

        return check

    def _running(self, name: str) -> bool:
        pid = read_pid(self._pid_file(name))
        return pid is not None and pid_alive(pid)

    def _check_ports_free(self, service: str, ports: list[int]) -> None:
        for port in ports:
            if port_in_use(self.s.host, port):
                holder = port_holder(port) or "an unknown process"
                raise StackError(
                    f"cannot start {service}: port {self.s.host}:{port} is already taken by {holder}. "
                    f"Stop it, or point sfsync at it (KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL), "
                    f"or choose other ports (SFSYNC_STACK_*_PORT)."
                )

    # ------------------------------------------------------------------ down
    def down(
        self, wipe: bool = False, timeout_s: float = 30.0, only: tuple[str, ...] = ("registry", "kafka")
    ) -> list[str]:
        stopped: list[str] = []
        for name in ("registry", "kafka"):  # the registry's storage lives in Kafka: stop it first
            if name not in only:
                continue
            pid = read_pid(self._pid_file(name))
            if pid is not None and pid_alive(pid):
                stop_process_group(pid, timeout_s)
                stopped.append(name)
            self._pid_file(name).unlink(missing_ok=True)
        ports = [self.s.kafka_port, self.s.controller_port, self.s.registry_port, self.s.registry_management_port]
        deadline = time.monotonic() + 10
        while any(port_in_use(self.s.host, p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)
        if wipe:
            shutil.rmtree(self.home / "data", ignore_errors=True)
        return stopped

    # ------------------------------------------------------------------ status
    def status(self) -> list[ServiceState]:
        out = []
        for name, address, external in (
            ("kafka", self.kafka_address, self.s.external_kafka),
            ("registry", self.registry_url, self.s.external_registry),
        ):
            if external:
                out.append(ServiceState(name, address, "external", None, None))
                continue
            pid = read_pid(self._pid_file(name))
            alive = pid is not None and pid_alive(pid)
            port = self.s.kafka_port if name == "kafka" else self.s.registry_port
            state = ("running" if port_in_use(self.s.host, port) else "starting") if alive else "stopped"
            out.append(ServiceState(name, address, state, pid if alive else None, self.logs / f"{name}.log"))
        return out


# ---------------------------------------------------------------------- helpers
def new_cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage random-uuid` makes it: base64url of a uuid4, unpadded, and
    never starting with "-" (the storage tool would read it as an option, as Kafka's Uuid avoids too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def find_java(min_major: int, preferred: Path | None = None) -> Path:
    """The newest java binary of at least ``min_major`` among the usual places."""
    homes: list[Path] = []
    if preferred:
        homes.append(preferred)
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        homes.extend(sorted(p for p in jvm.iterdir() if p.is_dir()))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parents[1])
    best: tuple[int, Path] | None = None
    seen: set[Path] = set()
    for home in homes:
        binary = home / "bin" / "java"
        if binary in seen or not binary.exists():
            continue
        seen.add(binary)
        major = java_major(home)
        if major is not None and major >= min_major and (best is None or major > best[0]):
            best = (major, binary)
    if best is None:
        raise StackError(
            f"no Java {min_major}+ found (looked in SFSYNC_STACK_JAVA_HOME, JAVA_HOME, /usr/lib/jvm, PATH)"
        )
    return best[1]


def java_major(home: Path) -> int | None:
    release = home / "release"
    text = release.read_text() if release.exists() else ""
    match = re.search(r'JAVA_VERSION="(\d+)(?:\.(\d+))?', text)
    if match is None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [str(home / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=20, check=False
            )
            match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def stop_process_group(pid: int, timeout_s: float) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while pid_alive(pid):
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine, read from /proc (Linux); None: none found."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
    return None


def port_holder(port: int) -> str | None:
    """Which process listens on ``port`` ("pid N: command line"), read from /proc (Linux)."""
    pid = listening_pid(port)
    if pid is None:
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmd = "?"
    return f"pid {pid}: {cmd.strip()[:160]}"


def tail_lines(path: Path, count: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return "(no log)"


def wait_tcp(host: str, port: int, timeout_s: float, check: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_in_use(host, port):
        check()
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(f"nothing listens on {host}:{port} after {timeout_s:.0f}s")
        time.sleep(0.1)


def wait_kafka(bootstrap: str, timeout_s: float, check: Callable[[], None] = lambda: None) -> None:
    """Wait until a Kafka cluster answers a metadata request (bounded); ServiceUnavailableError otherwise."""
    # imported here: confluent-kafka's admin client costs ~0.2 s to import, which the stack commands
    # that never wait for Kafka (stop, logs, status of a stopped stack) should not pay
    from sfsync.kafka.admin import wait_for_cluster  # noqa: PLC0415

    wait_for_cluster({"bootstrap.servers": bootstrap}, timeout_s, check, options={"logger": _quiet_logger()})


def wait_http(url: str, timeout_s: float, check: Callable[[], None] = lambda: None, what: str = "") -> None:
    """Wait until ``url`` answers 200 to a GET (bounded); ``check`` raises when waiting is pointless."""
    deadline = time.monotonic() + max(timeout_s, 1.0)
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            check()
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
    raise ServiceUnavailableError(f"{what or url} did not answer within {timeout_s:.0f}s ({last})")


def wait_registry(url: str, timeout_s: float, check: Callable[[], None] = lambda: None) -> None:
    """Wait until the registry lists its subjects (bounded)."""
    wait_http(f"{url}/subjects", timeout_s, check, f"schema registry at {url}")


def set_default_compatibility(url: str, level: str, timeout_s: float = 30.0) -> None:
    """Apicurio checks but does not enforce compatibility unless a rule is set: set it.

    A registry that just started may answer its first writes slowly (a cold JVM on a busy machine):
    a timed-out request is tried again until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.put(f"{url}/config", json={"compatibility": level}, timeout=10)
            break
        except httpx.HTTPError as exc:
            if time.monotonic() >= deadline:
                raise ServiceUnavailableError(f"schema registry at {url}: {type(exc).__name__}") from exc
            time.sleep(1.0)
    if response.status_code >= 300:
        raise StackError(f"registry refused compatibility {level}: HTTP {response.status_code}")


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("sfsync.kafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


@contextlib.contextmanager
def running_stack(settings: StackSettings) -> Iterator[UpReport]:
    """Start the stack for the duration of a block, stopping only what this block started."""
    stack = Stack(settings)
    report = stack.up()
    try:
        yield report
    finally:
        if report.started:
            stack.down(only=report.started)
