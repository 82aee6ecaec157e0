"""The demo's figures, as pure functions: metrics parsing, percentiles, matching the reps' edits to
what came back, the live view's text and the closing report (:class:`DemoReport`, :func:`render_report`).

Used by :mod:`sfsync.devtools.demo`; tested without Kafka.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sfsync.devtools.demo_scenario import RepEdit

Samples = list[tuple[str, dict[str, str], float]]
"""A parsed Prometheus exposition: (sample name, labels, value)."""


def parse_metrics(text: str) -> Samples:
    """The samples of a Prometheus text exposition (an empty or unreadable one has none)."""
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


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(-(-q * len(ordered) // 1)), 1)  # ceil(q * n), at least 1
    return ordered[min(rank, len(ordered)) - 1]


def epoch_s(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value) / 1000.0
    return None


def errors_by(entries: Mapping[tuple[str, str, str], int], *, notices: bool, detail: bool = True) -> dict[str, int]:
    """Error-log entries counted by ``CATEGORY CODE`` (``detail``) or category: the errors and warnings,
    or (``notices``) the informational entries (a policy that skipped a field, a governor pause)."""
    out: Counter[str] = Counter()
    for (level, category, code), count in entries.items():
        if (level == "INFO") == notices:
            out[f"{category} {code}" if detail else category] += count
    return dict(out)


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


def inbound_kinds(
    inbound: Sequence[tuple[str, dict[str, Any], int]], rep_users: set[str], sfsync_user: str | None
) -> dict[str, int]:
    """Inbound records by type; a MemberFieldUpdate by who changed the record: the sales reps, sfsync's
    own user (an echo of sfsync's write that was not suppressed), or anyone else."""
    kinds: Counter[str] = Counter()
    for name, value, _ in inbound:
        if name == "MemberFieldUpdate":
            user = value.get("last_modified_by_id")
            who = "the sales reps" if user in rep_users else "sfsync (echo)" if user == sfsync_user else "other users"
            kinds[f"{name} by {who}"] += 1
        else:
            kinds[name] += 1
    return dict(kinds)


def poller_latency(edits: Sequence[RepEdit], changes: Sequence[tuple[dict[str, Any], int]]) -> list[float]:
    """Seconds from each Contact edit's SystemModstamp to the first change of that record at or after it."""
    out = []
    for edit in edits:
        for value, timestamp_ms in changes:
            stamp = epoch_s(value.get("system_modstamp"))
            if value.get("id") == edit.record_id and stamp is not None and stamp >= edit.modstamp - 0.001:
                out.append(timestamp_ms / 1000.0 - edit.modstamp)
                break
    return out


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
    streamed_s: float | None = None
    """How long streaming took, once it is over."""


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
    seconds = p.streamed_s if p.streamed_s is not None else p.elapsed_s
    rate = p.produced / seconds if seconds > 0 else 0.0
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
    inbound_by_kind: dict[str, int]
    """Records on product.members.inbound by type; field updates split by who made the change."""
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
    edits: list[dict[str, Any]] = field(default_factory=list)
    """Each sales-rep edit: object, Id, values, seconds until it was back in the product (None: not back)."""
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
        f"  Contact edits back on product.members.inbound: {r.contact_edits_back}/{contacts}",
        f"  product.members.inbound: {r.inbound_records:,} records ("
        + ", ".join(f"{k} {v:,}" for k, v in sorted(r.inbound_by_kind.items()))
        + ")",
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
