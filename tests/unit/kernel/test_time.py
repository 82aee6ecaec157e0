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
    "value",
    [
        T,
        T.replace(microsecond=0),
        T.replace(microsecond=999_999),
        T.replace(microsecond=1_000),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(1000, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=dt.UTC),
    ],
    ids=["ms", "whole-second", "last-us", "one-ms", "year-1", "year-999", "year-1000", "year-9999"],
)
def test_salesforce_text_of_a_utc_datetime_is_strftimes_text(value: dt.datetime) -> None:
    # the text every version wrote (compared by echo suppression and the clock): strftime's, truncated to ms
    expected = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    assert format_salesforce(value) == expected


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
