"""SOQL queries (``/query``, ``/queryAll``, paged by ``nextRecordsUrl``) and SOSL / parameterized search.

Every call goes through :meth:`SalesforceClient.request <sfsync.salesforce.client.SalesforceClient.request>`,
once per page (a failure mid-query raises; the pages already yielded stay yielded, and the
caller that retries starts the query again), and only :mod:`sfsync.salesforce.errors` kinds are
raised: a retriable one for a transient fault, a malformed query is a
:class:`MetadataError` (fatal), a page of an unexpected shape an :class:`UnexpectedResponse`.
Build SOQL with :mod:`sfsync.salesforce.soql` so values are escaped.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
import orjson

from sfsync.salesforce.errors import UnexpectedResponse
from sfsync.salesforce.rest import ApiModel, Record, RestCaller, api_name, parse_model
from sfsync.salesforce.soql import Condition, Query, select


@dataclass(frozen=True)
class SearchObject:
    """One object of a parameterized search (``sobjects[]``)."""

    name: str
    fields: Sequence[str] = ()
    limit: int | None = None
    where: str | None = None


@dataclass(frozen=True)
class ServerTime:
    """When the org answered one call, as far as the client can tell without trusting its own clock."""

    date: dt.datetime | None
    """The response's HTTP ``Date`` header (the org's clock, 1 s resolution; None: absent or unreadable)."""
    round_trip: dt.timedelta
    """How long the call took, measured by the client (a duration: no clock skew)."""


def server_date(value: str | None) -> dt.datetime | None:
    """An HTTP ``Date`` header (``Tue, 25 Nov 2026 12:00:00 GMT``) as an aware UTC datetime; None if absent
    or unreadable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class _QueryPage(ApiModel):
    total_size: int
    done: bool
    next_records_url: str | None = None
    records: list[Record]


def _json_body(response: httpx.Response, resource: str) -> Any:
    """The JSON body of a query response (None if empty; not JSON: :class:`UnexpectedResponse`)."""
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise UnexpectedResponse(
            f"GET {resource}: expected JSON, got {response.headers.get('Content-Type', 'no content type')}",
            status=response.status_code,
        ) from exc


NextPageHook = Callable[[], Awaitable[None]]
"""Awaited before each further page of a query is asked for (one API call each): e.g. a governor's
``before_call``; it may sleep or raise (then no call goes out)."""


async def follow_pages(
    caller: RestCaller,
    first: object,
    resource: str,
    headers: Mapping[str, str] | None = None,
    before_next_page: NextPageHook | None = None,
) -> AsyncIterator[Record]:
    """The records of a query whose first page (``{totalSize, done, records, nextRecordsUrl?}``, as
    ``/query`` answers it alone or inside ``/composite``) is ``first``: that page's, then each
    ``nextRecordsUrl``'s (one ``GET`` each, with ``headers``, ``before_next_page`` awaited first) until
    ``done``. A page of another shape raises :class:`UnexpectedResponse`; a failed call raises as
    :meth:`QueryApi.query`'s do."""
    data = first
    while True:
        page = parse_model(_QueryPage, data, resource)
        for record in page.records:
            yield record
        if page.done or not page.next_records_url:
            return
        if before_next_page is not None:
            await before_next_page()
        data = await caller._json("GET", page.next_records_url, headers=dict(headers or {}))


class QueryApi(RestCaller):
    """The query and search calls of :class:`~sfsync.salesforce.client.SalesforceClient`."""

    async def query(
        self,
        soql: str | Query,
        *,
        batch_size: int | None = None,
        include_deleted: bool = False,
        on_first_response: Callable[[ServerTime], None] | None = None,
        before_next_page: NextPageHook | None = None,
    ) -> AsyncIterator[Record]:
        """Every record of a SOQL query: ``GET /query?q=``, then each ``nextRecordsUrl`` until ``done``.

        ``batch_size`` (200-2000, else :class:`ValueError`) is sent as
        ``Sforce-Query-Options: batchSize=N``; ``include_deleted`` uses ``/queryAll`` (deleted and
        archived rows too). ``on_first_response`` is told the :class:`ServerTime` of the first call
        (the one that runs the query) before its rows are yielded; ``before_next_page`` is awaited
        before each further page is asked for.
        """
        if batch_size is not None and not 200 <= batch_size <= 2000:
            raise ValueError("batch_size must be between 200 and 2000")
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
        resource = "queryAll" if include_deleted else "query"
        if on_first_response is None:
            data = await self._json("GET", resource, params={"q": str(soql)}, headers=headers)
        else:
            sent = time.monotonic()
            response = await self.request("GET", resource, params={"q": str(soql)}, headers=headers)
            round_trip = dt.timedelta(seconds=time.monotonic() - sent)
            on_first_response(ServerTime(server_date(response.headers.get("Date")), round_trip))
            data = _json_body(response, resource)
        async for record in follow_pages(self, data, resource, headers, before_next_page):
            yield record

    async def query_all(self, soql: str | Query, *, batch_size: int | None = None) -> AsyncIterator[Record]:
        """Like :meth:`query` via ``/queryAll``: includes deleted (``IsDeleted = true``) and archived rows."""
        async for record in self.query(soql, batch_size=batch_size, include_deleted=True):
            yield record

    async def count(self, soql: str | Query, *, include_deleted: bool = False) -> int:
        """``totalSize`` of one ``GET /query`` (use ``SELECT COUNT() FROM ...`` so no rows are transferred)."""
        data = await self._json("GET", "queryAll" if include_deleted else "query", params={"q": str(soql)})
        return parse_model(_QueryPage, data, "count").total_size

    async def count_records(self, sobject: str, *conditions: Condition) -> int:
        """``SELECT COUNT() FROM sobject WHERE ...`` built safely, sent as :meth:`count`."""
        query = select("COUNT()").from_(sobject)
        for condition in conditions:
            query = query.where(condition)
        return await self.count(query)

    async def search(self, sosl: str) -> list[Record]:
        """``GET /search?q=`` → ``searchRecords`` (build ``sosl`` with :func:`sfsync.salesforce.soql.sosl_find`)."""
        data = await self._json("GET", "search/", params={"q": sosl})
        records = data.get("searchRecords", []) if isinstance(data, dict) else data
        return list(records or [])

    async def parameterized_search(
        self,
        q: str,
        *,
        sobjects: Sequence[SearchObject] = (),
        fields: Sequence[str] = (),
        overall_limit: int | None = None,
        in_: Literal["ALL", "NAME", "EMAIL", "PHONE", "SIDEBAR"] | None = None,
    ) -> list[Record]:
        """``POST /parameterizedSearch`` (plain text ``q``: no SOSL escaping needed) → ``searchRecords``.

        Names that are not API names raise :class:`ValueError` before anything is sent.
        """
        body: dict[str, Any] = {"q": q}
        if fields:
            body["fields"] = [api_name(f, "field") for f in fields]
        if sobjects:
            body["sobjects"] = [
                {
                    "name": api_name(o.name),
                    **({"fields": [api_name(f, "field") for f in o.fields]} if o.fields else {}),
                    **({"limit": o.limit} if o.limit is not None else {}),
                    **({"where": o.where} if o.where else {}),
                }
                for o in sobjects
            ]
        if overall_limit is not None:
            body["overallLimit"] = overall_limit
        if in_ is not None:
            body["in"] = in_
        data = await self._json("POST", "parameterizedSearch/", json=body)
        records = data.get("searchRecords", []) if isinstance(data, dict) else data
        return list(records or [])
