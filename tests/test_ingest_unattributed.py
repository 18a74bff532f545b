"""Nothing vanishes: usage that names no known person (Claude Code logged in with an API key sends no
email) is kept, shown, and becomes its person's when an operator links the identity it carries."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.cli import commands  # noqa: F401  (registers every command group)
from bot.cli.root import app as cli
from bot.config import get_settings
from storage.models import Person, UnattributedUsage, UsageRecord
from tests.support.ingest_fixtures import make_app, new_token, running_server

ACCOUNT = "3f1c2a8e-acc0-4b1d-9e0f-7a6b5c4d3e2f"


@pytest.fixture
def endpoint(engine: Engine, db_url: str) -> Iterator[tuple[str, str]]:
    with running_server(make_app(engine, db_url)) as url:
        yield f"{url}/v1/otlp/v1/metrics", new_token(engine, "claude-code-otel", "otlp")


def export_session(endpoint: tuple[str, str], session_id: str, tokens: int) -> None:
    """Claude Code logged in with an API key, exporting through the real OpenTelemetry SDK: no email."""
    url, token = endpoint
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=url, headers={"Authorization": f"Bearer {token}"}), export_interval_millis=3_600_000
    )
    resource = Resource.create({"service.name": "claude-code", "user.account_uuid": ACCOUNT})
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    counter = provider.get_meter("com.anthropic.claude_code").create_counter("claude_code.token.usage")
    counter.add(tokens, {"session.id": session_id, "model": "claude-sonnet-4-5", "type": "input"})
    provider.get_meter("com.anthropic.claude_code").create_counter("claude_code.cost.usage").add(
        0.5, {"session.id": session_id, "model": "claude-sonnet-4-5"}
    )
    assert reader.force_flush()
    provider.shutdown()


def tokenwise(db_url: str, *args: str) -> tuple[int, str]:
    """A `tokenwise` command, in process, on this test's database (settings are read once per process)."""
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, list(args), env={"DATABASE_URL": db_url, "COLUMNS": "200"})
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


def test_usage_naming_nobody_is_kept_shown_and_moved_to_its_person_once_linked(
    engine: Engine, db_url: str, endpoint: tuple[str, str]
) -> None:
    export_session(endpoint, "s1", 1200)
    with Session(engine) as session:
        assert session.exec(select(UsageRecord)).all() == []
        (kept,) = session.exec(select(UnattributedUsage)).all()
    assert (kept.identity_kind, kept.identity_value, kept.input_tokens) == ("account-uuid", ACCOUNT, 1200)

    code, status = tokenwise(db_url, "source", "status")
    assert code == 0 and f"account-uuid {ACCOUNT}" in status and "tokenwise people link" in status
    code, report = tokenwise(db_url, "report", "--json", "--since", "2020-01-06", "--until", "2020-01-12")
    assert code == 0 and json.loads(report)["unattributed"]["records"] == 0  # another week: none there

    code, said = tokenwise(db_url, "people", "link", "account-uuid", ACCOUNT, "ada@example.com")
    assert code == 0 and "1 unattributed usage record moved" in said
    export_session(endpoint, "s2", 300)  # from now on, straight to her

    with Session(engine) as session:
        ada = session.exec(select(Person).where(Person.email == "ada@example.com")).one()
        mine = session.exec(select(UsageRecord)).all()
        assert session.exec(select(UnattributedUsage)).all() == []
    assert sorted(r.input_tokens for r in mine) == [300, 1200]
    assert {r.person_id for r in mine} == {ada.id}


def test_an_identity_is_linked_once_and_only_to_one_person(db_url: str, engine: Engine) -> None:
    assert tokenwise(db_url, "people", "link", "account-uuid", ACCOUNT, "ada@example.com")[0] == 0
    code, said = tokenwise(db_url, "people", "link", "account-uuid", ACCOUNT, "mallory@example.com")
    assert code == 2 and "linked to someone else already" in said
    code, said = tokenwise(db_url, "people", "link", "shoe-size", "42", "ada@example.com")
    assert code == 2 and "Unknown kind 'shoe-size'" in said
