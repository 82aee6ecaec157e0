"""Many workspaces: 200 workspaces on 200 emulated orgs under a skewed load vs one workspace carrying the same load,
and what an idle poller of every org costs in API calls; two poller replicas share the orgs, one is killed, and the
survivor takes its orgs over with no change lost or delivered twice.

Every worker is a real process, as in production (as in ``bench/e2e.py``): the Faust processor (``python -m
sfsync.processors.outbound.app``), the sink (``sfsync sink``), the poller (``sfsync poller``) and the emulated
orgs (``sfsync emulator --orgs N+1``: one process, one port per org, so the orgs do not share this process's
GIL); this process registers the workspaces, publishes, measures and samples. The workers read the workspace
registry (``SFSYNC_WORKSPACES_ENABLED=true``, ``SFSYNC_WORKSPACES_REQUIRED=true``, no ``SALESFORCE_*``): each
org is a connection of the client-credentials flow, its consumer secret sealed under a fresh
``SFSYNC_CONNECTION_KEYS`` key and written with sfsync's :class:`~sfsync.workspaces.RegistryWriter`; every
workspace runs the shipped default mapping (members -> Contact matched by Email, + one
Community_Activity__c per event).

**The load** (``shape`` in the JSON): ``--events`` events over ``--workspaces`` workspaces, each on its own org;
the first ``--large`` workspaces carry ``--large-share`` of them (default 5 workspaces, 60 %), the others share
the rest evenly (default 195 workspaces, ~41 events each). Each workspace has one member per
``--events-per-member`` of its events: their UserCreated events first, then UserProfileUpdate events of its
members in turn (bench/e2e.py's workload). The workspaces' streams are interleaved at random (seeded), so
every workspace's events are spread over the whole topic, as many customers' activity is.

Phases (one JSON line at the end; progress on stderr):

1. ``many``: the events pre-filled on ``product.members`` (not timed), then the processor and the sink start;
   timed from their start to the Kafka timestamp of the last ``sfsync.results`` record, once both groups
   committed everything (e2e's ``events_per_s``; ``steady_events_per_s`` leaves out the start-up: first to last
   result). API calls: each org's own count (``GET /__admin/stats`` ``api_calls``, OAuth excluded) before the
   workers start and after they drained, summed over the large and over the small workspaces' orgs, with
   ``by_endpoint`` (the match queries and the sObject Collections calls; ``api_calls_per_org``: min, max).
   Synced records: the ``sfsync.results`` records of each workspace (one per record operation Salesforce
   acknowledged; several events of one member in one batch merge into one). ``api_calls_per_record`` = calls
   / synced records of that group. Each worker's RSS and threads are sampled every second (peak), its CPU
   per event from /proc (utime + stime; the emulator's over the phase).
2. ``one``: the same events (same members, same order), every one in ONE workspace on one org of its own
   (a fresh topic prefix, registry and consumer groups; the same settings), measured the same way.
   ``many_vs_one``: the ratios many / one; ``cpu_us_per_event`` (processor + sink + emulator) is the steadier
   comparison on a shared machine, where events/s follows what the other tenants leave.
3. ``idle``: two pollers at once, with no change in any org: one over the ``many`` registry (``--workspaces``
   orgs), one over the ``one`` registry (one org), both with the shipped defaults (``SFSYNC_SOURCE_*`` unset:
   ``max_idle_interval_s`` 60 s, the pace an idle object backs off to; the orgs hold the records the phases
   wrote, so the first polls read them). Reported per poller: the seconds until it took every org over (its
   log's ``polling <connection>:Contact`` lines) and until every org was polled (each org's query count),
   RSS and threads (peak and at the end), CPU in the window. After the first polls and ``--idle-warmup-s`` (the
   backoff 1, 2, 4... reaches 60 s ~63 s after an org's last poll that found rows), each org's API calls are
   counted over ``--idle-s`` (default 120 s: two idle polls of every org, whatever its phase) and extrapolated
   to calls per org per hour (``query_calls_per_org``, min and max: 2 each when every org made two one-page polls).
   ``idle_poller_per_extra_org``: the many poller's RSS and threads over the one poller's, per org more. An idle
   poll re-reads the rows of the ``lookback_s`` (10 s) before the org's newest change: when its last burst
   left more than a query page (2,000 rows) there, every idle poll costs a second call
   (``queryAll/{locator}`` in ``by_endpoint``) until a newer change moves the cursor.
4. ``handover`` (skip with ``--no-handover``): two ``sfsync poller`` replicas (one group) over the ``many``
   orgs, registered again under a fresh topic prefix (so the changes topic and the checkpoints start empty; the
   first polls read what the sync phases left in the orgs), with the shipped defaults except
   ``SFSYNC_SOURCE_SESSION_TIMEOUT_MS=6000`` (a dead replica's orgs move after 6 s, not 10),
   ``SFSYNC_SOURCE_TRANSACTION_TIMEOUT_S=10`` and ``SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S=10`` (every org polled
   again within the ``--handover-settle-s`` window), listed in ``settings.handover_source``. Once each replica
   polls some orgs and together all, none twice (each log's last ``polling`` / ``stopped polling the org of
   connection`` line per org: ``orgs_per_replica``), a sales rep of every org (``/__admin/edit``, its own
   transaction; no API call counted) creates one Contact per org per round, org after org; after
   ``--handover-before-kill-s`` one replica is SIGKILLed (``orgs_of_killed``); ``orgs_taken_s``: from the kill
   until the survivor's log has every org (``polling the org of connection``), ``takeover_s``: until it polls
   every org's Contact (``polling <connection>:Contact (checkpoint partition``, not ``released`` since: its
   checkpoint read, the dead replica's transaction fenced); ``killed_orgs_flowing_again_s``: until a Contact written
   after the kill has arrived from each of the killed replica's orgs. The writing goes on
   ``--handover-after-s``, stops; then the bench waits (up to 180 s) until every written Contact has a change on
   ``salesforce.changes`` (read_committed, ``all_delivered_s`` from the kill) and reads on
   ``--handover-settle-s``. Counted per record from the topic: ``lost`` (a written Contact with no change),
   ``duplicated`` (a change id delivered more than once, over every change of the phase, plus a written Contact
   with more than one change id), ``misrouted`` (a written Contact's change naming another workspace);
   ``survivor_rss_mb`` and ``survivor_threads``: the survivor's peaks over the phase (sampled every second).

Goals (``goals``, ``meets_goals``): idle API calls per org per hour <= the idle cost stated in
``sfsync.sources.settings`` for the defaults (1,440 polls + 144 delete-log reads + 4 reconciliations a day =
1,588 a day, 66.2 an hour, per polled object; the shipped mapping polls one, Contact); a window shorter than the
delete log's 10 minutes holds only polls (the delete log is first read ~10 minutes after an org's first poll), so
the measured figure leaves out its 6 calls an hour; ``--idle-s 700`` holds one. Each worker's RSS peak below
300 MB (bench/e2e.py's goal). ``many_vs_one`` has no goal (the issue sets none): it says what isolation costs.
The handover loses no change and delivers none twice (``lost`` and ``duplicated`` 0).

The machine may be shared with other work: ``load_average`` at the start and end says how busy it was.

    python bench/workspaces.py [--workspaces 200] [--large 5] [--large-share 0.6] [--events 20000]
                               [--events-per-member 5] [--idle-s 120] [--idle-warmup-s 75]
                               [--no-handover] [--handover-before-kill-s 10] [--handover-after-s 10]
                               [--handover-settle-s 15]
    python bench/workspaces.py --workspaces 10 --large 2 --events 2000 --idle-s 60   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# This folder holds bench/emulator.py and bench/plan.py, named like packages: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from sfsync.devtools.stack import stop_process_group, wait_http  # noqa: E402
from sfsync.errors import ServiceUnavailableError  # noqa: E402
from sfsync.kafka.admin import delete_topics, ensure_topics  # noqa: E402
from sfsync.keys import workspace_of  # noqa: E402
from sfsync.processors.outbound.settings import ProcessorSettings  # noqa: E402
from sfsync.producers import events as ev  # noqa: E402
from sfsync.producers.fake import CommunitySimulator  # noqa: E402
from sfsync.producers.publisher import Publisher  # noqa: E402
from sfsync.serde.codec import AvroDecoder  # noqa: E402
from sfsync.serde.registry import SchemaRegistry  # noqa: E402
from sfsync.settings import PublisherSettings, load  # noqa: E402
from sfsync.sinks.settings import SinkSettings  # noqa: E402
from sfsync.sources.settings import SourceSettings  # noqa: E402
from sfsync.topics import ALL_TOPICS, CHANGES, DLQ, IDENTITIES, MEMBERS, RESULTS, WRITES, planned_writes  # noqa: E402
from sfsync.workspaces import (  # noqa: E402
    Connection,
    ConnectionFlow,
    RegistryWriter,
    Workspace,
    WorkspaceState,
    parse_keys,
)
from sfsync.workspaces.sealing import KEYS_SETTING, new_key  # noqa: E402


def _e2e() -> Any:
    """bench/e2e.py's helpers (the bench folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_e2e", BENCH / "e2e.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


e2e = _e2e()
cpu_seconds, end_offsets, read_topic, wait_drained = e2e.cpu_seconds, e2e.end_offsets, e2e.read_topic, e2e.wait_drained

GOAL_RSS_MB = e2e.GOAL_RSS_MB
DAY_S = 86_400.0


def idle_goal_per_hour(settings: SourceSettings) -> float:
    """The idle cost per polled object and hour that ``sfsync.sources.settings`` states for ``settings``: a poll
    every ``max_idle_interval_s``, the delete log every ``delete_log_interval_s``, 4 reconciliations a day (one
    call each up to 2,000 tracked ids)."""
    per_day = DAY_S / settings.max_idle_interval_s
    if settings.delete_log_interval_s > 0:
        per_day += DAY_S / settings.delete_log_interval_s
    if settings.reconcile_interval_s > 0:
        per_day += DAY_S / settings.reconcile_interval_s
    return per_day / 24


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------- the load
@dataclasses.dataclass(frozen=True)
class Shape:
    """How ``events`` spread over ``workspaces``: the first ``large`` carry ``large_share`` of them."""

    workspaces: int
    large: int
    large_share: float
    events: int
    events_per_member: int

    def events_of(self) -> list[int]:
        """Events of each workspace (sum: ``events``)."""
        small = self.workspaces - self.large
        on_large = round(self.events * self.large_share) if small else self.events
        counts = [on_large // self.large + (1 if i < on_large % self.large else 0) for i in range(self.large)]
        rest = self.events - on_large
        if small:
            counts += [rest // small + (1 if i < rest % small else 0) for i in range(small)]
        return counts

    def members_of(self) -> list[int]:
        return [max(1, n // self.events_per_member) for n in self.events_of()]

    def describe(self) -> dict[str, Any]:
        events, members = self.events_of(), self.members_of()
        small = events[self.large :]
        return {
            "workspaces": self.workspaces,
            "large": self.large,
            "small": self.workspaces - self.large,
            "large_share": self.large_share,
            "events": self.events,
            "events_per_large": events[0],
            "events_per_small": [min(small), max(small)] if small else None,
            "members_per_large": members[0],
            "members_per_small": [min(members[self.large :]), max(members[self.large :])] if small else None,
            "events_per_member": self.events_per_member,
            "each_workspace": "its members' UserCreated, then UserProfileUpdate of its members in turn; "
            "workspaces interleaved at random",
            "mapping": "default (members -> Contact by Email, + Community_Activity__c per event)",
        }


class WorkspaceStream:
    """One workspace's events: its members' sign-ups, then profile updates of its members in turn."""

    def __init__(self, sim: CommunitySimulator, rng: random.Random, members: int) -> None:
        self.sim = sim
        self.rng = rng
        self.created = [sim.new_member() for _ in range(members)]
        self.profiles = [c.member for c in self.created]
        self._next = 0
        self._order: list[int] = []

    def next_event(self, serial: int) -> Any:
        if self._next < len(self.created):
            self._next += 1
            return self.created[self._next - 1]
        rng, sim = self.rng, self.sim
        if not self._order:
            self._order = list(range(len(self.profiles)))
            rng.shuffle(self._order)
        i = self._order.pop()
        changed = sorted(rng.sample(["company", "last_login_at", "title"], k=rng.randint(1, 2)))
        p = self.profiles[i]
        if "title" in changed:
            p = dataclasses.replace(p, title=rng.choice(sim.titles)[:80])
        if "company" in changed:
            p = dataclasses.replace(p, company=rng.choice(sim.companies))
        if "last_login_at" in changed:
            p = dataclasses.replace(p, last_login_at=sim.clock + dt.timedelta(seconds=serial))
        self.profiles[i] = p
        return ev.UserProfileUpdate(workspace_id=sim.workspace_id, member=p, changed_fields=changed)


def skewed_events(shape: Shape, seed: int = 7) -> list[tuple[int, Any]]:
    """(workspace index, event) in publishing order. Every member comes from one simulator, so emails are unique
    across workspaces and the same events can be replayed in one workspace."""
    sim = CommunitySimulator(seed=seed)
    rng = random.Random(seed)
    streams = [WorkspaceStream(sim, rng, m) for m in shape.members_of()]
    slots = [w for w, n in enumerate(shape.events_of()) for _ in range(n)]
    rng.shuffle(slots)
    return [(w, streams[w].next_event(serial)) for serial, w in enumerate(slots)]


def prefill(publisher: Publisher, events: Sequence[tuple[int, Any]], workspace: Callable[[int], str]) -> None:
    now = dt.datetime.now(dt.UTC)
    for index, event in events:
        publisher.publish(dataclasses.replace(event, workspace_id=workspace(index), occurred_at=now))
    publisher.flush()


# ---------------------------------------------------------------------- the orgs
@dataclasses.dataclass(frozen=True)
class Org:
    """One emulated org as ``sfsync emulator --orgs --credentials-file`` wrote it."""

    name: str
    url: str
    org_id: str
    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    username: str


def start_orgs(count: int, work: Path, log_file: Any) -> tuple[subprocess.Popen[bytes], list[Org]]:
    credentials = work / "orgs.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfsync.cli.main",
            "emulator",
            "--orgs",
            str(count),
            "--port",
            "0",
            "--credentials-file",
            str(credentials),
        ],
        cwd=ROOT,
        env=worker_env(""),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (credentials.exists() and credentials.stat().st_size):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process_group(proc.pid, 10)
            raise SystemExit("the emulator did not start (see its log)")
        time.sleep(0.1)
    time.sleep(0.2)  # the file is written in one go, then closed
    fields = ("name", "org_id", "client_id", "client_secret", "username")
    orgs = [Org(**{k: e[k] for k in fields}, url=e["instance_url"]) for e in json.loads(credentials.read_text())]
    credentials.unlink()
    try:
        for org in (orgs[0], orgs[-1]):
            wait_http(f"{org.url}/services/data/", 60, what="the emulated orgs")
    except ServiceUnavailableError as exc:
        stop_process_group(proc.pid, 10)
        raise SystemExit(str(exc)) from None
    return proc, orgs


def warm_up(client: httpx.Client, org: Org) -> None:
    """One query and one create, so that the emulator process builds its lazily made parts (the SOQL parser...)
    before any phase is measured (every org shares them)."""
    token = client.post(f"{org.url}/__admin/session", json={}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    api = f"{org.url}/services/data/v62.0"
    client.get(f"{api}/query", params={"q": "SELECT Id FROM Contact LIMIT 1"}, headers=headers).raise_for_status()
    client.post(f"{api}/sobjects/Contact", json={"LastName": "Warm-up"}, headers=headers).raise_for_status()


def org_stats(client: httpx.Client, orgs: Sequence[Org]) -> list[dict[str, Any]]:
    """Each org's ``/__admin/stats`` (API calls, by endpoint; the admin API costs none)."""
    return [client.get(f"{org.url}/__admin/stats").json() for org in orgs]


def calls_between(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[Counter[str]]:
    """Per org, the API calls by endpoint between two :func:`org_stats` (``"*"``: every call)."""
    out = []
    for b, a in zip(before, after, strict=True):
        calls = Counter(a["by_endpoint"])
        calls.subtract(b["by_endpoint"])
        calls["*"] = a["api_calls"] - b["api_calls"]
        out.append(+calls)
    return out


# ---------------------------------------------------------------------- the registry
def register(
    kafka: dict[str, Any], registry: SchemaRegistry, prefix: str, keys: Any, spaces: Mapping[str, tuple[str, Org]]
) -> None:
    """Each workspace (id -> its connection id and org) and its connection, as ``sfsync connections add
    --flow client_credentials`` and ``sfsync workspaces add`` write them."""
    now = dt.datetime.now(dt.UTC)
    with RegistryWriter(kafka, registry, prefix=prefix) as writer:
        for workspace_id, (connection_id, org) in spaces.items():
            writer.put_connection(
                Connection(
                    connection_id,
                    login_url=org.url,
                    api_version="62.0",
                    flow=ConnectionFlow.CLIENT_CREDENTIALS,
                    client_id=org.client_id,
                    secrets=keys.seal(connection_id, {"client_secret": SecretStr(org.client_secret)}),
                    updated_at=now,
                    instance_url=org.url,
                    username=org.username,
                    org_id=org.org_id,
                )
            )
            writer.put_workspace(Workspace(workspace_id, connection_id, WorkspaceState.ACTIVE, now))


# ---------------------------------------------------------------------- processes
def worker_env(prefix: str, **extra: str) -> dict[str, str]:
    """This environment for a worker: no ``SALESFORCE_*`` (the registry names every org), ``prefix``, ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESFORCE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["SFSYNC_TOPIC_PREFIX"] = prefix
    return {**env, **extra}


def registry_env(keys: SecretStr) -> dict[str, str]:
    return {
        "SFSYNC_WORKSPACES_ENABLED": "true",
        "SFSYNC_WORKSPACES_REQUIRED": "true",
        KEYS_SETTING: keys.get_secret_value(),
    }


def spawn(args: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def proc_status(pid: int) -> tuple[int, int] | None:
    """(RSS bytes, threads) of ``pid`` from /proc; None when it is gone."""
    rss = threads = None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    except OSError:
        return None
    return (rss, threads) if rss is not None and threads is not None else None


class Sampler(threading.Thread):
    """Each process's RSS and threads every ``interval_s``."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.samples: dict[str, list[tuple[int, int]]] = {name: [] for name in pids}
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            for name, pid in self.pids.items():
                found = proc_status(pid)
                if found is not None:
                    self.samples[name].append(found)
            if self.done.wait(self.interval_s):
                return

    def stop(self) -> None:
        self.done.set()
        self.join(5)

    def report(self) -> dict[str, Any]:
        out = {}
        for name, values in self.samples.items():
            if values:
                out[name] = {
                    "rss_peak_mb": round(max(r for r, _ in values) / 2**20, 1),
                    "rss_last_mb": round(values[-1][0] / 2**20, 1),
                    "threads_peak": max(t for _, t in values),
                }
        return out


class Drain:
    """Whether the processor (its inputs, its repartition topic) and the sink committed everything there is."""

    def __init__(self, kafka: dict[str, Any], prefix: str, app_id: str, sink_group: str) -> None:
        repartition = planned_writes(app_id, MEMBERS.partitions).name(prefix)
        self.processor_tps = [
            TopicPartition(t, p)
            for t, n in ((MEMBERS.name(prefix), MEMBERS.partitions), (IDENTITIES.name(prefix), IDENTITIES.partitions))
            for p in range(n)
        ]
        self.repartition = repartition
        self.sink_tps = [TopicPartition(WRITES.name(prefix), p) for p in range(WRITES.partitions)]
        self.processor = Consumer({**kafka, "group.id": app_id, "log_level": 3})
        self.sink = Consumer({**kafka, "group.id": sink_group, "log_level": 3})

    def _done(self, consumer: Any, tps: list[TopicPartition]) -> bool:
        committed = sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
        ends = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
        return committed >= ends

    def caught_up(self) -> bool:
        tps = list(self.processor_tps)
        topic = self.processor.list_topics(self.repartition, timeout=10).topics.get(self.repartition)
        if topic is not None and not topic.error:
            tps += [TopicPartition(self.repartition, p) for p in topic.partitions]
        return self._done(self.processor, tps) and self._done(self.sink, self.sink_tps)

    def close(self) -> None:
        self.processor.close()
        self.sink.close()


def count_messages(kafka: dict[str, Any], topic: str, partitions: int) -> int:
    return sum(end_offsets(kafka, topic, partitions).values())


# ---------------------------------------------------------------------- a sync phase
def sync_phase(
    name: str,
    *,
    run_tag: str,
    kafka: dict[str, Any],
    prefix: str,
    env: dict[str, str],
    events: Sequence[tuple[int, Any]],
    workspace: Callable[[int], str],
    orgs: Sequence[Org],
    groups: Mapping[str, set[str]],
    org_of: Mapping[str, int],
    emulator_pid: int,
    admin: httpx.Client,
    work: Path,
) -> dict[str, Any]:
    """Prefill ``events`` (each in ``workspace(index)``), run the processor and the sink until drained; the
    figures (see the module doc). The processor's group is ``<run_tag><name>-proc``, the sink's
    ``<run_tag><name>-sink``. ``groups``: name -> workspace ids; ``org_of``: workspace id -> index in
    ``orgs``."""
    app_id, sink_group = f"{run_tag}{name}-proc", f"{run_tag}{name}-sink"
    publisher = Publisher(load(PublisherSettings, "publisher", topic_prefix=prefix))
    started = time.perf_counter()
    try:
        prefill(publisher, events, workspace)
    finally:
        publisher.close()
    log(f"{name}: {len(events)} events pre-filled in {time.perf_counter() - started:.1f}s")
    results_start = end_offsets(kafka, RESULTS.name(prefix), RESULTS.partitions)
    before = org_stats(admin, orgs)
    drain = Drain(kafka, prefix, app_id, sink_group)
    timeout_s = max(600.0, len(events) / 20)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    sampler: Sampler | None = None
    emulator_cpu = cpu_seconds(emulator_pid)
    try:
        t0 = time.time()
        procs["sink"] = spawn(
            ["sfsync.cli.main", "sink"],
            {**env, "SFSYNC_SINK_GROUP_ID": sink_group, "SFSYNC_SINK_METRICS_PORT": "0"},
            work / f"{name}-sink.log",
        )
        procs["processor"] = spawn(
            ["sfsync.processors.outbound.app", str(timeout_s + 600)],  # stops by itself should this process die
            {
                **env,
                "SFSYNC_PROCESSOR_APP_ID": app_id,
                "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
                "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": "0.5",
                "SFSYNC_PROCESSOR_METRICS_PORT": "0",
            },
            work / f"{name}-processor.log",
            cwd=work,  # Faust's table data lands here
        )
        sampler = Sampler({n: p.pid for n, p in procs.items()} | {"emulator": emulator_pid})
        sampler.start()
        log(f"{name}: processor and sink started; waiting until they drained")
        wait_drained(drain, list(procs.values()), timeout_s, name)
        cpu = {n: cpu_seconds(p.pid) for n, p in procs.items()} | {"emulator": cpu_seconds(emulator_pid) - emulator_cpu}
    except BaseException:
        for n in procs:
            tail = (work / f"{name}-{n}.log").read_text(errors="replace")[-2000:]
            print(f"{name} {n} log (tail):\n{tail}", file=sys.stderr)
        raise
    finally:
        if sampler is not None:
            sampler.stop()
        for proc in procs.values():
            stop_process_group(proc.pid, 20)
        drain.close()
    after = org_stats(admin, orgs)
    stamps: list[int] = []
    records: Counter[str] = Counter()

    def each(msg: Any) -> None:
        stamps.append(msg.timestamp()[1])
        records[workspace_of(msg.key().decode())] += 1

    read_topic(kafka, RESULTS.name(prefix), RESULTS.partitions, results_start, each)
    if not stamps:
        raise SystemExit(f"{name}: no result at all")
    first, last = min(stamps) / 1000, max(stamps) / 1000
    calls = calls_between(before, after)
    api: dict[str, Any] = {}
    for group, spaces in groups.items():
        if not spaces:
            continue
        indexes = sorted({org_of[w] for w in spaces})
        group_calls: Counter[str] = Counter()
        for i in indexes:
            group_calls.update(calls[i])
        synced = sum(records[w] for w in spaces)
        total = group_calls.pop("*", 0)
        per_org = [calls[i]["*"] for i in indexes]
        api[group] = {
            "workspaces": len(spaces),
            "api_calls": total,
            "synced_records": synced,
            "api_calls_per_record": round(total / synced, 4) if synced else None,
            "api_calls_per_org": [min(per_org), max(per_org)],
            "by_endpoint": dict(group_calls.most_common()),
        }
    result = {
        "events": len(events),
        "results": len(stamps),
        "parked": count_messages(kafka, DLQ.name(prefix), DLQ.partitions),
        "seconds": round(last - t0, 2),
        "events_per_s": round(len(events) / (last - t0)),
        "startup_s": round(first - t0, 2),
        "steady_events_per_s": round(len(events) / max(last - first, 1e-3)),
        "cpu_us_per_event": {n: round(s / len(events) * 1e6, 1) for n, s in cpu.items()},
        "workers": sampler.report() if sampler is not None else {},
        "api": api,
    }
    log(
        f"{name}: {result['events_per_s']} events/s ({result['steady_events_per_s']} steady), "
        + ", ".join(f"{g} {a['api_calls_per_record']} calls/record" for g, a in api.items())
    )
    return result


# ---------------------------------------------------------------------- the idle pollers
_TAKEN = re.compile(r"polling ([A-Za-z0-9][\w.@+-]*):(\w+) \(checkpoint partition")


def taken_over(log_path: Path) -> set[str]:
    """The connections whose objects the poller's log says it took over."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return {m.group(1) for m in _TAKEN.finditer(text)}


def polled(calls: Counter[str]) -> bool:
    """Whether an org's calls hold a query (a poll), not only the describes of its start-up check."""
    return any("query" in endpoint.lower() for endpoint in calls if endpoint != "*")


def idle_phase(
    pollers: Mapping[str, tuple[dict[str, str], Sequence[Org]]],
    *,
    admin: httpx.Client,
    work: Path,
    warmup_s: float,
    window_s: float,
    max_idle_interval_s: float,
) -> dict[str, Any]:
    """Run one poller per entry (name -> its environment, its orgs) side by side; see the module doc."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    every = [org for _, orgs in pollers.values() for org in orgs]
    out: dict[str, dict[str, Any]] = {name: {"orgs": len(orgs)} for name, (_, orgs) in pollers.items()}
    sampler: Sampler | None = None
    try:
        start_stats = org_stats(admin, every)
        t0 = time.monotonic()
        for name, (env, _) in pollers.items():
            procs[name] = spawn(["sfsync.cli.main", "poller"], env, work / f"idle-{name}-poller.log")
        sampler = Sampler({n: p.pid for n, p in procs.items()})
        sampler.start()
        log(f"idle: pollers started ({', '.join(f'{n}: {len(o)} orgs' for n, (_, o) in pollers.items())})")
        waiting = set(pollers)
        deadline = t0 + 600
        while waiting:
            time.sleep(1.0)
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise SystemExit(f"idle: the {name} poller exited ({proc.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit(f"idle: {sorted(waiting)} not every org polled within 600 s")
            now = time.monotonic()
            calls = calls_between(start_stats, org_stats(admin, every))
            offset = 0
            for name, (_, orgs) in pollers.items():
                mine = calls[offset : offset + len(orgs)]
                offset += len(orgs)
                taken = len(taken_over(work / f"idle-{name}-poller.log"))
                if "takeover_s" not in out[name] and taken >= len(orgs):
                    out[name]["takeover_s"] = round(now - t0, 1)
                    log(f"idle: {name}: every org taken over after {now - t0:.1f}s")
                if name in waiting and all(polled(c) for c in mine):
                    out[name]["every_org_polled_s"] = round(now - t0, 1)
                    out[name].setdefault("takeover_s", round(now - t0, 1))
                    waiting.discard(name)
                    log(f"idle: {name}: every org polled after {now - t0:.1f}s")
        log(f"idle: warm-up {warmup_s:.0f}s (the idle backoff reaching {max_idle_interval_s:.0f}s)")
        time.sleep(warmup_s)
        cpu_before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        before = org_stats(admin, every)
        log(f"idle: counting every org's API calls for {window_s:.0f}s")
        time.sleep(window_s)
        after = org_stats(admin, every)
        cpu_after = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"idle: the {name} poller exited ({proc.returncode})")
    except BaseException:
        for name in procs:
            tail = (work / f"idle-{name}-poller.log").read_text(errors="replace")[-2000:]
            print(f"idle {name} poller log (tail):\n{tail}", file=sys.stderr)
        raise
    finally:
        if sampler is not None:
            sampler.stop()
        for proc in procs.values():
            stop_process_group(proc.pid, 30)
    calls = calls_between(before, after)
    workers = sampler.report() if sampler is not None else {}
    offset = 0
    for name, (_, orgs) in pollers.items():
        mine = calls[offset : offset + len(orgs)]
        offset += len(orgs)
        total = sum(c["*"] for c in mine)
        queries = [sum(n for e, n in c.items() if e != "*" and "query" in e.lower()) for c in mine]
        endpoints: Counter[str] = Counter()
        for c in mine:
            endpoints.update({e: n for e, n in c.items() if e != "*"})
        per_org_hour = total / len(orgs) * 3600 / window_s
        out[name] |= {
            "window_s": window_s,
            "api_calls": total,
            "query_calls_per_org": [min(queries), max(queries)],
            "by_endpoint": dict(endpoints.most_common()),
            "api_calls_per_org_per_hour": round(per_org_hour, 1),
            "cpu_s_in_window": round(cpu_after[name] - cpu_before[name], 2),
            "worker": workers.get(name, {}),
        }
        log(f"idle: {name}: {per_org_hour:.1f} API calls per org per hour, RSS {workers.get(name, {})}")
    return out


# ---------------------------------------------------------------------- the handover
HANDOVER_SOURCE = {  # the two replicas' settings beside the shipped defaults (see the module doc)
    "SFSYNC_SOURCE_SESSION_TIMEOUT_MS": "6000",
    "SFSYNC_SOURCE_TRANSACTION_TIMEOUT_S": "10",
    "SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S": "10",
}
_POLLING = re.compile(r"(polling|stopped polling) the org of connection ([A-Za-z0-9][\w.@+-]*)")


def orgs_polled(log_path: Path) -> set[str]:
    """The connections a poller polls at the end of its log (``polling the org`` / ``stopped polling``)."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    out: set[str] = set()
    for match in _POLLING.finditer(text):
        if match.group(1) == "polling":
            out.add(match.group(2))
        else:
            out.discard(match.group(2))
    return out


_HOLDING = re.compile(r"(?:polling|released) ([A-Za-z0-9][\w.@+-]*):\w+(?: \(checkpoint partition|$)", re.MULTILINE)


def objects_polled(log_path: Path) -> set[str]:
    """The connections whose object a poller polls at the end of its log: ``polling <connection>:<object>
    (checkpoint partition ...`` (taken over: its checkpoint read, its transactional producer fenced in) until
    ``released <connection>:<object>``."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    out: set[str] = set()
    for match in _HOLDING.finditer(text):
        if match.group(0).startswith("polling"):
            out.add(match.group(1))
        else:
            out.discard(match.group(1))
    return out


class ChangeTally:
    """Every committed record of ``salesforce.changes`` (read_committed) from its beginning, as it arrives: the
    deliveries of each change id, the change ids of each record, the workspaces each record's changes name."""

    def __init__(self, kafka: dict[str, Any], registry: SchemaRegistry, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {
                **kafka,
                "group.id": f"bench-ws-changes-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.decoder = AvroDecoder(registry)
        self.deliveries: Counter[str] = Counter()
        self.change_ids: dict[str, set[str]] = {}
        self.workspaces: dict[str, set[str | None]] = {}
        self.arrived: dict[str, float] = {}  # record id -> when its first change was read (monotonic)

    def drain(self, timeout_s: float = 0.2) -> None:
        while True:
            messages = self.consumer.consume(1000, timeout_s)
            now = time.monotonic()
            for msg in messages:
                data = msg.value()
                if msg.error() is not None or data is None:
                    continue
                _, value = self.decoder.decode(data)
                record = value["id"]
                self.deliveries[value["change_id"]] += 1
                self.change_ids.setdefault(record, set()).add(value["change_id"])
                self.workspaces.setdefault(record, set()).add(value["workspace_id"])
                self.arrived.setdefault(record, now)
            if not messages:
                return
            timeout_s = 0

    def close(self) -> None:
        self.consumer.close()


class RepWriter(threading.Thread):
    """A sales rep of each org (``rep@acme.test.<org>``, the default org file's rep) creates one Contact per round,
    org after org, round after round until stopped (through ``/__admin/edit``: the org's own transaction, no API
    call counted); ``made[i]``: (id, when written) of org ``i``'s Contacts."""

    def __init__(self, orgs: Sequence[Org]) -> None:
        super().__init__(daemon=True)
        self.orgs = list(orgs)
        self.made: list[list[tuple[str, float]]] = [[] for _ in self.orgs]
        self.rounds = 0
        self.error: Exception | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                while not self.done.is_set():
                    for i, org in enumerate(self.orgs):
                        reply = client.post(
                            f"{org.url}/__admin/edit",
                            json={
                                "user": f"rep@acme.test.{org.name}",
                                "records": [{"sobject": "Contact", "values": {"LastName": f"Handover {self.rounds}"}}],
                            },
                        )
                        reply.raise_for_status()
                        self.made[i].append((reply.json()["ids"][0], time.monotonic()))
                    self.rounds += 1
        except (httpx.HTTPError, KeyError, ValueError) as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.done.set()
        self.join(60)
        if self.error is not None:
            raise SystemExit(f"handover: the rep writer failed: {self.error!r}")

    def ids(self) -> int:
        return sum(len(m) for m in self.made)


def handover_phase(
    *,
    kafka: dict[str, Any],
    registry: SchemaRegistry,
    prefix: str,
    env: dict[str, str],
    orgs: Sequence[Org],
    connections: Sequence[str],
    spaces: Sequence[str],
    work: Path,
    before_kill_s: float,
    after_takeover_s: float,
    settle_s: float,
) -> dict[str, Any]:
    """Two poller replicas over ``orgs`` (``connections[i]``, workspace ``spaces[i]``, registered under
    ``prefix``), a rep writer in every org, one replica SIGKILLed; the count (see the module doc)."""
    every = set(connections)
    index_of = {c: i for i, c in enumerate(connections)}
    tally = ChangeTally(kafka, registry, CHANGES.name(prefix), CHANGES.partitions)
    logs = {name: work / f"handover-{name}-poller.log" for name in ("a", "b")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    sampler: Sampler | None = None
    writer = RepWriter(orgs)
    out: dict[str, Any] = {"orgs": len(orgs), "replicas": 2}

    def alive() -> None:
        for name, proc in procs.items():
            if name != "b" and proc.poll() is not None:
                raise SystemExit(f"handover: replica {name} exited ({proc.returncode})")

    def wait(done: Callable[[], bool], timeout_s: float, what: str, *, required: bool = True) -> float | None:
        """Seconds until ``done()`` (reading the changes meanwhile); past ``timeout_s`` None, or fail if
        ``required``."""
        start = time.monotonic()
        while not done():
            alive()
            tally.drain()
            if time.monotonic() - start > timeout_s:
                if required:
                    raise SystemExit(f"handover: not within {timeout_s:.0f}s: {what}")
                log(f"handover: not within {timeout_s:.0f}s: {what}")
                return None
            time.sleep(0.5)
        return time.monotonic() - start

    def hold(seconds: float) -> None:
        end = time.monotonic() + seconds
        wait(lambda: time.monotonic() >= end, seconds + 10, "")

    try:
        t0 = time.monotonic()
        for name, path in logs.items():
            procs[name] = spawn(["sfsync.cli.main", "poller"], env, path)
        sampler = Sampler({n: p.pid for n, p in procs.items()})
        sampler.start()
        log(f"handover: two replicas started over {len(orgs)} orgs")

        def shared() -> bool:
            a, b = orgs_polled(logs["a"]), orgs_polled(logs["b"])
            return bool(a) and bool(b) and not (a & b) and a | b == every

        wait(shared, 300, "each replica polls some orgs, together all, none twice")
        out["shared_s"] = round(time.monotonic() - t0, 1)
        time.sleep(2)  # stable: no rebalance in flight
        polled = {n: orgs_polled(path) for n, path in logs.items()}
        if not (polled["a"] and polled["b"] and not polled["a"] & polled["b"] and polled["a"] | polled["b"] == every):
            raise SystemExit(f"handover: the replicas' orgs moved after sharing: {[len(p) for p in polled.values()]}")
        out["orgs_per_replica"] = [len(polled["a"]), len(polled["b"])]
        out["orgs_of_killed"] = len(polled["b"])
        log(f"handover: shared after {out['shared_s']}s: {out['orgs_per_replica']} orgs; the rep writer starts")
        writer.start()
        hold(before_kill_s)
        os.killpg(procs["b"].pid, signal.SIGKILL)  # as a crash or an evicted pod: nothing flushed or committed
        killed_at = time.monotonic()
        procs["b"].wait(10)
        written_before_kill = writer.ids()
        log(f"handover: replica b SIGKILLed ({len(polled['b'])} orgs, {written_before_kill} Contacts written)")
        wait(lambda: orgs_polled(logs["a"]) == every, 180, "the survivor has every org")
        out["orgs_taken_s"] = round(time.monotonic() - killed_at, 1)
        wait(lambda: objects_polled(logs["a"]) == every, 180, "the survivor polls every org's object")
        out["takeover_s"] = round(time.monotonic() - killed_at, 1)
        log(f"handover: the survivor polls every org {out['takeover_s']}s after the kill")
        hold(after_takeover_s)
        writer.stop()
        written = writer.ids()
        log(f"handover: {written} Contacts written in {writer.rounds} rounds; waiting for their changes")
        made = {record: i for i, records in enumerate(writer.made) for record, _ in records}
        delivered = wait(lambda: all(r in tally.change_ids for r in made), 180, "every change", required=False)
        out["all_delivered_s"] = round(time.monotonic() - killed_at, 1) if delivered is not None else None
        time.sleep(settle_s)  # more polls of every org: nothing more may come
        tally.drain()
        alive()
        out["survivor_alive"] = True
    except BaseException:
        for name, path in logs.items():
            print(f"handover {name} poller log (tail):\n{path.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        raise
    finally:
        writer.done.set()
        if sampler is not None:
            sampler.stop()
        for proc in procs.values():
            stop_process_group(proc.pid, 30)
    tally.drain()
    tally.close()
    killed = {index_of[c] for c in polled["b"]}
    lost = [r for r, i in made.items() if r not in tally.change_ids]
    twice_ids = sum(n - 1 for n in tally.deliveries.values() if n > 1)
    two_changes = sum(len(tally.change_ids[r]) - 1 for r in made if len(tally.change_ids.get(r, ())) > 1)
    misrouted = sum(1 for r, i in made.items() if tally.workspaces.get(r, {spaces[i]}) != {spaces[i]})
    flowing = [  # per org of the killed replica: the first of its Contacts written after the kill to arrive
        min((tally.arrived[r] for r, at in writer.made[i] if at > killed_at and r in tally.arrived), default=None)
        for i in killed
    ]
    worker = sampler.report().get("a", {}) if sampler is not None else {}
    out |= {
        "contacts_written": len(made),
        "written_before_kill": written_before_kill,
        "rounds": writer.rounds,
        "changes": sum(tally.deliveries.values()),
        "changes_of_written": sum(len(tally.change_ids.get(r, ())) for r in made),
        "lost": len(lost),
        "lost_in_orgs_of_killed": sum(1 for r in lost if made[r] in killed),
        "duplicated": twice_ids + two_changes,
        "duplicated_change_ids": twice_ids,
        "written_with_two_changes": two_changes,
        "misrouted": misrouted,
        "killed_orgs_flowing_again_s": (
            round(max(f for f in flowing if f is not None) - killed_at, 1)
            if flowing and all(f is not None for f in flowing)
            else None
        ),
        "survivor_rss_mb": worker.get("rss_peak_mb"),
        "survivor_rss_last_mb": worker.get("rss_last_mb"),
        "survivor_threads": worker.get("threads_peak"),
        "settle_s": settle_s,
    }
    log(
        f"handover: {out['changes']} changes, lost {out['lost']}, duplicated {out['duplicated']}, "
        f"takeover {out['takeover_s']}s, survivor RSS {out['survivor_rss_mb']} MB, {out['survivor_threads']} threads"
    )
    return out


# ---------------------------------------------------------------------- main
def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    shape = Shape(args.workspaces, args.large, args.large_share, args.events, args.events_per_member)
    run_tag = f"bench-ws-{uuid.uuid4().hex[:8]}-"  # every topic and group of the run starts so
    many_prefix, one_prefix, handover_prefix = f"{run_tag}many.", f"{run_tag}one.", f"{run_tag}handover."
    settings = load(PublisherSettings, "publisher")
    kafka = settings.kafka_client_config()
    source = SourceSettings()
    keys_secret = new_key("bench")
    keys = parse_keys(keys_secret)
    result: dict[str, Any] = {
        "bench": "workspaces",
        "shape": shape.describe(),
        "settings": {
            "processing_guarantee": os.environ.get(
                "SFSYNC_PROCESSOR_PROCESSING_GUARANTEE", ProcessorSettings.model_fields["processing_guarantee"].default
            ),
            "sink_batch_size": int(
                os.environ.get("SFSYNC_SINK_BATCH_SIZE", SinkSettings.model_fields["batch_size"].default)
            ),
            "source_max_idle_interval_s": source.max_idle_interval_s,
            "source_delete_log_interval_s": source.delete_log_interval_s,
            "source_concurrent_polls": source.concurrent_polls,
            "auth_flow": "client_credentials (sealed in the registry)",
            "handover_source": (
                {k.removeprefix("SFSYNC_SOURCE_").lower(): v for k, v in HANDOVER_SOURCE.items()}
                if args.handover
                else None
            ),
        },
        "load_average": {"start": load_average()},
    }
    log(f"shape: {json.dumps(shape.describe())}")
    events = skewed_events(shape)
    spaces = [f"bench-ws-{i:03d}" for i in range(shape.workspaces)]
    logs = {"emulator": (work / "emulator.log").open("wb")}
    emulator: subprocess.Popen[bytes] | None = None
    registry = SchemaRegistry.from_settings(settings, ride_out_outages=False)
    admin = httpx.Client(timeout=30)
    try:
        for prefix in (many_prefix, one_prefix, handover_prefix):
            ensure_topics(kafka, ALL_TOPICS, prefix)
        started = time.perf_counter()
        emulator, orgs = start_orgs(shape.workspaces + 1, work, logs["emulator"])
        log(f"{len(orgs)} emulated orgs up in {time.perf_counter() - started:.1f}s")
        one_org = orgs[-1]
        warm_up(admin, one_org)
        many = {w: (f"bench-org-{i:03d}", orgs[i]) for i, w in enumerate(spaces)}
        one = {"bench-one": ("bench-org-one", one_org)}
        started = time.perf_counter()
        register(kafka, registry, many_prefix, keys, many)
        register(kafka, registry, one_prefix, keys, one)
        if args.handover:
            register(kafka, registry, handover_prefix, keys, many)
        log(f"registry: {len(many) + len(one)} workspaces and connections in {time.perf_counter() - started:.1f}s")
        extra = registry_env(keys_secret)
        common = {"run_tag": run_tag, "kafka": kafka, "emulator_pid": emulator.pid, "admin": admin, "work": work}
        result["many"] = sync_phase(
            "many",
            prefix=many_prefix,
            env=worker_env(many_prefix, **extra),
            events=events,
            workspace=lambda i: spaces[i],
            orgs=orgs[: shape.workspaces],
            groups={"large": set(spaces[: shape.large]), "small": set(spaces[shape.large :])},
            org_of={w: i for i, w in enumerate(spaces)},
            **common,
        )
        result["one"] = sync_phase(
            "one",
            prefix=one_prefix,
            env=worker_env(one_prefix, **extra),
            events=events,
            workspace=lambda _: "bench-one",
            orgs=[one_org],
            groups={"one": {"bench-one"}},
            org_of={"bench-one": 0},
            **common,
        )
        m, o = result["many"], result["one"]
        cpu_many, cpu_one = sum(m["cpu_us_per_event"].values()), sum(o["cpu_us_per_event"].values())
        result["many_vs_one"] = {
            "cpu_us_per_event": {
                "many": round(cpu_many, 1),
                "one": round(cpu_one, 1),
                "ratio": ratio(cpu_many, cpu_one),
            },
            "events_per_s": ratio(m["events_per_s"], o["events_per_s"]),
            "steady_events_per_s": ratio(m["steady_events_per_s"], o["steady_events_per_s"]),
            "api_calls": ratio(sum(g["api_calls"] for g in m["api"].values()), o["api"]["one"]["api_calls"]),
            "rss_peak": {
                n: ratio(m["workers"][n]["rss_peak_mb"], o["workers"][n]["rss_peak_mb"])
                for n in ("processor", "sink")
                if n in m["workers"] and n in o["workers"]
            },
        }
        result["idle"] = idle_phase(
            {
                "many": (worker_env(many_prefix, **extra, SFSYNC_SOURCE_METRICS_PORT="0"), orgs[: shape.workspaces]),
                "one": (worker_env(one_prefix, **extra, SFSYNC_SOURCE_METRICS_PORT="0"), [one_org]),
            },
            admin=admin,
            work=work,
            warmup_s=args.idle_warmup_s,
            window_s=args.idle_s,
            max_idle_interval_s=source.max_idle_interval_s,
        )
        pollers = [result["idle"][n].get("worker") for n in ("many", "one")]
        extra_orgs = shape.workspaces - 1
        if all(pollers) and extra_orgs:
            result["idle_poller_per_extra_org"] = {
                "rss_mb": round((pollers[0]["rss_peak_mb"] - pollers[1]["rss_peak_mb"]) / extra_orgs, 2),
                "threads": round((pollers[0]["threads_peak"] - pollers[1]["threads_peak"]) / extra_orgs, 1),
            }
        if args.handover:
            result["handover"] = handover_phase(
                kafka=kafka,
                registry=registry,
                prefix=handover_prefix,
                env=worker_env(handover_prefix, **extra, SFSYNC_SOURCE_METRICS_PORT="0", **HANDOVER_SOURCE),
                orgs=orgs[: shape.workspaces],
                connections=[c for c, _ in many.values()],
                spaces=list(many),
                work=work,
                before_kill_s=args.handover_before_kill_s,
                after_takeover_s=args.handover_after_s,
                settle_s=args.handover_settle_s,
            )
        result["load_average"]["end"] = load_average()
        goal_idle = round(idle_goal_per_hour(source), 1)
        result["goals"] = {"idle_api_calls_per_org_per_hour": goal_idle, "worker_rss_peak_mb": GOAL_RSS_MB}
        if args.handover:
            result["goals"] |= {"handover_lost": 0, "handover_duplicated": 0}
        rss = [w["rss_peak_mb"] for phase in (m, o) for n, w in phase["workers"].items() if n != "emulator"]
        rss += [p["worker"]["rss_peak_mb"] for p in result["idle"].values() if p.get("worker")]
        result["meets_goals"] = all(
            p["api_calls_per_org_per_hour"] <= goal_idle for p in result["idle"].values()
        ) and all(r < GOAL_RSS_MB for r in rss)
        if args.handover:
            hand = result["handover"]
            result["meets_goals"] = result["meets_goals"] and hand["lost"] == 0 and hand["duplicated"] == 0
        return result
    finally:
        admin.close()
        if emulator is not None:
            stop_process_group(emulator.pid, 20)
        for log_file in logs.values():
            log_file.close()
        with contextlib.suppress(Exception):
            registry.close()
        with contextlib.suppress(Exception):  # cleanup only
            delete_topics(kafka, (run_tag,))  # the phases' topics and the processors' changelogs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=200, help="Workspaces, each on its own org.")
    parser.add_argument("--large", type=int, default=5, help="How many of them are large.")
    parser.add_argument("--large-share", type=float, default=0.6, help="The share of the events the large carry.")
    parser.add_argument("--events", type=int, default=20_000, help="Events in all (each phase).")
    parser.add_argument("--events-per-member", type=int, default=5, help="A workspace's events per member.")
    parser.add_argument("--idle-s", type=float, default=120.0, help="The idle pollers' counted window.")
    parser.add_argument("--idle-warmup-s", type=float, default=75.0, help="Idle time before the window.")
    parser.add_argument(
        "--no-handover", dest="handover", action="store_false", help="Skip the handover phase (two poller replicas)."
    )
    parser.add_argument(
        "--handover-before-kill-s", type=float, default=10.0, help="Handover: writing before a replica is killed."
    )
    parser.add_argument(
        "--handover-after-s", type=float, default=10.0, help="Handover: writing after the survivor polls every org."
    )
    parser.add_argument(
        "--handover-settle-s", type=float, default=15.0, help="Handover: reading on once every change arrived."
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="Copy the workers' logs to this folder.")
    args = parser.parse_args()
    if not 1 <= args.large <= args.workspaces or not 0 < args.large_share <= 1:
        parser.error("--large: 1..--workspaces; --large-share: (0, 1]")
    if args.events < args.workspaces:
        parser.error("--events: at least one per workspace")
    with tempfile.TemporaryDirectory(prefix="bench-workspaces-") as tmp:
        try:
            result = run(args, Path(tmp))
        finally:
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for path in Path(tmp).glob("*.log"):
                    (args.keep_logs / path.name).write_bytes(path.read_bytes())
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
