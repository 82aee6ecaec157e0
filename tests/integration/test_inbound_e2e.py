"""Inbound end to end, every real part chained: product events -> outbound processor (own process) ->
sink -> emulated org <- poller -> ``salesforce.changes`` -> inbound app (own process) ->
``product.members.inbound``.

1,000 writes sfsync makes (600 members created, then 400 of them updated) come back through the
poller as changes by sfsync's integration user: none may come out as a member update. The race
is forced: the sink's results are held back ``RESULT_DELAY_S`` after each batch is in Salesforce
(:class:`DelayedResults` wraps the sink's results producer) while the poller polls every 0.2 s,
so the poller reads most writes before their WriteResults reach the inbound app; the app holds
those changes until the results arrive (``SFSYNC_INBOUND_WRITER_USER_IDS``). The test checks in
Kafka that changes did overtake their results, and in the app's log that it held them.

Right after, a sales rep edits the Title of all 600 records. last_write_wins in both orders: where
the product's change is older than the rep's edit (product first) the rep's value is delivered;
where the product stamped its change later than the rep's edit (Salesforce first: 20 members
whose update carries an ``occurred_at`` an hour ahead) the product's value stands and nothing is sent.

Then both ways: product changes of 100 of those records, still in flight, arrive; those stamped
before the rep's edit must not overwrite it in Salesforce (the outbound processor learned the edits
from ``sfsync.salesforce_edits``), those stamped after it must.

Last, the inbound app is stopped while sfsync updates 200 records, and restarted with a 2 s bound:
the changes it finds were polled long before, their results wait in Kafka beside them; it folds
the results first (it waits for the results stream to catch up) and sends no update.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import serve_in_thread
from sfsync.producers import events as ev
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import Poller
from sfsync.sources.settings import SourceSettings
from tests.integration.helpers import Reader, committed_to_end, drain, open_publisher, salesforce_settings, until
from tests.integration.processes import Spawned, pipeline_env, spawn, unexpected_tracebacks
from tests.integration.sink_runner import runner_for

MEMBERS = 600
UPDATED = 400  # 600 creates + 400 updates = 1,000 writes by sfsync
PRODUCT_LATER = 20  # members 0..19: the product's update is stamped an hour after the rep's edit
RESULT_DELAY_S = 1.5
REP = "rep@acme.test"
BACKLOG_FROM, BACKLOG_TO = 100, 300  # members updated while the inbound app is down
OLDER_IN_FLIGHT, NEWER_AFTER = range(400, 450), range(450, 500)  # product changes stamped before / after the rep's


class DelayedResults:
    """The sink's results producer, producing each batch's WriteResults ``delay_s`` late: the batch is
    in Salesforce (and readable by the poller) while its results are not yet in Kafka."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.pending: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.pending.append((args, kwargs))

    def poll(self, timeout: float = 0) -> int:
        return int(self.inner.poll(timeout))

    def flush(self, timeout: float = -1) -> int:
        if self.pending:
            time.sleep(self.delay_s)  # the worker flushes in a thread: the event loop (and the poller) runs on
        pending, self.pending = self.pending, []
        for args, kwargs in pending:
            self.inner.produce(*args, **kwargs)
        return int(self.inner.flush(timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def member_id(i: int) -> str:
    return f"u-{i:04d}"


def profile(i: int, title: str, at: dt.datetime) -> ev.MemberProfile:
    return ev.MemberProfile(
        member_id=member_id(i),
        email=f"m{i}@example.com",
        first_name=f"First{i}",
        last_name=f"Last{i}",
        title=title,
        location=ev.Location(country="DE", state="BE", city="Berlin"),
        signed_up_at=at,
        joined_at=at,
    )


def read_all(bootstrap: str, topic: str, decoder: AvroDecoder, timeout_s: float = 20) -> list[tuple[int, dict]]:
    """Every committed record of ``topic``: (Kafka timestamp ms, decoded value)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[int, dict]] = []
    quiet_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 3:
            msg = consumer.poll(0.3)
            if msg is None or msg.error() is not None:
                continue
            quiet_since = time.monotonic()
            out.append((msg.timestamp()[1], decoder.decode(msg.value())[1]))
    finally:
        consumer.close()
    return out


def counts_of(log: str) -> dict[str, int]:
    """The inbound app's closing ``inbound: results N  changes N ...`` line."""
    found = re.findall(r"inbound: ((?:[a-z]+ \d+\s*)+)", log)
    assert found, log[-3000:]
    words = found[-1].split()
    return {words[k]: int(words[k + 1]) for k in range(0, len(words), 2)}


async def test_sfsyncs_own_writes_never_echo_while_rep_edits_are_delivered_per_last_write_wins(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    running = serve_in_thread()
    integration_user = str(running.emulator.store.integration_user_id)
    publisher = open_publisher(services, prefix)  # creates every topic
    base = pipeline_env(services, prefix, SFSYNC_MAPPING_VARS="activities=false")  # member writes only
    outbound_id, inbound_id = f"proc-{uuid.uuid4().hex[:10]}", f"inbound-{uuid.uuid4().hex[:10]}"
    processor = spawn(
        "sfsync.processors.outbound.app",
        {
            **base,
            "SFSYNC_PROCESSOR_APP_ID": outbound_id,
            "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
            "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": "0.5",
            "SFSYNC_PROCESSOR_METRICS_PORT": "0",
        },
        tmp_path / "processor",
    )
    inbound_env = {
        **base,
        "SFSYNC_INBOUND_APP_ID": inbound_id,
        "SFSYNC_INBOUND_SESSION_TIMEOUT_S": "10",
        "SFSYNC_INBOUND_COMMIT_INTERVAL_S": "0.5",
        "SFSYNC_INBOUND_METRICS_PORT": "0",
        "SFSYNC_INBOUND_WRITER_USER_IDS": integration_user,
        "SFSYNC_INBOUND_ECHO_HOLD_S": "30",
    }
    inbound = spawn("sfsync.processors.inbound.app", inbound_env, tmp_path / "inbound")
    restarted: Spawned | None = None
    sink = runner_for(services, prefix, f"sink-{uuid.uuid4().hex[:8]}", running, registry)
    sink.worker.producer = DelayedResults(sink.worker.producer, RESULT_DELAY_S)
    poller = Poller(
        SourceSettings(
            bootstrap_servers=services.bootstrap,
            schema_registry_url=services.registry,
            topic_prefix=prefix,
            poll_interval_s=0.2,
            max_idle_interval_s=0.4,
            lookback_s=5,
            delete_log_interval_s=0,
            reconcile_interval_s=0,
            session_timeout_ms=6000,
            transaction_timeout_s=10,
            metrics_port=0,
        ),
        salesforce_settings(running),
        governor_settings=GovernorSettings(),
        metrics=SourceMetrics(CollectorRegistry()),
    )
    tasks = [asyncio.create_task(sink.run(signals=False)), asyncio.create_task(poller.run(signals=False))]
    reader = Reader(services.bootstrap, prefix + "product.members.inbound")
    changes_topic, results_topic = prefix + "salesforce.changes", prefix + "sfsync.results"
    codes: dict[str, int] = {}
    try:
        # 1. sfsync writes: 600 creates, then (their results in) 400 updates
        created_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        for i in range(MEMBERS):
            publisher.publish(
                ev.UserCreated(workspace_id="ws-1", occurred_at=created_at, member=profile(i, "New", created_at))
            )
        publisher.flush()
        await until(lambda: sink.results >= MEMBERS, 150, f"{MEMBERS} creates written")
        now = dt.datetime.now(dt.UTC)
        for i in range(UPDATED):
            at = now + dt.timedelta(hours=1) if i < PRODUCT_LATER else now
            update = ev.UserProfileUpdate(
                workspace_id="ws-1",
                occurred_at=at,
                member=profile(i, f"Product {i}", created_at),
                changed_fields=["title"],
            )
            publisher.publish(update)
        publisher.flush()
        await until(lambda: sink.results >= MEMBERS + UPDATED, 120, "the updates written")
        assert sink.results == MEMBERS + UPDATED and sink.parked == 0

        # 2. the poller reads every write back; the inbound app judges them all: wait until quiet
        async def quiet() -> bool:
            return all(
                await asyncio.gather(
                    asyncio.to_thread(committed_to_end, services.bootstrap, inbound_id, changes_topic, True),
                    asyncio.to_thread(committed_to_end, services.bootstrap, inbound_id, results_topic, False),
                )
            )

        await until(quiet, 150, "the inbound app caught up with the poller and the sink")
        await asyncio.sleep(2)  # the poller's last polls of the lookback window
        await until(quiet, 120, "the inbound app caught up again")
        echo_phase = await asyncio.to_thread(drain, reader)

        # 3. right after, a rep edits the Title of every record
        edits_started = dt.datetime.now(dt.UTC)
        by_member = {r["Member_Id__c"]: r["Id"] for r in running.emulator.store.rows("Contact")}
        assert len(by_member) == MEMBERS
        async with httpx.AsyncClient(base_url=running.base_url) as http:
            for start in range(0, MEMBERS, 100):
                records = [
                    {"sobject": "Contact", "id": by_member[member_id(i)], "values": {"Title": f"Rep {i}"}}
                    for i in range(start, start + 100)
                ]
                reply = await http.post("/__admin/edit", json={"user": REP, "records": records})
                assert reply.status_code == 200, reply.text
        rep_id = reply.json()["by"]
        delivered = MEMBERS - PRODUCT_LATER
        await asyncio.to_thread(reader.until, echo_phase + delivered, 90)
        await until(quiet, 120, "the inbound app caught up with the rep's edits")
        rep_phase_end = await asyncio.to_thread(drain, reader)  # anything more comes now

        # 3b. last write wins both ways: product changes still in flight but stamped before the rep's
        # edits must not overwrite them in Salesforce (the processor learned the edits from
        # sfsync.salesforce_edits); changes stamped after them must
        edits_topic = prefix + "sfsync.salesforce_edits"

        async def learned() -> bool:
            return await asyncio.to_thread(committed_to_end, services.bootstrap, outbound_id, edits_topic, False)

        await until(learned, 60, "the processor learned the rep's edits")
        before_edits, after_edits = edits_started - dt.timedelta(seconds=5), dt.datetime.now(dt.UTC)
        for i in [*OLDER_IN_FLIGHT, *NEWER_AFTER]:
            at = before_edits if i in OLDER_IN_FLIGHT else after_edits
            update = ev.UserProfileUpdate(workspace_id="ws-1", occurred_at=at, member=profile(i, f"Product {i}", at))
            publisher.publish(update)
        publisher.flush()
        both_ways = MEMBERS + UPDATED + len(OLDER_IN_FLIGHT) + len(NEWER_AFTER)
        await until(lambda: sink.results >= both_ways, 120, "the in-flight product changes written")
        titles = {r["Member_Id__c"]: r["Title"] for r in running.emulator.store.rows("Contact")}
        assert [titles[member_id(i)] for i in OLDER_IN_FLIGHT] == [f"Rep {i}" for i in OLDER_IN_FLIGHT]
        assert [titles[member_id(i)] for i in NEWER_AFTER] == [f"Product {i}" for i in NEWER_AFTER]

        # 4. the inbound app is down while sfsync writes again; restarted, it finds changes polled
        # long past their bound (2 s here) and their results both waiting in Kafka: still no echo
        codes["inbound"] = inbound.stop()
        now = dt.datetime.now(dt.UTC)
        for i in range(BACKLOG_FROM, BACKLOG_TO):
            update = ev.UserProfileUpdate(
                workspace_id="ws-1", occurred_at=now, member=profile(i, f"Backlog {i}", created_at)
            )
            publisher.publish(update)
        publisher.flush()
        written = both_ways + BACKLOG_TO - BACKLOG_FROM
        await until(lambda: sink.results >= written, 120, "the backlog written")
        await asyncio.sleep(3)  # the poller reads them back, and their bound passes
        restarted = spawn(
            "sfsync.processors.inbound.app", {**inbound_env, "SFSYNC_INBOUND_ECHO_HOLD_S": "2"}, tmp_path / "restarted"
        )
        try:
            await until(quiet, 150, "the restarted inbound app caught up")
        except AssertionError as exc:
            os.kill(restarted.proc.pid, signal.SIGUSR1)  # mode's worker dumps every thread and task
            await asyncio.sleep(3)
            raise AssertionError(f"{exc}\n{restarted.log_tail(20000)}") from None
        await asyncio.to_thread(drain, reader)
    finally:
        poller.stop()
        sink.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await poller.close()
        reader.close()
        publisher.close()
        codes["processor"] = processor.stop()
        if "inbound" not in codes:
            codes["inbound"] = inbound.stop()
        if restarted is not None:
            codes["restarted"] = restarted.stop()
        running.stop()
    for name, proc in (("processor", processor), ("inbound", inbound), ("restarted", restarted)):
        assert proc is not None and codes[name] == 0, proc.log_tail() if proc else codes
        assert unexpected_tracebacks(proc.output()) == [], proc.log_tail()

    decoder = AvroDecoder(registry)
    decoded: dict[tuple[str, str], tuple[int, str, dict[str, Any]]] = {}
    for n, m in enumerate(reader.messages):  # each inbound_id once (a replay resends the same id)
        name, value = decoder.decode(m.value())
        decoded.setdefault((name, value["inbound_id"]), (n, name, value))
    echo = [(name, value) for n, name, value in decoded.values() if n < echo_phase]
    rep = [(name, value) for n, name, value in decoded.values() if echo_phase <= n < rep_phase_end]
    backlog = [(name, value) for n, name, value in decoded.values() if n >= rep_phase_end]

    # no echo: 1,000 writes bring only identity links (salesforce:id from the results, the owner from the changes)
    assert Counter(name for name, _ in echo) == {"MemberIdentityLink": 2 * MEMBERS}, Counter(n for n, _ in echo)
    linked = Counter(k for _, value in echo for k in value["links"])
    assert linked == {"salesforce:id": MEMBERS, "salesforce:owner_id": MEMBERS}

    # the rep's edits: delivered where the product's change is older (product first), not where it is later
    assert Counter(name for name, _ in rep) == {"MemberFieldUpdate": delivered}
    updates = {value["member_id"]: value for _, value in rep}
    assert sorted(updates) == [member_id(i) for i in range(PRODUCT_LATER, MEMBERS)]
    for i in range(PRODUCT_LATER, MEMBERS):
        value = updates[member_id(i)]
        assert value["fields"] == {"member.title": f"Rep {i}"}, value
        assert value["last_modified_by_id"] == rep_id and value["salesforce_id"] == by_member[member_id(i)]

    # the backlog after the restart: sfsync's writes came back, none as an update
    assert not [value for name, value in backlog if name == "MemberFieldUpdate"], backlog[:3]

    # the race did happen: sfsync's own changes reached Kafka before the results that cover them
    changes = read_all(services.bootstrap, changes_topic, decoder)
    results = read_all(services.bootstrap, results_topic, decoder)
    result_times: dict[str, list[tuple[int, int]]] = {}
    for kafka_ms, r in results:
        result_times.setdefault(r["salesforce_id"], []).append((int(r["acknowledged_at"].timestamp() * 1000), kafka_ms))
    own = [(kafka_ms, c) for kafka_ms, c in changes if c["last_modified_by_id"] == integration_user]
    assert len(own) >= MEMBERS  # the poller read sfsync's writes back (every create at least)
    overtaken = 0
    for kafka_ms, c in own:
        modstamp = int(c["system_modstamp"].timestamp() * 1000)
        covering = [at for acked, at in result_times.get(c["id"], []) if acked >= modstamp]
        overtaken += bool(covering) and kafka_ms < min(covering)
    assert overtaken >= 100, f"only {overtaken} of {len(own)} own changes came before their results"
    held = counts_of(inbound.output())
    assert held["held"] > 0 and held["echo"] > 0 and held["parked"] == 0, held
