"""Posting a team's weekly digest exactly once: find what is due, claim it (storage.digest_posts), post it with
a marker in the message metadata, record the result. docs/digests.md explains why that never posts twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine

from bot.config import Settings
from bot.digest import Digest, build_digest, scope_for
from bot.digest_chart import render_chart
from bot.log_safety import log_failure
from bot.reports import Disclosure
from handlers.slack.blocks import digest_message
from storage.db import session_scope
from storage.digest_posts import Claim, DueDigest, claim_digest, due_digests, mark_failed, mark_posted, note_on_post

log = logging.getLogger(__name__)

METADATA_EVENT = "tokenwise_digest"
HISTORY_PAGES = 5  # 5 x 200 messages searched for a digest an interrupted attempt may have posted


@dataclass(frozen=True)
class SendResult:
    key: str
    channel_id: str
    status: Literal["posted", "recovered", "failed", "skipped"]
    message_ts: str | None = None
    error: str | None = None


SlackFor = Callable[[DueDigest], WebClient]


Checkpoint = Callable[[str], None]  # called at "claim" and at "post"; tests inject one that kills the process


def _no_checkpoint(_stage: str) -> None:
    return None


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


def send_digest(
    engine: Engine,
    settings: Settings,
    client: WebClient,
    due: DueDigest,
    now: datetime,
    checkpoint: Checkpoint = _no_checkpoint,
) -> SendResult:
    """Claim, post and record one digest; any failure is recorded on the claim for the next tick."""
    lease = timedelta(minutes=settings.digest_lease_minutes)
    claim = claim_digest(engine, due, now, lease)
    if claim is None:
        return SendResult(due.key, due.channel_id, "skipped")
    checkpoint("claim")
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
        checkpoint("post")
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
    checkpoint: Checkpoint = _no_checkpoint,
) -> list[SendResult]:
    """Send every digest that is due at `now` (default: the clock), TOKENWISE_DIGEST_WORKERS at a time; the
    scheduler's and cron's one job. `checkpoint` is called after each claim and each post (tests stop the
    process there)."""
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

    def send(item: DueDigest) -> SendResult:
        try:
            client = slack_for(item)
        except Exception as error:  # no installation for that workspace, for example: recorded, retried
            reason = f"no Slack client: {error}"
            log.warning("digest %s: %s", item.key, reason)
            claim = claim_digest(engine, item, now, timedelta(minutes=settings.digest_lease_minutes))
            if claim is not None:
                mark_failed(engine, claim, reason)
            return SendResult(item.key, item.channel_id, "failed", error=reason)
        result = send_digest(engine, settings, client, item, now, checkpoint)
        if result.status in {"posted", "recovered"}:
            log.info("digest %s %s to %s (ts %s)", result.key, result.status, result.channel_id, result.message_ts)
        return result

    workers = min(settings.digest_workers, len(due))
    if workers <= 1:
        return [send(item) for item in due]
    # A few at a time: one digest's database reads and Slack calls wait while another's are drawn.
    with ThreadPoolExecutor(workers, thread_name_prefix="digest") as pool:
        return list(pool.map(send, due))


def summary_line(result: SendResult) -> str:
    extra = f" ts={result.message_ts}" if result.message_ts else ""
    error = f" ({result.error})" if result.error else ""
    return f"{result.status:9} {result.key} -> {result.channel_id}{extra}{error}"
