"""Time, in one place: the clock, epoch milliseconds, and Salesforce's datetime text.

The rule for time zones: inside sfsync every datetime is aware and in UTC (fastavro decodes
``timestamp-millis`` that way, and Salesforce sends UTC). The conversions here take a naive datetime
as UTC, as Avro's encoders do. Where a person hands sfsync a time — a product event built with the
SDK, a SOQL literal — a naive datetime is refused instead (:func:`is_aware`), because a guessed zone
silently shifts an event or a query window.

Components take their clock as an injected ``Callable[[], datetime]`` (tests pass a fake); the
defaults are :func:`utcnow` and :func:`now_millis`, and :func:`monotonic` for deadlines and durations.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import lru_cache

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MILLISECOND = dt.timedelta(milliseconds=1)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def monotonic() -> float:
    """Seconds on a clock that never goes back (not a date): for deadlines and durations."""
    return time.monotonic()


def now_millis() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


def is_aware(value: dt.datetime) -> bool:
    """Whether ``value`` carries a time zone (what the edges of sfsync require)."""
    return value.tzinfo is not None and value.utcoffset() is not None


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive datetime is taken as UTC."""
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def to_millis(value: dt.datetime | int | None) -> int | None:
    """Epoch milliseconds of a datetime (naive = UTC), an int as it is, None for None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (as_utc(value) - EPOCH) // _MILLISECOND
    return int(value)


def from_millis(value: int) -> dt.datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return EPOCH + dt.timedelta(milliseconds=value)


def format_salesforce(value: dt.datetime) -> str:
    """Salesforce's datetime text: ``2026-01-02T03:04:05.000Z`` (UTC, milliseconds; naive = UTC)."""
    if value.tzinfo is dt.UTC and type(value) is dt.datetime:
        return _format_utc(value)
    utc = as_utc(value)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _format_utc(value: dt.datetime) -> str:
    """``value`` (aware, in UTC) as Salesforce's datetime text; memoised, as an event's times are formatted
    several times over (fields, ``json(source)``, the envelope) and a member's repeat across events."""
    if value.year >= 1000:  # ``isoformat`` (a third of strftime's cost) pads a year to 4 digits, strftime does not
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_salesforce(value: str) -> dt.datetime:
    """An aware datetime from Salesforce's ``2013-05-08T21:20:00.000+0000`` (or any ISO 8601; naive = UTC).

    Raises:
        ValueError: the text is no datetime.
    """
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
