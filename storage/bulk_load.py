"""Bulk writes at database speed: COPY on PostgreSQL, INSERTs of a few hundred rows each on SQLite.

Rows are tuples of *storage* values, in the order of `columns`: naive UTC datetimes (or, for SQLite only,
the ISO text it stores for them), scaled integers for money (nano-dollars) and weights (thousandths),
Python bools. This skips the ORM's per-value type processing, which is what makes millions of rows a
minute possible; callers that need validation do it before they get here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from itertools import chain, islice
from typing import Any

from sqlalchemy import Connection, Engine, exc, text
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (their tables in SQLModel.metadata: which columns are times)
from storage.types import UTCDateTime, utc_micros

SQLITE_ROWS_PER_INSERT = 500


def _sqlite_value(value: Any) -> Any:
    return utc_micros(value) if isinstance(value, datetime) else value


def _sqlite_rows(
    table: str, names: Sequence[str], sample: list[Sequence[Any]], rest: Iterator[Sequence[Any]]
) -> Iterable[Sequence[Any]]:
    """The rows as sqlite3 takes them: datetimes turned into integer microseconds since 1970 UTC, as
    UTCDateTime stores them on SQLite (naive times are UTC).

    The table's time columns are checked value by value, but for one whose first rows hand over integers
    already (the seed does, for speed), and rows that need nothing are passed on untouched. A datetime
    left to the driver would be stored as text, which SQLite orders after every integer. (Bools need
    nothing: sqlite3 binds them as the integers 1 and 0.)
    """
    known = SQLModel.metadata.tables.get(table)
    times = {name for name in names if known is not None and isinstance(known.c[name].type, UTCDateTime)}
    columns = set()
    for index, name in enumerate(names):
        values = [row[index] for row in sample if row[index] is not None]
        given_as_integers = bool(values) and all(isinstance(value, int) for value in values)
        if any(isinstance(value, datetime) for value in values) or (name in times and not given_as_integers):
            columns.add(index)
    rows = chain(sample, rest)
    if not columns:
        return rows
    return ([_sqlite_value(value) if index in columns else value for index, value in enumerate(row)] for row in rows)


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
    # Many rows per INSERT (multi-row VALUES): a quarter less time than an executemany of one-row statements,
    # which pays a reset, a re-bind and a step per row. A few hundred rows a statement is as fast as more.
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    per_statement = max(1, min(SQLITE_ROWS_PER_INSERT, limit // len(columns)))
    row_marks = f"({', '.join('?' for _ in columns)})"
    insert = f"INSERT INTO {table} ({names}) VALUES "
    full = insert + ", ".join([row_marks] * per_statement)
    rest = iter(rows)
    sample = list(islice(rest, 100))
    values = iter(_sqlite_rows(table, columns, sample, rest))
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        while batch := list(islice(values, per_statement)):
            statement = full if len(batch) == per_statement else insert + ", ".join([row_marks] * len(batch))
            cursor.execute(statement, list(chain.from_iterable(batch)))
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
def bulk_transaction(engine: Engine, cache_kib: int = 262_144) -> Iterator[Connection]:
    """One connection and one transaction for writing millions of rows; on SQLite, set up for it.

    A 256 MB page cache for the unique indexes that every row goes into. Foreign keys checked once, with
    `PRAGMA foreign_key_check` before the commit, instead of three look-ups for each row (a tenth of a
    seed's time); a violation rolls it all back. And, when this is the database's only connection, the
    rollback journal instead of the WAL: pages written to the WAL are written twice, once into the log and
    once more when the commit's checkpoint copies the log (as big as the database) back, while pages added
    to a database in rollback mode are written once and only the few it had before are journalled.
    `synchronous = FULL` keeps that mode as safe on a crash as the WAL is. Everything is put back afterwards
    for the pool's next user (a connection that opens meanwhile switches the database back to WAL itself).
    """
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                yield connection
            return
        settings = ("cache_size", "synchronous", "foreign_keys")
        before = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in settings}
        connection.exec_driver_sql(f"PRAGMA cache_size = -{cache_kib}")
        connection.exec_driver_sql("PRAGMA foreign_keys = OFF")  # outside a transaction, or it does nothing
        try:
            rollback_journal = connection.exec_driver_sql("PRAGMA journal_mode = DELETE").scalar() == "delete"
        except exc.OperationalError:  # "database is locked": another connection is open, stay in WAL
            rollback_journal = False
        if rollback_journal:
            connection.exec_driver_sql("PRAGMA synchronous = FULL")
        connection.commit()  # pragmas only: the transaction below is the one that writes
        try:
            with connection.begin():
                yield connection
                if before["foreign_keys"]:
                    _check_foreign_keys(connection)
        finally:
            if rollback_journal:
                with suppress(exc.OperationalError):  # someone else is connected: they switched back already
                    connection.exec_driver_sql("PRAGMA journal_mode = WAL")
            for name, value in before.items():
                connection.exec_driver_sql(f"PRAGMA {name} = {value}")
            connection.commit()


def _check_foreign_keys(connection: Connection) -> None:
    """Raise IntegrityError, as the per-row check would have, if any row's parent is missing (SQLite)."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
    if broken is not None:
        table, rowid, parent, _key = broken
        error = sqlite3.IntegrityError(f"FOREIGN KEY constraint failed: {table} row {rowid} has no {parent}")
        raise exc.IntegrityError("PRAGMA foreign_key_check", None, error)


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
