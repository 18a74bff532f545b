"""Locks and the network: no call to a model, Slack or a vendor inside a database write transaction, and a
reader never waits on a writer. On SQLite, whose one write lock makes both visible (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import httpx2
import pytest
from openai import OpenAI
from slack_sdk.webhook import WebhookClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.app import build_services, create_app
from bot.devtools.console import LocalServer
from bot.devtools.slack_requests import SlackRequests
from bot.devtools.slack_standin import SlackStandIn
from handlers.slack import blocks
from handlers.slack.client import build_slack_client
from storage.models import AuditEvent, Person, UsageRecord
from tests.support import network_guard
from tests.support.ingest_fixtures import new_token
from tests.support.llm_standin import LLMStandIn
from tests.support.slack_harness import (
    ADA,
    ALAN,
    BOT_TOKEN,
    EMAILS,
    GRACE,
    SIGNING_SECRET,
    Harness,
    in_last_week,
    person,
    run,
    team,
)
from tests.test_ingest_api import usage
from tests.test_reliability_digest import four_weeks_of_team, manager_settings

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
LLM_TIMEOUT = 20.0  # seconds: longer than SQLite's busy wait (10 s); the model is held far shorter, then answers


@contextmanager
def write_lock_held(engine: Engine) -> Iterator[sqlite3.Connection]:
    """Another process's long writer: SQLite's write lock, taken by a connection of its own and held."""
    holder = sqlite3.connect(str(engine.url.database), isolation_level=None, timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE person SET display_name = display_name")
        yield holder
    finally:
        holder.rollback()
        holder.close()


def texts(reply: dict[str, object]) -> str:
    return str(reply)


@SQLITE_ONLY
def test_while_the_model_writes_a_managers_summary_others_are_answered_and_ingest_is_accepted(
    engine: Engine, db_url: str
) -> None:
    manager_email = four_weeks_of_team(engine)
    with Session(engine, expire_on_commit=False) as session:
        manager = session.exec(select(Person).where(Person.email == manager_email)).one()
        manager.slack_user_id = None  # known by email (a CSV import, say), never met in Slack
        session.add(manager)
        run(session, person(session, GRACE), "Grace's own run", ago=timedelta(minutes=3))
        session.commit()
    token = new_token(engine)
    with SlackStandIn(token=BOT_TOKEN) as slack, LLMStandIn() as llm:
        slack.add_user("UMGR1", email=manager_email, name="Manager", tz="UTC")
        settings = manager_settings(slack, db_url, llm, LLM_TIMEOUT)
        services = build_services(settings, engine)
        signer = SlackRequests(SIGNING_SECRET, team_id=slack.team_id)
        llm.hang = True  # the model thinks until released
        llm.reply = "The team made 48 agent runs."
        with LocalServer(create_app(services)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            harness = Harness(slack, services, http, signer, engine)
            slack.reset()
            manager_url = slack.response_url()
            # The manager's first contact: Tokenwise binds their Slack id, then asks the model.
            assert harness.post(signer.slash_command("summary", "UMGR1", manager_url)).status_code == 200
            llm.wait_for_request()
            (working,) = harness.respond_to(manager_url)  # told at once that the summary is being written
            assert working["text"] == blocks.SUMMARY_WORKING

            # While the model is still thinking: another person's first `/tokenwise me` is answered...
            response, grace_url = harness.command("me", user_id=GRACE)
            assert response.status_code == 200
            (mine,) = harness.respond_to(grace_url)
            assert "Your AI use, by outcomes" in texts(mine) and blocks.APOLOGY not in texts(mine)
            assert "1 runs" in mine["text"]
            # ... and a usage batch is accepted, without waiting for the model.
            posted = http.post(
                "/v1/usage",
                json={"records": [usage("while-the-model-thinks")]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=8,
            )
            assert posted.status_code == 200 and posted.json() == {"accepted": 1, "duplicates": 0}
            assert len(harness.respond_to(manager_url)) == 1  # the model has still not answered

            llm.release()
            _working, final = harness.respond_to(manager_url, count=2)
    assert final["replace_original"] is True
    assert "The team made 48 agent runs." in texts(final)
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
        assert actions.count("summary") == 1 and "slack_me" in actions
        assert session.exec(select(UsageRecord).where(UsageRecord.agent == "tokenwise")).one().input_tokens == 321


def known_callers(harness: Harness) -> None:
    """Ada, Grace and Alan, met before (bound to their Slack ids), with runs last week in team platform.
    Ada's stored time zone is stale: Slack says Europe/London."""
    with Session(harness.engine, expire_on_commit=False) as session:
        members = [person(session, ADA, "UTC"), person(session, GRACE, "America/New_York")]
        members.append(person(session, ALAN, "Europe/Berlin"))
        for member, slack_id in zip(members, (ADA, GRACE, ALAN), strict=True):
            member.slack_user_id = slack_id
            session.add(member)
            run(session, member, f"Run of {member.display_name}", ago=in_last_week())
        run(session, members[0], "Ada's run to review", ago=timedelta(minutes=3))
        team(session, "platform", members)
        session.commit()


@SQLITE_ONLY
def test_me_runs_and_team_are_answered_while_another_connection_holds_the_write_lock(harness: Harness) -> None:
    known_callers(harness)
    with write_lock_held(harness.engine):
        answers = {}
        for text in ("me", "runs", "team"):
            response, url = harness.command(text, user_id=ADA)
            assert response.status_code == 200
            (answers[text],) = harness.respond_to(url)
        # Answered while the lock is still held: the looks and the time zone wait for the writer.
        assert "Your AI use, by outcomes" in answers["me"]["text"] or "Your Tokenwise numbers" in answers["me"]["text"]
        assert "Ada's run to review" in texts(answers["runs"])
        assert "Team platform" in texts(answers["team"])
        for answer in answers.values():
            assert blocks.APOLOGY not in texts(answer)
    # The writer is gone: the looks are recorded and the time zone follows Slack's.
    harness.idle()
    assert sorted(looks(harness.engine)) == ["slack_me", "slack_team"]
    with Session(harness.engine) as session:
        ada = session.exec(select(Person).where(Person.email == EMAILS[ADA])).one()
        assert ada.timezone == "Europe/London"


def looks(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [e.action for e in session.exec(select(AuditEvent)).all() if not e.action.startswith("slack.")]


@SQLITE_ONLY
def test_a_first_contact_while_the_database_cannot_write_gets_a_sentence_that_says_so(harness: Harness) -> None:
    with write_lock_held(harness.engine):
        response, url = harness.command("me", user_id=GRACE)  # never met: binding her needs a write
        assert response.status_code == 200
        (said,) = harness.respond_to(url, timeout=30)
    assert said["text"] == blocks.DATABASE_BUSY


def call_each_client(slack: SlackStandIn, llm: LLMStandIn) -> dict[str, Callable[[], object]]:
    """One request through each HTTP client Tokenwise uses, to its loopback stand-in."""

    async def github_style() -> None:  # gidgethub's transport: httpx2's async client
        async with httpx2.AsyncClient() as client:
            await client.get(slack.url + "auth.test")

    openai = OpenAI(api_key="sk-test", base_url=llm.base_url, max_retries=0, timeout=5)
    return {
        "slack web api": lambda: build_slack_client(BOT_TOKEN, slack.url).chat_postMessage(channel=ADA, text="hi"),
        "response_url": lambda: WebhookClient(slack.response_url()).send(text="hi"),
        "openai": lambda: openai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]),
        "github": lambda: asyncio.run(github_style()),
    }


@pytest.mark.parametrize("client", ["slack web api", "response_url", "openai", "github"])
def test_a_network_call_inside_a_write_transaction_fails_loudly_whatever_the_client(
    engine: Engine, client: str
) -> None:
    with SlackStandIn(token=BOT_TOKEN) as slack, LLMStandIn() as llm:
        call = call_each_client(slack, llm)[client]
        seen = len(network_guard.VIOLATIONS)
        with Session(engine) as session:
            person(session, ADA)  # written, not committed: this thread holds a write transaction
            with pytest.raises(network_guard.NetworkInsideWriteTransaction, match="inside a database write"):
                call()
            session.rollback()
        call()  # after the transaction: fine
        assert len(network_guard.VIOLATIONS) == seen + 1
        del network_guard.VIOLATIONS[seen:]  # expected here; the conftest fixture must not fail this test
