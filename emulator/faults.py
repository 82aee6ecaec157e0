"""Fault injection for reliability tests: rates or a scripted sequence of failures.

A spec is a comma-separated list (``sfsync emulator --faults "503=0.05,lock=0.02,latency=20ms"``):

=========================  ======================================================================
``503=R``                  a request answers 503 SERVER_UNAVAILABLE with probability R
``lock=R``                 a record write fails with UNABLE_TO_LOCK_ROW with probability R (per record)
``expire=R``               a request finds its session expired (401 INVALID_SESSION_ID)
``concurrent=R``           a request hits the concurrent long-request limit (403 REQUEST_LIMIT_EXCEEDED)
``commit504=R``            a write (a POST, PATCH, PUT or DELETE call) is served and committed, then
                           answered 504 with a gateway's HTML page instead of Salesforce's answer
``commitdrop=R``           a write is served and committed, then its connection is closed with no
                           answer at all (see :mod:`sfsync.emulator.connection_drop`)
``trigger=R``              a record write fails in an after-save trigger with probability R (per
                           record): CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY, the write undone; narrowed
                           by the ``trigger_*`` settings below, which all must match
``trigger_object=O``       only records of this sObject
``trigger_match=F:P``      only records whose field F (as it would be saved) starts with P, compared
                           case-insensitively; with no ``trigger`` rate every such record fails, so
                           a test can make one chosen record always fail
``daily_spent_after=N``    the daily API allocation runs out after N more calls, counted from when
                           the spec is installed (the usage jumps to limit - N, as if other clients
                           had spent the rest); ``POST /__admin/limits {"restore": true}`` gives it back
``expire_every=D``         every access token expires D after it was issued (``60s``, ``1500ms``;
                           a bare number is seconds): its next call answers 401 INVALID_SESSION_ID
``latency=Nms``            every request waits N milliseconds first
``seed=N``                 seed of the random draws (default 0), so a run can be repeated
``script=a|b|...``         the next requests, one step each, in this exact order, then normal
                           service; a step is ``503``, ``lock`` (that request's record writes fail),
                           ``trigger`` (they fail in a trigger), ``expire``, ``concurrent``,
                           ``commit504``, ``commitdrop`` or ``ok``; a commit step hits whichever
                           request takes it, a read too (served, then its answer lost)
``visibility_delay=Nms``   late visibility: a write transaction keeps the SystemModstamp of its
                           start but other readers see it only N ms later (a long trigger/flow
                           chain); narrowed by the ``visibility_*`` settings below, which all must match
``visibility_user=U``      only transactions of this user (username or user id)
``visibility_object=O``    only transactions that write this sObject
``visibility_next=K``      only the next K matching transactions, then none
``visibility_rate=R``      each matching transaction with probability R (default 1)
=========================  ======================================================================

The admin API replaces the whole spec (``POST /__admin/faults``) or changes only the parts it names
(``PATCH /__admin/faults``: :meth:`Faults.update`); ``GET /__admin/stats`` shows the faults and how many of
each kind were injected (:attr:`Faults.injected`, keyed by the kinds above, ``expire_every``, ``daily_limit``
for calls refused once the allocation was spent, and ``late`` for late transactions). The visibility rule
is also set and read as JSON through ``/__admin/visibility`` (see :mod:`sfsync.emulator.admin`).
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

REQUEST_KINDS = ("503", "expire", "concurrent")  # the call is answered with the fault instead of served
COMMIT_KINDS = ("commit504", "commitdrop")  # a write is served and committed, then its answer lost
RECORD_KINDS = ("lock", "trigger")  # a record write fails
KINDS = (*REQUEST_KINDS, *COMMIT_KINDS, *RECORD_KINDS)
STEPS = (*KINDS, "ok")


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
class TriggerRule:
    """Which record writes the ``trigger`` fault may hit: of ``sobject`` (None: any), and whose ``field``
    starts with ``prefix`` (None: any record)."""

    sobject: str | None = None
    field: str | None = None
    prefix: str = ""

    def matches(self, sobject: str, record: Callable[[], Mapping[str, Any]]) -> bool:
        """Whether a write of ``sobject`` is in scope; ``record()`` (read only when a field narrows the
        rule) is the record as it would be saved."""
        if self.sobject is not None and self.sobject.lower() != sobject.lower():
            return False
        if self.field is None:
            return True
        wanted = self.field.lower()
        value = None
        for key, given in record().items():  # the last spelling wins: later parts of a merged record override
            if key.lower() == wanted:
                value = given
        return value is not None and str(value).casefold().startswith(self.prefix.casefold())

    def describe(self) -> dict[str, object]:
        return {"sobject": self.sobject, "match": f"{self.field}:{self.prefix}" if self.field else None}


def _duration_s(text: str) -> float:
    """``60s``, ``1500ms``, ``2m`` or a bare number of seconds, in seconds (ValueError otherwise)."""
    text = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * scale
    return float(text)


@dataclass
class Faults:
    """The faults of one emulated org (the spec above) and how many of each were injected; its draws are
    thread-safe and, for one seed and one sequence of calls, repeatable."""

    rates: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    script: deque[str] = field(default_factory=deque)
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    injected: dict[str, int] = field(default_factory=dict)
    visibility: Visibility = field(default_factory=Visibility)
    trigger: TriggerRule = field(default_factory=TriggerRule)
    daily_spent_after: int | None = None  # applied to the org's usage when the spec is installed
    expire_every_s: float | None = None

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        """The faults a spec describes (FaultSpecError naming every bad part)."""
        faults = cls()
        faults.update(spec)
        return faults

    def update(self, spec: str | None) -> None:
        """Change only the settings ``spec`` names; the others, and the injected counts, stay (a ``script``
        part replaces the script; ``seed`` restarts the draws). A bad spec raises FaultSpecError, naming
        every bad part, and changes nothing."""
        problems = Faults()._apply(spec)  # checked on a scratch copy first: all or nothing
        if problems:
            raise FaultSpecError("; ".join(problems))
        self._apply(spec)

    def _apply(self, spec: str | None) -> list[str]:
        """Apply each part of ``spec`` to these faults; the problems found."""
        problems = []
        new_script = True
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip().lower()
            value = value.strip()
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
                self.rates[name] = rate
            elif name == "latency":
                try:
                    self.latency_ms = float(value.lower().removesuffix("ms"))
                except ValueError:
                    problems.append(f"{part!r}: latency is like 20ms")
            elif name == "seed":
                if not value.isdigit():
                    problems.append(f"{part!r}: seed is a whole number")
                else:
                    self.seed = int(value)
                    self._rng.seed(self.seed)
            elif name == "script":
                steps = [s.strip().lower() for s in value.split("|") if s.strip()]
                bad = [s for s in steps if s not in STEPS]
                if bad:
                    problems.append(f"{part!r}: unknown step(s) {bad}; steps are {', '.join(STEPS)}")
                if new_script:
                    self.script.clear()
                    new_script = False
                self.script.extend(steps)
            elif name == "daily_spent_after":
                if not value.isdigit():
                    problems.append(f"{part!r}: daily_spent_after is a whole number of calls")
                else:
                    self.daily_spent_after = int(value)
            elif name == "expire_every":
                try:
                    seconds = _duration_s(value)
                except ValueError:
                    problems.append(f"{part!r}: expire_every is like 60s or 1500ms")
                    continue
                if seconds <= 0:
                    problems.append(f"{part!r}: expire_every must be more than 0")
                self.expire_every_s = seconds
            elif name.startswith("trigger_"):
                problem = self._trigger_setting(name, value)
                if problem:
                    problems.append(f"{part!r}: {problem}")
            elif name.startswith("visibility_"):
                problem = self._visibility_setting(name, value)
                if problem:
                    problems.append(f"{part!r}: {problem}")
            else:
                problems.append(f"{part!r}: unknown fault {name!r}")
        return problems

    def _trigger_setting(self, name: str, value: str) -> str | None:
        """Apply one ``trigger_*`` part; the problem with it, if any."""
        rule = self.trigger
        if name == "trigger_object":
            rule.sobject = value or None
        elif name == "trigger_match":
            field_name, colon, prefix = value.partition(":")
            if not colon or not field_name.strip():
                return "the match is Field:prefix, like Email:bad@"
            rule.field, rule.prefix = field_name.strip(), prefix
        else:
            return f"unknown setting {name!r}; trigger_object, trigger_match"
        return None

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

    def request_fault(self, *, write: bool = False) -> str | None:
        """The fault for the request starting now: ``"503"``, ``"expire"``, ``"concurrent"`` (answered
        instead of served), ``"commit504"``, ``"commitdrop"`` (served, then the answer lost), ``"lock"``
        or ``"trigger"`` (every record write of this request fails so) or None. The script goes first,
        one step per request, whatever the request; then the rates, the commit ones for a ``write`` only."""
        with self._lock:
            if self.script:
                step = self.script.popleft()
                return None if step == "ok" else self._count(step)
            for kind in (*REQUEST_KINDS, *(COMMIT_KINDS if write else ())):
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

    def trigger_fails(self, sobject: str, record: Callable[[], Mapping[str, Any]]) -> bool:
        """Whether a trigger fails one write of ``sobject`` (the ``trigger`` rate, default 1 when
        ``trigger_match`` narrows it, and the rule). ``record()`` is the record as it would be saved."""
        rule = self.trigger
        rate = self.rates.get("trigger", 1.0 if rule.field is not None else 0.0)
        if rate <= 0 or not rule.matches(sobject, record):
            return False
        with self._lock:
            return (rate >= 1 or self._rng.random() < rate) and self._count("trigger") == "trigger"

    def session_expired(self, age_s: float) -> bool:
        """Whether a session issued ``age_s`` seconds ago has expired under ``expire_every`` (counted)."""
        if self.expire_every_s is None or age_s < self.expire_every_s:
            return False
        with self._lock:
            return self._count("expire_every") == "expire_every"

    def note(self, kind: str) -> None:
        """Count one injection of ``kind`` that happened elsewhere (``daily_limit``: a call refused)."""
        with self._lock:
            self._count(kind)

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
            "trigger": self.trigger.describe(),
            "daily_spent_after": self.daily_spent_after,
            "expire_every_s": self.expire_every_s,
        }
