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

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select, type_coerce
from sqlmodel import Session

from bot.config import Settings
from bot.sources.admin_api import (
    AdminApi,
    AdminApiError,
    Progress,
    VendorPull,
    guarded,
    no_progress,
    recent_days,
    run_pull,
)
from storage.daily_usage import day_start, utc_day
from storage.ingest import ingest_telemetry
from storage.ingest_schemas import SeenUsage, Telemetry
from storage.models import Person, UsageRecord, id_of, table_of
from storage.people import normalize_email
from storage.sources import internal_source
from storage.types import NANO, ScaledDecimal
from storage.vendors import BilledLine, Decisions, daily_key, prune_days, replace_billed, replace_decisions

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

AGENT = "cursor"
SOURCE_NAME = "cursor"
SOURCE_KIND = "cursor"
BILLED_SOURCE = "cursor-spend"  # the organisation's daily total in billed_cost (reconcile's vendor "cursor")
VENDOR = "cursor"
KEY_VARIABLE = "CURSOR_ADMIN_KEY"
KEY_HELP = "a Cursor Admin API key (cursor.com dashboard, Settings, Cursor Admin API Keys; team admins only)"
DAILY_USAGE = "/teams/daily-usage-data"
SPEND = "/teams/spend"
MAX_DAYS_A_REQUEST = 30  # "Date range cannot exceed 30 days" (Cursor's Admin API reference)
PAGE_SIZE = 500
REQUEST_FIELDS = ("composerRequests", "chatRequests", "agentRequests", "cmdkUsages")


class CursorPayloadInvalid(AdminApiError, ValueError):
    """Cursor answered with something that is not the documented shape; the message says what."""


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise CursorPayloadInvalid(f"Cursor answered {response.url.path} with something other than JSON.") from error


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


# -- fetching -----------------------------------------------------------------------------------------------
@dataclass
class CursorFetched:
    """Everything a pull read from Cursor, before anything is written."""

    since: date
    until: date
    today: date
    days: list[CursorDay] = field(default_factory=list)
    spend: dict[str, Decimal] | None = None  # email -> the cycle's spend in cents; None: not read
    cycle_start: date | None = None
    requests: int = 0
    skipped: int = 0  # rows Cursor sent that name no day, or no member's spend


def build_api(settings: Settings) -> AdminApi | None:
    """Cursor's Admin API with CURSOR_ADMIN_KEY as the basic-auth user name, or None without a key."""
    if not settings.cursor_admin_key:
        return None
    return AdminApi(
        vendor="Cursor",
        base_url=settings.cursor_api_url,
        key_env=KEY_VARIABLE,
        key_hint=KEY_HELP,
        auth=(settings.cursor_admin_key, ""),
    )


def windows(since: date, until: date) -> list[tuple[date, date]]:
    """[since, until] cut into spans of at most MAX_DAYS_A_REQUEST days, both ends included."""
    spans = []
    start = since
    while start <= until:
        end = min(start + timedelta(days=MAX_DAYS_A_REQUEST - 1), until)
        spans.append((start, end))
        start = end + timedelta(days=1)
    return spans


def _millis(day: date) -> int:
    return int(day_start(day).timestamp() * 1000)


def fetch(api: AdminApi, since: date, until: date, today: date, progress: Progress = no_progress) -> CursorFetched:
    """Every member's days in [since, until] (all pages of every 30-day span) and, when the span reaches
    today, each member's spend in the current billing cycle (all pages)."""
    fetched = CursorFetched(since, until, today)
    spans = windows(since, until)
    for done, (first, last) in enumerate(spans):
        progress(done, len(spans), f"Cursor usage from {first.isoformat()}")
        page = 1
        while True:
            body = {"startDate": _millis(first), "endDate": _millis(last + timedelta(days=1)) - 1}
            answer = parse_daily_usage(
                _json(api.request("POST", DAILY_USAGE, json={**body, "page": page, "pageSize": PAGE_SIZE}))
            )
            fetched.days += [d for d in answer.days if first <= d.day <= last]
            fetched.skipped += answer.skipped
            if not answer.has_next or page >= 10_000:
                break
            page += 1
    progress(len(spans), len(spans), "Cursor usage")
    if since <= today <= until:
        fetched.spend = {}
        page, pages = 1, 1
        while page <= pages:
            progress(page - 1, pages, "Cursor spend")
            spend = parse_spend(_json(api.request("POST", SPEND, json={"page": page, "pageSize": PAGE_SIZE})))
            pages = min(spend.total_pages, 10_000)
            fetched.cycle_start = spend.cycle_start or fetched.cycle_start
            fetched.skipped += spend.skipped
            for member in spend.members:
                fetched.spend[member.email] = fetched.spend.get(member.email, Decimal(0)) + member.cents
            page += 1
        progress(pages, pages, "Cursor spend")
    fetched.requests = api.requests
    return fetched


# -- writing ------------------------------------------------------------------------------------------------
USAGE = table_of(UsageRecord)
PEOPLE = table_of(Person)


@dataclass
class CursorSummary:
    records: int = 0
    people: int = 0
    unattributed: int = 0
    spend_booked_usd: Decimal = Decimal(0)
    requests: int = 0
    skipped: int = 0
    removed: int = 0

    spend_read: bool = False  # only a pull that reaches today reads the billing cycle's spend

    def describe(self) -> str:
        spend = (
            f"${self.spend_booked_usd:.2f} of spend booked today"
            if self.spend_read
            else "spend not read (it is the current billing cycle's, booked on the day of a pull reaching today)"
        )
        return (
            f"{self.records} person-days from {self.requests} requests; {spend}; {self.unattributed} kept with no email"
        )


def _stored_cost(session: Session, source_id: int, first: date, end: date) -> dict[tuple[str, date], Decimal]:
    """(email, day) -> the spend already booked on that day by this source, for days in [first, end)."""
    u, p = USAGE.c, PEOPLE.c
    cost = type_coerce(func.sum(u.cost_usd), ScaledDecimal(NANO))
    rows = session.execute(
        select(p.email, u.occurred_at, cost)
        .select_from(USAGE.join(PEOPLE, p.id == u.person_id))
        .where(u.source_id == source_id, u.occurred_at >= day_start(first), u.occurred_at < day_start(end))
        .where(u.cost_usd.is_not(None), p.email.is_not(None))
        .group_by(p.email, u.occurred_at)
    )
    booked: dict[tuple[str, date], Decimal] = {}
    for email, occurred_at, amount in rows:
        key = (normalize_email(email), utc_day(occurred_at))
        booked[key] = booked.get(key, Decimal(0)) + (amount or Decimal(0))
    return booked


def usage_of(session: Session, source_id: int, fetched: CursorFetched, summary: CursorSummary) -> list[SeenUsage]:
    """The pulled days as usage: tokens unknown; a finished day keeps the spend it was booked; today gets
    what the cycle's spend adds to the spend booked on the cycle's earlier days."""
    merged = merge_days(fetched.days)
    first = min([fetched.since, fetched.cycle_start or fetched.since])
    booked = _stored_cost(session, source_id, first, fetched.until + timedelta(days=1))
    costs: dict[tuple[str, date], Decimal | None] = {
        key: amount
        for key, amount in booked.items()
        if fetched.since <= key[1] <= fetched.until and key[1] < fetched.today
    }
    if fetched.spend is not None:
        summary.spend_read = True
        cycle = fetched.cycle_start or fetched.today
        for email, cents in fetched.spend.items():
            before = sum(
                (amount for (who, day), amount in booked.items() if who == email and cycle <= day < fetched.today),
                Decimal(0),
            )
            due = max(dollars(cents) - before, Decimal(0))
            costs[(email, fetched.today)] = due
            summary.spend_booked_usd += due
    rows: list[SeenUsage] = []
    wanted = {(email, day) for (day, email), item in merged.items() if item.used}
    wanted |= {key for key, amount in costs.items() if amount}  # spend booked, or due, with no activity row
    for email, day in sorted(wanted, key=lambda k: (k[1], k[0])):
        item = merged.get((day, email))
        model = item.model if item is not None else "unknown"  # spend with no activity row: on a row of its own
        cost = costs.get((email, day))
        rows.append(
            SeenUsage(
                dedupe_key=daily_key(SOURCE_NAME, day, email, model),
                email=email,
                occurred_at=day_start(day),
                agent=AGENT,
                model=model,
                input_tokens=None,
                output_tokens=None,
                cache_read_tokens=None,
                cache_write_tokens=None,
                cost_usd=cost,
                cost_source="billed" if cost is not None else None,
            )
        )
    nameless = {  # rows with no email: kept under Cursor's user id, listed by `source status`; one a day each
        (item.day, f"cursor:{item.user_id}" if item.user_id else None, item.model): item
        for item in fetched.days
        if item.email is None and item.used
    }
    for (day, who, model), _item in sorted(nameless.items(), key=lambda entry: (entry[0][0], entry[0][1] or "")):
        rows.append(
            SeenUsage(
                dedupe_key=daily_key(SOURCE_NAME, day, who or "nobody", model),
                email=None,
                occurred_at=day_start(day),
                agent=AGENT,
                model=model,
                input_tokens=None,
                output_tokens=None,
                cache_read_tokens=None,
                cache_write_tokens=None,
                identity_kind="user-id" if who else None,
                identity_value=who,
            )
        )
    summary.unattributed = len(nameless)
    summary.records = len(rows)
    summary.people = len({r.email for r in rows if r.email})
    return rows


def decisions_of(session: Session, days: Sequence[CursorDay]) -> list[Decisions]:
    """Each person's accepted and rejected suggestions a day (`totalAccepts`, `totalRejects`): the person's
    own choices, a self-reported signal for their eyes only."""
    merged = merge_days(days)
    emails = sorted({email for (_, email), item in merged.items() if item.accepts or item.rejects})
    people = {
        normalize_email(email): int(person_id)
        for start in range(0, len(emails), 500)
        for person_id, email in session.execute(
            select(PEOPLE.c.id, PEOPLE.c.email).where(PEOPLE.c.email.in_(emails[start : start + 500]))
        )
    }
    return [
        Decisions(people[email], day, AGENT, item.accepts, item.rejects)
        for (day, email), item in sorted(merged.items())
        if email in people and (item.accepts or item.rejects)
    ]


def write(session: Session, fetched: CursorFetched, summary: CursorSummary, settings: Settings) -> None:
    source_id = id_of(internal_source(session, SOURCE_NAME, SOURCE_KIND))
    rows = usage_of(session, source_id, fetched, summary)
    keys = [row.dedupe_key for row in rows]
    ingest_telemetry(session, source_id, Telemetry(usage=rows), settings.weight_for, usage_mode="replace")
    days = [fetched.since + timedelta(days=n) for n in range((fetched.until - fetched.since).days + 1)]
    summary.removed = prune_days(session, source_id, days, keys)
    replace_decisions(session, source_id, days, decisions_of(session, fetched.days))
    if fetched.spend is not None:  # the organisation's bill for today, for `tokenwise report --reconcile`
        line = BilledLine(fetched.today, summary.spend_booked_usd, line_item="members' spend booked today")
        replace_billed(session, BILLED_SOURCE, VENDOR, [fetched.today], [line])


def pull(
    api: AdminApi,
    engine: Engine,
    settings: Settings,
    since: date,
    until: date,
    *,
    today: date | None = None,
    progress: Progress = no_progress,
) -> CursorSummary:
    """Fetch [since, until] from Cursor, then write it in one transaction (a failed pull writes nothing)."""
    summary = CursorSummary()
    day = today or datetime.now(UTC).date()

    def read() -> CursorFetched:
        fetched = fetch(api, since, until, day, progress)
        summary.requests, summary.skipped = fetched.requests, fetched.skipped
        return fetched

    run_pull(
        engine,
        SOURCE_NAME,
        read,
        lambda session, fetched: write(session, fetched, summary, settings),
        describe=lambda _fetched: summary.describe(),
    )
    return summary


def pull_recent(services: Services, now: datetime | None = None) -> CursorSummary | None:
    """The hourly job: the last TOKENWISE_VENDOR_PULL_DAYS days, today included (Cursor aggregates hourly)."""
    settings = services.settings
    since, today = recent_days(settings.vendor_pull_days, now)

    def job() -> CursorSummary | None:
        api = build_api(settings)
        if api is None:
            return None
        with api:
            return pull(api, services.engine, settings, since, today, today=today)

    summary = guarded(SOURCE_NAME, job)
    if summary is not None:
        log.info("Cursor usage pulled: %d person-days", summary.records)
    return summary


PULL = VendorPull(
    name=SOURCE_NAME,
    label="Cursor usage and spend",
    key_env=KEY_VARIABLE,
    key_help=KEY_HELP,
    configured=lambda settings: bool(settings.cursor_admin_key),
    pull_recent=pull_recent,
    job_id="cursor-usage",
)
