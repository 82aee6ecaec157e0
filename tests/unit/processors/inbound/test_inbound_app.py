"""The inbound processor's glue without Kafka: decode, rules against the state table, encode, park."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import time
from typing import Any

import fastavro
import pytest

from sfsync.errors import SkippableRecordError
from sfsync.mapping import load_mappings
from sfsync.ops.dlq import OriginalRecord, Stage
from sfsync.processors.inbound.processor import EchoHold, InboundProcessor, ResultsProgress
from sfsync.processors.inbound.settings import load_inbound_settings
from sfsync.serde.schema import load_topic_schema

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
WRITTEN = {"FirstName": "Ada", "Title": "Engineer", "Member_Id__c": "u-1"}


class Decoder:
    """Bytes -> the record registered under them (anything else is not Avro)."""

    def __init__(self) -> None:
        self.records: dict[bytes, tuple[str, dict[str, Any]]] = {}

    def add(self, name: str, value: dict[str, Any]) -> bytes:
        data = f"rec-{len(self.records)}".encode()
        self.records[data] = (name, value)
        return data

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if data not in self.records:
            raise SkippableRecordError("not Confluent wire format")
        return self.records[data]


class Encoder:
    """Writes with the topic's real schema (so a value that does not fit fails as it would)."""

    def __init__(self, topic: str = "product.members.inbound") -> None:
        self.topic = load_topic_schema(topic)

    def encode(self, record: str, value: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self.topic.branches[record][1], value)
        except Exception as exc:
            raise SkippableRecordError(str(exc)) from exc
        return record.encode() + b"|" + buf.getvalue()


def original(offset: int = 0) -> OriginalRecord:
    return OriginalRecord("salesforce.changes", 0, offset, b"k", b"v", ())


def result() -> dict[str, Any]:
    return {
        "write_id": "e-1:members:0", "key": "Contact:Email:ada@example.com", "mapping": "members",
        "sobject": "Contact", "salesforce_id": "003A", "created": True, "fields": WRITTEN,
        "acknowledged_at": T0, "workspace_id": "w-1",
        "source": {"topic": "t", "partition": 0, "offset": 0, "event_id": "e", "event_type": "UserCreated",
                   "occurred_at": T0},
    }  # fmt: skip


def change(fields: dict[str, Any], minutes: int = 1) -> dict[str, Any]:
    at = T0 + dt.timedelta(minutes=minutes)
    return {
        "change_id": f"Contact:003A:{minutes}", "sobject": "Contact", "id": "003A", "change_type": "UPDATE",
        "fields": fields, "system_modstamp": at, "last_modified_date": at, "last_modified_by_id": "005A",
        "polled_at": at,
    }  # fmt: skip


def test_results_fill_the_table_and_changes_are_judged_against_it() -> None:
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings())
    written: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    linked = processor.on_result(decoder.add("WriteResult", result()), original(), written)
    assert written["003A"]["member_id"] == "u-1"
    assert [k for k, _ in linked.sends] == [b"u-1"] and linked.sends[0][1].startswith(b"MemberIdentityLink|")

    echo = processor.on_change(decoder.add("Change", change(dict(WRITTEN))), original(1), written, seen)
    assert echo.sends == [] and processor.counts["echo"] == 2  # FirstName, Title
    edit = processor.on_change(
        decoder.add("Change", change({**WRITTEN, "Title": "Countess"}, 2)), original(2), written, seen
    )
    assert [v.split(b"|")[0] for _, v in edit.sends] == [b"MemberFieldUpdate"]
    assert seen["003A"]["seen"]["Title"]["value"] == "Countess"
    assert "seen" not in written["003A"]  # each side keeps its own table
    assert processor.counts["sent"] == 2
    assert edit.edits == []  # no encoder for sfsync.salesforce_edits: not sent


def test_a_delivered_edit_goes_to_the_salesforce_edits_topic_under_the_records_write_key() -> None:
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings(), edits_encoder=Encoder("sfsync.salesforce_edits"))
    written: dict[str, Any] = {}
    processor.on_result(decoder.add("WriteResult", result()), original(), written)
    edit = processor.on_change(
        decoder.add("Change", change({**WRITTEN, "Title": "Countess"}, 2)), original(2), written, {}
    )
    assert [v.split(b"|")[0] for _, v in edit.sends] == [b"MemberFieldUpdate"]
    assert [(k, v.split(b"|")[0]) for k, v in edit.edits] == [(b"Contact:Email:ada@example.com", b"SalesforceEdit")]


def test_undecodable_records_are_parked_for_the_dlq() -> None:
    processor = InboundProcessor(Decoder(), Encoder(), load_mappings())
    for handled in (
        processor.on_change(b"\x07 garbage", original(), {}, {}),
        processor.on_result(b"\x07 garbage", original(), {}),
    ):
        assert handled.sends == [] and [p.stage for p in handled.parked] == [Stage.VALUE_CONVERTER]
        assert handled.parked[0].original.value == b"v"
    assert processor.counts["parked"] == 2


def test_a_record_of_another_schema_is_parked_not_read_as_a_result_or_a_change() -> None:
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings())
    write = decoder.add("Write", {"key": "Contact:Email:ada@example.com", "sobject": "Contact"})  # sfsync.writes'
    for handled in (processor.on_result(write, original(), {}), processor.on_change(write, original(1), {}, {})):
        assert handled.sends == [] and [p.stage for p in handled.parked] == [Stage.VALUE_CONVERTER]
        assert "records, not Write" in str(handled.parked[0].reason)
    assert processor.counts["parked"] == 2


def test_a_failing_inbound_filter_parks_the_change_with_its_mapping() -> None:
    mappings = load_mappings()
    members = mappings.get("members")
    assert members is not None
    members.inbound_filter = "record.Missing__c == true"  # reads a field the record does not have
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), mappings)
    written: dict[str, Any] = {}
    processor.on_result(decoder.add("WriteResult", result()), original(), written)
    handled = processor.on_change(decoder.add("Change", change({"Title": "x"})), original(1), written, {})
    assert handled.sends == []
    assert [(p.stage, p.mapping) for p in handled.parked] == [(Stage.TRANSFORMATION, "members")]


def test_settings_have_their_own_prefix_and_app_id(monkeypatch: Any) -> None:
    monkeypatch.setenv("SFSYNC_PROCESSOR_APP_ID", "outbound-app")
    monkeypatch.setenv("SFSYNC_INBOUND_COMMIT_INTERVAL_S", "0.5")
    settings = load_inbound_settings()
    assert settings.app_id == "sfsync-inbound" and settings.commit_interval_s == 0.5
    assert settings.processing_guarantee == "at_least_once"


def test_metrics_count_echoes_conflicts_outputs_and_latency() -> None:
    from prometheus_client import CollectorRegistry

    from sfsync.processors.inbound.metrics import InboundMetrics

    registry = CollectorRegistry()
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings(), metrics=InboundMetrics(registry))
    written: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    processor.on_result(decoder.add("WriteResult", result()), original(), written)
    processor.on_change(decoder.add("Change", change(dict(WRITTEN))), original(1), written, seen)
    processor.on_change(decoder.add("Change", change({**WRITTEN, "Title": "Countess"}, 2)), original(2), written, seen)
    processor.on_change(b"garbage", original(3), written, seen)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("sfsync_inbound_results_in_total") == 1
    assert value("sfsync_inbound_changes_in_total", change_type="UPDATE") == 2
    assert value("sfsync_inbound_changes_in_total", change_type="unknown") == 1
    assert value("sfsync_inbound_echoes_suppressed_total") == 2
    assert value("sfsync_inbound_conflicts_total", policy="last_write_wins", winner="salesforce") == 1
    assert value("sfsync_inbound_records_out_total", record="MemberFieldUpdate") == 1
    assert value("sfsync_inbound_records_out_total", record="MemberIdentityLink") == 1
    assert value("sfsync_inbound_latency_seconds_count") == 1
    assert value("sfsync_inbound_dlq_records_total", stage="VALUE_CONVERTER") == 1


def test_writer_user_ids_come_comma_separated_or_as_json_and_are_checked(monkeypatch: Any) -> None:
    from sfsync.errors import ConfigError

    monkeypatch.setenv("SFSYNC_INBOUND_WRITER_USER_IDS", "005000000000007AAA, 005000000000008")
    assert load_inbound_settings().writer_user_ids == ["005000000000007AAA", "005000000000008"]
    monkeypatch.setenv("SFSYNC_INBOUND_WRITER_USER_IDS", '["005000000000007AAA"]')
    assert load_inbound_settings().writer_user_ids == ["005000000000007AAA"]
    monkeypatch.setenv("SFSYNC_INBOUND_WRITER_USER_IDS", "integration@sfsync")
    with pytest.raises(ConfigError, match="writer_user_ids"):
        load_inbound_settings()


WRITER = "005000000000007AAA"


def writers_change(fields: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {
        "change_id": f"Contact:003A:{at.timestamp()}", "sobject": "Contact", "id": "003A", "change_type": "UPDATE",
        "fields": fields, "system_modstamp": at, "last_modified_date": at, "last_modified_by_id": WRITER,
        "polled_at": at,
    }  # fmt: skip


async def test_a_held_change_is_judged_as_soon_as_its_result_arrives() -> None:
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings(), writers={WRITER}, hold_ms=20_000)
    written: dict[str, Any] = {}
    signal = EchoHold(processor, written)
    now = dt.datetime.now(dt.UTC)
    echo, handled = processor.decode_change(decoder.add("Change", writers_change(dict(WRITTEN), now)), original(1))
    assert echo is not None and handled.sends == []
    assert processor.hold_until(echo, written) is not None  # no result yet: it may be sfsync's own write

    async def result_arrives() -> None:
        await asyncio.sleep(0.2)
        late = {**result(), "acknowledged_at": now + dt.timedelta(milliseconds=50)}
        processor.on_result(decoder.add("WriteResult", late), original(), written)
        signal.notify()

    started = time.monotonic()
    arrival = asyncio.create_task(result_arrives())
    assert await signal.hold(echo) is True
    await arrival
    assert time.monotonic() - started < 5  # woken by the result, not by the 20 s bound
    judged = processor.judge(echo, original(1), written, {})
    assert judged.sends == [] and processor.counts["echo"] == 2  # recognised as sfsync's own write


async def test_a_held_change_whose_result_never_comes_is_judged_at_the_bound_and_delivered() -> None:
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings(), writers={WRITER}, hold_ms=300)
    written: dict[str, Any] = {}
    processor.on_result(decoder.add("WriteResult", result()), original(), written)  # acknowledged at T0
    flow = writers_change({**WRITTEN, "Title": "Set by a flow"}, dt.datetime.now(dt.UTC))
    started = time.monotonic()
    assert await EchoHold(processor, written).hold(flow) is True
    assert 0.2 < time.monotonic() - started < 5
    judged = processor.judge(flow, original(1), written, {})
    assert [v.split(b"|")[0] for _, v in judged.sends] == [b"MemberFieldUpdate"]
    assert WRITER in processor.writers


def test_the_writer_is_learned_from_a_recognised_echo() -> None:
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings(), hold_ms=30_000)
    written: dict[str, Any] = {}
    processor.on_result(decoder.add("WriteResult", result()), original(), written)  # acknowledged at T0
    echo = writers_change(dict(WRITTEN), T0 - dt.timedelta(milliseconds=200))
    assert processor.hold_until(echo, written) is None  # nobody known to write as sfsync yet
    processor.on_change(decoder.add("Change", echo), original(1), written, {})
    assert processor.writers == {WRITER}
    later = writers_change({**WRITTEN, "Title": "x"}, T0 + dt.timedelta(minutes=5))
    assert processor.hold_until(later, written) is not None  # now the writer's next change waits


class TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class FakeFaustConsumer:
    """Faust's consumer as EchoHold reads it: two results partitions and one changes partition."""

    def __init__(self, ends: dict[int, int], positions: dict[int, int]) -> None:
        self.tps = [TP("sfsync.results", p) for p in ends] + [TP("salesforce.changes", 0)]
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[Any]:
        return set(self.tps)

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        assert all(tp.topic == "sfsync.results" for tp in tps)
        return {tp: self.ends[tp.partition] for tp in tps}

    async def position(self, tp: Any) -> int:
        return self.positions[tp.partition]


async def test_a_backlog_change_past_its_bound_waits_for_the_results_already_in_kafka() -> None:
    """After a restart, a change polled long ago comes with its result still unread in the results
    backlog: it waits for that backlog (not for the bound), then is judged an echo."""
    decoder = Decoder()
    processor = InboundProcessor(decoder, Encoder(), load_mappings(), writers={WRITER}, hold_ms=10_000)
    written: dict[str, Any] = {}
    consumer = FakeFaustConsumer(ends={0: 40, 1: 7}, positions={0: 12, 1: 7})  # partition 1: nothing left to read
    results = ResultsProgress(lambda: consumer, "sfsync.results")
    hold = EchoHold(processor, written, results)
    polled = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    old = writers_change(dict(WRITTEN), polled)
    assert processor.hold_until(old, written) is not None  # uncovered, its bound long past

    async def backlog() -> None:
        for offset in range(12, 40):  # the results agent works through partition 0
            await asyncio.sleep(0.01)
            if offset == 30:  # this one covers the change
                late = {**result(), "acknowledged_at": polled + dt.timedelta(milliseconds=50)}
                processor.on_result(decoder.add("WriteResult", late), original(offset), written)
            hold.notify(0, offset)

    started = time.monotonic()
    task = asyncio.create_task(backlog())
    assert await hold.hold(old) is True
    await task
    assert time.monotonic() - started < 5
    assert results.read[0] >= 31  # released by the covering result, not by the bound
    assert processor.judge(old, original(1), written, {}).sends == []  # its result came first: an echo
    assert await results.reached({TP("sfsync.results", 1): 7})  # never read this run: where the consumer stands
    assert not await results.reached({TP("sfsync.results", 0): 41})


async def test_a_past_bound_change_with_no_results_behind_is_judged_at_once() -> None:
    processor = InboundProcessor(Decoder(), Encoder(), load_mappings(), writers={WRITER}, hold_ms=10_000)
    consumer = FakeFaustConsumer(ends={0: 5}, positions={0: 5})
    hold = EchoHold(processor, {}, ResultsProgress(lambda: consumer, "sfsync.results"))
    old = writers_change(dict(WRITTEN), dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    started = time.monotonic()
    assert await hold.hold(old) is False
    assert time.monotonic() - started < 1


class SilentConsumer(FakeFaustConsumer):
    """A consumer that never answers: aiokafka's ``position()`` waits, unbounded, for a valid position."""

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def position(self, tp: Any) -> int:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_consumer_that_does_not_answer_never_holds_a_change_up() -> None:
    """The restarted inbound app of the e2e test stopped judging changes: its hold waited on the consumer."""
    consumer = SilentConsumer(ends={0: 5, 1: 9}, positions={})
    results = ResultsProgress(lambda: consumer, "sfsync.results", ask_timeout_s=0.2)
    started = time.monotonic()
    assert await results.end_offsets() == {}  # unanswered: nothing to wait for
    assert await results.reached({TP("sfsync.results", 0): 5, TP("sfsync.results", 1): 9})  # not waited on
    results.folded(0, 1)
    assert not await results.reached({TP("sfsync.results", 0): 5})  # what was folded still counts, without asking
    assert time.monotonic() - started < 2
    processor = InboundProcessor(Decoder(), Encoder(), load_mappings(), writers={WRITER}, hold_ms=1_500)
    hold = EchoHold(processor, {}, ResultsProgress(lambda: consumer, "sfsync.results", ask_timeout_s=0.2))
    old = writers_change(dict(WRITTEN), dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    started = time.monotonic()
    assert await hold.hold(old) is False  # past its bound, no results known to wait for: judged now
    assert time.monotonic() - started < 1
