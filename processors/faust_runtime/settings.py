"""The settings every sfsync Faust app shares (Kafka, registry, app id, guarantee, table store, timeouts).

Each app subclasses :class:`FaustAppSettings` with its own environment prefix and app id, so two apps
never share a consumer group or a table changelog.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sfsync.kafka.clients import FetchTuning
from sfsync.settings import KafkaConnection, RegistryConnection

__all__ = ["FaustAppSettings"]


class FaustAppSettings(KafkaConnection, RegistryConnection):
    """What every sfsync Faust app is configured with; each app sets its own environment prefix and defaults."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    app_id: str = Field(
        "sfsync-processor",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id: consumer group, and the prefix of its table changelog topics.",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "at_least_once",
        description=(
            "exactly_once adds Kafka transactions around offsets and table changelogs (each app says what it "
            "buys there)."
        ),
    )
    store: str = Field("memory://", pattern=r"^(memory|rocksdb|aerospike)://", description="Faust table store.")
    web_enabled: bool = Field(False, description="Serve Faust's web endpoint (health, /performance/).")
    web_port: int = Field(6066, ge=1, le=65535)
    metrics_port: int = Field(
        9465, ge=0, le=65535, description="Prometheus /metrics (not Faust's web server); 0 disables it."
    )
    lag_interval_s: float = Field(10.0, gt=0, le=3600, description="How often consumer lag is measured.")
    session_timeout_s: float = Field(30.0, ge=6, le=300, description="Consumer session timeout.")
    heartbeat_interval_s: float = Field(3.0, gt=0, le=60)
    commit_interval_s: float = Field(2.8, gt=0, le=60)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    producer_linger_ms: int = Field(
        10,
        ge=0,
        le=10_000,
        description=(
            "How long Faust's producer (aiokafka: table changelogs, and the inbound app's product updates) waits for "
            "a batch to fill. Its records come in bursts (each changed key before a commit, each change's sends); "
            "10 ms puts a burst in one request per partition. aiokafka's flush before a commit waits it out "
            "(a commit takes that much longer), a transaction's commit does not."
        ),
    )
    producer_max_batch_size: int = Field(
        262_144,
        ge=1_024,
        le=16_777_216,
        description=(
            "The most bytes of one partition's batch in Faust's producer. aiokafka's 16 KB splits a commit's "
            "changelog burst (every key changed since the last commit) in many requests; 256 KB takes it in a few."
        ),
    )
    consumer_fetch_min_bytes: int = Field(
        65_536,
        ge=1,
        le=52_428_800,
        description=(
            "What the broker gathers before it answers a fetch of Faust's consumer (aiokafka fetch_min_bytes; "
            "aiokafka's own: 1). A tailing consumer fetching per record costs the broker ~144 µs a record, at "
            "64 KB ~22 µs (bench/e2e.py); below that much traffic, consumer_fetch_wait_max_ms bounds the wait."
        ),
    )
    consumer_fetch_wait_max_ms: int = Field(
        50,
        ge=0,
        le=10_000,
        description=(
            "The longest the broker holds a fetch of Faust's consumer short of consumer_fetch_min_bytes (Faust's "
            "own: 1500): the latency it adds per topic read at low rates (the outbound processor reads twice, "
            "the product topic and its repartition topic). 50 ms: 100 ms put the processor's p99 at 50 events/s "
            "from 35 to 236 ms (bench/e2e.py); under load 64 KB fills first, and a fetch every 50 ms costs the "
            "broker under 1 % of a core."
        ),
    )
    stream_buffer_maxsize: int = Field(4096, ge=1, le=1_000_000, description="Records an agent's stream buffers.")
    broker_commit_every: int = Field(
        10_000, ge=1, description="Commit after this many records, whichever comes first with commit_interval_s."
    )
    register_schemas: bool = True
    producer_flush_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Delivery timeout of a write (sfsync.writes, checked before each commit) or a DLQ record.",
    )

    def consumer_fetch(self) -> FetchTuning:
        """How Faust's consumer fetches (``consumer_fetch_*``)."""
        return FetchTuning(min_bytes=self.consumer_fetch_min_bytes, wait_max_ms=self.consumer_fetch_wait_max_ms)
