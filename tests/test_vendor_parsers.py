"""Cursor's and Copilot's payloads read by pure parsers: any JSON gives rows or a clear error, never a crash,
and the documented examples read as documented."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.sources import copilot_metrics as copilot
from bot.sources import cursor_admin as cursor

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
cursor_fields = st.sampled_from(
    [
        "day",
        "date",
        "email",
        "userId",
        "isActive",
        "chatRequests",
        "composerRequests",
        "agentRequests",
        "cmdkUsages",
        "totalAccepts",
        "totalRejects",
        "usageBasedReqs",
        "mostUsedModel",
        "totalTabsAccepted",
    ]
)
cursor_rows = st.dictionaries(cursor_fields, json_values | st.just("2026-11-23") | st.just(1795392000000), max_size=8)


@settings(max_examples=150, deadline=None)
@given(payload=json_values | st.fixed_dictionaries({"data": st.lists(cursor_rows, max_size=5)}))
def test_any_daily_usage_payload_gives_days_or_a_clear_error(payload: Any) -> None:
    try:
        page = cursor.parse_daily_usage(payload)
    except cursor.CursorPayloadInvalid as error:
        assert str(error)
        return
    for item in page.days:
        assert item.requests >= 0 and item.accepts >= 0 and item.rejects >= 0
        assert item.email is None or item.email == item.email.lower()
        assert 0 < len(item.model) <= 120
    assert len(page.days) + page.skipped == len(payload.get("data") or [])


spend_fields = st.sampled_from(["email", "spendCents", "overallSpendCents", "includedSpendCents", "userId"])


@settings(max_examples=150, deadline=None)
@given(
    payload=json_values
    | st.fixed_dictionaries(
        {
            "teamMemberSpend": st.lists(
                st.dictionaries(spend_fields, json_values | st.just("a@b.co") | st.floats(0, 1e6), max_size=5),
                max_size=5,
            ),
            "totalPages": json_values,
        }
    )
)
def test_any_spend_payload_gives_members_or_a_clear_error(payload: Any) -> None:
    try:
        page = cursor.parse_spend(payload)
    except cursor.CursorPayloadInvalid as error:
        assert str(error)
        return
    assert page.total_pages >= 1
    for member in page.members:
        assert member.cents >= 0 and member.cents.is_finite()
        assert "@" in member.email


def test_cursors_documented_daily_usage_example_reads_as_documented() -> None:
    """The paginated example of Cursor's reference: an active member and an inactive one."""
    example = {
        "data": [
            {
                "userId": 12345,
                "day": "2024-03-18",
                "date": 1710720000000,
                "isActive": True,
                "totalLinesAdded": 1543,
                "acceptedLinesAdded": 1102,
                "totalApplies": 87,
                "totalAccepts": 73,
                "totalRejects": 14,
                "totalTabsShown": 342,
                "totalTabsAccepted": 289,
                "composerRequests": 45,
                "chatRequests": 128,
                "agentRequests": 12,
                "cmdkUsages": 67,
                "subscriptionIncludedReqs": 180,
                "apiKeyReqs": 0,
                "usageBasedReqs": 5,
                "bugbotUsages": 3,
                "mostUsedModel": "gpt-5",
                "email": "developer@company.com",
            },
            {
                "userId": 12346,
                "day": "2024-03-18",
                "date": 1710720000000,
                "isActive": False,
                "totalAccepts": 0,
                "chatRequests": 0,
                "mostUsedModel": None,
                "email": "inactive-user@company.com",
            },
        ],
        "period": {"startDate": 1710720000000, "endDate": 1710892800000},
        "pagination": {"page": 1, "pageSize": 1000, "totalUsers": 150, "totalPages": 1, "hasNextPage": False},
    }
    page = cursor.parse_daily_usage(example)
    active, inactive = page.days
    assert (active.day, active.email, active.requests, active.accepts, active.rejects) == (
        date(2024, 3, 18),
        "developer@company.com",
        45 + 128 + 12 + 67,
        73,
        14,
    )
    assert (active.model, active.usage_based_requests, active.used) == ("gpt-5", 5, True)
    assert (inactive.model, inactive.used) == ("unknown", False)
    assert page.has_next is False


def test_a_row_without_day_reads_its_epoch_milliseconds_as_a_utc_day() -> None:
    page = cursor.parse_daily_usage({"data": [{"date": 1710806400000, "email": "A@B.co"}, {"email": "x@y.z"}]})
    assert [(d.day, d.email) for d in page.days] == [(date(2024, 3, 19), "a@b.co")]
    assert page.skipped == 1


def test_spend_prefers_the_cycles_overall_total_and_keeps_fractions_of_a_cent() -> None:
    page = cursor.parse_spend(
        {
            "teamMemberSpend": [
                {"email": "a@x.io", "spendCents": 2450, "overallSpendCents": 9445.474115},
                {"email": "b@x.io", "spendCents": 100, "includedSpendCents": 4000},
                {"email": "c@x.io", "spendCents": 1875},
                {"email": "d@x.io"},
            ],
            "subscriptionCycleStart": 1708992000000,
            "totalPages": 3,
        }
    )
    assert [(m.email, m.cents) for m in page.members] == [
        ("a@x.io", Decimal("9445.474115")),
        ("b@x.io", Decimal(4100)),
        ("c@x.io", Decimal(1875)),
    ]
    assert (page.skipped, page.total_pages, page.cycle_start) == (1, 3, date(2024, 2, 27))


ndjson_lines = st.one_of(
    st.text(max_size=30),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"day": st.sampled_from(["2026-11-23", "nope", 5]), "user_login": json_values | st.just("OctoCat")},
        optional={"user_initiated_interaction_count": json_values, "totals_by_model_feature": json_values},
    ).map(json.dumps),
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(ndjson_lines, max_size=6))
def test_any_report_file_gives_days_and_a_count_of_skipped_lines(lines: list[str]) -> None:
    text = "\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines)
    report = copilot.parse_ndjson(text)
    assert len(report.days) + report.skipped == sum(1 for line in text.splitlines() if line.strip())
    for item in report.days:
        assert item.login == item.login.lower() and item.interactions >= 0


@settings(max_examples=100, deadline=None)
@given(payload=json_values)
def test_any_report_metadata_gives_links_or_a_clear_error(payload: Any) -> None:
    try:
        links = copilot.parse_report_links(payload)
    except copilot.CopilotPayloadInvalid as error:
        assert str(error)
        return
    assert all(isinstance(link, str) and link for link in links.links)


def test_githubs_user_level_example_schema_reads_as_documented() -> None:
    example = {
        "code_acceptance_activity_count": 1,
        "code_generation_activity_count": 1,
        "day": "2025-10-01",
        "enterprise_id": "1",
        "loc_added_sum": 8,
        "loc_deleted_sum": 0,
        "loc_suggested_to_add_sum": 10,
        "totals_by_feature": [{"feature": "code_completion", "user_initiated_interaction_count": 0}],
        "totals_by_model_feature": [
            {"model": "gpt-5", "feature": "chat_panel_agent_mode", "user_initiated_interaction_count": 2},
            {"model": "claude-sonnet-4.5", "feature": "chat_panel_ask_mode", "user_initiated_interaction_count": 3},
        ],
        "used_agent": False,
        "used_chat": True,
        "used_cli": True,
        "user_id": 1,
        "user_login": "Login1",
        "user_initiated_interaction_count": 5,
    }
    (item,) = copilot.parse_ndjson(json.dumps(example) + "\n\n").days
    assert (item.day, item.login, item.interactions, item.generations, item.acceptances) == (
        date(2025, 10, 1),
        "login1",
        5,
        1,
        1,
    )
    assert (item.loc_added, item.loc_suggested, item.used_chat, item.model) == (8, 10, True, "claude-sonnet-4.5")


def test_a_person_in_two_files_of_a_day_has_their_counts_added() -> None:
    one = copilot.parse_line({"day": "2026-11-23", "user_login": "ana", "user_initiated_interaction_count": 2})
    two = copilot.parse_line({"day": "2026-11-23", "user_login": "ANA", "user_initiated_interaction_count": 3})
    assert one is not None and two is not None
    assert copilot.merge_days([one, two])[(date(2026, 11, 23), "ana")].interactions == 5


@pytest.mark.parametrize(("day", "share"), [(date(2026, 2, 10), Decimal(1)), (date(2026, 11, 23), Decimal("0.9"))])
def test_a_seat_costs_its_monthly_price_spread_over_the_months_days(day: date, share: Decimal) -> None:
    price = Decimal(28) if day.month == 2 else Decimal(27)
    assert copilot.seat_share(price, day) == share
    assert copilot.seat_share(None, day) is None
