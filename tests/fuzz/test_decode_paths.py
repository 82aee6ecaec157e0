"""Arbitrary bytes into every consumer's decode path: each record ends decoded or parked, never as an
unhandled exception (a crash loop on that record after every restart).

Values are arbitrary bytes, and near misses of the Confluent wire format: the magic byte and a known
schema id before a random body, valid records cut short or with a byte changed, a valid record of
another topic's schema, an id the registry never handed out. The registry is the kit's in-memory one
with every topic's schema registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import random
import struct
from collections.abc import MutableMapping
from typing import Any, cast

import fastavro
from fastavro.utils import generate_one
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsync.cli.ops import parked_line
from sfsync.errors import SkippableRecordError
from sfsync.keys import person_identity
from sfsync.mapping import load_mappings
from sfsync.ops.dlq import (
    H_ATTEMPTS,
    H_CATEGORY,
    H_CLASS,
    H_CODE,
    H_EXC_CLASS,
    H_EXC_MESSAGE,
    H_EXC_STACKTRACE,
    H_FIELD,
    H_MAPPING,
    H_OFFSET,
    H_PARKED_AT,
    H_PARTITION,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    H_STAGE,
    H_TOPIC,
    ErrorContext,
    OriginalRecord,
    ParkedRecord,
)
from sfsync.ops.errorlog import ErrorLogEntry, entry_of
from sfsync.processors.inbound.processor import InboundProcessor
from sfsync.processors.outbound.edits import learn_edit
from sfsync.processors.outbound.processor import Processor
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.contract import BatchOutcome, IncomingWrite
from sfsync.sinks.loop import REQUIRED_WRITE_FIELDS, SinkWorker, write_decoder
from sfsync.sinks.settings import SinkSettings
from sfsync.sources.rules import Checkpoint
from sfsync.topics import (
    CHANGES,
    ERRORS,
    IDENTITIES,
    MEMBERS_INBOUND,
    PRODUCT_TOPICS,
    RESULTS,
    SALESFORCE_EDITS,
    WRITES,
)
from tests.kit import FakeConsumer, FakeMessage, FakeProducer, FakeRegistry
from tests.kit.sink import ByKey, Recorder

TOPICS = [*(t.base for t in PRODUCT_TOPICS), WRITES.base, RESULTS.base, CHANGES.base, MEMBERS_INBOUND.base]
TOPICS += [SALESFORCE_EDITS.base, ERRORS.base, IDENTITIES.base]

REGISTRY = FakeRegistry()
ENCODERS = {t: AvroEncoder(cast(SchemaRegistry, REGISTRY), t, load_topic_schema(t)) for t in TOPICS}
IDS = {t: e.schema_id for t, e in ENCODERS.items()}
HEADER = struct.Struct(">bI")


def _valid_records() -> dict[str, list[bytes]]:
    """Per topic, two records of each of its record types, as their producers write them (random values
    from the schema, drawn once with a fixed seed so every run fuzzes around the same records)."""
    state = random.getstate()
    random.seed(12)
    try:
        out: dict[str, list[bytes]] = {}
        for topic, encoder in ENCODERS.items():
            header = HEADER.pack(0, encoder.schema_id)
            for index, branch, _plain in encoder.schema.branches.values():
                for _ in range(2):
                    buf = io.BytesIO()
                    fastavro.schemaless_writer(buf, branch, generate_one(branch))
                    out.setdefault(topic, []).append(header + index + buf.getvalue())
        return out
    finally:
        random.setstate(state)


VALID = _valid_records()
ALL_VALID = [v for values in VALID.values() for v in values]


@st.composite
def near_misses(draw: st.DrawFn, topic: str | None = None) -> bytes:
    """Bytes that look like the Confluent wire format for ``topic`` (None: any topic), but may not be it."""
    pool = VALID[topic] if topic is not None else ALL_VALID
    valid = draw(st.sampled_from(pool))
    kind = draw(st.sampled_from(["body", "truncated", "flipped", "other", "unknown", "extended", "valid"]))
    if kind == "body":  # the magic byte and a known id before anything
        schema_id = IDS[topic] if topic is not None else draw(st.sampled_from(sorted(IDS.values())))
        return HEADER.pack(0, schema_id) + draw(st.binary(max_size=300))
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "flipped":
        at = draw(st.integers(0, len(valid) - 1))
        return valid[:at] + bytes([draw(st.integers(0, 255))]) + valid[at + 1 :]
    if kind == "other":  # a valid record of any topic's schema
        return draw(st.sampled_from(ALL_VALID))
    if kind == "unknown":  # an id the registry never handed out
        return HEADER.pack(0, draw(st.integers(0, 2**32 - 1).filter(lambda i: i not in REGISTRY.schemas))) + valid[5:]
    if kind == "extended":
        return valid + draw(st.binary(min_size=1, max_size=20))
    return valid


def wire_values(topic: str | None = None) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=400), near_misses(topic))


def decoded_or_skipped(decode: Any, value: bytes) -> tuple[str, dict[str, Any]] | SkippableRecordError:
    """What ``decode(value)`` gave: a decoded record, or the SkippableRecordError it raised (anything else fails)."""
    try:
        name, record = decode(value)
    except SkippableRecordError as exc:
        refused = exc
    else:
        assert isinstance(name, str) and name and isinstance(record, dict)
        return name, record
    assert str(refused)  # a reason the DLQ and the error log can carry
    return refused


# ---------------------------------------------------------------------------------------------- the codec
@given(value=wire_values(), logical_types=st.booleans())
def test_the_avro_decoder_decodes_or_refuses_a_record_as_skippable(value: bytes, logical_types: bool) -> None:
    decoder = AvroDecoder(cast(SchemaRegistry, REGISTRY), logical_types=logical_types)
    decoded_or_skipped(decoder.decode, value)


@given(value=st.sampled_from(ALL_VALID), logical_types=st.booleans())
def test_every_valid_record_decodes(value: bytes, logical_types: bool) -> None:
    decoder = AvroDecoder(cast(SchemaRegistry, REGISTRY), logical_types=logical_types)
    assert not isinstance(decoded_or_skipped(decoder.decode, value), SkippableRecordError)


# ---------------------------------------------------------------------------------------------- the sink's loop
class AcceptingSink:
    """A sink that takes every write it is handed (what matters here is what reaches it)."""

    def __init__(self) -> None:
        self.writes: list[IncomingWrite] = []

    async def put(self, writes: Any) -> BatchOutcome:
        self.writes.extend(writes)
        return BatchOutcome()


async def _no_sleep(seconds: float) -> None:
    pass


@settings(max_examples=max(25, settings.default.max_examples // 4))
@given(values=st.lists(st.one_of(st.none(), wire_values(WRITES.base)), min_size=1, max_size=8))
def test_the_sink_parks_every_record_it_cannot_carry_out_and_goes_on(values: list[bytes | None]) -> None:
    good = VALID[WRITES.base][0]  # after the fuzzed records: the loop must still reach it
    messages = [
        FakeMessage(topic=WRITES.base, partition=0, offset=n, key=b"k%d" % n, value=v)
        for n, v in enumerate([*values, good])
    ]
    consumer, producer, rec, sink = FakeConsumer(messages), FakeProducer(), Recorder(), AcceptingSink()
    worker = SinkWorker(
        sink,
        settings=SinkSettings(batch_size=4, batch_linger_s=0.01, poll_timeout_s=0.01),
        consumer=consumer,
        producer=producer,
        decoder=write_decoder(cast(SchemaRegistry, REGISTRY)),
        encoder=ByKey({}),
        identity_encoder=ByKey({}),
        on_parked=rec.park,
        sleep=_no_sleep,
    )
    consumer.on_idle = worker.stopping.set

    asyncio.run(asyncio.wait_for(worker.run(max_batches=20), 30))

    handed = {w.offset for w in sink.writes}
    parked = {w.offset for w, _ in rec.parked}
    tombstones = {n for n, v in enumerate(values) if v is None}
    assert handed | parked | tombstones == set(range(len(messages)))  # each record: written, parked or a tombstone
    assert not handed & parked
    assert len(values) in handed  # the good record after them
    for w in sink.writes:
        assert all(isinstance(w.write.get(f), str) and w.write[f] for f in REQUIRED_WRITE_FIELDS)
    for w, error in rec.parked:
        assert isinstance(error, SkippableRecordError) and str(error)
        assert w.value == messages[w.offset].value()  # the original bytes go to the DLQ
    assert consumer.commits == {0: len(messages)}  # past every record


# ---------------------------------------------------------------------------------------------- the outbound processor
PROCESSOR = Processor(
    AvroDecoder(cast(SchemaRegistry, REGISTRY)),
    ENCODERS[WRITES.base],
    load_mappings(),
)


@given(value=st.one_of(st.none(), wire_values(PRODUCT_TOPICS[0].base)), topic=st.sampled_from(PRODUCT_TOPICS))
def test_the_outbound_processor_plans_or_parks_every_product_record(value: bytes | None, topic: Any) -> None:
    handled = PROCESSOR.handle(value, topic.base, 0, 7, key=b"k", clock={})
    for parked in handled.parked:
        assert parked.original.value == value and str(parked.reason)
    if not handled.writes:
        return
    decoder = AvroDecoder(cast(SchemaRegistry, REGISTRY))
    for key, data in handled.writes:
        name, write = decoder.decode(data)
        assert name == "Write" and write["key"].encode() == key


@given(value=wire_values(IDENTITIES.base))
def test_the_outbound_identities_learn_from_an_identity_or_park_it(value: bytes) -> None:
    outcome = decoded_or_skipped(AvroDecoder(cast(SchemaRegistry, REGISTRY)).decode, value)
    if not isinstance(outcome, SkippableRecordError):
        entry = person_identity(outcome[1])
        assert entry is None or (isinstance(entry[0], str) and len(entry[1]) == 2)


@given(value=st.one_of(st.none(), wire_values(SALESFORCE_EDITS.base)))
def test_the_outbound_processor_learns_a_salesforce_edit_or_parks_it(value: bytes | None) -> None:
    clock: MutableMapping[str, Any] = {}
    learnt = learn_edit(AvroDecoder(cast(SchemaRegistry, REGISTRY)), value, clock)
    assert learnt or not clock


# ---------------------------------------------------------------------------------------------- the inbound processor
def _inbound() -> InboundProcessor:
    registry = cast(SchemaRegistry, REGISTRY)
    return InboundProcessor(
        AvroDecoder(registry),
        ENCODERS[MEMBERS_INBOUND.base],
        load_mappings(),
        edits_encoder=ENCODERS[SALESFORCE_EDITS.base],
    )


INBOUND = _inbound()


def _original(topic: str, value: bytes | None) -> OriginalRecord:
    return OriginalRecord(topic, 0, 3, b"k", value)


@given(value=st.one_of(st.none(), wire_values(RESULTS.base)))
def test_the_inbound_processor_folds_in_a_result_or_parks_it(value: bytes | None) -> None:
    handled = INBOUND.on_result(value, _original(RESULTS.base, value), {})
    for parked in handled.parked:
        assert parked.original.value == value and str(parked.reason)


@given(value=st.one_of(st.none(), wire_values(CHANGES.base)))
def test_the_inbound_processor_judges_a_change_or_parks_it(value: bytes | None) -> None:
    original = _original(CHANGES.base, value)
    change, handled = INBOUND.decode_change(value, original)
    if change is None:
        assert handled.parked and str(handled.parked[0].reason)
        return
    INBOUND.hold_until(change, {})
    judged = INBOUND.judge(change, original, {}, {})
    for parked in judged.parked:
        assert str(parked.reason)


# ---------------------------------------------------------------------------------------------- the ops readers
@given(value=st.one_of(st.none(), wire_values(ERRORS.base)))
def test_errors_tail_reads_an_entry_or_refuses_it_as_skippable(value: bytes | None) -> None:
    try:
        entry = entry_of(AvroDecoder(cast(SchemaRegistry, REGISTRY)), value)
    except SkippableRecordError as exc:
        refused = exc
    else:
        assert isinstance(entry, ErrorLogEntry) and entry.one_line()
        return
    assert str(refused)


@given(
    values=st.dictionaries(
        st.sampled_from(["Contact", "Contact#known/00", "Contact#known/31", "Lead"]),
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from([b"[]", b"{}", b"1", b"null", b'"x"', b'{"version": 1}', b'{"version": 1, "seen": [1]}']),
        ),
        max_size=4,
    )
)
def test_a_poller_checkpoint_reads_or_fails_as_the_poller_reports_it(values: dict[str, bytes]) -> None:
    # read_checkpoint turns ValueError, KeyError and TypeError into a FatalError naming the checkpoint
    with contextlib.suppress(ValueError, KeyError, TypeError):
        Checkpoint.from_records("Contact", values)


CONTEXT_HEADERS = [
    H_TOPIC, H_PARTITION, H_OFFSET, H_STAGE, H_CLASS, H_EXC_CLASS, H_EXC_MESSAGE, H_EXC_STACKTRACE, H_MAPPING,
    H_FIELD, H_CODE, H_CATEGORY, H_ATTEMPTS, H_PARKED_AT, H_SOURCE_TOPIC, H_SOURCE_PARTITION, H_SOURCE_OFFSET,
]  # fmt: skip
header_values = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(str.encode),
    st.integers().map(lambda n: str(n).encode()),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)).map(lambda d: d.isoformat().encode()),
    st.sampled_from(["--5", "-", "²", "١٢", "12\u00a0", "2026-13-40T00:00:00", "9" * 5000]).map(str.encode),
)


@given(
    headers=st.dictionaries(st.sampled_from(CONTEXT_HEADERS), header_values),
    original=st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=10)), max_size=3),
    key=st.none() | st.binary(max_size=30),
)
def test_dlq_list_shows_any_parked_record(
    headers: dict[str, bytes], original: list[tuple[str, bytes]], key: bytes | None
) -> None:
    # what DeadLetterQueue.list_parked makes of one DLQ record, and the line `sfsync dlq list` prints for it
    context = ErrorContext.from_headers(headers)
    record = ParkedRecord(0, 5, key, b"value", tuple(original), context)
    assert parked_line(record).startswith("0:5")
