"""Anthropic's Usage & Cost Admin API: what the organisation was billed, per UTC day.

- `GET /v1/organizations/cost_report` (`group_by[]` workspace_id and description, daily buckets): each result's
  `amount` is a decimal string in the currency's lowest unit (Anthropic's docs: "123.45" USD is $1.23), so
  it is divided by 100. One billed line per (day, model, workspace, line item), where the line item is the
  result's cost type, token type, service tier and context window (web search and code execution included).
- `GET /v1/organizations/usage_report/messages` (`bucket_width=1d`, `group_by[]` model, api_key_id,
  workspace_id): the tokens billed per day, model, workspace and API key (uncached input, cache reads, 5-minute
  and 1-hour cache writes, output), kept as billed lines with tokens and no amount.
Both are organisation totals, not per person: they go to `billed_cost` (source `anthropic-cost` and
`anthropic-usage`, vendor `anthropic`) and are never added to usage; `tokenwise report --reconcile` sets
them against what Tokenwise estimated. A re-pulled day is replaced exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
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
from bot.sources.claude_code_analytics import anthropic_api
from storage.vendors import BilledLine, replace_billed

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
PULL_NAME = "anthropic-cost"
COST_SOURCE = "anthropic-cost"
USAGE_SOURCE = "anthropic-usage"
VENDOR = "anthropic"
COST_PATH = "/v1/organizations/cost_report"
USAGE_PATH = "/v1/organizations/usage_report/messages"
LOWEST_UNITS = Decimal(100)  # cost_report's amount: cents for USD
TOKEN_FIELDS = (
    ("uncached_input_tokens", ("uncached_input_tokens",)),
    ("cache_read_input_tokens", ("cache_read_input_tokens",)),
    ("cache_creation_5m_input_tokens", ("cache_creation", "ephemeral_5m_input_tokens")),
    ("cache_creation_1h_input_tokens", ("cache_creation", "ephemeral_1h_input_tokens")),
    ("output_tokens", ("output_tokens",)),
)


@dataclass
class CostPull:
    days: list[date]
    costs: list[BilledLine] = field(default_factory=list)
    tokens: list[BilledLine] = field(default_factory=list)
    pages: int = 0

    def describe(self) -> str:
        usd = sum((line.amount or Decimal(0) for line in self.costs if line.currency == "USD"), Decimal(0))
        return (
            f"{len(self.costs)} billed cost lines (${usd:,.2f}) and {len(self.tokens)} billed token lines over "
            f"{len(self.days)} days, {self.pages} pages"
        )


def _items(value: Any, name: str) -> list[dict[str, Any]]:
    """The objects of a list field of an answer, skipping whatever is not an object."""
    found = value.get(name) if isinstance(value, dict) else None
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def _stamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _bucket_day(bucket: dict[str, Any]) -> date | None:
    try:
        return date.fromisoformat(str(bucket.get("starting_at") or "")[:10])
    except ValueError:
        return None


def _cents(value: Any) -> Decimal | None:
    try:
        amount = Decimal(str(value)) / LOWEST_UNITS
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def cost_line(day: date, result: dict[str, Any]) -> BilledLine | None:
    """One cost_report result as a billed line in the currency's main unit."""
    raw = result.get("amount")
    amount = _cents(raw) if isinstance(raw, str | int | float) and not isinstance(raw, bool) else None
    if amount is None:
        return None
    parts = [str(result.get(name) or "") for name in ("cost_type", "token_type", "service_tier", "context_window")]
    item = "/".join(part for part in parts if part) or str(result.get("description") or "total")
    return BilledLine(
        day=day,
        amount=amount,
        currency=str(result.get("currency") or "USD").upper()[:8],
        model=str(result.get("model") or "")[:120],
        workspace=str(result.get("workspace_id") or "")[:120],
        line_item=item[:300],
    )


def token_lines(day: date, result: dict[str, Any]) -> list[BilledLine]:
    """One messages usage result as billed token lines (one per kind of token), without an amount."""
    lines = []
    key = str(result.get("api_key_id") or "")
    for name, path in TOKEN_FIELDS:
        value: Any = result
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        tokens = value
        if tokens > 0:
            lines.append(
                BilledLine(
                    day=day,
                    amount=None,
                    model=str(result.get("model") or "")[:120],
                    workspace=str(result.get("workspace_id") or "")[:120],
                    line_item=f"{name}{f' key:{key}' if key else ''}"[:300],
                    tokens=tokens,
                )
            )
    return lines


def fetch(api: AdminApi, since: date, until: date, progress: Progress = no_progress) -> CostPull:
    """The cost report and the messages usage report for [since, until], pages followed; nothing written."""
    pulled = CostPull(days=days_between(since, until))
    span = {"starting_at": _stamp(since), "ending_at": _stamp(until + timedelta(days=1))}
    steps = 2
    progress(0, steps, "Anthropic cost report")
    for page in api.pages(COST_PATH, {**span, "group_by[]": ["workspace_id", "description"], "limit": 31}):
        pulled.pages += 1
        for bucket in _items(page, "data"):
            day = _bucket_day(bucket)
            if day is None or not since <= day <= until:
                continue
            for result in _items(bucket, "results"):
                line = cost_line(day, result)
                if line is not None:
                    pulled.costs.append(line)
    progress(1, steps, "Anthropic messages usage")
    params = {**span, "bucket_width": "1d", "group_by[]": ["model", "api_key_id", "workspace_id"], "limit": 31}
    for page in api.pages(USAGE_PATH, params):
        pulled.pages += 1
        for bucket in _items(page, "data"):
            day = _bucket_day(bucket)
            if day is None or not since <= day <= until:
                continue
            for result in _items(bucket, "results"):
                pulled.tokens.extend(token_lines(day, result))
    progress(steps, steps, "Anthropic usage and cost")
    return pulled


def write(session: Session, pulled: CostPull) -> None:
    replace_billed(session, COST_SOURCE, VENDOR, pulled.days, pulled.costs)
    replace_billed(session, USAGE_SOURCE, VENDOR, pulled.days, pulled.tokens)


def pull(
    settings: Settings,
    engine: Engine,
    since: date,
    until: date,
    progress: Progress = no_progress,
    sleep: Callable[[float], None] | None = None,
) -> CostPull:
    with anthropic_api(settings, sleep) as api:
        return run_pull(
            engine, PULL_NAME, lambda: fetch(api, since, until, progress), write, describe=CostPull.describe
        )


def pull_recent(services: Services, now: datetime | None = None) -> CostPull | None:
    """The hourly job: the last TOKENWISE_VENDOR_PULL_DAYS days, today included."""
    since, today = recent_days(services.settings.vendor_pull_days, now)
    return guarded(PULL_NAME, lambda: pull(services.settings, services.engine, since, today))


PULL = VendorPull(
    name=PULL_NAME,
    label="Anthropic billed cost",
    key_env="ANTHROPIC_ADMIN_KEY",
    configured=lambda settings: bool(settings.anthropic_admin_key),
    pull_recent=pull_recent,
    key_help="an Anthropic Admin API key (sk-ant-admin..., Console > Settings > Admin keys)",
)
