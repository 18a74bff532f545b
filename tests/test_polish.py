"""Small things a new user saw (issue 15's polish list), each through the edge they saw it at."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from storage.models import DigestPost, DigestSubscription
from storage.people import find_team
from tests.support.slack_harness import Harness
from tests.test_cli import tokenwise
from tests.test_digest_slack_commands import answer, platform_team


def test_a_team_is_found_whatever_the_case_of_its_name(harness: Harness) -> None:
    platform_team(harness)
    said = answer(harness, "team Platform")
    assert "No team called" not in said
    assert "platform" in said


def test_two_teams_differing_only_by_case_are_found_exactly(engine: Engine) -> None:
    from tests.support.slack_harness import team

    with Session(engine, expire_on_commit=False) as session:
        team(session, "Platform", [])
        team(session, "platform", [])
        session.commit()
        assert find_team(session, "platform").name == "platform"
        assert find_team(session, "Platform").name == "Platform"
        try:
            find_team(session, "PLATFORM")
        except LookupError as error:
            assert "No team called 'PLATFORM'" in str(error)
        else:
            raise AssertionError("an ambiguous name found a team")


def test_revoking_a_revoked_source_says_so(db_url: str) -> None:
    assert tokenwise(db_url, "source", "create", "ci", "--kind", "api").returncode == 0
    first = tokenwise(db_url, "source", "revoke", "ci")
    assert first.returncode == 0 and "Revoked 'ci'" in first.stdout
    again = tokenwise(db_url, "source", "revoke", "ci")
    assert again.returncode == 0, again.stderr
    assert "'ci' was already revoked on" in again.stdout and "nothing changed" in again.stdout
    assert "Revoked 'ci'" not in again.stdout


def test_digest_status_names_the_teams_own_monday_as_send_due_does(db_url: str, engine: Engine) -> None:
    with Session(engine) as session:
        subscription = DigestSubscription(
            channel_id="C1", slack_team_id="T1", team_id=None, weekday=0, hour=9, minute=0, timezone="Pacific/Auckland"
        )
        session.add(subscription)
        session.flush()
        assert subscription.id is not None
        # Monday 2026-11-23 00:00 in Auckland is Sunday 2026-11-22 11:00 UTC
        session.add(DigestPost(subscription_id=subscription.id, period_start=datetime(2026, 11, 22, 11, tzinfo=UTC)))
        session.commit()
    said = tokenwise(db_url, "digest", "status").stdout
    assert "week of 2026-11-23 (Pacific/Auckland)" in said, said
    assert "2026-11-22" not in said


def test_a_weekly_report_marks_a_partial_first_week(db_url: str, tmp_path: Path) -> None:
    seeded = tokenwise(
        db_url, "seed", "--people", "4", "--teams", "1", "--weeks", "3", "--seed", "3", "--end", "2026-11-22"
    )
    assert seeded.returncode == 0, seeded.stderr
    person = "alex.rivera@example.com"
    said = tokenwise(
        db_url, "report", "--person", person, "--since", "2026-11-05", "--until", "2026-11-22", "--by", "week"
    )
    assert said.returncode == 0, said.stderr
    assert "2026-11-05 (Thu to Sun)*" in said.stdout
    assert "A partial week" in said.stdout
    whole = tokenwise(
        db_url, "report", "--person", person, "--since", "2026-11-09", "--until", "2026-11-22", "--by", "week"
    )
    assert "partial" not in whole.stdout
