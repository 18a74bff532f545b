"""The metrics engine: outcome-weighted numbers for a person, a team or the organisation.

Every number here is specified, with a worked example, in docs/metrics.md. All aggregation happens in
the database, so the same SQL gives the same answer on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, case, func, or_, select, type_coerce
from sqlmodel import Session

from storage.models import AgentRun, Annotation, Membership, Outcome, OutcomeLink, Person, UsageRecord, table_of

# Core columns (typed as SQL expressions, unlike the model attributes).
from storage.types import MILLI, NANO, ScaledDecimal

U = table_of(UsageRecord).c
R = table_of(AgentRun).c
A = table_of(Annotation).c
OC = table_of(Outcome).c
L = table_of(OutcomeLink).c
M = table_of(Membership).c
P = table_of(Person).c

ScopeKind = Literal["person", "team", "org"]
ZERO = Decimal(0)
Window = tuple[datetime, datetime]  # a half-open UTC range [start, end)


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

    def covers(self, person_column: Any, time_column: Any = None) -> ColumnElement[bool]:
        """SQL condition: this person column belongs to the scope (at `time_column`, when given).

        A team member whose membership has a start (`since`: added after the team was made) counts for
        the team only from then on, so adding someone never changes a closed window.
        """
        if self.kind == "person":
            same: ColumnElement[bool] = person_column == self.id
            return same
        if self.kind == "team":
            if time_column is None:
                member: ColumnElement[bool] = person_column.in_(select(M.person_id).where(M.team_id == self.id))
                return member
            members = select(M.person_id).where(M.team_id == self.id)
            founding = select(M.person_id).where(M.team_id == self.id, M.since.is_(None))
            joined = (
                select(1).where(M.team_id == self.id, M.person_id == person_column, M.since <= time_column).exists()
            )
            # The first condition says nothing the second does not (both kinds of member are members), but it
            # lets the database read the members' rows by index, person by person: with the `OR` alone
            # PostgreSQL scans every person's rows in the period and filters them, which grows with the
            # organisation (docs/performance.md, "Ten times the data").
            return and_(person_column.in_(members), or_(person_column.in_(founding), joined))
        # The organisation: the people it knows, in a team or bound by Slack (an email with a Slack id, which
        # only a signed Slack request sets). Made-up people a shared token sends for are nobody's figures.
        bound = select(P.id).where(P.email.is_not(None), P.slack_user_id.is_not(None))
        return or_(person_column.in_(select(M.person_id)), person_column.in_(bound))


@dataclass(frozen=True)
class Contribution:
    """One person's part of a group's sums in one window: what disclosure control is judged on."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal = ZERO
    verified_cost_usd: Decimal = ZERO

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


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
    usage_records: int = 0  # every usage record counted, known cost or not
    token_unknown_records: int = 0  # records whose source gives no token count (NULL): token coverage
    cost_known_tokens: int = 0  # the tokens of the records whose cost is known
    priced_cost_usd: Decimal = ZERO  # the part of cost_usd Tokenwise priced from tokens (cost_source "priced")
    billed_cost_usd: Decimal = ZERO  # the part of cost_usd a vendor bills per person (cost_source "billed")
    verified_cost_usd: Decimal = ZERO
    outcome_value: Decimal = ZERO  # counted outcomes only: evidence from outside the person
    outcomes_by_kind: dict[str, int] = field(default_factory=dict)
    # What people report of themselves (a personal token, Claude Code's own counters): shown, never counted.
    self_reported_by_kind: dict[str, int] = field(default_factory=dict)
    contributions: dict[int, Contribution] = field(default_factory=dict)  # person id -> their part (groups)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def outcomes(self) -> int:
        return sum(self.outcomes_by_kind.values())

    @property
    def cost_known_records(self) -> int:
        return self.usage_records - self.cost_unknown_records

    @property
    def cost_coverage(self) -> Decimal | None:
        """The share of usage records whose cost is known (None without usage): what every money figure and
        every share of spend rests on (docs/metrics.md, "Cost coverage")."""
        return _ratio(Decimal(self.cost_known_records), Decimal(self.usage_records))

    @property
    def token_coverage(self) -> Decimal | None:
        """The share of usage records whose token counts are known (a vendor's per-day requests give none):
        the token figures rest on this share; None with no usage."""
        return _ratio(Decimal(self.usage_records - self.token_unknown_records), Decimal(self.usage_records))

    @property
    def cost_coverage_tokens(self) -> Decimal | None:
        """The same by tokens: the share of tokens in records whose cost is known."""
        return _ratio(Decimal(self.cost_known_tokens), Decimal(self.total_tokens))

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
    def merged_prs(self) -> int:
        return self.outcomes_by_kind.get("pr_merged", 0)

    @property
    def cost_per_merged_pr(self) -> Decimal | None:
        return _ratio(self.cost_usd, Decimal(self.merged_prs))

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
    """SQL condition: the run has evidence from outside its owner: a counted outcome recorded for it (an
    operator's CI or deploy source), or a link from a counted outcome (a merged pull request) that its owner
    has not removed and that did not come late. The owner's own verdict never verifies (docs/metrics.md
    "Evidence"); of a verified run, records its owner sent once the merge was known (`late`) verify nothing."""
    # Written as "the first such row, if any" (a scalar sub-query with LIMIT 1) rather than EXISTS:
    # PostgreSQL may run an EXISTS in a CASE as a hash of every counted outcome (and every link) in the
    # database, built for each report, which grows with the organisation; this form is an index probe
    # (ix_outcome_run, ix_outcome_link_run) for each row read (docs/performance.md, "Ten times the data").
    has_outcome = select(OC.id).where(OC.run_id == run_id, OC.counted.is_(True)).limit(1).scalar_subquery()
    linked = (
        select(L.id)
        .select_from(table_of(OutcomeLink).join(table_of(Outcome), L.outcome_id == OC.id))
        .where(L.run_id == run_id, L.removed_at.is_(None), L.late.is_(False), OC.counted.is_(True))
        .limit(1)
        .scalar_subquery()
    )
    return and_(run_id.is_not(None), or_(has_outcome.is_not(None), linked.is_not(None)))


def _window_of(column: Any, windows: Sequence[Window]) -> Any:
    """SQL: the index of the window `column` falls in (NULL in none); windows never overlap."""
    return case(*((and_(column >= start, column < end), index) for index, (start, end) in enumerate(windows)))


def _span(column: Any, windows: Sequence[Window]) -> ColumnElement[bool]:
    """SQL: `column` lies between the first window's start and the last one's end (an index range)."""
    return and_(column >= min(start for start, _ in windows), column < max(end for _, end in windows))


def _check_windows(windows: Sequence[Window]) -> None:
    ordered = sorted(windows)
    if any(end < start for start, end in ordered) or any(
        end > next_start for (_, end), (next_start, _) in itertools.pairwise(ordered)
    ):
        raise ValueError("compute_windows takes windows that do not overlap")


def compute(session: Session, scope: Scope, start: datetime, end: datetime) -> Metrics:
    """All metrics for `scope` over the half-open UTC range [start, end)."""
    return compute_windows(session, scope, [(start, end)])[0]


def compute_windows(session: Session, scope: Scope, windows: Sequence[Window]) -> list[Metrics]:
    """All metrics for `scope` in each of several half-open UTC windows that do not overlap.

    One statement per table for all the windows (a report's two, a digest's four weeks) instead of one per
    window: each row is counted in the window it falls in, so every figure is what `compute` gives for
    that window alone (tests/test_metrics.py checks it).
    """
    if not windows:
        return []
    _check_windows(windows)
    found = [Metrics() for _ in windows]

    u = U
    # Rows are summed per run first and the run's evidence looked up once per run (a run has tens of
    # per-request records): the same sums as verifying each row, with a probe a run instead of a row.
    in_window = _window_of(u.occurred_at, windows).label("w")
    per_run = (
        select(
            in_window,
            u.person_id,
            u.run_id,
            func.sum(u.input_tokens).label("input_tokens"),
            func.sum(u.output_tokens).label("output_tokens"),
            func.sum(u.cache_read_tokens).label("cache_read_tokens"),
            func.sum(u.cache_write_tokens).label("cache_write_tokens"),
            func.sum(u.cost_usd).label("cost_usd"),
            func.sum(case((u.cost_usd.is_(None), 1), else_=0)).label("unknown"),
            # What can be verified: a record its owner sent once the run was linked to a merge is not (`late`).
            func.sum(case((u.late.is_(False), u.cost_usd), else_=None)).label("verifiable_cost"),
            func.sum(case((u.cost_source == "priced", u.cost_usd), else_=None)).label("priced_cost"),
            func.sum(case((u.cost_source == "billed", u.cost_usd), else_=None)).label("billed_cost"),
            func.count().label("records"),
            func.sum(case((u.input_tokens.is_(None), 1), else_=0)).label("unknown_tokens"),
            func.sum(
                case(
                    (
                        u.cost_usd.is_not(None),
                        u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens,
                    ),
                    else_=0,
                )
            ).label("known_tokens"),
        )
        .where(_span(u.occurred_at, windows), scope.covers(u.person_id, u.occurred_at), u.counted.is_(True))
        .group_by(in_window, u.person_id, u.run_id)
        .subquery()
    )
    usage = per_run.c
    for row in session.execute(
        select(
            usage.w,
            usage.person_id,
            func.coalesce(func.sum(usage.input_tokens), 0),
            func.coalesce(func.sum(usage.output_tokens), 0),
            func.coalesce(func.sum(usage.cache_read_tokens), 0),
            func.coalesce(func.sum(usage.cache_write_tokens), 0),
            _cost_sum(usage.cost_usd),
            func.coalesce(func.sum(usage.unknown), 0),
            _cost_sum(case((verified_run(usage.run_id), usage.verifiable_cost), else_=None)),
            _cost_sum(usage.priced_cost),
            func.coalesce(func.sum(usage.records), 0),
            func.coalesce(func.sum(usage.known_tokens), 0),
            func.coalesce(func.sum(usage.unknown_tokens), 0),
            _cost_sum(usage.billed_cost),
        )
        .where(usage.w.is_not(None))
        .group_by(usage.w, usage.person_id)
    ):
        m = found[row[0]]
        part = Contribution(int(row[2]), int(row[3]), int(row[4]), int(row[5]), row[6], row[8])
        m.input_tokens += part.input_tokens
        m.output_tokens += part.output_tokens
        m.cache_read_tokens += part.cache_read_tokens
        m.cache_write_tokens += part.cache_write_tokens
        m.cost_usd += part.cost_usd
        m.verified_cost_usd += part.verified_cost_usd
        m.cost_unknown_records += int(row[7])
        m.priced_cost_usd += row[9]
        m.usage_records += int(row[10])
        m.cost_known_tokens += int(row[11])
        m.token_unknown_records += int(row[12])
        m.billed_cost_usd += row[13]
        if scope.is_group:
            m.contributions[int(row[1])] = part

    r, a = R, A
    verdict_points = case((a.verdict == "useful", 2), (a.verdict == "partly", 1), else_=0)
    runs = (
        select(
            _window_of(r.started_at, windows).label("w"),
            r.id.label("run"),
            a.id.label("review"),
            verdict_points.label("points"),
        )
        .select_from(table_of(AgentRun))
        .outerjoin(table_of(Annotation), and_(a.run_id == r.id, a.person_id == r.person_id))
        .where(_span(r.started_at, windows), scope.covers(r.person_id, r.started_at))
        .subquery()
    )
    for w, count, reviewed, points in session.execute(
        select(runs.c.w, func.count(runs.c.run), func.count(runs.c.review), func.coalesce(func.sum(runs.c.points), 0))
        .where(runs.c.w.is_not(None))
        .group_by(runs.c.w)
    ):
        found[w].runs, found[w].reviewed_runs = int(count), int(reviewed)
        found[w].useful_runs = Decimal(int(points)) / 2

    o = OC
    outcomes = (
        select(_window_of(o.occurred_at, windows).label("w"), o.kind, o.id, o.weight, o.counted, o.evidence)
        .where(_span(o.occurred_at, windows), scope.covers(o.person_id, o.occurred_at))
        .subquery()
    )
    weight_sum = type_coerce(func.coalesce(func.sum(outcomes.c.weight), 0), ScaledDecimal(MILLI))
    for w, kind, counted, evidence, count, value in session.execute(
        select(
            outcomes.c.w,
            outcomes.c.kind,
            outcomes.c.counted,
            outcomes.c.evidence,
            func.count(outcomes.c.id),
            weight_sum,
        )
        .where(outcomes.c.w.is_not(None))
        .group_by(outcomes.c.w, outcomes.c.kind, outcomes.c.counted, outcomes.c.evidence)
        .order_by(outcomes.c.w, outcomes.c.kind)
    ):
        if counted:
            found[w].outcomes_by_kind[kind] = found[w].outcomes_by_kind.get(kind, 0) + int(count)
            found[w].outcome_value += value
        elif not evidence:
            found[w].self_reported_by_kind[kind] = found[w].self_reported_by_kind.get(kind, 0) + int(count)

    if not scope.is_group:
        for m in found:
            m.active_people = 1 if (m.runs or m.total_tokens or m.cost_unknown_records) else 0
    return found


BreakdownKey = Literal["project", "branch"]


@dataclass(frozen=True)
class Slice:
    """One person's counted usage in a window for one project or branch (None: runs that did not say)."""

    key: str | None
    runs: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal
    cost_unknown_records: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


def breakdown(session: Session, person_id: int, start: datetime, end: datetime, by: BreakdownKey) -> list[Slice]:
    """A person's own usage in [start, end) per project or per git branch of its runs, costliest first.

    Only for a person: a group's figures per project could single someone out (docs/metrics.md)."""
    key = R.project if by == "project" else R.branch
    u = U
    rows = session.execute(
        select(
            key,
            func.count(func.distinct(u.run_id)),
            func.coalesce(func.sum(u.input_tokens), 0),
            func.coalesce(func.sum(u.output_tokens), 0),
            func.coalesce(func.sum(u.cache_read_tokens), 0),
            func.coalesce(func.sum(u.cache_write_tokens), 0),
            _cost_sum(u.cost_usd),
            func.coalesce(func.sum(case((u.cost_usd.is_(None), 1), else_=0)), 0),
        )
        .select_from(table_of(UsageRecord).outerjoin(table_of(AgentRun), R.id == u.run_id))
        .where(u.person_id == person_id, u.occurred_at >= start, u.occurred_at < end, u.counted.is_(True))
        .group_by(key)
    ).all()
    slices = [
        Slice(k, int(n), int(i), int(o), int(cr), int(cw), cost, int(unknown))
        for k, n, i, o, cr, cw, cost, unknown in rows
    ]
    return sorted(slices, key=lambda s: (-s.cost_usd, -s.total_tokens, s.key is None, s.key or ""))


__all__ = [
    "BreakdownKey",
    "Contribution",
    "Metrics",
    "Scope",
    "Slice",
    "Window",
    "breakdown",
    "compute",
    "compute_windows",
    "verified_run",
]


@dataclass(frozen=True)
class Unpriced:
    """Usage of one agent and model whose cost is unknown: neither its source sent one nor genai-prices knows
    the model."""

    agent: str
    model: str
    records: int


def unpriced_models(session: Session, scope: Scope, start: datetime, end: datetime, limit: int = 3) -> list[Unpriced]:
    """The agents and models behind the most records of unknown cost in [start, end), most first."""
    u = U
    count = func.count().label("records")
    rows = session.execute(
        select(u.agent, u.model, count)
        .where(
            u.occurred_at >= start,
            u.occurred_at < end,
            u.cost_usd.is_(None),
            u.counted.is_(True),
            scope.covers(u.person_id, u.occurred_at),
        )
        .group_by(u.agent, u.model)
        .order_by(count.desc(), u.agent, u.model)
        .limit(limit)
    ).all()
    return [Unpriced(agent, model, int(records)) for agent, model, records in rows]
