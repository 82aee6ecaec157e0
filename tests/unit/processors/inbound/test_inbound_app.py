"""The inbound processor's glue without Kafka: decode, rules against the state table, encode, park."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sfsync.mapping import load_mappings
from sfsync.ops.dlq import OriginalRecord, Stage
from sfsync.processors.inbound.processor import InboundProcessor
from sfsync.processors.inbound.settings import load_inbound_settings
from tests.kit.serde import Decoder, Encoder

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
WRITTEN = {"FirstName": "Ada", "Title": "Engineer", "Member_Id__c": "u-1"}


def original(offset: int = 0) -> OriginalRecord:
    return OriginalRecord("salesforce.changes", 0, offset, b"k", b"v", ())


def result() -> dict[str, Any]:
    return {
        "write_id": "e-1:members:0", "key": "w-1|Contact:Email:ada@example.com", "mapping": "members",
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
    assert [(k, v.split(b"|")[0]) for k, v in edit.edits] == [(b"w-1|Contact:Email:ada@example.com", b"SalesforceEdit")]


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
    write = decoder.add("Write", {"key": "w-1|Contact:Email:ada@example.com", "sobject": "Contact"})  # sfsync.writes'
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
