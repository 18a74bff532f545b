"""Weekly team digests: the numbers (from bot.reports), the chart, and posting each one exactly once.

`send_due` is the whole job: find what is due, claim it (storage.digests), post it with a marker in the
message metadata, record the result. docs/digests.md explains why that never posts twice.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import os
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from PIL import Image, ImageDraw, ImageFont
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
from bot.reports import Disclosure, Figures, Rules, change, figures_for
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
    figures: Figures | None = None  # the week's figures as shown: `hidden` names those withheld alone
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
    if "cost_usd" in item.hidden or "verified_cost_usd" in item.hidden:  # the dominance rule: no money drawn
        return WeekPoint(item.period, None, None, m.outcome_value, None)
    return WeekPoint(
        item.period, m.verified_cost_usd, m.cost_usd - m.verified_cost_usd, m.outcome_value, m.verified_spend_share
    )


def build_digest(session: Session, scope: Scope, period: Period, rules: Rules) -> Digest:
    """The digest for one team (or the organisation) and one week, privacy rule applied."""
    title = scope.name or scope.label()
    weeks = [period]
    for _ in range(TREND_WEEKS - 1):
        weeks.insert(0, weeks[0].previous())
    weekly = figures_for(session, scope, weeks, rules)  # the trend; its last two are this week and last
    totals, previous = weekly[-1], weekly[-2]
    if totals.metrics is None:
        return Digest(title=title, period=period, withheld=totals.withheld)
    return Digest(
        title=title,
        period=period,
        withheld=None,
        metrics=totals.metrics,
        figures=totals,
        changes=change(totals, previous),
        merged_prs_with_agent=merged_prs_with_agent_help(session, scope, period.start, period.end),
        unreviewed_runs=unreviewed_runs(session, scope, period.start, period.end),
        trend=[_week_point(item) for item in weekly],
        wins=shared_wins(session, scope, period.start, period.end),
    )


def scope_for(session: Session, team_id: int | None) -> Scope:
    if team_id is None:
        return Scope.org()
    team = session.get(Team, team_id)
    return Scope.team(team_id, team.name if team else str(team_id))


# -- the chart ------------------------------------------------------------------------------------

CHART_SIZE = (700, 360)
_SUPERSAMPLE = 2  # the outcome line is drawn at twice the size and box-reduced: anti-aliased
_VERIFIED = "#2e7d32"
_UNVERIFIED = "#b0bec5"
_OUTCOME = "#1565c0"
_INK = "#333333"
_MUTED = "#757575"
_GRID = "#e8e8e8"
# The plot box, in final pixels: left and right margins hold tick labels and the rotated axis labels.
_LEFT, _RIGHT, _TOP, _BOTTOM = 74, CHART_SIZE[0] - 74, 58, CHART_SIZE[1] - 34
_LEGEND_Y = 40  # the legend's middle, between the title and the plot


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled Aileron at `size` px, loaded once per size (it holds no per-call state)."""
    return ImageFont.load_default(size=size)


def _finite(value: Decimal | None) -> float | None:
    """The value as a float, negative as 0; None for None, NaN and what a float cannot hold."""
    number = float(value) if value is not None and value.is_finite() else math.nan
    return max(number, 0.0) if math.isfinite(number) else None


def _axis(largest: float) -> list[float]:
    """Ticks from 0 in 1-2-2.5-5 x 10^k steps, 4 to 6 of them, the last one above `largest`."""
    top = max(largest * 1.05, 0.01) if largest > 0 else 1.0  # all zero: 0 to 1, not a hairline axis
    magnitude = 10.0 ** math.floor(math.log10(top / 5))
    steps = (m * magnitude for m in (1, 2, 2.5, 5, 10, 20, 25, 50, 100))  # 10 suffices; the rest absorb rounding
    step = next(step for step in steps if math.ceil(top / step - 1e-9) <= 5)
    return [i * step for i in range(max(math.ceil(top / step - 1e-9), 1) + 1)]


def _tick_label(value: float) -> str:
    """Short labels: 750, 1.25k, 12M, 2B, 0.25 (the steps make two decimals enough above 1 000)."""
    if value >= 1e15:
        return f"{value:.1e}"
    for unit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= unit:
            return f"{value / unit:.2f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> str:
    """`text` cut with an ellipsis to fit `width` (longest prefix that fits, by bisection)."""
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle].rstrip() + "\u2026") <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "\u2026"


def _drawable(text: str) -> str:
    """One line of text the bundled font can draw: whitespace runs and line breaks made one space, control
    characters dropped, accents folded away (it covers little beyond ASCII): "Équipe" draws as "Equipe"."""
    decomposed = unicodedata.normalize("NFKD", " ".join(text.split()))
    return "".join(c for c in decomposed if not unicodedata.combining(c) and unicodedata.category(c)[0] != "C")


def _vertical_text(image: Image.Image, center: tuple[float, float], text: str, size: int, fill: str) -> None:
    """Text reading bottom to top, centred on `center`: drawn on its own mask, turned, then pasted."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (int(right - left) + 1, int(bottom - top) + 1))
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    turned = mask.transpose(Image.Transpose.ROTATE_90)
    x, y = int(center[0] - turned.width / 2), int(center[1] - turned.height / 2)
    image.paste(fill, (x, y, x + turned.width, y + turned.height), turned)


def render_chart(digest: Digest) -> bytes | None:
    """PNG: weekly spend split into verified and unverified (stacked bars), outcome value as a line.

    Drawn directly with Pillow: the layout is fixed, so matplotlib's general artist and layout machinery was
    most of the ~90 ms a chart took, and hundreds of teams' charts can fall due at once; this takes ~8 ms.
    Calls share nothing but the cached fonts (Pillow's FreeType calls hold the GIL): safe in scheduler threads.
    """
    if not digest.shown or not digest.trend:
        return None
    trend = digest.trend
    verified = [_finite(p.verified_cost) or 0.0 for p in trend]
    unverified = [_finite(p.unverified_cost) or 0.0 for p in trend]
    value = [None if p.withheld else _finite(p.outcome_value) for p in trend]
    spend_ticks = _axis(max(v + u for v, u in zip(verified, unverified, strict=True)))
    value_ticks = _axis(max((v for v in value if v is not None), default=0.0))
    slot = (_RIGHT - _LEFT) / len(trend)
    centers = [_LEFT + slot * (i + 0.5) for i in range(len(trend))]
    half_bar = min(slot * 0.31, 48)

    def y_of(amount: float, ticks: list[float]) -> int:
        return round(_BOTTOM - min(amount / ticks[-1], 1.0) * (_BOTTOM - _TOP))

    width = CHART_SIZE[0]
    chart = Image.new("RGB", CHART_SIZE, "white")
    draw = ImageDraw.Draw(chart)

    def box(x0: float, y0: float, x1: float, y1: float, fill: str) -> None:  # [x0, x1) x [y0, y1), maybe empty
        if round(x1) > round(x0) and round(y1) > round(y0):
            draw.rectangle((round(x0), round(y0), round(x1) - 1, round(y1) - 1), fill=fill)

    for tick in spend_ticks:
        y = y_of(tick, spend_ticks)
        box(_LEFT, y, _RIGHT, y + 1, _GRID)
        box(_LEFT - 4, y, _LEFT, y + 1, _INK)
    for tick in value_ticks:
        box(_RIGHT, y_of(tick, value_ticks), _RIGHT + 4, y_of(tick, value_ticks) + 1, _INK)
    for center, point, low, high in zip(centers, trend, verified, unverified, strict=True):
        if not point.withheld:
            x0, x1 = round(center - half_bar), round(center + half_bar)
            y_low, y_high = y_of(low, spend_ticks), y_of(low + high, spend_ticks)
            box(x0, y_low, x1, _BOTTOM, _VERIFIED)
            box(x0, y_high, x1, y_low, _UNVERIFIED)
    box(_LEFT - 1, _TOP, _LEFT, _BOTTOM + 1, _INK)
    box(_RIGHT, _TOP, _RIGHT + 1, _BOTTOM + 1, _INK)
    box(_LEFT - 1, _BOTTOM, _RIGHT + 1, _BOTTOM + 1, _INK)

    # The outcome line joins consecutive shown weeks only: a withheld week breaks it, a lone week is a dot.
    # It is drawn on a mask at _SUPERSAMPLE times the size, reduced (anti-aliasing it), then painted blue.
    s, band = _SUPERSAMPLE, (_LEFT - 6, _LEGEND_Y - 6, _RIGHT + 6, _BOTTOM + 6)  # the legend and the plot
    mask = Image.new("L", ((band[2] - band[0]) * s, (band[3] - band[1]) * s))
    lines = ImageDraw.Draw(mask)

    def dot(x: float, y: float) -> None:
        x, y = (x - band[0]) * s, (y - band[1]) * s
        lines.ellipse((x - 4 * s, y - 4 * s, x + 4 * s, y + 4 * s), fill=255)

    def line(x0: float, y0: float, x1: float, y1: float) -> None:
        ends = ((x0 - band[0]) * s, (y0 - band[1]) * s, (x1 - band[0]) * s, (y1 - band[1]) * s)
        lines.line(ends, fill=255, width=2 * s)

    markers = [None if v is None else (c, y_of(v, value_ticks)) for c, v in zip(centers, value, strict=True)]
    for start, end in itertools.pairwise(markers):
        if start is not None and end is not None:
            line(*start, *end)
    for marker in markers:
        if marker is not None:
            dot(*marker)

    legend_font = _font(11)
    x = float(_LEFT)
    for colour, label in ((_VERIFIED, "Verified spend"), (_UNVERIFIED, "Unverified spend"), (_OUTCOME, None)):
        if label is None:
            line(x, _LEGEND_Y, x + 18, _LEGEND_Y)
            dot(x + 9, _LEGEND_Y)
            x += 18
            label = "Outcome value"
        else:
            box(x, _LEGEND_Y - 5, x + 10, _LEGEND_Y + 5, colour)
            x += 10
        draw.text((x + 5, _LEGEND_Y), label, font=legend_font, fill=_INK, anchor="lm")
        x += 5 + legend_font.getlength(label) + 16
    chart.paste(_OUTCOME, band, mask.reduce(s))

    # Text at the final size, where FreeType's own anti-aliasing and hinting keep it crisp.
    tick_font = _font(11)
    for tick in spend_ticks:
        draw.text((_LEFT - 7, y_of(tick, spend_ticks)), _tick_label(tick), font=tick_font, fill=_INK, anchor="rm")
    for tick in value_ticks:
        draw.text((_RIGHT + 7, y_of(tick, value_ticks)), _tick_label(tick), font=tick_font, fill=_INK, anchor="lm")
    # Long trends label every few weeks, counted back from the current one, so the labels never overlap.
    every = math.ceil((tick_font.getlength("May 00") + 8) / slot)
    fits_withheld = slot > _font(10).getlength("withheld") + 4
    for i, (center, point) in enumerate(zip(centers, trend, strict=True)):
        if (len(trend) - 1 - i) % every == 0:
            label = point.period.since.strftime("%b %d")
            draw.text((center, _BOTTOM + 7), label, font=tick_font, fill=_INK, anchor="mt")
        if point.withheld and fits_withheld:
            draw.text((center, _BOTTOM - 4), "withheld", font=_font(10), fill=_MUTED, anchor="md")
    title_font = _font(14)
    suffix = f": spend and outcome value, last {len(trend)} weeks"
    name = _fit(_drawable(digest.title), title_font, width - 20 - title_font.getlength(suffix))
    draw.text((width / 2, 10), name + suffix, font=title_font, fill=_INK, anchor="mt")
    _vertical_text(chart, (16, (_TOP + _BOTTOM) / 2), "Spend (USD)", 12, _INK)
    _vertical_text(chart, (width - 16, (_TOP + _BOTTOM) / 2), "Outcome value", 12, _INK)

    buffer = io.BytesIO()
    chart.save(buffer, format="PNG", compress_level=1)
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
            digest = build_digest(session, scope_for(session, due.team_id), due.period, Disclosure.of(settings))
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
            default_tz=settings.timezone,
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
