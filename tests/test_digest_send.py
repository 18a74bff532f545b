"""Posting digests through the Slack stand-in: once each, retried, with the chart, withheld when small."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import select

from bot.config import Settings
from bot.digest import METADATA_EVENT, build_slack_client, send_due
from bot.slack_standin import SlackStandIn, iter_blocks_text
from storage.db import session_scope
from storage.digests import Schedule, claim_digest, due_digests, subscribe
from storage.models import DigestPost
from tests.digest_seed import seed_team

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MONDAY_0900_BERLIN = Schedule(weekday=0, hour=9, minute=0, timezone="Europe/Berlin")
NOW = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 in Berlin, the first Monday of summer time
FIRST_WEEK = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # four seeded weeks: Mar 2, 9, 16, 23


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(token="xoxb-test") as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandIn) -> WebClient:
    return build_slack_client("xoxb-test", slack.url)


def config(db_url: str) -> Settings:
    return Settings(database_url=db_url, min_group_size=5)


def setup_team(engine: Engine, size: int = 5, channels: tuple[str, ...] = ("C222",), name: str = "platform") -> int:
    with session_scope(engine) as session:
        seeded = seed_team(session, name, size, FIRST_WEEK, weeks=4)
        for channel in channels:
            subscribe(session, channel_id=channel, team_id=seeded.team.id, schedule=MONDAY_0900_BERLIN)
        return seeded.team.id or 0


def posts(engine: Engine) -> list[DigestPost]:
    with session_scope(engine) as session:
        return list(session.exec(select(DigestPost).order_by(DigestPost.id)).all())  # type: ignore[arg-type]


def delivered(slack: SlackStandIn, method: str = "chat.postMessage") -> list[Any]:
    return [call for call in slack.calls(method) if call.status == 200 and call.response.get("ok")]


def all_text(call: Any) -> str:
    return call.args.get("text", "") + "\n" + "\n".join(iter_blocks_text(call.args.get("blocks") or []))


def test_a_due_digest_is_posted_once_with_a_marker_and_hand_checked_numbers(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    results = send_due(engine, config(db_url), lambda _due: client, NOW)
    assert [r.status for r in results] == ["posted"]
    (call,) = delivered(slack)
    assert call.args["channel"] == "C222"
    assert call.args["metadata"]["event_type"] == METADATA_EVENT
    text = all_text(call)
    # 5 people x 2 runs x $2.50 = $25.00; the 5 useful runs' $12.50 is verified; one merged PR (weight 3).
    assert "50%" in text and "$5.00" in text and "$25.00" in text
    assert "Merged PRs with agent help*\n1" in text
    assert "Mar 23 – Mar 29, 2026 (Europe/Berlin)" in text
    assert "Fixed the flaky deploy for platform" in text  # the win its owner chose to share
    (post,) = posts(engine)
    assert (post.status, post.message_ts, post.attempts) == ("posted", call.response["ts"], 1)
    assert send_due(engine, config(db_url), lambda _due: client, NOW + timedelta(minutes=5)) == []
    assert len(delivered(slack)) == 1


def test_a_digest_never_names_a_person_or_shows_run_titles(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    send_due(engine, config(db_url), lambda _due: client, NOW)
    text = all_text(delivered(slack)[0]).lower()
    for word in ("platform person", "@example.com", "secret title", "uplat"):
        assert word not in text


def test_the_chart_png_is_uploaded_through_the_stand_in_into_the_digest_thread(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    (result,) = send_due(engine, config(db_url), lambda _due: client, NOW)
    (upload,) = [u for u in slack.uploads.values() if u.get("completed")]
    assert upload["content"].startswith(PNG_MAGIC)
    assert upload["channel_id"] == "C222"
    (complete,) = delivered(slack, "files.completeUploadExternal")
    assert complete.args["thread_ts"] == result.message_ts


def test_a_digest_for_a_four_person_team_is_withheld(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine, size=4)
    assert [r.status for r in send_due(engine, config(db_url), lambda _due: client, NOW)] == ["posted"]
    text = all_text(delivered(slack)[0])
    assert "Withheld: fewer than 5 people" in text
    assert "$" not in text and "%" not in text
    assert slack.calls("files.getUploadURLExternal") == []


def test_a_429_storm_still_delivers_each_digest_exactly_once(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine, channels=("C111", "C222"))
    slack.fail_next("chat.postMessage", status=429, retry_after=0, times=3)
    slack.fail_next("files.getUploadURLExternal", status=429, retry_after=0, times=1)
    results = send_due(engine, config(db_url), lambda _due: client, NOW)
    assert sorted(r.status for r in results) == ["posted", "posted"]
    assert len([c for c in slack.calls("chat.postMessage") if c.status == 429]) == 3
    assert sorted(c.args["channel"] for c in delivered(slack)) == ["C111", "C222"]
    assert len([u for u in slack.uploads.values() if u.get("completed")]) == 2
    assert {p.status for p in posts(engine)} == {"posted"}


def test_a_server_error_is_recorded_then_retried_on_the_next_tick_without_a_double_post(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    slack.fail_next("chat.postMessage", status=500, times=1)
    (first,) = send_due(engine, config(db_url), lambda _due: client, NOW)
    assert first.status == "failed" and "500" in (first.error or "")
    (post,) = posts(engine)
    assert (post.status, post.attempts) == ("failed", 1)
    assert "500" in (post.last_error or "")
    (second,) = send_due(engine, config(db_url), lambda _due: client, NOW + timedelta(minutes=1))
    assert second.status == "posted"
    assert len(delivered(slack)) == 1
    assert len(slack.calls("conversations.history")) == 1  # the retry looked for an earlier post first
    (post,) = posts(engine)
    assert (post.status, post.attempts) == ("posted", 2)


def test_a_retry_that_finds_its_digest_already_posted_records_it_instead_of_posting_again(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    settings = config(db_url)
    with session_scope(engine) as session:
        (due,) = due_digests(session, NOW)
    claim = claim_digest(engine, due, NOW, timedelta(minutes=10))
    assert claim is not None
    # The "interrupted" attempt: posted with its marker, then died before recording it.
    ours = client.chat_postMessage(
        channel="C222",
        text="digest",
        metadata={
            "event_type": METADATA_EVENT,
            "event_payload": {"digest_post_id": claim.post_id, "digest_key": due.key},
        },
    )
    client.chat_postMessage(  # later, another deployment's digest with the same row id: not ours
        channel="C222",
        text="digest",
        metadata={
            "event_type": METADATA_EVENT,
            "event_payload": {"digest_post_id": claim.post_id, "digest_key": "99:2026-03-23"},
        },
    )
    client.chat_postMessage(channel="C222", text="someone else's message")
    assert send_due(engine, settings, lambda _due: client, NOW + timedelta(minutes=5)) == []  # lease holds
    (result,) = send_due(engine, settings, lambda _due: client, NOW + timedelta(minutes=11))
    assert (result.status, result.message_ts) == ("recovered", ours["ts"])
    assert len(delivered(slack)) == 3  # the three above, nothing new
    (post,) = posts(engine)
    assert (post.status, post.message_ts, post.attempts) == ("posted", result.message_ts, 2)


def test_a_digest_that_keeps_failing_stays_recorded_as_failed_with_its_error(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    slack.fail_next("chat.postMessage", status=200, error="not_in_channel", times=5)
    for minute in range(3):
        (result,) = send_due(engine, config(db_url), lambda _due: client, NOW + timedelta(minutes=minute))
        assert result.status == "failed"
    (post,) = posts(engine)
    assert (post.status, post.attempts) == ("failed", 3)
    assert "not_in_channel" in (post.last_error or "")


def test_a_server_error_on_a_call_that_creates_nothing_is_retried_within_the_attempt(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    slack.fail_next("files.getUploadURLExternal", status=503, times=1)
    (result,) = send_due(engine, config(db_url), lambda _due: client, NOW)
    assert result.status == "posted"
    assert [c.status for c in slack.calls("files.getUploadURLExternal")] == [503, 200]
    assert len([u for u in slack.uploads.values() if u.get("completed")]) == 1
    (post,) = posts(engine)
    assert (post.status, post.last_error) == ("posted", None)


def test_across_the_spring_change_the_digest_goes_out_at_nine_berlin_time_not_an_hour_off(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    setup_team(engine)
    # The week before, 09:00 Berlin was 08:00 UTC; after the change it is 07:00 UTC.
    assert send_due(engine, config(db_url), lambda _due: client, NOW - timedelta(minutes=1)) == []
    assert [r.status for r in send_due(engine, config(db_url), lambda _due: client, NOW)] == ["posted"]
    assert send_due(engine, config(db_url), lambda _due: client, NOW + timedelta(hours=1)) == []
    assert len(delivered(slack)) == 1


def test_the_chart_draws_withheld_weeks_as_gaps() -> None:
    from datetime import date
    from decimal import Decimal

    from bot.digest import Digest, WeekPoint, render_chart
    from bot.periods import Period
    from storage.metrics import Metrics

    weeks = [
        Period(date(2026, 3, 2) + timedelta(days=7 * i), date(2026, 3, 8) + timedelta(days=7 * i)) for i in range(4)
    ]
    trend = [WeekPoint(weeks[0], None, None, None, None)] + [
        WeekPoint(week, Decimal("5"), Decimal("7.5"), Decimal(i * 3), Decimal("0.4"))
        for i, week in enumerate(weeks[1:])
    ]
    png = render_chart(Digest("platform", weeks[-1], None, metrics=Metrics(), trend=trend))
    assert png is not None and png.startswith(PNG_MAGIC) and len(png) > 5_000
    assert render_chart(Digest("platform", weeks[-1], "Withheld.")) is None


def test_with_oauth_installs_each_workspace_gets_its_digest_with_its_own_token(
    engine: Engine, db_url: str, slack: SlackStandIn
) -> None:
    from slack_sdk.oauth.installation_store import Installation

    from bot.app import Services
    from bot.digest_scheduler import digest_slack_for
    from bot.slack_app import installation_store

    settings = config(db_url).model_copy(
        update={"slack_api_url": slack.url, "slack_client_id": "111.222", "slack_client_secret": "secret"}
    )
    store = installation_store(settings, engine)
    for team_id, token in (("T111", "xoxb-one"), ("T222", "xoxb-two")):
        slack.accept_token(token)
        store.save(Installation(app_id="A1", team_id=team_id, bot_token=token, bot_user_id="UBOT", user_id="U1"))
    with session_scope(engine) as session:
        seeded = seed_team(session, "platform", 5, FIRST_WEEK, weeks=4)
        for channel, workspace in (("C111", "T111"), ("C222", "T222"), ("C333", "T404")):
            subscribe(
                session,
                channel_id=channel,
                team_id=seeded.team.id,
                schedule=MONDAY_0900_BERLIN,
                slack_team_id=workspace,
            )
    results = send_due(engine, settings, digest_slack_for(Services(settings=settings, engine=engine)), NOW)
    assert [r.status for r in results] == ["posted", "posted", "failed"]
    assert "not installed in workspace T404" in (results[2].error or "")
    assert [(p.status, p.attempts) for p in posts(engine)][-1] == ("failed", 1)  # recorded, retried next tick
    assert {(c.args["channel"], c.token) for c in delivered(slack)} == {("C111", "xoxb-one"), ("C222", "xoxb-two")}


def test_the_stand_in_pages_history_newest_first_and_shows_metadata_only_when_asked(
    slack: SlackStandIn, client: WebClient
) -> None:
    for index in range(5):
        client.chat_postMessage(
            channel="C111", text=f"m{index}", metadata={"event_type": METADATA_EVENT, "event_payload": {"i": index}}
        )
    client.chat_postMessage(channel="C222", text="elsewhere")
    first = client.conversations_history(channel="C111", limit=2, include_all_metadata=True)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"] and first["has_more"]
    assert first["messages"][0]["metadata"]["event_payload"] == {"i": 4}
    rest = client.conversations_history(channel="C111", limit=10, cursor=first["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["m2", "m1", "m0"] and not rest["has_more"]
    assert all("metadata" not in m for m in rest["messages"])
