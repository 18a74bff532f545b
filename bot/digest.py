"""A team's week as the digest shows it: the figures (from bot.reports, the disclosure rules applied) and
the four-week trend, as plain values. `bot.digest_chart` draws it; `handlers.slack.digest_posts` posts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlmodel import Session

from bot.periods import Period
from bot.reports import Figures, Rules, change, figures_for
from storage.digest_contents import SharedWin, merged_prs_with_agent_help, shared_wins_in, unreviewed_run_count
from storage.metrics import Metrics, Scope
from storage.models import Team

TREND_WEEKS = 4


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
    """A team's week, as plain values: rendered by handlers.slack.blocks and drawn by `render_chart`."""

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
    verified_share = None if "verified_spend_share" in item.hidden else m.verified_spend_share  # priced too little
    return WeekPoint(
        item.period, m.verified_cost_usd, m.cost_usd - m.verified_cost_usd, m.outcome_value, verified_share
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
        unreviewed_runs=unreviewed_run_count(session, scope, period.start, period.end),
        trend=[_week_point(item) for item in weekly],
        wins=shared_wins_in(session, scope, period.start, period.end),
    )


def scope_for(session: Session, team_id: int | None) -> Scope:
    if team_id is None:
        return Scope.org()
    team = session.get(Team, team_id)
    return Scope.team(team_id, team.name if team else str(team_id))
