"""Clients nobody here wrote, and our own client, against the emulator over real HTTP(S)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest
import requests
from pydantic import SecretStr
from simple_salesforce import Salesforce

from sfsync.emulator.server import RunningEmulator, serve_in_thread
from sfsync.salesforce import ClientCredentialsAuth, DailyLimitExceeded, SalesforceClient
from sfsync.salesforce.settings import SalesforceSettings


@pytest.fixture(scope="module")
def tls_org() -> Iterator[RunningEmulator]:
    running = serve_in_thread(tls=True)
    yield running
    running.stop()


@pytest.fixture
def fresh(tls_org: RunningEmulator) -> RunningEmulator:
    tls_org.emulator.admin_reset({})
    tls_org.emulator.daily_limit = 1_000_000
    return tls_org


def simple_salesforce_client(org: RunningEmulator) -> Salesforce:
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
    session.verify = str(org.ca_file)
    token = org.emulator.auth.issue_session().access_token
    return Salesforce(instance_url=org.base_url, session_id=token, session=session, version="62.0")


def test_simple_salesforce_over_tls_with_a_session_id(fresh: RunningEmulator) -> None:
    sf = simple_salesforce_client(fresh)
    created = sf.Contact.create({"LastName": "Bluth", "Email": "gob@example.com"})
    assert created["success"] is True
    contact_id = created["id"]
    assert sf.Contact.update(contact_id, {"Title": "Magician"}) == 204
    assert sf.Contact.get(contact_id)["Title"] == "Magician"
    assert sf.Contact.upsert("Email/lindsay@example.com", {"LastName": "Funke"}) == 201
    assert sf.Contact.upsert("Email/lindsay@example.com", {"FirstName": "Lindsay"}) in (200, 204)
    describe = sf.Contact.describe()
    assert any(f["name"] == "Email" and f["idLookup"] for f in describe["fields"])
    for i in range(2100):
        fresh.emulator.store.create("Lead", {"LastName": f"L{i}", "Company": "Acme"})
    everything = sf.query_all("SELECT Id, LastName FROM Lead")
    assert everything["totalSize"] == 2100 and len(everything["records"]) == 2100
    page = sf.query("SELECT Id FROM Lead")
    assert page["done"] is False and page["nextRecordsUrl"]
    assert sf.Contact.delete(contact_id) == 204
    assert sf.query("SELECT Id FROM Contact WHERE Email = 'gob@example.com'")["totalSize"] == 0
    assert sf.query_all("SELECT Id FROM Contact WHERE IsDeleted = true", include_deleted=True)["totalSize"] == 1


def settings_for(org: RunningEmulator) -> SalesforceSettings:
    app = org.emulator.auth.config.connected_apps[0]
    return SalesforceSettings(
        instance_url=org.base_url,
        login_url=org.base_url,
        auth_flow="client_credentials",
        client_id=app.client_id,
        client_secret=SecretStr(app.client_secret),
    )


def auth_for(org: RunningEmulator) -> ClientCredentialsAuth:
    app = org.emulator.auth.config.connected_apps[0]
    return ClientCredentialsAuth(
        client_id=app.client_id,
        client_secret=SecretStr(app.client_secret),
        token_url=f"{org.base_url}/services/oauth2/token",
    )


def verified_transport(org: RunningEmulator) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=str(org.ca_file)))


async def test_our_client_refreshes_an_expired_session_once(fresh: RunningEmulator) -> None:
    async with SalesforceClient(settings_for(fresh), auth=auth_for(fresh), transport=verified_transport(fresh)) as sf:
        first = await sf.create("Contact", {"LastName": "Before"})
        assert fresh.emulator.auth.expire_all() >= 1
        second = await sf.create("Contact", {"LastName": "After"})  # 401 INVALID_SESSION_ID -> refresh -> retry
        assert first != second
        names = sorted([r["LastName"] async for r in sf.query("SELECT LastName FROM Contact")])
        assert names == ["After", "Before"]
        assert sf.budget.latest is not None and sf.budget.latest.used >= 3


async def test_the_daily_limit_answers_the_documented_403(fresh: RunningEmulator) -> None:
    fresh.emulator.daily_limit = fresh.emulator.api_calls + 1
    async with SalesforceClient(settings_for(fresh), auth=auth_for(fresh), transport=verified_transport(fresh)) as sf:
        await sf.limits()  # the last call the allocation allows
        with pytest.raises(DailyLimitExceeded) as err:
            await sf.create("Contact", {"LastName": "Over"})
    assert err.value.status == 403
    assert err.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert "TotalRequests Limit exceeded." in str(err.value)
    raw = httpx.get(
        f"{fresh.base_url}/services/data/v62.0/limits",
        verify=ssl.create_default_context(cafile=str(fresh.ca_file)),
        headers={"Authorization": f"Bearer {fresh.emulator.auth.issue_session().access_token}"},
    )
    assert raw.status_code == 403
    assert raw.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert raw.headers["Sforce-Limit-Info"] == f"api-usage={fresh.emulator.daily_limit}/{fresh.emulator.daily_limit}"
