"""Slack users -> people by email, with Slack's answers cached for a while."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine

from bot.devtools.slack_standin import SlackStandIn
from handlers.slack.people import SlackPeople, profile_of
from storage.db import session_scope
from storage.people import get_or_create_person


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def test_a_slack_user_is_matched_to_the_person_with_their_email(slack: SlackStandIn, engine: Engine) -> None:
    with session_scope(engine) as session:
        existing = get_or_create_person(session, email="ada@example.com")
    found, profile = SlackPeople().resolve(engine, WebClient(token="xoxb-test", base_url=slack.url), "W111")
    assert found.id == existing.id
    assert (found.slack_user_id, profile.tz) == ("W111", "Europe/London")


def test_profiles_are_cached_until_the_ttl_passes(slack: SlackStandIn) -> None:
    now = [0.0]
    people = SlackPeople(ttl_seconds=60, clock=lambda: now[0])
    client = WebClient(token="xoxb-test", base_url=slack.url)
    people.profile(client, "W111")
    people.profile(client, "W111")
    assert len(slack.calls("users.info")) == 1
    now[0] = 61
    people.profile(client, "W111")
    assert len(slack.calls("users.info")) == 2


def test_lookup_by_email_finds_the_user_and_remembers_unknown_emails(slack: SlackStandIn) -> None:
    people = SlackPeople()
    client = WebClient(token="xoxb-test", base_url=slack.url)
    assert people.user_id_for_email(client, "Grace@Example.com") == "U111"
    assert people.user_id_for_email(client, "nobody@example.com") is None
    assert people.user_id_for_email(client, "nobody@example.com") is None
    assert len(slack.calls("users.lookupByEmail")) == 2


def test_an_unknown_time_zone_falls_back_to_utc_and_emails_are_lowercased() -> None:
    profile = profile_of({"id": "U1", "tz": "Mars/Olympus", "profile": {"email": " Ada@Example.COM "}})
    assert (profile.tz, profile.email) == ("UTC", "ada@example.com")
