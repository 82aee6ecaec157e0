"""The sink with Writes decoded in storage form (timestamps as epoch-ms ints), and its WriteResult encoder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import build
from sfsync.errors import RecordValidationError
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.contract import BatchOutcome, IncomingWrite
from sfsync.sinks.loop import WriteResultEncoder, write_decoder
from sfsync.sinks.merge import _millis, merge_writes
from sfsync.sinks.metrics import SinkMetrics
from tests.kit import FakeRegistry
from tests.kit.sink import T0, TOPIC, Recorder, fv, make_sink, member, runner_without_kafka

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def at(ms: int | dt.datetime) -> dt.datetime:
    return ms if isinstance(ms, dt.datetime) else EPOCH + dt.timedelta(milliseconds=ms)


def with_datetimes(write: dict[str, Any]) -> dict[str, Any]:
    """``write`` as the default decoder gives it: every timestamp a datetime."""
    fields = {k: {**v, "updated_at": at(v["updated_at"])} for k, v in write["fields"].items()}
    return {**write, "fields": fields, "source": {**write["source"], "occurred_at": at(write["source"]["occurred_at"])}}


def storage_form(write: dict[str, Any]) -> dict[str, Any]:
    return {**write, "source": {**write["source"], "occurred_at": T0 - 250}}


def results_encoder() -> tuple[FakeRegistry, AvroEncoder]:
    registry = FakeRegistry()
    return registry, AvroEncoder(registry, "sfsync.results", load_topic_schema("sfsync.results"))  # type: ignore[arg-type]


def a_result(**overrides: Any) -> dict[str, Any]:
    return {
        "write_id": "e1:members:0",
        "key": "ws-1|Contact:Email:a@example.com",
        "mapping": "members",
        "sobject": "Contact",
        "salesforce_id": "003000000000001AAA",
        "created": True,
        "fields": {"LastName": "Lovelace", "NumberOfEmployees": 12, "HasOptedOutOfEmail": False, "Title": None},
        "acknowledged_at": at(T0 + 1_234),
        "workspace_id": "w1",
        "source": {
            "topic": "product.members",
            "partition": 1,
            "offset": 9,
            "event_id": "e1",
            "event_type": "UserCreated",
            "occurred_at": T0,
        },
        **overrides,
    }


class Recording:
    """The real encoder, noting which of its methods ran."""

    def __init__(self, avro: AvroEncoder) -> None:
        self.avro = avro
        self.schema = avro.schema
        self.calls: list[str] = []

    def encode(self, record_name: str, value: Any) -> bytes:
        self.calls.append("encode")
        return self.avro.encode(record_name, value)

    def encode_checked(self, record_name: str, value: Any) -> bytes:
        self.calls.append("encode_checked")
        return self.avro.encode_checked(record_name, value)


# ---------------------------------------------------------------------- core
def test_millis_takes_ints_as_they_are_and_datetimes_as_before() -> None:
    assert _millis(T0) == T0 and type(_millis(T0)) is int
    assert _millis(at(T0)) == T0
    assert _millis(at(T0).replace(tzinfo=None)) == T0  # naive: UTC
    assert _millis(None) == 0


def test_merging_int_timestamps_gives_what_datetimes_gave() -> None:
    older = member(1, last="Old", at=T0 + 5)
    newer = member(1, last="New", at=T0 + 6, n=1)  # one millisecond newer: wins
    newer["fields"]["Title"] = fv("CTO", T0 + 1, "IF_EMPTY")
    late = member(1, last="Late but older", at=T0 + 4, n=2)

    def merged(writes: list[dict[str, Any]]) -> Any:
        (queue,) = merge_writes([IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate(writes)]).values()
        return [(s.op, s.fields, [w.offset for w in s.writes]) for s in queue]

    ints = merged([older, newer, late])
    assert ints == merged([with_datetimes(w) for w in (older, newer, late)])
    ((_, fields, offsets),) = ints
    assert fields["LastName"] == {"value": "New", "policy": "ALWAYS", "updated_at": T0 + 6} and offsets == [0, 1, 2]
    assert fields["Title"]["policy"] == "IF_EMPTY" and type(fields["Title"]["updated_at"]) is int


async def test_put_passes_int_timestamps_through_to_the_result() -> None:
    rec = Recorder()
    client, sink = make_sink(build(), rec)
    async with client:
        outcome = await sink.put([IncomingWrite(storage_form(member(1)), TOPIC, 0, 0)])
    (result,) = outcome.results
    assert result["source"]["occurred_at"] == T0 - 250 and result["created"] is True
    _, avro = results_encoder()
    data = WriteResultEncoder(avro).encode("WriteResult", result)
    as_before = {**result, "source": {**result["source"], "occurred_at": at(T0 - 250)}}
    assert data == avro.encode("WriteResult", as_before)  # the bytes the datetime form gave


async def test_results_carry_acknowledged_at_in_epoch_millis_and_are_encoded_as_they_are() -> None:
    rec = Recorder()
    client, sink = make_sink(build(), rec)  # its clock reads T0
    async with client:
        outcome = await sink.put([IncomingWrite(storage_form(member(i)), TOPIC, 0, i) for i in range(2)])
    assert [(r["acknowledged_at"], type(r["acknowledged_at"])) for r in outcome.results] == [(T0, int)] * 2
    _, avro = results_encoder()
    encoder = WriteResultEncoder(avro)
    for result in outcome.results:
        assert encoder._storage_form(result) is result  # in storage form already: not copied
        as_datetimes = {
            **result,
            "acknowledged_at": at(T0),
            "source": {**result["source"], "occurred_at": at(result["source"]["occurred_at"])},
        }
        assert encoder.encode("WriteResult", result) == avro.encode("WriteResult", as_datetimes)


async def test_names_are_checked_on_every_write_though_valid_ones_are_remembered() -> None:
    rec = Recorder()
    client, sink = make_sink(build(), rec)
    bad = member(2, n=1)
    bad["fields"]["Title) FROM User --"] = fv("x")
    async with client:
        for batch in range(2):
            writes = [member(1, n=2 * batch), {**bad, "write_id": f"bad-{batch}"}]
            outcome = await sink.put([IncomingWrite(w, TOPIC, 0, 2 * batch + i) for i, w in enumerate(writes)])
            assert [r["key"] for r in outcome.results] == ["ws-1|Contact:Email:member1@example.org"]
            assert [p.write.write["write_id"] for p in outcome.parked] == [f"bad-{batch}"]
            assert getattr(outcome.parked[0].error, "error_code", None) == "INVALID_NAME"


# ---------------------------------------------------------------------- worker codecs
def test_the_worker_decodes_writes_with_int_timestamps() -> None:
    registry = FakeRegistry()
    writes = AvroEncoder(registry, "sfsync.writes", load_topic_schema("sfsync.writes"))  # type: ignore[arg-type]
    data = writes.encode("Write", with_datetimes(member(1, at=T0 + 7)))
    decoder = write_decoder(registry)  # type: ignore[arg-type]
    name, write = decoder.decode(data)
    assert name == "Write"
    assert write["fields"]["LastName"]["updated_at"] == T0 + 7 and write["source"]["occurred_at"] == T0
    assert write == {**member(1, at=T0 + 7), "source": {**member(1)["source"], "occurred_at": T0}}
    assert AvroDecoder(registry).decode(data)[1]["source"]["occurred_at"] == at(T0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "result",
    [
        a_result(),
        a_result(source={**a_result()["source"], "occurred_at": at(T0)}),
        a_result(acknowledged_at=T0 + 1_234, fields={}),
        a_result(acknowledged_at=at(-1_500)),  # before the epoch: rounds down like fastavro
    ],
    ids=["int-occurred_at", "datetime-occurred_at", "int-acknowledged_at", "pre-epoch"],
)
def test_results_skip_the_upfront_check_and_keep_their_bytes(result: dict[str, Any]) -> None:
    registry, avro = results_encoder()
    recording = Recording(avro)
    data = WriteResultEncoder(recording).encode("WriteResult", result)  # type: ignore[arg-type]
    assert recording.calls == ["encode_checked"]
    assert data == avro.encode("WriteResult", result)
    decoded = AvroDecoder(registry).decode(data)[1]  # type: ignore[arg-type]
    assert decoded["salesforce_id"] == "003000000000001AAA" and decoded["fields"] == result["fields"]


@pytest.mark.parametrize(
    ("result", "field", "reason"),
    [
        (a_result(extra="x"), "extra", "not a field of this record"),
        (a_result(created="yes"), "created", "expected boolean"),
        (a_result(acknowledged_at=at(T0).replace(tzinfo=None)), "acknowledged_at", "timezone-aware"),
        (a_result(source={**a_result()["source"], "shard": 1}), "source.shard", "not a field of this record"),
    ],
    ids=["unknown-field", "created-not-bool", "naive-datetime", "unknown-source-field"],
)
def test_results_the_check_would_refuse_still_go_through_it(result: dict[str, Any], field: str, reason: str) -> None:
    _, avro = results_encoder()
    recording = Recording(avro)
    with pytest.raises(RecordValidationError) as raised:
        WriteResultEncoder(recording).encode("WriteResult", result)  # type: ignore[arg-type]
    assert recording.calls == ["encode"]
    assert raised.value.field == field and reason in raised.value.reason


def test_a_value_fastavro_refuses_is_explained_like_before() -> None:
    _, avro = results_encoder()
    bad = a_result(fields={"LastName": ["not", "a", "scalar"]})
    with pytest.raises(RecordValidationError) as fast:
        WriteResultEncoder(avro).encode("WriteResult", bad)
    with pytest.raises(RecordValidationError) as strict:
        avro.encode("WriteResult", bad)
    assert (fast.value.field, fast.value.reason) == (strict.value.field, strict.value.reason)
    assert fast.value.field == "fields['LastName']"


# ---------------------------------------------------------------------- latency metric
def test_latency_from_epoch_millis_matches_latency_from_a_datetime() -> None:
    m = SinkMetrics(CollectorRegistry())
    now = at(T0 + 2_500)
    assert m.acknowledged(T0, now=now) == 2.5
    assert m.acknowledged(at(T0), now=now) == 2.5
    assert m.acknowledged(at(T0).replace(tzinfo=None), now=now) == 2.5
    assert m.acknowledged(T0 + 9_000, now=now) == 0.0  # clock skew is not negative latency
    assert m.registry.get_sample_value("sfsync_end_to_end_latency_seconds_bucket", {"le": "2.5"}) == 4


def test_the_runner_observes_latency_of_writes_decoded_with_int_timestamps() -> None:
    metrics = SinkMetrics(CollectorRegistry())
    runner = runner_without_kafka(metrics)
    write = storage_form(member(1))
    ago = int((dt.datetime.now(dt.UTC) - EPOCH).total_seconds() * 1000) - 3_000
    result = a_result(source={**write["source"], "occurred_at": ago}, write_id=write["write_id"])
    runner.after_batch([IncomingWrite(write, TOPIC, 0, 0)], BatchOutcome(results=[result]))
    get = metrics.registry.get_sample_value
    assert get("sfsync_end_to_end_latency_seconds_count") == 1
    assert 2.9 <= (get("sfsync_end_to_end_latency_seconds_sum") or 0) < 60
    assert get("sfsync_writes_total", {"sobject": "Contact", "outcome": "created"}) == 1


def test_a_single_write_is_merged_from_its_decoded_fields_and_a_fold_leaves_them_as_they_were() -> None:
    first, second = member(1, last="Old", at=T0 + 5), member(1, last="New", at=T0 + 6, n=1)
    decoded = [{**w, "fields": {k: dict(v) for k, v in w["fields"].items()}} for w in (first, second)]
    before = [{k: dict(v) for k, v in w["fields"].items()} for w in decoded]
    ((alone,),) = merge_writes([IncomingWrite(decoded[0], TOPIC, 0, 0)]).values()
    assert alone.fields is decoded[0]["fields"]  # storage form: merged as decoded, nothing copied
    ((folded,),) = merge_writes([IncomingWrite(w, TOPIC, 0, i) for i, w in enumerate(decoded)]).values()
    assert folded.fields["LastName"]["value"] == "New" and folded.fields is not decoded[0]["fields"]
    assert [w["fields"] for w in decoded] == before  # the writes' own maps are untouched
    dated = with_datetimes(first)
    ((normalised,),) = merge_writes([IncomingWrite(dated, TOPIC, 0, 0)]).values()
    assert normalised.fields is not dated["fields"] and normalised.fields == first["fields"]
    no_policy = {**first, "fields": {"LastName": {"value": "X", "updated_at": T0}}}
    ((defaulted,),) = merge_writes([IncomingWrite(no_policy, TOPIC, 0, 0)]).values()
    assert defaulted.fields == {"LastName": fv("X", T0, "ALWAYS")} and defaulted.if_empty == ()


def test_a_segment_names_its_if_empty_fields_in_field_order_whether_merged_as_decoded_or_normalised() -> None:
    write = member(1, last="Lovelace", at=T0 + 5)
    fields = {
        "Title": fv("Eng", T0, "IF_EMPTY"),
        "LastName": fv("Lovelace", T0),
        "Phone": fv(None, T0 + 1, "IF_EMPTY"),
        "Email": fv("a@example.com", T0),
    }
    decoded = {**write, "fields": fields}
    ((as_decoded,),) = merge_writes([IncomingWrite(decoded, TOPIC, 0, 0)]).values()
    assert as_decoded.fields is fields
    assert as_decoded.if_empty == ("Title", "Phone")
    dated = with_datetimes(decoded)
    ((normalised,),) = merge_writes([IncomingWrite(dated, TOPIC, 0, 0)]).values()
    assert normalised.fields is not dated["fields"]
    assert normalised.if_empty == ("Title", "Phone")
    # the check stops at the first value not in storage form: the names come from the normalised copy
    mixed = {**decoded, "fields": {**fields, "Email": {**fields["Email"], "updated_at": at(T0)}}}
    ((copied,),) = merge_writes([IncomingWrite(mixed, TOPIC, 0, 0)]).values()
    assert copied.if_empty == ("Title", "Phone")
    none = {**decoded, "fields": {"LastName": fv("Lovelace", T0)}}
    ((plain,),) = merge_writes([IncomingWrite(none, TOPIC, 0, 0)]).values()
    assert plain.if_empty == ()


# ---------------------------------------------------------------------- the contract's IncomingWrite
def test_an_incoming_write_is_built_with_every_field_and_stays_frozen_comparable_and_hashable() -> None:
    full = IncomingWrite({"key": "k"}, TOPIC, 3, 7, b"k", b"v", (("h", b"1"),))
    assert [(f.name, getattr(full, f.name)) for f in dataclasses.fields(IncomingWrite)] == [
        ("write", {"key": "k"}),
        ("topic", TOPIC),
        ("partition", 3),
        ("offset", 7),
        ("key", b"k"),
        ("value", b"v"),
        ("headers", (("h", b"1"),)),
    ]
    # the hand-written __init__ takes exactly the dataclass's fields, with the same defaults
    assert list(inspect.signature(IncomingWrite).parameters) == [f.name for f in dataclasses.fields(IncomingWrite)]
    bare = IncomingWrite({"key": "k"}, TOPIC, 3, 7)
    assert (bare.key, bare.value, bare.headers) == (None, None, ())
    assert dataclasses.replace(full, key=None, value=None, headers=()) == bare
    with pytest.raises(dataclasses.FrozenInstanceError):
        bare.offset = 8  # type: ignore[misc]
    unhashed = IncomingWrite(None, TOPIC, 3, 7)  # type: ignore[arg-type]
    assert hash(unhashed) == hash(IncomingWrite(None, TOPIC, 3, 7))  # type: ignore[arg-type]
