"""OAuth flows against a MockTransport token endpoint shaped like Salesforce's (fixtures §1.3)."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import SecretStr

from sfsync.salesforce.auth import (
    AuthorizationCodeAuth,
    ClientCredentialsAuth,
    JwtBearerAuth,
    PasswordAuth,
    RefreshTokenAuth,
    Session,
    SessionSealError,
    StaticTokenAuth,
    decrypt_session,
    encrypt_session,
    generate_session_key,
    jwt_audience,
    provider_from_settings,
    token_signature,
)
from sfsync.salesforce.errors import AuthenticationError, SalesforceRetriableError
from sfsync.salesforce.settings import SalesforceSettings
from tests.kit import TOKEN_CLIENT_SECRET, TOKEN_URL, TokenEndpoint, http_for, recorded_text, signed_success

SECRET = TOKEN_CLIENT_SECRET


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[str, RSAKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, RSAKey.import_key(public)


async def test_jwt_bearer_posts_an_rs256_assertion_with_salesforce_claims(rsa_pem):
    pem, public = rsa_pem
    endpoint = TokenEndpoint((200, json.loads(recorded_text("restforce_oauth_token_success.json"))))
    auth = JwtBearerAuth(
        client_id="3MVG9-consumer",
        username="integration@example.org",
        private_key=SecretStr(pem),
        token_url=TOKEN_URL,
        audience="https://login.salesforce.com",
        clock=lambda: 1_700_000_000,
    )
    async with http_for(endpoint) as http:
        session = await auth.authenticate(http)
    form = endpoint.forms[0]
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    token = jwt.decode(form["assertion"], public, algorithms=["RS256"])
    assert token.header["alg"] == "RS256"
    assert token.claims["iss"] == "3MVG9-consumer"
    assert token.claims["sub"] == "integration@example.org"
    assert token.claims["aud"] == "https://login.salesforce.com"
    assert token.claims["exp"] == 1_700_000_000 + 180
    assert session.instance_url == "https://na1.salesforce.com"
    assert session.issued_at.timestamp() == pytest.approx(1278448832.702)
    assert session.org_id == "00Dx0000000BV7z"
    assert session.user_id == "005x00000012Q9P"
    assert session.refresh_token is None


async def test_jwt_with_a_bad_key_is_a_fatal_auth_error_without_the_key():
    auth = JwtBearerAuth(
        client_id="c", username="u", private_key=SecretStr("not a pem SECRETKEY"), token_url=TOKEN_URL, audience="a"
    )
    with pytest.raises(AuthenticationError) as info:
        auth.assertion()
    assert "SECRETKEY" not in str(info.value)


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_jwt_audience(login_url, audience):
    assert jwt_audience(login_url) == audience


async def test_client_credentials_verifies_the_signature():
    endpoint = TokenEndpoint((200, signed_success()))
    auth = ClientCredentialsAuth(client_id="cid", client_secret=SecretStr(SECRET), token_url=TOKEN_URL)
    async with http_for(endpoint) as http:
        session = await auth.authenticate(http)
    assert endpoint.forms[0] == {"grant_type": "client_credentials", "client_id": "cid", "client_secret": SECRET}
    assert session.access_token.get_secret_value().startswith("00Dx0000000BV7z!")


async def test_a_forged_signature_is_rejected():
    endpoint = TokenEndpoint((200, signed_success(secret="someone-else")))
    auth = ClientCredentialsAuth(client_id="cid", client_secret=SecretStr(SECRET), token_url=TOKEN_URL)
    async with http_for(endpoint) as http:
        with pytest.raises(AuthenticationError, match="signature"):
            await auth.authenticate(http)


def test_signature_is_base64_hmac_sha256_of_id_and_issued_at():
    import hmac

    expected = base64.b64encode(hmac.new(b"k", b"https://x/id/1/2" + b"123", hashlib.sha256).digest()).decode()
    assert token_signature("k", "https://x/id/1/2", "123") == expected


async def test_password_flow_appends_the_security_token():
    endpoint = TokenEndpoint((200, signed_success()))
    auth = PasswordAuth(
        client_id="cid",
        client_secret=SecretStr(SECRET),
        username="u@example.org",
        password=SecretStr("hunter2"),
        security_token=SecretStr("TOK"),
        token_url=TOKEN_URL,
    )
    async with http_for(endpoint) as http:
        await auth.authenticate(http)
    assert endpoint.forms[0]["grant_type"] == "password"
    assert endpoint.forms[0]["password"] == "hunter2TOK"
    assert endpoint.forms[0]["username"] == "u@example.org"


async def test_refresh_token_is_kept_unless_rotated():
    endpoint = TokenEndpoint(
        (200, signed_success()), (200, signed_success(refresh_token="rotated-2")), (200, signed_success())
    )
    auth = RefreshTokenAuth(
        client_id="cid", refresh_token=SecretStr("r1"), token_url=TOKEN_URL, client_secret=SecretStr(SECRET)
    )
    async with http_for(endpoint) as http:
        first = await auth.authenticate(http)
        second = await auth.refresh(http, first)
        await auth.refresh(http, second)
    assert first.refresh_token is not None
    assert first.refresh_token.get_secret_value() == "r1"
    assert [f["refresh_token"] for f in endpoint.forms] == ["r1", "r1", "rotated-2"]
    assert all(f["grant_type"] == "refresh_token" for f in endpoint.forms)


async def test_only_a_rotated_refresh_token_is_handed_to_the_hook_before_the_session_is_returned():
    endpoint = TokenEndpoint(
        (200, signed_success()),
        (200, signed_success(refresh_token="r1")),
        (200, signed_success(refresh_token="rotated-2")),
        (200, signed_success(refresh_token="rotated-2")),
    )
    handed: list[str] = []

    async def store(token: SecretStr) -> None:
        handed.append(token.get_secret_value())

    auth = RefreshTokenAuth(client_id="cid", refresh_token=SecretStr("r1"), token_url=TOKEN_URL, on_refresh_token=store)
    async with http_for(endpoint) as http:
        for expected in ([], [], ["rotated-2"], ["rotated-2"]):
            await auth.authenticate(http)
            assert handed == expected
    assert [f["refresh_token"] for f in endpoint.forms] == ["r1", "r1", "r1", "rotated-2"]


async def test_the_browser_flow_hands_a_rotated_refresh_token_to_the_hook():
    endpoint = TokenEndpoint((200, signed_success(refresh_token="rotated-web")))
    handed: list[str] = []

    async def store(token: SecretStr) -> None:
        handed.append(token.get_secret_value())

    settings = SalesforceSettings(
        auth_flow="authorization_code",
        client_id="cid",
        redirect_uri="https://app.example/callback",
        refresh_token=SecretStr("r-web"),
    )
    auth = provider_from_settings(settings, on_refresh_token=store)
    async with http_for(endpoint) as http:
        await auth.authenticate(http)
    assert handed == ["rotated-web"]


async def test_invalid_grant_fixture_is_fatal_and_5xx_is_retriable():
    endpoint = TokenEndpoint(
        (400, recorded_text("restforce_oauth_refresh_error_expired.json")), (503, "<html>down</html>")
    )
    auth = RefreshTokenAuth(client_id="cid", refresh_token=SecretStr("r1"), token_url=TOKEN_URL)
    async with http_for(endpoint) as http:
        with pytest.raises(AuthenticationError) as fatal:
            await auth.authenticate(http)
        with pytest.raises(SalesforceRetriableError):
            await auth.authenticate(http)
    assert fatal.value.error_code == "invalid_grant"
    assert "expired access/refresh token" in fatal.value.message


async def test_transport_failure_on_the_token_endpoint_is_wrapped():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    auth = ClientCredentialsAuth(client_id="cid", client_secret=SecretStr(SECRET), token_url=TOKEN_URL)
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(SalesforceRetriableError) as info:
            await auth.authenticate(http)
    assert info.value.error_code == "CONNECTION_ERROR"
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_authorization_code_with_pkce_and_state():
    endpoint = TokenEndpoint((200, signed_success(refresh_token="r-web")), (200, signed_success()))
    auth = AuthorizationCodeAuth(
        client_id="cid",
        redirect_uri="https://app.example.org/callback",
        login_url="https://login.salesforce.com",
        client_secret=SecretStr(SECRET),
    )
    request = auth.authorization_request()
    url = urlsplit(request.url)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.path == "/services/oauth2/authorize"
    assert query["response_type"] == "code"
    assert query["state"] == request.state
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert request.code_verifier not in repr(request)

    async with http_for(endpoint) as http:
        with pytest.raises(AuthenticationError, match="state"):
            await auth.exchange(http, request, "https://app.example.org/callback?code=abc&state=forged")
        with pytest.raises(AuthenticationError):
            await auth.exchange(http, request, "https://app.example.org/callback?error=access_denied&state=x")
        session = await auth.exchange(http, request, f"https://app.example.org/callback?code=abc&state={request.state}")
        refreshed = await auth.refresh(http, session)
    exchange_form, refresh_form = endpoint.forms
    assert exchange_form["grant_type"] == "authorization_code"
    assert exchange_form["code"] == "abc"
    assert exchange_form["code_verifier"] == request.code_verifier
    assert exchange_form["redirect_uri"] == "https://app.example.org/callback"
    assert refresh_form == {
        "grant_type": "refresh_token",
        "refresh_token": "r-web",
        "client_id": "cid",
        "client_secret": SECRET,
    }
    assert refreshed.refresh_token is not None
    assert refreshed.refresh_token.get_secret_value() == "r-web"


async def test_authorization_code_before_exchange_cannot_authenticate():
    auth = AuthorizationCodeAuth(client_id="cid", redirect_uri="https://a/cb", login_url="https://login.salesforce.com")
    async with httpx.AsyncClient() as http:
        with pytest.raises(AuthenticationError, match="not completed"):
            await auth.authenticate(http)


async def test_static_token_cannot_refresh():
    auth = StaticTokenAuth(access_token=SecretStr("00D000000000001!tok"), instance_url="http://127.0.0.1:8080/")
    async with httpx.AsyncClient() as http:
        session = await auth.authenticate(http)
        assert session.instance_url == "http://127.0.0.1:8080"
        with pytest.raises(AuthenticationError):
            await auth.refresh(http, session)


def make_session() -> Session:
    return Session.model_validate(
        {
            "access_token": "00Dx0000000BV7z!SECRETACCESS",
            "instance_url": "https://na1.salesforce.com",
            "issued_at": "2024-01-01T00:00:00+00:00",
            "id_url": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
            "refresh_token": "SECRETREFRESH",
        }
    )


def test_session_never_shows_its_secrets():
    session = make_session()
    for text in (repr(session), str(session), session.model_dump_json()):
        assert "SECRETACCESS" not in text
        assert "SECRETREFRESH" not in text


def test_sessions_encrypt_and_decrypt_with_fernet():
    session, key = make_session(), generate_session_key()
    blob = encrypt_session(session, key)
    assert b"SECRETACCESS" not in blob
    assert b"SECRETREFRESH" not in blob
    opened = decrypt_session(blob, key)
    assert opened.access_token.get_secret_value() == "00Dx0000000BV7z!SECRETACCESS"
    assert opened.refresh_token is not None
    assert opened.refresh_token.get_secret_value() == "SECRETREFRESH"
    assert opened.issued_at == session.issued_at
    with pytest.raises(SessionSealError):
        decrypt_session(blob, generate_session_key())
    with pytest.raises(SessionSealError):
        decrypt_session(blob[:-4] + b"AAAA", key)
    with pytest.raises(SessionSealError):
        encrypt_session(session, b"short")


def test_provider_from_settings_picks_the_flow(tmp_path):
    key_file = tmp_path / "key.pem"
    key_file.write_text("pem")
    jwt_settings = SalesforceSettings(client_id="c", username="u", private_key_file=key_file)
    provider = provider_from_settings(jwt_settings)
    assert isinstance(provider, JwtBearerAuth)
    assert provider.audience == "https://login.salesforce.com"
    password = SalesforceSettings(
        auth_flow="password",
        client_id="c",
        client_secret="s",
        username="u",
        password="p",
        login_url="https://test.salesforce.com",
    )
    provider = provider_from_settings(password)
    assert isinstance(provider, PasswordAuth)
    assert provider.token_url == "https://test.salesforce.com/services/oauth2/token"
    assert "p" not in repr(provider).replace("PasswordAuth", "")
