"""GitHub Copilot's per-user daily reports pulled end to end against a loopback server (the REST metadata and
the NDJSON files its download links point at, several files a day), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
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
from bot.services import Services
from bot.sources import copilot_metrics as copilot
from bot.sources.admin_api import AdminApiError, KeyRejected
from storage.identities import link_identity, unattributed_identities
from storage.ingest import ingest_telemetry, write_atomically
from storage.ingest_schemas import SeenUsage, Telemetry
from storage.models import Person, ToolDecision, UnattributedUsage, UsageRecord, id_of
from storage.people import get_or_create_person
from storage.sources import internal_source
from tests.support.vendor_standins import CopilotStandIn

TOKEN = "ghp_copilot_test"
D22, D23, D24 = date(2026, 11, 22), date(2026, 11, 23), date(2026, 11, 24)
ANA = "ana@example.com"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings come from this test alone: no key from the machine, a fresh read for each CLI run."""
    for name in (
        "GITHUB_TOKEN",
        "GITHUB_API_URL",
        "TOKENWISE_COPILOT_GITHUB_TOKEN",
        "TOKENWISE_COPILOT_ORG",
        "TOKENWISE_COPILOT_SEAT_USD",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def standin() -> Iterator[CopilotStandIn]:
    with CopilotStandIn(token=TOKEN, org="acme") as server:
        chat = [{"model": "gpt-5", "feature": "chat_panel_agent_mode", "user_initiated_interaction_count": 3}]
        server.add_line(
            D22,
            "AnaDev",
            user_initiated_interaction_count=3,
            totals_by_model_feature=chat,
            code_generation_activity_count=6,
            code_acceptance_activity_count=4,
            used_agent=True,
        )
        server.add_line(D22, "bo-gh", user_initiated_interaction_count=1)
        server.add_line(D22, "cy-gh", code_generation_activity_count=2)
        server.add_line(D23, "AnaDev", user_initiated_interaction_count=5, totals_by_model_feature=chat)
        server.unpublished.add(D24)  # not processed yet
        yield server


def settings_for(server: CopilotStandIn, **extra: object) -> Settings:
    values: dict[str, object] = {"github_token": TOKEN, "github_api_url": server.base_url, "copilot_org": "acme"}
    return Settings(**{**values, **extra})  # type: ignore[arg-type]


def link_ana(engine: Engine) -> None:
    def work(session: Session) -> None:
        person = get_or_create_person(session, email=ANA)
        link_identity(session, "github", "AnaDev", id_of(person))

    write_atomically(engine, work)


def pull(server: CopilotStandIn, engine: Engine, **extra: object) -> copilot.CopilotSummary:
    settings = settings_for(server, **extra)
    apis = copilot.build_apis(settings)
    assert apis is not None
    apis.reports.sleep = apis.downloads.sleep = lambda _seconds: None
    with apis:
        return copilot.pull(apis, engine, settings, D22, D24)


def attributed(engine: Engine) -> dict[tuple[str, str, str], tuple[int | None, Decimal | None, bool]]:
    with Session(engine) as session:
        emails = {p.id: p.email for p in session.exec(select(Person)).all()}
        return {
            (r.occurred_at.date().isoformat(), emails[r.person_id] or "", r.model): (
                r.input_tokens,
                r.cost_usd,
                r.counted,
            )
            for r in session.exec(select(UsageRecord)).all()
        }


def kept(engine: Engine) -> dict[tuple[str, str | None], tuple[int | None, Decimal | None]]:
    with Session(engine) as session:
        return {
            (r.occurred_at.date().isoformat(), r.identity_value): (r.input_tokens, r.cost_usd)
            for r in session.exec(select(UnattributedUsage)).all()
        }


def test_each_days_files_land_per_person_by_github_login_and_the_unlinked_are_kept(
    standin: CopilotStandIn, engine: Engine
) -> None:
    link_ana(engine)
    summary = pull(standin, engine)
    assert attributed(engine) == {
        ("2026-11-22", ANA, "gpt-5"): (None, None, True),
        ("2026-11-23", ANA, "gpt-5"): (None, None, True),
    }
    assert kept(engine) == {("2026-11-22", "bo-gh"): (None, None), ("2026-11-22", "cy-gh"): (None, None)}
    assert (summary.days, summary.unpublished, summary.files, summary.unmatched) == (2, 1, 4, {"bo-gh", "cy-gh"})
    with Session(engine) as session:
        listed = {(i.source, i.kind, i.value) for i in unattributed_identities(session)}
    assert listed == {("copilot", "github", "bo-gh"), ("copilot", "github", "cy-gh")}


def test_what_a_linked_person_accepted_of_copilots_code_is_kept_as_their_own_signal(
    standin: CopilotStandIn, engine: Engine
) -> None:
    link_ana(engine)
    pull(standin, engine)
    pull(standin, engine)
    with Session(engine) as session:
        rows = session.exec(select(ToolDecision)).all()
        assert [(r.day, r.tool, r.accepted, r.rejected) for r in rows] == [(D22, "copilot", 4, 2)]  # 6 generated


def test_the_token_goes_to_the_api_and_never_to_the_signed_download_links(
    standin: CopilotStandIn, engine: Engine
) -> None:
    pull(standin, engine)
    api = [auth for path, auth in standin.requests if path.startswith("/orgs/")]
    downloads = [auth for path, auth in standin.requests if path.startswith("/signed/")]
    assert api and all(auth == f"Bearer {TOKEN}" for auth in api)
    assert len(downloads) == 4 and all(auth is None for auth in downloads)
    days = [path.split("day=")[1] for path, _ in standin.requests if path.startswith("/orgs/")]
    assert days == ["2026-11-22", "2026-11-23", "2026-11-24"]


def test_a_seat_price_spreads_over_the_months_days_for_each_person_listed(
    standin: CopilotStandIn, engine: Engine
) -> None:
    link_ana(engine)
    pull(standin, engine, copilot_seat_usd=Decimal(30))
    assert attributed(engine)[("2026-11-22", ANA, "gpt-5")][1] == Decimal(1)  # $30 over November's 30 days
    assert kept(engine)[("2026-11-22", "bo-gh")][1] == Decimal(1)
    with Session(engine) as session:  # the operator's seat price: an estimate, never taken for a bill
        assert set(session.exec(select(UsageRecord.cost_source))) == {"seat"}


def test_a_repull_changes_nothing_and_linking_a_login_later_moves_its_days(
    standin: CopilotStandIn, engine: Engine
) -> None:
    pull(standin, engine)
    before = (attributed(engine), kept(engine))
    pull(standin, engine)
    assert (attributed(engine), kept(engine)) == before
    link_ana(engine)
    assert ("2026-11-23", ANA, "gpt-5") in attributed(engine)
    assert ("2026-11-23", "anadev") not in kept(engine)
    pull(standin, engine)
    assert len(attributed(engine)) == 2 and len(kept(engine)) == 2


def test_a_copilot_day_counts_only_where_no_session_source_covers_that_person_day_and_tool(
    standin: CopilotStandIn, engine: Engine
) -> None:
    link_ana(engine)

    def sessions(session: Session) -> None:
        source = internal_source(session, "ana-laptop", "otlp")
        usage = SeenUsage(
            dedupe_key="otlp-1",
            email=ANA,
            occurred_at=datetime(2026, 11, 22, 9, tzinfo=UTC),
            agent="copilot",
            model="gpt-5",
            run_external_id="session-1",
            input_tokens=500,
            output_tokens=50,
        )
        ingest_telemetry(session, id_of(source), Telemetry(usage=[usage]), Settings().weight_for)  # type: ignore[call-arg]

    write_atomically(engine, sessions)
    pull(standin, engine)
    rows = attributed(engine)
    assert rows[("2026-11-22", ANA, "gpt-5")][2] is False
    assert rows[("2026-11-23", ANA, "gpt-5")][2] is True


def test_a_429_is_waited_out_and_a_refused_token_names_its_variable(standin: CopilotStandIn, engine: Engine) -> None:
    standin.refuse_next("/users-1-day", 429, retry_after=2)
    waits: list[float] = []
    settings = settings_for(standin)
    apis = copilot.build_apis(settings)
    assert apis is not None
    apis.reports.sleep = waits.append
    with apis:
        copilot.pull(apis, engine, settings, D22, D22)
    assert waits == [2]
    other = settings_for(standin, copilot_github_token="ghp_wrong")
    apis = copilot.build_apis(other)
    assert apis is not None
    with pytest.raises(KeyRejected) as refused, apis:
        copilot.pull(apis, engine, other, D23, D23)
    message = str(refused.value)
    assert "TOKENWISE_COPILOT_GITHUB_TOKEN" in message and "\n" not in message and "ghp_wrong" not in message


def test_an_expired_download_link_is_one_line_about_the_link_not_the_token(
    standin: CopilotStandIn, engine: Engine
) -> None:
    standin.refuse_next("/signed/", 403)
    with pytest.raises(AdminApiError) as refused:
        pull(standin, engine)
    message = str(refused.value)
    assert not isinstance(refused.value, KeyRejected) and "GITHUB_TOKEN" not in message
    assert "download link" in message and "run the pull again" in message and "\n" not in message
    with Session(engine) as session:
        assert session.exec(select(UsageRecord)).first() is None  # nothing written


def test_githubs_primary_rate_limit_403_is_waited_out_not_taken_for_a_refused_token(
    standin: CopilotStandIn, engine: Engine
) -> None:
    standin.rate_limit_next("/users-1-day", reset_at=int(time.time()) + 5)
    waits: list[float] = []
    settings = settings_for(standin)
    apis = copilot.build_apis(settings)
    assert apis is not None
    apis.reports.sleep = waits.append
    with apis:
        summary = copilot.pull(apis, engine, settings, D22, D22)
    assert len(waits) == 1 and 4 <= waits[0] <= 7  # until the reset second is over
    assert summary.records == 3


def test_an_organisation_with_no_report_on_any_settled_day_is_one_line_not_an_endless_wait(
    standin: CopilotStandIn, engine: Engine
) -> None:
    settings = settings_for(standin, copilot_org="acme-typo")
    apis = copilot.build_apis(settings)
    assert apis is not None
    with pytest.raises(AdminApiError) as wrong, apis:
        copilot.pull(apis, engine, settings, date(2025, 10, 1), date(2025, 10, 11))
    assert "TOKENWISE_COPILOT_ORG" in str(wrong.value) and "acme-typo" in str(wrong.value)
    asked = [path for path, _ in standin.requests if path.startswith("/orgs/")]
    assert [path.split("day=")[1] for path in asked] == ["2025-10-10", "2025-10-11"]  # reports begin on the 10th


def test_a_report_not_in_the_documented_shape_is_one_line_and_writes_nothing(
    standin: CopilotStandIn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin.broken_links = True
    for name, value in {
        "DATABASE_URL": db_url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": standin.base_url,
        "TOKENWISE_COPILOT_ORG": "acme",
    }.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["import", "copilot", "--since", "2026-11-22", "--until", "2026-11-23"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "download_links" in lines[0], result.output


runner = CliRunner()


def test_tokenwise_import_copilot_pulls_and_lists_the_logins_to_link(
    standin: CopilotStandIn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "DATABASE_URL": db_url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": standin.base_url,
        "TOKENWISE_COPILOT_ORG": "acme",
    }.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["import", "copilot", "--since", "2026-11-22", "--until", "2026-11-24"])
    assert result.exit_code == 0, result.output
    assert "4 person-days" in result.output and "anadev" in result.output
    status = runner.invoke(app, ["source", "status"])
    assert status.exit_code == 0, status.output
    assert "github anadev" in status.output


def test_tokenwise_import_copilot_without_an_organisation_says_which_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("TOKENWISE_COPILOT_ORG", raising=False)
    result = runner.invoke(app, ["import", "copilot", "--since", "2026-11-22"])
    assert result.exit_code == 2 and "TOKENWISE_COPILOT_ORG" in result.output


def test_the_hourly_job_exists_only_with_a_token_and_an_organisation(standin: CopilotStandIn, engine: Engine) -> None:
    plain = Services(settings=Settings(github_token=TOKEN), engine=engine)  # type: ignore[call-arg]
    assert build_scheduler(plain).get_job("copilot-usage") is None
    services = Services(settings=settings_for(standin), engine=engine)
    assert build_scheduler(services).get_job("copilot-usage") is not None
    summary = copilot.pull_recent(services, now=datetime(2026, 11, 24, 12, tzinfo=UTC))
    assert summary is not None and (summary.days, summary.unpublished) == (2, 1)


def test_a_repull_replaces_the_days_of_logins_linked_to_no_one_exactly_too(
    standin: CopilotStandIn, engine: Engine
) -> None:
    """Kept (unattributed) days are replaced like a person's: an operator who lowers the seat price sees
    every day's figure follow, not the larger of old and new."""
    link_ana(engine)
    pull(standin, engine, copilot_seat_usd=Decimal(60))
    assert kept(engine)[("2026-11-22", "bo-gh")][1] == Decimal(2)
    pull(standin, engine, copilot_seat_usd=Decimal(30))
    assert attributed(engine)[("2026-11-22", ANA, "gpt-5")][1] == Decimal(1)
    assert kept(engine)[("2026-11-22", "bo-gh")][1] == Decimal(1)
