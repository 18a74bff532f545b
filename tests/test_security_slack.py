"""Who may talk to /slack/events, and what each person may see and change through it.

Every forged, expired, altered or unsigned request gets 401 and changes nothing; oversized bodies get
413; a person reads and reviews only their own runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlmodel import Session

from bot.devtools.slack_requests import SignedRequest, SlackRequests, modal_values
from storage.models import AuditEvent
from tests.support.slack_harness import (
    ADA,
    GRACE,
    Harness,
    annotations,
    count,
    person,
    run,
)

KINDS: dict[str, Callable[[SlackRequests, int | None], SignedRequest]] = {
    "slash command": lambda s, ts: s.slash_command("me", ADA, "http://127.0.0.1:9/unused", timestamp=ts),
    "button click": lambda s, ts: s.block_actions(
        ADA, "run_useful", "1", response_url="http://127.0.0.1:9/x", timestamp=ts
    ),
    "event": lambda s, ts: s.app_home_opened(ADA, timestamp=ts),
}


def forged(request: SignedRequest, how: str) -> tuple[str, dict[str, str]]:
    body, headers = request.body, dict(request.headers)
    if how == "body altered":
        body = body.replace(ADA, GRACE)
    elif how == "signature from another secret":
        other = SlackRequests("not-the-signing-secret").sign(body, headers["Content-Type"])
        headers["X-Slack-Signature"] = other.headers["X-Slack-Signature"]
    elif how == "signature missing":
        del headers["X-Slack-Signature"]
    elif how == "timestamp missing":
        del headers["X-Slack-Request-Timestamp"]
    elif how == "both headers missing":
        del headers["X-Slack-Signature"], headers["X-Slack-Request-Timestamp"]
    elif how == "timestamp not a number":
        headers["X-Slack-Request-Timestamp"] = "yesterday"
    elif how == "signature garbage":
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    return body, headers


HOW = [
    "body altered",
    "signature from another secret",
    "signature missing",
    "timestamp missing",
    "both headers missing",
    "timestamp not a number",
    "signature garbage",
]


@pytest.mark.parametrize("kind", list(KINDS))
def test_forged_altered_and_unsigned_requests_get_401_and_change_nothing(harness: Harness, kind: str) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        run(session, person(session, ADA), "Protected")
        session.commit()
    for how in HOW:
        body, headers = forged(KINDS[kind](harness.signer, None), how)
        response = harness.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 401, (kind, how)
    assert annotations(harness.engine) == []
    assert count(harness.engine, AuditEvent) == 0
    assert harness.slack.calls() == []


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("skew", [-5 * 60 - 30, 5 * 60 + 30])
def test_signatures_more_than_five_minutes_old_or_ahead_get_401(harness: Harness, kind: str, skew: int) -> None:
    request = KINDS[kind](harness.signer, int(time.time()) + skew)
    assert harness.post(request).status_code == 401
    assert harness.slack.calls() == []


def test_a_genuine_request_passes_the_same_checks(harness: Harness) -> None:
    """The control for the tests above: the same request, correctly signed, is served."""
    response = harness.post(KINDS["event"](harness.signer, None))
    assert response.status_code == 200
    harness.slack.wait_for("views.publish")


def test_a_body_over_one_mebibyte_gets_413_before_any_work(harness: Harness) -> None:
    request = harness.signer.slash_command("me " + "x" * (1024 * 1024), ADA, harness.slack.response_url())
    response = harness.post(request)
    assert response.status_code == 413
    assert harness.slack.calls() == []
    assert count(harness.engine, AuditEvent) == 0


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(harness: Harness) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(80):
            yield b"text=" + b"x" * 16384

    response = harness.http.post(
        "/slack/events",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": "1"},
    )
    assert response.status_code == 413


def test_nobody_can_review_open_or_note_someone_elses_run(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        person(session, ADA)
        graces = run(session, person(session, GRACE), "Grace's secret project")
        mine = run(session, person(session, ADA), "Ada's run", ago=timedelta(minutes=1))
        session.commit()
    for action in ("run_useful", "run_partly", "run_not_useful", "run_note"):
        _, url = harness.click(action, str(graces.id), user_id=ADA)
        (answer,) = harness.respond_to(url)
        assert "only review your own runs" in answer["text"], action
        assert "Grace's secret project" not in json.dumps(answer)
    assert harness.slack.calls("views.open") == []
    # A modal opened for Ada's own run, submitted with Grace's run id in its metadata.
    harness.click("run_note", str(mine.id))
    view = harness.slack.wait_for("views.open")[0].args["view"]
    view = {**view, "private_metadata": view["private_metadata"].replace(str(mine.id), str(graces.id))}
    response = harness.submit(view, modal_values(view, {"verdict": "useful", "note": "not mine to judge"}))
    assert response.status_code == 200
    harness.slack.wait_for("chat.postMessage")  # the refusal, by DM
    assert "only review your own runs" in harness.slack.calls("chat.postMessage")[0].args["text"]
    assert annotations(harness.engine) == []


def test_me_and_runs_show_only_the_callers_own_runs_and_numbers(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        run(session, person(session, ADA), "Ada's run", tokens=1111)
        run(session, person(session, GRACE), "Grace's run", tokens=987_654)
        session.commit()
    for text in ("me 30d", "runs"):
        _, url = harness.command(text, user_id=ADA)
        (answer,) = harness.respond_to(url)
        shown = json.dumps(answer)
        assert "Grace" not in shown and "987,654" not in shown and "987654" not in shown, text
        assert answer["response_type"] == "ephemeral"
