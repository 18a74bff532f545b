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
from sqlmodel import Session

from bot.periods import zone
from storage.directory import get_or_create_person
from storage.models import Person


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

        key = (workspace, email.strip().lower())
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
        self, session: Session, client: WebClient, user_id: str, workspace: str = ""
    ) -> tuple[Person, SlackProfile]:
        """The person behind a Slack user (created on first contact), their time zone kept current."""
        profile = self.profile(client, user_id, workspace)
        person = get_or_create_person(session, email=profile.email, slack_user_id=user_id, display_name=profile.name)
        if person.timezone != profile.tz:
            person.timezone = profile.tz
            session.add(person)
            session.flush()
        return person, profile


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
    return SlackProfile(user_id=user["id"], email=email.strip().lower() if email else None, name=name, tz=tz)
