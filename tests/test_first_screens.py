"""What a newcomer reads first (issue 18): cost coverage on every figure, set-up text that works off
localhost, terminal output without Slack's markup, and no "-0%"."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from bot.numbers import share, signed_percent, trend
from handlers.slack.terminal import mrkdwn_to_rich, terminal_lines
from storage.models import Membership
from tests.support.slack_harness import ADA, ALAN, GRACE, Harness, in_last_week, person, run, team
from tests.test_cli import tokenwise
from tests.test_digest_slack_commands import answer
from tests.test_security_insider_sources import connect


def thinly_priced_team(harness: Harness, priced_runs: int = 1, unpriced_runs: int = 3) -> None:
    """Three people, each with `priced_runs` runs of known cost (one with a merged PR) and `unpriced_runs`
    of unknown cost, last week; Ada manages the team."""
    with Session(harness.engine, expire_on_commit=False) as session:
        members = [person(session, ADA), person(session, GRACE), person(session, ALAN)]
        for member in members:
            for i in range(priced_runs):
                run(session, member, f"priced {i}", tokens=5000, cost="2.00", ago=in_last_week(), outcome=i == 0)
            for i in range(unpriced_runs):
                later = in_last_week() - timedelta(minutes=10 + i)
                run(session, member, f"in-house {i}", tokens=5000, cost=None, ago=later)
        made = team(session, "platform", members)
        ada = session.exec(select(Membership).where(Membership.team_id == made.id)).first()
        assert ada is not None
        ada.role = "manager"
        session.add(ada)
        session.commit()


def test_a_persons_shares_over_a_sliver_of_priced_usage_say_so(harness: Harness) -> None:
    thinly_priced_team(harness)
    said = answer(harness, "me last week")
    assert "cost known for 1 of 4 records" in said
    assert "*Verified-spend share*\nnot enough priced usage" in said
    assert "*Cost per merged PR*\nnot enough priced usage" in said
    assert "Not enough priced usage: cost known for 1 of 4 records" in said  # the reason, once


def test_a_teams_view_and_digest_say_not_enough_priced_usage(harness: Harness) -> None:
    thinly_priced_team(harness)
    for said in (answer(harness, "team platform"), answer(harness, "digest preview platform")):
        assert "cost known for 3 of 12 records" in said
        assert "not enough priced usage" in said
        assert "100%" not in said and "%" not in said.split("Verified-spend share", 1)[1].split("\n")[1]


def test_with_most_cost_known_the_share_is_shown_with_its_coverage(harness: Harness) -> None:
    thinly_priced_team(harness, priced_runs=3, unpriced_runs=1)
    said = answer(harness, "team platform")
    assert "cost known for 9 of 12 records" in said
    assert "not enough priced usage" not in said
    assert "*Verified-spend share*\n33%" in said


def test_the_summary_facts_carry_the_coverage_and_leave_out_the_share(harness: Harness) -> None:
    thinly_priced_team(harness)
    said = answer(harness, "summary platform", ADA)
    assert "3 of 12" in said
    assert "Verified-spend share" not in said


def test_the_report_json_carries_cost_coverage_and_the_reason(harness: Harness, db_url: str) -> None:
    thinly_priced_team(harness)
    result = tokenwise(db_url, "report", "--person", "ada@example.com", "--since", "2026-01-01", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    totals = body.get("totals", body)
    assert totals["cost_coverage"] == {"records": 0.25, "tokens": 0.25, "known_records": 1, "total_records": 4}
    assert totals["verified_spend_share"] is None
    assert totals["withheld_figures"]["verified_spend_share"].startswith("Not enough priced usage")
    text = tokenwise(db_url, "report", "--person", "ada@example.com", "--since", "2026-01-01")
    assert "not enough priced usage" in text.stdout
    assert "Unknown cost: 3 records of claude-code on model 'claude-sonnet-4'" in text.stdout


# -- set-up text that works from another machine ------------------------------------------------------
def test_connect_shows_the_public_address_when_the_operator_set_it(harness: Harness) -> None:
    shown, _token = connect(harness)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=https://tokenwise.example.com/v1/otlp" in shown
    assert "has not set" not in shown


def test_connect_without_a_public_address_says_so_and_shows_no_localhost(harness: Harness) -> None:
    harness.services.settings = harness.services.settings.model_copy(update={"public_url": None})
    shown, token = connect(harness)
    assert "has not set Tokenwise's public address yet" in shown and "TOKENWISE_PUBLIC_URL" in shown
    assert "localhost" not in shown and "127.0.0.1" not in shown
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=https://TOKENWISE-ADDRESS/v1/otlp" in shown
    assert token.startswith("tw_")


# -- the terminal -----------------------------------------------------------------------------------
def test_the_cli_summary_prints_no_slack_markup(harness: Harness, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWISE_MIN_GROUP_SIZE", "3")
    thinly_priced_team(harness, priced_runs=3, unpriced_runs=1)
    result = tokenwise(db_url, "summary", "--team", "platform", "--as", "ada@example.com")
    assert result.returncode == 0, result.stderr
    assert "People active" in result.stdout
    assert "evidence from outside their owner" in result.stdout  # verified means evidence, never a verdict
    assert "useful verdict" not in result.stdout
    for markup in ("*People active*", ":lock:", "&lt;", "&gt;", "```", "-0%"):
        assert markup not in result.stdout


def test_mrkdwn_becomes_terminal_styles_links_and_characters() -> None:
    assert mrkdwn_to_rich("*Runs* at 09:00:00 :lock: <https://x.test/pr/1|PR 1>") == (
        "[bold]Runs[/bold] at 09:00:00 🔒 PR 1 (https://x.test/pr/1)"
    )
    lines = terminal_lines([{"type": "section", "fields": [{"type": "mrkdwn", "text": "*Known cost*\n$1.00"}]}])
    assert lines == ["[bold]Known cost[/bold]", "$1.00"]


@pytest.mark.parametrize("value", [-0.004, -0.0, 0.0, 0.004, -1e-9])
def test_no_percentage_reads_minus_zero(value: float) -> None:
    assert share(value) == "0%"
    assert signed_percent(value) == "0%"
    assert trend(value) == "= 0%"


def test_the_token_share_of_cost_coverage_is_withheld_with_the_token_figures() -> None:
    """One person making most of a team's tokens on an unpriced model: the dominance rule withholds the token
    figures, and the coverage by tokens would give that share away, so it goes too."""
    from bot.reports import cost_coverage_json
    from storage.metrics import Metrics

    metrics = Metrics(input_tokens=100_000, usage_records=10, cost_unknown_records=1, cost_known_tokens=8_000)
    shown = cost_coverage_json(metrics)
    assert shown == {"records": 0.9, "tokens": 0.08, "known_records": 9, "total_records": 10}
    withheld = cost_coverage_json(metrics, {"total_tokens": "one person made most of it"})
    assert withheld is not None and withheld["tokens"] is None and withheld["records"] == 0.9
