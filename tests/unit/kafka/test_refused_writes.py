"""A write Kafka refuses (larger than sfsync.writes accepts): ``WritesProducer.send`` raises
RecordRejectedError before queueing it, and the outbound processor parks its event at stage
KAFKA_PRODUCE while the event's other writes go out (fakes injected; the real broker:
tests/integration/test_processor_oversized_write.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from confluent_kafka import KafkaError

from sfsync.errors import DeliveryError
from sfsync.kafka.errors import RecordRejectedError
from sfsync.ops.dlq import Stage
from sfsync.processors.faust_runtime.parking import Parked, original_record
from sfsync.processors.outbound.processor import Handled, send_writes
from sfsync.processors.outbound.writes import WritesProducer
from tests.kit import FakeProducer, kafka_exception


@dataclass
class FaustMessage:
    topic: str = "p.product.members"
    partition: int = 3
    offset: int = 17
    key: bytes = b"u-1"
    value: bytes = b"\x00\x00\x00\x00\x01event"
    headers: Any = None


def refused(key: bytes) -> RecordRejectedError:
    return RecordRejectedError("p.sfsync.writes", key.decode(), "MSG_SIZE_TOO_LARGE", "Broker: Message size too large")


def test_a_refused_write_parks_its_event_and_the_other_writes_go_out() -> None:
    sent: list[bytes] = []

    def send(key: bytes, value: bytes) -> None:
        if key == b"Contact:big":
            raise refused(key)
        sent.append(key)

    earlier = Parked(FaustMessage(), ValueError("a reject"), Stage.TRANSFORMATION)  # type: ignore[arg-type]
    handled = Handled(
        writes=[(b"Contact:big", b"x" * 10), (b"Task:1", b"t")],
        parked=[earlier],
        planned=[{"mapping": "members"}, {"mapping": "activities"}],
    )
    parked = send_writes(send, handled, partial(original_record, FaustMessage()))
    assert sent == [b"Task:1"]
    assert parked[0] is earlier
    (refusal,) = parked[1:]
    assert (refusal.stage, refusal.mapping, refusal.reason.log_code()) == (  # type: ignore[union-attr]
        Stage.KAFKA_PRODUCE,
        "members",
        "MSG_SIZE_TOO_LARGE",
    )
    original = refusal.original
    assert (original.topic, original.partition, original.offset, original.key, original.value) == (
        "p.product.members", 3, 17, b"u-1", b"\x00\x00\x00\x00\x01event",
    )  # fmt: skip


def test_a_write_that_could_not_be_queued_is_not_parked_but_raised() -> None:
    def send(key: bytes, value: bytes) -> None:
        raise DeliveryError([("p.sfsync.writes", key.decode(), "local queue full")])

    with pytest.raises(DeliveryError):
        send_writes(
            send, Handled([(b"k", b"v")], [], [{"mapping": "members"}]), partial(original_record, FaustMessage())
        )


def rig() -> tuple[WritesProducer, FakeProducer]:
    made: list[FakeProducer] = []

    def factory(on_delivery: Callable[[Any, Any], None]) -> FakeProducer:
        made.append(FakeProducer(on_delivery=on_delivery))
        return made[0]

    return WritesProducer({}, "p.sfsync.writes", delivery_timeout_s=1, factory=factory), made[0]


def test_the_writes_producer_refuses_a_write_kafka_refuses_and_later_flushes_still_pass() -> None:
    writes, producer = rig()
    producer.raises = [kafka_exception(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")]
    with pytest.raises(RecordRejectedError) as caught:
        writes.send(b"Contact:big", b"x")
    assert caught.value.code == "MSG_SIZE_TOO_LARGE"
    writes.send(b"Contact:small", b"y")
    writes.flush()  # nothing was lost: the refused write was never queued
    assert writes.sent == 1
