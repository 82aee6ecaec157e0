"""OAuth 2.0 logins to Salesforce, each producing a :class:`Session`.

Providers (all share one ``httpx.AsyncClient``, so tests inject one transport for everything):

- :class:`JwtBearerAuth` — server-to-server, RS256 assertion signed by authlib (joserfc).
- :class:`ClientCredentialsAuth` — connected app with a run-as user (My Domain host only).
- :class:`RefreshTokenAuth` — a stored refresh token (rotation honoured: a new refresh token in a token
  response replaces it, and is handed to the ``on_refresh_token`` hook to be stored).
- :class:`AuthorizationCodeAuth` — web-server flow with ``state`` and PKCE (S256).
- :class:`PasswordAuth` — legacy username + password + security token.
- :class:`StaticTokenAuth` — a ready access token (emulator, tests, ``sf org display``).

Salesforce token responses carry no ``expires_in``; expiry shows up as a 401
``INVALID_SESSION_ID`` and the client then calls :meth:`AuthProvider.refresh` once. When the
client secret is known, the response ``signature`` (base64 HMAC-SHA256 of ``id + issued_at``
keyed by the secret) is verified. Sessions can be sealed with Fernet for storage at rest
(:func:`encrypt_session` / :func:`decrypt_session`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.fernet import Fernet, InvalidToken
from joserfc.jwk import RSAKey
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from sfsync.salesforce.errors import (
    AuthenticationError,
    SalesforceError,
    SalesforceFatalError,
    UnexpectedResponse,
    classify,
    parse_error_body,
)
from sfsync.salesforce.settings import SalesforceSettings

RefreshTokenHook = Callable[[SecretStr], Awaitable[None]]
"""Awaited with a refresh token that Salesforce rotated (a token response carried a new one), to store it:
the old one may no longer work, so a process restarted without it could not log in."""

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_S = 180
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


class Session(BaseModel):
    """An authenticated Salesforce session. Secrets never appear in ``repr`` or ``str``."""

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    instance_url: str
    issued_at: datetime
    id_url: str | None = None
    refresh_token: SecretStr | None = None
    scope: str | None = None

    @property
    def org_id(self) -> str | None:
        """The org id from the identity URL (``.../id/{orgId}/{userId}``)."""
        parts = (self.id_url or "").rstrip("/").split("/")
        return parts[-2] if len(parts) >= 2 and "id" in parts else None

    @property
    def user_id(self) -> str | None:
        """The user id from the identity URL."""
        parts = (self.id_url or "").rstrip("/").split("/")
        return parts[-1] if len(parts) >= 2 and "id" in parts else None


class SessionSealError(SalesforceFatalError):
    """A stored session blob could not be decrypted (wrong key, or tampered with)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="SESSION_SEAL")


def generate_session_key() -> bytes:
    """A new Fernet key (urlsafe base64, 32 bytes) for :func:`encrypt_session`."""
    return Fernet.generate_key()


def encrypt_session(session: Session, key: bytes | str) -> bytes:
    """Seal ``session`` (tokens included) with Fernet (AES-128-CBC + HMAC-SHA256) for storage."""
    payload = {
        "access_token": session.access_token.get_secret_value(),
        "instance_url": session.instance_url,
        "issued_at": session.issued_at.isoformat(),
        "id_url": session.id_url,
        "refresh_token": session.refresh_token.get_secret_value() if session.refresh_token else None,
        "scope": session.scope,
    }
    try:
        return Fernet(key).encrypt(orjson.dumps(payload))
    except (ValueError, TypeError) as exc:
        raise SessionSealError("invalid session encryption key (expected a Fernet key)") from exc


def decrypt_session(blob: bytes, key: bytes | str) -> Session:
    """Open a blob made by :func:`encrypt_session`; :class:`SessionSealError` if it does not open."""
    try:
        data = orjson.loads(Fernet(key).decrypt(blob))
        return Session.model_validate(data)
    except InvalidToken as exc:
        raise SessionSealError("session blob does not decrypt with this key (wrong key or tampered)") from exc
    except (ValueError, TypeError, ValidationError) as exc:
        raise SessionSealError("session blob is not a sealed session") from exc


def token_signature(client_secret: str, id_url: str, issued_at: str) -> str:
    """The ``signature`` Salesforce puts in token responses: base64(HMAC-SHA256(secret, id + issued_at))."""
    digest = hmac.new(client_secret.encode(), (id_url + issued_at).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def session_from_token_response(
    data: dict[str, Any], *, client_secret: SecretStr | None = None, previous_refresh: SecretStr | None = None
) -> Session:
    """Build a :class:`Session` from a token-endpoint JSON body, verifying its signature if possible."""
    try:
        access_token = str(data["access_token"])
        instance_url = str(data["instance_url"]).rstrip("/")
    except KeyError as exc:
        raise UnexpectedResponse(f"token response lacks {exc.args[0]}", error_code="BAD_TOKEN_RESPONSE") from None
    raw_issued = str(data.get("issued_at") or "")
    id_url = data.get("id")
    signature = data.get("signature")
    if client_secret is not None and signature and id_url and raw_issued:
        expected = token_signature(client_secret.get_secret_value(), str(id_url), raw_issued)
        if not hmac.compare_digest(expected, str(signature)):
            raise AuthenticationError(
                "token response signature does not match (wrong client secret, or response altered)",
                error_code="BAD_SIGNATURE",
                status=200,
            )
    issued = datetime.fromtimestamp(int(raw_issued) / 1000, tz=UTC) if raw_issued.isdigit() else datetime.now(UTC)
    refresh = data.get("refresh_token")
    return Session(
        access_token=SecretStr(access_token),
        instance_url=instance_url,
        issued_at=issued,
        id_url=str(id_url) if id_url else None,
        refresh_token=SecretStr(str(refresh)) if refresh else previous_refresh,
        scope=str(data["scope"]) if data.get("scope") else None,
    )


def _transport_error(exc: httpx.HTTPError) -> SalesforceError:
    code = "TIMEOUT" if isinstance(exc, httpx.TimeoutException) else "CONNECTION_ERROR"
    if not isinstance(exc, httpx.TimeoutException | httpx.ConnectError):
        code = "TRANSPORT_ERROR"
    return classify(0, code, f"token endpoint: {type(exc).__name__}")


async def _post_token(
    http: httpx.AsyncClient, url: str, body: str, *, client_secret: SecretStr | None, previous_refresh: SecretStr | None
) -> Session:
    try:
        response = await http.post(url, content=body.encode(), headers=_FORM)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from exc
    try:
        data = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        data = None
    if response.status_code != 200:
        raise parse_error_body(response.status_code, data if data is not None else response.text[:300])
    if not isinstance(data, dict):
        raise UnexpectedResponse("token endpoint answered 200 without a JSON object", status=200)
    if "error" in data:
        raise parse_error_body(400, data)
    return session_from_token_response(data, client_secret=client_secret, previous_refresh=previous_refresh)


def _form(grant_type: str, **params: str | None) -> str:
    return str(prepare_token_request(grant_type, **{k: v for k, v in params.items() if v is not None}))


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class AuthProvider(ABC):
    """Something that can log in, and log in again when the session expires."""

    @abstractmethod
    async def authenticate(self, http: httpx.AsyncClient) -> Session:
        """Obtain a fresh session. Raises :class:`AuthenticationError` (fatal) or a retriable error."""

    async def refresh(self, http: httpx.AsyncClient, session: Session) -> Session:
        """Replace an expired ``session``; by default, log in again."""
        return await self.authenticate(http)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class JwtBearerAuth(AuthProvider):
    """OAuth 2.0 JWT bearer flow: ``iss`` = consumer key, ``sub`` = username, ``aud`` = login host."""

    def __init__(
        self,
        *,
        client_id: str,
        username: str,
        private_key: SecretStr,
        token_url: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.username = username
        self._private_key = private_key
        self.token_url = token_url
        self.audience = audience
        self._clock = clock

    def assertion(self) -> str:
        """A signed RS256 assertion valid for three minutes."""
        now = int(self._clock())
        try:
            key = RSAKey.import_key(self._private_key.get_secret_value())
        except Exception as exc:  # noqa: BLE001 - joserfc/cryptography raise many types for a bad key; never echo it
            raise AuthenticationError(
                f"the configured private key is not an RSA PEM key ({type(exc).__name__})",
                error_code="BAD_PRIVATE_KEY",
            ) from None
        token = JWTBearerGrant.sign(
            key=key,
            issuer=self.client_id,
            audience=self.audience,
            subject=self.username,
            issued_at=now,
            expires_at=now + JWT_LIFETIME_S,
            alg="RS256",
        )
        return token.decode() if isinstance(token, bytes) else str(token)

    async def authenticate(self, http: httpx.AsyncClient) -> Session:
        body = _form(JWT_BEARER_GRANT, assertion=self.assertion())
        return await _post_token(http, self.token_url, body, client_secret=None, previous_refresh=None)


class ClientCredentialsAuth(AuthProvider):
    """OAuth 2.0 client credentials flow (needs the org's My Domain as ``token_url`` host)."""

    def __init__(self, *, client_id: str, client_secret: SecretStr, token_url: str, scope: str | None = None) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.token_url = token_url
        self.scope = scope

    async def authenticate(self, http: httpx.AsyncClient) -> Session:
        body = _form(
            "client_credentials",
            client_id=self.client_id,
            client_secret=self._client_secret.get_secret_value(),
            scope=self.scope,
        )
        return await _post_token(http, self.token_url, body, client_secret=self._client_secret, previous_refresh=None)


class RefreshTokenAuth(AuthProvider):
    """Refresh-token grant; keeps the refresh token unless Salesforce rotates it.

    A token response that carries another refresh token rotated it: that one is used from then on, and
    ``on_refresh_token`` is awaited with it (before the session is returned) so it can be stored. A raise
    of the hook fails the login; the new token is kept for the next one.
    """

    def __init__(
        self,
        *,
        client_id: str,
        refresh_token: SecretStr,
        token_url: str,
        client_secret: SecretStr | None = None,
        on_refresh_token: RefreshTokenHook | None = None,
    ) -> None:
        self.client_id = client_id
        self._refresh_token = refresh_token
        self._client_secret = client_secret
        self.token_url = token_url
        self._on_refresh_token = on_refresh_token

    async def authenticate(self, http: httpx.AsyncClient) -> Session:
        body = _form(
            "refresh_token",
            refresh_token=self._refresh_token.get_secret_value(),
            client_id=self.client_id,
            client_secret=_secret(self._client_secret),
        )
        session = await _post_token(
            http, self.token_url, body, client_secret=self._client_secret, previous_refresh=self._refresh_token
        )
        rotated = session.refresh_token
        if rotated is not None and rotated.get_secret_value() != self._refresh_token.get_secret_value():
            self._refresh_token = rotated
            if self._on_refresh_token is not None:
                await self._on_refresh_token(rotated)
        return session

    async def refresh(self, http: httpx.AsyncClient, session: Session) -> Session:
        if session.refresh_token is not None:
            self._refresh_token = session.refresh_token
        return await self.authenticate(http)


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the user, and what to keep until the callback (``state``, PKCE verifier)."""

    url: str
    state: str
    code_verifier: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(url={self.url!r}, state={self.state!r}, code_verifier='**********')"


class AuthorizationCodeAuth(AuthProvider):
    """Web-server flow with PKCE (S256) and ``state``; later refreshes use the issued refresh token (a rotated
    one is handed to ``on_refresh_token``, as :class:`RefreshTokenAuth` does)."""

    def __init__(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        login_url: str,
        client_secret: SecretStr | None = None,
        scope: str | None = "api refresh_token",
        refresh_token: SecretStr | None = None,
        on_refresh_token: RefreshTokenHook | None = None,
    ) -> None:
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.login_url = login_url.rstrip("/")
        self._client_secret = client_secret
        self.scope = scope
        self._refresh_token = refresh_token
        self._on_refresh_token = on_refresh_token

    @property
    def token_url(self) -> str:
        return f"{self.login_url}/services/oauth2/token"

    def authorization_request(self, *, state: str | None = None) -> AuthorizationRequest:
        """Build the authorize URL with a fresh ``state`` and S256 ``code_challenge``."""
        verifier = generate_token(64)
        chosen_state = state or generate_token(32)
        url = prepare_grant_uri(
            f"{self.login_url}/services/oauth2/authorize",
            client_id=self.client_id,
            response_type="code",
            redirect_uri=self.redirect_uri,
            scope=self.scope,
            state=chosen_state,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return AuthorizationRequest(url=str(url), state=chosen_state, code_verifier=verifier)

    async def exchange(self, http: httpx.AsyncClient, request: AuthorizationRequest, callback_url: str) -> Session:
        """Finish the flow from the callback URL: check ``state``, then trade the code (+ verifier)."""
        query = parse_qs(urlsplit(callback_url).query)
        if "error" in query:
            description = query.get("error_description", [query["error"][0]])[0]
            raise classify(400, query["error"][0], description)
        if query.get("state", [None])[0] != request.state:
            raise AuthenticationError("OAuth callback state does not match the request", error_code="STATE_MISMATCH")
        code = query.get("code", [None])[0]
        if not code:
            raise AuthenticationError("OAuth callback carries no code", error_code="MISSING_CODE")
        return await self.exchange_code(http, code, request.code_verifier)

    async def exchange_code(self, http: httpx.AsyncClient, code: str, code_verifier: str) -> Session:
        """Trade an authorization ``code`` for a session (keeps its refresh token for later)."""
        body = _form(
            "authorization_code",
            code=code,
            client_id=self.client_id,
            client_secret=_secret(self._client_secret),
            redirect_uri=self.redirect_uri,
            code_verifier=code_verifier,
        )
        session = await _post_token(
            http, self.token_url, body, client_secret=self._client_secret, previous_refresh=None
        )
        if session.refresh_token is not None:
            self._refresh_token = session.refresh_token
        return session

    async def authenticate(self, http: httpx.AsyncClient) -> Session:
        if self._refresh_token is None:
            raise AuthenticationError(
                "authorization code flow not completed: no refresh token yet", error_code="NOT_AUTHORIZED"
            )
        delegate = RefreshTokenAuth(
            client_id=self.client_id,
            refresh_token=self._refresh_token,
            token_url=self.token_url,
            client_secret=self._client_secret,
            on_refresh_token=self._on_refresh_token,
        )
        session = await delegate.authenticate(http)
        self._refresh_token = session.refresh_token or self._refresh_token
        return session


class PasswordAuth(AuthProvider):
    """Legacy username-password flow (password + security token). Blocked in orgs from Summer '23."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        username: str,
        password: SecretStr,
        token_url: str,
        security_token: SecretStr | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.username = username
        self._password = password
        self._security_token = security_token
        self.token_url = token_url

    async def authenticate(self, http: httpx.AsyncClient) -> Session:
        secret = self._password.get_secret_value() + (_secret(self._security_token) or "")
        body = _form(
            "password",
            client_id=self.client_id,
            client_secret=self._client_secret.get_secret_value(),
            username=self.username,
            password=secret,
        )
        return await _post_token(http, self.token_url, body, client_secret=self._client_secret, previous_refresh=None)


class StaticTokenAuth(AuthProvider):
    """A ready-made access token; it cannot be refreshed, so expiry is fatal."""

    def __init__(self, *, access_token: SecretStr, instance_url: str) -> None:
        self._session = Session(
            access_token=access_token, instance_url=instance_url.rstrip("/"), issued_at=datetime.now(UTC)
        )

    async def authenticate(self, http: httpx.AsyncClient) -> Session:
        return self._session

    async def refresh(self, http: httpx.AsyncClient, session: Session) -> Session:
        raise AuthenticationError(
            "the static access token expired and cannot be refreshed", error_code="INVALID_SESSION_ID", status=401
        )


def jwt_audience(login_url: str) -> str:
    """The ``aud`` Salesforce expects: login/test.salesforce.com, else the login URL itself."""
    host = urlsplit(login_url).hostname or ""
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host == "login.salesforce.com" or host.endswith(".my.salesforce.com"):
        return "https://login.salesforce.com"
    return login_url.rstrip("/")


def provider_from_settings(
    settings: SalesforceSettings, *, on_refresh_token: RefreshTokenHook | None = None
) -> AuthProvider:
    """The provider for ``settings.auth_flow`` (the settings validated the credentials it needs);
    ``on_refresh_token`` is the refresh-token flows' hook for a rotated refresh token."""
    flow = settings.auth_flow
    client_id = settings.client_id or ""
    if flow == "jwt_bearer":
        key = settings.private_key_pem()
        assert key is not None
        assert settings.username is not None
        return JwtBearerAuth(
            client_id=client_id,
            username=settings.username,
            private_key=key,
            token_url=settings.token_url,
            audience=settings.jwt_audience or jwt_audience(settings.login_url),
        )
    if flow == "client_credentials":
        assert settings.client_secret is not None
        return ClientCredentialsAuth(
            client_id=client_id,
            client_secret=settings.client_secret,
            token_url=settings.token_url,
            scope=settings.scope,
        )
    if flow == "refresh_token":
        assert settings.refresh_token is not None
        return RefreshTokenAuth(
            client_id=client_id,
            refresh_token=settings.refresh_token,
            token_url=settings.token_url,
            client_secret=settings.client_secret,
            on_refresh_token=on_refresh_token,
        )
    if flow == "authorization_code":
        assert settings.redirect_uri is not None
        return AuthorizationCodeAuth(
            client_id=client_id,
            redirect_uri=settings.redirect_uri,
            login_url=settings.login_url,
            client_secret=settings.client_secret,
            scope=settings.scope or "api refresh_token",
            refresh_token=settings.refresh_token,
            on_refresh_token=on_refresh_token,
        )
    if flow == "password":
        assert settings.client_secret is not None
        assert settings.username is not None
        assert settings.password is not None
        return PasswordAuth(
            client_id=client_id,
            client_secret=settings.client_secret,
            username=settings.username,
            password=settings.password,
            security_token=settings.security_token,
            token_url=settings.token_url,
        )
    assert settings.access_token is not None
    assert settings.instance_url is not None
    return StaticTokenAuth(access_token=settings.access_token, instance_url=settings.instance_url)
