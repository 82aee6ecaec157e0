"""OAuth 2.0 for the emulated org: the token endpoint, authorize, revoke, introspect, userinfo, identity URLs.

Behaviour follows Salesforce's documented (and observed) wire contract, because real clients are pointed
at it (see shared/research/salesforce-api.md §1):

- ``POST /services/oauth2/token`` (form-encoded; parameters in the query string are honoured too) for the
  grants ``authorization_code`` (+ PKCE S256), ``refresh_token``, ``urn:ietf:params:oauth:grant-type:jwt-bearer``
  (RS256 assertion checked against the connected app's certificate), ``client_credentials`` and ``password``.
  The success body carries ``access_token``, ``refresh_token`` (authorization code only, and only with the
  ``refresh_token``/``offline_access`` scope; also every refresh grant of a connected app with refresh
  token rotation, see :class:`ConnectedApp`), ``signature``, ``scope``, ``instance_url``, ``id``,
  ``token_type`` and ``issued_at`` (epoch milliseconds as a string) and never ``expires_in``.
  Errors are ``{"error", "error_description"}`` with Salesforce's strings.
- ``GET /services/oauth2/authorize``: no login page; the request is approved at once for the user named
  by ``login_hint`` (or the first user) and redirected to ``redirect_uri?code=...&state=...``.
- ``POST /services/oauth2/revoke``, ``POST /services/oauth2/introspect``, ``GET /services/oauth2/userinfo``,
  ``GET /id/{orgId}/{userId}`` (userinfo and identity answer ``403 Bad_OAuth_Token`` for a bad token, as
  Salesforce does), ``GET /.well-known/openid-configuration``.
- :meth:`AuthServer.authenticate` is what every ``/services/data`` call goes through: a missing, unknown,
  expired or revoked token raises ``ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")``.
  Sessions time out after ``session_timeout_s`` of inactivity (each use extends them).

Tokens, secrets and passwords never appear in logs, exception messages or reprs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
import string
import threading
import time
import urllib.parse
import warnings
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from sfsync.emulator.errors import ApiError, OAuthError
from sfsync.emulator.ids import normalize as normalize_id

# authlib 1.9 announces authlib.jose's deprecation (in favour of joserfc) on import, and installs a global
# "always" filter for it while doing so; keep both out of the process's warning state.
with warnings.catch_warnings():
    import authlib.deprecate

    warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebToken
    from authlib.jose.errors import JoseError

log = logging.getLogger(__name__)

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a grant name, not a secret)
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_PASSWORD = "password"  # noqa: S105 (a grant name, not a secret)
ALL_GRANTS: frozenset[str] = frozenset(
    {GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN, GRANT_JWT_BEARER, GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD}
)

#: JWT ``aud`` values accepted besides the emulator's own URL.
DEFAULT_JWT_AUDIENCES: tuple[str, ...] = ("https://login.salesforce.com", "https://test.salesforce.com")
_REFRESH_SCOPES = frozenset({"refresh_token", "offline_access"})
_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})
_TOKEN_CHARS = string.ascii_letters + string.digits + "._"  # what may follow "!" (sfdx-core's token regex)
_NO_STORE = {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private", "Pragma": "no-cache"}
_VERSION = re.compile(r"^\d{2,3}\.\d$")
_JWT = JsonWebToken(["RS256"])
ISSUED_KEPT = 10_000
"""How many of the tokens an org issued :meth:`AuthServer.issued_tokens` remembers (the latest)."""


# --------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ConnectedApp:
    """A connected app: consumer key/secret, callback URLs, certificate (JWT bearer), enabled grants and scopes.

    ``require_secret`` mirrors "Require Secret for Web Server Flow" / "... for Refresh Token Flow": when it is
    off, a PKCE client may omit ``client_secret`` on those two grants (a secret that is sent must still match).
    ``rotate_refresh_tokens`` ("Enable Refresh Token Rotation"): each refresh grant returns a new refresh
    token and retires the one it was given; a retired token presented again is refused and revokes its
    whole family -- the current refresh token and every access token minted along the chain -- so the
    client must authorize again (Salesforce's single-use refresh tokens). Off: a refresh token is reused
    until revoked or expired.
    """

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: Sequence[str] = ()
    certificate_pem: str | None = field(default=None, repr=False)
    allowed_grants: Collection[str] = ALL_GRANTS
    scopes: Sequence[str] = ("api", "id", "refresh_token")
    require_secret: bool = True
    rotate_refresh_tokens: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "redirect_uris", tuple(self.redirect_uris))
        object.__setattr__(self, "allowed_grants", frozenset(self.allowed_grants))
        object.__setattr__(self, "scopes", tuple(self.scopes))


@dataclass(frozen=True)
class EmulatedUser:
    """A user who can log in. The password flow takes ``password + security_token`` (an empty token means
    the caller is treated as coming from a trusted IP range, so the bare password is enough)."""

    user_id: str
    username: str
    password: str = field(repr=False)
    security_token: str = field(default="", repr=False)
    display_name: str = ""
    email: str = ""
    locale: str = "en_US"
    timezone: str = "GMT"

    @property
    def first_name(self) -> str:
        return self.display_name.rpartition(" ")[0]

    @property
    def last_name(self) -> str:
        return self.display_name.rpartition(" ")[2]


@dataclass
class OAuthConfig:
    """The org's identity settings. ``instance_url`` is set by the HTTP server once it knows its port; it is
    both the login URL and the instance URL of the emulated org.

    ``client_credentials_user`` is the username the client-credentials grant runs as ("Run As" user).
    ``jwt_max_lifetime_s`` bounds how far in the future a JWT assertion's ``exp`` may be (Salesforce asks for
    3 minutes; clients commonly send 5). ``refresh_token_ttl_s`` ``None`` means "valid until revoked".
    """

    org_id: str
    instance_url: str = "https://127.0.0.1:8443"
    session_timeout_s: float = 7200.0
    connected_apps: list[ConnectedApp] = field(default_factory=list)
    users: list[EmulatedUser] = field(default_factory=list)
    client_credentials_user: str | None = None
    jwt_audiences: Sequence[str] = DEFAULT_JWT_AUDIENCES
    jwt_max_lifetime_s: float = 600.0
    authorization_code_ttl_s: float = 900.0
    refresh_token_ttl_s: float | None = None


def salesforce_id18(id15: str) -> str:
    """The 18-character form of a 15- or 18-character Salesforce id (see :func:`sfsync.emulator.ids.normalize`)."""
    return normalize_id(id15)


class OrgUsers(Protocol):
    """What :func:`default_config` reads from an org store (``sfsync.emulator.store.OrgStore`` has it)."""

    org_id: str
    integration_user_id: str
    org: Any  # settings with ``session_timeout_s`` and ``time_zone``

    def rows(self, sobject: str) -> Iterable[Mapping[str, Any]]: ...


def default_config(
    instance_url: str = "https://127.0.0.1:8443",
    *,
    store: OrgUsers | None = None,
    client_id: str = "sfsync-local",
    client_secret: str | None = None,
    rotate_refresh_tokens: bool = False,
) -> OAuthConfig:
    """One connected app (consumer key ``client_id``; ``client_secret`` None: a freshly generated secret found
    only in the returned config; see :class:`ConnectedApp` for ``rotate_refresh_tokens``).

    Without ``store``: a made-up org with two users, the integration user (also the client-credentials Run-As
    user) and a sales rep. With ``store``: the store's org id, session timeout and active users (the
    integration user first, and Run-As). Passwords and security tokens are generated either way.
    """
    app = ConnectedApp(
        client_id=client_id,
        client_secret=client_secret if client_secret is not None else secrets.token_hex(32),
        redirect_uris=("http://localhost:8765/callback", "http://127.0.0.1:8765/callback"),
        rotate_refresh_tokens=rotate_refresh_tokens,
    )
    if store is not None:
        return _config_from_store(store, instance_url, app)
    integration = EmulatedUser(
        user_id=salesforce_id18("0058d000001IntG"),
        username="integration@sfsync.local",
        password=secrets.token_urlsafe(16),
        security_token=secrets.token_urlsafe(18),
        display_name="Integration User",
        email="integration@sfsync.local",
    )
    rep = EmulatedUser(
        user_id=salesforce_id18("0058d000001SaLe"),
        username="rep@sfsync.local",
        password=secrets.token_urlsafe(16),
        security_token=secrets.token_urlsafe(18),
        display_name="Sam Rep",
        email="rep@sfsync.local",
        timezone="America/Los_Angeles",
    )
    return OAuthConfig(
        org_id=salesforce_id18("00D8d000004SfSy"),
        instance_url=instance_url,
        connected_apps=[app],
        users=[integration, rep],
        client_credentials_user=integration.username,
    )


def _config_from_store(store: OrgUsers, instance_url: str, app: ConnectedApp) -> OAuthConfig:
    settings = store.org
    time_zone = str(getattr(settings, "time_zone", None) or "GMT")
    users: list[EmulatedUser] = []
    run_as: str | None = None
    for row in store.rows("User"):
        if row.get("IsActive") is False or not row.get("Username"):
            continue
        username = str(row["Username"])
        name = row.get("Name") or " ".join(str(p) for p in (row.get("FirstName"), row.get("LastName")) if p)
        user = EmulatedUser(
            user_id=salesforce_id18(str(row["Id"])),
            username=username,
            password=secrets.token_urlsafe(16),
            security_token=secrets.token_urlsafe(18),
            display_name=str(name or username),
            email=str(row.get("Email") or username),
            timezone=str(row.get("TimeZoneSidKey") or time_zone),
        )
        if user.user_id[:15] == store.integration_user_id[:15]:
            users.insert(0, user)
            run_as = username
        else:
            users.append(user)
    return OAuthConfig(
        org_id=salesforce_id18(store.org_id),
        instance_url=instance_url,
        session_timeout_s=float(getattr(settings, "session_timeout_s", None) or 7200.0),
        connected_apps=[app],
        users=users,
        client_credentials_user=run_as,
    )


# --------------------------------------------------------------------------------------------- state


@dataclass
class Session:
    """An access token's session: who, through which app, with which scopes, and when it was last used."""

    access_token: str = field(repr=False)
    user: EmulatedUser
    org_id: str
    client_id: str
    scopes: tuple[str, ...]
    grant_type: str
    instance_url: str
    issued_at: float
    last_used: float
    refresh_token: str | None = field(default=None, repr=False)  # the refresh token it was minted from/with
    refresh_family: str | None = field(default=None, repr=False)  # the chain of rotated refresh tokens it belongs to

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def identity_url(self) -> str:
        return f"{self.instance_url}/id/{self.org_id}/{self.user.user_id}"


@dataclass
class _RefreshGrant:
    client_id: str
    user: EmulatedUser
    scopes: tuple[str, ...]
    issued_at: float
    family: str  # shared by every refresh token rotated from the same authorization


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    user: EmulatedUser
    scopes: tuple[str, ...]
    code_challenge: str | None
    issued_at: float


class _UnknownIssuerError(Exception):
    """The JWT's ``iss`` names no connected app."""


class _NoVerificationKeyError(Exception):
    """The connected app has no usable certificate (or does not allow the JWT bearer grant)."""


def _invalid_session() -> ApiError:
    return ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def _random(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_TOKEN_CHARS) for _ in range(length - len(prefix)))


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _token_from_header(value: str | None) -> str | None:
    """``Bearer <t>`` / ``OAuth <t>`` (scheme case-insensitive) or a bare session id."""
    if value is None:
        return None
    parts = value.strip().split()
    if len(parts) == 2 and parts[0].lower() in ("bearer", "oauth"):
        return parts[1]
    if len(parts) == 1:
        return parts[0]
    return None


def _public_key_pem(pem: str) -> bytes:
    """The PEM public key of a certificate (or a PEM public key given as is)."""
    data = pem.encode("ascii")
    if b"BEGIN CERTIFICATE" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    response = JSONResponse(body, status_code=status, headers=dict(headers or {}))
    response.headers["content-type"] = "application/json;charset=UTF-8"
    return response


def _oauth_error(err: OAuthError) -> JSONResponse:
    return _json(err.body(), status=err.status, headers=_NO_STORE)


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


async def _params(request: Request) -> dict[str, str]:
    """Query-string parameters overlaid with an ``application/x-www-form-urlencoded`` body."""
    params = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and content_type in ("", "application/x-www-form-urlencoded"):
        body = (await request.body()).decode("utf-8", errors="replace")
        params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
    return params


def _client_credentials(params: Mapping[str, str], authorization: str | None) -> tuple[str, str | None]:
    """``client_id``/``client_secret`` from the body, else from ``Authorization: Basic`` (RFC 6749 §2.3.1)."""
    if params.get("client_id"):
        return params["client_id"], params.get("client_secret")
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except ValueError:
            return "", None
        client_id, sep, secret = decoded.partition(":")
        return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret) if sep else None
    return "", None


# --------------------------------------------------------------------------------------------- server


class AuthServer:
    """The org's authorization server and session registry (thread-safe; all times from ``clock``)."""

    def __init__(self, config: OAuthConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._refresh: dict[str, _RefreshGrant] = {}
        self._retired: dict[str, str] = {}  # a refresh token rotated away -> its family (reuse detection)
        self._codes: dict[str, _AuthCode] = {}
        self._issued: deque[str] = deque(maxlen=ISSUED_KEPT)

    # ----------------------------------------------------------------------------------- lookups

    def app(self, client_id: str) -> ConnectedApp | None:
        return next((a for a in self.config.connected_apps if a.client_id == client_id), None)

    def user(self, username: str) -> EmulatedUser | None:
        """The user with this username (usernames compare case-insensitively, as in Salesforce)."""
        wanted = username.casefold()
        return next((u for u in self.config.users if u.username.casefold() == wanted), None)

    def _user_by_id(self, user_id: str) -> EmulatedUser | None:
        return next((u for u in self.config.users if u.user_id[:15] == user_id[:15]), None)

    def identity_url(self, user: EmulatedUser) -> str:
        return f"{self.config.instance_url}/id/{self.config.org_id}/{user.user_id}"

    def issued_tokens(self) -> list[str]:
        """Every access token and refresh token this org issued (the latest :data:`ISSUED_KEPT`), oldest first,
        whether still valid or not: what a test looks for where no token may ever appear (logs, error
        entries, metrics)."""
        with self._lock:
            return list(self._issued)

    # ----------------------------------------------------------------------------------- sessions (REST layer)

    def authenticate(self, authorization_header: str | None) -> Session:
        """The live session for an ``Authorization`` header value (``Bearer``/``OAuth`` or a bare session id),
        extending it; otherwise ``ApiError(401, "INVALID_SESSION_ID", ...)``."""
        token = _token_from_header(authorization_header)
        if token is None:
            raise _invalid_session()
        session = self._live_session(token, touch=True)
        if session is None:
            raise _invalid_session()
        return session

    def _live_session(self, token: str, *, touch: bool) -> Session | None:
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            now = self._clock()
            if now - session.last_used >= self.config.session_timeout_s:
                del self._sessions[token]
                return None
            if touch:
                session.last_used = now
            return session

    def issue_session(
        self, username: str | None = None, client_id: str | None = None, scopes: Sequence[str] | None = None
    ) -> Session:
        """Mint an access token directly (what ``sf org login access-token`` / ``session_id=`` users paste)."""
        user = self.user(username) if username is not None else (self.config.users[0] if self.config.users else None)
        if user is None:
            raise LookupError("no such user")
        app = self.app(client_id) if client_id is not None else next(iter(self.config.connected_apps), None)
        if client_id is not None and app is None:
            raise LookupError("no such connected app")
        granted = tuple(scopes) if scopes is not None else (tuple(app.scopes) if app else ("api", "id"))
        return self._new_session(app.client_id if app else "", user, granted, "admin", refresh_token=None)

    def session_age(self, session: Session) -> float:
        """Seconds since ``session``'s access token was issued."""
        return self._clock() - session.issued_at

    def expire(self, token: str) -> bool:
        """End one session now (as a timeout would). Refresh tokens stay valid."""
        with self._lock:
            return self._sessions.pop(token, None) is not None

    def expire_all(self) -> int:
        """End every session now; returns how many there were. Refresh tokens stay valid."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            return count

    def revoke(self, token: str) -> bool:
        """Revoke an access token, or a refresh token together with every access token minted from it (with
        rotation: along its whole chain)."""
        with self._lock:
            if self._sessions.pop(token, None) is not None:
                return True
            grant = self._refresh.pop(token, None)
            if grant is None:
                return False
            self._revoke_family(grant.family)
            return True

    def issue_refresh_token(self, username: str | None = None, client_id: str | None = None) -> str:
        """Mint a refresh token directly, as a completed web-server flow leaves one (what a connection set up
        through the browser holds); for the first user and the first connected app unless named."""
        user = self.user(username) if username is not None else next(iter(self.config.users), None)
        if user is None:
            raise LookupError("no such user")
        app = self.app(client_id) if client_id is not None else next(iter(self.config.connected_apps), None)
        if app is None:
            raise LookupError("no such connected app")
        token = _random("5Aep861", 87)
        with self._lock:
            self._refresh[token] = _RefreshGrant(app.client_id, user, tuple(app.scopes), self._clock(), family=token)
            self._issued.append(token)
        return token

    def change_app(self, client_id: str | None = None, **changes: Any) -> ConnectedApp:
        """Change settings of a connected app (the first unless named), as an administrator edits it: e.g.
        ``rotate_refresh_tokens=True`` or ``certificate_pem=...``. The app as it now is; LookupError for an
        unknown one. Takes effect with the next token request."""
        apps = list(self.config.connected_apps)
        index = next((i for i, a in enumerate(apps) if client_id is None or a.client_id == client_id), None)
        if index is None:
            raise LookupError("no such connected app")
        apps[index] = dataclasses.replace(apps[index], **changes)
        self.config.connected_apps = apps
        return apps[index]

    def _revoke_family(self, family: str) -> None:
        """End every refresh token and access token of ``family`` (caller holds the lock)."""
        for key in [k for k, g in self._refresh.items() if g.family == family]:
            del self._refresh[key]
        for key in [k for k, s in self._sessions.items() if s.refresh_family == family]:
            del self._sessions[key]

    # ----------------------------------------------------------------------------------- issuing

    def _new_session(
        self,
        client_id: str,
        user: EmulatedUser,
        scopes: tuple[str, ...],
        grant_type: str,
        refresh_token: str | None,
        refresh_family: str | None = None,
    ) -> Session:
        now = self._clock()
        access_token = f"{self.config.org_id[:15]}!{_random('AQ', 96)}"
        session = Session(
            access_token=access_token,
            user=user,
            org_id=self.config.org_id,
            client_id=client_id,
            scopes=scopes,
            grant_type=grant_type,
            instance_url=self.config.instance_url,
            issued_at=now,
            last_used=now,
            refresh_token=refresh_token,
            refresh_family=refresh_family,
        )
        with self._lock:
            timeout = self.config.session_timeout_s
            for key in [k for k, s in self._sessions.items() if now - s.last_used >= timeout]:
                del self._sessions[key]
            self._sessions[access_token] = session
            self._issued.append(access_token)
        return session

    def _issue(
        self,
        app: ConnectedApp,
        user: EmulatedUser,
        scopes: tuple[str, ...],
        grant_type: str,
        *,
        new_refresh_token: bool,
        from_refresh_token: str | None = None,
        family: str | None = None,
    ) -> dict[str, str]:
        """A token response; ``new_refresh_token``: with a new refresh token, of ``family`` (None: a new
        family); ``from_refresh_token``: the session was minted from that (kept) refresh token."""
        if not new_refresh_token and from_refresh_token is None:
            scopes = tuple(s for s in scopes if s not in _REFRESH_SCOPES)
        refresh_token = None
        if new_refresh_token:
            refresh_token = _random("5Aep861", 87)
            family = family or refresh_token
            with self._lock:
                self._refresh[refresh_token] = _RefreshGrant(app.client_id, user, scopes, self._clock(), family)
                self._issued.append(refresh_token)
        session = self._new_session(
            app.client_id, user, scopes, grant_type, refresh_token or from_refresh_token, refresh_family=family
        )
        issued_at = str(int(session.issued_at * 1000))
        identity = session.identity_url
        signature = hmac.new(app.client_secret.encode("utf-8"), (identity + issued_at).encode("utf-8"), hashlib.sha256)
        body = {"access_token": session.access_token}
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        body["signature"] = base64.b64encode(signature.digest()).decode("ascii")
        body["scope"] = " ".join(scopes)
        body["instance_url"] = session.instance_url
        body["id"] = identity
        body["token_type"] = "Bearer"  # noqa: S105 (the scheme name)
        body["issued_at"] = issued_at
        log.info("oauth: %s token issued to %s for client %s", grant_type, user.username, app.client_id)
        return body

    # ----------------------------------------------------------------------------------- token endpoint

    def _client(self, client_id: str) -> ConnectedApp:
        app = self.app(client_id) if client_id else None
        if app is None:
            raise OAuthError(400, "invalid_client_id", "client identifier invalid")
        return app

    @staticmethod
    def _check_secret(app: ConnectedApp, secret: str | None, *, required: bool) -> None:
        if not secret:
            if required:
                raise OAuthError(400, "invalid_client", "invalid client credentials")
            return
        if not _same(secret, app.client_secret):
            raise OAuthError(400, "invalid_client", "invalid client credentials")

    def _grant(self, params: Mapping[str, str], request: Request) -> dict[str, str]:
        grant_type = params.get("grant_type", "")
        if grant_type not in ALL_GRANTS:
            raise OAuthError(400, "unsupported_grant_type", "grant type not supported")
        if grant_type == GRANT_JWT_BEARER:
            return self._jwt_bearer(params.get("assertion", ""))
        client_id, secret = _client_credentials(params, request.headers.get("authorization"))
        app = self._client(client_id)
        if grant_type == GRANT_CLIENT_CREDENTIALS:
            return self._client_credentials(app, secret, request.url.hostname or "")
        if grant_type not in app.allowed_grants:
            raise OAuthError(400, "unsupported_grant_type", "grant type not supported")
        if grant_type == GRANT_PASSWORD:
            return self._password(app, secret, params)
        if grant_type == GRANT_REFRESH_TOKEN:
            return self._refresh_token(app, secret, params.get("refresh_token", ""))
        return self._authorization_code(app, secret, params)

    def _authorization_code(self, app: ConnectedApp, secret: str | None, params: Mapping[str, str]) -> dict[str, str]:
        self._check_secret(app, secret, required=app.require_secret)
        with self._lock:
            code = self._codes.pop(params.get("code", ""), None)  # single use, whatever happens next
        if code is None or code.client_id != app.client_id:
            raise OAuthError(400, "invalid_grant", "invalid authorization code")
        if self._clock() - code.issued_at > self.config.authorization_code_ttl_s:
            raise OAuthError(400, "invalid_grant", "expired authorization code")
        if params.get("redirect_uri", "") != code.redirect_uri:
            raise OAuthError(400, "redirect_uri_mismatch", "redirect_uri must match configuration")
        if code.code_challenge is not None:
            verifier = params.get("code_verifier", "")
            if not verifier or not _same(_s256(verifier), code.code_challenge):
                raise OAuthError(400, "invalid_grant", "invalid code verifier")
        with_refresh = bool(_REFRESH_SCOPES.intersection(code.scopes)) and GRANT_REFRESH_TOKEN in app.allowed_grants
        return self._issue(app, code.user, code.scopes, GRANT_AUTHORIZATION_CODE, new_refresh_token=with_refresh)

    def _refresh_token(self, app: ConnectedApp, secret: str | None, token: str) -> dict[str, str]:
        self._check_secret(app, secret, required=app.require_secret)
        ttl = self.config.refresh_token_ttl_s
        with self._lock:
            grant = self._refresh.get(token)
            if grant is not None and ttl is not None and self._clock() - grant.issued_at > ttl:
                del self._refresh[token]
                grant = None
            if grant is None and token in self._retired:  # a rotated-away token again: stolen, or a lost answer
                self._revoke_family(self._retired.pop(token))
                log.info("oauth: a rotated refresh token was used again; its chain is revoked")
            if grant is None or grant.client_id != app.client_id:
                raise OAuthError(400, "invalid_grant", "expired access/refresh token")
            if app.rotate_refresh_tokens:
                del self._refresh[token]
                self._retired[token] = grant.family
                for session in self._sessions.values():
                    if session.refresh_token == token:
                        session.refresh_token = None
        if app.rotate_refresh_tokens:
            return self._issue(
                app, grant.user, grant.scopes, GRANT_REFRESH_TOKEN, new_refresh_token=True, family=grant.family
            )
        return self._issue(
            app,
            grant.user,
            grant.scopes,
            GRANT_REFRESH_TOKEN,
            new_refresh_token=False,
            from_refresh_token=token,
            family=grant.family,
        )

    def _password(self, app: ConnectedApp, secret: str | None, params: Mapping[str, str]) -> dict[str, str]:
        self._check_secret(app, secret, required=True)
        user = self.user(params.get("username", ""))
        given = params.get("password", "")
        if user is None or not _same(given, user.password + user.security_token):
            raise OAuthError(400, "invalid_grant", "authentication failure")
        return self._issue(app, user, tuple(app.scopes), GRANT_PASSWORD, new_refresh_token=False)

    def _client_credentials(self, app: ConnectedApp, secret: str | None, host: str) -> dict[str, str]:
        self._check_secret(app, secret, required=True)
        if host.lower() in _LOGIN_HOSTS:
            raise OAuthError(400, "invalid_grant", "request not supported on this domain")
        run_as = self.config.client_credentials_user
        user = self.user(run_as) if run_as else None
        if user is None or GRANT_CLIENT_CREDENTIALS not in app.allowed_grants:
            raise OAuthError(400, "invalid_grant", "no client credentials user enabled")
        return self._issue(app, user, tuple(app.scopes), GRANT_CLIENT_CREDENTIALS, new_refresh_token=False)

    def _jwt_bearer(self, assertion: str) -> dict[str, str]:
        found: list[ConnectedApp] = []

        def verification_key(header: Mapping[str, Any], payload: Any) -> bytes:
            issuer = payload.get("iss") if isinstance(payload, dict) else None
            app = self.app(issuer) if isinstance(issuer, str) else None
            if app is None:
                raise _UnknownIssuerError
            if app.certificate_pem is None or GRANT_JWT_BEARER not in app.allowed_grants:
                raise _NoVerificationKeyError
            found.append(app)
            return _public_key_pem(app.certificate_pem)

        try:
            claims = _JWT.decode(assertion, verification_key)
        except _UnknownIssuerError:
            raise OAuthError(400, "invalid_client_id", "client identifier invalid") from None
        except (_NoVerificationKeyError, JoseError, ValueError, TypeError, KeyError):
            raise OAuthError(400, "invalid_grant", "invalid assertion") from None
        app = found[0]
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        accepted = {a.rstrip("/").lower() for a in (*self.config.jwt_audiences, self.config.instance_url)}
        if not any(isinstance(a, str) and a.rstrip("/").lower() in accepted for a in audiences):
            raise OAuthError(400, "invalid_grant", "audience is invalid")
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise OAuthError(400, "invalid_grant", "invalid assertion")
        now = self._clock()
        if expires <= now:
            raise OAuthError(400, "invalid_grant", "expired authorization code")
        if expires > now + self.config.jwt_max_lifetime_s:
            raise OAuthError(400, "invalid_grant", "invalid assertion")
        subject = claims.get("sub")
        user = self.user(subject) if isinstance(subject, str) else None
        if user is None:
            raise OAuthError(400, "invalid_grant", "user hasn't approved this consumer")
        return self._issue(app, user, tuple(app.scopes), GRANT_JWT_BEARER, new_refresh_token=False)

    # ----------------------------------------------------------------------------------- HTTP handlers

    async def _token_endpoint(self, request: Request) -> Response:
        params = await _params(request)
        try:
            body = self._grant(params, request)
        except OAuthError as err:
            log.info("oauth: token request refused: %s (%s)", err.error, err.description)
            return _oauth_error(err)
        return _json(body, headers=_NO_STORE)

    async def _authorize_endpoint(self, request: Request) -> Response:
        params = await _params(request)
        app = self.app(params.get("client_id", ""))
        if app is None:
            return _oauth_error(OAuthError(400, "invalid_client_id", "client identifier invalid"))
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            return _oauth_error(OAuthError(400, "redirect_uri_mismatch", "redirect_uri must match configuration"))
        state = {"state": params["state"]} if "state" in params else {}

        def refuse(error: str, description: str) -> Response:
            target = _with_query(redirect_uri, {"error": error, "error_description": description, **state})
            return RedirectResponse(target, status_code=302)

        if params.get("response_type") != "code" or GRANT_AUTHORIZATION_CODE not in app.allowed_grants:
            return refuse("unsupported_response_type", "response type not supported")
        requested = tuple(dict.fromkeys(params.get("scope", "").split()))
        if any(s not in app.scopes for s in requested):
            return refuse("invalid_scope", "the requested scope is not allowed")
        challenge = params.get("code_challenge") or None
        if challenge is not None and params.get("code_challenge_method", "S256") != "S256":
            return refuse("invalid_request", "code challenge method not supported")
        hint = params.get("login_hint")
        user = self.user(hint) if hint else next(iter(self.config.users), None)
        if user is None:
            return refuse("access_denied", "end-user denied authorization")
        code = _random("aPrx", 70) + "=="
        with self._lock:
            now = self._clock()
            ttl = self.config.authorization_code_ttl_s
            for key in [k for k, c in self._codes.items() if now - c.issued_at > ttl]:
                del self._codes[key]
            self._codes[code] = _AuthCode(
                app.client_id, redirect_uri, user, requested or tuple(app.scopes), challenge, now
            )
        log.info("oauth: authorization code issued to %s for client %s", user.username, app.client_id)
        return RedirectResponse(_with_query(redirect_uri, {"code": code, **state}), status_code=302)

    async def _revoke_endpoint(self, request: Request) -> Response:
        params = await _params(request)
        if not self.revoke(params.get("token", "")):
            return _oauth_error(OAuthError(400, "invalid_token", "invalid token"))
        return Response(status_code=200)

    async def _introspect_endpoint(self, request: Request) -> Response:
        params = await _params(request)
        client_id, secret = _client_credentials(params, request.headers.get("authorization"))
        try:
            app = self._client(client_id)
            self._check_secret(app, secret, required=True)
        except OAuthError as err:
            return _oauth_error(err)
        token = params.get("token", "")
        session = self._live_session(token, touch=False)
        if session is not None and session.client_id == app.client_id:
            iat = int(session.issued_at)
            return _json(
                {
                    "active": True,
                    "scope": " ".join(session.scopes),
                    "client_id": session.client_id,
                    "username": session.username,
                    "sub": session.identity_url,
                    "token_type": "access_token",
                    "exp": int(session.last_used + self.config.session_timeout_s),
                    "iat": iat,
                    "nbf": iat,
                },
                headers=_NO_STORE,
            )
        with self._lock:
            grant = self._refresh.get(token)
        if grant is not None and grant.client_id == app.client_id:
            iat = int(grant.issued_at)
            body: dict[str, Any] = {
                "active": True,
                "scope": " ".join(grant.scopes),
                "client_id": grant.client_id,
                "username": grant.user.username,
                "sub": self.identity_url(grant.user),
                "token_type": "refresh_token",
                "iat": iat,
                "nbf": iat,
            }
            if self.config.refresh_token_ttl_s is not None:
                body["exp"] = int(grant.issued_at + self.config.refresh_token_ttl_s)
            return _json(body, headers=_NO_STORE)
        return _json({"active": False}, headers=_NO_STORE)

    def _bearer_session(self, request: Request) -> Session | None:
        token = _token_from_header(request.headers.get("authorization"))
        token = token or request.query_params.get("oauth_token") or request.query_params.get("access_token")
        return self._live_session(token, touch=True) if token else None

    def _urls(self, user: EmulatedUser, version: str | None) -> dict[str, str]:
        base = self.config.instance_url
        org15 = self.config.org_id[:15]
        data = f"{base}/services/data/v{{version}}"
        urls = {
            "enterprise": f"{base}/services/Soap/c/{{version}}/{org15}",
            "metadata": f"{base}/services/Soap/m/{{version}}/{org15}",
            "partner": f"{base}/services/Soap/u/{{version}}/{org15}",
            "rest": f"{data}/",
            "sobjects": f"{data}/sobjects/",
            "search": f"{data}/search/",
            "query": f"{data}/query/",
            "recent": f"{data}/recent/",
            "tooling_soap": f"{base}/services/Soap/T/{{version}}/{org15}",
            "tooling_rest": f"{data}/tooling/",
            "profile": f"{base}/{user.user_id[:15]}",
            "feeds": f"{data}/chatter/feeds",
            "groups": f"{data}/chatter/groups",
            "users": f"{data}/chatter/users",
            "feed_items": f"{data}/chatter/feed-items",
            "feed_elements": f"{data}/chatter/feed-elements",
            "custom_domain": base,
        }
        if version is not None and _VERSION.match(version):
            urls = {k: v.replace("{version}", version) for k, v in urls.items()}
        return urls

    def _photos(self) -> dict[str, str]:
        base = self.config.instance_url
        return {"picture": f"{base}/profilephoto/005/F", "thumbnail": f"{base}/profilephoto/005/T"}

    async def _userinfo_endpoint(self, request: Request) -> Response:
        session = self._bearer_session(request)
        if session is None:
            return PlainTextResponse("Bad_OAuth_Token", status_code=403)
        user = session.user
        return _json(
            {
                "sub": session.identity_url,
                "user_id": user.user_id,
                "organization_id": self.config.org_id,
                "preferred_username": user.username,
                "nickname": user.username.partition("@")[0],
                "name": user.display_name,
                "email": user.email,
                "email_verified": True,
                "given_name": user.first_name,
                "family_name": user.last_name,
                "zoneinfo": user.timezone,
                "photos": self._photos(),
                "profile": f"{self.config.instance_url}/{user.user_id[:15]}",
                "picture": self._photos()["picture"],
                "address": {},
                "is_salesforce_integration_user": False,
                "urls": self._urls(user, request.query_params.get("version")),
                "active": True,
                "user_type": "STANDARD",
                "language": user.locale,
                "locale": user.locale,
                "utcOffset": 0,
                "updated_at": "2024-01-01T00:00:00Z",
                "is_app_installed": True,
            }
        )

    async def _identity_endpoint(self, request: Request) -> Response:
        session = self._bearer_session(request)
        if session is None:
            return PlainTextResponse("Bad_OAuth_Token", status_code=403)
        org_id = request.path_params["org_id"]
        user = self._user_by_id(request.path_params["user_id"])
        if org_id[:15] != self.config.org_id[:15] or user is None:
            return PlainTextResponse("Bad_Id", status_code=404)
        return _json(
            {
                "id": self.identity_url(user),
                "asserted_user": user.user_id == session.user_id,
                "user_id": user.user_id,
                "organization_id": self.config.org_id,
                "username": user.username,
                "nick_name": user.username.partition("@")[0],
                "display_name": user.display_name,
                "email": user.email,
                "email_verified": True,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "timezone": user.timezone,
                "photos": self._photos(),
                "addr_street": None,
                "addr_city": None,
                "addr_state": None,
                "addr_country": None,
                "addr_zip": None,
                "mobile_phone": None,
                "mobile_phone_verified": False,
                "is_lightning_login_user": False,
                "status": {"created_date": None, "body": None},
                "urls": self._urls(user, request.query_params.get("version")),
                "active": True,
                "user_type": "STANDARD",
                "language": user.locale,
                "locale": user.locale,
                "utcOffset": 0,
                "last_modified_date": "2024-01-01T00:00:00.000+0000",
                "is_app_installed": True,
            }
        )

    async def _openid_configuration(self, request: Request) -> Response:
        base = self.config.instance_url
        return _json(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/services/oauth2/authorize",
                "token_endpoint": f"{base}/services/oauth2/token",
                "revocation_endpoint": f"{base}/services/oauth2/revoke",
                "introspection_endpoint": f"{base}/services/oauth2/introspect",
                "userinfo_endpoint": f"{base}/services/oauth2/userinfo",
                "response_types_supported": ["code"],
                "grant_types_supported": sorted(ALL_GRANTS),
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "scopes_supported": sorted({s for a in self.config.connected_apps for s in a.scopes}),
            }
        )

    def routes(self) -> list[Route]:
        """The OAuth and identity endpoints, for ``Router(routes=auth_server.routes())``."""
        return [
            Route("/services/oauth2/token", self._token_endpoint, methods=["POST"]),
            Route("/services/oauth2/authorize", self._authorize_endpoint, methods=["GET", "POST"]),
            Route("/services/oauth2/revoke", self._revoke_endpoint, methods=["GET", "POST"]),
            Route("/services/oauth2/introspect", self._introspect_endpoint, methods=["POST"]),
            Route("/services/oauth2/userinfo", self._userinfo_endpoint, methods=["GET", "POST"]),
            Route("/id/{org_id}/{user_id}", self._identity_endpoint, methods=["GET", "POST"]),
            Route("/.well-known/openid-configuration", self._openid_configuration, methods=["GET"]),
        ]
