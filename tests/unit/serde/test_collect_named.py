"""``collect_named``: the one index of a schema's named types (records, enums, fixed), first or last definition kept."""

from __future__ import annotations

from typing import Any

from sfsync.serde.schema import collect_named

_FIRST = {"type": "enum", "name": "t.Kind", "symbols": ["A"]}
_LAST = {"type": "enum", "name": "t.Kind", "symbols": ["A", "B"]}
_SCHEMA: list[Any] = [
    {
        "type": "record",
        "name": "t.One",
        "fields": [
            {"name": "kind", "type": _FIRST},
            {"name": "tags", "type": {"type": "array", "items": {"type": "fixed", "name": "t.Tag", "size": 2}}},
            {"name": "by", "type": {"type": "map", "values": {"type": "record", "name": "t.Inner", "fields": []}}},
            {"name": "nested", "type": {"type": {"type": "record", "name": "t.Wrapped", "fields": []}}},
            {"name": "maybe", "type": ["null", {"type": "record", "name": "t.Optional", "fields": []}]},
        ],
    },
    {"type": "record", "name": "t.Two", "fields": [{"name": "kind", "type": _LAST}]},
]


def test_collect_named_finds_types_in_branches_fields_items_values_and_nested_type() -> None:
    named: dict[str, Any] = {}
    collect_named(_SCHEMA, named, keep_first=True)
    assert sorted(named) == ["t.Inner", "t.Kind", "t.One", "t.Optional", "t.Tag", "t.Two", "t.Wrapped"]


def test_collect_named_keep_first_keeps_the_first_definition_and_what_was_there() -> None:
    given = {"type": "record", "name": "t.Two", "fields": []}
    named: dict[str, Any] = {"t.Two": given}
    collect_named(_SCHEMA, named, keep_first=True)
    assert named["t.Kind"] is _FIRST
    assert named["t.Two"] is given


def test_collect_named_without_keep_first_lets_the_last_definition_win() -> None:
    named: dict[str, Any] = {"t.Two": {"type": "record", "name": "t.Two", "fields": []}}
    collect_named(_SCHEMA, named, keep_first=False)
    assert named["t.Kind"] is _LAST
    assert named["t.Two"] is _SCHEMA[1]


def test_collect_named_skips_unnamed_and_primitive_schemas() -> None:
    named: dict[str, Any] = {}
    schema = ["null", "string", {"type": "array", "items": "long"}, {"type": "record", "fields": []}]
    collect_named(schema, named, keep_first=True)
    assert named == {}
