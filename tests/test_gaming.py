"""Tokenmaxxing does not pay: burning ten times the tokens with nothing to show improves no headline metric."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Engine, func, insert, select
from sqlmodel import Session

from bot.periods import Period
from bot.seed import seed_organisation
from storage.metrics import Metrics, Scope, compute
from storage.models import AgentRun, Membership, Person, UsageRecord, table_of

END = date(2026, 11, 22)
PERIOD = Period(date(2026, 11, 9), END)


def _tokenmaxx(engine: Engine, person_id: int) -> None:
    """Add nine more copies of every usage record of the person, in new runs nobody reviews."""
    runs, usage = table_of(AgentRun), table_of(UsageRecord)
    with engine.begin() as connection:
        next_run = connection.execute(select(func.max(runs.c.id))).scalar_one() + 1
        next_usage = connection.execute(select(func.max(usage.c.id))).scalar_one() + 1
        records = connection.execute(select(usage).where(usage.c.person_id == person_id)).mappings().all()
        for copy in range(9):
            for record in records:
                connection.execute(
                    insert(runs).values(
                        id=next_run,
                        source_id=record["source_id"],
                        external_id=f"maxx-{next_run}",
                        person_id=person_id,
                        agent=record["agent"],
                        started_at=record["occurred_at"],
                    )
                )
                row = dict(record) | {"id": next_usage, "run_id": next_run, "dedupe_key": f"maxx-{copy}-{next_usage}"}
                connection.execute(insert(usage).values(**row))
                next_run += 1
                next_usage += 1


def _headline(m: Metrics) -> dict[str, Decimal | None]:
    return {
        "verified_spend_share": m.verified_spend_share,
        "cost_per_useful_run": m.cost_per_useful_run,
        "cost_per_outcome": m.cost_per_outcome,
        "outcome_value": m.outcome_value,
        "useful_runs": m.useful_runs,
    }


def test_tenfold_tokens_without_outcomes_improve_no_headline_metric(engine: Engine) -> None:
    seed_organisation(engine, people=12, teams=2, weeks=3, seed=3, end=END)
    with Session(engine) as session:
        # An ordinary, productive person with priced usage turns into a tokenmaxxer.
        gamer = next(
            p
            for p in session.scalars(select(Person).order_by(Person.id))
            if (m := compute(session, Scope.person(p.id or 0), PERIOD.start, PERIOD.end)).cost_usd > 0
            and m.outcome_value > 0
        )
        team_id = session.scalars(select(Membership.team_id).where(Membership.person_id == gamer.id)).one()
        team, me = Scope.team(team_id), Scope.person(gamer.id or 0)
        before_team = compute(session, team, PERIOD.start, PERIOD.end)
        before_me = compute(session, me, PERIOD.start, PERIOD.end)
    _tokenmaxx(engine, gamer.id or 0)
    with Session(engine) as session:
        after_team = compute(session, team, PERIOD.start, PERIOD.end)
        after_me = compute(session, me, PERIOD.start, PERIOD.end)

    assert after_me.total_tokens == 10 * before_me.total_tokens
    assert after_team.total_tokens > before_team.total_tokens
    b, a = _headline(before_team), _headline(after_team)
    assert a["outcome_value"] == b["outcome_value"]
    assert a["useful_runs"] == b["useful_runs"]
    assert a["verified_spend_share"] is not None and b["verified_spend_share"] is not None
    assert a["verified_spend_share"] < b["verified_spend_share"]
    assert a["cost_per_useful_run"] is not None and b["cost_per_useful_run"] is not None
    assert a["cost_per_useful_run"] > b["cost_per_useful_run"]
    assert a["cost_per_outcome"] is not None and b["cost_per_outcome"] is not None
    assert a["cost_per_outcome"] > b["cost_per_outcome"]
    assert after_team.reviewed_share is not None and before_team.reviewed_share is not None
    assert after_team.reviewed_share < before_team.reviewed_share
    assert before_me.verified_spend_share is not None and after_me.verified_spend_share is not None
    assert after_me.verified_spend_share < before_me.verified_spend_share
