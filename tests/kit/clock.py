"""Fake clocks: time that a test moves by hand, injected where the code takes ``clock=`` / ``sleep=``.

- :class:`Clock` reads as a ``datetime`` (UTC), like ``sfsync``'s and the emulator's clocks;
- :class:`EpochClock` reads as seconds since the epoch, like ``time.time``;
- :class:`WallClock` is the real time, until a test pins it.

:class:`Clock` and :class:`EpochClock` also stand in for ``asyncio.sleep``: :meth:`Clock.sleep`
records what was asked and moves the clock on instead of waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt

__all__ = ["EPOCH_2026", "Clock", "EpochClock", "WallClock", "recent_minute"]

EPOCH_2026 = 1_767_225_600.0
"""2026-01-01T00:00:00Z in seconds since the epoch."""


def recent_minute(ago: dt.timedelta = dt.timedelta(minutes=30)) -> dt.datetime:
    """The start of the minute ``ago`` before now (UTC): close enough to the real time for code that
    compares with it (a poller's lookback, a token's expiry), round enough to read in a failure."""
    return dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - ago


class Clock:
    """A settable ``datetime`` clock: ``clock()`` reads it.

    ``start``: the first reading (default :func:`recent_minute`). ``tick``: how far every reading
    moves it on (distinct transactions then get distinct timestamps, as on a real server).
    """

    def __init__(self, start: dt.datetime | None = None, *, tick: dt.timedelta = dt.timedelta(0)) -> None:
        self.now = recent_minute() if start is None else start
        self.tick = tick
        self.sleeps: list[float] = []
        """Every :meth:`sleep` asked for, in seconds, in order."""

    def __call__(self) -> dt.datetime:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move the clock on by ``seconds`` plus ``datetime.timedelta(**delta)`` (negative goes back)."""
        self.now += dt.timedelta(seconds=seconds, **delta)

    async def sleep(self, seconds: float) -> None:
        """Stands in for ``asyncio.sleep``: recorded in :attr:`sleeps`; yields to other tasks (as a real
        sleep does), then wakes with the clock at least ``seconds`` past the moment of the call (so
        callers sleeping at once overlap instead of adding up)."""
        self.sleeps.append(seconds)
        wake = self.now + dt.timedelta(seconds=seconds)
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


class EpochClock:
    """A settable clock of seconds since the epoch (what ``time.time`` returns): ``clock()`` reads it.

    ``now``: the first reading (default 2026-01-01T00:00:00Z).
    """

    def __init__(self, now: float = EPOCH_2026) -> None:
        self.now = now
        self.sleeps: list[float] = []
        """Every :meth:`sleep` asked for, in seconds, in order."""

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move the clock on by ``seconds`` plus ``datetime.timedelta(**delta)`` (negative goes back)."""
        self.now += seconds + dt.timedelta(**delta).total_seconds()

    async def sleep(self, seconds: float) -> None:
        """Stands in for ``asyncio.sleep``, as :meth:`Clock.sleep` does."""
        self.sleeps.append(seconds)
        wake = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


class WallClock:
    """The real time (UTC); between :meth:`pin` and :meth:`release`, the moment of the pin at every
    reading (so that many writes share one timestamp, e.g. one ``SystemModstamp``)."""

    def __init__(self) -> None:
        self.pinned: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.pinned or dt.datetime.now(dt.UTC)

    def pin(self) -> None:
        self.pinned = dt.datetime.now(dt.UTC)

    def release(self) -> None:
        self.pinned = None
