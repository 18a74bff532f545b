"""Small builders for test data, written through the real ORM into the real database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from sqlmodel import Session

from storage.models import AgentRun, Annotation, Membership, Outcome, Person, Source, Team, UsageRecord

_counter = itertools.count(1)


def at(text: str) -> datetime:
    """'2026-11-02 10:00' as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def source(session: Session, name: str = "test") -> Source:
    item = Source(name=f"{name}-{next(_counter)}", kind="test")
    session.add(item)
    session.flush()
    return item


def person(session: Session, email: str, team: Team | None = None, role: str = "member") -> Person:
    item = Person(email=email, display_name=email.split("@")[0].title(), slack_user_id=f"U{next(_counter):08d}")
    session.add(item)
    session.flush()
    if team is not None:
        session.add(Membership(person_id=item.id, team_id=team.id, role=role))
        session.flush()
    return item


def team(session: Session, name: str) -> Team:
    item = Team(name=name)
    session.add(item)
    session.flush()
    return item


def run(session: Session, src: Source, owner: Person, started: str, agent: str = "claude-code") -> AgentRun:
    item = AgentRun(
        source_id=src.id, external_id=f"run-{next(_counter)}", person_id=owner.id, agent=agent, started_at=at(started)
    )
    session.add(item)
    session.flush()
    return item


def usage(
    session: Session,
    src: Source,
    owner: Person,
    when: str,
    cost: str | None,
    run_: AgentRun | None = None,
    tokens: tuple[int, int, int, int] = (1000, 100, 500, 50),
    model: str = "claude-sonnet-4-5",
) -> UsageRecord:
    item = UsageRecord(
        source_id=src.id,
        person_id=owner.id,
        run_id=run_.id if run_ else None,
        occurred_at=at(when),
        agent="claude-code",
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        cost_usd=Decimal(cost) if cost is not None else None,
        dedupe_key=f"u-{next(_counter)}",
    )
    session.add(item)
    session.flush()
    return item


def outcome(
    session: Session,
    owner: Person,
    kind: str,
    when: str,
    run_: AgentRun | None = None,
    weight: str | None = None,
    evidence: bool = True,
) -> Outcome:
    """An outcome; by default evidence (an operator's source), else self-reported (not counted)."""
    from bot.config import DEFAULT_OUTCOME_WEIGHTS

    item = Outcome(
        person_id=owner.id,
        run_id=run_.id if run_ else None,
        kind=kind,
        weight=Decimal(weight) if weight else DEFAULT_OUTCOME_WEIGHTS[kind],
        occurred_at=at(when),
        evidence=evidence,
        counted=evidence,
        agent_assisted=run_ is not None,
    )
    session.add(item)
    session.flush()
    return item


def annotate(session: Session, run_: AgentRun, by: Person, verdict: str, win: bool = False) -> Annotation:
    item = Annotation(run_id=run_.id, person_id=by.id, verdict=verdict, share_as_win=win)
    session.add(item)
    session.flush()
    return item
