"""The metrics engine: outcome-weighted numbers for a person, a team or the organisation.

Every number here is specified, with a worked example, in docs/metrics.md. All aggregation happens in
the database, so the same SQL gives the same answer on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, true, type_coerce
from sqlmodel import Session

from storage.models import AgentRun, Annotation, Membership, Outcome, UsageRecord, table_of

# Core columns (typed as SQL expressions, unlike the model attributes).
from storage.types import MILLI, NANO, ScaledDecimal

U = table_of(UsageRecord).c
R = table_of(AgentRun).c
A = table_of(Annotation).c
OC = table_of(Outcome).c
M = table_of(Membership).c

ScopeKind = Literal["person", "team", "org"]
ZERO = Decimal(0)


@dataclass(frozen=True)
class Scope:
    kind: ScopeKind
    id: int | None = None
    name: str = "organisation"

    @classmethod
    def person(cls, person_id: int, name: str = "") -> Scope:
        return cls("person", person_id, name)

    @classmethod
    def team(cls, team_id: int, name: str = "") -> Scope:
        return cls("team", team_id, name)

    @classmethod
    def org(cls) -> Scope:
        return cls("org", None, "organisation")

    @property
    def is_group(self) -> bool:
        return self.kind != "person"

    def label(self) -> str:
        return "organisation" if self.kind == "org" else f"{self.kind}:{self.name or self.id}"

    def covers(self, person_column: Any) -> ColumnElement[bool]:
        """SQL condition: this person column belongs to the scope."""
        if self.kind == "person":
            return person_column == self.id
        if self.kind == "team":
            members = select(M.person_id).where(M.team_id == self.id)
            return person_column.in_(members)
        return true()


@dataclass
class Metrics:
    """Raw sums for one scope and period; the ratios are derived, never stored."""

    active_people: int = 0
    runs: int = 0
    reviewed_runs: int = 0
    useful_runs: Decimal = ZERO
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = ZERO
    cost_unknown_records: int = 0
    verified_cost_usd: Decimal = ZERO
    outcome_value: Decimal = ZERO
    outcomes_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def outcomes(self) -> int:
        return sum(self.outcomes_by_kind.values())

    @property
    def reviewed_share(self) -> Decimal | None:
        return _ratio(Decimal(self.reviewed_runs), Decimal(self.runs))

    @property
    def useful_rate(self) -> Decimal | None:
        return _ratio(self.useful_runs, Decimal(self.reviewed_runs))

    @property
    def cost_per_useful_run(self) -> Decimal | None:
        return _ratio(self.cost_usd, self.useful_runs)

    @property
    def cost_per_outcome(self) -> Decimal | None:
        return _ratio(self.cost_usd, self.outcome_value)

    @property
    def verified_spend_share(self) -> Decimal | None:
        return _ratio(self.verified_cost_usd, self.cost_usd)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    if denominator == 0:
        return None
    return numerator / denominator


def _cost_sum(expression: Any) -> Any:
    return type_coerce(func.coalesce(func.sum(expression), 0), ScaledDecimal(NANO))


def verified_run(run_id: Any) -> ColumnElement[bool]:
    """SQL condition: the run has a useful/partly verdict from its owner, or a recorded outcome."""
    owner_says_useful = (
        select(1)
        .select_from(table_of(Annotation).join(table_of(AgentRun), A.run_id == R.id))
        .where(R.id == run_id, A.person_id == R.person_id, A.verdict.in_(("useful", "partly")))
        .exists()
    )
    has_outcome = exists().where(OC.run_id == run_id)
    return and_(run_id.is_not(None), or_(owner_says_useful, has_outcome))


def compute(session: Session, scope: Scope, start: datetime, end: datetime) -> Metrics:
    """All metrics for `scope` over the half-open UTC range [start, end)."""
    metrics = Metrics()
    u = U
    in_usage = and_(u.occurred_at >= start, u.occurred_at < end, scope.covers(u.person_id))
    usage = session.execute(
        select(
            func.coalesce(func.sum(u.input_tokens), 0),
            func.coalesce(func.sum(u.output_tokens), 0),
            func.coalesce(func.sum(u.cache_read_tokens), 0),
            func.coalesce(func.sum(u.cache_write_tokens), 0),
            _cost_sum(u.cost_usd),
            func.coalesce(func.sum(case((u.cost_usd.is_(None), 1), else_=0)), 0),
            _cost_sum(case((verified_run(u.run_id), u.cost_usd), else_=None)),
        ).where(in_usage)
    ).one()
    (
        metrics.input_tokens,
        metrics.output_tokens,
        metrics.cache_read_tokens,
        metrics.cache_write_tokens,
        metrics.cost_usd,
        metrics.cost_unknown_records,
        metrics.verified_cost_usd,
    ) = (int(usage[0]), int(usage[1]), int(usage[2]), int(usage[3]), usage[4], int(usage[5]), usage[6])

    r, a = R, A
    in_runs = and_(r.started_at >= start, r.started_at < end, scope.covers(r.person_id))
    verdict_points = case((a.verdict == "useful", 2), (a.verdict == "partly", 1), else_=0)
    runs = session.execute(
        select(func.count(r.id), func.count(a.id), func.coalesce(func.sum(verdict_points), 0))
        .select_from(table_of(AgentRun))
        .outerjoin(table_of(Annotation), and_(a.run_id == r.id, a.person_id == r.person_id))
        .where(in_runs)
    ).one()
    metrics.runs, metrics.reviewed_runs = int(runs[0]), int(runs[1])
    metrics.useful_runs = Decimal(int(runs[2])) / 2

    o = OC
    in_outcomes = and_(o.occurred_at >= start, o.occurred_at < end, scope.covers(o.person_id))
    weight_sum = type_coerce(func.coalesce(func.sum(o.weight), 0), ScaledDecimal(MILLI))
    for kind, count, value in session.execute(
        select(o.kind, func.count(o.id), weight_sum).where(in_outcomes).group_by(o.kind).order_by(o.kind)
    ):
        metrics.outcomes_by_kind[kind] = int(count)
        metrics.outcome_value += value

    if scope.is_group:
        metrics.active_people = active_people(session, scope, start, end)
    else:
        metrics.active_people = 1 if (metrics.runs or metrics.total_tokens or metrics.cost_unknown_records) else 0
    return metrics


def active_people(session: Session, scope: Scope, start: datetime, end: datetime) -> int:
    """People in the scope with any usage or run in the range: the group size privacy is judged by."""
    u, r = U, R
    people = (
        select(u.person_id)
        .where(u.occurred_at >= start, u.occurred_at < end, scope.covers(u.person_id))
        .union(select(r.person_id).where(r.started_at >= start, r.started_at < end, scope.covers(r.person_id)))
        .subquery()
    )
    return int(session.execute(select(func.count()).select_from(people)).scalar_one())


__all__ = ["Metrics", "Scope", "active_people", "compute", "verified_run"]
