"""The metrics engine, on SQLite and PostgreSQL, against hand-computed numbers from docs/metrics.md."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from bot.periods import Period
from bot.reports import build_report, report_json
from bot.seed import seed_organisation
from storage.metrics import Scope, compute, compute_windows
from tests.support import factories as f

WEEK = Period(date(2026, 11, 2), date(2026, 11, 8))


def build_worked_example(session: Session) -> Scope:
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    colleague = f.person(session, "bo@example.com")
    f.usage(session, src, ada, "2026-11-01 12:00", "5.00")
    r1 = f.run(session, src, ada, "2026-11-02 10:00")
    f.usage(session, src, ada, "2026-11-02 10:01", "0.40", r1)
    f.usage(session, src, ada, "2026-11-02 10:02", "0.60", r1)
    f.annotate(session, r1, ada, "useful")
    f.outcome(session, ada, "pr_merged", "2026-11-03 09:00", r1)
    r2 = f.run(session, src, ada, "2026-11-03 10:00")
    f.usage(session, src, ada, "2026-11-03 10:01", "2.00", r2)
    f.annotate(session, r2, ada, "partly")
    f.annotate(session, r2, colleague, "useful")  # not the owner: ignored
    r3 = f.run(session, src, ada, "2026-11-04 10:00")
    f.usage(session, src, ada, "2026-11-04 10:01", "3.00", r3)
    f.outcome(session, ada, "commit", "2026-11-04 11:00", r3)
    r4 = f.run(session, src, ada, "2026-11-05 10:00")
    f.usage(session, src, ada, "2026-11-05 10:01", None, r4, model="in-house-model")
    f.usage(session, src, ada, "2026-11-05 10:02", "4.00", r4)
    f.annotate(session, r4, ada, "not_useful")
    f.usage(session, src, ada, "2026-11-06 10:00", "1.00")
    f.outcome(session, ada, "doc", "2026-11-07 10:00")
    f.outcome(session, ada, "commit", "2026-11-05 11:00", r4, evidence=False)  # Claude Code's own counter
    session.commit()
    return Scope.person(ada.id or 0, "ada@example.com")


def test_worked_example_matches_docs(session: Session) -> None:
    scope = build_worked_example(session)
    m = compute(session, scope, WEEK.start, WEEK.end)
    assert (m.runs, m.reviewed_runs) == (4, 3)
    assert m.reviewed_share == Decimal("0.75")
    assert m.useful_runs == Decimal("1.5")
    assert m.useful_rate == Decimal("0.5")
    assert m.cost_usd == Decimal("11")
    assert m.cost_unknown_records == 1
    assert m.outcome_value == Decimal("4.5")
    assert m.outcomes_by_kind == {"commit": 1, "doc": 1, "pr_merged": 1}
    assert m.self_reported_by_kind == {"commit": 1}
    assert m.verified_cost_usd == Decimal("4")
    assert (m.merged_prs, m.cost_per_merged_pr) == (1, Decimal("11"))
    assert (m.input_tokens, m.output_tokens, m.cache_read_tokens, m.cache_write_tokens) == (7000, 700, 3500, 350)

    totals = report_json(build_report(session, scope, WEEK, 5))
    assert totals["totals"]["cost_per_useful_run"] == 7.333333
    assert totals["totals"]["cost_per_outcome"] == 2.444444
    assert totals["totals"]["verified_spend_share"] == 0.3636
    assert totals["totals"]["cost_per_merged_pr"] == 11.0
    assert totals["previous"]["cost_usd"] == 5.0
    assert totals["previous"]["verified_spend_share"] == 0.0
    assert totals["change"]["cost_usd"] == 1.2


def test_ratios_with_a_zero_denominator_are_null_not_zero(session: Session) -> None:
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    f.usage(session, src, ada, "2026-11-03 10:00", "2.50")
    session.commit()
    body = report_json(build_report(session, Scope.person(ada.id or 0), WEEK, 5))["totals"]
    assert body["cost_usd"] == 2.5
    assert body["runs"] == 0
    assert body["reviewed_share"] is None
    assert body["cost_per_useful_run"] is None
    assert body["cost_per_outcome"] is None
    assert body["verified_spend_share"] == 0.0


def test_unknown_cost_is_counted_apart_and_never_as_zero(session: Session) -> None:
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    f.usage(session, src, ada, "2026-11-03 10:00", None)
    f.usage(session, src, ada, "2026-11-03 11:00", None)
    session.commit()
    body = report_json(build_report(session, Scope.person(ada.id or 0), WEEK, 5))["totals"]
    assert body["cost_unknown_records"] == 2
    assert body["cost_usd"] == 0.0
    assert body["verified_spend_share"] is None  # no known cost: no share


def _team_of(session: Session, size: int) -> Scope:
    src = f.source(session)
    platform = f.team(session, "platform")
    for i in range(size):
        member = f.person(session, f"p{i}@example.com", platform)
        run = f.run(session, src, member, "2026-11-03 10:00")
        f.usage(session, src, member, "2026-11-03 10:01", "1.00", run)
    f.person(session, "idle@example.com", platform)  # a member without activity does not count
    session.commit()
    return Scope.team(platform.id or 0, "platform")


def test_team_view_is_withheld_below_min_group_size(session: Session) -> None:
    scope = _team_of(session, 4)
    body = report_json(build_report(session, scope, WEEK, 5))["totals"]
    assert body["withheld"] and "fewer than 5 people" in body["withheld"]
    assert body["runs"] is None and body["cost_usd"] is None and body["verified_spend_share"] is None


def test_team_view_is_shown_at_min_group_size(session: Session) -> None:
    scope = _team_of(session, 5)
    body = report_json(build_report(session, scope, WEEK, 5))["totals"]
    assert body["withheld"] is None
    assert body["runs"] == 5
    assert body["cost_usd"] == 5.0


def test_team_scope_counts_only_its_members(session: Session) -> None:
    scope = _team_of(session, 5)
    src = f.source(session, "other")
    outsider = f.person(session, "outsider@example.com")
    f.usage(session, src, outsider, "2026-11-03 10:00", "100")
    session.commit()
    assert compute(session, scope, WEEK.start, WEEK.end).cost_usd == Decimal(5)
    assert compute(session, Scope.org(), WEEK.start, WEEK.end).cost_usd == Decimal(105)


def test_weekly_breakdown_splits_on_local_week_boundaries(session: Session) -> None:
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    # Sunday 23:30 in Berlin is Sunday 22:30 UTC; Monday 00:30 Berlin is Sunday 23:30 UTC.
    f.usage(session, src, ada, "2026-11-08 22:30", "1")
    f.usage(session, src, ada, "2026-11-08 23:30", "2")
    session.commit()
    period = Period(date(2026, 11, 2), date(2026, 11, 15), "Europe/Berlin")
    body = report_json(build_report(session, Scope.person(ada.id or 0), period, 5, by="week"))
    assert [p["start"] for p in body["periods"]] == ["2026-11-02", "2026-11-09"]
    assert [p["cost_usd"] for p in body["periods"]] == [1.0, 2.0]


@pytest.mark.parametrize("verdict", ["useful", "partly", "not_useful"])
def test_the_owners_own_verdict_never_verifies_spend(session: Session, verdict: str) -> None:
    """A verdict is the owner's feedback loop: it moves useful runs, never verified spend (evidence only)."""
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    run = f.run(session, src, ada, "2026-11-03 10:00")
    f.usage(session, src, ada, "2026-11-03 10:01", "4", run)
    f.annotate(session, run, ada, verdict)
    session.commit()
    m = compute(session, Scope.person(ada.id or 0), WEEK.start, WEEK.end)
    assert m.verified_spend_share == Decimal(0)
    assert m.useful_runs == {"useful": 1, "partly": Decimal("0.5"), "not_useful": 0}[verdict]


@pytest.mark.parametrize("evidence", [True, False])
def test_only_an_outcome_from_outside_the_person_verifies_its_run(session: Session, evidence: bool) -> None:
    src = f.source(session)
    ada = f.person(session, "ada@example.com")
    run = f.run(session, src, ada, "2026-11-03 10:00")
    f.usage(session, src, ada, "2026-11-03 10:01", "4", run)
    f.outcome(session, ada, "pr_merged", "2026-11-04 10:00", run, evidence=evidence)
    session.commit()
    m = compute(session, Scope.person(ada.id or 0), WEEK.start, WEEK.end)
    assert m.verified_spend_share == (Decimal(1) if evidence else Decimal(0))
    assert m.outcome_value == (Decimal(3) if evidence else Decimal(0))


def test_windows_read_together_give_what_each_window_gives_alone(engine: Engine) -> None:
    """compute_windows (a report's two windows, a digest's four weeks) against compute, window by window."""
    seed_organisation(engine, people=30, teams=3, weeks=6, seed=3, end=date(2026, 11, 25))
    weeks = [Period(date(2026, 10, 26), date(2026, 11, 1), "Europe/Berlin")]  # the week DST ended in Berlin
    for _ in range(4):
        following = weeks[-1].since + timedelta(days=7)
        weeks.append(Period(following, following + timedelta(days=6), "Europe/Berlin"))
    windows = [(week.start, week.end) for week in weeks]
    windows.insert(2, (weeks[1].end, weeks[1].end))  # an empty window between two weeks
    with Session(engine) as session:
        for scope in (Scope.person(1), Scope.person(17), Scope.team(2), Scope.org()):
            together = compute_windows(session, scope, windows)
            alone = [compute(session, scope, start, end) for start, end in windows]
            assert together == alone
            assert any(m.runs and m.outcomes and m.verified_cost_usd for m in together)
            gap = compute_windows(session, scope, [windows[0], windows[3]])  # a week left out between them
            assert gap == [alone[0], alone[3]]


def test_overlapping_windows_are_refused(session: Session) -> None:
    first = (WEEK.start, WEEK.end)
    with pytest.raises(ValueError, match="do not overlap"):
        compute_windows(session, Scope.org(), [first, (WEEK.start + timedelta(days=3), WEEK.end + timedelta(days=3))])
