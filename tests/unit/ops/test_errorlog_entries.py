"""Error-log entries and DLQ context, without Kafka: classification, redaction, the Avro contract."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any, cast

import fastavro
import pytest

from sfsync.errors import (
    Category,
    DeliveryError,
    Level,
    RecordValidationError,
    ServiceUnavailableError,
    SkippableRecordError,
)
from sfsync.ops.dlq import (
    H_ATTEMPTS,
    H_EXC_MESSAGE,
    H_OFFSET,
    H_PARKED_AT,
    H_PARTITION,
    H_WORKSPACE,
    ErrorContext,
    ParkedRecord,
    ReplayFilter,
    decode_offsets,
    encode_offsets,
    short_stacktrace,
)
from sfsync.ops.errorlog import (
    AUTH_FAILED,
    LOOKUP_POLICY_SKIP,
    RECORD_NAME,
    SOURCE_OF_TRUTH_CONFLICT,
    ErrorLogEntry,
    SourceRef,
    entry_for,
    entry_of,
    lookup_policy_skip,
    rate_limit_pause,
    source_of_truth_conflict,
)
from sfsync.salesforce.errors import classify
from sfsync.schemas import SCHEMA_DIR
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.contract import ParentNotFoundError, UnsafeWriteError
from tests.kit import FakeRegistry

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("status", "code", "message", "category", "level", "retryable"),
    [
        # data errors: SYNC, parked, not retried
        (400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", Category.SYNC, Level.ERROR, False),
        (400, "STRING_TOO_LONG", "Title: data value too large", Category.SYNC, Level.ERROR, False),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "bad value", Category.SYNC, Level.ERROR, False),
        (400, "DUPLICATES_DETECTED", "Use one of these records?", Category.SYNC, Level.ERROR, False),
        (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "rule says no", Category.SYNC, Level.ERROR, False),
        (400, "CANNOT_EXECUTE_FLOW_TRIGGER", "flow failed", Category.SYNC, Level.ERROR, False),
        (400, "INVALID_FIELD", "No such column 'Foo__c' on sobject of type Contact", Category.SYNC, Level.ERROR, False),
        (404, "NOT_FOUND", "The requested resource does not exist", Category.SYNC, Level.ERROR, False),
        # transient: retried
        (400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access", Category.SYNC, Level.WARNING, True),
        (503, None, "Service Unavailable", Category.CONNECTION, Level.WARNING, True),
        (0, "TIMEOUT", "read timed out", Category.CONNECTION, Level.WARNING, True),
        (401, "INVALID_SESSION_ID", "Session expired or invalid", Category.CONNECTION, Level.WARNING, True),
        # limits
        (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", Category.RATE_LIMIT, Level.ERROR, True),
        (403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn", Category.RATE_LIMIT, Level.WARNING, True),
        # a human must act
        (403, "INSUFFICIENT_ACCESS_OR_READONLY", "no access", Category.CONNECTION, Level.ERROR, False),
    ],
)
def test_salesforce_errors_map_to_category_level_and_retryable(
    status, code, message, category, level, retryable
) -> None:
    entry = entry_for(classify(status, code, message), mapping="members", sobject="Contact", key="Contact:m1")
    assert (entry.category, entry.level, entry.retryable) == (category, level, retryable)
    assert entry.code == (code or f"HTTP_{status}")
    assert entry.details["http_status"] == str(status)
    assert (entry.mapping, entry.sobject, entry.record_key) == ("members", "Contact", "Contact:m1")


def test_data_error_names_the_field_salesforce_reported_and_the_record() -> None:
    error = classify(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", fields=["LastName"])
    refs = SourceRef("product.members", 3, 1042, "6c1f0a3e-0000-4000-8000-000000000001")
    entry = entry_for(error, mapping="members", sobject="Contact", key="Contact:m1", refs=refs, now=NOW)
    assert entry.field == "LastName"
    assert entry.source == refs
    assert entry.message == "Required fields are missing: [LastName]"
    assert entry.occurred_at == NOW
    assert entry_for(error, field="Override__c").field == "Override__c"


def test_oauth_refusal_is_auth_failed_with_salesforces_code_kept() -> None:
    entry = entry_for(classify(400, "invalid_grant", "expired access/refresh token"))
    assert (entry.category, entry.code, entry.level) == (Category.CONNECTION, AUTH_FAILED, Level.ERROR)
    assert entry.details["salesforce_code"] == "invalid_grant"


def test_retry_after_is_kept() -> None:
    entry = entry_for(classify(429, None, "slow down", retry_after=7.5))
    assert entry.category is Category.RATE_LIMIT
    assert entry.details["retry_after_s"] == "7.5"


@pytest.mark.parametrize(
    ("error", "category", "code", "retryable"),
    [
        (
            RecordValidationError("UserCreated", "member.email", "expected string"),
            Category.SYNC,
            "RECORD_VALIDATION",
            False,
        ),
        (SkippableRecordError("not Confluent wire format"), Category.SYNC, "RECORD_SKIPPED", False),
        (ServiceUnavailableError("Kafka did not answer"), Category.CONNECTION, "SERVICE_UNAVAILABLE", False),
        (DeliveryError([("t", "k", "timed out")]), Category.CONNECTION, "KAFKA_DELIVERY_FAILED", True),
    ],
)
def test_sfsync_errors_map_by_kind(error, category, code, retryable) -> None:
    entry = entry_for(error)
    assert (entry.category, entry.code, entry.retryable) == (category, code, retryable)


def test_record_validation_error_names_its_field() -> None:
    assert entry_for(RecordValidationError("UserCreated", "member.email", "x")).field == "member.email"


def test_an_error_with_its_own_code_keeps_it() -> None:
    class MappingRefusedError(SkippableRecordError):
        code = "PARENT_NOT_FOUND"

    assert entry_for(MappingRefusedError("no Campaign for event e1")).code == "PARENT_NOT_FOUND"


def test_secrets_never_reach_the_message() -> None:
    token = "00D5e000000abcd!AQ0AQH.somethinglong_tokenvalue"
    error = ServiceUnavailableError(
        f"GET https://svc:hunter2@example.com/x failed with Authorization: Bearer {token} and {token}"
    )
    entry = entry_for(error)
    assert "hunter2" not in entry.message
    assert token not in entry.message
    assert "[redacted]" in entry.message


def test_informational_entries() -> None:
    skip = lookup_policy_skip("no Contact for member m9: policy skip", mapping="attendance", sobject="CampaignMember")
    conflict = source_of_truth_conflict(
        "Title owned by Salesforce", mapping="members", field="Title", salesforce_id="003000000000001AAA"
    )
    assert (skip.level, skip.category, skip.code) == (Level.INFO, Category.SYNC, LOOKUP_POLICY_SKIP)
    assert (conflict.level, conflict.code, conflict.field) == (Level.INFO, SOURCE_OF_TRUTH_CONFLICT, "Title")
    pause = rate_limit_pause("pausing", until=NOW, now=NOW)
    assert pause.category is Category.RATE_LIMIT
    assert pause.details["paused_until"] == "2026-03-01T12:00:00+00:00"


def _round_trip(entry: ErrorLogEntry) -> dict:
    schema = load_topic_schema("sfsync.errors")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, entry.to_avro())
    buf.seek(0)
    return fastavro.schemaless_reader(buf, schema.parsed, None)


def test_entries_fit_the_avro_contract_and_come_back_equal() -> None:
    full = entry_for(
        classify(400, "STRING_TOO_LONG", "too long", fields=["Title", "Department"]),
        mapping="members",
        sobject="Contact",
        key="Contact:m1",
        refs=SourceRef("product.members", 2, 99, "6c1f0a3e-0000-4000-8000-000000000001"),
        salesforce_id="003000000000001AAA",
        now=NOW,
    )
    bare = rate_limit_pause("pausing", until=NOW, now=NOW)
    for entry in (full, bare):
        assert ErrorLogEntry.from_avro(_round_trip(entry)) == entry
    assert full.details["fields"] == "Title,Department"


def test_an_entry_names_its_workspace_and_one_written_before_workspaces_reads_as_none() -> None:
    entry = entry_for(classify(400, "STRING_TOO_LONG", "too long"), mapping="members", workspace="ws-7", now=NOW)
    assert ErrorLogEntry.from_avro(_round_trip(entry)).workspace_id == "ws-7"
    assert "workspace=ws-7" in entry.one_line(with_record=False)

    (current,) = load_topic_schema("sfsync.errors").schema  # the topic's one record
    before = {**current, "fields": [f for f in current["fields"] if f["name"] != "workspace_id"]}
    old = entry_for(classify(400, "STRING_TOO_LONG", "too long"), now=NOW).to_avro()
    del old["workspace_id"]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(before), old)
    buf.seek(0)
    read = fastavro.schemaless_reader(buf, fastavro.parse_schema(before), fastavro.parse_schema(current))
    assert ErrorLogEntry.from_avro(cast(dict[str, Any], read)).workspace_id is None


def test_released_snapshot_is_the_current_schema() -> None:
    released = json.loads((SCHEMA_DIR / "released" / "sfsync.errors.json").read_text())
    assert released == load_topic_schema("sfsync.errors").schema
    assert load_topic_schema("sfsync.errors").record_names == ("ErrorLogEntry",)


def test_one_line_names_what_and_where() -> None:
    entry = entry_for(
        classify(400, "REQUIRED_FIELD_MISSING", "Required fields are missing", fields=["LastName"]),
        mapping="members",
        key="Contact:m1",
        refs=SourceRef("product.members", 1, 5),
        now=NOW,
    )
    line = entry.one_line()
    assert line.startswith("2026-03-01T12:00:00.123Z ERROR")
    for part in ("SYNC", "REQUIRED_FIELD_MISSING", "mapping=members", "field=LastName", "key=Contact:m1"):
        assert part in line
    assert "at=product.members[1]@5" in line


# ---------------------------------------------------------------------- DLQ pure parts
def test_offset_ranges_round_trip() -> None:
    offsets = [1, 2, 3, 7, 9, 10, 42]
    assert encode_offsets(offsets) == "1-3,7,9-10,42"
    assert decode_offsets(encode_offsets(offsets)) == set(offsets)
    assert decode_offsets("") == set()
    assert decode_offsets("garbage,5") == {5}


def test_stacktrace_is_short_redacted_and_keeps_the_cause() -> None:
    def fail() -> None:
        try:
            raise ValueError("Bearer abc.def.ghi leaked " + "x" * 10_000)
        except ValueError as exc:
            raise SkippableRecordError("record refused") from exc

    with pytest.raises(SkippableRecordError) as info:
        fail()
    text = short_stacktrace(info.value)
    assert len(text) <= 4000
    assert "Bearer abc" not in text
    assert "ValueError" in text
    assert text.endswith("[truncated]")


def test_context_headers_parse_back() -> None:
    ctx = ErrorContext.from_headers(
        {
            "__connect.errors.topic": b"product.members",
            "__connect.errors.partition": b"4",
            "__connect.errors.offset": b"17",
            H_EXC_MESSAGE: b"bad",
            H_PARKED_AT: b"2026-03-01T12:00:00.123+00:00",
            "sfsync.errors.attempts": b"3",
        }
    )
    assert (ctx.topic, ctx.partition, ctx.offset, ctx.attempts) == ("product.members", 4, 17, 3)
    assert ctx.parked_at == NOW
    assert ctx.mapping is None


def test_a_parked_records_workspace_header_reads_back_and_filters_a_replay() -> None:
    ours = ErrorContext.from_headers({H_WORKSPACE: b"ws-7", "__connect.errors.topic": b"sfsync.writes"})
    before = ErrorContext.from_headers({"__connect.errors.topic": b"sfsync.writes"})  # parked before workspaces
    assert (ours.workspace, before.workspace) == ("ws-7", None)
    records = [ParkedRecord(0, n, b"k", b"v", (), ctx) for n, ctx in enumerate((ours, before))]
    assert [r.dlq_offset for r in records if ReplayFilter(workspace="ws-7").matches(r)] == [0]
    assert [r.dlq_offset for r in records if ReplayFilter().matches(r)] == [0, 1]


def test_the_sinks_own_refusals_are_filed_under_their_own_code_and_field() -> None:
    missing = entry_for(ParentNotFoundError("no Campaign Event_Id__c=evt-7", fields=["CampaignId"]))
    unsafe = entry_for(UnsafeWriteError("no idempotent key", code="NO_IDEMPOTENT_KEY", fields=["Email"]))

    assert (missing.category, missing.code, missing.field) == (Category.SYNC, "PARENT_NOT_FOUND", "CampaignId")
    assert (unsafe.category, unsafe.code, unsafe.field) == (Category.SYNC, "NO_IDEMPOTENT_KEY", "Email")


def test_dlq_context_headers_that_are_not_ours_read_as_unknown_instead_of_failing_the_listing() -> None:
    context = ErrorContext.from_headers(
        {H_PARTITION: b"--0", H_OFFSET: "١٢".encode(), H_ATTEMPTS: b"9" * 5000, H_PARKED_AT: b"yesterday"}
    )
    assert (context.partition, context.offset, context.attempts, context.parked_at) == (-1, -1, 0, None)
    assert ErrorContext.from_headers({H_PARTITION: b"-3", H_PARKED_AT: b"2026-03-01T12:00:00+00:00"}).partition == -3


def _wire(registry: FakeRegistry, topic: str, record: str, value: dict[str, Any]) -> bytes:
    return AvroEncoder(cast(SchemaRegistry, registry), topic, load_topic_schema(topic)).encode(record, value)


def test_a_record_of_another_schema_in_the_error_log_is_refused_as_skippable_not_read_as_an_entry() -> None:
    registry = FakeRegistry()
    decoder = AvroDecoder(cast(SchemaRegistry, registry))
    entry = rate_limit_pause("pausing", until=NOW, now=NOW)
    assert entry_of(decoder, _wire(registry, "sfsync.errors", RECORD_NAME, entry.to_avro())) == entry

    edit = {"edit_id": "e", "key": "Contact:Email:a@example.org", "mapping": "members", "sobject": "Contact"}
    edit |= {"salesforce_id": "003A", "fields": ["Title"], "edited_at": NOW}
    with pytest.raises(SkippableRecordError, match="SalesforceEdit record, not an ErrorLogEntry"):
        entry_of(decoder, _wire(registry, "sfsync.salesforce_edits", "SalesforceEdit", edit))
    with pytest.raises(SkippableRecordError):
        entry_of(decoder, b"not avro")
