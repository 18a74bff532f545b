"""An insider with an ingest token and a Slack account, against identity and team figures (docs/security.md,
"Insider"). Each attack goes through the real edges (signed Slack requests, real ingest tokens) on both
databases and must fail; the rules behind the defences are in docs/metrics.md, "Disclosure control"."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.periods import Period, complete_weeks
from bot.reports import SELF_REPORTED, Disclosure, build_report, group_weeks, report_json
from storage.db import session_scope
from storage.metrics import Scope
from storage.models import AuditEvent, Membership, Person, Team, UsageRecord
from storage.sources import create_source
from tests.support import factories as f
from tests.support.slack_harness import (
    ADA,
    ALAN,
    EMAILS,
    GRACE,
    Harness,
    count,
    person,
)

VICTIM = "victim@example.com"


def last_week_noon(days_after_monday: int = 2) -> datetime:
    """Noon UTC on a day of the last whole week (UTC): inside every team's default window."""
    week = complete_weeks(datetime.now(UTC).date())
    day = week.since + timedelta(days=days_after_monday)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def record(key: str, email: str | None, tokens: int = 0, cost: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dedupe_key": key,
        "occurred_at": (last_week_noon() + timedelta(minutes=len(key))).isoformat().replace("+00:00", "Z"),
        "agent": "claude-code",
        "model": "claude-sonnet-4-5",
        "input_tokens": tokens,
        "output_tokens": 0,
        **extra,
    }
    if email:
        body["email"] = email
    if cost is not None:
        body["cost_usd"] = cost
    return body


def ingest_token(engine: Engine, name: str = "shared") -> dict[str, str]:
    with session_scope(engine) as session:
        made = create_source(session, name, "api")
    return {"Authorization": f"Bearer {made.token}"}


def answer_of(harness: Harness, text: str, user_id: str = ADA) -> str:
    response, url = harness.command(text, user_id=user_id)
    assert response.status_code == 200
    (body,) = harness.respond_to(url)
    return str(body["text"]) + "\n" + str(body["blocks"])


# -- 1. hijacking a person through ingest ------------------------------------------------------------
def test_a_record_cannot_bind_an_attackers_slack_id_to_a_victims_email(harness: Harness) -> None:
    token = ingest_token(harness.engine)
    victims_usage = {"records": [record("v1", VICTIM, tokens=900_000, cost="42.17")]}
    assert harness.http.post("/v1/usage", json=victims_usage, headers=token).status_code == 200

    hijack = {"records": [record("x1", VICTIM, tokens=1, slack_user_id=ALAN)]}
    response = harness.http.post("/v1/usage", json=hijack, headers=token)

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["index"], error["field"]) == (0, "slack_user_id")
    assert count(harness.engine, UsageRecord) == 1
    with Session(harness.engine) as session:
        assert session.exec(select(Person.slack_user_id).where(Person.email == VICTIM)).one() is None
    shown = answer_of(harness, "me last week", ALAN)
    assert "No usage recorded" in shown and "42.17" not in shown


def test_a_binding_left_by_the_old_bug_is_released_when_its_owner_uses_slack(harness: Harness) -> None:
    with session_scope(harness.engine) as session:
        victim = Person(email=VICTIM, slack_user_id=ALAN)  # what ingest could do before the fix
        session.add(victim)
        session.flush()
        source = f.source(session)
        session.add(
            UsageRecord(
                source_id=source.id or 0,
                person_id=victim.id or 0,
                occurred_at=last_week_noon(),
                agent="claude-code",
                model="m",
                input_tokens=900_000,
                cost_usd=Decimal("42.17"),
                dedupe_key="v1",
            )
        )

    shown = answer_of(harness, "me last week", ALAN)

    assert "No usage recorded" in shown and "42.17" not in shown
    with Session(harness.engine) as session:
        rows = {p.email: p.slack_user_id for p in session.exec(select(Person)).all()}
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert rows == {VICTIM: None, EMAILS[ALAN]: ALAN}
    assert {"slack.released", "slack.bound"} <= set(actions)


def test_a_slack_id_that_slack_bound_may_be_sent_with_its_email(harness: Harness) -> None:
    answer_of(harness, "me", ADA)  # Ada's first contact binds W111 to ada@example.com
    token = ingest_token(harness.engine)
    both = {"records": [record("a1", EMAILS[ADA], tokens=5000, slack_user_id=ADA)]}
    assert harness.http.post("/v1/usage", json=both, headers=token).status_code == 200
    with Session(harness.engine) as session:
        bound = session.exec(select(AuditEvent).where(AuditEvent.action == "slack.bound")).all()
    assert [event.actor for event in bound] == [f"slack:{ADA}"]


def test_look_alike_emails_name_one_person(harness: Harness) -> None:
    token = ingest_token(harness.engine)
    batch = {"records": [record("l1", "ada@example.com", 10), record("l2", "ＡＤＡ@Example.com", 10)]}
    assert harness.http.post("/v1/usage", json=batch, headers=token).status_code == 200
    with Session(harness.engine) as session:
        assert session.exec(select(Person.email)).all() == ["ada@example.com"]


# -- 2. padding a team past the minimum group size ---------------------------------------------------
def _platform(session: Session, active: list[tuple[str, int, str | None]], idle: int) -> Team:
    """A team whose members `active` (email, tokens, cost) used AI last week, plus `idle` members who did not."""
    team = f.team(session, "platform")
    source = f.source(session)
    for email, tokens, cost in active:
        member = f.person(session, email, team)
        f.usage(session, source, member, last_week_noon().strftime("%Y-%m-%d %H:%M"), cost, tokens=(tokens, 0, 0, 0))
    for index in range(idle):
        f.person(session, f"idle{index}@example.com", team)
    return team


def test_padding_with_empty_records_does_not_make_people_active(harness: Harness) -> None:
    with session_scope(harness.engine) as session:
        _platform(session, [(EMAILS[ADA], 900_000, "42.17")], idle=3)
    token = ingest_token(harness.engine)
    padding = {"records": [record(f"p{i}", f"idle{i}@example.com") for i in range(3)]}
    assert harness.http.post("/v1/usage", json=padding, headers=token).status_code == 200

    shown = answer_of(harness, "team platform", ADA)

    assert "Withheld: fewer than 3 people were active" in shown
    assert "42.17" not in shown and "900,000" not in shown


def test_padding_with_token_sized_records_leaves_the_dominated_sums_withheld(harness: Harness) -> None:
    with session_scope(harness.engine) as session:
        _platform(session, [(EMAILS[ADA], 900_000, "42.17")], idle=3)
    token = ingest_token(harness.engine)
    padding = {"records": [record(f"p{i}", f"idle{i}@example.com", tokens=1000, cost="0.01") for i in range(3)]}
    assert harness.http.post("/v1/usage", json=padding, headers=token).status_code == 200

    shown = answer_of(harness, "team platform", ADA)

    assert "4 people active" in shown
    assert "42.17" not in shown and "42.20" not in shown and "903,000" not in shown
    assert "withheld" in shown and "more than 85%" in shown


def test_a_team_with_one_heavy_user_below_the_dominance_share_stays_visible(session: Session) -> None:
    _platform(
        session,
        [
            ("a@x.io", 800_000, "40.00"),
            ("b@x.io", 60_000, "3.00"),
            ("c@x.io", 50_000, "3.00"),
            ("d@x.io", 40_000, "2.00"),
        ],
        idle=0,
    )
    team = session.exec(select(Team)).one()
    scope = Scope.team(team.id or 0, team.name)
    body = report_json(build_report(session, scope, group_weeks(session, scope, "UTC"), Disclosure(3)))["totals"]
    assert body["withheld"] is None and set(body["withheld_figures"]) == set(SELF_REPORTED)  # never a group's
    assert body["cost_usd"] == 48.0 and body["input_tokens"] == 950_000


# -- 3. differencing through time zones -------------------------------------------------------------
def test_every_caller_gets_the_same_team_window_whatever_their_time_zone(harness: Harness) -> None:
    with session_scope(harness.engine) as session:
        team = _platform(session, [(f"m{i}@example.com", 5000 * (i + 1), "1.00") for i in range(4)], idle=0)
        for user_id in (ADA, GRACE):  # Europe/London and America/New_York in the stand-in
            member = person(session, user_id)
            session.add(Membership(person_id=member.id or 0, team_id=team.id or 0))
        # Early on this week's Monday in UTC: still Sunday in New York. Caller-zone windows differed by it.
        this_monday = complete_weeks(datetime.now(UTC).date()).until + timedelta(days=1)
        late = f.person(session, "late@example.com", team)
        f.usage(session, f.source(session), late, f"{this_monday.isoformat()} 02:00", "3.33", tokens=(7777, 0, 0, 0))
    london, new_york = answer_of(harness, "team platform", ADA), answer_of(harness, "team platform", GRACE)

    assert london == new_york
    assert complete_weeks(datetime.now(UTC).date()).label() in london


def test_a_team_time_zone_moves_its_weeks_for_everyone(session: Session) -> None:
    team = f.team(session, "tokyo")
    team.timezone = "Asia/Tokyo"
    scope = Scope.team(team.id or 0, team.name)
    week = group_weeks(session, scope, "UTC", now=datetime(2026, 11, 30, 16, tzinfo=UTC))  # Tue 01:00 in Tokyo
    assert week == Period(date(2026, 11, 23), date(2026, 11, 29), "Asia/Tokyo")


# -- 4. differencing through overlapping teams, the organisation and membership changes ---------------
def _five_active(session: Session, name: str = "platform") -> tuple[Team, list[Person]]:
    team = f.team(session, name)
    source = f.source(session)
    members = []
    for index in range(5):
        member = f.person(session, f"{name}{index}@example.com", team)
        f.usage(session, source, member, last_week_noon().strftime("%Y-%m-%d %H:%M"), "2.00", tokens=(20_000, 0, 0, 0))
        members.append(member)
    return team, members


def _totals(session: Session, scope: Scope) -> dict[str, Any]:
    period = group_weeks(session, scope, "UTC")
    return report_json(build_report(session, scope, period, Disclosure(3)))["totals"]  # type: ignore[no-any-return]


def test_a_team_that_is_another_minus_one_person_cannot_be_subtracted(session: Session) -> None:
    platform, members = _five_active(session)
    core = f.team(session, "platform-core")
    for member in members[1:]:
        session.add(Membership(person_id=member.id or 0, team_id=core.id or 0))
    session.flush()

    outer = _totals(session, Scope.team(platform.id or 0, "platform"))
    inner = _totals(session, Scope.team(core.id or 0, "platform-core"))

    assert inner["cost_usd"] == 8.0
    assert outer["cost_usd"] is None and "another team lies inside" in outer["withheld"]


def test_the_organisation_minus_the_shown_teams_cannot_single_anyone_out(session: Session) -> None:
    _five_active(session, "alpha")
    _five_active(session, "beta")
    loner = f.team(session, "gamma")
    source = f.source(session)
    alone = f.person(session, "alone@example.com", loner)
    f.usage(session, source, alone, last_week_noon().strftime("%Y-%m-%d %H:%M"), "9.99", tokens=(90_000, 0, 0, 0))

    assert _totals(session, Scope.team(loner.id or 0, "gamma"))["withheld"] is not None
    organisation = _totals(session, Scope.org())

    assert organisation["cost_usd"] is None and organisation["withheld"] is not None


def test_adding_someone_to_a_team_does_not_change_a_closed_week(session: Session) -> None:
    platform, _ = _five_active(session)
    before = _totals(session, Scope.team(platform.id or 0, "platform"))
    newcomer = f.person(session, "newcomer@example.com")
    f.usage(session, f.source(session), newcomer, last_week_noon().strftime("%Y-%m-%d %H:%M"), "7.00")
    session.add(Membership(person_id=newcomer.id or 0, team_id=platform.id or 0, since=datetime.now(UTC)))
    session.flush()

    assert _totals(session, Scope.team(platform.id or 0, "platform")) == before


def test_a_range_adds_up_only_the_weeks_that_pass_on_their_own(session: Session) -> None:
    platform, members = _five_active(session)
    scope = Scope.team(platform.id or 0, "platform")
    two_weeks = group_weeks(session, scope, "UTC", count=2)
    alone = last_week_noon() - timedelta(days=7)  # the earlier week: one person only, withheld
    f.usage(session, f.source(session), members[0], alone.strftime("%Y-%m-%d %H:%M"), "6.66", tokens=(66_000, 0, 0, 0))

    body = report_json(build_report(session, scope, two_weeks, Disclosure(3), by="week"))

    assert [week["withheld"] is None for week in body["periods"]] == [False, True]
    assert body["totals"]["cost_usd"] == 10.0  # the shown week's five times $2, without the lone $6.66
    assert body["totals"]["withheld_weeks"] == [two_weeks.since.isoformat()]


@pytest.mark.parametrize(
    ("period", "by", "message"),
    [
        (Period(date(2026, 11, 3), date(2026, 11, 9)), "week", "whole weeks, Monday to Sunday"),
        (Period(date(2026, 11, 2), date(2026, 11, 8)), "day", "use --by week"),
    ],
)
def test_a_group_is_shown_only_in_whole_weeks(session: Session, period: Period, by: str, message: str) -> None:
    from bot.periods import PeriodError

    with pytest.raises(PeriodError, match=message):
        build_report(session, Scope.org(), period, Disclosure(3), by=by)


def test_the_manager_summary_gets_no_fact_the_dominance_rule_withholds(session: Session) -> None:
    from bot.summaries import team_facts

    team = _platform(
        session, [("big@x.io", 900_000, "90.00")] + [(f"s{i}@x.io", 1000, "0.01") for i in range(3)], idle=0
    )
    scope = Scope.team(team.id or 0, team.name)
    report = build_report(session, scope, group_weeks(session, scope, "UTC"), Disclosure(3))
    assert report.totals.metrics is not None
    facts = team_facts(report.totals.metrics, None, 0, report.period, report.totals.hidden)

    assert {fact.key for fact in facts}.isdisjoint({"cost_usd", "verified_spend_share", "cost_per_useful_run"})
    assert "90" not in " ".join(fact.text for fact in facts)


# -- found in review: sums, unions, joiners, zones, made-up people, summaries, nameless rows ----------
W1 = Period(date(2026, 11, 2), date(2026, 11, 8))
W2 = Period(date(2026, 11, 9), date(2026, 11, 15))


def _people(session: Session, prefix: str, count: int) -> list[Person]:
    return [f.person(session, f"{prefix}{index}@example.com") for index in range(count)]


def _spend(session: Session, who: list[Person], day: date, cost: str, tokens: int = 5000, hour: int = 12) -> None:
    source = f.source(session)
    for member in who:
        f.usage(session, source, member, f"{day.isoformat()} {hour:02d}:00", cost, tokens=(tokens, 0, 0, 0))


def _team_of(session: Session, name: str, members: list[Person], **since: datetime) -> Team:
    team = f.team(session, name)
    for member in members:
        session.add(Membership(person_id=member.id or 0, team_id=team.id or 0, since=since.get(member.email or "")))
    session.flush()
    return team


def _shown(session: Session, scope: Scope, period: Period) -> dict[str, Any]:
    return report_json(build_report(session, scope, period, Disclosure()))  # type: ignore[no-any-return]


def test_a_figure_hidden_in_one_week_stays_hidden_in_every_range_holding_it(session: Session) -> None:
    people = _people(session, "p", 5)
    team = _team_of(session, "t", people)
    _spend(session, people[:1], W1.since, "90")
    _spend(session, people[1:], W1.since, "1")
    _spend(session, people, W2.since, "20")
    scope = Scope.team(team.id or 0, "t")

    assert "cost_usd" in _shown(session, scope, W1)["totals"]["withheld_figures"]
    assert _shown(session, scope, W2)["totals"]["cost_usd"] == 100.0
    both = _shown(session, scope, Period(W1.since, W2.until))["totals"]
    assert both["cost_usd"] is None and "cost_usd" in both["withheld_figures"]


def test_the_organisation_minus_a_team_leaves_no_sum_one_person_made(session: Session) -> None:
    a, b = _people(session, "a", 5), _people(session, "b", 5)
    _team_of(session, "A", a)
    _team_of(session, "B", b)
    _spend(session, a[:1], W1.since, "90")
    _spend(session, a[1:], W1.since, "1")
    _spend(session, b, W1.since, "10")

    organisation = _shown(session, Scope.org(), W1)["totals"]

    assert organisation["withheld"] is None and organisation["cost_usd"] is None  # minus B it is A's, 90% one person
    assert organisation["input_tokens"] == 50_000  # tokens are spread evenly: shown


def test_part_of_the_teams_inside_the_organisation_cannot_be_subtracted_either(session: Session) -> None:
    first, second = _people(session, "a", 5), _people(session, "b", 5)
    (loner,) = _people(session, "x", 1)
    _team_of(session, "T1", first)
    _team_of(session, "T2", second)
    _team_of(session, "guild", [loner, *first[:4]])  # covers the loner, so "all teams together" leaves nobody
    _spend(session, first + second, W1.since, "10")
    _spend(session, [loner], W1.since, "3.33", tokens=7777)

    assert _shown(session, Scope.org(), W1)["totals"]["withheld"] is not None  # org - T1 - T2 = the loner


def test_someone_who_joins_mid_week_is_no_member_of_that_week_for_the_rules(session: Session) -> None:
    people = _people(session, "p", 5)
    (joiner,) = _people(session, "x", 1)
    wednesday = datetime(2026, 11, 4, 9, tzinfo=UTC)
    _team_of(session, "T", [*people, joiner], **{joiner.email or "": wednesday})
    _spend(session, people, W1.since + timedelta(days=3), "10")
    _spend(session, [joiner], W1.since, "1.23", tokens=4321)  # Monday, before joining
    _spend(session, [joiner], W1.since + timedelta(days=4), "0.50", tokens=1000)  # Friday, after

    assert _shown(session, Scope.org(), W1)["totals"]["withheld"] is not None  # org - T = the joiner's Monday


def test_added_members_count_from_the_next_monday_in_the_teams_zone(session: Session) -> None:
    from bot.periods import next_week_start

    assert next_week_start(datetime(2026, 11, 4, 9, tzinfo=UTC), "UTC") == datetime(2026, 11, 9, tzinfo=UTC)
    sunday_evening_in_tokyo = datetime(2026, 11, 8, 10, tzinfo=UTC)
    assert next_week_start(sunday_evening_in_tokyo, "Asia/Tokyo") == datetime(2026, 11, 8, 15, tzinfo=UTC)


def test_a_team_in_another_time_zone_keeps_the_organisation_from_being_compared_with_it(session: Session) -> None:
    people = _people(session, "p", 6)
    team = _team_of(session, "T", people)
    team.timezone = "America/Los_Angeles"
    _spend(session, people, W1.since + timedelta(days=2), "10")
    _spend(session, people[:1], W1.since, "2.72", tokens=3141, hour=3)  # Sunday evening in Los Angeles
    now = datetime(2026, 11, 10, 12, tzinfo=UTC)

    organisation = _shown(session, Scope.org(), group_weeks(session, Scope.org(), "UTC", now=now))["totals"]

    assert organisation["withheld"] is not None and "another time zone" in organisation["withheld"]


def test_made_up_people_a_shared_token_sends_for_count_for_nobody(harness: Harness) -> None:
    with session_scope(harness.engine) as session:
        _platform(session, [(f"m{i}@example.com", 5000, "10.00") for i in range(5)], idle=0)
        victim = f.person(session, VICTIM)  # bound by Slack, in no team: the one person outside
        f.usage(session, f.source(session), victim, last_week_noon().strftime("%Y-%m-%d %H:%M"), "42.17")
    token = ingest_token(harness.engine)
    fakes = {"records": [record(f"f{i}", f"fake{i}@nowhere.invalid", 1_000_000, "100") for i in range(4)]}
    assert harness.http.post("/v1/usage", json=fakes, headers=token).status_code == 200

    with Session(harness.engine) as session:
        organisation = _totals(session, Scope.org())

    assert organisation["withheld"] is not None  # without the fakes' known sums, org - platform = the victim
    assert organisation["cost_usd"] is None


def test_the_summary_gives_no_change_of_a_figure_hidden_the_period_before(session: Session) -> None:
    from bot.summaries import team_facts

    people = _people(session, "p", 5)
    team = _team_of(session, "T", people)
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    scope = Scope.team(team.id or 0, "T")
    period = group_weeks(session, scope, "UTC", 4, now)
    earlier = period.previous()
    _spend(session, people[:1], earlier.since, "90")
    _spend(session, people[1:], earlier.since, "1")
    _spend(session, people, period.since, "20")

    report = build_report(session, scope, period, Disclosure())
    assert report.totals.metrics is not None and "cost_usd" in report.previous.hidden
    facts = team_facts(
        report.totals.metrics, report.previous.metrics, 0, period, report.totals.hidden, report.previous.hidden
    )

    assert "change_cost_per_useful_run" not in {fact.key for fact in facts}
    assert "change_verified_spend_share" not in {fact.key for fact in facts}


def test_a_slack_only_rows_data_and_tokens_follow_its_owner_to_their_email(session: Session) -> None:
    from storage.models import Source
    from storage.people import bind_slack_user
    from storage.sources import create_personal_source

    nameless = bind_slack_user(session, slack_user_id="U1", email=None).person  # a profile without email
    personal = create_personal_source(session, nameless.id or 0)
    f.usage(session, f.source(session), nameless, "2026-11-03 10:00", "1.00")
    mine = f.person(session, "u1@example.com")
    mine.slack_user_id = None

    bound = bind_slack_user(session, slack_user_id="U1", email="u1@example.com")

    assert bound.person.id == mine.id and bound.released == nameless.id
    assert session.get(Source, personal.source.id).person_id == mine.id  # type: ignore[union-attr]
    usage = session.exec(select(UsageRecord)).all()
    assert [record.person_id for record in usage] == [mine.id]
