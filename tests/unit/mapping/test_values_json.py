"""Compact JSON text of mapping values: what ``json.dumps`` writes with the same arguments, character for character."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from sfsync.mapping.values import compact_json, jsonable_text

VALUES: list[Any] = [
    None,
    True,
    0,
    -(2**63),
    2**70,
    1.5,
    -0.0,
    1e-300,
    math.inf,
    -math.inf,
    math.nan,
    "",
    'é😀 \u2028 \x00 "quoted" \\ back\nslash',
    [],
    {},
    [1, "a", None, [True, {}]],
    {"b": 1, "a": {"z": [1, 2], "y": None}, "é": "ü", "": ""},
    {"k": [{"q": "x", "a": 1}, {"a": 2, "q": "y"}]},
    ("tuple", 1),
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_compact_json_writes_what_json_dumps_writes(value: Any) -> None:
    assert compact_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert jsonable_text(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


@pytest.mark.parametrize("value", [{1: "int key"}, {True: "bool key", "a": 1}, {None: 1}, {1.5: 2}])
def test_keys_that_are_not_text_are_written_as_json_dumps_writes_them(value: Any) -> None:
    assert compact_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("value", [{"a": object()}, [b"bytes"], {1: "a", "b": 2}])
def test_what_json_dumps_refuses_is_refused_with_the_same_error(value: Any) -> None:
    with pytest.raises(TypeError) as dumps_error:
        json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    with pytest.raises(TypeError) as ours:
        jsonable_text(value)
    assert str(ours.value) == str(dumps_error.value)
