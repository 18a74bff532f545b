"""When a digest is due: local weekday and time, across DST changes, with a grace window and a lease."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

from bot.jobs import cron_trigger
from storage.db import session_scope
from storage.digest_posts import claim_digest, due_digests, mark_posted
from storage.models import Team
from storage.schedules import Schedule, SubscriptionError, digest_period, latest_occurrence, next_occurrence
from storage.subscriptions import list_subscriptions, subscribe, unsubscribe

BERLIN_MONDAY_9 = Schedule(weekday=0, hour=9, minute=0, timezone="Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_a_monday_nine_oclock_berlin_digest_moves_an_hour_earlier_in_utc_after_the_spring_change() -> None:
    # Europe switched to summer time on Sunday 2026-03-29.
    assert next_occurrence(BERLIN_MONDAY_9, utc(2026, 3, 20)) == utc(2026, 3, 23, 8)
    assert next_occurrence(BERLIN_MONDAY_9, utc(2026, 3, 23, 8)) == utc(2026, 3, 30, 7)
    assert latest_occurrence(BERLIN_MONDAY_9, utc(2026, 3, 30, 6, 59)) == utc(2026, 3, 23, 8)
    assert latest_occurrence(BERLIN_MONDAY_9, utc(2026, 3, 30, 7)) == utc(2026, 3, 30, 7)


def test_the_autumn_change_moves_it_back_and_the_period_is_the_local_week() -> None:
    assert next_occurrence(BERLIN_MONDAY_9, utc(2026, 10, 20)) == utc(2026, 10, 26, 8)
    period = digest_period(BERLIN_MONDAY_9, utc(2026, 10, 26, 8))
    assert (period.since, period.until) == (date(2026, 10, 19), date(2026, 10, 25))
    # The week holds the 25-hour Sunday: it starts at CEST midnight and ends at CET midnight.
    assert period.start == utc(2026, 10, 18, 22)
    assert period.end == utc(2026, 10, 25, 23)


def test_a_time_skipped_by_the_clock_change_fires_once_just_after_it_like_apscheduler() -> None:
    sunday_0230 = Schedule(weekday=6, hour=2, minute=30, timezone="Europe/Berlin")
    assert next_occurrence(sunday_0230, utc(2026, 3, 28)) == utc(2026, 3, 29, 1, 30)
    trigger = cron_trigger(sunday_0230)
    fire = trigger.get_next_fire_time(None, utc(2026, 3, 28))
    assert fire is not None
    assert fire.astimezone(UTC) == utc(2026, 3, 29, 1, 30)


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]


@settings(max_examples=80, deadline=None)
@given(
    weekday=st.integers(0, 6),
    hour=st.integers(4, 23),
    minute=st.sampled_from([0, 15, 30, 59]),
    tz=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
)
def test_our_occurrences_match_the_scheduler_cron_trigger_away_from_the_clock_change_hours(
    weekday: int, hour: int, minute: int, tz: str, start: datetime
) -> None:
    schedule = Schedule(weekday, hour, minute, tz)
    trigger: CronTrigger = cron_trigger(schedule)
    now = start.replace(tzinfo=UTC)
    for _ in range(3):
        ours = next_occurrence(schedule, now)
        theirs = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        assert theirs is not None
        assert ours == theirs.astimezone(UTC)
        assert latest_occurrence(schedule, ours) == ours
        now = ours


@settings(max_examples=80, deadline=None)
@given(
    weekday=st.integers(0, 6),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 30]),
    tz=st.sampled_from([*ZONES, "America/Santiago", "Europe/London"]),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
)
def test_every_occurrence_is_one_local_week_after_the_last_at_the_chosen_local_time(
    weekday: int, hour: int, minute: int, tz: str, start: datetime
) -> None:
    schedule = Schedule(weekday, hour, minute, tz)
    previous = next_occurrence(schedule, start.replace(tzinfo=UTC))
    for _ in range(4):
        current = next_occurrence(schedule, previous)
        assert timedelta(days=7) - timedelta(hours=2) <= current - previous <= timedelta(days=7) + timedelta(hours=2)
        before, after = digest_period(schedule, previous), digest_period(schedule, current)
        assert after.since - before.since == timedelta(days=7)
        local = current.astimezone(ZoneInfo(tz))
        assert local.weekday() == weekday
        assert (local.hour, local.minute) == (hour, minute) or local.utcoffset() != (
            local - timedelta(hours=3)
        ).utcoffset()
        previous = current


def test_the_tick_catches_a_midnight_digest_the_cron_trigger_skips_after_a_spring_change(session: Session) -> None:
    # APScheduler 3.x computes the Monday 00:00 after Europe's spring change as a week later; the tick's
    # own computation (and the claim) is what the digest relies on, so it is still sent on time.
    midnight = Schedule(weekday=0, hour=0, minute=0, timezone="Europe/Berlin")
    fire = cron_trigger(midnight).get_next_fire_time(None, utc(2026, 3, 28))
    assert fire is not None and fire.astimezone(UTC) == utc(2026, 4, 5, 22)  # the library quirk
    _subscribe(session, midnight)
    assert due_digests(session, utc(2026, 3, 29, 21, 59)) == []
    (due,) = due_digests(session, utc(2026, 3, 29, 22, 0))
    assert due.occurrence == utc(2026, 3, 29, 22)


def test_a_bad_schedule_says_what_would_work() -> None:
    with pytest.raises(SubscriptionError, match="IANA"):
        Schedule(timezone="Mars/Olympus")
    with pytest.raises(SubscriptionError, match="HH:MM"):
        Schedule(hour=24)


def _subscribe(session: Session, schedule: Schedule = BERLIN_MONDAY_9, channel: str = "C222") -> int:
    team = Team(name="platform")
    session.add(team)
    session.flush()
    subscription, created = subscribe(session, channel_id=channel, team_id=team.id, schedule=schedule)
    assert created
    session.commit()
    return subscription.id or 0


def test_a_subscription_is_due_exactly_from_its_local_time_across_the_dst_change(session: Session) -> None:
    _subscribe(session)
    assert due_digests(session, utc(2026, 3, 30, 6, 59)) == []
    due = due_digests(session, utc(2026, 3, 30, 7, 0))
    assert len(due) == 1
    assert (due[0].period.since, due[0].period.until) == (date(2026, 3, 23), date(2026, 3, 29))
    assert due[0].occurrence == utc(2026, 3, 30, 7)


def test_a_missed_digest_is_caught_up_within_the_grace_window_only(session: Session) -> None:
    _subscribe(session)
    assert len(due_digests(session, utc(2026, 3, 30, 19), grace=timedelta(hours=12))) == 1
    assert due_digests(session, utc(2026, 3, 30, 19, 1), grace=timedelta(hours=12)) == []


def test_a_posted_digest_is_no_longer_due_and_a_fresh_claim_is_not_due_until_its_lease_ends(
    engine: Engine, session: Session
) -> None:
    _subscribe(session)
    now = utc(2026, 3, 30, 7)
    (due,) = due_digests(session, now)
    claim = claim_digest(engine, due, now, timedelta(minutes=10))
    assert claim is not None
    assert due_digests(session, now + timedelta(minutes=9), lease=timedelta(minutes=10)) == []
    assert len(due_digests(session, now + timedelta(minutes=11), lease=timedelta(minutes=10))) == 1
    assert mark_posted(engine, claim, "1.0", now)
    assert due_digests(session, now + timedelta(minutes=11), lease=timedelta(minutes=10)) == []


def test_subscribing_again_reschedules_and_unsubscribing_removes(engine: Engine) -> None:
    with session_scope(engine) as session:
        subscription_id = _subscribe(session)
        again, created = subscribe(
            session, channel_id="C222", team_id=1, schedule=Schedule(weekday=4, hour=16, minute=30, timezone="UTC")
        )
        assert (created, again.id, again.weekday, again.hour, again.minute) == (False, subscription_id, 4, 16, 30)
    with session_scope(engine) as session:
        assert [(s.id, name) for s, name in list_subscriptions(session, channel_id="C222")] == [
            (subscription_id, "platform")
        ]
        assert unsubscribe(session, channel_id="C222", team_id=1) == 1
    with session_scope(engine) as session:
        assert list_subscriptions(session) == []


def test_a_channel_subscribed_from_the_cli_and_again_from_slack_keeps_one_subscription(engine: Engine) -> None:
    with session_scope(engine) as session:
        subscription_id = _subscribe(session)  # as the CLI does: no workspace
        again, created = subscribe(
            session, channel_id="C222", team_id=1, schedule=BERLIN_MONDAY_9, slack_team_id="T111", enterprise_id="E1"
        )
        assert (created, again.id, again.slack_team_id, again.enterprise_id) == (False, subscription_id, "T111", "E1")
    with session_scope(engine) as session:
        assert len(list_subscriptions(session)) == 1


def test_of_many_concurrent_claims_and_takeovers_exactly_one_wins_each_time(engine: Engine, session: Session) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from storage.digest_posts import Claim, mark_failed

    _subscribe(session)
    now = utc(2026, 3, 30, 7)
    (due,) = due_digests(session, now)
    lease = timedelta(minutes=10)

    def race(at: datetime) -> list[Claim]:
        start = threading.Barrier(8)

        def contender(_: int) -> Claim | None:
            start.wait()
            return claim_digest(engine, due, at, lease)

        with ThreadPoolExecutor(8) as pool:
            return [claim for claim in pool.map(contender, range(8)) if claim is not None]

    (first,) = race(now)  # eight inserts: one wins
    assert mark_failed(engine, first, "boom")
    (second,) = race(now + timedelta(minutes=1))  # eight takeovers of the failed row: one wins
    assert second.attempts == 2 and second.retaken
    assert race(now + timedelta(minutes=2)) == []  # a fresh claim is held
    (third,) = race(now + timedelta(minutes=12))  # an abandoned claim: one takes it over
    assert third.attempts == 3
    assert not mark_posted(engine, second, "1.1", now)  # fenced: the older attempt lost
    assert mark_posted(engine, third, "1.2", now)
