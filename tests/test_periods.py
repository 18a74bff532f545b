"""Period parsing: any text gives a period or a clear error, never a crash; ranges are exact."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.periods import Period, PeriodError, parse_date, parse_period

TODAY = date(2026, 11, 25)  # a Wednesday


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gives_a_period_or_a_period_error(text: str) -> None:
    try:
        period = parse_period(text, TODAY)
    except PeriodError as error:
        assert str(error)
    else:
        assert period.since <= period.until
        assert period.start < period.end


@settings(max_examples=100, deadline=None)
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(0, 400))
def test_explicit_ranges_round_trip(since: date, length: int) -> None:
    until = since + timedelta(days=length)
    period = parse_period(f"{since.isoformat()}..{until.isoformat()}", TODAY)
    assert (period.since, period.until) == (since, until)
    assert period.days == length + 1


@settings(max_examples=100, deadline=None)
@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)), st.integers(1, 60))
def test_weeks_cover_the_period_without_gaps_or_overlaps(since: date, length: int) -> None:
    period = Period(since, since + timedelta(days=length), "Europe/Berlin")
    parts = list(period.split("week"))
    assert parts[0].since == period.since and parts[-1].until == period.until
    for left, right in itertools.pairwise(parts):
        assert left.until + timedelta(days=1) == right.since
        assert right.since.weekday() == 0
        assert left.end == right.start


@pytest.mark.parametrize(
    "text, since, until",
    [
        ("", date(2026, 11, 23), TODAY),
        ("this week", date(2026, 11, 23), TODAY),
        ("Last  Week", date(2026, 11, 16), date(2026, 11, 22)),
        ("30d", date(2026, 10, 27), TODAY),
        ("1d", TODAY, TODAY),
        ("2026-11-01..2026-11-07", date(2026, 11, 1), date(2026, 11, 7)),
    ],
)
def test_named_periods(text: str, since: date, until: date) -> None:
    period = parse_period(text, TODAY)
    assert (period.since, period.until) == (since, until)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0d", "out of range"),
        ("999d", "out of range"),
        ("2026-11-07..2026-11-01", "is after the end"),
        ("2026-02-30..2026-03-01", "Bad start date"),
        ("yesterday-ish", "is not a period"),
    ],
)
def test_bad_periods_say_what_would_work(text: str, message: str) -> None:
    with pytest.raises(PeriodError, match=message):
        parse_period(text, TODAY)


def test_a_dst_day_is_23_hours_long_in_its_zone() -> None:
    day = Period(date(2026, 3, 29), date(2026, 3, 29), "Europe/Berlin")
    assert day.end - day.start == timedelta(hours=23)
    assert day.start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


def test_previous_window_has_the_same_length_and_ends_just_before() -> None:
    period = Period(date(2026, 11, 2), date(2026, 11, 8))
    before = period.previous()
    assert (before.since, before.until) == (date(2026, 10, 26), date(2026, 11, 1))


def test_parse_date_names_the_field() -> None:
    with pytest.raises(PeriodError, match="Bad --since date '11/02/2026'"):
        parse_date("11/02/2026", "--since date")
