"""Digest subscriptions, when they are due, and the claim that keeps each digest to one post.

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
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Engine, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from storage.db import session_scope
from storage.metrics import Scope
from storage.models import (
    AgentRun,
    Annotation,
    DigestPost,
    DigestSubscription,
    Nudge,
    Outcome,
    Person,
    Team,
    UsageRecord,
    table_of,
)
from storage.periods import Period, zone

log = logging.getLogger(__name__)

POST_STATUSES = ("claimed", "posted", "failed")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ERROR_LIMIT = 500

DP = table_of(DigestPost).c
DS = table_of(DigestSubscription).c
NU = table_of(Nudge).c


class SubscriptionError(ValueError):
    """A subscription request that cannot be honoured; the message says what would work."""


# -- subscriptions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A local weekday and time in an IANA time zone."""

    weekday: int = 0
    hour: int = 9
    minute: int = 0
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise SubscriptionError("The weekday must be Monday to Sunday.")
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise SubscriptionError("The time must be HH:MM between 00:00 and 23:59.")
        try:
            zone(self.timezone)
        except ValueError as error:
            raise SubscriptionError(str(error)) from error

    def label(self) -> str:
        return f"{WEEKDAYS[self.weekday].capitalize()} {self.hour:02d}:{self.minute:02d} {self.timezone}"

    def zone_info(self) -> ZoneInfo:
        return zone(self.timezone)


def schedule_of(subscription: DigestSubscription) -> Schedule:
    return Schedule(subscription.weekday, subscription.hour, subscription.minute, subscription.timezone)


def _same_team(team_id: int | None) -> ColumnElement[bool]:
    column = col(DigestSubscription.team_id)
    return column.is_(None) if team_id is None else column == team_id


def subscribe(
    session: Session,
    *,
    channel_id: str,
    team_id: int | None,
    schedule: Schedule,
    slack_team_id: str | None = None,
    enterprise_id: str | None = None,
    created_by: int | None = None,
) -> tuple[DigestSubscription, bool]:
    """Subscribe a channel to a team's digest (None: the organisation); an existing one is rescheduled.

    Channel ids are unique across Slack, so a channel's subscription to a team is found whichever
    workspace (or the CLI, which knows none) created it. Returns the subscription and whether it is new.
    """
    subscription = session.scalars(
        select(DigestSubscription)
        .where(col(DigestSubscription.channel_id) == channel_id, _same_team(team_id))
        .order_by(col(DigestSubscription.id))
    ).first()
    created = subscription is None
    if subscription is None:
        subscription = DigestSubscription(channel_id=channel_id, team_id=team_id, created_by=created_by)
    subscription.slack_team_id = slack_team_id or subscription.slack_team_id
    subscription.enterprise_id = enterprise_id or subscription.enterprise_id
    subscription.weekday = schedule.weekday
    subscription.hour = schedule.hour
    subscription.minute = schedule.minute
    subscription.timezone = schedule.timezone
    session.add(subscription)
    session.flush()
    return subscription, created


def unsubscribe(session: Session, *, channel_id: str, team_id: int | None = None, every: bool = False) -> int:
    """Remove the channel's subscription to one team (or, with every=True, all of them); how many went."""
    conditions = [col(DigestSubscription.channel_id) == channel_id]
    if not every:
        conditions.append(_same_team(team_id))
    found = list(session.scalars(select(DigestSubscription).where(*conditions)))
    for subscription in found:
        session.delete(subscription)
    session.flush()
    return len(found)


def list_subscriptions(
    session: Session, *, channel_id: str | None = None, slack_team_id: str | None = None
) -> list[tuple[DigestSubscription, str]]:
    """Subscriptions with their team's name ("organisation" for the whole org), oldest first."""
    query = (
        select(DigestSubscription, col(Team.name))
        .outerjoin(Team, col(Team.id) == col(DigestSubscription.team_id))
        .order_by(col(DigestSubscription.id))
    )
    if channel_id is not None:
        query = query.where(col(DigestSubscription.channel_id) == channel_id)
    if slack_team_id is not None:
        query = query.where(col(DigestSubscription.slack_team_id) == slack_team_id)
    return [(row[0], row[1] or "organisation") for row in session.execute(query)]


# -- when a digest is due --------------------------------------------------------------------------


def _local_fire(day: date, schedule: Schedule, tz: ZoneInfo) -> datetime:
    """The UTC instant of HH:MM on a local day, as APScheduler's CronTrigger computes it: a time skipped
    by a spring-forward jump fires one jump later (02:30 -> 03:30), a repeated time fires the first time."""
    return datetime.combine(day, time(schedule.hour, schedule.minute), tzinfo=tz).astimezone(UTC)


def latest_occurrence(schedule: Schedule, now: datetime) -> datetime:
    """The most recent scheduled instant at or before `now` (UTC), computed in local time."""
    tz = zone(schedule.timezone)
    today = now.astimezone(tz).date()
    day = today - timedelta(days=(today.weekday() - schedule.weekday) % 7)
    fire = _local_fire(day, schedule, tz)
    if fire > now:
        fire = _local_fire(day - timedelta(days=7), schedule, tz)
    return fire


def next_occurrence(schedule: Schedule, now: datetime) -> datetime:
    """The first scheduled instant strictly after `now` (UTC)."""
    tz = zone(schedule.timezone)
    today = now.astimezone(tz).date()
    day = today + timedelta(days=(schedule.weekday - today.weekday()) % 7)
    fire = _local_fire(day, schedule, tz)
    if fire <= now:
        fire = _local_fire(day + timedelta(days=7), schedule, tz)
    return fire


def digest_period(schedule: Schedule, occurrence: datetime, window_tz: str | None = None) -> Period:
    """The last whole week, Monday to Sunday, that ended before the digest fires, in the team's time zone
    (`window_tz`; the schedule's own by default). Every digest of a team covers the same calendar weeks as
    `/tokenwise team` does, whichever channel or weekday it is posted to (docs/metrics.md)."""
    tz = window_tz or schedule.timezone
    fire_day = occurrence.astimezone(zone(tz)).date()
    sunday = fire_day - timedelta(days=fire_day.weekday() + 1)
    return Period(sunday - timedelta(days=6), sunday, tz)


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
                subscription_id=subscription.id or 0,
                channel_id=subscription.channel_id,
                team_id=subscription.team_id,
                slack_team_id=subscription.slack_team_id,
                enterprise_id=subscription.enterprise_id,
                occurrence=occurrence,
                period=period,
            )
        )
    return due


# -- the claim -------------------------------------------------------------------------------------


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
            return Claim(post.id or 0, 1, retaken=False)
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


# -- what a digest is made of ----------------------------------------------------------------------

R = table_of(AgentRun).c
A = table_of(Annotation).c
OC = table_of(Outcome).c


def merged_prs_with_agent_help(session: Session, scope: Scope, start: datetime, end: datetime) -> int:
    """Merged pull requests recorded as an outcome of an agent run, in the scope and range."""
    return int(
        session.execute(
            select(func.count(OC.id)).where(
                OC.kind == "pr_merged",
                OC.run_id.is_not(None),
                OC.occurred_at >= start,
                OC.occurred_at < end,
                scope.covers(OC.person_id, OC.occurred_at),
            )
        ).scalar_one()
    )


def unreviewed_runs(session: Session, scope: Scope, start: datetime, end: datetime) -> int:
    """Runs in the range that their owner has not annotated."""
    owner_annotated = select(A.id).where(A.run_id == R.id, A.person_id == R.person_id).exists()
    return int(
        session.execute(
            select(func.count(R.id)).where(
                R.started_at >= start, R.started_at < end, scope.covers(R.person_id, R.started_at), ~owner_annotated
            )
        ).scalar_one()
    )


@dataclass(frozen=True)
class SharedWin:
    """A run its owner marked as a win to share: what they wrote, never who or how much."""

    text: str
    link: str | None
    agent: str


def shared_wins(session: Session, scope: Scope, start: datetime, end: datetime, limit: int = 5) -> list[SharedWin]:
    """Wins the runs' owners chose to share, newest first; no names, no numbers attached."""
    rows = session.execute(
        select(A.note, A.link, R.title, R.agent)
        .select_from(table_of(Annotation))
        .join(table_of(AgentRun), R.id == A.run_id)
        .where(
            A.share_as_win.is_(True),
            A.person_id == R.person_id,
            A.verdict.in_(("useful", "partly")),
            R.started_at >= start,
            R.started_at < end,
            scope.covers(R.person_id, R.started_at),
        )
        .order_by(R.started_at.desc(), A.id.desc())
        .limit(limit)
    ).all()
    return [
        SharedWin(text=(note or title or "A run worth sharing").strip(), link=link, agent=agent)
        for note, link, title, agent in rows
    ]


# -- nudges ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueNudge:
    person_id: int
    slack_user_id: str
    week_start: date
    unreviewed: int
    timezone: str


NUDGE_HOUR = 9


def due_nudges(session: Session, now: datetime, *, lookback_days: int = 7) -> list[DueNudge]:
    """People to remind: it is Monday from 09:00 in their time zone, they have unreviewed runs from the
    last `lookback_days` days, nudges are on, and nobody has nudged them this week yet.

    Three queries whatever the number of people, since the tick asks every minute all Monday.
    """
    now = now.astimezone(UTC)
    rows = session.execute(
        select(col(Person.id), col(Person.slack_user_id), col(Person.timezone)).where(
            col(Person.nudges_enabled).is_(True), col(Person.slack_user_id).is_not(None)
        )
    ).all()
    candidates: dict[int, tuple[str, date, str]] = {}
    for person_id, slack_user_id, timezone in rows:
        try:
            tz = zone(timezone or "UTC")
        except ValueError:
            tz = ZoneInfo("UTC")
        local = now.astimezone(tz)
        if local.weekday() == 0 and local.hour >= NUDGE_HOUR:
            candidates[int(person_id)] = (str(slack_user_id), local.date(), tz.key)
    if not candidates:
        return []
    nudged = {
        (int(person_id), week_start)
        for person_id, week_start in session.execute(
            select(NU.person_id, NU.week_start).where(
                NU.person_id.in_(list(candidates)), NU.week_start >= now.date() - timedelta(days=1)
            )
        )
    }
    owner_annotated = select(A.id).where(A.run_id == R.id, A.person_id == R.person_id).exists()
    counts = session.execute(
        select(R.person_id, func.count(R.id))
        .where(
            R.person_id.in_(list(candidates)),
            R.started_at >= now - timedelta(days=lookback_days),
            R.started_at < now,
            ~owner_annotated,
        )
        .group_by(R.person_id)
        .order_by(R.person_id)
    ).all()
    due = []
    for person_id, count in counts:
        slack_user_id, week_start, tz_name = candidates[int(person_id)]
        if (int(person_id), week_start) not in nudged:
            due.append(DueNudge(int(person_id), slack_user_id, week_start, int(count), tz_name))
    return due


def claim_nudge(engine: Engine, nudge: DueNudge, now: datetime) -> int | None:
    """Claim this week's nudge for a person (at most once: a crash after the claim loses that nudge)."""
    try:
        with session_scope(engine) as session:
            row = Nudge(person_id=nudge.person_id, week_start=nudge.week_start, status="claimed", claimed_at=now)
            session.add(row)
            session.flush()
            return row.id
    except IntegrityError:
        return None


def finish_nudge(engine: Engine, nudge_id: int, now: datetime, error: str | None = None) -> None:
    with session_scope(engine) as session:
        values = {"status": "failed", "last_error": _clip(error)} if error else {"status": "sent", "sent_at": now}
        session.execute(update(table_of(Nudge)).where(NU.id == nudge_id).values(**values))


def set_nudges(session: Session, person_id: int, enabled: bool) -> None:
    person = session.get(Person, person_id)
    if person is None:
        raise SubscriptionError("Unknown person.")
    person.nudges_enabled = enabled
    session.add(person)
    session.flush()


# -- retention and forgetting ----------------------------------------------------------------------


@dataclass(frozen=True)
class Purged:
    usage_records: int
    runs: int
    outcomes: int
    annotations: int
    digest_posts: int
    nudges: int

    @property
    def total(self) -> int:
        return self.usage_records + self.runs + self.outcomes + self.annotations + self.digest_posts + self.nudges


def purge_expired(session: Session, now: datetime, retention_days: int) -> Purged:
    """Delete usage, runs (with their annotations), outcomes and digest bookkeeping older than the
    retention window, in one transaction."""
    cutoff = now.astimezone(UTC) - timedelta(days=retention_days)
    old_runs = select(R.id).where(R.started_at < cutoff)
    usage = session.execute(
        delete(table_of(UsageRecord)).where(
            or_(table_of(UsageRecord).c.occurred_at < cutoff, table_of(UsageRecord).c.run_id.in_(old_runs))
        )
    )
    outcomes = session.execute(delete(table_of(Outcome)).where(or_(OC.occurred_at < cutoff, OC.run_id.in_(old_runs))))
    annotations = session.execute(delete(table_of(Annotation)).where(A.run_id.in_(old_runs)))
    runs = session.execute(delete(table_of(AgentRun)).where(R.started_at < cutoff))
    posts = session.execute(delete(table_of(DigestPost)).where(DP.period_start < cutoff))
    nudges = session.execute(delete(table_of(Nudge)).where(NU.claimed_at < cutoff))
    return Purged(
        usage_records=usage.rowcount,  # type: ignore[attr-defined]
        runs=runs.rowcount,  # type: ignore[attr-defined]
        outcomes=outcomes.rowcount,  # type: ignore[attr-defined]
        annotations=annotations.rowcount,  # type: ignore[attr-defined]
        digest_posts=posts.rowcount,  # type: ignore[attr-defined]
        nudges=nudges.rowcount,  # type: ignore[attr-defined]
    )


def count_annotations(session: Session, person_id: int) -> int:
    return int(session.execute(select(func.count(A.id)).where(A.person_id == person_id)).scalar_one())


def forget_annotations(session: Session, person_id: int) -> int:
    """Delete every annotation (verdicts, notes, links, shared wins) a person wrote; how many."""
    result = session.execute(delete(table_of(Annotation)).where(A.person_id == person_id))
    return int(result.rowcount)  # type: ignore[attr-defined]
