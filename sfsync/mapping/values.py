"""Product and CEL values as Salesforce's REST API takes them: datetimes as UTC text with milliseconds,
lists of scalars as ``;``-separated text (the multi-select picklist convention), maps and nested
lists as compact JSON with sorted keys (the same value always gives the same text)."""

from __future__ import annotations

import datetime as dt
import json
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


def jsonable_text(value: Any) -> str:
    """:func:`json_text` of a value that has only JSON types already (as :func:`jsonable` gives)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


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
