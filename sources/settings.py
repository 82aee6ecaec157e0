"""Settings of the Salesforce poller (env prefix ``SFSYNC_SOURCE_``; Kafka and registry as everywhere else).

Load with :func:`load_source_settings`, which reports every invalid value at once. The API budget
is the governor's (``SFSYNC_GOVERNOR_*``, shared with the sink), the org is ``SALESFORCE_*``, the
mapping the one setting every process reads (:mod:`sfsync.mapping.settings`).

What an idle poller spends (the defaults; each figure per polled object, the shipped mapping polls one,
Contact): a poll is one call every ``max_idle_interval_s`` (86,400 / 60 = 1,440 a day), the delete
log one every ``delete_log_interval_s`` (86,400 / 600 = 144), a reconciliation one call per 2,000
tracked ids every ``reconcile_interval_s`` (4 a day, x 1 to 100 pages: at most
``max_tracked_ids`` = 200,000 ids are reconciled). So 1,440 + 144 + 4 = 1,588 calls a day for up
to 2,000 records, and never more than 1,440 + 144 + 400 = 1,984 (under 2 % of a 100,000-call daily
allocation). The price: after a quiet spell a
change in Salesforce is read up to ``max_idle_interval_s`` (60 s) late; once changes flow, polls are
``poll_interval_s`` (1 s) apart again. ``tests/unit/sources/test_poller_budget.py`` runs an idle
day on a fake clock and holds the poller to this figure. With the workspace registry the figures are per
org (each org's allocation is its own): one poller replica polling 200 idle orgs spends them 200 times,
each against its own org's budget.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from sfsync.retry import RetryPolicy
from sfsync.settings import KafkaConnection, RegistryConnection, load


class SourceSettings(KafkaConnection, RegistryConnection):
    """How the poller reads Salesforce and checkpoints in Kafka."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_SOURCE_", extra="ignore", populate_by_name=True)

    objects: list[str] | None = Field(None, description="Poll only these objects (default: every mapped one).")
    poll_interval_s: float = Field(1.0, gt=0, le=3600, description="Wait between polls that found changes.")
    idle_backoff_factor: float = Field(
        2.0,
        ge=1.0,
        le=10.0,
        description="Growth of the wait while polls find none (1, 2, 4 ... s: 60 s is reached after 7 polls).",
    )
    max_idle_interval_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Longest wait between idle polls. Each poll of an object is one API call, so an idle object "
        "costs 86,400 / this a day: 1,440 at 60 s (of an idle day's 1,588-1,984 calls in all, see the module doc); "
        "2 s would cost 43,200. The trade: after a quiet spell a Salesforce change is read up to this late "
        "(then polls are poll_interval_s apart while changes flow); lower it for fresher inbound data at that price.",
    )
    lookback_s: float = Field(
        10.0,
        ge=0,
        le=86_400,
        description="Re-read window below the cursor: covers records that become visible after their "
        "SystemModstamp (long transactions; 1-3 s measured on real orgs).",
    )
    page_size: int = Field(
        500, ge=1, le=10_000, description="Rows per Kafka transaction (their changes + the checkpoint after them)."
    )
    query_batch_size: int = Field(
        2000, ge=200, le=2000, description="Rows per Salesforce query page (Sforce-Query-Options batchSize)."
    )
    max_seen: int = Field(
        20_000, ge=100, le=100_000, description="De-duplication entries kept (inside the window; ~35 bytes each)."
    )
    max_tracked_ids: int = Field(
        200_000,
        ge=0,
        le=2_000_000,
        description="Ids remembered for hard-delete reconciliation (beyond: reconciliation off); kept in 64 "
        "checkpoint records, ~21 bytes an id, so one record stays under Kafka's 1 MB up to ~2 million.",
    )
    delete_log_interval_s: float = Field(
        600.0,
        ge=0,
        description="How often getDeleted is read (minute granularity; 0: never): one call, 144 a day at 10 min. "
        "Soft deletes also arrive with the polls (IsDeleted rows); this catches the ones they miss.",
    )
    reconcile_interval_s: float = Field(
        21_600.0,
        ge=0,
        description="How often ids are reconciled against /queryAll for purged records (0: never): one call per "
        "2,000 tracked ids, 4 times a day at 6 h (at most 400 calls a day at max_tracked_ids). A record purged "
        "without passing the delete log is noticed this late.",
    )
    checkpoint_topic: str = Field("sfsync.poller.checkpoints", min_length=1, description="Compacted; prefixed.")
    checkpoint_partitions: int = Field(
        6,
        ge=1,
        le=1000,
        description="Checkpoints spread over this many partitions; without the workspace registry, objects are "
        "spread over replicas by these partitions.",
    )
    group_id: str = Field(
        "sfsync-poller",
        min_length=1,
        description="Replicas share objects through this group: on the checkpoint topic (one org), or on "
        "sfsync.workspaces with the workspace registry (each replica polls the orgs of its workspaces' partitions).",
    )
    transactional_id_prefix: str = Field(
        "sfsync-poller",
        min_length=1,
        description="+ '.' + the checkpoint key (<object>, or <connection_id>:<object>): a replica taking an org's "
        "object over fences the one that polled it before.",
    )
    retry_timeout_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="The poller's retry deadline (it owns its retries; the Salesforce client makes one attempt). "
        "A failed poll is retried at the next poll, quietly after its WARNING entry; once an object's polls have "
        "failed this long, one ERROR entry reports the outage (polling goes on). The start-up check of the org "
        "retries this long, then stops the poller; so does taking an object over (its transactional "
        "producer, its checkpoint) while Kafka does not answer (a broker restart). 5 minutes rides out a "
        "failover or a burst of lock or concurrency errors without an ERROR, and reports a real outage while it "
        "is still young.",
    )
    quarantine_recheck_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="How often an object whose polls were quarantined for drift (a field it selects, or access to "
        "it, removed from the org while the poller runs) is described again; polling resumes from its checkpoint "
        "once the org can answer its query again. 0: never (a restart lifts it).",
    )
    concurrent_polls: int = Field(
        8,
        ge=1,
        le=256,
        description="Polls in flight at once, each of a different org (one org's polls run one at a time): an org "
        "slow to answer holds one of these, never the others' turns. Orgs take turns (a round robin over the due "
        "ones), so a busy org cannot starve the idle ones.",
    )
    hold_recheck_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="With the workspace registry: how soon an org that answered no call (down, unreachable) is "
        "tried again; the wait doubles while it stays down, up to hold_recheck_max_s. Its checkpoints do not move "
        "meanwhile, so nothing is skipped, and the other orgs are polled as usual. A refused login waits the "
        "governor's SFSYNC_GOVERNOR_AUTH_PAUSE_S instead (doubling up to its _MAX_S).",
    )
    hold_recheck_max_s: float = Field(
        120.0, gt=0, le=3600, description="The longest wait before a down org is tried again (see hold_recheck_s)."
    )
    transaction_timeout_s: float = Field(60.0, ge=1, le=900)
    session_timeout_ms: int = Field(10_000, ge=6_000, le=300_000)
    metrics_port: int = Field(9103, ge=0, le=65535, description="0 disables the metrics endpoint.")
    register_schemas: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.max_idle_interval_s < self.poll_interval_s:
            raise ValueError("max_idle_interval_s must be >= poll_interval_s")
        if self.hold_recheck_max_s < self.hold_recheck_s:
            raise ValueError("hold_recheck_max_s must be >= hold_recheck_s")
        return self

    def retry_policy(self) -> RetryPolicy:
        """The policy of the poller's retries: ``retry_timeout_s``, the default waits."""
        return RetryPolicy(timeout_s=self.retry_timeout_s)


def load_source_settings(**overrides: Any) -> SourceSettings:
    """:class:`SourceSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(SourceSettings, "source", **overrides)
