"""A subscription's weekly schedule and its arithmetic: when it fires, and which week a firing covers.

The value type of a `digest_subscription` row, as `Period` is of a window: plain values, kept in storage
so that `due_digests` reads subscriptions and decides in one pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from storage.periods import Period, zone

log = logging.getLogger(__name__)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SubscriptionError(ValueError):
    """A subscription request that cannot be honoured; the message says what would work."""


@dataclass(frozen=True)
class Schedule:
    """A local weekday and time in an IANA time zone."""

    weekday: int = 0
    hour: int = 9
    minute: int = 0
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise SubscriptionError("The weekday must be Monday to Sunday.")
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise SubscriptionError("The time must be HH:MM between 00:00 and 23:59.")
        try:
            zone(self.timezone)
        except ValueError as error:
            raise SubscriptionError(str(error)) from error

    def label(self) -> str:
        return f"{WEEKDAYS[self.weekday].capitalize()} {self.hour:02d}:{self.minute:02d} {self.timezone}"

    def zone_info(self) -> ZoneInfo:
        return zone(self.timezone)


def _local_fire(day: date, schedule: Schedule, tz: ZoneInfo) -> datetime:
    """The UTC instant of HH:MM on a local day, as APScheduler's CronTrigger computes it: a time skipped
    by a spring-forward jump fires one jump later (02:30 -> 03:30), a repeated time fires the first time."""
    return datetime.combine(day, time(schedule.hour, schedule.minute), tzinfo=tz).astimezone(UTC)


def latest_occurrence(schedule: Schedule, now: datetime) -> datetime:
    """The most recent scheduled instant at or before `now` (UTC), computed in local time."""
    tz = zone(schedule.timezone)
    today = now.astimezone(tz).date()
    day = today - timedelta(days=(today.weekday() - schedule.weekday) % 7)
    fire = _local_fire(day, schedule, tz)
    if fire > now:
        fire = _local_fire(day - timedelta(days=7), schedule, tz)
    return fire


def next_occurrence(schedule: Schedule, now: datetime) -> datetime:
    """The first scheduled instant strictly after `now` (UTC)."""
    tz = zone(schedule.timezone)
    today = now.astimezone(tz).date()
    day = today + timedelta(days=(schedule.weekday - today.weekday()) % 7)
    fire = _local_fire(day, schedule, tz)
    if fire <= now:
        fire = _local_fire(day + timedelta(days=7), schedule, tz)
    return fire


def digest_period(schedule: Schedule, occurrence: datetime, window_tz: str | None = None) -> Period:
    """The last whole week, Monday to Sunday, that ended before the digest fires, in the team's time zone
    (`window_tz`; the schedule's own by default). Every digest of a team covers the same calendar weeks as
    `/tokenwise team` does, whichever channel or weekday it is posted to (docs/metrics.md)."""
    tz = window_tz or schedule.timezone
    fire_day = occurrence.astimezone(zone(tz)).date()
    sunday = fire_day - timedelta(days=fire_day.weekday() + 1)
    return Period(sunday - timedelta(days=6), sunday, tz)
