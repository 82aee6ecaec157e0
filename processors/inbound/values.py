"""Salesforce values as the inbound rules compare them (pure, no Kafka).

Salesforce gives a value back in its own JSON notation, not as sfsync sent it: :func:`same_value`
tells whether two notations are one value (empty text is null; an instant in any notation, ``Z``,
``+0000``, ``+00:00``, any fraction; a number as ``5``, ``5.0`` or ``"5"``; text stripped, with
``\\n`` line ends). Field names are case-insensitive, as Salesforce's are (:func:`field_value`).
Times are compared as epoch milliseconds (:func:`millis`).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Mapping
from typing import Final, Literal, TypeVar

from sfsync.time import to_millis as millis

__all__ = ["ABSENT", "Absent", "field_entry", "field_value", "millis", "same_value"]


class Absent(enum.Enum):
    """The type of :data:`ABSENT`."""

    ABSENT = "absent"


ABSENT: Final = Absent.ABSENT
"""What :func:`field_value` gives for a field the record does not carry (a null value is None)."""

V = TypeVar("V")
E = TypeVar("E", bound=Mapping[str, object])

_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def _datetime_millis(text: str) -> int | None:
    found = _DATETIME.match(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    offset = dt.timedelta(0)
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        offset = -offset if zone[0] == "-" else offset
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]), tzinfo=dt.UTC,
        ) - offset  # fmt: skip
    except ValueError:
        return None
    return millis(moment)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            found = float(value.strip())
        except ValueError:
            return None
        return found if math.isfinite(found) else None
    return None


Canonical = bool | str | tuple[Literal["number", "datetime"], float | int | None] | None
"""A comparable form of a value: null, a boolean, stripped text, or a tagged number or instant."""


def _canonical(value: object) -> Canonical:
    """A comparable form of a Salesforce JSON value: empty text is null, datetimes are epoch ms in
    any notation (``Z``, ``+0000``, ``+00:00``, any fraction), numbers are floats, text is stripped
    with ``\\n`` line ends."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, dt.datetime):
        return ("datetime", millis(value))
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).replace("\r\n", "\n").strip()
    if not text:
        return None
    moment = _datetime_millis(text)
    if moment is not None:
        return ("datetime", moment)
    return text


def same_value(sent: object, returned: object) -> bool:
    """Whether ``returned`` (as Salesforce gives it back) is the value sfsync ``sent``: same text,
    same instant whatever its notation, same number (``5``, ``5.0``, ``"5"``), ``""`` is null."""
    a, b = _canonical(sent), _canonical(returned)
    if a == b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        return False
    number_a = a[1] if isinstance(a, tuple) and a[0] == "number" else _number(a) if isinstance(a, str) else None
    number_b = b[1] if isinstance(b, tuple) and b[0] == "number" else _number(b) if isinstance(b, str) else None
    return number_a is not None and number_a == number_b


def field_value(values: Mapping[str, V], name: str) -> V | Literal[Absent.ABSENT]:
    """A field's value by Salesforce name (case-insensitive, as Salesforce names are); :data:`ABSENT`
    when ``values`` has no such field."""
    if name in values:
        return values[name]
    lowered = name.lower()
    return next((v for k, v in values.items() if k.lower() == lowered), ABSENT)


def field_entry(entries: Mapping[str, E], name: str) -> E | None:
    """A state's entry for a field by Salesforce name (:func:`field_value`); None when it has none."""
    found = field_value(entries, name)
    return found if isinstance(found, Mapping) else None
