"""Recorded Salesforce responses, kept in the repository under ``tests/fixtures/salesforce`` (see its MANIFEST.md),
and a fake token endpoint that answers with them (:class:`TokenEndpoint`)."""

from __future__ import annotations

import gc
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

__all__ = [
    "RECORDED",
    "TOKEN_CLIENT_SECRET",
    "TOKEN_URL",
    "TokenEndpoint",
    "http_for",
    "recorded_json",
    "recorded_text",
    "signed_success",
    "tls_contexts",
]

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"
"""The folder of recorded responses (``<name>.json``) and request bodies (``<name>.request.json``)."""

TOKEN_URL = "https://login.salesforce.com/services/oauth2/token"
"""Where :class:`TokenEndpoint` answers (the login host of the recorded token response)."""

TOKEN_CLIENT_SECRET = "client-secret-123"
"""The consumer secret :func:`signed_success` signs with by default."""


def recorded_text(name: str) -> str:
    """The recorded file ``name`` as text (a missing file is an error, never a skip)."""
    return (RECORDED / name).read_text()


def recorded_json(name: str) -> Any:
    """The recorded JSON body ``name``, parsed."""
    return json.loads(recorded_text(name))


def signed_success(secret: str = TOKEN_CLIENT_SECRET, **extra: str) -> dict[str, str]:
    """The recorded token response (org ``00Dx0000000BV7z``, instance ``https://na1.salesforce.com``) with
    ``extra`` fields (e.g. ``refresh_token``), signed with ``secret`` as Salesforce signs it."""
    from sfsync.salesforce.auth import token_signature  # here: the kit's light modules load no sfsync part

    body: dict[str, str] = recorded_json("restforce_oauth_token_success.json")
    body.update(extra)
    body["signature"] = token_signature(secret, body["id"], body["issued_at"])
    return body


class TokenEndpoint:
    """An httpx ``MockTransport`` handler: the OAuth token endpoint at :data:`TOKEN_URL`, answering each form
    post with the next queued ``(status, body)`` (a str body as text, else JSON), recording the forms.

    Any other request goes to ``other`` (the org's REST API, as a test fakes it); without one it fails the test.
    """

    def __init__(
        self, *answers: tuple[int, object], other: Callable[[httpx.Request], httpx.Response] | None = None
    ) -> None:
        self.answers = list(answers)
        self.other = other
        self.forms: list[dict[str, str]] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) != TOKEN_URL:
            assert self.other is not None, f"unexpected request {request.method} {request.url}"
            return self.other(request)
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        self.requests.append(request)
        self.forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
        status, body = self.answers.pop(0)
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)


def http_for(endpoint: TokenEndpoint) -> httpx.AsyncClient:
    """An HTTP client whose every request goes to ``endpoint``."""
    return httpx.AsyncClient(transport=httpx.MockTransport(endpoint))


def tls_contexts() -> int:
    """How many ``ssl.SSLContext`` objects this process holds now (each holds its own copy of the CA bundle, so
    the clients of a worker's many orgs must share one)."""
    gc.collect()
    return sum(1 for found in gc.get_objects() if isinstance(found, ssl.SSLContext))
