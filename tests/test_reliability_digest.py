"""Faults in the scheduled and LLM paths: a language model that hangs while a manager asks for a
summary in Slack, and a digest sender killed with SIGKILL in the middle of posting, then again in the
middle of recovering (tests/test_digest_processes.py covers the cooperative crash points and the lease)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from bot.app import build_services, create_app
from bot.config import Settings
from bot.devtools.console import LocalServer
from bot.devtools.slack_requests import SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from handlers.slack import blocks
from storage.db import session_scope
from storage.roles import add_manager
from tests.support.digest_seed import seed_team
from tests.support.llm_standin import LLMStandIn
from tests.support.slack_harness import BOT_TOKEN, SIGNING_SECRET, make_settings
from tests.test_digest_processes import finish, send_due_process, statuses
from tests.test_digest_send import NOW, delivered, setup_team

LLM_TIMEOUT = 1.0


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=BOT_TOKEN) as standin:
        yield standin


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn() as standin:
        yield standin


def four_weeks_of_team(engine: Engine) -> str:
    """A six-person team with four complete weeks of usage before this one; its first member manages it."""
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday() + 28)
    with session_scope(engine) as session:
        seeded = seed_team(
            session, "platform", 6, datetime(monday.year, monday.month, monday.day, 8, tzinfo=UTC), weeks=4
        )
        add_manager(session, seeded.team.id or 0, seeded.people[0].id or 0)
        return seeded.people[0].email or ""


def manager_settings(slack: SlackStandIn, db_url: str, llm: LLMStandIn, timeout: float) -> Settings:
    """The app's settings for a team of six, a minimum group of five, and the model at the stand-in, waited on
    for `timeout` seconds with no retry."""
    return make_settings(slack, db_url).model_copy(
        update={
            "min_group_size": 5,
            "openai_api_key": "sk-test",
            "openai_base_url": llm.base_url,
            "llm_timeout_seconds": timeout,
            "llm_max_retries": 0,
        }
    )


def test_a_hanging_language_model_never_delays_the_ack_or_other_commands_and_the_manager_gets_the_template(
    engine: Engine, db_url: str, slack: SlackStandIn, llm: LLMStandIn
) -> None:
    manager_email = four_weeks_of_team(engine)
    slack.add_user("UMGR1", email=manager_email, name="Manager", tz="UTC")
    settings = manager_settings(slack, db_url, llm, LLM_TIMEOUT)
    services = build_services(settings, engine)
    signer = SlackRequests(SIGNING_SECRET, team_id=slack.team_id)
    llm.hang = True
    with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        slack.reset()
        asked = slack.response_url()
        request = signer.slash_command("summary platform", "UMGR1", asked)
        started = time.monotonic()
        response = http.post("/slack/events", content=request.body, headers=request.headers)
        assert response.status_code == 200 and time.monotonic() - started < 3

        # While the model hangs, everyone else is still answered.
        other = slack.response_url()
        request = signer.slash_command("connect", "U111", other)
        assert http.post("/slack/events", content=request.body, headers=request.headers).status_code == 200
        slack.wait_until(lambda: any(c.path.endswith(other.rsplit("/", 1)[1]) for c in slack.calls("response_url")))

        mine = asked.rsplit("/", 1)[1]
        slack.wait_until(
            lambda: len([c for c in slack.calls("response_url") if c.path.endswith(mine)]) == 2,
            timeout=LLM_TIMEOUT + 15,
        )
    working, answer = (c for c in slack.calls("response_url") if c.path.endswith(mine))
    assert working.args["text"] == blocks.SUMMARY_WORKING  # told at once, then replaced by the template
    assert answer.args["replace_original"] is True and "did not answer in time" in str(answer.args)
    assert len(llm.requests) == 1


def kill_while_hanging(slack: SlackStandIn, method: str, db_url: str, now: datetime) -> None:
    """Start a sender, let `method` hang at the stand-in, SIGKILL the sender there, then let Slack answer."""
    slack.hang_next(method)
    before = len(slack.calls(method))
    process = send_due_process(db_url, slack, now.isoformat())
    try:
        slack.wait_until(lambda: len(slack.calls(method)) > before, timeout=60)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        slack.release()


def test_a_digest_sender_killed_mid_post_and_again_mid_recovery_still_posts_exactly_once(
    engine: Engine, db_url: str, slack: SlackStandIn
) -> None:
    setup_team(engine)
    kill_while_hanging(slack, "chat.postMessage", db_url, NOW)
    slack.wait_until(lambda: len(delivered(slack)) == 1)
    kill_while_hanging(slack, "conversations.history", db_url, NOW + timedelta(minutes=11))  # the takeover dies too
    assert statuses(engine) == [("claimed", 2)]
    code, output = finish(send_due_process(db_url, slack, (NOW + timedelta(minutes=22)).isoformat()))
    assert code == 0 and "recovered" in output, output
    assert len(delivered(slack)) == 1
    assert statuses(engine) == [("posted", 3)]
