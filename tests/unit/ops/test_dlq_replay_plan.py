"""DLQ replay targets without Kafka: the source a parked write names, and what a replay sends for what."""

from __future__ import annotations

from typing import Any

from sfsync.ops.dlq import (
    H_CODE,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    H_TOPIC,
    REPLAYED_FROM,
    ErrorContext,
    MissingSource,
    ParkedRecord,
    ReplayTarget,
    SourceEvent,
    plan_replay,
    replay_headers,
)
from sfsync.salesforce.errors import classify
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.loop import dlq_parker

MEMBERS = "product.members"
WRITES = "sfsync.writes"


def parked(offset: int, source: SourceEvent | None, topic: str = WRITES) -> ParkedRecord:
    headers = {H_TOPIC: topic.encode(), H_CODE: b"STRING_TOO_LONG"}
    if source is not None:
        headers |= {
            H_SOURCE_TOPIC: source.topic.encode(),
            H_SOURCE_PARTITION: str(source.partition).encode(),
            H_SOURCE_OFFSET: str(source.offset).encode(),
        }
    return ParkedRecord(0, offset, b"k", f"v{offset}".encode(), (), ErrorContext.from_headers(headers))


def test_a_write_names_the_event_it_was_planned_from() -> None:
    write = {"source": {"topic": MEMBERS, "partition": 3, "offset": 41, "event_id": "e", "event_type": "UserCreated"}}
    assert SourceEvent.of_write(write) == SourceEvent(MEMBERS, 3, 41)
    assert str(SourceEvent(MEMBERS, 3, 41)) == "product.members[3]@41"
    assert SourceEvent.of_write({}) is None
    assert SourceEvent.of_write({"source": {"topic": "", "partition": 0, "offset": 1}}) is None
    assert SourceEvent.of_write({"source": {"topic": MEMBERS, "partition": None, "offset": 1}}) is None


def test_the_context_reads_the_source_headers_and_ignores_incomplete_ones() -> None:
    source = SourceEvent(MEMBERS, 2, 7)
    assert parked(0, source).context.source == source
    assert parked(0, None).context.source is None
    partial = ErrorContext.from_headers({H_SOURCE_TOPIC: MEMBERS.encode(), H_SOURCE_OFFSET: b"x"})
    assert partial.source is None


def test_source_target_sends_each_source_event_once_at_its_first_parked_write() -> None:
    a, b = SourceEvent(MEMBERS, 0, 5), SourceEvent(MEMBERS, 1, 9)
    records = [parked(0, a), parked(1, None), parked(2, b), parked(3, a), parked(4, None, topic=MEMBERS)]
    sends = plan_replay(records, ReplayTarget.SOURCE)
    assert [(s.source, [r.dlq_offset for r in s.parked]) for s in sends] == [
        (a, [0, 3]),
        (None, [1]),
        (b, [2]),
        (None, [4]),
    ]
    assert [s.topic for s in sends] == [MEMBERS, WRITES, MEMBERS, MEMBERS]


def test_as_parked_target_sends_every_record_itself() -> None:
    a = SourceEvent(MEMBERS, 0, 5)
    sends = plan_replay([parked(0, a), parked(1, a)], ReplayTarget.AS_PARKED)
    assert [(s.source, s.topic, [r.dlq_offset for r in s.parked]) for s in sends] == [
        (None, WRITES, [0]),
        (None, WRITES, [1]),
    ]
    assert plan_replay([], ReplayTarget.SOURCE) == []


def test_replay_headers_keep_the_originals_and_name_every_parked_record_once() -> None:
    original = [("traceparent", b"00-1"), (REPLAYED_FROM, b"old:0:1"), ("x", b"")]
    assert replay_headers(original, ["dlq:0:4", "dlq:2:8"]) == [
        ("traceparent", b"00-1"),
        ("x", b""),
        (REPLAYED_FROM, b"dlq:0:4,dlq:2:8"),
    ]


def test_a_missing_source_says_which_parked_writes_stay() -> None:
    source = SourceEvent(MEMBERS, 0, 5)
    text = str(MissingSource(source, "no longer in the topic", (parked(3, source), parked(8, source))))
    assert text == "product.members[0]@5: no longer in the topic (parked write(s) at 0:3, 0:8 left in the DLQ)"


async def test_the_sink_parker_passes_the_write_source_and_workspace_to_the_dlq() -> None:
    calls: list[dict[str, Any]] = []

    def park(original: Any, reason: BaseException, **kwargs: Any) -> None:
        calls.append({"original": original, "reason": reason, **kwargs})

    write = {
        "mapping": "members",
        "workspace_id": "ws-7",
        "source": {"topic": MEMBERS, "partition": 1, "offset": 12, "event_id": "e", "event_type": "UserCreated"},
    }
    incoming = IncomingWrite(write=write, topic=WRITES, partition=0, offset=3)
    error = classify(400, "STRING_TOO_LONG", "Title: data value too large", fields=["Title"])
    await dlq_parker(park)(incoming, error)
    assert calls == [
        {
            "original": incoming,
            "reason": error,
            "stage": "TASK_PUT",
            "mapping": "members",
            "field": "Title",
            "attempts": 1,  # refused outright; a write whose retries ran out carries its count
            "source": SourceEvent(MEMBERS, 1, 12),
            "workspace": "ws-7",
        }
    ]
