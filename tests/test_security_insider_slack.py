"""Insiders on the Slack side: text that would mention a channel or hide a link, replayed signed
requests, run ids probed through crafted buttons, and previews that leave no trace.

Everything goes through the real app (FastAPI + Bolt on a loopback port, the stand-in as Slack) or the
real digest path, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from bot.app import create_app
from bot.config import Settings
from bot.devtools.console import LocalServer
from bot.devtools.slack_requests import SignedRequest, modal_values
from bot.devtools.slack_standin import SlackStandIn
from bot.services import Services
from handlers.slack.client import build_slack_client
from handlers.slack.digest_posts import send_due
from handlers.slack.people import SlackPeople
from storage.db import session_scope
from storage.models import AuditEvent, SlackRequestSeen, table_of
from storage.runs import NOT_YOURS, annotate_run, clean_link
from storage.schedules import Schedule
from storage.slack_requests_seen import KEEP, SeenRequests, claim_request, purge_seen
from storage.subscriptions import subscribe
from tests.support.digest_seed import seed_team
from tests.support.slack_harness import (
    ADA,
    GRACE,
    Harness,
    annotations,
    make_settings,
    person,
    run,
)
from tests.test_digest_jobs import tokenwise
from tests.test_reliability_slack import settle

EVIL_TEAM = "<!channel> <https://evil.example|Click>"
RAW = ("<!channel>", "<!here>", "<https://evil")


def text_objects(value: Any) -> Iterator[tuple[str, str]]:
    """(type, text) of every Block Kit text object in a payload, however deep."""
    if isinstance(value, dict):
        if value.get("type") in {"mrkdwn", "plain_text"} and isinstance(value.get("text"), str):
            yield value["type"], value["text"]
        for item in value.values():
            yield from text_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from text_objects(item)


def assert_nothing_raw(payload: dict[str, Any]) -> str:
    """No mention or link markup in the fallback text or in any mrkdwn; the mrkdwn shown, joined.

    plain_text (headers, buttons, modal titles) is shown literally and never parsed by Slack, so a
    name may appear there as typed.
    """
    fallback = str(payload.get("text") or "")
    mrkdwn = [text for kind, text in text_objects(payload.get("blocks") or []) if kind == "mrkdwn"]
    for raw in RAW:
        assert raw not in fallback, (raw, fallback)
        for text in mrkdwn:
            assert raw not in text, (raw, text)
    return "\n".join([fallback, *mrkdwn])


# -- 1. mentions and links -------------------------------------------------------------------------
def test_a_team_named_like_a_mention_cannot_ping_the_channel_or_hide_a_link_in_its_digest(
    engine: Engine, db_url: str
) -> None:
    first_week = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        seeded = seed_team(session, EVIL_TEAM, 5, first_week, weeks=4)
        subscribe(
            session,
            channel_id="C222",
            team_id=seeded.team.id,
            schedule=Schedule(weekday=0, hour=9, minute=0, timezone="Europe/Berlin"),
        )
    with SlackStandIn(token="xoxb-test") as slack:
        client = build_slack_client("xoxb-test", slack.url)
        results = send_due(
            engine,
            Settings(database_url=db_url, min_group_size=5),
            lambda _due: client,
            datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
        )
        assert [r.status for r in results] == ["posted"]
        (call,) = [c for c in slack.calls("chat.postMessage") if c.response.get("ok")]
    shown = assert_nothing_raw(call.args)
    assert "&lt;!channel&gt; &lt;https://evil.example|Click&gt;" in call.args["text"]  # named, not obeyed
    assert "&lt;!channel&gt;" in shown


def test_a_note_and_a_title_with_mentions_are_shown_escaped_in_runs_home_and_modal(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        mine = run(session, ada, "<!channel> deploy <https://evil.example|now>")
        annotate_run(session, mine.id or 0, ada.id or 0, "useful", note="<!here> look at this", share_as_win=True)
        session.commit()
    _, url = harness.click("run_partly", str(mine.id))  # keeps the note; the reviewed run stays on top
    (answer,) = harness.respond_to(url)
    shown = assert_nothing_raw(answer)
    assert "&lt;!here&gt; look at this" in shown and "&lt;!channel&gt; deploy" in shown
    harness.home_opened()
    (published,) = harness.slack.wait_for("views.publish")
    assert "&lt;!here&gt; look at this" in assert_nothing_raw(published.args["view"])
    harness.click("run_note", str(mine.id))
    (opened,) = harness.slack.wait_for("views.open")
    modal = opened.args["view"]
    assert "&lt;!channel&gt; deploy" in assert_nothing_raw(modal)
    assert modal["title"]["text"] == "Review a run"


def test_a_link_cannot_carry_its_own_label_into_slacks_link_syntax() -> None:
    """In `<url|label>` a "|" inside the url would start a label of the author's choosing."""
    assert clean_link("https://evil.example/x|Your-PR-was-merged") == "https://evil.example/x%7CYour-PR-was-merged"


# -- 2. replays ------------------------------------------------------------------------------------
def seen_rows(engine: Engine) -> list[tuple[str, int]]:
    table = table_of(SlackRequestSeen)
    with engine.connect() as connection:
        return [(r[0], r[1]) for r in connection.execute(select(table.c.signature, table.c.request_timestamp))]


def audited(engine: Engine, action: str) -> int:
    table = table_of(AuditEvent)
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(table).where(table.c.action == action)).scalar_one()
        )


def test_the_same_signed_forget_me_confirm_sent_twice_deletes_once(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada = person(session, ADA)
        first = run(session, ada, "Reviewed before")
        annotate_run(session, first.id or 0, ada.id or 0, "useful")
        session.commit()
    url = harness.slack.response_url()
    request = harness.signer.slash_command("forget-me confirm", ADA, url)
    assert harness.post(request).status_code == 200
    harness.respond_to(url)
    assert annotations(harness.engine) == []
    with Session(harness.engine, expire_on_commit=False) as session:  # reviewed after forgetting
        later = run(session, person(session, ADA), "Reviewed after", ago=timedelta(minutes=1))
        annotate_run(session, later.id or 0, later.person_id, "partly")
        session.commit()
    replay = harness.post(request)
    assert (replay.status_code, replay.content) == (200, b"")
    settle(harness)
    assert len(harness.respond_to(url)) == 1
    assert [a.run_id for a in annotations(harness.engine)] == [later.id]  # the replay deleted nothing
    assert audited(harness.engine, "forget-me") == 1
    timestamp = int(request.headers["X-Slack-Request-Timestamp"])
    assert (request.headers["X-Slack-Signature"], timestamp) in seen_rows(harness.engine)


def test_the_same_signed_click_sent_twice_writes_once(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Clicked")
        session.commit()
    url = harness.slack.response_url()
    useful = harness.signer.block_actions(ADA, "run_useful", str(target.id), response_url=url)
    assert harness.post(useful).status_code == 200
    harness.respond_to(url)
    _, other = harness.click("run_not_useful", str(target.id))  # Ada changes her mind
    harness.respond_to(other)
    replay = harness.post(useful)
    assert (replay.status_code, replay.content) == (200, b"")
    settle(harness)
    (stored,) = annotations(harness.engine)
    assert stored.verdict == "not_useful"  # the replayed "useful" did not overwrite it
    assert len(harness.respond_to(url)) == 1


def test_a_replayed_note_submission_is_not_saved_again(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Noted")
        session.commit()
    harness.click("run_note", str(target.id))
    view = harness.slack.wait_for("views.open")[0].args["view"]
    submission = harness.signer.view_submission(ADA, view, modal_values(view, {"verdict": "useful", "note": "v1"}))
    assert harness.post(submission).status_code == 200
    harness.slack.wait_until(lambda: bool(annotations(harness.engine)))
    with Session(harness.engine, expire_on_commit=False) as session:
        annotate_run(session, target.id or 0, target.person_id, "partly", note="v2")
        session.commit()
    replay = harness.post(submission)
    assert (replay.status_code, replay.content) == (200, b"")
    settle(harness)
    (stored,) = annotations(harness.engine)
    assert (stored.verdict, stored.note) == ("partly", "v2")


def test_a_replay_sent_to_another_replica_is_refused_too(harness: Harness, engine: Engine, db_url: str) -> None:
    """Two processes, one database: the second never saw the request, the table did."""
    with Session(harness.engine, expire_on_commit=False) as session:
        target = run(session, person(session, ADA), "Two replicas")
        session.commit()
    url = harness.slack.response_url()
    click = harness.signer.block_actions(ADA, "run_useful", str(target.id), response_url=url)
    harness.post(click)
    harness.respond_to(url)
    before = annotations(harness.engine)[0].updated_at
    other = Services(settings=make_settings(harness.slack, db_url), engine=engine, people=SlackPeople(60))
    with LocalServer(create_app(other)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        replay = http.post("/slack/events", content=click.body, headers=click.headers)
    assert (replay.status_code, replay.content) == (200, b"")
    settle(harness)
    assert annotations(harness.engine)[0].updated_at == before
    assert len(harness.respond_to(url)) == 1


def test_forged_copies_get_401_and_claim_nothing_so_the_genuine_request_still_runs(harness: Harness) -> None:
    url = harness.slack.response_url()
    genuine = harness.signer.slash_command("runs", ADA, url)
    unsigned = {k: v for k, v in genuine.headers.items() if k != "X-Slack-Signature"}
    assert harness.post(SignedRequest(genuine.body, unsigned)).status_code == 401
    altered = genuine.body.replace(ADA, GRACE)
    assert harness.post(SignedRequest(altered, genuine.headers)).status_code == 401
    assert seen_rows(harness.engine) == []
    assert harness.post(genuine).status_code == 200
    harness.respond_to(url)
    assert len(seen_rows(harness.engine)) == 1


def test_the_same_body_signed_at_another_second_is_not_a_replay(harness: Harness) -> None:
    """What Slack's retries look like (a new timestamp, so a new signature): handled as a request."""
    url = harness.slack.response_url()
    first = harness.signer.slash_command("runs", ADA, url)
    resent = harness.signer.sign(
        first.body, first.headers["Content-Type"], int(first.headers["X-Slack-Request-Timestamp"]) - 1
    )
    assert resent.headers["X-Slack-Signature"] != first.headers["X-Slack-Signature"]
    harness.post(first)
    harness.post(resent)
    assert len(harness.respond_to(url, count=2)) == 2


def test_claims_are_first_come_and_old_ones_are_purged(engine: Engine) -> None:
    now = datetime.now(UTC)
    assert claim_request(engine, "v0=" + "a" * 64, 1_800_000_000, now) is True
    assert claim_request(engine, "v0=" + "a" * 64, 1_800_000_000, now) is False
    assert claim_request(engine, "v0=" + "b" * 64, 1_800_000_000, now - KEEP - timedelta(seconds=1)) is True
    assert purge_seen(engine, now) == 1
    assert [s for s, _ in seen_rows(engine)] == ["v0=" + "a" * 64]
    assert claim_request(engine, "v0=" + "a" * 64, 1_800_000_000, now) is False  # still remembered
    with pytest.raises(ValueError):
        claim_request(engine, "", 1)


def test_seen_requests_purge_every_n_claims(engine: Engine) -> None:
    old = datetime.now(UTC) - KEEP - timedelta(minutes=1)
    seen = SeenRequests(engine, purge_every=3)
    assert seen.claim("v0=old1", 1, old) and seen.claim("v0=old2", 1, old)
    assert len(seen_rows(engine)) == 2
    assert seen.claim("v0=new", 1)  # the third claim purges what can no longer verify, on a thread of its own
    deadline = time.monotonic() + 10
    while len(seen_rows(engine)) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [s for s, _ in seen_rows(engine)] == ["v0=new"]
    assert seen.claim("v0=new", 1) is False and seen.replays == 1


# -- 3. a run id that is not yours -----------------------------------------------------------------
def missing_and_others(harness: Harness) -> tuple[int, int, int]:
    with Session(harness.engine, expire_on_commit=False) as session:
        person(session, ADA)
        graces = run(session, person(session, GRACE), "Grace's secret project")
        mine = run(session, person(session, ADA), "Ada's run", ago=timedelta(minutes=1))
        session.commit()
    return graces.id or 0, (mine.id or 0) + 10_000, mine.id or 0


@pytest.mark.parametrize("action", ["run_useful", "run_partly", "run_not_useful", "run_note"])
def test_someone_elses_run_and_a_missing_run_get_byte_identical_answers(harness: Harness, action: str) -> None:
    others, missing, _mine = missing_and_others(harness)
    answers = []
    for run_id in (others, missing):
        response, url = harness.click(action, str(run_id))
        (answer,) = harness.respond_to(url)
        answers.append((response.status_code, response.content, json.dumps(answer, sort_keys=True)))
    assert answers[0] == answers[1]
    assert NOT_YOURS in answers[0][2] and str(others) not in answers[0][2]
    assert annotations(harness.engine) == []
    assert harness.slack.calls("views.open") == []


def test_from_the_home_tab_and_from_a_modal_the_answers_are_identical_too(harness: Harness) -> None:
    others, missing, mine = missing_and_others(harness)
    for run_id in (others, missing):
        harness.click("run_useful", str(run_id), home=True)
    dms = harness.slack.wait_for("chat.postMessage", 2)
    assert json.dumps(dms[0].args, sort_keys=True) == json.dumps(dms[1].args, sort_keys=True)
    harness.click("run_note", str(mine))
    view = harness.slack.wait_for("views.open")[0].args["view"]
    for run_id in (others, missing):
        forged = {**view, "private_metadata": view["private_metadata"].replace(str(mine), str(run_id), 1)}
        assert harness.submit(forged, modal_values(forged, {"verdict": "useful", "note": "x"})).status_code == 200
    dms = harness.slack.wait_for("chat.postMessage", 4)
    assert (
        json.dumps(dms[2].args, sort_keys=True)
        == json.dumps(dms[3].args, sort_keys=True)
        == json.dumps(dms[0].args, sort_keys=True)
    )
    assert NOT_YOURS in dms[2].args["text"]
    assert annotations(harness.engine) == []


# -- 4. the CLI's digest preview is audited --------------------------------------------------------
def test_digest_preview_from_the_cli_writes_an_audit_row(engine: Engine, db_url: str) -> None:
    with session_scope(engine) as session:
        seed_team(session, "platform", 5, datetime.now(UTC) - timedelta(days=10))
    team = tokenwise(db_url, "digest", "preview", "--team", "platform")
    assert team.returncode == 0, team.stderr
    org = tokenwise(db_url, "digest", "preview")
    assert org.returncode == 0, org.stderr
    with Session(engine) as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()  # type: ignore[arg-type]
    previews = [(e.actor, e.action, e.scope) for e in events if e.action == "digest.preview"]
    assert previews == [("cli", "digest.preview", "team:platform"), ("cli", "digest.preview", "organisation")]
