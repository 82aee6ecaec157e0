"""The REST API's composite resources: sObject Collections (``/composite/sobjects``) and ``/composite``.

sObject Collections (up to 200 records a call, EXCEEDED_ID_LIMIT beyond):

=============================================================  =======================================
``POST /composite/sobjects``                                   create (``attributes.type`` per record)
``PATCH /composite/sobjects``                                  update (``Id`` per record)
``PATCH /composite/sobjects/{type}/{field}``                   upsert by external id (or Id)
``DELETE /composite/sobjects?ids=``                            delete
``GET|POST /composite/sobjects/{type}`` (``ids``, ``fields``)  retrieve (null for a missing record)
=============================================================  =======================================

They answer 200 with one SaveResult per record, in request order: ``{"id", "success", "errors"}``
(``created`` for upserts). A failed record has no ``id``, except a failed delete. With
``allOrNone`` the first failure rolls back every record of the call; the others then report
ALL_OR_NONE_OPERATION_ROLLED_BACK. Without it each record succeeds or fails alone. A record write
fails with UNABLE_TO_LOCK_ROW or, in a trigger, CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY when the record
faults say so (:func:`sfsync.emulator.rest_routing.faulty_write`).

``POST /composite`` runs up to 25 subrequests in order, through the same router as top-level calls;
the whole request is one API call, its subrequests are not counted. At most 5 of them may be sObject
Collections or query (``query``, ``queryAll``) subrequests; more, or more than 25 in all, and the
whole request is refused (400 LIMIT_EXCEEDED, nothing run). ``@{ref.field}`` / ``@{ref.records[0].Id}`` in a URL or body
refer to an earlier subrequest's result (INVALID_REFERENCE when there is none). With ``allOrNone``
the whole request is one transaction: the first failure (an error status, or a collection item that
failed) rolls everything back and the subrequests that had succeeded, and those not yet run, report
PROCESSING_HALTED; its collections run all-or-none too. Without it every subrequest is a transaction
of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from sfsync.emulator import ids
from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import ObjectDef
from sfsync.emulator.rest_routing import Req, Resp, Router, ServedOrg, faulty_write, object_named, upsert_target
from sfsync.emulator.rest_sobjects import record_json

COMPOSITE_MAX = 25
"""Subrequests per ``/composite`` request."""
COMPOSITE_COLLECTIONS_MAX = 5
"""sObject Collections or query subrequests per ``/composite`` request."""
_LIMITED_RE = re.compile(r"^/services/data/v\d+\.\d/(?:composite/sobjects|query|queryAll)(?:[/?]|$)")
"""The subrequest URLs that count toward :data:`COMPOSITE_COLLECTIONS_MAX`."""

REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")


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


def _collection_records(req: Req) -> tuple[list[dict[str, Any]], bool]:
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise ApiError(400, "JSON_PARSER_ERROR", "Expected an object with a records array")
    records = body["records"]
    if len(records) > 200:
        raise ApiError(
            400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
        )
    return records, bool(body.get("allOrNone", False))


class CompositeApi:
    """Handlers of the composite resources; ``/composite`` dispatches its subrequests on ``router``."""

    def __init__(self, org: ServedOrg, router: Router) -> None:
        self._org = org
        self._router = router

    def install(self, router: Router) -> None:
        """Register the handlers on ``router``."""
        r = router.route
        obj = r"(?P<sobject>\w+)"
        r("POST", "composite/sobjects", "composite/sobjects")(self.collection_create)
        r("PATCH", "composite/sobjects", "composite/sobjects")(self.collection_update)
        r("DELETE", "composite/sobjects", "composite/sobjects")(self.collection_delete)
        r("GET", f"composite/sobjects/{obj}", "composite/sobjects/{sobject}")(self.collection_retrieve)
        r("POST", f"composite/sobjects/{obj}", "composite/sobjects/{sobject}")(self.collection_retrieve)
        r("PATCH", rf"composite/sobjects/{obj}/(?P<field>\w+)", "composite/sobjects/{sobject}/{field}")(
            self.collection_upsert
        )
        r("POST", "composite", "composite", transaction=False)(self.composite)

    # ------------------------------------------------------------------ sObject Collections
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
        store = self._org.store
        snapshot = store.snapshot() if all_or_none else None
        results: list[dict[str, Any]] = []
        failed = False

        def failure(item: Any, error: dict[str, Any]) -> dict[str, Any]:
            record_id = failed_id(item)
            head = {"id": record_id} if record_id else {}
            return {**head, "success": False, "errors": [error]}

        for item in items:
            try:
                results.append({**write(item), "success": True, "errors": []})
            except ApiError as exc:
                failed = True
                error = {"statusCode": exc.error_code, "message": exc.message, "fields": exc.fields or []}
                results.append(failure(item, error))
        if failed and all_or_none and snapshot is not None:
            store.restore(snapshot)
            rolled = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the request was using "
                "AllOrNone header",
                "fields": [],
            }
            results = [r if not r["success"] else failure(item, rolled) for r, item in zip(results, items, strict=True)]
        return Resp(200, results)

    def collection_create(self, req: Req) -> Resp:
        records, all_or_none = _collection_records(req)

        def write(record: Any) -> dict[str, Any]:
            obj = self._collection_object(record)
            if any(k.lower() == "id" and v for k, v in record.items()):
                raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            values = {k: v for k, v in record.items() if k != "attributes"}
            return self._write(
                req,
                obj.name,
                lambda: values,
                lambda: {"id": self._org.store.create(obj.name, values, user_id=req.user_id)},
                lambda _result: "AfterInsert",
            )

        return self._run_collection(req, records, all_or_none, write)

    def collection_update(self, req: Req) -> Resp:
        records, all_or_none = _collection_records(req)

        def write(record: Any) -> dict[str, Any]:
            obj = self._collection_object(record)
            record_id = next((v for k, v in record.items() if k.lower() == "id"), None)
            if not record_id:
                raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            if not isinstance(record_id, str) or ids.try_normalize(record_id) is None:
                raise ApiError(
                    400, "MALFORMED_ID", f"{obj.label or obj.name} ID: id value of incorrect type: {record_id}", ["Id"]
                )
            values = {k: v for k, v in record.items() if k.lower() not in ("attributes", "id")}
            store = self._org.store

            def update() -> dict[str, Any]:
                store.update(obj.name, record_id, values, user_id=req.user_id)
                return {"id": ids.normalize(record_id)}

            return self._write(
                req,
                obj.name,
                lambda: {**(store.get(obj.name, record_id) or {}), **values},
                update,
                lambda _result: "AfterUpdate",
            )

        return self._run_collection(req, records, all_or_none, write)

    def collection_upsert(self, req: Req) -> Resp:
        obj = object_named(self._org.store.schema, req.params["sobject"])
        records, all_or_none = _collection_records(req)
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
            store = self._org.store

            def upsert() -> dict[str, Any]:
                record_id, created = store.upsert(obj.name, definition.name, str(value), values, user_id=req.user_id)
                return {"id": record_id, "created": created}

            return self._write(
                req,
                obj.name,
                lambda: {**upsert_target(store, obj, definition.name, value), **values, definition.name: value},
                upsert,
                lambda result: "AfterInsert" if result["created"] else "AfterUpdate",
            )

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
        record_ids = [i for i in req.query.get("ids", "").split(",") if i]
        if not record_ids:
            raise ApiError(400, "REQUIRED_FIELD_MISSING", "At least 1 Id is required.")
        if len(record_ids) > 200:
            raise ApiError(
                400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        all_or_none = req.query.get("allOrNone", "false").lower() == "true"

        def write(record_id: Any) -> dict[str, Any]:
            if ids.try_normalize(record_id) is None:
                raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}", [])
            found = self._org.store.row_by_id(record_id)
            if found is None:
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
            obj, row = found
            if row.get("IsDeleted"):
                raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [])

            def delete() -> dict[str, Any]:
                self._org.store.delete(obj.name, record_id, user_id=req.user_id)
                return {"id": ids.normalize(record_id)}

            return self._write(req, obj.name, lambda: row, delete, lambda _result: "AfterDelete")

        return self._run_collection(req, record_ids, all_or_none, write, failed_id=ids.try_normalize)

    def _write(
        self,
        req: Req,
        sobject: str,
        record: Callable[[], Mapping[str, Any]],
        write: Callable[[], dict[str, Any]],
        event: Callable[[dict[str, Any]], str],
    ) -> dict[str, Any]:
        """One record of a collection, written under the record faults."""
        return faulty_write(
            self._org,
            req,
            sobject,
            record,
            write,
            event,
            lock_message="unable to obtain exclusive access to this record or 1 records",
        )

    def collection_retrieve(self, req: Req) -> Resp:
        store = self._org.store
        obj = object_named(store.schema, req.params["sobject"])
        if req.method == "POST":
            body = req.json() or {}
            record_ids, fields = body.get("ids", []), body.get("fields", [])
        else:
            record_ids = [i for i in req.query.get("ids", "").split(",") if i]
            fields = [f for f in req.query.get("fields", "").split(",") if f]
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields not specified")
        out: list[Any] = []
        for record_id in record_ids:
            row = store.get(obj.name, record_id)
            out.append(None if row is None else record_json(obj, row, req.version, fields))
        return Resp(200, out)

    def _collection_object(self, record: Any) -> ObjectDef:
        if not isinstance(record, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be an object")
        kind = (record.get("attributes") or {}).get("type")
        if not kind:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        obj = self._org.store.schema.get(kind)
        if obj is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{kind}' is not supported.")
        return obj

    # ------------------------------------------------------------------ composite
    def composite(self, req: Req) -> Resp:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        subrequests = body["compositeRequest"]
        if len(subrequests) > COMPOSITE_MAX:
            raise ApiError(
                400, "LIMIT_EXCEEDED", f"Composite requests cannot have more than {COMPOSITE_MAX} subrequests"
            )
        limited = sum(1 for sub in subrequests if isinstance(sub, dict) and _LIMITED_RE.match(str(sub.get("url", ""))))
        if limited > COMPOSITE_COLLECTIONS_MAX:
            raise ApiError(
                400,
                "LIMIT_EXCEEDED",
                f"Composite requests cannot have more than {COMPOSITE_COLLECTIONS_MAX} sObject Collections or "
                f"query subrequests (this one has {limited})",
            )
        all_or_none = bool(body.get("allOrNone", False))
        if not all_or_none:  # each subrequest is a transaction of its own
            return self._composite(req, subrequests, all_or_none)
        with self._org.store.transaction(user_id=req.user_id):  # allOrNone: one transaction, one timestamp
            return self._composite(req, subrequests, all_or_none)

    def _composite(self, req: Req, subrequests: list[Any], all_or_none: bool) -> Resp:
        store = self._org.store
        snapshot = store.snapshot() if all_or_none else None
        results: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        halted = False
        for sub in subrequests:
            ref = str(sub.get("referenceId", ""))
            if halted:
                responses.append(_halted(ref))
                continue
            try:
                sub_resp = self._router.dispatch(self._subrequest(req, sub, results, all_or_none))
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
            store.restore(snapshot)
            responses = [
                r if r["httpStatusCode"] >= 400 or _collection_failed(r["body"]) else _halted(r["referenceId"])
                for r in responses
            ]
        return Resp(200, {"compositeResponse": responses})

    @staticmethod
    def _subrequest(req: Req, sub: Any, results: Mapping[str, Any], all_or_none: bool) -> Req:
        """The call one subrequest makes, its references resolved; INVALID_URL for a URL outside the REST API."""
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
        return Req(
            method=method,
            path=match.group(2).strip("/"),
            version=match.group(1),
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            body=orjson.dumps(sub_body) if sub_body is not None else b"",
            headers={**req.headers, **{k.lower(): v for k, v in (sub.get("httpHeaders") or {}).items()}},
            user_id=req.user_id,
            record_fault=req.record_fault,
        )
