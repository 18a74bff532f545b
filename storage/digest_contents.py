"""What a team's digest is made of besides the metrics: merged PRs with agent help, unreviewed runs, and the
wins their owners chose to share (no names, no numbers attached)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlmodel import Session

from storage.metrics import Scope
from storage.models import (
    AgentRun,
    Annotation,
    Outcome,
    table_of,
)

log = logging.getLogger(__name__)


R = table_of(AgentRun).c
A = table_of(Annotation).c
OC = table_of(Outcome).c


def merged_prs_with_agent_help(session: Session, scope: Scope, start: datetime, end: datetime) -> int:
    """Merged pull requests that count (evidence from outside the person) and that an agent helped with (linked
    to a run, or an agent trailer in their commits), in the scope and range."""
    return int(
        session.execute(
            select(func.count(OC.id)).where(
                OC.kind == "pr_merged",
                OC.counted.is_(True),
                or_(OC.run_id.is_not(None), OC.agent_assisted.is_(True)),
                OC.occurred_at >= start,
                OC.occurred_at < end,
                scope.covers(OC.person_id, OC.occurred_at),
            )
        ).scalar_one()
    )


def unreviewed_run_count(session: Session, scope: Scope, start: datetime, end: datetime) -> int:
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


def shared_wins_in(session: Session, scope: Scope, start: datetime, end: datetime, limit: int = 5) -> list[SharedWin]:
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
