"""The faults a chaos run injects, set through the admin API and seen by real clients over real HTTP
(uvicorn on loopback): commit-then-504, commit-then-drop, failing triggers, a daily allocation that runs
out mid-run, sessions that expire on a schedule; and how our Salesforce client classifies each answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from pydantic import SecretStr
from simple_salesforce import Salesforce

from sfsync.emulator.connection_drop import ConnectionDropped
from sfsync.emulator.faults import Faults, FaultSpecError
from sfsync.emulator.server import RunningEmulator, build, serve_in_thread
from sfsync.salesforce import ClientCredentialsAuth, DailyLimitExceeded, SalesforceClient
from sfsync.salesforce.errors import SalesforceRecordError, SalesforceRetriableError
from sfsync.salesforce.settings import SalesforceSettings
from tests.emulator.conftest import Org
from tests.kit.sink import InProcessOrg

V = "/services/data/v62.0"
TRIGGER = "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"


@pytest.fixture(scope="module")
def served() -> Iterator[RunningEmulator]:
    running = serve_in_thread()
    yield running
    running.stop()


class HttpOrg:
    """An emulator on loopback and an httpx client logged in to it as the integration user."""

    def __init__(self, running: RunningEmulator, http: httpx.Client) -> None:
        self.running = running
        self.http = http

    def faults(self, spec: str) -> dict[str, Any]:
        response = self.http.post("/__admin/faults", json={"spec": spec})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def injected(self) -> dict[str, int]:
        return dict(self.http.get("/__admin/stats").json()["faults"]["injected"])

    def count(self, soql_where: str = "") -> int:
        q = f"SELECT COUNT() FROM Contact {soql_where}".strip()
        response = self.http.get(f"{V}/query", params={"q": q})
        assert response.status_code == 200, response.text
        return int(response.json()["totalSize"])


@pytest.fixture
def org(served: RunningEmulator) -> Iterator[HttpOrg]:
    served.emulator.admin_reset({})
    served.emulator.faults = Faults()
    served.emulator.daily_limit = 1_000_000
    token = served.emulator.auth.issue_session().access_token
    with httpx.Client(base_url=served.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        yield HttpOrg(served, http)


def contacts(*emails: str) -> list[dict[str, Any]]:
    return [{"attributes": {"type": "Contact"}, "LastName": f"L{i}", "Email": e} for i, e in enumerate(emails)]


def our_client(running: RunningEmulator) -> SalesforceClient:
    app = running.emulator.auth.config.connected_apps[0]
    settings = SalesforceSettings(
        instance_url=running.base_url,
        login_url=running.base_url,
        auth_flow="client_credentials",
        client_id=app.client_id,
        client_secret=SecretStr(app.client_secret),
    )
    auth = ClientCredentialsAuth(
        client_id=app.client_id,
        client_secret=SecretStr(app.client_secret),
        token_url=f"{running.base_url}/services/oauth2/token",
    )
    return SalesforceClient(settings, auth=auth)


# ---------------------------------------------------------------------- commit, then a 504
def test_a_create_answered_504_after_its_commit_is_found_by_a_later_query(org: HttpOrg) -> None:
    org.faults("script=commit504")
    lost = org.http.post(f"{V}/sobjects/Contact", json={"LastName": "Lost", "Email": "lost@example.com"})
    assert lost.status_code == 504
    assert lost.headers["content-type"].startswith("text/html")
    assert lost.text.startswith("<html>") and "504 Gateway Time-out" in lost.text
    assert "Sforce-Limit-Info" not in lost.headers  # a gateway's answer, not Salesforce's
    assert org.count("WHERE Email = 'lost@example.com'") == 1
    assert org.injected() == {"commit504": 1}


def test_the_commit504_rate_hits_every_kind_of_write_and_no_read(org: HttpOrg) -> None:
    org.faults("commit504=1")
    assert org.http.get(f"{V}/limits").status_code == 200
    created = org.http.post(f"{V}/composite/sobjects", json={"records": contacts("a@x.test", "b@x.test")})
    assert created.status_code == 504
    org.faults("")
    ids = [r["Id"] for r in org.http.get(f"{V}/query", params={"q": "SELECT Id FROM Contact"}).json()["records"]]
    assert len(ids) == 2
    org.faults("commit504=1")
    updates = [{"attributes": {"type": "Contact"}, "Id": i, "Title": "Updated"} for i in ids]
    assert org.http.patch(f"{V}/composite/sobjects", json={"records": updates}).status_code == 504
    assert org.http.patch(f"{V}/sobjects/Contact/Email/c@x.test", json={"LastName": "C"}).status_code == 504
    composite = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "d", "body": {"LastName": "D"}}
        ],
    }
    assert org.http.post(f"{V}/composite", json=composite).status_code == 504
    assert org.http.delete(f"{V}/sobjects/Contact/{ids[0]}").status_code == 504
    org.faults("")
    assert org.count("WHERE Title = 'Updated'") == 1  # the other one was deleted after its update
    assert org.count("WHERE Email = 'c@x.test'") == 1
    assert org.count("WHERE LastName = 'D'") == 1
    assert org.count() == 3


async def test_our_client_raises_a_commit_504_as_retriable_and_sends_it_once(org: HttpOrg) -> None:
    org.faults("script=ok|commit504")  # ok: the client's login is not a REST call; the first REST call is
    async with our_client(org.running) as sf:
        await sf.limits()
        with pytest.raises(SalesforceRetriableError) as err:
            await sf.create("Contact", {"LastName": "Twice?", "Email": "once@example.com"})
    assert err.value.status == 504
    assert org.count("WHERE Email = 'once@example.com'") == 1


# ---------------------------------------------------------------------- commit, then the connection closes
def test_a_dropped_connection_after_the_commit_answers_nothing_yet_the_record_exists(org: HttpOrg) -> None:
    org.faults("script=commitdrop")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        org.http.post(f"{V}/sobjects/Contact", json={"LastName": "Dropped", "Email": "dropped@example.com"})
    assert org.count("WHERE Email = 'dropped@example.com'") == 1  # a new connection, served as usual
    assert org.injected() == {"commitdrop": 1}


def test_the_commitdrop_rate_drops_collection_writes_after_their_commit(org: HttpOrg) -> None:
    org.faults("commitdrop=1")
    assert org.http.get(f"{V}/limits").status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        org.http.post(f"{V}/composite/sobjects", json={"records": contacts("p@x.test", "q@x.test", "r@x.test")})
    org.faults("")
    assert org.count() == 3


async def test_our_client_raises_a_dropped_connection_as_a_retriable_transport_error(org: HttpOrg) -> None:
    org.faults("script=ok|commitdrop")
    async with our_client(org.running) as sf:
        await sf.limits()
        with pytest.raises(SalesforceRetriableError) as err:
            await sf.create("Contact", {"LastName": "Dropped", "Email": "ours@example.com"})
        assert await sf.create("Contact", {"LastName": "Next"})  # the client goes on with a new connection
    assert (err.value.status, err.value.error_code) == (0, "TRANSPORT_ERROR")
    assert isinstance(err.value.__cause__, httpx.TransportError)
    assert org.count("WHERE Email = 'ours@example.com'") == 1


def test_simple_salesforce_over_tls_sees_a_connection_error_for_a_dropped_commit() -> None:
    running = serve_in_thread(tls=True, faults="script=commitdrop")
    try:
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(running.ca_file)
            session.headers["Connection"] = "close"  # no idle connection for the server's stop to wait on
            token = running.emulator.auth.issue_session().access_token
            sf = Salesforce(instance_url=running.base_url, session_id=token, session=session, version="62.0")
            with pytest.raises(requests.ConnectionError):
                sf.Contact.create({"LastName": "Dropped", "Email": "tls@example.com"})
            assert sf.query("SELECT Id FROM Contact WHERE Email = 'tls@example.com'")["totalSize"] == 1
    finally:
        running.stop()


async def test_an_in_process_client_sees_a_dropped_connection_as_over_a_socket() -> None:
    emulator = build(faults="script=commitdrop")
    token = emulator.auth.issue_session().access_token
    async with httpx.AsyncClient(transport=InProcessOrg(emulator), base_url="https://127.0.0.1") as http:
        with pytest.raises(httpx.RemoteProtocolError) as err:
            await http.post(
                f"{V}/sobjects/Contact", json={"LastName": "X"}, headers={"Authorization": f"Bearer {token}"}
            )
    assert isinstance(err.value.__cause__, ConnectionDropped)
    assert emulator.store.count("Contact") == 1


# ---------------------------------------------------------------------- a trigger or Flow that fails
def test_a_trigger_fails_only_the_matching_records_of_a_collection(org: HttpOrg) -> None:
    org.faults("trigger_match=Email:bad@")
    emails = ("ok1@x.test", "bad@x.test", "ok2@x.test", "BAD@y.test", "ok3@x.test", "notbad@x.test")
    results = org.http.post(f"{V}/composite/sobjects", json={"records": contacts(*emails)}).json()
    failed = [emails[i] for i, r in enumerate(results) if not r["success"]]
    assert failed == ["bad@x.test", "BAD@y.test"]
    for result in (results[1], results[3]):
        assert "id" not in result
        [error] = result["errors"]
        assert error["statusCode"] == TRIGGER
        assert error["message"].startswith("ContactTrigger: execution of AfterInsert\n\ncaused by: ")
    assert org.count() == 4
    assert org.count("WHERE Email LIKE 'bad@%'") == 0
    assert org.injected() == {"trigger": 2}


def test_a_trigger_failure_rolls_back_the_whole_call_with_all_or_none(org: HttpOrg) -> None:
    org.faults("trigger_match=Email:bad@")
    body = {"allOrNone": True, "records": contacts("ok@x.test", "bad@x.test", "ok2@x.test")}
    results = org.http.post(f"{V}/composite/sobjects", json=body).json()
    codes = [r["errors"][0]["statusCode"] for r in results]
    assert codes == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", TRIGGER, "ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert org.count() == 0


def test_a_trigger_sees_the_record_as_saved_on_an_update_and_undoes_it(org: HttpOrg) -> None:
    created = org.http.post(f"{V}/sobjects/Contact", json={"LastName": "B", "Email": "bad@x.test"}).json()
    org.faults("trigger_match=Email:bad@")
    refused = org.http.patch(f"{V}/sobjects/Contact/{created['id']}", json={"Title": "New"})
    assert refused.status_code == 400
    [error] = refused.json()
    assert error["errorCode"] == TRIGGER and "execution of AfterUpdate" in error["message"]
    assert org.count("WHERE Title = 'New'") == 0
    upsert = org.http.patch(f"{V}/composite/sobjects/Contact/Email", json={"records": contacts("bad@x.test")})
    assert "AfterUpdate" in upsert.json()[0]["errors"][0]["message"]
    assert org.http.delete(f"{V}/sobjects/Contact/{created['id']}").json()[0]["errorCode"] == TRIGGER
    assert org.count() == 1
    fixed = org.http.patch(f"{V}/sobjects/Contact/{created['id']}", json={"Email": "good@x.test"})
    assert fixed.status_code == 204  # saved with the new Email, the record no longer matches


def test_a_trigger_can_be_narrowed_to_one_object_and_hit_at_a_rate(org: HttpOrg) -> None:
    org.faults("trigger=1,trigger_object=Account")
    assert org.http.post(f"{V}/sobjects/Contact", json={"LastName": "Fine"}).status_code == 201
    account = org.http.post(f"{V}/sobjects/Account", json={"Name": "Acme"})
    assert account.status_code == 400
    assert account.json()[0]["message"].startswith("AccountTrigger: execution of AfterInsert")
    org.faults("trigger=0.3,seed=7")
    results = org.http.post(
        f"{V}/composite/sobjects", json={"records": contacts(*(f"m{i}@x.test" for i in range(200)))}
    )
    failed = [r for r in results.json() if not r["success"]]
    assert 30 < len(failed) < 90
    assert {r["errors"][0]["statusCode"] for r in failed} == {TRIGGER}
    assert org.count() == 1 + 200 - len(failed)
    assert org.injected() == {"trigger": len(failed)}


def test_a_script_step_fails_every_record_write_of_one_call_in_a_trigger(org: HttpOrg) -> None:
    org.faults("script=trigger|ok")
    first = org.http.post(f"{V}/composite/sobjects", json={"records": contacts("a@x.test", "b@x.test")}).json()
    assert [r["errors"][0]["statusCode"] for r in first] == [TRIGGER, TRIGGER]
    second = org.http.post(f"{V}/composite/sobjects", json={"records": contacts("a@x.test", "b@x.test")}).json()
    assert all(r["success"] for r in second)
    assert org.count() == 2


async def test_our_client_parks_the_trigger_failed_record_and_keeps_the_others(org: HttpOrg) -> None:
    org.faults("trigger_match=Email:bad@")
    async with our_client(org.running) as sf:
        results = await sf.create_many("Contact", [{"LastName": "A", "Email": e} for e in ("a@x.test", "bad@x.test")])
    assert [r.success for r in results] == [True, False]
    [error] = results[1].errors
    assert isinstance(error, SalesforceRecordError) and error.error_code == TRIGGER


# ---------------------------------------------------------------------- the daily allocation runs out mid-run
def test_the_daily_allocation_spent_after_n_calls_refuses_the_next_and_comes_back_on_restore(org: HttpOrg) -> None:
    limit = org.running.emulator.daily_limit
    org.faults("daily_spent_after=3")
    for remaining in (2, 1, 0):
        allowed = org.http.get(f"{V}/limits")
        assert allowed.status_code == 200
        assert allowed.json()["DailyApiRequests"] == {"Max": limit, "Remaining": remaining}
    refused = org.http.get(f"{V}/limits")
    assert refused.status_code == 403
    assert refused.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert refused.headers["Sforce-Limit-Info"] == f"api-usage={limit}/{limit}"
    assert org.http.post(f"{V}/sobjects/Contact", json={"LastName": "Refused"}).status_code == 403
    assert org.injected() == {"daily_limit": 2}
    restored = org.http.post("/__admin/limits", json={"restore": True}).json()
    assert restored["remaining"] > limit - 10
    assert org.http.post(f"{V}/sobjects/Contact", json={"LastName": "Again"}).status_code == 201
    assert org.count() == 1


def test_the_admin_api_spends_the_allocation_after_n_calls_at_run_time(org: HttpOrg) -> None:
    answer = org.http.post("/__admin/limits", json={"spent_after": 1}).json()
    assert answer["remaining"] == 1 and answer["used"] == answer["daily_limit"] - 1
    assert org.http.get(f"{V}/limits").status_code == 200
    assert org.http.get(f"{V}/limits").status_code == 403
    org.http.post("/__admin/limits", json={"restore": True})
    assert org.http.get(f"{V}/limits").status_code == 200


async def test_our_client_raises_daily_limit_exceeded_once_the_allocation_is_spent(org: HttpOrg) -> None:
    async with our_client(org.running) as sf:
        await sf.limits()
        org.faults("daily_spent_after=1")
        await sf.create("Contact", {"LastName": "Last"})
        with pytest.raises(DailyLimitExceeded) as err:
            await sf.create("Contact", {"LastName": "Over"})
        assert (err.value.status, err.value.error_code) == (403, "REQUEST_LIMIT_EXCEEDED")
        assert sf.budget.latest is not None and sf.budget.latest.used == sf.budget.latest.limit
        org.http.post("/__admin/limits", json={"restore": True})
        await sf.create("Contact", {"LastName": "After"})
    assert org.count() == 2


def test_a_spec_given_at_start_spends_the_allocation_from_the_start() -> None:
    org = Org(build(faults="daily_spent_after=2"))
    with org.http:
        assert [org.get("limits").status_code for _ in range(3)] == [200, 200, 403]


# ---------------------------------------------------------------------- sessions that expire on a schedule
def test_every_session_expires_a_set_time_after_it_was_issued(org: HttpOrg) -> None:
    org.faults("expire_every=400ms")
    fresh = org.running.emulator.auth.issue_session().access_token
    headers = {"Authorization": f"Bearer {fresh}"}
    assert org.http.get(f"{V}/limits", headers=headers).status_code == 200
    time.sleep(0.45)
    expired = org.http.get(f"{V}/limits", headers=headers)
    assert expired.status_code == 401
    assert expired.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert org.http.get(f"{V}/limits", headers=headers).status_code == 401  # ended, not just refused once
    newer = org.running.emulator.auth.issue_session().access_token
    assert org.http.get(f"{V}/limits", headers={"Authorization": f"Bearer {newer}"}).status_code == 200
    assert org.injected() == {"expire_every": 1}


async def test_our_client_logs_in_again_when_its_session_expires_on_schedule(org: HttpOrg) -> None:
    org.faults("expire_every=400ms")
    async with our_client(org.running) as sf:
        await sf.create("Contact", {"LastName": "Before"})
        time.sleep(0.45)
        await sf.create("Contact", {"LastName": "After"})  # 401 INVALID_SESSION_ID -> a new session -> replayed
    assert org.injected() == {"expire_every": 1}
    org.faults("")
    assert org.count() == 2


# ---------------------------------------------------------------------- the admin API
def test_a_partial_fault_change_keeps_the_other_faults_and_the_counts(org: HttpOrg) -> None:
    org.faults("script=commit504,lock=0.5,trigger_match=Email:bad@")
    org.http.post(f"{V}/sobjects/Contact", json={"LastName": "X"})
    changed = org.http.patch("/__admin/faults", json={"spec": "commitdrop=0.25,lock=0.1"})
    assert changed.status_code == 200
    faults = changed.json()
    assert faults["rates"] == {"lock": 0.1, "commitdrop": 0.25}
    assert faults["trigger"] == {"sobject": None, "match": "Email:bad@"}
    assert faults["injected"]["commit504"] == 1
    refused = org.http.patch("/__admin/faults", json={"spec": "lock=0.3,commit504=2"})
    assert refused.status_code == 400 and "commit504=2" in refused.json()["error"]
    assert org.http.get("/__admin/stats").json()["faults"]["rates"]["lock"] == 0.1  # nothing changed


def test_the_new_fault_specs_are_validated_all_at_once() -> None:
    with pytest.raises(FaultSpecError) as err:
        Faults.parse(
            "commit504=2,commitdrop=x,trigger_match=Email,trigger_colour=red,daily_spent_after=-1,"
            "expire_every=soon,script=commit504|flood"
        )
    message = str(err.value)
    for part in ("commit504=2", "commitdrop=x", "trigger_match=Email", "trigger_colour", "daily_spent_after=-1"):
        assert part in message
    for part in ("expire_every=soon", "flood"):
        assert part in message
    parsed = Faults.parse("commit504=0.01,expire_every=60s,daily_spent_after=500,trigger_match=Email:bad@")
    assert parsed.rates == {"commit504": 0.01}
    assert (parsed.expire_every_s, parsed.daily_spent_after) == (60.0, 500)
    assert (parsed.trigger.field, parsed.trigger.prefix) == ("Email", "bad@")
