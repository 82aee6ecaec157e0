"""Settings of the Salesforce sink (env prefix ``SFSYNC_SINK_``; Kafka and registry as everywhere else).

Load with :func:`load_sink_settings`, which reports every invalid value at once.

The sink owns the retries of its writes (docs/decisions/0006-one-retry-owner.md): ``retry_*``
below. The former ``SFSYNC_SINK_MAX_RETRIES``, ``SFSYNC_SINK_BACKOFF_BASE_S`` and
``SFSYNC_SINK_BACKOFF_MAX_S`` are refused with a :class:`~sfsync.errors.ConfigError` naming what
replaced them (:data:`REMOVED`), rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import SettingsConfigDict

from sfsync.kafka.clients import FetchTuning
from sfsync.retry import RetryPolicy
from sfsync.salesforce.composite import COLLECTION_MAX
from sfsync.settings import KafkaConnection, RegistryConnection, load

BATCH_MAX = 10 * COLLECTION_MAX
"""Largest batch: its match queries and collections are split in Salesforce-sized calls anyway."""

REMOVED: dict[str, str] = {
    "max_retries": "a write's retries are bounded by time: SFSYNC_SINK_RETRY_TIMEOUT_S after its first failure",
    "backoff_base_s": "replaced by SFSYNC_SINK_RETRY_WAIT_INITIAL_S",
    "backoff_max_s": "replaced by SFSYNC_SINK_RETRY_WAIT_MAX_S",
}
"""Settings the sink no longer reads, and what replaced each."""


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
    batch_linger_s: float = Field(
        0.3,
        gt=0,
        le=600,
        description=(
            "How long a batch waits for more writes after its first one before it goes to Salesforce. Under load "
            "a batch fills to batch_size first (the writes that arrived during the previous batch's calls); at low "
            "rates it goes this long after its first write: the latency a write pays for sharing its calls. Longer "
            "means fewer API calls per record, shorter a faster sync."
        ),
    )
    batch_max_age_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description=(
            "The longest one pass of the many-org sink waits for the batches on their way to Salesforce before it "
            "reads on (a slow org's batch goes on meanwhile, and is picked up by a later pass); at least "
            "batch_linger_s."
        ),
    )
    retry_timeout_s: float = Field(
        900.0,
        gt=0,
        le=7 * 86_400,
        description=(
            "How long a write's retriable failure (a lock, a 5xx, a timeout, the concurrent-request limit) is "
            "retried, counted from its first failure; then it is parked in the DLQ with its last error's code. "
            "15 minutes rides out lock contention and a Salesforce failover or short maintenance, and parks a "
            "record that keeps failing long before sfsync.writes' retention could drop it."
        ),
    )
    retry_wait_initial_s: float = Field(0.5, gt=0, le=60, description="The first wait before a write is retried.")
    retry_wait_max_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description=(
            "The longest wait between retries, and the most one batch waits for retries in all: a write whose "
            "next retry would wait longer goes back as pending and is tried again first thing in the next batch "
            "(so a record that keeps failing holds up the other writes of a batch by this much at most)."
        ),
    )
    budget_wait_max_s: float = Field(
        10.0,
        ge=0,
        le=60,
        description=(
            "The most one batch waits for the API governor in all (its slow-zone spacing, the end of a pause). "
            "When the budget needs a longer wait (a pause: SFSYNC_GOVERNOR_PAUSE_S, then a probe), the batch ends "
            "with its unwritten writes pending, and the worker pauses its partitions and keeps polling Kafka until "
            "calls may go again, so it stays in its consumer group however long the budget stays spent."
        ),
    )
    carry_max: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description=(
            "The most writes the sink carries from batch to batch (waiting for their org, their workspace, a parent, "
            "a retry) before it stops reading on: past it, the partitions holding carried writes are paused (the "
            "consumer keeps polling, so it stays in its group) until fewer are carried. Bounds the memory an org "
            "that is down for long takes, at the cost of the other workspaces of those partitions waiting too."
        ),
    )
    hold_recheck_initial_s: float = Field(
        5.0,
        gt=0,
        le=3_600,
        description=(
            "How soon an org that answered no call of a batch (down: 5xx, connections refused or timing out) is "
            "tried again; the wait doubles with each failed try, up to hold_recheck_max_s. Its writes wait meanwhile "
            "(uncommitted) and spend no retry deadline; the other orgs' writes go on."
        ),
    )
    hold_recheck_max_s: float = Field(
        60.0, gt=0, le=3_600, description="The longest wait before an org that is down is tried again."
    )
    max_parent_waits: int = Field(
        50, ge=1, le=100_000, description="Batches a child waits for a missing parent before it is parked."
    )
    identity_cache_size: int = Field(100_000, ge=0, description="Record keys whose Salesforce Id is remembered.")
    published_identities_size: int = Field(
        100_000,
        ge=0,
        le=10_000_000,
        description=(
            "Person records (the most recently written) whose identity (object and Salesforce Id) the sink "
            "remembers having published to sfsync.identities, so that it publishes one only when new or changed. "
            "A forgotten one (evicted, or after a restart) is published once more: harmless, the topic is "
            "compacted and the processor sets only changed values. 0: every person's result publishes it."
        ),
    )
    record_clock_size: int = Field(
        10_000,
        ge=0,
        description=(
            "Salesforce records (the most recently written) whose newest written value time per field the sink "
            "remembers, so that a write never puts an older value over a newer one across batches and write keys "
            "(a write retried while a later one for the same record went through). 0 turns the guard off."
        ),
    )
    quarantine_recheck_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description=(
            "How often a mapping quarantined for drift (a field or permission removed from the org while the sink "
            "runs) has its objects described again; the quarantine lifts once the mapping passes the start-up "
            "rules again. 0: never (a restart lifts it). Each recheck costs a describe call or two."
        ),
    )
    query_max_chars: int = Field(
        12_000, ge=1_000, le=15_000, description="URL budget of one match query's IN lists (Salesforce: ~16 KB)."
    )
    group_id: str = Field("sfsync-sink", min_length=1)
    client_id: str = Field("sfsync-sink", min_length=1)
    poll_timeout_s: float = Field(0.5, gt=0, le=60)
    fetch_min_bytes: int = Field(
        65_536,
        ge=1,
        le=52_428_800,
        description=(
            "What the broker gathers before it answers a fetch of sfsync.writes (fetch.min.bytes; librdkafka's "
            "own: 1). A consumer tailing a busy topic a record or two per fetch costs the broker ~144 µs a record, "
            "at 64 KB ~22 µs; below that much traffic fetch_wait_max_ms bounds the wait."
        ),
    )
    fetch_wait_max_ms: int = Field(
        50,
        ge=0,
        le=10_000,
        description=(
            "The longest the broker holds a fetch of sfsync.writes short of fetch_min_bytes (fetch.wait.max.ms; "
            "librdkafka's own: 500): the latency it adds to a write at low rates."
        ),
    )
    session_timeout_ms: int = Field(45_000, ge=6_000, le=300_000)
    max_poll_interval_ms: int = Field(600_000, ge=10_000)
    producer_flush_timeout_s: float = Field(30.0, gt=0, le=600)
    kafka_retry_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3_600,
        description=(
            "How long the sink rides out transient Kafka faults on its consumer (a broker restart, the group "
            "coordinator loading or moving, a rebalance): commits that fail leave the offsets uncommitted until a "
            "later one goes through, and the loop goes on. A streak of faults longer than this stops the sink "
            "(exit, nothing more committed). 2 minutes rides out a broker restart."
        ),
    )
    metrics_port: int = Field(9102, ge=0, le=65535, description="0 disables the metrics endpoint.")
    register_schemas: bool = True

    # Removed (see REMOVED): declared only so that a deployment still setting one is told what replaced it.
    removed_max_retries: Any = Field(
        None, validation_alias=AliasChoices("max_retries", "SFSYNC_SINK_MAX_RETRIES"), exclude=True, repr=False
    )
    removed_backoff_base_s: Any = Field(
        None, validation_alias=AliasChoices("backoff_base_s", "SFSYNC_SINK_BACKOFF_BASE_S"), exclude=True, repr=False
    )
    removed_backoff_max_s: Any = Field(
        None, validation_alias=AliasChoices("backoff_max_s", "SFSYNC_SINK_BACKOFF_MAX_S"), exclude=True, repr=False
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        problems = [
            f"SFSYNC_SINK_{name.upper()} is no longer read, unset it: {why}"
            for name, why in REMOVED.items()
            if getattr(self, f"removed_{name}") is not None
        ]
        if self.retry_wait_max_s < self.retry_wait_initial_s:
            problems.append("retry_wait_max_s must be >= retry_wait_initial_s")
        if self.retry_timeout_s < self.retry_wait_max_s:
            problems.append("retry_timeout_s must be >= retry_wait_max_s")
        if self.hold_recheck_max_s < self.hold_recheck_initial_s:
            problems.append("hold_recheck_max_s must be >= hold_recheck_initial_s")
        if self.batch_max_age_s < self.batch_linger_s:
            problems.append("batch_max_age_s must be >= batch_linger_s")
        if self.carry_max < self.batch_size:
            problems.append("carry_max must be >= batch_size (a batch's pending writes are carried)")
        if self.budget_wait_max_s + self.retry_wait_max_s >= self.max_poll_interval_ms / 1000:
            problems.append("budget_wait_max_s + retry_wait_max_s must be below max_poll_interval_ms (in seconds)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def fetch(self) -> FetchTuning:
        """How the consumer of sfsync.writes fetches (``fetch_*``)."""
        return FetchTuning(min_bytes=self.fetch_min_bytes, wait_max_ms=self.fetch_wait_max_ms)

    def retry_policy(self) -> RetryPolicy:
        """The policy of the sink's write retries (``retry_*``)."""
        return RetryPolicy(
            timeout_s=self.retry_timeout_s,
            wait_initial_s=self.retry_wait_initial_s,
            wait_max_s=self.retry_wait_max_s,
        )


def load_sink_settings(**overrides: Any) -> SinkSettings:
    """:class:`SinkSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(SinkSettings, "sink", **overrides)
