"""`tokenwise console`: the real app over loopback HTTP, driven from a pipe, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from bot.devtools.console import mrkdwn_to_rich, slack_user_id_for
from storage.models import Annotation
from tests.support.slack_harness import ADA, GRACE, annotations, person, run


def console(db_url: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "120"}
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_API_URL"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def seed_ada(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        run(session, ada, "Fix flaky test", tokens=4321, outcome=True)
        run(session, ada, "Draft the RFC", tokens=1000, ago=timedelta(minutes=20))
        run(session, person(session, GRACE), "Not Ada's", tokens=777)
        session.commit()


def test_piping_tokenwise_me_prints_a_report_and_exits_at_end_of_input(engine: Engine, db_url: str) -> None:
    seed_ada(engine)
    result = console(db_url, "/tokenwise me\n", "--as", "ada@example.com")
    assert result.returncode == 0, result.stderr
    assert "Your AI use, by outcomes" in result.stdout
    assert "5,321" in result.stdout  # Ada's tokens this week
    assert "2 runs await your review" in result.stdout
    assert "Not Ada's" not in result.stdout


def test_buttons_are_pressed_by_number_and_the_review_is_stored(engine: Engine, db_url: str) -> None:
    seed_ada(engine)
    result = console(db_url, "runs\n1\n", "--as", "ada@example.com")
    assert result.returncode == 0, result.stderr
    assert "Thanks, noted: Useful" in result.stdout
    (stored,) = annotations(engine)
    assert isinstance(stored, Annotation) and stored.verdict == "useful"


def test_an_unknown_person_is_a_one_line_error_with_exit_status_2(engine: Engine, db_url: str) -> None:
    result = console(db_url, "", "--as", "nobody@example.com")
    assert result.returncode == 2
    assert "No person with email 'nobody@example.com'" in result.stdout + result.stderr


def test_slack_markup_renders_as_terminal_styles() -> None:
    assert (
        mrkdwn_to_rich("*Runs* and _notes_ in `code`")
        == "[bold]Runs[/bold] and [italic]notes[/italic] in [cyan]code[/cyan]"
    )
    assert mrkdwn_to_rich("a [link] &lt;b&gt;") == "a \\[link] <b>"
    assert slack_user_id_for("ada@example.com") == slack_user_id_for("ada@example.com")


def test_a_refused_link_asks_again_for_the_link_only_and_keeps_the_note(engine: Engine, db_url: str) -> None:
    seed_ada(engine)
    typed = "runs\n4\nmaybe\n1\nmy careful note\nnot a link\n\nhttps://example.com/pr/1\n"
    result = console(db_url, typed, "--as", "ada@example.com")
    assert result.returncode == 0, result.stderr
    assert "Type a number from 1 to 3" in result.stdout  # "maybe" is asked again at once, not refused at the end
    assert "link: The link must be a web address" in result.stdout
    retry = result.stdout.split("link: The link must be a web address", 1)[1]
    assert "Note: my careful note" in retry and "Was it worth it? (number)" not in retry
    (stored,) = [a for a in annotations(engine) if a.note]
    assert (stored.verdict, stored.note, stored.link) == ("useful", "my careful note", "https://example.com/pr/1")


def test_quit_inside_a_modal_closes_it_without_saving(engine: Engine, db_url: str) -> None:
    seed_ada(engine)
    result = console(db_url, "runs\n4\n1\nquit\nme\n", "--as", "ada@example.com")
    assert result.returncode == 0, result.stderr
    assert "Modal closed without saving." in result.stdout
    assert "Your AI use, by outcomes" in result.stdout.split("Modal closed without saving.", 1)[1]
    assert annotations(engine) == []
