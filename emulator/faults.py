"""Fault injection for reliability tests: rates or a scripted sequence of failures.

A spec is a comma-separated list (``sfsync emulator --faults "503=0.05,lock=0.02,latency=20ms"``):

============  ======================================================================
``503=R``     a request answers 503 SERVER_UNAVAILABLE with probability R
``lock=R``    a record write fails with UNABLE_TO_LOCK_ROW with probability R (per record)
``expire=R``  a request finds its session expired (401 INVALID_SESSION_ID)
``concurrent=R``  a request hits the concurrent long-request limit (403 REQUEST_LIMIT_EXCEEDED)
``latency=Nms``   every request waits N milliseconds first
``seed=N``    seed of the random draws (default 0), so a run can be repeated
``script=a|b|...``  the next requests, one step each, in this exact order, then normal service;
              a step is ``503``, ``lock`` (that request's record writes fail), ``expire``,
              ``concurrent`` or ``ok``
``visibility_delay=Nms``  late visibility: a write transaction keeps the SystemModstamp of its
              start but other readers see it only N ms later (a long trigger/flow chain);
              narrowed by the ``visibility_*`` settings below, which all must match
``visibility_user=U``     only transactions of this user (username or user id)
``visibility_object=O``   only transactions that write this sObject
``visibility_next=K``     only the next K matching transactions, then none
``visibility_rate=R``     each matching transaction with probability R (default 1)
============  ======================================================================

The same rule is set and read as JSON through ``/__admin/visibility`` (see :mod:`sfsync.emulator.admin`).
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field

KINDS = ("503", "lock", "expire", "concurrent")


class FaultSpecError(ValueError):
    """The spec cannot be read; the message says which part and why."""


@dataclass
class Visibility:
    """Which write transactions commit late, and by how much."""

    delay_ms: float = 0.0
    user: str | None = None  # username or user id; None: anyone
    sobject: str | None = None  # None: any object
    remaining: int | None = None  # None: no end
    rate: float = 1.0

    def describe(self) -> dict[str, object]:
        return {
            "delay_ms": self.delay_ms,
            "user": self.user,
            "sobject": self.sobject,
            "next": self.remaining,
            "rate": self.rate,
        }


@dataclass
class Faults:
    rates: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    script: deque[str] = field(default_factory=deque)
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    injected: dict[str, int] = field(default_factory=dict)
    visibility: Visibility = field(default_factory=Visibility)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        faults = cls()
        problems = []
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip().lower()
            if not sep:
                problems.append(f"{part!r}: expected name=value")
            elif name in KINDS:
                try:
                    rate = float(value)
                except ValueError:
                    problems.append(f"{part!r}: rate must be a number between 0 and 1")
                    continue
                if not 0 <= rate <= 1:
                    problems.append(f"{part!r}: rate must be between 0 and 1")
                faults.rates[name] = rate
            elif name == "latency":
                text = value.strip().lower().removesuffix("ms")
                try:
                    faults.latency_ms = float(text)
                except ValueError:
                    problems.append(f"{part!r}: latency is like 20ms")
            elif name == "seed":
                if not value.strip().isdigit():
                    problems.append(f"{part!r}: seed is a whole number")
                else:
                    faults.seed = int(value)
            elif name == "script":
                steps = [s.strip().lower() for s in value.split("|") if s.strip()]
                bad = [s for s in steps if s not in (*KINDS, "ok")]
                if bad:
                    problems.append(f"{part!r}: unknown step(s) {bad}; steps are {', '.join((*KINDS, 'ok'))}")
                faults.script.extend(steps)
            elif name.startswith("visibility_"):
                problem = faults._visibility_setting(name, value.strip())
                if problem:
                    problems.append(f"{part!r}: {problem}")
            else:
                problems.append(f"{part!r}: unknown fault {name!r}")
        if problems:
            raise FaultSpecError("; ".join(problems))
        faults._rng.seed(faults.seed)
        return faults

    def _visibility_setting(self, name: str, value: str) -> str | None:
        """Apply one ``visibility_*`` part; the problem with it, if any."""
        rule = self.visibility
        if name == "visibility_delay":
            try:
                rule.delay_ms = float(value.lower().removesuffix("ms"))
            except ValueError:
                return "the delay is like 1500ms"
            return None if rule.delay_ms >= 0 else "the delay cannot be negative"
        if name == "visibility_user":
            rule.user = value or None
        elif name == "visibility_object":
            rule.sobject = value or None
        elif name == "visibility_next":
            if not value.isdigit():
                return "next is a whole number of transactions"
            rule.remaining = int(value)
        elif name == "visibility_rate":
            try:
                rule.rate = float(value)
            except ValueError:
                return "rate must be a number between 0 and 1"
            if not 0 <= rule.rate <= 1:
                return "rate must be between 0 and 1"
        else:
            return f"unknown setting {name!r}; visibility_delay, _user, _object, _next, _rate"
        return None

    def late_commit_ms(self, user_ids: frozenset[str], sobjects: frozenset[str]) -> float | None:
        """The visibility delay of a committing write transaction, or None. ``user_ids`` are the
        transaction user's id and username; ``sobjects`` the objects it wrote. Counts toward ``next``."""
        rule = self.visibility
        if rule.delay_ms <= 0:
            return None
        if rule.user is not None and rule.user.lower() not in {u.lower() for u in user_ids}:
            return None
        if rule.sobject is not None and rule.sobject.lower() not in {o.lower() for o in sobjects}:
            return None
        with self._lock:
            if rule.remaining is not None and rule.remaining <= 0:
                return None
            if rule.rate < 1 and self._rng.random() >= rule.rate:
                return None
            if rule.remaining is not None:
                rule.remaining -= 1
            self._count("late")
            return rule.delay_ms

    def request_fault(self) -> str | None:
        """The fault for the request starting now: ``"503"``, ``"expire"``, ``"concurrent"``,
        ``"lock"`` (every record write of this request fails) or None. The script goes first,
        one step per request; then the rates."""
        with self._lock:
            if self.script:
                step = self.script.popleft()
                return None if step == "ok" else self._count(step)
            for kind in ("503", "expire", "concurrent"):
                rate = self.rates.get(kind, 0.0)
                if rate > 0 and self._rng.random() < rate:
                    return self._count(kind)
            return None

    def record_locked(self) -> bool:
        """Whether one record write hits UNABLE_TO_LOCK_ROW (the ``lock`` rate)."""
        rate = self.rates.get("lock", 0.0)
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate and self._count("lock") == "lock"

    def _count(self, kind: str) -> str:
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind

    def describe(self) -> dict[str, object]:
        return {
            "rates": dict(self.rates),
            "latency_ms": self.latency_ms,
            "script": list(self.script),
            "seed": self.seed,
            "injected": dict(self.injected),
            "visibility": self.visibility.describe(),
        }
