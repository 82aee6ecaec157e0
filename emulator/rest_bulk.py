"""The REST API's Bulk API 2.0 resources (``/jobs/ingest``, ``/jobs/query``), mapped onto
:class:`sfsync.emulator.bulk.BulkService` (its docstring lists each endpoint and what it answers).

Result CSVs are served as ``text/csv``; query results carry ``Sforce-Locator`` and
``Sforce-NumberOfRecords``. Jobs open their own store transactions (one per chunk of 200 records),
so these routes run outside the per-call transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from sfsync.emulator.rest_routing import Handler, Req, Resp, Router, ServedOrg

_JOB = r"(?P<job>750\w{12,15})"


class BulkApi:
    """Handlers of the Bulk API 2.0 resources."""

    def __init__(self, org: ServedOrg) -> None:
        self._org = org

    def install(self, router: Router) -> None:
        """Register the handlers on ``router``."""

        def r(method: str, pattern: str, name: str) -> Callable[[Handler], Handler]:
            return router.route(method, pattern, name, transaction=False)

        job = _JOB
        r("POST", "jobs/ingest", "jobs/ingest")(self.create_ingest)
        r("GET", "jobs/ingest", "jobs/ingest")(self.list_ingest)
        r("GET", f"jobs/ingest/{job}", "jobs/ingest/{job}")(self.get_ingest)
        r("PATCH", f"jobs/ingest/{job}", "jobs/ingest/{job}")(self.patch_ingest)
        r("DELETE", f"jobs/ingest/{job}", "jobs/ingest/{job}")(self.delete_ingest)
        r("PUT", f"jobs/ingest/{job}/batches", "jobs/ingest/{job}/batches")(self.upload)
        r(
            "GET",
            f"jobs/ingest/{job}/(?P<kind>successfulResults|failedResults|unprocessedrecords|unprocessedRecords)",
            "jobs/ingest/{job}/results",
        )(self.results)
        r("POST", "jobs/query", "jobs/query")(self.create_query)
        r("GET", "jobs/query", "jobs/query")(self.list_query)
        r("GET", f"jobs/query/{job}", "jobs/query/{job}")(self.get_query)
        r("PATCH", f"jobs/query/{job}", "jobs/query/{job}")(self.patch_query)
        r("DELETE", f"jobs/query/{job}", "jobs/query/{job}")(self.delete_query)
        r("GET", f"jobs/query/{job}/results", "jobs/query/{job}/results")(self.query_results)

    # ------------------------------------------------------------------ ingest jobs
    def create_ingest(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.create_ingest_job(req.json() or {}, req.version))

    def list_ingest(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.list_jobs())

    def get_ingest(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.get_job(req.params["job"]))

    def patch_ingest(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.patch_job(req.params["job"], req.json() or {}))

    def delete_ingest(self, req: Req) -> Resp:
        self._org.bulk.delete_job(req.params["job"])
        return Resp(204)

    def upload(self, req: Req) -> Resp:
        self._org.bulk.upload_batch(req.params["job"], req.body)
        return Resp(201)

    def results(self, req: Req) -> Resp:
        bulk = self._org.bulk
        method = {
            "successfulResults": bulk.successful_results,
            "failedResults": bulk.failed_results,
            "unprocessedrecords": bulk.unprocessed_records,
            "unprocessedRecords": bulk.unprocessed_records,
        }[req.params["kind"]]
        return Resp(200, raw=method(req.params["job"]), media_type="text/csv")

    # ------------------------------------------------------------------ query jobs
    def create_query(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.create_query_job(req.json() or {}, req.version))

    def list_query(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.list_query_jobs())

    def get_query(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.get_query_job(req.params["job"]))

    def patch_query(self, req: Req) -> Resp:
        return Resp(200, self._org.bulk.patch_query_job(req.params["job"], req.json() or {}))

    def delete_query(self, req: Req) -> Resp:
        self._org.bulk.delete_query_job(req.params["job"])
        return Resp(204)

    def query_results(self, req: Req) -> Resp:
        max_records = req.query.get("maxRecords")
        data, locator, count = self._org.bulk.query_results(
            req.params["job"], req.query.get("locator"), int(max_records) if max_records else None
        )
        return Resp(
            200,
            raw=data,
            media_type="text/csv",
            headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)},
        )
