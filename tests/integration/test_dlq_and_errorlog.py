"""DLQ and error log on a real broker and registry: park, list, replay byte for byte, tail."""

from __future__ import annotations

import datetime as dt

import pytest
import typer
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from sfsync.cli.ops import dlq_app, errors_app
from sfsync.errors import Category, Level
from sfsync.ops.dlq import REPLAYED_FROM, DeadLetterQueue, ReplayFilter, Stage
from sfsync.ops.errorlog import ErrorLog, lookup_policy_skip, tail
from sfsync.salesforce.errors import classify
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.metrics import SinkMetrics
from sfsync.topics import DLQ, ERRORS, MEMBERS, SALESFORCE_EDITS

from .helpers import consume_all, make_topics

PARKED_AT = dt.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)
ORIGINALS = [
    (b"member-1", b"\x00\x00\x00\x00\x07\x02binary\xff\xfe", [("traceparent", b"00-abc-01")]),
    (b"member-2", b"\x00\x00\x00\x00\x07\x04other\x00\x01", []),
]


@pytest.fixture
def originals(services, prefix):
    make_topics(services, prefix)
    producer = Producer({"bootstrap.servers": services.bootstrap})
    for key, value, headers in ORIGINALS:
        producer.produce(MEMBERS.name(prefix), value, key, headers=headers)
    assert producer.flush(10) == 0
    messages = consume_all(services.bootstrap, [MEMBERS.name(prefix)], expected=len(ORIGINALS))
    assert len(messages) == len(ORIGINALS)
    return sorted(messages, key=lambda m: m.key())


def test_park_list_replay_and_tail(services, prefix, registry, originals) -> None:
    kafka = {"bootstrap.servers": services.bootstrap}
    metrics = SinkMetrics(CollectorRegistry())
    error_log = ErrorLog(kafka, registry, prefix=prefix, metrics=metrics)
    dlq = DeadLetterQueue(kafka, prefix=prefix, error_log=error_log, metrics=metrics)
    missing = classify(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", fields=["LastName"])
    too_long = classify(400, "STRING_TOO_LONG", "Title: data value too large")

    first = dlq.park(originals[0], missing, stage=Stage.TASK_PUT, mapping="members", attempts=1, now=PARKED_AT)
    second = dlq.park(originals[1], too_long, stage=Stage.TASK_PUT, mapping="leads", field="Title", attempts=3)
    assert first[1] >= 0 and second[1] == first[1] + 1  # acknowledged before park returned
    error_log.record(lookup_policy_skip("no Campaign for event e1", mapping="attendance", sobject="CampaignMember"))
    error_log.flush()

    # ---- list: original bytes and headers, every context header
    parked = dlq.list_parked()
    assert len(parked) == 2
    for record, msg in zip(parked, originals, strict=True):
        assert (record.key, record.value) == (msg.key(), msg.value())
        assert list(record.headers) == list(msg.headers() or [])
        assert not record.replayed
    ctx = parked[0].context
    assert (ctx.topic, ctx.partition, ctx.offset) == (
        MEMBERS.name(prefix),
        originals[0].partition(),
        originals[0].offset(),
    )
    assert ctx.stage == "TASK_PUT"
    assert ctx.class_name == "sinks.SalesforceSink"
    assert ctx.exception_class == "sfsync.salesforce.errors.SalesforceRecordError"
    assert ctx.message == "Required fields are missing: [LastName]"
    assert "SalesforceRecordError" in ctx.stacktrace
    assert (ctx.mapping, ctx.field, ctx.code, ctx.category) == ("members", "LastName", "REQUIRED_FIELD_MISSING", "SYNC")
    assert ctx.attempts == 1
    assert ctx.parked_at == PARKED_AT
    ctx2 = parked[1].context
    assert (ctx2.mapping, ctx2.field, ctx2.code, ctx2.attempts) == ("leads", "Title", "STRING_TOO_LONG", 3)
    raw = consume_all(services.bootstrap, [DLQ.name(prefix)], expected=2)
    names = {name for name, _ in raw[0].headers()}
    assert {
        "__connect.errors.topic",
        "__connect.errors.partition",
        "__connect.errors.offset",
        "__connect.errors.stage",
        "__connect.errors.class.name",
        "__connect.errors.exception.class.name",
        "__connect.errors.exception.message",
        "__connect.errors.exception.stacktrace",
        "sfsync.errors.mapping",
        "sfsync.errors.field",
        "sfsync.errors.code",
        "sfsync.errors.category",
        "sfsync.errors.attempts",
        "sfsync.errors.parked_at",
    } <= names
    assert (
        metrics.registry.get_sample_value(
            "sfsync_dlq_records_total", {"mapping": "members", "code": "REQUIRED_FIELD_MISSING"}
        )
        == 1
    )
    assert (
        metrics.registry.get_sample_value("sfsync_errors_total", {"category": "SYNC", "code": "STRING_TOO_LONG"}) == 1
    )

    # ---- replay by filter, then the rest; never twice
    assert dlq.replay(ReplayFilter(code="REQUIRED_FIELD_MISSING")).sent == 1
    assert dlq.replay(ReplayFilter(code="REQUIRED_FIELD_MISSING")).sent == 0
    assert [r.replayed for r in dlq.list_parked()] == [True, False]
    assert dlq.replay(ReplayFilter(mapping="nobody")).sent == 0
    assert dlq.replay().sent == 1
    assert dlq.replay().sent == 0
    assert [r.replayed for r in dlq.list_parked()] == [True, True]

    topic = consume_all(services.bootstrap, [MEMBERS.name(prefix)], expected=4)
    replayed = [m for m in topic if any(name == REPLAYED_FROM for name, _ in (m.headers() or []))]
    assert len(replayed) == 2
    for msg in replayed:
        original = next(o for o in originals if o.key() == msg.key())
        assert msg.value() == original.value()
        headers = msg.headers()
        assert headers[:-1] == (original.headers() or [])
        assert headers[-1][1].decode().startswith(f"{DLQ.name(prefix)}:0:")

    # ---- the error log: one SYNC entry per parked record, plus the informational one
    entries = list(tail(kafka, registry, prefix=prefix, last=None))
    assert [e.code for e in entries] == ["REQUIRED_FIELD_MISSING", "STRING_TOO_LONG", "LOOKUP_POLICY_SKIP"]
    first_entry = entries[0]
    assert (first_entry.category, first_entry.level) == (Category.SYNC, Level.ERROR)
    assert (first_entry.mapping, first_entry.field, first_entry.record_key) == ("members", "LastName", "member-1")
    assert first_entry.source is not None and first_entry.source.offset == originals[0].offset()
    assert entries[2].level is Level.INFO
    assert [e.code for e in tail(kafka, registry, prefix=prefix, last=1)] == ["LOOKUP_POLICY_SKIP"]
    dlq.close()


def test_cli_lists_replays_and_tails(services, prefix, registry, originals) -> None:
    kafka = {"bootstrap.servers": services.bootstrap}
    with ErrorLog(kafka, registry, prefix=prefix) as error_log:
        dlq = DeadLetterQueue(kafka, prefix=prefix, error_log=error_log)
        dlq.park(originals[0], classify(400, "DUPLICATES_DETECTED", "dupe"), stage=Stage.TASK_PUT, mapping="members")
        error_log.record(lookup_policy_skip("skipped", mapping="attendance"))
    app = typer.Typer()
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(errors_app, name="errors")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
        "SCHEMA_REGISTRY_URL": services.registry,
        "SFSYNC_TOPIC_PREFIX": prefix,
    }
    runner = CliRunner()

    listed = runner.invoke(app, ["dlq", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "DUPLICATES_DETECTED" in listed.output and "mapping=members" in listed.output
    assert "parked" in listed.output

    refused = runner.invoke(app, ["dlq", "replay"], env=env, input="n\n")
    assert refused.exit_code == 1
    replayed = runner.invoke(app, ["dlq", "replay", "--mapping", "members", "--yes"], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 record(s)" in replayed.output
    again = runner.invoke(app, ["dlq", "replay", "--yes"], env=env)
    assert "nothing to replay" in again.output

    tailed = runner.invoke(app, ["errors", "tail", "--category", "sync"], env=env)
    assert tailed.exit_code == 0, tailed.output
    lines = tailed.output.strip().splitlines()
    assert len(lines) == 2
    assert "DUPLICATES_DETECTED" in lines[0] and "LOOKUP_POLICY_SKIP" in lines[1]
    assert "RATE_LIMIT" not in runner.invoke(app, ["errors", "tail", "--category", "RATE_LIMIT"], env=env).output

    bad = runner.invoke(app, ["errors", "tail", "--category", "NOPE"], env=env)
    assert bad.exit_code == 2
    assert bad.output.strip().startswith("error: invalid errors tail settings")


def test_errors_tail_passes_over_a_record_that_is_no_entry_and_shows_the_entries_after_it(
    services, prefix, registry
) -> None:
    make_topics(services, prefix)
    kafka = {"bootstrap.servers": services.bootstrap}
    with ErrorLog(kafka, registry, prefix=prefix) as error_log:
        error_log.record(lookup_policy_skip("before", mapping="attendance"))
    edit = {"edit_id": "e", "key": "ws-1|Contact:Email:a@example.org", "mapping": "members", "sobject": "Contact"}
    edit |= {"salesforce_id": "003A", "fields": ["Title"], "edited_at": PARKED_AT}
    edits = AvroEncoder(registry, SALESFORCE_EDITS.name(prefix), load_topic_schema(SALESFORCE_EDITS.base))
    another_schema = edits.encode("SalesforceEdit", edit)  # a valid record, of another topic
    producer = Producer({"bootstrap.servers": services.bootstrap})
    for value in (b"\x07 not avro", another_schema):
        producer.produce(ERRORS.name(prefix), value)
    assert producer.flush(10) == 0
    with ErrorLog(kafka, registry, prefix=prefix) as error_log:
        error_log.record(lookup_policy_skip("after", mapping="attendance"))

    unreadable: list[str] = []
    entries = list(tail(kafka, registry, prefix=prefix, last=None, on_unreadable=unreadable.append))
    assert [e.message for e in entries] == ["before", "after"]
    assert [u.split(": ", 1)[0] for u in unreadable] == [f"{ERRORS.name(prefix)}[0]@{n}" for n in (1, 2)]
    assert "SalesforceEdit record, not an ErrorLogEntry" in unreadable[1]

    app = typer.Typer()
    app.add_typer(errors_app, name="errors")
    env = {"KAFKA_BOOTSTRAP_SERVERS": services.bootstrap, "SCHEMA_REGISTRY_URL": services.registry}
    tailed = CliRunner().invoke(app, ["errors", "tail"], env={**env, "SFSYNC_TOPIC_PREFIX": prefix})
    assert tailed.exit_code == 0, tailed.output
    assert ["before" in line or "after" in line for line in tailed.stdout.splitlines()] == [True, True]
    assert tailed.stderr.count("skipped, not an error-log entry") == 2


def test_park_fails_loudly_when_kafka_cannot_take_the_record(services, prefix, originals) -> None:
    from sfsync.errors import DeliveryError

    dlq = DeadLetterQueue({"bootstrap.servers": services.bootstrap}, prefix=f"{prefix}missing.", delivery_timeout_s=3)
    with pytest.raises(DeliveryError):
        dlq.park(originals[0], classify(400, "STRING_TOO_LONG", "x"), stage=Stage.TASK_PUT)
