"""The poller's pace and turns (pure): when a (connection, object) pair is due, which due pairs poll next, and
how long an org that cannot be polled waits (docs/decisions/0009-workspaces-and-connections.md).

Nothing here talks to Kafka or Salesforce; :mod:`sfsync.sources.poller` runs it.

- :class:`Pace`: one pair's next poll. ``base_s`` after a poll that found changes (a busy org is polled at
  the minimum interval), the interval grown by ``factor`` up to ``max_s`` while polls find none (an idle org
  backs off), and never before its org's budget allows (the governor's pause, ``not_before_s``).
- :func:`pick_due`: the pairs to poll now, a round robin over connections: each connection that has a due
  pair, no poll in flight and no hold gives its earliest-due pair, the connections taken in turn from the
  one after the last served, at most ``slots`` at once. So one busy org cannot take the turns of the
  others: each connection gets at most one poll per turn, and every due connection is served before any
  is served twice.
- :class:`~sfsync.retry.Hold` / :func:`~sfsync.retry.hold_after` (shared with the sink's connections):
  an org that cannot be polled (down, its login refused, the
  integration refused, its mapping not fitting it) waits on a doubling backoff while the others go on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sfsync.retry import Hold, backoff_s, hold_after
from sfsync.sources.rules import next_interval

__all__ = ["Hold", "HoldCause", "Pace", "backoff_s", "hold_after", "pick_due"]


@dataclass
class Pace:
    """When one (connection, object) pair is due (``time.monotonic`` seconds); see the module doc."""

    base_s: float
    factor: float
    max_s: float
    interval_s: float = 0.0
    next_due: float = 0.0

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            self.interval_s = self.base_s

    def after_poll(self, found_changes: bool, now: float, *, not_before_s: float | None = None) -> None:
        """A poll at ``now`` found changes or not: the next one is due after the adapted interval, and no
        sooner than ``not_before_s`` from ``now`` (the budget's pause) when given."""
        self.interval_s = next_interval(self.interval_s, found_changes, self.base_s, self.factor, self.max_s)
        self.next_due = now + max(self.interval_s, not_before_s or 0.0)


def pick_due(
    due: Mapping[str, Mapping[str, float]],
    now: float,
    *,
    after: str | None,
    busy: Collection[str] = (),
    held: Collection[str] = (),
    slots: int,
) -> list[tuple[str, str]]:
    """The ``(connection, object)`` pairs to poll at ``now``, at most ``slots``.

    ``due``: connection -> object -> when it is due. A connection in ``busy`` (a poll in flight) or ``held``
    gives none; every other connection with a pair due by ``now`` gives its earliest-due one (ties: by
    object name), connections in order of their ids starting after ``after`` (the last one served), so the
    turns rotate."""
    if slots <= 0:
        return []
    order = sorted(due)
    if after is not None:
        start = next((i for i, c in enumerate(order) if c > after), 0)
        order = order[start:] + order[:start]
    picked: list[tuple[str, str]] = []
    for connection in order:
        if connection in busy or connection in held:
            continue
        ready = [(at, name) for name, at in due[connection].items() if at <= now]
        if not ready:
            continue
        picked.append((connection, min(ready)[1]))
        if len(picked) >= slots:
            break
    return picked


class HoldCause(StrEnum):
    """Why an org is not polled for a while."""

    ORG_DOWN = "org_down"
    """The org answered no call (5xx, connections refused or timing out)."""
    CREDENTIALS = "credentials"
    """Its login is refused, or its connection cannot be opened (removed, sealed under a key this process
    lacks, invalid settings)."""
    REFUSED = "refused"
    """The org refuses the integration as a whole (the API disabled, a permission gone): a fatal answer."""
    MAPPING = "mapping"
    """The org cannot answer what its workspaces' mappings poll (a field or object it lacks or hides), or a
    workspace's mapping cannot be used."""
