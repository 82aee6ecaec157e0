"""The org's API usage: REST calls against the daily allocation, calls per endpoint, and the client each
write named.

Every ``/services/data/vXX.X`` call is charged (:meth:`ApiUsage.charge`) before it is served; once
the daily allocation is used up a call is refused with 403 REQUEST_LIMIT_EXCEEDED ("TotalRequests
Limit exceeded."), as a real org does. The REST API reports the usage in each response's
``Sforce-Limit-Info`` header (:meth:`ApiUsage.limit_info`) and in ``/limits``; the admin API reads
and sets it. An allocation that runs out mid-run: :meth:`ApiUsage.spend_after` moves the usage on so
that only N more calls are allowed (as if the org's other clients had spent the rest), and
:meth:`ApiUsage.give_back` takes that jump back (the rolling 24-hour window moved past those calls).
Thread-safe.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sfsync.emulator.errors import ApiError


class ApiUsage:
    """API calls made today against ``daily_limit``, per endpoint, and each write's ``Sforce-Call-Options``
    client."""

    def __init__(self, daily_limit: int) -> None:
        self.daily_limit = daily_limit
        self.api_calls = 0
        self.calls_by_endpoint: Counter[str] = Counter()  # "<METHOD> <route name>" -> calls
        self.call_options: list[dict[str, Any]] = []  # {"method", "path", "client", "at"} per write
        self.jump = 0  # calls added (or taken away) by spend_after, until give_back
        self._lock = threading.Lock()

    def charge(self) -> None:
        """Count one API call; REQUEST_LIMIT_EXCEEDED (403) when the daily allocation is used up."""
        with self._lock:
            if self.api_calls >= self.daily_limit:
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_calls += 1

    def count(self, endpoint: str) -> None:
        """Count one call of ``endpoint`` (``"<METHOD> <route name>"``)."""
        self.calls_by_endpoint[endpoint] += 1

    def record_call_options(self, method: str, path: str, options: str, at: float) -> None:
        """Note the ``client`` a write named in its ``Sforce-Call-Options`` header (None when none)."""
        client = None
        for part in options.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "client":
                client = value.strip()
        with self._lock:
            self.call_options.append({"method": method, "path": path, "client": client, "at": at})

    def limit_info(self) -> str:
        """The ``Sforce-Limit-Info`` header value: ``api-usage=<used>/<daily limit>``."""
        return f"api-usage={self.api_calls}/{self.daily_limit}"

    @property
    def remaining(self) -> int:
        """Calls left in the daily allocation."""
        return max(self.daily_limit - self.api_calls, 0)

    def set(self, *, daily_limit: int | None = None, used: int | None = None) -> None:
        """Change the daily allocation and/or the calls used so far (a new ``used`` forgets any jump)."""
        with self._lock:
            if daily_limit is not None:
                self.daily_limit = daily_limit
            if used is not None:
                self.api_calls = used
                self.jump = 0

    def spend_after(self, calls: int) -> None:
        """Let exactly ``calls`` more calls through, then refuse every call with REQUEST_LIMIT_EXCEEDED: the
        usage jumps to ``daily_limit - calls`` (``Sforce-Limit-Info`` and ``/limits`` show it)."""
        with self._lock:
            target = max(self.daily_limit - calls, 0)
            self.jump += target - self.api_calls
            self.api_calls = target

    def give_back(self) -> None:
        """Take back the jumps of :meth:`spend_after`: the calls made since stay counted."""
        with self._lock:
            self.api_calls = max(self.api_calls - self.jump, 0)
            self.jump = 0

    def reset(self) -> None:
        """No calls made, none counted per endpoint, no call options recorded."""
        with self._lock:
            self.api_calls = 0
            self.jump = 0
            self.calls_by_endpoint.clear()
            self.call_options.clear()
