"""Composite resources: sObject Collections (many records a call) and ``/composite``.

The collection calls split their input into chunks (:data:`COLLECTION_MAX` records,
:data:`RETRIEVE_MAX` ids), send one request per chunk, and return one :class:`RecordResult` per
input record in request order. Per-record refusals are not raised: they are in
:attr:`RecordResult.errors`, classified like any error (an innocent item of an all-or-none unit is
:class:`RolledBack`). Whole-request failures raise :mod:`sfsync.salesforce.errors` kinds from
:meth:`SalesforceClient.request <sfsync.salesforce.client.SalesforceClient.request>`; chunks sent
before the failure stay sent, and nothing is resent: the failed chunk may or may not have been
committed (a 5xx, a read timeout), so the caller matches its records again before it writes them
again (the sink does). Object and field names that are not API names raise :class:`ValueError`
before anything is sent.

:meth:`CompositeApi.collections` packs up to :data:`COMPOSITE_COLLECTIONS_MAX` collection operations
(each one request's worth, at most :data:`COLLECTION_MAX` records) into one ``POST /composite``: one
API call for all of them. Each is a transaction of its own (``allOrNone`` false) and has its own
outcome: its results, as the single call returns them, or the error its subrequest was answered
with, classified as a top-level answer would be. :meth:`CompositeApi.queries` does the same for up
to five SOQL queries (their first pages in the one call; a further page is a call of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

from sfsync.salesforce.errors import SalesforceError, UnexpectedResponse, parse_error_body
from sfsync.salesforce.query import NextPageHook, follow_pages
from sfsync.salesforce.rest import API_NAME_RE, Record, RestCaller, api_name
from sfsync.salesforce.soql import Query

T = TypeVar("T")

COLLECTION_MAX = 200
"""Records per sObject Collections create/update/upsert/delete call."""

RETRIEVE_MAX = 2000
"""Ids per sObject Collections retrieve call."""

COMPOSITE_MAX = 25
"""Subrequests per ``/composite`` call."""

COMPOSITE_COLLECTIONS_MAX = 5
"""sObject Collections or query subrequests per ``/composite`` call (the rest of the 25 are other resources)."""

COMPOSITE_COLLECTIONS_MIN_VERSION = 43.0
"""The first API version whose ``/composite`` takes sObject Collections subrequests."""

_COLLATE_MIN_VERSION = 48.0
"""The first API version that knows ``collateSubrequests`` (default false in 48.0, true from 49.0)."""

CollectionKind = Literal["create", "update", "upsert", "delete"]


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one record of a collection call, in request order (``index``)."""

    index: int
    id: str | None
    success: bool
    created: bool | None
    errors: list[SalesforceError] = field(default_factory=list)


@dataclass(frozen=True)
class CollectionOp:
    """One sObject Collections request: ``create`` / ``update`` / ``upsert`` ``records`` of ``sobject``
    (an update's records carry their ``Id``, or ``ids`` gives them, record by record: each goes out as
    ``{"Id": id, **record}``, without a copy of the record made first; an upsert's carry their
    ``ext_field`` value), or ``delete`` ``ids``; at most :data:`COLLECTION_MAX` of them, ``allOrNone``
    false."""

    kind: CollectionKind
    sobject: str = ""
    records: Sequence[Mapping[str, Any]] = ()
    ext_field: str | None = None
    ids: Sequence[str] = ()

    @property
    def size(self) -> int:
        return len(self.ids) if self.kind == "delete" else len(self.records)


@dataclass(frozen=True)
class _CollectionRequest:
    method: Literal["POST", "PATCH", "DELETE"]
    path: str
    params: dict[str, str] | None
    body: dict[str, Any] | None
    created_default: bool | None


def _check(op: CollectionOp) -> None:
    """:class:`ValueError` for names that are not API names, an update without Ids, an upsert without its field."""
    if op.kind == "delete":
        return
    api_name(op.sobject)
    if op.kind == "update" and op.ids:
        if len(op.ids) != len(op.records) or not all(op.ids):
            raise ValueError("update: one Id per record")
    elif op.kind == "update" and any(not (r.get("Id") or r.get("id")) for r in op.records):
        raise ValueError("update_many: every record needs an Id")
    if op.kind == "upsert":
        if op.ext_field is None:
            raise ValueError("an upsert needs its external ID field")
        api_name(op.ext_field, "field")


def _collection_request(op: CollectionOp, all_or_none: bool = False) -> _CollectionRequest:
    """The request of one chunk (≤ :data:`COLLECTION_MAX`) of a :func:`_check` ed ``op``, top-level or
    as a subrequest."""
    if op.kind == "delete":
        params = {"ids": ",".join(op.ids), "allOrNone": "true" if all_or_none else "false"}
        return _CollectionRequest("DELETE", "composite/sobjects", params, None, False)
    attributes = {"type": op.sobject}  # one per request: only serialized, never changed
    if op.kind == "update" and op.ids:
        records = [_typed(attributes, r, record_id) for r, record_id in zip(op.records, op.ids, strict=True)]
    else:
        records = [_typed(attributes, r) for r in op.records]
    body = {"allOrNone": all_or_none, "records": records}
    if op.kind == "create":
        return _CollectionRequest("POST", "composite/sobjects", None, body, True)
    if op.kind == "update":
        return _CollectionRequest("PATCH", "composite/sobjects", None, body, False)
    return _CollectionRequest("PATCH", f"composite/sobjects/{op.sobject}/{op.ext_field}", None, body, None)


@dataclass(frozen=True)
class CompositeSubrequest:
    """One subrequest of ``/composite``; ``url`` may be relative to ``/services/data/vXX.X/``."""

    method: Literal["GET", "POST", "PATCH", "PUT", "DELETE"]
    url: str
    reference_id: str
    body: Mapping[str, Any] | None = None
    http_headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class CompositeSubresponse:
    """One subresponse; ``error`` is the classified error when ``status >= 400``."""

    reference_id: str
    status: int
    body: Any
    headers: dict[str, str]
    error: SalesforceError | None


def _chunks(items: Sequence[T], size: int) -> Iterable[tuple[int, Sequence[T]]]:
    for offset in range(0, len(items), size):
        yield offset, items[offset : offset + size]


def _results(data: object, offset: int, created_default: bool | None) -> list[RecordResult]:
    if not isinstance(data, list):
        raise UnexpectedResponse("collections: expected a JSON array of results")
    results = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise UnexpectedResponse("collections: result item is not an object")
        success = bool(item.get("success"))
        errors = [parse_error_body(400, e, per_record=True) for e in item.get("errors") or []]
        created = item.get("created", created_default if success else None)
        results.append(RecordResult(offset + i, item.get("id"), success, created, errors))
    return results


def _chunk(op: CollectionOp, start: int, stop: int) -> CollectionOp:
    if op.kind == "delete":
        return replace(op, ids=op.ids[start:stop])
    return replace(op, records=op.records[start:stop], ids=op.ids[start:stop])


def _check_all_or_none(count: int, all_or_none: bool, size: int = COLLECTION_MAX) -> None:
    if all_or_none and count > size:
        raise ValueError(f"all_or_none needs one transaction: at most {size} records")


def _typed(attributes: dict[str, str], record: Mapping[str, Any], record_id: str | None = None) -> dict[str, Any]:
    """``record`` as a collection item: ``attributes`` first, then ``Id`` when ``record_id`` is given,
    then its fields in order (an ``attributes`` of its own replaced; an ``Id`` of its own wins, as in
    ``{"Id": record_id, **record}``). One copy of the record."""
    typed: dict[str, Any] = {"attributes": attributes}
    if record_id is not None:
        typed["Id"] = record_id
    typed.update(record)
    if "attributes" in record:
        typed["attributes"] = attributes  # the first key still: the position is kept, the value replaced
    return typed


class CompositeApi(RestCaller):
    """The composite calls of :class:`~sfsync.salesforce.client.SalesforceClient`.

    ``all_or_none=True`` needs one transaction, so more than :data:`COLLECTION_MAX` records raise
    :class:`ValueError` before anything is sent.
    """

    async def create_many(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        """``POST /composite/sobjects`` in chunks of 200 → one result per record, in request order."""
        return await self._many(CollectionOp("create", sobject, records), all_or_none)

    async def update_many(
        self,
        sobject: str,
        records: Sequence[Mapping[str, Any]],
        *,
        all_or_none: bool = False,
        ids: Sequence[str] = (),
    ) -> list[RecordResult]:
        """``PATCH /composite/sobjects`` in chunks of 200; every record needs its ``Id``, or ``ids`` gives
        them in order (else :class:`ValueError`)."""
        return await self._many(CollectionOp("update", sobject, records, ids=ids), all_or_none)

    async def upsert_many(
        self, sobject: str, ext_field: str, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        """``PATCH /composite/sobjects/{sobject}/{ext_field}`` in chunks of 200; ``created`` tells insert/update."""
        return await self._many(CollectionOp("upsert", sobject, records, ext_field=ext_field), all_or_none)

    async def delete_many(self, ids: Sequence[str], *, all_or_none: bool = False) -> list[RecordResult]:
        """``DELETE /composite/sobjects?ids=...&allOrNone=`` in chunks of 200 → one result per id."""
        return await self._many(CollectionOp("delete", ids=ids), all_or_none)

    async def _many(self, op: CollectionOp, all_or_none: bool) -> list[RecordResult]:
        """``op`` in requests of :data:`COLLECTION_MAX` (its names checked before anything is sent)."""
        _check_all_or_none(op.size, all_or_none)
        _check(op)
        results: list[RecordResult] = []
        for offset in range(0, op.size, COLLECTION_MAX):
            chunk = _chunk(op, offset, offset + COLLECTION_MAX)
            request = _collection_request(chunk, all_or_none)
            kwargs: dict[str, Any] = {"params": request.params} if request.params else {"json": request.body}
            data = await self._json(request.method, request.path, **kwargs)
            results += _results(data, offset, request.created_default)
        return results

    async def collections(self, ops: Sequence[CollectionOp]) -> list[list[RecordResult] | SalesforceError]:
        """``ops`` (1 to :data:`COMPOSITE_COLLECTIONS_MAX`, each ≤ :data:`COLLECTION_MAX` records) as ONE
        ``POST /composite`` (one API call), run in order, each its own transaction (``allOrNone`` false).

        Returns, per op in order, its results (one per record, as :meth:`create_many` and the others
        return them) or the error its subrequest was answered with, classified as the same answer to a
        single call would be (not raised). A failure of the whole request raises as a single call's
        does. Too many ops, an op of more than 200 records, names that are not API names, or an API
        version below :data:`COMPOSITE_COLLECTIONS_MIN_VERSION` raise :class:`ValueError` before
        anything is sent.
        """
        if not 1 <= len(ops) <= COMPOSITE_COLLECTIONS_MAX:
            raise ValueError(f"composite takes 1 to {COMPOSITE_COLLECTIONS_MAX} collection subrequests")
        if not self.composite_collections:
            raise ValueError(f"collections in /composite need API {COMPOSITE_COLLECTIONS_MIN_VERSION} or later")
        if any(op.size > COLLECTION_MAX for op in ops):
            raise ValueError(f"a collection subrequest takes at most {COLLECTION_MAX} records")
        for op in ops:
            _check(op)
        requests = [_collection_request(op) for op in ops]
        subrequests = [
            CompositeSubrequest(
                r.method, f"{r.path}?{urlencode(r.params)}" if r.params else r.path, f"c{i}", body=r.body
            )
            for i, r in enumerate(requests)
        ]
        collate = False if float(self.settings.api_version) >= _COLLATE_MIN_VERSION else None
        answers = await self.composite(subrequests, all_or_none=False, collate_subrequests=collate)
        by_ref = {a.reference_id: a for a in answers}
        out: list[list[RecordResult] | SalesforceError] = []
        for sub, request in zip(subrequests, requests, strict=True):
            answer = by_ref.get(sub.reference_id)
            if answer is None:
                raise UnexpectedResponse(f"composite: no answer to subrequest {sub.reference_id}")
            out.append(answer.error or _results(answer.body, 0, request.created_default))
        return out

    async def queries(
        self, soqls: Sequence[str | Query], *, before_next_page: NextPageHook | None = None
    ) -> list[list[Record] | SalesforceError]:
        """``soqls`` (1 to :data:`COMPOSITE_COLLECTIONS_MAX`) as ONE ``POST /composite`` of ``query``
        subrequests (one API call; ``allOrNone`` false, run in order).

        Returns, per query in order, every record it selects or the error its subrequest was answered
        with, classified as the same answer to a single ``GET /query`` would be (not raised). A result
        that is not ``done`` is followed with ordinary ``nextRecordsUrl`` calls (one API call each, as
        :meth:`~sfsync.salesforce.query.QueryApi.query` makes them, ``before_next_page`` awaited before
        each); one of those failing, or ``before_next_page`` raising a :class:`SalesforceError`, is that
        query's error. A failure of the whole request raises as a single call's does. Too many or too
        few queries, or an API version below :data:`COMPOSITE_COLLECTIONS_MIN_VERSION`, raise
        :class:`ValueError` before anything is sent. Each query's SOQL goes URL-encoded in its
        subrequest's URL: keep it as short as a ``GET /query`` needs it.
        """
        if not 1 <= len(soqls) <= COMPOSITE_COLLECTIONS_MAX:
            raise ValueError(f"composite takes 1 to {COMPOSITE_COLLECTIONS_MAX} query subrequests")
        if not self.composite_collections:
            raise ValueError(f"queries in /composite are sent from API {COMPOSITE_COLLECTIONS_MIN_VERSION} on")
        subrequests = [
            CompositeSubrequest("GET", f"query/?{urlencode({'q': str(soql)})}", f"q{i}") for i, soql in enumerate(soqls)
        ]
        collate = False if float(self.settings.api_version) >= _COLLATE_MIN_VERSION else None
        answers = await self.composite(subrequests, all_or_none=False, collate_subrequests=collate)
        by_ref = {a.reference_id: a for a in answers}
        out: list[list[Record] | SalesforceError] = []
        for sub in subrequests:
            answer = by_ref.get(sub.reference_id)
            if answer is None:
                raise UnexpectedResponse(f"composite: no answer to subrequest {sub.reference_id}")
            if answer.error is not None:
                out.append(answer.error)
                continue
            try:
                out.append(
                    [record async for record in follow_pages(self, answer.body, "query", None, before_next_page)]
                )
            except SalesforceError as exc:
                out.append(exc)
        return out

    @property
    def composite_collections(self) -> bool:
        """Whether this client's API version takes sObject Collections inside ``/composite``."""
        return float(self.settings.api_version) >= COMPOSITE_COLLECTIONS_MIN_VERSION

    async def retrieve_many(self, sobject: str, ids: Sequence[str], fields: Sequence[str]) -> list[Record | None]:
        """``POST /composite/sobjects/{sobject}`` (≤ 2000 ids a call) → records in id order, ``None`` if not found."""
        path = f"composite/sobjects/{api_name(sobject)}"
        wanted = [api_name(f, "field") for f in fields]
        out: list[Record | None] = []
        for _, chunk in _chunks(ids, RETRIEVE_MAX):
            data = await self._json("POST", path, json={"ids": list(chunk), "fields": wanted})
            if not isinstance(data, list):
                raise UnexpectedResponse("retrieve_many: expected a JSON array")
            out += [r if isinstance(r, dict) else None for r in data]
        return out

    async def composite(
        self,
        subrequests: Sequence[CompositeSubrequest],
        *,
        all_or_none: bool = False,
        collate_subrequests: bool | None = None,
    ) -> list[CompositeSubresponse]:
        """``POST /composite`` (1 to 25 subrequests, one API call); ``@{refId.field}`` references allowed.

        Returns one :class:`CompositeSubresponse` per subrequest; a failed subrequest is not raised
        but carried in its ``error``. Too many/few subrequests or reference ids that are not unique
        identifiers raise :class:`ValueError` before anything is sent.
        """
        if not 1 <= len(subrequests) <= COMPOSITE_MAX:
            raise ValueError(f"composite takes 1 to {COMPOSITE_MAX} subrequests")
        refs = [s.reference_id for s in subrequests]
        if len(set(refs)) != len(refs) or not all(API_NAME_RE.match(r) for r in refs):
            raise ValueError("referenceIds must be unique identifiers (letters, digits, _)")
        items = []
        for sub in subrequests:
            url = sub.url if sub.url.startswith("/") else f"{self.api_path}/{sub.url}"
            item: dict[str, Any] = {"method": sub.method, "url": url, "referenceId": sub.reference_id}
            if sub.body is not None:
                item["body"] = dict(sub.body)
            if sub.http_headers:
                item["httpHeaders"] = dict(sub.http_headers)
            items.append(item)
        body: dict[str, Any] = {"allOrNone": all_or_none, "compositeRequest": items}
        if collate_subrequests is not None:
            body["collateSubrequests"] = collate_subrequests
        data = await self._json("POST", "composite", json=body)
        if not isinstance(data, dict) or not isinstance(data.get("compositeResponse"), list):
            raise UnexpectedResponse("composite: expected compositeResponse")
        out = []
        for item in data["compositeResponse"]:
            status = int(item.get("httpStatusCode", 0))
            sub_body = item.get("body")
            error = parse_error_body(status, sub_body) if status >= 400 else None
            out.append(
                CompositeSubresponse(
                    reference_id=str(item.get("referenceId")),
                    status=status,
                    body=sub_body,
                    headers=dict(item.get("httpHeaders") or {}),
                    error=error,
                )
            )
        return out
