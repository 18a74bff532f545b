"""Cursor's Admin API pulled end to end against a loopback server answering in its documented shapes, over
several pages, on SQLite and PostgreSQL: per person and day, tokens unknown, spend booked on the pull's day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

import bot.cli.commands  # noqa: F401  (registers the commands)
from bot.cli.root import app
from bot.config import Settings, get_settings
from bot.jobs import build_scheduler
from bot.reconcile import reconcile
from bot.services import Services
from bot.sources import cursor_admin as cursor
from bot.sources.admin_api import AdminApi, KeyRejected
from storage.ingest import ingest_telemetry, write_atomically
from storage.ingest_schemas import SeenUsage, Telemetry
from storage.models import Person, Source, ToolDecision, UnattributedUsage, UsageRecord, VendorPullState, id_of
from storage.sources import internal_source
from storage.vendors import decision_totals
from tests.support.vendor_standins import CursorStandIn

KEY = "key_cursor_test"
D23, D24 = date(2026, 11, 23), date(2026, 11, 24)
ANA, BO, CY = "ana@example.com", "bo@example.com", "cy@example.com"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings come from this test alone: no key from the machine, a fresh read for each CLI run."""
    for name in ("CURSOR_ADMIN_KEY", "CURSOR_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def standin() -> Iterator[CursorStandIn]:
    with CursorStandIn(key=KEY) as server:
        server.add_day(ANA, D23, chatRequests=4, agentRequests=2, totalAccepts=5, totalRejects=1, mostUsedModel="gpt-5")
        server.add_day(BO, D23, composerRequests=3, mostUsedModel="claude-4.5-sonnet")
        server.add_day(CY, D23)  # a member who did nothing: listed, inactive, no usage
        server.add_day(ANA, D24, chatRequests=1, mostUsedModel="gpt-5")
        server.spend.update({ANA: 1250.5, BO: 300, CY: 0})
        yield server


def settings_for(server: CursorStandIn, key: str = KEY) -> Settings:
    return Settings(cursor_admin_key=key, cursor_api_url=server.base_url)  # type: ignore[call-arg]


def api_for(server: CursorStandIn, waits: list[float] | None = None, key: str = KEY) -> AdminApi:
    api = cursor.build_api(settings_for(server, key))
    assert api is not None
    api.sleep = (waits if waits is not None else []).append
    return api


def pull(server: CursorStandIn, engine: Engine, until: date = D24, today: date = D24) -> cursor.CursorSummary:
    with api_for(server) as api:
        return cursor.pull(api, engine, settings_for(server), D23, until, today=today)


def stored(engine: Engine) -> dict[tuple[str, str, str], tuple[int | None, Decimal | None, str | None, bool]]:
    with Session(engine) as session:
        emails = {p.id: p.email for p in session.exec(select(Person)).all()}
        return {
            (r.occurred_at.date().isoformat(), emails[r.person_id] or "", r.model): (
                r.input_tokens,
                r.cost_usd,
                r.cost_source,
                r.counted,
            )
            for r in session.exec(select(UsageRecord)).all()
        }


def test_two_pages_of_members_land_per_person_and_day_with_tokens_unknown_and_spend_on_the_pull_day(
    standin: CursorStandIn, engine: Engine
) -> None:
    summary = pull(standin, engine)
    assert stored(engine) == {
        ("2026-11-23", ANA, "gpt-5"): (None, None, None, True),
        ("2026-11-23", BO, "claude-4.5-sonnet"): (None, None, None, True),
        ("2026-11-24", ANA, "gpt-5"): (None, Decimal("12.505"), "billed", True),
        ("2026-11-24", BO, "unknown"): (None, Decimal(3), "billed", True),  # spent, with no activity that day
    }
    daily = [body for path, body in standin.requests if path == "/teams/daily-usage-data"]
    assert [body["page"] for body in daily] == [1, 2]  # three members, two a page
    assert daily[0]["startDate"] == 1795392000000 and daily[0]["endDate"] == 1795564799999
    assert [body["page"] for path, body in standin.requests if path == "/teams/spend"] == [1, 2]
    assert (summary.records, summary.spend_booked_usd) == (4, Decimal("15.505"))


def test_a_repull_leaves_a_finished_day_as_it_was_and_replaces_today_exactly(
    standin: CursorStandIn, engine: Engine
) -> None:
    pull(standin, engine)
    first = stored(engine)
    standin.add_day(ANA, D24, chatRequests=9, mostUsedModel="claude-4.5-sonnet")  # today moved on
    standin.spend[ANA] = 2000
    pull(standin, engine)
    second = stored(engine)
    assert {k: v for k, v in second.items() if k[0] == "2026-11-23"} == {
        k: v for k, v in first.items() if k[0] == "2026-11-23"
    }
    today = {k: v for k, v in second.items() if k[0] == "2026-11-24"}
    assert today == {  # the gpt-5 row of an earlier pull today is gone, not kept beside the new one
        ("2026-11-24", ANA, "claude-4.5-sonnet"): (None, Decimal(20), "billed", True),
        ("2026-11-24", BO, "unknown"): (None, Decimal(3), "billed", True),
    }
    pull(standin, engine)
    assert stored(engine) == second


def test_the_days_spend_is_also_the_organisations_bill_that_reconcile_sets_against_the_estimate(
    standin: CursorStandIn, engine: Engine
) -> None:
    pull(standin, engine)
    pull(standin, engine)
    with Session(engine) as session:
        rows = {(r.vendor, r.day): r for r in reconcile(session, D23, D24, min_group_size=2)}
    today = rows[("cursor", D24)]
    assert (today.estimated_usd, today.billed_usd, today.difference_usd) == (Decimal("15.505"),) * 2 + (Decimal(0),)
    assert today.sources == ("billed: cursor", "billed: cursor-spend")
    assert rows[("cursor", D23)].billed_usd is None  # a finished day's bill was never read


def test_the_next_day_books_only_what_the_cycle_added_since(standin: CursorStandIn, engine: Engine) -> None:
    pull(standin, engine)
    standin.add_day(ANA, date(2026, 11, 25), chatRequests=2, mostUsedModel="gpt-5")
    standin.spend[ANA] = 1800.5  # $5.50 more than the $12.505 booked on the 24th
    with api_for(standin) as api:
        cursor.pull(api, engine, settings_for(standin), D23, date(2026, 11, 25), today=date(2026, 11, 25))
    rows = stored(engine)
    assert rows[("2026-11-25", ANA, "gpt-5")][1] == Decimal("5.5")
    assert rows[("2026-11-24", ANA, "gpt-5")][1] == Decimal("12.505")  # the finished day keeps its spend
    assert sum(v[1] or 0 for k, v in rows.items() if k[1] == ANA) == Decimal("18.005")


def test_accepted_and_rejected_suggestions_are_kept_per_person_and_day_as_their_own_signal(
    standin: CursorStandIn, engine: Engine
) -> None:
    pull(standin, engine)
    pull(standin, engine)  # again: the same figures, not twice
    with Session(engine) as session:
        ana = session.exec(select(Person).where(Person.email == ANA)).one()
        rows = session.exec(select(ToolDecision)).all()
        assert [(r.person_id, r.day, r.tool, r.accepted, r.rejected) for r in rows] == [(ana.id, D23, "cursor", 5, 1)]
        assert decision_totals(session, id_of(ana), D23, D24).acceptance == Decimal(5) / 6


def test_a_429_is_waited_out_as_its_retry_after_says(standin: CursorStandIn, engine: Engine) -> None:
    standin.refuse_next("/teams/daily-usage-data", 429, retry_after=7)
    standin.refuse_next("/teams/spend", 503)
    waits: list[float] = []
    with api_for(standin, waits) as api:
        summary = cursor.pull(api, engine, settings_for(standin), D23, D24, today=D24)
    assert waits[0] == 7 and len(waits) == 2
    assert summary.records == 4


def test_a_refused_key_is_one_line_naming_cursor_admin_key_and_writes_nothing(
    standin: CursorStandIn, engine: Engine
) -> None:
    with pytest.raises(KeyRejected) as refused, api_for(standin, key="key_revoked") as api:
        cursor.pull(api, engine, settings_for(standin, "key_revoked"), D23, D24, today=D24)
    message = str(refused.value)
    assert "CURSOR_ADMIN_KEY" in message and "\n" not in message and "key_revoked" not in message
    assert stored(engine) == {}
    with Session(engine) as session:
        state = session.get(VendorPullState, "cursor")
        assert state is not None and "CURSOR_ADMIN_KEY" in (state.last_error or "")


def test_a_403_on_any_endpoint_is_the_same_one_line_and_the_hourly_job_records_it(
    standin: CursorStandIn, engine: Engine
) -> None:
    standin.refuse_next("/teams/spend", 403)
    services = Services(settings=settings_for(standin), engine=engine)
    assert cursor.pull_recent(services, now=datetime(2026, 11, 24, 12, tzinfo=UTC)) is None  # logged, not raised
    assert stored(engine) == {}  # the usage fetched before the refusal is not written either
    with Session(engine) as session:
        state = session.get(VendorPullState, "cursor")
        assert state is not None and state.last_success_at is None
        assert "HTTP 403" in (state.last_error or "") and "CURSOR_ADMIN_KEY" in (state.last_error or "")


def test_a_long_history_is_asked_for_thirty_days_at_a_time(standin: CursorStandIn, engine: Engine) -> None:
    with api_for(standin) as api:
        cursor.pull(api, engine, settings_for(standin), date(2026, 10, 1), D24, today=D24)
    spans = [
        (body["startDate"], body["endDate"]) for path, body in standin.requests if path == "/teams/daily-usage-data"
    ]
    assert len({start for start, _ in spans}) == 2  # 55 days: two spans, each paged
    assert all(end - start < 30 * 86_400_000 for start, end in spans)
    assert ("2026-11-23", ANA, "gpt-5") in stored(engine)


def test_a_cursor_day_counts_only_where_no_session_source_covers_that_person_day_and_tool(
    standin: CursorStandIn, engine: Engine
) -> None:
    """Ana's 23rd also came as sessions (OTLP) from Cursor: her vendor row stays, not counted; Bo's counts."""

    def sessions(session: Session) -> None:
        source = internal_source(session, "ana-laptop", "otlp")
        usage = SeenUsage(
            dedupe_key="otlp-1",
            email=ANA,
            occurred_at=datetime(2026, 11, 23, 15, tzinfo=UTC),
            agent="cursor",
            model="gpt-5",
            run_external_id="session-1",
            input_tokens=900,
            output_tokens=100,
        )
        ingest_telemetry(session, id_of(source), Telemetry(usage=[usage]), Settings().weight_for)  # type: ignore[call-arg]

    write_atomically(engine, sessions)
    pull(standin, engine)
    rows = stored(engine)
    assert rows[("2026-11-23", ANA, "gpt-5")][3] is False
    assert rows[("2026-11-23", BO, "claude-4.5-sonnet")][3] is True
    assert rows[("2026-11-24", ANA, "gpt-5")][3] is True  # no session that day


def test_a_member_cursor_lists_without_an_email_is_kept_under_its_user_id(
    standin: CursorStandIn, engine: Engine
) -> None:
    row = standin.add_day("", D23, chatRequests=2)
    row["email"] = None
    pull(standin, engine)
    with Session(engine) as session:
        (kept,) = session.exec(select(UnattributedUsage)).all()
        assert (kept.identity_kind, kept.identity_value, kept.input_tokens) == (
            "user-id",
            f"cursor:{row['userId']}",
            None,
        )


runner = CliRunner()


def test_tokenwise_import_cursor_pulls_with_a_progress_bar_and_says_what_it_did(
    standin: CursorStandIn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CURSOR_ADMIN_KEY", KEY)
    monkeypatch.setenv("CURSOR_API_URL", standin.base_url)
    result = runner.invoke(app, ["import", "cursor", "--since", "2026-11-23", "--until", "2026-11-24"])
    assert result.exit_code == 0, result.output
    assert "3 person-days" in result.output and "spend not read" in result.output  # the days end before today
    status = runner.invoke(app, ["source", "status"])
    assert status.exit_code == 0, status.output
    assert "Cursor usage and spend" in status.output and "ana@example.com" in status.output, status.output
    assert [body["page"] for path, body in standin.requests if path == "/teams/daily-usage-data"] == [1, 2]


def test_tokenwise_import_cursor_with_a_bad_key_is_one_line_and_exit_2(
    standin: CursorStandIn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CURSOR_ADMIN_KEY", "key_wrong")
    monkeypatch.setenv("CURSOR_API_URL", standin.base_url)
    result = runner.invoke(app, ["import", "cursor", "--since", "2026-11-23"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "CURSOR_ADMIN_KEY" in lines[0]


def test_without_a_key_the_import_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURSOR_ADMIN_KEY", raising=False)
    result = runner.invoke(app, ["import", "cursor", "--since", "2026-11-23"])
    assert result.exit_code == 2 and "CURSOR_ADMIN_KEY" in result.output


def test_the_hourly_job_exists_only_with_a_key_and_pulls_the_recent_days(
    standin: CursorStandIn, engine: Engine
) -> None:
    plain = Services(settings=Settings(), engine=engine)  # type: ignore[call-arg]
    assert build_scheduler(plain).get_job("cursor-usage") is None
    services = Services(settings=settings_for(standin), engine=engine)
    assert build_scheduler(services).get_job("cursor-usage") is not None
    summary = cursor.pull_recent(services, now=datetime(2026, 11, 24, 12, tzinfo=UTC))
    assert summary is not None and summary.records == 4
    with Session(engine) as session:
        assert session.exec(select(Source).where(Source.name == "cursor")).one().kind == "cursor"
