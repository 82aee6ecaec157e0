"""Settings of the inbound processor (env prefix ``SFSYNC_INBOUND_``; Kafka and registry as everywhere else).

The same knobs as the outbound processor's (:class:`~sfsync.processors.faust_runtime.settings.FaustAppSettings`: app id,
processing guarantee, table store, timeouts) under their own prefix and app id, so the two apps never
share a consumer group or a table changelog. The mapping is the one setting every process reads
(:mod:`sfsync.mapping.settings`). Load with
:func:`load_inbound_settings`, which reports every invalid value at once.

The echo race (:func:`sfsync.processors.inbound.echo.hold_until`): ``SFSYNC_INBOUND_WRITER_USER_IDS`` names the
Salesforce users sfsync writes as (the sink's integration user; comma-separated or a JSON list);
changes they made wait up to ``SFSYNC_INBOUND_ECHO_HOLD_S`` after their poll for the WriteResult
that covers them. Users are also learned from the echoes recognised while running.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from sfsync.processors.faust_runtime.settings import FaustAppSettings
from sfsync.settings import load

__all__ = ["InboundProcessorSettings", "load_inbound_settings"]

_USER_ID = r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$"


class InboundProcessorSettings(FaustAppSettings):
    """How the Faust inbound app reads ``salesforce.changes`` and ``sfsync.results``."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_INBOUND_", extra="ignore", populate_by_name=True)

    app_id: str = Field(
        "sfsync-inbound",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id: consumer group, and the prefix of its table changelog topics.",
    )
    web_port: int = Field(6067, ge=1, le=65535)
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "at_least_once",
        description="at_least_once (as the outbound processor): after a crash a change may be sent again, "
        "under the same inbound_id, which the product applies idempotently. exactly_once is offered, but "
        "Faust's table recovery can then wait for the transaction marker that ends a changelog, and a restart "
        "hang on 'need offset N, have N-1'.",
    )
    metrics_port: int = Field(
        9466, ge=0, le=65535, description="Prometheus /metrics (sfsync.processors.inbound.metrics); 0 disables it."
    )
    writer_user_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Salesforce user ids sfsync writes as (the sink's integration user): their changes wait "
        "for the WriteResult that covers them, so an echo read before its result is still recognised.",
    )
    echo_hold_s: float = Field(
        30.0,
        ge=0,
        le=300,
        description="Longest wait (from the change's poll) for that WriteResult; then the change is judged "
        "as it is. 0: never wait.",
    )
    catch_up_hold_s: float = Field(
        300.0,
        ge=0,
        le=3600,
        description="Longest wait of a change past its hold for the results stream to fold the results that "
        "were in Kafka when the change was first looked at (a backlog, a lagging results stream).",
    )
    hold_max: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="How many changes may wait for their results at once; past it no more changes are fetched "
        "until half of those are judged (memory: about 2 KB each).",
    )

    @field_validator("writer_user_ids", mode="before")
    @classmethod
    def _user_ids(cls, value: Any) -> list[str]:
        if value is None or value == "":
            return []
        items: Any = value
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(items, list):
            raise ValueError("expected user ids, comma-separated or a JSON list")
        ids = [str(i).strip() for i in items if str(i).strip()]
        bad = [i for i in ids if not re.match(_USER_ID, i)]
        if bad:
            raise ValueError(f"not Salesforce user ids (15 or 18 characters): {', '.join(bad)}")
        return ids


def load_inbound_settings(**overrides: Any) -> InboundProcessorSettings:
    """:class:`InboundProcessorSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(InboundProcessorSettings, "inbound", **overrides)
