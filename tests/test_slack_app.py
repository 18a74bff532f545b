"""The Slack app end to end: signed requests into the running app, answers asserted at the stand-in."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.devtools.slack_standin import iter_blocks_text
from handlers.slack import blocks
from handlers.slack.slash.registry import CommandRequest
from storage.models import AgentRun, AuditEvent, Person
from tests.support.slack_harness import (
    ADA,
    ALAN,
    GRACE,
    Harness,
    annotations,
    count,
    in_last_week,
    person,
    run,
    sample,
    team,
)


def texts(message: dict) -> str:
    return "\n".join([message.get("text", ""), *iter_blocks_text(message.get("blocks", []))])


def buttons(message: dict) -> list[dict]:
    found = []
    for block in message.get("blocks", []):
        if block.get("type") == "actions":
            found += block["elements"]
        if block.get("accessory", {}).get("type") == "button":
            found.append(block["accessory"])
    return found


def test_url_verification_echoes_the_challenge(harness: Harness) -> None:
    body = sample("slack_url_verification.json")
    response = harness.post(harness.signer.sign(body, "application/json"))
    assert response.status_code == 200
    assert response.json() == {"challenge": json.loads(body)["challenge"]}


def test_empty_text_answers_help_in_the_ack_itself(harness: Harness) -> None:
    response, _url = harness.command("")
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral"
    for subcommand in ("help", "me", "runs", "team", "connect"):
        assert f"/tokenwise {subcommand}" in texts(body)
    assert harness.slack.calls("response_url") == []


def test_an_unknown_subcommand_gets_one_line_and_the_help(harness: Harness) -> None:
    body = harness.command("frobnicate")[0].json()
    assert body["text"].splitlines()[0] == "There is no `frobnicate` subcommand."
    assert "/tokenwise me" in texts(body)


def test_a_bad_period_gets_one_line_and_the_help(harness: Harness) -> None:
    body = harness.command("me next year")[0].json()
    assert "'next year' is not a period" in body["text"].splitlines()[0]
    assert "/tokenwise runs" in texts(body)


def test_me_acks_empty_then_responds_privately_with_own_numbers(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        run(session, ada, "Fix flaky test", tokens=1200, cost="0.40", outcome=True)
        run(session, ada, "Write migration", tokens=800, cost="0.20")
        run(session, person(session, GRACE), "Grace's run", tokens=99999)
        session.commit()
    response, url = harness.command("me 30d")
    assert response.status_code == 200
    assert response.content == b""  # acked at once; the report comes through respond()
    (answer,) = harness.respond_to(url)
    assert answer["response_type"] == "ephemeral"
    shown = texts(answer)
    assert "Your AI use" in shown
    assert "2 runs" in answer["text"]
    assert "2,000" in shown  # Ada's tokens only, not Grace's 99,999
    assert "99,999" not in shown
    assert "await your review" in shown
    assert blocks.ACTION_REVIEW in [b["action_id"] for b in buttons(answer)]
    harness.idle()  # the look is recorded just after the answer
    with Session(harness.engine, expire_on_commit=False) as session:
        assert len(session.exec(select(AuditEvent).where(AuditEvent.action == "slack_me")).all()) == 1


def test_me_shows_the_callers_costliest_projects_and_nobody_elses(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        run(session, ada, "Refunds", cost="0.70", project="payments")
        run(session, ada, "Refunds again", cost="0.20", project="payments")
        run(session, ada, "Docs", cost="0.05", project="handbook")
        run(session, person(session, GRACE), "Grace's run", cost="9.00", project="secret-skunkworks")
        session.commit()
    _, url = harness.command("me 30d")
    (answer,) = harness.respond_to(url)
    shown = texts(answer)
    assert "*By project*  payments $0.90 · handbook $0.05" in shown
    assert "skunkworks" not in shown


def test_me_uses_the_callers_slack_time_zone(harness: Harness) -> None:
    harness.slack.add_user(ADA, email="ada@example.com", name="Ada Lovelace", tz="Asia/Tokyo")
    _, url = harness.command("me")
    (answer,) = harness.respond_to(url)
    assert "(Asia/Tokyo)" in texts(answer)
    harness.idle()  # the time zone is written just after the answer
    with Session(harness.engine, expire_on_commit=False) as session:
        assert session.exec(select(Person).where(Person.email == "ada@example.com")).one().timezone == "Asia/Tokyo"


def test_me_adds_a_private_coaching_note_when_tokens_burn_without_outcomes(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        run(session, ada, "Big churn", tokens=600_000)
        session.commit()
    _, url = harness.command("me 30d")
    (answer,) = harness.respond_to(url)
    assert "no recorded outcome and no reviewed run" in texts(answer)


def test_no_coaching_note_once_a_run_has_an_outcome(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        run(session, person(session, ADA), "Big but shipped", tokens=600_000, outcome=True)
        session.commit()
    _, url = harness.command("me 30d")
    (answer,) = harness.respond_to(url)
    assert "no recorded outcome" not in texts(answer)


def test_runs_lists_only_the_callers_unreviewed_runs_with_review_buttons(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada, grace = person(session, ADA), person(session, GRACE)
        mine = run(session, ada, "Refactor billing")
        run(session, grace, "Grace secret project")
        session.commit()
    _, url = harness.command("runs")
    (answer,) = harness.respond_to(url)
    assert "Refactor billing" in texts(answer)
    assert "Grace secret project" not in texts(answer)
    ids = {b["action_id"] for b in buttons(answer)}
    assert ids == {"run_useful", "run_partly", "run_not_useful", "run_note"}
    assert {b["value"] for b in buttons(answer)} == {str(mine.id)}


def test_a_click_stores_the_verdict_and_updates_the_message_in_place(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        first, second = run(session, ada, "First"), run(session, ada, "Second", ago=timedelta(minutes=9))
        session.commit()
    response, url = harness.click("run_useful", str(first.id))
    assert response.status_code == 200
    (update,) = harness.respond_to(url)
    assert update["replace_original"] is True
    assert "Thanks, noted: *Useful*" in texts(update)
    assert "Second" in texts(update)
    (stored,) = annotations(harness.engine)
    assert (stored.run_id, stored.verdict) == (first.id, "useful")
    assert second.id is not None


def test_a_verdict_can_be_changed_and_stays_one_annotation(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Changeable")
        session.commit()
    _, url = harness.click("run_useful", str(target.id))
    harness.respond_to(url)
    _, url = harness.click("run_not_useful", str(target.id))
    harness.respond_to(url)
    (stored,) = annotations(harness.engine)
    assert stored.verdict == "not_useful"


def test_annotating_someone_elses_run_is_refused_and_stores_nothing(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        person(session, ADA)
        graces = run(session, person(session, GRACE), "Grace's run")
        session.commit()
    _, url = harness.click("run_useful", str(graces.id), user_id=ADA)
    (answer,) = harness.respond_to(url)
    assert "only review your own runs" in answer["text"]
    assert answer.get("replace_original") is False
    assert annotations(harness.engine) == []


def test_a_stale_button_value_gets_a_sentence(harness: Harness) -> None:
    _, url = harness.click("run_useful", "not-a-run")
    (answer,) = harness.respond_to(url)
    assert "out of date" in answer["text"]


def test_the_note_modal_opens_prefilled_and_saves_note_link_and_win(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Noted run")
        session.commit()
    _, click_url = harness.click("run_useful", str(target.id))
    harness.respond_to(click_url)
    _, note_url = harness.click("run_note", str(target.id))
    (opened,) = harness.slack.wait_for("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == blocks.VIEW_NOTE
    verdict_block = next(b for b in view["blocks"] if b.get("block_id") == "verdict")
    assert verdict_block["element"]["initial_option"]["value"] == "useful"  # prefilled: editing, not starting over
    from bot.devtools.slack_requests import modal_values

    values = modal_values(
        view, {"verdict": "partly", "note": "Saved an hour", "link": "https://github.com/acme/api/pull/7", "win": "win"}
    )
    response = harness.submit(view, values)
    assert response.status_code == 200
    (update,) = harness.respond_to(note_url)
    assert update["replace_original"] is True
    assert "Saved an hour" in texts(update)
    (stored,) = annotations(harness.engine)
    assert (stored.verdict, stored.note, stored.link, stored.share_as_win) == (
        "partly",
        "Saved an hour",
        "https://github.com/acme/api/pull/7",
        True,
    )


def test_a_bad_link_in_the_modal_is_shown_under_the_field_and_nothing_is_saved(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Linked run")
        session.commit()
    harness.click("run_note", str(target.id))
    view = harness.slack.wait_for("views.open")[0].args["view"]
    from bot.devtools.slack_requests import modal_values

    response = harness.submit(view, modal_values(view, {"verdict": "useful", "link": "javascript:alert(1)"}))
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "errors"
    assert "https://" in body["errors"]["link"]
    assert annotations(harness.engine) == []


def test_the_note_modal_is_not_opened_for_someone_elses_run(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        person(session, ADA)
        graces = run(session, person(session, GRACE), "Not yours")
        session.commit()
    _, url = harness.click("run_note", str(graces.id))
    (answer,) = harness.respond_to(url)
    assert "only review your own runs" in answer["text"]
    assert harness.slack.calls("views.open") == []


def team_of_five(harness: Harness) -> None:
    harness.slack.add_user("U333", email="linus@example.com", name="Linus Torvalds")
    harness.slack.add_user("U444", email="barbara@example.com", name="Barbara Liskov")
    with Session(harness.engine, expire_on_commit=False) as session:
        members = [person(session, ADA), person(session, GRACE), person(session, ALAN)]
        for email in ("linus@example.com", "barbara@example.com"):
            extra = Person(email=email, display_name=email.split("@")[0].title())
            session.add(extra)
            session.flush()
            members.append(extra)
        for i, member in enumerate(members):
            run(
                session, member, f"Run of {member.display_name}", tokens=1000 + i * 111, cost="0.10", ago=in_last_week()
            )
        team(session, "platform", members)
        team(session, "tiny", members[:2])
        session.commit()


def test_the_team_view_shows_totals_and_no_persons_name_or_figures(harness: Harness) -> None:
    team_of_five(harness)
    _, url = harness.command("team platform")
    (answer,) = harness.respond_to(url)
    shown = texts(answer)
    assert "Team platform" in shown
    assert "5 people active" in shown
    assert "5 runs" in answer["text"]
    for name in ("Ada", "Grace", "Alan", "Linus", "Barbara", "@example.com"):
        assert name not in shown
    for single in ("1,000", "1,111", "1,222", "1,333", "1,444"):  # each person's own token count
        assert single not in shown


def test_the_team_view_is_withheld_below_the_minimum_group_size(harness: Harness) -> None:
    team_of_five(harness)
    _, url = harness.command("team tiny")
    (answer,) = harness.respond_to(url)
    assert "Withheld: fewer than 3 people were active" in texts(answer)
    assert "runs" not in answer["text"]


def test_team_without_a_name_uses_the_callers_team_and_unknown_names_list_teams(harness: Harness) -> None:
    team_of_five(harness)
    _, url = harness.command("team")
    assert "Team platform" in texts(harness.respond_to(url)[0])
    _, url = harness.command("team platfrom")
    (answer,) = harness.respond_to(url)
    assert answer["text"] == "No team called 'platfrom'. Teams: platform, tiny."


def test_connect_explains_the_ingest_url_and_claude_code_variables(harness: Harness) -> None:
    _, url = harness.command("connect")
    shown = texts(harness.respond_to(url)[0])
    assert "https://tokenwise.example.com/v1/" in shown
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=https://tokenwise.example.com/v1/otlp" in shown
    assert "CLAUDE_CODE_ENABLE_TELEMETRY=1" in shown


def test_opening_the_home_tab_publishes_the_week_runs_and_wins(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        run(session, ada, "To review")
        won = run(session, ada, "Shipped the thing", outcome=True, ago=timedelta(minutes=7))
        session.commit()
    from storage.runs import annotate_run

    with Session(harness.engine, expire_on_commit=False) as session:
        annotate_run(session, won.id or 0, ada.id or 0, "useful", "Great result", None, True)
        session.commit()
    assert harness.home_opened().status_code == 200
    (published,) = harness.slack.wait_for("views.publish")
    assert published.args["user_id"] == ADA
    shown = "\n".join(iter_blocks_text(published.args["view"]["blocks"]))
    assert "This week at a glance" in shown
    assert "To review" in shown
    assert "Shipped the thing" in shown and "Great result" in shown


def test_a_click_in_the_home_tab_republishes_it(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Home review")
        session.commit()
    response, _ = harness.click("run_partly", str(target.id), home=True)
    assert response.status_code == 200
    harness.slack.wait_for("views.publish")
    assert annotations(harness.engine)[0].verdict == "partly"


def test_the_messages_tab_publishes_nothing(harness: Harness) -> None:
    assert harness.home_opened(tab="messages").status_code == 200
    harness.command("")  # a later request: anything the event caused would have been sent by now
    assert harness.slack.calls("views.publish") == []


def test_a_bad_signature_gets_401_and_changes_nothing(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Protected")
        session.commit()
    payload = {
        "type": "block_actions",
        "user": {"id": ADA},
        "actions": [{"action_id": "run_useful", "value": str(target.id)}],
    }
    request = harness.signer.interactive(payload)
    tampered = request.body.replace("run_useful", "run_partly")
    response = harness.http.post("/slack/events", content=tampered, headers=request.headers)
    assert response.status_code == 401
    wrong_secret = type(harness.signer)("not-the-secret").interactive(payload)
    assert harness.post(wrong_secret).status_code == 401
    assert annotations(harness.engine) == []
    assert [c.method for c in harness.slack.calls()] == []


def test_a_six_minute_old_signature_gets_401_and_changes_nothing(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Replayed")
        session.commit()
    six_minutes_ago = int(time.time()) - 6 * 60
    response, _ = harness.click("run_useful", str(target.id), timestamp=six_minutes_ago)
    assert response.status_code == 401
    response, _ = harness.command("me", timestamp=six_minutes_ago)
    assert response.status_code == 401
    assert annotations(harness.engine) == []
    assert count(harness.engine, AuditEvent) == 0
    assert [c.method for c in harness.slack.calls()] == []


def test_a_failing_lazy_listener_is_logged_with_traceback_and_the_user_gets_an_apology(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.slack.fail_next("users.info", status=500, times=5)
    with caplog.at_level(logging.ERROR, logger="tokenwise.slack"):
        _, url = harness.command("me")
        (answer,) = harness.respond_to(url)
    assert answer["text"] == blocks.APOLOGY
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures and "Traceback (most recent call last)" in failures[0].getMessage()


def test_a_rate_limited_users_info_is_retried_and_the_answer_still_lands(harness: Harness) -> None:
    harness.slack.fail_next("users.info", status=429, retry_after=0)
    _, url = harness.command("runs")
    (answer,) = harness.respond_to(url)
    assert "Nothing left to review" in answer["text"]
    assert [c.status for c in harness.slack.calls("users.info")] == [429, 200]


def test_users_info_is_cached_between_commands(harness: Harness) -> None:
    for _ in range(3):
        _, url = harness.command("runs")
        harness.respond_to(url)
    assert len(harness.slack.calls("users.info")) == 1


def test_first_contact_creates_the_person_matched_by_email(harness: Harness) -> None:
    _, url = harness.command("runs")
    harness.respond_to(url)
    harness.idle()  # the time zone is written just after the answer
    with Session(harness.engine, expire_on_commit=False) as session:
        found = session.exec(select(Person).where(Person.slack_user_id == ADA)).one()
    assert found.email == "ada@example.com"
    assert found.timezone == "Europe/London"
    assert count(harness.engine, AgentRun) == 0


def test_a_socket_mode_slash_command_reaches_the_same_listeners(harness: Harness) -> None:
    """`tokenwise serve --socket` hands Slack's envelopes to this same Bolt app (no signature there)."""
    from slack_bolt import BoltRequest

    envelope = json.loads(sample("slack_socket_mode_envelope_slash_command.json"))
    url = harness.slack.response_url()
    payload = {**envelope["payload"], "command": "/tokenwise", "text": "connect", "user_id": ADA, "response_url": url}
    payload["team_id"] = harness.slack.team_id
    bolt = harness.http_app.state.bolt
    response = bolt.dispatch(BoltRequest(body=payload, mode="socket_mode"))
    assert response.status == 200
    (answer,) = harness.respond_to(url)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in texts(answer)


def test_serve_socket_without_an_app_token_is_a_one_line_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'serve.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--socket"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert "SLACK_APP_TOKEN" in result.stderr


def test_a_bot_token_slack_refuses_still_builds_the_app_and_the_health_watch_names_it(
    engine: Engine, db_url: str
) -> None:
    from fastapi.testclient import TestClient

    from bot.app import build_watch, create_app
    from bot.devtools.slack_standin import SlackStandIn
    from bot.services import Services
    from tests.support.slack_harness import make_settings

    with SlackStandIn(token="xoxb-the-real-one") as slack:
        services = Services(settings=make_settings(slack, db_url), engine=engine)
        services.health = build_watch(services)
        (warning,) = services.health.check()
        assert "SLACK_BOT_TOKEN" in warning
        api = create_app(services)  # no auth.test at construction: ingest serves whatever Slack says
        client = TestClient(api)
        assert client.post("/slack/events", content=b"{}").status_code == 401  # served; unsigned is refused
        body = client.get("/healthz").json()
        assert body == {"status": "degraded", "database": "up", "slack": "token rejected"}


def test_without_slack_settings_the_app_serves_no_slack_route(engine: Engine, db_url: str) -> None:
    from bot.app import create_app
    from bot.config import Settings
    from bot.services import Services

    api = create_app(Services(settings=Settings(database_url=db_url, slack_signing_secret=None), engine=engine))
    assert "/slack/events" not in {getattr(route, "path", "") for route in api.routes}


def test_a_slow_slack_api_does_not_delay_the_ack_and_the_answer_lands_later(harness: Harness) -> None:
    harness.slack.hang_next("users.info")
    started = time.monotonic()
    response, url = harness.command("runs")
    acked = time.monotonic() - started
    assert response.status_code == 200 and acked < 3.0  # the lazy listener is the one waiting on Slack
    harness.slack.wait_for("users.info")  # the lazy listener is now blocked on the hanging call
    assert harness.slack.calls("response_url") == []
    harness.slack.release()
    (answer,) = harness.respond_to(url)
    assert "Nothing left to review" in answer["text"]


def test_a_failure_without_a_response_url_apologises_by_direct_message(harness: Harness) -> None:
    harness.slack.fail_next("users.info", status=500, times=5)
    assert harness.home_opened().status_code == 200
    (dm,) = harness.slack.wait_for("chat.postMessage")
    assert (dm.args["channel"], dm.args["text"]) == (ADA, blocks.APOLOGY)
    assert harness.slack.calls("views.publish") == []


def test_a_modal_saving_someone_elses_run_is_refused_by_direct_message(harness: Harness) -> None:
    from bot.devtools.slack_requests import modal_values
    from storage.runs import own_run

    with Session(harness.engine, expire_on_commit=False) as session:
        person(session, ADA)
        graces = run(session, person(session, GRACE), "Grace's run")
        view = blocks.note_modal(own_run(session, graces.id or 0, graces.person_id), {"run_id": graces.id})
        session.commit()
    response = harness.submit(view, modal_values(view, {"verdict": "useful", "note": "mine now"}))
    assert response.status_code == 200
    (dm,) = harness.slack.wait_for("chat.postMessage")
    assert dm.args["channel"] == ADA and "only review your own runs" in dm.args["text"]
    assert annotations(harness.engine) == []


def test_two_quick_clicks_on_one_run_leave_one_annotation(harness: Harness) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Double click")
        session.commit()
    with ThreadPoolExecutor(max_workers=2) as pool:
        clicks = list(pool.map(lambda action: harness.click(action, str(target.id)), ["run_useful", "run_partly"]))
    for response, url in clicks:
        assert response.status_code == 200
        harness.respond_to(url)
    (stored,) = annotations(harness.engine)
    assert stored.verdict in {"useful", "partly"}


def test_the_command_text_is_parsed_once_per_request(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsed in the ack, and the parsed request handed to the lazy answer through Bolt's context."""
    import handlers.slack.slash as slash

    seen: list[str | None] = []
    real = slash.parse_command

    def counting(text: str | None) -> CommandRequest:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(slash, "parse_command", counting)
    response, url = harness.command("me last week")
    assert response.status_code == 200
    (answer,) = harness.respond_to(url)
    assert "Your AI use" in texts(answer)
    assert seen == ["me last week"]
