"""What the seed's shortcuts must keep: the same stored values, checked foreign keys, a pool left as found."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc

from bot.seed import _clock
from storage.bulk_load import _sqlite_value, bulk_transaction, copy_rows
from storage.db import make_engine

pytestmark = pytest.mark.slow  # `make test-fast` leaves it out; `make test` runs it

SETTINGS = ("journal_mode", "synchronous", "cache_size", "foreign_keys")


@pytest.fixture
def sqlite_engine(tmp_path: Path, sqlite_template: Path) -> Iterator[Engine]:
    path = tmp_path / "tokenwise.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def _settings(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return [connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in SETTINGS]


def test_the_sqlite_clock_is_what_copy_rows_makes_of_the_datetimes() -> None:
    for week_start in (date(2026, 3, 23), date(2026, 12, 28), date(2028, 2, 26)):  # DST, year end, leap day
        datetimes = _clock(week_start, as_micros=False)
        assert datetimes[0] == datetime(week_start.year, week_start.month, week_start.day)
        assert datetimes[-1] - datetimes[0] == timedelta(days=8) - timedelta(seconds=30)
        assert _clock(week_start, as_micros=True) == [_sqlite_value(moment) for moment in datetimes]


def test_a_missing_parent_rolls_the_bulk_transaction_back_and_the_pool_is_left_as_found(
    sqlite_engine: Engine,
) -> None:
    before = _settings(sqlite_engine)
    with pytest.raises(exc.IntegrityError, match="FOREIGN KEY"), bulk_transaction(sqlite_engine) as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"  # the only connection
        connection.exec_driver_sql("INSERT INTO source (id, name, kind, created_at) VALUES (1, 's', 'seed', '2026')")
        rows = [
            (i, 1, 1, None, datetime(2026, 1, 1) + timedelta(seconds=i), "a", "m", 1, 2, 3, 4, None, f"k{i}")
            for i in range(1, 1_234)
        ]
        columns = (
            "id", "source_id", "person_id", "run_id", "occurred_at", "agent", "model", "input_tokens",
            "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "dedupe_key",
        )  # fmt: skip
        assert copy_rows(connection, "usage_record", columns, rows) == len(rows)  # person 1 does not exist
        last = connection.exec_driver_sql("SELECT occurred_at FROM usage_record WHERE id = 1233").scalar()
        assert last == _sqlite_value(rows[-1][4])
    assert _settings(sqlite_engine) == before == ["wal", 1, -65536, 1]
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM source").scalar() == 0


def test_a_time_column_empty_in_the_first_rows_is_still_stored_as_microseconds(sqlite_engine: Engine) -> None:
    """copy_rows judges from its first 100 rows which values to convert; a run's end, NULL in those, must not
    reach SQLite later as text (which orders after every integer: the run would never look ended before)."""
    start = datetime(2026, 1, 1)
    with bulk_transaction(sqlite_engine) as connection:
        connection.exec_driver_sql("INSERT INTO source (id, name, kind, created_at) VALUES (1, 's', 'seed', 0)")
        connection.exec_driver_sql(
            "INSERT INTO person (id, email, timezone, nudges_enabled, created_at) VALUES (1, 'a@x.io', 'UTC', 1, 0)"
        )
        rows = [
            (i, 1, f"r{i}", 1, "a", start, None if i <= 150 else start + timedelta(minutes=i)) for i in range(1, 301)
        ]
        columns = ("id", "source_id", "external_id", "person_id", "agent", "started_at", "ended_at")
        assert copy_rows(connection, "agent_run", columns, rows) == len(rows)
    with sqlite_engine.connect() as connection:
        kinds = dict(connection.exec_driver_sql("SELECT typeof(ended_at), count(*) FROM agent_run GROUP BY 1").all())
        last = connection.exec_driver_sql("SELECT ended_at FROM agent_run WHERE id = 300").scalar()
    assert kinds == {"null": 150, "integer": 150} and last == _sqlite_value(start + timedelta(minutes=300))


def test_another_open_connection_keeps_the_wal(sqlite_engine: Engine) -> None:
    seeder = make_engine(str(sqlite_engine.url))
    with sqlite_engine.connect() as other:
        other.exec_driver_sql("SELECT 1").all()
        with bulk_transaction(seeder) as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            connection.exec_driver_sql(
                "INSERT INTO source (id, name, kind, created_at) VALUES (1, 's', 'seed', '2026')"
            )
        assert other.exec_driver_sql("SELECT COUNT(*) FROM source").scalar() == 1
    seeder.dispose()
    assert _settings(sqlite_engine) == ["wal", 1, -65536, 1]
