"""SalesforceClient against a MockTransport org that answers with the recorded fixture shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sfsync import salesforce
from sfsync.errors import ConfigError
from sfsync.salesforce import (
    BudgetTracker,
    CompositeSubrequest,
    DailyLimitExceeded,
    MetadataError,
    MultipleMatches,
    RequestLimitExceeded,
    SalesforceClient,
    SalesforceRecordError,
    SalesforceRetriableError,
    SearchObject,
    SessionExpired,
    StaticTokenAuth,
    UnexpectedResponse,
    cond,
    load_settings,
    parse_limit_info,
    select,
)
from sfsync.salesforce.auth import RefreshTokenAuth, token_signature
from sfsync.salesforce.bulk import records_to_csv
from sfsync.salesforce.client import new_transport
from sfsync.salesforce.errors import AuthenticationError, RolledBack
from sfsync.salesforce.limits import ApiBudget
from sfsync.salesforce.settings import SalesforceSettings
from tests.kit import EpochClock, recorded_json, tls_contexts

INSTANCE = "https://na1.salesforce.com"
V = "/services/data/v62.0"
LIMIT_INFO = {"Sforce-Limit-Info": "api-usage=18/5000"}


Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeOrg:
    """Queues answers per (method, path) and records every request; unexpected calls fail the test."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers: Answer) -> FakeOrg:
        self.routes.setdefault((method, path), []).extend(answers)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        assert queue, f"unexpected {request.method} {request.url.path}"
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request) if callable(answer) else answer

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def ok(body: Any = None, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    merged = {**LIMIT_INFO, **(headers or {})}
    if body is None:
        return httpx.Response(status, headers=merged)
    return httpx.Response(status, json=body, headers=merged)


def csv_answer(text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, text=text, headers={"Content-Type": "text/csv", **LIMIT_INFO, **(headers or {})})


def settings(**overrides: Any) -> SalesforceSettings:
    base: dict[str, Any] = {
        "auth_flow": "access_token",
        "access_token": "00Dx0000000BV7z!first",
        "instance_url": INSTANCE,
    }
    return SalesforceSettings(**{**base, **overrides})


def client(org: FakeOrg, rec: EpochClock | None = None, **overrides: Any) -> SalesforceClient:
    rec = rec or EpochClock(1000.0)
    return SalesforceClient(settings(**overrides), transport=httpx.MockTransport(org), sleep=rec.sleep, clock=rec)


# -- transport guarantees -------------------------------------------------------------------------


async def test_every_call_carries_bearer_call_options_and_feeds_the_budget():
    org = FakeOrg().on(
        "GET", f"{V}/sobjects/Account/001A", ok({"Id": "001A"}, headers={"Sforce-Limit-Info": "api-usage=42/15000"})
    )
    async with client(org) as sf:
        await sf.retrieve("Account", "001A")
        budget = sf.budget.latest
    request = org.requests[0]
    assert request.headers["Authorization"] == "Bearer 00Dx0000000BV7z!first"
    assert request.headers["Sforce-Call-Options"] == "client=sfsync"
    assert budget is not None
    assert (budget.used, budget.limit, budget.remaining) == (42, 15000, 14958)


async def test_http_client_uses_the_configured_timeouts():
    org = FakeOrg()
    sf = client(org, read_timeout_s=33.0, connect_timeout_s=4.0)
    timeout = sf._http.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (4.0, 33.0, 60.0, 10.0)
    await sf.aclose()


async def test_invalid_session_refreshes_once_and_replays():
    token = {"id": "https://login.salesforce.com/id/00Dx/005x", "issued_at": "1700000000000"}
    token |= {"access_token": "00Dx0000000BV7z!second", "instance_url": INSTANCE}
    token["signature"] = token_signature("sec", token["id"], token["issued_at"])
    org = (
        FakeOrg()
        .on("POST", "/services/oauth2/token", ok(token))
        .on(
            "GET",
            f"{V}/sobjects/Account/001A",
            httpx.Response(401, json=recorded_json("restforce_error_invalid_session_id.json")),
            ok({"Id": "001A"}),
        )
    )
    auth = RefreshTokenAuth(
        client_id="cid", refresh_token=SecretStr("r"), token_url="https://login.salesforce.com/services/oauth2/token",
        client_secret=SecretStr("sec"),
    )  # fmt: skip
    first = await StaticTokenAuth(access_token=SecretStr("00Dx0000000BV7z!first"), instance_url=INSTANCE).authenticate(
        None
    )  # type: ignore[arg-type]
    rec = EpochClock(1000.0)
    seen: list[str] = []

    async def remember(session):
        seen.append(session.access_token.get_secret_value())

    sf = SalesforceClient(
        settings(), auth=auth, session=first, on_session=remember, transport=httpx.MockTransport(org), sleep=rec.sleep
    )
    async with sf:
        assert await sf.retrieve("Account", "001A") == {"Id": "001A"}
    api = org.calls("GET", f"{V}/sobjects/Account/001A")
    assert [r.headers["Authorization"] for r in api] == [
        "Bearer 00Dx0000000BV7z!first",
        "Bearer 00Dx0000000BV7z!second",
    ]
    assert len(org.calls("POST", "/services/oauth2/token")) == 1
    assert seen == ["00Dx0000000BV7z!second"]
    assert rec.sleeps == []


async def test_a_second_invalid_session_is_raised_not_looped():
    expired = httpx.Response(401, json=recorded_json("restforce_error_invalid_session_id.json"))
    org = FakeOrg().on("GET", f"{V}/limits", expired)
    calls = 0

    class Renewing(StaticTokenAuth):
        async def refresh(self, http, session):
            nonlocal calls
            calls += 1
            return session.model_copy(update={"access_token": SecretStr(f"00Dx0000000BV7z!n{calls}")})

    auth = Renewing(access_token=SecretStr("00Dx0000000BV7z!first"), instance_url=INSTANCE)
    async with SalesforceClient(settings(), auth=auth, transport=httpx.MockTransport(org)) as sf:
        with pytest.raises(SessionExpired):
            await sf.limits()
    assert calls == 1
    assert len(org.requests) == 2


async def test_static_token_expiry_is_fatal():
    org = FakeOrg().on(
        "GET", f"{V}/limits", httpx.Response(401, json=recorded_json("restforce_error_invalid_session_id.json"))
    )
    async with client(org) as sf:
        with pytest.raises(AuthenticationError):
            await sf.limits()


@pytest.mark.parametrize(
    ("method", "answer", "code"),
    [
        (
            "GET",
            httpx.Response(503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "maintenance"}]),
            "SERVER_UNAVAILABLE",
        ),
        ("GET", httpx.Response(500, text="oops"), "HTTP_500"),
        (
            "PATCH",
            httpx.Response(400, json=[{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]),
            "UNABLE_TO_LOCK_ROW",
        ),
        (
            "POST",
            httpx.Response(503, json=[{"errorCode": "SERVER_UNAVAILABLE", "message": "maintenance"}]),
            "SERVER_UNAVAILABLE",
        ),
        (  # a gateway's answer after Salesforce committed the write: HTML, no Salesforce error list
            "POST",
            httpx.Response(504, html="<html><head><title>504 Gateway Time-out</title></head><body>504</body></html>"),
            "HTTP_504",
        ),
    ],
)
async def test_a_retriable_answer_is_sent_once_and_raised_for_the_caller_to_retry(method, answer, code):
    # The client retries nothing (docs/decisions/0006): one HTTP call, the classified error raised,
    # no sleep. A POST that Salesforce may have committed is never resent blind.
    path = {"GET": f"{V}/limits", "PATCH": f"{V}/sobjects/Account/001A", "POST": f"{V}/sobjects/Account/"}[method]
    org = FakeOrg().on(method, path, answer, ok(recorded_json("camel_limits.json")))
    rec = EpochClock(1000.0)
    async with client(org, rec) as sf:
        calls = {
            "GET": lambda: sf.limits(),
            "PATCH": lambda: sf.update("Account", "001A", {"Name": "Acme"}),
            "POST": lambda: sf.create("Account", {"Name": "Acme"}),
        }
        with pytest.raises(SalesforceRetriableError) as info:
            await calls[method]()
    assert info.value.error_code == code
    assert len(org.requests) == 1
    assert rec.sleeps == []


async def test_a_retry_after_header_is_raised_with_the_error_not_slept():
    org = FakeOrg().on(
        "GET", f"{V}/limits", httpx.Response(429, headers={"Retry-After": "7"}), ok(recorded_json("camel_limits.json"))
    )
    rec = EpochClock(1000.0)
    async with client(org, rec) as sf:
        with pytest.raises(RequestLimitExceeded) as info:
            await sf.limits()
    assert info.value.retry_after == 7.0
    assert len(org.requests) == 1 and rec.sleeps == []


async def test_daily_limit_is_raised_at_once_for_the_governor():
    body = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
    org = FakeOrg().on("GET", f"{V}/limits", httpx.Response(403, json=body))
    rec = EpochClock(1000.0)
    async with client(org, rec) as sf:
        with pytest.raises(DailyLimitExceeded) as info:
            await sf.limits()
    assert info.value.retry_after == 3600.0
    assert rec.sleeps == []
    assert len(org.requests) == 1


async def test_the_concurrency_limit_is_raised_with_its_default_wait():
    body = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded."}]
    org = FakeOrg().on("GET", f"{V}/limits", httpx.Response(403, json=body), ok(recorded_json("camel_limits.json")))
    rec = EpochClock(1000.0)
    async with client(org, rec) as sf:
        with pytest.raises(RequestLimitExceeded) as info:
            await sf.limits()
    assert info.value.retry_after == 5.0
    assert len(org.requests) == 1 and rec.sleeps == []


async def test_transport_failures_are_raised_once_whatever_the_method():
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def dropped(request: httpx.Request) -> httpx.Response:  # the connection closed after the write was sent
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    org = FakeOrg().on("POST", f"{V}/sobjects/Account/", refused).on("POST", f"{V}/sobjects/Contact/", slow)
    org.on("GET", f"{V}/sobjects/Contact/003A", slow).on("POST", f"{V}/sobjects/Lead/", dropped)
    rec = EpochClock(1000.0)
    async with client(org, rec) as sf:
        with pytest.raises(SalesforceRetriableError) as connect:
            await sf.create("Account", {"Name": "Acme"})
        with pytest.raises(SalesforceRetriableError) as post_timeout:
            await sf.create("Contact", {"LastName": "X"})
        with pytest.raises(SalesforceRetriableError) as get_timeout:
            await sf.retrieve("Contact", "003A")
        with pytest.raises(SalesforceRetriableError) as post_dropped:
            await sf.create("Lead", {"LastName": "X", "Company": "Y"})
    assert len(org.calls("POST", f"{V}/sobjects/Account/")) == 1
    assert len(org.calls("POST", f"{V}/sobjects/Contact/")) == 1  # a POST that may have landed is not replayed
    assert len(org.calls("GET", f"{V}/sobjects/Contact/003A")) == 1
    assert len(org.calls("POST", f"{V}/sobjects/Lead/")) == 1
    assert (connect.value.error_code, post_timeout.value.error_code) == ("CONNECTION_ERROR", "TIMEOUT")
    assert (post_dropped.value.error_code, post_dropped.value.status) == ("TRANSPORT_ERROR", 0)
    assert isinstance(post_dropped.value.__cause__, httpx.RemoteProtocolError)
    assert isinstance(connect.value.__cause__, httpx.ConnectError)
    assert isinstance(post_timeout.value.__cause__, httpx.ReadTimeout)
    assert isinstance(get_timeout.value.__cause__, httpx.ReadTimeout)
    assert rec.sleeps == []


async def test_non_json_success_body_is_wrapped():
    org = FakeOrg().on("GET", f"{V}/limits", httpx.Response(200, text="<html>maintenance</html>"))
    async with client(org) as sf:
        with pytest.raises(UnexpectedResponse):
            await sf.limits()


# -- org / describe ----------------------------------------------------------------------------


async def test_versions_needs_no_session():
    org = FakeOrg().on("GET", "/services/data/", ok(recorded_json("restforce_versions.json")))
    auth = StaticTokenAuth(access_token=SecretStr("00Dx0000000BV7z!t"), instance_url=INSTANCE)
    async with SalesforceClient(settings(), auth=auth, transport=httpx.MockTransport(org)) as sf:
        versions = await sf.versions()
    assert [v.version for v in versions] == ["20.0", "100"]
    assert "Authorization" not in org.requests[0].headers
    assert org.requests[0].headers["Sforce-Call-Options"] == "client=sfsync"


async def test_limits_update_the_budget_and_record_counts():
    org = FakeOrg().on("GET", f"{V}/limits", httpx.Response(200, json=recorded_json("camel_limits.json")))
    org.on("GET", f"{V}/limits/recordCount", ok(recorded_json("cci_limits_record_count.json")))
    async with client(org) as sf:
        await sf.limits()
        budget = sf.budget.latest
        counts = await sf.record_counts("Account")
    assert budget is not None
    assert (budget.used, budget.limit) == (2, 15000)
    assert counts == {"Account": 1}
    assert org.requests[1].url.params["sObjects"] == "Account"


async def test_describe_is_cached_revalidated_and_invalidated():
    lead = recorded_json("cci_describe_lead.json")
    org = FakeOrg().on(
        "GET",
        f"{V}/sobjects/Lead/describe",
        ok(lead, headers={"Last-Modified": "Fri, 14 Aug 2020 20:53:02 GMT"}),
        httpx.Response(304, headers=LIMIT_INFO),
        ok(lead),
    )
    rec = EpochClock(1000.0)
    async with client(org, rec, describe_ttl_s=60) as sf:
        first = await sf.describe("Lead")
        await sf.describe("lead")  # cached, case-insensitive
        assert len(org.requests) == 1
        rec.now += 61
        again = await sf.describe("Lead")  # stale: conditional GET -> 304
        sf.invalidate("Lead")
        await sf.describe("Lead")
    assert first == again
    assert first.key_prefix == "00Q"
    required = {f.name for f in first.fields if f.required_on_create}
    assert required == {"LastName", "Company"}
    email = first.field("email")
    assert email is not None and email.id_lookup
    status = first.field("Status")
    assert status is not None and any(p.default_value for p in status.picklist_values)
    assert any(r.master for r in first.record_type_infos)
    assert [r.headers.get("If-Modified-Since") for r in org.requests] == [None, "Fri, 14 Aug 2020 20:53:02 GMT", None]


async def test_describe_global_and_unknown_object():
    not_found = recorded_json("cci_composite_subrequest_not_found.json")["compositeResponse"][0]["body"]
    org = FakeOrg().on("GET", f"{V}/sobjects", ok(recorded_json("cci_describe_global_EXCERPT.json")))
    org.on("GET", f"{V}/sobjects/Foo/describe", httpx.Response(404, json=not_found))
    async with client(org) as sf:
        world = await sf.describe_global()
        with pytest.raises(MetadataError):
            await sf.describe("Foo")
    assert world.max_batch_size == 200
    assert {"Account", "Contact", "Lead", "CampaignMember"} <= {s.name for s in world.sobjects}


# -- records ------------------------------------------------------------------------------------


async def test_single_record_crud():
    org = (
        FakeOrg()
        .on("POST", f"{V}/sobjects/Account/", ok(recorded_json("cci_sobject_create_account_201.json"), status=201))
        .on(
            "GET",
            f"{V}/sobjects/Organization/00D0xORGID00000000",
            ok(recorded_json("cci_sobject_get_organization.json")),
        )
        .on("PATCH", f"{V}/sobjects/Account/0015500001QdQWfAAN", httpx.Response(204, headers=LIMIT_INFO))
        .on("DELETE", f"{V}/sobjects/Account/0015500001QdQWfAAN", httpx.Response(204, headers=LIMIT_INFO))
    )
    async with client(org) as sf:
        new_id = await sf.create("Account", {"Name": "Acme", "AnnualRevenue": None})
        org_record = await sf.retrieve("Organization", "00D0xORGID00000000", fields=["Name", "Address"])
        await sf.update("Account", new_id, {"Name": "Acme 2"})
        await sf.delete("Account", new_id)
    assert new_id == "0015500001QdQWfAAN"
    assert json.loads(org.requests[0].content) == {"Name": "Acme", "AnnualRevenue": None}
    assert org.requests[1].url.params["fields"] == "Name,Address"
    assert org_record["attributes"]["type"] == "Organization"
    assert json.loads(org.requests[2].content) == {"Name": "Acme 2"}
    with pytest.raises(ValueError, match="not a valid sObject"):
        await client(FakeOrg()).create("Account/../x", {})


async def test_upsert_semantics():
    path = f"{V}/sobjects/Contact/Email/a@b.org/x"
    created = {"id": "003A", "success": True, "errors": [], "created": True}
    updated = {"id": "003A", "success": True, "errors": [], "created": False}
    org = FakeOrg().on(
        "PATCH",
        path,
        ok(created, status=201),
        ok(updated),
        httpx.Response(204, headers=LIMIT_INFO),
        httpx.Response(300, json=recorded_json("restforce_upsert_300_multiple_choices.json")),
    )
    org.on(
        "PATCH",
        f"{V}/sobjects/Contact/Namez/x",
        httpx.Response(404, json=recorded_json("restforce_upsert_404_bad_extid_field.json")),
    )
    async with client(org) as sf:
        first = await sf.upsert("Contact", "Email", "a@b.org/x", {"LastName": "B"})
        second = await sf.upsert("Contact", "Email", "a@b.org/x", {"LastName": "B"})
        legacy = await sf.upsert("Contact", "Email", "a@b.org/x", {"LastName": "B"})
        with pytest.raises(MultipleMatches) as many:
            await sf.upsert("Contact", "Email", "a@b.org/x", {"LastName": "B"})
        with pytest.raises(MetadataError):
            await sf.upsert("Contact", "Namez", "x", {})
    assert org.requests[0].url.raw_path == b"/services/data/v62.0/sobjects/Contact/Email/a%40b.org%2Fx"
    assert (first.id, first.created) == ("003A", True)
    assert (second.id, second.created) == ("003A", False)
    assert (legacy.id, legacy.created) == (None, False)
    assert many.value.urls == recorded_json("restforce_upsert_300_multiple_choices.json")
    assert isinstance(many.value, SalesforceRecordError)


async def test_record_level_errors_are_skippable():
    body = [
        {
            "fields": ["LastName"],
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
        }
    ]
    org = FakeOrg().on("POST", f"{V}/sobjects/Contact/", httpx.Response(400, json=body))
    rec = EpochClock(1000.0)
    async with client(org, rec) as sf:
        with pytest.raises(SalesforceRecordError) as info:
            await sf.create("Contact", {"FirstName": "X"})
    assert info.value.fields == ["LastName"]
    assert rec.sleeps == []


# -- queries --------------------------------------------------------------------------------------


async def test_query_follows_next_records_url_with_batch_size():
    page1 = recorded_json("restforce_query_page1_nextRecordsUrl.json")
    page2 = {"totalSize": 2, "done": True, "records": [{"attributes": {"type": "Whizbang"}, "Text_Label": "Last Page"}]}
    org = FakeOrg().on("GET", f"{V}/query", ok(page1)).on("GET", "/services/data/v26.0/query/01gD", ok(page2))
    q = select("Text_Label").from_("Whizbang").where("Text_Label", "!=", "it's")
    async with client(org) as sf:
        rows = [r["Text_Label"] async for r in sf.query(q, batch_size=500)]
    assert rows == ["First Page", "Last Page"]
    assert org.requests[0].url.params["q"] == "SELECT Text_Label FROM Whizbang WHERE Text_Label != 'it\\'s'"
    assert [r.headers["Sforce-Query-Options"] for r in org.requests] == ["batchSize=500", "batchSize=500"]
    with pytest.raises(ValueError, match="batch_size"):
        [r async for r in client(FakeOrg()).query("SELECT Id FROM Account", batch_size=100)]


async def test_query_all_relationships_and_counts():
    org = FakeOrg().on("GET", f"{V}/queryAll", ok(recorded_json("cci_query_parent_to_child_subquery.json")))
    count_body = recorded_json("cci_composite_count_and_invalid_type.json")["compositeResponse"][0]["body"]
    org.on("GET", f"{V}/query", ok(count_body))
    async with client(org) as sf:
        rows = [r async for r in sf.query_all("select FirstName, (select Name from Opportunities) from Contact")]
        total = await sf.count_records("Account", cond("Name", "LIKE", "Acme%"))
    assert len(rows) == 17
    assert sum(1 for r in rows if r["Opportunities"] is None) == 15
    assert total == 17
    assert org.requests[1].url.params["q"] == "SELECT COUNT() FROM Account WHERE Name LIKE 'Acme%'"


async def test_search_and_parameterized_search():
    records = [{"attributes": {"type": "Contact"}, "Id": "003A", "Email": "a@b.org"}]
    org = FakeOrg().on("GET", f"{V}/search/", ok({"searchRecords": records}))
    org.on("POST", f"{V}/parameterizedSearch/", ok({"searchRecords": records}))
    async with client(org) as sf:
        found = await sf.search("FIND {a@b.org} IN EMAIL FIELDS RETURNING Contact(Id, Email)")
        again = await sf.parameterized_search(
            "a@b.org", sobjects=[SearchObject("Contact", ["Id", "Email"], limit=5)], in_="EMAIL", overall_limit=10
        )
    assert found == records == again
    assert json.loads(org.requests[1].content) == {
        "q": "a@b.org",
        "sobjects": [{"name": "Contact", "fields": ["Id", "Email"], "limit": 5}],
        "overallLimit": 10,
        "in": "EMAIL",
    }


async def test_malformed_search_is_fatal():
    org = FakeOrg().on(
        "GET", f"{V}/search/", httpx.Response(400, json=recorded_json("restforce_search_error_malformed_search.json"))
    )
    async with client(org) as sf:
        with pytest.raises(MetadataError):
            await sf.search("FIND john")


async def test_get_updated_and_get_deleted():
    org = FakeOrg().on("GET", f"{V}/sobjects/Contact/updated/", ok(recorded_json("restforce_sobject_get_updated.json")))
    org.on("GET", f"{V}/sobjects/Contact/deleted/", ok(recorded_json("restforce_sobject_get_deleted.json")))
    start = datetime(2015, 8, 18, tzinfo=UTC)
    async with client(org) as sf:
        updated = await sf.get_updated("Contact", start, start + timedelta(days=1))
        deleted = await sf.get_deleted("Contact", start, start + timedelta(days=1))
    assert len(updated.ids) == 7
    assert updated.latest_date_covered == datetime(2015, 8, 19, 8, 17, tzinfo=UTC)
    assert deleted.deleted_records[0].id == "a00D0000008pQRAIA2"
    assert deleted.earliest_date_available == datetime(2013, 5, 3, 15, 57, tzinfo=UTC)
    assert deleted.latest_date_covered == datetime(2013, 5, 8, 21, 20, tzinfo=UTC)
    raw_query = org.requests[0].url.query.decode()
    assert "start=2015-08-18T00%3A00%3A00%2B00%3A00" in raw_query
    with pytest.raises(ValueError, match="timezone-aware"):
        await client(FakeOrg()).get_updated("Contact", datetime(2024, 1, 1), datetime(2024, 1, 2))


# -- collections & composite ---------------------------------------------------------------------


async def test_create_many_chunks_by_200_and_keeps_indices():
    def results(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["allOrNone"] is False
        assert all(r["attributes"] == {"type": "Lead"} for r in body["records"])
        out = [{"id": f"00Q{i:015d}", "success": True, "errors": []} for i in range(len(body["records"]))]
        if len(body["records"]) == 50:
            out[3] = {
                "success": False,
                "errors": [
                    {
                        "statusCode": "REQUIRED_FIELD_MISSING",
                        "message": "Required fields are missing: [Company]",
                        "fields": ["Company"],
                    }
                ],
            }
        return ok(out)

    org = FakeOrg().on("POST", f"{V}/composite/sobjects", results)
    leads = [{"LastName": f"L{i}", "Company": "Acme"} for i in range(450)]
    async with client(org) as sf:
        out = await sf.create_many("Lead", leads)
    assert [len(json.loads(r.content)["records"]) for r in org.requests] == [200, 200, 50]
    assert [r.index for r in out] == list(range(450))
    bad = out[403]
    assert not bad.success
    assert bad.id is None
    assert isinstance(bad.errors[0], SalesforceRecordError)
    assert bad.errors[0].fields == ["Company"]
    assert all(r.success and r.created for i, r in enumerate(out) if i != 403)


async def test_create_many_fixture_and_all_or_none_limits():
    org = FakeOrg().on("POST", f"{V}/composite/sobjects", ok(recorded_json("cci_collections_create_leads.json")))
    request_body = recorded_json("cci_collections_create_leads.request.json")
    records = [{k: v for k, v in r.items() if k != "attributes"} for r in request_body["records"]]
    async with client(org) as sf:
        out = await sf.create_many("Lead", records)
        with pytest.raises(ValueError, match="at most 200"):
            await sf.create_many("Lead", [{"LastName": "x"}] * 201, all_or_none=True)
    assert json.loads(org.requests[0].content) == request_body
    assert [r.id for r in out] == ["00Q9H00000C6pycUAB", "00Q9H00000C6pydUAB"]


async def test_upsert_many_reports_created_per_record():
    org = FakeOrg().on(
        "PATCH",
        f"{V}/composite/sobjects/Contact/Email",
        ok(recorded_json("cci_collections_upsert_contact_by_email.json")),
    )
    request_body = recorded_json("cci_collections_upsert_contact_by_email.request.json")
    async with client(org) as sf:
        out = await sf.upsert_many("Contact", "Email", request_body["records"])
    assert json.loads(org.requests[0].content) == request_body
    assert [r.created for r in out] == [False, False, False, True]


async def test_all_or_none_rollback_items_are_retriable_and_culprit_skippable():
    body = [
        {
            "success": False,
            "errors": [
                {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back", "fields": []}
            ],
        },
        {
            "success": False,
            "errors": [
                {"statusCode": "STRING_TOO_LONG", "message": "Last Name: data value too large", "fields": ["LastName"]}
            ],
        },
    ]
    org = FakeOrg().on("PATCH", f"{V}/composite/sobjects", ok(body))
    async with client(org) as sf:
        out = await sf.update_many(
            "Contact", [{"Id": "003A", "LastName": "x"}, {"Id": "003B", "LastName": "y" * 90}], all_or_none=True
        )
        with pytest.raises(ValueError, match="Id"):
            await sf.update_many("Contact", [{"LastName": "x"}])
    assert json.loads(org.requests[0].content)["allOrNone"] is True
    assert isinstance(out[0].errors[0], RolledBack)
    assert isinstance(out[1].errors[0], SalesforceRecordError)


async def test_collection_records_go_typed_first_in_their_field_order_their_own_attributes_replaced():
    org = FakeOrg().on(
        "PATCH",
        f"{V}/composite/sobjects/Contact/Member_Id__c",
        ok([{"id": "003A", "success": True, "errors": [], "created": False}] * 3),
    )
    records = [
        {"Member_Id__c": "u-1", "LastName": "Ng", "Title": None},
        {"Title": "x", "attributes": {"type": "Lead", "url": "/x"}, "Member_Id__c": "u-2"},
        {},
    ]
    async with client(org) as sf:
        await sf.upsert_many("Contact", "Member_Id__c", records)
    sent = org.requests[0].content
    assert sent == (
        b'{"allOrNone":false,"records":['
        b'{"attributes":{"type":"Contact"},"Member_Id__c":"u-1","LastName":"Ng","Title":null},'
        b'{"attributes":{"type":"Contact"},"Title":"x","Member_Id__c":"u-2"},'
        b'{"attributes":{"type":"Contact"}}]}'
    )
    assert records[1]["attributes"] == {"type": "Lead", "url": "/x"}  # the caller's records are left as they are


async def test_update_records_given_their_ids_apart_go_out_byte_for_byte_as_records_carrying_them():
    answer = ok([{"id": "003A", "success": True, "errors": []}, {"id": "003B", "success": True, "errors": []}])
    org = FakeOrg().on("PATCH", f"{V}/composite/sobjects", answer)
    bodies = [{"LastName": "Ng", "Title": None}, {"attributes": {"type": "Lead"}, "Title": "x"}]
    async with client(org) as sf:
        await sf.update_many("Contact", [{"Id": i, **b} for i, b in zip(["003A", "003B"], bodies, strict=True)])
        apart = await sf.update_many("Contact", bodies, ids=["003A", "003B"])
        with pytest.raises(ValueError, match="one Id per record"):
            await sf.update_many("Contact", bodies, ids=["003A"])
        with pytest.raises(ValueError, match="one Id per record"):
            await sf.update_many("Contact", bodies, ids=["003A", ""])
    assert [r.id for r in apart] == ["003A", "003B"]
    carried, given = (r.content for r in org.requests)
    assert given == carried
    assert given.startswith(b'{"allOrNone":false,"records":[{"attributes":{"type":"Contact"},"Id":"003A","LastName"')
    assert bodies[0] == {"LastName": "Ng", "Title": None}  # the caller's records are left as they are


async def test_delete_many_and_retrieve_many():
    deleted = [
        {"id": "003A", "success": True, "errors": []},
        {
            "success": False,
            "errors": [{"statusCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}],
        },
    ]
    org = FakeOrg().on("DELETE", f"{V}/composite/sobjects", ok(deleted))
    org.on("POST", f"{V}/composite/sobjects/Contact", ok([{"attributes": {"type": "Contact"}, "Id": "003A"}, None]))
    async with client(org) as sf:
        out = await sf.delete_many(["003A", "003B"])
        got = await sf.retrieve_many("Contact", ["003A", "003B"], ["Id"])
    assert org.requests[0].url.params["ids"] == "003A,003B"
    assert org.requests[0].url.params["allOrNone"] == "false"
    assert out[0].success
    assert isinstance(out[1].errors[0], SalesforceRecordError)
    assert json.loads(org.requests[1].content) == {"ids": ["003A", "003B"], "fields": ["Id"]}
    assert got[1] is None
    assert got[0] is not None and got[0]["Id"] == "003A"


async def test_composite_with_references_and_per_subrequest_errors():
    org = FakeOrg().on("POST", f"{V}/composite", ok(recorded_json("cci_composite_count_and_invalid_type.json")))
    subrequests = [
        CompositeSubrequest("GET", "query/?q=select count() from Account", "refAccount"),
        CompositeSubrequest("GET", "/services/data/v62.0/query/?q=select count() from XYZZY", "refXYZZY"),
    ]
    async with client(org) as sf:
        out = await sf.composite(subrequests, all_or_none=True)
        with pytest.raises(ValueError, match="1 to 25"):
            await sf.composite([CompositeSubrequest("GET", "limits", f"r{i}") for i in range(26)])
        with pytest.raises(ValueError, match="unique"):
            await sf.composite(
                [CompositeSubrequest("GET", "limits", "dup"), CompositeSubrequest("GET", "limits", "dup")]
            )
    sent = json.loads(org.requests[0].content)
    assert sent["allOrNone"] is True
    assert sent["compositeRequest"][0] == {
        "method": "GET",
        "url": "/services/data/v62.0/query/?q=select count() from Account",
        "referenceId": "refAccount",
    }
    assert out[0].error is None
    assert out[0].body["totalSize"] == 17
    assert isinstance(out[1].error, MetadataError)
    assert out[1].error.error_code == "INVALID_TYPE"


async def test_composite_304_subresponses_have_no_error():
    org = FakeOrg().on("POST", f"{V}/composite", ok(recorded_json("cci_composite_304_if_modified_since.json")))
    async with client(org) as sf:
        out = await sf.composite(
            [
                CompositeSubrequest(
                    "GET", "sobjects", "g", http_headers={"If-Modified-Since": "Thu, 03 Sep 2020 21:35:07 GMT"}
                )
            ]
        )
    assert out[0].status == 304
    assert out[0].error is None
    assert out[0].headers["ETag"] == '"baf7f695"'


async def test_collections_go_as_one_composite_call_each_subrequest_with_its_own_outcome():
    saved = [{"id": "003A", "success": True, "errors": []}, {"id": "003B", "success": True, "errors": []}]
    upserted = [{"id": "701A", "success": True, "errors": [], "created": True}]
    refused = [{"errorCode": "INVALID_FIELD", "message": "No such column 'Nope__c' on Campaign", "fields": []}]
    locked = [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access"}]
    deleted = [{"id": "00QA", "success": True, "errors": []}]

    def answer(status: int, body: Any, ref: str) -> dict[str, Any]:
        return {"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref}

    composite = {
        "compositeResponse": [
            answer(200, saved, "c0"),
            answer(200, upserted, "c1"),
            answer(400, refused, "c2"),
            answer(503, locked, "c3"),
            answer(200, deleted, "c4"),
        ]
    }
    org = FakeOrg().on("POST", "/services/data/v58.0/composite", ok(composite))
    ops = [
        # the records' Ids apart (as the sink gives them): each goes out {"attributes", "Id", its fields}
        salesforce.CollectionOp("update", "Contact", [{"Title": "x"}, {"Title": "y"}], ids=["003A", "003B"]),
        salesforce.CollectionOp("upsert", "Campaign", [{"Event_Id__c": "e1", "Name": "M"}], ext_field="Event_Id__c"),
        salesforce.CollectionOp("upsert", "Campaign", [{"Event_Id__c": "e2", "Nope__c": 1}], ext_field="Event_Id__c"),
        salesforce.CollectionOp("create", "Contact", [{"LastName": "Z"}]),
        salesforce.CollectionOp("delete", ids=["00QA"]),
    ]
    async with client(org, api_version="58.0") as sf:
        out = await sf.collections(ops)
        with pytest.raises(ValueError, match="1 to 5"):
            await sf.collections([*ops, ops[0]])
        with pytest.raises(ValueError, match="at most 200"):
            await sf.collections([salesforce.CollectionOp("create", "Contact", [{"LastName": "Z"}] * 201)])
    (request,) = org.requests  # one call for the five
    sent = json.loads(request.content)
    assert sent["allOrNone"] is False and sent["collateSubrequests"] is False
    assert [(s["method"], s["url"], s["referenceId"]) for s in sent["compositeRequest"]] == [
        ("PATCH", "/services/data/v58.0/composite/sobjects", "c0"),
        ("PATCH", "/services/data/v58.0/composite/sobjects/Campaign/Event_Id__c", "c1"),
        ("PATCH", "/services/data/v58.0/composite/sobjects/Campaign/Event_Id__c", "c2"),
        ("POST", "/services/data/v58.0/composite/sobjects", "c3"),
        ("DELETE", "/services/data/v58.0/composite/sobjects?ids=00QA&allOrNone=false", "c4"),
    ]
    assert sent["compositeRequest"][0]["body"] == {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "Id": "003A", "Title": "x"},
            {"attributes": {"type": "Contact"}, "Id": "003B", "Title": "y"},
        ],
    }
    assert b'{"attributes":{"type":"Contact"},"Id":"003A","Title":"x"}' in request.content
    updates, upserts, invalid, lock, deletes = out
    assert isinstance(updates, list) and [(r.index, r.id, r.created) for r in updates] == [
        (0, "003A", False),
        (1, "003B", False),
    ]
    assert isinstance(upserts, list) and upserts[0].created is True
    assert isinstance(invalid, MetadataError) and invalid.error_code == "INVALID_FIELD"  # as a top-level 400 would be
    assert isinstance(lock, SalesforceRetriableError) and lock.status == 503
    assert isinstance(deletes, list) and deletes[0].success


async def test_collections_whole_request_failure_raises_like_a_single_call():
    org = FakeOrg().on("POST", f"{V}/composite", ok([{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}], 503))
    ops = [salesforce.CollectionOp("create", "Contact", [{"LastName": "Z"}])] * 2
    async with client(org) as sf:
        with pytest.raises(SalesforceRetriableError):
            await sf.collections(ops)
        old = client(FakeOrg(), api_version="42.0")
        with pytest.raises(ValueError, match=r"43\.0"):
            await old.collections(ops)  # nothing sent: FakeOrg would fail the test on any request
        await old.aclose()


async def test_queries_go_as_one_composite_call_each_with_its_records_or_its_error():
    recorded = recorded_json("cci_composite_count_and_invalid_type.json")["compositeResponse"]
    page1 = recorded_json("restforce_query_page1_nextRecordsUrl.json")
    page2 = {"totalSize": 2, "done": True, "records": [{"attributes": {"type": "Whizbang"}, "Text_Label": "Last Page"}]}
    busy = [{"errorCode": "QUERY_TIMEOUT", "message": "Your query request was running for too long."}]
    composite = {
        "compositeResponse": [
            {**recorded[0], "referenceId": "q0"},
            {"body": page1, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": "q1"},
            {**recorded[1], "referenceId": "q2"},
            {"body": busy, "httpHeaders": {}, "httpStatusCode": 503, "referenceId": "q3"},
        ]
    }
    org = FakeOrg().on("POST", f"{V}/composite", ok(composite))
    org.on("GET", "/services/data/v26.0/query/01gD", ok(page2))
    soqls = [
        "SELECT COUNT() FROM Account",
        select("Text_Label").from_("Whizbang").where("Text_Label", "!=", "it's & more"),
        "select count() from XYZZY",
        "SELECT Id FROM Contact",
    ]
    further: list[int] = []

    async def before_next_page() -> None:
        further.append(len(org.requests))

    async with client(org) as sf:
        counted, whizbangs, invalid, timeout = await sf.queries(soqls, before_next_page=before_next_page)
        with pytest.raises(ValueError, match="1 to 5"):
            await sf.queries([*soqls, *soqls])
    assert len(org.requests) == 2  # the composite, then the one further page (a call of its own)
    assert further == [1]  # the hook heard of the further page before it was asked for
    sent = json.loads(org.requests[0].content)
    assert sent["allOrNone"] is False and sent["collateSubrequests"] is False
    subrequests = sent["compositeRequest"]
    assert [(s["method"], s["referenceId"]) for s in subrequests] == [("GET", f"q{i}") for i in range(4)]
    urls = [httpx.URL(s["url"]) for s in subrequests]
    assert {u.path for u in urls} == {f"{V}/query/"}
    assert [u.params["q"] for u in urls] == [str(q) for q in soqls]  # URL-encoded, decoded back the same
    assert counted == []
    assert isinstance(whizbangs, list) and [r["Text_Label"] for r in whizbangs] == ["First Page", "Last Page"]
    assert isinstance(invalid, MetadataError) and invalid.error_code == "INVALID_TYPE"  # as a top-level 400 would be
    assert isinstance(timeout, SalesforceRetriableError) and timeout.status == 503


async def test_queries_a_failed_further_page_is_that_querys_error_and_a_whole_failure_raises():
    first = {"totalSize": 3000, "done": False, "nextRecordsUrl": f"{V}/query/01gX-2000", "records": [{"Id": "003A"}]}
    done = {"totalSize": 1, "done": True, "records": [{"Id": "00QA"}]}
    composite = {
        "compositeResponse": [
            {"body": first, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": "q0"},
            {"body": done, "httpHeaders": {}, "httpStatusCode": 200, "referenceId": "q1"},
        ]
    }
    expired = [{"errorCode": "INVALID_QUERY_LOCATOR", "message": "invalid query locator"}]
    org = FakeOrg().on("POST", f"{V}/composite", ok(composite))
    org.on("GET", f"{V}/query/01gX-2000", ok(expired, 400))
    async with client(org) as sf:
        contacts, leads = await sf.queries(["SELECT Id FROM Contact", "SELECT Id FROM Lead"])
    assert isinstance(contacts, salesforce.SalesforceError) and contacts.error_code == "INVALID_QUERY_LOCATOR"
    assert leads == [{"Id": "00QA"}]

    down = FakeOrg().on("POST", f"{V}/composite", ok([{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}], 503))
    async with client(down) as sf:
        with pytest.raises(SalesforceRetriableError):
            await sf.queries(["SELECT Id FROM Contact", "SELECT Id FROM Lead"])
        old = client(FakeOrg(), api_version="42.0")
        with pytest.raises(ValueError, match=r"43\.0"):
            await old.queries(["SELECT Id FROM Contact"])  # nothing sent: FakeOrg would fail the test on any request
        await old.aclose()


# -- Bulk API 2.0 ---------------------------------------------------------------------------------


async def test_bulk_ingest_lifecycle():
    job = recorded_json("restforce_bulk2_ingest_create_job.json")
    jid = job["id"]
    base = f"{V}/jobs/ingest/{jid}"
    in_progress = {**job, "state": "InProgress"}
    done = {**job, "state": "JobComplete", "numberRecordsProcessed": 2, "numberRecordsFailed": 1}
    org = (
        FakeOrg()
        .on("POST", f"{V}/jobs/ingest", ok(job))
        .on("PUT", f"{base}/batches", httpx.Response(201, headers=LIMIT_INFO))
        .on("PATCH", base, ok({**job, "state": "UploadComplete"}))
        .on("GET", base, ok(in_progress), ok(in_progress), ok(done))
        .on(
            "GET",
            f"{base}/successfulResults/",
            csv_answer('"sf__Id","sf__Created",Name\n"0012f000007uKgsAAE","true","Foo Bar"\n'),
        )
        .on(
            "GET",
            f"{base}/failedResults/",
            csv_answer(
                '"sf__Id","sf__Error",Name\n"","REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name--",""\n'
            ),
        )
    )
    rec = EpochClock(1000.0)
    async with client(org, rec, bulk_poll_initial_s=1.0, bulk_poll_max_s=1.5) as sf:
        result = await sf.bulk_ingest(
            "Account", "insert", [{"Name": "Foo Bar", "Site": None}, {"Name": "", "Site": "x"}]
        )
    upload = org.calls("PUT", f"{base}/batches")[0]
    assert upload.headers["Content-Type"] == "text/csv"
    assert upload.content.decode() == "Name,Site\nFoo Bar,#N/A\n,x\n"
    assert json.loads(org.calls("PATCH", base)[0].content) == {"state": "UploadComplete"}
    assert json.loads(org.requests[0].content)["object"] == "Account"
    assert rec.sleeps == [1.0, 1.5]
    assert result.job.state == "JobComplete"
    assert result.successful[0].id == "0012f000007uKgsAAE"
    assert result.successful[0].created is True
    assert result.successful[0].row == {"Name": "Foo Bar"}
    failure = result.failed[0]
    assert failure.id is None
    assert isinstance(failure.error, SalesforceRecordError)
    assert failure.error.fields == ["Name"]
    assert result.unprocessed == []


async def test_bulk_ingest_failed_job_fetches_unprocessed_rows():
    job = recorded_json("restforce_bulk2_ingest_create_job.json")
    base = f"{V}/jobs/ingest/{job['id']}"
    org = (
        FakeOrg()
        .on("POST", f"{V}/jobs/ingest", ok(job))
        .on("PUT", f"{base}/batches", httpx.Response(201, headers=LIMIT_INFO))
        .on("PATCH", base, ok({**job, "state": "UploadComplete"}))
        .on("GET", base, ok({**job, "state": "Failed", "errorMessage": "InvalidBatch"}))
        .on("GET", f"{base}/successfulResults/", csv_answer('"sf__Id","sf__Created",Name\n'))
        .on("GET", f"{base}/failedResults/", csv_answer('"sf__Id","sf__Error",Name\n'))
        .on("GET", f"{base}/unprocessedrecords/", csv_answer("Name\nFoo\n"))
    )
    async with client(org) as sf:
        result = await sf.bulk_ingest("Account", "insert", "Name\nFoo\n")
    assert result.job.state == "Failed"
    assert result.job.error_message == "InvalidBatch"
    assert result.unprocessed == [{"Name": "Foo"}]


async def test_bulk_upload_that_is_not_201_aborts_the_job():
    job = recorded_json("restforce_bulk2_ingest_create_job.json")
    base = f"{V}/jobs/ingest/{job['id']}"
    org = (
        FakeOrg()
        .on("POST", f"{V}/jobs/ingest", ok(job))
        .on("PUT", f"{base}/batches", httpx.Response(400, json=[{"errorCode": "INVALIDENTITY", "message": "bad csv"}]))
        .on("PATCH", base, ok({**job, "state": "Aborted"}))
    )
    async with client(org) as sf:
        with pytest.raises(MetadataError):
            await sf.bulk_ingest("Account", "insert", "Name\nFoo\n")
    assert json.loads(org.calls("PATCH", base)[0].content) == {"state": "Aborted"}


async def test_bulk_poll_is_bounded_by_the_timeout():
    job = recorded_json("restforce_bulk2_ingest_create_job.json")
    org = FakeOrg().on("GET", f"{V}/jobs/ingest/{job['id']}", ok({**job, "state": "InProgress"}))
    async with client(org, bulk_timeout_s=10.0, bulk_poll_initial_s=2.0, bulk_poll_max_s=4.0) as sf:
        with pytest.raises(SalesforceRetriableError, match="still InProgress"):
            await sf.wait_for_job(job["id"])
    assert 3 <= len(org.requests) <= 5


async def test_bulk_query_pages_by_locator():
    info = recorded_json("airbyte_bulk2_query_job_info.json")
    base = f"{V}/jobs/query/{info['id']}"
    org = (
        FakeOrg()
        .on("POST", f"{V}/jobs/query", ok(info))
        .on("GET", base, ok({**info, "state": "JobComplete"}))
        .on(
            "GET",
            f"{base}/results",
            csv_answer('"Id","Name"\n"001A","A"\n', {"Sforce-Locator": "MTAwMDA", "Sforce-NumberOfRecords": "1"}),
            csv_answer('"Id","Name"\n"001B","B, Inc."\n', {"Sforce-Locator": "null", "Sforce-NumberOfRecords": "1"}),
        )
    )
    async with client(org) as sf:
        rows = [r async for r in sf.bulk_query("SELECT Id, Name FROM Account", include_deleted=True, max_records=50000)]
    assert rows == [{"Id": "001A", "Name": "A"}, {"Id": "001B", "Name": "B, Inc."}]
    assert json.loads(org.requests[0].content) == {"operation": "queryAll", "query": "SELECT Id, Name FROM Account"}
    pages = org.calls("GET", f"{base}/results")
    assert "locator" not in pages[0].url.params
    assert pages[1].url.params["locator"] == "MTAwMDA"
    assert pages[1].url.params["maxRecords"] == "50000"


def test_records_to_csv_quotes_and_nulls():
    text = records_to_csv([{"attributes": {"type": "X"}, "A": 'say "hi", ok', "B": True}, {"C": None}])
    assert text == 'A,B,C\n"say ""hi"", ok",true,\n,,#N/A\n'


# -- limits & settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("api-usage=18/5000", (18, 5000, 4982)),
        ("api-usage=18/5000; api-bursts=1/750", (18, 5000, 4982)),
        ("api-usage=25/5000; per-app-api-usage=17/250(appName=sfsync)", (25, 5000, 4975)),
        ("api-usage=5001/5000", (5001, 5000, 0)),
        ("per-app-api-usage=17/250(appName=sfsync)", None),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_parse_limit_info(header, expected):
    budget = parse_limit_info(header)
    if expected is None:
        assert budget is None
    else:
        assert budget is not None
        assert (budget.used, budget.limit, budget.remaining) == expected
        assert budget.ratio == pytest.approx(expected[0] / expected[1])


def test_per_app_usage_is_parsed():
    budget = parse_limit_info("api-usage=25/5000; per-app-api-usage=17/250(appName=sfsync)")
    assert budget is not None
    app = budget.app("sfsync")
    assert app is not None and (app.used, app.limit) == (17, 250)


def test_budget_tracker_keeps_the_newest_and_is_thread_safe():
    tracker = BudgetTracker()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    tracker.update(ApiBudget(10, 100, t0 + timedelta(seconds=5)))
    tracker.update(ApiBudget(5, 100, t0))  # older, arrives late
    latest = tracker.latest
    assert latest is not None and latest.used == 10

    def spam(offset: int) -> None:
        for i in range(200):
            tracker.observe(f"api-usage={offset + i}/100000", t0 + timedelta(seconds=10 + offset + i))

    threads = [threading.Thread(target=spam, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latest = tracker.latest
    assert latest is not None and latest.used == 3199


def test_settings_defaults_and_env(monkeypatch):
    monkeypatch.setenv("SALESFORCE_AUTH_FLOW", "client_credentials")
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "cid")
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "shh-secret")
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", "https://acme.my.salesforce.com/")
    loaded = load_settings()
    assert loaded.api_version == "62.0"
    assert loaded.login_url == "https://acme.my.salesforce.com"
    assert loaded.call_options == "client=sfsync"
    assert loaded.token_url == "https://acme.my.salesforce.com/services/oauth2/token"
    assert "shh-secret" not in repr(loaded)
    assert isinstance(loaded.timeout(), httpx.Timeout)


def test_settings_report_every_problem_at_once():
    with pytest.raises(ConfigError) as fields_info:
        load_settings(api_version="sixty", login_url="ftp://x", read_timeout_s=0, auth_flow="password")
    assert len(fields_info.value.problems) == 3
    with pytest.raises(ConfigError) as creds_info:
        load_settings(auth_flow="password", client_id="cid", max_retries=2)
    problems = creds_info.value.problems
    assert any("CLIENT_SECRET" in p for p in problems)
    assert any("USERNAME" in p for p in problems)
    assert any("PASSWORD" in p for p in problems)
    assert any("SALESFORCE_MAX_RETRIES is no longer read" in p for p in problems)


def test_the_removed_retry_settings_are_refused_naming_what_replaced_them(monkeypatch):
    monkeypatch.setenv("SALESFORCE_MAX_RETRIES", "0")
    monkeypatch.setenv("SALESFORCE_BACKOFF_MAX_S", "30")
    with pytest.raises(ConfigError) as info:
        load_settings(auth_flow="access_token", access_token="t", instance_url=INSTANCE, max_retry_wait_s=60)
    problems = "\n".join(info.value.problems)
    assert len(info.value.problems) == 3, problems
    assert "SALESFORCE_MAX_RETRIES is no longer read" in problems and "SFSYNC_SINK_RETRY_TIMEOUT_S" in problems
    assert "SALESFORCE_BACKOFF_MAX_S is no longer read" in problems and "SFSYNC_SINK_RETRY_WAIT_MAX_S" in problems
    assert "SALESFORCE_MAX_RETRY_WAIT_S is no longer read" in problems and "SFSYNC_GOVERNOR_PAUSE_S" in problems


def test_public_api_is_curated():

    assert salesforce.__all__ == sorted(salesforce.__all__)
    assert all(hasattr(salesforce, name) for name in salesforce.__all__)
    assert isinstance(RequestLimitExceeded("x"), SalesforceRetriableError)


@pytest.mark.parametrize("setting", ["login_url", "instance_url", "redirect_uri"])
@pytest.mark.parametrize(
    "url", ["http://login.salesforce.com", "http://acme.my.salesforce.com", "http://10.0.0.7:8443"]
)
def test_a_salesforce_url_in_clear_is_refused_unless_it_is_this_machine(setting, url):
    given = {"auth_flow": "access_token", "access_token": "00Dx0000000BV7z!t", "instance_url": INSTANCE, setting: url}
    with pytest.raises(ConfigError) as refused:
        load_settings(**given)
    assert any("https://" in p and url in p for p in refused.value.problems)


@pytest.mark.parametrize("setting", ["login_url", "instance_url", "redirect_uri", "jwt_audience"])
@pytest.mark.parametrize("url", ["http://alice:s3cret@acme.my.salesforce.com/x", "htps://alice:s3cret@acme.example"])
def test_a_refused_salesforce_url_is_named_without_its_credentials(setting, url):
    given = {"auth_flow": "access_token", "access_token": "00Dx0000000BV7z!t", "instance_url": INSTANCE, setting: url}
    if setting == "jwt_audience":
        given[setting] = url.replace("http", "ldap", 1)
    with pytest.raises(ConfigError) as refused:
        load_settings(**given)
    assert "s3cret" not in f"{refused.value}{refused.value!r}"
    assert any(setting in p and "://acme." in p for p in refused.value.problems)


@pytest.mark.parametrize("url", ["http://127.0.0.1:18443", "http://localhost:18443", "http://[::1]:18443"])
def test_an_emulator_on_this_machine_may_be_reached_over_http(url):
    assert settings(instance_url=url, login_url=url).instance_url == url


async def test_the_clients_and_transports_of_many_orgs_share_one_tls_context():
    before = tls_contexts()
    clients = [SalesforceClient(settings(instance_url=f"https://org{i}.my.salesforce.com")) for i in range(10)]
    transports = [new_transport() for _ in range(10)]
    try:
        assert tls_contexts() - before <= 1  # the shared one, made on first use; not one CA bundle per org
    finally:
        for made in clients:
            await made.aclose()
        for transport in transports:
            await transport.aclose()
