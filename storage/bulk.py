"""Bulk writes at database speed: COPY on PostgreSQL, one prepared executemany on SQLite.

Rows are tuples of *storage* values, in the order of `columns`: naive UTC datetimes, scaled integers for
money (nano-dollars) and weights (thousandths), Python bools. This skips the ORM's per-value type
processing, which is what makes millions of rows a minute possible; callers that need validation do it
before they get here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import chain, islice
from typing import Any

from sqlalchemy import Connection, text


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, bool):
        return int(value)
    return value


def _sqlite_converters(sample: Sequence[Sequence[Any]]) -> list[tuple[int, Callable[[Any], Any]]]:
    """Which columns need converting for sqlite3 (datetimes, bools), judged from the first rows.

    Converting only those columns, instead of testing every value, halves the Python cost of a bulk write.
    """
    wanted: dict[int, Callable[[Any], Any]] = {}
    for row in sample:
        for index, value in enumerate(row):
            if index not in wanted and isinstance(value, datetime | bool):
                wanted[index] = _sqlite_value
    return sorted(wanted.items())


def copy_rows(connection: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write `rows` into `table` inside the connection's transaction; returns how many were written."""
    names = ", ".join(columns)
    count = 0
    raw = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    marks = ", ".join("?" for _ in columns)
    rows = iter(rows)
    sample = list(islice(rows, 100))
    converters = _sqlite_converters(sample)
    batch: list[Sequence[Any]] = []
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        for row in chain(sample, rows):
            if converters:
                row = list(row)
                for index, convert in converters:
                    row[index] = convert(row[index])
            batch.append(row)
            if len(batch) >= 10_000:
                cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", batch)
                count += len(batch)
                batch.clear()
        if batch:
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", batch)
            count += len(batch)
    finally:
        cursor.close()
    return count


def advance_sequences(connection: Connection, tables: Sequence[str]) -> None:
    """After writing explicit ids on PostgreSQL, move each id sequence past the largest id."""
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        connection.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 1)) FROM {table}"
        )


def _secondary_indexes(connection: Connection, tables: Sequence[str]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of each plain index on `tables`; unique ones stay, they guard the data."""
    if connection.dialect.name == "postgresql":
        query = text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " WHERE t.relname = ANY(:tables) AND NOT x.indisunique AND NOT x.indisprimary"
            " AND t.relnamespace = current_schema()::regnamespace ORDER BY i.relname"
        )
        return [(name, sql) for name, sql in connection.execute(query, {"tables": list(tables)})]
    marks = ", ".join(f":t{i}" for i in range(len(tables)))
    query = text(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND sql NOT LIKE 'CREATE UNIQUE%' AND tbl_name IN ({marks}) ORDER BY name"
    )
    return [(name, sql) for name, sql in connection.execute(query, {f"t{i}": t for i, t in enumerate(tables)})]


def _constraints(connection: Connection, tables: Sequence[str]) -> list[tuple[str, str, str]]:
    """(table, name, definition) of each foreign key and unique constraint on `tables` (PostgreSQL only),
    unique constraints first: the order to add them back in."""
    if connection.dialect.name != "postgresql":
        return []
    query = text(
        "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " JOIN pg_class t ON t.oid = c.conrelid WHERE c.contype IN ('f', 'u') AND t.relname = ANY(:tables)"
        " AND t.relnamespace = current_schema()::regnamespace ORDER BY c.contype DESC, t.relname, c.conname"
    )
    return [
        (table, name, definition) for table, name, definition in connection.execute(query, {"tables": list(tables)})
    ]


@contextmanager
def bulk_load(connection: Connection, tables: Sequence[str]) -> Iterator[None]:
    """Load `tables` the way databases like to be loaded: rows first, then indexes and checks.

    Inside the connection's transaction, plain indexes (and on PostgreSQL foreign keys and unique
    constraints) of `tables` are dropped, and re-created on the way out: one sort per index and one join
    per foreign key instead of a lookup per row. Re-adding a constraint checks every row, so nothing
    unchecked gets in; a failure rolls the whole transaction back, schema included. For loading empty
    tables (seeding); the tables are locked for writers meanwhile. (SQLite's unique constraints belong to
    its tables and stay.) The tables are analysed at the end.
    """
    indexes = _secondary_indexes(connection, tables)
    keys = _constraints(connection, tables)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")  # index builds sort in memory
    for table, name, _definition in reversed(keys):
        connection.exec_driver_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for name, _sql in indexes:
        connection.exec_driver_sql(f'DROP INDEX "{name}"')
    yield
    for _name, sql in indexes:
        connection.exec_driver_sql(sql)
    for table, name, definition in keys:
        connection.exec_driver_sql(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    # Fresh statistics: without them PostgreSQL plans the first queries on millions of new rows as if the
    # tables were empty until autovacuum gets round to them (SQLite: a sampled ANALYZE, a second or two).
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA analysis_limit = 1000")
    for table in tables:
        connection.exec_driver_sql(f'ANALYZE "{table}"')
