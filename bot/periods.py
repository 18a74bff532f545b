"""Periods: what people type ("this week", "30d", "2026-11-01..2026-11-07") turned into storage.periods.Period.

Dates are inclusive and local to a time zone; a Period is a half-open UTC range [start, end), so a
day is the right length across DST changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from storage.periods import Period, PeriodError, local_midnight, zone

PERIOD_HELP = "this week, last week, 30d (any 1-366 days) or YYYY-MM-DD..YYYY-MM-DD"
MAX_DAYS = 366
_DAYS = re.compile(r"^(\d{1,4})\s*d(ays?)?$")
_RANGE = re.compile(r"^(\S+)\s*\.\.\s*(\S+)$")


def parse_date(text: str, what: str = "date") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as error:
        raise PeriodError(f"Bad {what} '{text}'; use YYYY-MM-DD, for example 2026-11-02.") from error


def date_range(since: date, until: date, tz: str = "UTC") -> Period:
    zone(tz)
    if since > until:
        raise PeriodError(f"The start {since.isoformat()} is after the end {until.isoformat()}.")
    if (until - since).days + 1 > MAX_DAYS * 3:
        raise PeriodError(f"That range is {(until - since).days + 1} days; the most is {MAX_DAYS * 3}.")
    return Period(since, until, tz)


def this_week(today: date, tz: str = "UTC") -> Period:
    return Period(today - timedelta(days=today.weekday()), today, tz)


def complete_weeks(today: date, count: int = 1, tz: str = "UTC") -> Period:
    """The last `count` whole weeks (Monday to Sunday) that ended before `today`: a group's default window."""
    sunday = today - timedelta(days=today.weekday() + 1)
    return Period(sunday - timedelta(days=7 * count - 1), sunday, tz)


def next_week_start(now: datetime, tz: str) -> datetime:
    """Monday 00:00 after `now` in a time zone, as UTC: when someone added to a team starts to count, so
    no window holds part of their week (docs/metrics.md, "Disclosure control")."""
    today = now.astimezone(zone(tz)).date()
    return local_midnight(today + timedelta(days=7 - today.weekday()), zone(tz))


def require_whole_weeks(period: Period) -> None:
    """PeriodError unless the period is whole weeks, Monday to Sunday: the only windows a group is shown in,
    so that two answers never differ by a slice of days that could hold one person."""
    if period.since.weekday() != 0 or period.until.weekday() != 6:
        monday = period.since - timedelta(days=period.since.weekday())
        sunday = period.until + timedelta(days=6 - period.until.weekday())
        raise PeriodError(
            "Team and organisation figures come in whole weeks, Monday to Sunday "
            f"({period.tz}); try {monday.isoformat()}..{sunday.isoformat()}."
        )


@dataclass(frozen=True)
class PeriodSpec:
    """A period as someone typed it, parsed and checked but not yet placed in time: the handler resolves it
    with the day and time zone of the view it answers (the caller's for their own numbers)."""

    kind: Literal["this_week", "last_week", "today", "days", "range"] = "this_week"
    days: int = 0
    since: date | None = None
    until: date | None = None

    def resolve(self, today: date, tz: str = "UTC") -> Period:
        if self.kind == "this_week":
            return this_week(today, tz)
        if self.kind == "last_week":
            monday = today - timedelta(days=today.weekday() + 7)
            return Period(monday, monday + timedelta(days=6), tz)
        if self.kind == "today":
            return Period(today, today, tz)
        if self.kind == "days":
            return Period(today - timedelta(days=self.days - 1), today, tz)
        assert self.since is not None and self.until is not None
        return date_range(self.since, self.until, tz)


def parse_period_spec(text: str) -> PeriodSpec:
    """What someone typed, checked without a date: empty means this week so far; PeriodError otherwise."""
    cleaned = " ".join(text.strip().lower().split())
    if cleaned in {"", "this week", "week", "thisweek"}:
        return PeriodSpec("this_week")
    if cleaned in {"last week", "lastweek"}:
        return PeriodSpec("last_week")
    if cleaned == "today":
        return PeriodSpec("today")
    match = _DAYS.match(cleaned)
    if match:
        days = int(match.group(1))
        if not 1 <= days <= MAX_DAYS:
            raise PeriodError(f"'{text.strip()}' is out of range; pick 1d to {MAX_DAYS}d.")
        return PeriodSpec("days", days=days)
    match = _RANGE.match(cleaned)
    if match:
        since = parse_date(match.group(1), "start date")
        until = parse_date(match.group(2), "end date")
        date_range(since, until)  # the same checks as when it is resolved
        return PeriodSpec("range", since=since, until=until)
    raise PeriodError(f"'{text.strip()}' is not a period; try {PERIOD_HELP}.")


def parse_period(text: str, today: date, tz: str = "UTC") -> Period:
    """A period from what someone typed; empty means this week so far."""
    return parse_period_spec(text).resolve(today, tz)


__all__ = [
    "MAX_DAYS",
    "PERIOD_HELP",
    "Period",
    "PeriodError",
    "PeriodSpec",
    "complete_weeks",
    "date_range",
    "local_midnight",
    "next_week_start",
    "parse_date",
    "parse_period",
    "parse_period_spec",
    "require_whole_weeks",
    "this_week",
    "zone",
]
