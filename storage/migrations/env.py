"""Alembic environment: the engine is handed in by storage.db.upgrade (or built from DATABASE_URL)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)
from storage.slack_tables import slack_metadata

target_metadata = [SQLModel.metadata, slack_metadata()]


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        import os

        from storage.db import make_engine

        engine = make_engine(os.environ.get("DATABASE_URL", "sqlite:///./tokenwise.db"))
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
