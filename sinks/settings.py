"""Settings of the Salesforce sink (env prefix ``SFSYNC_SINK_``; Kafka and registry as everywhere else).

Load with :func:`load_sink_settings`, which reports every invalid value at once.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from sfsync.salesforce.composite import COLLECTION_MAX
from sfsync.settings import KafkaConnection, RegistryConnection, load

BATCH_MAX = 10 * COLLECTION_MAX
"""Largest batch: its match queries and collections are split in Salesforce-sized calls anyway."""


class SinkSettings(KafkaConnection, RegistryConnection):
    """How the sink batches, retries and talks to Kafka."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_SINK_", extra="ignore", populate_by_name=True)

    batch_size: int = Field(
        2 * COLLECTION_MAX,
        ge=1,
        le=BATCH_MAX,
        description=(
            "Writes per batch. A batch spans objects (a member event writes a Contact and an activity); each "
            "object and operation goes out in sObject Collections of <= 200, so 400 fills both of those."
        ),
    )
    batch_max_age_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description=(
            "Flush a partial batch this long after its first write. Below ~200 writes/s batches close on age, "
            "and every batch costs its queries and collections: longer means fewer API calls per record."
        ),
    )
    max_retries: int = Field(5, ge=0, le=20, description="Retries of a record's retriable failure within one put.")
    backoff_base_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=600)
    max_parent_waits: int = Field(
        50, ge=1, le=100_000, description="Batches a child waits for a missing parent before it is parked."
    )
    identity_cache_size: int = Field(100_000, ge=0, description="Record keys whose Salesforce Id is remembered.")
    query_max_chars: int = Field(
        12_000, ge=1_000, le=15_000, description="URL budget of one match query's IN lists (Salesforce: ~16 KB)."
    )
    group_id: str = Field("sfsync-sink", min_length=1)
    client_id: str = Field("sfsync-sink", min_length=1)
    poll_timeout_s: float = Field(0.5, gt=0, le=60)
    session_timeout_ms: int = Field(45_000, ge=6_000, le=300_000)
    max_poll_interval_ms: int = Field(600_000, ge=10_000)
    producer_flush_timeout_s: float = Field(30.0, gt=0, le=600)
    metrics_port: int = Field(9102, ge=0, le=65535, description="0 disables the metrics endpoint.")
    register_schemas: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be >= backoff_base_s")
        return self


def load_sink_settings(**overrides: Any) -> SinkSettings:
    """:class:`SinkSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(SinkSettings, "sink", **overrides)
