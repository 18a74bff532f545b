"""`/tokenwise digest | summary | nudges | forget-me` through the running app, and their parsers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import OpenAI
from sqlmodel import Session, select

from bot.devtools.slack_standin import iter_blocks_text
from bot.summaries import SummaryWriter
from handlers.slack import blocks
from handlers.slack.slash.registry import parse_command
from handlers.slack.slash.subscriptions import parse_digest, parse_forget_me, parse_nudges, parse_subscribe
from storage.models import Annotation, AuditEvent, DigestSubscription, Membership, Person
from storage.schedules import Schedule, SubscriptionError
from tests.support.llm_standin import LLMStandIn
from tests.support.slack_harness import (
    ADA,
    ALAN,
    GRACE,
    Harness,
    annotations,
    in_last_week,
    person,
    run,
    team,
)


def texts(message: dict) -> str:
    return "\n".join([message.get("text", ""), *iter_blocks_text(message.get("blocks", []))])


def answer(harness: Harness, text: str, user_id: str = ADA) -> str:
    response, url = harness.command(text, user_id)
    assert response.status_code == 200
    (reply,) = harness.respond_to(url)
    return texts(reply)


def platform_team(harness: Harness, manager: str | None = None) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        members = [person(session, ADA, "Europe/Berlin"), person(session, GRACE), person(session, ALAN)]
        for member in members:
            run(session, member, f"Secret title of {member.display_name}", ago=in_last_week())
        made = team(session, "platform", members)
        if manager:
            membership = session.exec(
                select(Membership).where(Membership.person_id == members[[ADA, GRACE, ALAN].index(manager)].id)
            ).one()
            membership.role = "manager"
            session.add(membership)
        session.commit()
        assert made.id


def subscriptions(harness: Harness) -> list[DigestSubscription]:
    with Session(harness.engine) as session:
        return list(session.exec(select(DigestSubscription)).all())


def test_subscribe_in_a_channel_defaults_to_monday_nine_in_the_callers_time_zone(harness: Harness) -> None:
    platform_team(harness)
    harness.slack.add_user(ADA, email="ada@example.com", name="Ada Lovelace", tz="Europe/Berlin")
    said = answer(harness, "digest subscribe")
    assert "This channel will get the platform digest every Monday 09:00 Europe/Berlin" in said
    (subscription,) = subscriptions(harness)
    assert (subscription.channel_id, subscription.slack_team_id, subscription.weekday, subscription.hour) == (
        "C111",
        "T111",
        0,
        9,
    )
    assert "*platform*: Monday 09:00 Europe/Berlin (next Mon" in answer(harness, "digest list")


def test_subscribe_with_a_day_time_and_zone_then_again_reschedules_and_unsubscribe_removes(harness: Harness) -> None:
    platform_team(harness)
    answer(harness, "digest subscribe platform friday 16:30 America/New_York")
    said = answer(harness, "digest subscribe platform tue 08:15 UTC")
    assert said.startswith("Rescheduled: this channel gets the platform digest every Tuesday 08:15 UTC")
    (subscription,) = subscriptions(harness)
    assert (subscription.weekday, subscription.hour, subscription.minute, subscription.timezone) == (1, 8, 15, "UTC")
    assert "no longer get 1 digest" in answer(harness, "digest unsubscribe")
    assert subscriptions(harness) == []
    assert "This channel has no digest yet" in answer(harness, "digest list")


def test_a_bad_digest_request_is_answered_at_once_with_what_would_work(harness: Harness) -> None:
    response, _url = harness.command("digest subscribe platform 25:00")
    body = response.json()
    assert "'25:00' is not a time; use HH:MM" in body["text"]
    assert subscriptions(harness) == []


def test_digest_preview_shows_team_figures_only_and_is_audited(harness: Harness) -> None:
    platform_team(harness)
    said = answer(harness, "digest preview platform")
    assert "Weekly AI outcomes · platform" in said
    for private in ("Ada", "Grace", "Alan", "@example.com", "Secret title"):
        assert private not in said
    harness.idle()  # the look is recorded just after the answer
    with Session(harness.engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert "digest.preview" in actions


def test_a_non_manager_gets_a_polite_refusal_for_a_summary(harness: Harness) -> None:
    platform_team(harness, manager=GRACE)
    said = answer(harness, "summary platform", ADA)
    assert "Sorry, summaries of platform are only for its managers." in said
    assert "Runs" not in said and "$" not in said


def test_a_manager_gets_a_checked_summary_from_the_model(harness: Harness) -> None:
    platform_team(harness, manager=ADA)
    with LLMStandIn() as llm:
        harness.services.summary_writer = SummaryWriter(
            OpenAI(api_key="sk-test", base_url=llm.base_url, timeout=5, max_retries=0), "gpt-4o-mini"
        )
        llm.reply = "The team made 3 agent runs in the last 28 days."
        response, url = harness.command("summary", ADA)
        assert response.status_code == 200
        working, summary = harness.respond_to(url, count=2)
    assert working["text"] == blocks.SUMMARY_WORKING and working["replace_original"] is False
    assert summary["replace_original"] is True  # the summary takes the place of "Writing the summary…"
    said = texts(summary)
    assert "The team made 3 agent runs in the last 28 days." in said
    assert "every number in it was checked" in said
    prompt = str(llm.requests[0]["messages"])
    assert "Ada" not in prompt and "Secret title" not in prompt and "platform" not in prompt


def test_nudges_can_be_turned_off_and_on(harness: Harness) -> None:
    assert "Nudges are off" in answer(harness, "nudges off")
    with Session(harness.engine) as session:
        assert session.exec(select(Person.nudges_enabled).where(Person.email == "ada@example.com")).one() is False
    assert "Nudges are on" in answer(harness, "nudges on")
    response, _ = harness.command("nudges maybe")
    assert "Use `/tokenwise nudges on` or `/tokenwise nudges off`." in response.json()["text"]


def test_forget_me_asks_first_then_deletes_only_the_callers_annotations(harness: Harness) -> None:
    with Session(harness.engine, expire_on_commit=False) as session:
        ada, grace = person(session, ADA), person(session, GRACE)
        mine, theirs = run(session, ada, "Mine"), run(session, grace, "Theirs")
        session.add(Annotation(run_id=mine.id or 0, person_id=ada.id or 0, verdict="useful", note="private note"))
        session.add(Annotation(run_id=theirs.id or 0, person_id=grace.id or 0, verdict="partly"))
        session.commit()
    said = answer(harness, "forget-me")
    assert "This deletes your 1 annotation" in said and "/tokenwise forget-me confirm" in said
    assert len(annotations(harness.engine)) == 2
    assert "deleted your 1 annotation" in answer(harness, "forget-me confirm")
    assert [a.verdict for a in annotations(harness.engine)] == ["partly"]


# -- parsers ---------------------------------------------------------------------------------------


def test_subscribe_arguments_in_any_order() -> None:
    request = parse_subscribe("Europe/Berlin 07:45 data platform wednesday", "UTC")
    assert request.team == "data platform"
    assert request.schedule == Schedule(2, 7, 45, "Europe/Berlin")
    assert parse_subscribe("", "Asia/Tokyo").schedule == Schedule(0, 9, 0, "Asia/Tokyo")


@pytest.mark.parametrize(
    "text, message",
    [
        ("subscribe platform mars/base", "Unknown time zone"),
        ("subscribe monday tuesday", "one day of the week"),
        ("subscribe 9:00 10:00", "one time"),
        ("unsubscribe " + "x" * 101, "at most 100 characters"),
        ("list platform", "takes nothing after it"),
        ("frobnicate", "is not a digest command"),
        ("", "Tell me what to do with digests"),
    ],
)
def test_bad_digest_requests_say_what_would_work(text: str, message: str) -> None:
    with pytest.raises(SubscriptionError, match=message):
        parse_digest(text, "UTC")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_any_digest_text_gives_a_request_or_a_helpful_error(text: str) -> None:
    try:
        request = parse_digest(text, "UTC")
    except SubscriptionError as error:
        assert str(error).endswith((".", "`.")) and len(str(error)) < 300
    else:
        assert request.action in {"subscribe", "unsubscribe", "list", "preview"}
        if request.schedule:
            assert 0 <= request.schedule.weekday <= 6


words = st.sampled_from(["subscribe", "unsubscribe", "list", "preview", "platform", "mon", "Friday", "9:30", "UTC"])


@settings(max_examples=100, deadline=None)
@given(st.lists(words | st.text(max_size=8), max_size=6), st.sampled_from(["digest", "nudges", "forget-me", "summary"]))
def test_any_tokenwise_text_for_these_subcommands_never_raises(parts: list[str], name: str) -> None:
    request = parse_command(" ".join([name, *parts]))
    assert request.name in {name, "help"}
    assert request.error is None or request.error.strip()


def test_switches_parse_on_off_and_confirm() -> None:
    assert parse_nudges(" ON ") is True and parse_nudges("off") is False
    assert parse_forget_me("") is False and parse_forget_me("confirm") is True
    with pytest.raises(SubscriptionError):
        parse_forget_me("yes please")


def test_forget_me_can_be_confirmed_with_the_button_behind_slacks_own_are_you_sure(harness: Harness) -> None:
    from handlers.slack.blocks import ACTION_FORGET_ME

    with Session(harness.engine, expire_on_commit=False) as session:
        ada, grace = person(session, ADA), person(session, GRACE)
        mine, theirs = run(session, ada, "Mine"), run(session, grace, "Theirs")
        session.add(Annotation(run_id=mine.id or 0, person_id=ada.id or 0, verdict="useful", note="private note"))
        session.add(Annotation(run_id=theirs.id or 0, person_id=grace.id or 0, verdict="partly"))
        session.commit()
    _, url = harness.command("forget-me")
    (prompt,) = harness.respond_to(url)
    (delete,) = [e for b in prompt["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (delete["action_id"], delete["style"], delete["confirm"]["confirm"]["text"]) == (
        ACTION_FORGET_ME,
        "danger",
        "Delete",
    )
    assert len(annotations(harness.engine)) == 2
    _, click_url = harness.click(ACTION_FORGET_ME, delete["value"])
    (done,) = harness.respond_to(click_url)
    assert done["text"] == "Done: deleted your 1 annotation, with their notes and links."
    assert done["replace_original"] is True
    assert [a.person_id for a in annotations(harness.engine)] == [2]
