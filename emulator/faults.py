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
============  ======================================================================
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
class Faults:
    rates: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    script: deque[str] = field(default_factory=deque)
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    injected: dict[str, int] = field(default_factory=dict)

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
            else:
                problems.append(f"{part!r}: unknown fault {name!r}")
        if problems:
            raise FaultSpecError("; ".join(problems))
        faults._rng.seed(faults.seed)
        return faults

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
        }
