"""GitHub Copilot's usage metrics: each person's day from the organisation's per-user daily reports.

What GitHub documents (REST "Copilot usage metrics"; docs/ingest.md "GitHub Copilot" says what was
confirmed): `GET /orgs/{org}/copilot/metrics/reports/users-1-day?day=YYYY-MM-DD` answers
`{"download_links": [...], "report_day": "..."}` (204 when the day has no data); each link is a signed,
short-lived URL to an NDJSON file, one JSON object per person: `day`, `user_id`, `user_login`,
`user_initiated_interaction_count`, `code_generation_activity_count`, `code_acceptance_activity_count`,
`loc_added_sum`, `loc_suggested_to_add_sum`, `used_agent`, `used_chat`, `totals_by_feature`,
`totals_by_model_feature`, ... A token needs the organisation's "Copilot metrics" read permission
(fine-grained) or `read:org` (classic).

Copilot reports no tokens and no per-person cost: each person's day becomes one usage record with its
token counts unknown (NULL). A seat price (TOKENWISE_COPILOT_SEAT_USD, per seat per month) gives each
person listed on a day that day's share of a seat (the price over the month's days); unset, cost is
unknown. People are matched by GitHub login (`tokenwise people link github`, the org CSV's `github`).
"""

from __future__ import annotations

import calendar
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
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
from storage.daily_usage import day_start
from storage.identities import linked_people
from storage.ingest import ingest_telemetry
from storage.ingest_schemas import SeenUsage, Telemetry
from storage.models import id_of
from storage.sources import internal_source
from storage.vendors import Decisions, daily_key, prune_days, replace_decisions

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

AGENT = "copilot"
SOURCE_NAME = "copilot"
SOURCE_KIND = "copilot"
TOKEN_VARIABLE = "TOKENWISE_COPILOT_GITHUB_TOKEN"
REPORT = "/orgs/{org}/copilot/metrics/reports/users-1-day"
API_VERSION = "2022-11-28"  # the REST API version these reports are documented under (2026-03-10 too)
NOT_PUBLISHED = 404  # GitHub has not processed the day yet (reports lag a day or two), or it is too old
NO_DATA = 204
FIRST_REPORT = date(2025, 10, 10)  # "Reports are available starting from October 10, 2025"
PUBLICATION_LAG_DAYS = 3  # a day older than this with no report (404) is not merely late
MAX_LINE_BYTES = 1_000_000
TOKEN_HELP = "a token with the organisation's Copilot metrics read permission (classic tokens: read:org)"


class CopilotPayloadInvalid(AdminApiError, ValueError):
    """GitHub answered with something that is not the documented shape; the message says what."""


@dataclass(frozen=True)
class CopilotDay:
    """One person's day in Copilot, as a users-1-day report line says it."""

    day: date
    login: str  # lower-cased: GitHub logins ignore case
    interactions: int  # prompts the person sent (`user_initiated_interaction_count`)
    generations: int  # code Copilot produced (`code_generation_activity_count`)
    acceptances: int  # of it, what the person accepted (`code_acceptance_activity_count`): self-reported
    loc_added: int
    loc_suggested: int
    used_agent: bool
    used_chat: bool
    model: str  # the chat model most interacted with that day, or "unknown" (completions name none)


@dataclass(frozen=True)
class ReportLinks:
    day: date | None
    links: list[str]


@dataclass(frozen=True)
class ReportLines:
    days: list[CopilotDay]
    skipped: int  # lines that were not a person's day (bad JSON, no login, no day)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    try:
        number = int(value)
    except (OverflowError, ValueError):
        return 0
    return number if 0 <= number < 2**53 else 0


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def parse_report_links(payload: Any) -> ReportLinks:
    """The report's metadata: its day and the links to its NDJSON files."""
    if not isinstance(payload, Mapping):
        raise CopilotPayloadInvalid(f"GitHub answered {type(payload).__name__}, not an object with download_links.")
    links = payload.get("download_links")
    if links is None:
        links = []
    if not isinstance(links, list) or not all(isinstance(link, str) and link for link in links):
        raise CopilotPayloadInvalid("GitHub's download_links is not a list of URLs.")
    return ReportLinks(_date(payload.get("report_day")), list(links))


def _model(line: Mapping[str, Any]) -> str:
    """The model with the most prompts in `totals_by_model_feature` (chat only: completions name none)."""
    counts: dict[str, int] = {}
    rows = line.get("totals_by_model_feature")
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, Mapping) and isinstance(row.get("model"), str) and row["model"].strip():
            name = row["model"].strip()[:120]
            counts[name] = counts.get(name, 0) + _count(row.get("user_initiated_interaction_count"))
    if not counts:
        return "unknown"
    return min(counts, key=lambda name: (-counts[name], name))


def parse_line(line: Any) -> CopilotDay | None:
    """One decoded NDJSON object, or None when it is not a person's day."""
    if not isinstance(line, Mapping):
        return None
    login, day = line.get("user_login"), _date(line.get("day"))
    if not isinstance(login, str) or not login.strip() or len(login.strip()) > 100 or day is None:
        return None
    return CopilotDay(
        day=day,
        login=login.strip().lower(),
        interactions=_count(line.get("user_initiated_interaction_count")),
        generations=_count(line.get("code_generation_activity_count")),
        acceptances=_count(line.get("code_acceptance_activity_count")),
        loc_added=_count(line.get("loc_added_sum")),
        loc_suggested=_count(line.get("loc_suggested_to_add_sum")),
        used_agent=line.get("used_agent") is True,
        used_chat=line.get("used_chat") is True,
        model=_model(line),
    )


def parse_ndjson(text: str) -> ReportLines:
    """A report file: one JSON object a line; blank lines ignored, anything unreadable skipped and counted."""
    days: list[CopilotDay] = []
    skipped = 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            skipped += 1
            continue
        try:
            parsed = parse_line(json.loads(raw))
        except (ValueError, RecursionError):
            parsed = None
        if parsed is None:
            skipped += 1
        else:
            days.append(parsed)
    return ReportLines(days, skipped)


def merge_days(days: Iterable[CopilotDay]) -> dict[tuple[date, str], CopilotDay]:
    """One entry per (day, login): a person in two files of a day (an organisation's report split in parts)
    has their counts added."""
    merged: dict[tuple[date, str], CopilotDay] = {}
    for item in days:
        key = (item.day, item.login)
        seen = merged.get(key)
        if seen is None:
            merged[key] = item
            continue
        merged[key] = CopilotDay(
            day=item.day,
            login=item.login,
            interactions=seen.interactions + item.interactions,
            generations=seen.generations + item.generations,
            acceptances=seen.acceptances + item.acceptances,
            loc_added=seen.loc_added + item.loc_added,
            loc_suggested=seen.loc_suggested + item.loc_suggested,
            used_agent=seen.used_agent or item.used_agent,
            used_chat=seen.used_chat or item.used_chat,
            model=seen.model if seen.model != "unknown" else item.model,
        )
    return merged


def seat_share(seat_usd: Decimal | None, day: date) -> Decimal | None:
    """One seat's cost for one day: the monthly price spread evenly over the month's days; None if unset."""
    if seat_usd is None:
        return None
    return seat_usd / calendar.monthrange(day.year, day.month)[1]


# -- fetching -----------------------------------------------------------------------------------------------
@dataclass
class CopilotFetched:
    days: dict[date, list[CopilotDay]] = field(default_factory=dict)  # the days whose report GitHub gave
    unpublished: list[date] = field(default_factory=list)  # 404: not processed yet, left as they are
    files: int = 0
    skipped: int = 0  # report lines that were not a person's day


@dataclass
class CopilotApis:
    """The REST API (with the token) and a plain client for the signed download links (without it: the
    token never goes to the storage host the links point at)."""

    reports: AdminApi
    downloads: AdminApi

    def __enter__(self) -> CopilotApis:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.reports.close()
        self.downloads.close()


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise CopilotPayloadInvalid(f"GitHub answered {response.url.path} with something other than JSON.") from error


def missing_setting(settings: Settings) -> str | None:
    """What the Copilot pull still needs, as one line, or None when it can run."""
    if settings.copilot_token is None:
        return (
            "Set GITHUB_TOKEN (or TOKENWISE_COPILOT_GITHUB_TOKEN) to a token with the organisation's "
            "Copilot metrics read permission (classic: read:org)."
        )
    if not settings.copilot_org:
        return "Set TOKENWISE_COPILOT_ORG to the GitHub organisation whose Copilot usage to pull."
    return None


def build_apis(settings: Settings) -> CopilotApis | None:
    token = settings.copilot_token
    if token is None or not settings.copilot_org:
        return None
    value, variable = token
    headers = {
        "authorization": f"Bearer {value}",
        "accept": "application/vnd.github+json",
        "x-github-api-version": API_VERSION,
    }
    return CopilotApis(
        AdminApi(
            vendor="GitHub", base_url=settings.github_api_url, key_env=variable, key_hint=TOKEN_HELP, headers=headers
        ),
        AdminApi(vendor="GitHub's report storage", base_url=settings.github_api_url, key_env=variable, sends_key=False),
    )


def fetch(
    apis: CopilotApis,
    org: str,
    since: date,
    until: date,
    progress: Progress = no_progress,
    today: date | None = None,
) -> CopilotFetched:
    """Each day's users-1-day report in [since, until]: its metadata, then every file it links to. Days before
    GitHub's reports begin are not asked for; when no day has a report and some are past the publication lag,
    the organisation or its policy is wrong, and the pull says so instead of waiting for ever."""
    fetched = CopilotFetched()
    days = [
        since + timedelta(days=n) for n in range((until - since).days + 1) if since + timedelta(days=n) >= FIRST_REPORT
    ]
    for done, day in enumerate(days):
        progress(done, len(days), f"Copilot report of {day.isoformat()}")
        response = apis.reports.request(
            "GET", REPORT.format(org=org), params={"day": day.isoformat()}, allow=(NOT_PUBLISHED,)
        )
        if response.status_code == NOT_PUBLISHED:
            fetched.unpublished.append(day)
            continue
        links = (
            parse_report_links(_json(response)).links if response.status_code != NO_DATA and response.content else []
        )
        lines: list[CopilotDay] = []
        for link in links:
            report = parse_ndjson(apis.downloads.request("GET", link).text)
            fetched.files += 1
            fetched.skipped += report.skipped
            lines += [item for item in report.days if item.day == day]
        fetched.days[day] = lines
    progress(len(days), len(days), "Copilot reports")
    settled = (today or datetime.now(UTC).date()) - timedelta(days=PUBLICATION_LAG_DAYS)
    if not fetched.days and any(day < settled for day in fetched.unpublished):
        raise AdminApiError(
            f"GitHub has no Copilot usage report for the organisation '{org}' on any day asked (HTTP 404): check "
            "TOKENWISE_COPILOT_ORG, and that the organisation's Copilot usage metrics policy is on."
        )
    return fetched


# -- writing ------------------------------------------------------------------------------------------------
@dataclass
class CopilotSummary:
    days: int = 0
    unpublished: int = 0
    records: int = 0
    unmatched: set[str] = field(default_factory=set)  # logins linked to no one (kept, listed)
    files: int = 0
    skipped: int = 0
    removed: int = 0

    def describe(self) -> str:
        return (
            f"{self.records} person-days from {self.days} daily reports ({self.files} files); "
            f"{self.unpublished} days not published yet; {len(self.unmatched)} logins linked to no one"
        )


def usage_of(fetched: CopilotFetched, seat_usd: Decimal | None) -> list[SeenUsage]:
    """Each person's day as usage: tokens unknown, cost the day's share of a seat (or unknown), the person
    found by their GitHub login (linked by an operator) or kept under it."""
    rows = []
    for day, lines in sorted(fetched.days.items()):
        for (_, login), item in sorted(merge_days(lines).items()):
            cost = seat_share(seat_usd, day)
            rows.append(
                SeenUsage(
                    dedupe_key=daily_key(SOURCE_NAME, day, login, item.model),
                    email=None,
                    occurred_at=day_start(day),
                    agent=AGENT,
                    model=item.model,
                    input_tokens=None,
                    output_tokens=None,
                    cache_read_tokens=None,
                    cache_write_tokens=None,
                    cost_usd=cost,
                    cost_source="seat" if cost is not None else None,  # the operator's price, not a bill
                    identity_kind="github",
                    identity_value=login,
                )
            )
    return rows


def write(session: Session, fetched: CopilotFetched, summary: CopilotSummary, settings: Settings) -> None:
    source_id = id_of(internal_source(session, SOURCE_NAME, SOURCE_KIND))
    rows = usage_of(fetched, settings.copilot_seat_usd)
    keys = [row.dedupe_key for row in rows]
    telemetry = Telemetry(usage=rows)
    ingest_telemetry(session, source_id, telemetry, settings.weight_for, usage_mode="replace")
    named = {row.dedupe_key for row in telemetry.usage}  # the rows a link found a person for
    summary.unmatched = {row.identity_value or "" for row in rows if row.dedupe_key not in named}
    summary.removed = prune_days(session, source_id, list(fetched.days), keys)
    summary.records = len(rows)
    replace_decisions(session, source_id, list(fetched.days), decisions_of(session, fetched))


def decisions_of(session: Session, fetched: CopilotFetched) -> list[Decisions]:
    """Of the code Copilot generated for a linked person a day, what they accepted and what they did not:
    the person's own choices, a self-reported signal for their eyes only. (GitHub counts no rejections:
    generations not accepted stand for them.)"""
    merged = {key: item for lines in fetched.days.values() for key, item in merge_days(lines).items()}
    people = linked_people(session, [("github", login) for _, login in merged])
    return [
        Decisions(people[("github", login)], day, AGENT, item.acceptances, max(item.generations - item.acceptances, 0))
        for (day, login), item in sorted(merged.items())
        if ("github", login) in people and (item.generations or item.acceptances)
    ]


def pull(
    apis: CopilotApis,
    engine: Engine,
    settings: Settings,
    since: date,
    until: date,
    progress: Progress = no_progress,
    today: date | None = None,
) -> CopilotSummary:
    """Fetch [since, until]'s reports, then write them in one transaction (a failed pull writes nothing)."""
    summary = CopilotSummary()
    org = settings.copilot_org or ""

    def read() -> CopilotFetched:
        fetched = fetch(apis, org, since, until, progress, today)
        summary.days, summary.unpublished = len(fetched.days), len(fetched.unpublished)
        summary.files, summary.skipped = fetched.files, fetched.skipped
        return fetched

    run_pull(
        engine,
        SOURCE_NAME,
        read,
        lambda session, fetched: write(session, fetched, summary, settings),
        describe=lambda _fetched: summary.describe(),
    )
    return summary


def pull_recent(services: Services, now: datetime | None = None) -> CopilotSummary | None:
    """The hourly job: the last few days' reports (GitHub publishes a day a day or two late; a report not
    published yet is asked for again next time)."""
    settings = services.settings
    since, today = recent_days(max(settings.vendor_pull_days, 3), now)

    def job() -> CopilotSummary | None:
        apis = build_apis(settings)
        if apis is None:
            return None
        with apis:
            return pull(apis, services.engine, settings, since, today, today=today)

    summary = guarded(SOURCE_NAME, job)
    if summary is not None:
        log.info("Copilot usage pulled: %d person-days", summary.records)
    return summary


PULL = VendorPull(
    name=SOURCE_NAME,
    label="GitHub Copilot usage",
    key_env="GITHUB_TOKEN",
    key_help=TOKEN_HELP,
    configured=lambda settings: settings.copilot_token is not None and bool(settings.copilot_org),
    pull_recent=pull_recent,
    job_id="copilot-usage",
)
