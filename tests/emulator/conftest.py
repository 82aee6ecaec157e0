"""An emulated org served in-process through Starlette's TestClient (no sockets), fresh per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from sfsync.emulator.app import Emulator
from sfsync.emulator.server import build

V = "/services/data/v62.0"


class Org:
    """The emulator plus a client that is logged in as the integration user."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.http = TestClient(emulator.asgi(), base_url="https://127.0.0.1")
        self.token = emulator.auth.issue_session().access_token
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path: str, **kw: Any) -> Any:
        return self.http.get(f"{V}/{path}", **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.http.post(f"{V}/{path}", json=body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.http.patch(f"{V}/{path}", json=body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.http.delete(f"{V}/{path}", **kw)

    def create(self, sobject: str, **values: Any) -> str:
        response = self.post(f"sobjects/{sobject}/", values)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


@pytest.fixture
def org() -> Iterator[Org]:
    emulator = build()
    client = Org(emulator)
    with client.http:
        yield client


def same_shape(actual: Any, expected: Any, path: str = "$", optional: frozenset[str] = frozenset()) -> None:
    """``actual`` has the keys, nesting and JSON types of ``expected`` (values may differ; null matches any)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {type(actual).__name__}"
        missing = set(expected) - set(actual) - optional
        extra = set(actual) - set(expected) - optional
        assert not missing and not extra, f"{path}: missing keys {sorted(missing)}, unexpected keys {sorted(extra)}"
        for key in set(expected) & set(actual):
            same_shape(actual[key], expected[key], f"{path}.{key}", optional)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected an array, got {type(actual).__name__}"
        if expected and actual:
            same_shape(actual[0], expected[0], f"{path}[0]", optional)
    elif expected is not None and actual is not None:
        kinds = (
            (int, float) if isinstance(expected, (int, float)) and not isinstance(expected, bool) else type(expected)
        )
        assert isinstance(actual, kinds), f"{path}: expected {type(expected).__name__}, got {actual!r}"
