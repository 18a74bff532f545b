"""Team roles: who manages which team (managers may ask for the team's summary)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from storage.models import Membership, Team, utcnow


def add_manager(session: Session, team_id: int, person_id: int, since: datetime | None = None) -> bool:
    """Make a person a manager of a team (joining it, counted from `since`, if needed); False when they
    already were."""
    membership = session.exec(
        select(Membership).where(Membership.team_id == team_id, Membership.person_id == person_id)
    ).first()
    if membership is not None and membership.role == "manager":
        return False
    if membership is None:
        membership = Membership(team_id=team_id, person_id=person_id, role="manager", since=since or utcnow())
    membership.role = "manager"
    session.add(membership)
    session.flush()
    return True


def managed_teams(session: Session, person_id: int) -> list[Team]:
    return list(
        session.exec(
            select(Team)
            .join(Membership, col(Membership.team_id) == col(Team.id))
            .where(Membership.person_id == person_id, Membership.role == "manager")
            .order_by(col(Team.name))
        ).all()
    )
