"""``sfsync demo`` (``make demo``): the whole pipeline on one machine, both ways, in figures.

What runs (everything it starts, it stops; a Kafka or registry that was already up stays up):

- Kafka + schema registry: :class:`sfsync.stack.Stack` (reused when ``KAFKA_BOOTSTRAP_SERVERS`` /
  ``SCHEMA_REGISTRY_URL`` are set or the local stack is already running);
- the emulated org, in a thread of this process (:func:`emulator.server.serve_in_thread`);
- four children, each in its own process group with its own ``/metrics`` port and log file: the
  outbound processor (``python -m processors.app``), the sink (``sfsync sink``), the poller
  (``sfsync poller``) and the inbound processor (``python -m processors.inbound_app``);
- here: a paced stream of synthetic community activity (:class:`producers.fake.CommunitySimulator`)
  with a few records that are bad on purpose (:func:`bad_records`), while "sales reps" edit
  Contacts and Campaigns through the emulator's admin API.

Every run uses a topic prefix of its own (``demo-<time>-<random>.``), so runs never mix. The
live view reads the components' ``/metrics``, the consumer groups' lag and the result topics;
the closing report reads ``sfsync.results``, ``product.members.inbound``, ``sfsync.dlq`` and
``sfsync.errors`` back from Kafka. The pure parts (bad records, edit schedule, percentiles, the
report's text) are tested without Kafka.
"""

from __future__ import annotations

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
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sfsync.errors import FatalError

if TYPE_CHECKING:
    from emulator.server import RunningEmulator
    from producers.events import ProductEvent
    from producers.fake import CommunitySimulator
    from producers.publisher import Publisher

ROOT = Path(__file__).resolve().parents[1]
REP_USER = "rep@acme.test"  # the sales rep of emulator/default_org.yaml
SYNCED_OBJECTS = ("Contact", "Campaign", "CampaignMember", "Case", "Community_Activity__c")
DEFAULT_METRICS_PORTS = {"processor": 9465, "sink": 9102, "poller": 9103, "inbound": 9466}
REP_TITLES = ("Head of Partnerships", "VP Customer Success", "Director of Community", "Solutions Architect")
REP_CITIES = ("Lisbon", "Toronto", "Melbourne", "Nairobi", "Osaka")
CAMPAIGN_STATUSES = ("In Progress", "Planned", "Completed")
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
    inbound_timeout_s: float = 30.0


def parse_pace(text: str) -> float | None:
    """``fast`` (None: no pacing) or events per second (> 0)."""
    if text.strip().lower() == "fast":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--pace: expected 'fast' or events per second, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"--pace: must be > 0, got {text!r}")
    return value


# ====================================================================== pure parts
@dataclass(frozen=True)
class BadRecord:
    """A record sent wrong on purpose, and why the pipeline must park it."""

    label: str
    why: str
    event: ProductEvent | None = None
    """A typed event (it fits its schema; Salesforce refuses it), or None for raw bytes."""
    topic: str = ""
    key: str = ""
    raw: bytes = b""

    @property
    def event_id(self) -> str | None:
        return self.event.event_id if self.event is not None else None


CONTACT_BAD = 0
"""Index of the record in :func:`bad_records` that needs a member whose Contact exists already."""


def bad_records(sim: CommunitySimulator, now: dt.datetime, member_id: str | None = None) -> list[BadRecord]:
    """Four records the default mapping and the default org refuse (the simulator must know members):

    ``member_id`` (default: the first member) gets a job title longer than Contact.Title (128); a
    forum post has a title longer than Case.Subject (255); another an author email that is not one
    (Case.SuppliedEmail); and one record is not Avro at all (a producer that bypassed the schema).

    The too-long title is only refused if it is the last value of the Contact in the sink's batch
    (writes to one record merge in order): the caller picks a member whose Contact exists and
    sends nothing more for them."""
    from producers import events as ev

    first = sim.members[member_id or sim.member_ids[0]].profile
    author = sim.members[sim.member_ids[min(1, len(sim.member_ids) - 1)]].ref()
    envelope: dict[str, Any] = {"workspace_id": sim.workspace_id, "occurred_at": now}

    def post(post_id: str, title: str, author: ev.MemberRef) -> ev.ForumPostCaseRequested:
        return ev.ForumPostCaseRequested(
            event_id=str(uuid.uuid4()),
            post=ev.ForumPost(
                id=post_id,
                title=title,
                body="Pasted from a chat export.",
                url=f"https://community.example.com/forum/{post_id}",
                status="New",
                priority="Medium",
                created_at=now,
                author=author,
            ),
            **envelope,
        )

    long_title = "Community Builder, " * 11  # 209 characters
    long_subject = "Help! " + "The export keeps failing and I have tried everything in the docs. " * 5
    return [
        BadRecord(
            "Contact Title too long",
            f"{first.member_id}'s job title has {len(long_title)} characters (Contact.Title holds 128)",
            ev.UserProfileUpdate(
                event_id=str(uuid.uuid4()),
                member=dataclasses.replace(first, title=long_title),
                changed_fields=["title"],
                **envelope,
            ),
        ),
        BadRecord(
            "Case Subject too long",
            f"forum post post-bad-1's title has {len(long_subject)} characters (Case.Subject holds 255)",
            post("post-bad-1", long_subject, author),
        ),
        BadRecord(
            "Case email invalid",
            "forum post post-bad-2's author email is 'jamie.at.example.com' (Case.SuppliedEmail wants an email)",
            post(
                "post-bad-2", "Where do I find the API keys?", dataclasses.replace(author, email="jamie.at.example.com")
            ),
        ),
        BadRecord(
            "not Avro",
            "a legacy producer wrote JSON to product.members (no schema id: it cannot be decoded)",
            topic="product.members",
            key="legacy-import-1",
            raw=b'{"member_id": "legacy-import-1", "email": "legacy@example.com"}',
        ),
    ]


def bad_positions(events: int, count: int) -> list[int]:
    """Where in the stream the bad records go: spread over its middle (members exist by then)."""
    return [max(10, events * (3 + 2 * i) // (2 * count + 4)) for i in range(count)]


def rep_edit_schedule(events: int) -> dict[int, str]:
    """Stream position -> the object a sales rep edits there: Contacts and a few Campaigns, spread
    from a quarter to nine tenths of the stream (by then sfsync has synced records to edit)."""
    contacts, campaigns = max(3, events // 200), max(2, events // 600)
    total = contacts + campaigns
    start, end = events // 4, events * 9 // 10
    positions = [start + (end - start) * i // (total - 1) for i in range(total)]
    campaign_slots = {round((j + 0.5) * total / campaigns) for j in range(campaigns)}
    return {position: "Campaign" if i in campaign_slots else "Contact" for i, position in enumerate(positions)}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(-(-q * len(ordered) // 1)), 1)  # ceil(q * n), at least 1
    return ordered[min(rank, len(ordered)) - 1]


Samples = list[tuple[str, dict[str, str], float]]
"""A parsed Prometheus exposition: (sample name, labels, value)."""


def parse_metrics(text: str) -> Samples:
    """The samples of a Prometheus text exposition (an empty or unreadable one has none)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [
            (s.name, dict(s.labels), float(s.value)) for f in text_string_to_metric_families(text) for s in f.samples
        ]
    except ValueError:
        return []


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the ``name`` samples whose labels include ``labels``."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def metric_by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The ``name`` samples summed by the value of ``label``."""
    out: dict[str, float] = {}
    for n, labels, value in samples:
        if n == name:
            out[labels.get(label, "")] = out.get(labels.get(label, ""), 0.0) + value
    return out


def errors_by(entries: Mapping[tuple[str, str, str], int], *, notices: bool, detail: bool = True) -> dict[str, int]:
    """Error-log entries counted by ``CATEGORY CODE`` (``detail``) or category: the errors and warnings,
    or (``notices``) the informational entries (a policy that skipped a field, a governor pause)."""
    out: Counter[str] = Counter()
    for (level, category, code), count in entries.items():
        if (level == "INFO") == notices:
            out[f"{category} {code}" if detail else category] += count
    return dict(out)


# ====================================================================== what the view and the report show
@dataclass
class Progress:
    """One refresh of the live view."""

    elapsed_s: float = 0.0
    produced: int = 0
    total: int = 0
    processed: int = 0
    planned: int = 0
    written: dict[str, int] = field(default_factory=dict)
    parked: int = 0
    api_calls: int = 0
    api_calls_sink: int = 0
    api_calls_poller: int = 0
    lag: dict[str, int | None] = field(default_factory=dict)
    changes_polled: int = 0
    inbound_out: int = 0
    rep_edits: dict[str, int] = field(default_factory=dict)
    rep_edits_back: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    phase: str = "starting"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def progress_line(p: Progress) -> str:
    """The compact one-line form (logs, CI, anything that is not a terminal)."""
    written = ", ".join(f"{k} {v:,}" for k, v in sorted(p.written.items())) or "-"
    lag = "/".join(_n(p.lag.get(k)) for k in ("processor", "sink", "inbound"))
    errors = sum(p.errors.values())
    return (
        f"[{p.elapsed_s:5.0f}s] {p.phase}: produced {p.produced:,}/{p.total:,} processed {p.processed:,} "
        f"written {sum(p.written.values()):,} ({written}) parked {p.parked} api {p.api_calls:,} "
        f"lag {lag} rep-edits {sum(p.rep_edits.values())} back {p.rep_edits_back} inbound {p.inbound_out} "
        f"errors {errors}"
    )


def progress_rows(p: Progress) -> list[tuple[str, str]]:
    """The live view's rows (label, text), for the rich table."""
    rate = p.produced / p.elapsed_s if p.elapsed_s > 0 else 0.0
    written = "  ".join(f"{k} {v:,}" for k, v in sorted(p.written.items())) or "-"
    errors = "  ".join(f"{k} {v}" for k, v in sorted(p.errors.items())) or "none"
    edits = "  ".join(f"{k} {v}" for k, v in sorted(p.rep_edits.items())) or "-"
    return [
        ("phase", f"{p.phase}  ({p.elapsed_s:.0f} s)"),
        ("product events", f"produced {p.produced:,} / {p.total:,} ({rate:,.0f}/s)   processed {p.processed:,}"),
        ("writes", f"planned {p.planned:,}   acknowledged {sum(p.written.values()):,}   parked (DLQ) {p.parked}"),
        ("written per object", written),
        ("Salesforce API calls", f"{p.api_calls:,}  (sink {p.api_calls_sink:,}, poller {p.api_calls_poller:,})"),
        (
            "consumer lag",
            f"processor {_n(p.lag.get('processor'))}   sink {_n(p.lag.get('sink'))}   "
            f"inbound {_n(p.lag.get('inbound'))}",
        ),
        ("sales-rep edits", f"{edits}   back in the product: {p.rep_edits_back}"),
        ("inbound", f"changes polled {p.changes_polled:,}   sent to the product {p.inbound_out:,}"),
        ("errors", errors),
    ]


@dataclass
class ParkedView:
    """One DLQ record as the report names it."""

    what: str
    code: str
    stage: str
    mapping: str | None
    field: str | None
    message: str
    bad_on_purpose: str | None = None


@dataclass
class DemoReport:
    """The closing report (also written as JSON with ``--json``)."""

    prefix: str
    events: int
    bad_sent: list[str]
    seconds_streaming: float
    seconds_total: float
    org_records: dict[str, int]
    written: dict[str, int]
    results: int
    api_calls_sink: int
    api_calls_poller: int
    api_calls_org: int
    outbound_latency_s: dict[str, float | None]
    rep_edits: dict[str, int]
    contact_edits_back: int
    inbound_records: int
    inbound_latency_s: dict[str, float | None]
    poller_latency_s: dict[str, float | None]
    campaign_edits_kept: int
    errors: dict[str, int]
    notices: dict[str, int]
    parked: list[ParkedView]
    metrics: dict[str, str]
    logs: str
    pids: list[int]
    drained: bool
    notes: list[str] = field(default_factory=list)

    @property
    def api_calls_per_record(self) -> float | None:
        return self.api_calls_sink / self.results if self.results else None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["api_calls_per_record"] = self.api_calls_per_record
        return out


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def render_report(r: DemoReport) -> list[str]:
    """The closing report, line by line."""
    lines = [
        "",
        f"sfsync demo: report  (topic prefix {r.prefix}; {r.events:,} events streamed in {r.seconds_streaming:.0f} s, "
        f"{r.seconds_total:.0f} s in all)",
        "",
        "Records in the org",
    ]
    width = max(len(k) for k in r.org_records) if r.org_records else 10
    lines += [f"  {name:<{width}}  {count:>7,}" for name, count in r.org_records.items()]
    lines += [
        "",
        "Outbound: product -> Salesforce",
        f"  writes acknowledged {r.results:,}  (" + ", ".join(f"{k} {v:,}" for k, v in sorted(r.written.items())) + ")",
    ]
    per = r.api_calls_per_record
    lines.append(
        f"  API calls by the sink {r.api_calls_sink:,}: {per:.3f} per synced record"
        if per is not None
        else f"  API calls by the sink {r.api_calls_sink:,}: no record synced"
    )
    lines.append(f"  API calls the org counted in all {r.api_calls_org:,} (the poller's {r.api_calls_poller:,})")
    lo = r.outbound_latency_s
    lines.append(
        f"  latency, event occurred_at -> Salesforce acknowledged: p50 {_seconds(lo['p50'])}  p99 {_seconds(lo['p99'])}"
    )
    li, lp = r.inbound_latency_s, r.poller_latency_s
    contacts, campaigns = r.rep_edits.get("Contact", 0), r.rep_edits.get("Campaign", 0)
    lines += [
        "",
        "Inbound: Salesforce -> product",
        f"  sales-rep edits: {contacts} Contacts, {campaigns} Campaigns",
        f"  Contact edits back on product.members.inbound: {r.contact_edits_back}/{contacts}"
        f"  ({r.inbound_records:,} inbound records in all)",
        f"  latency, rep's SystemModstamp -> product.members.inbound: p50 {_seconds(li['p50'])}  "
        f"p99 {_seconds(li['p99'])}"
        f"  (-> salesforce.changes: p50 {_seconds(lp['p50'])}  p99 {_seconds(lp['p99'])})",
        f"  Campaign edits: the default mapping reads no Campaign field back; the reps' Status and budget "
        f"survived every later product update on {r.campaign_edits_kept}/{campaigns}",
        "",
        "Errors by category (sfsync.errors)",
    ]
    lines += [f"  {name:<40} {count:>5}" for name, count in sorted(r.errors.items())] or ["  none"]
    if r.notices:
        lines.append("  and informational entries: " + ", ".join(f"{k} {v}" for k, v in sorted(r.notices.items())))
    on_purpose = sum(1 for p in r.parked if p.bad_on_purpose)
    lines += [
        "",
        f"Dead letter queue (sfsync.dlq): {len(r.parked)} record(s), "
        f"{on_purpose} of the {len(r.bad_sent)} bad on purpose",
    ]
    for i, p in enumerate(r.parked, 1):
        where = ".".join(x for x in (p.mapping, p.field) if x)
        lines.append(f"  {i}. {p.what}")
        lines.append(f"     {p.code} at {p.stage}{' (' + where + ')' if where else ''}: {p.message}")
        if p.bad_on_purpose:
            lines.append(f"     bad on purpose: {p.bad_on_purpose}")
    missing = [b for b in r.bad_sent if b not in {p.bad_on_purpose for p in r.parked}]
    if missing:
        lines.append(f"  NOT parked: {', '.join(missing)}")
    lines += ["", "Metrics (Prometheus)"]
    lines += [f"  {name:<10} {url}" for name, url in r.metrics.items()]
    lines += ["", f"Logs: {r.logs}"]
    lines += [f"Explore: SFSYNC_TOPIC_PREFIX={r.prefix} sfsync dlq list   (and sfsync errors tail)"]
    if not r.drained:
        lines.append("Note: the pipeline had not caught up when the report was taken (see the lag above).")
    lines += [f"Note: {n}" for n in r.notes]
    return lines


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
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:  # no Ctrl-C between the fork and remembering the child
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
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

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
    while any(c.proc is not None and c.proc.poll() is None for c in running):
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
    from emulator.server import free_port
    from sfsync.stack import port_in_use

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
            [python, "-m", "processors.app"],
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
            [python, "-m", "sfsync.cli", "sink"],
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
            [python, "-m", "sfsync.cli", "poller"],
            {
                **base,
                **salesforce,
                "SFSYNC_SOURCE_GROUP_ID": f"{run}.poller",
                "SFSYNC_SOURCE_TRANSACTIONAL_ID_PREFIX": f"{run}.poller",
                "SFSYNC_SOURCE_METRICS_PORT": str(ports["poller"]),
            },
            run_dir / "poller.log",
            ports["poller"],
        ),
    ]
    if has_inbound:  # processors/inbound_app.py: salesforce.changes -> product.members.inbound
        children.append(
            Child(
                "inbound",
                [python, "-m", "processors.inbound_app"],
                {
                    **base,
                    "SFSYNC_INBOUND_APP_ID": f"{run}.inbound",
                    "SFSYNC_INBOUND_METRICS_PORT": str(ports["inbound"]),
                },
                run_dir / "inbound.log",
                ports["inbound"],
            )
        )
    return children


def inbound_app_present() -> bool:
    """Whether the inbound processor exists in this checkout (the demo wires it when it does)."""
    import importlib.util

    return importlib.util.find_spec("processors.inbound_app") is not None


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


def _epoch_s(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value) / 1000.0
    return None


class Reader(threading.Thread):
    """Follows sfsync.results, product.members.inbound and salesforce.changes from their start."""

    def __init__(self, kafka_config: Mapping[str, Any], registry_url: str, prefix: str, observed: Observed) -> None:
        super().__init__(name="demo-reader", daemon=True)
        self.kafka_config = dict(kafka_config)
        self.registry_url = registry_url
        self.prefix = prefix
        self.observed = observed
        self.stopping = threading.Event()

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from sfsync.avro import AvroDecoder, SchemaRegistry
        from sfsync.topics import CHANGES, ERRORS, MEMBERS_INBOUND, RESULTS

        consumer = Consumer(
            {
                **self.kafka_config,
                "group.id": f"{self.prefix}demo-reader",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        topics = [spec.name(self.prefix) for spec in (RESULTS, MEMBERS_INBOUND, CHANGES, ERRORS)]
        try:
            meta = consumer.list_topics(timeout=10).topics
            consumer.assign(
                [
                    TopicPartition(topic, p, OFFSET_BEGINNING)
                    for topic in topics
                    for p in (meta[topic].partitions if topic in meta else {})
                ]
            )
            with SchemaRegistry(self.registry_url) as registry:
                decoder = AvroDecoder(registry)
                while not self.stopping.is_set():
                    for msg in consumer.consume(500, timeout=0.3):
                        data, topic = msg.value(), msg.topic()
                        if msg.error() is not None or data is None or topic is None:
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
                occurred, acked = _epoch_s(source.get("occurred_at")), _epoch_s(value.get("acknowledged_at"))
                if occurred is not None and acked is not None:
                    o.outbound_latency.append(acked - occurred)
            elif topic.endswith("product.members.inbound"):
                o.inbound.append((name, value, timestamp_ms))
            elif topic.endswith("sfsync.errors"):
                o.log_entries[(str(value.get("level")), str(value.get("category")), str(value.get("code")))] += 1
            elif value.get("sobject") in ("Contact", "Campaign"):
                o.changes.append((value, timestamp_ms))


class Sampler(threading.Thread):
    """Every second: the components' /metrics and the consumer groups' lag (blocking calls, off the main thread)."""

    def __init__(self, children: Sequence[Child], kafka_config: Mapping[str, Any], prefix: str) -> None:
        super().__init__(name="demo-sampler", daemon=True)
        self.children = list(children)
        self.kafka_config = dict(kafka_config)
        self.prefix = prefix
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.metrics: dict[str, Samples] = {}
        self.lag: dict[str, int | None] = {}

    def run(self) -> None:
        import httpx
        from confluent_kafka import Consumer

        from processors.metrics import LagProbe
        from sfsync.topics import CHANGES, PRODUCT_TOPICS, RESULTS, WRITES

        run = self.prefix.rstrip(".")
        groups = {
            "processor": (f"{run}.processor", [s.name(self.prefix) for s in PRODUCT_TOPICS]),
            "sink": (f"{run}.sink", [WRITES.name(self.prefix)]),
            "inbound": (f"{run}.inbound", [CHANGES.name(self.prefix), RESULTS.name(self.prefix)]),
        }
        names = {c.name for c in self.children}
        probes = {k: LagProbe(self.kafka_config, group) for k, (group, _) in groups.items() if k in names}
        meta_consumer = Consumer({**self.kafka_config, "group.id": f"{run}.demo-meta", "log_level": 0})
        try:
            meta = meta_consumer.list_topics(timeout=10).topics
            partitions = {
                k: [(t, p) for t in topics for p in (meta[t].partitions if t in meta else {})]
                for k, (_, topics) in groups.items()
            }
            with httpx.Client(timeout=2.0) as http:
                while not self.stopping.is_set():
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
                    self.stopping.wait(1.0)
        finally:
            meta_consumer.close()
            for probe in probes.values():
                probe.close()

    def snapshot(self) -> tuple[dict[str, Samples], dict[str, int | None]]:
        with self.lock:
            return dict(self.metrics), dict(self.lag)


# ====================================================================== the sales reps
@dataclass
class RepEdit:
    sobject: str
    record_id: str
    values: dict[str, Any]
    modstamp: float
    """SystemModstamp of the edit (epoch seconds)."""


class SalesReps:
    """Edits Contacts and Campaigns as the org's sales rep, through the emulator's admin API."""

    def __init__(self, org: RunningEmulator, seed: int) -> None:
        import random

        import httpx

        self.org = org
        self.http = httpx.Client(base_url=org.base_url, timeout=10.0)
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self.edits: list[RepEdit] = []
        self.skip_members: set[str] = set()

    def edit(self, sobject: str) -> RepEdit | None:
        """One edit of a record sfsync synced (None when there is none of that object yet)."""
        edited = {e.record_id for e in self.edits}
        rows = [
            r
            for r in self.org.emulator.store.rows(sobject)
            if r["Id"] not in edited and (sobject != "Contact" or r.get("Member_Id__c") not in self.skip_members)
        ]
        if sobject == "Contact":
            rows = [r for r in rows if r.get("Member_Id__c")]
        if not rows:
            return None
        row = self.rng.choice(rows)
        values: dict[str, Any]
        if sobject == "Contact":
            values = {"Title": self.rng.choice(REP_TITLES), "MailingCity": self.rng.choice(REP_CITIES)}
        else:
            values = {
                "Status": self.rng.choice(CAMPAIGN_STATUSES),
                "BudgetedCost": float(self.rng.randint(5, 50) * 100),
            }
        answer = self.http.post(
            "/__admin/edit", json={"user": REP_USER, "sobject": sobject, "id": row["Id"], "values": values}
        )
        answer.raise_for_status()
        stamp = answer.json().get("SystemModstamp")
        modstamp = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else time.time()
        made = RepEdit(sobject, str(row["Id"]), values, modstamp)
        self.edits.append(made)
        return made

    def close(self) -> None:
        self.http.close()


def contact_edits_back(
    edits: Sequence[RepEdit], inbound: Sequence[tuple[str, dict[str, Any], int]]
) -> dict[str, float]:
    """Contact edit id -> seconds from its SystemModstamp to the first inbound update that carries it."""
    back: dict[str, float] = {}
    for edit in edits:
        if edit.sobject != "Contact":
            continue
        for name, value, timestamp_ms in inbound:
            if name != "MemberFieldUpdate" or value.get("salesforce_id") != edit.record_id:
                continue
            fields = value.get("salesforce_fields") or {}
            if any(fields.get(k) == v for k, v in edit.values.items()):
                back[edit.record_id] = timestamp_ms / 1000.0 - edit.modstamp
                break
    return back


def poller_latency(edits: Sequence[RepEdit], changes: Sequence[tuple[dict[str, Any], int]]) -> list[float]:
    """Seconds from each Contact edit's SystemModstamp to the first change of that record at or after it."""
    out = []
    for edit in edits:
        for value, timestamp_ms in changes:
            stamp = _epoch_s(value.get("system_modstamp"))
            if value.get("id") == edit.record_id and stamp is not None and stamp >= edit.modstamp - 0.001:
                out.append(timestamp_ms / 1000.0 - edit.modstamp)
                break
    return out


class Actors:
    """The product's misbehaving producers and the sales reps: what is due, done as soon as it can be.

    A bad record or an edit falls due at a point of the stream; it happens once there is something
    to act on (a synced Contact, a Campaign in the org), tried at most twice a second."""

    def __init__(
        self, sim: CommunitySimulator, publisher: Publisher, raw_producer: Any, prefix: str, reps: SalesReps
    ) -> None:
        self.sim = sim
        self.publisher = publisher
        self.raw_producer = raw_producer
        self.prefix = prefix
        self.reps = reps
        self.pending_bad: list[int] = []
        self.pending_edits: list[str] = []
        self.bad_sent: list[BadRecord] = []
        self._next_try = 0.0

    @property
    def idle(self) -> bool:
        return not self.pending_bad and not self.pending_edits

    def act(self) -> None:
        now = time.monotonic()
        if now < self._next_try or self.idle:
            return
        self._next_try = now + 0.5
        for index in list(self.pending_bad):
            member_id = self._synced_member() if index == CONTACT_BAD else None
            if index == CONTACT_BAD and member_id is None:
                continue
            bad = bad_records(self.sim, dt.datetime.now(dt.UTC), member_id)[index]
            if bad.event is not None:
                self.publisher.publish(bad.event)
            else:
                self.raw_producer.produce(self.prefix + bad.topic, bad.raw, bad.key)
                self.raw_producer.poll(0)
            if member_id is not None:  # nothing more for this member: no later value merges over the bad one
                self.sim.member_ids.remove(member_id)
                self.sim.members.pop(member_id, None)
                self.reps.skip_members.add(member_id)
            self.bad_sent.append(bad)
            self.pending_bad.remove(index)
        for sobject in list(self.pending_edits):
            if self.reps.edit(sobject) is not None:
                self.pending_edits.remove(sobject)

    def _synced_member(self) -> str | None:
        """A member the simulator knows whose Contact is in the org (and no rep edited)."""
        edited = {e.record_id for e in self.reps.edits}
        for row in self.reps.org.emulator.store.rows("Contact"):
            member_id = row.get("Member_Id__c")
            if member_id in self.sim.members and row["Id"] not in edited and len(self.sim.member_ids) > 5:
                return str(member_id)
        return None


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
            try:
                from rich.live import Live
            except ImportError:  # pragma: no cover - rich comes with typer
                self.interactive = False
            else:
                self._live = Live(refresh_per_second=2, transient=False)
                self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def show(self, p: Progress, force: bool = False) -> None:
        if self._live is not None:
            from rich.table import Table

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
    threads: list[Reader | Sampler] = field(default_factory=list)
    reps: SalesReps | None = None


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(options: DemoOptions, echo: Callable[[str], None] = print) -> int:
    """Run the demo; the exit status (0: both directions worked and every bad record was parked; 130: Ctrl-C)."""
    state = _Run(options, echo)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    code = 1
    try:
        report = _run(state)
        code = 0 if _healthy(report) else 1
        if options.keep_running:
            echo(
                "\nEverything keeps running (emulated org at " + (state.org.base_url if state.org else "-") + "). "
                "Ctrl-C stops it."
            )
            while True:
                for child in state.children:
                    if child.exited() is not None:
                        raise FatalError(f"the {child.name} stopped (status {child.exited()}):\n{child.tail()}")
                time.sleep(0.5)
    except KeyboardInterrupt:
        code = 130
        echo("\ninterrupted: stopping what the demo started...")
    finally:
        _cleanup(state)
        signal.signal(signal.SIGTERM, previous)
    return code


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
            from sfsync.settings import StackSettings, load
            from sfsync.stack import Stack

            state.echo(f"stopping {', '.join(state.stack_started)} (started by the demo)...")
            Stack(load(StackSettings, "stack")).down(
                only=state.stack_started, timeout_s=5 if state.hurry.is_set() else 30
            )
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _new_prefix() -> str:
    return f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}."


def _run(state: _Run) -> DemoReport:
    from producers.fake import CommunitySimulator
    from producers.publisher import Publisher
    from sfsync.settings import PublisherSettings, StackSettings, load
    from sfsync.stack import Stack
    from sfsync.topics import ALL_TOPICS, ensure_topics

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
    from emulator.server import serve_in_thread

    state.org = serve_in_thread(log_level="error")
    run_dir = (stack_settings.home.expanduser() / "demo" / prefix.rstrip(".")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    has_inbound = inbound_app_present()
    state.children = build_children(run_dir, prefix, up.kafka, up.registry, state.org, has_inbound)
    echo(f"topic prefix {prefix}  emulated org {state.org.base_url}  logs {run_dir}")
    echo("starting " + ", ".join(c.name for c in state.children) + "...")
    for child in state.children:
        child.start(run_dir)
    notes: list[str] = []
    if not has_inbound:
        notes.append("processors/inbound_app.py is missing: no inbound processor ran (hook: build_children)")
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
    from confluent_kafka import Producer

    raw_producer = Producer({**kafka_config, "log_level": 0})
    with View(interactive, echo) as view, Publisher(publisher_settings) as publisher:
        actors = Actors(sim, publisher, raw_producer, prefix, reps)
        progress.phase = "streaming"
        produced = 0
        for i, event in enumerate(sim.stream(options.events)):
            _check_children(state.children)
            publisher.publish(dataclasses.replace(event, occurred_at=dt.datetime.now(dt.UTC)))
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
        streamed_s = time.monotonic() - stream_started

        # ------------------------------------------------------------ drain
        progress.phase = "catching up"
        drained = _drain(state, progress, observed, sampler, stream_started, view, actors)
        publisher.flush()
        progress.produced = produced + len(actors.bad_sent)
        progress.phase = "done" if drained else "stopped waiting"
        _refresh(progress, state, observed, sampler, stream_started, view, force=True)
        bad_sent = actors.bad_sent
    raw_producer.flush(5)

    report = _report(
        state, prefix, bad_sent, observed, sampler, streamed_s, drained, run_dir, notes, kafka_config, up.registry
    )
    for line in render_report(report):
        echo(line)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    return report


def _wait_ready(children: Sequence[Child], timeout_s: float = 90.0) -> None:
    """Until every child serves /metrics (it has read its settings and connected), or one stopped."""
    import httpx

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
        actors.act()
        _refresh(p, state, observed, sampler, started, view)
        with observed.lock:
            quiet_s = time.monotonic() - observed.last_result_at if observed.last_result_at else 0.0
        outbound = actors.idle and p.lag.get("processor") == 0 and p.lag.get("sink") == 0 and quiet_s >= 2.0
        edits = actors.reps.edits
        contact_edits = sum(1 for e in edits if e.sobject == "Contact")
        since_last_edit = time.time() - max((e.modstamp for e in edits), default=0.0)
        inbound = not has_inbound or p.rep_edits_back >= contact_edits or since_last_edit > options.inbound_timeout_s
        if outbound and inbound:
            return True
        time.sleep(0.25)
    return False


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
    from sfsync.avro import AvroDecoder, SchemaRegistry
    from sinks.dlq import DeadLetterQueue

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
        notes=notes,
    )
