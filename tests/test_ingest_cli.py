"""`tokenwise source ...` and `tokenwise import ...` on both databases (in-process CLI runs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

import bot.cli.commands  # noqa: F401  (registers the commands)
from bot.cli.root import app
from bot.config import get_settings
from storage.models import Membership, Person, Source, Team, UsageRecord
from tests.support.ingest_fixtures import make_app, row_counts, source_count
from tests.test_ingest_claude_code import EXPECTED, per_day, write_log_set
from tests.test_ingest_openai import ADMIN_KEY, FakeOpenAI, serve

runner = CliRunner()


@pytest.fixture(autouse=True)
def configured(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def tokenwise(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_a_source_token_is_shown_once_stored_hashed_and_revocable(engine: Engine, db_url: str) -> None:
    code, output = tokenwise("source", "create", "laptop-otel", "--kind", "otlp")
    assert code == 0, output
    [token] = re.findall(r"tw_[A-Za-z0-9_-]{20,}", output)
    with Session(engine) as session:
        source = session.exec(select(Source)).one()
    assert source.token_hash is not None and token not in source.token_hash and len(source.token_hash) == 64
    code, listing = tokenwise("source", "list")
    assert code == 0 and "laptop-otel" in listing and "active" in listing and token not in listing
    client = TestClient(make_app(engine, db_url))
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert client.post("/v1/otlp/v1/metrics", content=b"{}", headers=auth).status_code == 200
    assert tokenwise("source", "revoke", "laptop-otel")[0] == 0
    assert "revoked" in tokenwise("source", "list")[1]
    assert client.post("/v1/otlp/v1/metrics", content=b"{}", headers=auth).status_code == 401


def test_source_mistakes_are_one_line_errors_with_exit_2(engine: Engine) -> None:
    code, output = tokenwise("source", "create", "x", "--kind", "carrier-pigeon")
    assert code == 2 and "Kinds: api, otlp" in output
    assert tokenwise("source", "create", "dup")[0] == 0
    code, output = tokenwise("source", "create", "dup")
    assert code == 2 and "exists already" in output
    code, output = tokenwise("source", "revoke", "nope")
    assert code == 2 and "No source called 'nope'. Sources: dup." in output
    assert source_count(engine) == 1


USAGE_CSV = (
    "dedupe_key,email,slack_user_id,occurred_at,agent,model,"
    "input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,cost_usd\n"
    """k1,ana@example.com,,2026-11-24T10:00:00Z,cursor,gpt-4o,100,20,0,0,0.0012
k2,,U42,2026-11-24T11:00:00+01:00,cursor,gpt-4o,5,6,,,
"""
)


def test_a_usage_csv_imports_once(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(USAGE_CSV)
    code, output = tokenwise("import", "csv", str(path))
    assert code == 0, output
    assert "Imported 2 usage records; 0 were already there." in output
    code, output = tokenwise("import", "csv", str(path))
    assert "Imported 0 usage records; 2 were already there." in output
    with Session(engine) as session:
        records = session.exec(select(UsageRecord).order_by(UsageRecord.dedupe_key)).all()
    assert [(r.input_tokens, r.cache_read_tokens, r.cost_usd is None) for r in records] == [
        (100, 0, False),
        (5, 0, True),
    ]


def test_a_bad_usage_csv_names_its_lines_and_writes_nothing(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "usage.csv"
    bad = USAGE_CSV + "k3,bo@example.com,,yesterday,cursor,gpt-4o,-1,2,,,\n"
    path.write_text(bad)
    before = row_counts(engine)
    code, output = tokenwise("import", "csv", str(path))
    assert code == 2
    assert "line 4, column occurred_at" in output and "line 4, column input_tokens" in output
    assert row_counts(engine) == before
    path.write_text("dedupe_key,who\nk1,ana\n")
    code, output = tokenwise("import", "csv", str(path))
    assert code == 2 and "line 1: missing column(s) occurred_at" in output and "unknown column(s) who" in output
    assert row_counts(engine) == before


def test_the_org_csv_sets_people_teams_and_roles_idempotently(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "org.csv"
    path.write_text(
        "email,team,role\nana@example.com,platform,manager\nbo@example.com,platform,member\nbo@example.com,data,\n"
    )
    code, output = tokenwise("import", "org", str(path))
    assert code == 0, output
    assert "2 people; 2 new teams, 3 new memberships, 0 roles changed." in output
    path.write_text("email,team,role\nana@example.com,platform,member\n")
    assert "1 roles changed" in tokenwise("import", "org", str(path))[1]
    with Session(engine) as session:
        assert sorted(t.name for t in session.exec(select(Team)).all()) == ["data", "platform"]
        assert len(session.exec(select(Membership)).all()) == 3
        assert len(session.exec(select(Person)).all()) == 2


def test_a_bad_org_csv_names_its_lines_and_writes_nothing(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "org.csv"
    path.write_text("email,team,role\nana@example.com,platform,manager\nnot-an-email,platform,boss\n")
    code, output = tokenwise("import", "org", str(path))
    assert code == 2
    assert (
        "line 3, column email" in output
        and "line 3, column role: 'boss' is not a role; use member or manager" in output
    )
    assert row_counts(engine)["person"] == 0


def test_import_claude_code_reports_what_it_did_and_matches_the_hand_totals(tmp_path: Path, engine: Engine) -> None:
    root = write_log_set(tmp_path / ".claude")
    code, output = tokenwise("import", "claude-code", str(root), "--email", "ana@example.com")
    assert code == 0, output
    assert "Imported 6 new usage records from 2 files (2 sessions)" in output
    assert "2 malformed lines skipped" in output
    assert per_day(engine) == EXPECTED
    code, output = tokenwise("import", "claude-code", str(tmp_path / "nowhere"), "--email", "ana@example.com")
    assert code == 2 and "No folder" in output


def test_a_log_that_vanishes_during_the_import_is_one_clear_line(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claude Code removes a session file between the listing and its reading: one line naming the file and
    saying what to do, exit 2, no traceback."""
    from bot.sources import claude_code

    root = write_log_set(tmp_path / ".claude")
    listed = claude_code.find_logs

    def listed_then_one_gone(*paths: Path) -> tuple[list[Path], int]:
        files, size = listed(*paths)
        files[-1].unlink()
        return files, size

    monkeypatch.setattr(claude_code, "find_logs", listed_then_one_gone)
    code, output = tokenwise("import", "claude-code", str(root), "--email", "ana@example.com")
    assert code == 2, output
    assert "Could not read" in output and "No such file or directory" in output and "run the import again" in output
    assert "Traceback" not in output


def test_import_openai_usage_without_an_admin_key_says_what_to_set() -> None:
    code, output = tokenwise("import", "openai-usage", "--since", "2026-11-01")
    assert code == 2 and "OPENAI_ADMIN_KEY" in output


def test_import_openai_usage_pulls_through_the_configured_base_url(
    monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    with serve(FakeOpenAI()) as (_, base):
        _import_openai_usage(monkeypatch, engine, base)


def _import_openai_usage(monkeypatch: pytest.MonkeyPatch, engine: Engine, base: str) -> None:
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("OPENAI_ADMIN_BASE_URL", base)
    get_settings.cache_clear()
    code, output = tokenwise("import", "openai-usage", "--since", "2026-11-23", "--until", "2026-11-24")
    assert code == 0, output
    assert "Imported 3 (day, user, model) buckets from 2 pages; 1 results had no known user" in output
    assert row_counts(engine)["usage_record"] == 3
    code, output = tokenwise("import", "openai-usage", "--since", "2026-11-24", "--until", "2026-11-01")
    assert code == 2 and "--until is before --since" in output
