"""The emulated org's HTTP surface: Salesforce's REST API on ``/services``, an admin API on ``/__admin``.

One :class:`Emulator` holds the org (data store, OAuth server, Bulk jobs, faults, API counters)
and serves it as an ASGI app. REST calls go through one small router (:meth:`Emulator.dispatch`),
which ``/composite`` reuses for its subrequests. Every ``/services/data/vXX.X`` response carries
``Sforce-Limit-Info``; each such call counts against the daily allocation, which is enforced
(403 REQUEST_LIMIT_EXCEEDED) as a real org does.

Transactions: every REST call is one store transaction (:meth:`sfsync.emulator.store.OrgStore.transaction`),
so the records one sObject Collections call writes share one SystemModstamp; ``/composite`` is one
transaction with ``allOrNone`` and one per subrequest without; a Bulk job saves in chunks of 200.

Admin API (JSON in, JSON out; ``user`` is a username or user id, default the integration user;
every write action takes ``visibility_delay_ms`` to commit that transaction late):

=========================  ==================================================================
``POST /reset``            remove every record except users; zero the counters
``POST /snapshot``         ``{"snapshot": key}``; ``POST /restore`` ``{"snapshot": key}`` goes back
``GET /stats``             API calls (total, per endpoint), faults and how many were injected
``GET /call-options``      the ``Sforce-Call-Options`` client of each write
``POST /edit``             a user edits/creates in one transaction: ``{"user", "sobject", "id",
                           "values"}`` or ``{"user", "records": [{"sobject", "id"?, "values"}]}``
                           (no ``id``: create) -> ``{"ids", "by", "SystemModstamp"}``
``POST /delete``           a user deletes to the recycle bin: ``{"user", "ids" | "id"}``
``POST /undelete``         a user restores from the recycle bin: ``{"user", "ids" | "id"}``
``POST /purge``            hard delete (gone from queryAll, still in getDeleted): ``{"ids" | "id"}``
``POST /empty-recycle-bin``  purge the whole bin; ``{"truncate_delete_log": true}`` (default) also
                           empties the delete log getDeleted reads (earliestDateAvailable = now)
``POST /touch``            an automated process touches a record: SystemModstamp moves only
``POST /convert-lead``     ``{"lead_id", "contact_id"?, "account_id"?}``
``GET|POST /visibility``   the late-visibility rule ``{"delay_ms", "user", "sobject", "next",
                           "rate"}`` (POST replaces it; ``delay_ms`` 0 = off) and the writes not
                           yet visible (``pending``)
``POST /faults``           ``{"spec": "..."}`` replaces every fault (see :mod:`sfsync.emulator.faults`)
``POST /limits``           ``{"daily_api_limit", "used"}``
``POST /session``          a ready access token; ``POST /sessions/expire`` expires them all
=========================  ==================================================================
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from sfsync.emulator import ids as ids_module
from sfsync.emulator.errors import ApiError
from sfsync.emulator.faults import Faults
from sfsync.emulator.model import ObjectDef, Row, json_row
from sfsync.emulator.oauth import AuthServer
from sfsync.emulator.store import MultipleMatches, OrgStore

MIN_VERSION = 31
MAX_VERSION = 64
DEFAULT_BATCH = 2000
SEASONS = ("Spring", "Summer", "Winter")
VERSION_RE = re.compile(r"^v(\d{2,3})\.0$")
ID_RE = r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?"


def version_label(major: int) -> str:
    """Release label of API version ``major`` (v60.0 is Spring '24, three releases a year)."""
    k = major - 60
    season = SEASONS[k % 3]
    year = 24 + k // 3 + (1 if season == "Winter" else 0)
    return f"{season} '{year:02d}"


def versions() -> list[dict[str, str]]:
    return [
        {"label": version_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
        for v in range(MIN_VERSION, MAX_VERSION + 1)
    ]


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
    lock_writes: bool = False

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON.") from None


@dataclass
class Resp:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    media_type: str = "application/json;charset=UTF-8"


Handler = Callable[[Req], Resp]


class Emulator:
    """A Salesforce org on loopback. See the package docs for what it serves."""

    def __init__(
        self,
        store: OrgStore,
        auth: AuthServer,
        *,
        faults: Faults | None = None,
        daily_limit: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from sfsync.emulator.bulk import BulkService

        self.store = store
        self.auth = auth
        self.faults = faults or Faults()
        self.clock = clock
        org = getattr(store, "org", None)
        configured = getattr(org, "daily_api_limit", None) if org is not None else None
        self.daily_limit = daily_limit or configured or 1_000_000
        self.api_calls = 0
        self.calls_by_endpoint: Counter[str] = Counter()
        self.call_options: list[dict[str, Any]] = []
        self.snapshots: dict[str, Any] = {}
        self._cursors: OrderedDict[str, tuple[list[dict[str, Any]], int, str, int]] = OrderedDict()
        self._cursor_seq = itertools.count(1)
        self._lock = threading.RLock()
        self.bulk = BulkService(store, self._bulk_query, api_version_default="62.0", user_id=store.integration_user_id)
        self.metadata_modified = int(clock())  # describes change only when the org file does
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self._install_routes()
        store.visibility_policy = self._late_commit

    # ------------------------------------------------------------------ ASGI
    def asgi(self) -> Starlette:
        routes = [
            Route("/services/data", self._versions_endpoint, methods=["GET"]),
            Route("/services/data/", self._versions_endpoint, methods=["GET"]),
            Route(
                "/services/data/{version}/{rest:path}",
                self._rest_endpoint,
                methods=["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"],
            ),
            Route("/services/data/{version}", self._rest_endpoint, methods=["GET"]),
            Mount("/__admin", routes=self._admin_routes()),
            *self.auth.routes(),
        ]
        return Starlette(routes=routes)

    async def _versions_endpoint(self, request: Request) -> Response:
        return _json_response(200, versions())

    async def _rest_endpoint(self, request: Request) -> Response:
        version_text = request.path_params["version"]
        match = VERSION_RE.match(version_text)
        if match is None or not MIN_VERSION <= int(match.group(1)) <= MAX_VERSION:
            return _json_response(404, ApiError(404, "NOT_FOUND", "The requested resource does not exist").body())
        version = version_text[1:]
        body = await request.body()
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        resp = self._serve(
            request.method,
            request.path_params.get("rest", ""),
            version,
            dict(request.query_params),
            body,
            request.headers,
        )
        return self._to_response(resp)

    def _serve(
        self, method: str, path: str, version: str, query: dict[str, str], body: bytes, headers: Mapping[str, str]
    ) -> Resp:
        """Auth, faults, the daily limit and accounting around one REST call."""
        try:
            session = self.auth.authenticate(headers.get("authorization"))
            fault = self.faults.request_fault()
            if fault == "503":
                raise ApiError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please try again later.")
            if fault == "expire":
                raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
            if fault == "concurrent":
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
            with self._lock:
                if self.api_calls >= self.daily_limit:
                    raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                self.api_calls += 1
            req = Req(
                method=method.upper(),
                path=path.strip("/"),
                version=version,
                query=query,
                body=body,
                headers=headers,
                user_id=session.user_id,
                lock_writes=fault == "lock",
            )
            resp = self.dispatch(req, count=True)
            if method.upper() in ("POST", "PATCH", "PUT", "DELETE"):
                self._record_call_options(req)
        except ApiError as exc:
            resp = Resp(exc.status, exc.body())
        resp.headers["Sforce-Limit-Info"] = f"api-usage={self.api_calls}/{self.daily_limit}"
        return resp

    def _record_call_options(self, req: Req) -> None:
        options = req.headers.get("sforce-call-options", "")
        client = None
        for part in options.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "client":
                client = value.strip()
        with self._lock:
            self.call_options.append({"method": req.method, "path": req.path, "client": client, "at": self.clock()})

    def _to_response(self, resp: Resp) -> Response:
        if resp.raw is not None:
            return Response(resp.raw, status_code=resp.status, headers=resp.headers, media_type=resp.media_type)
        if resp.status in (204, 201, 304) and resp.body is None:
            return Response(b"", status_code=resp.status, headers=resp.headers)
        return _json_response(resp.status, resp.body, resp.headers)

    # ------------------------------------------------------------------ router
    def route(self, method: str, pattern: str, name: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._routes.append((method, re.compile(f"^{pattern}/?$"), name, handler))
            return handler

        return register

    def dispatch(self, req: Req, *, count: bool = False) -> Resp:
        allowed: set[str] = set()
        for method, pattern, name, handler in self._routes:
            match = pattern.match(req.path)
            if match is None:
                continue
            if method != req.method:
                allowed.add(method)
                continue
            req.params = {k: unquote(v) for k, v in match.groupdict().items()}
            if count:
                self.calls_by_endpoint[f"{req.method} {name}"] += 1
            if name == "composite" or name.startswith("jobs/"):
                return handler(req)  # composite and Bulk jobs open their own transactions
            with self.store.transaction(user_id=req.user_id):  # one call, one transaction, one timestamp
                return handler(req)
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            methods = ",".join(m for m in ("HEAD", "GET", "POST", "PATCH", "PUT", "DELETE") if m in allowed)
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{req.method}' not allowed. Allowed are {methods}")
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def _install_routes(self) -> None:
        r = self.route
        obj, rid = r"(?P<sobject>\w+)", f"(?P<id>{ID_RE})"
        r("GET", "", "resources")(self.resources)
        r("GET", "limits", "limits")(self.limits)
        r("GET", "limits/recordCount", "limits/recordCount")(self.record_count)
        r("GET", "sobjects", "sobjects")(self.describe_global)
        r("GET", f"sobjects/{obj}", "sobjects/{sobject}")(self.sobject_info)
        r("POST", f"sobjects/{obj}", "sobjects/{sobject}")(self.create)
        r("GET", f"sobjects/{obj}/describe", "sobjects/{sobject}/describe")(self.describe)
        r("GET", f"sobjects/{obj}/updated", "sobjects/{sobject}/updated")(self.get_updated)
        r("GET", f"sobjects/{obj}/deleted", "sobjects/{sobject}/deleted")(self.get_deleted)
        r("GET", f"sobjects/{obj}/{rid}", "sobjects/{sobject}/{id}")(self.retrieve)
        r("PATCH", f"sobjects/{obj}/{rid}", "sobjects/{sobject}/{id}")(self.update)
        r("DELETE", f"sobjects/{obj}/{rid}", "sobjects/{sobject}/{id}")(self.delete)
        r("POST", f"sobjects/{obj}/(?P<field>[Ii][Dd])", "sobjects/{sobject}/Id")(self.create_by_null_id)
        for method in ("GET", "PATCH", "DELETE"):
            r(method, rf"sobjects/{obj}/(?P<field>[^/]+)", "sobjects/{sobject}/{field}")(self.not_an_id)
        ext = r"(?P<field>\w+)/(?P<value>[^/]+)"
        r("PATCH", f"sobjects/{obj}/{ext}", "sobjects/{sobject}/{field}/{value}")(self.upsert)
        r("POST", f"sobjects/{obj}/{ext}", "sobjects/{sobject}/{field}/{value}")(self.upsert)
        r("GET", f"sobjects/{obj}/{ext}", "sobjects/{sobject}/{field}/{value}")(self.retrieve_by_external_id)
        r("DELETE", f"sobjects/{obj}/{ext}", "sobjects/{sobject}/{field}/{value}")(self.delete_by_external_id)
        r("POST", "composite/sobjects", "composite/sobjects")(self.collection_create)
        r("PATCH", "composite/sobjects", "composite/sobjects")(self.collection_update)
        r("DELETE", "composite/sobjects", "composite/sobjects")(self.collection_delete)
        r("GET", f"composite/sobjects/{obj}", "composite/sobjects/{sobject}")(self.collection_retrieve)
        r("POST", f"composite/sobjects/{obj}", "composite/sobjects/{sobject}")(self.collection_retrieve)
        r("PATCH", rf"composite/sobjects/{obj}/(?P<field>\w+)", "composite/sobjects/{sobject}/{field}")(
            self.collection_upsert
        )
        r("POST", "composite", "composite")(self.composite)
        r("GET", "query", "query")(self.query)
        r("GET", "queryAll", "queryAll")(self.query_all)
        r("GET", r"query/(?P<locator>[\w-]+)", "query/{locator}")(self.query_more)
        r("GET", r"queryAll/(?P<locator>[\w-]+)", "queryAll/{locator}")(self.query_more)
        r("GET", "search", "search")(self.search)
        r("GET", "parameterizedSearch", "parameterizedSearch")(self.parameterized_search)
        r("POST", "parameterizedSearch", "parameterizedSearch")(self.parameterized_search)
        job = r"(?P<job>750\w{12,15})"
        r("POST", "jobs/ingest", "jobs/ingest")(self.bulk_create_ingest)
        r("GET", "jobs/ingest", "jobs/ingest")(self.bulk_list_ingest)
        r("GET", f"jobs/ingest/{job}", "jobs/ingest/{job}")(self.bulk_get_ingest)
        r("PATCH", f"jobs/ingest/{job}", "jobs/ingest/{job}")(self.bulk_patch_ingest)
        r("DELETE", f"jobs/ingest/{job}", "jobs/ingest/{job}")(self.bulk_delete_ingest)
        r("PUT", f"jobs/ingest/{job}/batches", "jobs/ingest/{job}/batches")(self.bulk_upload)
        r(
            "GET",
            f"jobs/ingest/{job}/(?P<kind>successfulResults|failedResults|unprocessedrecords|unprocessedRecords)",
            "jobs/ingest/{job}/results",
        )(self.bulk_results)
        r("POST", "jobs/query", "jobs/query")(self.bulk_create_query)
        r("GET", "jobs/query", "jobs/query")(self.bulk_list_query)
        r("GET", f"jobs/query/{job}", "jobs/query/{job}")(self.bulk_get_query)
        r("PATCH", f"jobs/query/{job}", "jobs/query/{job}")(self.bulk_patch_query)
        r("DELETE", f"jobs/query/{job}", "jobs/query/{job}")(self.bulk_delete_query)
        r("GET", f"jobs/query/{job}/results", "jobs/query/{job}/results")(self.bulk_query_results)

    # ------------------------------------------------------------------ helpers
    def _object(self, name: str) -> ObjectDef:
        obj = self.store.schema.get(name)
        if obj is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    def _record_json(self, obj: ObjectDef, row: Row, version: str, fields: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{row['Id']}"}
        }
        if fields is None:
            out.update(json_row(row))
            return out
        for name in fields:
            definition = obj.field(name)
            if definition is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
            value = row.get(definition.name)
            out[definition.name] = json_row({"v": value})["v"]
        return out

    def _values(self, req: Req) -> dict[str, Any]:
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from the request body")
        return {k: v for k, v in body.items() if k != "attributes"}

    # ------------------------------------------------------------------ resources & limits
    def resources(self, req: Req) -> Resp:
        base = f"/services/data/v{req.version}"
        names = ("sobjects", "query", "queryAll", "search", "parameterizedSearch", "composite", "limits", "jobs")
        return Resp(200, {name: f"{base}/{name}" for name in names})

    def limits(self, req: Req) -> Resp:
        def pair(maximum: int, remaining: int | None = None) -> dict[str, int]:
            return {"Max": maximum, "Remaining": maximum if remaining is None else remaining}

        return Resp(
            200,
            {
                "ConcurrentAsyncGetReportInstances": pair(200),
                "ConcurrentSyncReportRuns": pair(20),
                "DailyApiRequests": pair(self.daily_limit, max(self.daily_limit - self.api_calls, 0)),
                "DailyAsyncApexExecutions": pair(250000),
                "DailyBulkApiRequests": pair(15000),
                "DailyBulkV2QueryFileStorageMB": pair(976562),
                "DailyBulkV2QueryJobs": pair(10000),
                "DailyDurableGenericStreamingApiEvents": pair(10000),
                "DailyDurableStreamingApiEvents": pair(10000),
                "DailyGenericStreamingApiEvents": pair(10000),
                "DailyStreamingApiEvents": pair(10000),
                "DataStorageMB": pair(5, 5),
                "FileStorageMB": pair(20, 20),
                "HourlyODataCallout": pair(20000),
                "HourlyTimeBasedWorkflow": pair(50),
                "MassEmail": pair(10),
                "SingleEmail": pair(15),
                "DailyWorkflowEmails": pair(390),
                "DurableStreamingApiConcurrentClients": pair(20),
                "HourlyAsyncReportRuns": pair(1200),
                "HourlyDashboardRefreshes": pair(200),
                "HourlyDashboardResults": pair(5000),
                "HourlyDashboardStatuses": pair(999999999),
                "HourlySyncReportRuns": pair(500),
                "StreamingApiConcurrentClients": pair(20),
            },
        )

    def record_count(self, req: Req) -> Resp:
        wanted = [s for s in req.query.get("sObjects", "").split(",") if s]
        names = wanted or [o.name for o in self.store.schema]
        counts = []
        for name in names:
            obj = self.store.schema.get(name)
            if obj is not None:
                counts.append({"count": sum(1 for _ in self.store.rows(obj.name)), "name": obj.name})
        return Resp(200, {"sObjects": counts})

    # ------------------------------------------------------------------ describe
    def _conditional(self, req: Req, make: Callable[[], Any]) -> Resp:
        """Describe results honour If-Modified-Since with 304, ETag and Last-Modified, as Salesforce does."""
        from email.utils import formatdate, parsedate_to_datetime

        headers = {
            "ETag": f'"{self.metadata_modified & 0xFFFFFFFF:08x}"',
            "Last-Modified": formatdate(self.metadata_modified, usegmt=True),
        }
        since = req.headers.get("if-modified-since")
        if since:
            try:
                if parsedate_to_datetime(since).timestamp() >= self.metadata_modified:
                    return Resp(304, None, headers)
            except (TypeError, ValueError):
                pass
        return Resp(200, make(), headers)

    def describe_global(self, req: Req) -> Resp:
        from sfsync.emulator.describe import describe_global

        return self._conditional(req, lambda: describe_global(self.store.schema, req.version))

    def describe(self, req: Req) -> Resp:
        from sfsync.emulator.describe import describe_sobject

        obj = self._object(req.params["sobject"])
        return self._conditional(req, lambda: describe_sobject(obj, req.version))

    def sobject_info(self, req: Req) -> Resp:
        from sfsync.emulator.describe import describe_global

        obj = self._object(req.params["sobject"])
        entry = next(s for s in describe_global(self.store.schema, req.version)["sobjects"] if s["name"] == obj.name)
        return Resp(200, {"objectDescribe": entry, "recentItems": []})

    # ------------------------------------------------------------------ sObject rows
    def create(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        self._maybe_lock(req)
        record_id = self.store.create(obj.name, self._values(req), user_id=req.user_id)
        return Resp(
            201,
            {"id": record_id, "success": True, "errors": []},
            {"Location": f"/services/data/v{req.version}/sobjects/{obj.name}/{record_id}"},
        )

    def retrieve(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        row = self.store.get(obj.name, req.params["id"])
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        fields = [f for f in req.query.get("fields", "").split(",") if f] or None
        return Resp(200, self._record_json(obj, row, req.version, fields))

    def update(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        self._maybe_lock(req)
        self.store.update(obj.name, req.params["id"], self._values(req), user_id=req.user_id)
        return Resp(204)

    def delete(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        self._maybe_lock(req)
        self.store.delete(obj.name, req.params["id"], user_id=req.user_id)
        return Resp(204)

    def upsert(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        self._maybe_lock(req)
        try:
            record_id, created = self.store.upsert(
                obj.name, req.params["field"], req.params["value"], self._values(req), user_id=req.user_id
            )
        except MultipleMatches as exc:
            return Resp(300, exc.urls(req.version))
        major = int(req.version.split(".")[0])
        if created:
            return Resp(201, {"id": record_id, "success": True, "errors": [], "created": True})
        if major >= 46:  # since Summer '19 an update by upsert answers 200 with a body, before that 204
            return Resp(200, {"id": record_id, "success": True, "errors": [], "created": False})
        return Resp(204)

    def _by_external_id(self, obj: ObjectDef, field_name: str, value: str) -> Row:
        """The one live record with this external id value, matched as upsert matches (case-insensitively
        unless the field is case-sensitive); several matches raise :class:`MultipleMatches` (300)."""
        matches = self.store.match_external_id(obj.name, field_name, value)
        if len(matches) > 1:
            definition = obj.field(field_name)
            raise MultipleMatches(obj.name, definition.name if definition else field_name, matches)
        row = self.store.get(obj.name, matches[0]) if matches else None
        if row is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return dict(row)

    def retrieve_by_external_id(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        try:
            row = self._by_external_id(obj, req.params["field"], req.params["value"])
        except MultipleMatches as exc:
            return Resp(300, exc.urls(req.version))
        fields = [f for f in req.query.get("fields", "").split(",") if f] or None
        return Resp(200, self._record_json(obj, row, req.version, fields))

    def delete_by_external_id(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        try:
            row = self._by_external_id(obj, req.params["field"], req.params["value"])
        except MultipleMatches as exc:
            return Resp(300, exc.urls(req.version))
        self.store.delete(obj.name, row["Id"], user_id=req.user_id)
        return Resp(204)

    def create_by_null_id(self, req: Req) -> Resp:
        """``POST /sobjects/{type}/Id``: an upsert on Id with no value, which always inserts (v37.0+)."""
        obj = self._object(req.params["sobject"])
        self._maybe_lock(req)
        record_id, _ = self.store.upsert(obj.name, "Id", None, self._values(req), user_id=req.user_id)
        return Resp(201, {"id": record_id, "success": True, "errors": [], "created": True})

    def not_an_id(self, req: Req) -> Resp:
        """``/sobjects/{type}/{segment}`` where the segment is no record id: Salesforce reads it as an external
        id field name with no value."""
        self._object(req.params["sobject"])
        raise ApiError(
            404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {req.params['field']}"
        )

    def _maybe_lock(self, req: Req) -> None:
        if req.lock_writes or self.faults.record_locked():
            raise ApiError(400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")

    # ------------------------------------------------------------------ replication
    def _window(self, req: Req) -> tuple[dt.datetime, dt.datetime]:
        from sfsync.emulator.model import parse_datetime

        try:
            return parse_datetime(req.query["start"]), parse_datetime(req.query["end"])
        except (KeyError, ValueError):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "start and end are required ISO-8601 datetimes (e.g. 2026-11-25T10:00:00+00:00)",
            ) from None

    def get_updated(self, req: Req) -> Resp:
        from sfsync.emulator.model import format_datetime

        obj = self._object(req.params["sobject"])
        start, end = self._window(req)
        ids, latest = self.store.updated_ids(obj.name, start, end)
        return Resp(200, {"ids": ids, "latestDateCovered": format_datetime(latest)})

    def get_deleted(self, req: Req) -> Resp:
        from sfsync.emulator.model import format_datetime

        obj = self._object(req.params["sobject"])
        start, end = self._window(req)
        records, earliest, latest = self.store.deleted(obj.name, start, end)
        return Resp(
            200,
            {
                "deletedRecords": [{"id": r["id"], "deletedDate": format_datetime(r["deletedDate"])} for r in records],
                "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(latest),
            },
        )

    # ------------------------------------------------------------------ sObject Collections
    def _collection_records(self, req: Req) -> tuple[list[dict[str, Any]], bool]:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected an object with a records array")
        records = body["records"]
        if len(records) > 200:
            raise ApiError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        return records, bool(body.get("allOrNone", False))

    def _run_collection(
        self,
        req: Req,
        items: list[Any],
        all_or_none: bool,
        write: Callable[[Any], dict[str, Any]],
        failed_id: Callable[[Any], str | None] = lambda _item: None,
    ) -> Resp:
        """Per-item SaveResults in request order. A failed item has no ``id`` (a SaveResult's id is set only
        on success) except where ``failed_id`` names the record attempted (DeleteResult keeps it)."""
        snapshot = self.store.snapshot() if all_or_none else None
        results: list[dict[str, Any]] = []
        failed = False

        def failure(item: Any, error: dict[str, Any]) -> dict[str, Any]:
            record_id = failed_id(item)
            head = {"id": record_id} if record_id else {}
            return {**head, "success": False, "errors": [error]}

        for item in items:
            try:
                if req.lock_writes or self.faults.record_locked():
                    raise ApiError(
                        400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records"
                    )
                results.append({**write(item), "success": True, "errors": []})
            except ApiError as exc:
                failed = True
                error = {"statusCode": exc.error_code, "message": exc.message, "fields": exc.fields or []}
                results.append(failure(item, error))
        if failed and all_or_none and snapshot is not None:
            self.store.restore(snapshot)
            rolled = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the request was using "
                "AllOrNone header",
                "fields": [],
            }
            results = [r if not r["success"] else failure(item, rolled) for r, item in zip(results, items, strict=True)]
        return Resp(200, results)

    def collection_create(self, req: Req) -> Resp:
        records, all_or_none = self._collection_records(req)

        def write(record: Any) -> dict[str, Any]:
            obj = self._collection_object(record)
            if any(k.lower() == "id" and v for k, v in record.items()):
                raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            values = {k: v for k, v in record.items() if k != "attributes"}
            return {"id": self.store.create(obj.name, values, user_id=req.user_id)}

        return self._run_collection(req, records, all_or_none, write)

    def collection_update(self, req: Req) -> Resp:
        records, all_or_none = self._collection_records(req)

        def write(record: Any) -> dict[str, Any]:
            obj = self._collection_object(record)
            record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
            if not record_id:
                raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            if not isinstance(record_id, str) or ids_module.try_normalize(record_id) is None:
                raise ApiError(
                    400, "MALFORMED_ID", f"{obj.label or obj.name} ID: id value of incorrect type: {record_id}", ["Id"]
                )
            values = {k: v for k, v in record.items() if k.lower() not in ("attributes", "id")}
            self.store.update(obj.name, record_id, values, user_id=req.user_id)
            return {"id": self._id18(record_id)}

        return self._run_collection(req, records, all_or_none, write)

    def collection_upsert(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        records, all_or_none = self._collection_records(req)
        ext_field = req.params["field"]
        definition = obj.field(ext_field)
        if definition is None or not (definition.external_id or definition.id_lookup or definition.name == "Id"):
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Field name provided, {ext_field} is not an External ID or indexed field for {obj.name}",
            )

        def write(record: Any) -> dict[str, Any]:
            values = {k: v for k, v in record.items() if k not in ("attributes",)}
            value = values.pop(definition.name, None) if definition.name != "Id" else values.pop("Id", None)
            if value in (None, ""):
                raise ApiError(400, "MISSING_ARGUMENT", f"{definition.name} not specified", [definition.name])
            record_id, created = self.store.upsert(obj.name, definition.name, str(value), values, user_id=req.user_id)
            return {"id": record_id, "created": created}

        resp = self._run_collection(req, records, all_or_none, write)
        for item in resp.body:
            item.setdefault("created", False)
            if not item["success"]:
                item["created"] = False
        resp.body = [
            {
                **({"id": i["id"]} if "id" in i else {}),
                "success": i["success"],
                "errors": i["errors"],
                "created": i["created"],
            }
            for i in resp.body
        ]
        return resp

    def collection_delete(self, req: Req) -> Resp:
        ids = [i for i in req.query.get("ids", "").split(",") if i]
        if not ids:
            raise ApiError(400, "REQUIRED_FIELD_MISSING", "At least 1 Id is required.")
        if len(ids) > 200:
            raise ApiError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        all_or_none = req.query.get("allOrNone", "false").lower() == "true"

        def write(record_id: Any) -> dict[str, Any]:
            if ids_module.try_normalize(record_id) is None:
                raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}", [])
            found = self.store.row_by_id(record_id)
            if found is None:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            obj, row = found
            if row.get("IsDeleted"):
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [])
            self.store.delete(obj.name, record_id, user_id=req.user_id)
            return {"id": self._id18(record_id)}

        return self._run_collection(req, ids, all_or_none, write, failed_id=ids_module.try_normalize)

    def collection_retrieve(self, req: Req) -> Resp:
        obj = self._object(req.params["sobject"])
        if req.method == "POST":
            body = req.json() or {}
            ids, fields = body.get("ids", []), body.get("fields", [])
        else:
            ids = [i for i in req.query.get("ids", "").split(",") if i]
            fields = [f for f in req.query.get("fields", "").split(",") if f]
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields not specified")
        out: list[Any] = []
        for record_id in ids:
            row = self.store.get(obj.name, record_id)
            out.append(None if row is None else self._record_json(obj, row, req.version, fields))
        return Resp(200, out)

    def _collection_object(self, record: Any) -> ObjectDef:
        if not isinstance(record, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be an object")
        kind = (record.get("attributes") or {}).get("type")
        if not kind:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        obj = self.store.schema.get(kind)
        if obj is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{kind}' is not supported.")
        return obj

    @staticmethod
    def _id18(record_id: str) -> str:
        from sfsync.emulator.ids import normalize

        return normalize(record_id)

    # ------------------------------------------------------------------ composite
    def composite(self, req: Req) -> Resp:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        subrequests = body["compositeRequest"]
        if len(subrequests) > 25:
            raise ApiError(400, "LIMIT_EXCEEDED", "Composite requests cannot have more than 25 subrequests")
        all_or_none = bool(body.get("allOrNone", False))
        if not all_or_none:  # each subrequest is a transaction of its own
            return self._composite(req, subrequests, all_or_none)
        with self.store.transaction(user_id=req.user_id):  # allOrNone: one transaction, one timestamp
            return self._composite(req, subrequests, all_or_none)

    def _composite(self, req: Req, subrequests: list[Any], all_or_none: bool) -> Resp:
        snapshot = self.store.snapshot() if all_or_none else None
        results: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        halted = False
        for sub in subrequests:
            ref = str(sub.get("referenceId", ""))
            if halted:
                responses.append(_halted(ref))
                continue
            try:
                method = str(sub.get("method", "GET")).upper()
                url = _resolve_refs(str(sub.get("url", "")), results)
                parts = urlsplit(url)
                match = re.match(r"^/services/data/v(\d+\.\d)/(.*)$", parts.path)
                if match is None:
                    raise ApiError(400, "INVALID_URL", f"The URL {url} is not valid for composite")
                sub_body = sub.get("body")
                if sub_body is not None:
                    sub_body = orjson.loads(_resolve_refs(orjson.dumps(sub_body).decode(), results))
                collection = match.group(2).strip("/").startswith("composite/sobjects")
                if all_or_none and collection and isinstance(sub_body, dict):
                    sub_body["allOrNone"] = True  # the composite's allOrNone overrides its collections'
                sub_req = Req(
                    method=method,
                    path=match.group(2).strip("/"),
                    version=match.group(1),
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    body=orjson.dumps(sub_body) if sub_body is not None else b"",
                    headers={**req.headers, **{k.lower(): v for k, v in (sub.get("httpHeaders") or {}).items()}},
                    user_id=req.user_id,
                    lock_writes=req.lock_writes,
                )
                sub_resp = self.dispatch(sub_req)
            except ApiError as exc:
                sub_resp = Resp(exc.status, exc.body())
            results[ref] = sub_resp.body
            shown = ("Location", "ETag", "Last-Modified")
            responses.append(
                {
                    "body": sub_resp.body,
                    "httpHeaders": {k: v for k, v in sub_resp.headers.items() if k in shown},
                    "httpStatusCode": sub_resp.status,
                    "referenceId": ref,
                }
            )
            if all_or_none and (sub_resp.status >= 400 or _collection_failed(sub_resp.body)):
                halted = True
        if halted and snapshot is not None:
            self.store.restore(snapshot)
            responses = [
                r if r["httpStatusCode"] >= 400 or _collection_failed(r["body"]) else _halted(r["referenceId"])
                for r in responses
            ]
        return Resp(200, {"compositeResponse": responses})

    # ------------------------------------------------------------------ query
    def _run_soql(self, soql: str, include_deleted: bool, version: str) -> Any:
        from sfsync.emulator.soql import run_query

        return run_query(
            self.store,
            soql,
            include_deleted=include_deleted,
            api_version=version,
            now=dt.datetime.fromtimestamp(self.clock(), dt.UTC),
        )

    def _bulk_query(self, soql: str, include_deleted: bool) -> list[dict[str, Any]]:
        result = self._run_soql(soql, include_deleted, "62.0")
        return list(result.records)

    def query(self, req: Req, include_deleted: bool = False) -> Resp:
        soql = req.query.get("q")
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        result = self._run_soql(soql, include_deleted, req.version)
        batch = _batch_size(req.headers.get("sforce-query-options"))
        return Resp(
            200,
            self._page(
                list(result.records),
                result.total_size,
                0,
                batch,
                req.version,
                "queryAll" if include_deleted else "query",
            ),
        )

    def query_all(self, req: Req) -> Resp:
        return self.query(req, include_deleted=True)

    def query_more(self, req: Req) -> Resp:
        locator = req.params["locator"]
        key, _, position = locator.rpartition("-")
        with self._lock:
            cursor = self._cursors.get(key)
        if cursor is None or not position.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        records, total, kind, batch = cursor
        return Resp(200, self._page(records, total, int(position), batch, req.version, kind, key))

    def _page(
        self,
        records: list[dict[str, Any]],
        total: int,
        start: int,
        batch: int,
        version: str,
        kind: str,
        key: str | None = None,
    ) -> dict[str, Any]:
        end = start + batch
        page: dict[str, Any] = {"totalSize": total, "done": end >= len(records), "records": records[start:end]}
        if end < len(records):
            if key is None:
                key = f"01g{uuid.uuid4().hex[:12].upper()}"
                with self._lock:
                    self._cursors[key] = (records, total, kind, batch)
                    while len(self._cursors) > 256:
                        self._cursors.popitem(last=False)
            page["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{key}-{end}"
        return page

    def search(self, req: Req) -> Resp:
        from sfsync.emulator.sosl import run_search

        sosl = req.query.get("q")
        if not sosl:
            raise ApiError(400, "MALFORMED_SEARCH", "No search term found. The search term must be enclosed in braces.")
        return Resp(200, run_search(self.store, sosl, api_version=req.version))

    def parameterized_search(self, req: Req) -> Resp:
        from sfsync.emulator.sosl import run_parameterized_search

        params: dict[str, Any] = dict(req.query) if req.method == "GET" else (req.json() or {})
        return Resp(200, run_parameterized_search(self.store, params, api_version=req.version))

    # ------------------------------------------------------------------ Bulk API 2.0
    def _bulk(self, result: Any, status: int = 200) -> Resp:
        return Resp(status, result)

    def bulk_create_ingest(self, req: Req) -> Resp:
        return Resp(200, self.bulk.create_ingest_job(req.json() or {}, req.version))

    def bulk_list_ingest(self, req: Req) -> Resp:
        return Resp(200, self.bulk.list_jobs())

    def bulk_get_ingest(self, req: Req) -> Resp:
        return Resp(200, self.bulk.get_job(req.params["job"]))

    def bulk_patch_ingest(self, req: Req) -> Resp:
        return Resp(200, self.bulk.patch_job(req.params["job"], req.json() or {}))

    def bulk_delete_ingest(self, req: Req) -> Resp:
        self.bulk.delete_job(req.params["job"])
        return Resp(204)

    def bulk_upload(self, req: Req) -> Resp:
        self.bulk.upload_batch(req.params["job"], req.body)
        return Resp(201)

    def bulk_results(self, req: Req) -> Resp:
        kind = req.params["kind"]
        method = {
            "successfulResults": self.bulk.successful_results,
            "failedResults": self.bulk.failed_results,
            "unprocessedrecords": self.bulk.unprocessed_records,
            "unprocessedRecords": self.bulk.unprocessed_records,
        }[kind]
        return Resp(200, raw=method(req.params["job"]), media_type="text/csv")

    def bulk_create_query(self, req: Req) -> Resp:
        return Resp(200, self.bulk.create_query_job(req.json() or {}, req.version))

    def bulk_list_query(self, req: Req) -> Resp:
        return Resp(200, self.bulk.list_query_jobs())

    def bulk_get_query(self, req: Req) -> Resp:
        return Resp(200, self.bulk.get_query_job(req.params["job"]))

    def bulk_patch_query(self, req: Req) -> Resp:
        return Resp(200, self.bulk.patch_query_job(req.params["job"], req.json() or {}))

    def bulk_delete_query(self, req: Req) -> Resp:
        self.bulk.delete_query_job(req.params["job"])
        return Resp(204)

    def bulk_query_results(self, req: Req) -> Resp:
        max_records = req.query.get("maxRecords")
        data, locator, count = self.bulk.query_results(
            req.params["job"], req.query.get("locator"), int(max_records) if max_records else None
        )
        return Resp(
            200,
            raw=data,
            media_type="text/csv",
            headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)},
        )

    # ------------------------------------------------------------------ admin API
    def _admin_routes(self) -> list[Route]:
        def endpoint(handler: Callable[[Any], Any]) -> Callable[[Request], Awaitable[Response]]:
            async def run(request: Request) -> Response:
                body = await request.body()
                payload = orjson.loads(body) if body else {}
                try:
                    return _json_response(200, handler(payload))
                except ApiError as exc:
                    return _json_response(exc.status, exc.body())
                except (KeyError, TypeError, ValueError) as exc:
                    return _json_response(400, {"error": f"bad admin request: {exc}"})

            return run

        return [
            Route("/reset", endpoint(self.admin_reset), methods=["POST"]),
            Route("/snapshot", endpoint(self.admin_snapshot), methods=["POST"]),
            Route("/restore", endpoint(self.admin_restore), methods=["POST"]),
            Route("/stats", endpoint(lambda _p: self.admin_stats()), methods=["GET"]),
            Route("/call-options", endpoint(lambda _p: list(self.call_options)), methods=["GET"]),
            Route("/edit", endpoint(self.admin_edit), methods=["POST"]),
            Route("/delete", endpoint(self.admin_delete), methods=["POST"]),
            Route("/undelete", endpoint(self.admin_undelete), methods=["POST"]),
            Route("/purge", endpoint(self.admin_purge), methods=["POST"]),
            Route("/empty-recycle-bin", endpoint(self.admin_empty_recycle_bin), methods=["POST"]),
            Route("/visibility", endpoint(self.admin_visibility), methods=["GET", "POST"]),
            Route("/convert-lead", endpoint(self.admin_convert_lead), methods=["POST"]),
            Route("/touch", endpoint(self.admin_touch), methods=["POST"]),
            Route("/faults", endpoint(self.admin_faults), methods=["POST"]),
            Route("/limits", endpoint(self.admin_limits), methods=["POST"]),
            Route("/sessions/expire", endpoint(lambda _p: {"expired": self.auth.expire_all()}), methods=["POST"]),
            Route("/session", endpoint(self.admin_session), methods=["POST"]),
        ]

    def admin_session(self, payload: Any) -> dict[str, Any]:
        """A ready session for local tools and benches (what `sf org display` gives for a real org)."""
        username = payload.get("username")
        session = self.auth.issue_session(username=username)
        return {
            "access_token": session.access_token,
            "instance_url": session.instance_url,
            "user_id": session.user_id,
            "username": session.username,
        }

    def admin_reset(self, _payload: Any) -> dict[str, Any]:
        self.store.reset()
        with self._lock:
            self.api_calls = 0
            self.calls_by_endpoint.clear()
            self.call_options.clear()
            self._cursors.clear()
        return {"reset": True}

    def admin_snapshot(self, _payload: Any) -> dict[str, Any]:
        key = uuid.uuid4().hex
        self.snapshots[key] = self.store.snapshot()
        return {"snapshot": key}

    def admin_restore(self, payload: Any) -> dict[str, Any]:
        self.store.restore(self.snapshots[payload["snapshot"]])
        return {"restored": payload["snapshot"]}

    def admin_stats(self) -> dict[str, Any]:
        return {
            "api_calls": self.api_calls,
            "daily_limit": self.daily_limit,
            "by_endpoint": dict(self.calls_by_endpoint),
            "faults": self.faults.describe(),
        }

    def _admin_transaction(self, payload: Any, user: str) -> AbstractContextManager[None]:
        """One transaction for an admin action, committed ``visibility_delay_ms`` late when given
        (otherwise as the visibility fault rule says)."""
        delay = payload.get("visibility_delay_ms")
        return self.store.transaction(
            user_id=user, visibility_delay=dt.timedelta(milliseconds=float(delay)) if delay is not None else None
        )

    def _stamp_of(self, record_id: str) -> str | None:
        found = self.store.row_by_id(record_id, visible_only=False)
        return json_row({"v": found[1].get("SystemModstamp")})["v"] if found is not None else None

    def admin_edit(self, payload: Any) -> dict[str, Any]:
        """A user (a sales rep in the UI; default the integration user) edits records in one transaction:
        ``{"user", "sobject", "id", "values"}`` or ``{"user", "records": [{"sobject", "id", "values"}, ...]}``;
        a record without ``id`` is created. They share one SystemModstamp; LastModifiedById is the user."""
        user = self._user_id(payload.get("user"))
        records = payload.get("records", [payload])
        written: list[str] = []
        with self._admin_transaction(payload, user):
            for record in records:
                obj = self._object(record.get("sobject") or payload["sobject"])
                if record.get("id"):
                    self.store.edit_as(user, obj.name, record["id"], record["values"])
                    written.append(ids_module.normalize(record["id"]))
                else:
                    written.append(self.store.create(obj.name, record["values"], user_id=user))
            stamp = self._stamp_of(written[-1]) if written else None
        answer: dict[str, Any] = {"ids": written, "by": user, "SystemModstamp": stamp}
        if "records" not in payload:
            answer["edited"] = payload.get("id") or written[0]
        return answer

    def _admin_ids(self, payload: Any) -> list[str]:
        given = payload["ids"] if "ids" in payload else [payload["id"]]
        return [str(record_id) for record_id in given]

    def admin_delete(self, payload: Any) -> dict[str, Any]:
        """A user deletes records (to the recycle bin) in one transaction: ``{"user", "ids" | "id"}``."""
        user = self._user_id(payload.get("user"))
        record_ids = self._admin_ids(payload)
        with self._admin_transaction(payload, user):
            for record_id in record_ids:
                self.store.delete(self._sobject_of(record_id), record_id, user_id=user)
            stamp = self._stamp_of(record_ids[-1]) if record_ids else None
        return {"deleted": [ids_module.normalize(i) for i in record_ids], "by": user, "SystemModstamp": stamp}

    def admin_undelete(self, payload: Any) -> dict[str, Any]:
        """A user restores records from the recycle bin in one transaction: ``{"user", "ids" | "id"}``."""
        user = self._user_id(payload.get("user"))
        record_ids = self._admin_ids(payload)
        with self._admin_transaction(payload, user):
            for record_id in record_ids:
                self.store.undelete(record_id, user_id=user)
            stamp = self._stamp_of(record_ids[-1]) if record_ids else None
        return {"undeleted": [ids_module.normalize(i) for i in record_ids], "by": user, "SystemModstamp": stamp}

    def admin_purge(self, payload: Any) -> dict[str, Any]:
        """Hard delete (Bulk hardDelete / emptyRecycleBin(ids)): ``{"user", "ids" | "id"}``, live or in the
        recycle bin. Gone from queryAll; getDeleted still lists them (see :mod:`sfsync.emulator.store`)."""
        user = self._user_id(payload.get("user"))
        record_ids = self._admin_ids(payload)
        with self._admin_transaction(payload, user):
            for record_id in record_ids:
                self.store.purge(record_id, user_id=user)
        return {"purged": [ids_module.normalize(i) for i in record_ids], "by": user}

    def admin_empty_recycle_bin(self, payload: Any) -> dict[str, Any]:
        """An administrator empties the recycle bin: ``{"truncate_delete_log": true}`` (the default) also
        drops the delete log, so getDeleted reports none of those deletes (earliestDateAvailable = now)."""
        user = self._user_id(payload.get("user"))
        truncate = bool(payload.get("truncate_delete_log", True))
        purged = self.store.empty_recycle_bin(truncate_delete_log=truncate, user_id=user)
        return {"purged": purged, "delete_log_truncated": truncate}

    def admin_visibility(self, payload: Any) -> dict[str, Any]:
        """GET: the late-visibility rule and the writes not yet visible. POST ``{"delay_ms", "user",
        "sobject", "next", "rate"}``: replace the rule (``delay_ms`` 0 turns it off); other faults stay."""
        from sfsync.emulator.faults import Visibility
        from sfsync.emulator.model import format_datetime

        if payload:
            next_count = payload.get("next")
            self.faults.visibility = Visibility(
                delay_ms=float(payload.get("delay_ms", 0)),
                user=payload.get("user"),
                sobject=payload.get("sobject"),
                remaining=int(next_count) if next_count is not None else None,
                rate=float(payload.get("rate", 1.0)),
            )
        pending = [
            {
                "id": late["id"],
                "SystemModstamp": format_datetime(late["SystemModstamp"]),
                "visible_at": format_datetime(late["visible_at"]),
            }
            for late in self.store.pending_visibility()
        ]
        return {**self.faults.visibility.describe(), "pending": pending}

    def _sobject_of(self, record_id: str) -> str:
        found = self.store.row_by_id(record_id, visible_only=False)
        if found is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return found[0].name

    def _late_commit(self, user_id: str, sobjects: frozenset[str]) -> dt.timedelta | None:
        """The visibility policy the store asks when a write transaction commits (the faults' rule)."""
        user = self.store.users.get(user_id) or {}
        names = frozenset(str(n) for n in (user_id, user_id[:15], user.get("Username")) if n)
        delay_ms = self.faults.late_commit_ms(names, sobjects)
        return dt.timedelta(milliseconds=delay_ms) if delay_ms else None

    def admin_touch(self, payload: Any) -> dict[str, Any]:
        """An automated process (trigger, roll-up, system job) writes or just touches a record: SystemModstamp
        moves, LastModifiedDate and LastModifiedById do not."""
        obj = self._object(payload["sobject"])
        with self._admin_transaction(payload, self.store.integration_user_id):
            self.store.system_touch(obj.name, payload["id"], payload.get("values"))
            stamp = self._stamp_of(payload["id"])
        return {"touched": ids_module.normalize(payload["id"]), "SystemModstamp": stamp}

    def admin_convert_lead(self, payload: Any) -> dict[str, Any]:
        account_id, contact_id = self.store.convert_lead(
            payload["lead_id"], contact_id=payload.get("contact_id"), account_id=payload.get("account_id")
        )
        return {"accountId": account_id, "contactId": contact_id}

    def admin_faults(self, payload: Any) -> dict[str, Any]:
        self.faults = Faults.parse(payload.get("spec", ""))
        return self.faults.describe()

    def admin_limits(self, payload: Any) -> dict[str, Any]:
        with self._lock:
            if "daily_api_limit" in payload:
                self.daily_limit = int(payload["daily_api_limit"])
            if "used" in payload:
                self.api_calls = int(payload["used"])
        return {"daily_limit": self.daily_limit, "used": self.api_calls}

    def _user_id(self, user: Any) -> str:
        users = getattr(self.store, "users", {})
        if user is None:
            return str(self.store.integration_user_id)
        for user_id, info in users.items():
            if user in (user_id, info.get("username"), info.get("Username")):
                return str(user_id)
        raise ApiError(404, "NOT_FOUND", f"no such user: {user}")


# ---------------------------------------------------------------------- module helpers
def _json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=dict(headers or {}), media_type="application/json;charset=UTF-8"
    )


def _batch_size(options: str | None) -> int:
    if not options:
        return DEFAULT_BATCH
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    if match is None:
        return DEFAULT_BATCH
    return max(200, min(int(match.group(1)), DEFAULT_BATCH))


def _collection_failed(body: Any) -> bool:
    """Whether an sObject Collections result (a list of SaveResults) has a failed item."""
    return isinstance(body, list) and any(isinstance(i, dict) and i.get("success") is False for i in body)


def _halted(ref: str) -> dict[str, Any]:
    return {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in the same transaction failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref,
    }


REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")


def _resolve_refs(text: str, results: Mapping[str, Any]) -> str:
    """Replace ``@{ref.id}`` / ``@{ref.records[0].Id}`` with values from earlier subrequests."""

    def value(match: re.Match[str]) -> str:
        ref, path = match.group(1), match.group(2)
        if ref not in results:
            raise ApiError(
                400, "INVALID_REFERENCE", f"Invalid reference specified. No value for {ref}{path} found in {ref}."
            )
        node: Any = results[ref]
        for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
            try:
                node = node[step[0]] if step[0] else node[int(step[1])]
            except (KeyError, IndexError, TypeError):
                raise ApiError(
                    400, "INVALID_REFERENCE", f"Invalid reference specified. No value for {ref}{path} found in {ref}."
                ) from None
        return str(node)

    return REF_RE.sub(value, text)
