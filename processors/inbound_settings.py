"""Settings of the inbound processor (env prefix ``SFSYNC_INBOUND_``; Kafka and registry as everywhere else).

The same knobs as the outbound processor's (:class:`~processors.settings.ProcessorSettings`: app id,
mapping file and variables, processing guarantee, table store, timeouts) under their own prefix and
app id, so the two apps never share a consumer group or a table changelog. Load with
:func:`load_inbound_settings`, which reports every invalid value at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from processors.settings import ProcessorSettings
from sfsync.settings import load

__all__ = ["InboundProcessorSettings", "load_inbound_settings"]


class InboundProcessorSettings(ProcessorSettings):
    """How the Faust inbound app reads ``salesforce.changes`` and ``sfsync.results``."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_INBOUND_", extra="ignore", populate_by_name=True)

    app_id: str = Field(
        "sfsync-inbound",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id: consumer group, and the prefix of its table changelog topics.",
    )
    web_port: int = Field(6067, ge=1, le=65535)
    metrics_port: int = Field(
        9466, ge=0, le=65535, description="Prometheus /metrics (processors.inbound_metrics); 0 disables it."
    )


def load_inbound_settings(**overrides: Any) -> InboundProcessorSettings:
    """:class:`InboundProcessorSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(InboundProcessorSettings, "inbound", **overrides)
