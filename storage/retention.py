"""Retention and forgetting: data past TOKENWISE_RETENTION_DAYS, and a person's own annotations on request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Table, delete, func, or_, select
from sqlalchemy.sql.elements import ColumnElement
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


PURGE_BATCH = 20_000  # ids per transaction: a fraction of a second of work on either database


def purge_in_batches(
    engine: Engine,
    now: datetime,
    retention_days: int,
    batch: int = PURGE_BATCH,
    progress: Callable[[str, int, int], None] | None = None,
) -> Purged:
    """`purge_expired`'s deletions, in bounded transactions with a commit between each: what the CLI and
    the scheduler run. One transaction deleting a year of per-request usage holds SQLite's only write lock
    for minutes (every other writer, the audit row of a slash command included, waits on it) and on
    PostgreSQL writes one huge transaction. Here each transaction deletes the expired rows among `batch`
    consecutive ids of one table, so a writer never waits for more than one batch.

    The same rows go as in `purge_expired`: usage and outcomes that happened before the cutoff, by id
    range; then, by id range of runs, each run that started before it with its usage, outcomes and
    annotations (whenever they happened), then the run. A purge interrupted part way leaves whole rows and
    no dangling reference, and the next one finishes the work. `progress(table, ids done, ids in all)` is
    called after every batch.
    """
    cutoff = now.astimezone(UTC) - timedelta(days=retention_days)
    usage, outcome, annotation, run = (table_of(t) for t in (UsageRecord, Outcome, Annotation, AgentRun))
    unattributed = table_of(UnattributedUsage)
    counts = {"usage": 0, "outcomes": 0, "annotations": 0, "runs": 0}

    def by_ids(table: Table, label: str, expired: ColumnElement[bool], key: str) -> None:
        with engine.connect() as connection:
            low, high = connection.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
        if low is None:
            return
        for start in range(low, high + 1, batch):
            in_range = table.c.id.between(start, min(start + batch, high + 1) - 1)
            with engine.begin() as connection:
                counts[key] += connection.execute(delete(table).where(in_range, expired)).rowcount
            if progress:
                progress(label, min(start + batch, high + 1) - low, high + 1 - low)

    by_ids(usage, "usage records", usage.c.occurred_at < cutoff, "usage")
    by_ids(unattributed, "unattributed usage", unattributed.c.occurred_at < cutoff, "usage")
    by_ids(outcome, "outcomes", outcome.c.occurred_at < cutoff, "outcomes")
    with engine.connect() as connection:
        low, high = connection.execute(select(func.min(R.id), func.max(R.id))).one()
    if low is not None:
        for start in range(low, high + 1, batch):
            in_range = R.id.between(start, min(start + batch, high + 1) - 1)
            old = select(R.id).where(in_range, R.started_at < cutoff)
            with engine.begin() as connection:
                counts["usage"] += connection.execute(delete(usage).where(usage.c.run_id.in_(old))).rowcount
                counts["outcomes"] += connection.execute(delete(outcome).where(OC.run_id.in_(old))).rowcount
                counts["annotations"] += connection.execute(delete(annotation).where(A.run_id.in_(old))).rowcount
                counts["runs"] += connection.execute(delete(run).where(in_range, R.started_at < cutoff)).rowcount
            if progress:
                progress("runs", min(start + batch, high + 1) - low, high + 1 - low)
    with engine.begin() as connection:
        posts = connection.execute(delete(table_of(DigestPost)).where(DP.period_start < cutoff)).rowcount
        nudges = connection.execute(delete(table_of(Nudge)).where(NU.claimed_at < cutoff)).rowcount
    return Purged(
        usage_records=counts["usage"],
        runs=counts["runs"],
        outcomes=counts["outcomes"],
        annotations=counts["annotations"],
        digest_posts=posts,
        nudges=nudges,
    )


def count_annotations(session: Session, person_id: int) -> int:
    return int(session.execute(select(func.count(A.id)).where(A.person_id == person_id)).scalar_one())


def forget_annotations(session: Session, person_id: int) -> int:
    """Delete every annotation (verdicts, notes, links, shared wins) a person wrote; how many."""
    result = session.execute(delete(table_of(Annotation)).where(A.person_id == person_id))
    return int(result.rowcount)  # type: ignore[attr-defined]
