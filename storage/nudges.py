"""Monday review reminders: who is due one, and the claim that keeps it to one a week."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from storage.db import session_scope
from storage.digest_posts import _clip
from storage.models import (
    AgentRun,
    Annotation,
    Nudge,
    Person,
    table_of,
)
from storage.periods import zone
from storage.schedules import SubscriptionError

log = logging.getLogger(__name__)

A = table_of(Annotation).c

ERROR_LIMIT = 500
NU = table_of(Nudge).c
R = table_of(AgentRun).c
A = table_of(Annotation).c


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
