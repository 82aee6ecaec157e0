"""The product's events as mappings see them, from the Avro schemas in ``schemas/``: which event types
each entity has, the type of a field at a dotted path, synthetic events (every optional field filled)
to dry-run expressions on, and the envelope an expression reads as ``event``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from functools import cache
from typing import Any

from sfsync.serde.schema import collect_named, load_topic_schema

ENTITY_TOPICS: dict[str, str] = {
    "member": "product.members",
    "event": "product.events",
    "attendance": "product.attendance",
    "forum": "product.forum",
}


@dataclass(frozen=True)
class ProductType:
    """What a product field holds, as far as type checks care."""

    kind: str  # string, enum, boolean, number, timestamp, date, array, record, map, bytes
    nullable: bool = False
    symbols: tuple[str, ...] = ()


@cache
def _product_schemas() -> tuple[dict[str, Any], dict[str, Any], dict[str, list[str]]]:
    """(record short name -> schema, full name -> named type, topic -> record short names)."""
    records: dict[str, Any] = {}
    named: dict[str, Any] = {}
    topics: dict[str, list[str]] = {}
    for topic in ENTITY_TOPICS.values():
        schema = load_topic_schema(topic)
        collect_named(schema.schema, named, keep_first=False)
        topics[topic] = list(schema.record_names)
        for branch in schema.schema:
            records[str(branch["name"]).rsplit(".", 1)[-1]] = branch
    return records, named, topics


def entity_event_types(entities: Iterable[str]) -> list[str]:
    """Every product event type of these entities, in schema order."""
    _, _, topics = _product_schemas()
    return [name for entity in entities if entity in ENTITY_TOPICS for name in topics[ENTITY_TOPICS[entity]]]


def _deref(node: Any, named: MappingABC[str, Any]) -> Any:
    if isinstance(node, str) and node in named:
        return named[node]
    if isinstance(node, str) and f"sfsync.product.{node}" in named:
        return named[f"sfsync.product.{node}"]
    return node


def _kind(node: Any, named: MappingABC[str, Any], nullable: bool) -> ProductType:
    node = _deref(node, named)
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        kinds = {_kind(b, named, False).kind for b in branches}
        kind = kinds.pop() if len(kinds) == 1 else "union"
        return ProductType(kind, nullable or "null" in node)
    if isinstance(node, dict):
        logical = node.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return ProductType("timestamp", nullable)
        if logical == "date":
            return ProductType("date", nullable)
        avro_type = node.get("type")
        if avro_type == "enum":
            return ProductType("enum", nullable, tuple(node.get("symbols", ())))
        if avro_type in ("record", "array", "map"):
            return ProductType(str(avro_type), nullable)
        return _kind(avro_type, named, nullable)
    if node in ("int", "long", "float", "double"):
        return ProductType("number", nullable)
    if node in ("string", "boolean", "bytes"):
        return ProductType(str(node), nullable)
    return ProductType(str(node), nullable)


def product_field_type(event_type: str, path: str) -> ProductType | None:
    """The type at dotted ``path`` in ``event_type``'s payload, or None when the event has no such field."""
    records, named, _ = _product_schemas()
    node: Any = records.get(event_type)
    if node is None:
        return None
    nullable = False
    for part in path.split("."):
        node = _deref(node, named)
        if isinstance(node, list):  # optional record: follow the non-null branch
            nullable = nullable or "null" in node
            records_in = [_deref(b, named) for b in node if b != "null"]
            node = next((b for b in records_in if isinstance(b, dict) and b.get("type") == "record"), None)
        if not isinstance(node, dict) or node.get("type") != "record":
            return None
        found = next((f for f in node["fields"] if f["name"] == part), None)
        if found is None:
            return None
        node = found["type"]
    return _kind(node, named, nullable)


def _sample(node: Any, named: MappingABC[str, Any], text: str) -> Any:
    """A value of this Avro type (for dry-running CEL); ``text`` fills strings."""
    node = _deref(node, named)
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        return _sample(branches[0], named, text) if branches else None
    if isinstance(node, dict):
        logical = node.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        if logical == "date":
            return dt.date(2026, 1, 2)
        kind = node.get("type")
        if kind == "record":
            return {f["name"]: _sample(f["type"], named, text) for f in node["fields"]}
        if kind == "enum":
            return node["symbols"][0]
        if kind == "array":
            return [_sample(node["items"], named, text)]
        if kind == "map":
            return {text: _sample(node["values"], named, text)}
        return _sample(kind, named, text)
    return {"string": text, "boolean": True, "int": 1, "long": 1, "float": 1.5, "double": 1.5, "bytes": b""}.get(
        str(node), text
    )


def sample_event(event_type: str, text: str = "sample") -> tuple[dict[str, Any], dict[str, Any]]:
    """A synthetic (source, envelope) pair for ``event_type``, every optional field filled."""
    records, named, _ = _product_schemas()
    source = _sample(records[event_type], named, text)
    return source, envelope_of(source, event_type)


def known_event_types() -> set[str]:
    """Every product event type of every entity."""
    return set(_product_schemas()[0])


def envelope_of(source: MappingABC[str, Any], event_type: str | None) -> dict[str, Any]:
    """The ``event`` variable: type, event_id, occurred_at, workspace_id."""
    return {
        "type": event_type,
        "event_id": source.get("event_id"),
        "occurred_at": source.get("occurred_at"),
        "workspace_id": source.get("workspace_id"),
    }
