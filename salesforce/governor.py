"""The API governor: keeps the sink inside the org's daily Salesforce API allocation (guarantee 7).

Every Salesforce response's ``Sforce-Limit-Info`` feeds a :class:`~sfsync.salesforce.limits.BudgetTracker`;
before each call the governor reads the newest :class:`~sfsync.salesforce.limits.ApiBudget` and decides:

- **go** while usage is below ``slow_from_ratio`` of the usable budget (the allocation minus the
  ``reserve_ratio`` kept for the org's other integrations);
- **slow**: above that, calls are spaced so the calls left would last a whole rolling window;
- **pause**: once the usable budget is spent (or Salesforce answered ``REQUEST_LIMIT_EXCEEDED``
  for ``TotalRequests``), no call for ``pause_s``; then one probe call refreshes the budget.

A pause is reported once (``on_pause`` gets a RATE_LIMIT error-log entry when it starts), not per
call. :func:`decide` is the pure rule; :meth:`Governor.before_call` is the thin async loop.

A caller that must stay responsive while the budget is spent (the sink keeps its Kafka consumer in
its group, the poller serves its checkpoint group) bounds its wait: ``before_call(wait_max_s=...)``
raises :class:`BudgetPausedError` (its ``retry_after``: when calls may go again) instead of sleeping
longer, so the caller carries its work, keeps its own loop turning and comes back then.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sfsync.errors import Category, ConfigError
from sfsync.ops.errorlog import ErrorLogEntry, rate_limit_pause
from sfsync.salesforce.errors import SalesforceError, SalesforceRetriableError
from sfsync.salesforce.limits import ApiBudget, BudgetTracker
from sfsync.settings import load
from sfsync.time import utcnow

DAY_S = 86_400.0
DEFAULT_RESERVE_RATIO = 0.1
DEFAULT_SLOW_FROM_RATIO = 0.8
DEFAULT_PAUSE_S = 300.0
DEFAULT_MAX_SLEEP_S = 60.0
PROBE_TIMEOUT_S = 30.0
"""While a probe call is out, other callers wait at most this long for its answer."""


class GovernorSettings(BaseSettings):
    """How the API governor spends the org's daily allocation (env prefix ``SFSYNC_GOVERNOR_``)."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_GOVERNOR_", extra="ignore", populate_by_name=True)

    reserve_ratio: float = Field(
        DEFAULT_RESERVE_RATIO, ge=0.0, lt=1.0, description="Share of the daily allocation never used."
    )
    slow_from_ratio: float = Field(
        DEFAULT_SLOW_FROM_RATIO,
        ge=0.0,
        le=1.0,
        description="Share of the usable budget after which calls are spread out.",
    )
    pause_s: float = Field(
        DEFAULT_PAUSE_S,
        gt=0,
        le=DAY_S,
        description="A pause's length when Salesforce gives no Retry-After; then one probe call looks again. The "
        "sink and the poller keep serving Kafka through a pause (they never sleep it out inside a batch or poll).",
    )
    window_s: float = Field(DAY_S, gt=0, le=7 * DAY_S, description="The rolling window the allocation covers.")
    max_sleep_s: float = Field(DEFAULT_MAX_SLEEP_S, gt=0, le=3600, description="Longest single sleep of a pause.")
    auth_pause_s: float = Field(30.0, gt=0, le=3600, description="First pause after a refused login.")
    auth_pause_max_s: float = Field(300.0, gt=0, le=3600, description="Longest pause after refused logins.")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.auth_pause_max_s < self.auth_pause_s:
            raise ValueError("auth_pause_max_s must be >= auth_pause_s")
        return self


def load_governor_settings(**overrides: Any) -> GovernorSettings:
    """:class:`GovernorSettings` from the environment (and ``overrides``); a ConfigError lists every problem."""
    return load(GovernorSettings, "governor", **overrides)


class BudgetPausedError(SalesforceRetriableError):
    """The governor holds Salesforce calls longer than the caller may wait (``before_call(wait_max_s=...)``):
    a pause (the budget is spent) or, in the slow zone, a slot further off. No call went out;
    ``retry_after`` is how long until one may (seconds). Like :class:`DailyLimitExceeded`, it is the
    budget's wait, not a failure of the work that was about to call: it spends no retry deadline."""

    category = Category.RATE_LIMIT

    def __init__(self, wait_s: float, reason: str) -> None:
        super().__init__(
            f"the API governor holds Salesforce calls for {wait_s:.0f}s: {reason}",
            error_code="API_BUDGET_PAUSED",
            retry_after=wait_s,
        )

    def log_category(self) -> Category:
        return self.category


class Action(StrEnum):
    GO = "go"
    SLOW = "slow"
    PAUSE = "pause"


@dataclass(frozen=True)
class Decision:
    """What to do before the next call: ``wait_s`` seconds first (0 for go)."""

    action: Action
    wait_s: float
    reason: str
    probe: bool = False
    """A go after a pause, to learn the current budget (no call means no fresh Sforce-Limit-Info)."""


@dataclass(frozen=True)
class Policy:
    """The governor's settings (validated; see :class:`Governor`)."""

    reserve_ratio: float = DEFAULT_RESERVE_RATIO
    slow_from_ratio: float = DEFAULT_SLOW_FROM_RATIO
    pause_s: float = DEFAULT_PAUSE_S
    window_s: float = DAY_S

    def problems(self) -> list[str]:
        found = []
        if not 0.0 <= self.reserve_ratio < 1.0:
            found.append(f"reserve_ratio: must be in [0, 1), got {self.reserve_ratio}")
        if not 0.0 <= self.slow_from_ratio <= 1.0:
            found.append(f"slow_from_ratio: must be in [0, 1], got {self.slow_from_ratio}")
        if self.pause_s <= 0:
            found.append(f"pause_s: must be > 0, got {self.pause_s}")
        if self.window_s <= 0:
            found.append(f"window_s: must be > 0, got {self.window_s}")
        return found


def usable(budget: ApiBudget, reserve_ratio: float) -> int:
    """Calls the sink may use of the allocation, the reserve kept aside."""
    return int(budget.limit * (1.0 - reserve_ratio))


def decide(
    budget: ApiBudget | None,
    now: dt.datetime,
    policy: Policy,
    *,
    paused_until: dt.datetime | None = None,
    next_slot: dt.datetime | None = None,
) -> Decision:
    """The decision before one call (pure).

    ``paused_until``: the end of the current pause, if any; ``next_slot``: the earliest time the
    pacing allows the next call (the previous call's slot plus the interval).
    """
    if paused_until is not None and now < paused_until:
        return Decision(Action.PAUSE, (paused_until - now).total_seconds(), "paused")
    if budget is None:
        return Decision(Action.GO, 0.0, "no budget observed yet")
    allowed = usable(budget, policy.reserve_ratio)
    left = allowed - budget.used
    shown = f"{budget.used}/{budget.limit} API calls used, {policy.reserve_ratio:.0%} reserve kept"
    if paused_until is not None and budget.observed_at < paused_until:
        return Decision(Action.GO, 0.0, f"probe after a pause ({shown} before it)", probe=True)
    if left <= 0:
        return Decision(Action.PAUSE, policy.pause_s, shown)
    if budget.used >= policy.slow_from_ratio * allowed:
        interval = policy.window_s / left
        wait = max(0.0, (next_slot - now).total_seconds()) if next_slot is not None else 0.0
        return Decision(Action.SLOW, wait, f"{shown}; one call per {interval:.1f}s")
    return Decision(Action.GO, 0.0, shown)


def interval_s(budget: ApiBudget | None, policy: Policy) -> float:
    """Seconds between calls in the slow zone (0 outside it)."""
    if budget is None:
        return 0.0
    allowed = usable(budget, policy.reserve_ratio)
    left = allowed - budget.used
    if left <= 0 or budget.used < policy.slow_from_ratio * allowed:
        return 0.0
    return policy.window_s / left


class Governor:
    """Decides, before each Salesforce call, whether to go, slow down or pause.

    Args:
        budget: where the newest :class:`ApiBudget` is (the client's tracker).
        reserve_ratio: share of the daily allocation never used by the sink (default 10 %).
        slow_from_ratio: share of the usable budget after which calls are spread out.
        pause_s: how long a pause lasts before a probe call (when Salesforce gives no Retry-After).
        clock: the current UTC time (injectable for tests); sleep: an awaitable sleep.
        on_pause: called with a RATE_LIMIT entry each time a pause starts (e.g. ``ErrorLog.record``).
        max_sleep_s: the longest single sleep, so a long pause still notices cancellation promptly.

    Raises:
        ConfigError: listing every invalid setting at once.
    """

    @classmethod
    def from_settings(
        cls,
        budget: BudgetTracker,
        settings: GovernorSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_pause: Callable[[ErrorLogEntry], None] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> Governor:
        """A governor with ``settings``' policy (what the sink and the poller run)."""
        return cls(
            budget,
            reserve_ratio=settings.reserve_ratio,
            slow_from_ratio=settings.slow_from_ratio,
            pause_s=settings.pause_s,
            window_s=settings.window_s,
            max_sleep_s=settings.max_sleep_s,
            sleep=sleep,
            on_pause=on_pause,
            **({"clock": clock} if clock is not None else {}),
        )

    def __init__(
        self,
        budget: BudgetTracker,
        *,
        reserve_ratio: float = DEFAULT_RESERVE_RATIO,
        slow_from_ratio: float = DEFAULT_SLOW_FROM_RATIO,
        pause_s: float = DEFAULT_PAUSE_S,
        window_s: float = DAY_S,
        clock: Callable[[], dt.datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_pause: Callable[[ErrorLogEntry], None] | None = None,
        max_sleep_s: float = DEFAULT_MAX_SLEEP_S,
    ) -> None:
        self.policy = Policy(reserve_ratio, slow_from_ratio, pause_s, window_s)
        problems = self.policy.problems()
        if max_sleep_s <= 0:
            problems.append(f"max_sleep_s: must be > 0, got {max_sleep_s}")
        if problems:
            raise ConfigError("governor", problems)
        self.budget = budget
        self._clock = clock
        self._sleep = sleep
        self._on_pause = on_pause
        self._max_sleep_s = max_sleep_s
        self._paused_until: dt.datetime | None = None
        self._next_slot: dt.datetime | None = None
        self._pausing = False
        self._probing_since: dt.datetime | None = None
        self.pauses = 0

    @property
    def paused_until(self) -> dt.datetime | None:
        return self._paused_until

    def decide(self) -> Decision:
        """The pure decision for now, from the newest budget and this governor's state."""
        return decide(
            self.budget.latest,
            self._clock(),
            self.policy,
            paused_until=self._paused_until,
            next_slot=self._next_slot,
        )

    def _start_pause(self, until: dt.datetime, message: str, trigger: str) -> None:
        self._paused_until = until
        self._probing_since = None
        if self._pausing:
            return  # the same pause goes on (a probe found the budget still spent): no new entry
        self._pausing = True
        self.pauses += 1
        if self._on_pause is not None:
            details = {"trigger": trigger, "reserve_ratio": f"{self.policy.reserve_ratio:g}"}
            latest = self.budget.latest
            if latest is not None:
                details.update(used=str(latest.used), limit=str(latest.limit))
            self._on_pause(rate_limit_pause(message, until=until, details=details, now=self._clock()))

    def pause_left_s(self) -> float | None:
        """Seconds until a call may go out when the governor pauses calls, None when it does not.

        A budget seen spent with no pause in course starts the pause now (reported once), as the next
        :meth:`before_call` would: so a caller that stops calling (the sink after a refused call) and
        comes back after this many seconds finds the pause over and probes at once."""
        decision = self.decide()
        if decision.action is not Action.PAUSE:
            return None
        self._pause_if_new(self._clock(), decision)
        return decision.wait_s

    def _pause_if_new(self, now: dt.datetime, decision: Decision) -> None:
        """Start the pause ``decision`` calls for, unless one is in course."""
        if self._paused_until is None or now >= self._paused_until:
            until = now + dt.timedelta(seconds=decision.wait_s)
            self._start_pause(
                until, f"pausing Salesforce calls until {until:%H:%M:%S} UTC: {decision.reason}", "reserve"
            )

    async def before_call(self, *, wait_max_s: float | None = None) -> Decision:
        """Wait until a Salesforce call may go out; returns the decision that let it go.

        ``wait_max_s``: the longest this call may wait in all (None: as long as the budget needs).
        When the governor would hold it longer (a pause, a slow-zone slot further off, another
        caller's probe still out), it raises :class:`BudgetPausedError` at once, its ``retry_after`` the
        wait, without taking the slot; a pause still starts (and is reported once) as without a bound.

        Raises:
            BudgetPausedError: only with ``wait_max_s``, as above.
        """
        waited = 0.0
        while True:
            now = self._clock()
            decision = self.decide()
            if decision.action is Action.PAUSE:
                self._pause_if_new(now, decision)
                self._hold(decision.wait_s, waited, wait_max_s, decision.reason)
                step = min(decision.wait_s, self._max_sleep_s)
                await self._sleep(step)
                waited += step
                continue
            if decision.probe:
                latest = self.budget.latest
                probing = self._probing_since
                if (
                    probing is not None
                    and (now - probing).total_seconds() < PROBE_TIMEOUT_S
                    and (latest is None or latest.observed_at < probing)
                ):
                    left = PROBE_TIMEOUT_S - (now - probing).total_seconds()
                    self._hold(left, waited, wait_max_s, "a probe after a pause is out")
                    step = min(1.0, self._max_sleep_s)
                    await self._sleep(step)  # one probe at a time
                    waited += step
                    continue
                self._probing_since = now
                return decision
            self._pausing = False
            self._paused_until = None
            self._probing_since = None
            if decision.action is Action.SLOW:
                slot = max(now, self._next_slot or now)
                wait = (slot - now).total_seconds()
                self._hold(wait, waited, wait_max_s, decision.reason)  # before the slot is taken
                self._next_slot = slot + dt.timedelta(seconds=interval_s(self.budget.latest, self.policy))
                if wait > 0:
                    await self._sleep(wait)
                return decision
            self._next_slot = None
            return decision

    @staticmethod
    def _hold(wait_s: float, waited_s: float, wait_max_s: float | None, reason: str) -> None:
        """Raise :class:`BudgetPausedError` when waiting ``wait_s`` more would exceed the caller's ``wait_max_s``."""
        if wait_max_s is not None and wait_s > 0 and waited_s + wait_s > wait_max_s:
            raise BudgetPausedError(wait_s, reason)

    def on_daily_limit(self, error: SalesforceError) -> None:
        """Salesforce refused a call: the daily allocation is spent (``REQUEST_LIMIT_EXCEEDED``,
        ``TotalRequests``). Pause for its Retry-After, or ``pause_s``."""
        retry_after = getattr(error, "retry_after", None)
        wait = float(retry_after) if isinstance(retry_after, int | float) and retry_after > 0 else self.policy.pause_s
        until = self._clock() + dt.timedelta(seconds=wait)
        self._start_pause(
            until,
            f"Salesforce refused a call, daily API limit reached ({error.error_code}); "
            f"pausing Salesforce calls until {until:%H:%M:%S} UTC",
            "daily_limit",
        )
