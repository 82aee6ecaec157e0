"""sfsync.time: one rule for naive datetimes (UTC) and Salesforce's datetime text both ways."""

from __future__ import annotations

import datetime as dt

import pytest

from sfsync.time import as_utc, format_salesforce, from_millis, is_aware, parse_salesforce, to_millis

T = dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC)
T_MS = 1_767_323_045_678


def test_epoch_millis_round_trip_and_a_naive_datetime_counts_as_utc() -> None:
    assert to_millis(T) == T_MS
    assert to_millis(T.replace(tzinfo=None)) == T_MS
    assert to_millis(T.astimezone(dt.timezone(dt.timedelta(hours=-5)))) == T_MS
    assert to_millis(T_MS) == T_MS
    assert to_millis(None) is None
    assert from_millis(T_MS) == T


def test_salesforce_text_is_utc_with_milliseconds_whatever_the_zone_given() -> None:
    assert format_salesforce(T) == "2026-01-02T03:04:05.678Z"
    assert format_salesforce(T.replace(tzinfo=None)) == "2026-01-02T03:04:05.678Z"
    assert format_salesforce(T.astimezone(dt.timezone(dt.timedelta(hours=2)))) == "2026-01-02T03:04:05.678Z"


@pytest.mark.parametrize(
    "text", ["2026-01-02T03:04:05.678+0000", "2026-01-02T03:04:05.678Z", "2026-01-02T05:04:05.678+02:00"]
)
def test_salesforce_datetime_text_parses_to_the_same_aware_instant(text: str) -> None:
    parsed = parse_salesforce(text)
    assert is_aware(parsed)
    assert parsed == T


def test_only_a_zoned_datetime_is_aware() -> None:
    assert is_aware(T)
    assert not is_aware(T.replace(tzinfo=None))
    assert as_utc(T.replace(tzinfo=None)) == T


def test_text_that_is_no_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="2026-13"):
        parse_salesforce("2026-13-45Tnope")
