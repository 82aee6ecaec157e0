"""Schema registries for tests, no shared registry touched.

- :class:`FakeRegistry`: in memory, what :class:`sfsync.serde.codec.AvroEncoder` / ``AvroDecoder`` call, no server;
- :class:`RegistryStandIn`: a registry over real HTTP on loopback, which a test may take away and bring
  back on the same port (an outage), serving schemas by id itself or passing every request on to a
  real registry.

Imports nothing of pytest: the benchmarks (``bench/``) use it too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import fastavro
import httpx

from sfsync.serde.registry import UnknownSchemaError

__all__ = ["FakeRegistry", "RegistryStandIn"]


class FakeRegistry:
    """Hands out one schema id per subject (from ``first_id`` on) and serves the parsed schemas back by id.

    ``unavailable``: an error ``writer_schema`` raises instead (the registry down while records are decoded).
    An id it never handed out raises :class:`~sfsync.serde.registry.UnknownSchemaError`, as the real registry's
    404 does.
    """

    def __init__(self, first_id: int = 40) -> None:
        self.first_id = first_id
        self.subjects: dict[str, int] = {}
        self.schemas: dict[int, Any] = {}
        self.unavailable: BaseException | None = None

    def register(self, subject: str, schema_str: str) -> int:
        schema_id = self.subjects.setdefault(subject, self.first_id + len(self.subjects))
        self.schemas[schema_id] = fastavro.parse_schema(json.loads(schema_str))
        return schema_id

    def has_writer_schema(self, schema_id: int) -> bool:
        return self.unavailable is None and schema_id in self.schemas

    def writer_schema(self, schema_id: int) -> Any:
        if self.unavailable is not None:
            raise self.unavailable
        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry")
        return self.schemas[schema_id]

    async def awriter_schema(self, schema_id: int) -> Any:
        return self.writer_schema(schema_id)


class RegistryStandIn:
    """A schema registry on ``127.0.0.1:port`` (a thread), that :meth:`stop` takes away and :meth:`start`
    brings back on the same port: nothing listens in between (connection refused), as during a restart.

    Without ``upstream`` it answers Confluent's ``GET /schemas/ids/<id>`` from ``schemas`` (id -> Avro
    schema text), 404 with the registry's error body for any other id or path. With ``upstream`` (a
    registry's URL, e.g. the shared test registry's) it passes every request on to it and its answer
    back: :attr:`url` is then the upstream's URL on this port. ``status``: when set, every request is
    answered with it instead (``503``: a registry that is up but failing). :attr:`requests` lists the
    paths asked, in order.
    """

    def __init__(self, port: int, *, schemas: Mapping[int, str] | None = None, upstream: str | None = None) -> None:
        self.port = port
        self.schemas = dict(schemas or {})
        self.upstream = upstream
        self.status: int | None = None
        self.requests: list[str] = []
        path = urlsplit(upstream).path.rstrip("/") if upstream else ""
        self.url = f"http://127.0.0.1:{port}{path}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=10)

    def __enter__(self) -> RegistryStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._http.close()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen on the port (again); a no-op while running."""
        if self._server is not None:
            return
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stand_in.requests.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, content_type, payload = stand_in.answer(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_PUT(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"registry-stand-in-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (connections are refused from now on); a no-op while stopped."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for one request."""
        if self.status is not None:
            return (
                self.status,
                "application/json",
                json.dumps({"error_code": self.status, "message": "failing"}).encode(),
            )
        if self.upstream is not None:
            parts = urlsplit(self.upstream)
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
            reply = self._http.request(
                method, f"{parts.scheme}://{parts.netloc}{path}", headers=forwarded, content=body
            )
            return reply.status_code, reply.headers.get("content-type", "application/json"), reply.content
        prefix = "/schemas/ids/"
        route = urlsplit(path).path
        if method == "GET" and route.startswith(prefix) and route[len(prefix) :].isdigit():
            schema = self.schemas.get(int(route[len(prefix) :]))
            if schema is not None:
                return 200, "application/json", json.dumps({"schema": schema, "schemaType": "AVRO"}).encode()
        return 404, "application/json", json.dumps({"error_code": 40403, "message": "Schema not found"}).encode()
