"""The numbers check: a narrative may only use numbers that appear among the facts it was given."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.periods import Period
from bot.summaries import Fact, check_numbers, normalise_number, team_facts, template_narrative
from storage.metrics import Metrics

FACTS = [
    Fact("since", "First day", "2026-10-26"),
    Fact("cost_usd", "Known spend", "$1,234.50"),
    Fact("verified_spend_share", "Verified-spend share", "62%"),
    Fact("runs", "Agent runs", "1,234"),
    Fact("cost_per_useful_run", "Cost per useful run", "$3.40"),
    Fact("change", "Change in outcome value", "-12%"),
]


def test_formats_of_the_same_number_are_equal() -> None:
    assert normalise_number("$1,234.50") == normalise_number("1234.5") == Decimal("1234.5")
    assert normalise_number("12%") == normalise_number("12") == normalise_number("-12%") == Decimal(12)
    assert normalise_number("$3.40") == normalise_number("3.4")


def test_a_narrative_that_copies_the_facts_in_any_common_format_passes() -> None:
    narrative = (
        "Since 2026-10-26 the team made 1234 runs; 62 % of the $1234.50 spent was verified, "
        "at $3.4 per useful run, while outcome value fell 12%."
    )
    assert check_numbers(narrative, FACTS) == []


def test_a_made_up_number_is_caught() -> None:
    assert check_numbers("Verified share rose to 63% this month.", FACTS) == ["63%"]
    assert check_numbers("That is $1,235 in total.", FACTS) == ["$1,235"]


def test_rounding_a_fact_counts_as_making_a_number_up() -> None:
    assert check_numbers("Roughly $1,200 was spent.", FACTS) == ["$1,200"]


def test_spelled_out_numbers_and_unknown_dates_are_caught() -> None:
    assert check_numbers("Spend doubled over three weeks.", FACTS) == ["doubled", "three"]
    assert check_numbers("Since 2026-10-27 things improved.", FACTS) == ["2026-10-27"]


def test_words_that_merely_contain_digits_are_not_numbers_but_versions_are() -> None:
    assert check_numbers("Usage in Q3 of the team", FACTS) == []
    assert check_numbers("Most runs used version 4.1", FACTS) == ["4.1"]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_checked_without_crashing(text: str) -> None:
    problems = check_numbers(text, FACTS)
    assert isinstance(problems, list)
    assert all(isinstance(problem, str) and problem for problem in problems)


money = st.decimals(min_value=0, max_value=100_000, places=9, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    runs=st.integers(0, 50_000),
    reviewed=st.integers(0, 50_000),
    useful_halves=st.integers(0, 100_000),
    cost=money,
    verified_fraction=st.decimals(min_value=0, max_value=1, places=4),
    outcome_value=st.decimals(min_value=0, max_value=10_000, places=3),
    prs=st.integers(0, 500),
    previous_cost=money,
)
def test_the_template_always_passes_its_own_numbers_check(
    runs: int,
    reviewed: int,
    useful_halves: int,
    cost: Decimal,
    verified_fraction: Decimal,
    outcome_value: Decimal,
    prs: int,
    previous_cost: Decimal,
) -> None:
    reviewed = min(reviewed, runs)
    metrics = Metrics(
        active_people=7,
        runs=runs,
        reviewed_runs=reviewed,
        useful_runs=Decimal(min(useful_halves, 2 * reviewed)) / 2,
        cost_usd=cost,
        verified_cost_usd=cost * verified_fraction,
        outcome_value=outcome_value,
        outcomes_by_kind={"pr_merged": prs} if prs else {},
    )
    previous = Metrics(active_people=6, runs=3, reviewed_runs=1, useful_runs=Decimal(1), cost_usd=previous_cost)
    period = Period(date(2026, 10, 26), date(2026, 11, 22), "Europe/Berlin")
    facts = team_facts(metrics, previous, prs, period)
    narrative = template_narrative(facts, "no language model is configured")
    assert narrative.startswith("Written from a template because no language model is configured.")
    assert check_numbers(narrative, facts) == []
