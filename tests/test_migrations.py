"""The schema comes only from migrations, and migrations match the models exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, bindparam, inspect, text
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.db import alembic_config, current_revision, head_revisions, upgrade
from storage.slack_tables import slack_metadata
from storage.types import UTCDateTime


def test_migrations_produce_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, [SQLModel.metadata, slack_metadata()])
    assert differences == []


def test_upgrade_is_idempotent_and_reaches_head(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    heads = alembic_config(engine)
    from alembic.script import ScriptDirectory

    assert current_revision(engine) == ScriptDirectory.from_config(heads).get_current_head()


def test_the_heads_read_off_the_migration_files_are_alembics(engine: Engine) -> None:
    """`upgrade` skips Alembic when the database is at these heads (start-up time), so they must be its own."""
    from alembic.script import ScriptDirectory

    assert head_revisions() == set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def test_downgrade_to_base_removes_every_table_then_upgrade_restores_them(engine: Engine) -> None:
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"person", "usage_record", "agent_run", "outcome", "annotation", "slack_installations"} <= tables


def test_no_column_can_hold_prompt_or_completion_text() -> None:
    columns = {c.name for table in SQLModel.metadata.tables.values() for c in table.columns}
    assert not {c for c in columns if "prompt" in c or "completion" in c or "content" in c}


def test_a_session_two_sources_made_two_runs_of_becomes_one_run_with_all_it_had(engine: Engine) -> None:
    """Before 0007 Claude Code's logs and its OTLP export each made a run of the same session: the upgrade
    merges them into the earliest, with usage, outcomes and the owner's latest verdict."""
    command.downgrade(alembic_config(engine), "0006_counted_once")
    when = "2026-11-24 10:00:00.000000"
    statements = [
        "INSERT INTO person (id, email, timezone, nudges_enabled, created_at) VALUES (1, 'a@x.io', 'UTC', true, :t)",
        "INSERT INTO source (id, name, kind, personal, outcomes, created_at) VALUES"
        " (1, 'logs', 'claude-code-logs', false, false, :t), (2, 'laptop', 'otlp', false, true, :t),"
        " (3, 'api', 'api', false, false, :t)",
        "INSERT INTO agent_run (id, source_id, external_id, person_id, agent, started_at) VALUES"
        " (1, 1, 's1', 1, 'claude-code', '2026-11-24 10:05:00.000000'), (2, 2, 's1', 1, 'claude-code', :t),"
        " (3, 3, 's1', 1, 'custom', :t)",
        "INSERT INTO usage_record (source_id, person_id, run_id, occurred_at, agent, model, input_tokens,"
        " output_tokens, cache_read_tokens, cache_write_tokens, dedupe_key, counted) VALUES"
        " (1, 1, 1, :t, 'claude-code', 'm', 1, 1, 0, 0, 'cc:1', true),"
        " (2, 1, 2, :t, 'claude-code', 'm', 1, 1, 0, 0, 'otlp:c:1', false)",
        "INSERT INTO outcome (source_id, run_id, person_id, kind, weight, occurred_at, external_id) VALUES"
        " (2, 2, 1, 'commit', 0.5, :t, 'o1')",
        "INSERT INTO annotation (run_id, person_id, verdict, share_as_win, created_at, updated_at) VALUES"
        " (1, 1, 'not_useful', false, :t, '2026-11-24 11:00:00.000000'),"
        " (2, 1, 'useful', false, :t, '2026-11-24 12:00:00.000000')",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), {"t": when})
    upgrade(engine)
    with engine.connect() as connection:
        runs = connection.execute(
            text("SELECT id, source_id, started_at FROM agent_run ORDER BY id").columns(started_at=UTCDateTime())
        ).all()
        usage = connection.execute(text("SELECT DISTINCT run_id FROM usage_record")).scalars().all()
        outcomes = connection.execute(text("SELECT run_id FROM outcome")).scalars().all()
        verdicts = connection.execute(text("SELECT run_id, verdict FROM annotation")).all()
    assert [(run[0], run[1]) for run in runs] == [(1, 1), (3, 3)]  # the API's run is not a session: kept
    assert runs[0][2] == datetime(2026, 11, 24, 10, tzinfo=UTC)  # the earlier start of the two
    assert usage == [1] and outcomes == [1] and verdicts == [(1, "useful")]


def test_sqlite_times_become_integer_microseconds_and_read_back_the_same(engine: Engine) -> None:
    """0014 turns SQLite's stored text ("YYYY-MM-DD HH:MM:SS[.ffffff]", naive UTC) into the microseconds
    UTCDateTime now writes, to the microsecond; its downgrade gives the text back. PostgreSQL is untouched."""
    command.downgrade(alembic_config(engine), "0013_github_unsettled")
    texts = ["2026-11-24 10:00:00.000000", "2026-11-24 10:00:00", "1999-12-31 23:59:59.999999", "2026-02-28 07:30:00.5"]
    if engine.dialect.name == "sqlite":  # texts SQLAlchemy never wrote, read the slower way, exactly
        texts += ["2026-11-24T10:00:00.123Z", "2026-11-24 12:00:00+02:00", "2026-11-24 10:00:00.5+00:00"]
    with engine.begin() as connection:
        for index, when in enumerate(texts, start=1):
            connection.execute(
                text(
                    "INSERT INTO person (id, email, timezone, nudges_enabled, created_at)"
                    " VALUES (:i, :e, 'UTC', true, :t)"
                ),
                {"i": index, "e": f"p{index}@x.io", "t": when},
            )
    upgrade(engine)
    read = text("SELECT created_at FROM person ORDER BY id").columns(created_at=UTCDateTime())
    with engine.connect() as connection:
        stored = connection.execute(read).scalars().all()
        raw = (
            connection.execute(text("SELECT typeof(created_at) FROM person")).scalars().all()
            if engine.dialect.name == "sqlite"
            else []
        )
    moments = [datetime.fromisoformat(when) for when in texts]
    moments = [moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC) for moment in moments]
    assert stored == moments
    assert set(raw) <= {"integer"}
    # written by the models now, the same moments compare equal with what was converted
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT count(*) FROM person WHERE created_at = :t").bindparams(
                bindparam("t", datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), type_=UTCDateTime())
            )
        ).scalar_one()
    assert found == 1
    command.downgrade(alembic_config(engine), "0013_github_unsettled")
    with engine.connect() as connection:
        back = connection.execute(text("SELECT created_at FROM person ORDER BY id")).scalars().all()
    if engine.dialect.name == "sqlite":
        assert back == [moment.replace(tzinfo=None).isoformat(" ", "microseconds") for moment in moments]


def test_a_sqlite_time_that_is_no_time_stops_the_upgrade_with_one_line_naming_it(tmp_path: Path) -> None:
    """0014 reads what SQLAlchemy never wrote in Python; text that is no time is named, never made NULL."""
    import subprocess
    import sys

    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0013_github_unsettled")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO person (id, email, timezone, nudges_enabled, created_at)"
                " VALUES (1, 'a@x.io', 'UTC', 1, 'yesterday')"
            )
        )
    engine.dispose()
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "db", "upgrade"],
        cwd=Path(__file__).resolve().parents[1],
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'old.db'}", "PATH": "/usr/bin", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "person.created_at (row 1) holds 'yesterday', which is not a time" in done.stderr + done.stdout
