"""The async Salesforce REST client: :class:`SalesforceClient`, and the REST core every call goes through.

One :class:`SalesforceClient` per org. It owns an ``httpx.AsyncClient`` with explicit timeouts
(tests inject ``transport=httpx.MockTransport(handler)``) and guarantees, on every call:

- ``Authorization: Bearer`` and ``Sforce-Call-Options: client=<name>`` headers;
- one session refresh and replay on ``INVALID_SESSION_ID`` (re-authentication, not a retry);
- otherwise ONE attempt: a failure is raised as the classified error, retriable ones with their
  ``retry_after``. The client retries nothing; each component owns the retries of its calls
  (:mod:`sfsync.retry`: the sink per write, the poller per poll), so a POST that Salesforce may
  have committed is never resent blind — the sink matches the record again before writing;
- ``Sforce-Limit-Info`` of every response fed to :attr:`SalesforceClient.budget`;
- only :mod:`sfsync.salesforce.errors` exceptions escape (httpx/authlib ones are wrapped with ``from``).

Composition: the calls are grouped by concern into mixin classes that :class:`SalesforceClient`
inherits, so callers keep one object (``client.create_many(...)``, ``client.query(...)``):

- :class:`~sfsync.salesforce.org.OrgApi` — API versions, ``/limits``, record counts;
- :class:`~sfsync.salesforce.sobjects.SObjectsApi` — describes (cached), single-record CRUD and
  upsert, getUpdated / getDeleted;
- :class:`~sfsync.salesforce.composite.CompositeApi` — sObject Collections (``*_many``), ``/composite``;
- :class:`~sfsync.salesforce.query.QueryApi` — SOQL (``/query``, ``/queryAll``, paging), search;
- :class:`~sfsync.salesforce.bulk.BulkApi` — Bulk API 2.0 ingest and query jobs.

Each mixin subclasses the :class:`~sfsync.salesforce.rest.RestCaller` protocol (``request``,
``_json``, ``settings``, ``budget``, the clock and the sleep) and reaches Salesforce only through
:meth:`SalesforceClient.request`, implemented here; mypy refuses to instantiate a client that
misses a protocol member. The only wait inside the client,
:meth:`~sfsync.salesforce.bulk.BulkApi.wait_for_job`, polls a job's state; it retries nothing.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from sfsync.salesforce.auth import AuthProvider, RefreshTokenHook, Session, provider_from_settings
from sfsync.salesforce.bulk import BulkApi
from sfsync.salesforce.composite import CompositeApi
from sfsync.salesforce.errors import (
    SalesforceError,
    SessionExpired,
    UnexpectedResponse,
    classify,
    parse_error_body,
)
from sfsync.salesforce.limits import LIMIT_INFO_HEADER, BudgetTracker
from sfsync.salesforce.org import OrgApi
from sfsync.salesforce.query import QueryApi
from sfsync.salesforce.settings import SalesforceSettings
from sfsync.salesforce.sobjects import SObjectsApi


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, default=_json_default)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _transport_error(exc: Exception) -> SalesforceError:
    if isinstance(exc, httpx.TimeoutException):
        code = "TIMEOUT"
    elif isinstance(exc, httpx.ConnectError):
        code = "CONNECTION_ERROR"
    elif isinstance(exc, httpx.TransportError):
        code = "TRANSPORT_ERROR"
    else:
        return UnexpectedResponse(f"HTTP client error: {type(exc).__name__}", error_code="CLIENT_ERROR")
    return classify(0, code, f"{type(exc).__name__} talking to Salesforce")


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The TLS settings of every Salesforce connection of this process: httpx's defaults (certifi's CAs, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), made once. An httpx transport made without one loads the CA bundle
    again, some 35 ms and 0.8 MB each: a worker of 200 orgs paid 7 s and 160 MB for its copies."""
    return httpx.create_ssl_context()


def new_transport() -> httpx.AsyncHTTPTransport:
    """An HTTP transport to one org, over :func:`shared_tls_context` (what a component wraps to observe its calls)."""
    return httpx.AsyncHTTPTransport(verify=shared_tls_context())


class SalesforceClient(OrgApi, SObjectsApi, CompositeApi, QueryApi, BulkApi):
    """Typed async client for one Salesforce org. Use as ``async with SalesforceClient(settings) as sf:``.

    ``auth`` defaults to the provider the settings name, with ``on_refresh_token`` awaited with each
    refresh token Salesforce rotates (to store it; give it to the provider instead when passing ``auth``);
    ``session`` starts from a known session (``on_session`` is awaited with every new one, e.g. to
    persist it); ``budget`` is shared with
    whoever paces calls; ``sleep`` and ``clock`` (Bulk API job polling) are injectable for tests.
    """

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        auth: AuthProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: BudgetTracker | None = None,
        session: Session | None = None,
        on_session: Callable[[Session], Awaitable[None]] | None = None,
        on_refresh_token: RefreshTokenHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if auth is not None and on_refresh_token is not None:
            raise TypeError("give on_refresh_token to the auth provider passed in, not to the client")
        self.settings = settings
        self.budget = budget or BudgetTracker()
        self._auth = auth or provider_from_settings(settings, on_refresh_token=on_refresh_token)
        self._http = httpx.AsyncClient(
            timeout=settings.timeout(), transport=transport, verify=shared_tls_context(), follow_redirects=False
        )
        self._session = session
        self._on_session = on_session
        self._session_lock = asyncio.Lock()
        self._sleep = sleep
        self._clock = clock
        self._cache = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"SalesforceClient(api_version={self.settings.api_version!r}, auth={self._auth!r})"

    @property
    def api_path(self) -> str:
        """``/services/data/vXX.X`` for the configured API version."""
        return f"/services/data/v{self.settings.api_version}"

    # -- session ------------------------------------------------------------------------------

    async def session(self) -> Session:
        """The current session, logging in first if needed.

        A login is not retried: the provider's error escapes as is (:class:`AuthenticationError` when
        the credentials are refused, a retriable error when the token endpoint cannot be reached).
        """
        if self._session is None:
            async with self._session_lock:
                if self._session is None:
                    await self._set_session(await self._auth.authenticate(self._http))
        assert self._session is not None
        return self._session

    async def _set_session(self, session: Session) -> None:
        self._session = session
        if self._on_session is not None:
            await self._on_session(session)

    async def _refresh(self, stale: Session) -> None:
        async with self._session_lock:
            if self._session is stale or self._session is None:
                await self._set_session(await self._auth.refresh(self._http, stale))

    # -- transport ----------------------------------------------------------------------------

    def _url(self, instance_url: str, path: str) -> str:
        if path.startswith(("https://", "http://")):
            return path
        if path.startswith("/"):
            return instance_url + path
        return f"{instance_url}{self.api_path}/{path}"

    def _error_from(self, response: httpx.Response) -> SalesforceError:
        body: object
        try:
            body = orjson.loads(response.content) if response.content else ""
        except orjson.JSONDecodeError:
            body = response.text
        return parse_error_body(response.status_code, body, retry_after=_retry_after(response))

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (200,),
        authenticated: bool = True,
    ) -> httpx.Response:
        """Send one REST call, once: auth, call options, and a session refresh on ``INVALID_SESSION_ID``.

        ``path`` is absolute (``/services/...``), a full URL, or relative to ``/services/data/vXX.X/``.
        ``json`` is sent as JSON (``Decimal`` as a string), else ``content`` as is; ``headers`` add to
        (or override) ``Accept: application/json`` and the call options. ``authenticated=False``
        sends no session unless one is already held.

        Statuses in ``ok`` are returned; anything else is raised as a classified
        :mod:`sfsync.salesforce.errors` error, and so is a transport failure (``TIMEOUT``,
        ``CONNECTION_ERROR``, ``TRANSPORT_ERROR``: retriable). ``INVALID_SESSION_ID`` refreshes the
        session and replays the call once; nothing else is replayed, whatever the method: the caller
        owns retries (:mod:`sfsync.retry`). A raised write may or may not have been committed by
        Salesforce (a 5xx or a read timeout after it was received): the caller must find out
        before writing again (the sink matches the record again).
        """
        accepted = set(ok)
        method = method.upper()
        payload = _dumps(json) if json is not None else content
        refreshed = False
        while True:
            session = await self.session() if authenticated or self._session is not None else None
            instance = session.instance_url if session else (self.settings.instance_url or self.settings.login_url)
            sent_headers = {
                "Accept": "application/json",
                "Sforce-Call-Options": self.settings.call_options,
                **({"Content-Type": "application/json"} if json is not None else {}),
                **(headers or {}),
            }
            if session is not None:
                sent_headers["Authorization"] = f"Bearer {session.access_token.get_secret_value()}"
            try:
                response = await self._http.request(
                    method, self._url(instance, path), params=params, content=payload, headers=sent_headers
                )
            except httpx.HTTPError as exc:
                raise _transport_error(exc) from exc
            except (httpx.InvalidURL, httpx.StreamError) as exc:
                raise UnexpectedResponse(f"invalid request: {type(exc).__name__}", error_code="CLIENT_ERROR") from exc
            self.budget.observe(response.headers.get(LIMIT_INFO_HEADER))
            if response.status_code in accepted:
                return response
            error = self._error_from(response)
            if isinstance(error, SessionExpired) and session is not None and not refreshed:
                refreshed = True
                await self._refresh(session)
                continue
            raise error

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the body parsed as JSON (``None`` if empty; not JSON: :class:`UnexpectedResponse`)."""
        response = await self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UnexpectedResponse(
                f"{method} {path}: expected JSON, got {response.headers.get('Content-Type', 'no content type')}",
                status=response.status_code,
            ) from exc
