"""Who is asking, resolved once per Slack request: a session, their person row, their Slack profile.

Every lazy listener that acts for a person opens `resolved_caller(...)` instead of opening a session and
resolving the Slack user by hand; identity comes from Slack (`handlers.slack.people`), never from data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from sqlmodel import Session

from bot.periods import zone
from handlers.slack.people import SlackProfile
from storage.audit import record_event
from storage.db import session_scope
from storage.models import Person, id_of

if TYPE_CHECKING:
    from bot.services import Services


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
        """Record who looked at or changed what, in this request's transaction."""
        record_event(
            self.session, actor=self.actor, action=action, scope=scope, actor_person_id=self.person_id, detail=detail
        )


@contextmanager
def resolved_caller(
    services: Services,
    client: WebClient,
    user_id: str,
    workspace: str = "",
    command: dict[str, Any] | None = None,
) -> Iterator[Caller]:
    """The caller in a transaction that commits when the block ends (rolled back if it raises)."""
    with session_scope(services.engine) as session:
        person, profile = services.people.resolve(session, client, user_id, workspace)
        yield Caller(session, person, profile, services, client, workspace, command or {})
