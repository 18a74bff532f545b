"""Weekly team digests: the numbers (from bot.reports), the chart, and posting each one exactly once.

`send_due` is the whole job: find what is due, claim it (storage.digests), post it with a marker in the
message metadata, record the result. docs/digests.md explains why that never posts twice.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from sqlalchemy import Engine
from sqlmodel import Session

from bot.blocks import digest_message
from bot.config import Settings
from bot.log_safety import log_failure
from bot.periods import Period
from bot.reports import Figures, build_report, change, figures
from storage.db import session_scope
from storage.digests import (
    Claim,
    DueDigest,
    SharedWin,
    claim_digest,
    due_digests,
    mark_failed,
    mark_posted,
    merged_prs_with_agent_help,
    note_on_post,
    shared_wins,
    unreviewed_runs,
)
from storage.metrics import Metrics, Scope
from storage.models import Team

log = logging.getLogger(__name__)

METADATA_EVENT = "tokenwise_digest"
TREND_WEEKS = 4
HISTORY_PAGES = 5  # 5 x 200 messages searched for a digest an interrupted attempt may have posted
CRASH_ENV = "TOKENWISE_TEST_CRASH_AFTER"  # test-only: "claim" or "post" makes the process exit hard there
# Methods that create something in Slack: a retry after an ambiguous failure could create it twice, so
# they are retried only on 429 (Slack did nothing) and otherwise left to the next tick, which checks first.
NON_IDEMPOTENT = ("chat.postMessage", "files.completeUploadExternal", "chat.postEphemeral")


# -- the Slack client ------------------------------------------------------------------------------


class _OnlyIdempotent(RetryHandler):
    """Wraps a retry handler so it never retries a call that may have created a message."""

    def __init__(self, inner: RetryHandler) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner = inner

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if any(request.url.endswith(method) for method in NON_IDEMPOTENT):
            return False
        return self.inner._can_retry(state=state, request=request, response=response, error=error)


def slack_retry_handlers(rate_limit_retries: int = 8, server_error_retries: int = 3) -> list[RetryHandler]:
    """429s are always retried after Retry-After; 5xx and broken connections only for safe calls."""
    return [
        RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        _OnlyIdempotent(ServerErrorRetryHandler(max_retry_count=server_error_retries)),
        _OnlyIdempotent(ConnectionErrorRetryHandler(max_retry_count=server_error_retries)),
    ]


def with_digest_retries(client: WebClient) -> WebClient:
    """The client's retry handlers replaced by ours (see `slack_retry_handlers`); the same client back."""
    client.retry_handlers = slack_retry_handlers()
    return client


def build_slack_client(token: str | None, base_url: str | None = None, timeout: int = 30) -> WebClient:
    """A Web API client with the digest retry policy (tests and single-token tools)."""
    return with_digest_retries(WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=timeout))


# -- what a digest says ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekPoint:
    """One week of the trend; all None when that week is withheld."""

    period: Period
    verified_cost: Decimal | None
    unverified_cost: Decimal | None
    outcome_value: Decimal | None
    verified_spend_share: Decimal | None

    @property
    def withheld(self) -> bool:
        return self.outcome_value is None


@dataclass
class Digest:
    """A team's week, as plain values: rendered by bot.blocks and drawn by `render_chart`."""

    title: str
    period: Period
    withheld: str | None
    metrics: Metrics | None = None
    changes: dict[str, float | None] = field(default_factory=dict)
    merged_prs_with_agent: int = 0
    unreviewed_runs: int = 0
    trend: list[WeekPoint] = field(default_factory=list)
    wins: list[SharedWin] = field(default_factory=list)

    @property
    def shown(self) -> bool:
        return self.metrics is not None


def _week_point(item: Figures) -> WeekPoint:
    m = item.metrics
    if m is None:
        return WeekPoint(item.period, None, None, None, None)
    return WeekPoint(
        item.period, m.verified_cost_usd, m.cost_usd - m.verified_cost_usd, m.outcome_value, m.verified_spend_share
    )


def build_digest(session: Session, scope: Scope, period: Period, min_group_size: int) -> Digest:
    """The digest for one team (or the organisation) and one week, privacy rule applied."""
    title = scope.name or scope.label()
    report = build_report(session, scope, period, min_group_size)
    if report.totals.metrics is None:
        return Digest(title=title, period=period, withheld=report.totals.withheld)
    weeks = [period]
    for _ in range(TREND_WEEKS - 1):
        weeks.insert(0, weeks[0].previous())
    return Digest(
        title=title,
        period=period,
        withheld=None,
        metrics=report.totals.metrics,
        changes=change(report.totals, report.previous),
        merged_prs_with_agent=merged_prs_with_agent_help(session, scope, period.start, period.end),
        unreviewed_runs=unreviewed_runs(session, scope, period.start, period.end),
        trend=[_week_point(figures(session, scope, week, min_group_size)) for week in weeks],
        wins=shared_wins(session, scope, period.start, period.end),
    )


def scope_for(session: Session, team_id: int | None) -> Scope:
    if team_id is None:
        return Scope.org()
    team = session.get(Team, team_id)
    return Scope.team(team_id, team.name if team else str(team_id))


def render_chart(digest: Digest) -> bytes | None:
    """PNG: weekly spend split into verified and unverified (stacked bars), outcome value as a line.

    Drawn with matplotlib's object API on the Agg canvas, so it is safe in scheduler threads.
    """
    if not digest.shown or not digest.trend:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [point.period.since.strftime("%b %d") for point in digest.trend]
    verified = [float(p.verified_cost or 0) for p in digest.trend]
    unverified = [float(p.unverified_cost or 0) for p in digest.trend]
    value = [float(p.outcome_value) if p.outcome_value is not None else float("nan") for p in digest.trend]
    figure = Figure(figsize=(7, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    spend = figure.add_subplot(1, 1, 1)
    positions = list(range(len(labels)))
    spend.bar(positions, verified, color="#2e7d32", label="Verified spend")
    spend.bar(positions, unverified, bottom=verified, color="#b0bec5", label="Unverified spend")
    spend.set_xticks(positions, labels)
    spend.set_ylabel("Spend (USD)")
    for position, point in zip(positions, digest.trend, strict=True):
        if point.withheld:
            spend.annotate("withheld", (position, 0), ha="center", va="bottom", fontsize=8, color="#666666")
    outcome = spend.twinx()
    outcome.plot(positions, value, color="#1565c0", marker="o", label="Outcome value")
    outcome.set_ylabel("Outcome value")
    outcome.set_ylim(bottom=0)
    handles = spend.get_legend_handles_labels()[0] + outcome.get_legend_handles_labels()[0]
    spend.legend(handles, [str(h.get_label()) for h in handles], loc="upper left", fontsize=8, frameon=False)
    spend.set_title(f"{digest.title}: spend and outcome value, last {len(labels)} weeks", fontsize=10)
    # Fixed margins instead of tight_layout(), and light PNG compression: each halves the time of a
    # chart (docs/performance.md), which matters when hundreds of teams' digests fall due at once.
    figure.subplots_adjust(left=0.09, right=0.9, top=0.9, bottom=0.1)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


# -- posting, exactly once -------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    key: str
    channel_id: str
    status: Literal["posted", "recovered", "failed", "skipped"]
    message_ts: str | None = None
    error: str | None = None


SlackFor = Callable[[DueDigest], WebClient]


def _crash_point(stage: str) -> None:
    """Test-only hook: exit hard (no cleanup, no commit) at a stage, to prove recovery."""
    if os.environ.get(CRASH_ENV) == stage:
        os._exit(75)


def find_posted_digest(client: WebClient, channel_id: str, post_id: int, key: str) -> str | None:
    """The ts of a message in the channel carrying this digest's marker (its DigestPost id and its
    subscription-and-week key, so another database's digest never matches), if an attempt posted it."""
    cursor: str | None = None
    for _ in range(HISTORY_PAGES):
        page = client.conversations_history(channel=channel_id, limit=200, include_all_metadata=True, cursor=cursor)
        for message in page.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if (
                metadata.get("event_type") == METADATA_EVENT
                and str(payload.get("digest_post_id")) == str(post_id)
                and payload.get("digest_key") == key
            ):
                return str(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not page.get("has_more") or not cursor:
            return None
    return None


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return f"Slack answered {error.response.status_code}: {error.response.get('error')}"
    return f"{type(error).__name__}: {error}"


def send_digest(engine: Engine, settings: Settings, client: WebClient, due: DueDigest, now: datetime) -> SendResult:
    """Claim, post and record one digest; any failure is recorded on the claim for the next tick."""
    lease = timedelta(minutes=settings.digest_lease_minutes)
    claim = claim_digest(engine, due, now, lease)
    if claim is None:
        return SendResult(due.key, due.channel_id, "skipped")
    _crash_point("claim")
    try:
        with session_scope(engine) as session:
            digest = build_digest(session, scope_for(session, due.team_id), due.period, settings.min_group_size)
        if claim.retaken:
            earlier = find_posted_digest(client, due.channel_id, claim.post_id, due.key)
            if earlier is not None:
                log.info("digest %s was posted by an interrupted attempt; recording it", due.key)
                _record_posted(engine, claim, earlier, now, due)
                _upload_chart(engine, client, claim, due, digest, earlier)
                return SendResult(due.key, due.channel_id, "recovered", earlier)
        posted = digest_message(digest)
        response = client.chat_postMessage(
            channel=due.channel_id,
            text=posted.text,
            blocks=posted.blocks,
            unfurl_links=False,
            metadata={
                "event_type": METADATA_EVENT,
                "event_payload": {"digest_post_id": claim.post_id, "digest_key": due.key},
            },
        )
        ts = str(response["ts"])
        _crash_point("post")
        _record_posted(engine, claim, ts, now, due)
    except Exception as error:
        reason = _describe(error)
        log.warning("digest %s for channel %s failed (attempt %d): %s", due.key, due.channel_id, claim.attempts, reason)
        try:
            mark_failed(engine, claim, reason)
        except Exception as second:
            log_failure(
                log,
                "could not record the failure of digest %s; its lease will expire and it is retried",
                due.key,
                error=second,
            )
        return SendResult(due.key, due.channel_id, "failed", error=reason)
    _upload_chart(engine, client, claim, due, digest, ts)
    return SendResult(due.key, due.channel_id, "posted", ts)


def _record_posted(engine: Engine, claim: Claim, ts: str, now: datetime, due: DueDigest) -> None:
    if not mark_posted(engine, claim, ts, now):
        log.error("digest %s was taken over by another process while posting (ts %s)", due.key, ts)


def _upload_chart(engine: Engine, client: WebClient, claim: Claim, due: DueDigest, digest: Digest, ts: str) -> None:
    """The chart goes in the digest's thread; if it cannot be uploaded the digest stands, with a note."""
    png = render_chart(digest)
    if png is None:
        return
    try:
        client.files_upload_v2(
            channel=due.channel_id,
            thread_ts=ts,
            file=png,
            filename=f"tokenwise-digest-{due.period.since.isoformat()}.png",
            title=f"{digest.title}: spend and outcome value",
            alt_txt="Weekly spend split into verified and unverified, with outcome value as a line",
        )
    except Exception as error:
        reason = f"chart not uploaded: {_describe(error)}"
        log.warning("digest %s: %s", due.key, reason)
        note_on_post(engine, claim.post_id, reason)


def send_due(
    engine: Engine,
    settings: Settings,
    slack_for: SlackFor,
    now: datetime | None = None,
    subscription_ids: Iterable[int] | None = None,
) -> list[SendResult]:
    """Send every digest that is due at `now` (default: the clock); the scheduler's and cron's one job."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with session_scope(engine) as session:
        due = due_digests(
            session,
            now,
            grace=timedelta(hours=settings.digest_grace_hours),
            lease=timedelta(minutes=settings.digest_lease_minutes),
            subscription_ids=subscription_ids,
        )
    results = []
    for item in due:
        try:
            client = slack_for(item)
        except Exception as error:  # no installation for that workspace, for example: recorded, retried
            reason = f"no Slack client: {error}"
            log.warning("digest %s: %s", item.key, reason)
            claim = claim_digest(engine, item, now, timedelta(minutes=settings.digest_lease_minutes))
            if claim is not None:
                mark_failed(engine, claim, reason)
            results.append(SendResult(item.key, item.channel_id, "failed", error=reason))
            continue
        result = send_digest(engine, settings, client, item, now)
        if result.status in {"posted", "recovered"}:
            log.info("digest %s %s to %s (ts %s)", result.key, result.status, result.channel_id, result.message_ts)
        results.append(result)
    return results


def summary_line(result: SendResult) -> str:
    extra = f" ts={result.message_ts}" if result.message_ts else ""
    error = f" ({result.error})" if result.error else ""
    return f"{result.status:9} {result.key} -> {result.channel_id}{extra}{error}"


__all__ = [
    "Digest",
    "SendResult",
    "WeekPoint",
    "build_digest",
    "build_slack_client",
    "find_posted_digest",
    "render_chart",
    "send_digest",
    "send_due",
    "with_digest_retries",
]
