"""One sObject at a time: describes (cached), single-record CRUD and upsert, the replication feeds.

Every call goes through :meth:`SalesforceClient.request <sfsync.salesforce.client.SalesforceClient.request>`,
once, so it raises only :mod:`sfsync.salesforce.errors` kinds: :class:`SalesforceRetriableError`
for a transient fault (the caller decides whether and when to try again),
:class:`SalesforceRecordError` when this record's data is refused (skippable),
:class:`SalesforceFatalError` (incl. :class:`MetadataError`, :class:`UnexpectedResponse`) otherwise.
Nothing is resent: a :meth:`SObjectsApi.create` (POST) that failed with a 5xx or a read timeout may
have been committed, so a caller looks for the record before creating it again. Object and field
names that are not API names raise :class:`ValueError` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from sfsync.salesforce.errors import (
    MetadataError,
    MultipleMatches,
    SalesforceRecordError,
    UnexpectedResponse,
    parse_error_body,
)
from sfsync.salesforce.rest import ApiModel, Record, RestCaller, api_name, parse_model


class SObjectSummary(ApiModel):
    """One sObject of describeGlobal."""

    name: str
    label: str
    key_prefix: str | None = None
    custom: bool = False
    createable: bool = False
    updateable: bool = False
    deletable: bool = False
    queryable: bool = False
    replicateable: bool = False
    searchable: bool = False


class DescribeGlobal(ApiModel):
    """``GET /sobjects``."""

    encoding: str = "UTF-8"
    max_batch_size: int = 200
    sobjects: list[SObjectSummary]


class PicklistValue(ApiModel):
    value: str
    label: str | None = None
    active: bool = True
    default_value: bool = False


class FieldDescribe(ApiModel):
    """One field of an sObject describe (the attributes a sync needs; others are dropped)."""

    name: str
    label: str
    type: str
    length: int = 0
    nillable: bool = True
    createable: bool = False
    updateable: bool = False
    defaulted_on_create: bool = False
    external_id: bool = False
    id_lookup: bool = False
    unique: bool = False
    calculated: bool = False
    restricted_picklist: bool = False
    picklist_values: list[PicklistValue] = []
    reference_to: list[str] = []
    relationship_name: str | None = None

    @property
    def required_on_create(self) -> bool:
        """What clients compute as "required": createable, not nillable, not defaulted."""
        return self.createable and not self.nillable and not self.defaulted_on_create


class RecordTypeInfo(ApiModel):
    record_type_id: str
    developer_name: str | None = None
    name: str
    master: bool = False
    active: bool = True
    available: bool = True
    default_record_type_mapping: bool = False


class SObjectDescribe(ApiModel):
    """``GET /sobjects/{name}/describe``."""

    name: str
    label: str
    key_prefix: str | None = None
    custom: bool = False
    createable: bool = False
    updateable: bool = False
    deletable: bool = False
    queryable: bool = False
    fields: list[FieldDescribe]
    record_type_infos: list[RecordTypeInfo] = []

    def field(self, name: str) -> FieldDescribe | None:
        """The field called ``name`` (case-insensitive, as Salesforce is)."""
        lowered = name.lower()
        return next((f for f in self.fields if f.name.lower() == lowered), None)


@dataclass(frozen=True)
class UpsertResult:
    """A single upsert: the record id (``None`` on API ≤ 45.0 updates) and whether it was created."""

    id: str | None
    created: bool


class UpdatedResult(ApiModel):
    """``GET /sobjects/{name}/updated``: ids changed in the window, and how far it was covered."""

    ids: list[str]
    latest_date_covered: datetime


class DeletedRecord(ApiModel):
    id: str
    deleted_date: datetime


class DeletedResult(ApiModel):
    """``GET /sobjects/{name}/deleted``; resync if ``earliest_date_available`` is after your start."""

    deleted_records: list[DeletedRecord]
    earliest_date_available: datetime | None = None
    latest_date_covered: datetime


@dataclass
class CachedBody:
    """One cached describe body, when it was fetched (client clock) and its ``Last-Modified``."""

    value: Any
    fetched_at: float
    last_modified: str | None


def _window(start: datetime, end: datetime) -> dict[str, str]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    fmt = "%Y-%m-%dT%H:%M:%S+00:00"
    return {"start": start.astimezone(UTC).strftime(fmt), "end": end.astimezone(UTC).strftime(fmt)}


class SObjectsApi(RestCaller):
    """The per-object calls of :class:`~sfsync.salesforce.client.SalesforceClient`."""

    _cache: dict[str, CachedBody]
    """Describe bodies by ``"global"`` / ``"describe:<object lower-cased>"``; the client starts it empty."""

    # -- describe (cached) -----------------------------------------------------------------------

    async def _cached_get(self, key: str, path: str, force: bool) -> Any:
        entry = self._cache.get(key)
        now = self._clock()
        if entry is not None and not force and now - entry.fetched_at < self.settings.describe_ttl_s:
            return entry.value
        headers = {"If-Modified-Since": entry.last_modified} if entry is not None and entry.last_modified else {}
        response = await self.request("GET", path, headers=headers, ok=(200, 304))
        if response.status_code == 304 and entry is not None:
            entry.fetched_at = now
            return entry.value
        try:
            value = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UnexpectedResponse(f"GET {path}: expected JSON", status=response.status_code) from exc
        self._cache[key] = CachedBody(value, now, response.headers.get("Last-Modified"))
        return value

    def invalidate(self, sobject: str | None = None) -> None:
        """Forget cached describes: one object's, or all (incl. describeGlobal) when ``None``. Sends nothing."""
        if sobject is None:
            self._cache.clear()
        else:
            self._cache.pop(f"describe:{sobject.lower()}", None)

    async def describe_global(self, *, refresh: bool = False) -> DescribeGlobal:
        """``GET /sobjects``, cached for ``describe_ttl_s``, then revalidated with ``If-Modified-Since``.

        ``refresh=True`` skips the fresh-cache shortcut (a 304 still reuses the cached body).
        """
        data = await self._cached_get("global", "sobjects", refresh)
        return parse_model(DescribeGlobal, data, "describeGlobal")

    async def describe(self, sobject: str, *, refresh: bool = False) -> SObjectDescribe:
        """``GET /sobjects/{sobject}/describe`` as a model (cached like :meth:`describe_global`).

        An unknown object raises :class:`MetadataError` (fatal, code ``NOT_FOUND``).
        """
        data = await self.describe_body(sobject, refresh=refresh)
        return parse_model(SObjectDescribe, data, f"describe {sobject}")

    async def describe_body(self, sobject: str, *, refresh: bool = False) -> dict[str, Any]:
        """The describe as Salesforce sent it (every attribute; same cache and errors as :meth:`describe`)."""
        try:
            data = await self._cached_get(
                f"describe:{sobject.lower()}", f"sobjects/{api_name(sobject)}/describe", refresh
            )
        except SalesforceRecordError as exc:
            if exc.error_code == "NOT_FOUND":
                raise MetadataError(f"unknown sObject {sobject}", error_code="NOT_FOUND", status=exc.status) from exc
            raise
        if not isinstance(data, dict):
            raise UnexpectedResponse(f"describe {sobject}: expected a JSON object")
        return data

    # -- single records -------------------------------------------------------------------------

    async def create(self, sobject: str, fields: Mapping[str, Any]) -> str:
        """``POST /sobjects/{sobject}/`` with ``fields`` as JSON → the new record id (expects 201).

        A refusal in the body raises its classified error; no id raises :class:`UnexpectedResponse`.
        """
        data = await self._json("POST", f"sobjects/{api_name(sobject)}/", json=dict(fields), ok=(201,))
        if not isinstance(data, dict) or not data.get("success") or not data.get("id"):
            errors = data.get("errors") if isinstance(data, dict) else None
            raise parse_error_body(400, errors) if errors else UnexpectedResponse("create: no id in the response")
        return str(data["id"])

    async def retrieve(self, sobject: str, record_id: str, *, fields: Sequence[str] | None = None) -> Record:
        """``GET /sobjects/{sobject}/{id}[?fields=...]`` → the record; a missing record raises (skippable) NOT_FOUND."""
        params = {"fields": ",".join(api_name(f, "field") for f in fields)} if fields else None
        data = await self._json("GET", f"sobjects/{api_name(sobject)}/{quote(record_id, safe='')}", params=params)
        if not isinstance(data, dict):
            raise UnexpectedResponse("retrieve: expected a JSON object")
        return data

    async def update(self, sobject: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """``PATCH /sobjects/{sobject}/{id}`` with ``fields`` as JSON (expects 200 or 204)."""
        await self.request(
            "PATCH", f"sobjects/{api_name(sobject)}/{quote(record_id, safe='')}", json=dict(fields), ok=(200, 204)
        )

    async def delete(self, sobject: str, record_id: str) -> None:
        """``DELETE /sobjects/{sobject}/{id}`` (expects 204)."""
        await self.request("DELETE", f"sobjects/{api_name(sobject)}/{quote(record_id, safe='')}", ok=(204,))

    async def upsert(self, sobject: str, ext_field: str, value: str, fields: Mapping[str, Any]) -> UpsertResult:
        """``PATCH /sobjects/{sobject}/{ext_field}/{value}`` with ``fields`` as JSON.

        201 → created, 200/204 → updated; 300 (several records have ``value``) raises
        :class:`MultipleMatches` (skippable) carrying the matching record URLs; a refusal in a
        200 body raises its classified error.
        """
        path = f"sobjects/{api_name(sobject)}/{api_name(ext_field, 'field')}/{quote(str(value), safe='')}"
        response = await self.request("PATCH", path, json=dict(fields), ok=(200, 201, 204, 300))
        if response.status_code == 204:
            return UpsertResult(id=None, created=False)
        data = orjson.loads(response.content) if response.content else None
        if response.status_code == 300:
            urls = [str(u) for u in data] if isinstance(data, list) else []
            raise MultipleMatches(f"{sobject}.{ext_field}={value!r} matches {len(urls)} records", urls=urls)
        if not isinstance(data, dict):
            raise UnexpectedResponse("upsert: expected a JSON object", status=response.status_code)
        if not data.get("success", True):
            raise parse_error_body(400, data.get("errors") or [])
        return UpsertResult(id=data.get("id"), created=bool(data.get("created", response.status_code == 201)))

    # -- replication ------------------------------------------------------------------------------

    async def get_updated(self, sobject: str, start: datetime, end: datetime) -> UpdatedResult:
        """``GET /sobjects/{sobject}/updated/?start=&end=`` (≤ 30 days back; minute granularity).

        ``start`` and ``end`` must be timezone-aware (:class:`ValueError` otherwise); they are sent in UTC.
        """
        data = await self._json("GET", f"sobjects/{api_name(sobject)}/updated/", params=_window(start, end))
        return parse_model(UpdatedResult, data, "getUpdated")

    async def get_deleted(self, sobject: str, start: datetime, end: datetime) -> DeletedResult:
        """``GET /sobjects/{sobject}/deleted/?start=&end=`` (≤ 15 days back; window as :meth:`get_updated`)."""
        data = await self._json("GET", f"sobjects/{api_name(sobject)}/deleted/", params=_window(start, end))
        return parse_model(DeletedResult, data, "getDeleted")
