"""OpenAI's organisation Usage API: daily completions usage per user and model, with cost.

Pulled through the `openai` SDK's admin client (retries, timeouts and the base URL, OPENAI_ADMIN_BASE_URL,
come from the client, built once); pagination, the pull's protocol and its registration are the vendor
pulls' shared ones (bot/sources/admin_api.py). Each (day, user, model) bucket is one usage record whose
dedupe key is the bucket, upserted with the latest figures, so the hourly pull refreshes today's
still-growing bucket and a re-pull of finished days changes nothing. A person's cost is OpenAI's own
(`cost_source` billed) when `/organization/costs` can group by user for the organisation, else priced from
the tokens by genai-prices (`priced`): the costs endpoint usually has no user. The organisation's billed
cost per day, line item and project comes from `/organization/costs` too, into `billed_cost` (source
`openai-costs`, never added to usage), for `tokenwise report --reconcile`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import openai
from openai import OpenAI
from sqlalchemy import Engine

from bot.config import Settings
from bot.pricing import price
from bot.sources.admin_api import (
    AdminApiError,
    KeyRejected,
    VendorPull,
    cursor_pages,
    day_unix,
    days_between,
    guarded,
    recent_days,
    run_pull,
    unix_day,
)
from storage.ingest import ingest_telemetry
from storage.ingest_schemas import SeenUsage, Telemetry
from storage.models import id_of
from storage.sources import internal_source
from storage.vendors import BilledLine, replace_billed

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
AGENT = "openai-api"
SOURCE_NAME = "openai-usage"
BILLED_SOURCE = "openai-costs"
FIX_KEY = "set OPENAI_ADMIN_KEY to an organisation admin key (platform settings, Admin keys)."
GROUP_BY: list[Any] = ["user_id", "model", "project_id"]


def build_admin_client(settings: Settings) -> OpenAI | None:
    """The admin client when OPENAI_ADMIN_KEY is set (built once per process), else None."""
    if not settings.openai_admin_key:
        return None
    return OpenAI(
        admin_api_key=settings.openai_admin_key,
        api_key=settings.openai_admin_key,
        base_url=settings.openai_admin_base_url,
        max_retries=3,
        timeout=60.0,
    )


@dataclass
class PullSummary:
    pages: int = 0
    buckets: int = 0
    records: int = 0
    unattributed: int = 0
    priced_by_openai: int = 0
    priced_by_table: int = 0
    cost_unknown: int = 0
    billed_lines: int | None = None  # the organisation's billed cost lines; None: /organization/costs unreadable
    billed_pages: int = 0

    def describe(self) -> str:
        billed = (
            "no billed cost (costs unreadable)" if self.billed_lines is None else f"{self.billed_lines} billed lines"
        )
        return f"{self.records} records, {billed}, {self.pages} pages"


@dataclass
class _Bucket:
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0


def user_emails(client: OpenAI) -> dict[str, str]:
    """OpenAI user id -> email, following the list's pagination."""
    return {u.id: u.email.strip().lower() for u in client.admin.organization.users.list(limit=100) if u.email}


def _pages(fetch: Callable[..., Any], **params: Any) -> Iterator[Any]:
    """An SDK list's pages (`has_more`/`next_page`), by the shared cursor walk."""
    return cursor_pages(lambda page: fetch(**params, **({"page": page} if page else {})))


def daily_costs(client: OpenAI, start: int, end: int) -> dict[tuple[date, str, str], Decimal] | None:
    """(day, user id, model) -> USD from /organization/costs, or None when the organisation cannot say."""
    costs: dict[tuple[date, str, str], Decimal] = defaultdict(Decimal)
    try:
        for page in _pages(
            client.admin.organization.usage.costs,
            start_time=start,
            end_time=end,
            bucket_width="1d",
            group_by=["user_id", "line_item"],
            limit=180,
        ):
            for bucket in page.data:
                for result in bucket.results:
                    amount = getattr(result, "amount", None)
                    user_id, line_item = getattr(result, "user_id", None), getattr(result, "line_item", None)
                    if amount is None or amount.value is None or not user_id or not line_item:
                        continue
                    model = line_item.split(",")[0].strip()
                    costs[(unix_day(bucket.start_time), user_id, model)] += Decimal(str(amount.value))
    except (openai.BadRequestError, openai.PermissionDeniedError, openai.NotFoundError) as error:
        log.info("OpenAI costs unavailable (%s); pricing from genai-prices", type(error).__name__)
        return None
    return dict(costs)


def billed_costs(client: OpenAI, start: int, end: int, summary: PullSummary) -> list[BilledLine] | None:
    """The organisation's billed cost per day, line item and project from /organization/costs (amounts in
    dollars), or None when the key may not read it."""
    lines: list[BilledLine] = []
    try:
        for page in _pages(
            client.admin.organization.usage.costs,
            start_time=start,
            end_time=end,
            bucket_width="1d",
            group_by=["line_item", "project_id"],
            limit=180,
        ):
            summary.billed_pages += 1
            for bucket in page.data:
                for result in bucket.results:
                    amount = getattr(result, "amount", None)
                    if amount is None or amount.value is None:
                        continue
                    line_item = str(getattr(result, "line_item", None) or "")
                    lines.append(
                        BilledLine(
                            day=unix_day(bucket.start_time),
                            amount=Decimal(str(amount.value)),
                            currency=str(getattr(amount, "currency", None) or "usd").upper(),
                            model=line_item.split(",")[0].strip(),
                            workspace=str(getattr(result, "project_id", None) or ""),
                            line_item=line_item,
                        )
                    )
    except (openai.BadRequestError, openai.PermissionDeniedError, openai.NotFoundError) as error:
        log.info("OpenAI's organisation costs unavailable (%s); no billed cost pulled", type(error).__name__)
        return None
    summary.billed_lines = len(lines)
    return lines


@dataclass
class OpenAIPull:
    telemetry: Telemetry
    billed: list[BilledLine] | None  # None: /organization/costs could not be read
    days: list[date]


def fetch(client: OpenAI, since: date, until: date, summary: PullSummary) -> OpenAIPull:
    """Usage per (day, user, model), then the organisation's billed cost: fetched, not written."""
    telemetry = fetch_usage(client, since, until, summary)
    billed = billed_costs(client, day_unix(since), day_unix(until + timedelta(days=1)), summary)
    return OpenAIPull(telemetry, billed, days_between(since, until))


def fetch_usage(client: OpenAI, since: date, until: date, summary: PullSummary) -> Telemetry:
    """Every (day, user, model) bucket in [since, until], as usage not yet written."""
    start, end = day_unix(since), day_unix(until + timedelta(days=1))
    emails = user_emails(client)
    buckets: dict[tuple[date, str, str], _Bucket] = defaultdict(_Bucket)
    for page in _pages(
        client.admin.organization.usage.completions,
        start_time=start,
        end_time=end,
        bucket_width="1d",
        group_by=GROUP_BY,
        limit=31,
    ):
        summary.pages += 1
        for bucket in page.data:
            summary.buckets += 1
            for result in bucket.results:
                user_id, model = getattr(result, "user_id", None), getattr(result, "model", None) or "unknown"
                if not user_id or user_id not in emails:
                    summary.unattributed += 1
                    continue
                total = buckets[(unix_day(bucket.start_time), user_id, model)]  # projects summed
                total.input_tokens += getattr(result, "input_tokens", 0) or 0
                total.cached_tokens += getattr(result, "input_cached_tokens", 0) or 0
                total.cache_write_tokens += getattr(result, "input_cache_write_tokens", 0) or 0
                total.output_tokens += getattr(result, "output_tokens", 0) or 0
    costs = daily_costs(client, start, end) if buckets else None
    telemetry = Telemetry()
    for (day, user_id, model), total in sorted(buckets.items()):
        uncached = max(total.input_tokens - total.cached_tokens - total.cache_write_tokens, 0)
        cost = (costs or {}).get((day, user_id, model))
        cost_source = "billed"  # OpenAI's own per-user cost, when the organisation can group costs by user
        if cost is not None:
            summary.priced_by_openai += 1
        else:
            cost_source = "priced"
            cost = price(model, uncached, total.output_tokens, total.cached_tokens, total.cache_write_tokens)
            if cost is None:
                summary.cost_unknown += 1
            else:
                summary.priced_by_table += 1
        telemetry.usage.append(
            SeenUsage(
                dedupe_key=f"openai:{day.isoformat()}:{user_id}:{model}"[:300],
                email=emails[user_id],
                occurred_at=datetime(day.year, day.month, day.day, tzinfo=UTC),
                agent=AGENT,
                model=model[:120],
                input_tokens=uncached,
                output_tokens=total.output_tokens,
                cache_read_tokens=total.cached_tokens,
                cache_write_tokens=total.cache_write_tokens,
                cost_usd=cost,
                cost_source=cost_source if cost is not None else None,
            )
        )
    summary.records = len(telemetry.usage)
    return telemetry


def pull_usage(
    client: OpenAI, engine: Engine, since: date, until: date, weight_for: Callable[[str], Decimal]
) -> PullSummary:
    """Fetch everything first, then write it in one transaction (a failed pull writes nothing)."""
    summary = PullSummary()

    def write(session: Any, pulled: OpenAIPull) -> None:
        source = internal_source(session, SOURCE_NAME, "openai-usage")
        ingest_telemetry(session, id_of(source), pulled.telemetry, weight_for, usage_mode="replace")
        if pulled.billed is not None:
            replace_billed(session, BILLED_SOURCE, "openai", pulled.days, pulled.billed)

    def fetch_all() -> OpenAIPull:
        try:
            return fetch(client, since, until, summary)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise KeyRejected(
                f"OpenAI refused the key in OPENAI_ADMIN_KEY (HTTP {error.status_code}); {FIX_KEY}"
            ) from error
        except openai.OpenAIError as error:
            raise AdminApiError(f"OpenAI's Usage API failed ({' '.join(str(error).split())[:200]}).") from error

    run_pull(
        engine, SOURCE_NAME, fetch_all, write, describe=lambda _t: f"{summary.records} records, {summary.pages} pages"
    )
    return summary


def pull_recent_usage(services: Services, now: datetime | None = None) -> PullSummary | None:
    """The hourly job: refresh the last few days (today's bucket is still growing)."""
    client = services.openai_admin
    if client is None:
        return None
    since, today = recent_days(services.settings.openai_usage_days, now)
    summary = guarded(
        SOURCE_NAME, lambda: pull_usage(client, services.engine, since, today, services.settings.weight_for)
    )
    if summary is not None:
        log.info("OpenAI usage pulled: %d records from %d pages", summary.records, summary.pages)
    return summary


PULL = VendorPull(
    name=SOURCE_NAME,
    label="OpenAI usage",
    key_env="OPENAI_ADMIN_KEY",
    configured=lambda settings: bool(settings.openai_admin_key),
    pull_recent=pull_recent_usage,
    job_id="openai-usage",
)
