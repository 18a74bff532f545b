"""People and teams: look-ups that turn what a user typed into rows, with helpful errors."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from storage.models import Membership, Person, Team


class NotFound(LookupError):
    """A user named something that does not exist; the message says what does."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_person(session: Session, *, email: str | None = None, slack_user_id: str | None = None) -> Person:
    if email:
        person = session.exec(select(Person).where(Person.email == normalize_email(email))).first()
        if person is None:
            raise NotFound(f"No person with email '{email}'.")
        return person
    if slack_user_id:
        person = session.exec(select(Person).where(Person.slack_user_id == slack_user_id)).first()
        if person is None:
            raise NotFound(f"No person with Slack user id '{slack_user_id}'.")
        return person
    raise NotFound("Name a person by email or Slack user id.")


def get_or_create_person(
    session: Session,
    *,
    email: str | None = None,
    slack_user_id: str | None = None,
    display_name: str | None = None,
) -> Person:
    """The person with this email or Slack id, created when unknown (linked to Slack later).

    When both are given and they belong to two different people, the email wins and the Slack id is
    left where it is; the caller's data never silently moves between people.
    """
    email = normalize_email(email) if email else None
    person = None
    if email:
        person = session.exec(select(Person).where(Person.email == email)).first()
    if person is None and slack_user_id:
        person = session.exec(select(Person).where(Person.slack_user_id == slack_user_id)).first()
    if person is None:
        if not email and not slack_user_id:
            raise NotFound("Name a person by email or Slack user id.")
        person = Person(email=email, slack_user_id=slack_user_id, display_name=display_name)
        session.add(person)
        session.flush()
        return person
    if email and person.email is None:
        person.email = email
    if slack_user_id and person.slack_user_id is None:
        taken = session.exec(select(Person.id).where(Person.slack_user_id == slack_user_id)).first()
        if taken is None:
            person.slack_user_id = slack_user_id
    if display_name and not person.display_name:
        person.display_name = display_name
    session.add(person)
    session.flush()
    return person


def team_names(session: Session) -> list[str]:
    return list(session.exec(select(Team.name).order_by(Team.name)))


def find_team(session: Session, name: str) -> Team:
    team = session.exec(select(Team).where(Team.name == name.strip())).first()
    if team is None:
        names = team_names(session)
        known = f" Teams: {', '.join(names)}." if names else " There are no teams yet."
        raise NotFound(f"No team called '{name}'.{known}")
    return team


def teams_of(session: Session, person_id: int) -> Sequence[Team]:
    return session.exec(
        select(Team).join(Membership, col(Membership.team_id) == col(Team.id)).where(Membership.person_id == person_id)
    ).all()


def is_manager(session: Session, person_id: int, team_id: int) -> bool:
    role = session.exec(
        select(Membership.role).where(Membership.person_id == person_id, Membership.team_id == team_id)
    ).first()
    return role == "manager"
