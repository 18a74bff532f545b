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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

AGENT = "copilot"
SOURCE_NAME = "copilot"
SOURCE_KIND = "copilot"
TOKEN_VARIABLE = "TOKENWISE_COPILOT_GITHUB_TOKEN"
REPORT = "/orgs/{org}/copilot/metrics/reports/users-1-day"
MAX_LINE_BYTES = 1_000_000


class CopilotPayloadInvalid(ValueError):
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
