"""Salesforce's REST API on ``/services/data``: version negotiation, then auth, faults, the daily limit
and accounting around every call; the resources themselves are served by the ``rest_*`` modules.

- ``GET /services/data``: the API versions served (v31.0 to v64.0, with their release labels).
- ``/services/data/vXX.X/...``: one call. An unknown version is 404 NOT_FOUND. The call waits the
  ``latency`` fault first, then: a bearer session (401 INVALID_SESSION_ID otherwise, and once the
  session is older than the ``expire_every`` fault, which ends it), the request fault of the moment
  (503 SERVER_UNAVAILABLE, 401 INVALID_SESSION_ID, 403 REQUEST_LIMIT_EXCEEDED
  "ConcurrentPerOrgLongTxn", or ``lock`` / ``trigger``: its record writes fail), a charge against the
  daily allocation (:class:`sfsync.emulator.usage.ApiUsage`: 403 REQUEST_LIMIT_EXCEEDED "TotalRequests
  Limit exceeded." once it is spent), then the handler its route names
  (:class:`sfsync.emulator.rest_routing.Router`: one store transaction per call). A write's
  ``Sforce-Call-Options`` client is recorded. Every answer, errors included, carries
  ``Sforce-Limit-Info``; errors are Salesforce's error list with their status. Under a ``commit504``
  or ``commitdrop`` fault the call is served and committed all the same, then answered 504 with a
  gateway's HTML page (no Salesforce headers), or not at all: its connection is closed
  (:mod:`sfsync.emulator.connection_drop`).

Resources: :mod:`~sfsync.emulator.rest_sobjects` (``/``, ``/limits``, ``/sobjects``),
:mod:`~sfsync.emulator.rest_composite` (``/composite``), :mod:`~sfsync.emulator.rest_query`
(``/query``, ``/queryAll``, ``/search``, ``/parameterizedSearch``), :mod:`~sfsync.emulator.rest_bulk`
(``/jobs``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sfsync.emulator.connection_drop import DropConnection
from sfsync.emulator.errors import ApiError, not_found
from sfsync.emulator.faults import COMMIT_KINDS, RECORD_KINDS
from sfsync.emulator.rest_bulk import BulkApi
from sfsync.emulator.rest_composite import CompositeApi
from sfsync.emulator.rest_query import QueryApi
from sfsync.emulator.rest_routing import Req, Resp, Router, ServedOrg
from sfsync.emulator.rest_sobjects import SObjectsApi

MIN_VERSION = 31
MAX_VERSION = 64
SEASONS = ("Spring", "Summer", "Winter")
VERSION_RE = re.compile(r"^v(\d{2,3})\.0$")
_WRITES = ("POST", "PATCH", "PUT", "DELETE")
GATEWAY_TIMEOUT_PAGE = (
    b"<html><head><title>504 Gateway Time-out</title></head>\n<body>\n<center><h1>504 Gateway Time-out</h1>"
    b"</center>\n</body>\n</html>\n"
)
"""What a gateway answers when Salesforce's answer does not come back in time: HTML, no Salesforce headers."""


def version_label(major: int) -> str:
    """Release label of API version ``major`` (v60.0 is Spring '24, three releases a year)."""
    k = major - 60
    season = SEASONS[k % 3]
    year = 24 + k // 3 + (1 if season == "Winter" else 0)
    return f"{season} '{year:02d}"


def versions() -> list[dict[str, str]]:
    """The ``GET /services/data`` answer: every version served, oldest first."""
    return [
        {"label": version_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
        for v in range(MIN_VERSION, MAX_VERSION + 1)
    ]


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``body`` as a Salesforce JSON response."""
    return Response(
        orjson.dumps(body), status_code=status, headers=dict(headers or {}), media_type="application/json;charset=UTF-8"
    )


class RestApi:
    """The REST API of ``org``: its Starlette routes, and :meth:`serve` for one call."""

    def __init__(self, org: ServedOrg) -> None:
        self._org = org
        self.router = Router(org.store, org.usage)
        self.queries = QueryApi(org)
        SObjectsApi(org).install(self.router)
        CompositeApi(org, self.router).install(self.router)
        self.queries.install(self.router)
        BulkApi(org).install(self.router)

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes under ``/services/data``."""
        return [
            Route("/services/data", self._versions_endpoint, methods=["GET"]),
            Route("/services/data/", self._versions_endpoint, methods=["GET"]),
            Route(
                "/services/data/{version}/{rest:path}",
                self._rest_endpoint,
                methods=["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"],
            ),
            Route("/services/data/{version}", self._rest_endpoint, methods=["GET"]),
        ]

    async def _versions_endpoint(self, request: Request) -> Response:
        return json_response(200, versions())

    async def _rest_endpoint(self, request: Request) -> Response:
        version_text = request.path_params["version"]
        match = VERSION_RE.match(version_text)
        if match is None or not MIN_VERSION <= int(match.group(1)) <= MAX_VERSION:
            return json_response(404, not_found().body())
        version = version_text[1:]
        body = await request.body()
        latency_ms = self._org.faults.latency_ms
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        resp = self.serve(
            request.method,
            request.path_params.get("rest", ""),
            version,
            dict(request.query_params),
            body,
            request.headers,
        )
        return _to_response(resp)

    def serve(
        self, method: str, path: str, version: str, query: dict[str, str], body: bytes, headers: Mapping[str, str]
    ) -> Resp:
        """Auth, faults, the daily limit and accounting around one REST call (``path`` after
        ``/services/data/vXX.X/``); errors are answered, not raised."""
        org = self._org
        method = method.upper()
        fault = None
        served = False
        try:
            session = org.auth.authenticate(headers.get("authorization"))
            if org.faults.session_expired(org.auth.session_age(session)):
                org.auth.expire(session.access_token)
                raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
            fault = org.faults.request_fault(write=method in _WRITES)
            if fault == "503":
                raise ApiError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please try again later.")
            if fault == "expire":
                raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if fault == "concurrent":
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
            try:
                org.usage.charge()
            except ApiError:
                org.faults.note("daily_limit")
                raise
            req = Req(
                method=method,
                path=path.strip("/"),
                version=version,
                query=query,
                body=body,
                headers=headers,
                user_id=session.user_id,
                record_fault=fault if fault in RECORD_KINDS else None,
            )
            served = True
            resp = self.router.dispatch(req, count=True)
            if req.method in _WRITES:
                org.usage.record_call_options(
                    req.method, req.path, req.headers.get("sforce-call-options", ""), org.clock()
                )
        except ApiError as exc:
            resp = Resp(exc.status, exc.body())
        if served and fault in COMMIT_KINDS:  # served and committed; the answer never reaches the client
            return Resp(504, raw=GATEWAY_TIMEOUT_PAGE, media_type="text/html", drop_connection=fault == "commitdrop")
        resp.headers["Sforce-Limit-Info"] = org.usage.limit_info()
        return resp


def _to_response(resp: Resp) -> Response:
    if resp.drop_connection:
        return DropConnection()
    if resp.raw is not None:
        return Response(resp.raw, status_code=resp.status, headers=resp.headers, media_type=resp.media_type)
    if resp.status in (204, 201, 304) and resp.body is None:
        return Response(b"", status_code=resp.status, headers=resp.headers)
    return json_response(resp.status, resp.body, resp.headers)
