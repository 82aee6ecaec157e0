"""The retry policy: one deadline, backoff until it, then the owner's error handler.

Modelled on Kafka Connect's ``RetryWithToleranceOperator``: a retriable failure is tried again
after a growing, jittered wait until ``timeout_s`` has passed since the *first* failure; after that
the owner hands the work to its error handler. Each component has one owner of its retries, and
nothing below that owner retries (docs/decisions/0006-one-retry-owner.md):

- the Salesforce client retries nothing: one attempt per call, the classified error raised
  (refreshing an expired session once is re-authentication, not a retry);
- the sink owns its writes' retries, across rounds and batches, until ``SFSYNC_SINK_RETRY_TIMEOUT_S``
  after a write's first failure; then the write is parked in the DLQ (``sinks/writer.py``);
- the poller retries a failed poll at its next poll and records one ERROR entry once an outage
  outlasts ``SFSYNC_SOURCE_RETRY_TIMEOUT_S``; its start-up checks retry with stamina, configured by
  :meth:`RetryPolicy.stamina`, until the same deadline, and so does its taking an object over while
  Kafka does not answer (``sources/poller.py``);
- a worker's schema-registry client retries a call that got no answer or a 408/429/5xx until
  ``SCHEMA_REGISTRY_RETRY_TIMEOUT_S`` after its first failure (``sfsync/serde/registry.py``; nothing
  else is retried there, and a command's client makes one attempt);
- the sink rides out transient Kafka faults on its consumer (a failed commit is made by a later one)
  until ``SFSYNC_SINK_KAFKA_RETRY_TIMEOUT_S`` (``sinks/loop.py``).

Whether an error is retried at all is its kind (:class:`~sfsync.errors.RetriableError`; every
Salesforce answer is classified in ``salesforce/errors.py``); for how long is the owner's policy.

:class:`RetryPolicy` is pure: the caller passes the time (``sfsync.time.monotonic``, or a test's
fake clock) and, for the jitter, a ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Literal, TypedDict, TypeVar

from sfsync.errors import RetriableError

__all__ = ["Hold", "RetryPolicy", "StaminaArgs", "backoff_s", "hold_after", "retry_after"]

_JITTER = random.Random()  # noqa: S311 - jitter, not cryptography


def retry_after(error: BaseException | None) -> float | None:
    """The wait the other side asked for (a :class:`RetriableError`'s ``retry_after``), or None."""
    if not isinstance(error, RetriableError) or error.retry_after is None:
        return None
    return max(float(error.retry_after), 0.0)


class BackoffHook:
    """stamina's ``on`` for a policy: retry ``on`` but not ``unless``, waiting at least ``retry_after``.

    Returns False (raise now) for an error that is not retried, or whose ``retry_after`` is longer
    than the whole deadline; the ``retry_after`` (at least the initial wait) when it names one;
    True (stamina's own jittered backoff) otherwise, and for the errors of ``waited_elsewhere``,
    whose ``retry_after`` someone else waits out (the governor pauses every call of a spent daily
    allocation, so the retry's next call waits for it there).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        on: type[Exception] | tuple[type[Exception], ...],
        unless: tuple[type[Exception], ...] = (),
        waited_elsewhere: tuple[type[Exception], ...] = (),
    ) -> None:
        self.policy = policy
        self.on = on
        self.unless = unless
        self.waited_elsewhere = waited_elsewhere

    def __call__(self, error: Exception) -> bool | float:
        if not isinstance(error, self.on) or isinstance(error, self.unless):
            return False
        after = retry_after(error)
        if after is None or isinstance(error, self.waited_elsewhere):
            return True
        if after > self.policy.timeout_s:
            return False
        return max(after, self.policy.wait_initial_s)

    def __repr__(self) -> str:
        return f"BackoffHook(on={self.on!r}, unless={self.unless!r}, timeout_s={self.policy.timeout_s:g})"


class StaminaArgs(TypedDict):
    """The keyword arguments of ``stamina.retry_context`` for one :class:`RetryPolicy`."""

    on: BackoffHook
    attempts: Literal[None]
    timeout: float
    wait_initial: float
    wait_max: float
    wait_jitter: float
    wait_exp_base: float


@dataclass(frozen=True)
class RetryPolicy:
    """How long one owner retries a failing piece of work, and how long it waits in between.

    ``timeout_s``: the deadline, counted from the first failure; a failure after it is handed to the
    owner's error handler instead of being retried. The wait before retry ``n`` (1 after the first
    failure) is stamina's: ``min(wait_max_s, wait_initial_s * wait_exp_base ** (n - 1) + uniform(0,
    jitter))``, with ``jitter`` = ``wait_jitter_s`` (default ``wait_initial_s``), and never shorter
    than the ``retry_after`` the failure carries.
    """

    timeout_s: float
    wait_initial_s: float = 0.5
    wait_max_s: float = 30.0
    wait_jitter_s: float | None = None
    wait_exp_base: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        if self.timeout_s <= 0:
            problems.append(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.wait_initial_s <= 0:
            problems.append(f"wait_initial_s must be > 0, got {self.wait_initial_s}")
        if self.wait_max_s < self.wait_initial_s:
            problems.append(f"wait_max_s ({self.wait_max_s}) must be >= wait_initial_s ({self.wait_initial_s})")
        if self.wait_jitter_s is not None and self.wait_jitter_s < 0:
            problems.append(f"wait_jitter_s must be >= 0, got {self.wait_jitter_s}")
        if self.wait_exp_base < 1:
            problems.append(f"wait_exp_base must be >= 1, got {self.wait_exp_base}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def jitter_s(self) -> float:
        """The most the jitter adds to a wait."""
        return self.wait_initial_s if self.wait_jitter_s is None else self.wait_jitter_s

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered wait before retry number ``attempt`` (1 after the first failure)."""
        exponent = max(attempt, 1) - 1
        try:
            grown = self.wait_initial_s * self.wait_exp_base**exponent
        except OverflowError:
            return self.wait_max_s
        return min(self.wait_max_s, grown + (rng or _JITTER).uniform(0, self.jitter_s))

    def delay(self, attempt: int, error: BaseException | None = None, rng: random.Random | None = None) -> float:
        """:meth:`backoff`, or the ``retry_after`` of ``error`` when that is longer (it may exceed ``wait_max_s``)."""
        wait = self.backoff(attempt, rng)
        after = retry_after(error)
        return wait if after is None else max(wait, after)

    def deadline(self, first_failure: float) -> float:
        """When the retries of work that first failed at ``first_failure`` run out (same clock)."""
        return first_failure + self.timeout_s

    def expired(self, first_failure: float, now: float) -> bool:
        """Whether the deadline of work that first failed at ``first_failure`` has passed at ``now``."""
        return now >= self.deadline(first_failure)

    def stamina(
        self,
        on: type[Exception] | tuple[type[Exception], ...] = RetriableError,
        *,
        unless: tuple[type[Exception], ...] = (),
        waited_elsewhere: tuple[type[Exception], ...] = (),
    ) -> StaminaArgs:
        """``stamina.retry_context(**policy.stamina(...))``: retry a one-off call with this policy.

        Retries errors of ``on`` except ``unless`` until ``timeout_s`` after the first attempt, with
        this policy's waits (a ``retry_after`` is honoured, except for ``waited_elsewhere`` errors;
        one longer than the whole deadline is raised at once), then the last error is raised. No
        count: the deadline is the bound.
        """
        return {
            "on": BackoffHook(self, on, unless, waited_elsewhere),
            "attempts": None,
            "timeout": self.timeout_s,
            "wait_initial": self.wait_initial_s,
            "wait_max": self.wait_max_s,
            "wait_jitter": self.jitter_s,
            "wait_exp_base": self.wait_exp_base,
        }


Cause = TypeVar("Cause", bound=StrEnum)


@dataclass(frozen=True)
class Hold(Generic[Cause]):
    """Something held (an org, a connection) for ``cause`` since ``since`` until ``until`` (monotonic seconds),
    after ``failures`` failures in a row of that cause; ``code`` names the last one (``SERVER_UNAVAILABLE``,
    ``AUTH_FAILED``...). The sink's connections and the poller's orgs are held so, each with its own causes."""

    cause: Cause
    since: float
    until: float
    failures: int
    code: str


def backoff_s(failures: int, initial_s: float, max_s: float) -> float:
    """The wait after ``failures`` failures in a row: ``initial_s``, doubling, at most ``max_s``."""
    return min(max_s, initial_s * 2.0 ** max(failures - 1, 0))


def hold_after(
    previous: Hold[Cause] | None,
    cause: Cause,
    now: float,
    code: str,
    *,
    initial_s: float,
    max_s: float,
    wait_s: float | None = None,
) -> Hold[Cause]:
    """The hold after a failure of ``cause`` at ``now``: ``wait_s`` when the cause says how long (an API budget's
    pause), else the backoff of the failures in a row of that cause."""
    same = previous is not None and previous.cause is cause
    failures = previous.failures + 1 if same and previous is not None else 1
    since = previous.since if same and previous is not None else now
    wait = wait_s if wait_s is not None else backoff_s(failures, initial_s, max_s)
    return Hold(cause, since, now + max(wait, 0.0), failures, code)
