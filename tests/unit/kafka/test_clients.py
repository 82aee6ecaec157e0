"""Building clients (real librdkafka, no broker) and the consumer whose calls raise sfsync errors (fake injected)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from sfsync.errors import ConfigError, FatalError, RetriableError, ServiceUnavailableError
from sfsync.kafka.admin import new_admin
from sfsync.kafka.clients import KafkaConsumer, TopicPartition, new_consumer, new_producer
from sfsync.kafka.delivery import Outbox
from sfsync.kafka.errors import RecordRejectedError
from tests.kit import FakeConsumer, FakeMessage, kafka_exception

NOWHERE = {"bootstrap.servers": "127.0.0.1:9", "log_level": 0}  # nothing listens there; the tests need no broker
SCRAM_999 = {
    **NOWHERE,
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-999",
    "sasl.username": "svc",
    "sasl.password": "s3cret-value",
}


@pytest.mark.parametrize(
    "build",
    [
        lambda: new_producer(SCRAM_999, "p"),
        lambda: new_consumer(SCRAM_999, "g"),
        lambda: new_admin(SCRAM_999),
    ],
    ids=["producer", "consumer", "admin"],
)
def test_a_sasl_mechanism_librdkafka_does_not_know_is_a_config_error_naming_the_setting(build: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert "KAFKA_SASL_MECHANISM" in str(caught.value) and "SCRAM-SHA-999" in str(caught.value)
    assert "s3cret-value" not in str(caught.value)


def test_an_unknown_property_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="No such configuration property"):
        new_producer(NOWHERE, "p", options={"no.such.property": 1})


def test_a_producer_fitted_to_a_topic_refuses_a_larger_record_before_queueing_it() -> None:
    producer = new_producer(NOWHERE, "p", delivery_timeout_s=1, max_message_bytes=65_536, options={"log_level": 0})
    outbox = Outbox(producer, label="p.sfsync.writes", timeout_s=1)
    with pytest.raises(RecordRejectedError) as caught:
        outbox.send("p.sfsync.writes", b"x" * 70_000, b"Contact:a")
    assert caught.value.code == "MSG_SIZE_TOO_LARGE"
    assert (caught.value.topic, caught.value.key) == ("p.sfsync.writes", "Contact:a")
    assert outbox.sent == 0


def consumer(**kwargs: Any) -> tuple[KafkaConsumer, FakeConsumer]:
    raw = FakeConsumer(**kwargs)
    return KafkaConsumer(raw, "consumer of group g"), raw


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.subscribe(["t"]),
        lambda c: c.assign([TopicPartition("t", 0, 0)]),
        lambda c: c.poll(0.1),
        lambda c: c.consume(10, 0.1),
        lambda c: c.commit([TopicPartition("t", 0, 5)]),
        lambda c: c.get_watermark_offsets(TopicPartition("t", 0)),
        lambda c: c.list_topics("t", timeout=1),
    ],
    ids=["subscribe", "assign", "poll", "consume", "commit", "watermarks", "list_topics"],
)
def test_every_consumer_call_raises_sfsync_errors(call: Any) -> None:
    wrapped, _ = consumer(fail=kafka_exception(KafkaError._TRANSPORT, "Broker transport failure"))
    with pytest.raises(ServiceUnavailableError, match="Broker transport failure"):
        call(wrapped)
    wrapped, _ = consumer(fail=kafka_exception(KafkaError.REBALANCE_IN_PROGRESS, "rebalancing", retriable=True))
    with pytest.raises(RetriableError):
        call(wrapped)


def test_consume_returns_records_only_and_a_fatal_error_event_raises() -> None:
    record = FakeMessage(offset=3, value=b"v")
    transient = FakeMessage(error=KafkaError(KafkaError._TRANSPORT, "disconnected"))
    wrapped, raw = consumer(messages=[transient, record])
    assert wrapped.consume(10, 0.1) == [record]
    raw.messages = [transient]
    assert wrapped.poll(0.1) is None
    raw.messages = [FakeMessage(error=KafkaError(KafkaError._FATAL, "fenced for good", fatal=True))]
    with pytest.raises(FatalError, match="fenced for good"):
        wrapped.consume(10, 0.1)
