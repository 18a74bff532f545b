"""Anthropic's Claude Code Analytics Admin API: per person and day, Claude Code's tokens, estimated cost,
commits, pull requests and edit decisions, for the whole organisation from one admin key.

`GET /v1/organizations/usage_report/claude_code?starting_at=YYYY-MM-DD` names one UTC day, so a pull walks
the days, following each day's pages (`page` = the previous answer's `next_page`). Each record is one actor
(a user by email, or an API key by name) on one day:
- `model_breakdown` -> one usage row per (day, person, model): tokens, and `estimated_cost.amount`, which
  Anthropic documents in minor currency units (cents for USD) and is divided by 100 here;
- `core_metrics.commits_by_claude_code` and `pull_requests_by_claude_code` -> `commit` and `pr_opened`
  outcomes, self-reported (what the tool says it created): shown, never evidence, distinct from GitHub's
  merged pull requests;
- `tool_actions` -> the edits the person accepted and rejected per tool (`tool_decision`), a quality signal
  in `/tokenwise me`.
An API key's records have no email: they are kept as unattributed usage under (`api-key`, its name) until
an operator links it (`tokenwise people link api-key NAME EMAIL`). A re-pulled day replaces that day's
rows exactly. Where the same person's Claude Code logs or OTLP export cover a day, those count and these
rows stay for reconciliation (storage/daily_usage.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session

from bot.config import Settings
from bot.sources.admin_api import (
    AdminApi,
    Progress,
    VendorPull,
    days_between,
    guarded,
    no_progress,
    recent_days,
    run_pull,
)
from storage.daily_usage import day_start
from storage.ingest import PersonCache, ingest_telemetry
from storage.ingest_schemas import SeenOutcome, SeenUsage, Telemetry
from storage.models import id_of
from storage.sources import internal_source
from storage.vendors import Decisions, daily_key, prune_days, prune_outcomes, replace_decisions

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
SOURCE_NAME = "claude-code-analytics"
AGENT = "claude-code"
PATH = "/v1/organizations/usage_report/claude_code"
ANTHROPIC_VERSION = "2023-06-01"
PAGE_LIMIT = 1000  # the documented maximum
TOOLS = ("edit_tool", "multi_edit_tool", "write_tool", "notebook_edit_tool")
MINOR_UNITS = Decimal(100)  # estimated_cost.amount is in cents (Anthropic's docs: minor currency units)


def anthropic_api(settings: Settings, sleep: Callable[[float], None] | None = None) -> AdminApi:
    """The Admin API client (x-api-key and anthropic-version), at ANTHROPIC_API_URL."""
    api = AdminApi(
        vendor="Anthropic",
        base_url=settings.anthropic_api_url,
        key_env="ANTHROPIC_ADMIN_KEY",
        headers={"x-api-key": settings.anthropic_admin_key or "", "anthropic-version": ANTHROPIC_VERSION},
    )
    if sleep is not None:
        api.sleep = sleep
    return api


@dataclass
class _Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0
    cost: Decimal | None = None


@dataclass
class _Actor:
    email: str | None
    api_key: str | None
    commits: int = 0
    pull_requests: int = 0
    sessions: int = 0
    models: dict[str, _Tokens] = field(default_factory=dict)
    tools: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def who(self) -> str:
        return self.email or f"api-key:{self.api_key}"


@dataclass
class AnalyticsPull:
    """What a pull fetched, before it is written."""

    days: list[date]
    actors: dict[tuple[date, str], _Actor] = field(default_factory=dict)
    pages: int = 0
    records: int = 0
    skipped: int = 0  # records naming neither an email nor an API key
    non_usd: int = 0  # model rows whose estimate is not in USD: cost left unknown

    @property
    def people(self) -> int:
        return len({actor.who for actor in self.actors.values()})

    def describe(self) -> str:
        return (
            f"{self.records} records ({self.people} people and API keys) over {len(self.days)} days, {self.pages} pages"
        )


def _int(value: Any) -> int:
    """A count as the API gives it; anything else (a string, a list, a negative number) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    try:
        return max(int(value), 0)
    except (OverflowError, ValueError):
        return 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _cost(estimate: Any, pulled: AnalyticsPull) -> Decimal | None:
    if not isinstance(estimate, dict) or estimate.get("amount") is None:
        return None
    if str(estimate.get("currency") or "USD").upper() != "USD":
        pulled.non_usd += 1
        return None
    amount = estimate["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return None
    try:
        cost = Decimal(str(amount)) / MINOR_UNITS
    except InvalidOperation:
        return None
    return cost if cost.is_finite() and cost >= 0 else None


def add_record(pulled: AnalyticsPull, record: dict[str, Any], asked: date) -> None:
    """Fold one record into the pull (records of one actor and day, say per terminal, are summed)."""
    actor = _dict(record.get("actor"))
    email = str(actor.get("email_address") or "").strip().lower()[:320] or None
    api_key = str(actor.get("api_key_name") or "").strip()[:200] or None
    if not email and not api_key:
        pulled.skipped += 1
        return
    pulled.records += 1
    day = asked  # `starting_at` names the one day an answer covers (its `date`: that day, as YYYY-MM-DD or RFC 3339)
    key = (day, email or f"api-key:{api_key}")
    seen = pulled.actors.setdefault(key, _Actor(email, None if email else api_key))
    core = _dict(record.get("core_metrics"))
    seen.commits += _int(core.get("commits_by_claude_code"))
    seen.pull_requests += _int(core.get("pull_requests_by_claude_code"))
    seen.sessions += _int(core.get("num_sessions"))
    for tool in TOOLS:
        action = _dict(_dict(record.get("tool_actions")).get(tool))
        accepted, rejected = seen.tools.get(tool, (0, 0))
        seen.tools[tool] = (accepted + _int(action.get("accepted")), rejected + _int(action.get("rejected")))
    breakdown = record.get("model_breakdown")
    for part in (_dict(item) for item in (breakdown if isinstance(breakdown, list) else [])):
        model = str(part.get("model") or "unknown")[:120]
        tokens = _dict(part.get("tokens"))
        total = seen.models.setdefault(model, _Tokens())
        total.input += _int(tokens.get("input"))
        total.output += _int(tokens.get("output"))
        total.cache_read += _int(tokens.get("cache_read"))
        total.cache_creation += _int(tokens.get("cache_creation"))
        cost = _cost(part.get("estimated_cost"), pulled)
        if cost is not None:
            total.cost = (total.cost or Decimal(0)) + cost


def fetch(api: AdminApi, since: date, until: date, progress: Progress = no_progress) -> AnalyticsPull:
    """Every record of [since, until], one day per request (pages followed); nothing written."""
    pulled = AnalyticsPull(days=days_between(since, until))
    for done, day in enumerate(pulled.days):
        progress(done, len(pulled.days), f"Claude Code Analytics {day.isoformat()}")
        for page in api.pages(PATH, {"starting_at": day.isoformat(), "limit": PAGE_LIMIT}):
            pulled.pages += 1
            records = page.get("data") if isinstance(page, dict) else None
            for record in records if isinstance(records, list) else []:
                if isinstance(record, dict):
                    add_record(pulled, record, day)
    progress(len(pulled.days), len(pulled.days), "Claude Code Analytics")
    return pulled


def telemetry_of(pulled: AnalyticsPull) -> Telemetry:
    """Usage (tokens, estimated cost) and self-reported outcomes (commits, pull requests opened)."""
    telemetry = Telemetry()
    for (day, _who), actor in sorted(pulled.actors.items()):
        for model, total in sorted(actor.models.items()):
            telemetry.usage.append(
                SeenUsage(
                    dedupe_key=daily_key(SOURCE_NAME, day, actor.who, model),
                    email=actor.email,
                    occurred_at=day_start(day),
                    agent=AGENT,
                    model=model,
                    input_tokens=total.input,
                    output_tokens=total.output,
                    cache_read_tokens=total.cache_read,
                    cache_write_tokens=total.cache_creation,
                    cost_usd=total.cost,
                    cost_source="reported" if total.cost is not None else None,
                    identity_kind=None if actor.email else "api-key",
                    identity_value=None if actor.email else actor.api_key,
                )
            )
        if actor.email:  # an API key's counts name nobody: outcomes need a person
            for kind, count in (("commit", actor.commits), ("pr_opened", actor.pull_requests)):
                for number in range(1, min(count, 500) + 1):
                    telemetry.outcomes.append(
                        SeenOutcome(
                            external_id=f"cca:{day.isoformat()}:{actor.email}:{kind}:{number}"[:200],
                            email=actor.email,
                            run_external_id=None,
                            kind=kind,
                            occurred_at=day_start(day),
                        )
                    )
    return telemetry


def write(session: Session, pulled: AnalyticsPull, weight_for: Callable[[str], Decimal]) -> None:
    """One transaction: usage replaced per (day, person, model), outcomes and edit decisions per day."""
    source = internal_source(session, SOURCE_NAME, SOURCE_NAME)
    source_id = id_of(source)
    telemetry = telemetry_of(pulled)
    keys = [u.dedupe_key for u in telemetry.usage]
    outcome_ids = [o.external_id for o in telemetry.outcomes]
    ingest_telemetry(session, source_id, telemetry, weight_for, usage_mode="replace")
    prune_days(session, source_id, pulled.days, keys)
    prune_outcomes(session, source_id, pulled.days, outcome_ids)
    people = PersonCache(session)
    decisions = [
        Decisions(people.id_for(actor.email, None), day, tool, accepted, rejected)
        for (day, _who), actor in sorted(pulled.actors.items())
        if actor.email
        for tool, (accepted, rejected) in sorted(actor.tools.items())
        if accepted or rejected
    ]
    replace_decisions(session, source_id, pulled.days, decisions)


def pull(
    settings: Settings,
    engine: Engine,
    since: date,
    until: date,
    progress: Progress = no_progress,
    sleep: Callable[[float], None] | None = None,
) -> AnalyticsPull:
    """Fetch [since, until] (network, no transaction), then write it in one transaction; state recorded."""
    with anthropic_api(settings, sleep) as api:
        return run_pull(
            engine,
            SOURCE_NAME,
            lambda: fetch(api, since, until, progress),
            lambda session, pulled: write(session, pulled, settings.weight_for),
            describe=AnalyticsPull.describe,
        )


def pull_recent(services: Services, now: datetime | None = None) -> AnalyticsPull | None:
    """The hourly job: the last TOKENWISE_VENDOR_PULL_DAYS days, today included (late figures settle)."""
    since, today = recent_days(services.settings.vendor_pull_days, now)
    return guarded(SOURCE_NAME, lambda: pull(services.settings, services.engine, since, today))


PULL = VendorPull(
    name=SOURCE_NAME,
    label="Claude Code Analytics",
    key_env="ANTHROPIC_ADMIN_KEY",
    configured=lambda settings: bool(settings.anthropic_admin_key),
    pull_recent=pull_recent,
    key_help="an Anthropic Admin API key (sk-ant-admin..., Console > Settings > Admin keys)",
)
