"""The emulated org's OAuth server: grants, token shape, errors, sessions, revoke/introspect/identity.

JWT assertions are signed here with ``cryptography`` directly (not with the library the server verifies
with), so a verification bug cannot cancel out a signing bug.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import urllib.parse
from typing import Any

import httpx2
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.testclient import TestClient

from sfsync.emulator.errors import ApiError
from sfsync.emulator.oauth import (
    GRANT_JWT_BEARER,
    AuthServer,
    ConnectedApp,
    EmulatedUser,
    OAuthConfig,
    Session,
    default_config,
    salesforce_id18,
)
from tests.kit import EpochClock, recorded_json

BASE = "http://testserver"
ORG = salesforce_id18("00D5e000000TsTo")
SECRET = "s3cr3t-consumer-secret-value"
PUBLIC_SECRET = "public-app-secret-value"
CALLBACK = "https://client.example/callback"
ALICE_PASSWORD = "alice-pass-1"
ALICE_TOKEN = "AliceSecurityToken9"
SDFC_TOKEN = re.compile(r"^(00D\w{12,15})![.\w]*$")  # sfdx-core's matchesAccessToken


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def jwt_segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def sign_rs256(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    signing_input = jwt_segments({"alg": "RS256", "typ": "JWT"}, claims)
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def certificate_pem(signing_key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfsync-jwt")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(signing_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture
def clock() -> EpochClock:
    return EpochClock(1_700_000_000.0)


@pytest.fixture
def config(certificate_pem: str) -> OAuthConfig:
    alice = EmulatedUser(
        user_id=salesforce_id18("0055e000001AlIc"),
        username="alice@example.org",
        password=ALICE_PASSWORD,
        security_token=ALICE_TOKEN,
        display_name="Alice Admin",
        email="alice@example.org",
    )
    bob = EmulatedUser(
        user_id=salesforce_id18("0055e000001BoBb"),
        username="bob@example.org",
        password="bob-pass-2",
        display_name="Bob Rep",
        email="bob@example.org",
    )
    confidential = ConnectedApp(
        client_id="app-1",
        client_secret=SECRET,
        redirect_uris=[CALLBACK, "https://client.example/cb?tenant=7"],
        certificate_pem=certificate_pem,
    )
    public = ConnectedApp(
        client_id="pkce-app",
        client_secret=PUBLIC_SECRET,
        redirect_uris=[CALLBACK],
        allowed_grants={"authorization_code", "refresh_token"},
        require_secret=False,
        rotate_refresh_tokens=True,
    )
    return OAuthConfig(
        org_id=ORG,
        instance_url=BASE,
        session_timeout_s=7200,
        connected_apps=[confidential, public],
        users=[alice, bob],
        client_credentials_user="alice@example.org",
    )


@pytest.fixture
def server(config: OAuthConfig, clock: EpochClock) -> AuthServer:
    return AuthServer(config, clock=clock)


@pytest.fixture
def client(server: AuthServer) -> TestClient:
    return TestClient(Starlette(routes=server.routes()), follow_redirects=False)


def password_login(client: TestClient, **overrides: str) -> Any:
    form = {
        "grant_type": "password",
        "client_id": "app-1",
        "client_secret": SECRET,
        "username": "alice@example.org",
        "password": ALICE_PASSWORD + ALICE_TOKEN,
        **overrides,
    }
    return client.post("/services/oauth2/token", data=form)


def authorize(client: TestClient, **params: str) -> Any:
    query = {"response_type": "code", "client_id": "app-1", "redirect_uri": CALLBACK, **params}
    return client.get("/services/oauth2/authorize", params=query)


def callback_params(response: Any) -> dict[str, str]:
    assert response.status_code == 302
    location = response.headers["location"]
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def code_exchange(client: TestClient, code: str, **overrides: str) -> Any:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "app-1",
        "client_secret": SECRET,
        "redirect_uri": CALLBACK,
        **overrides,
    }
    return client.post("/services/oauth2/token", data=form)


def web_login(client: TestClient, verifier: str = "v" * 50, **authorize_params: str) -> Any:
    code = callback_params(authorize(client, code_challenge=s256(verifier), **authorize_params))["code"]
    response = code_exchange(client, code, code_verifier=verifier)
    assert response.status_code == 200, response.text
    return response.json()


def assert_oauth_error(response: Any, error: str, description: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": error, "error_description": description}


def assert_invalid_session(server: AuthServer, header: str | None) -> None:
    with pytest.raises(ApiError) as err:
        server.authenticate(header)
    assert err.value.status == 401
    assert err.value.body() == recorded_json("restforce_error_invalid_session_id.json")


# --------------------------------------------------------------------------------------------- config


def test_salesforce_id18_matches_recorded_ids() -> None:
    for recorded in ("0015500001QdQWfAAN", "00U9H000000RzvRUAS", "a00D0000008pQRAIA2"):
        assert salesforce_id18(recorded[:15]) == recorded
    with pytest.raises(ValueError, match="malformed id"):
        salesforce_id18("001")


def test_default_config_generates_secrets_and_valid_ids() -> None:
    first, second = default_config(), default_config()
    app = first.connected_apps[0]
    assert app.client_id == "sfsync-local"
    assert len(app.client_secret) >= 32
    assert app.client_secret != second.connected_apps[0].client_secret
    assert [u.display_name for u in first.users] == ["Integration User", "Sam Rep"]
    assert first.client_credentials_user == first.users[0].username
    for sf_id in (first.org_id, *(u.user_id for u in first.users)):
        assert len(sf_id) == 18 and salesforce_id18(sf_id[:15]) == sf_id
    assert first.org_id.startswith("00D") and all(u.user_id.startswith("005") for u in first.users)
    assert app.client_secret not in repr(first)
    assert first.users[0].password not in repr(first) and first.users[0].security_token not in repr(first)


def test_default_config_logs_in_with_its_own_credentials() -> None:
    config = default_config(instance_url=BASE)
    client = TestClient(Starlette(routes=AuthServer(config).routes()))
    user, app = config.users[1], config.connected_apps[0]
    response = client.post(
        "/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "username": user.username,
            "password": user.password + user.security_token,
        },
    )
    assert response.status_code == 200
    assert response.json()["id"] == f"{BASE}/id/{config.org_id}/{user.user_id}"


class FakeStore:
    """The slice of an org store that default_config reads."""

    def __init__(self) -> None:
        self.org_id = "00D5e000000TsTo"
        self.integration_user_id = salesforce_id18("0055e000001InTg")
        self.org = type("Settings", (), {"session_timeout_s": 900, "time_zone": "Europe/Paris"})()
        self._users = [
            {
                "Id": salesforce_id18("0055e000001ReP1"),
                "Username": "rep@acme.test",
                "FirstName": "Sales",
                "LastName": "Rep",
                "Name": "Sales Rep",
                "Email": "rep@acme.test",
                "IsActive": True,
            },
            {
                "Id": self.integration_user_id,
                "Username": "integration@acme.test",
                "Name": "Integration User",
                "Email": None,
                "IsActive": True,
            },
            {"Id": salesforce_id18("0055e000001GoNe"), "Username": "gone@acme.test", "Name": "Gone", "IsActive": False},
        ]

    def rows(self, sobject: str) -> list[dict[str, Any]]:
        assert sobject == "User"
        return self._users


def test_default_config_from_a_store_uses_its_org_and_users(clock: EpochClock) -> None:
    store = FakeStore()
    config = default_config(store=store, instance_url=BASE)
    assert config.org_id == ORG and config.session_timeout_s == 900
    assert [u.username for u in config.users] == ["integration@acme.test", "rep@acme.test"]  # inactive left out
    assert config.client_credentials_user == "integration@acme.test"
    assert config.users[0].email == "integration@acme.test" and config.users[1].timezone == "Europe/Paris"
    server = AuthServer(config, clock=clock)
    app = config.connected_apps[0]
    client = TestClient(Starlette(routes=server.routes()))
    body = client.post(
        "/services/oauth2/token", data={"grant_type": "client_credentials"}, auth=(app.client_id, app.client_secret)
    ).json()
    assert server.authenticate(f"Bearer {body['access_token']}").user_id == store.integration_user_id
    clock.advance(900)
    assert_invalid_session(server, f"Bearer {body['access_token']}")


# --------------------------------------------------------------------------------------------- token shape


def test_token_response_has_the_documented_shape(client: TestClient, clock: EpochClock, config: OAuthConfig) -> None:
    response = password_login(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json;charset=UTF-8"
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    recorded = recorded_json("restforce_oauth_token_success.json")
    assert set(recorded) <= set(body)
    assert set(body) - set(recorded) == {"scope", "token_type"}  # no refresh_token for the password grant
    assert {k: type(body[k]) for k in recorded} == {k: type(v) for k, v in recorded.items()}
    assert "expires_in" not in body
    assert body["issued_at"].isdigit() and body["issued_at"] == str(int(clock.now * 1000))
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == BASE
    assert body["id"] == f"{BASE}/id/{ORG}/{config.users[0].user_id}"
    assert body["scope"] == "api id"
    assert SDFC_TOKEN.match(body["access_token"])
    assert body["access_token"].startswith(ORG[:15] + "!")
    assert len(body["access_token"]) > 80


def test_signature_is_hmac_sha256_of_id_and_issued_at(client: TestClient) -> None:
    body = password_login(client).json()
    expected = hmac.new(SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256).digest()
    assert base64.b64decode(body["signature"]) == expected
    forged = hmac.new(b"other", (body["id"] + body["issued_at"]).encode(), hashlib.sha256).digest()
    assert base64.b64decode(body["signature"]) != forged


def test_each_login_gets_a_new_access_token(client: TestClient) -> None:
    assert password_login(client).json()["access_token"] != password_login(client).json()["access_token"]


def test_token_parameters_may_come_in_the_query_string(client: TestClient) -> None:
    query = {
        "grant_type": "password",
        "client_id": "app-1",
        "client_secret": SECRET,
        "username": "alice@example.org",
        "password": ALICE_PASSWORD + ALICE_TOKEN,
    }
    assert client.post("/services/oauth2/token", params=query).status_code == 200


def test_token_endpoint_is_post_only(client: TestClient) -> None:
    assert client.get("/services/oauth2/token").status_code == 405


# --------------------------------------------------------------------------------------------- password grant


def test_password_grant_needs_password_plus_security_token(client: TestClient, server: AuthServer) -> None:
    body = password_login(client, username="ALICE@example.org").json()  # usernames are case-insensitive
    assert server.authenticate(f"Bearer {body['access_token']}").username == "alice@example.org"
    recorded_shape = recorded_json("restforce_oauth_token_error_invalid_grant.json")
    for password in (ALICE_PASSWORD, ALICE_PASSWORD + "wrong", ALICE_TOKEN + ALICE_PASSWORD, ""):
        response = password_login(client, password=password)
        assert set(response.json()) == set(recorded_shape)
        assert_oauth_error(response, "invalid_grant", "authentication failure")
    assert_oauth_error(password_login(client, username="nobody@example.org"), "invalid_grant", "authentication failure")


def test_user_without_security_token_logs_in_with_password_alone(client: TestClient) -> None:
    assert password_login(client, username="bob@example.org", password="bob-pass-2").status_code == 200


def test_client_errors(client: TestClient) -> None:
    assert_oauth_error(password_login(client, client_id="nope"), "invalid_client_id", "client identifier invalid")
    assert_oauth_error(password_login(client, client_secret="wrong"), "invalid_client", "invalid client credentials")
    assert_oauth_error(password_login(client, client_secret=""), "invalid_client", "invalid client credentials")


def test_unsupported_or_missing_grant_type(client: TestClient) -> None:
    assert_oauth_error(
        password_login(client, grant_type="implicit"), "unsupported_grant_type", "grant type not supported"
    )
    json_body = client.post("/services/oauth2/token", json={"grant_type": "password"})  # not form-encoded
    assert_oauth_error(json_body, "unsupported_grant_type", "grant type not supported")
    disabled = password_login(client, client_id="pkce-app", client_secret=PUBLIC_SECRET)
    assert_oauth_error(disabled, "unsupported_grant_type", "grant type not supported")


# --------------------------------------------------------------------------------------------- client credentials


def test_client_credentials_with_basic_auth_runs_as_configured_user(client: TestClient, server: AuthServer) -> None:
    response = client.post("/services/oauth2/token", data={"grant_type": "client_credentials"}, auth=("app-1", SECRET))
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body and "expires_in" not in body
    assert server.authenticate(f"Bearer {body['access_token']}").username == "alice@example.org"
    in_body = {"grant_type": "client_credentials", "client_id": "app-1", "client_secret": SECRET}
    assert client.post("/services/oauth2/token", data=in_body).status_code == 200


def test_client_credentials_errors(client: TestClient, config: OAuthConfig) -> None:
    form = {"grant_type": "client_credentials"}
    wrong = client.post("/services/oauth2/token", data=form, auth=("app-1", "wrong"))
    assert_oauth_error(wrong, "invalid_client", "invalid client credentials")
    unknown = client.post("/services/oauth2/token", data=form, auth=("ghost", SECRET))
    assert_oauth_error(unknown, "invalid_client_id", "client identifier invalid")
    not_enabled = client.post("/services/oauth2/token", data=form, auth=("pkce-app", PUBLIC_SECRET))
    assert_oauth_error(not_enabled, "invalid_grant", "no client credentials user enabled")
    config.client_credentials_user = None
    no_run_as = client.post("/services/oauth2/token", data=form, auth=("app-1", SECRET))
    assert_oauth_error(no_run_as, "invalid_grant", "no client credentials user enabled")


def test_client_credentials_refused_on_the_generic_login_host(server: AuthServer) -> None:
    login = TestClient(Starlette(routes=server.routes()), base_url="https://login.salesforce.com")
    response = login.post("/services/oauth2/token", data={"grant_type": "client_credentials"}, auth=("app-1", SECRET))
    assert_oauth_error(response, "invalid_grant", "request not supported on this domain")


# --------------------------------------------------------------------------------------------- web server flow


def test_authorization_code_with_pkce(client: TestClient, server: AuthServer, config: OAuthConfig) -> None:
    verifier = "x" * 43 + "-._~"
    state = "a b&c=d/é?"
    response = authorize(
        client, code_challenge=s256(verifier), code_challenge_method="S256", state=state, login_hint="bob@example.org"
    )
    params = callback_params(response)
    assert response.headers["location"].startswith(CALLBACK + "?")
    assert params["state"] == state
    token = code_exchange(client, params["code"], code_verifier=verifier)
    assert token.status_code == 200
    body = token.json()
    assert re.fullmatch(r"[\w.]{87}", body["refresh_token"])
    assert body["scope"] == "api id refresh_token"
    assert body["id"] == f"{BASE}/id/{ORG}/{config.users[1].user_id}"
    assert server.authenticate(f"Bearer {body['access_token']}").username == "bob@example.org"


def test_authorize_defaults_to_the_first_user_and_keeps_redirect_query(client: TestClient) -> None:
    response = authorize(client, redirect_uri="https://client.example/cb?tenant=7")
    params = callback_params(response)
    assert params["tenant"] == "7" and "state" not in params
    token = code_exchange(client, params["code"], redirect_uri="https://client.example/cb?tenant=7").json()
    assert token["id"].endswith(salesforce_id18("0055e000001AlIc"))


def test_refresh_token_only_with_refresh_scope(client: TestClient) -> None:
    body = web_login(client, scope="api id")
    assert "refresh_token" not in body
    assert body["scope"] == "api id"


def test_code_is_single_use(client: TestClient) -> None:
    code = callback_params(authorize(client))["code"]
    assert code_exchange(client, code).status_code == 200
    assert_oauth_error(code_exchange(client, code), "invalid_grant", "invalid authorization code")


def test_pkce_mismatch_refused_and_burns_the_code(client: TestClient) -> None:
    verifier = "right-verifier-" + "r" * 40
    code = callback_params(authorize(client, code_challenge=s256(verifier)))["code"]
    assert_oauth_error(code_exchange(client, code, code_verifier="w" * 50), "invalid_grant", "invalid code verifier")
    assert_oauth_error(
        code_exchange(client, code, code_verifier=verifier), "invalid_grant", "invalid authorization code"
    )
    missing = callback_params(authorize(client, code_challenge=s256(verifier)))["code"]
    assert_oauth_error(code_exchange(client, missing), "invalid_grant", "invalid code verifier")
    # the challenge itself is not a valid verifier
    plain = callback_params(authorize(client, code_challenge=s256(verifier)))["code"]
    assert_oauth_error(
        code_exchange(client, plain, code_verifier=s256(verifier)), "invalid_grant", "invalid code verifier"
    )


def test_code_exchange_errors(client: TestClient, clock: EpochClock) -> None:
    code = callback_params(authorize(client))["code"]
    mismatch = code_exchange(client, code, redirect_uri="https://client.example/other")
    assert_oauth_error(mismatch, "redirect_uri_mismatch", "redirect_uri must match configuration")
    stale = callback_params(authorize(client))["code"]
    clock.advance(901)
    assert_oauth_error(code_exchange(client, stale), "invalid_grant", "expired authorization code")
    assert_oauth_error(code_exchange(client, "aPrxnonsense=="), "invalid_grant", "invalid authorization code")
    other_client = callback_params(authorize(client))["code"]
    stolen = code_exchange(client, other_client, client_id="pkce-app", client_secret=PUBLIC_SECRET)
    assert_oauth_error(stolen, "invalid_grant", "invalid authorization code")
    no_secret = callback_params(authorize(client))["code"]
    assert_oauth_error(
        code_exchange(client, no_secret, client_secret=""), "invalid_client", "invalid client credentials"
    )


def test_public_pkce_client_needs_no_secret(client: TestClient) -> None:
    verifier = "p" * 60
    code = callback_params(authorize(client, client_id="pkce-app", code_challenge=s256(verifier)))["code"]
    response = code_exchange(client, code, client_id="pkce-app", client_secret="", code_verifier=verifier)
    assert response.status_code == 200
    assert "refresh_token" in response.json()


def test_authorize_errors(client: TestClient) -> None:
    unknown = authorize(client, client_id="ghost")
    assert "location" not in unknown.headers  # never redirect to an unverified callback
    assert_oauth_error(unknown, "invalid_client_id", "client identifier invalid")
    bad_callback = authorize(client, redirect_uri="https://evil.example/cb")
    assert "location" not in bad_callback.headers
    assert_oauth_error(bad_callback, "redirect_uri_mismatch", "redirect_uri must match configuration")
    expected = {
        (("response_type", "token"),): "unsupported_response_type",
        (("code_challenge", "abc"), ("code_challenge_method", "plain")): "invalid_request",
        (("login_hint", "nobody@example.org"),): "access_denied",
        (("scope", "api chatter_api"),): "invalid_scope",
    }
    for extra, error in expected.items():
        params = callback_params(authorize(client, state="s-1", **dict(extra)))
        assert params["error"] == error and params["state"] == "s-1" and "code" not in params


# --------------------------------------------------------------------------------------------- refresh & revoke


def refresh(client: TestClient, token: str, client_id: str = "app-1", secret: str = SECRET) -> Any:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id, "client_secret": secret}
    return client.post("/services/oauth2/token", data=form)


def test_refresh_grant_issues_a_new_access_token(client: TestClient, server: AuthServer) -> None:
    first = web_login(client)
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body and "expires_in" not in body
    assert body["access_token"] != first["access_token"]
    assert body["issued_at"].isdigit()
    assert server.authenticate(f"Bearer {body['access_token']}").username == "alice@example.org"
    assert refresh(client, first["refresh_token"]).status_code == 200  # reusable until revoked


def test_revoking_the_refresh_token_revokes_its_access_tokens(client: TestClient, server: AuthServer) -> None:
    first = web_login(client)
    second = refresh(client, first["refresh_token"]).json()
    bystander = password_login(client).json()
    response = client.post("/services/oauth2/revoke", data={"token": first["refresh_token"]})
    assert response.status_code == 200
    expired = refresh(client, first["refresh_token"])
    assert expired.status_code == 400
    assert expired.json() == recorded_json("restforce_oauth_refresh_error_expired.json")
    assert_invalid_session(server, f"Bearer {first['access_token']}")
    assert_invalid_session(server, f"Bearer {second['access_token']}")
    assert server.authenticate(f"Bearer {bystander['access_token']}").username == "alice@example.org"


def test_revoking_an_access_token_leaves_the_refresh_token(client: TestClient, server: AuthServer) -> None:
    first = web_login(client)
    assert client.get("/services/oauth2/revoke", params={"token": first["access_token"]}).status_code == 200
    assert_invalid_session(server, f"Bearer {first['access_token']}")
    assert refresh(client, first["refresh_token"]).status_code == 200
    assert_oauth_error(
        client.post("/services/oauth2/revoke", data={"token": first["access_token"]}), "invalid_token", "invalid token"
    )


def test_refresh_errors(client: TestClient, clock: EpochClock, config: OAuthConfig) -> None:
    first = web_login(client)
    expired = ("invalid_grant", "expired access/refresh token")
    assert_oauth_error(refresh(client, "5Aep861" + "x" * 80), *expired)
    assert_oauth_error(refresh(client, first["refresh_token"], "pkce-app", PUBLIC_SECRET), *expired)
    assert_oauth_error(
        refresh(client, first["refresh_token"], secret="wrong"), "invalid_client", "invalid client credentials"
    )
    config.refresh_token_ttl_s = 3600
    clock.advance(3601)
    assert_oauth_error(refresh(client, first["refresh_token"]), *expired)


def test_refresh_token_rotation(client: TestClient) -> None:
    verifier = "q" * 50
    code = callback_params(authorize(client, client_id="pkce-app", code_challenge=s256(verifier)))["code"]
    first = code_exchange(client, code, client_id="pkce-app", client_secret="", code_verifier=verifier).json()
    rotated = refresh(client, first["refresh_token"], "pkce-app", "")
    assert rotated.status_code == 200
    new_token = rotated.json()["refresh_token"]
    assert new_token != first["refresh_token"]
    again = refresh(client, new_token, "pkce-app", "")
    assert again.status_code == 200 and again.json()["refresh_token"] not in (new_token, first["refresh_token"])


def test_a_rotated_refresh_token_used_again_revokes_its_whole_chain(client: TestClient, server: AuthServer) -> None:
    """Salesforce's single-use refresh tokens: reusing an invalidated one revokes the current refresh token
    and every access token associated with it; the client must authorize again."""
    verifier = "q" * 50
    code = callback_params(authorize(client, client_id="pkce-app", code_challenge=s256(verifier)))["code"]
    first = code_exchange(client, code, client_id="pkce-app", client_secret="", code_verifier=verifier).json()
    rotated = refresh(client, first["refresh_token"], "pkce-app", "").json()
    assert server.authenticate(f"Bearer {rotated['access_token']}").username == "alice@example.org"
    expired = ("invalid_grant", "expired access/refresh token")
    assert_oauth_error(refresh(client, first["refresh_token"], "pkce-app", ""), *expired)
    assert_oauth_error(refresh(client, rotated["refresh_token"], "pkce-app", ""), *expired)
    assert_invalid_session(server, f"Bearer {rotated['access_token']}")
    assert_invalid_session(server, f"Bearer {first['access_token']}")


def test_every_token_issued_is_remembered_even_once_rotated_away_or_revoked(
    client: TestClient, server: AuthServer
) -> None:
    """What a test greps its logs and topics for: each access and refresh token the org ever issued."""
    verifier = "q" * 50
    code = callback_params(authorize(client, client_id="pkce-app", code_challenge=s256(verifier)))["code"]
    first = code_exchange(client, code, client_id="pkce-app", client_secret="", code_verifier=verifier).json()
    rotated = refresh(client, first["refresh_token"], "pkce-app", "").json()
    assert refresh(client, first["refresh_token"], "pkce-app", "").status_code == 400  # reused: the chain revoked
    minted = server.issue_session().access_token
    direct = server.issue_refresh_token()
    assert server.issued_tokens() == [
        first["refresh_token"],
        first["access_token"],
        rotated["refresh_token"],
        rotated["access_token"],  # (its chain revoked since: still remembered)
        minted,
        direct,
    ]


# --------------------------------------------------------------------------------------------- sessions


def test_authenticate_accepts_bearer_oauth_and_bare_tokens(client: TestClient, server: AuthServer) -> None:
    token = password_login(client).json()["access_token"]
    for header in (f"Bearer {token}", f"bearer {token}", f"OAuth {token}", token, f"  Bearer   {token} "):
        session = server.authenticate(header)
        assert isinstance(session, Session)
        assert session.access_token == token and session.org_id == ORG and session.client_id == "app-1"


def test_authenticate_refuses_with_the_invalid_session_shape(client: TestClient, server: AuthServer) -> None:
    token = password_login(client).json()["access_token"]
    for header in (None, "", "Bearer", f"Basic {token} extra", f"Bearer {token}x", "Bearer 00Dx!nope"):
        assert_invalid_session(server, header)
    with pytest.raises(ApiError) as err:
        server.authenticate(f"Bearer {token}tampered")
    assert err.value.error_code == "INVALID_SESSION_ID"
    assert err.value.message == "Session expired or invalid"
    assert token not in str(err.value)


def test_session_times_out_after_inactivity_and_activity_extends_it(
    client: TestClient, server: AuthServer, clock: EpochClock
) -> None:
    token = password_login(client).json()["access_token"]
    clock.advance(7199)
    server.authenticate(f"Bearer {token}")
    clock.advance(7199)  # 14398 s after login, but only 7199 s idle
    server.authenticate(f"Bearer {token}")
    clock.advance(7200)
    assert_invalid_session(server, f"Bearer {token}")
    clock.advance(-7200)  # gone for good: the clock going back does not revive it
    assert_invalid_session(server, f"Bearer {token}")


def test_refresh_restores_access_after_a_timeout(client: TestClient, server: AuthServer, clock: EpochClock) -> None:
    first = web_login(client)
    clock.advance(7200)
    assert_invalid_session(server, f"Bearer {first['access_token']}")
    renewed = refresh(client, first["refresh_token"]).json()
    assert server.authenticate(f"Bearer {renewed['access_token']}").username == "alice@example.org"


def test_admin_expiry_hooks(client: TestClient, server: AuthServer) -> None:
    one = password_login(client).json()["access_token"]
    two = web_login(client)
    assert server.expire(one) is True
    assert server.expire(one) is False
    assert_invalid_session(server, f"Bearer {one}")
    server.authenticate(f"Bearer {two['access_token']}")
    assert server.expire_all() == 1
    assert_invalid_session(server, f"Bearer {two['access_token']}")
    assert refresh(client, two["refresh_token"]).status_code == 200  # expiry is not revocation


def test_issue_session_mints_a_usable_token(server: AuthServer) -> None:
    session = server.issue_session("bob@example.org")
    assert SDFC_TOKEN.match(session.access_token)
    assert server.authenticate(session.access_token).user_id == salesforce_id18("0055e000001BoBb")
    assert server.issue_session().username == "alice@example.org"
    with pytest.raises(LookupError):
        server.issue_session("ghost@example.org")


def test_session_timeout_is_configurable(config: OAuthConfig, clock: EpochClock) -> None:
    config.session_timeout_s = 900
    server = AuthServer(config, clock=clock)
    session = server.issue_session()
    clock.advance(900)
    assert_invalid_session(server, f"Bearer {session.access_token}")


# --------------------------------------------------------------------------------------------- JWT bearer


def jwt_claims(clock: EpochClock, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "app-1",
        "sub": "bob@example.org",
        "aud": "https://login.salesforce.com",
        "exp": int(clock.now) + 180,
    }
    claims.update(overrides)
    return claims


def jwt_login(client: TestClient, assertion: str) -> Any:
    return client.post("/services/oauth2/token", data={"grant_type": GRANT_JWT_BEARER, "assertion": assertion})


def test_jwt_bearer_happy_path(
    client: TestClient, server: AuthServer, clock: EpochClock, signing_key: rsa.RSAPrivateKey
) -> None:
    for aud in ("https://login.salesforce.com", "https://test.salesforce.com/", BASE, ["x", BASE]):
        response = jwt_login(client, sign_rs256(signing_key, jwt_claims(clock, aud=aud)))
        assert response.status_code == 200, response.text
        body = response.json()
        assert "refresh_token" not in body and "expires_in" not in body
        assert "refresh_token" not in body["scope"].split()
        assert server.authenticate(f"Bearer {body['access_token']}").username == "bob@example.org"


def test_jwt_bearer_refusals(client: TestClient, clock: EpochClock, signing_key: rsa.RSAPrivateKey) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    invalid = ("invalid_grant", "invalid assertion")
    assert_oauth_error(jwt_login(client, sign_rs256(other_key, jwt_claims(clock))), *invalid)
    wrong_aud = sign_rs256(signing_key, jwt_claims(clock, aud="https://evil.example"))
    assert_oauth_error(jwt_login(client, wrong_aud), "invalid_grant", "audience is invalid")
    expired = sign_rs256(signing_key, jwt_claims(clock, exp=int(clock.now) - 1))
    assert_oauth_error(jwt_login(client, expired), "invalid_grant", "expired authorization code")
    too_far = sign_rs256(signing_key, jwt_claims(clock, exp=int(clock.now) + 86400))
    assert_oauth_error(jwt_login(client, too_far), *invalid)
    no_exp = jwt_claims(clock)
    del no_exp["exp"]
    assert_oauth_error(jwt_login(client, sign_rs256(signing_key, no_exp)), *invalid)
    unknown_app = sign_rs256(signing_key, jwt_claims(clock, iss="ghost"))
    assert_oauth_error(jwt_login(client, unknown_app), "invalid_client_id", "client identifier invalid")
    no_certificate = sign_rs256(signing_key, jwt_claims(clock, iss="pkce-app"))
    assert_oauth_error(jwt_login(client, no_certificate), *invalid)
    unknown_user = sign_rs256(signing_key, jwt_claims(clock, sub="ghost@example.org"))
    assert_oauth_error(jwt_login(client, unknown_user), "invalid_grant", "user hasn't approved this consumer")
    for garbage in ("", "not-a-jwt", "a.b.c", sign_rs256(signing_key, jwt_claims(clock))[:-10]):
        assert_oauth_error(jwt_login(client, garbage), *invalid)


def test_jwt_bearer_refuses_unsigned_and_algorithm_confusion(
    client: TestClient, clock: EpochClock, certificate_pem: str, signing_key: rsa.RSAPrivateKey
) -> None:
    unsigned = jwt_segments({"alg": "none", "typ": "JWT"}, jwt_claims(clock)) + "."
    assert_oauth_error(jwt_login(client, unsigned), "invalid_grant", "invalid assertion")
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, certificate_pem.encode()):
        signing_input = jwt_segments({"alg": "HS256", "typ": "JWT"}, jwt_claims(clock))
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert_oauth_error(jwt_login(client, f"{signing_input}.{b64url(mac)}"), "invalid_grant", "invalid assertion")


def test_jwt_bearer_accepts_a_bare_public_key(
    config: OAuthConfig, clock: EpochClock, signing_key: rsa.RSAPrivateKey
) -> None:
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    config.connected_apps = [ConnectedApp("key-app", "k-secret", certificate_pem=public_pem.decode())]
    client = TestClient(Starlette(routes=AuthServer(config, clock=clock).routes()))
    assert jwt_login(client, sign_rs256(signing_key, jwt_claims(clock, iss="key-app"))).status_code == 200


# --------------------------------------------------------------------------------------------- identity


def test_userinfo(client: TestClient, config: OAuthConfig) -> None:
    token = password_login(client).json()["access_token"]
    response = client.get("/services/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    info = response.json()
    alice = config.users[0]
    assert info["sub"] == f"{BASE}/id/{ORG}/{alice.user_id}"
    assert (info["user_id"], info["organization_id"]) == (alice.user_id, ORG)
    assert (info["preferred_username"], info["name"], info["email"]) == (alice.username, "Alice Admin", alice.email)
    assert (info["given_name"], info["family_name"]) == ("Alice", "Admin")
    assert info["urls"]["rest"] == f"{BASE}/services/data/v{{version}}/"
    assert info["urls"]["sobjects"] == f"{BASE}/services/data/v{{version}}/sobjects/"


def test_userinfo_and_identity_answer_403_for_bad_tokens(client: TestClient, clock: EpochClock) -> None:
    token = password_login(client).json()["access_token"]
    clock.advance(7200)
    for path in ("/services/oauth2/userinfo", f"/id/{ORG}/{salesforce_id18('0055e000001AlIc')}"):
        for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": "Bearer nope"}, {}):
            response = client.get(path, headers=headers)
            assert response.status_code == 403
            assert response.text == "Bad_OAuth_Token"


def test_identity_url(client: TestClient, config: OAuthConfig) -> None:
    body = password_login(client).json()
    response = client.get(body["id"].removeprefix(BASE), headers={"Authorization": f"OAuth {body['access_token']}"})
    assert response.status_code == 200
    identity = response.json()
    alice = config.users[0]
    assert identity["id"] == body["id"]
    assert (identity["user_id"], identity["organization_id"], identity["username"]) == (
        alice.user_id,
        ORG,
        alice.username,
    )
    assert (identity["display_name"], identity["email"]) == ("Alice Admin", alice.email)
    assert identity["asserted_user"] is True
    urls = identity["urls"]
    assert urls["rest"] == f"{BASE}/services/data/v{{version}}/"
    assert urls["query"] == f"{BASE}/services/data/v{{version}}/query/"
    assert urls["partner"] == f"{BASE}/services/Soap/u/{{version}}/{ORG[:15]}"
    versioned = client.get(
        f"/id/{ORG[:15]}/{alice.user_id[:15]}", params={"version": "59.0", "oauth_token": body["access_token"]}
    ).json()
    assert versioned["urls"]["sobjects"] == f"{BASE}/services/data/v59.0/sobjects/"
    other_user = client.get(
        f"/id/{ORG}/{config.users[1].user_id}", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert other_user.status_code == 200 and other_user.json()["asserted_user"] is False
    other_org = client.get(
        f"/id/00D000000000001AAA/{alice.user_id}", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert other_org.status_code == 404


def test_openid_configuration_points_at_the_emulator(client: TestClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").json()
    assert metadata["token_endpoint"] == f"{BASE}/services/oauth2/token"
    assert metadata["code_challenge_methods_supported"] == ["S256"]


# --------------------------------------------------------------------------------------------- introspect


def introspect(client: TestClient, token: str, secret: str = SECRET, client_id: str = "app-1") -> Any:
    return client.post("/services/oauth2/introspect", data={"token": token}, auth=(client_id, secret))


def test_introspect(client: TestClient, clock: EpochClock) -> None:
    tokens = web_login(client)
    access = introspect(client, tokens["access_token"]).json()
    assert access["active"] is True and access["token_type"] == "access_token"
    assert access["client_id"] == "app-1" and access["username"] == "alice@example.org"
    assert access["exp"] == int(clock.now) + 7200 and access["iat"] == int(clock.now)
    assert access["sub"] == tokens["id"]
    refresh_info = introspect(client, tokens["refresh_token"]).json()
    assert refresh_info["active"] is True and refresh_info["token_type"] == "refresh_token"
    assert introspect(client, "nope").json() == {"active": False}
    assert introspect(client, tokens["access_token"], PUBLIC_SECRET, "pkce-app").json() == {"active": False}
    assert_oauth_error(
        introspect(client, tokens["access_token"], "wrong"), "invalid_client", "invalid client credentials"
    )
    clock.advance(7200)
    assert introspect(client, tokens["access_token"]).json() == {"active": False}


def test_introspect_does_not_extend_the_session(client: TestClient, server: AuthServer, clock: EpochClock) -> None:
    token = password_login(client).json()["access_token"]
    clock.advance(7000)
    assert introspect(client, token).json()["active"] is True
    clock.advance(200)
    assert_invalid_session(server, f"Bearer {token}")


# --------------------------------------------------------------------------------------------- secrecy


def test_tokens_and_secrets_stay_out_of_logs_and_reprs(
    client: TestClient, server: AuthServer, clock: EpochClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = web_login(client)
    password = password_login(client).json()
    refreshed = refresh(client, tokens["refresh_token"]).json()
    password_login(client, password="wrong")
    client.post("/services/oauth2/revoke", data={"token": tokens["refresh_token"]})
    assert "token issued" in caplog.text and "invalid_grant" in caplog.text  # something was logged
    secrets_seen = [
        tokens["access_token"],
        tokens["refresh_token"],
        password["access_token"],
        refreshed["access_token"],
        SECRET,
        ALICE_PASSWORD,
        ALICE_TOKEN,
        ALICE_PASSWORD + ALICE_TOKEN,
    ]
    session = server.authenticate(password["access_token"])
    for secret in secrets_seen:
        assert secret not in caplog.text
        assert secret not in repr(session)
        assert secret not in repr(server.config)


# --------------------------------------------------------------------------------------------- a real client


async def test_authlib_client_completes_pkce_refresh_and_client_credentials(server: AuthServer) -> None:
    """authlib's OAuth2 client (what our Salesforce client is built on) against the endpoints, unmodified."""
    app = Starlette(routes=server.routes())
    token_url = f"{BASE}/services/oauth2/token"
    async with AsyncOAuth2Client(
        "app-1", SECRET, redirect_uri=CALLBACK, code_challenge_method="S256", transport=httpx2.ASGITransport(app=app)
    ) as oauth:
        verifier = "authlib-verifier-" + "z" * 40
        url, _ = oauth.create_authorization_url(
            f"{BASE}/services/oauth2/authorize", code_verifier=verifier, state="st-8"
        )
        redirect = await oauth.request("GET", url, follow_redirects=False, withhold_token=True)
        token = await oauth.fetch_token(
            token_url, authorization_response=redirect.headers["location"], code_verifier=verifier, state="st-8"
        )
        assert token["token_type"] == "Bearer" and "refresh_token" in token
        userinfo = await oauth.get(f"{BASE}/services/oauth2/userinfo")
        assert userinfo.status_code == 200 and userinfo.json()["preferred_username"] == "alice@example.org"
        server.expire_all()
        assert (await oauth.get(f"{BASE}/services/oauth2/userinfo")).status_code == 403
        renewed = await oauth.refresh_token(token_url)
        assert renewed["access_token"] != token["access_token"]
        assert server.authenticate(f"Bearer {renewed['access_token']}").username == "alice@example.org"
    async with AsyncOAuth2Client("app-1", SECRET, transport=httpx2.ASGITransport(app=app)) as machine:
        token = await machine.fetch_token(token_url, grant_type="client_credentials")  # Basic auth by default
        assert "refresh_token" not in token
        assert server.authenticate(f"Bearer {token['access_token']}").username == "alice@example.org"
