"""An in-memory schema registry: what :class:`sfsync.serde.codec.AvroEncoder` / ``AvroDecoder`` call, no server.

Imports nothing of pytest: the benchmarks (``bench/``) use it too.
"""

from __future__ import annotations

import json
from typing import Any

import fastavro

from sfsync.serde.registry import UnknownSchemaError

__all__ = ["FakeRegistry"]


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

    def writer_schema(self, schema_id: int) -> Any:
        if self.unavailable is not None:
            raise self.unavailable
        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry")
        return self.schemas[schema_id]
