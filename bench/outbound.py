"""Outbound sync cost and speed: API calls per synced record, events/s and latency, vs a per-event baseline.

Our side is the real pipeline: member events published with :class:`sfsync.producers.publisher.Publisher`
(Avro, real Kafka + registry) -> the Faust processor (``python -m sfsync.processors.outbound.app``, its own process)
-> the sink (:func:`sfsync.sinks.main.build_runner`, in this process; default settings unless
``SFSYNC_SINK_*`` says otherwise) -> the emulated org (``sfsync emulator``, its own process, so the
load generator does not share its GIL). Mapping: the shipped default (members -> Contact matched by
Email, plus one Community_Activity__c per event).

1. Warm-up: ``--members`` UserCreated events; waits until every one is written (Contacts created,
   the sink's identity cache and the processor's tables warm).
2. Measured phase (steady state): ``--events`` UserProfileUpdate events (title, company and/or last
   login changed) of random existing members, published as fast as the publisher goes (a burst: the
   latencies include the queueing behind the slowest stage), each with ``occurred_at`` = the wall
   clock when it is published.

Figures of the measured phase only:

- ``api_calls``: the emulator's own count of API requests (``/__admin/stats``: every REST call,
  queries and sObject Collections, OAuth excluded) between the end of the warm-up and the last
  acknowledgement. Nothing else calls the emulator meanwhile. Split per object (``by_object``) from
  the sink's own HTTP observer (query ``FROM`` object, collection record type); the split must add
  up to the emulator's count.
- ``synced_records``: record operations Salesforce acknowledged as successful (one per WriteResult
  the sink published): Contact updates + Community_Activity__c upserts. Several events of one member
  in one batch merge into one Contact update, which counts once. ``acknowledged_writes`` counts the
  ``sfsync.writes`` records acknowledged instead (merged ones each count: one Contact write and one
  activity write per event, as the baseline's one update per event).
- ``api_calls_per_record`` = api_calls / synced_records (the goal); ``member_calls_per_record``: the
  members mapping alone (Contact queries and updates / Contact record operations), the Email-matching
  figure; ``api_calls_per_write`` and ``member_calls_per_write``: the same per acknowledged write.
  With batches full (``sink_batch_size`` writes: ~200 Contacts + ~200 activities), a batch costs one
  Contact query, one Contact update collection and one or two activity upsert collections (an
  activity whose Contact is updated in the same batch waits for it, in a second round).
- latency: per event, from ``occurred_at`` (publish) to the end of the sink's ``put`` that acknowledged
  the last of its writes (Contact and activity), taken from the sink's batch callback
  (``after_batch``: every write of the batch not left pending is acknowledged by Salesforce or
  parked); exact percentiles, not the metrics histogram. ``events_per_s``: events / (last
  acknowledgement - first publish).

The baseline, in this process against the same emulator, gets the same events offered at the same
moments (relative to its start) as they were published: per event one SOQL lookup by Email, then
an sObject REST update (or create when nothing matched), ``--baseline-concurrency`` events in flight
(per-event integrations such as Zapier-style zaps). It writes the Contact only (no activity record).

Prints one JSON line. Goal (``meets_goals``): api_calls_per_record <= 0.011 over the whole default
mapping; ``member_mapping_meets_goal`` tells the same of member_calls_per_record. The latter is
stricter than it looks: with ``--members`` 2000 and ~200 events per batch, 5-10 % of the events
merge with another event of the same member in the same batch, and the merged update counts once.

    python bench/outbound.py [--members 2000] [--events 3000] [--baseline-concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[1]
# This file's folder holds bench/emulator.py, named like the package: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from sfsync.devtools.stack import stop_process_group, wait_http  # noqa: E402
from sfsync.emulator.server import free_port  # noqa: E402
from sfsync.errors import ServiceUnavailableError  # noqa: E402
from sfsync.kafka.admin import delete_topics, ensure_topics  # noqa: E402
from sfsync.mapping import load_mappings  # noqa: E402
from sfsync.producers import events as ev  # noqa: E402
from sfsync.producers.fake import CommunitySimulator  # noqa: E402
from sfsync.producers.publisher import Publisher  # noqa: E402
from sfsync.salesforce import SalesforceSettings  # noqa: E402
from sfsync.salesforce.governor import load_governor_settings  # noqa: E402
from sfsync.settings import PublisherSettings, load  # noqa: E402
from sfsync.sinks.contract import BatchOutcome, IncomingWrite  # noqa: E402
from sfsync.sinks.main import SinkRunner, build_runner  # noqa: E402
from sfsync.sinks.metrics import SinkMetrics  # noqa: E402
from sfsync.sinks.settings import load_sink_settings  # noqa: E402
from sfsync.topics import ALL_TOPICS  # noqa: E402

API = "/services/data/v62.0"
GOAL = 0.011
MEMBER_TYPES = {"GUEST": "Guest", "STANDARD": "Standard", "LIMITED_APPROVAL": "Limited Approval"}
APPROVAL = {"APPROVED": "approved", "PENDING": "pending", "UNAPPROVED": "unapproved"}


# ---------------------------------------------------------------------- processes
def start_emulator(port: int, log: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfsync.cli.main", "emulator", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/services/data/", 30, what="the emulator")
    except ServiceUnavailableError as exc:
        stop_process_group(proc.pid, 10)
        raise SystemExit(str(exc)) from None
    return proc


def start_processor(
    prefix: str, app_id: str, workdir: Path, log: Any, max_seconds: float = 900
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SFSYNC_TOPIC_PREFIX": prefix,
        "SFSYNC_PROCESSOR_APP_ID": app_id,
        "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
        "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": "0.5",
        "SFSYNC_PROCESSOR_METRICS_PORT": "0",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfsync.processors.outbound.app",
            str(max_seconds),
        ],  # stops by itself should this process die
        cwd=workdir,  # Faust's table data directory lands here
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


# ---------------------------------------------------------------------- events
def make_events(members: int, count: int, seed: int = 42) -> tuple[list[ev.UserCreated], list[ev.UserProfileUpdate]]:
    """``members`` sign-ups, then ``count`` profile updates of random existing members."""
    sim = CommunitySimulator(seed=seed)
    created = [sim.new_member() for _ in range(members)]
    rng = random.Random(seed)
    profiles = [c.member for c in created]
    updates = []
    for i in range(count):
        n = rng.randrange(members)
        p = profiles[n]
        changed = rng.sample(["company", "last_login_at", "title"], k=rng.randint(1, 2))
        if "title" in changed:
            p = dataclasses.replace(p, title=f"{rng.choice(sim.titles)}"[:80])
        if "company" in changed:
            p = dataclasses.replace(p, company=rng.choice(sim.companies))
        if "last_login_at" in changed:
            p = dataclasses.replace(p, last_login_at=sim.clock + dt.timedelta(seconds=i))
        profiles[n] = p
        updates.append(ev.UserProfileUpdate(workspace_id=sim.workspace_id, member=p, changed_fields=sorted(changed)))
    return created, updates


def writes_per_event(event_types: set[str]) -> dict[str, int]:
    """How many writes the default mapping plans for each event type (enabled mappings that take it)."""
    mappings = load_mappings(None).mappings
    return {t: sum(1 for m in mappings if m.enabled and m.action_for(t) != "ignore") for t in event_types}


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------------- our side
class Tracker:
    """What the sink acknowledged: per event, acknowledged writes and the time of the last one."""

    def __init__(self) -> None:
        self.acks: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()  # sobject -> writes acknowledged (merged ones each count)
        self.acked_at: dict[str, float] = {}
        self.results: Counter[tuple[str, str]] = Counter()  # (sobject, created|updated)
        self.parked = 0
        self.calls: Counter[str] = Counter()  # sobject -> API calls (the sink's HTTP observer)

    def after_batch(self, writes: Sequence[IncomingWrite], outcome: BatchOutcome) -> None:
        at = time.time()
        pending = {id(w) for w in outcome.pending}
        for w in writes:
            if not w.write or id(w) in pending:
                continue
            event_id = str((w.write.get("source") or {}).get("event_id"))
            self.acks[event_id] += 1
            self.writes[str(w.write.get("sobject"))] += 1
            self.acked_at[event_id] = at
        for result in outcome.results:
            self.results[(str(result["sobject"]), "created" if result.get("created") else "updated")] += 1
        self.parked += len(outcome.parked)

    def observe(self, response: httpx.Response) -> None:
        request = response.request
        path = request.url.path
        if not path.startswith("/services/"):
            return
        obj = "?"
        if "/query" in path:
            found = re.search(r"\bFROM\s+(\w+)", (parse_qs(request.url.query.decode()).get("q") or [""])[0], re.I)
            obj = found.group(1) if found else "?"
        elif "/composite/sobjects/" in path:
            obj = path.split("/composite/sobjects/", 1)[1].split("/")[0]
        else:
            found = re.search(rb'"type"\s*:\s*"(\w+)"', request.content or b"")
            obj = found.group(1).decode() if found else path.rsplit("/", 1)[-1]
        self.calls[obj] += 1


def wire_tracker(runner: SinkRunner, tracker: Tracker) -> None:
    after_batch, on_response = runner.after_batch, runner.on_response

    def tracked_after_batch(writes: Sequence[IncomingWrite], outcome: BatchOutcome) -> None:
        tracker.after_batch(writes, outcome)
        after_batch(writes, outcome)

    async def tracked_on_response(response: httpx.Response) -> None:
        tracker.observe(response)
        await on_response(response)

    runner.after_batch = tracked_after_batch  # type: ignore[method-assign]
    runner.on_response = tracked_on_response  # type: ignore[method-assign]


async def wait_acked(
    tracker: Tracker, expected: dict[str, int], procs: Sequence[subprocess.Popen[bytes]], timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while any(tracker.acks[e] < n for e, n in expected.items()):
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{what}: a subprocess exited ({proc.args})")
        if time.monotonic() > deadline:
            missing = sum(1 for e, n in expected.items() if tracker.acks[e] < n)
            raise SystemExit(f"{what}: {missing} of {len(expected)} events not acknowledged in {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


async def publish(publisher: Publisher, events: Sequence[Any]) -> list[tuple[float, Any]]:
    """Publish ``events`` with occurred_at = now; (wall-clock publish time, event) in order."""
    out = []
    for i, event in enumerate(events):
        t = time.time()
        stamped = dataclasses.replace(event, occurred_at=now_utc())
        publisher.publish(stamped)
        out.append((t, stamped))
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the sink's loop breathe
    publisher.flush()
    return out


async def stats(admin: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await admin.get("/__admin/stats")).json())


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def ours(
    base: str, token: str, prefix: str, members: Sequence[Any], updates: Sequence[Any], procs: list[Any], work: Path
) -> tuple[dict[str, Any], list[float]]:
    per_type = writes_per_event({"UserCreated", "UserProfileUpdate"})
    sink_settings = load_sink_settings(group_id=f"bench-sink-{uuid.uuid4().hex[:8]}", metrics_port=0)
    sf_settings = SalesforceSettings(instance_url=base, auth_flow="access_token", access_token=SecretStr(token))
    runner = build_runner(
        sink_settings, sf_settings, governor_settings=load_governor_settings(), metrics=SinkMetrics(CollectorRegistry())
    )
    tracker = Tracker()
    wire_tracker(runner, tracker)
    task = asyncio.create_task(runner.run(signals=False))
    publisher = Publisher(load(PublisherSettings, "publisher"))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as admin:
            warm = await publish(publisher, members)
            await wait_acked(tracker, {e.event_id: per_type["UserCreated"] for _, e in warm}, procs, 150, "warm-up")
            await asyncio.sleep(1.5)  # the processor's identity table reads the new identities meanwhile
            before, calls_before = await stats(admin), Counter(tracker.calls)
            results_before, writes_before, parked_before = (
                Counter(tracker.results),
                Counter(tracker.writes),
                tracker.parked,
            )
            published = await publish(publisher, updates)
            expected = {e.event_id: per_type["UserProfileUpdate"] for _, e in published}
            await wait_acked(tracker, expected, procs, 300, "measured phase")
            after = await stats(admin)
    finally:
        publisher.close()
        runner.stop()
        await asyncio.wait_for(task, 30)
    first = published[0][0]
    last = max(tracker.acked_at[e.event_id] for _, e in published)
    latencies = [tracker.acked_at[e.event_id] - t for t, e in published]
    results = tracker.results - results_before
    writes = tracker.writes - writes_before
    calls = tracker.calls - calls_before
    api_calls = after["api_calls"] - before["api_calls"]
    records = sum(results.values())
    contact_records = results[("Contact", "updated")] + results[("Contact", "created")]
    if sum(calls.values()) != api_calls:
        raise SystemExit(f"the sink saw {sum(calls.values())} API calls, the emulator counted {api_calls}")
    return {
        "api_calls": api_calls,
        "by_object": dict(calls),
        "synced_records": records,
        "records": {f"{o}.{k}": n for (o, k), n in sorted(results.items())},
        "parked": tracker.parked - parked_before,
        "api_calls_per_record": round(api_calls / records, 5),
        "api_calls_per_event": round(api_calls / len(updates), 5),
        "member_calls_per_record": round(calls["Contact"] / contact_records, 5),
        "acknowledged_writes": sum(writes.values()),
        "api_calls_per_write": round(api_calls / sum(writes.values()), 5),
        "member_calls_per_write": round(calls["Contact"] / writes["Contact"], 5),
        "events_per_s": round(len(updates) / (last - first), 1),
        "latency_p50_s": round(percentile(latencies, 0.5), 3),
        "latency_p99_s": round(percentile(latencies, 0.99), 3),
        "sink_batch_size": sink_settings.batch_size,
        "sink_batch_linger_s": sink_settings.batch_linger_s,
    }, [t - first for t, _ in published]


# ---------------------------------------------------------------------- the baseline
def contact_fields(member: ev.MemberProfile) -> dict[str, Any]:
    """The Contact fields a per-event integration would map from a profile update."""

    def ts(value: Any) -> str | None:
        return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    loc = member.location
    return {
        "FirstName": member.first_name,
        "LastName": member.last_name or "[not provided]",
        "Email": member.email,
        "Title": member.title,
        "Member_Id__c": member.member_id,
        "MailingCountry": loc.country,
        "MailingState": loc.state,
        "MailingCity": loc.city,
        "Member_Type__c": MEMBER_TYPES[str(member.member_type)],
        "Approval_Status__c": APPROVAL[str(member.approval_status)],
        "Spaces__c": ";".join(member.spaces) or None,
        "Clubs__c": ";".join(member.clubs) or None,
        "Joined_At__c": ts(member.joined_at),
        "Last_Login_At__c": ts(member.last_login_at),
        "Sign_Up_At__c": ts(member.signed_up_at),
    }


async def baseline(base: str, token: str, updates: Sequence[Any], offsets: Sequence[float], concurrency: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}", "Sforce-Call-Options": "client=baseline"}
    queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
    latencies: list[float] = []
    written = Counter[str]()
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as admin,
        httpx.AsyncClient(base_url=base, timeout=30, limits=limits, headers=headers) as client,
    ):
        before = await stats(admin)
        start = time.time()
        for offset, event in zip(offsets, updates, strict=True):
            queue.put_nowait((start + offset, event))

        async def worker() -> None:
            while not queue.empty():
                offered, event = queue.get_nowait()
                delay = offered - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                member = event.member
                email = member.email.replace("\\", "\\\\").replace("'", "\\'")
                found = await client.get(
                    f"{API}/query", params={"q": f"SELECT Id FROM Contact WHERE Email = '{email}'"}
                )
                found.raise_for_status()
                rows = found.json()["records"]
                if rows:
                    response = await client.patch(
                        f"{API}/sobjects/Contact/{rows[0]['Id']}", json=contact_fields(member)
                    )
                    written["updated"] += 1
                else:
                    response = await client.post(f"{API}/sobjects/Contact", json=contact_fields(member))
                    written["created"] += 1
                response.raise_for_status()
                latencies.append(time.time() - offered)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.time() - start
        after = await stats(admin)
    api_calls = after["api_calls"] - before["api_calls"]
    records = sum(written.values())
    return {
        "api_calls": api_calls,
        "synced_records": records,
        "records": {f"Contact.{k}": n for k, n in sorted(written.items())},
        "api_calls_per_record": round(api_calls / records, 5),
        "api_calls_per_event": round(api_calls / len(updates), 5),
        "events_per_s": round(len(updates) / elapsed, 1),
        "latency_p50_s": round(percentile(latencies, 0.5), 3),
        "latency_p99_s": round(percentile(latencies, 0.99), 3),
        "concurrency": concurrency,
    }


# ---------------------------------------------------------------------- main
async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    prefix = f"bench-outbound-{uuid.uuid4().hex[:8]}."
    app_id = f"bench-proc-{uuid.uuid4().hex[:8]}"
    os.environ["SFSYNC_TOPIC_PREFIX"] = prefix  # the publisher and the sink read it, the processor inherits it
    publisher_settings = load(PublisherSettings, "publisher")
    ensure_topics(publisher_settings.kafka_client_config(), ALL_TOPICS, prefix)
    members, updates = make_events(args.members, args.events)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (work / "emulator.log").open("wb") as emu_log, (work / "processor.log").open("wb") as proc_log:
        emulator = start_emulator(port, emu_log)
        processor = None
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as admin:
                token = (await admin.post("/__admin/session", json={})).json()["access_token"]
                await admin.post("/__admin/limits", json={"daily_api_limit": 10_000_000})
            processor = start_processor(prefix, app_id, work, proc_log)
            pipeline, offsets = await ours(base, token, prefix, members, updates, [emulator, processor], work)
            stop_process_group(processor.pid, 20)
            base_figures = await baseline(base, token, updates, offsets, args.baseline_concurrency)
        except BaseException:
            tail = (work / "processor.log").read_text(errors="replace")[-2000:]
            print(f"processor log (tail):\n{tail}", file=sys.stderr)
            raise
        finally:
            if processor is not None:
                stop_process_group(processor.pid, 20)
            stop_process_group(emulator.pid, 20)
            with contextlib.suppress(Exception):  # cleanup only
                delete_topics(publisher_settings.kafka_client_config(), (prefix, app_id))
    meets = pipeline["api_calls_per_record"] <= GOAL
    return {
        "bench": "outbound",
        "members": args.members,
        "events": args.events,
        "mapping": "default (members -> Contact by Email, + Community_Activity__c per event)",
        "sfsync": pipeline,
        "per_event_baseline": base_figures,
        "calls_per_record_ratio": round(base_figures["api_calls_per_record"] / pipeline["api_calls_per_record"], 1),
        "calls_per_event_ratio": round(base_figures["api_calls_per_event"] / pipeline["api_calls_per_event"], 1),
        "events_per_s_ratio": round(pipeline["events_per_s"] / base_figures["events_per_s"], 2),
        "goal_api_calls_per_record": GOAL,
        "meets_goals": meets,
        "member_mapping_meets_goal": pipeline["member_calls_per_record"] <= GOAL,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--baseline-concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-outbound-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
