"""Settings of the outbound processor (env prefix ``SFSYNC_PROCESSOR_``; Kafka and registry as everywhere else).

Load with :func:`load_processor_settings`, which reports every invalid value at once. The mapping
file and its variables are the mapping setting every process reads (:mod:`sfsync.mapping.settings`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sfsync.settings import KafkaConnection, RegistryConnection, load

__all__ = ["ProcessorSettings", "load_processor_settings"]


class ProcessorSettings(KafkaConnection, RegistryConnection):
    """How the Faust processor app reads product topics and plans writes."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_PROCESSOR_", extra="ignore", populate_by_name=True)

    app_id: str = Field(
        "sfsync-processor",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id: consumer group, and the prefix of its table changelog topics.",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "at_least_once",
        description=(
            "sfsync.writes is at least once either way (see sfsync.processors.outbound.app); exactly_once adds "
            "transactions around offsets and table changelogs, for no gain in what reaches Salesforce "
            "and ~35 % less throughput end to end (bench/e2e.py)."
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
        0, ge=0, le=10_000, description="How long Faust's producer waits to fill a batch (table changelogs)."
    )
    producer_max_batch_size: int = Field(16_384, ge=1_024, le=16_777_216, description="Faust producer batch, bytes.")
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


def load_processor_settings(**overrides: Any) -> ProcessorSettings:
    """:class:`ProcessorSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(ProcessorSettings, "processor", **overrides)
