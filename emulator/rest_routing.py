"""What every REST handler shares: one call (:class:`Req`), its answer (:class:`Resp`), the route table
that picks the handler (:class:`Router`), and the org they serve (:class:`ServedOrg`).

Framework-free: :mod:`sfsync.emulator.rest` turns HTTP requests into :class:`Req` and :class:`Resp` into
responses, and ``/composite`` dispatches its subrequests through the same router.

Routing (:meth:`Router.dispatch`): the path after ``/services/data/vXX.X/`` is matched against each
route's pattern in registration order (a trailing ``/`` is allowed); the first route with the
call's method wins, its named groups (URL-decoded) become :attr:`Req.params`. A path some route
matches with other methods only answers 405 METHOD_NOT_ALLOWED (HEAD allowed with GET), any other
404 NOT_FOUND. A handler runs inside one store transaction with the caller as the user, unless its
route opens its own (``transaction=False``). Handlers write each record through :func:`faulty_write`,
which applies the record faults (a lock, a failing trigger).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

import orjson

from sfsync.emulator.availability import Availability
from sfsync.emulator.bulk import BulkService
from sfsync.emulator.errors import ApiError, not_found
from sfsync.emulator.faults import Faults
from sfsync.emulator.model import ObjectDef, Row, Schema
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
    availability: Availability  # up, or down (503 / refusing connections)


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
    record_fault: str | None = None  # "lock" / "trigger": every record write of this call fails so

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
    drop_connection: bool = False  # close the connection instead of answering (the ``commitdrop`` fault)


Handler = Callable[[Req], Resp]
_T = TypeVar("_T")

TRIGGER_LINE = 27  # the line of the failing trigger named in its error message


def trigger_failure(sobject: str, event: str) -> ApiError:
    """CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY as an after-save trigger of ``sobject`` raises it (``event``:
    AfterInsert, AfterUpdate or AfterDelete): the trigger's own DML failed, Apex's message and stack."""
    trigger = f"{sobject.removesuffix('__c')}Trigger"
    verb = {"AfterInsert": "Insert", "AfterUpdate": "Update", "AfterDelete": "Delete"}.get(event, "Update")
    message = (
        f"{trigger}: execution of {event}\n\ncaused by: System.DmlException: {verb} failed. First exception on "
        "row 0; first error: FIELD_CUSTOM_VALIDATION_EXCEPTION, The related account is closed to changes: []"
        f"\n\nTrigger.{trigger}: line {TRIGGER_LINE}, column 1"
    )
    return ApiError(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", message, [])


def faulty_write(
    org: ServedOrg,
    req: Req,
    sobject: str,
    record: Callable[[], Mapping[str, Any]],
    write: Callable[[], _T],
    event: Callable[[_T], str],
    *,
    lock_message: str = "unable to obtain exclusive access to this record",
) -> _T:
    """One record write of ``sobject`` under the record faults: UNABLE_TO_LOCK_ROW before it (the call's
    ``lock`` step or the ``lock`` rate); a trigger failure after it (the call's ``trigger`` step or the
    ``trigger`` rule, which reads ``record()``, the record as it would be saved): the record is validated
    and written as usual, then the write is undone and :func:`trigger_failure` raised for ``event(result)``."""
    faults = org.faults
    if req.record_fault == "lock" or faults.record_locked():
        raise ApiError(400, "UNABLE_TO_LOCK_ROW", lock_message)
    if req.record_fault != "trigger" and not faults.trigger_fails(sobject, record):
        return write()
    before = org.store.snapshot()
    result = write()  # a record Salesforce refuses fails validation before any trigger runs
    org.store.restore(before)
    raise trigger_failure(sobject, event(result))


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


def upsert_target(store: OrgStore, obj: ObjectDef, field_name: str, value: Any) -> Row:
    """The record an upsert by ``field_name`` = ``value`` would update (empty: it would insert, or fail)."""
    try:
        matches = store.match_external_id(obj.name, field_name, value)
    except ApiError:
        return {}
    row = store.get(obj.name, matches[0]) if len(matches) == 1 else None
    return dict(row) if row is not None else {}


def upsert_event(result: tuple[str, bool]) -> str:
    """The trigger event of an upsert that returned ``(id, created)``."""
    return "AfterInsert" if result[1] else "AfterUpdate"


def object_named(schema: Schema, name: str) -> ObjectDef:
    """The object a call names (any case); NOT_FOUND for an unknown one."""
    obj = schema.get(name)
    if obj is None:
        raise not_found()
    return obj
