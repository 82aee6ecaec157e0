"""The REST API's per-record and org-level resources: ``/`` (resources), ``/limits``, ``/sobjects``.

=====================================================  ===============================================
``GET /``                                              the resources of this API version
``GET /limits``, ``/limits/recordCount``               org limits (``DailyApiRequests`` is the real usage),
                                                       record counts per object
``GET /sobjects``, ``/sobjects/{type}[/describe]``     describeGlobal, sObject basic info, describe
                                                       (If-Modified-Since -> 304; ETag, Last-Modified)
``POST /sobjects/{type}``                              create (201 with ``Location``)
``GET|PATCH|DELETE /sobjects/{type}/{id}``             retrieve (``?fields=``), update (204), delete (204)
``POST /sobjects/{type}/Id``                           upsert on Id without a value: always an insert
``PATCH|POST /sobjects/{type}/{field}/{value}``        upsert by external id: 201 created; updated 200
                                                       with a body from v46.0, 204 before
``GET|DELETE /sobjects/{type}/{field}/{value}``        retrieve / delete by external id
``GET /sobjects/{type}/updated|deleted``               getUpdated / getDeleted (``?start=&end=``)
=====================================================  ===============================================

A segment after ``/sobjects/{type}/`` that is no record id is read as an external id field without a
value (404 NOT_FOUND). Several records matching an external id answer 300 with their URLs. A write
fails with UNABLE_TO_LOCK_ROW or, in a trigger, CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY when the record
faults say so (:func:`sfsync.emulator.rest_routing.faulty_write`). Other errors are the store's
(:mod:`sfsync.emulator.store`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from sfsync.emulator.describe import describe_global, describe_sobject
from sfsync.emulator.errors import ApiError, MultipleMatches, not_found
from sfsync.emulator.model import ObjectDef, Row, format_datetime, json_row, parse_datetime
from sfsync.emulator.rest_routing import (
    ID_RE,
    Req,
    Resp,
    Router,
    ServedOrg,
    faulty_write,
    object_named,
    upsert_event,
    upsert_target,
)


def record_json(obj: ObjectDef, row: Row, version: str, fields: list[str] | None = None) -> dict[str, Any]:
    """A record as the REST API returns it: ``attributes`` (type, url) and every field, or only ``fields``
    (INVALID_FIELD for an unknown one)."""
    out: dict[str, Any] = {
        "attributes": {"type": obj.name, "url": f"/services/data/v{version}/sobjects/{obj.name}/{row['Id']}"}
    }
    if fields is None:  # the object's fields (a removed one's value stays in the row, unseen)
        out.update(json_row({k: v for k, v in row.items() if k.lower() in obj.fields}))
        return out
    for name in fields:
        definition = obj.field(name)
        if definition is None:
            raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
        value = row.get(definition.name)
        out[definition.name] = json_row({"v": value})["v"]
    return out


def _values(req: Req) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from the request body")
    return {k: v for k, v in body.items() if k != "attributes"}


def _fields(req: Req) -> list[str] | None:
    return [f for f in req.query.get("fields", "").split(",") if f] or None


def _window(req: Req) -> tuple[dt.datetime, dt.datetime]:
    try:
        return parse_datetime(req.query["start"]), parse_datetime(req.query["end"])
    except (KeyError, ValueError):
        raise ApiError(
            400,
            "INVALID_REPLICATION_DATE",
            "start and end are required ISO-8601 datetimes (e.g. 2026-11-25T10:00:00+00:00)",
        ) from None


class SObjectsApi:
    """Handlers of the resources above."""

    def __init__(self, org: ServedOrg) -> None:
        self._org = org

    def install(self, router: Router) -> None:
        """Register the handlers on ``router``."""
        r = router.route
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

    def _object(self, req: Req) -> ObjectDef:
        return object_named(self._org.store.schema, req.params["sobject"])

    # ------------------------------------------------------------------ resources & limits
    def resources(self, req: Req) -> Resp:
        base = f"/services/data/v{req.version}"
        names = ("sobjects", "query", "queryAll", "search", "parameterizedSearch", "composite", "limits", "jobs")
        return Resp(200, {name: f"{base}/{name}" for name in names})

    def limits(self, req: Req) -> Resp:
        def pair(maximum: int, remaining: int | None = None) -> dict[str, int]:
            return {"Max": maximum, "Remaining": maximum if remaining is None else remaining}

        usage = self._org.usage
        return Resp(
            200,
            {
                "ConcurrentAsyncGetReportInstances": pair(200),
                "ConcurrentSyncReportRuns": pair(20),
                "DailyApiRequests": pair(usage.daily_limit, max(usage.daily_limit - usage.api_calls, 0)),
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
        store = self._org.store
        wanted = [s for s in req.query.get("sObjects", "").split(",") if s]
        names = wanted or [o.name for o in store.schema]
        counts = []
        for name in names:
            obj = store.schema.get(name)
            if obj is not None:
                counts.append({"count": sum(1 for _ in store.rows(obj.name)), "name": obj.name})
        return Resp(200, {"sObjects": counts})

    # ------------------------------------------------------------------ describe
    def _conditional(self, req: Req, make: Callable[[], Any]) -> Resp:
        """Describe results honour If-Modified-Since with 304, ETag and Last-Modified, as Salesforce does."""
        modified = self._org.metadata_modified
        headers = {"ETag": f'"{modified & 0xFFFFFFFF:08x}"', "Last-Modified": formatdate(modified, usegmt=True)}
        since = req.headers.get("if-modified-since")
        if since:
            try:
                if parsedate_to_datetime(since).timestamp() >= modified:
                    return Resp(304, None, headers)
            except (TypeError, ValueError):
                pass
        return Resp(200, make(), headers)

    def describe_global(self, req: Req) -> Resp:
        return self._conditional(req, lambda: describe_global(self._org.store.schema, req.version))

    def describe(self, req: Req) -> Resp:
        obj = self._object(req)
        return self._conditional(req, lambda: describe_sobject(obj, req.version))

    def sobject_info(self, req: Req) -> Resp:
        obj = self._object(req)
        described = describe_global(self._org.store.schema, req.version)["sobjects"]
        entry = next(s for s in described if s["name"] == obj.name)
        return Resp(200, {"objectDescribe": entry, "recentItems": []})

    # ------------------------------------------------------------------ records
    def create(self, req: Req) -> Resp:
        obj = self._object(req)
        values = _values(req)
        record_id = faulty_write(
            self._org,
            req,
            obj.name,
            lambda: values,
            lambda: self._org.store.create(obj.name, values, user_id=req.user_id),
            lambda _id: "AfterInsert",
        )
        return Resp(
            201,
            {"id": record_id, "success": True, "errors": []},
            {"Location": f"/services/data/v{req.version}/sobjects/{obj.name}/{record_id}"},
        )

    def retrieve(self, req: Req) -> Resp:
        obj = self._object(req)
        row = self._org.store.get(obj.name, req.params["id"])
        if row is None:
            raise not_found()
        return Resp(200, record_json(obj, row, req.version, _fields(req)))

    def update(self, req: Req) -> Resp:
        obj = self._object(req)
        values = _values(req)
        store, record_id = self._org.store, req.params["id"]
        faulty_write(
            self._org,
            req,
            obj.name,
            lambda: {**(store.get(obj.name, record_id) or {}), **values},
            lambda: store.update(obj.name, record_id, values, user_id=req.user_id),
            lambda _none: "AfterUpdate",
        )
        return Resp(204)

    def delete(self, req: Req) -> Resp:
        obj = self._object(req)
        self._delete(req, obj, req.params["id"])
        return Resp(204)

    def _delete(self, req: Req, obj: ObjectDef, record_id: str) -> None:
        store = self._org.store
        faulty_write(
            self._org,
            req,
            obj.name,
            lambda: store.get(obj.name, record_id) or {},
            lambda: store.delete(obj.name, record_id, user_id=req.user_id),
            lambda _none: "AfterDelete",
        )

    def upsert(self, req: Req) -> Resp:
        obj = self._object(req)
        values = _values(req)
        field_name, value = req.params["field"], req.params["value"]
        try:
            record_id, created = faulty_write(
                self._org,
                req,
                obj.name,
                lambda: {**upsert_target(self._org.store, obj, field_name, value), **values, field_name: value},
                lambda: self._org.store.upsert(obj.name, field_name, value, values, user_id=req.user_id),
                upsert_event,
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
        store = self._org.store
        matches = store.match_external_id(obj.name, field_name, value)
        if len(matches) > 1:
            definition = obj.field(field_name)
            raise MultipleMatches(obj.name, definition.name if definition else field_name, matches)
        row = store.get(obj.name, matches[0]) if matches else None
        if row is None:
            raise not_found()
        return dict(row)

    def retrieve_by_external_id(self, req: Req) -> Resp:
        obj = self._object(req)
        try:
            row = self._by_external_id(obj, req.params["field"], req.params["value"])
        except MultipleMatches as exc:
            return Resp(300, exc.urls(req.version))
        return Resp(200, record_json(obj, row, req.version, _fields(req)))

    def delete_by_external_id(self, req: Req) -> Resp:
        obj = self._object(req)
        try:
            row = self._by_external_id(obj, req.params["field"], req.params["value"])
        except MultipleMatches as exc:
            return Resp(300, exc.urls(req.version))
        self._delete(req, obj, row["Id"])
        return Resp(204)

    def create_by_null_id(self, req: Req) -> Resp:
        """``POST /sobjects/{type}/Id``: an upsert on Id with no value, which always inserts (v37.0+)."""
        obj = self._object(req)
        values = _values(req)
        record_id, _ = faulty_write(
            self._org,
            req,
            obj.name,
            lambda: values,
            lambda: self._org.store.upsert(obj.name, "Id", None, values, user_id=req.user_id),
            upsert_event,
        )
        return Resp(201, {"id": record_id, "success": True, "errors": [], "created": True})

    def not_an_id(self, req: Req) -> Resp:
        """``/sobjects/{type}/{segment}`` where the segment is no record id: Salesforce reads it as an external
        id field name with no value."""
        self._object(req)
        raise ApiError(
            404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {req.params['field']}"
        )

    # ------------------------------------------------------------------ replication
    def get_updated(self, req: Req) -> Resp:
        obj = self._object(req)
        start, end = _window(req)
        ids, latest = self._org.store.updated_ids(obj.name, start, end)
        return Resp(200, {"ids": ids, "latestDateCovered": format_datetime(latest)})

    def get_deleted(self, req: Req) -> Resp:
        obj = self._object(req)
        start, end = _window(req)
        records, earliest, latest = self._org.store.deleted(obj.name, start, end)
        return Resp(
            200,
            {
                "deletedRecords": [{"id": r["id"], "deletedDate": format_datetime(r["deletedDate"])} for r in records],
                "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(latest),
            },
        )
