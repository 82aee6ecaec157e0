"""librdkafka's errors in sfsync's taxonomy (:mod:`sfsync.errors`): the one place that reads a ``KafkaError``.

What a caller of :mod:`sfsync.kafka` gets instead of ``KafkaException``:

- :class:`~sfsync.errors.ConfigError`, when a client cannot be built from its settings
  (:func:`construction_error`; it names the ``KAFKA_*`` setting when librdkafka's reason points at one);
- :class:`RecordRejectedError` (a :class:`~sfsync.errors.SkippableRecordError`), when Kafka refuses
  one record for what it is (too large, invalid): sending it again cannot succeed, park it;
- :class:`ProducerFencedError` (fatal), when a newer producer took the transactional id over;
- :class:`~sfsync.errors.FatalError`, for refused credentials and librdkafka's fatal errors;
- :class:`~sfsync.errors.ServiceUnavailableError`, when the cluster did not answer;
- :class:`~sfsync.errors.RetriableError`, for what librdkafka marks retriable, and for a group
  coordinator that is loading, moving or rebalancing (:data:`COORDINATOR_CODES`: what Kafka's Java
  client calls retriable, while librdkafka leaves the flag unset on a failed commit's error);
- :class:`~sfsync.errors.ServiceUnavailableError` for anything else (stop, uncommitted).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from sfsync.errors import (
    ConfigError,
    DeliveryError,
    FatalError,
    RetriableError,
    ServiceUnavailableError,
    SfsyncError,
    SkippableRecordError,
)

__all__ = [
    "COORDINATOR_CODES",
    "FENCED_CODES",
    "RECORD_ERROR_CODES",
    "ProducerFencedError",
    "RecordRejectedError",
    "construction_error",
    "error_of",
    "produce_error",
    "show_key",
    "translate",
]

RECORD_ERROR_CODES: frozenset[int] = frozenset(
    {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD}
)
"""Refusals of one record for what it is: the same record is refused again, whenever it is sent."""

_UNREACHABLE: frozenset[int] = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.REQUEST_TIMED_OUT,
    }
)
COORDINATOR_CODES: frozenset[int] = frozenset(
    {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._WAIT_COORD,
    }
)
"""The group coordinator is loading its state (right after a broker restart), moved, or the group is
rebalancing: the same call succeeds once it settles."""
_REFUSED: frozenset[int] = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
FENCED_CODES: frozenset[int] = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
"""A newer producer took the transactional id (or the producer id) over."""
_CONFIG: frozenset[int] = frozenset({KafkaError._INVALID_ARG, KafkaError._INVALID_TYPE})

_SETTINGS_NAMED_BY: tuple[tuple[tuple[str, ...], str], ...] = (
    (("sasl.mechanism", "sasl mechanism", "hash function"), "KAFKA_SASL_MECHANISM"),
    (("sasl.username",), "KAFKA_SASL_USERNAME"),
    (("sasl.password",), "KAFKA_SASL_PASSWORD"),
    (("security.protocol",), "KAFKA_SECURITY_PROTOCOL"),
    (("bootstrap.servers",), "KAFKA_BOOTSTRAP_SERVERS"),
)
"""Words of librdkafka's configuration errors, and the setting (``sfsync.settings.KafkaConnection``) they name."""


class RecordRejectedError(SkippableRecordError):
    """Kafka refused one record for what it is; sending it again cannot succeed.

    ``code`` is Kafka's name for the refusal (``MSG_SIZE_TOO_LARGE``, ``RECORD_LIST_TOO_LARGE``,
    ``INVALID_RECORD``): the code the error log and the DLQ headers give.
    """

    default_code = "KAFKA_RECORD_REJECTED"

    def __init__(self, topic: str, key: str | None, code: str, reason: str) -> None:
        self.topic = topic
        self.key = key
        self.code = code
        self.reason = reason
        super().__init__(f"{topic}[{key}]: Kafka refused the record ({code}): {reason}")


class ProducerFencedError(FatalError):
    """A newer producer started transactions under the same transactional id: this one must let it go."""

    default_code = "PRODUCER_FENCED"


def error_of(exc: KafkaException | KafkaError) -> KafkaError | None:
    """The ``KafkaError`` a ``KafkaException`` carries (None when it carries none)."""
    if isinstance(exc, KafkaError):
        return exc
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else None


def _reason(exc: KafkaException | KafkaError) -> str:
    error = error_of(exc)
    return str(error.str()) if error is not None else str(exc)


def show_key(key: bytes | str | None) -> str | None:
    """A record key as text for messages (None stays None)."""
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def translate(exc: KafkaException | KafkaError, what: str) -> SfsyncError:
    """``exc``, raised or reported while doing ``what``, as the sfsync error that says what to do (module doc)."""
    error = error_of(exc)
    reason = _reason(exc)
    if error is None:
        return ServiceUnavailableError(f"Kafka: {what} failed: {reason}")
    code = error.code()
    if code in FENCED_CODES:
        return ProducerFencedError(f"Kafka: {what}: fenced by a newer producer: {reason}")
    if code in _REFUSED:
        return FatalError(f"Kafka refused {what} ({error.name()}): {reason}; check the KAFKA_* credentials")
    if code in _CONFIG:
        return FatalError(f"Kafka: {what}: invalid argument: {reason}")
    if error.fatal():
        return FatalError(f"Kafka: {what} failed for good ({error.name()}): {reason}")
    if code in _UNREACHABLE:
        return ServiceUnavailableError(f"Kafka did not answer: {what} failed: {reason}")
    if error.retriable() or code in COORDINATOR_CODES:
        return RetriableError(f"Kafka: {what} failed, may succeed later ({error.name()}): {reason}")
    return ServiceUnavailableError(f"Kafka: {what} failed ({error.name()}): {reason}")


def produce_error(exc: KafkaException | KafkaError, topic: str, key: bytes | str | None) -> SfsyncError:
    """``exc``, raised or reported for one record of ``topic``: :class:`RecordRejectedError` when
    Kafka refuses the record itself, :class:`~sfsync.errors.FatalError` when the producer failed for
    good (fenced included), else :class:`~sfsync.errors.DeliveryError` naming the record."""
    error = error_of(exc)
    shown = show_key(key)
    if error is not None and error.code() in RECORD_ERROR_CODES:
        return RecordRejectedError(topic, shown, str(error.name()), _reason(exc))
    if error is not None and (error.fatal() or error.code() in FENCED_CODES):
        return translate(error, f"producing to {topic}")
    return DeliveryError([(topic, shown, _reason(exc))])


def construction_error(exc: KafkaException | ValueError, client: str) -> SfsyncError:
    """Why ``client`` (e.g. ``"producer sfsync-publisher"``) could not be built: a
    :class:`~sfsync.errors.ConfigError` naming the setting when the settings are at fault."""
    if isinstance(exc, KafkaException):
        error = error_of(exc)
        if error is not None and error.code() not in _CONFIG:
            return translate(exc, f"creating the {client}")
    reason = _reason(exc) if isinstance(exc, KafkaException) else str(exc)
    lowered = reason.lower()
    named = [setting for words, setting in _SETTINGS_NAMED_BY if any(w in lowered for w in words)]
    where = ", ".join(dict.fromkeys(named)) or "Kafka client configuration"
    return ConfigError("Kafka", [f"{where}: {reason} (building the {client})"])
