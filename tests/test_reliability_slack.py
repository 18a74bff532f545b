"""Slack misbehaving: retried deliveries repeat no side effect, and a Slack answering 429, 500 or nothing
at all costs the user at most an apology, never an unanswered command or a blocked app."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlmodel import Session, select

from bot.devtools.slack_requests import SignedRequest
from handlers.slack import blocks
from handlers.slack.retries import Deliveries, delivery_key
from storage.models import AuditEvent
from tests.support.slack_harness import (
    ADA,
    GRACE,
    Harness,
    annotations,
    person,
    run,
)


def retried(harness: Harness, request: SignedRequest, number: int = 1) -> SignedRequest:
    """Slack's retry of a delivery: the same body, signed anew, with X-Slack-Retry-Num and its reason."""
    again = harness.signer.sign(request.body, request.headers["Content-Type"])
    return SignedRequest(
        again.body, {**again.headers, "X-Slack-Retry-Num": str(number), "X-Slack-Retry-Reason": "http_timeout"}
    )


def settle(harness: Harness) -> None:
    """Wait until a fresh command has been answered: work the app started before it has had its turn."""
    url = harness.slack.response_url()
    harness.post(harness.signer.slash_command("runs", GRACE, url))
    harness.respond_to(url)


def answers_recorded(engine: Any) -> int:
    """Audit events of answers given: the first contact's Slack binding (`slack.bound`) is not one."""
    with Session(engine) as session:
        return len([e for e in session.exec(select(AuditEvent)).all() if not e.action.startswith("slack.")])


def test_a_retried_slash_command_is_acked_and_answered_once(harness: Harness) -> None:
    url = harness.slack.response_url()
    request = harness.signer.slash_command("me", ADA, url)
    assert harness.post(request).status_code == 200
    harness.respond_to(url)
    for number in (1, 2, 3):
        response = harness.post(retried(harness, request, number))
        assert response.status_code == 200 and response.content == b""
    settle(harness)
    assert len(harness.respond_to(url)) == 1
    assert answers_recorded(harness.engine) == 1
    assert harness.services.slack_deliveries.skipped == 3


def test_a_retried_click_stores_one_verdict_and_updates_the_message_once(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Clicked once")
        session.commit()
    url = harness.slack.response_url()
    request = harness.signer.block_actions(ADA, "run_useful", str(target.id), response_url=url)
    harness.post(request)
    harness.respond_to(url)
    first = annotations(harness.engine)[0].updated_at
    assert harness.post(retried(harness, request)).status_code == 200
    settle(harness)
    assert len(harness.respond_to(url)) == 1
    (stored,) = annotations(harness.engine)
    assert stored.updated_at == first


def test_a_retried_event_publishes_the_home_tab_once(harness: Harness) -> None:
    request = harness.signer.app_home_opened(ADA)
    harness.post(request)
    harness.slack.wait_for("views.publish")
    harness.post(retried(harness, request, 1))
    harness.post(retried(harness, request, 2))
    settle(harness)
    assert len(harness.slack.calls("views.publish")) == 1


def test_a_retry_of_a_delivery_never_seen_is_handled_so_nothing_is_lost(harness: Harness) -> None:
    request = harness.signer.app_home_opened(ADA)  # the first attempt never reached us (say, a restart)
    assert harness.post(retried(harness, request)).status_code == 200
    harness.slack.wait_for("views.publish")
    assert harness.services.slack_deliveries.skipped == 0


def test_deliveries_are_forgotten_after_their_retry_window() -> None:
    now = [0.0]
    seen = Deliveries(seconds=60, clock=lambda: now[0])
    assert seen.first_time("event_id:Ev1")
    assert not seen.first_time("event_id:Ev1")
    now[0] = 61
    assert seen.first_time("event_id:Ev1")


def test_the_delivery_key_is_the_event_id_then_the_trigger_id_then_the_body() -> None:
    assert delivery_key({"event_id": "Ev1", "trigger_id": "t"}, "x") == "event_id:Ev1"
    assert delivery_key({"trigger_id": "t1"}, "x") == "trigger_id:t1"
    assert delivery_key({}, "a") != delivery_key({}, "b")


def test_slack_answering_500_to_the_home_tab_gets_the_user_an_apology_by_dm(harness: Harness) -> None:
    harness.slack.fail_next("views.publish", status=500, times=5)
    assert harness.home_opened().status_code == 200
    (dm,) = harness.slack.wait_for("chat.postMessage")
    assert dm.args["text"] == blocks.APOLOGY and dm.args["channel"] == ADA


def test_slack_answering_429_to_the_home_tab_is_retried_after_retry_after(harness: Harness) -> None:
    harness.slack.fail_next("views.publish", status=429, retry_after=0, times=2)
    harness.home_opened()
    harness.slack.wait_until(lambda: any(c.status == 200 for c in harness.slack.calls("views.publish")))
    assert [c.status for c in harness.slack.calls("views.publish")] == [429, 429, 200]
    assert harness.slack.calls("chat.postMessage") == []


def test_a_hanging_response_url_blocks_neither_the_ack_nor_other_peoples_commands(harness: Harness) -> None:
    harness.slack.hang_next("response_url")
    try:
        started = time.monotonic()
        response, _stuck = harness.command("runs", user_id=ADA)
        assert response.status_code == 200 and time.monotonic() - started < 3
        harness.slack.wait_until(lambda: len(harness.slack.calls("response_url")) == 1)  # hanging now
        with Session(harness.engine, expire_on_commit=False) as session:
            run(session, person(session, GRACE), "Grace's run", ago=timedelta(minutes=2))
            session.commit()
        response, url = harness.command("runs", user_id=GRACE)
        assert response.status_code == 200
        (answer,) = harness.respond_to(url)
        assert "Grace's run" in str(answer)
    finally:
        harness.slack.release()


def test_a_hanging_views_open_leaves_the_click_acked_and_stores_nothing(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Note me")
        session.commit()
    harness.slack.hang_next("views.open")
    try:
        started = time.monotonic()
        response, _ = harness.click("run_note", str(target.id))
        assert response.status_code == 200 and time.monotonic() - started < 3
        harness.slack.wait_for("views.open")
        assert annotations(harness.engine) == []
    finally:
        harness.slack.release()
