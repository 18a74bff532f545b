"""Logs at INFO and above never carry a token, an email or a note, whatever happens: success, bad
input, a database that is down, a database error quoting its row, Slack failing. The app is driven
through its real edges while every log record (with its traceback) is captured."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from bot.app import create_app
from bot.config import Settings
from bot.devtools.slack_requests import modal_values
from bot.log_safety import frames
from bot.services import Services
from storage.db import make_engine
from tests.support.ingest_fixtures import new_token
from tests.support.slack_harness import (
    ADA,
    BOT_TOKEN,
    EMAILS,
    SIGNING_SECRET,
    Harness,
    person,
    run,
)

EMAIL = "secret.person@example.com"
NOTE = "the-note-text-nobody-may-log"
FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything captured at INFO and above, formatted as a handler would write it (tracebacks too)."""
    return "\n".join(FORMAT.format(r) for r in caplog.records if r.levelno >= logging.INFO)


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s and s in text]


def item(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "dedupe_key": key,
        "email": EMAIL,
        "occurred_at": "2026-11-24T10:00:00Z",
        "agent": "claude-code",
        "model": "m",
        "input_tokens": 1,
        "output_tokens": 1,
        **extra,
    }


def test_ingest_logs_no_token_or_email_through_success_refusal_outage_and_database_errors(
    engine: Engine, db_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = new_token(engine)
    auth = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app(Services(settings=Settings(database_url=db_url), engine=engine)))  # type: ignore[call-arg]
    dead = make_engine(f"sqlite:///{tmp_path}/missing/x.db")
    down = TestClient(create_app(Services(settings=Settings(database_url="sqlite://"), engine=dead)))  # type: ignore[call-arg]
    with caplog.at_level(logging.DEBUG):
        assert client.post("/v1/usage", json={"records": [item("a")]}, headers=auth).status_code == 200
        assert client.post("/v1/usage", json={"records": [item("b", input_tokens=-1)]}, headers=auth).status_code == 422
        assert (
            client.post(
                "/v1/usage", json={"records": [item("c")]}, headers={"Authorization": "Bearer tw_nope"}
            ).status_code
            == 401
        )
        assert down.post("/v1/usage", json={"records": [item("d")]}, headers=auth).status_code == 503
        # A database error that quotes the row it failed on (PostgreSQL's DETAIL, SQLite's message).
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text(
                        "CREATE FUNCTION refuse_person() RETURNS trigger AS $$ BEGIN "
                        "RAISE EXCEPTION 'refused %', NEW.email USING DETAIL = 'email ' || NEW.email; END $$ "
                        "LANGUAGE plpgsql"
                    )
                )
                connection.execute(
                    text("CREATE TRIGGER refuse BEFORE INSERT ON person FOR EACH ROW EXECUTE FUNCTION refuse_person()")
                )
            else:
                connection.execute(
                    text("CREATE TRIGGER refuse BEFORE INSERT ON person BEGIN SELECT RAISE(ABORT, 'refused'); END")
                )
        other = {**item("e"), "email": "another.secret@example.com"}
        try:
            assert client.post("/v1/usage", json={"records": [other]}, headers=auth).status_code == 500
        finally:
            with engine.begin() as connection:
                postgres = engine.dialect.name == "postgresql"
                connection.execute(text("DROP TRIGGER refuse" + (" ON person" if postgres else "")))
                if postgres:
                    connection.execute(text("DROP FUNCTION refuse_person()"))
    everything = logged(caplog)
    assert "Traceback" in everything  # the failures are logged with where they happened...
    assert leaks(everything, [token, token[3:], EMAIL, "another.secret@example.com"]) == []  # ...but no data
    debug = "\n".join(FORMAT.format(r) for r in caplog.records)
    assert "another.secret@example.com" in debug or engine.dialect.name == "sqlite"  # details stay at DEBUG


def test_slack_logs_no_token_email_or_note_through_commands_notes_and_failures(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Logged run", ago=timedelta(minutes=3))
        session.commit()
    with caplog.at_level(logging.INFO):
        _, url = harness.command("me")
        harness.respond_to(url)
        harness.click("run_note", str(target.id))
        view = harness.slack.wait_for("views.open")[0].args["view"]
        response = harness.submit(view, modal_values(view, {"verdict": "useful", "note": NOTE}))
        assert response.status_code == 200
        harness.slack.wait_until(lambda: len(harness.slack.calls("response_url")) >= 2)
        harness.slack.fail_next("chat.postMessage", status=500, times=10)  # the apology DM fails too
        harness.slack.fail_next("views.publish", status=500, times=10)
        harness.home_opened()
        harness.slack.wait_until(lambda: len(harness.slack.calls("chat.postMessage")) >= 1)
        harness.http.post(
            "/slack/events", content="payload=%7B%7D", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    everything = logged(caplog)
    assert "failed" in everything
    assert leaks(everything, [EMAILS[ADA], NOTE, BOT_TOKEN, SIGNING_SECRET]) == []


def test_frames_keep_the_traceback_and_withhold_every_message() -> None:
    inner_text, outer_text = "inner " + EMAIL, "outer tw_" + "token"  # not literals: frames show source lines
    try:
        try:
            raise KeyError(inner_text)
        except KeyError as inner:
            raise ValueError(outer_text) from inner
    except ValueError as error:
        shown = frames(error)
    assert shown.count("Traceback (most recent call last)") == 2
    assert "builtins.KeyError (message withheld from logs)" in shown
    assert shown.index("KeyError") < shown.index("ValueError")  # oldest first, as Python prints them
    assert EMAIL not in shown and outer_text not in shown
    assert "test_frames_keep_the_traceback" in shown


def test_uvicorns_access_log_lines_carry_no_bearer_token(
    engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens travel in a header, never in the URL, so access logs (method, path, status) cannot hold one."""
    from tests.support.ingest_fixtures import make_app, running_server

    token = new_token(engine)
    access_log = logging.getLogger("uvicorn.access")  # uvicorn's own handler; it does not propagate
    with running_server(make_app(engine, db_url)) as base:
        access_log.setLevel(logging.INFO)
        access_log.addHandler(caplog.handler)
        try:
            httpx.post(f"{base}/v1/usage", json={"records": [item("z")]}, headers={"Authorization": f"Bearer {token}"})
        finally:
            access_log.removeHandler(caplog.handler)
    access = logged(caplog)
    assert "/v1/usage" in access  # the access line was captured...
    assert leaks(access, [token, EMAIL]) == []  # ...and holds neither
