"""Anthropic's admin APIs on a loopback stand-in serving their documented shapes over several pages: Claude
Code Analytics (per person and day) and the Usage & Cost reports (billed organisation totals), by hand and
on the schedule, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

import bot.cli.commands  # noqa: F401  (registers the commands)
from bot.cli.root import app
from bot.config import Settings, get_settings
from bot.jobs import build_scheduler
from bot.periods import Period
from bot.reconcile import reconcile
from bot.reports import spend_label
from bot.services import Services
from bot.sources import anthropic_cost, claude_code_analytics
from bot.summaries import reconcile_facts
from storage.daily_usage import day_start
from storage.metrics import Metrics, Scope, compute
from storage.models import (
    BilledCost,
    Outcome,
    Person,
    ToolDecision,
    UnattributedUsage,
    UsageRecord,
    VendorPullState,
    id_of,
)
from storage.sources import internal_source
from storage.vendors import Decisions, replace_decisions
from tests.support.ingest_fixtures import row_counts
from tests.support.slack_harness import ADA, GRACE, Harness, person, run
from tests.support.vendor_api_standin import Query, VendorApiStandIn
from tests.test_ingest_counted_once import EMAIL, PRECISE, SOURCES
from tests.test_slack_app import texts

KEY = "sk-ant-admin01-test"
D23, D24, D25 = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)
runner = CliRunner()


def record(
    email: str | None, day: date, models: list[tuple[str, int, int, int, int, int]], **extra: Any
) -> dict[str, Any]:
    """A record as the docs show it; models: (model, input, output, cache_read, cache_creation, cents)."""
    actor = {"type": "user_actor", "email_address": email} if email else {"type": "api_actor", "api_key_name": "ci-key"}
    return {
        "actor": actor,
        "core_metrics": {
            "commits_by_claude_code": extra.get("commits", 0),
            "lines_of_code": {"added": 342, "removed": 128},
            "num_sessions": 3,
            "pull_requests_by_claude_code": extra.get("prs", 0),
        },
        "customer_type": "api",
        "date": f"{day.isoformat()}T00:00:00Z",
        "model_breakdown": [
            {
                "estimated_cost": {"amount": cents, "currency": "USD"},
                "model": model,
                "tokens": {"cache_creation": write, "cache_read": read, "input": inp, "output": out},
            }
            for model, inp, out, read, write, cents in models
        ],
        "organization_id": "12345678-1234-5678-1234-567812345678",
        "subscription_type": "enterprise",
        "terminal_type": "iTerm.app",
        "tool_actions": {
            "edit_tool": {"accepted": extra.get("accepted", 0), "rejected": extra.get("rejected", 0)},
            "multi_edit_tool": {"accepted": 1, "rejected": 0},
            "notebook_edit_tool": {"accepted": 0, "rejected": 0},
            "write_tool": {"accepted": 2, "rejected": 1},
        },
    }


SONNET, HAIKU = "claude-sonnet-4-5", "claude-3-5-haiku-20241022"
DAYS: dict[str, list[dict[str, Any]]] = {
    "2026-11-23": [
        record("Ana@Example.com", D23, [(SONNET, 45230, 12450, 8790, 2340, 186), (HAIKU, 23100, 5680, 3420, 890, 42)],
               commits=2, prs=1, accepted=25, rejected=3),
        record("bo@example.com", D23, [(SONNET, 1000, 100, 0, 0, 3)], commits=1),
        record(None, D23, [(SONNET, 500, 50, 0, 0, 2)]),
    ],
    "2026-11-24": [
        record(EMAIL, D24, [(SONNET, 999, 99, 9, 0, 7)], accepted=4, rejected=1),
        record("bo@example.com", D24, [(SONNET, 10, 1, 0, 0, 1)]),
        record("zoe@example.com", D24, [(HAIKU, 20, 2, 0, 0, 1)]),
    ],
}  # fmt: skip


class Analytics:
    def __init__(self) -> None:
        self.days = copy.deepcopy(DAYS)

    def answer(self, query: Query) -> dict[str, Any]:
        day = query["starting_at"][0]
        return VendorApiStandIn.paginate(self.days.get(day, []), query, page_size=2)


@pytest.fixture
def anthropic() -> Iterator[tuple[VendorApiStandIn, Analytics]]:
    state = Analytics()
    with VendorApiStandIn(headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}) as api:
        api.route("/v1/organizations/usage_report/claude_code", state.answer)
        api.route("/v1/organizations/cost_report", lambda q: api.paginate(COST_BUCKETS, q, page_size=1))
        api.route("/v1/organizations/usage_report/messages", lambda q: api.paginate(USAGE_BUCKETS, q, page_size=1))
        yield api, state


def settings_for(api: VendorApiStandIn, db_url: str = "sqlite://") -> Settings:
    return Settings(anthropic_admin_key=KEY, anthropic_api_url=api.base_url, database_url=db_url)  # type: ignore[call-arg]


def usage(engine: Engine) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    with Session(engine) as session:
        emails = {p.id: p.email for p in session.exec(select(Person)).all()}
        return {
            (r.occurred_at.date().isoformat(), emails[r.person_id] or "", r.model): (
                r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens, r.cost_usd, r.cost_source,
                r.counted,
            )
            for r in session.exec(select(UsageRecord)).all()
            if r.dedupe_key.startswith("claude-code-analytics:")
        }  # fmt: skip


def test_a_pull_walks_the_days_follows_the_pages_and_lands_per_person_day_and_model(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine
) -> None:
    api, _ = anthropic
    waits: list[float] = []
    api.fail_next("/claude_code", 429, retry_after="2")
    pulled = claude_code_analytics.pull(settings_for(api), engine, D23, D24, sleep=waits.append)
    assert waits == [2.0]  # the 429's retry-after, then success
    assert (pulled.records, pulled.pages) == (6, 4)  # three records a day, two to a page
    asked = [(q["starting_at"][0], q.get("page")) for path, q, _ in api.requests if path.endswith("/claude_code")]
    assert [day for day, _ in asked] == ["2026-11-23"] * 3 + ["2026-11-24"] * 2  # the 429'd request, retried
    assert asked[2][1] is not None and asked[1][1] is None  # the second page asked with the first's next_page
    stored = usage(engine)
    # estimated_cost.amount is in cents (Anthropic's docs: minor currency units): 186 -> $1.86
    assert stored[("2026-11-23", "ana@example.com", SONNET)] == (
        45230,
        12450,
        8790,
        2340,
        Decimal("1.86"),
        "reported",
        True,
    )
    assert stored[("2026-11-23", "ana@example.com", HAIKU)][4] == Decimal("0.42")
    assert len(stored) == 6  # the API key's row is kept apart, naming nobody
    with Session(engine) as session:
        loose = session.exec(select(UnattributedUsage)).all()
        outcomes = session.exec(select(Outcome)).all()
        decisions = session.exec(select(ToolDecision)).all()
    assert [(u.identity_kind, u.identity_value, u.input_tokens) for u in loose] == [("api-key", "ci-key", 500)]
    kinds = sorted(o.kind for o in outcomes)
    assert kinds == ["commit", "commit", "commit", "pr_opened"]
    assert not any(o.evidence or o.counted for o in outcomes)  # what the tool says it created: not evidence
    edits = {(d.tool, d.accepted, d.rejected) for d in decisions if d.day == D23 and d.tool == "edit_tool"}
    assert edits == {("edit_tool", 25, 3)}


def test_a_repull_of_a_finished_day_changes_nothing_and_of_today_replaces_it_exactly(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine
) -> None:
    api, state = anthropic
    settings = settings_for(api)
    claude_code_analytics.pull(settings, engine, D23, D24)
    counts, before = row_counts(engine), usage(engine)
    claude_code_analytics.pull(settings, engine, D23, D24)
    assert row_counts(engine) == counts and usage(engine) == before
    state.days["2026-11-24"] = [record(EMAIL, D24, [(HAIKU, 5, 5, 0, 0, 1)])]  # today, later: other figures
    claude_code_analytics.pull(settings, engine, D24, D24)
    today = {key: value for key, value in usage(engine).items() if key[0] == "2026-11-24"}
    assert today == {("2026-11-24", EMAIL, HAIKU): (5, 5, 0, 0, Decimal("0.01"), "reported", True)}
    assert {k: v for k, v in usage(engine).items() if k[0] == "2026-11-23"} == {
        k: v for k, v in before.items() if k[0] == "2026-11-23"
    }


def test_a_day_the_vendor_no_longer_serves_keeps_what_was_stored(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine
) -> None:
    """History past the vendor's window comes back empty: a re-pull with an old --since loses nothing."""
    api, state = anthropic
    settings = settings_for(api)
    claude_code_analytics.pull(settings, engine, D23, D24)
    counts, before = row_counts(engine), usage(engine)
    del state.days["2026-11-23"]
    claude_code_analytics.pull(settings, engine, D23, D24)
    assert row_counts(engine) == counts and usage(engine) == before


@pytest.mark.parametrize("sessions", ["logs", "events", "metrics"])
def test_claude_code_logs_or_otlp_for_the_same_person_and_day_count_and_the_vendor_rows_stay_for_reconciliation(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine, db_url: str, tmp_path: Path, sessions: str
) -> None:
    api, _ = anthropic
    claude_code_analytics.pull(settings_for(api), engine, D23, D24)
    SOURCES[sessions](engine, db_url, tmp_path)  # Ana's own logs or OTLP export for 24 November arrive after
    assert usage(engine)[("2026-11-24", EMAIL, SONNET)][6] is False
    assert usage(engine)[("2026-11-23", "ana@example.com", SONNET)][6] is True  # the 23rd: no logs, counts
    claude_code_analytics.pull(settings_for(api), engine, D24, D24)  # and a re-pull keeps it uncounted
    assert usage(engine)[("2026-11-24", EMAIL, SONNET)][6] is False
    with Session(engine) as session:
        ana = session.exec(select(Person).where(Person.email == EMAIL)).one()
        m = compute(session, Scope.person(id_of(ana)), day_start(D24), day_start(D25))
    assert m.input_tokens == PRECISE[sessions][0]  # the sessions' figure alone, not the vendor's added to it


def test_a_bad_key_is_one_line_naming_the_variable(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = anthropic
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-revoked")
    monkeypatch.setenv("ANTHROPIC_API_URL", api.base_url)
    get_settings.cache_clear()
    try:
        result = runner.invoke(
            app, ["import", "claude-code-analytics", "--since", "2026-11-23", "--until", "2026-11-24"]
        )
        assert result.exit_code == 2
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "ANTHROPIC_ADMIN_KEY" in lines[0] and "401" in lines[0], result.output
        assert len(api.requests) == 1  # not retried
        monkeypatch.delenv("ANTHROPIC_ADMIN_KEY")
        get_settings.cache_clear()
        result = runner.invoke(app, ["import", "claude-code-analytics", "--since", "2026-11-23"])
        assert result.exit_code == 2 and "Set ANTHROPIC_ADMIN_KEY" in result.output
    finally:
        get_settings.cache_clear()
    with Session(engine) as session:
        state = session.get(VendorPullState, "claude-code-analytics")
    assert state is not None and "ANTHROPIC_ADMIN_KEY" in (state.last_error or "")


def test_by_hand_with_a_progress_bar_and_then_source_status_lists_the_unmatched(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = anthropic
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("ANTHROPIC_ADMIN_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_URL", api.base_url)
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    try:
        result = runner.invoke(
            app, ["import", "claude-code-analytics", "--since", "2026-11-23", "--until", "2026-11-24"]
        )
        assert result.exit_code == 0, result.output
        assert "Imported 6 records" in result.output and "over 2 days, 4 pages" in result.output
        result = runner.invoke(app, ["source", "status"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "(claude-code-analytics)" in line)
    assert "api-key ci-key" in line and "none" in line  # its unmatched API key; no error
    assert "email zoe@example.com" in result.output
    assert "(anthropic-cost)" in result.output and "never" in result.output  # configured, not pulled yet


def test_the_schedule_pulls_both_when_the_key_is_set(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine
) -> None:
    api, _ = anthropic
    settings = settings_for(api).model_copy(update={"vendor_pull_days": 2})
    scheduler = build_scheduler(Services(settings=settings, engine=engine))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert {"vendor:claude-code-analytics", "vendor:anthropic-cost"} <= set(jobs)
    assert all(
        jobs[j].trigger.interval.total_seconds() == 3600
        for j in ("vendor:claude-code-analytics", "vendor:anthropic-cost")
    )
    now = datetime(2026, 11, 24, 15, tzinfo=UTC)
    pulled = jobs["vendor:claude-code-analytics"].func(*jobs["vendor:claude-code-analytics"].args, now=now)
    assert pulled is not None and pulled.days == [D23, D24] and pulled.records == 6
    billed = jobs["vendor:anthropic-cost"].func(*jobs["vendor:anthropic-cost"].args, now=now)
    assert billed is not None and len(billed.costs) == 3
    api.fail_next("/claude_code", 401)
    assert jobs["vendor:claude-code-analytics"].func(*jobs["vendor:claude-code-analytics"].args, now=now) is None
    bare = build_scheduler(Services(settings=Settings(), engine=engine))  # type: ignore[call-arg]
    assert not [job.id for job in bare.get_jobs() if job.id.startswith("vendor:")]


# -- Usage & Cost: what was billed ------------------------------------------------------------------------------

COST_BUCKETS = [
    {
        "starting_at": "2026-11-23T00:00:00Z",
        "ending_at": "2026-11-24T00:00:00Z",
        "results": [
            {"amount": "123.45", "currency": "USD", "cost_type": "tokens",
             "description": "Claude Sonnet 4.5 Usage - Input Tokens", "model": SONNET, "service_tier": "standard",
             "token_type": "uncached_input_tokens", "workspace_id": None, "context_window": "0-200k"},
            {"amount": "1000", "currency": "USD", "cost_type": "web_search", "description": "Web search",
             "model": None, "service_tier": None, "token_type": None, "workspace_id": "wrkspc_01",
             "context_window": None},
        ],
    },
    {
        "starting_at": "2026-11-24T00:00:00Z",
        "ending_at": "2026-11-25T00:00:00Z",
        "results": [
            {"amount": "50.5", "currency": "USD", "cost_type": "tokens",
             "description": "Claude Sonnet 4.5 Usage - Output Tokens", "model": SONNET, "service_tier": "standard",
             "token_type": "output_tokens", "workspace_id": None, "context_window": "0-200k"},
        ],
    },
]  # fmt: skip
USAGE_BUCKETS = [
    {
        "starting_at": "2026-11-23T00:00:00Z",
        "ending_at": "2026-11-24T00:00:00Z",
        "results": [
            {"api_key_id": "apikey_01", "workspace_id": None, "model": SONNET, "uncached_input_tokens": 1500,
             "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
             "cache_read_input_tokens": 200, "output_tokens": 500, "server_tool_use": {"web_search_requests": 10},
             "service_tier": "standard", "context_window": "0-200k"},
        ],
    },
    {"starting_at": "2026-11-24T00:00:00Z", "ending_at": "2026-11-25T00:00:00Z", "results": []},
]  # fmt: skip


def billed(engine: Engine) -> dict[tuple[str, date, str, str], tuple[Decimal | None, int | None]]:
    with Session(engine) as session:
        return {
            (b.source, b.day, b.model, b.line_item): (b.amount, b.tokens)
            for b in session.exec(select(BilledCost)).all()
        }


def test_billed_cost_lands_in_its_own_table_in_dollars_and_never_in_usage(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine
) -> None:
    api, _ = anthropic
    pulled = anthropic_cost.pull(settings_for(api), engine, D23, D24)
    assert pulled.pages == 4  # two pages of each report
    rows = billed(engine)
    # cost_report's amount is a decimal string in cents: "123.45" USD is $1.2345
    assert rows[("anthropic-cost", D23, SONNET, "tokens/uncached_input_tokens/standard/0-200k")] == (
        Decimal("1.2345"),
        None,
    )
    assert rows[("anthropic-cost", D23, "", "web_search")] == (Decimal("10"), None)
    assert rows[("anthropic-cost", D24, SONNET, "tokens/output_tokens/standard/0-200k")] == (Decimal("0.505"), None)
    assert rows[("anthropic-usage", D23, SONNET, "cache_creation_1h_input_tokens key:apikey_01")] == (None, 1000)
    assert sum(1 for key in rows if key[0] == "anthropic-usage") == 5
    cost_asks = [q for path, q, _ in api.requests if path.endswith("/cost_report")]
    assert cost_asks[0]["group_by[]"] == ["workspace_id", "description"]
    assert cost_asks[0]["starting_at"] == ["2026-11-23T00:00:00Z"] and cost_asks[0]["ending_at"] == [
        "2026-11-25T00:00:00Z"
    ]
    usage_asks = [q for path, q, _ in api.requests if path.endswith("/messages")]
    assert usage_asks[0]["bucket_width"] == ["1d"] and sorted(usage_asks[0]["group_by[]"]) == [
        "api_key_id",
        "model",
        "workspace_id",
    ]
    assert row_counts(engine)["usage_record"] == 0
    before = billed(engine)
    anthropic_cost.pull(settings_for(api), engine, D23, D24)
    assert billed(engine) == before


def test_me_shows_the_callers_edit_acceptance_as_a_self_reported_quality_signal(harness: Harness) -> None:
    today = datetime.now(UTC).date()
    with Session(harness.engine, expire_on_commit=False) as session:
        ada, grace = person(session, ADA), person(session, GRACE)
        run(session, ada, "Fix flaky test", tokens=1200, cost="0.40")
        analytics = internal_source(session, "claude-code-analytics", "claude-code-analytics")
        replace_decisions(
            session,
            id_of(analytics),
            [today - timedelta(days=1)],
            [
                Decisions(id_of(ada), today - timedelta(days=1), "edit_tool", 40, 8),
                Decisions(id_of(ada), today - timedelta(days=1), "write_tool", 2, 0),
                Decisions(id_of(grace), today - timedelta(days=1), "edit_tool", 1, 99),
            ],
        )
        session.commit()
    _, url = harness.command("me 30d")
    (answer,) = harness.respond_to(url)
    shown = texts(answer)
    assert "Agent edits you accepted: 84% (42 of 50; 8 rejected)" in shown
    assert "self-reported, not counted" in shown and "99" not in shown.split("Agent edits")[1][:80]


# -- estimated against billed ---------------------------------------------------------------------------------


def test_reconcile_sets_the_counted_estimate_against_the_bill_per_vendor_and_day(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = anthropic
    claude_code_analytics.pull(settings_for(api), engine, D23, D24)
    anthropic_cost.pull(settings_for(api), engine, D23, D24)
    with Session(engine) as session:
        rows = {row.day: row for row in reconcile(session, D23, D24, min_group_size=2)}
        strict = {row.day: row for row in reconcile(session, D23, D24, min_group_size=5)}
    d23 = rows[D23]
    # Ana $1.86 + $0.42, Bo $0.03 and the API key's $0.02 (naming nobody, but billed all the same)
    assert (d23.vendor, d23.estimated_usd, d23.billed_usd) == ("anthropic", Decimal("2.33"), Decimal("11.2345"))
    assert d23.difference_usd == Decimal("8.9045")
    assert "reported: claude-code-analytics" in d23.sources and "billed: anthropic-cost" in d23.sources
    assert strict[D23].estimated_usd is None and strict[D23].billed_usd is None  # two people: withheld
    assert strict[D23].withheld and "TOKENWISE_MIN_GROUP_SIZE" in strict[D23].withheld
    with Session(engine) as session:
        facts = reconcile_facts(session, Period(D23, D24), 2)
    assert [fact.key for fact in facts] == ["reconcile_anthropic"]
    assert facts[0].text.startswith("2026-11-23: estimated $2.33, billed $11.23, difference $8.90; 2026-11-24")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TOKENWISE_MIN_GROUP_SIZE", "2")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["report", "--reconcile", "--since", "2026-11-23", "--until", "2026-11-24"])
        refused = runner.invoke(app, ["report", "--reconcile", "--team", "payments"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed[0] == {
        "vendor": "anthropic", "day": "2026-11-23", "estimated_usd": 2.33, "billed_usd": 11.2345,
        "difference_usd": 8.9045, "sources": list(d23.sources), "withheld": None,
    }  # fmt: skip
    assert refused.exit_code == 2 and "organisation" in refused.output


def test_a_day_that_only_one_unmatched_api_key_spent_on_is_withheld(
    anthropic: tuple[VendorApiStandIn, Analytics], engine: Engine
) -> None:
    """An identity that names nobody known is still somebody: one API key's day is one person's spend."""
    api, state = anthropic
    state.days["2026-11-24"] = [record(None, D24, [(SONNET, 500, 50, 0, 0, 2)])]
    claude_code_analytics.pull(settings_for(api), engine, D23, D24)
    with Session(engine) as session:
        rows = {row.day: row for row in reconcile(session, D23, D24, min_group_size=2)}
        three = {row.day: row for row in reconcile(session, D23, D24, min_group_size=3)}
    assert rows[D24].withheld and rows[D24].estimated_usd is None
    assert three[D23].withheld is None  # Ana, Bo and the API key: three
    assert three[D23].estimated_usd == Decimal("2.33")


def test_a_groups_spend_says_estimated_unless_all_of_it_is_billed() -> None:
    assert spend_label(Metrics(cost_usd=Decimal("3"), billed_cost_usd=Decimal("1"))) == "estimated"
    assert spend_label(Metrics(cost_usd=Decimal("3"), billed_cost_usd=Decimal("3"))) == "billed"
    assert spend_label(Metrics()) == "estimated"


anything = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**9) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)


@given(
    email=st.one_of(st.none(), st.emails()),
    cents=st.one_of(st.integers(0, 10**7), anything),
    tokens=st.dictionaries(st.sampled_from(["input", "output", "cache_read", "cache_creation"]), anything),
    junk=st.dictionaries(st.sampled_from(["core_metrics", "tool_actions", "date", "actor"]), anything, max_size=2),
)
def test_any_record_folds_in_without_failing_and_cents_become_dollars(
    email: str | None, cents: Any, tokens: dict[str, Any], junk: dict[str, Any]
) -> None:
    """Whatever a record holds, a pull folds it in or skips it, never fails, and never counts below zero."""
    part = {"model": SONNET, "tokens": tokens, "estimated_cost": {"amount": cents, "currency": "USD"}}
    body = {"actor": {"type": "user_actor", "email_address": email}, "model_breakdown": [part], **junk}
    pulled = claude_code_analytics.AnalyticsPull(days=[D23])
    claude_code_analytics.add_record(pulled, body, D23)
    for actor in pulled.actors.values():
        for total in actor.models.values():
            assert min(total.input, total.output, total.cache_read, total.cache_creation) >= 0
            if isinstance(cents, int) and not isinstance(cents, bool) and cents >= 0 and "actor" not in junk:
                assert total.cost == Decimal(cents) / 100
        assert all(a >= 0 and r >= 0 for a, r in actor.tools.values())
        assert actor.commits >= 0 and actor.pull_requests >= 0


@given(result=st.dictionaries(st.sampled_from(["amount", "currency", "model", "cost_type", "token_type",
                                               "workspace_id", "uncached_input_tokens", "cache_creation",
                                               "output_tokens", "api_key_id"]), anything))  # fmt: skip
def test_any_cost_or_usage_result_becomes_lines_or_nothing_never_a_failure(result: dict[str, Any]) -> None:
    line = anthropic_cost.cost_line(D23, result)
    if line is not None:
        assert line.amount is not None and line.amount.is_finite() and len(line.line_item) <= 300
        assert str(result["amount"]) and line.amount * 100 == Decimal(str(result["amount"]))
    for tokens in anthropic_cost.token_lines(D23, result):
        assert tokens.amount is None and tokens.tokens is not None and tokens.tokens > 0
