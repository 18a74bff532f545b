"""The schema comes only from migrations, and migrations match the models exactly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.db import alembic_config, current_revision, upgrade
from storage.slack_tables import slack_metadata


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


def test_downgrade_to_base_removes_every_table_then_upgrade_restores_them(engine: Engine) -> None:
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"person", "usage_record", "agent_run", "outcome", "annotation", "slack_installations"} <= tables


def test_no_column_can_hold_prompt_or_completion_text() -> None:
    columns = {c.name for table in SQLModel.metadata.tables.values() for c in table.columns}
    assert not {c for c in columns if "prompt" in c or "completion" in c or "content" in c}
