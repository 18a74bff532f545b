"""Periods: what people type ("this week", "30d", "2026-11-01..2026-11-07") turned into UTC ranges.

Dates are inclusive and local to a time zone; a Period is a half-open UTC range [start, end), so a
day is the right length across DST changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIOD_HELP = "this week, last week, 30d (any 1-366 days) or YYYY-MM-DD..YYYY-MM-DD"
MAX_DAYS = 366
_DAYS = re.compile(r"^(\d{1,4})\s*d(ays?)?$")
_RANGE = re.compile(r"^(\S+)\s*\.\.\s*(\S+)$")


class PeriodError(ValueError):
    """Something a user typed is not a period or a date; the message says what would be."""


@dataclass(frozen=True)
class Period:
    since: date
    until: date  # inclusive
    tz: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def start(self) -> datetime:
        return local_midnight(self.since, self.zone)

    @property
    def end(self) -> datetime:
        return local_midnight(self.until + timedelta(days=1), self.zone)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def previous(self) -> Period:
        """The window of the same length just before this one."""
        return Period(self.since - timedelta(days=self.days), self.since - timedelta(days=1), self.tz)

    def label(self) -> str:
        if self.since == self.until:
            return self.since.isoformat()
        return f"{self.since.isoformat()}..{self.until.isoformat()}"

    def split(self, by: str) -> Iterator[Period]:
        """Consecutive days or ISO weeks (Monday first), clipped to this period."""
        if by not in {"day", "week"}:
            raise PeriodError(f"Unknown breakdown '{by}'; use day or week.")
        cursor = self.since
        while cursor <= self.until:
            last = cursor if by == "day" else min(cursor + timedelta(days=6 - cursor.weekday()), self.until)
            yield Period(cursor, last, self.tz)
            cursor = last + timedelta(days=1)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise PeriodError(f"Unknown time zone '{name}'; use an IANA name such as Europe/Berlin.") from error


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


def parse_period(text: str, today: date, tz: str = "UTC") -> Period:
    """A period from what someone typed; empty means this week so far."""
    cleaned = " ".join(text.strip().lower().split())
    if cleaned in {"", "this week", "week", "thisweek"}:
        return this_week(today, tz)
    if cleaned in {"last week", "lastweek"}:
        monday = today - timedelta(days=today.weekday() + 7)
        return Period(monday, monday + timedelta(days=6), tz)
    if cleaned == "today":
        return Period(today, today, tz)
    match = _DAYS.match(cleaned)
    if match:
        days = int(match.group(1))
        if not 1 <= days <= MAX_DAYS:
            raise PeriodError(f"'{text.strip()}' is out of range; pick 1d to {MAX_DAYS}d.")
        return Period(today - timedelta(days=days - 1), today, tz)
    match = _RANGE.match(cleaned)
    if match:
        since = parse_date(match.group(1), "start date")
        until = parse_date(match.group(2), "end date")
        return date_range(since, until, tz)
    raise PeriodError(f"'{text.strip()}' is not a period; try {PERIOD_HELP}.")
