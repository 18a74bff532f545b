"""Real databases as fixtures: every storage test runs on a SQLite file and on PostgreSQL.

PostgreSQL comes from TOKENWISE_TEST_POSTGRES_URL (default: the local server's `test` database). The
suite creates a private database of its own there, so parallel runs do not collide. With CI=true an
unreachable server fails the run; elsewhere the PostgreSQL half is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from storage.db import make_engine, normalize_url, upgrade
from tests.support import network_guard

pytest_plugins = ["tests.support.slack_harness"]  # the `harness` fixture, registered once
network_guard.install()  # a network call inside a database write transaction fails the test

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(autouse=True)
def no_network_call_inside_a_write_transaction() -> Iterator[None]:
    """Fail the test if anything it ran called the network while holding a write transaction, even when
    the code under test caught the guard's error (tests/support/network_guard.py)."""
    seen = len(network_guard.VIOLATIONS)
    yield
    found = network_guard.VIOLATIONS[seen:]
    if found:
        pytest.fail("Network call inside a write transaction:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies, so each starts from an empty schema."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private, migrated PostgreSQL database for this test session, dropped at the end."""
    admin_url = normalize_url(os.environ.get("TOKENWISE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        admin.dispose()
        message = f"PostgreSQL at {make_url(admin_url).render_as_string()} is unreachable: {error}"
        if _in_ci():
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    name = f"tokenwise_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalars()
        names = ", ".join(f'"{table}"' for table in tables)
        if names:
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """An empty, migrated database: a fresh SQLite file, or the session's PostgreSQL truncated."""
    if request.param == "sqlite":
        path = tmp_path / "tokenwise.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session
