"""librdkafka's errors in sfsync's taxonomy (sfsync.kafka.errors): real KafkaError values, no broker."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from sfsync.errors import (
    Category,
    ConfigError,
    DeliveryError,
    FatalError,
    RetriableError,
    ServiceUnavailableError,
    SkippableRecordError,
)
from sfsync.kafka.errors import (
    ProducerFencedError,
    RecordRejectedError,
    construction_error,
    produce_error,
    translate,
)
from sfsync.ops.errorlog import entry_for
from tests.kit import kafka_exception


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KafkaError(KafkaError._TRANSPORT, "Broker transport failure"), ServiceUnavailableError),
        (KafkaError(KafkaError._ALL_BROKERS_DOWN), ServiceUnavailableError),
        (KafkaError(KafkaError._TIMED_OUT), ServiceUnavailableError),
        (KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "bad password"), FatalError),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), FatalError),
        (KafkaError(KafkaError._FATAL, "gone", fatal=True), FatalError),
        (KafkaError(KafkaError.PRODUCER_FENCED), ProducerFencedError),
        (KafkaError(KafkaError.REBALANCE_IN_PROGRESS, retriable=True), RetriableError),
        # a failed commit's error carries no retriable flag; a coordinator loading (a broker restart) or moving is
        (KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "Coordinator load in progress"), RetriableError),
        (KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE), RetriableError),
        (KafkaError(KafkaError.NOT_COORDINATOR), RetriableError),
        (KafkaError(KafkaError.UNKNOWN_MEMBER_ID), ServiceUnavailableError),
    ],
)
def test_an_error_becomes_the_sfsync_error_that_says_what_to_do(error: KafkaError, expected: type) -> None:
    for raised in (error, KafkaException(error)):
        translated = translate(raised, "committing offsets")
        assert type(translated) is expected
        assert "committing offsets" in str(translated)
        assert str(error.str()) in str(translated)


def test_an_exception_without_a_kafka_error_still_translates() -> None:
    assert isinstance(translate(KafkaException("odd"), "polling"), ServiceUnavailableError)


@pytest.mark.parametrize(
    "code", [KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD]
)
def test_kafka_refusing_one_record_is_a_skippable_error_carrying_kafkas_code(code: int) -> None:
    exc = kafka_exception(code)
    error = produce_error(exc, "p.sfsync.writes", b"Contact:a")
    assert isinstance(error, RecordRejectedError) and isinstance(error, SkippableRecordError)
    assert error.code == KafkaError(code).name()
    assert (error.topic, error.key) == ("p.sfsync.writes", "Contact:a")
    assert error.log_code() == error.code  # what the error log and the DLQ headers say
    entry = entry_for(error)
    assert (entry.category, entry.code) == (Category.SYNC, KafkaError(code).name())


def test_other_produce_errors_are_delivery_errors_and_a_failed_producer_is_fatal() -> None:
    unknown = produce_error(kafka_exception(KafkaError._UNKNOWN_TOPIC, "Unknown topic"), "nope", "k")
    assert isinstance(unknown, DeliveryError) and unknown.failures == [("nope", "k", "Unknown topic")]
    assert isinstance(produce_error(kafka_exception(KafkaError._FATAL, "x", fatal=True), "t", None), FatalError)
    assert isinstance(produce_error(kafka_exception(KafkaError._FENCED), "t", None), ProducerFencedError)


def test_a_refused_configuration_is_a_config_error_naming_the_setting() -> None:
    exc = kafka_exception(
        KafkaError._INVALID_ARG,
        "Failed to create producer: Unsupported hash function: SCRAM-SHA-999 (try SCRAM-SHA-512)",
    )
    error = construction_error(exc, "producer sfsync-publisher")
    assert isinstance(error, ConfigError)
    assert error.problems == [
        "KAFKA_SASL_MECHANISM: Failed to create producer: Unsupported hash function: SCRAM-SHA-999 "
        "(try SCRAM-SHA-512) (building the producer sfsync-publisher)"
    ]
    both = construction_error(
        kafka_exception(KafkaError._INVALID_ARG, "sasl.username and sasl.password must be set"), "consumer"
    )
    assert both.problems[0].startswith("KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD: ")
    other = construction_error(kafka_exception(KafkaError._INVALID_ARG, 'No such configuration property: "x"'), "c")
    assert isinstance(other, ConfigError) and other.problems[0].startswith("Kafka client configuration: ")
    missing_group = construction_error(ValueError("Failed to create consumer: group.id must be set"), "consumer")
    assert isinstance(missing_group, ConfigError)


def test_a_construction_failure_that_is_not_the_configuration_keeps_its_kind() -> None:
    error = construction_error(kafka_exception(KafkaError._TRANSPORT, "down"), "producer p")
    assert isinstance(error, ServiceUnavailableError)
