"""Bulk API 2.0 jobs of the emulated org (emulator/bulk.py) against an in-memory store."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from sfsync.emulator.bulk import BulkService, BulkStore, QueryPage, format_row_error
from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import FieldDef, ObjectDef, Row, Schema
from tests.kit import EpochClock, recorded_json

USER_ID = "005000000000001AAA"
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


# ---------------------------------------------------------------------------------------- fakes


def _schema() -> Schema:
    schema = Schema()
    account = ObjectDef(name="Account", key_prefix="001", label="Account")
    for definition in (
        FieldDef("Id", "id", label="Account ID", createable=False, updateable=False, nillable=False),
        FieldDef("Name", "string", label="Account Name", nillable=False, name_field=True),
        FieldDef("External_Id__c", "string", label="External Id", external_id=True, unique=True, custom=True),
        FieldDef("NumberOfEmployees", "int", label="Employees"),
        FieldDef("AnnualRevenue", "currency", label="Annual Revenue"),
        FieldDef("Active__c", "boolean", label="Active", nillable=False, defaulted_on_create=True, custom=True),
        FieldDef("Description", "textarea", label="Description"),
        FieldDef("IsDeleted", "boolean", label="Deleted", createable=False, updateable=False, nillable=False),
    ):
        account.add(definition)
    contact = ObjectDef(name="Contact", key_prefix="003", label="Contact")
    for definition in (
        FieldDef("Id", "id", label="Contact ID", createable=False, updateable=False, nillable=False),
        FieldDef("FirstName", "string", label="First Name"),
        FieldDef("LastName", "string", label="Last Name", nillable=False),
        FieldDef("Email", "email", label="Email", id_lookup=True),
        FieldDef("AccountId", "reference", label="Account ID", reference_to=("Account",), relationship_name="Account"),
        FieldDef("IsDeleted", "boolean", label="Deleted", createable=False, updateable=False, nillable=False),
    ):
        contact.add(definition)
    schema.add(account)
    schema.add(contact)
    return schema


class FakeStore:
    """The BulkStore contract over dicts: required fields, unknown fields, ext-id upsert, recycle bin."""

    def __init__(self) -> None:
        self.schema = _schema()
        self.data: dict[str, dict[str, Row]] = {"Account": {}, "Contact": {}}
        self.purged: list[str] = []
        self._serial = 0

    def _obj(self, sobject: str) -> ObjectDef:
        obj = self.schema.get(sobject)
        assert obj is not None
        return obj

    def _check(self, obj: ObjectDef, values: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for name, value in values.items():
            definition = obj.field(name)
            if definition is None:
                raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
            clean[definition.name] = value
        for definition in obj.fields.values():
            required = not definition.nillable and definition.createable and not definition.defaulted_on_create
            missing = clean.get(definition.name) is None if creating else clean.get(definition.name, 1) is None
            if required and missing:
                raise ApiError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{definition.name}]",
                    [definition.name],
                )
        return clean

    def create(self, sobject: str, values: Mapping[str, Any], *, user_id: str | None = None) -> str:
        assert user_id == USER_ID
        obj = self._obj(sobject)
        clean = self._check(obj, values, creating=True)
        self._serial += 1
        record_id = f"{obj.key_prefix}{self._serial:012d}AAA"
        row: Row = {f.name: None for f in obj.fields.values()}
        row.update({"Id": record_id, "IsDeleted": False})
        if "Active__c" in row:
            row["Active__c"] = False
        row.update(clean)
        self.data[obj.name][record_id] = row
        return record_id

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any], *, user_id: str | None = None) -> None:
        assert user_id == USER_ID
        obj = self._obj(sobject)
        row = self.data[obj.name].get(record_id)
        if row is None:
            raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if row["IsDeleted"]:
            raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted")
        row.update(self._check(obj, values, creating=False))

    def upsert(
        self, sobject: str, ext_field: str, ext_value: Any, values: Mapping[str, Any], *, user_id: str | None = None
    ) -> tuple[str, bool]:
        obj = self._obj(sobject)
        for row in self.data[obj.name].values():
            if not row["IsDeleted"] and row.get(ext_field) == ext_value:
                self.update(sobject, row["Id"], values, user_id=user_id)
                return row["Id"], False
        return self.create(sobject, {**values, ext_field: ext_value}, user_id=user_id), True

    def delete(self, sobject: str, record_id: str, *, user_id: str | None = None) -> None:
        assert user_id == USER_ID
        row = self.data[self._obj(sobject).name].get(record_id)
        if row is None:
            raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if row["IsDeleted"]:
            raise ApiError(400, "ENTITY_IS_DELETED", "entity is deleted")
        row["IsDeleted"] = True

    def purge(self, record_id: str) -> None:
        for rows in self.data.values():
            rows.pop(record_id, None)
        self.purged.append(record_id)

    def rows(self, sobject: str, *, include_deleted: bool = False) -> Iterable[Row]:
        return [r for r in self.data[self._obj(sobject).name].values() if include_deleted or not r["IsDeleted"]]

    def row_by_id(self, record_id: str) -> tuple[ObjectDef, Row] | None:
        for name, rows in self.data.items():
            if record_id in rows:
                return self._obj(name), rows[record_id]
        return None


class FakeRunner:
    """A stand-in SOQL engine: ``SELECT a, Rel.b FROM X`` over the fake store, parents nested as objects."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.calls: list[tuple[str, bool]] = []
        self.error: ApiError | None = None

    def __call__(self, soql: str, include_deleted: bool) -> list[dict[str, Any]]:
        self.calls.append((soql, include_deleted))
        if self.error is not None:
            raise self.error
        match = re.match(r"(?is)\s*select\s+(.+?)\s+from\s+(\w+)", soql)
        assert match is not None
        items = [item.strip() for item in match.group(1).split(",")]
        obj = self.store._obj(match.group(2))
        records = []
        for row in sorted(self.store.rows(obj.name, include_deleted=include_deleted), key=lambda r: r["Id"]):
            record: dict[str, Any] = {"attributes": {"type": obj.name}}
            for item in items:
                if "." in item:
                    relationship, name = item.split(".")
                    reference = obj.relationship(relationship)
                    assert reference is not None
                    assert reference.relationship_name is not None
                    parent_id = row.get(reference.name)
                    parent = self.store.data["Account"].get(parent_id) if parent_id else None
                    target = self.store._obj("Account").field(name)
                    assert target is not None
                    record[reference.relationship_name] = (
                        None
                        if parent is None
                        else {"attributes": {"type": "Account"}, target.name: parent[target.name]}
                    )
                else:
                    definition = obj.field(item)
                    assert definition is not None
                    record[definition.name] = row[definition.name]
            records.append(record)
        return records


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def runner(store: FakeStore) -> FakeRunner:
    return FakeRunner(store)


@pytest.fixture
def clock() -> EpochClock:
    return EpochClock()


@pytest.fixture
def service(store: FakeStore, runner: FakeRunner, clock: EpochClock) -> BulkService:
    return BulkService(store, runner, api_version_default="59.0", clock=clock, user_id=USER_ID)


def _run_ingest(service: BulkService, body: dict[str, Any], *uploads: bytes) -> str:
    job_id: str = service.create_ingest_job(body, "59.0")["id"]
    for upload in uploads:
        service.upload_batch(job_id, upload)
    service.patch_job(job_id, {"state": "UploadComplete"})
    return job_id


def _rows(data: bytes, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline=""), delimiter=delimiter))


def _raises(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value


# ------------------------------------------------------------------------------------ JobInfo shape


def test_ingest_job_info_has_the_fixture_keys_and_types(service: BulkService, clock: EpochClock) -> None:
    fixture = recorded_json("restforce_bulk2_ingest_create_job.json")
    info = service.create_ingest_job({"object": "Account", "operation": "insert", "contentType": "CSV"}, "v46.0")

    assert list(info) == list(fixture)
    assert {k: type(v) for k, v in info.items()} == {k: type(v) for k, v in fixture.items()}
    assert re.fullmatch(r"750[0-9A-Za-z]{15}", info["id"])
    assert info["apiVersion"] == 46.0
    assert info["contentUrl"] == f"services/data/v46.0/jobs/ingest/{info['id']}/batches"
    assert (info["state"], info["object"], info["operation"]) == ("Open", "Account", "insert")
    assert (info["concurrencyMode"], info["lineEnding"], info["columnDelimiter"]) == ("Parallel", "LF", "COMMA")
    assert info["createdById"] == USER_ID
    assert info["createdDate"] == "2026-01-01T00:00:00.000+0000" == info["systemModstamp"]


def test_query_job_info_has_the_fixture_keys_and_types(service: BulkService) -> None:
    fixture = recorded_json("airbyte_bulk2_query_job_info.json")
    info = service.create_query_job({"operation": "queryAll", "query": "SELECT Id FROM account"}, "57.0")

    assert list(info) == list(fixture)
    assert {k: type(v) for k, v in info.items()} == {k: type(v) for k, v in fixture.items()}
    assert (info["state"], info["object"], info["apiVersion"]) == ("UploadComplete", "Account", 57.0)


def test_get_job_adds_counters_and_drops_content_url_once_closed(service: BulkService) -> None:
    job_id = service.create_ingest_job({"object": "Account", "operation": "insert"})["id"]
    open_info = service.get_job(job_id)
    assert open_info["jobType"] == "V2Ingest"
    assert open_info["contentUrl"] == f"services/data/v59.0/jobs/ingest/{job_id}/batches"
    assert open_info["numberRecordsProcessed"] == 0

    service.upload_batch(job_id, b"Name\nAcme\n")
    service.patch_job(job_id, {"state": "UploadComplete"})
    done = service.get_job(job_id)

    assert "contentUrl" not in done
    assert "errorMessage" not in done
    for key in (
        "numberRecordsProcessed",
        "numberRecordsFailed",
        "retries",
        "totalProcessingTime",
        "apiActiveProcessingTime",
        "apexProcessingTime",
    ):
        assert type(done[key]) is int, key
    assert (done["state"], done["numberRecordsProcessed"], done["numberRecordsFailed"]) == ("JobComplete", 1, 0)


def test_upsert_job_reports_its_external_id_field_in_canonical_case(service: BulkService) -> None:
    info = service.create_ingest_job(
        {"object": "account", "operation": "upsert", "externalIdFieldName": "external_id__c"}
    )
    assert info["object"] == "Account"
    assert info["externalIdFieldName"] == "External_Id__c"
    assert "externalIdFieldName" not in service.create_ingest_job({"object": "Account", "operation": "insert"})


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"object": "Nope__c", "operation": "insert"}, "INVALIDJOB", "Unable to find object: Nope__c"),
        ({"operation": "insert"}, "INVALIDJOB", "Object name is required"),
        ({"object": "Account"}, "INVALIDJOB", "Required field is missing: operation"),
        ({"object": "Account", "operation": "merge"}, "JSON_PARSER_ERROR", "OperationEnum"),
        ({"object": "Account", "operation": "insert", "columnDelimiter": "SPACE"}, "JSON_PARSER_ERROR", "SPACE"),
        ({"object": "Account", "operation": "insert", "lineEnding": "CR"}, "JSON_PARSER_ERROR", "LineEndingEnum"),
        ({"object": "Account", "operation": "insert", "contentType": "JSON"}, "JSON_PARSER_ERROR", "ContentType"),
        (
            {"object": "Account", "operation": "upsert"},
            "INVALIDJOB",
            "External ID was blank for Account. An External ID must be specified for upsert.",
        ),
        (
            {"object": "Account", "operation": "upsert", "externalIdFieldName": "Name"},
            "INVALIDJOB",
            "Field name provided, Name does not match an External ID, Salesforce Id, or indexed field for Account",
        ),
    ],
)
def test_create_ingest_job_rejects_bad_definitions(
    service: BulkService, body: dict[str, Any], code: str, message: str
) -> None:
    error = _raises(service.create_ingest_job, body, "59.0")
    assert (error.status, error.error_code) == (400, code)
    assert message in error.message
    assert service.list_jobs()["records"] == []


# -------------------------------------------------------------------------------- state machine


def test_upload_complete_answers_upload_complete_then_the_job_is_complete(
    service: BulkService, store: FakeStore
) -> None:
    job_id = service.create_ingest_job({"object": "Account", "operation": "insert"})["id"]
    service.upload_batch(job_id, b"Name\nAcme\n")
    assert store.data["Account"] == {}  # nothing happens before UploadComplete

    closed = service.patch_job(job_id, {"state": "UploadComplete"})

    assert closed["state"] == "UploadComplete"
    assert service.get_job(job_id)["state"] == "JobComplete"
    assert [r["Name"] for r in store.data["Account"].values()] == ["Acme"]


def test_upload_after_upload_complete_is_refused(service: BulkService) -> None:
    job_id = _run_ingest(service, {"object": "Account", "operation": "insert"}, b"Name\nAcme\n")

    error = _raises(service.upload_batch, job_id, b"Name\nLate\n")

    assert (error.status, error.error_code, error.message) == (400, "INVALIDJOBSTATE", "Job is not in state Open")
    again = _raises(service.patch_job, job_id, {"state": "UploadComplete"})
    assert again.error_code == "INVALIDJOBSTATE"
    abort_done = _raises(service.patch_job, job_id, {"state": "Aborted"})
    assert abort_done.error_code == "INVALIDJOBSTATE"
    assert service.get_job(job_id)["state"] == "JobComplete"


def test_aborted_job_processes_nothing_and_returns_unprocessed_records(service: BulkService, store: FakeStore) -> None:
    job_id = service.create_ingest_job({"object": "Account", "operation": "insert"})["id"]
    service.upload_batch(job_id, b'Name,Description\nAcme,"a, b"\nGlobex,x\n')

    aborted = service.patch_job(job_id, {"state": "Aborted"})

    assert aborted["state"] == "Aborted"
    assert store.data["Account"] == {}
    assert service.unprocessed_records(job_id) == b'Name,Description\nAcme,"a, b"\nGlobex,x\n'
    assert service.successful_results(job_id) == b'"sf__Id","sf__Created",Name,Description\n'
    assert _raises(service.upload_batch, job_id, b"Name\nX\n").error_code == "INVALIDJOBSTATE"
    assert service.get_job(job_id)["numberRecordsProcessed"] == 0


def test_delete_job_only_in_documented_states(service: BulkService) -> None:
    job_id = service.create_ingest_job({"object": "Account", "operation": "insert"})["id"]
    refused = _raises(service.delete_job, job_id)
    assert (refused.status, refused.error_code) == (400, "INVALIDJOBSTATE")

    service.patch_job(job_id, {"state": "Aborted"})
    service.delete_job(job_id)

    gone = _raises(service.get_job, job_id)
    assert (gone.status, gone.error_code, gone.message) == (
        404,
        "NOT_FOUND",
        "The requested resource does not exist",
    )


def test_unknown_job_and_wrong_job_kind_are_not_found(service: BulkService) -> None:
    query_id = service.create_query_job({"operation": "query", "query": "SELECT Id FROM Account"})["id"]
    assert _raises(service.get_job, query_id).status == 404
    assert _raises(service.upload_batch, "750000000000000AAA", b"Name\n").status == 404
    assert _raises(service.get_query_job, "750000000000000AAA").error_code == "NOT_FOUND"
    assert service.get_query_job(query_id[:15])["id"] == query_id


def test_results_are_refused_while_the_job_is_open(service: BulkService) -> None:
    job_id = service.create_ingest_job({"object": "Account", "operation": "insert"})["id"]
    for call in (service.successful_results, service.failed_results, service.unprocessed_records):
        assert _raises(call, job_id).status == 400


def test_timer_moves_jobs_through_in_progress(store: FakeStore, runner: FakeRunner, clock: EpochClock) -> None:
    service = BulkService(store, runner, api_version_default="59.0", clock=clock, user_id=USER_ID, process_delay=2.0)
    job_id = _run_ingest(service, {"object": "Account", "operation": "insert"}, b"Name\nAcme\n")
    assert service.get_job(job_id)["state"] == "UploadComplete"
    clock.now += 1.0
    assert service.get_job(job_id)["state"] == "InProgress"
    assert store.data["Account"] == {}
    clock.now += 1.0
    info = service.get_job(job_id)
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 1)
    assert info["systemModstamp"] == "2026-01-01T00:00:02.000+0000"

    query_id = service.create_query_job({"operation": "query", "query": "SELECT Name FROM Account"})["id"]
    assert _raises(service.query_results, query_id, None, None).error_code == "API_ERROR"
    clock.now += 5.0
    service.process_pending()
    assert service.get_query_job(query_id)["state"] == "JobComplete"
    assert service.query_results(query_id, None, None).number_of_records == 1


def test_list_jobs_shows_ingest_jobs_only(service: BulkService) -> None:
    job_id = service.create_ingest_job({"object": "Account", "operation": "insert"})["id"]
    service.create_query_job({"operation": "query", "query": "SELECT Id FROM Account"})

    listing = service.list_jobs()

    assert (listing["done"], listing["nextRecordsUrl"]) == (True, None)
    assert [(r["id"], r["jobType"], r["state"]) for r in listing["records"]] == [(job_id, "V2Ingest", "Open")]
    assert [r["jobType"] for r in service.list_query_jobs()["records"]] == ["V2Query"]


# ------------------------------------------------------------------------------- ingest results


def test_mixed_success_and_failure_results_have_the_sf_columns(service: BulkService, store: FakeStore) -> None:
    job_id = _run_ingest(
        service,
        {"object": "Contact", "operation": "insert"},
        b"FirstName,LastName\nAda,Lovelace\nNo,\nGrace,Hopper\n",
    )

    info = service.get_job(job_id)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 1)
    ids = {row["LastName"]: row["Id"] for row in store.data["Contact"].values()}
    assert (
        service.successful_results(job_id)
        == (
            '"sf__Id","sf__Created",FirstName,LastName\n'
            f'"{ids["Lovelace"]}","true",Ada,Lovelace\n'
            f'"{ids["Hopper"]}","true",Grace,Hopper\n'
        ).encode()
    )
    assert service.failed_results(job_id) == (
        b'"sf__Id","sf__Error",FirstName,LastName\n'
        b'"","REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",No,\n'
    )
    assert service.unprocessed_records(job_id) == b"FirstName,LastName\n"


def test_multiple_uploads_append(service: BulkService, store: FakeStore) -> None:
    job_id = _run_ingest(service, {"object": "Account", "operation": "insert"}, b"Name\nOne\n", b"name\r\nTwo\r\n")

    assert sorted(r["Name"] for r in store.data["Account"].values()) == ["One", "Two"]
    assert [row[2] for row in _rows(service.successful_results(job_id))] == ["Name", "One", "Two"]


def test_upsert_reports_created_true_then_false(service: BulkService, store: FakeStore) -> None:
    body = {"object": "Account", "operation": "upsert", "externalIdFieldName": "External_Id__c"}
    first = _run_ingest(service, body, b"External_Id__c,Name\nX-1,First\n")
    second = _run_ingest(service, body, b"External_Id__c,Name\nX-1,Renamed\nX-2,New\n")

    first_rows = _rows(service.successful_results(first))
    second_rows = _rows(service.successful_results(second))
    assert [row[1] for row in first_rows[1:]] == ["true"]
    assert [(row[1], row[2]) for row in second_rows[1:]] == [("false", "X-1"), ("true", "X-2")]
    assert first_rows[1][0] == second_rows[1][0]
    assert sorted((r["External_Id__c"], r["Name"]) for r in store.data["Account"].values()) == [
        ("X-1", "Renamed"),
        ("X-2", "New"),
    ]
    missing = _run_ingest(service, body, b"External_Id__c,Name\n,Nameless\n")
    assert (
        _rows(service.failed_results(missing))[1][1]
        == "MISSING_ARGUMENT:External_Id__c not specified:External_Id__c --"
    )


def test_update_delete_and_hard_delete(service: BulkService, store: FakeStore) -> None:
    keep = store.create("Account", {"Name": "Keep", "Description": "old"}, user_id=USER_ID)
    soft = store.create("Account", {"Name": "Soft"}, user_id=USER_ID)
    hard = store.create("Account", {"Name": "Hard"}, user_id=USER_ID)

    update = _run_ingest(
        service,
        {"object": "Account", "operation": "update"},
        f"Id,Name,Description\n{keep},Kept,\n001999999999999AAA,Ghost,\n".encode(),
    )
    delete = _run_ingest(service, {"object": "Account", "operation": "delete"}, f"Id\n{soft}\n".encode())
    hard_delete = _run_ingest(service, {"object": "Account", "operation": "hardDelete"}, f"Id\n{hard}\n".encode())

    assert (store.data["Account"][keep]["Name"], store.data["Account"][keep]["Description"]) == ("Kept", "old")
    assert _rows(service.successful_results(update))[1][:2] == [keep, "false"]
    assert _rows(service.failed_results(update))[1][:2] == [
        "001999999999999AAA",
        "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
    ]
    assert store.data["Account"][soft]["IsDeleted"] is True
    assert _rows(service.successful_results(delete))[1] == [soft, "false", soft]
    assert hard not in store.data["Account"]
    assert store.purged == [hard]
    assert service.get_job(hard_delete)["numberRecordsFailed"] == 0


def test_update_without_id_column_fails_the_job(service: BulkService) -> None:
    job_id = _run_ingest(service, {"object": "Account", "operation": "update"}, b"Name\nX\n")
    info = service.get_job(job_id)
    assert (info["state"], info["errorMessage"]) == ("Failed", "InvalidBatch : Field name not found : Id")


def test_unknown_header_fails_the_job_and_leaves_rows_unprocessed(service: BulkService, store: FakeStore) -> None:
    job_id = _run_ingest(service, {"object": "Account", "operation": "insert"}, b"Name,Bogus__c\nAcme,1\n")

    info = service.get_job(job_id)

    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Bogus__c"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (0, 0)
    assert store.data["Account"] == {}
    assert service.unprocessed_records(job_id) == b"Name,Bogus__c\nAcme,1\n"
    assert service.successful_results(job_id) == b'"sf__Id","sf__Created",Name,Bogus__c\n'


def test_csv_edge_cases_quotes_commas_newlines_and_na(service: BulkService, store: FakeStore) -> None:
    existing = store.create("Account", {"Name": "Old", "Description": "to clear", "AnnualRevenue": 5}, user_id=USER_ID)
    data = (
        b"Name,Description,NumberOfEmployees,AnnualRevenue,Active__c\n"
        b'"Smith, Jones ""and"" Co","line one\nline two",12,1234.5,TRUE\n'
        b"Plain,,#N/A,,false\n"
    )
    insert = _run_ingest(service, {"object": "Account", "operation": "insert"}, data)
    update = _run_ingest(
        service,
        {"object": "Account", "operation": "update"},
        f"Id,Description,AnnualRevenue\n{existing},#N/A,\n".encode(),
    )

    rows = {r["Name"]: r for r in store.data["Account"].values()}
    assert rows['Smith, Jones "and" Co']["Description"] == "line one\nline two"
    assert rows['Smith, Jones "and" Co']["NumberOfEmployees"] == 12
    assert rows['Smith, Jones "and" Co']["AnnualRevenue"] == 1234.5
    assert rows['Smith, Jones "and" Co']["Active__c"] is True
    assert rows["Plain"]["Description"] is None
    assert rows["Plain"]["NumberOfEmployees"] is None
    assert rows["Plain"]["Active__c"] is False
    assert (rows["Old"]["Description"], rows["Old"]["AnnualRevenue"]) == (None, 5)  # #N/A clears, empty keeps
    success = service.successful_results(insert)
    assert b'"Smith, Jones ""and"" Co","line one\nline two",12,1234.5,TRUE\n' in success
    assert _rows(success)[1][2:] == ['Smith, Jones "and" Co', "line one\nline two", "12", "1234.5", "TRUE"]
    assert _rows(service.successful_results(update))[1] == [existing, "false", existing, "#N/A", ""]


def test_bad_typed_values_fail_only_their_row(service: BulkService, store: FakeStore) -> None:
    job_id = _run_ingest(
        service,
        {"object": "Account", "operation": "insert"},
        b"Name,NumberOfEmployees,Active__c\nA,ten,true\nB,3,maybe\nC,4,1\nD,1,2,3\n",
    )

    failed = _rows(service.failed_results(job_id))
    assert [row[1] for row in failed[1:]] == [
        "INVALID_TYPE_ON_FIELD_IN_RECORD:Employees: value not of required type: ten:NumberOfEmployees --",
        "INVALID_TYPE_ON_FIELD_IN_RECORD:Active: value not of required type: maybe:Active__c --",
        "INVALID_FIELD:Wrong number of columns: expected 3, found 4:--",
    ]
    assert [r["Name"] for r in store.data["Account"].values()] == ["C"]
    assert store.data["Account"][next(iter(store.data["Account"]))]["Active__c"] is True


def test_pipe_delimiter_and_crlf_line_endings(service: BulkService, store: FakeStore) -> None:
    body = {"object": "Account", "operation": "insert", "columnDelimiter": "PIPE", "lineEnding": "CRLF"}
    job_id = _run_ingest(service, body, b'Name|Description\r\nA|x, y\r\n"B|C"|"q"\r\n')

    assert sorted(r["Name"] for r in store.data["Account"].values()) == ["A", "B|C"]
    ids = {r["Name"]: r["Id"] for r in store.data["Account"].values()}
    assert (
        service.successful_results(job_id)
        == (
            '"sf__Id"|"sf__Created"|Name|Description\r\n'
            f'"{ids["A"]}"|"true"|A|x, y\r\n'
            f'"{ids["B|C"]}"|"true"|"B|C"|q\r\n'
        ).encode()
    )


def test_relationship_columns_resolve_parent_external_ids(service: BulkService, store: FakeStore) -> None:
    parent = store.create("Account", {"Name": "Parent", "External_Id__c": "ACC-1"}, user_id=USER_ID)
    job_id = _run_ingest(
        service,
        {"object": "Contact", "operation": "insert"},
        b"LastName,Account.External_Id__c\nLinked,acc-1\nOrphan,NOPE\nLoose,\n",
    )

    contacts = {r["LastName"]: r for r in store.data["Contact"].values()}
    assert contacts["Linked"]["AccountId"] == parent
    assert contacts["Loose"]["AccountId"] is None
    assert "Orphan" not in contacts
    assert _rows(service.failed_results(job_id))[1][1] == (
        "INVALID_FIELD:Foreign key external ID: NOPE not found for field External_Id__c in entity Account:AccountId --"
    )


def test_format_row_error_without_fields() -> None:
    error = ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    assert format_row_error(error) == "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"
    assert format_row_error(ApiError(400, "X", "m", ["A", "B"])) == "X:m:A,B --"


def test_fake_store_satisfies_the_protocol(store: FakeStore) -> None:
    typed: BulkStore = store
    assert typed.schema.get("contact") is not None


# ------------------------------------------------------------------------------------------ query


def _seed_accounts(store: FakeStore, count: int) -> list[str]:
    return [
        store.create("Account", {"Name": f"Acct {n:02d}", "NumberOfEmployees": n}, user_id=USER_ID)
        for n in range(count)
    ]


def test_query_results_page_by_locator_until_null(service: BulkService, store: FakeStore) -> None:
    _seed_accounts(store, 5)
    job_id = service.create_query_job({"operation": "query", "query": "SELECT name, Id FROM Account"})["id"]
    assert service.get_query_job(job_id)["numberRecordsProcessed"] == 5

    pages: list[QueryPage] = []
    locator: str | None = None
    while locator != "null":
        page = service.query_results(job_id, locator, 2)
        pages.append(page)
        locator = page.locator

    assert [p.number_of_records for p in pages] == [2, 2, 1]
    assert pages[-1].locator == "null"
    assert all(p.body.startswith(b'"Name","Id"\n') for p in pages)
    names = [row[0] for p in pages for row in _rows(p.body)[1:]]
    assert names == [f"Acct {n:02d}" for n in range(5)]
    again = service.query_results(job_id, pages[0].locator, 2)
    assert again == pages[1]  # a locator can be reused while the job exists
    everything = service.query_results(job_id, None, None)
    assert (everything.number_of_records, everything.locator) == (5, "null")


def test_query_csv_has_select_order_relationship_columns_and_empty_nulls(
    service: BulkService, store: FakeStore
) -> None:
    account = store.create("Account", {"Name": 'Acme, "Inc"'}, user_id=USER_ID)
    store.create("Contact", {"LastName": "Linked", "AccountId": account}, user_id=USER_ID)
    store.create("Contact", {"LastName": "Alone", "FirstName": "Line\nBreak"}, user_id=USER_ID)
    job_id = service.create_query_job(
        {"operation": "query", "query": "select lastname, account.name, FirstName, IsDeleted from contact"}
    )["id"]

    body = service.query_results(job_id, None, None).body

    assert body == (
        b'"LastName","Account.Name","FirstName","IsDeleted"\n'
        b'"Linked","Acme, ""Inc""","","false"\n'
        b'"Alone","","Line\nBreak","false"\n'
    )


def test_query_all_includes_deleted_rows(service: BulkService, store: FakeStore, runner: FakeRunner) -> None:
    ids = _seed_accounts(store, 3)
    store.delete("Account", ids[1], user_id=USER_ID)
    soql = "SELECT Id, IsDeleted FROM Account"

    query_id = service.create_query_job({"operation": "query", "query": soql})["id"]
    all_id = service.create_query_job({"operation": "queryAll", "query": soql})["id"]

    assert runner.calls == [(soql, False), (soql, True)]
    assert [row for row in _rows(service.query_results(query_id, None, None).body)[1:]] == [
        [ids[0], "false"],
        [ids[2], "false"],
    ]
    assert [row for row in _rows(service.query_results(all_id, None, None).body)[1:]] == [
        [ids[0], "false"],
        [ids[1], "true"],
        [ids[2], "false"],
    ]


def test_query_job_options_delimiter_and_line_ending(service: BulkService, store: FakeStore) -> None:
    _seed_accounts(store, 1)
    job_id = service.create_query_job(
        {
            "operation": "query",
            "query": "SELECT Name, NumberOfEmployees FROM Account",
            "columnDelimiter": "TAB",
            "lineEnding": "CRLF",
        }
    )["id"]
    assert service.query_results(job_id, None, None).body == b'"Name"\t"NumberOfEmployees"\r\n"Acct 00"\t"0"\r\n'


def test_query_errors(service: BulkService, runner: FakeRunner) -> None:
    runner.error = ApiError(400, "INVALID_FIELD", "No such column 'Bogus' on entity 'Account'")
    error = _raises(service.create_query_job, {"operation": "query", "query": "SELECT Bogus FROM Account"})
    assert error.error_code == "INVALID_FIELD"
    assert service.list_query_jobs()["records"] == []
    runner.error = None

    assert _raises(service.create_query_job, {"operation": "insert", "query": "x"}).error_code == "JSON_PARSER_ERROR"
    assert _raises(service.create_query_job, {"operation": "query"}).status == 400

    job_id = service.create_query_job({"operation": "query", "query": "SELECT Id FROM Account"})["id"]
    bad_locator = _raises(service.query_results, job_id, "!!not-a-locator", None)
    assert (bad_locator.status, bad_locator.error_code) == (400, "INVALID_QUERY_LOCATOR")
    assert _raises(service.query_results, job_id, None, 0).status == 400


def test_query_job_abort_and_delete(store: FakeStore, runner: FakeRunner, clock: EpochClock) -> None:
    service = BulkService(store, runner, api_version_default="59.0", clock=clock, user_id=USER_ID, process_delay=10.0)
    job_id = service.create_query_job({"operation": "query", "query": "SELECT Id FROM Account"})["id"]

    assert service.patch_query_job(job_id, {"state": "Aborted"})["state"] == "Aborted"
    assert _raises(service.query_results, job_id, None, None).error_code == "API_ERROR"
    assert _raises(service.patch_query_job, job_id, {"state": "Aborted"}).error_code == "INVALIDJOBSTATE"
    service.delete_query_job(job_id)
    assert _raises(service.get_query_job, job_id).status == 404
