"""The chaos run (issue 12): product events through 2 processors, 2 sinks, the poller and the inbound
app, every one a process of its own on the real Kafka and registry, while things break; then the
org is held against what the events imply. One JSON line of figures at the end.

What runs: the emulated org (``sfsync emulator``, a process of its own, faults from its admin API);
``sfsync processor`` x2 (one consumer group), ``sfsync sink`` x2 (one group), ``sfsync poller`` and
``sfsync inbound``, all on a topic prefix of this run's own, with the mapping
``bench/chaos_mapping.yaml``. This process publishes a seeded stream of product events
(:class:`sfsync.devtools.chaos_scenario.ChaosCommunity`: members created and changed, events
published and renamed, registrations, attendance, cancellations) with the SDK publisher at
``--rate`` events/s, plus ``--poison`` records no consumer can read.

Faults, while the stream flows:

- ``--kills`` SIGKILLs of a random worker at random moments, each restarted a moment later (a
  worker that exits on its own is restarted too, and counted);
- the Kafka broker restarted once, then the schema registry once (``sfsync stack``: the run only
  restarts a stack that ``sfsync stack up`` started, at the addresses it was given);
- the org: ``ORG_FAULTS`` (503s, row locks), a ``--commit504`` share of writes committed then
  answered 504, every access token expiring ``--expire-every`` s after it was issued, the daily API
  allocation spent for ``--limit-window`` s, and a sales rep editing Contacts (Title, Phone: fields
  the product never writes; see docs/decisions/0008).

Then faults off, and it waits until every group has consumed everything and the org stopped
changing (``converge_s``: from the last fault). It reads the org back (SOQL), the DLQ and
``product.members.inbound``, and counts: ``lost``, ``duplicated``, ``stale`` (see
:func:`~sfsync.devtools.chaos_scenario.compare`), ``parked`` by reason (only the poison may be
there), ``inbound_missing`` (rep edits that did not reach the product). Exit status 1 when any of
those is off, 2 when the run could not be made.

    KAFKA_BOOTSTRAP_SERVERS=... SCHEMA_REGISTRY_URL=... python bench/chaos.py --events 100000
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# This folder holds bench/emulator.py and bench/plan.py, named like packages: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from sfsync.devtools.chaos_scenario import (  # noqa: E402
    REP_USER,
    ChaosCommunity,
    Origin,
    Poison,
    RepEdit,
    compare,
    expected_org,
    inbound_missing,
    parked_report,
    poison_records,
    rep_values,
)
from sfsync.devtools.stack import Stack, pid_alive, read_pid  # noqa: E402
from sfsync.emulator.server import free_port  # noqa: E402
from sfsync.kafka.admin import ensure_topics  # noqa: E402
from sfsync.kafka.reading import read_messages  # noqa: E402
from sfsync.ops.dlq import DeadLetterQueue  # noqa: E402
from sfsync.producers.publisher import Publisher  # noqa: E402
from sfsync.serde.codec import AvroDecoder  # noqa: E402
from sfsync.serde.registry import SchemaRegistry  # noqa: E402
from sfsync.settings import PublisherSettings, StackSettings  # noqa: E402
from sfsync.topics import (  # noqa: E402
    ALL_TOPICS,
    CHANGES,
    IDENTITIES,
    MEMBERS,
    MEMBERS_INBOUND,
    PRODUCT_TOPICS,
    RESULTS,
    SALESFORCE_EDITS,
    WRITES,
    planned_writes,
)

MAPPING = BENCH / "chaos_mapping.yaml"
API = "/services/data/v62.0"
ORG_FAULTS = "503=0.05,lock=0.02"
"""The emulated org's fault spec (emulator/faults.py), with ``commit504=`` (``--commit504``),
``expire_every=`` (``--expire-every``) and ``seed=`` added per run: 5 % of requests 503, 2 % of record
writes UNABLE_TO_LOCK_ROW."""


def org_faults(expire_every_s: float, commit504: float) -> str:
    """The run's org fault spec without its seed: ``ORG_FAULTS``, a ``commit504`` share of writes committed
    then answered 504 by a gateway, and every access token expiring ``expire_every_s`` after its issue."""
    return f"{ORG_FAULTS},commit504={commit504},expire_every={expire_every_s}s"


DAILY_LIMIT = 50_000_000
"""The org's daily API allocation for the run (the default org's 15,000 would run out): the
``--limit-window`` spends it all for a while."""
CLIENT_ID = "sfsync-local"  # the emulator's connected app


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RunError(Exception):
    """The run could not be made (not a finding about sfsync): exit status 2."""


# ====================================================================== the stack this run may restart
def owned_stack(bootstrap: str, registry: str) -> Stack:
    """The ``sfsync stack`` (``SFSYNC_STACK_*``) serving ``bootstrap`` and ``registry``: the only one
    this run restarts. RunError when those addresses are not that stack's, or it is not running."""
    stack = Stack(StackSettings(external_kafka=None, external_registry=None))
    problems = []
    if stack.kafka_address != bootstrap:
        problems.append(f"Kafka {bootstrap} is not the sfsync stack's ({stack.kafka_address})")
    if stack.registry_url != registry.rstrip("/"):
        problems.append(f"the registry {registry} is not the sfsync stack's ({stack.registry_url})")
    for name in ("kafka", "registry"):
        pid = read_pid(stack.run_dir / f"{name}.pid")
        if pid is None or not pid_alive(pid):
            problems.append(f"the sfsync stack under {stack.home} runs no {name}")
    if problems:
        raise RunError(
            "the chaos run restarts the broker and the registry, so it needs the sfsync stack it was pointed at "
            "(`sfsync stack up`; SFSYNC_STACK_HOME and the SFSYNC_STACK_*_PORT settings say which): "
            + "; ".join(problems)
        )
    return stack


def restart(stack: Stack, name: str) -> float:
    """Stop ``name`` (kafka or registry) of ``stack`` and start it again; the seconds it was away."""
    started = time.monotonic()
    stack.down(only=(name,), timeout_s=30)
    stack.up()
    return time.monotonic() - started


# ====================================================================== processes
@dataclasses.dataclass
class Worker:
    """One sfsync component as a process in its own session, its output appended to ``log``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    starts: int = 0
    exits: list[int] = dataclasses.field(default_factory=list)
    """Exit statuses of the times it stopped by itself (not killed by the run)."""
    hangs: int = 0
    """Times it hung on its way out (see :class:`Supervisor`)."""
    started_at: float = 0.0
    quick_exits: int = 0
    """Exits in a row that came soon after a start (see :class:`Supervisor`)."""
    restart_at: float | None = None
    """When the supervisor restarts it, after it stopped by itself."""

    @property
    def log(self) -> Path:
        return self.folder / "out.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n==== {time.strftime('%H:%M:%S')} start {self.starts + 1}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        self.started_at = time.monotonic()
        self.restart_at = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to its whole session: nothing flushed, nothing committed."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM to its session: stop cleanly (see :func:`stop_all`)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stuck_stopping(self, after_s: float) -> bool:
        """Whether its log ends with Faust's "Stopping..." written over ``after_s`` ago."""
        try:
            if time.time() - self.log.stat().st_mtime < after_s:
                return False
            with self.log.open("rb") as f:
                f.seek(max(f.seek(0, os.SEEK_END) - 2000, 0))
                tail = f.read().decode(errors="replace")
        except OSError:
            return False
        return "]: Stopping..." in tail and "Signal received" not in tail

    def tracebacks(self) -> int:
        try:
            return self.log.read_text(errors="replace").count("Traceback (most recent call last)")
        except OSError:
            return 0


def stop_all(workers: list[Worker], grace_s: float = 15) -> None:
    """SIGTERM every worker at once, SIGKILL what is left after ``grace_s``."""
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        if worker.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        worker.kill()


def build_workers(
    run_dir: Path, base_env: dict[str, str], org: OrgClient, prefix: str, batch_age_s: float
) -> list[Worker]:
    run = prefix.rstrip(".")
    python = [sys.executable, "-m", "sfsync.cli.main"]
    salesforce = {
        "SALESFORCE_LOGIN_URL": org.base_url,
        "SALESFORCE_AUTH_FLOW": "client_credentials",
        "SALESFORCE_CLIENT_ID": CLIENT_ID,
        "SALESFORCE_CLIENT_SECRET": org.client_secret,
        # a spent daily allocation is probed again after 10 s (not the default 5 minutes): the window is short
        "SFSYNC_GOVERNOR_PAUSE_S": "10",
    }
    processor = {
        "SFSYNC_PROCESSOR_APP_ID": f"{run}.processor",
        "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
        "SFSYNC_PROCESSOR_HEARTBEAT_INTERVAL_S": "2",
        "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": "1",
    }
    sink = {
        **salesforce,
        "SFSYNC_SINK_GROUP_ID": f"{run}.sink",
        "SFSYNC_SINK_SESSION_TIMEOUT_MS": "10000",
        "SFSYNC_SINK_BATCH_LINGER_S": str(batch_age_s),
        "SFSYNC_SINK_BATCH_MAX_AGE_S": str(batch_age_s),
        "SFSYNC_SINK_RETRY_WAIT_MAX_S": "3",
    }
    poller = {
        **salesforce,
        "SFSYNC_SOURCE_GROUP_ID": f"{run}.poller",
        "SFSYNC_SOURCE_TRANSACTIONAL_ID_PREFIX": f"{run}.poller",
        "SFSYNC_SOURCE_OBJECTS": '["Contact"]',
        "SFSYNC_SOURCE_POLL_INTERVAL_S": "1",
        "SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S": "2",
        "SFSYNC_SOURCE_SESSION_TIMEOUT_MS": "6000",
        "SFSYNC_SOURCE_TRANSACTION_TIMEOUT_S": "10",
        "SFSYNC_SOURCE_DELETE_LOG_INTERVAL_S": "0",
        "SFSYNC_SOURCE_RECONCILE_INTERVAL_S": "0",
    }
    inbound = {
        "SFSYNC_INBOUND_APP_ID": f"{run}.inbound",
        "SFSYNC_INBOUND_SESSION_TIMEOUT_S": "10",
        "SFSYNC_INBOUND_HEARTBEAT_INTERVAL_S": "2",
        "SFSYNC_INBOUND_COMMIT_INTERVAL_S": "1",
        "SFSYNC_INBOUND_WRITER_USER_IDS": org.integration_user_id,
    }
    specs: list[tuple[str, str, dict[str, str]]] = [
        ("processor-1", "processor", processor),
        ("processor-2", "processor", processor),
        ("sink-1", "sink", {**sink, "SFSYNC_SINK_CLIENT_ID": f"{run}.sink-1"}),
        ("sink-2", "sink", {**sink, "SFSYNC_SINK_CLIENT_ID": f"{run}.sink-2"}),
        ("poller", "poller", poller),
        ("inbound", "inbound", inbound),
    ]
    return [Worker(name, [*python, command], {**base_env, **extra}, run_dir / name) for name, command, extra in specs]


HUNG_AFTER_S = 60.0
"""A worker that logged Faust's "Stopping..." this long ago and is still there is hung."""


class Supervisor(threading.Thread):
    """Restarts a worker that stopped by itself, noting its exit status, as an orchestrator would; and
    one hung on its way out (Faust's "Stopping..." over :data:`HUNG_AFTER_S` ago, as a liveness probe
    would see it): SIGABRT, so that Python's faulthandler puts every thread's stack in its log first."""

    def __init__(self, workers: list[Worker]) -> None:
        super().__init__(name="chaos-supervisor", daemon=True)
        self.workers = workers
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for worker in self.workers:
                with worker.lock:
                    if worker.proc is None or self.stopping.is_set():
                        continue
                    if worker.proc.poll() is None:
                        if worker.stuck_stopping(HUNG_AFTER_S):
                            log(f"{worker.name} hangs on its way out; SIGABRT (stacks in {worker.log})")
                            worker.hangs += 1
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(worker.proc.pid, signal.SIGABRT)
                            with contextlib.suppress(subprocess.TimeoutExpired):
                                worker.proc.wait(timeout=10)
                            worker.kill()
                            worker.start()
                        continue
                    if worker.restart_at is None:
                        code = worker.proc.returncode
                        worker.exits.append(code)
                        # as Kubernetes' CrashLoopBackOff: one that keeps stopping right after its start
                        # (Kafka or the registry away) waits longer each time, so that restarts do not
                        # starve the services it waits for of CPU; a run of 20 s resets the wait
                        quick = time.monotonic() - worker.started_at < 20
                        worker.quick_exits = worker.quick_exits + 1 if quick else 0
                        wait = min(2.0 * 2 ** (worker.quick_exits - 1), 40.0) if quick else 1.0
                        worker.restart_at = time.monotonic() + wait
                        log(f"{worker.name} exited by itself (status {code}); restarting it")
                    if time.monotonic() >= worker.restart_at:
                        worker.start()


# ====================================================================== the emulated org
class OrgClient:
    """The emulator process: its admin API, and SOQL as the integration user (retried through faults)."""

    def __init__(self, port: int, client_secret: str, proc: subprocess.Popen[bytes]) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.client_secret = client_secret
        self.proc = proc
        self.http = httpx.Client(base_url=self.base_url, timeout=30)
        self._token: str | None = None
        self.integration_user_id = ""

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"/__admin/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def session(self) -> str:
        answer = self.admin("POST", "session", {})
        self.integration_user_id = answer["user_id"]
        self._token = answer["access_token"]
        return self._token

    def query(self, soql: str, give_up_s: float = 120) -> list[dict[str, Any]]:
        """Every row of ``soql`` (all pages), riding out 503s, expired sessions and a spent allocation."""
        rows: list[dict[str, Any]] = []
        url: str | None = f"{API}/query"
        params: dict[str, str] | None = {"q": soql}
        deadline = time.monotonic() + give_up_s
        while url is not None:
            token = self._token or self.session()
            try:
                response = self.http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                response = None
                problem = type(exc).__name__
            if response is not None and response.status_code == 200:
                page = response.json()
                rows.extend({k: v for k, v in r.items() if k != "attributes"} for r in page["records"])
                url, params = page.get("nextRecordsUrl"), None
                continue
            if response is not None:
                problem = f"{response.status_code} {response.text[:200]}"
                if response.status_code == 401:
                    self._token = None
            if time.monotonic() > deadline:
                raise RunError(f"the org did not answer {soql[:80]!r}: {problem}")
            time.sleep(0.5)
        return rows


def start_org(run_dir: Path, seed: int, expire_every_s: float, commit504: float) -> OrgClient:
    port = free_port()
    secret = secrets.token_hex(24)
    folder = run_dir / "emulator"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "out.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sfsync.cli.main", "emulator", "--port", str(port)],
            cwd=folder,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                "SFSYNC_EMULATOR_CLIENT_SECRET": secret,
            },
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    org = OrgClient(port, secret, proc)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if org.http.get("/services/data/").status_code == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RunError(f"the emulator did not start; see {folder / 'out.log'}")
        time.sleep(0.2)
    org.admin("POST", "limits", {"daily_api_limit": DAILY_LIMIT, "used": 0})
    org.session()
    org.admin("POST", "faults", {"spec": f"{org_faults(expire_every_s, commit504)},seed={seed}"})
    return org


# ====================================================================== faults over time
@dataclasses.dataclass
class FaultLog:
    kills: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    broker_restarts: list[float] = dataclasses.field(default_factory=list)
    registry_restarts: list[float] = dataclasses.field(default_factory=list)
    limit_windows: list[float] = dataclasses.field(default_factory=list)
    last_fault_at: float = 0.0
    errors: list[str] = dataclasses.field(default_factory=list)

    def done(self) -> None:
        self.last_fault_at = time.monotonic()


class Timeline(threading.Thread):
    """Starts each planned fault at its moment (seconds from the start of the stream), each in a thread of
    its own (a broker restart takes a while; the other faults keep their moments); ends once all are done."""

    def __init__(self, plan: list[tuple[float, str, Callable[[], None]]], faults: FaultLog) -> None:
        super().__init__(name="chaos-timeline", daemon=True)
        self.plan = sorted(plan, key=lambda step: step[0])
        self.faults = faults
        self.started = time.monotonic()
        self.stopping = threading.Event()

    def run(self) -> None:
        running: list[threading.Thread] = []
        for at, what, action in self.plan:
            wait = self.started + at - time.monotonic()
            if wait > 0 and self.stopping.wait(wait):
                break
            thread = threading.Thread(target=self._do, args=(what, action), name=f"chaos: {what}", daemon=True)
            thread.start()
            running.append(thread)
        for thread in running:
            thread.join()

    def _do(self, what: str, action: Callable[[], None]) -> None:
        log(f"fault: {what}")
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - reported in the figures; the run goes on
            self.faults.errors.append(f"{what}: {exc}")
            log(f"fault {what} failed: {exc}")
        self.faults.done()


class Every(threading.Thread):
    """``action()`` every ``interval_s`` until stopped."""

    def __init__(self, name: str, interval_s: float, action: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.interval_s = interval_s
        self.action = action
        self.stopping = threading.Event()
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.action()
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                self.errors[type(exc).__name__] += 1


class SalesReps:
    """A sales rep edits the Title and Phone of Contacts of members the product created a while ago."""

    def __init__(self, org: OrgClient, seed: int) -> None:
        self.org = org
        self.rng = random.Random(seed)
        self.edits: list[RepEdit] = []
        self.candidates: list[tuple[float, str]] = []  # (created at, member id)
        self.ids: dict[str, str] = {}
        self.lock = threading.Lock()
        self.misses = 0

    def created(self, member_id: str) -> None:
        with self.lock:
            self.candidates.append((time.monotonic(), member_id))

    def edit_one(self) -> None:
        with self.lock:
            ready = [m for at, m in self.candidates if time.monotonic() - at > 5]
        if not ready:
            return
        # a few members are edited again and again (the same records as the product), most once
        member_id = self.rng.choice(ready[:20] if self.rng.random() < 0.3 else ready)
        record_id = self.ids.get(member_id)
        if record_id is None:
            rows = self.org.query(f"SELECT Id FROM Contact WHERE Member_Id__c = '{member_id}'", give_up_s=30)
            if not rows:
                self.misses += 1
                return
            record_id = self.ids[member_id] = rows[0]["Id"]
        values = rep_values(self.rng, len(self.edits))
        self.org.admin("POST", "edit", {"user": REP_USER, "sobject": "Contact", "id": record_id, "values": values})
        self.edits.append(RepEdit(member_id, record_id, values))


# ====================================================================== Kafka: lag, poison, reading back
class Lag:
    """Records each group has not consumed yet (a consumer that never joins the groups)."""

    def __init__(self, bootstrap: str, groups: dict[str, list[str]], transactional: set[str]) -> None:
        self.bootstrap = bootstrap
        self.groups = groups
        self.transactional = transactional

    def behind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for group, topics in self.groups.items():
            consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "log_level": 0})
            try:
                committed = consumer.committed(partitions_of(consumer, topics), timeout=10)
                total = 0
                for tp in committed:
                    end = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
                    at = max(tp.offset, 0)
                    # a transactional topic ends with a commit marker: an offset no consumer reads
                    slack = 1 if tp.topic in self.transactional and end > 0 else 0
                    total += max(end - slack - at, 0)
                out[group] = total
            finally:
                consumer.close()
        return out


def partitions_of(consumer: Consumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (RunError for a topic Kafka does not know)."""
    found: list[TopicPartition] = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise RunError(f"topic {topic} not found")
        found.extend(TopicPartition(topic, p) for p in sorted(meta.partitions))
    return found


class PoisonSender:
    """Sends poison records raw (no registry) and learns where each landed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "log_level": 0})
        self.landed: dict[Origin, Poison] = {}
        self.failed: list[str] = []

    def send(self, poison: Poison) -> None:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self.failed.append(str(err))
            else:
                self.landed[(msg.topic(), msg.partition(), msg.offset())] = poison

        self.producer.produce(self.topic, key=poison.key, value=poison.value, on_delivery=delivered)
        self.producer.poll(0)

    def flush(self) -> None:
        left = self.producer.flush(300)
        if left:
            raise RunError(f"{left} poison record(s) not delivered in 300s")


def read_inbound(kafka: dict[str, Any], registry: SchemaRegistry, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    decoder = AvroDecoder(registry)
    out = []
    for msg in read_messages(kafka, MEMBERS_INBOUND.name(prefix)):
        value = msg.value()
        if value is not None:
            out.append(decoder.decode(value))
    return out


def read_parked(kafka: dict[str, Any], prefix: str) -> list[tuple[Origin, str, str]]:
    dlq = DeadLetterQueue(kafka, prefix=prefix)
    try:
        return [
            ((r.context.topic, r.context.partition, r.context.offset), r.context.code, r.context.message)
            for r in dlq.list_parked()
        ]
    finally:
        dlq.close()


# ====================================================================== the run
@dataclasses.dataclass
class Options:
    events: int
    rate: float
    seed: int
    kills: int
    poison: int
    edits: int
    expire_every_s: float
    commit504: float
    batch_age_s: float
    limit_window_s: float
    converge_timeout_s: float
    work_dir: Path | None
    keep_topics: bool


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="product events to publish (default 100000)")
    parser.add_argument("--rate", type=float, default=None, help="events/s (default: events over ~12 minutes, >= 25/s)")
    parser.add_argument("--seed", type=int, default=12, help="seed of the stream, the faults and the reps")
    parser.add_argument(
        "--kills", type=int, default=None, help="SIGKILLs of a worker (default 12, 4 below 20000 events)"
    )
    parser.add_argument("--poison", type=int, default=None, help="poison records (default 10, 4 below 20000 events)")
    parser.add_argument("--edits", type=int, default=None, help="rep edits (default events/100, at least 20)")
    parser.add_argument("--expire-every", type=float, default=60.0, help="access tokens expire after N s (60)")
    parser.add_argument(
        "--batch-age",
        type=float,
        default=1.0,
        help="the sinks' batch linger and max age, s (1; shorter: more API calls)",
    )
    parser.add_argument(
        "--commit504", type=float, default=0.01, help="share of write requests committed, then answered 504 (0.01)"
    )
    parser.add_argument(
        "--limit-window", type=float, default=20.0, help="seconds the daily allocation stays spent (20)"
    )
    parser.add_argument("--converge-timeout", type=float, default=900.0, help="give up converging after N s (900)")
    parser.add_argument("--work-dir", type=Path, default=None, help="worker logs (default: a new temporary folder)")
    parser.add_argument("--keep-topics", action="store_true", help="leave the run's topics (default: deleted)")
    a = parser.parse_args(argv)
    small = a.events < 20_000
    return Options(
        events=a.events,
        rate=a.rate or max(25.0, a.events / 720),
        seed=a.seed,
        kills=a.kills if a.kills is not None else (4 if small else 12),
        poison=a.poison if a.poison is not None else (4 if small else 10),
        edits=a.edits if a.edits is not None else max(20, a.events // 100),
        expire_every_s=a.expire_every,
        commit504=a.commit504,
        batch_age_s=a.batch_age,
        limit_window_s=a.limit_window,
        converge_timeout_s=a.converge_timeout,
        work_dir=a.work_dir,
        keep_topics=a.keep_topics,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    registry_url = os.environ.get("SCHEMA_REGISTRY_URL")
    if not bootstrap or not registry_url:
        log("set KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL (the sfsync stack: `sfsync stack up` prints them)")
        return 2
    signal.signal(signal.SIGTERM, _interrupted)  # stop what the run started, as on Ctrl-C
    try:
        return run(options, bootstrap, registry_url.rstrip("/"))
    except RunError as exc:
        log(f"the run could not be made: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted: stopped what the run had started")
        return 130


def _interrupted(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run(options: Options, bootstrap: str, registry_url: str) -> int:
    started = time.monotonic()
    stack = owned_stack(bootstrap, registry_url)
    prefix = f"chaos-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}."
    run_dir = options.work_dir or Path(tempfile.mkdtemp(prefix="sfsync-chaos-"))
    run_dir = run_dir / prefix.rstrip(".")
    run_dir.mkdir(parents=True, exist_ok=True)
    kafka = {"bootstrap.servers": bootstrap}
    ensure_topics(kafka, ALL_TOPICS, prefix)
    log(f"topic prefix {prefix}  logs {run_dir}  {options.events} events at {options.rate:.0f}/s")

    org = start_org(run_dir, options.seed, options.expire_every_s, options.commit504)
    base_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",  # a hung worker's SIGABRT (Supervisor) puts every thread's stack in its log
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
        "SFSYNC_TOPIC_PREFIX": prefix,
        "SFSYNC_MAPPING_FILE": str(MAPPING),
        "SFSYNC_PROCESSOR_METRICS_PORT": "0",
        "SFSYNC_SINK_METRICS_PORT": "0",
        "SFSYNC_SOURCE_METRICS_PORT": "0",
        "SFSYNC_INBOUND_METRICS_PORT": "0",
    }
    workers = build_workers(run_dir, base_env, org, prefix, options.batch_age_s)
    supervisor = Supervisor(workers)
    faults = FaultLog()
    rng = random.Random(options.seed)
    reps = SalesReps(org, options.seed)
    threads: list[Any] = []
    stack_down: list[str] = []
    try:
        for worker in workers:
            worker.start()
        supervisor.start()

        duration = options.events / options.rate
        plan = _fault_plan(options, duration, rng, workers, stack, stack_down, org, faults)
        timeline = Timeline(plan, faults)
        editing = Every("chaos-reps", max(duration / max(options.edits, 1), 0.2), reps.edit_one)
        threads = [timeline, editing]

        community = ChaosCommunity(options.seed)
        poison = poison_records(options.seed, options.poison)
        poison_at = {round((i + 1) * options.events / (len(poison) + 1)): p for i, p in enumerate(poison)}
        sender = PoisonSender(bootstrap, MEMBERS.name(prefix))
        settings = PublisherSettings(
            bootstrap_servers=bootstrap, schema_registry_url=registry_url, topic_prefix=prefix, delivery_timeout_s=600
        )
        published: list[Any] = []
        last_at = now_utc() - dt.timedelta(seconds=1)
        with Publisher(settings, {"log_level": 0}) as publisher:
            for thread in threads:
                thread.start()
            stream_started = time.monotonic()
            for i in range(options.events):
                # occurred_at strictly increasing, ms apart: the org's "latest value" is never a tie
                last_at = max(now_utc(), last_at + dt.timedelta(milliseconds=1))
                event = community.next_event(last_at)
                _publish(publisher, event)
                published.append(event)
                if type(event).__name__ == "UserCreated":
                    reps.created(event.member.member_id)
                if i in poison_at:
                    sender.send(poison_at[i])
                delay = stream_started + (i + 1) / options.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if i % 5000 == 0 and i:
                    log(f"published {i}; kills {len(faults.kills)}; rep edits {len(reps.edits)}")
            publisher.flush()
        sender.flush()
        streamed_s = time.monotonic() - stream_started
        log(f"published {len(published)} events and {len(sender.landed)} poison in {streamed_s:.0f}s")
        editing.stopping.set()
        timeline.join()
        at_end = org.admin("GET", "stats")
        injected = dict(at_end["faults"]["injected"])  # replacing the faults zeroes them
        calls_under_faults = sum(at_end["by_endpoint"].values())
        org.admin("POST", "faults", {"spec": ""})
        faults.done()
        if stack_down:
            raise RunError(f"{stack_down} left down by a failed restart")

        converged_s = _converge(options, bootstrap, prefix, org, faults, workers)
        for worker in workers:  # the figures are read with every worker still up: a late write would show
            if not worker.running():
                log(f"{worker.name} is not running at the end")

        stats = org.admin("GET", "stats")
        contacts = org.query(
            "SELECT Id, Member_Id__c, FirstName, LastName, Email, Member_Type__c, Approval_Status__c, Title, Phone "
            "FROM Contact"
        )
        campaigns = org.query("SELECT Id, Event_Id__c, Name, IsActive FROM Campaign")
        members = org.query("SELECT Id, ContactId, CampaignId, Attendee_Status__c FROM CampaignMember")
        found = compare(expected_org(published, reps.edits), contacts, campaigns, members)
        with SchemaRegistry(registry_url) as registry:
            inbound = read_inbound(kafka, registry, prefix)
        missing_inbound = inbound_missing(reps.edits, inbound)
        parked = parked_report(sender.landed, read_parked(kafka, prefix))
    finally:
        for thread in threads:
            thread.stopping.set()
        supervisor.stopping.set()
        supervisor.join(timeout=30)
        stop_all(workers)
        if stack_down:  # never leave the stack down
            with contextlib.suppress(Exception):
                stack.up()
        org.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            org.proc.wait(timeout=10)

    injected.update(
        limit_windows=len(faults.limit_windows),
        rep_edits=len(reps.edits),
    )
    figures = {
        "events": len(published),
        "kills": len(faults.kills),
        "killed": dict(Counter(name for _, name in faults.kills)),
        "broker_restarts": len(faults.broker_restarts),
        "registry_restarts": len(faults.registry_restarts),
        "org_faults": org_faults(options.expire_every_s, options.commit504),
        "faults_injected": injected,
        "lost": found.lost,
        "duplicated": found.duplicated,
        "stale": found.stale,
        "parked": parked.by_reason,
        "parked_unexpected": parked.unexpected,
        "poison": dict(Counter(p.reason for p in sender.landed.values())),
        "poison_missing": parked.missing,
        "poison_unsent": sender.failed,
        "parked_repeats": parked.repeats,
        "inbound_edits": len(reps.edits),
        "inbound_members": len({e.member_id for e in reps.edits}),
        "inbound_missing": len(missing_inbound),
        "rep_edits_not_made": {"no_contact_yet": reps.misses, **editing.errors},
        "records": {"Contact": len(contacts), "Campaign": len(campaigns), "CampaignMember": len(members)},
        "worker_exits": {w.name: w.exits for w in workers if w.exits},
        "worker_hangs": {w.name: w.hangs for w in workers if w.hangs},
        "worker_tracebacks": {w.name: w.tracebacks() for w in workers if w.tracebacks()},
        "fault_errors": faults.errors,
        "api_calls": sum(stats["by_endpoint"].values()),
        "api_calls_under_faults": calls_under_faults,
        "converged": converged_s is not None,
        "converge_s": round(converged_s, 1) if converged_s is not None else None,
        "elapsed_s": round(time.monotonic() - started, 1),
        "logs": str(run_dir),
    }
    for kind, examples in found.examples.items():
        for example in examples:
            log(f"{kind}: {example}")
    for example in parked.examples:
        log(f"parked unexpectedly: {example}")
    if missing_inbound:
        log(f"rep edits that did not reach the product: {missing_inbound[:10]}")
    print(json.dumps(figures), flush=True)
    if not options.keep_topics:
        _delete_topics(kafka, prefix)
    bad = (
        sender.failed
        or found.lost
        or found.duplicated
        or found.stale
        or parked.unexpected
        or parked.missing
        or missing_inbound
        or converged_s is None
        or faults.errors
    )
    return 1 if bad else 0


def _publish(publisher: Publisher, event: Any) -> None:
    """Publish, waiting out a registry outage (the encoder may need it for a record type it has not sent yet)."""
    for attempt in range(120):
        try:
            publisher.publish(event)
            return
        except Exception as exc:
            if type(exc).__name__ != "ServiceUnavailableError" or attempt == 119:
                raise
            time.sleep(1)


def _fault_plan(
    options: Options,
    duration: float,
    rng: random.Random,
    workers: list[Worker],
    stack: Stack,
    stack_down: list[str],
    org: OrgClient,
    faults: FaultLog,
) -> list[tuple[float, str, Callable[[], None]]]:
    """When each fault happens (seconds into the stream) and what it does."""
    plan: list[tuple[float, str, Callable[[], None]]] = []

    def kill(worker: Worker) -> Callable[[], None]:
        def act() -> None:
            with worker.lock:
                worker.kill()
                faults.kills.append((time.monotonic(), worker.name))
                time.sleep(rng.uniform(0.5, 3.0))
                worker.start()

        return act

    for _ in range(options.kills):
        worker = rng.choice(workers)
        plan.append((rng.uniform(0.05, 0.95) * duration, f"SIGKILL {worker.name}", kill(worker)))

    one_at_a_time = threading.Lock()  # the registry keeps its schemas in Kafka: never both away

    def bounce(name: str, done: list[float]) -> Callable[[], None]:
        def act() -> None:
            with one_at_a_time:
                stack_down.append(name)
                away = restart(stack, name)
                stack_down.remove(name)
            done.append(away)
            log(f"{name} back after {away:.1f}s")

        return act

    plan.append((0.2 * duration, "restart the Kafka broker", bounce("kafka", faults.broker_restarts)))
    plan.append((0.5 * duration, "restart the schema registry", bounce("registry", faults.registry_restarts)))

    def spend() -> None:
        org.admin("POST", "limits", {"spent_after": 0})  # as if other clients had spent the rest

    def restore() -> None:
        org.admin("POST", "limits", {"restore": True})
        faults.limit_windows.append(options.limit_window_s)

    at = 0.45 * duration
    plan.append((at, "the daily API allocation spent", spend))
    plan.append((at + options.limit_window_s, "the daily API allocation restored", restore))
    return plan


def _converge(
    options: Options, bootstrap: str, prefix: str, org: OrgClient, faults: FaultLog, workers: list[Worker]
) -> float | None:
    """Seconds from the last fault until every group had consumed everything and the org and the topics
    stopped changing (held for 10 s); None when that did not happen within ``--converge-timeout``."""
    run = prefix.rstrip(".")
    lag = Lag(
        bootstrap,
        {
            f"{run}.processor": [
                *(s.name(prefix) for s in (*PRODUCT_TOPICS, IDENTITIES, SALESFORCE_EDITS)),
                planned_writes(f"{run}.processor", WRITES.partitions).name(prefix),  # its own repartition topic
            ],
            f"{run}.sink": [WRITES.name(prefix)],
            f"{run}.inbound": [CHANGES.name(prefix), RESULTS.name(prefix)],
        },
        transactional={CHANGES.name(prefix)},
    )
    deadline = time.monotonic() + options.converge_timeout_s
    quiet_since: float | None = None
    last: tuple[Any, ...] | None = None
    report_at = 0.0
    while time.monotonic() < deadline:
        try:
            behind = lag.behind()
            stats = org.admin("GET", "stats")
            ends = _ends(bootstrap, [s.name(prefix) for s in (WRITES, RESULTS, IDENTITIES, CHANGES, MEMBERS_INBOUND)])
        except Exception as exc:  # noqa: BLE001 - Kafka settling after the restarts: ask again
            log(f"converging: {exc}")
            time.sleep(2)
            continue
        writes = sum(n for k, n in stats["by_endpoint"].items() if not k.startswith("GET"))
        now_state = (writes, ends)
        all_running = all(w.running() for w in workers)
        if any(behind.values()) or now_state != last or not all_running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        last = now_state
        if quiet_since is not None and time.monotonic() - quiet_since >= 10:
            return quiet_since - faults.last_fault_at
        if time.monotonic() > report_at:
            log(f"converging: behind {behind}, write calls {writes}")
            report_at = time.monotonic() + 15
        time.sleep(2)
    return None


def _ends(bootstrap: str, topics: list[str]) -> tuple[int, ...]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-ends", "log_level": 0})
    try:
        return tuple(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions_of(consumer, topics))
    finally:
        consumer.close()


def _delete_topics(kafka: dict[str, Any], prefix: str) -> None:
    from sfsync.kafka.admin import delete_topics

    with contextlib.suppress(Exception):  # cleanup only
        delete_topics(kafka, [prefix])


if __name__ == "__main__":
    sys.exit(main())
