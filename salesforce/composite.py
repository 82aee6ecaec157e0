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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sfsync.salesforce.errors import SalesforceError, UnexpectedResponse, parse_error_body
from sfsync.salesforce.rest import API_NAME_RE, Record, RestCaller, api_name

T = TypeVar("T")

COLLECTION_MAX = 200
"""Records per sObject Collections create/update/upsert/delete call."""

RETRIEVE_MAX = 2000
"""Ids per sObject Collections retrieve call."""

COMPOSITE_MAX = 25
"""Subrequests per ``/composite`` call."""


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one record of a collection call, in request order (``index``)."""

    index: int
    id: str | None
    success: bool
    created: bool | None
    errors: list[SalesforceError] = field(default_factory=list)


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


def _check_all_or_none(count: int, all_or_none: bool, size: int = COLLECTION_MAX) -> None:
    if all_or_none and count > size:
        raise ValueError(f"all_or_none needs one transaction: at most {size} records")


def _typed(sobject: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"attributes": {"type": sobject}, **{k: v for k, v in record.items() if k != "attributes"}}


class CompositeApi(RestCaller):
    """The composite calls of :class:`~sfsync.salesforce.client.SalesforceClient`.

    ``all_or_none=True`` needs one transaction, so more than :data:`COLLECTION_MAX` records raise
    :class:`ValueError` before anything is sent.
    """

    async def create_many(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        """``POST /composite/sobjects`` in chunks of 200 → one result per record, in request order."""
        api_name(sobject)
        _check_all_or_none(len(records), all_or_none)
        results: list[RecordResult] = []
        for offset, chunk in _chunks(records, COLLECTION_MAX):
            body = {"allOrNone": all_or_none, "records": [_typed(sobject, r) for r in chunk]}
            data = await self._json("POST", "composite/sobjects", json=body)
            results += _results(data, offset, True)
        return results

    async def update_many(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        """``PATCH /composite/sobjects`` in chunks of 200; every record needs its ``Id`` (else :class:`ValueError`)."""
        api_name(sobject)
        _check_all_or_none(len(records), all_or_none)
        if any(not (r.get("Id") or r.get("id")) for r in records):
            raise ValueError("update_many: every record needs an Id")
        results: list[RecordResult] = []
        for offset, chunk in _chunks(records, COLLECTION_MAX):
            body = {"allOrNone": all_or_none, "records": [_typed(sobject, r) for r in chunk]}
            data = await self._json("PATCH", "composite/sobjects", json=body)
            results += _results(data, offset, False)
        return results

    async def upsert_many(
        self, sobject: str, ext_field: str, records: Sequence[Mapping[str, Any]], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        """``PATCH /composite/sobjects/{sobject}/{ext_field}`` in chunks of 200; ``created`` tells insert/update."""
        path = f"composite/sobjects/{api_name(sobject)}/{api_name(ext_field, 'field')}"
        _check_all_or_none(len(records), all_or_none)
        results: list[RecordResult] = []
        for offset, chunk in _chunks(records, COLLECTION_MAX):
            body = {"allOrNone": all_or_none, "records": [_typed(sobject, r) for r in chunk]}
            data = await self._json("PATCH", path, json=body)
            results += _results(data, offset, None)
        return results

    async def delete_many(self, ids: Sequence[str], *, all_or_none: bool = False) -> list[RecordResult]:
        """``DELETE /composite/sobjects?ids=...&allOrNone=`` in chunks of 200 → one result per id."""
        _check_all_or_none(len(ids), all_or_none)
        results: list[RecordResult] = []
        for offset, chunk in _chunks(ids, COLLECTION_MAX):
            params = {"ids": ",".join(chunk), "allOrNone": "true" if all_or_none else "false"}
            data = await self._json("DELETE", "composite/sobjects", params=params)
            results += _results(data, offset, False)
        return results

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
