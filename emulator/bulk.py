"""Bulk API 2.0 (ingest and query jobs) for the emulated org, framework-free.

The HTTP layer maps requests onto :class:`BulkService` methods and serializes what they return:

==========================================================  ==========================================
``POST   /jobs/ingest``                                      :meth:`BulkService.create_ingest_job` (200)
``PUT    /jobs/ingest/{id}/batches`` (``text/csv``)          :meth:`BulkService.upload_batch` (201, no body)
``PATCH  /jobs/ingest/{id}`` ``{"state": ...}``              :meth:`BulkService.patch_job` (200)
``GET    /jobs/ingest/{id}``                                 :meth:`BulkService.get_job`
``GET    /jobs/ingest``                                      :meth:`BulkService.list_jobs`
``DELETE /jobs/ingest/{id}``                                 :meth:`BulkService.delete_job` (204)
``GET    /jobs/ingest/{id}/successfulResults/``              :meth:`BulkService.successful_results` (CSV)
``GET    /jobs/ingest/{id}/failedResults/``                  :meth:`BulkService.failed_results` (CSV)
``GET    /jobs/ingest/{id}/unprocessedrecords/`` (any case)  :meth:`BulkService.unprocessed_records` (CSV)
``POST   /jobs/query``                                       :meth:`BulkService.create_query_job` (200)
``GET    /jobs/query/{id}``                                  :meth:`BulkService.get_query_job`
``GET    /jobs/query``                                       :meth:`BulkService.list_query_jobs`
``PATCH  /jobs/query/{id}`` ``{"state": "Aborted"}``         :meth:`BulkService.patch_query_job`
``DELETE /jobs/query/{id}``                                  :meth:`BulkService.delete_query_job` (204)
``GET    /jobs/query/{id}/results?locator=&maxRecords=``     :meth:`BulkService.query_results` (CSV; headers
                                                             ``Sforce-Locator``, ``Sforce-NumberOfRecords``)
==========================================================  ==========================================

Errors are raised as :class:`~sfsync.emulator.errors.ApiError`. Behaviour follows the Bulk API 2.0 Developer
Guide: job states ``Open -> UploadComplete -> InProgress -> JobComplete | Failed`` (or ``Aborted``), a
job can be deleted only in ``UploadComplete``, ``JobComplete``, ``Aborted`` or ``Failed``, result CSVs
carry ``sf__Id``/``sf__Created`` and ``sf__Id``/``sf__Error`` before the uploaded columns, an empty cell
leaves a field unset and ``#N/A`` sets it to null, and query results page by ``Sforce-Locator`` (the
literal ``null`` on the last page).

Processing: with ``process_delay=0`` (the default) an ingest job is processed synchronously when it is
closed (the PATCH still answers ``UploadComplete``, as Salesforce does; the next GET shows the outcome)
and a query job runs when it is created. With ``process_delay > 0`` a closed job shows ``UploadComplete``,
then ``InProgress`` after half the delay, and is processed when first observed after the full delay
(or by :meth:`BulkService.process_pending`); no threads are involved.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import itertools
import json
import math
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import NUMBER_TYPES, FieldDef, ObjectDef, Row, Schema, format_datetime, to_json_value

__all__ = [
    "COLUMN_DELIMITERS",
    "INGEST_OPERATIONS",
    "JOB_KEY_PREFIX",
    "LINE_ENDINGS",
    "QUERY_OPERATIONS",
    "BulkService",
    "BulkStore",
    "QueryPage",
    "QueryRunner",
    "format_row_error",
]

JOB_KEY_PREFIX = "750"
CHUNK_SIZE = 200  # records saved per transaction (one SystemModstamp each)
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
COLUMN_DELIMITERS: dict[str, str] = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
LINE_ENDINGS: dict[str, str] = {"LF": "\n", "CRLF": "\r\n"}
NULL_MARKER = "#N/A"

OPEN = "Open"
UPLOAD_COMPLETE = "UploadComplete"
IN_PROGRESS = "InProgress"
JOB_COMPLETE = "JobComplete"
FAILED = "Failed"
ABORTED = "Aborted"
ALL_STATES = (OPEN, UPLOAD_COMPLETE, IN_PROGRESS, JOB_COMPLETE, FAILED, ABORTED)
DELETABLE_STATES = frozenset({UPLOAD_COMPLETE, JOB_COMPLETE, ABORTED, FAILED})
FINISHED_STATES = frozenset({JOB_COMPLETE, FAILED, ABORTED})

NOT_FOUND_MESSAGE = "The requested resource does not exist"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_INT_TEXT = re.compile(r"[+-]?\d+")
_API_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?")

QueryRunner = Callable[[str, bool], list[dict[str, Any]]]
"""``(soql, include_deleted) -> records`` as the REST query endpoint would return them (``attributes``
optional; parent relationships nested as objects or flattened to ``"Account.Name"`` keys)."""


class BulkStore(Protocol):
    """The part of the org's data store Bulk ingest and its relationship lookups use."""

    schema: Schema

    def create(self, sobject: str, values: Mapping[str, Any], *, user_id: str | None = None) -> str: ...

    def update(
        self, sobject: str, record_id: str, values: Mapping[str, Any], *, user_id: str | None = None
    ) -> None: ...

    def upsert(
        self, sobject: str, ext_field: str, ext_value: Any, values: Mapping[str, Any], *, user_id: str | None = None
    ) -> tuple[str, bool]: ...

    def delete(self, sobject: str, record_id: str, *, user_id: str | None = None) -> None: ...

    def purge(self, record_id: str) -> None: ...

    def rows(self, sobject: str, *, include_deleted: bool = False) -> Iterable[Row]: ...

    def row_by_id(self, record_id: str) -> tuple[ObjectDef, Row] | None: ...


class QueryPage(NamedTuple):
    """One page of query results: the CSV, the ``Sforce-Locator`` value and ``Sforce-NumberOfRecords``."""

    body: bytes
    locator: str
    number_of_records: int


def format_row_error(error: ApiError) -> str:
    """A row error as Bulk API 2.0 writes it in ``sf__Error``: ``CODE:message:Field1,Field2 --``."""
    fields = ",".join(error.fields or [])
    return f"{error.error_code}:{error.message}:{fields + ' ' if fields else ''}--"


# --------------------------------------------------------------------------------------------- jobs


@dataclass
class _RowOutcome:
    record_id: str
    created: bool
    error: str | None  # sf__Error text, None on success
    cells: list[str]


@dataclass
class _Job:
    id: str
    kind: str  # "ingest" | "query"
    operation: str
    object: str
    created_by: str
    created_at: float
    modified_at: float
    api_version: float
    line_ending: str
    column_delimiter: str
    external_id_field: str | None = None
    state: str = OPEN
    query: str = ""
    closed_at: float | None = None
    error_message: str | None = None
    uploads: list[bytes] = field(default_factory=list)
    # ingest outcome
    header: list[str] = field(default_factory=list)
    outcomes: list[_RowOutcome] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    processed: int = 0
    failed: int = 0
    processing_ms: int = 0
    # query outcome
    columns: list[str] = field(default_factory=list)
    records: list[list[str]] = field(default_factory=list)


class _JobFailedError(Exception):
    """The whole job fails (bad header etc.); the message becomes JobInfo ``errorMessage``."""


# ------------------------------------------------------------------------------------------ service


class BulkService:
    """Bulk API 2.0 jobs over a :class:`BulkStore` and an injected SOQL runner."""

    def __init__(
        self,
        store: BulkStore,
        query_runner: QueryRunner,
        *,
        api_version_default: str,
        clock: Callable[[], float] = time.time,
        user_id: str,
        process_delay: float = 0.0,
        results_page_size: int = 50_000,
    ) -> None:
        self._store = store
        self._query_runner = query_runner
        self._api_version_default = api_version_default
        self._clock = clock
        self._user_id = user_id
        self._process_delay = process_delay
        self._results_page_size = results_page_size
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.RLock()
        self._serials = itertools.count(1)

    # ------------------------------------------------------------------------------ ingest: jobs

    def create_ingest_job(self, body: Mapping[str, Any], api_version: str | None = None) -> dict[str, Any]:
        """``POST /jobs/ingest``: a new ``Open`` job; answers its JobInfo."""
        body = _require_object(body)
        operation = _enum(body, "operation", INGEST_OPERATIONS, "OperationEnum", required=True)
        _enum(body, "contentType", ("CSV",), "ContentType", default="CSV")  # CSV is the only format
        delimiter = _enum(body, "columnDelimiter", tuple(COLUMN_DELIMITERS), "ColumnDelimiterEnum", default="COMMA")
        line_ending = _enum(body, "lineEnding", tuple(LINE_ENDINGS), "LineEndingEnum", default="LF")
        object_name = body.get("object")
        if not isinstance(object_name, str) or not object_name.strip():
            raise ApiError(400, "INVALIDJOB", "Object name is required")
        obj = self._store.schema.get(object_name.strip())
        if obj is None:
            raise ApiError(400, "INVALIDJOB", f"Unable to find object: {object_name}")
        external_id: str | None = None
        if operation == "upsert":
            raw_ext = body.get("externalIdFieldName")
            if not isinstance(raw_ext, str) or not raw_ext.strip():
                raise ApiError(
                    400,
                    "INVALIDJOB",
                    f"External ID was blank for {obj.name}. An External ID must be specified for upsert.",
                )
            ext_field = obj.field(raw_ext.strip())
            if ext_field is None or not (ext_field.external_id or ext_field.id_lookup or ext_field.type == "id"):
                raise ApiError(
                    400,
                    "INVALIDJOB",
                    f"Field name provided, {raw_ext} does not match an External ID, Salesforce Id, "
                    f"or indexed field for {obj.name}",
                )
            external_id = ext_field.name
        with self._lock:
            job = self._new_job("ingest", operation, obj.name, api_version, line_ending, delimiter)
            job.external_id_field = external_id
            return self._ingest_info(job, detailed=False)

    def upload_batch(self, job_id: str, csv_bytes: bytes) -> None:
        """``PUT /jobs/ingest/{id}/batches``: append CSV data (with its header row); the app answers 201."""
        with self._lock:
            job = self._ingest_job(job_id)
            if job.state != OPEN:
                raise ApiError(400, "INVALIDJOBSTATE", f"Job is not in state {OPEN}")
            job.uploads.append(bytes(csv_bytes))
            job.modified_at = self._clock()

    def patch_job(self, job_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /jobs/ingest/{id}``: ``UploadComplete`` closes an ``Open`` job, ``Aborted`` cancels it."""
        body = _require_object(body)
        target = _enum(body, "state", ALL_STATES, "JobStateEnum", required=True)
        with self._lock:
            job = self._ingest_job(job_id)
            self._advance(job)
            if target == UPLOAD_COMPLETE and job.state == OPEN:
                job.state = UPLOAD_COMPLETE
                job.closed_at = job.modified_at = self._clock()
                answer = self._ingest_info(job, detailed=False)
                if self._process_delay <= 0:
                    self._process_ingest(job)
                return answer
            if target == ABORTED and job.state in (OPEN, UPLOAD_COMPLETE, IN_PROGRESS):
                self._abort(job)
                return self._ingest_info(job, detailed=False)
            raise ApiError(
                400, "INVALIDJOBSTATE", f"Cannot change the state of job {job.id} from {job.state} to {target}"
            )

    def get_job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/ingest/{id}``: the full JobInfo with counters and timings."""
        with self._lock:
            job = self._ingest_job(job_id)
            self._advance(job)
            return self._ingest_info(job, detailed=True)

    def list_jobs(self) -> dict[str, Any]:
        """``GET /jobs/ingest``: ``{"done": true, "records": [JobInfo...], "nextRecordsUrl": null}``."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.kind == "ingest"]
            for job in jobs:
                self._advance(job)
            records = [self._list_entry(job) for job in jobs]
        return {"done": True, "records": records, "nextRecordsUrl": None}

    def delete_job(self, job_id: str) -> None:
        """``DELETE /jobs/ingest/{id}`` (the app answers 204): only in UploadComplete/JobComplete/Aborted/Failed."""
        with self._lock:
            job = self._ingest_job(job_id)
            self._advance(job)
            self._delete(job)

    # ---------------------------------------------------------------------------- ingest: results

    def successful_results(self, job_id: str) -> bytes:
        """``GET .../successfulResults/``: ``"sf__Id","sf__Created",<uploaded columns>``."""
        with self._lock:
            job = self._finished_ingest_job(job_id)
            rows = [
                [_quote_all(o.record_id), _quote_all("true" if o.created else "false"), *o.cells]
                for o in job.outcomes
                if o.error is None
            ]
            return self._result_csv(job, ("sf__Id", "sf__Created"), rows)

    def failed_results(self, job_id: str) -> bytes:
        """``GET .../failedResults/``: ``"sf__Id","sf__Error",<uploaded columns>``."""
        with self._lock:
            job = self._finished_ingest_job(job_id)
            rows = [
                [_quote_all(o.record_id), _quote_all(o.error), *o.cells] for o in job.outcomes if o.error is not None
            ]
            return self._result_csv(job, ("sf__Id", "sf__Error"), rows)

    def unprocessed_records(self, job_id: str) -> bytes:
        """``GET .../unprocessedrecords/``: uploaded rows never processed (aborted or failed jobs)."""
        with self._lock:
            job = self._finished_ingest_job(job_id)
            if job.state == ABORTED and not job.header:
                try:
                    job.header, job.unprocessed = _parse_uploads(job)
                except _JobFailedError:
                    job.header, job.unprocessed = [], []
            return self._result_csv(job, (), [[_quote_min(c, job) for c in cells] for cells in job.unprocessed])

    # ------------------------------------------------------------------------------------- query

    def create_query_job(self, body: Mapping[str, Any], api_version: str | None = None) -> dict[str, Any]:
        """``POST /jobs/query``: run ``query`` (``queryAll`` includes deleted rows); answers ``UploadComplete``."""
        body = _require_object(body)
        operation = _enum(body, "operation", QUERY_OPERATIONS, "OperationEnum", required=True)
        delimiter = _enum(body, "columnDelimiter", tuple(COLUMN_DELIMITERS), "ColumnDelimiterEnum", default="COMMA")
        line_ending = _enum(body, "lineEnding", tuple(LINE_ENDINGS), "LineEndingEnum", default="LF")
        _enum(body, "contentType", ("CSV",), "ContentType", default="CSV")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise ApiError(400, "API_ERROR", "Query is required")
        records = self._query_runner(soql, operation == "queryAll")  # ApiError (bad SOQL) propagates
        items, object_name = _parse_select(soql)
        obj = self._store.schema.get(object_name)
        columns = [_column_name(self._store.schema, obj, item) for item in items]
        with self._lock:
            job = self._new_job(
                "query", operation, obj.name if obj else object_name, api_version, line_ending, delimiter
            )
            job.query = soql
            job.state = UPLOAD_COMPLETE
            job.closed_at = job.created_at
            answer = self._query_info(job, detailed=False)
            job.columns = columns
            job.records = [[_cell(_lookup(record, item)) for item in items] for record in records]
            if self._process_delay <= 0:
                self._finish_query(job)
            return answer

    def get_query_job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/query/{id}``."""
        with self._lock:
            job = self._query_job(job_id)
            self._advance(job)
            return self._query_info(job, detailed=True)

    def list_query_jobs(self) -> dict[str, Any]:
        """``GET /jobs/query``: ``{"done": true, "records": [JobInfo...], "nextRecordsUrl": null}``."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.kind == "query"]
            for job in jobs:
                self._advance(job)
            records = [self._list_entry(job) for job in jobs]
        return {"done": True, "records": records, "nextRecordsUrl": None}

    def patch_query_job(self, job_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /jobs/query/{id}`` with ``{"state": "Aborted"}`` (the only change a query job accepts)."""
        body = _require_object(body)
        target = _enum(body, "state", ALL_STATES, "JobStateEnum", required=True)
        with self._lock:
            job = self._query_job(job_id)
            self._advance(job)
            if target == ABORTED and job.state in (UPLOAD_COMPLETE, IN_PROGRESS):
                self._abort(job)
                return self._query_info(job, detailed=False)
            raise ApiError(
                400, "INVALIDJOBSTATE", f"Cannot change the state of job {job.id} from {job.state} to {target}"
            )

    def delete_query_job(self, job_id: str) -> None:
        """``DELETE /jobs/query/{id}`` (the app answers 204)."""
        with self._lock:
            job = self._query_job(job_id)
            self._advance(job)
            self._delete(job)

    def query_results(self, job_id: str, locator: str | None = None, max_records: int | None = None) -> QueryPage:
        """``GET /jobs/query/{id}/results``: one page of CSV, the next locator (``"null"`` at the end) and its size."""
        with self._lock:
            job = self._query_job(job_id)
            self._advance(job)
            if job.state != JOB_COMPLETE:
                raise ApiError(400, "API_ERROR", f"Job is not in state {JOB_COMPLETE}: current state {job.state}")
            if max_records is not None and max_records <= 0:
                raise ApiError(400, "API_ERROR", f"Invalid value for maxRecords: {max_records}")
            start = 0 if locator in (None, "", "null") else _decode_locator(locator, len(job.records))
            size = max_records if max_records is not None else self._results_page_size
            page = job.records[start : start + size]
            end = start + len(page)
            next_locator = _encode_locator(end) if end < len(job.records) else "null"
            header = [_quote_all(c) for c in job.columns]
            rows = [[_quote_all(v) for v in values] for values in page]
            return QueryPage(_join_csv(job, [header, *rows]), next_locator, len(page))

    # ---------------------------------------------------------------------------------- processing

    def process_pending(self) -> None:
        """Finish every closed job whose processing delay has passed (for a background tick or a test)."""
        with self._lock:
            for job in list(self._jobs.values()):
                self._advance(job)

    def _advance(self, job: _Job) -> None:
        """Move a closed job along its timer: UploadComplete -> InProgress -> processed."""
        if job.state not in (UPLOAD_COMPLETE, IN_PROGRESS) or job.closed_at is None:
            return
        elapsed = self._clock() - job.closed_at
        if elapsed >= self._process_delay:
            if job.kind == "ingest":
                self._process_ingest(job)
            else:
                self._finish_query(job)
        elif elapsed >= self._process_delay / 2 and job.state == UPLOAD_COMPLETE:
            job.state = IN_PROGRESS
            job.modified_at = self._clock()

    def _finish_query(self, job: _Job) -> None:
        job.state = JOB_COMPLETE
        job.processed = len(job.records)
        job.modified_at = self._clock()
        job.processing_ms = max(0, int((job.modified_at - job.created_at) * 1000))

    def _process_ingest(self, job: _Job) -> None:
        started = self._clock()
        job.state = IN_PROGRESS
        try:
            job.header, rows = _parse_uploads(job)
        except _JobFailedError as failure:
            self._fail(job, str(failure), [])
            return
        try:
            columns = self._resolve_header(job, job.header) if job.header else []
        except _JobFailedError as failure:
            self._fail(job, str(failure), rows)
            return
        lookups: dict[tuple[str, str], dict[str, list[str]]] = {}
        for start in range(0, len(rows), CHUNK_SIZE):
            with self._transaction():  # Salesforce saves a batch in chunks of 200 records, one transaction each
                for cells in rows[start : start + CHUNK_SIZE]:
                    outcome = self._process_row(job, columns, cells, lookups)
                    job.outcomes.append(outcome)
                    job.processed += 1
                    if outcome.error is not None:
                        job.failed += 1
        job.state = JOB_COMPLETE
        job.modified_at = self._clock()
        job.processing_ms = max(0, int((job.modified_at - started) * 1000))

    def _transaction(self) -> AbstractContextManager[Any]:
        """The store's transaction for one chunk (a store without transactions: none)."""
        begin = getattr(self._store, "transaction", None)
        return begin(user_id=self._user_id) if begin is not None else nullcontext()

    def _fail(self, job: _Job, message: str, unprocessed: list[list[str]]) -> None:
        job.state = FAILED
        job.error_message = message
        job.unprocessed = unprocessed
        job.modified_at = self._clock()

    def _resolve_header(self, job: _Job, header: list[str]) -> list[_Column]:
        obj = self._store.schema.get(job.object)
        if obj is None:  # the object vanished from the schema after the job was created
            raise _JobFailedError(f"InvalidJob : Unable to find object: {job.object}")
        seen: set[str] = set()
        columns: list[_Column] = []
        for name in header:
            if not name:
                raise _JobFailedError("InvalidBatch : Field name not found : ")
            if name.lower() in seen:
                raise _JobFailedError(f"InvalidBatch : Duplicate field name: {name}")
            seen.add(name.lower())
            column = _resolve_column(self._store.schema, obj, name)
            if column is None:
                raise _JobFailedError(f"InvalidBatch : Field name not found : {name}")
            columns.append(column)
        if job.operation in ("update", "delete", "hardDelete") and not any(
            c.field is not None and c.field.name.lower() == "id" and c.target is None for c in columns
        ):
            raise _JobFailedError("InvalidBatch : Field name not found : Id")
        return columns

    def _process_row(
        self,
        job: _Job,
        columns: list[_Column],
        cells: list[str],
        lookups: dict[tuple[str, str], dict[str, list[str]]],
    ) -> _RowOutcome:
        echoed = [_quote_min(cells[i] if i < len(cells) else "", job) for i in range(len(columns))]
        id_text = next((cells[i].strip() for i, c in enumerate(columns) if c.is_id and i < len(cells)), "")
        try:
            if len(cells) != len(columns):
                raise ApiError(
                    400, "INVALID_FIELD", f"Wrong number of columns: expected {len(columns)}, found {len(cells)}"
                )
            values: dict[str, Any] = {}
            for column, text in zip(columns, cells, strict=True):
                if column.is_id or text == "":
                    continue  # the Id addresses the row; an empty cell leaves the field unset
                if column.target is not None:
                    values[column.field_name] = self._resolve_reference(column, text, lookups)
                else:
                    values[column.field_name] = _convert(column, text)
            record_id, created = self._apply(job, values, id_text)
        except ApiError as error:
            return _RowOutcome(id_text if job.operation != "insert" else "", False, format_row_error(error), echoed)
        return _RowOutcome(record_id, created, None, echoed)

    def _apply(self, job: _Job, values: dict[str, Any], id_text: str) -> tuple[str, bool]:
        """Write one row through the store; answers (sf__Id, sf__Created)."""
        store, sobject, user = self._store, job.object, self._user_id
        operation = job.operation
        if operation == "insert":
            if id_text:
                raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            new_id = store.create(sobject, values, user_id=user)
            return new_id, True
        if operation == "upsert":
            ext = job.external_id_field or "Id"
            if ext.lower() == "id":
                ext_value: Any = id_text
            else:
                ext_value = values.pop(ext, None)
            if ext_value in (None, ""):
                raise ApiError(400, "MISSING_ARGUMENT", f"{ext} not specified", [ext])
            upsert_id, created = store.upsert(sobject, ext, ext_value, values, user_id=user)
            return upsert_id, created
        if not id_text:
            raise ApiError(400, "MISSING_ARGUMENT", f"Id not specified in an {operation} call", ["Id"])
        canonical = self._canonical_id(id_text)
        if operation == "update":
            store.update(sobject, canonical, values, user_id=user)
            return canonical, False
        if operation == "delete":
            store.delete(sobject, canonical, user_id=user)
            return canonical, False
        try:  # hardDelete: delete (cascades, triggers) then empty the recycle bin for the row
            store.delete(sobject, canonical, user_id=user)
        except ApiError as error:
            if error.error_code != "ENTITY_IS_DELETED":
                raise
        store.purge(canonical)
        return canonical, False

    def _canonical_id(self, id_text: str) -> str:
        found = self._store.row_by_id(id_text)
        if found is not None:
            canonical = found[1].get("Id")
            if isinstance(canonical, str):
                return canonical
        return id_text

    def _resolve_reference(
        self, column: _Column, text: str, lookups: dict[tuple[str, str], dict[str, list[str]]]
    ) -> Any:
        if text == NULL_MARKER:
            return None
        assert column.target is not None
        assert column.target_field is not None
        target, target_field = column.target, column.target_field
        key = text if target_field.case_sensitive else text.casefold()
        cache_key = (target.name, target_field.name)
        for attempt in range(2):
            index = lookups.get(cache_key)
            if index is None or attempt:
                index = {}
                for row in self._store.rows(target.name):
                    value = row.get(target_field.name)
                    if value is None or not isinstance(row.get("Id"), str):
                        continue
                    text_value = _cell(to_json_value(value))
                    index.setdefault(text_value if target_field.case_sensitive else text_value.casefold(), []).append(
                        row["Id"]
                    )
                lookups[cache_key] = index
            matches = index.get(key)
            if matches:
                if len(matches) > 1:
                    raise ApiError(
                        400,
                        "DUPLICATE_EXTERNAL_ID",
                        f"{target_field.name}: more than one record found for external id field: {matches}",
                        [column.field_name],
                    )
                return matches[0]
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"Foreign key external ID: {text} not found for field {target_field.name} in entity {target.name}",
            [column.field_name],
        )

    # ---------------------------------------------------------------------------------- job helpers

    def _new_job(
        self, kind: str, operation: str, object_name: str, api_version: str | None, line_ending: str, delimiter: str
    ) -> _Job:
        now = self._clock()
        job = _Job(
            id=_mint_job_id(next(self._serials)),
            kind=kind,
            operation=operation,
            object=object_name,
            created_by=self._user_id,
            created_at=now,
            modified_at=now,
            api_version=_api_version_number(api_version or self._api_version_default),
            line_ending=line_ending,
            column_delimiter=delimiter,
        )
        self._jobs[job.id] = job
        return job

    def _find(self, job_id: str, kind: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None and len(job_id) == 15:
            job = next((j for j in self._jobs.values() if j.id[:15] == job_id), None)
        if job is None or job.kind != kind:
            raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
        return job

    def _ingest_job(self, job_id: str) -> _Job:
        return self._find(job_id, "ingest")

    def _query_job(self, job_id: str) -> _Job:
        return self._find(job_id, "query")

    def _finished_ingest_job(self, job_id: str) -> _Job:
        job = self._ingest_job(job_id)
        self._advance(job)
        if job.state not in FINISHED_STATES:
            raise ApiError(
                400, "API_ERROR", f"Job {job.id} is not complete: results are not available in state {job.state}"
            )
        return job

    def _abort(self, job: _Job) -> None:
        job.state = ABORTED
        job.modified_at = self._clock()

    def _delete(self, job: _Job) -> None:
        if job.state not in DELETABLE_STATES:
            raise ApiError(
                400,
                "INVALIDJOBSTATE",
                f"Job {job.id} can't be deleted in state {job.state}: it must be UploadComplete, JobComplete, "
                "Aborted or Failed",
            )
        del self._jobs[job.id]

    def _base_info(self, job: _Job) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": job.id,
            "operation": job.operation,
            "object": job.object,
            "createdById": job.created_by,
            "createdDate": _timestamp(job.created_at),
            "systemModstamp": _timestamp(job.modified_at),
            "state": job.state,
        }
        if job.external_id_field is not None:
            info["externalIdFieldName"] = job.external_id_field
        info.update({"concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": job.api_version})
        return info

    def _content_url(self, job: _Job) -> str:
        return f"services/data/v{job.api_version:.1f}/jobs/ingest/{job.id}/batches"

    def _ingest_info(self, job: _Job, *, detailed: bool) -> dict[str, Any]:
        info = self._base_info(job)
        if detailed:
            info["jobType"] = "V2Ingest"
            if job.state == OPEN:
                info["contentUrl"] = self._content_url(job)
        else:
            info["contentUrl"] = self._content_url(job)
        info["lineEnding"] = job.line_ending
        info["columnDelimiter"] = job.column_delimiter
        if detailed:
            info.update(
                {
                    "numberRecordsProcessed": job.processed,
                    "numberRecordsFailed": job.failed,
                    "retries": 0,
                    "totalProcessingTime": job.processing_ms,
                    "apiActiveProcessingTime": job.processing_ms,
                    "apexProcessingTime": 0,
                }
            )
            if job.state == FAILED and job.error_message:
                info["errorMessage"] = job.error_message
        return info

    def _query_info(self, job: _Job, *, detailed: bool) -> dict[str, Any]:
        info = self._base_info(job)
        if detailed:
            info["jobType"] = "V2Query"
        info["lineEnding"] = job.line_ending
        info["columnDelimiter"] = job.column_delimiter
        if detailed:
            info.update(
                {
                    "numberRecordsProcessed": job.processed,
                    "retries": 0,
                    "totalProcessingTime": job.processing_ms,
                }
            )
            if job.state == FAILED and job.error_message:
                info["errorMessage"] = job.error_message
        return info

    def _list_entry(self, job: _Job) -> dict[str, Any]:
        info = self._base_info(job)
        info["jobType"] = "V2Ingest" if job.kind == "ingest" else "V2Query"
        if job.kind == "ingest" and job.state == OPEN:
            info["contentUrl"] = self._content_url(job)
        info["lineEnding"] = job.line_ending
        info["columnDelimiter"] = job.column_delimiter
        return info

    def _result_csv(self, job: _Job, leading: tuple[str, ...], rows: list[list[str]]) -> bytes:
        header = [_quote_all(name) for name in leading] + [_quote_min(name, job) for name in job.header]
        return _join_csv(job, [header, *rows])


# ------------------------------------------------------------------------------------ CSV columns


@dataclass(frozen=True)
class _Column:
    """One uploaded column: a field of the job's object, or ``Relationship.ExtField`` of a parent."""

    header: str
    field: FieldDef | None
    target: ObjectDef | None = None
    target_field: FieldDef | None = None

    @property
    def field_name(self) -> str:
        assert self.field is not None
        return self.field.name

    @property
    def is_id(self) -> bool:
        return self.target is None and self.field is not None and self.field.name.lower() == "id"


def _resolve_column(schema: Schema, obj: ObjectDef, header: str) -> _Column | None:
    direct = obj.field(header)
    if direct is not None:
        return _Column(header, direct)
    if "." not in header:
        return None
    relationship, _, ext_name = header.rpartition(".")
    type_name: str | None = None
    if ":" in relationship:  # polymorphic: Owner:User.Ext__c
        relationship, _, type_name = relationship.partition(":")
    reference = obj.relationship(relationship)
    if reference is None or not reference.reference_to:
        return None
    target_name = type_name or reference.reference_to[0]
    if type_name is not None and type_name.lower() not in {t.lower() for t in reference.reference_to}:
        return None
    target = schema.get(target_name)
    if target is None:
        return None
    target_field = target.field(ext_name)
    if target_field is None:
        return None
    return _Column(header, reference, target, target_field)


def _convert(column: _Column, text: str) -> Any:
    """A CSV cell as the REST-JSON value the store expects, typed by the field's describe type."""
    if text == NULL_MARKER:
        return None
    definition = column.field
    assert definition is not None
    kind = definition.type
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _type_error(definition, text)
    if kind in NUMBER_TYPES:
        cleaned = text.strip()
        try:
            if _INT_TEXT.fullmatch(cleaned):
                return int(cleaned)
            number = float(cleaned)
        except ValueError:
            raise _type_error(definition, text) from None
        if not math.isfinite(number):
            raise _type_error(definition, text)
        if kind == "int":
            if not number.is_integer():
                raise _type_error(definition, text)
            return int(number)
        return number
    return text


def _type_error(definition: FieldDef, text: str) -> ApiError:
    label = definition.label or definition.name
    return ApiError(
        400, "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{label}: value not of required type: {text}", [definition.name]
    )


# ------------------------------------------------------------------------------------- CSV parsing


def _parse_uploads(job: _Job) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of all uploads (each upload repeats the header row)."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    delimiter = COLUMN_DELIMITERS[job.column_delimiter]
    for upload in job.uploads:
        text = upload.decode("utf-8-sig", errors="replace")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True)
        try:
            parsed = [row for row in reader if row]
        except csv.Error as error:
            raise _JobFailedError(f"ClientInputError : {error}") from None
        if not parsed:
            continue
        upload_header = [name.strip() for name in parsed[0]]
        if header is None:
            header = upload_header
        elif [h.lower() for h in header] != [h.lower() for h in upload_header]:
            raise _JobFailedError("InvalidBatch : The header row of every upload must list the same fields")
        rows.extend(parsed[1:])
    return header or [], rows


def _quote_all(value: str | None) -> str:
    return '"' + (value or "").replace('"', '""') + '"'


def _quote_min(value: str, job: _Job) -> str:
    delimiter = COLUMN_DELIMITERS[job.column_delimiter]
    if any(ch in value for ch in (delimiter, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def _join_csv(job: _Job, rows: list[list[str]]) -> bytes:
    delimiter = COLUMN_DELIMITERS[job.column_delimiter]
    newline = LINE_ENDINGS[job.line_ending]
    return "".join(delimiter.join(row) + newline for row in rows).encode("utf-8")


# ------------------------------------------------------------------------------------ query helpers


def _parse_select(soql: str) -> tuple[list[list[str]], str]:
    """The SELECT items (as dotted paths) and the FROM object of a SOQL statement."""
    depth = 0
    quoted = False
    after_from = ""
    i = 0
    text = soql
    start_select = -1
    from_at = -1
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                quoted = False
        elif ch == "'":
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and (ch.isalpha() or ch == "_"):
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] in "_.:"):
                j += 1
            word = text[i:j]
            if word.lower() == "select" and start_select < 0:
                start_select = j
            elif word.lower() == "from" and start_select >= 0:
                from_at = i
                after_from = text[j:].strip()
                break
            i = j
            continue
        i += 1
    if start_select < 0 or from_at < 0:
        raise ApiError(400, "MALFORMED_QUERY", "unexpected token: no SELECT ... FROM clause in the query")
    select_list = text[start_select:from_at]
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", after_from)
    if match is None:
        raise ApiError(400, "MALFORMED_QUERY", "unexpected token: missing object name after FROM")
    items: list[list[str]] = []
    for raw in _split_top_level(select_list):
        item = raw.strip()
        function = re.fullmatch(r"[A-Za-z_]+\s*\(\s*([A-Za-z0-9_.]+)\s*\)(?:\s+\w+)?", item)
        if function is not None:
            item = function.group(1)
        item = item.split()[0] if item else item
        if item:
            items.append(item.split("."))
    return items, match.group(0)


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _column_name(schema: Schema, obj: ObjectDef | None, path: list[str]) -> str:
    """The CSV header for a SELECT item, with each part in its canonical API-name casing."""
    if obj is None:
        return ".".join(path)
    names: list[str] = []
    current: ObjectDef | None = obj
    for position, part in enumerate(path):
        if current is None:
            names.extend(path[position:])
            break
        if position == len(path) - 1:
            definition = current.field(part)
            names.append(definition.name if definition else part)
            break
        reference = current.relationship(part)
        if reference is None or reference.relationship_name is None:
            names.extend(path[position:])
            break
        names.append(reference.relationship_name)
        current = schema.get(reference.reference_to[0]) if len(reference.reference_to) == 1 else None
    return ".".join(names)


def _get_ci(mapping: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    if key in mapping:
        return True, mapping[key]
    lowered = key.lower()
    for candidate, value in mapping.items():
        if candidate.lower() == lowered:
            return True, value
    return False, None


def _lookup(record: Mapping[str, Any], path: list[str]) -> Any:
    """A SELECT item's value in a record: a flat ``"Account.Name"`` key or nested parent objects."""
    found, value = _get_ci(record, ".".join(path))
    if found:
        return value
    current: Any = record
    for part in path:
        if not isinstance(current, Mapping):
            return None
        found, current = _get_ci(current, part)
        if not found:
            return None
    return current


def _cell(value: Any) -> str:
    """A JSON value as Bulk API 2.0 writes it in a CSV cell (null -> empty)."""
    value = to_json_value(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode("ascii")).decode("ascii").rstrip("=")


def _decode_locator(locator: str, total: int) -> int:
    try:
        padded = locator + "=" * (-len(locator) % 4)
        offset = int(base64.b64decode(padded.encode("ascii"), validate=True).decode("ascii"))
    except (ValueError, UnicodeError, binascii.Error):
        raise ApiError(400, "INVALID_QUERY_LOCATOR", f"Invalid locator: {locator}") from None
    if not 0 <= offset <= total:
        raise ApiError(400, "INVALID_QUERY_LOCATOR", f"Invalid locator: {locator}")
    return offset


# ------------------------------------------------------------------------------------------- misc

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _mint_job_id(serial: int) -> str:
    """An 18-character job id with key prefix 750 and a valid case checksum."""
    digits = []
    number = serial
    for _ in range(9):
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    id15 = JOB_KEY_PREFIX + "8d0" + "".join(reversed(digits))
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << k for k, ch in enumerate(id15[start : start + 5]) if ch.isupper())
        suffix += _CHECKSUM_ALPHABET[bits]
    return id15 + suffix


def _api_version_number(text: str) -> float:
    match = _API_VERSION.fullmatch(text.strip())
    if match is None:
        raise ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)
    return float(f"{match.group(1)}.{match.group(2) or '0'}")


def _timestamp(epoch: float) -> str:
    return format_datetime(dt.datetime.fromtimestamp(epoch, tz=dt.UTC))


def _require_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


def _enum(
    body: Mapping[str, Any],
    key: str,
    allowed: tuple[str, ...],
    enum_name: str,
    *,
    required: bool = False,
    default: str | None = None,
) -> str:
    value = body.get(key)
    if value is None:
        if required or default is None:
            raise ApiError(400, "INVALIDJOB", f"Required field is missing: {key}")
        return default
    if not isinstance(value, str) or value not in allowed:
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {enum_name} from VALUE_STRING value {value} "
            "or request may be missing a required field",
        )
    return value
