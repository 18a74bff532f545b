"""Slack users -> people, matched by email (users.info), with the profile cached for a while.

The cache holds only what Slack says about a user (email, name, time zone), never database rows, so
it is safe to share between threads and workspaces; the person row is looked up per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.periods import zone
from storage.audit import record_event
from storage.db import session_scope, waiting_at_most
from storage.models import Person
from storage.people import bind_slack_user, normalize_email

FIRST_CONTACT_ATTEMPTS = 3
BIND_WAIT_SECONDS = 5.0  # a first contact's binding waits at most this for another writer, then the person hears why


@dataclass(frozen=True)
class SlackProfile:
    user_id: str
    email: str | None
    name: str | None
    tz: str


class SlackPeople:
    """A TTL cache in front of users.info and users.lookupByEmail."""

    def __init__(self, ttl_seconds: float = 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self._profiles: dict[tuple[str, str], tuple[float, SlackProfile]] = {}
        self._ids: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def profile(self, client: WebClient, user_id: str, workspace: str = "") -> SlackProfile:
        key = (workspace, user_id)
        with self._lock:
            hit = self._profiles.get(key)
            if hit and self.clock() - hit[0] < self.ttl:
                return hit[1]
        user = client.users_info(user=user_id)["user"]
        found = profile_of(user)
        with self._lock:
            self._profiles[key] = (self.clock(), found)
        return found

    def user_id_for_email(self, client: WebClient, email: str, workspace: str = "") -> str | None:
        """The Slack user id of an email, or None when the workspace has no such user."""
        from slack_sdk.errors import SlackApiError

        key = (workspace, normalize_email(email))
        with self._lock:
            hit = self._ids.get(key)
            if hit and self.clock() - hit[0] < self.ttl:
                return hit[1]
        try:
            user_id: str | None = client.users_lookupByEmail(email=email)["user"]["id"]
        except SlackApiError as error:
            if error.response.get("error") != "users_not_found":
                raise
            user_id = None
        with self._lock:
            self._ids[key] = (self.clock(), user_id)
        return user_id

    def resolve(
        self, engine: Engine, client: WebClient, user_id: str, workspace: str = ""
    ) -> tuple[Person, SlackProfile]:
        """The person behind a Slack user (created on first contact) and what Slack says about them.

        Identity comes from Slack: the signed request's user id and the email users.info gives for it
        (`storage.people.bind_slack_user`); every binding it makes is recorded in the audit log.

        users.info is asked first, with no transaction open. A person met before is then only read; a first
        contact (or an email changed in Slack) is bound in a short transaction of its own, which waits at
        most BIND_WAIT_SECONDS for another writer. The time zone is not written here: the caller's profile
        is brought up to date after the answer (`handlers.slack.caller`). When two requests of a new user
        race to create them, the loser rolls back and finds the winner's row.
        """
        profile = self.profile(client, user_id, workspace)
        for attempt in range(1, FIRST_CONTACT_ATTEMPTS + 1):
            try:
                with session_scope(engine) as session, waiting_at_most(session, BIND_WAIT_SECONDS):
                    return _bind(session, profile), profile
            except IntegrityError:  # lost the race to create a new person: the winner's row is there now
                if attempt == FIRST_CONTACT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")


def _bind(session: Session, profile: SlackProfile) -> Person:
    binding = bind_slack_user(session, slack_user_id=profile.user_id, email=profile.email, display_name=profile.name)
    person = binding.person
    if binding.released is not None:
        record_event(
            session,
            actor=f"slack:{profile.user_id}",
            action="slack.released",
            scope=f"person:{binding.released}",
            detail="the Slack id now names the person its profile email names",
        )
    if binding.bound:
        record_event(
            session,
            actor=f"slack:{profile.user_id}",
            action="slack.bound",
            scope=f"person:{person.id}",
            actor_person_id=person.id,
            detail="bound from a signed Slack request and users.info",
        )
    return person


def profile_of(user: dict) -> SlackProfile:  # type: ignore[type-arg]
    """Email, display name and a valid IANA time zone from a users.info `user` object."""
    tz = user.get("tz") or "UTC"
    try:
        zone(tz)
    except ValueError:
        tz = "UTC"
    profile = user.get("profile") or {}
    name = profile.get("real_name") or user.get("real_name") or user.get("name")
    email = profile.get("email")
    return SlackProfile(user_id=user["id"], email=normalize_email(email) if email else None, name=name, tz=tz)
