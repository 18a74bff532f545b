"""When a digest is due, and the claim that keeps each digest to one post.

The claim protocol (docs/digests.md has the full argument):

1. `claim_digest` INSERTs a DigestPost row for (subscription, period_start) in its own committed
   transaction. The unique key means exactly one process wins the insert.
2. A row that is `failed`, or `claimed` longer ago than the lease, may be taken over: it is selected
   `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serialises writers anyway) and updated with a
   compare-and-set on `attempts`, so exactly one process wins the takeover too.
3. The winner posts, then `mark_posted` / `mark_failed` record the result, fenced on `attempts` so a
   process that lost its lease cannot overwrite the newer claim.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from storage.db import session_scope
from storage.models import (
    DigestPost,
    DigestSubscription,
    Team,
    id_of,
    table_of,
)
from storage.periods import Period
from storage.schedules import SubscriptionError, digest_period, latest_occurrence
from storage.subscriptions import schedule_of

log = logging.getLogger(__name__)

POST_STATUSES = ("claimed", "posted", "failed")
ERROR_LIMIT = 500

DP = table_of(DigestPost).c
DS = table_of(DigestSubscription).c


@dataclass(frozen=True)
class DueDigest:
    subscription_id: int
    channel_id: str
    team_id: int | None
    slack_team_id: str | None
    enterprise_id: str | None
    occurrence: datetime
    period: Period

    @property
    def period_start(self) -> datetime:
        return self.period.start

    @property
    def key(self) -> str:
        """Human-readable identity of this digest, also put in the Slack message's metadata."""
        return f"{self.subscription_id}:{self.period.since.isoformat()}"


def due_digests(
    session: Session,
    now: datetime,
    *,
    grace: timedelta = timedelta(hours=12),
    lease: timedelta = timedelta(minutes=10),
    subscription_ids: Iterable[int] | None = None,
    default_tz: str = "UTC",
) -> list[DueDigest]:
    """Digests whose latest occurrence is within `grace` of `now` and that nobody has posted or holds.

    This is a cheap pre-filter; `claim_digest` is what actually decides who posts. Each covers whole weeks
    in its team's time zone (`default_tz`, the organisation's, for teams without one and the organisation).
    """
    now = now.astimezone(UTC)
    zones = {team_id: tz for team_id, tz in session.execute(select(col(Team.id), col(Team.timezone))) if tz}
    query = select(DigestSubscription).order_by(col(DigestSubscription.id))
    if subscription_ids is not None:
        query = query.where(col(DigestSubscription.id).in_(list(subscription_ids)))
    due: list[DueDigest] = []
    for subscription in session.scalars(query).all():
        try:
            schedule = schedule_of(subscription)
        except SubscriptionError as error:  # e.g. a time zone the installed tzdata no longer knows
            log.error("digest subscription %s is skipped: %s", subscription.id, error)
            continue
        occurrence = latest_occurrence(schedule, now)
        if now - occurrence > grace:
            continue
        period = digest_period(schedule, occurrence, zones.get(subscription.team_id or 0, default_tz))
        row = session.execute(
            select(DP.status, DP.claimed_at).where(
                DP.subscription_id == subscription.id, DP.period_start == period.start
            )
        ).first()
        if row is not None:
            status, claimed_at = row
            if status == "posted" or (status == "claimed" and claimed_at > now - lease):
                continue
        due.append(
            DueDigest(
                subscription_id=id_of(subscription),
                channel_id=subscription.channel_id,
                team_id=subscription.team_id,
                slack_team_id=subscription.slack_team_id,
                enterprise_id=subscription.enterprise_id,
                occurrence=occurrence,
                period=period,
            )
        )
    return due


@dataclass(frozen=True)
class Claim:
    """The right to post one digest; `attempts` fences the later status update."""

    post_id: int
    attempts: int
    retaken: bool


def claim_digest(engine: Engine, due: DueDigest, now: datetime, lease: timedelta) -> Claim | None:
    """Claim a digest in its own committed transaction; None when another process has it or posted it."""
    try:
        with session_scope(engine) as session:
            post = DigestPost(
                subscription_id=due.subscription_id,
                period_start=due.period_start,
                status="claimed",
                attempts=1,
                claimed_at=now,
            )
            session.add(post)
            session.flush()
            return Claim(id_of(post), 1, retaken=False)
    except IntegrityError:
        pass  # a row exists: maybe ours to take over
    with session_scope(engine) as session:
        row = session.execute(
            select(DP.id, DP.attempts)
            .where(
                DP.subscription_id == due.subscription_id,
                DP.period_start == due.period_start,
                or_(DP.status == "failed", and_(DP.status == "claimed", DP.claimed_at < now - lease)),
            )
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        post_id, attempts = int(row[0]), int(row[1])
        taken = session.execute(
            update(table_of(DigestPost))
            .where(
                DP.id == post_id,
                DP.attempts == attempts,
                or_(DP.status == "failed", and_(DP.status == "claimed", DP.claimed_at < now - lease)),
            )
            .values(status="claimed", attempts=attempts + 1, claimed_at=now)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return Claim(post_id, attempts + 1, retaken=True)


def mark_posted(engine: Engine, claim: Claim, message_ts: str, now: datetime, note: str | None = None) -> bool:
    """Record the post; False when a newer claim took this digest over meanwhile (then it is logged)."""
    with session_scope(engine) as session:
        result = session.execute(
            update(table_of(DigestPost))
            .where(DP.id == claim.post_id, DP.attempts == claim.attempts)
            .values(status="posted", message_ts=message_ts, posted_at=now, last_error=_clip(note))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def mark_failed(engine: Engine, claim: Claim, error: str) -> bool:
    """Record a failed attempt; the next tick within the grace window retries it."""
    with session_scope(engine) as session:
        result = session.execute(
            update(table_of(DigestPost))
            .where(DP.id == claim.post_id, DP.attempts == claim.attempts)
            .values(status="failed", last_error=_clip(error))
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def note_on_post(engine: Engine, post_id: int, note: str) -> None:
    """Keep a note on a posted digest (for example a chart that could not be uploaded)."""
    with session_scope(engine) as session:
        session.execute(update(table_of(DigestPost)).where(DP.id == post_id).values(last_error=_clip(note)))


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:ERROR_LIMIT]


def recent_posts(session: Session, limit: int = 50) -> Sequence[DigestPost]:
    return session.scalars(
        select(DigestPost).order_by(col(DigestPost.period_start).desc(), col(DigestPost.id)).limit(limit)
    ).all()
