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

A ``POST /composite`` is seen into: each of its subrequests is recorded and faulted as the same request
sent alone would be (a rejection answers that subrequest with its status and error body, a lock
or refusal answers its records), the others reach the org in one ``/composite``; a loss or a
rejection of ``composite`` itself concerns the whole request.

It records every request that reached it (``method``, path after ``/services/data/vXX.X/``, query
string dropped), and after a ``/composite`` each of its subrequests (also in :attr:`FaultyOrg.composites`,
one list a ``/composite``). A rejection may name text the request's URL contains (a query's ``FROM Lead``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import httpx
import orjson

__all__ = ["FaultyOrg", "Sent"]

_COLLECTIONS = "composite/sobjects"
_COMPOSITE = "composite"
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
    containing: str | None = None


@dataclass
class FaultyOrg(httpx.AsyncBaseTransport):
    """Wraps ``inner`` (see the module docstring)."""

    inner: httpx.AsyncBaseTransport
    sent: list[Sent] = field(default_factory=list)
    composites: list[list[Sent]] = field(default_factory=list)
    """Each ``/composite`` that reached this transport: its subrequests, in order."""
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

    def reject(
        self,
        method: str,
        path: str,
        status: int,
        code: str,
        message: str,
        times: int | None = None,
        *,
        containing: str | None = None,
    ) -> None:
        """Answer the next ``times`` (None: every) ``method`` requests to ``path`` with ``status`` and the
        error ``code``/``message``, as Salesforce answers a whole request; the org never sees them.
        With ``containing``, only the requests whose decoded URL contains it (``"FROM Lead"``: a query's)."""
        self._rejections.append(_Rejection(method.upper(), path.strip("/"), status, code, message, times, containing))

    def stop_rejecting(self) -> None:
        """Forget every :meth:`reject`: the requests reach the org again."""
        self._rejections.clear()

    def writes(self, method: str, path: str = _COLLECTIONS) -> list[Sent]:
        """The requests of ``method`` to ``path`` that reached this transport (alone or in a ``/composite``)."""
        return [s for s in self.sent if s.method == method.upper() and s.path == path.strip("/")]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        path = _api_path(request.url.path)
        is_json = request.headers.get("content-type", "").startswith("application/json")
        body = orjson.loads(content) if content and is_json else None
        self.sent.append(Sent(request.method, path, body))
        rejection = self._rejection(request.method, path, str(request.url))
        if rejection is not None:
            return httpx.Response(rejection.status, json=_rejected(rejection), request=request)
        locked = self._locked
        if locked is not None and path.startswith(_COLLECTIONS) and isinstance(body, dict) and "records" in body:
            return await self._with_locks(request, body, locked)
        loss = next((x for x in self._losses if x.method == request.method and x.path == path and x.times > 0), None)
        if path == _COMPOSITE and request.method == "POST" and isinstance(body, dict):
            response = await self._composite(request, body)
        else:
            response = await self.inner.handle_async_request(request)
        if loss is None:
            return response
        await response.aread()
        loss.times -= 1
        return httpx.Response(503, json=_LOST, request=request)

    def _rejection(self, method: str, path: str, url: str) -> _Rejection | None:
        """The rejection that answers ``method`` ``path`` (at ``url``) now (one of its ``times`` spent), if any."""
        decoded = unquote_plus(url)
        rejection = next(
            (
                r
                for r in self._rejections
                if r.method == method
                and r.path == path
                and r.times != 0
                and (r.containing is None or r.containing in decoded)
            ),
            None,
        )
        if rejection is not None and rejection.times is not None:
            rejection.times -= 1
        return rejection

    async def _composite(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        """Each subrequest recorded and faulted as if sent alone; the rest forwarded in one ``/composite``."""
        answered: dict[str, dict[str, Any]] = {}
        held_at: dict[str, tuple[list[int], int]] = {}
        forwarded: list[dict[str, Any]] = []
        subrequests: list[dict[str, Any]] = list(body.get("compositeRequest") or [])
        carried: list[Sent] = []
        self.composites.append(carried)
        for sub in subrequests:
            method, path, ref = (
                str(sub.get("method", "")).upper(),
                _api_path(str(sub.get("url", ""))),
                sub["referenceId"],
            )
            sub_body = sub.get("body")
            self.sent.append(Sent(method, path, sub_body))
            carried.append(Sent(method, path, sub_body))
            rejection = self._rejection(method, path, str(sub.get("url", "")))
            if rejection is not None:
                answered[ref] = _subresponse(ref, rejection.status, _rejected(rejection))
                continue
            locked = self._locked
            if locked is not None and path.startswith(_COLLECTIONS) and isinstance(sub_body, dict):
                records: list[dict[str, Any]] = list(sub_body.get("records") or [])
                held = [i for i, r in enumerate(records) if locked(r)]
                if held and len(held) == len(records):
                    answered[ref] = _subresponse(ref, 200, [self._refusal] * len(records))
                    continue
                if held:
                    held_at[ref] = (held, len(records))
                    passed = [r for i, r in enumerate(records) if i not in held]
                    sub = {**sub, "body": {**sub_body, "records": passed}}
            forwarded.append(sub)
        answers: dict[str, dict[str, Any]] = {}
        if forwarded:
            response = await self.inner.handle_async_request(
                httpx.Request(
                    request.method,
                    request.url,
                    headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
                    content=orjson.dumps({**body, "compositeRequest": forwarded}),
                )
            )
            await response.aread()
            if response.status_code != 200:
                return httpx.Response(response.status_code, content=response.content, request=request)
            answers = {a["referenceId"]: a for a in orjson.loads(response.content)["compositeResponse"]}
        merged = []
        for sub in subrequests:
            ref = sub["referenceId"]
            answer = answered.get(ref) or answers[ref]
            if ref in held_at and answer["httpStatusCode"] == 200:
                held, count = held_at[ref]
                results = iter(answer["body"])
                answer = {**answer, "body": [self._refusal if i in held else next(results) for i in range(count)]}
            merged.append(answer)
        return httpx.Response(200, json={"compositeResponse": merged}, request=request)

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


def _api_path(url: str) -> str:
    """The path after ``/services/data/vXX.X/`` (query string dropped; ``""`` outside the REST API)."""
    path = url.split("?", 1)[0]
    return path.split("/", 4)[-1].strip("/") if "/services/data/" in path else ""


def _rejected(rejection: _Rejection) -> list[dict[str, str]]:
    return [{"message": rejection.message, "errorCode": rejection.code}]


def _subresponse(ref: str, status: int, body: Any) -> dict[str, Any]:
    return {"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref}
