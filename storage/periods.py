"""Periods as storage reads them: a half-open UTC range [start, end) of whole local days in a time zone.

What people type ("this week", "30d") is parsed into these by bot.periods.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


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


__all__ = ["Period", "PeriodError", "local_midnight", "zone"]
