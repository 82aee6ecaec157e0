"""The org's API budget, as Salesforce reports it on every response.

``Sforce-Limit-Info: api-usage=18/5000`` (newer orgs add ``; api-bursts=1/750`` and, per
connected app, ``per-app-api-usage=17/250(appName=sfsync)``). :func:`parse_limit_info` turns the
header into an immutable :class:`ApiBudget`; :class:`BudgetTracker` keeps the newest one for the
governor to read from any thread or task.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

LIMIT_INFO_HEADER = "Sforce-Limit-Info"

_SEGMENT = re.compile(r"^\s*(?P<name>[\w-]+)=(?P<used>\d+)/(?P<limit>\d+)(?:\((?P<params>[^)]*)\))?\s*$")


@dataclass(frozen=True)
class AppUsage:
    """API calls used by one connected app against its own allocation (``per-app-api-usage``)."""

    app_name: str
    used: int
    limit: int


@dataclass(frozen=True)
class ApiBudget:
    """The org's rolling 24-hour API allocation at one moment.

    ``used``/``limit`` come from ``api-usage``; ``apps`` holds any ``per-app-api-usage`` segments.
    """

    used: int
    limit: int
    observed_at: datetime
    apps: tuple[AppUsage, ...] = ()

    @property
    def remaining(self) -> int:
        """Calls left in the window (never negative: usage may overshoot the limit)."""
        return max(self.limit - self.used, 0)

    @property
    def ratio(self) -> float:
        """Fraction of the allocation used, 0.0-1.0+ (1.0 when the limit is 0)."""
        return self.used / self.limit if self.limit else 1.0

    def app(self, name: str) -> AppUsage | None:
        """The per-app usage for ``name``, if Salesforce reported it."""
        return next((a for a in self.apps if a.app_name == name), None)


def parse_limit_info(header: str | None, observed_at: datetime | None = None) -> ApiBudget | None:
    """Parse a ``Sforce-Limit-Info`` value; ``None`` when absent or without an ``api-usage`` segment.

    Unknown segments (``api-bursts``...) are ignored, never fatal: a new segment must not disable
    the governor (singer's anchored regex did exactly that).
    """
    if not header:
        return None
    when = observed_at or datetime.now(UTC)
    usage: tuple[int, int] | None = None
    apps: list[AppUsage] = []
    for segment in header.split(";"):
        match = _SEGMENT.match(segment)
        if not match:
            continue
        name = match["name"].lower()
        used, limit = int(match["used"]), int(match["limit"])
        if name == "api-usage":
            usage = (used, limit)
        elif name == "per-app-api-usage":
            params = dict(p.split("=", 1) for p in (match["params"] or "").split(",") if "=" in p)
            apps.append(AppUsage(params.get("appName", "").strip(), used, limit))
    if usage is None:
        return None
    return ApiBudget(used=usage[0], limit=usage[1], observed_at=when, apps=tuple(apps))


def budget_from_limits(
    limits: Mapping[str, Mapping[str, int]], observed_at: datetime | None = None
) -> ApiBudget | None:
    """Build a budget from a ``/limits`` answer's ``DailyApiRequests`` entry (``Max``/``Remaining``)."""
    entry = limits.get("DailyApiRequests")
    if not entry or "Max" not in entry or "Remaining" not in entry:
        return None
    maximum, remaining = int(entry["Max"]), int(entry["Remaining"])
    return ApiBudget(used=maximum - remaining, limit=maximum, observed_at=observed_at or datetime.now(UTC))


class BudgetTracker:
    """Holds the newest :class:`ApiBudget`; safe to share between threads and asyncio tasks.

    Observations older than the one held are ignored, so out-of-order responses (concurrent
    requests) never make the budget look better than it is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: ApiBudget | None = None

    @property
    def latest(self) -> ApiBudget | None:
        """The newest budget seen, or ``None`` before the first response."""
        with self._lock:
            return self._latest

    def update(self, budget: ApiBudget | None) -> None:
        """Record ``budget`` unless an observation newer than it is already held."""
        if budget is None:
            return
        with self._lock:
            current = self._latest
            if current is None or budget.observed_at >= current.observed_at:
                self._latest = budget

    def observe(self, header: str | None, observed_at: datetime | None = None) -> ApiBudget | None:
        """Parse a ``Sforce-Limit-Info`` header value and record it; returns what was parsed."""
        budget = parse_limit_info(header, observed_at)
        self.update(budget)
        return budget


_VERSION_PREFIX = re.compile(r"^/?services/(data|async)/v\d+\.\d+/?")
_SF_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_HAS_DIGIT = re.compile(r"\d")


def endpoint_of(path: str) -> str:
    """A low-cardinality endpoint label for a Salesforce REST path.

    ``/services/data/v62.0/sobjects/Contact/003xx...`` -> ``sobjects/Contact/{id}``;
    ``/services/data/v62.0/composite/sobjects`` -> ``composite/sobjects``; query strings dropped.
    """
    path = path.split("?", 1)[0]
    path = _VERSION_PREFIX.sub("", path).strip("/")
    parts = []
    for part in path.split("/"):
        if _SF_ID.match(part) and _HAS_DIGIT.search(part):
            parts.append("{id}")
        elif part.isdigit():
            parts.append("{n}")
        else:
            parts.append(part)
    return "/".join(parts) or "/"
