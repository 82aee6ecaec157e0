"""The REST API's query and search resources: ``/query``, ``/queryAll`` (with their next-page locators),
``/search`` and ``/parameterizedSearch``.

A query answers ``{"totalSize", "done", "records"}`` in pages of the ``batchSize`` its
``Sforce-Query-Options`` header asks for (200 to 2,000; default 2,000); when more remain,
``nextRecordsUrl`` is ``/services/data/vXX.X/query/<locator>-<offset>`` (``queryAll`` for
queryAll). The 256 newest result sets are kept for their locators; an unknown or evicted locator is
INVALID_QUERY_LOCATOR. SOQL and SOSL errors are those of :mod:`sfsync.emulator.soql` and
:mod:`sfsync.emulator.sosl`; a missing ``q`` is MALFORMED_QUERY / MALFORMED_SEARCH.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections import OrderedDict
from typing import Any

from sfsync.emulator.errors import ApiError
from sfsync.emulator.rest_routing import Req, Resp, Router, ServedOrg
from sfsync.emulator.soql import QueryResult, run_query
from sfsync.emulator.sosl import run_parameterized_search, run_search

DEFAULT_BATCH = 2000
_MAX_CURSORS = 256


def run_soql(org: ServedOrg, soql: str, *, include_deleted: bool, version: str) -> QueryResult:
    """Run ``soql`` against ``org``'s records at the org's current time (API version ``version``)."""
    return run_query(
        org.store,
        soql,
        include_deleted=include_deleted,
        api_version=version,
        now=dt.datetime.fromtimestamp(org.clock(), dt.UTC),
    )


def _batch_size(options: str | None) -> int:
    if not options:
        return DEFAULT_BATCH
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    if match is None:
        return DEFAULT_BATCH
    return max(200, min(int(match.group(1)), DEFAULT_BATCH))


class QueryApi:
    """Handlers of the query and search resources; keeps the result sets that have further pages."""

    def __init__(self, org: ServedOrg) -> None:
        self._org = org
        self._cursors: OrderedDict[str, tuple[list[dict[str, Any]], int, str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def install(self, router: Router) -> None:
        """Register the handlers on ``router``."""
        r = router.route
        r("GET", "query", "query")(self.query)
        r("GET", "queryAll", "queryAll")(self.query_all)
        r("GET", r"query/(?P<locator>[\w-]+)", "query/{locator}")(self.query_more)
        r("GET", r"queryAll/(?P<locator>[\w-]+)", "queryAll/{locator}")(self.query_more)
        r("GET", "search", "search")(self.search)
        r("GET", "parameterizedSearch", "parameterizedSearch")(self.parameterized_search)
        r("POST", "parameterizedSearch", "parameterizedSearch")(self.parameterized_search)

    def forget_cursors(self) -> None:
        """Drop every kept result set (their locators become invalid)."""
        with self._lock:
            self._cursors.clear()

    def query(self, req: Req, include_deleted: bool = False) -> Resp:
        soql = req.query.get("q")
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        result = run_soql(self._org, soql, include_deleted=include_deleted, version=req.version)
        batch = _batch_size(req.headers.get("sforce-query-options"))
        kind = "queryAll" if include_deleted else "query"
        return Resp(200, self._page(list(result.records), result.total_size, 0, batch, req.version, kind))

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
                    while len(self._cursors) > _MAX_CURSORS:
                        self._cursors.popitem(last=False)
            page["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{key}-{end}"
        return page

    def search(self, req: Req) -> Resp:
        sosl = req.query.get("q")
        if not sosl:
            raise ApiError(400, "MALFORMED_SEARCH", "No search term found. The search term must be enclosed in braces.")
        return Resp(200, run_search(self._org.store, sosl, api_version=req.version))

    def parameterized_search(self, req: Req) -> Resp:
        params: dict[str, Any] = dict(req.query) if req.method == "GET" else (req.json() or {})
        return Resp(200, run_parameterized_search(self._org.store, params, api_version=req.version))
