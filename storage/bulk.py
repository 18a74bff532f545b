"""Bulk writes at database speed: COPY on PostgreSQL, one prepared executemany on SQLite.

Rows are tuples of *storage* values, in the order of `columns`: naive UTC datetimes, scaled integers for
money (nano-dollars) and weights (thousandths), Python bools. This skips the ORM's per-value type
processing, which is what makes millions of rows a minute possible; callers that need validation do it
before they get here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, bool):
        return int(value)
    return value


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
    batch: list[tuple[Any, ...]] = []
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        for row in rows:
            batch.append(tuple(_sqlite_value(v) for v in row))
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
