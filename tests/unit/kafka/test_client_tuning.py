"""Each Kafka client role batches or fetches as its settings say (issue 14: the broker pays per request).

The librdkafka properties are read from the builders' config dicts (``new_producer_config``,
``new_consumer_config``); Faust's aiokafka consumer is tuned before it starts (not started here).
"""

from __future__ import annotations

import inspect
from typing import Any

import aiokafka
import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from pydantic_settings import BaseSettings

from sfsync.devtools.stack import KAFKA_JVM_FLAGS, REGISTRY_JVM_FLAGS
from sfsync.kafka.clients import (
    FLUSHED_AT_ONCE,
    FetchTuning,
    ProducerTuning,
    new_consumer_config,
    new_producer_config,
)
from sfsync.processors.faust_runtime.commit import HookedTransport
from sfsync.processors.faust_runtime.fetching import (
    FetchTunedConsumer,
    FetchTunedConsumerThread,
    FetchTunedTransport,
    tune_fetch,
)
from sfsync.processors.faust_runtime.recovery import SnapshotTransport
from sfsync.processors.faust_runtime.settings import FaustAppSettings
from sfsync.processors.inbound.settings import InboundProcessorSettings
from sfsync.processors.outbound.settings import ProcessorSettings
from sfsync.settings import PublisherSettings
from sfsync.sinks.settings import SinkSettings

NOWHERE = {"bootstrap.servers": "127.0.0.1:9"}


def test_a_producer_batches_as_its_tuning_says() -> None:
    config = new_producer_config(NOWHERE, "p", tuning=ProducerTuning(linger_ms=20, batch_bytes=500_000))
    assert (config["linger.ms"], config["batch.size"]) == (20, 500_000)
    assert (config["enable.idempotence"], config["acks"]) == (True, "all")


def test_a_producer_without_a_tuning_is_flushed_at_once_and_lingers_past_its_produce_loop() -> None:
    config = new_producer_config(NOWHERE, "p")
    assert (config["linger.ms"], config["batch.size"]) == (FLUSHED_AT_ONCE.linger_ms, FLUSHED_AT_ONCE.batch_bytes)
    assert FLUSHED_AT_ONCE.linger_ms >= 50  # flush() ignores it: a produce loop's records share one batch


def test_a_consumer_fetches_as_its_tuning_says_and_without_one_as_librdkafka_does() -> None:
    tuned = new_consumer_config(NOWHERE, "g", fetch=FetchTuning(min_bytes=65_536, wait_max_ms=50))
    assert (tuned["fetch.min.bytes"], tuned["fetch.wait.max.ms"]) == (65_536, 50)
    plain = new_consumer_config(NOWHERE, "g")
    assert "fetch.min.bytes" not in plain
    assert "fetch.wait.max.ms" not in plain


def test_the_sink_consumer_fetches_64_kb_or_50_ms_and_the_environment_changes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SinkSettings().fetch() == FetchTuning(min_bytes=65_536, wait_max_ms=50)
    monkeypatch.setenv("SFSYNC_SINK_FETCH_WAIT_MAX_MS", "20")
    monkeypatch.setenv("SFSYNC_SINK_FETCH_MIN_BYTES", "1")
    assert SinkSettings().fetch() == FetchTuning(min_bytes=1, wait_max_ms=20)


def test_the_processor_writes_producers_linger_20_ms_and_the_environment_changes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ProcessorSettings().writes_tuning() == ProducerTuning(linger_ms=20, batch_bytes=1_000_000)
    monkeypatch.setenv("SFSYNC_PROCESSOR_WRITES_LINGER_MS", "2")
    assert ProcessorSettings().writes_tuning().linger_ms == 2


@pytest.mark.parametrize("settings_class", [ProcessorSettings, InboundProcessorSettings])
def test_each_faust_app_fetches_64_kb_or_50_ms_and_batches_its_producer(settings_class: Any) -> None:
    settings = settings_class()
    assert settings.consumer_fetch() == FetchTuning(min_bytes=65_536, wait_max_ms=50)
    assert (settings.producer_linger_ms, settings.producer_max_batch_size) == (10, 262_144)


async def test_faust_s_consumer_is_built_fetching_as_the_app_settings_say() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=1500)
    try:
        assert tune_fetch(consumer, None) is consumer
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1, 1500)  # Faust's, untouched
        tune_fetch(consumer, FetchTuning(min_bytes=1234, wait_max_ms=77))
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1234, 77)
    finally:
        await consumer.stop()


@pytest.mark.parametrize("transport", [HookedTransport, SnapshotTransport], ids=["outbound", "inbound"])
def test_both_apps_transports_build_their_consumer_on_the_fetch_tuned_thread(transport: Any) -> None:
    assert issubclass(transport, FetchTunedTransport)
    assert issubclass(transport.Consumer, FetchTunedConsumer)
    assert FetchTunedConsumer._new_consumer_thread is transport.Consumer._new_consumer_thread
    assert FetchTunedConsumerThread._create_worker_consumer is not AIOKafkaConsumerThread._create_worker_consumer


def test_aiokafka_hands_the_tuned_attributes_to_its_fetcher_at_start() -> None:
    """The patch sets attributes of the pinned aiokafka: an upgrade that renames them fails here."""
    source = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in source
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in source


def _undescribed(settings_class: type[BaseSettings], names: list[str]) -> list[str]:
    return [n for n in names if not settings_class.model_fields[n].description]


def test_every_kafka_tuning_setting_and_publisher_setting_is_described() -> None:
    assert _undescribed(SinkSettings, ["fetch_min_bytes", "fetch_wait_max_ms"]) == []
    assert _undescribed(ProcessorSettings, ["writes_linger_ms", "writes_batch_bytes"]) == []
    faust = ["producer_linger_ms", "producer_max_batch_size", "consumer_fetch_min_bytes", "consumer_fetch_wait_max_ms"]
    assert _undescribed(FaustAppSettings, faust) == []
    own = [n for n in PublisherSettings.model_fields if n not in BaseSettings.model_fields]
    publisher = [n for n in own if n in PublisherSettings.__annotations__]
    assert publisher
    assert _undescribed(PublisherSettings, publisher) == []


def test_the_local_broker_runs_full_tiered_compilation_and_the_registry_starts_quickly() -> None:
    assert not any("TieredStopAtLevel" in flag for flag in KAFKA_JVM_FLAGS)
    assert "-XX:+UseG1GC" in KAFKA_JVM_FLAGS
    assert "-XX:TieredStopAtLevel=1" in REGISTRY_JVM_FLAGS
