"""Answering a request by closing its connection: no status line, no headers, no body (the
``commitdrop`` fault: a load balancer or the network lost the answer after Salesforce committed).

ASGI has no way to say "drop this connection", so :class:`DroppingStarlette` (the emulator's app) hands
each request the raw ``send`` of its server, and a handler's :class:`DropConnection` response aborts the
socket under it. Under uvicorn (``sfsync emulator``, :func:`sfsync.emulator.server.serve_in_thread`)
``send`` is bound to uvicorn's request cycle, whose ``transport`` is the connection: it is aborted and
the client sees the connection close with no answer (httpx ``RemoteProtocolError``, requests
``ConnectionError``). A server without a reachable transport (an in-process client: Starlette's
``TestClient``, httpx's ``ASGITransport``, or uvicorn at ``trace`` log level, whose logger wraps
``send``) gets :class:`ConnectionDropped` raised out of the app instead, with nothing sent.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_SCOPE_KEY = "sfsync.emulator.connection"
_YIELDS = 10  # event-loop turns to wait for the server to notice the aborted connection


class ConnectionDropped(Exception):  # noqa: N818 - names the event, as the fault does
    """The app dropped a request's connection and the server gave it no transport to abort."""


class _Connection:
    """One request's connection, as far as the server lets the app reach it."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.dropped = False
        self.aborted = False

    async def drop(self) -> None:
        """Abort the connection when the server's transport is reachable; remember the drop either way."""
        self.dropped = True
        cycle = getattr(self._send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if not isinstance(transport, asyncio.Transport):
            return
        transport.abort()
        self.aborted = True
        for _ in range(_YIELDS):  # let the server see the connection lost, so it sends nothing itself
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0)


class DropConnection(Response):
    """A response that is never sent: the request's connection is closed instead."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=504)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = scope.get(_SCOPE_KEY)
        if not isinstance(connection, _Connection):
            raise ConnectionDropped("the connection was dropped (served outside DroppingStarlette)")
        await connection.drop()


class DroppingStarlette(Starlette):
    """A Starlette app whose handlers may answer :class:`DropConnection`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        connection = _Connection(send)
        scope[_SCOPE_KEY] = connection
        await super().__call__(scope, receive, send)
        if connection.dropped and not connection.aborted:
            raise ConnectionDropped(f"the connection of {scope.get('method')} {scope.get('path')} was dropped")
