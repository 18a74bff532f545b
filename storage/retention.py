"""Retention and forgetting: data past TOKENWISE_RETENTION_DAYS, and a person's own annotations on request."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlmodel import Session

from storage.models import (
    AgentRun,
    Annotation,
    DigestPost,
    Nudge,
    Outcome,
    ToolDecision,
    UnattributedUsage,
    UsageRecord,
    table_of,
)

log = logging.getLogger(__name__)

R = table_of(AgentRun).c
A = table_of(Annotation).c
OC = table_of(Outcome).c

DP = table_of(DigestPost).c
NU = table_of(Nudge).c


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
    """Delete usage (unattributed usage too), runs (with their annotations), outcomes and digest bookkeeping
    older than the retention window, in one transaction."""
    cutoff = now.astimezone(UTC) - timedelta(days=retention_days)
    old_runs = select(R.id).where(R.started_at < cutoff)
    usage = session.execute(
        delete(table_of(UsageRecord)).where(
            or_(table_of(UsageRecord).c.occurred_at < cutoff, table_of(UsageRecord).c.run_id.in_(old_runs))
        )
    )
    unattributed = table_of(UnattributedUsage)
    loose = session.execute(delete(unattributed).where(unattributed.c.occurred_at < cutoff))
    outcomes = session.execute(delete(table_of(Outcome)).where(or_(OC.occurred_at < cutoff, OC.run_id.in_(old_runs))))
    annotations = session.execute(delete(table_of(Annotation)).where(A.run_id.in_(old_runs)))
    runs = session.execute(delete(table_of(AgentRun)).where(R.started_at < cutoff))
    posts = session.execute(delete(table_of(DigestPost)).where(DP.period_start < cutoff))
    nudges = session.execute(delete(table_of(Nudge)).where(NU.claimed_at < cutoff))
    session.execute(delete(table_of(ToolDecision)).where(table_of(ToolDecision).c.day < cutoff.date()))
    return Purged(
        usage_records=usage.rowcount + loose.rowcount,  # type: ignore[attr-defined]
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
