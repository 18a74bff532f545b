"""Real separate processes: two senders at once, and a sender killed between claim and post."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from bot.devtools.slack_standin import SlackStandIn
from storage.db import session_scope
from storage.models import DigestPost
from tests.test_digest_send import NOW, delivered, setup_team

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = ("C111", "C222", "C333", "C444", "C555", "C666")


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token="xoxb-test") as standin:
        yield standin


def send_due_process(db_url: str, slack: SlackStandIn, now: str, crash_at: str | None = None) -> subprocess.Popen[str]:
    """`tokenwise digest send-due --now NOW` as its own process; with `crash_at`, the same work dying hard
    at that stage (tests/support/crash_sender.py)."""
    env = os.environ | {
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": slack.url,
        "TOKENWISE_MIN_GROUP_SIZE": "5",
    }
    command = ["-m", "bot", "digest", "send-due", "--now", now]
    if crash_at:
        command = ["-m", "tests.support.crash_sender", crash_at, now]
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout + stderr


def statuses(engine: Engine) -> list[tuple[str, int]]:
    with session_scope(engine) as session:
        rows = session.exec(select(DigestPost).order_by(DigestPost.subscription_id)).all()  # type: ignore[arg-type]
        return [(row.status, row.attempts) for row in rows]


def test_two_sender_processes_at_once_post_each_digest_exactly_once(
    engine: Engine, db_url: str, slack: SlackStandIn
) -> None:
    setup_team(engine, channels=CHANNELS)
    processes = [send_due_process(db_url, slack, NOW.isoformat()) for _ in range(2)]
    outputs = [finish(process) for process in processes]
    assert [code for code, _ in outputs] == [0, 0], outputs
    assert sorted(call.args["channel"] for call in delivered(slack)) == sorted(CHANNELS)
    assert statuses(engine) == [("posted", 1)] * len(CHANNELS)
    said = "".join(text for _, text in outputs)
    assert said.count("posted ") == len(CHANNELS)  # each digest posted by one process...
    assert said.count("posted ") + said.count("skipped ") <= 2 * len(CHANNELS)  # ...and skipped or not due in the other


@pytest.mark.parametrize("stage", ["claim", "post"])
def test_a_sender_killed_between_claim_and_record_gives_exactly_one_post_after_restart(
    engine: Engine, db_url: str, slack: SlackStandIn, stage: str
) -> None:
    setup_team(engine)
    code, output = finish(send_due_process(db_url, slack, NOW.isoformat(), crash_at=stage))
    assert code == 75, output  # died hard right after claiming ("claim") or right after posting ("post")
    assert len(delivered(slack)) == (1 if stage == "post" else 0)
    assert statuses(engine) == [("claimed", 1)]
    # Restarted within the lease: the claim is still held, nothing is posted.
    code, output = finish(send_due_process(db_url, slack, (NOW + timedelta(minutes=5)).isoformat()))
    assert (code, len(delivered(slack))) == (0, 1 if stage == "post" else 0), output
    # After the lease: taken over; the history check finds a post made before the crash.
    code, output = finish(send_due_process(db_url, slack, (NOW + timedelta(minutes=11)).isoformat()))
    assert code == 0, output
    assert ("recovered" if stage == "post" else "posted") in output
    assert len(delivered(slack)) == 1
    assert statuses(engine) == [("posted", 2)]


def test_tokenwise_scheduler_runs_alone_catches_up_on_start_and_stops_cleanly(
    tmp_path: Path, sqlite_template: Path, slack: SlackStandIn
) -> None:
    import shutil
    import signal
    from datetime import UTC, datetime

    from storage.db import make_engine
    from storage.schedules import Schedule
    from storage.subscriptions import subscribe
    from tests.support.digest_seed import seed_team

    shutil.copyfile(sqlite_template, tmp_path / "scheduler.db")
    db_url = f"sqlite:///{tmp_path / 'scheduler.db'}"
    engine = make_engine(db_url)
    earlier = datetime.now(UTC) - timedelta(hours=1)
    with session_scope(engine) as session:
        team = seed_team(session, "platform", 5, datetime.now(UTC) - timedelta(days=9)).team
        subscribe(
            session,
            channel_id="C111",
            team_id=team.id,
            schedule=Schedule(earlier.weekday(), earlier.hour, earlier.minute, "UTC"),
        )
    engine.dispose()
    env = os.environ | {"DATABASE_URL": db_url, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": slack.url}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "scheduler"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        (call,) = slack.wait_for("chat.postMessage", 1, timeout=60)
        assert call.args["channel"] == "C111"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert b"scheduler running" in stderr
