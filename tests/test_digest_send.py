"""Posting digests through the Slack stand-in: once each, retried, with the chart, withheld when small."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlmodel import select

from bot.config import Settings
from bot.devtools.slack_standin import SlackStandIn, iter_blocks_text
from bot.digest import Digest, WeekPoint
from bot.digest_chart import render_chart
from bot.periods import Period
from handlers.slack.client import build_slack_client
from handlers.slack.digest_posts import METADATA_EVENT, send_due
from storage.db import session_scope
from storage.digest_posts import claim_digest, due_digests
from storage.metrics import Metrics
from storage.models import DigestPost
from storage.schedules import Schedule
from storage.subscriptions import subscribe
from tests.support.digest_seed import seed_team

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
        seeded.team.timezone = "Europe/Berlin"  # its weeks, like its digests' schedule, are Berlin's
        session.add(seeded.team)
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
    # 5 people x 2 runs x $2.50 = $25.00; one merged PR (weight 3), so $25.00 per merged PR. Owners' "useful"
    # verdicts verify nothing: only the merged PR's run ($2.50) is verified, all of it one person's, so the
    # verified share is withheld (dominance), never shown as that person's number.
    assert "cost per merged PR $25.00" in text and "$25.00" in text
    assert "verified-spend share withheld" in text
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


def test_two_schedulers_sending_four_at_a_time_post_each_of_many_digests_once(
    engine: Engine, db_url: str, slack: SlackStandIn, client: WebClient
) -> None:
    """TOKENWISE_DIGEST_WORKERS sends digests due together a few at a time; two schedulers doing so at once
    (two servers, or a tick and a subscription's job) still post each digest once: each has its claim."""
    channels = tuple(f"C{n:03d}" for n in range(9))
    setup_team(engine, channels=channels)
    settings = config(db_url).model_copy(update={"digest_workers": 4})
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: send_due(engine, settings, lambda _due: client, NOW), range(2)))
    statuses = sorted(r.status for results in both for r in results)
    # each posted by one; the other skipped it (claimed) or no longer found it due (posted)
    assert statuses.count("posted") == 9 and set(statuses) <= {"posted", "skipped"}
    assert sorted(c.args["channel"] for c in delivered(slack)) == sorted(channels)
    assert len([u for u in slack.uploads.values() if u.get("completed")]) == 9
    assert [(p.status, p.attempts) for p in posts(engine)] == [("posted", 1)] * 9


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


# -- the chart, decoded back with Pillow -------------------------------------------------------------

GREEN, GREY, BLUE, INK = (0x2E, 0x7D, 0x32), (0xB0, 0xBE, 0xC5), (0x15, 0x65, 0xC0), (0x33, 0x33, 0x33)
CHART_WEEKS = [
    Period(date(2026, 3, 2) + timedelta(days=7 * i), date(2026, 3, 8) + timedelta(days=7 * i)) for i in range(8)
]


def week(i: int, verified: str | None, unverified: str | None, value: str | None) -> WeekPoint:
    def amount(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    return WeekPoint(CHART_WEEKS[i], amount(verified), amount(unverified), amount(value), None)


def withheld(i: int) -> WeekPoint:
    return WeekPoint(CHART_WEEKS[i], None, None, None, None)


def chart(trend: list[WeekPoint], title: str = "platform") -> Image.Image:
    png = render_chart(Digest(title, trend[-1].period, None, metrics=Metrics(), trend=trend))
    assert png is not None and png.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def plot_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The plot's inside, found from the pixels: its two y axes are the tallest dark columns."""
    pixels = image.load()
    assert pixels is not None

    def tallest_dark_run(x: int) -> tuple[int, int]:  # (length, top)
        best, start = (0, 0), None
        for y in range(image.height):
            if pixels[x, y] != INK:
                start = None
                continue
            start = y if start is None else start
            best = max(best, (y - start + 1, start))
        return best

    runs = {x: tallest_dark_run(x) for x in range(image.width)}
    left, right = sorted(sorted(runs, key=lambda x: runs[x], reverse=True)[:2])
    length, top = runs[left]
    return left + 1, top, right, top + length - 1


def slot_colours(image: Image.Image, index: int, weeks: int) -> set[tuple[int, int, int]]:
    """The colours inside the plot in week `index`'s slot (the weeks share the plot's width equally)."""
    left, top, right, bottom = plot_box(image)
    slot = (right - left) / weeks
    crop = image.crop((round(left + slot * index) + 1, top, round(left + slot * (index + 1)) - 1, bottom))
    return {colour for _count, colour in crop.getcolors(crop.width * crop.height) or []}


def rows_of(image: Image.Image, index: int, weeks: int, colour: tuple[int, int, int], side: float) -> list[int]:
    """The rows, counted up from the x axis, where a column of week `index`'s bar has `colour`: the column is
    `side` of a slot left (negative) or right of the slot's middle, so the outcome line can be kept out of it."""
    left, top, right, bottom = plot_box(image)
    x = round(left + (right - left) / weeks * (index + 0.5 + side))
    return [bottom - y for y in range(top, bottom) if image.getpixel((x, y)) == colour]


def test_the_chart_is_a_fixed_size_png() -> None:
    assert chart([week(i, "5", "7.5", str(i)) for i in range(4)]).size == (700, 360)


def test_the_chart_draws_withheld_weeks_as_gaps() -> None:
    image = chart([withheld(0)] + [week(i, "5", "7.5", str(i * 3)) for i in range(1, 4)])
    assert {GREEN, GREY, BLUE} <= slot_colours(image, 2, 4)
    assert not {GREEN, GREY, BLUE} & slot_colours(image, 0, 4)


def test_the_chart_stacks_unverified_spend_on_top_of_verified_spend() -> None:
    image = chart([week(i, "40", "20", "1") for i in range(4)])
    greens, greys = rows_of(image, 0, 4, GREEN, side=-0.2), rows_of(image, 0, 4, GREY, side=-0.2)
    assert greens and greys and min(greens) == 1 and max(greens) < min(greys)
    assert len(greens) == pytest.approx(2 * len(greys), abs=2)  # 40 and 20 on one scale


def test_the_chart_breaks_the_outcome_line_where_a_week_is_withheld() -> None:
    image = chart([week(0, "5", "5", "3"), withheld(1), week(2, "5", "5", "4"), week(3, "5", "5", "5")])
    assert BLUE in slot_colours(image, 0, 4) and BLUE in slot_colours(image, 2, 4)
    assert BLUE not in slot_colours(image, 1, 4)


def test_a_chart_of_zeros_draws_no_bars() -> None:
    image = chart([week(i, "0", "0", "0") for i in range(4)])
    assert all(GREEN not in slot_colours(image, i, 4) for i in range(4))


def test_a_chart_of_huge_values_draws_bars_to_scale() -> None:
    image = chart([week(0, "1000000000", "0", "1e9"), week(1, "2e9", "1e9", "5e8")])
    first, second = rows_of(image, 0, 2, GREEN, side=-0.2), rows_of(image, 1, 2, GREEN, side=0.2)
    assert len(second) == pytest.approx(2 * len(first), abs=2)
    assert GREY in slot_colours(image, 1, 2) and GREY not in slot_colours(image, 0, 2)


def test_a_long_title_is_cut_to_fit_inside_the_chart() -> None:
    image = chart([week(i, "5", "7.5", str(i)) for i in range(4)], title="a very long team name " * 20)
    title_band = image.crop((0, 0, image.width, 30)).convert("L").point(lambda v: 255 if v < 200 else 0)
    left, _top, right, _bottom = title_band.getbbox() or (0, 0, 0, 0)
    assert left >= 8 and right <= image.width - 8  # not running off either side
    assert right - left > image.width * 0.8  # but not cut to nothing either


def test_there_is_no_chart_for_a_withheld_digest_or_an_empty_trend() -> None:
    assert render_chart(Digest("platform", CHART_WEEKS[3], "Withheld.")) is None
    assert render_chart(Digest("platform", CHART_WEEKS[3], None, metrics=Metrics(), trend=[])) is None


amounts = st.one_of(
    st.none(),
    st.just(Decimal("NaN")),
    st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False, places=4),
)
weeks_of_a_trend = st.lists(st.one_of(st.none(), st.tuples(amounts, amounts, amounts)), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(weeks=weeks_of_a_trend, title=st.text(max_size=200))
def test_any_trend_gives_a_chart_png_of_the_fixed_size(
    weeks: list[tuple[Decimal | None, ...] | None], title: str
) -> None:
    trend = [
        withheld(i) if values is None else WeekPoint(CHART_WEEKS[i], *values, None) for i, values in enumerate(weeks)
    ]
    assert chart(trend, title).size == (700, 360)


def test_with_oauth_installs_each_workspace_gets_its_digest_with_its_own_token(
    engine: Engine, db_url: str, slack: SlackStandIn
) -> None:
    from slack_sdk.oauth.installation_store import Installation

    from bot.jobs import digest_slack_for
    from bot.services import Services
    from handlers.slack.app import installation_store

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
    # recorded, retried next tick (the digests are sent a few at a time: claims in any order)
    assert sorted((p.status, p.attempts) for p in posts(engine)) == [("failed", 1), ("posted", 1), ("posted", 1)]
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
