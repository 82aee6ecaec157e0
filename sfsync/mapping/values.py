"""Product and CEL values as Salesforce's REST API takes them: datetimes as UTC text with milliseconds,
lists of scalars as ``;``-separated text (the multi-select picklist convention), maps and nested
lists as compact JSON with sorted keys (the same value always gives the same text)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import json.encoder
from collections.abc import Callable
from typing import Any

from sfsync.time import format_salesforce


def to_salesforce_value(value: Any) -> Any:
    """A product/CEL value as Salesforce's REST API takes it: timestamps as UTC text, lists of
    scalars as ``;``-separated text (the multi-select convention), maps and nested lists as JSON."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dt.datetime):
        return format_salesforce(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        if not value:
            return None
        if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            return ";".join(str(v) for v in value)
        return json_text(value)
    if isinstance(value, dict):
        return json_text(value)
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_text(value: Any) -> str:
    """Compact JSON with sorted keys: the same value always gives the same text (echo suppression
    compares what was written)."""
    return jsonable_text(jsonable(value))


def _compact_encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)``, by one C
    encoder made once (``json.dumps`` makes an encoder per call for these arguments: about as much as
    encoding a small value). Values are trees: a reference cycle is not looked for (RecursionError)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: json.dumps itself
        return functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    # markers (None: no cycle check), default, the string encoder of ensure_ascii=False, indent, separators,
    # sort_keys, skipkeys, allow_nan
    encode = make(
        None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, True
    )

    def compact(value: Any) -> str:
        return "".join(encode(value, 0))

    return compact


_SORTED_JSON = _compact_encoder(sort_keys=True)
compact_json = _compact_encoder(sort_keys=False)
"""Compact JSON in the value's own key order: ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``."""


def jsonable_text(value: Any) -> str:
    """:func:`json_text` of a value that has only JSON types already (as :func:`jsonable` gives)."""
    return _SORTED_JSON(value)


def jsonable(value: Any) -> Any:
    """``value`` with only JSON types: datetimes as Salesforce datetime text, dates as ISO text, tuples as
    lists, bytes decoded as UTF-8 (invalid bytes replaced)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): jsonable(v) for k, v in value.items()}
    if kind is list:
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return format_salesforce(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
