"""Outbox, sfsync's one deliver-and-flush (fake producers injected)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError

from sfsync.errors import DeliveryError, FatalError, ServiceUnavailableError
from sfsync.kafka.delivery import ANY_TOPIC, DeliveryReport, Outbox
from sfsync.kafka.errors import RecordRejectedError
from tests.kit import FakeMessage, FakeProducer, kafka_exception


def owning(**kwargs: object) -> tuple[Outbox, FakeProducer]:
    """An outbox whose producer reports to it (built by the factory with its callback)."""
    made: list[FakeProducer] = []

    def factory(on_delivery: object) -> FakeProducer:
        made.append(FakeProducer(on_delivery=on_delivery))  # type: ignore[arg-type]
        return made[0]

    outbox = Outbox(factory=factory, label=str(kwargs.pop("label", "p.topic")), timeout_s=1, **kwargs)  # type: ignore[arg-type]
    return outbox, made[0]


def test_records_go_out_in_order_and_a_flush_with_every_record_acknowledged_returns() -> None:
    outbox, producer = owning()
    outbox.send("p.topic", b"1", b"a")
    outbox.send("p.topic", b"2", b"b", headers=[("h", b"v")])
    assert producer.calls == [
        (("p.topic", b"1", b"a"), {}),  # the fast path: positional, the producer's own callback
        (("p.topic",), {"value": b"2", "key": b"b", "on_delivery": None, "headers": [("h", b"v")]}),
    ]
    assert outbox.sent == 2
    outbox.flush()


def test_a_record_kafka_refuses_raises_a_skippable_error_and_is_not_counted() -> None:
    outbox, producer = owning()
    producer.raises = [kafka_exception(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")]
    with pytest.raises(RecordRejectedError) as caught:
        outbox.send("p.topic", b"x" * 10, b"Contact:a")
    assert caught.value.code == "MSG_SIZE_TOO_LARGE" and caught.value.key == "Contact:a"
    assert outbox.sent == 0
    outbox.send("p.topic", b"ok", b"Contact:b")  # the next record goes on
    assert outbox.sent == 1


def test_other_produce_errors_are_sfsync_errors() -> None:
    outbox, producer = owning()
    producer.raises = [kafka_exception(KafkaError._UNKNOWN_TOPIC, "Unknown topic")]
    with pytest.raises(DeliveryError, match="Unknown topic"):
        outbox.send("nope", b"v")
    producer.raises = [kafka_exception(KafkaError._FATAL, "producer failed", fatal=True)]
    with pytest.raises(FatalError):
        outbox.send("p.topic", b"v")


def test_a_full_queue_is_waited_for_then_fails_after_the_timeout() -> None:
    outbox, producer = owning()
    producer.raises = [BufferError(), BufferError()]
    outbox.send("p.topic", b"v", b"k")
    assert producer.polls == 2 and outbox.sent == 1  # served delivery reports while the queue was full
    full = Outbox(AlwaysFull(), label="p.topic", timeout_s=0.1)
    with pytest.raises(DeliveryError, match="local queue full"):
        full.send("p.topic", b"v", b"k")


class AlwaysFull(FakeProducer):
    """librdkafka's queue never has room (poll waits as librdkafka's does)."""

    def produce(self, topic: str, *args: object, **kwargs: object) -> None:
        raise BufferError

    def poll(self, timeout: float) -> int:
        time.sleep(timeout)
        return super().poll(timeout)


def test_failed_deliveries_fail_the_next_flush_only_unless_sticky() -> None:
    outbox, producer = owning()
    outbox.send("p.topic", b"v", b"Contact:a")
    producer.report(0, KafkaError(KafkaError._MSG_TIMED_OUT, "Local: Message timed out"), FakeMessage(key=b"Contact:a"))
    with pytest.raises(DeliveryError) as caught:
        outbox.flush()
    assert caught.value.failures == [("p.topic", "Contact:a", "Local: Message timed out")]
    outbox.flush()  # reported once

    sticky, producer = owning(sticky=True)
    sticky.send("p.topic", b"v", b"Contact:a")
    producer.report(0, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), FakeMessage(key=b"Contact:a"))
    for _ in range(2):  # a lost record fails every later flush: no commit may pass it
        with pytest.raises(DeliveryError):
            sticky.flush()


def test_an_outbox_of_several_topics_names_each_failed_records_topic_and_counts_beyond_twenty() -> None:
    outbox, producer = owning(label=ANY_TOPIC)
    for i in range(25):
        outbox.send(f"t{i % 2}", b"v", str(i).encode())
        producer.report(i, KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(topic=f"t{i % 2}", key=str(i).encode()))
    producer.stuck = 3
    with pytest.raises(DeliveryError) as caught:
        outbox.flush(1)
    failures = caught.value.failures
    assert failures[:2] == [("t0", "0", "Local: Message timed out"), ("t1", "1", "Local: Message timed out")]
    assert failures[-2:] == [
        ("*", None, "25 failed deliveries in all"),
        ("*", None, "3 record(s) unacknowledged after 1s"),
    ]


def test_a_record_sent_with_its_own_callback_reports_to_it_not_to_flush() -> None:
    producer = FakeProducer()
    outbox = Outbox(producer, label="p.dlq", timeout_s=1)  # no callback of its own: passed with each record
    reports: list[DeliveryReport] = []
    outbox.send("p.dlq", b"v", b"k", partition=0, on_delivery=reports.append)
    outbox.send("p.dlq", b"w", b"j")
    assert producer.calls[0][1]["partition"] == 0
    assert producer.calls[1][1]["on_delivery"] is not None  # the outbox's own
    producer.report(0, None, FakeMessage(topic="p.dlq", partition=0, offset=41, key=b"k"))
    producer.report(
        1, KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(topic="p.dlq", partition=0, offset=-1, key=b"j")
    )
    with pytest.raises(DeliveryError) as caught:
        outbox.flush()
    assert reports == [DeliveryReport("p.dlq", 0, 41, b"k")]
    assert [f[1] for f in caught.value.failures] == ["j"]


def test_close_delivers_what_it_can_and_raises_nothing() -> None:
    outbox, producer = owning()
    producer.stuck = 2
    assert outbox.close(0.1) == 2


def test_topic_names_raise_service_unavailable_when_kafka_does_not_answer() -> None:
    outbox, _ = owning()
    with pytest.raises(ServiceUnavailableError, match="Broker transport failure"):
        outbox.topic_names(1)
