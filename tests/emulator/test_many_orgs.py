"""Several emulated orgs in one process, one server: each its own org (URL, identity, credentials, data,
limits, faults, availability), driven from outside over real HTTP(S) with sfsync's own client and httpx."""

from __future__ import annotations

import ssl
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sfsync.emulator.orgs import OrgSpec
from sfsync.emulator.server import RunningOrg, RunningOrgs, serve_orgs_in_thread
from sfsync.salesforce import (
    AuthenticationError,
    DailyLimitExceeded,
    JwtBearerAuth,
    SalesforceClient,
    SalesforceRetriableError,
)
from sfsync.salesforce.auth import jwt_audience
from tests.kit.emulated_orgs import client_credentials_settings, jwt_settings, refresh_token_settings, transport

V = "/services/data/v62.0"


@pytest.fixture
def orgs() -> Iterator[RunningOrgs]:
    """Three orgs, A, B and C, over TLS (one certificate for all)."""
    running = serve_orgs_in_thread([OrgSpec(name="org-a"), OrgSpec(name="org-b"), OrgSpec(name="org-c")], tls=True)
    yield running
    running.stop()


def http(org: RunningOrg) -> httpx.Client:
    """A plain httpx client of one org, trusting its certificate."""
    verify: Any = ssl.create_default_context(cafile=str(org.ca_file)) if org.ca_file else True
    return httpx.Client(base_url=org.base_url, verify=verify, timeout=10)


def admin(org: RunningOrg, path: str, body: Any) -> Any:
    with http(org) as client:
        response = client.post(f"/__admin/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def client(org: RunningOrg) -> SalesforceClient:
    return SalesforceClient(client_credentials_settings(org), transport=transport(org))


async def contacts(org: RunningOrg) -> list[str]:
    async with client(org) as sf:
        return sorted([str(r["LastName"]) async for r in sf.query("SELECT LastName FROM Contact")])


def emulator_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "sfsync-emulator")


def test_orgs_share_one_server_thread_each_on_its_own_port_and_identity() -> None:
    before = emulator_threads()
    with serve_orgs_in_thread(5, seed=7) as running:
        assert emulator_threads() == before + 1
        ports = {org.base_url.rsplit(":", 1)[1] for org in running}
        assert len(ports) == 5
        for attribute in ("org_id", "client_id", "username"):
            assert len({getattr(org, attribute) for org in running}) == 5, attribute
        user_ids = [{u.user_id for u in org.emulator.auth.config.users} for org in running]
        assert all(not (a & b) for i, a in enumerate(user_ids) for b in user_ids[i + 1 :])
        for org in running:
            token = org.emulator.auth.issue_session().access_token
            with http(org) as web:
                info = web.get("/services/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"}).json()
            assert info["organization_id"] == org.org_id
            assert info["preferred_username"] == org.username
            assert info["urls"]["custom_domain"] == org.instance_url == org.login_url
    again = serve_orgs_in_thread(5, seed=7)
    try:
        assert [o.org_id for o in again] == [o.org_id for o in running]
        assert [o.client_id for o in again] == [o.client_id for o in running]
    finally:
        again.stop()
    assert emulator_threads() == before


async def test_data_written_to_one_org_is_seen_in_that_org_only(orgs: RunningOrgs) -> None:
    a, b, c = orgs
    async with client(a) as sf:
        await sf.create("Contact", {"LastName": "OnlyInA"})
    async with client(b) as sf:
        await sf.create("Contact", {"LastName": "OnlyInB"})
    assert await contacts(a) == ["OnlyInA"]
    assert await contacts(b) == ["OnlyInB"]
    assert await contacts(c) == []


async def test_a_fault_on_one_org_leaves_the_others_answering(orgs: RunningOrgs) -> None:
    a, b, _ = orgs
    admin(b, "faults", {"spec": "503=1"})
    async with client(b) as sf:
        with pytest.raises(SalesforceRetriableError) as err:
            await sf.create("Contact", {"LastName": "Never"})
    assert err.value.status == 503
    async with client(a) as sf:
        await sf.create("Contact", {"LastName": "Fine"})
    assert await contacts(a) == ["Fine"]
    assert b.emulator.admin_stats()["faults"]["injected"] == {"503": 1}
    assert a.emulator.admin_stats()["faults"]["injected"] == {}


async def test_an_org_down_answers_503_to_every_call_and_comes_back(orgs: RunningOrgs) -> None:
    a, b, _ = orgs
    async with client(b) as sf:
        await sf.create("Contact", {"LastName": "Before"})
    assert admin(b, "down", {"mode": "503"}) == {"mode": "503", "turned_away": 0}
    with http(b) as web:
        token = web.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": b.client_id, "client_secret": b.client_secret},
        )
        rest = web.get(f"{V}/limits", headers={"Authorization": "Bearer x"})
    assert token.status_code == 503
    assert rest.status_code == 503 and rest.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    async with client(b) as sf:
        with pytest.raises(SalesforceRetriableError):
            await sf.count("SELECT COUNT() FROM Contact")
    assert await contacts(a) == []  # A serves meanwhile
    calls_while_down = b.emulator.api_calls
    admin(b, "down", {"mode": None})
    assert await contacts(b) == ["Before"]
    assert b.emulator.api_calls == calls_while_down + 1  # the calls turned away were not charged


async def test_an_org_down_refuses_connections_on_its_port_and_listens_again_on_it(orgs: RunningOrgs) -> None:
    a, b, _ = orgs
    with http(b) as kept:
        assert kept.get("/services/data").status_code == 200  # a connection opened before the outage
        b.down("refuse")
        with pytest.raises(httpx.TransportError):
            kept.get("/services/data")  # closed, unanswered
    with http(b) as fresh, pytest.raises(httpx.ConnectError):
        fresh.get("/services/data")
    async with client(b) as sf:
        with pytest.raises(SalesforceRetriableError) as err:
            await sf.limits()
    assert err.value.error_code == "CONNECTION_ERROR"
    assert await contacts(a) == []
    b.up()
    assert await contacts(b) == []
    b.down("refuse", for_s=0.3)  # back by itself
    with http(b) as fresh, pytest.raises(httpx.ConnectError):
        fresh.get("/services/data")
    for _ in range(50):
        if b.emulator.availability.mode is None:
            break
        threading.Event().wait(0.1)
    with http(b) as fresh:
        assert fresh.get("/services/data").status_code == 200


async def test_a_spent_daily_limit_on_one_org_leaves_the_others_limits_untouched(orgs: RunningOrgs) -> None:
    a, _, c = orgs
    async with client(a) as sf:
        before = (await sf.limits())["DailyApiRequests"]
    admin(c, "limits", {"spent_after": 0})
    async with client(c) as sf:
        with pytest.raises(DailyLimitExceeded):
            await sf.create("Contact", {"LastName": "Over"})
    async with client(a) as sf:
        after = (await sf.limits())["DailyApiRequests"]
        await sf.create("Contact", {"LastName": "Fine"})
    assert after.max == before.max
    assert after.remaining == before.remaining - 1  # only A's own call in between
    assert c.emulator.usage.remaining == 0


async def test_each_org_logs_in_with_its_own_credentials_and_refuses_another_orgs(orgs: RunningOrgs) -> None:
    a, b, _ = orgs
    with http(b) as web:
        foreign = web.post(
            "/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": a.client_id, "client_secret": a.client_secret},
        )
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_client_id"
    a_session = a.emulator.auth.issue_session().access_token
    with http(b) as web:
        elsewhere = web.get(f"{V}/limits", headers={"Authorization": f"Bearer {a_session}"})
    assert elsewhere.status_code == 401 and elsewhere.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    for org in (a, b):  # JWT bearer, each with its own key
        async with SalesforceClient(jwt_settings(org), transport=transport(org)) as sf:
            await sf.create("Contact", {"LastName": f"Jwt{org.name}"})
    assert await contacts(a) == ["Jwtorg-a"]
    assert await contacts(b) == ["Jwtorg-b"]
    async with httpx.AsyncClient(transport=transport(b)) as web:
        a_key_at_b = JwtBearerAuth(
            client_id=b.client_id,
            username=b.username,
            private_key=SecretStr(a.private_key_pem()),
            token_url=b.token_url,
            audience=jwt_audience(b.login_url),
        )
        with pytest.raises(AuthenticationError, match="invalid assertion"):
            await a_key_at_b.authenticate(web)
        a_app_at_b = JwtBearerAuth(
            client_id=a.client_id,
            username=a.username,
            private_key=SecretStr(a.private_key_pem()),
            token_url=b.token_url,
            audience=jwt_audience(b.login_url),
        )
        with pytest.raises(AuthenticationError, match="client identifier invalid"):
            await a_app_at_b.authenticate(web)


def test_refresh_token_rotation_returns_a_new_token_and_refuses_the_old() -> None:
    with serve_orgs_in_thread([OrgSpec(name="rotating", rotate_refresh_tokens=True), OrgSpec(name="steady")]) as (
        running
    ):
        rotating, steady = running
        form = {"grant_type": "refresh_token", "client_id": rotating.client_id, "client_secret": rotating.client_secret}
        first = rotating.refresh_token()
        with http(rotating) as web:
            answer = web.post("/services/oauth2/token", data={**form, "refresh_token": first})
            assert answer.status_code == 200
            second = answer.json()["refresh_token"]
            assert second != first
            assert web.post("/services/oauth2/token", data={**form, "refresh_token": second}).status_code == 200
            old = web.post("/services/oauth2/token", data={**form, "refresh_token": first})
        assert old.status_code == 400
        assert old.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}

        steady_form = {**form, "client_id": steady.client_id, "client_secret": steady.client_secret}
        token = steady.refresh_token()
        with http(steady) as web:
            for _ in range(2):  # off by default: the same token, again and again, and none returned
                answer = web.post("/services/oauth2/token", data={**steady_form, "refresh_token": token})
                assert answer.status_code == 200 and "refresh_token" not in answer.json()
        assert admin(steady, "connected-app", {"rotate_refresh_tokens": True})["rotate_refresh_tokens"] is True
        with http(steady) as web:
            answer = web.post("/services/oauth2/token", data={**steady_form, "refresh_token": token})
            assert answer.json()["refresh_token"] != token
            refused = web.post("/services/oauth2/token", data={**steady_form, "refresh_token": token})
        assert refused.json()["error"] == "invalid_grant"


async def test_our_client_keeps_working_across_rotations() -> None:
    with serve_orgs_in_thread([OrgSpec(rotate_refresh_tokens=True)], tls=True) as (org,):
        first = org.refresh_token()
        async with SalesforceClient(refresh_token_settings(org, first), transport=transport(org)) as sf:
            for round_ in range(3):  # each expiry: a refresh with the token the last one returned
                await sf.create("Contact", {"LastName": f"Round{round_}"})
                assert org.emulator.auth.expire_all() == 1
            assert await sf.count("SELECT COUNT() FROM Contact") == 3
            session = await sf.session()
        assert session.refresh_token is not None and session.refresh_token.get_secret_value() != first
        with http(org) as web:
            form = {"grant_type": "refresh_token", "client_id": org.client_id, "client_secret": org.client_secret}
            old = web.post("/services/oauth2/token", data={**form, "refresh_token": first})
        assert old.json()["error"] == "invalid_grant"


async def test_a_field_removed_on_one_org_stays_on_the_others() -> None:
    with serve_orgs_in_thread(2) as (a, b):
        assert a.emulator.store.schema.get("Contact") is b.emulator.store.schema.get("Contact")  # shared, cheap
        admin(a, "fields", {"sobject": "Contact", "field": "Title", "action": "remove"})
        async with client(a) as sf:
            assert (await sf.describe("Contact", refresh=True)).field("Title") is None
        async with client(b) as sf:
            assert (await sf.describe("Contact", refresh=True)).field("Title") is not None
            await sf.create("Contact", {"LastName": "Still", "Title": "Has a title"})
        admin(a, "fields", {"sobject": "Contact", "field": "Title", "action": "restore"})
        async with client(a) as sf:
            assert (await sf.describe("Contact", refresh=True)).field("Title") is not None


def test_a_call_is_answered_without_waiting_out_a_delayed_ack() -> None:
    """Connections get TCP_NODELAY: without it every answer (headers, then body) waited ~40 ms."""
    with serve_orgs_in_thread(1) as (org,), http(org) as web:
        token = org.emulator.auth.issue_session().access_token
        headers = {"Authorization": f"Bearer {token}"}
        times = []
        for _ in range(21):
            started = time.perf_counter()
            assert web.get(f"{V}/limits", headers=headers).status_code == 200
            times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.02, times
