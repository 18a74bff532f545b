"""Who is asking, resolved once per Slack request: a session, their person row, their Slack profile.

Every lazy listener that acts for a person opens `resolved_caller(...)` instead of opening a session and
resolving the Slack user by hand; identity comes from Slack (`handlers.slack.people`), never from data.

Reads never wait on writers: the caller's session reads (SQLite and PostgreSQL readers wait on no lock) and
writes only what the command changes. What the caller looked at (`Caller.looked`) and their time zone as
Slack gives it are recorded after the answer, in a short transaction of their own (`record_afterwards`,
run by the lazy-listener wrapper `handlers.slack.middleware.apologetic`), so a busy writer delays those
rows, never the answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from sqlalchemy import update
from sqlmodel import Session

from bot.log_safety import log_failure
from bot.periods import zone
from handlers.slack.people import SlackProfile
from storage.audit import record_event
from storage.db import session_scope
from storage.models import Person, id_of, table_of

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("tokenwise.slack")
AFTERWARDS_ATTEMPTS = 3  # each waits up to SQLite's busy timeout (10 s) for another writer


@dataclass(frozen=True)
class Look:
    """One audit row of something a person looked at, kept until the answer is sent."""

    actor: str
    action: str
    scope: str
    actor_person_id: int
    detail: str | None
    at: datetime


@dataclass
class Caller:
    """Who ran the command, with what they need to be answered: a session, their profile, the services."""

    session: Session
    person: Person
    profile: SlackProfile
    services: Services
    client: WebClient
    workspace: str = ""
    command: dict[str, Any] = field(default_factory=dict)  # the slash command payload (channel_id, team_id...)
    looks: list[Look] = field(default_factory=list)

    @property
    def person_id(self) -> int:
        return id_of(self.person)

    @property
    def tz(self) -> str:
        return self.profile.tz

    @property
    def today(self) -> date:
        return datetime.now(zone(self.tz)).date()

    @property
    def actor(self) -> str:
        return f"slack:{self.profile.user_id}"

    def audit(self, action: str, scope: str, detail: str | None = None) -> None:
        """Record a change the caller made, in this request's transaction: written with the change or not at all."""
        record_event(
            self.session, actor=self.actor, action=action, scope=scope, actor_person_id=self.person_id, detail=detail
        )

    def looked(self, action: str, scope: str, detail: str | None = None) -> None:
        """Record what the caller looked at, after the answer (`record_afterwards`), stamped with this moment."""
        self.looks.append(Look(self.actor, action, scope, self.person_id, detail, datetime.now(UTC)))

    def record_afterwards(self) -> None:
        """The looks and a changed time zone, in one short transaction after the answer. If the database takes
        neither within AFTERWARDS_ATTEMPTS tries, each look is logged as a warning instead (docs/security.md)."""
        new_tz = self.profile.tz if self.person.timezone != self.profile.tz else None
        if not self.looks and new_tz is None:
            return
        for attempt in range(1, AFTERWARDS_ATTEMPTS + 1):
            try:
                with session_scope(self.services.engine) as session:
                    for look in self.looks:
                        record_event(
                            session,
                            actor=look.actor,
                            action=look.action,
                            scope=look.scope,
                            actor_person_id=look.actor_person_id,
                            detail=look.detail,
                            now=look.at,
                        )
                    if new_tz is not None:
                        people = table_of(Person)
                        session.execute(update(people).where(people.c.id == self.person_id).values(timezone=new_tz))
                self.looks.clear()
                return
            except Exception as error:
                if attempt == AFTERWARDS_ATTEMPTS:
                    log_failure(log, "Could not record what %s looked at", self.actor, error=error)
                    for look in self.looks:
                        log.warning(
                            "Unrecorded look: %s %s %s at %s", look.actor, look.action, look.scope, look.at.isoformat()
                        )
                    self.looks.clear()


_waiting = threading.local()  # the callers of this thread's listener, recorded after it answers


def record_afterwards() -> None:
    """Record what this thread's callers left for after the answer (called by the lazy-listener wrapper)."""
    callers: list[Caller] = getattr(_waiting, "callers", [])
    _waiting.callers = []
    for caller in callers:
        caller.record_afterwards()


@contextmanager
def resolved_caller(
    services: Services,
    client: WebClient,
    user_id: str,
    workspace: str = "",
    command: dict[str, Any] | None = None,
) -> Iterator[Caller]:
    """The caller in a transaction that commits when the block ends (rolled back if it raises). Resolving
    asks Slack first, outside any transaction, and writes only on first contact (`SlackPeople.resolve`)."""
    person, profile = services.people.resolve(services.engine, client, user_id, workspace)
    with session_scope(services.engine) as session:
        caller = Caller(session, person, profile, services, client, workspace, command or {})
        yield caller
    _waiting.callers = [*getattr(_waiting, "callers", []), caller]  # answered: its looks are recorded after
