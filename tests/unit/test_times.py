"""Times in JSON answers: the RFC 3339 string reads back as the same millisecond, in UTC."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.times import MAX_MS, MIN_MS, epoch_ms, rfc3339, time_fields


@given(st.integers(MIN_MS, MAX_MS))
def test_the_string_parses_back_to_the_same_millisecond_in_utc(ms: int) -> None:
    text = rfc3339(ms)
    assert text.endswith("Z")
    assert len(text) == len("2026-12-05T14:31:14.344Z")  # four-digit years, always ms
    moment = dt.datetime.fromisoformat(text)
    assert moment.utcoffset() == dt.timedelta(0)
    assert epoch_ms(moment) == ms


@given(st.datetimes(dt.datetime(2, 1, 1), dt.datetime(9998, 12, 31), timezones=st.timezones()))
def test_epoch_ms_is_exact_in_any_zone(moment: dt.datetime) -> None:
    utc = moment.astimezone(dt.UTC)
    whole = dt.datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
    expected = int(whole.replace(tzinfo=dt.UTC).timestamp()) * 1000 + utc.microsecond // 1000
    assert epoch_ms(moment) == expected


def test_known_instants() -> None:
    assert rfc3339(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(-1) == "1969-12-31T23:59:59.999Z"
    assert rfc3339(MIN_MS) == "0001-01-01T00:00:00.000Z"
    assert rfc3339(MAX_MS) == "9999-12-31T23:59:59.999Z"


@pytest.mark.parametrize("ms", [MIN_MS - 1, MAX_MS + 1, 2**63 - 1])
def test_times_rfc_3339_cannot_write_are_refused_by_the_formatter(ms: int) -> None:
    with pytest.raises(ValueError, match="years 1 to 9999"):
        rfc3339(ms)


def test_time_fields_keep_the_milliseconds_and_never_fail() -> None:
    assert time_fields("last_seen", 1_000) == {
        "last_seen": "1970-01-01T00:00:01.000Z",
        "last_seen_ms": 1_000,
    }
    assert time_fields("since", None) == {"since": None, "since_ms": None}
    assert time_fields("ts", MAX_MS + 1) == {"ts": None, "ts_ms": MAX_MS + 1}
