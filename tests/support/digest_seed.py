"""Small, hand-countable data for digest and summary tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlmodel import Session, select

from storage.models import AgentRun, Annotation, Membership, Outcome, Person, Source, Team, UsageRecord


@dataclass
class SeededTeam:
    team: Team
    people: list[Person]
    runs: list[AgentRun]


def source(session: Session, name: str = "seed") -> Source:
    found = session.exec(select(Source).where(Source.name == name)).first()
    if found:
        return found
    item = Source(name=name, kind="test")
    session.add(item)
    session.flush()
    return item


def seed_team(
    session: Session,
    name: str,
    size: int,
    week_start: datetime,
    *,
    weeks: int = 1,
    cost: Decimal = Decimal("2.50"),
    merged_prs: int = 1,
    share_win: bool = True,
) -> SeededTeam:
    """A team whose every member runs one agent session a day on the first two days of each week.

    Per person and week: 2 runs, 2 usage records of `cost`; the first run is annotated useful by its
    owner (so its spend is verified); the person's first `merged_prs` weeks... see the tests for counts.
    """
    src = source(session)
    team = Team(name=name)
    session.add(team)
    session.flush()
    people: list[Person] = []
    runs: list[AgentRun] = []
    for index in range(size):
        person = Person(
            email=f"{name}{index}@example.com",
            slack_user_id=f"U{name.upper()[:4]}{index}",
            display_name=f"{name.title()} Person {index}",
        )
        session.add(person)
        session.flush()
        session.add(Membership(person_id=person.id or 0, team_id=team.id or 0))
        people.append(person)
        for week in range(weeks):
            for day in range(2):
                started = week_start + timedelta(days=7 * week + day, hours=10)
                run = AgentRun(
                    source_id=src.id or 0,
                    external_id=f"{name}-{index}-{week}-{day}",
                    person_id=person.id or 0,
                    agent="claude-code",
                    started_at=started,
                    title=f"Secret title {name} {index}",
                )
                session.add(run)
                session.flush()
                runs.append(run)
                session.add(
                    UsageRecord(
                        source_id=src.id or 0,
                        person_id=person.id or 0,
                        run_id=run.id,
                        occurred_at=started + timedelta(minutes=5),
                        agent="claude-code",
                        model="claude-sonnet-4",
                        input_tokens=1000,
                        output_tokens=200,
                        cost_usd=cost,
                        dedupe_key=f"{run.external_id}-u",
                    )
                )
                if day == 0:
                    session.add(
                        Annotation(
                            run_id=run.id or 0,
                            person_id=person.id or 0,
                            verdict="useful",
                            note=f"Fixed the flaky deploy for {name}" if share_win and index == 0 else None,
                            share_as_win=share_win and index == 0,
                        )
                    )
                    if index < merged_prs:
                        session.add(
                            Outcome(
                                source_id=src.id,
                                external_id=f"pr-{run.external_id}",
                                run_id=run.id,
                                person_id=person.id or 0,
                                kind="pr_merged",
                                weight=Decimal(3),
                                occurred_at=started + timedelta(hours=1),
                                evidence=True,
                                counted=True,
                                agent_assisted=True,
                            )
                        )
    session.flush()
    return SeededTeam(team, people, runs)
