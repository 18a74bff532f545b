"""The scheduled jobs: subscription jobs that follow the database, catch-up, nudges, retention; the CLI."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from slack_sdk import WebClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from bot.config import Settings
from bot.devtools.slack_standin import SlackStandIn
from bot.jobs import (
    SUBSCRIPTION_JOB,
    TICK_JOB,
    DigestJobs,
    add_digest_jobs,
    sync_subscription_jobs,
)
from handlers.slack.blocks import ACTION_VERDICT
from handlers.slack.client import build_slack_client
from handlers.slack.nudges import send_nudges
from storage.db import session_scope
from storage.models import AgentRun, Annotation, Person, Source, UsageRecord
from storage.nudges import due_nudges
from storage.retention import purge_expired
from storage.schedules import Schedule
from storage.subscriptions import subscribe, unsubscribe
from tests.test_digest_send import MONDAY_0900_BERLIN, NOW, delivered, setup_team

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token="xoxb-test") as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandIn) -> WebClient:
    return build_slack_client("xoxb-test", slack.url)


def config(db_url: str, **extra: object) -> Settings:
    return Settings(database_url=db_url, min_group_size=5, **extra)  # type: ignore[arg-type]


# -- subscription jobs -----------------------------------------------------------------------------


def test_subscription_jobs_follow_the_database_without_a_restart(engine: Engine, db_url: str) -> None:
    team_id = setup_team(engine)
    scheduler = BackgroundScheduler(timezone=UTC)
    jobs = DigestJobs(engine, config(db_url), lambda _due: None)  # type: ignore[arg-type,return-value]
    report = sync_subscription_jobs(scheduler, jobs)
    (subscription_id,) = report.added
    job = scheduler.get_job(f"{SUBSCRIPTION_JOB}{subscription_id}")
    assert job is not None and job.name == "Monday 09:00 Europe/Berlin"
    assert job.trigger.get_next_fire_time(None, datetime(2026, 3, 28, tzinfo=UTC)) == datetime(
        2026, 3, 30, 7, tzinfo=UTC
    )
    with session_scope(engine) as session:
        subscribe(session, channel_id="C222", team_id=team_id, schedule=Schedule(4, 17, 0, "America/New_York"))
    assert sync_subscription_jobs(scheduler, jobs).changed == [subscription_id]
    job = scheduler.get_job(f"{SUBSCRIPTION_JOB}{subscription_id}")
    assert job.name == "Friday 17:00 America/New_York"
    assert job.trigger.get_next_fire_time(None, datetime(2026, 3, 28, tzinfo=UTC)) == datetime(
        2026, 4, 3, 21, tzinfo=UTC
    )
    assert sync_subscription_jobs(scheduler, jobs).added == []
    with session_scope(engine) as session:
        unsubscribe(session, channel_id="C222", team_id=team_id)
    assert sync_subscription_jobs(scheduler, jobs).removed == [subscription_id]
    assert [j.id for j in scheduler.get_jobs()] == []


def test_a_running_scheduler_catches_up_on_start_and_picks_up_a_new_subscription_on_its_next_tick(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    now = datetime.now(UTC)
    two_hours_ago = now - timedelta(hours=2)
    a_minute_ago = now - timedelta(minutes=1)
    with session_scope(engine) as session:
        from tests.support.digest_seed import seed_team

        team = seed_team(session, "platform", 5, now - timedelta(days=9)).team
        subscribe(
            session,
            channel_id="C111",
            team_id=team.id,
            schedule=Schedule(two_hours_ago.weekday(), two_hours_ago.hour, two_hours_ago.minute, "UTC"),
        )
    scheduler = BackgroundScheduler(timezone=UTC)
    ticks: queue.Queue[JobExecutionEvent] = queue.Queue()
    scheduler.add_listener(
        lambda event: ticks.put(event) if event.job_id == TICK_JOB else None, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
    )
    add_digest_jobs(scheduler, engine, config(db_url), lambda _due: client)
    scheduler.start()
    try:
        assert ticks.get(timeout=30).exception is None  # the catch-up tick at start has run
        (first,) = slack.calls("chat.postMessage")
        assert first.args["channel"] == "C111"
        with session_scope(engine) as session:
            subscribe(
                session,
                channel_id="C222",
                team_id=team.id,
                schedule=Schedule(a_minute_ago.weekday(), a_minute_ago.hour, a_minute_ago.minute, "UTC"),
            )
        scheduler.modify_job(TICK_JOB, next_run_time=datetime.now(UTC))  # "the next tick", without waiting
        calls = slack.wait_for("chat.postMessage", 2, timeout=20)
        assert [c.args["channel"] for c in calls] == ["C111", "C222"]
        assert any(job.id.startswith(SUBSCRIPTION_JOB) for job in scheduler.get_jobs())
    finally:
        scheduler.shutdown(wait=True)
    assert len(delivered(slack)) == 2


def test_the_tick_retries_a_failed_digest(engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient) -> None:
    setup_team(engine)
    clock = iter([NOW, NOW + timedelta(minutes=1)])
    jobs = DigestJobs(engine, config(db_url), lambda _due: client, clock=lambda: next(clock))
    slack.fail_next("chat.postMessage", status=503, times=1)
    jobs.tick()
    assert delivered(slack) == []
    jobs.tick()
    assert len(delivered(slack)) == 1


# -- nudges ----------------------------------------------------------------------------------------


def _person_with_unreviewed_runs(engine: Engine, *, runs: int = 2, reviewed: int = 0, enabled: bool = True) -> int:
    with session_scope(engine) as session:
        source = Source(name="nudge-test", kind="test")
        ada = Person(email="ada@example.com", slack_user_id="W111", timezone="Europe/Berlin", nudges_enabled=enabled)
        session.add_all([source, ada])
        session.flush()
        for index in range(runs):
            run = AgentRun(
                source_id=source.id or 0,
                external_id=f"r{index}",
                person_id=ada.id or 0,
                agent="claude-code",
                started_at=NOW - timedelta(days=2, hours=index),
                title=f"Refactor {index}",
            )
            session.add(run)
            session.flush()
            if index < reviewed:
                session.add(Annotation(run_id=run.id or 0, person_id=ada.id or 0, verdict="useful"))
        return ada.id or 0


def test_on_monday_from_nine_local_each_person_with_unreviewed_runs_gets_one_dm_with_review_buttons(
    engine: Engine, slack: SlackStandIn, client: WebClient
) -> None:
    _person_with_unreviewed_runs(engine)
    with session_scope(engine) as session:
        assert due_nudges(session, NOW - timedelta(minutes=1)) == []  # 08:59 in Berlin
    results = send_nudges(engine, client, NOW)
    assert [r.status for r in results] == ["sent"]
    (dm,) = delivered(slack)
    assert dm.args["channel"] == "W111"
    assert "You have 2 runs from last week to review" in dm.args["text"]
    action_ids = {e["action_id"] for b in dm.args["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert set(ACTION_VERDICT.values()) <= action_ids
    assert send_nudges(engine, client, NOW + timedelta(hours=3)) == []  # once a week
    assert len(delivered(slack)) == 1


def test_no_nudge_when_they_are_turned_off_or_everything_is_reviewed(engine: Engine, client: WebClient) -> None:
    _person_with_unreviewed_runs(engine, enabled=False)
    assert send_nudges(engine, client, NOW) == []
    with session_scope(engine) as session:
        ada = session.exec(select(Person)).one()
        ada.nudges_enabled = True
        for run in session.exec(select(AgentRun)).all():
            session.add(Annotation(run_id=run.id or 0, person_id=ada.id or 0, verdict="partly"))
    assert send_nudges(engine, client, NOW) == []


# -- retention -------------------------------------------------------------------------------------


def test_retention_purges_only_what_is_older_than_the_window_in_one_transaction(engine: Engine) -> None:
    person_id = _person_with_unreviewed_runs(engine, runs=1, reviewed=1)
    with session_scope(engine) as session:
        source = session.exec(select(Source)).one()
        old = AgentRun(
            source_id=source.id or 0,
            external_id="old",
            person_id=person_id,
            agent="x",
            started_at=NOW - timedelta(days=401),
        )
        session.add(old)
        session.flush()
        session.add(Annotation(run_id=old.id or 0, person_id=person_id, verdict="useful", note="old note"))
        for days, key in ((401, "old-usage"), (399, "new-usage")):
            session.add(
                UsageRecord(
                    source_id=source.id or 0,
                    person_id=person_id,
                    run_id=old.id if key == "old-usage" else None,
                    occurred_at=NOW - timedelta(days=days),
                    agent="x",
                    model="m",
                    cost_usd=Decimal("1"),
                    dedupe_key=key,
                )
            )
    with session_scope(engine) as session:
        purged = purge_expired(session, NOW, 400)
    assert (purged.usage_records, purged.runs, purged.annotations) == (1, 1, 1)
    with Session(engine) as session:
        assert [u.dedupe_key for u in session.exec(select(UsageRecord)).all()] == ["new-usage"]
        assert session.exec(select(func.count()).select_from(AgentRun)).one() == 1
        assert session.exec(select(func.count()).select_from(Annotation)).one() == 1


# -- the CLI ---------------------------------------------------------------------------------------


def tokenwise(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"DATABASE_URL": db_url, "COLUMNS": "200"} | env
    for name in ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "OPENAI_API_KEY"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_add_manager_then_a_summary_then_audit_lists_both(engine: Engine, db_url: str) -> None:
    from tests.support.digest_seed import seed_team

    with session_scope(engine) as session:
        seed_team(session, "platform", 5, datetime.now(UTC) - timedelta(days=10))
    added = tokenwise(db_url, "team", "add-manager", "platform", "platform0@example.com")
    assert added.returncode == 0 and "is now a manager of platform" in added.stdout
    assert "was already" in tokenwise(db_url, "team", "add-manager", "platform", "platform0@example.com").stdout
    summary = tokenwise(db_url, "summary", "--team", "platform", "--as", "platform0@example.com")
    assert summary.returncode == 0, summary.stderr
    assert "Written from a template because no language model is configured." in summary.stdout
    refused = tokenwise(db_url, "summary", "--team", "platform", "--as", "platform1@example.com")
    assert refused.returncode == 2 and "only for its managers" in refused.stdout
    audit = json.loads(tokenwise(db_url, "audit", "--json").stdout)
    assert [e["action"] for e in audit] == ["summary.refused", "summary", "team.add-manager", "team.add-manager"]
    assert {e["scope"] for e in audit} == {"team:platform"}


def test_cli_errors_are_one_line_with_exit_status_two(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    missing = tokenwise(db_url, "digest", "send-due")
    assert missing.returncode == 2 and "Set SLACK_BOT_TOKEN" in missing.stderr
    bad_now = tokenwise(db_url, "digest", "send-due", "--now", "yesterday", SLACK_BOT_TOKEN="xoxb-test")
    assert bad_now.returncode == 2 and "Bad --now 'yesterday'" in bad_now.stderr
    no_team = tokenwise(db_url, "team", "add-manager", "nope", "a@example.com")
    assert no_team.returncode == 2 and "No team called 'nope'" in no_team.stderr


def test_send_due_with_nothing_due_says_so(tmp_path: Path, slack: SlackStandIn) -> None:
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = tokenwise(db_url, "digest", "send-due", SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.url)
    assert (result.returncode, result.stdout.strip()) == (0, "Nothing due.")


def test_the_monday_default_fires_at_nine_berlin_time(engine: Engine) -> None:
    assert MONDAY_0900_BERLIN.label() == "Monday 09:00 Europe/Berlin"


def test_the_one_scheduler_holds_digest_tick_subscriptions_and_retention_when_slack_is_configured(
    engine: Engine, db_url: str, slack: SlackStandIn
) -> None:
    from bot.jobs import build_scheduler
    from bot.services import Services

    setup_team(engine)
    settings = config(db_url, slack_bot_token="xoxb-test", slack_api_url=slack.url)
    ids = {job.id for job in build_scheduler(Services(settings=settings, engine=engine)).get_jobs()}
    assert {TICK_JOB, "retention:purge", f"{SUBSCRIPTION_JOB}1"} <= ids


def test_a_nudge_waits_for_nine_on_monday_in_each_persons_own_time_zone(engine: Engine, client: WebClient) -> None:
    _person_with_unreviewed_runs(engine)  # Europe/Berlin: 09:00 is 07:00 UTC
    with session_scope(engine) as session:
        source = session.exec(select(Source)).one()
        grace = Person(email="grace@example.com", slack_user_id="U111", timezone="America/New_York")
        session.add(grace)
        session.flush()
        session.add(
            AgentRun(
                source_id=source.id or 0,
                external_id="g1",
                person_id=grace.id or 0,
                agent="codex",
                started_at=NOW - timedelta(days=1),
            )
        )
    assert [r.person_id for r in send_nudges(engine, client, NOW)] == [1]  # New York: 03:00
    new_york_nine = NOW + timedelta(hours=6)  # 09:00 in New York (summer time since March 8)
    assert [r.status for r in send_nudges(engine, client, new_york_nine)] == ["sent"]
    assert send_nudges(engine, client, new_york_nine + timedelta(hours=1)) == []
