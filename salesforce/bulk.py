"""Bulk API 2.0: ingest jobs (create, upload CSV, close, wait, results) and query jobs, with their CSV.

Every call goes through :meth:`SalesforceClient.request <sfsync.salesforce.client.SalesforceClient.request>`,
once per step, and only :mod:`sfsync.salesforce.errors` kinds are raised; nothing is resent
(the caller that retries owns the job it may have created). Per-row refusals are not raised: they
come back as :class:`BulkFailure` rows, classified like any error.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from sfsync.salesforce.errors import (
    SalesforceError,
    SalesforceFatalError,
    SalesforceRetriableError,
    parse_bulk_error,
)
from sfsync.salesforce.rest import ApiModel, RestCaller, api_name, parse_model
from sfsync.salesforce.soql import Query

_BULK_DONE = frozenset({"JobComplete", "Failed", "Aborted"})


class BulkJob(ApiModel):
    """A Bulk API 2.0 job (ingest or query)."""

    id: str
    operation: str
    object: str = Field(alias="object")
    state: str
    content_type: str | None = None
    content_url: str | None = None
    api_version: float | None = None
    external_id_field_name: str | None = None
    line_ending: str | None = None
    column_delimiter: str | None = None
    number_records_processed: int = 0
    number_records_failed: int = 0
    error_message: str | None = None


@dataclass(frozen=True)
class BulkSuccess:
    id: str
    created: bool
    row: dict[str, str]


@dataclass(frozen=True)
class BulkFailure:
    id: str | None
    error: SalesforceError
    row: dict[str, str]


@dataclass(frozen=True)
class BulkIngestResult:
    job: BulkJob
    successful: list[BulkSuccess]
    failed: list[BulkFailure]
    unprocessed: list[dict[str, str]]


def records_to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """CSV for Bulk API 2.0: header = union of keys in first-seen order; ``None`` → ``#N/A`` (null)."""
    columns: list[str] = []
    for record in records:
        for key in record:
            if key != "attributes" and key not in columns:
                columns.append(key)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(c, "")) for c in columns])
    return out.getvalue()


def _csv_cell(value: object) -> str:
    if value is None:
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return str(value)


def _parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


class BulkApi(RestCaller):
    """The Bulk API 2.0 calls of :class:`~sfsync.salesforce.client.SalesforceClient`."""

    async def create_ingest_job(
        self,
        sobject: str,
        operation: Literal["insert", "update", "upsert", "delete", "hardDelete"],
        *,
        external_id_field: str | None = None,
        line_ending: Literal["LF", "CRLF"] = "LF",
    ) -> BulkJob:
        """``POST /jobs/ingest`` (CSV, comma-delimited) → the Open job.

        An upsert without ``external_id_field``, or names that are not API names, raise
        :class:`ValueError` before anything is sent.
        """
        if operation == "upsert" and not external_id_field:
            raise ValueError("an upsert job needs external_id_field")
        body: dict[str, Any] = {
            "object": api_name(sobject),
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": line_ending,
            "columnDelimiter": "COMMA",
        }
        if external_id_field:
            body["externalIdFieldName"] = api_name(external_id_field, "field")
        return parse_model(BulkJob, await self._json("POST", "jobs/ingest", json=body), "bulk job")

    async def upload_job_data(self, job_id: str, data: str | bytes) -> None:
        """``PUT /jobs/ingest/{id}/batches`` with CSV; Salesforce answers exactly 201, no body."""
        content = data.encode() if isinstance(data, str) else data
        await self.request(
            "PUT", f"jobs/ingest/{quote(job_id, safe='')}/batches", content=content,
            headers={"Content-Type": "text/csv"}, ok=(201,),
        )  # fmt: skip

    async def _set_ingest_state(self, job_id: str, state: str) -> BulkJob:
        data = await self._json("PATCH", f"jobs/ingest/{quote(job_id, safe='')}", json={"state": state})
        return parse_model(BulkJob, data, "bulk job")

    async def close_ingest_job(self, job_id: str) -> BulkJob:
        """``PATCH {"state": "UploadComplete"}`` → the job: nothing is processed before this."""
        return await self._set_ingest_state(job_id, "UploadComplete")

    async def abort_ingest_job(self, job_id: str) -> BulkJob:
        """``PATCH {"state": "Aborted"}`` → the job."""
        return await self._set_ingest_state(job_id, "Aborted")

    async def get_job(self, job_id: str, *, kind: Literal["ingest", "query"] = "ingest") -> BulkJob:
        """``GET /jobs/{kind}/{id}`` → the job as it is now."""
        data = await self._json("GET", f"jobs/{kind}/{quote(job_id, safe='')}")
        return parse_model(BulkJob, data, "bulk job")

    async def wait_for_job(self, job_id: str, *, kind: Literal["ingest", "query"] = "ingest") -> BulkJob:
        """Poll :meth:`get_job` until JobComplete/Failed/Aborted and return that job.

        Waits back off from ``bulk_poll_initial_s``, doubling up to ``bulk_poll_max_s``; a job
        not done within ``bulk_timeout_s`` raises :class:`SalesforceRetriableError` (``BULK_TIMEOUT``).
        """
        deadline = self._clock() + self.settings.bulk_timeout_s
        delay = self.settings.bulk_poll_initial_s
        while True:
            job = await self.get_job(job_id, kind=kind)
            if job.state in _BULK_DONE:
                return job
            if self._clock() + delay > deadline:
                raise SalesforceRetriableError(
                    f"bulk job {job_id} still {job.state} after {self.settings.bulk_timeout_s:.0f}s",
                    error_code="BULK_TIMEOUT",
                )
            await self._sleep(delay)
            delay = min(delay * 2, self.settings.bulk_poll_max_s)

    async def _csv(self, path: str, params: Mapping[str, str | int] | None = None) -> httpx.Response:
        return await self.request("GET", path, params=params, headers={"Accept": "text/csv"})

    async def successful_results(self, job_id: str) -> list[BulkSuccess]:
        """``GET successfulResults/``: one :class:`BulkSuccess` per row (``sf__Id``, ``sf__Created``, the columns)."""
        response = await self._csv(f"jobs/ingest/{quote(job_id, safe='')}/successfulResults/")
        return [
            BulkSuccess(
                id=row.pop("sf__Id", ""),
                created=row.pop("sf__Created", "false").lower() == "true",
                row=row,
            )
            for row in _parse_csv(response.text)
        ]

    async def failed_results(self, job_id: str) -> list[BulkFailure]:
        """``GET failedResults/``: one :class:`BulkFailure` per row.

        Its ``sf__Error`` cell (``CODE:message:fields--``) is classified like any Salesforce error.
        """
        response = await self._csv(f"jobs/ingest/{quote(job_id, safe='')}/failedResults/")
        out = []
        for row in _parse_csv(response.text):
            record_id = row.pop("sf__Id", "") or None
            error = parse_bulk_error(row.pop("sf__Error", ""))
            out.append(BulkFailure(id=record_id, error=error, row=row))
        return out

    async def unprocessed_records(self, job_id: str) -> list[dict[str, str]]:
        """``GET unprocessedrecords/``: the rows never processed (job aborted or failed)."""
        response = await self._csv(f"jobs/ingest/{quote(job_id, safe='')}/unprocessedrecords/")
        return _parse_csv(response.text)

    async def bulk_ingest(
        self,
        sobject: str,
        operation: Literal["insert", "update", "upsert", "delete", "hardDelete"],
        records: Sequence[Mapping[str, Any]] | str,
        *,
        external_id_field: str | None = None,
    ) -> BulkIngestResult:
        """Create a job, upload (``records`` as CSV via :func:`records_to_csv`), close, wait, then fetch rows.

        A job that ends ``Failed``/``Aborted`` still returns its results (``job.state`` says so);
        the caller decides. An upload failure aborts the job before it is re-raised.
        """
        job = await self.create_ingest_job(sobject, operation, external_id_field=external_id_field)
        try:
            await self.upload_job_data(job.id, records if isinstance(records, str) else records_to_csv(records))
        except SalesforceError:
            await self.abort_ingest_job(job.id)
            raise
        await self.close_ingest_job(job.id)
        job = await self.wait_for_job(job.id)
        successful = await self.successful_results(job.id)
        failed = await self.failed_results(job.id)
        unprocessed = await self.unprocessed_records(job.id) if job.state != "JobComplete" else []
        return BulkIngestResult(job=job, successful=successful, failed=failed, unprocessed=unprocessed)

    async def bulk_query(
        self, soql: str | Query, *, include_deleted: bool = False, max_records: int | None = None
    ) -> AsyncIterator[dict[str, str]]:
        """A Bulk API 2.0 query job, yielding CSV rows page by page (``Sforce-Locator`` until ``"null"``).

        ``POST /jobs/query`` (``queryAll`` when ``include_deleted``), :meth:`wait_for_job`, then
        ``GET results`` pages of at most ``max_records`` rows. A job that does not end
        ``JobComplete`` raises :class:`SalesforceFatalError` (``BULK_JOB_FAILED``).
        """
        body = {"operation": "queryAll" if include_deleted else "query", "query": str(soql)}
        job = parse_model(BulkJob, await self._json("POST", "jobs/query", json=body), "bulk query job")
        job = await self.wait_for_job(job.id, kind="query")
        if job.state != "JobComplete":
            raise SalesforceFatalError(
                f"bulk query job {job.id} ended {job.state}: {job.error_message or 'no message'}",
                error_code="BULK_JOB_FAILED",
            )
        locator: str | None = None
        while True:
            params: dict[str, str | int] = {}
            if max_records:
                params["maxRecords"] = max_records
            if locator:
                params["locator"] = locator
            response = await self._csv(f"jobs/query/{quote(job.id, safe='')}/results", params or None)
            for row in _parse_csv(response.text):
                yield row
            locator = response.headers.get("Sforce-Locator")
            if not locator or locator == "null":
                return
