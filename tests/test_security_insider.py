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
from bot.reports import Disclosure, build_report, group_weeks, report_json
from storage.db import session_scope
from storage.metrics import Scope
from storage.models import AuditEvent, Membership, Person, Team, UsageRecord
from storage.sources import create_source
from tests import factories as f
from tests.slack_harness import (  # noqa: F401  (fixtures)
    ADA,
    ALAN,
    EMAILS,
    GRACE,
    Harness,
    count,
    harness_fixture,
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
    assert body["withheld"] is None and body["withheld_figures"] == {}
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
