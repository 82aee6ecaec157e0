"""Avro stand-ins for processors tested without a registry: a decoder of registered records, a real-schema encoder."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from sfsync.errors import SkippableRecordError
from sfsync.serde.schema import load_topic_schema

__all__ = ["Decoder", "Encoder"]


class Decoder:
    """Bytes -> the record registered under them (anything else is not Avro)."""

    def __init__(self) -> None:
        self.records: dict[bytes, tuple[str, dict[str, Any]]] = {}

    def add(self, name: str, value: dict[str, Any]) -> bytes:
        data = f"rec-{len(self.records)}".encode()
        self.records[data] = (name, value)
        return data

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if data not in self.records:
            raise SkippableRecordError("not Confluent wire format")
        return self.records[data]


class Encoder:
    """Writes with the topic's real schema (so a value that does not fit fails as it would)."""

    def __init__(self, topic: str = "product.members.inbound") -> None:
        self.topic = load_topic_schema(topic)

    def encode(self, record: str, value: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self.topic.branches[record][1], value)
        except Exception as exc:
            raise SkippableRecordError(str(exc)) from exc
        return record.encode() + b"|" + buf.getvalue()
