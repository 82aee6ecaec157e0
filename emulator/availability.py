"""An org that is down (an outage, a maintenance window, the network between client and org gone), and
back up, while the other orgs of the same emulator keep serving.

Two ways to be down (:data:`DOWN_MODES`), set by :meth:`Availability.set` (the admin API's
``POST /__admin/down``, or in-process):

- ``"503"``: every Salesforce call on the org's URL -- REST, OAuth, identity -- is answered 503 without
  being served or charged: ``/services/data`` with Salesforce's error list (``SERVER_UNAVAILABLE``), the
  rest with a plain "Service Unavailable" page, as a load balancer in front of an org in maintenance does;
- ``"refuse"``: the org's port stops listening, so a new connection is refused (``ECONNREFUSED``), and a
  request arriving on a connection opened before is answered by closing it, unanswered.

The admin API (``/__admin``) stays served in both modes on connections that are open (it is the
emulator's control, not Salesforce). ``for_s`` brings the org back by itself after that many seconds;
:meth:`Availability.set` with ``None`` brings it back at once. How many calls were turned away is
counted (``GET /__admin/stats`` -> ``down``).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sfsync.emulator.connection_drop import DropConnection

DOWN_MODES = ("503", "refuse")
_UNAVAILABLE = [
    {"errorCode": "SERVER_UNAVAILABLE", "message": "Server temporarily unavailable, please try again later."}
]
_UNAVAILABLE_PAGE = (
    b"<html><head><title>503 Service Unavailable</title></head>\n<body>\n<center><h1>503 Service Unavailable"
    b"</h1></center>\n</body>\n</html>\n"
)


class Listener(Protocol):
    """The org's listening socket, as the HTTP server lets it be closed and opened again."""

    def follow(self, availability: Availability) -> None:
        """Listen, or not (``"refuse"``), as ``availability.mode`` says at the moment this runs; idempotent,
        thread-safe, and done when it returns."""


class Availability:
    """Whether the org is up, ``"503"`` or ``"refuse"``; thread-safe. ``listener`` is set by the server
    that gives the org a port (without one, ``"refuse"`` only closes the connections requests arrive on)."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.listener: Listener | None = None
        self.turned_away = 0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def set(self, mode: str | None, *, for_s: float | None = None) -> None:
        """Go down in ``mode`` (one of :data:`DOWN_MODES`), for ``for_s`` seconds when given; ``None``: up
        again. ValueError for an unknown mode or a ``for_s`` that is not positive."""
        if mode is not None and mode not in DOWN_MODES:
            raise ValueError(f"mode must be one of {', '.join(DOWN_MODES)} or null (up), not {mode!r}")
        if for_s is not None and (mode is None or for_s <= 0):
            raise ValueError("for_s is a positive number of seconds, with a mode")
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.mode = mode
            if for_s is not None:
                self._timer = threading.Timer(for_s, self.set, args=(None,))
                self._timer.daemon = True
                self._timer.start()
        if self.listener is not None:  # outside the lock: the listener may wait for the server's loop
            self.listener.follow(self)

    def cancel_return(self) -> None:
        """Forget a pending ``for_s`` return (the server is stopping); the mode stays as it is."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "turned_away": self.turned_away}


class AvailabilityGate:
    """ASGI middleware: ``app`` behind ``availability`` (inside :class:`DroppingStarlette`, so that a
    ``refuse`` can close the connection a request came on)."""

    def __init__(self, app: ASGIApp, availability: Availability) -> None:
        self.app = app
        self.availability = availability

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mode = self.availability.mode
        path = str(scope.get("path", ""))
        if mode is None or scope["type"] != "http" or path.startswith("/__admin"):
            await self.app(scope, receive, send)
            return
        self.availability.turned_away += 1
        response: Response
        if mode == "refuse":
            response = DropConnection()
        elif path.startswith("/services/data"):
            response = Response(
                orjson.dumps(_UNAVAILABLE), status_code=503, media_type="application/json;charset=UTF-8"
            )
        else:
            response = Response(_UNAVAILABLE_PAGE, status_code=503, media_type="text/html")
        await response(scope, receive, send)
