"""``get_path``: the value at a dotted path of a payload, or the marker of a value the payload does not carry."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from sfsync.mapping.evaluate import _ABSENT, get_path

SOURCE: dict[str, Any] = {
    "a": {"b": {"c": 1}, "none": None, "list": [{"x": 1}], "text": "t"},
    "empty": {},
    "proxy": MappingProxyType({"k": {"v": "in a mapping"}}),
    "null": None,
}


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("a.b.c", 1),
        ("a.b", {"c": 1}),
        ("a.none", None),
        ("null", None),
        ("proxy.k.v", "in a mapping"),
        ("a.missing", _ABSENT),
        ("missing.b", _ABSENT),
        ("a.none.x", _ABSENT),
        ("null.x", _ABSENT),
        ("a.list.x", _ABSENT),
        ("a.text.x", _ABSENT),
        ("empty.x", _ABSENT),
        ("proxy.missing", _ABSENT),
    ],
)
def test_get_path_gives_the_value_or_absent_when_the_payload_does_not_carry_it(path: str, found: Any) -> None:
    value = get_path(SOURCE, path)
    if found is _ABSENT:
        assert value is _ABSENT
    else:
        assert value == found
