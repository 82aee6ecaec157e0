"""The inbound processor end to end on real Kafka and registry: WriteResults and Salesforce changes
in (Avro, produced directly), ``product.members.inbound`` out.

The app runs as its own process (``python -m sfsync.processors.inbound.app``) with a fresh app id and the
shipped default mapping (members -> Contact, last_write_wins). 1,000 records sfsync wrote come back
from the poller unchanged (in Salesforce's own JSON formats): no update may come out. Then a rep
edits the same records: every edit is delivered. Records whose product value is newer than the
rep's edit keep it (last_write_wins, Salesforce first). Identity links come out once per record.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from sfsync.ops.dlq import H_STAGE, H_TOPIC
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from tests.integration.helpers import Reader, caught_up, consume_all, make_topics
from tests.integration.processes import Spawned, pipeline_env, unexpected_tracebacks

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
ECHOED = 1000
LATE = 20  # records whose product change is newer than the rep's edit


def sf_id(i: int) -> str:
    return f"003{i:012d}AAA"


def written(i: int) -> dict[str, Any]:
    return {
        "FirstName": f"First{i}",
        "LastName": f"Last{i}",
        "Email": f"m{i}@example.com",
        "Title": "Engineer",
        "Member_Id__c": f"u-{i}",
        "Joined_At__c": "2026-03-01T09:30:00.000Z",
    }


def result(i: int, occurred_at: dt.datetime) -> dict[str, Any]:
    return {
        "write_id": f"e-{i}:members:0",
        "key": f"ws-1|Contact:Email:m{i}@example.com",
        "mapping": "members",
        "sobject": "Contact",
        "salesforce_id": sf_id(i),
        "created": True,
        "fields": written(i),
        "acknowledged_at": occurred_at + dt.timedelta(seconds=1),
        "workspace_id": "ws-1",
        "source": {
            "topic": "product.members", "partition": 0, "offset": i, "event_id": str(uuid.uuid4()),
            "event_type": "UserCreated", "occurred_at": occurred_at,
        },
    }  # fmt: skip


def change(i: int, fields: dict[str, Any], modified: dt.datetime) -> dict[str, Any]:
    return {
        "change_id": f"Contact:{sf_id(i)}:{int(modified.timestamp() * 1000)}",
        "sobject": "Contact",
        "id": sf_id(i),
        "change_type": "UPDATE",
        "fields": fields,
        "system_modstamp": modified,
        "last_modified_date": modified,
        "last_modified_by_id": "005000000000001AAA",
        "polled_at": modified + dt.timedelta(seconds=1),
    }


def as_salesforce_returns(i: int) -> dict[str, Any]:
    """What the poller reads back after sfsync's write: the same values in Salesforce's JSON."""
    values = written(i)
    values["Joined_At__c"] = "2026-03-01T09:30:00.000+0000"
    return {**values, "OwnerId": "005000000000001AAA", "AccountId": None}


def start_app(env: dict[str, str], cwd: Path) -> Spawned:
    """``python -m sfsync.processors.inbound.app`` in its own process (Faust's data folder in ``cwd``)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return Spawned("sfsync.processors.inbound.app", "200", env=env, log=cwd / "inbound.log")


def test_echoes_are_dropped_edits_delivered_conflicts_resolved(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    make_topics(services, prefix)
    results = AvroEncoder(registry, prefix + "sfsync.results", load_topic_schema("sfsync.results"))
    changes = AvroEncoder(registry, prefix + "salesforce.changes", load_topic_schema("salesforce.changes"))
    producer = Producer({"bootstrap.servers": services.bootstrap, "linger.ms": 20})

    def send(topic: str, key: str, value: bytes) -> None:
        producer.produce(prefix + topic, key=key.encode(), value=value)
        producer.poll(0)

    total = ECHOED + LATE
    for i in range(ECHOED):
        send("sfsync.results", f"ws-1|Contact:Email:m{i}@example.com", results.encode("WriteResult", result(i, T0)))
    for i in range(ECHOED, total):  # the product changed these an hour after the rep will have
        late = T0 + dt.timedelta(hours=2)
        send("sfsync.results", f"ws-1|Contact:Email:m{i}@example.com", results.encode("WriteResult", result(i, late)))
    assert producer.flush(30) == 0

    env = pipeline_env(
        services,
        prefix,
        SFSYNC_INBOUND_APP_ID=f"inbound-{uuid.uuid4().hex[:10]}",
        SFSYNC_INBOUND_SESSION_TIMEOUT_S="10",
        SFSYNC_INBOUND_COMMIT_INTERVAL_S="0.5",
        SFSYNC_INBOUND_METRICS_PORT="0",  # other tests may run processes on the shared machine
    )
    codes: list[int] = []
    app = start_app(env, tmp_path / "first")
    reader = Reader(services.bootstrap, prefix + "product.members.inbound")
    try:
        # 1. every result makes the member's salesforce:id known
        assert reader.until(total, timeout_s=120) == total
        # 2. the poller reads back what sfsync wrote: only the owner links are new, no update
        for i in range(ECHOED):
            echo = change(i, as_salesforce_returns(i), T0 + dt.timedelta(seconds=5))
            send("salesforce.changes", f"Contact:{sf_id(i)}", changes.encode("Change", echo))
        producer.produce(prefix + "salesforce.changes", key=b"Contact:garbage", value=b"\x07 not avro")
        # 3. right after, a rep edits the same records (and the late ones, whose product value is newer)
        for i in range(total):
            edited = {**as_salesforce_returns(i), "Title": "Countess"}
            modified = T0 + dt.timedelta(minutes=10 + i % 7)
            send("salesforce.changes", f"Contact:{sf_id(i)}", changes.encode("Change", change(i, edited, modified)))
        assert producer.flush(30) == 0
        expected = total + total + ECHOED  # links (results), owner links, the rep's edits
        reader.until(expected, timeout_s=150)
        assert caught_up(services.bootstrap, env["SFSYNC_INBOUND_APP_ID"], prefix + "salesforce.changes", 90)
        reader.until(len(reader.messages) + 1, timeout_s=3)  # anything more (a replay) comes now
        parked = consume_all(services.bootstrap, [prefix + "sfsync.dlq"], 1, timeout_s=15)
        first_run = list(reader.messages)
        codes.append(app.stop())

        # 4. restarted (same app id), the table comes back from its changelog: the poller's re-read
        # of the edited records is no news, while one more edit is
        app = start_app(env, tmp_path / "second")
        for i in range(50):
            again = change(i, {**as_salesforce_returns(i), "Title": "Countess"}, T0 + dt.timedelta(minutes=30))
            send("salesforce.changes", f"Contact:{sf_id(i)}", changes.encode("Change", again))
        newer = change(0, {**as_salesforce_returns(0), "Title": "Duchess"}, T0 + dt.timedelta(minutes=31))
        send("salesforce.changes", f"Contact:{sf_id(0)}", changes.encode("Change", newer))
        assert producer.flush(30) == 0
        reader.until(len(first_run) + 1, timeout_s=120)
        assert caught_up(services.bootstrap, env["SFSYNC_INBOUND_APP_ID"], prefix + "salesforce.changes", 90)
        reader.until(len(reader.messages) + 1, timeout_s=2)
    finally:
        reader.close()
        codes.append(app.stop())
    first_log = (tmp_path / "first" / "inbound.log").read_text(errors="replace")
    log = (tmp_path / "second" / "inbound.log").read_text(errors="replace")
    assert codes == [0, 0], log[-3000:]
    for run in (first_log, log):
        assert unexpected_tracebacks(run) == [], run[-3000:]

    decoder = AvroDecoder(registry)

    def distinct(messages: list[Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """What the product applies: each inbound_id once (Faust may send a record again after an
        aborted transaction; the rules then resend it with the same inbound_id)."""
        out: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
        for m in messages:
            name, value = decoder.decode(m.value())
            out.setdefault((name, value["inbound_id"]), (m.key().decode(), name, value))
        return list(out.values())

    decoded = distinct(first_run)
    kinds = Counter(name for _, name, _ in decoded)
    assert kinds == {"MemberIdentityLink": 2 * total, "MemberFieldUpdate": ECHOED}, (kinds, log[-2000:])

    updates = [(key, value) for key, name, value in decoded if name == "MemberFieldUpdate"]
    # no echo: each update is the rep's Title, nothing of what sfsync wrote, and only for records
    # whose product value was older than the edit
    assert sorted(key for key, _ in updates) == sorted(f"u-{i}" for i in range(ECHOED))
    for key, value in updates:
        assert value["fields"] == {"member.title": "Countess"}, value
        assert value["member_id"] == key and value["workspace_id"] == "ws-1"
        assert value["last_modified_by_id"] == "005000000000001AAA"
    links = [value["links"] for _, name, value in decoded if name == "MemberIdentityLink"]
    assert sum(1 for link in links if "salesforce:id" in link) == total
    assert sum(1 for link in links if link.get("salesforce:owner_id") == "005000000000001AAA") == total
    assert not any("salesforce:account_id" in link for link in links)  # a null AccountId links nothing

    restarted = distinct(reader.messages[len(first_run) :])
    assert [(name, value["member_id"], value.get("fields")) for _, name, value in restarted] == [
        ("MemberFieldUpdate", "u-0", {"member.title": "Duchess"})
    ]

    assert len(parked) == 1
    headers = {k: v.decode() for k, v in parked[0].headers() or []}
    assert headers[H_TOPIC] == prefix + "salesforce.changes" and headers[H_STAGE] == "VALUE_CONVERTER"


WRITER = "005000000000009AAA"  # the user sfsync writes as, in the tests below


def writers_app_env(services: Any, prefix: str, app_id: str, **extra: str) -> dict[str, str]:
    """The inbound app's environment, with ``WRITER`` as the user sfsync writes as."""
    return pipeline_env(
        services,
        prefix,
        SFSYNC_INBOUND_APP_ID=app_id,
        SFSYNC_INBOUND_SESSION_TIMEOUT_S="10",
        SFSYNC_INBOUND_COMMIT_INTERVAL_S="0.5",
        SFSYNC_INBOUND_METRICS_PORT="0",
        SFSYNC_INBOUND_WRITER_USER_IDS=WRITER,
        **extra,
    )


def test_a_stop_while_changes_are_held_is_prompt_and_judges_none_of_them(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    """SIGTERM while writer changes wait (echo hold) for results that are not in Kafka yet: the app
    exits at once, cleanly, without judging them (judged now they would be echoes) and without
    committing them. Restarted once their results are in, it reads them again and sends no echo."""
    make_topics(services, prefix)
    results = AvroEncoder(registry, prefix + "sfsync.results", load_topic_schema("sfsync.results"))
    changes = AvroEncoder(registry, prefix + "salesforce.changes", load_topic_schema("salesforce.changes"))
    producer = Producer({"bootstrap.servers": services.bootstrap, "linger.ms": 20})

    def send(topic: str, key: str, value: bytes) -> None:
        producer.produce(prefix + topic, key=key.encode(), value=value)
        producer.poll(0)

    def send_result(i: int) -> None:
        send("sfsync.results", f"ws-1|Contact:Email:m{i}@example.com", results.encode("WriteResult", result(i, now)))

    now = dt.datetime.now(dt.UTC)
    started = range(10)  # results that show the app is up
    held = range(100, 300)  # sfsync's own writes, read back before their results
    for i in started:
        send_result(i)
    assert producer.flush(30) == 0
    app_id = f"inbound-{uuid.uuid4().hex[:10]}"
    env = writers_app_env(services, prefix, app_id, SFSYNC_INBOUND_ECHO_HOLD_S="120")
    reader = Reader(services.bootstrap, prefix + "product.members.inbound")
    app = start_app(env, tmp_path / "first")
    try:
        assert reader.until(len(started), timeout_s=120) == len(started), app.log_tail()
        for i in held:
            echo = {**change(i, as_salesforce_returns(i), now), "last_modified_by_id": WRITER, "polled_at": now}
            send("salesforce.changes", f"Contact:{sf_id(i)}", changes.encode("Change", echo))
        assert producer.flush(30) == 0
        time.sleep(3)  # read and held (for up to 120 s)
        stopping = time.monotonic()
        first_code = app.stop(timeout_s=60)
        stop_s = time.monotonic() - stopping
        assert not caught_up(services.bootstrap, app_id, prefix + "salesforce.changes"), "held changes committed"

        for i in held:
            send_result(i)
        assert producer.flush(30) == 0
        app = start_app(env, tmp_path / "second")
        expected = len(started) + 2 * len(held)  # the held records' id links, then their owner links
        reader.until(expected, timeout_s=120)
        assert caught_up(services.bootstrap, app_id, prefix + "salesforce.changes", 90), app.log_tail()
        reader.until(len(reader.messages) + 1, timeout_s=3)  # anything more (an echo) comes now
    finally:
        reader.close()
        last_code = app.stop()
    first_log = (tmp_path / "first" / "inbound.log").read_text(errors="replace")
    assert (first_code, last_code) == (0, 0), first_log[-3000:]
    assert stop_s < 15, f"stopping took {stop_s:.1f}s\n{first_log[-3000:]}"
    decoder = AvroDecoder(registry)
    decoded = {
        value["inbound_id"]: (name, value) for name, value in map(decoder.decode, (m.value() for m in reader.messages))
    }
    kinds = Counter(name for name, _ in decoded.values())
    # at least once: a link sent just before the stop may come again, under the same inbound_id
    assert kinds == {"MemberIdentityLink": len(started) + 2 * len(held)}, (kinds, len(reader.messages))


def test_a_thousand_changes_waiting_for_results_clear_in_about_one_hold_not_one_after_another(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    clear_held_changes(services, prefix, registry, tmp_path, hold_max=10_000)


def test_changes_past_a_full_hold_are_fetched_once_half_are_judged_and_none_is_lost(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    """At most 100 changes may wait: the app stops fetching changes ten times over and starts again,
    and every one of the 1,000 is judged. Stopped with Faust's ``pause_partitions``, the rest of a
    fetch under way was dropped unread and the app judged 300 of them, then nothing more."""
    clear_held_changes(services, prefix, registry, tmp_path, hold_max=100)


def clear_held_changes(services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path, *, hold_max: int) -> None:
    """1,000 changes by sfsync's writer that no result covers (a flow running as the integration user)
    wait for their results at once, aside from the stream: all are judged about one hold after they
    were polled. The changes buffer is 8 records, so Faust's one fetcher, which feeds the results agent
    too, would block on it if the changes agent waited on each hold in turn: then every change waited
    out its full hold, one after another (the chaos run's inbound app fell 58,000 changes behind)."""
    make_topics(services, prefix)
    results = AvroEncoder(registry, prefix + "sfsync.results", load_topic_schema("sfsync.results"))
    changes = AvroEncoder(registry, prefix + "salesforce.changes", load_topic_schema("salesforce.changes"))
    producer = Producer({"bootstrap.servers": services.bootstrap, "linger.ms": 20})
    n, hold_s = 1000, 4.0

    def send(topic: str, key: str, value: bytes) -> None:
        producer.produce(prefix + topic, key=key.encode(), value=value)
        producer.poll(0)

    for i in range(n):  # sfsync wrote the records an hour ago
        send("sfsync.results", f"ws-1|Contact:Email:m{i}@example.com", results.encode("WriteResult", result(i, T0)))
    assert producer.flush(30) == 0
    app_id = f"inbound-{uuid.uuid4().hex[:10]}"
    env = writers_app_env(
        services,
        prefix,
        app_id,
        SFSYNC_INBOUND_ECHO_HOLD_S=str(hold_s),
        SFSYNC_INBOUND_STREAM_BUFFER_MAXSIZE="8",
        SFSYNC_INBOUND_HOLD_MAX=str(hold_max),
    )
    reader = Reader(services.bootstrap, prefix + "product.members.inbound")
    app = start_app(env, tmp_path / "app")
    try:
        assert reader.until(n, timeout_s=120) == n, app.log_tail()  # every record's id link
        now = dt.datetime.now(dt.UTC)
        for i in range(n):  # a flow, running as the writer, sets a Title: no result will ever cover it
            flow = {**change(i, {**as_salesforce_returns(i), "Title": "Set by a flow"}, now)}
            send(
                "salesforce.changes",
                f"Contact:{sf_id(i)}",
                changes.encode("Change", {**flow, "last_modified_by_id": WRITER, "polled_at": now}),
            )
        assert producer.flush(30) == 0
        sent = time.monotonic()
        expected = n + n + n  # id links, then per change its owner link and the flow's Title
        reader.until(expected, timeout_s=120)
        cleared_s = time.monotonic() - sent
        assert caught_up(services.bootstrap, app_id, prefix + "salesforce.changes", 60), app.log_tail()
    finally:
        reader.close()
        code = app.stop()
    log = (tmp_path / "app" / "inbound.log").read_text(errors="replace")
    assert code == 0 and unexpected_tracebacks(log) == [], log[-3000:]
    decoder = AvroDecoder(registry)
    kinds = Counter(decoder.decode(m.value())[0] for m in reader.messages)
    assert kinds["MemberFieldUpdate"] >= n, kinds  # each held change judged and delivered (at least once)
    assert cleared_s < hold_s + 20, f"{n} held changes took {cleared_s:.1f}s (hold {hold_s}s)"
