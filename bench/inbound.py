"""Inbound latency and cost: sales-rep edits in the org reaching ``product.members.inbound``.

Every part is its own process, as deployed: the emulated org (``sfsync emulator``), the poller
(``sfsync poller``, poll interval ``--poll-interval`` s, idle backoff capped at the same value) and
the inbound app (``python -m sfsync.processors.inbound.app``); Kafka and the registry are the stack's.
Mapping: the shipped default (members -> Contact; FirstName, LastName, Title, Mailing* flow back).

1. Seed: ``--records`` Contacts carrying a member id (``Member_Id__c``), created in the org by the
   integration user; the poller's first load brings them in (the inbound app links them by that
   field). Waits until each has its update on ``product.members.inbound``.
2. Measured: ``--edits`` edits by a rep user (``/__admin/edit``: one record's Title, a new value
   each time) at ``--rate`` edits/s, the records in turn (so no record is edited twice within a poll:
   a poller sees only the latest state of a record). Each must come out as exactly one
   MemberFieldUpdate with the rep's value.

Figures (measured phase only):

- ``latency_p50_s`` / ``latency_p99_s`` (the goal: p99 < 3 s): per edit, from its SystemModstamp (the
  org's clock) to the Kafka timestamp of its MemberFieldUpdate (the inbound app's produce time);
  ``visible_p50_s`` / ``visible_p99_s``: to the moment a ``read_committed`` consumer here received it
  (adds the inbound app's transaction commit interval, ``SFSYNC_INBOUND_COMMIT_INTERVAL_S``, 0.5 s here);
- ``api_calls_per_poll``: the emulator's own count of API calls (``/__admin/stats``; only the poller
  calls it) over the poller's count of polls (``sfsync_poller_poll_duration_seconds_count`` from its
  ``/metrics``); ``polls``, ``api_calls``;
- ``edits``, ``delivered`` (distinct edits that came out), ``meets_goals``: every edit delivered once
  with the rep's value and p99 < 3 s.

    python bench/inbound.py [--records 200] [--edits 300] [--rate 5] [--poll-interval 1]
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This file's folder holds bench/emulator.py, named like the package: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

from sfsync.devtools.stack import stop_process_group  # noqa: E402
from sfsync.emulator.server import free_port  # noqa: E402
from sfsync.kafka.admin import delete_topics, ensure_topics  # noqa: E402
from sfsync.serde.codec import AvroDecoder  # noqa: E402
from sfsync.serde.registry import SchemaRegistry  # noqa: E402
from sfsync.settings import KafkaConnection, RegistryConnection, load  # noqa: E402
from sfsync.topics import ALL_TOPICS  # noqa: E402

GOAL_P99_S = 3.0
REP = "rep@acme.test"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def start(args: list[str], env: dict[str, str], cwd: Path, log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


class Updates:
    """MemberFieldUpdates of product.members.inbound as a read_committed consumer receives them."""

    def __init__(self, kafka: dict[str, Any], topic: str, decoder: AvroDecoder) -> None:
        self.consumer = Consumer(
            {
                **kafka,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe([topic])
        self.decoder = decoder
        self.seen: list[tuple[int, float, dict[str, Any]]] = []  # (kafka ms, received at, value)

    def drain(self, timeout_s: float = 0.1) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self.consumer.poll(max(0.0, min(0.1, deadline - time.monotonic())))
            if msg is None:
                if time.monotonic() >= deadline:
                    return
                continue
            if msg.error() is not None:
                continue
            name, value = self.decoder.decode(msg.value())
            if name == "MemberFieldUpdate":
                self.seen.append((msg.timestamp()[1], time.time(), value))

    def close(self) -> None:
        self.consumer.close()


def poll_count(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    found = re.findall(r"^sfsync_poller_poll_duration_seconds_count\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return sum(float(v) for v in found)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    kafka_settings = load(KafkaConnection, "kafka")
    registry_settings = load(RegistryConnection, "registry")
    kafka = kafka_settings.kafka_client_config()
    prefix = f"bench-inbound-{uuid.uuid4().hex[:8]}."
    app_id = f"bench-inbound-app-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka, ALL_TOPICS, prefix)
    port, source_metrics = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SFSYNC_TOPIC_PREFIX": prefix,
    }
    procs: list[subprocess.Popen[bytes]] = []
    registry = SchemaRegistry.from_settings(registry_settings, ride_out_outages=False)
    updates = Updates(kafka, prefix + "product.members.inbound", AvroDecoder(registry))
    logs = {name: (work / f"{name}.log").open("wb") for name in ("emulator", "poller", "inbound")}
    try:
        procs.append(start(["-m", "sfsync.cli.main", "emulator", "--port", str(port)], env, ROOT, logs["emulator"]))
        admin = httpx.Client(base_url=base, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                if admin.get("/services/data/").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("emulator did not start")
            time.sleep(0.1)
        admin.post("/__admin/limits", json={"daily_api_limit": 10_000_000})
        token = admin.post("/__admin/session", json={}).json()["access_token"]
        seeded = admin.post(
            "/__admin/edit",
            json={
                "records": [
                    {"sobject": "Contact", "values": {"LastName": f"Person{i}", "Member_Id__c": f"u-{i}"}}
                    for i in range(args.records)
                ]
            },
        ).json()["ids"]
        procs.append(
            start(
                ["-m", "sfsync.processors.inbound.app", str(args.max_seconds)],
                {
                    **env,
                    "SFSYNC_INBOUND_APP_ID": app_id,
                    "SFSYNC_INBOUND_COMMIT_INTERVAL_S": "0.5",
                    "SFSYNC_INBOUND_METRICS_PORT": "0",
                },
                work,
                logs["inbound"],
            )
        )
        procs.append(
            start(
                ["-m", "sfsync.cli.main", "poller"],
                {
                    **env,
                    "SALESFORCE_AUTH_FLOW": "access_token",
                    "SALESFORCE_INSTANCE_URL": base,
                    "SALESFORCE_ACCESS_TOKEN": token,
                    "SFSYNC_SOURCE_POLL_INTERVAL_S": str(args.poll_interval),
                    "SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S": str(args.poll_interval),
                    "SFSYNC_SOURCE_DELETE_LOG_INTERVAL_S": "0",
                    "SFSYNC_SOURCE_RECONCILE_INTERVAL_S": "0",
                    "SFSYNC_SOURCE_METRICS_PORT": str(source_metrics),
                },
                work,
                logs["poller"],
            )
        )

        # 1. the first load links every seeded record
        deadline = time.monotonic() + 120
        while len({v["salesforce_id"] for _, _, v in updates.seen}) < len(seeded):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"seed not delivered: {len(updates.seen)} of {len(seeded)} updates")
            updates.drain(0.5)
        updates.drain(1.0)
        updates.seen.clear()

        # 2. the rep edits, at a steady rate
        order = list(seeded)
        random.Random(7).shuffle(order)  # round robin: a record is edited again only after every other one
        calls_before, polls_before = admin.get("/__admin/stats").json()["api_calls"], poll_count(source_metrics)
        edits: dict[tuple[str, str], int] = {}  # (record, title) -> SystemModstamp ms
        started = time.monotonic()
        for n in range(args.edits):
            record = order[n % len(order)]
            title = f"Rep edit {n}"
            reply = admin.post(
                "/__admin/edit",
                json={"user": REP, "sobject": "Contact", "id": record, "values": {"Title": title}},
            ).json()
            stamp = dt.datetime.fromisoformat(reply["SystemModstamp"].replace("+0000", "+00:00"))
            edits[(record, title)] = int(stamp.timestamp() * 1000)
            updates.drain(max(0.0, started + (n + 1) / args.rate - time.monotonic()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            updates.drain(0.5)
            found = {(v["salesforce_id"], (v["salesforce_fields"] or {}).get("Title")) for _, _, v in updates.seen}
            if found >= set(edits):
                break
        updates.drain(2.0)  # anything more (a duplicate) comes now
        calls_after, polls_after = admin.get("/__admin/stats").json()["api_calls"], poll_count(source_metrics)
        admin.close()
    finally:
        updates.close()
        for proc in reversed(procs):
            stop_process_group(proc.pid, 20)
        for log in logs.values():
            log.close()
        registry.close()
        with contextlib.suppress(Exception):  # cleanup only
            delete_topics(kafka, (prefix, app_id))

    latency, visible, delivered = [], [], set()
    duplicates = 0
    for kafka_ms, received, value in updates.seen:
        key = (value["salesforce_id"], (value["salesforce_fields"] or {}).get("Title"))
        if key not in edits:
            continue
        if key in delivered:
            duplicates += 1
            continue
        delivered.add(key)
        latency.append((kafka_ms - edits[key]) / 1000)
        visible.append(received - edits[key] / 1000)
    polls = polls_after - polls_before
    api_calls = calls_after - calls_before
    p99 = percentile(latency, 0.99) if latency else float("inf")
    return {
        "bench": "inbound",
        "records": args.records,
        "edits": len(edits),
        "delivered": len(delivered),
        "duplicates": duplicates,
        "rate_per_s": args.rate,
        "poll_interval_s": args.poll_interval,
        "latency_p50_s": round(percentile(latency, 0.5), 3) if latency else None,
        "latency_p99_s": round(p99, 3) if latency else None,
        "visible_p50_s": round(percentile(visible, 0.5), 3) if visible else None,
        "visible_p99_s": round(percentile(visible, 0.99), 3) if visible else None,
        "polls": int(polls),
        "api_calls": api_calls,
        "api_calls_per_poll": round(api_calls / polls, 3) if polls else None,
        "goal_latency_p99_s": GOAL_P99_S,
        "meets_goals": len(delivered) == len(edits) and duplicates == 0 and p99 < GOAL_P99_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--edits", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5.0, help="rep edits per second")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=int, default=300, help="the inbound app stops by itself after this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-inbound-") as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
