"""Settings of the outbound processor (env prefix ``SFSYNC_PROCESSOR_``; Kafka and registry as everywhere else).

Load with :func:`load_processor_settings`, which reports every invalid value at once. The mapping
file and its variables are the mapping setting every process reads (:mod:`sfsync.mapping.settings`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from sfsync.kafka.clients import ProducerTuning
from sfsync.processors.faust_runtime.settings import FaustAppSettings
from sfsync.settings import load

__all__ = ["ProcessorSettings", "load_processor_settings"]


class ProcessorSettings(FaustAppSettings):
    """How the Faust processor app reads product topics and plans writes."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_PROCESSOR_", extra="ignore", populate_by_name=True)

    app_id: str = Field(
        "sfsync-processor",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description=(
            "Faust app id: consumer group (every replica of one processor shares it), the prefix of its "
            "table changelog topics and, after the topic prefix, of its <app id>-writes-repartition topic."
        ),
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "at_least_once",
        description=(
            "sfsync.writes is at least once either way (see sfsync.processors.outbound.app); exactly_once adds "
            "transactions around offsets and table changelogs, for no gain in what reaches Salesforce "
            "and ~35 % less throughput end to end (bench/e2e.py)."
        ),
    )
    writes_linger_ms: int = Field(
        20,
        ge=0,
        le=1_000,
        description=(
            "How long a planned or ordered write waits in its librdkafka producer for others to join its batch "
            "(linger.ms). These producers send steadily and are flushed only before a commit, so this is latency "
            "added twice per event (planned, then ordered) at low rates; under load it is what makes the batches: "
            "the broker pays ~260 µs per produce request and ~2 µs per batched record (5 ms put ~1 record in a "
            "request at 500 events/s)."
        ),
    )
    writes_batch_bytes: int = Field(
        1_000_000,
        ge=1_024,
        le=16_777_216,
        description="The most bytes of one partition's batch of writes (batch.size; librdkafka's default).",
    )

    writes_pack_linger_ms: int = Field(
        20,
        ge=1,
        le=1_000,
        description=(
            "How often the planned writes waiting in packs go out (sfsync.processors.outbound.packs): one repartition "
            "record per partition carries every write planned since, so the ordering agent pays Faust's per-message "
            "cost (~200 µs) once a pack, not once a write. Latency added at low rates; under load packs fill first."
        ),
    )
    writes_pack_max_writes: int = Field(
        500,
        ge=1,
        le=10_000,
        description=(
            "The most writes of one pack (one partition's): a full pack goes out at once. 1 sends every planned write "
            "alone in its pack."
        ),
    )

    def writes_tuning(self) -> ProducerTuning:
        """How the producers of the planned and the ordered writes batch (``writes_*``)."""
        return ProducerTuning(linger_ms=self.writes_linger_ms, batch_bytes=self.writes_batch_bytes)


def load_processor_settings(**overrides: Any) -> ProcessorSettings:
    """:class:`ProcessorSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(ProcessorSettings, "processor", **overrides)
