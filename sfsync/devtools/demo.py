"""``sfsync demo`` (``make demo``): the whole pipeline on one machine, both ways, in figures.

What runs (everything it starts, it stops; a Kafka or registry that was already up stays up):

- Kafka + schema registry: :class:`sfsync.devtools.stack.Stack` (reused when ``KAFKA_BOOTSTRAP_SERVERS`` /
  ``SCHEMA_REGISTRY_URL`` are set or the local stack is already running);
- the emulated org, in a thread of this process (:func:`sfsync.emulator.server.serve_in_thread`);
- four children, each in its own process group with its own ``/metrics`` port and log file: the
  outbound processor (``python -m sfsync.processors.outbound.app``), the sink (``sfsync sink``), the poller
  (``sfsync poller``) and the inbound processor (``python -m sfsync.processors.inbound.app``);
- here: a paced stream of synthetic community activity (:class:`sfsync.producers.fake.CommunitySimulator`)
  with a few records that are bad on purpose (:func:`bad_records`), while "sales reps" edit
  Contacts and Campaigns through the emulator's admin API.

Every run uses a topic prefix of its own (``demo-<time>-<random>.``), so runs never mix. The
live view reads the components' ``/metrics``, the consumer groups' lag and the result topics;
the closing report reads ``sfsync.results``, ``product.members.inbound``, ``sfsync.dlq`` and
``sfsync.errors`` back from Kafka. The pure parts live apart and are tested without Kafka:
:mod:`sfsync.devtools.demo_scenario` (the bad records, the reps' schedule) and :mod:`sfsync.devtools.demo_report`
(the figures, the live view's text, the report).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sfsync.devtools.demo_report import (
    DemoReport,
    ParkedView,
    Progress,
    Samples,
    contact_edits_back,
    epoch_s,
    errors_by,
    inbound_kinds,
    metric_sum,
    parse_metrics,
    percentile,
    poller_latency,
    progress_line,
    progress_rows,
    render_report,
)
from sfsync.devtools.demo_scenario import (
    CAMPAIGN_STATUSES,
    CONTACT_BAD,
    REP_CITIES,
    REP_TITLES,
    REP_USER,
    BadRecord,
    RepEdit,
    bad_positions,
    bad_records,
    member_of,
    rep_edit_schedule,
)
from sfsync.errors import FatalError, SfsyncError
from sfsync.kafka.admin import ensure_topics
from sfsync.kafka.clients import OFFSET_BEGINNING, KafkaConsumer, TopicPartition, build_producer, new_consumer
from sfsync.kafka.delivery import ANY_TOPIC, Outbox

if TYPE_CHECKING:
    from sfsync.emulator.server import RunningEmulator
    from sfsync.producers.fake import CommunitySimulator
    from sfsync.producers.publisher import Publisher
import importlib.util
import random

import httpx
from rich.live import Live
from rich.table import Table

from sfsync.devtools.stack import Stack, port_in_use
from sfsync.emulator.server import free_port, serve_in_thread
from sfsync.ops.dlq import DeadLetterQueue
from sfsync.processors.outbound.metrics import LagProbe
from sfsync.producers.fake import CommunitySimulator
from sfsync.producers.publisher import Publisher
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.settings import PublisherSettings, StackSettings, load
from sfsync.topics import (
    ALL_TOPICS,
    CHANGES,
    ERRORS,
    MEMBERS_INBOUND,
    PRODUCT_TOPICS,
    RESULTS,
    WRITES,
    TopicSpec,
    planned_writes,
)

ROOT = Path(__file__).resolve().parents[2]
SYNCED_OBJECTS = ("Contact", "Campaign", "CampaignMember", "Case", "Community_Activity__c")
DEFAULT_METRICS_PORTS = {"processor": 9465, "sink": 9102, "poller": 9103, "inbound": 9466}
STOP_GRACE_S = 15.0


# ====================================================================== options
@dataclass(frozen=True)
class DemoOptions:
    """What ``sfsync demo`` was asked for."""

    events: int = 3000
    pace: float | None = 50.0
    """Events per second; None: as fast as Kafka takes them."""
    keep_running: bool = False
    seed: int = 7
    json_path: Path | None = None
    drain_timeout_s: float = 60.0
    inbound_timeout_s: float = 45.0


# ====================================================================== child processes
@dataclass
class Child:
    """One component in its own process group, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, cwd: Path) -> None:
        """Start it in a new session (its own process group: the terminal's Ctrl-C does not reach it)."""
        deferred: list[int] = []

        def defer(signum: int, _frame: FrameType | None) -> None:
            deferred.append(signum)

        # no Ctrl-C between the fork and remembering the child (a caught signal is reset by exec)
        previous = {sig: signal.signal(sig, defer) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with self.log.open("wb") as out:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if deferred:
            raise KeyboardInterrupt

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_children(
    children: Sequence[Child], grace_s: float = STOP_GRACE_S, hurry: threading.Event | None = None
) -> None:
    """SIGTERM every child's process group, wait up to ``grace_s`` (less once ``hurry`` is set), then SIGKILL."""
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for child in running:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while [c for c in running if c.proc is not None and c.proc.poll() is None]:  # poll() each: reaps it
        if time.monotonic() > deadline or (hurry is not None and hurry.is_set()):
            break
        time.sleep(0.1)
    for child in children:
        if child.proc is None:
            continue
        _signal_group(child, signal.SIGKILL)  # whatever is left in the group, the leader included
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=5)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    assert child.proc is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)


def port_or_free(preferred: int) -> int:
    """``preferred`` when nothing listens there, else a free port."""
    return preferred if not port_in_use("127.0.0.1", preferred) else free_port()


def build_children(
    run_dir: Path, prefix: str, kafka: str, registry: str, org: RunningEmulator, has_inbound: bool
) -> list[Child]:
    """The processor, sink, poller and (when present) inbound processor, wired to this run."""
    app = org.emulator.auth.config.connected_apps[0]
    base = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SCHEMA_REGISTRY_URL": registry,
        "SFSYNC_TOPIC_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    salesforce = {
        "SALESFORCE_LOGIN_URL": org.base_url,
        "SALESFORCE_AUTH_FLOW": "client_credentials",
        "SALESFORCE_CLIENT_ID": app.client_id,
        "SALESFORCE_CLIENT_SECRET": app.client_secret,
    }
    ports = {name: port_or_free(port) for name, port in DEFAULT_METRICS_PORTS.items()}
    run = prefix.rstrip(".")
    python = sys.executable
    children = [
        Child(
            "processor",
            [python, "-m", "sfsync.processors.outbound.app"],
            {
                **base,
                "SFSYNC_PROCESSOR_APP_ID": f"{run}.processor",
                "SFSYNC_PROCESSOR_METRICS_PORT": str(ports["processor"]),
            },
            run_dir / "processor.log",
            ports["processor"],
        ),
        Child(
            "sink",
            [python, "-m", "sfsync.cli.main", "sink"],
            {
                **base,
                **salesforce,
                "SFSYNC_SINK_GROUP_ID": f"{run}.sink",
                "SFSYNC_SINK_CLIENT_ID": f"{run}.sink",
                "SFSYNC_SINK_METRICS_PORT": str(ports["sink"]),
            },
            run_dir / "sink.log",
            ports["sink"],
        ),
        Child(
            "poller",
            [python, "-m", "sfsync.cli.main", "poller"],
            {
                **base,
                **salesforce,
                "SFSYNC_SOURCE_GROUP_ID": f"{run}.poller",
                "SFSYNC_SOURCE_TRANSACTIONAL_ID_PREFIX": f"{run}.poller",
                "SFSYNC_SOURCE_METRICS_PORT": str(ports["poller"]),
                # the emulated org's budget is no concern: reps' edits come back within 2 s, not 60 s
                "SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S": "2",
            },
            run_dir / "poller.log",
            ports["poller"],
        ),
    ]
    if has_inbound:  # processors/inbound/app.py: salesforce.changes -> product.members.inbound
        children.append(
            Child(
                "inbound",
                [python, "-m", "sfsync.processors.inbound.app"],
                {
                    **base,
                    "SFSYNC_INBOUND_APP_ID": f"{run}.inbound",
                    "SFSYNC_INBOUND_METRICS_PORT": str(ports["inbound"]),
                    # the user the sink writes as (the connected app's run-as user): its changes wait
                    # for their results from the first one on, instead of once one echo taught it
                    "SFSYNC_INBOUND_WRITER_USER_IDS": org.emulator.store.integration_user_id,
                },
                run_dir / "inbound.log",
                ports["inbound"],
            )
        )
    return children


FAUST_TABLES = {
    "processor": {"record_clock": 6, "identity": 6},
    "inbound": {"inbound_written": 6, "inbound_seen": 6},
}
"""The Faust tables of each app (processors/outbound/app.py, processors/inbound/app.py) and their partitions."""


def create_changelogs(kafka_config: Mapping[str, Any], children: Sequence[Child], prefix: str) -> None:
    """Create the Faust apps' table changelog topics before the apps start (as
    :mod:`sfsync.processors.faust_runtime.changelogs` does for one app: a lazily created changelog can
    be missing from the worker's first assignment), and the outbound processor's repartition topic
    (the sampler measures the processor's lag on it too)."""
    run = prefix.rstrip(".")
    specs = [
        TopicSpec(f"{run}.{child.name}-{table}-changelog", "table key", partitions=partitions, config=compact)
        for child in children
        for table, partitions in FAUST_TABLES.get(child.name, {}).items()
        for compact in ({"cleanup.policy": "compact"},)
    ]
    ensure_topics(kafka_config, specs)
    if any(child.name == "processor" for child in children):
        ensure_topics(
            kafka_config, [planned_writes(f"{run}.processor", FAUST_TABLES["processor"]["record_clock"])], prefix
        )


def inbound_app_present() -> bool:
    """Whether the inbound processor exists in this checkout (the demo wires it when it does)."""
    return importlib.util.find_spec("sfsync.processors.inbound.app") is not None


# ====================================================================== observing Kafka
@dataclass
class Observed:
    """What the reader thread saw on the result topics (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    written: Counter[str] = field(default_factory=Counter)
    results: int = 0
    outbound_latency: list[float] = field(default_factory=list)
    inbound: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    """(record name, value, Kafka timestamp ms) of product.members.inbound."""
    changes: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    """(value, Kafka timestamp ms) of salesforce.changes for the objects the reps edit."""
    last_result_at: float = 0.0
    log_entries: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(level, category, code) -> entries of sfsync.errors."""


def topic_partitions(consumer: KafkaConsumer, topics: Sequence[str], timeout_s: float = 30.0) -> dict[str, list[int]]:
    """Partition numbers of ``topics``, once the broker reports every one of them (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            meta = consumer.list_topics(timeout=5).topics
            found = {t: sorted(meta[t].partitions) for t in topics if t in meta and meta[t].partitions}
        except SfsyncError:
            found = {}
        if len(found) == len(topics):
            return found
        if time.monotonic() > deadline:
            raise FatalError(f"Kafka did not report the partitions of {sorted(set(topics) - set(found))}")
        time.sleep(0.5)


class _Watcher(threading.Thread, abc.ABC):
    """A daemon thread whose failure the main loop sees (:attr:`error`) instead of a silent death."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = exc

    @abc.abstractmethod
    def work(self) -> None:
        """The thread's job; runs until it returns or raises."""


class Reader(_Watcher):
    """Follows sfsync.results, product.members.inbound, salesforce.changes and sfsync.errors from their start."""

    def __init__(self, kafka_config: Mapping[str, Any], registry_url: str, prefix: str, observed: Observed) -> None:
        super().__init__("demo-reader")
        self.kafka_config = dict(kafka_config)
        self.registry_url = registry_url
        self.prefix = prefix
        self.observed = observed

    def work(self) -> None:
        consumer = new_consumer(self.kafka_config, f"{self.prefix}demo-reader", options={"log_level": 0})
        topics = [spec.name(self.prefix) for spec in (RESULTS, MEMBERS_INBOUND, CHANGES, ERRORS)]
        try:
            partitions = topic_partitions(consumer, topics)
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in partitions[t]])
            with SchemaRegistry(self.registry_url) as registry:
                decoder = AvroDecoder(registry)
                while not self.stopping.is_set():
                    for msg in consumer.consume(500, timeout=0.3):
                        data, topic = msg.value(), msg.topic()
                        if data is None or topic is None:
                            continue
                        with contextlib.suppress(Exception):  # a record the view cannot read is not the demo's
                            name, value = decoder.decode(data)
                            self._take(topic, name, value, msg.timestamp()[1])
        finally:
            consumer.close()

    def _take(self, topic: str, name: str, value: dict[str, Any], timestamp_ms: int) -> None:
        o = self.observed
        with o.lock:
            if topic.endswith("sfsync.results"):
                o.results += 1
                o.written[str(value.get("sobject"))] += 1
                o.last_result_at = time.monotonic()
                source = value.get("source") or {}
                occurred, acked = epoch_s(source.get("occurred_at")), epoch_s(value.get("acknowledged_at"))
                if occurred is not None and acked is not None:
                    o.outbound_latency.append(acked - occurred)
            elif topic.endswith("product.members.inbound"):
                o.inbound.append((name, value, timestamp_ms))
            elif topic.endswith("sfsync.errors"):
                o.log_entries[(str(value.get("level")), str(value.get("category")), str(value.get("code")))] += 1
            elif value.get("sobject") in ("Contact", "Campaign"):
                o.changes.append((value, timestamp_ms))


class Sampler(_Watcher):
    """Every second: the components' /metrics and the consumer groups' lag (blocking calls, off the main thread)."""

    def __init__(self, children: Sequence[Child], kafka_config: Mapping[str, Any], prefix: str) -> None:
        super().__init__("demo-sampler")
        self.children = list(children)
        self.kafka_config = dict(kafka_config)
        self.prefix = prefix
        self.lock = threading.Lock()
        self.metrics: dict[str, Samples] = {}
        self.lag: dict[str, int | None] = {}
        self.measured_from = 0.0
        """When (monotonic) the latest sample started: a lag of 0 says nothing of records sent after it."""

    def work(self) -> None:
        run = self.prefix.rstrip(".")
        groups = {
            "processor": (
                f"{run}.processor",
                [
                    *(s.name(self.prefix) for s in PRODUCT_TOPICS),
                    planned_writes(f"{run}.processor", 0).name(self.prefix),  # its planned writes, ordered next
                ],
            ),
            "sink": (f"{run}.sink", [WRITES.name(self.prefix)]),
            "inbound": (f"{run}.inbound", [CHANGES.name(self.prefix), RESULTS.name(self.prefix)]),
        }
        names = {c.name for c in self.children}
        probes = {k: LagProbe(self.kafka_config, group) for k, (group, _) in groups.items() if k in names}
        meta_consumer = new_consumer(self.kafka_config, f"{run}.demo-meta", options={"log_level": 0})
        try:
            known = topic_partitions(meta_consumer, [t for _, topics in groups.values() for t in topics])
            partitions = {k: [(t, p) for t in topics for p in known[t]] for k, (_, topics) in groups.items()}
            with httpx.Client(timeout=2.0) as http:
                while not self.stopping.is_set():
                    started = time.monotonic()
                    scraped: dict[str, Samples] = {}
                    for child in self.children:
                        with contextlib.suppress(httpx.HTTPError):
                            scraped[child.name] = parse_metrics(http.get(child.metrics_url).text)
                    lag: dict[str, int | None] = {}
                    for name, probe in probes.items():
                        lags = probe.measure(partitions[name])
                        lag[name] = sum(lags.values()) if lags is not None else None
                    with self.lock:
                        self.metrics.update(scraped)
                        self.lag = lag
                        self.measured_from = started
                    self.stopping.wait(1.0)
        finally:
            meta_consumer.close()
            for probe in probes.values():
                probe.close()

    def snapshot(self) -> tuple[dict[str, Samples], dict[str, int | None]]:
        with self.lock:
            return dict(self.metrics), dict(self.lag)

    def measured_since(self, moment: float) -> bool:
        """Whether the latest sample started after ``moment`` (monotonic)."""
        with self.lock:
            return self.measured_from > moment


# ====================================================================== the sales reps


class SalesReps:
    """Edits Contacts and Campaigns as the org's sales rep, through the emulator's admin API."""

    def __init__(self, org: RunningEmulator, seed: int) -> None:
        self.org = org
        self.http = httpx.Client(base_url=org.base_url, timeout=10.0)
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self.edits: list[RepEdit] = []

    def edit(self, sobject: str, eligible: Callable[[Mapping[str, Any]], bool] = lambda _row: True) -> RepEdit | None:
        """One edit of an ``eligible`` record sfsync synced (None when there is none yet)."""
        edited = {e.record_id for e in self.edits}
        rows = [r for r in self.org.emulator.store.rows(sobject) if r["Id"] not in edited and eligible(r)]
        if not rows:
            return None
        row = self.rng.choice(rows)
        values: dict[str, Any]
        if sobject == "Contact":
            values = {"Title": self.rng.choice(REP_TITLES), "MailingCity": self.rng.choice(REP_CITIES)}
        else:  # fields the default mapping does not write: sfsync must leave them alone
            values = {
                "Status": self.rng.choice(CAMPAIGN_STATUSES),
                "BudgetedCost": float(self.rng.randint(5, 50) * 100),
            }
        try:
            answer = self.http.post(
                "/__admin/edit", json={"user": REP_USER, "sobject": sobject, "id": row["Id"], "values": values}
            )
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise FatalError(f"the emulated org refused a sales rep's edit: {exc}") from exc
        stamp, by = answer.json().get("SystemModstamp"), str(answer.json().get("by") or "")
        modstamp = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else time.time()
        member_id = row.get("Member_Id__c")
        made = RepEdit(sobject, str(row["Id"]), values, modstamp, str(member_id) if member_id else None, by)
        self.edits.append(made)
        return made

    def close(self) -> None:
        self.http.close()


class Actors:
    """The product's misbehaving producers and the sales reps: what is due, done as soon as it can be.

    A bad record or an edit falls due at a point of the stream and happens once there is something
    to act on, tried at most twice a second. The too-long title and the rep's Contact edits need a
    member whose Contact exists and who has been quiet (no write of theirs still in flight: ``idle_s``,
    or ``caught_up()`` and a few seconds); the simulator then forgets that member, so no product
    value of theirs merges over the bad one in a sink batch, or lands after the rep's edit."""

    def __init__(
        self,
        sim: CommunitySimulator,
        publisher: Publisher,
        raw_producer: Outbox,
        prefix: str,
        reps: SalesReps,
        caught_up: Callable[[], bool],
        idle_s: float = 15.0,
    ) -> None:
        self.sim = sim
        self.publisher = publisher
        self.raw_producer = raw_producer
        self.prefix = prefix
        self.reps = reps
        self.caught_up = caught_up
        self.idle_s = idle_s
        self.pending_bad: list[int] = []
        self.pending_edits: list[str] = []
        self.bad_sent: list[BadRecord] = []
        self.last_event: dict[str, float] = {}
        self.last_acted_at = 0.0
        """When (monotonic) the latest bad record or edit was made."""
        self._next_try = 0.0

    @property
    def idle(self) -> bool:
        return not self.pending_bad and not self.pending_edits

    def saw(self, event: Any) -> None:
        member_id = member_of(event)
        if member_id is not None:
            self.last_event[member_id] = time.monotonic()

    def act(self) -> None:
        now = time.monotonic()
        if now < self._next_try or self.idle:
            return
        self._next_try = now + 0.5
        for index in list(self.pending_bad):
            member_id = self._quiet_member() if index == CONTACT_BAD else None
            if index == CONTACT_BAD and member_id is None:
                continue
            bad = bad_records(self.sim, dt.datetime.now(dt.UTC), member_id)[index]
            if bad.event is not None:
                self.publisher.publish(bad.event)
                self.saw(bad.event)
            else:
                self.raw_producer.send(self.prefix + bad.topic, bad.raw, bad.key.encode())
            self._forget(member_id)
            self.bad_sent.append(bad)
            self.pending_bad.remove(index)
            self.last_acted_at = time.monotonic()
        for sobject in list(self.pending_edits):
            made = self.reps.edit(sobject, self._editable if sobject == "Contact" else lambda _row: True)
            if made is not None:
                self._forget(made.member_id)
                self.pending_edits.remove(sobject)
                self.last_acted_at = time.monotonic()

    def _quiet(self, member_id: Any) -> bool:
        if member_id not in self.sim.members or len(self.sim.member_ids) <= 5:
            return False
        quiet_s = time.monotonic() - self.last_event.get(str(member_id), 0.0)
        return quiet_s >= self.idle_s or (quiet_s >= 3.0 and self.caught_up())

    def _editable(self, row: Mapping[str, Any]) -> bool:
        return self._quiet(row.get("Member_Id__c"))

    def _quiet_member(self) -> str | None:
        edited = {e.record_id for e in self.reps.edits}
        for row in self.reps.org.emulator.store.rows("Contact"):
            if row["Id"] not in edited and self._quiet(row.get("Member_Id__c")):
                return str(row["Member_Id__c"])
        return None

    def _forget(self, member_id: str | None) -> None:
        if member_id is not None and member_id in self.sim.members:
            self.sim.member_ids.remove(member_id)
            del self.sim.members[member_id]


# ====================================================================== the live view
class View:
    """A rich live table on a terminal; a compact line every few seconds otherwise."""

    def __init__(self, interactive: bool, echo: Callable[[str], None]) -> None:
        self.interactive = interactive
        self.echo = echo
        self._live: Any = None
        self._last_line = 0.0
        self.last_refresh = 0.0

    def __enter__(self) -> View:
        if self.interactive:
            self._live = Live(refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def show(self, p: Progress, force: bool = False) -> None:
        if self._live is not None:
            table = Table(title=f"sfsync demo  [dim]{p.total:,} events, both ways[/dim]", show_header=False, box=None)
            table.add_column(style="bold cyan", no_wrap=True)
            table.add_column()
            for label, text in progress_rows(p):
                table.add_row(label, text)
            self._live.update(table)
            return
        now = time.monotonic()
        if force or now - self._last_line >= (1.0 if sys.stdout.isatty() else 5.0):
            self._last_line = now
            self.echo(progress_line(p))


# ====================================================================== the run
@dataclass
class _Run:
    options: DemoOptions
    echo: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    hurry: threading.Event = field(default_factory=threading.Event)
    children: list[Child] = field(default_factory=list)
    stack_started: tuple[str, ...] = ()
    org: RunningEmulator | None = None
    threads: list[_Watcher] = field(default_factory=list)
    reps: SalesReps | None = None


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(options: DemoOptions, echo: Callable[[str], None] = print) -> int:
    """Run the demo; the exit status (0: both directions worked and every bad record was parked; 130: Ctrl-C)."""
    state = _Run(options, echo)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    code: int | None = None
    try:
        report = _run(state)
        code = 0 if _healthy(report) else 1
        if options.keep_running:
            where = state.org.base_url if state.org else "-"
            echo(f"\nEverything keeps running (emulated org at {where}, /metrics above). Ctrl-C stops it.")
            while True:
                _check_children(state.children)
                time.sleep(0.5)
    except KeyboardInterrupt:
        # after the report (--keep-running) Ctrl-C is how it ends: the report's status stands
        echo(
            "\nstopping what the demo started..."
            if code is not None
            else "\ninterrupted: stopping what the demo started..."
        )
        code = 130 if code is None else code
    finally:
        _cleanup(state)
        signal.signal(signal.SIGTERM, previous)
    return 1 if code is None else code


def _healthy(report: DemoReport) -> bool:
    parked = {p.bad_on_purpose for p in report.parked}
    return (
        report.results > 0
        and (report.contact_edits_back > 0 or not report.rep_edits.get("Contact"))
        and all(b in parked for b in report.bad_sent)
    )


def _cleanup(state: _Run) -> None:
    """Stop everything this run started; a second Ctrl-C skips the waiting, never the stopping."""

    def hurry(_signum: int, _frame: FrameType | None) -> None:
        state.hurry.set()

    signal.signal(signal.SIGINT, hurry)
    signal.signal(signal.SIGTERM, hurry)
    try:
        for thread in state.threads:
            thread.stopping.set()
        if state.children:
            stop_children(state.children, hurry=state.hurry)
        for thread in state.threads:
            thread.join(timeout=5)
        if state.reps is not None:
            state.reps.close()
        if state.org is not None:
            state.org.stop()
        if state.stack_started:
            state.echo(f"stopping {', '.join(state.stack_started)} (started by the demo)...")
            Stack(load(StackSettings, "stack")).down(
                only=state.stack_started, timeout_s=5 if state.hurry.is_set() else 30
            )
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _new_prefix() -> str:
    return f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}."


def _run(state: _Run) -> DemoReport:
    options, echo = state.options, state.echo
    prefix = _new_prefix()

    # ------------------------------------------------------------ Kafka + registry
    stack_settings = load(StackSettings, "stack")
    stack = Stack(stack_settings, echo=echo)
    before = {s.name for s in stack.status() if s.state in ("running", "external")}
    echo(
        "Kafka and the schema registry: "
        + ("starting (first time: fetching, a few minutes)..." if len(before) < 2 else "up")
    )
    try:
        up = stack.up()
    except BaseException:
        state.stack_started = tuple(s.name for s in stack.status() if s.state == "running" and s.name not in before)
        raise
    state.stack_started = up.started
    publisher_settings = load(
        PublisherSettings, "publisher", bootstrap_servers=up.kafka, schema_registry_url=up.registry, topic_prefix=prefix
    )
    kafka_config = publisher_settings.kafka_client_config()
    ensure_topics(kafka_config, ALL_TOPICS, prefix)

    # ------------------------------------------------------------ the org and the components

    state.org = serve_in_thread(log_level="error")
    run_dir = (stack_settings.home.expanduser() / "demo" / prefix.rstrip(".")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    has_inbound = inbound_app_present()
    state.children = build_children(run_dir, prefix, up.kafka, up.registry, state.org, has_inbound)
    echo(f"topic prefix {prefix}  emulated org {state.org.base_url}  logs {run_dir}")
    create_changelogs(kafka_config, state.children, prefix)
    for child in state.children:
        child.start(run_dir)
    echo(
        "started " + ", ".join(f"{c.name} (pid {c.proc.pid})" for c in state.children if c.proc) + "; waiting for them"
    )
    notes: list[str] = []
    if not has_inbound:
        notes.append("processors/inbound/app.py is missing: no inbound processor ran (hook: build_children)")
    _wait_ready(state.children)

    observed = Observed()
    reader = Reader(kafka_config, up.registry, prefix, observed)
    sampler = Sampler(state.children, kafka_config, prefix)
    state.threads = [reader, sampler]
    reader.start()
    sampler.start()
    state.reps = reps = SalesReps(state.org, options.seed)

    # ------------------------------------------------------------ stream
    sim = CommunitySimulator(seed=options.seed, workspace_id="ws-demo")
    schedule = rep_edit_schedule(options.events)
    bad_at = bad_positions(options.events, 4)
    progress = Progress(total=options.events + len(bad_at))
    interactive = sys.stdout.isatty()
    stream_started = time.monotonic()
    raw_producer = Outbox(
        build_producer({**kafka_config, "log_level": 0}, "demo-bad-records"),
        label=ANY_TOPIC,
        timeout_s=30,
        poll_every=1,
    )
    # librdkafka quiet, as the raw producer: a delivery failure still raises (DeliveryError on flush), and
    # its last connection attempts after the demo stopped the stack it started are no news
    with View(interactive, echo) as view, Publisher(publisher_settings, {"log_level": 0}) as publisher:
        actors = Actors(sim, publisher, raw_producer, prefix, reps, caught_up=lambda: _caught_up(sampler))
        progress.phase = "streaming"
        produced = 0
        for i, event in enumerate(sim.stream(options.events)):
            _check_children(state.children)
            _check_watchers(state.threads)
            publisher.publish(dataclasses.replace(event, occurred_at=dt.datetime.now(dt.UTC)))
            actors.saw(event)
            produced += 1
            if i in bad_at:
                actors.pending_bad.append(bad_at.index(i))
            if i in schedule:
                actors.pending_edits.append(schedule[i])
            actors.act()
            progress.produced = produced + len(actors.bad_sent)
            if options.pace is not None:
                delay = stream_started + (i + 1) / options.pace - time.monotonic()
                if delay > 0:
                    _refresh(progress, state, observed, sampler, stream_started, view)
                    time.sleep(delay)
            elif i % 100 == 0:
                _refresh(progress, state, observed, sampler, stream_started, view)
        publisher.flush()
        streamed_s = progress.streamed_s = time.monotonic() - stream_started

        # ------------------------------------------------------------ drain
        progress.phase = "catching up"
        drained = _drain(state, progress, observed, sampler, stream_started, view, actors)
        publisher.flush()
        progress.produced = produced + len(actors.bad_sent)
        progress.phase = "done" if drained else "stopped waiting"
        _refresh(progress, state, observed, sampler, stream_started, view, force=True)
        bad_sent = actors.bad_sent
        if actors.pending_bad or actors.pending_edits:
            unsent = [bad_records(sim, dt.datetime.now(dt.UTC))[i].label for i in actors.pending_bad]
            notes.append(
                f"never found a record to act on for: {', '.join(unsent + actors.pending_edits)} "
                "(a quiet member whose Contact is in the org)"
            )
    raw_producer.close(5)

    report = _report(
        state, prefix, bad_sent, observed, sampler, streamed_s, drained, run_dir, notes, kafka_config, up.registry
    )
    for line in render_report(report):
        echo(line)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    return report


def _caught_up(sampler: Sampler) -> bool:
    """Whether the processor and the sink had consumed everything at the last sample."""
    _, lag = sampler.snapshot()
    return lag.get("processor") == 0 and lag.get("sink") == 0


def _wait_ready(children: Sequence[Child], timeout_s: float = 90.0) -> None:
    """Until every child serves /metrics (it has read its settings and connected), or one stopped."""
    pending = list(children)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as http:
        while pending:
            _check_children(children)
            for child in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(child.metrics_url).status_code == 200:
                        pending.remove(child)
            if time.monotonic() > deadline:
                raise FatalError(
                    f"{', '.join(c.name for c in pending)} did not start in {timeout_s:.0f}s; see {pending[0].log}"
                )
            time.sleep(0.2)


def _check_watchers(watchers: Sequence[_Watcher]) -> None:
    for watcher in watchers:
        if watcher.error is not None:
            raise FatalError(f"the demo's {watcher.name} failed: {watcher.error}")


def _check_children(children: Sequence[Child]) -> None:
    for child in children:
        status = child.exited()
        if status is not None:
            raise FatalError(f"the {child.name} stopped (status {status}); the end of {child.log}:\n{child.tail()}")


def _refresh(
    p: Progress,
    state: _Run,
    observed: Observed,
    sampler: Sampler,
    started: float,
    view: View,
    force: bool = False,
) -> None:
    if not force and time.monotonic() - view.last_refresh < 0.5:
        return
    view.last_refresh = time.monotonic()
    metrics, lag = sampler.snapshot()
    p.elapsed_s = time.monotonic() - started
    processor, sink, poller = (metrics.get(k, []) for k in ("processor", "sink", "poller"))
    p.processed = int(metric_sum(processor, "sfsync_processor_events_in_total"))
    p.planned = int(metric_sum(processor, "sfsync_processor_writes_planned_total"))
    p.parked = int(
        metric_sum(sink, "sfsync_dlq_records_total") + metric_sum(processor, "sfsync_processor_dlq_records_total")
    )
    p.api_calls_sink = int(metric_sum(sink, "sfsync_salesforce_api_calls_total"))
    p.api_calls_poller = int(metric_sum(poller, "sfsync_salesforce_api_calls_total"))
    p.api_calls = state.org.emulator.api_calls if state.org is not None else 0
    p.changes_polled = int(metric_sum(poller, "sfsync_poller_changes_total"))
    p.lag = lag
    reps = state.reps
    with observed.lock:
        p.written = dict(observed.written)
        p.inbound_out = len(observed.inbound)
        p.errors = dict(errors_by(observed.log_entries, notices=False, detail=False))
        inbound_copy = list(observed.inbound)
    if reps is not None:
        p.rep_edits = dict(Counter(e.sobject for e in reps.edits))
        p.rep_edits_back = len(contact_edits_back(reps.edits, inbound_copy))
    view.show(p, force=force)


def _drain(
    state: _Run,
    p: Progress,
    observed: Observed,
    sampler: Sampler,
    started: float,
    view: View,
    actors: Actors,
) -> bool:
    """Until the due bad records and edits were made, the processor and the sink caught up, and the
    reps' Contact edits came back (or ``inbound_timeout_s`` passed since the last edit); bounded."""
    options = state.options
    deadline = time.monotonic() + options.drain_timeout_s
    has_inbound = any(c.name == "inbound" for c in state.children)
    while time.monotonic() < deadline:
        _check_children(state.children)
        _check_watchers(state.threads)
        actors.act()
        # asked before the refresh reads the sample: a lag taken before the last act is stale
        measured = sampler.measured_since(actors.last_acted_at)
        _refresh(p, state, observed, sampler, started, view)
        with observed.lock:
            quiet_s = time.monotonic() - observed.last_result_at if observed.last_result_at else 0.0
        lag_zero = p.lag.get("processor") == 0 and p.lag.get("sink") == 0
        outbound = actors.idle and measured and lag_zero and quiet_s >= 2.0
        edits = actors.reps.edits
        contact_edits = sum(1 for e in edits if e.sobject == "Contact")
        since_last_edit = time.time() - max((e.modstamp for e in edits), default=0.0)
        inbound = not has_inbound or p.rep_edits_back >= contact_edits or since_last_edit > options.inbound_timeout_s
        if outbound and inbound:
            return True
        time.sleep(0.25)
    return False


def _integration_user(org: RunningEmulator) -> str | None:
    """The Salesforce user id sfsync writes as (the connected app's client-credentials user)."""
    config = org.emulator.auth.config
    return next((u.user_id for u in config.users if u.username == config.client_credentials_user), None)


def _report(
    state: _Run,
    prefix: str,
    bad_sent: Sequence[BadRecord],
    observed: Observed,
    sampler: Sampler,
    streamed_s: float,
    drained: bool,
    run_dir: Path,
    notes: list[str],
    kafka_config: Mapping[str, Any],
    registry_url: str,
) -> DemoReport:
    assert state.org is not None
    assert state.reps is not None
    metrics, _ = sampler.snapshot()
    store = state.org.emulator.store
    edits = state.reps.edits
    with observed.lock:
        written = dict(observed.written)
        results = observed.results
        outbound = list(observed.outbound_latency)
        inbound = list(observed.inbound)
        changes = list(observed.changes)
        entries = dict(observed.log_entries)
    back = contact_edits_back(edits, inbound)
    polled = poller_latency([e for e in edits if e.sobject == "Contact"], changes)

    kept = 0
    for edit in (e for e in edits if e.sobject == "Campaign"):
        found = store.row_by_id(edit.record_id)
        if found is not None and all(found[1].get(k) == v for k, v in edit.values.items()):
            kept += 1

    parked_views: list[ParkedView] = []
    with SchemaRegistry(registry_url) as registry:
        decoder = AvroDecoder(registry)
        by_event = {b.event_id: b for b in bad_sent if b.event_id}
        by_key = {b.key: b for b in bad_sent if b.key}
        dlq = DeadLetterQueue(kafka_config, prefix=prefix)
        try:
            parked = dlq.list_parked()
        finally:
            dlq.close()
        for record in parked:
            ctx = record.context
            key = (record.key or b"").decode(errors="replace")
            shown = key if len(key) <= 90 else key[:87] + "..."
            matched: BadRecord | None = by_key.get(key)
            what = f"{ctx.topic.removeprefix(prefix)} key {shown!r}"
            with contextlib.suppress(Exception):
                name, value = decoder.decode(record.value or b"")
                source = value.get("source") or {}
                matched = matched or by_event.get(str(source.get("event_id")))
                origin = f"{source.get('event_type', '?')} {source.get('event_id', '')}"
                what = f"{value.get('sobject') or name} {shown!r} (from {origin})"
            parked_views.append(
                ParkedView(
                    what=what,
                    code=ctx.code,
                    stage=ctx.stage,
                    mapping=ctx.mapping,
                    field=ctx.field,
                    message=ctx.message if len(ctx.message) <= 140 else ctx.message[:137] + "...",
                    bad_on_purpose=matched.label if matched is not None else None,
                )
            )
    org_records = {name: len(store.rows(name)) for name in SYNCED_OBJECTS}
    sink_metrics, poller_metrics = metrics.get("sink", []), metrics.get("poller", [])
    return DemoReport(
        prefix=prefix,
        events=state.options.events + len(bad_sent),
        bad_sent=[b.label for b in bad_sent],
        seconds_streaming=streamed_s,
        seconds_total=time.monotonic() - state.started,
        org_records=org_records,
        written=written,
        results=results,
        api_calls_sink=int(metric_sum(sink_metrics, "sfsync_salesforce_api_calls_total")),
        api_calls_poller=int(metric_sum(poller_metrics, "sfsync_salesforce_api_calls_total")),
        api_calls_org=state.org.emulator.api_calls,
        outbound_latency_s={"p50": percentile(outbound, 0.5), "p99": percentile(outbound, 0.99)},
        rep_edits=dict(Counter(e.sobject for e in edits)),
        contact_edits_back=len(back),
        inbound_records=len(inbound),
        inbound_by_kind=inbound_kinds(inbound, {e.by for e in edits if e.by}, _integration_user(state.org)),
        inbound_latency_s={"p50": percentile(list(back.values()), 0.5), "p99": percentile(list(back.values()), 0.99)},
        poller_latency_s={"p50": percentile(polled, 0.5), "p99": percentile(polled, 0.99)},
        campaign_edits_kept=kept,
        errors=errors_by(entries, notices=False),
        notices=errors_by(entries, notices=True),
        parked=parked_views,
        metrics={c.name: c.metrics_url for c in state.children},
        logs=str(run_dir),
        pids=[c.proc.pid for c in state.children if c.proc is not None],
        drained=drained,
        edits=[
            {"sobject": e.sobject, "id": e.record_id, "values": e.values, "back_s": back.get(e.record_id)}
            for e in edits
        ],
        notes=notes,
    )
