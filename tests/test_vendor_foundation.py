"""What every vendor admin-API pull shares: the HTTP client (pages, retries with retry-after, a bad key in one
line), billed cost replaced exactly, per-day rows counted once with the sources that carry sessions (in
either order of arrival), unknown token counts kept unknown, the pull's state, its schedule and its line in
`tokenwise source status`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bot.config import Settings
from bot.jobs import build_scheduler
from bot.periods import Period
from bot.services import Services
from bot.sources.admin_api import AdminApi, AdminApiError, KeyRejected, run_pull
from storage.daily_usage import day_start
from storage.db import session_scope
from storage.ingest import ingest_telemetry, write_atomically
from storage.ingest_schemas import SeenUsage, Telemetry
from storage.metrics import Scope, compute
from storage.models import BilledCost, Person, UsageRecord, VendorPullState, id_of
from storage.sources import internal_source
from storage.vendors import BilledLine, billed_by_day, daily_key, prune_days, pull_states, replace_billed
from tests.support.vendor_api_standin import VendorApiStandIn
from tests.test_ingest_counted_once import EMAIL, EXPORTED, LOGGED, SOURCES, weight_for

KEY = "sk-ant-admin-test"
DAY = date(2026, 11, 24)


def api(standin: VendorApiStandIn, waits: list[float]) -> AdminApi:
    return AdminApi(
        vendor="Anthropic",
        base_url=standin.base_url,
        key_env="ANTHROPIC_ADMIN_KEY",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        sleep=waits.append,
    )


def test_the_client_follows_pages_and_waits_out_a_429_for_its_retry_after() -> None:
    items = [{"n": n} for n in range(5)]
    waits: list[float] = []
    with VendorApiStandIn(headers={"x-api-key": KEY}) as standin:
        standin.route("/v1/things", lambda query: standin.paginate(items, query, page_size=2))
        standin.fail_next("/v1/things", 429, retry_after="3")
        standin.fail_next("/v1/things", 503)
        with api(standin, waits) as client:
            pages = list(client.pages("/v1/things", {"limit": 10}))
    assert [item["n"] for page in pages for item in page["data"]] == [0, 1, 2, 3, 4]
    assert len(pages) == 3
    assert waits[0] == 3.0 and 2.0 <= waits[1] <= 2.5  # retry-after honoured, then backoff (second attempt)
    assert [q.get("page") for _, q, _ in standin.requests][-3:] == [
        None,
        [pages[0]["next_page"]],
        [pages[1]["next_page"]],
    ]
    assert all(h["anthropic-version"] == "2023-06-01" for _, _, h in standin.requests)


def test_a_bad_key_is_one_line_naming_the_variable_and_is_not_retried() -> None:
    waits: list[float] = []
    with VendorApiStandIn(headers={"x-api-key": "another"}) as standin:
        standin.route("/v1/things", lambda query: standin.paginate([], query))
        with api(standin, waits) as client, pytest.raises(KeyRejected) as refused:
            client.get("/v1/things")
    message = str(refused.value)
    assert "ANTHROPIC_ADMIN_KEY" in message and "401" in message and "\n" not in message
    assert len(standin.requests) == 1 and waits == []


def test_a_retry_after_longer_than_the_pull_may_wait_fails_the_pull_in_one_line() -> None:
    with VendorApiStandIn() as standin:
        standin.route("/v1/things", lambda query: {"data": []})
        standin.fail_next("/v1/things", 429, retry_after="3600")
        with api(standin, []) as client, pytest.raises(AdminApiError, match="retry-after"):
            client.get("/v1/things")


def test_server_errors_are_retried_a_bounded_number_of_times() -> None:
    waits: list[float] = []
    with VendorApiStandIn() as standin:
        standin.route("/v1/things", lambda query: {"data": []})
        for _ in range(5):
            standin.fail_next("/v1/things", 500)
        with api(standin, waits) as client, pytest.raises(AdminApiError, match=r"HTTP 500 .* after 5 attempts"):
            client.get("/v1/things")
    assert len(waits) == 4


def test_billed_cost_is_replaced_exactly_per_day_and_a_finished_day_repulled_changes_nothing(
    engine: Engine,
) -> None:
    first = [
        BilledLine(DAY, Decimal("12.34"), model="claude-sonnet-4-5", line_item="tokens"),
        BilledLine(DAY, Decimal("0.66"), model="claude-sonnet-4-5", line_item="web_search"),
    ]
    with session_scope(engine) as session:
        assert replace_billed(session, "anthropic-cost", "anthropic", [DAY], first).added == 2
    with session_scope(engine) as session:
        assert replace_billed(session, "anthropic-cost", "anthropic", [DAY], first).unchanged
    later = [BilledLine(DAY, Decimal("13.00"), model="claude-sonnet-4-5", line_item="tokens")]
    with session_scope(engine) as session:
        write = replace_billed(session, "anthropic-cost", "anthropic", [DAY], later)
    assert (write.added, write.changed, write.removed) == (0, 1, 1)
    with Session(engine) as session:
        rows = session.exec(select(BilledCost)).all()
        days = billed_by_day(session, DAY, date(2026, 11, 25))
    assert [(r.line_item, r.amount) for r in rows] == [("tokens", Decimal("13.00"))]
    assert [(d.vendor, d.amount, d.sources) for d in days] == [("anthropic", Decimal("13.00"), ("anthropic-cost",))]
    with Session(engine) as session:  # never usage
        assert session.exec(select(UsageRecord)).all() == []


def vendor_row(engine: Engine, tokens: int | None, model: str = "claude-sonnet-4-5", day: date = DAY) -> None:
    """A Claude Code Analytics-style row: one person, one UTC day, one model."""
    usage = SeenUsage(
        dedupe_key=daily_key("claude-code-analytics", day, EMAIL, model),
        email=EMAIL,
        occurred_at=day_start(day),
        agent="claude-code",
        model=model,
        input_tokens=tokens,
        output_tokens=None if tokens is None else 10,
        cache_read_tokens=None if tokens is None else 0,
        cache_write_tokens=None if tokens is None else 0,
        cost_usd=Decimal("1.50"),
    )

    def write(session: Session) -> None:
        source = internal_source(session, "claude-code-analytics", "claude-code-analytics")
        ingest_telemetry(session, id_of(source), Telemetry(usage=[usage]), weight_for, usage_mode="replace")
        prune_days(session, id_of(source), [day], [usage.dedupe_key])

    write_atomically(engine, write)


def figures(engine: Engine) -> tuple[int, list[bool]]:
    with Session(engine) as session:
        person = session.exec(select(Person).where(Person.email == EMAIL)).one()
        period = Period(DAY, DAY)
        m = compute(session, Scope.person(id_of(person)), period.start, period.end)
        vendor = session.exec(
            select(UsageRecord).where(UsageRecord.dedupe_key.startswith("claude-code-analytics:"))
        ).all()  # type: ignore[attr-defined]
    return m.input_tokens, [r.counted for r in vendor]


@pytest.mark.parametrize("session_source", ["logs", "metrics"])
@pytest.mark.parametrize("vendor_first", [True, False], ids=["vendor-first", "sessions-first"])
def test_a_vendor_day_counts_only_where_no_session_source_covers_that_person_day_and_tool(
    tmp_path: Path, engine: Engine, db_url: str, session_source: str, vendor_first: bool
) -> None:
    if vendor_first:
        vendor_row(engine, 999)
        assert figures(engine) == (999, [True])  # alone, the vendor's day counts
        SOURCES[session_source](engine, db_url, tmp_path)
    else:
        SOURCES[session_source](engine, db_url, tmp_path)
        vendor_row(engine, 999)
    tokens, counted = figures(engine)
    assert counted == [False]  # stored, kept for reconciliation, never counted twice
    assert tokens == (LOGGED if session_source == "logs" else EXPORTED)[0]  # the sessions' figure alone


def test_a_vendor_day_of_another_tool_or_day_still_counts(tmp_path: Path, engine: Engine, db_url: str) -> None:
    SOURCES["logs"](engine, db_url, tmp_path)
    vendor_row(engine, 999, day=date(2026, 11, 23))
    with Session(engine) as session:
        rows = session.exec(
            select(UsageRecord).where(UsageRecord.dedupe_key.startswith("claude-code-analytics:"))
        ).all()  # type: ignore[attr-defined]
    assert [r.counted for r in rows] == [True]


def test_unknown_tokens_stay_unknown_and_a_repull_of_today_replaces_it_exactly(engine: Engine) -> None:
    vendor_row(engine, None, model="a")
    vendor_row(engine, None, model="a")
    with Session(engine) as session:
        rows = session.exec(select(UsageRecord)).all()
        person = session.exec(select(Person)).one()
        m = compute(session, Scope.person(id_of(person)), day_start(DAY), day_start(date(2026, 11, 25)))
    assert [(r.input_tokens, r.output_tokens) for r in rows] == [(None, None)]
    assert (m.total_tokens, m.token_unknown_records, m.usage_records, m.cost_usd) == (0, 1, 1, Decimal("1.50"))
    assert m.token_coverage == 0
    vendor_row(engine, 5, model="b")  # today re-pulled: the vendor now lists model b only
    with Session(engine) as session:
        assert [(r.model, r.input_tokens) for r in session.exec(select(UsageRecord)).all()] == [("b", 5)]


def test_a_pull_records_its_success_and_its_error_for_source_status(engine: Engine) -> None:
    def fails() -> Any:
        raise KeyRejected("Anthropic refused the key in ANTHROPIC_ADMIN_KEY (HTTP 401: invalid x-api-key); set it.")

    with pytest.raises(KeyRejected):
        run_pull(engine, "claude-code-analytics", fails, lambda session, fetched: None)
    run_pull(engine, "anthropic-cost", lambda: 3, lambda session, fetched: None, describe=lambda n: f"{n} lines")
    with Session(engine) as session:
        states = pull_states(session)
    assert states["claude-code-analytics"].last_success_at is None
    assert "ANTHROPIC_ADMIN_KEY" in (states["claude-code-analytics"].last_error or "")
    assert states["anthropic-cost"].last_error is None and states["anthropic-cost"].last_summary == "3 lines"
    assert isinstance(states["anthropic-cost"].last_success_at, datetime)


def test_a_pull_whose_key_is_set_is_scheduled_hourly_under_its_own_id(engine: Engine) -> None:
    settings = Settings(openai_admin_key="sk-admin", slack_bot_token=None)  # type: ignore[call-arg]
    scheduler = build_scheduler(Services(settings=settings, engine=engine))
    job = scheduler.get_job("openai-usage")
    assert job is not None and job.trigger.interval.total_seconds() == 3600
    bare = build_scheduler(Services(settings=Settings(slack_bot_token=None), engine=engine))  # type: ignore[call-arg]
    assert bare.get_job("openai-usage") is None


def test_vendor_pull_state_is_one_row_per_pull(engine: Engine) -> None:
    for _ in range(2):
        run_pull(
            engine,
            "anthropic-cost",
            lambda: 1,
            lambda session, fetched: None,
            now=lambda: datetime(2026, 11, 24, tzinfo=UTC),
        )
    with Session(engine) as session:
        assert len(session.exec(select(VendorPullState)).all()) == 1


def test_source_status_lists_each_configured_pull_its_last_success_its_error_and_its_unmatched_people(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import bot.cli.commands  # noqa: F401  (registers the commands)
    from bot.cli.root import app
    from bot.config import get_settings

    loose = SeenUsage(
        dedupe_key="openai:2026-11-24:user-9:gpt-4o", email=None, occurred_at=day_start(DAY), agent="openai-api",
        model="gpt-4o", input_tokens=5, identity_kind="api-key", identity_value="ci-bot",
    )  # fmt: skip

    stranger = SeenUsage(
        dedupe_key="openai:2026-11-24:user-8:gpt-4o", email="zoe@example.com", occurred_at=day_start(DAY),
        agent="openai-api", model="gpt-4o", input_tokens=5,
    )  # fmt: skip

    def write(session: Session) -> None:
        source = internal_source(session, "openai-usage", "openai-usage")
        usage = [loose, stranger]
        ingest_telemetry(session, id_of(source), Telemetry(usage=usage), weight_for, usage_mode="replace")

    write_atomically(engine, write)
    run_pull(engine, "openai-usage", lambda: 1, lambda session, fetched: None)
    with pytest.raises(KeyRejected):
        run_pull(engine, "openai-usage", _refused, lambda session, fetched: None)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["source", "status"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "OpenAI usage (openai-usage)" in line)
    assert "OPENAI_ADMIN_KEY" in line and "UTC" in line and "refused" in line and "api-key ci-bot" in line
    assert "email zoe@example.com (no Slack user or team)" in result.output
    monkeypatch.delenv("OPENAI_ADMIN_KEY")
    result = CliRunner().invoke(app, ["source", "status"])
    get_settings.cache_clear()
    assert "Vendor pulls" not in result.output  # a pull whose key is not set is not listed


def _refused() -> Any:
    raise KeyRejected("OpenAI refused the key in OPENAI_ADMIN_KEY (HTTP 401); set OPENAI_ADMIN_KEY.")


def test_edit_decisions_past_the_retention_window_are_purged_with_the_rest(engine: Engine) -> None:
    from storage.models import ToolDecision
    from storage.people import get_or_create_person
    from storage.retention import purge_expired
    from storage.vendors import Decisions, decision_totals, replace_decisions

    with session_scope(engine) as session:
        person = get_or_create_person(session, email="ana@example.com")
        source = internal_source(session, "claude-code-analytics", "claude-code-analytics")
        old, recent = date(2025, 1, 6), DAY
        rows = [Decisions(id_of(person), old, "edit_tool", 5, 5), Decisions(id_of(person), recent, "edit_tool", 3, 1)]
        replace_decisions(session, id_of(source), [old, recent], rows)
    with session_scope(engine) as session:
        purge_expired(session, datetime(2026, 11, 25, tzinfo=UTC), 400)
    with Session(engine) as session:
        assert [d.day for d in session.exec(select(ToolDecision)).all()] == [recent]
        totals = decision_totals(session, id_of(session.exec(select(Person)).one()), old, recent)
    assert (totals.accepted, totals.rejected, totals.acceptance) == (3, 1, Decimal("0.75"))
