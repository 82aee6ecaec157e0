"""Faults the emulator's own injection (``sfsync.emulator.faults``) cannot make, around any org transport.

:class:`FaultyOrg` wraps an ``httpx`` transport (the emulator's ASGI app, in process) and:

- :meth:`FaultyOrg.lock` — answers ``UNABLE_TO_LOCK_ROW`` for the records of a sObject Collections
  write (create, update, upsert) that a test names, until :meth:`FaultyOrg.unlock`; those records
  never reach the org, the others of the same request do (a lock that never clears, on one record);
  :meth:`FaultyOrg.refuse` does the same with another per-record error (a trigger or Flow that
  fails, an inactive owner, no access to a referenced record);
- :meth:`FaultyOrg.lose` — lets the next matching requests reach the org (which commits them) and
  answers ``503 SERVER_UNAVAILABLE`` instead of the org's answer (a commit whose answer was lost);
- :meth:`FaultyOrg.reject` — answers the next matching requests with a whole-request error
  (``[{"message", "errorCode"}]``) without reaching the org (the API disabled, a refused call).

It records every request that reached it (``method``, path after ``/services/data/vXX.X/``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

__all__ = ["FaultyOrg", "Sent"]

_COLLECTIONS = "composite/sobjects"
_LOCKED = {
    "success": False,
    "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access to this record"}],
}
_LOST = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server temporarily unavailable (the answer was lost)"}]


@dataclass(frozen=True)
class Sent:
    """A request as :class:`FaultyOrg` saw it: method, path after the API version, JSON body (or None)."""

    method: str
    path: str
    body: Any


@dataclass
class _Loss:
    method: str
    path: str
    times: int


@dataclass
class _Rejection:
    method: str
    path: str
    status: int
    code: str
    message: str
    times: int | None


@dataclass
class FaultyOrg(httpx.AsyncBaseTransport):
    """Wraps ``inner`` (see the module docstring)."""

    inner: httpx.AsyncBaseTransport
    sent: list[Sent] = field(default_factory=list)
    _locked: Callable[[Mapping[str, Any]], bool] | None = None
    _refusal: dict[str, Any] = field(default_factory=lambda: dict(_LOCKED))
    _losses: list[_Loss] = field(default_factory=list)
    _rejections: list[_Rejection] = field(default_factory=list)

    def lock(self, record: Callable[[Mapping[str, Any]], bool]) -> None:
        """Answer UNABLE_TO_LOCK_ROW for every collection-written record for which ``record(body)`` is true."""
        self.refuse(record, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")

    def refuse(self, record: Callable[[Mapping[str, Any]], bool], code: str, message: str) -> None:
        """Answer ``code`` (a per-record ``statusCode``) for every collection-written record for which
        ``record(body)`` is true; the others of the request reach the org."""
        self._locked = record
        self._refusal = {"success": False, "errors": [{"statusCode": code, "message": message}]}

    def unlock(self) -> None:
        """The lock clears: every record is written again."""
        self._locked = None

    def lose(self, method: str, path: str, times: int = 1) -> None:
        """The next ``times`` ``method`` requests to ``path`` are committed by the org but answered 503."""
        self._losses.append(_Loss(method.upper(), path.strip("/"), times))

    def reject(self, method: str, path: str, status: int, code: str, message: str, times: int | None = None) -> None:
        """Answer the next ``times`` (None: every) ``method`` requests to ``path`` with ``status`` and the
        error ``code``/``message``, as Salesforce answers a whole request; the org never sees them."""
        self._rejections.append(_Rejection(method.upper(), path.strip("/"), status, code, message, times))

    def stop_rejecting(self) -> None:
        """Forget every :meth:`reject`: the requests reach the org again."""
        self._rejections.clear()

    def writes(self, method: str, path: str = _COLLECTIONS) -> list[Sent]:
        """The requests of ``method`` to ``path`` that reached this transport."""
        return [s for s in self.sent if s.method == method.upper() and s.path == path.strip("/")]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        path = request.url.path.split("/", 4)[-1].strip("/") if "/services/data/" in request.url.path else ""
        is_json = request.headers.get("content-type", "").startswith("application/json")
        body = orjson.loads(content) if content and is_json else None
        self.sent.append(Sent(request.method, path, body))
        rejection = next(
            (r for r in self._rejections if r.method == request.method and r.path == path and r.times != 0), None
        )
        if rejection is not None:
            if rejection.times is not None:
                rejection.times -= 1
            body = [{"message": rejection.message, "errorCode": rejection.code}]
            return httpx.Response(rejection.status, json=body, request=request)
        locked = self._locked
        if locked is not None and path.startswith(_COLLECTIONS) and isinstance(body, dict) and "records" in body:
            return await self._with_locks(request, body, locked)
        loss = next((x for x in self._losses if x.method == request.method and x.path == path and x.times > 0), None)
        response = await self.inner.handle_async_request(request)
        if loss is None:
            return response
        await response.aread()
        loss.times -= 1
        return httpx.Response(503, json=_LOST, request=request)

    async def _with_locks(
        self, request: httpx.Request, body: dict[str, Any], locked: Callable[[Mapping[str, Any]], bool]
    ) -> httpx.Response:
        records: list[dict[str, Any]] = list(body["records"])
        held = [i for i, r in enumerate(records) if locked(r)]
        if not held:
            return await self.inner.handle_async_request(request)
        passed = [r for i, r in enumerate(records) if i not in held]
        results: list[Any] = []
        if passed:
            forwarded = httpx.Request(
                request.method,
                request.url,
                headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
                content=orjson.dumps({**body, "records": passed}),
            )
            response = await self.inner.handle_async_request(forwarded)
            await response.aread()
            if response.status_code != 200:
                return httpx.Response(response.status_code, content=response.content, request=request)
            results = list(orjson.loads(response.content))
        answers = iter(results)
        merged = [self._refusal if i in held else next(answers) for i in range(len(records))]
        return httpx.Response(200, json=merged, request=request)
