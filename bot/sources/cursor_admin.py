"""Cursor's Admin API: each person's daily usage and their spend in the current billing cycle.

What Cursor documents (https://cursor.com/docs/account/teams/admin-api; docs/ingest.md "Cursor" says
what was confirmed there): `POST /teams/daily-usage-data` with `startDate`/`endDate` in epoch milliseconds
(at most 30 days a request) and `page`/`pageSize` (with both, every member is listed, `isActive` says who
was active, and a `pagination` block says whether more pages follow); `POST /teams/spend` with `page` and
`pageSize`, listing each member's spend in the current billing cycle (`totalPages` pages). Both answer to
basic authentication with the key as the user name.

Cursor reports requests, lines and accepted or rejected suggestions, never tokens: each person's day
becomes one usage record whose token counts are unknown (NULL, shown as coverage), whose model is the
day's `mostUsedModel`, and whose cost is the spend Cursor bills for that person. Spend is a running total
for the billing cycle, so a pull books, on its own UTC day, what the cycle's total adds to the spend
already booked on the cycle's earlier days: re-pulling today gives today's figures exactly, and a finished
day keeps the spend it was given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

AGENT = "cursor"
SOURCE_NAME = "cursor"
SOURCE_KIND = "cursor"
KEY_VARIABLE = "CURSOR_ADMIN_KEY"
DAILY_USAGE = "/teams/daily-usage-data"
SPEND = "/teams/spend"
MAX_DAYS_A_REQUEST = 30  # "Date range cannot exceed 30 days" (Cursor's Admin API reference)
PAGE_SIZE = 500
REQUEST_FIELDS = ("composerRequests", "chatRequests", "agentRequests", "cmdkUsages")


class CursorPayloadInvalid(ValueError):
    """Cursor answered with something that is not the documented shape; the message says what."""


@dataclass(frozen=True)
class CursorDay:
    """One person's day in Cursor, as `/teams/daily-usage-data` reports it."""

    day: date
    email: str | None  # lower-cased; None when Cursor gave none
    user_id: str | None
    active: bool
    requests: int  # Composer, chat, Agent and Cmd+K requests the person made
    usage_based_requests: int
    accepts: int  # AI suggestions accepted (`totalAccepts`): self-reported, the person decides
    rejects: int  # and rejected (`totalRejects`)
    tabs_shown: int
    tabs_accepted: int
    accepted_lines_added: int
    model: str  # the day's most used model, or "unknown"

    @property
    def used(self) -> bool:
        """Whether the day shows any use at all (inactive members come back on every page too)."""
        return self.active or self.requests > 0 or self.accepts > 0 or self.rejects > 0 or self.tabs_accepted > 0


@dataclass(frozen=True)
class CursorSpend:
    """One member's spend so far in the current billing cycle, as `/teams/spend` reports it."""

    email: str
    cents: Decimal  # the cycle's total: on-demand and included usage
    on_demand_cents: Decimal | None  # `spendCents`


@dataclass(frozen=True)
class DailyPage:
    days: list[CursorDay]
    skipped: int  # rows without a readable day
    has_next: bool


@dataclass(frozen=True)
class SpendPage:
    members: list[CursorSpend]
    skipped: int  # rows without an email or a spend
    total_pages: int
    cycle_start: date | None


def _count(value: Any) -> int:
    """A documented count: a non-negative whole number; anything else reads as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    try:
        number = int(value)
    except (OverflowError, ValueError):
        return 0
    return number if number >= 0 and number < 2**53 else 0


def _cents(value: Any) -> Decimal | None:
    """Cents as Cursor writes them (fractions of a cent since mid-2026); None when absent or unreadable."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        cents = Decimal(str(value))
    except InvalidOperation:
        return None
    if not cents.is_finite() or cents < 0 or cents >= Decimal(10) ** 12:
        return None
    return cents


def _day(row: Mapping[str, Any]) -> date | None:
    """`day` (an ISO date) when given, else `date` (epoch milliseconds, UTC)."""
    text = row.get("day")
    if isinstance(text, str):
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            pass
    millis = row.get("date")
    if isinstance(millis, str) and millis.isdigit():
        millis = int(millis)
    if isinstance(millis, int | float) and not isinstance(millis, bool):
        try:
            return datetime.fromtimestamp(float(millis) / 1000, UTC).date()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if "@" in email and len(email) <= 254 else None


def _model(value: Any) -> str:
    return value.strip()[:120] if isinstance(value, str) and value.strip() else "unknown"


def _rows(payload: Any, field: str) -> list[Any]:
    if not isinstance(payload, Mapping):
        raise CursorPayloadInvalid(f"Cursor answered {type(payload).__name__}, not an object with '{field}'.")
    rows = payload.get(field)
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise CursorPayloadInvalid(f"Cursor's '{field}' is {type(rows).__name__}, not a list.")
    return rows


def parse_daily_usage(payload: Any) -> DailyPage:
    """A page of `/teams/daily-usage-data`; rows without a readable day are skipped and counted."""
    days: list[CursorDay] = []
    skipped = 0
    for row in _rows(payload, "data"):
        day = _day(row) if isinstance(row, Mapping) else None
        if day is None:
            skipped += 1
            continue
        user_id = row.get("userId")
        days.append(
            CursorDay(
                day=day,
                email=_email(row.get("email")),
                user_id=str(user_id)[:100]
                if isinstance(user_id, int | str) and not isinstance(user_id, bool)
                else None,
                active=row.get("isActive") is True,
                requests=sum(_count(row.get(name)) for name in REQUEST_FIELDS),
                usage_based_requests=_count(row.get("usageBasedReqs")),
                accepts=_count(row.get("totalAccepts")),
                rejects=_count(row.get("totalRejects")),
                tabs_shown=_count(row.get("totalTabsShown")),
                tabs_accepted=_count(row.get("totalTabsAccepted")),
                accepted_lines_added=_count(row.get("acceptedLinesAdded")),
                model=_model(row.get("mostUsedModel")),
            )
        )
    pagination = payload.get("pagination") if isinstance(payload, Mapping) else None
    has_next = isinstance(pagination, Mapping) and pagination.get("hasNextPage") is True
    return DailyPage(days, skipped, has_next)


def parse_spend(payload: Any) -> SpendPage:
    """A page of `/teams/spend`. The cycle's total is `overallSpendCents` (on-demand and included usage);
    without it, `spendCents` (on-demand only) plus `includedSpendCents` when given."""
    members: list[CursorSpend] = []
    skipped = 0
    for row in _rows(payload, "teamMemberSpend"):
        email = _email(row.get("email")) if isinstance(row, Mapping) else None
        if email is None:
            skipped += 1
            continue
        overall, on_demand = _cents(row.get("overallSpendCents")), _cents(row.get("spendCents"))
        included = _cents(row.get("includedSpendCents"))
        total = overall if overall is not None else (on_demand + (included or 0) if on_demand is not None else None)
        if total is None:
            skipped += 1
            continue
        members.append(CursorSpend(email, total, on_demand))
    pages = payload.get("totalPages") if isinstance(payload, Mapping) else None
    start = payload.get("subscriptionCycleStart") if isinstance(payload, Mapping) else None
    cycle_start = _day({"date": start}) if start is not None else None
    return SpendPage(members, skipped, max(_count(pages), 1), cycle_start)


def merge_days(days: Sequence[CursorDay]) -> dict[tuple[date, str], CursorDay]:
    """One entry per (day, email): a member listed twice (two pages overlapping) keeps the busier row."""
    merged: dict[tuple[date, str], CursorDay] = {}
    for item in days:
        if item.email is None:
            continue
        key = (item.day, item.email)
        if key not in merged or (item.requests, item.accepts) > (merged[key].requests, merged[key].accepts):
            merged[key] = item
    return merged


def dollars(cents: Decimal) -> Decimal:
    return cents / 100
