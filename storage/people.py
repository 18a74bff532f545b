"""People and teams: look-ups that turn what a user typed into rows, with helpful errors."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from storage.models import Membership, Person, Team, table_of


class NotFound(LookupError):
    """A user named something that does not exist; the message says what does."""


def normalize_email(email: str) -> str:
    """One spelling per address: Unicode NFKC (full-width and compatibility look-alikes fold to their plain
    form), surrounding space stripped, lower case, so look-alikes never make separate people."""
    return unicodedata.normalize("NFKC", email).strip().lower()


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
    """The person named by email (or, with no email, by Slack user id), created when unknown.

    This never binds a Slack user id to a person: only Slack itself does that (`bind_slack_user`). Ingest
    checks a record's Slack id against the stored binding before it gets here (`slack_id_mismatches`), so a
    Slack id given with an email is only ever the one already bound to that email's person.
    """
    email = normalize_email(email) if email else None
    person = None
    if email:
        person = session.exec(select(Person).where(Person.email == email)).first()
    elif slack_user_id:
        person = session.exec(select(Person).where(Person.slack_user_id == slack_user_id)).first()
    if person is None:
        if not email and not slack_user_id:
            raise NotFound("Name a person by email or Slack user id.")
        person = Person(email=email, slack_user_id=None if email else slack_user_id, display_name=display_name)
        session.add(person)
        session.flush()
        return person
    if display_name and not person.display_name:
        person.display_name = display_name
        session.add(person)
        session.flush()
    return person


def slack_id_mismatches(session: Session, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of (email, Slack user id) pairs, those whose email's person is not bound to that Slack id by Slack.

    An email with no person yet has no binding either, so its pair is a mismatch too: ingest never creates
    a binding. Reads only, one statement.
    """
    wanted = {(normalize_email(email), slack_user_id) for email, slack_user_id in pairs}
    if not wanted:
        return set()
    emails = sorted({email for email, _ in wanted})
    bound = {
        (email, slack_user_id)
        for email, slack_user_id in session.exec(
            select(Person.email, Person.slack_user_id).where(col(Person.email).in_(emails))
        )
    }
    return {pair for pair in wanted if pair not in bound}


@dataclass(frozen=True)
class Binding:
    """What `bind_slack_user` changed, for the audit log: `bound` the person the Slack id now names,
    `released` the person it was taken from (when their email is not the caller's)."""

    person: Person
    bound: bool = False
    released: int | None = None


def bind_slack_user(
    session: Session, *, slack_user_id: str, email: str | None, display_name: str | None = None
) -> Binding:
    """The person behind a signed Slack request: its user id with the email Slack's users.info gives.

    The only place a Slack id is bound to a person. The email decides who the caller is: their own row
    (bound now if it was not), or a new person when their email has no row, never someone else's row. A
    row that holds this Slack id under another email (an email changed in Slack, or a binding made before
    ingest stopped binding) lets go of it first. With no email in the profile, the Slack id alone decides.
    """
    email = normalize_email(email) if email else None
    by_slack = session.exec(select(Person).where(Person.slack_user_id == slack_user_id)).first()
    person = session.exec(select(Person).where(Person.email == email)).first() if email else by_slack
    if person is not None and person.slack_user_id in {slack_user_id, None} and person is not by_slack:
        released = None
        if by_slack is not None and by_slack.email is None:  # sent by this Slack id alone: the caller's own data
            _move_data(session, by_slack, person)
        if by_slack is not None:
            released = _release(session, by_slack)
        person.slack_user_id = slack_user_id
        _keep(session, person, display_name)
        return Binding(person, bound=True, released=released)
    if person is not None:  # bound to this Slack id already, or (email wins) to the caller's other Slack account
        _keep(session, person, display_name)
        return Binding(person)
    if by_slack is not None and by_slack.email is None:  # sent by Slack id alone, so this caller's own row
        by_slack.email = email
        _keep(session, by_slack, display_name)
        return Binding(by_slack, bound=True)
    released = _release(session, by_slack) if by_slack is not None else None
    created = Person(email=email, slack_user_id=slack_user_id, display_name=display_name)
    _keep(session, created, None)
    return Binding(created, bound=True, released=released)


def _release(session: Session, person: Person) -> int | None:
    person.slack_user_id = None
    session.add(person)
    session.flush()
    return person.id


def _move_data(session: Session, source: Person, target: Person) -> None:
    """Usage, runs, outcomes and personal tokens of a row known only by a Slack id, moved to the row of the
    same Slack user's email, so the nameless row keeps nothing that a token could still write to."""
    from storage.models import AgentRun, Outcome, Source, UsageRecord

    for model in (UsageRecord, AgentRun, Outcome, Source):
        column = table_of(model).c.person_id
        session.execute(update(table_of(model)).where(column == source.id).values(person_id=target.id))
    session.expire_all()  # rows loaded before now still name the old person


def _keep(session: Session, person: Person, display_name: str | None) -> None:
    if display_name and not person.display_name:
        person.display_name = display_name
    session.add(person)
    session.flush()


def team_names(session: Session) -> list[str]:
    return list(session.exec(select(Team.name).order_by(Team.name)))


def find_team(session: Session, name: str) -> Team:
    wanted = name.strip()
    team = session.exec(select(Team).where(Team.name == wanted)).first()
    if team is None:  # "Platform" finds "platform", unless two teams differ only by case (compared in Python:
        # SQLite's lower() knows ASCII only, PostgreSQL's all of Unicode)
        alike = [t for t in session.exec(select(Team)).all() if t.name.casefold() == wanted.casefold()]
        team = alike[0] if len(alike) == 1 else None
    if team is None:
        names = team_names(session)
        known = f" Teams: {', '.join(names)}." if names else " There are no teams yet."
        raise NotFound(f"No team called '{name}'.{known}")
    return team


def teams_of(session: Session, person_id: int) -> Sequence[Team]:
    return session.exec(
        select(Team).join(Membership, col(Membership.team_id) == col(Team.id)).where(Membership.person_id == person_id)
    ).all()


def nested_memberships(session: Session, team_id: int | None) -> dict[int, dict[int, datetime | None]]:
    """Members (person id -> membership start) of the teams that could nest in a group: team `team_id` and
    every team that shares a member with it, or every team when `team_id` is None (the organisation)."""
    m = table_of(Membership).c
    query = select(m.team_id, m.person_id, m.since)
    if team_id is not None:
        near = select(m.team_id).where(m.person_id.in_(select(m.person_id).where(m.team_id == team_id)))
        query = query.where(m.team_id.in_(near))
    found: dict[int, dict[int, datetime | None]] = {}
    for team, person, since in session.execute(query):
        found.setdefault(int(team), {})[int(person)] = since
    return found


def team_zones(session: Session, team_ids: Iterable[int]) -> dict[int, str | None]:
    """Each team's own time zone (None: the organisation's)."""
    wanted = sorted(set(team_ids))
    if not wanted:
        return {}
    rows = session.exec(select(Team.id, Team.timezone).where(col(Team.id).in_(wanted)))
    return {int(team_id or 0): zone for team_id, zone in rows}


def is_manager(session: Session, person_id: int, team_id: int) -> bool:
    role = session.exec(
        select(Membership.role).where(Membership.person_id == person_id, Membership.team_id == team_id)
    ).first()
    return role == "manager"
