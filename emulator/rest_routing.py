"""What every REST handler shares: one call (:class:`Req`), its answer (:class:`Resp`), the route table
that picks the handler (:class:`Router`), and the org they serve (:class:`ServedOrg`).

Framework-free: :mod:`sfsync.emulator.rest` turns HTTP requests into :class:`Req` and :class:`Resp` into
responses, and ``/composite`` dispatches its subrequests through the same router.

Routing (:meth:`Router.dispatch`): the path after ``/services/data/vXX.X/`` is matched against each
route's pattern in registration order (a trailing ``/`` is allowed); the first route with the
call's method wins, its named groups (URL-decoded) become :attr:`Req.params`. A path some route
matches with other methods only answers 405 METHOD_NOT_ALLOWED (HEAD allowed with GET), any other
404 NOT_FOUND. A handler runs inside one store transaction with the caller as the user, unless its
route opens its own (``transaction=False``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

import orjson

from sfsync.emulator.bulk import BulkService
from sfsync.emulator.errors import ApiError, not_found
from sfsync.emulator.faults import Faults
from sfsync.emulator.model import ObjectDef, Schema
from sfsync.emulator.oauth import AuthServer
from sfsync.emulator.store import OrgStore
from sfsync.emulator.usage import ApiUsage

ID_RE = r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?"
_METHODS = ("HEAD", "GET", "POST", "PATCH", "PUT", "DELETE")


class ServedOrg(Protocol):
    """The org the HTTP APIs serve (:class:`sfsync.emulator.app.Emulator`). Handlers read these on every
    call: the admin API replaces ``faults``."""

    store: OrgStore
    auth: AuthServer
    faults: Faults
    bulk: BulkService
    usage: ApiUsage
    clock: Callable[[], float]  # wall-clock seconds (query ``now``, describe timestamps, call options)
    metadata_modified: int  # when the org's metadata last changed, in clock seconds


@dataclass
class Req:
    """One REST call as the router sees it."""

    method: str
    path: str  # after /services/data/vXX.X/
    version: str  # "62.0"
    query: dict[str, str]
    body: bytes
    headers: Mapping[str, str]
    user_id: str
    params: dict[str, str] = field(default_factory=dict)
    lock_writes: bool = False  # every record write of this call fails with UNABLE_TO_LOCK_ROW

    def json(self) -> Any:
        """The body as JSON (None when empty); JSON_PARSER_ERROR when it is not JSON."""
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON.") from None


@dataclass
class Resp:
    """A handler's answer: JSON ``body``, or ``raw`` bytes of ``media_type``."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    media_type: str = "application/json;charset=UTF-8"


Handler = Callable[[Req], Resp]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    transaction: bool


class Router:
    """The REST API's route table; counts each dispatched call per endpoint."""

    def __init__(self, store: OrgStore, usage: ApiUsage) -> None:
        self._store = store
        self._usage = usage
        self._routes: list[_Route] = []

    def route(self, method: str, pattern: str, name: str, *, transaction: bool = True) -> Callable[[Handler], Handler]:
        """Register a handler for ``method`` on paths matching ``pattern`` (a regular expression); ``name``
        is the endpoint as counted (``"sobjects/{sobject}"``). ``transaction=False``: the handler opens
        its own transactions."""

        def register(handler: Handler) -> Handler:
            self._routes.append(_Route(method, re.compile(f"^{pattern}/?$"), name, handler, transaction))
            return handler

        return register

    def dispatch(self, req: Req, *, count: bool = False) -> Resp:
        """Run the handler ``req`` routes to (counted per endpoint when ``count``); raises the handler's
        :class:`ApiError`, METHOD_NOT_ALLOWED or NOT_FOUND."""
        allowed: set[str] = set()
        for route in self._routes:
            match = route.pattern.match(req.path)
            if match is None:
                continue
            if route.method != req.method:
                allowed.add(route.method)
                continue
            req.params = {k: unquote(v) for k, v in match.groupdict().items()}
            if count:
                self._usage.count(f"{req.method} {route.name}")
            if not route.transaction:
                return route.handler(req)
            with self._store.transaction(user_id=req.user_id):  # one call, one transaction, one timestamp
                return route.handler(req)
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            methods = ",".join(m for m in _METHODS if m in allowed)
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{req.method}' not allowed. Allowed are {methods}")
        raise not_found()


def object_named(schema: Schema, name: str) -> ObjectDef:
    """The object a call names (any case); NOT_FOUND for an unknown one."""
    obj = schema.get(name)
    if obj is None:
        raise not_found()
    return obj
