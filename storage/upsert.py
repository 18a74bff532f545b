"""Inserts that are idempotent on a natural key, at database speed: `INSERT ... ON CONFLICT DO NOTHING` in
multi-row VALUES on SQLite, binary COPY (straight, or through a staging table) on PostgreSQL, and running
totals merged with `ON CONFLICT DO UPDATE`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import Table, func
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session

from storage.models import UsageRecord, table_of
from storage.types import UTCDateTime, utc_micros

USAGE = table_of(UsageRecord)


def dialect_insert(session: Session, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the session's database. The dialect's module is imported here, not
    at the top: a command that loads this module may never need PostgreSQL's (35-60 ms of start-up)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def insert_new(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> int:
    """Insert the rows whose key is new; returns how many were inserted (the rest were duplicates).

    On PostgreSQL the rows go by COPY in key order, so concurrent overlapping batches never deadlock:
    straight into the table when every key is new, else through a staging table and `INSERT ... ON CONFLICT
    DO NOTHING` (`_insert_new_copy`); on SQLite, whose writers take turns, in multi-row `INSERT ... VALUES`
    statements. Of two rows with one key, the first sent is the one kept.
    """
    if not rows:
        return 0
    names = list(rows[0])
    return insert_values(session, table, names, list(storage_values(session, table, names, rows)), key)


def insert_values(
    session: Session, table: Table, names: Sequence[str], values: Sequence[Sequence[Any]], key: Sequence[str]
) -> int:
    """`insert_new` for rows already converted by `storage_values`, as sequences in the order of `names`."""
    if not values:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        if len(values) <= SMALL_BATCH:
            return _insert_new_small(session, table, names, values, key)
        return _insert_new_copy(session, table, names, values, key)
    return _insert_new_values(session, table, names, values, key)


def storage_values(session: Session, table: Table, names: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Any:
    """Each row as a list of the values the driver is given, converted by the columns' own types."""
    processors = column_processors(session.get_bind().dialect, table, names)
    for row in rows:
        values = [row[name] for name in names]
        for index, process in processors:
            values[index] = process(values[index])
        yield values


def column_processors(dialect: Any, table: Table, names: Sequence[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    """(index, conversion) for each of `names` whose column type converts values before the driver sees them.

    A type decorator over a type the driver takes as it is (ScaledDecimal on both databases) is called
    directly, one Python call a value instead of SQLAlchemy's wrapper around it; UTCDateTime's conversion
    is `naive_utc` where the driver takes datetimes as they are (PostgreSQL), and on SQLite `sqlite_micros`
    (integer microseconds since 1970 UTC, as UTCDateTime stores them there).
    """
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    for index, name in enumerate(names):
        if process := type_processor(dialect, table.c[name].type):
            processors.append((index, process))
    return processors


def type_processor(dialect: Any, column_type: Any) -> Callable[[Any], Any] | None:
    """What a value of this type becomes before the driver sees it (`column_processors`), or None."""
    typed = column_type.dialect_impl(dialect)
    if dialect.name == "sqlite" and isinstance(column_type, UTCDateTime):
        return sqlite_micros
    if isinstance(typed, UTCDateTime) and typed.impl_instance.bind_processor(dialect) is None:
        return naive_utc
    if (
        isinstance(typed, TypeDecorator)
        and type(typed).process_bind_param is not TypeDecorator.process_bind_param
        and typed.impl_instance.bind_processor(dialect) is None
    ):
        return partial(typed.process_bind_param, dialect=dialect)
    process: Callable[[Any], Any] | None = typed.bind_processor(dialect)
    return process


def execute_many(session: Session, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """`session.connection().execute(statement, rows)`, an executemany of rows that all have the same keys.

    On SQLite the statement is compiled once and each value converted once by its parameter's type
    (`type_processor`), then handed to the driver's executemany as it is: SQLAlchemy's own processing of
    each row's parameters cost about 40 µs a row, most of the writing of an import's runs (about 11 000 on
    the record-dense logs, 0.9 CPU seconds). On PostgreSQL SQLAlchemy's execution is kept: it sends an
    INSERT's rows in multi-row statements (insertmanyvalues)."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    names = list(rows[0])
    compiled = statement.compile(dialect=dialect, column_keys=names)
    if dialect.name != "sqlite" or not compiled.positional or compiled.post_compile_params:
        connection.execute(statement, list(rows))
        return
    binds = compiled.binds
    order = compiled.positiontup or []
    processors = [type_processor(dialect, binds[name].type) for name in order]
    constants = {name: binds[name].effective_value for name in order if name not in rows[0]}
    params = []
    for row in rows:
        values = []
        for name, process in zip(order, processors, strict=True):
            value = row[name] if name in row else constants[name]
            values.append(value if process is None else process(value))
        params.append(tuple(values))
    connection.exec_driver_sql(compiled.string, params)


def naive_utc(value: datetime | None) -> datetime | None:
    """What UTCDateTime gives the driver (`as_utc(value).replace(tzinfo=None)`; naive means UTC already), in
    a third of the time: `replace` and `astimezone` parse keyword arguments, `combine` does not."""
    if value is None:
        return None
    offset = value.utcoffset()
    naive = datetime.combine(value.date(), value.time())
    return naive - offset if offset else naive


def sqlite_micros(value: datetime | None) -> int | None:
    """What UTCDateTime gives SQLite: whole microseconds since 1970 UTC (`storage.types.utc_micros`)."""
    return None if value is None else utc_micros(value)


SQLITE_MAX_PARAMETERS = 32_766  # SQLite's default bound since 3.32


def _insert_new_values(
    session: Session, table: Table, names: Sequence[str], values: Sequence[Sequence[Any]], key: Sequence[str]
) -> int:
    """`INSERT ... VALUES (...), (...), ... ON CONFLICT DO NOTHING` with many rows a statement (SQLite), in
    the order they were sent, so of two rows sharing a key the first sent is kept.

    One statement is one call into SQLite. The driver's executemany makes a call per row and gives up and
    takes back Python's GIL for each; with other requests being parsed meanwhile, each of those waited its
    turn, and a batch took seconds (docs/performance.md). A batch of up to 2 048 rows (SQLite's bound on
    parameters, for usage records) is one statement. SQLite counts the rows it inserted (`total_changes`).
    """
    connection = session.connection()
    quoted = ", ".join(f'"{name}"' for name in names)
    one = f"({', '.join('?' for _ in names)})"
    largest = 1 << ((SQLITE_MAX_PARAMETERS // len(names)).bit_length() - 1)
    raw = connection.connection.driver_connection
    before = raw.total_changes  # type: ignore[union-attr]
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        start = 0
        while start < len(values):
            size = min(largest, len(values) - start)
            statement = (
                f'INSERT INTO "{table.name}" ({quoted}) VALUES {", ".join([one] * size)}'
                f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
            )
            cursor.execute(statement, [value for row in values[start : start + size] for value in row])
            start += size
    finally:
        cursor.close()
    return int(raw.total_changes - before)  # type: ignore[union-attr]


SMALL_BATCH = 64  # PostgreSQL: rows up to this many go in one INSERT ... VALUES, more by COPY


def _insert_new_small(
    session: Session, table: Table, names: Sequence[str], values: Sequence[Sequence[Any]], key: Sequence[str]
) -> int:
    """A few rows on PostgreSQL (a webhook's delivery claim, a check, a pull request's links): one
    `INSERT ... VALUES ... ON CONFLICT DO NOTHING` round trip, where COPY costs a savepoint and, for a key
    already there, a staging table and three more statements. Rows go in key order, the first sent of a key
    kept, as `_insert_new_copy` does, so concurrent writers lock keys in one order."""
    key_of = itemgetter(*(list(names).index(name) for name in key))
    in_key_order = sorted(zip(map(key_of, values), range(len(values)), strict=True))
    firsts = [
        sent for index, (key_, sent) in enumerate(in_key_order) if not index or in_key_order[index - 1][0] != key_
    ]
    quoted = ", ".join(f'"{name}"' for name in names)
    one = f"({', '.join(['%s'] * len(names))})"
    conflict = ", ".join(f'"{name}"' for name in key)
    statement = (
        f'INSERT INTO "{table.name}" ({quoted}) VALUES {", ".join([one] * len(firsts))}'
        f" ON CONFLICT ({conflict}) DO NOTHING"
    )
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement, [value for sent in firsts for value in values[sent]])
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _insert_new_copy(
    session: Session, table: Table, names: Sequence[str], values: Sequence[Sequence[Any]], key: Sequence[str]
) -> int:
    """COPY, PostgreSQL's fastest way in: straight into the table when every key is new, else by a staging table.

    The rows are sorted by key here (Python's order, the one `merge_usage_totals` and `_widen_runs` lock
    rows in too), ties in the order they were sent, so concurrent batches lock keys in one order and never
    deadlock, and among rows sharing a key the first sent wins. The COPY is binary, with the columns' types
    given up front, so psycopg's C dumpers send each value as it is. A batch of new rows (the usual case)
    costs one COPY; one with a key already stored is refused whole by the unique index, rolled back to a
    savepoint and moved by `_insert_new_staged`, which skips the keys that exist.
    """
    import psycopg  # here, not at the top: a SQLite user's start-up does without it

    connection = session.connection()
    dialect = connection.dialect
    types = [table.c[name].type.compile(dialect=dialect) for name in names]
    quoted = ", ".join(f'"{name}"' for name in names)
    key_of = itemgetter(*(list(names).index(name) for name in key))
    in_key_order = sorted(zip(map(key_of, values), range(len(values)), strict=True))  # ties: first sent first
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        binary = _copy_types(cursor, types)
        firsts = [
            sent for index, (key_, sent) in enumerate(in_key_order) if not index or in_key_order[index - 1][0] != key_
        ]
        # The usual batch is all new rows: COPY them straight into the table, in key order, behind a savepoint.
        # If a key is there already (a re-sent batch, or a concurrent one that committed it first), the
        # unique index refuses the COPY whole; back to the savepoint, and the staging table sorts it out.
        cursor.execute("SAVEPOINT tokenwise_copy")
        try:
            with cursor.copy(
                f'COPY "{table.name}" ({quoted}) FROM STDIN{" (FORMAT BINARY)" if binary else ""}'
            ) as copy:
                if binary:
                    copy.set_types(binary)
                write = copy.write_row
                for sent in firsts:
                    write(values[sent])
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT tokenwise_copy")
        else:
            cursor.execute("RELEASE SAVEPOINT tokenwise_copy")
            return len(firsts)
    finally:
        cursor.close()
    return _insert_new_staged(connection, table, names, types, values, key, in_key_order)


def _insert_new_staged(
    connection: Any,
    table: Table,
    names: Sequence[str],
    types: Sequence[str],
    values: Sequence[Sequence[Any]],
    key: Sequence[str],
    in_key_order: Sequence[tuple[Any, int]],
) -> int:
    """Rows some of which may exist: COPY into a per-connection temporary table (emptied at every commit or
    rollback), then one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` taking them in key order (`ord`, an
    integer sort, where sorting by the key cost PostgreSQL a collation-aware comparison per pair). COPY
    and one INSERT were a third faster than one `INSERT ... SELECT FROM unnest()` of an array per column."""
    staging = f"tokenwise_new_{table.name}"
    columns = ", ".join(f'"{name}" {sql_type}' for name, sql_type in zip(names, types, strict=True))
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ({columns}, ord integer) ON COMMIT DELETE ROWS"
    )
    quoted = ", ".join(f'"{name}"' for name in names)
    cursor = connection.connection.driver_connection.cursor()
    try:
        binary = _copy_types(cursor, [*types, "INTEGER"])
        with cursor.copy(f"COPY {staging} ({quoted}, ord) FROM STDIN{' (FORMAT BINARY)' if binary else ''}") as copy:
            if binary:
                copy.set_types(binary)
            write = copy.write_row
            for ord_, (_key, sent) in enumerate(in_key_order):
                write([*values[sent], ord_])
        conflict = ", ".join(f'"{name}"' for name in key)
        cursor.execute(
            f'INSERT INTO "{table.name}" ({quoted}) SELECT {quoted} FROM {staging} ORDER BY ord'
            f" ON CONFLICT ({conflict}) DO NOTHING"
        )
        inserted = cursor.rowcount
        cursor.execute(f"DELETE FROM {staging}")  # empty for the next call in this transaction
    finally:
        cursor.close()
    return int(inserted)


def _copy_types(cursor: Any, sql_types: Sequence[str]) -> list[Any] | None:
    """psycopg's type information for each SQL type ("VARCHAR(64)", "BIGINT", "TIMESTAMP WITHOUT TIME
    ZONE"), for a binary COPY; None when one of them is not a type psycopg knows (then COPY is text)."""
    registry = cursor.adapters.types
    found = []
    for sql_type in sql_types:
        info = registry.get(sql_type.split("(")[0].strip().lower())
        if info is None:
            return None
        found.append(info.oid)
    return found


def _greatest(session: Session, left: Any, right: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.greatest(left, right)
    return func.max(left, right)  # SQLite's two-argument max() is a scalar function


TOTAL_COLUMNS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def merge_usage_totals(
    session: Session,
    rows: Sequence[Mapping[str, Any]],
    mode: Literal["max", "replace"] = "max",
    table: Table | None = None,
) -> int:
    """Upsert usage rows that carry running totals for their dedupe key.

    `max` keeps the larger of the stored and the new value per column, which is the latest running total
    of a monotonic counter whatever order exports arrive in, and a no-op when one is re-sent. `replace`
    takes the new values (a day bucket re-pulled while the day is still going).
    """
    merged: dict[tuple[int, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["source_id"], row["dedupe_key"])
        if key not in merged:
            merged[key] = dict(row)
            continue
        into = merged[key]
        for column in TOTAL_COLUMNS:
            into[column] = max(into[column], row[column]) if mode == "max" else row[column]
        costs = [c for c in (into.get("cost_usd"), row.get("cost_usd")) if c is not None]
        into["cost_usd"] = (max(costs) if mode == "max" else row.get("cost_usd")) if costs else None
        into["cost_source"] = row.get("cost_source") or into.get("cost_source")
    values = sorted(merged.values(), key=lambda row: (row["source_id"], row["dedupe_key"]))
    target = USAGE if table is None else table  # usage_record, or unattributed_usage (same totals)
    if values:  # one statement compiled once, executed for every row (see insert_new)
        statement = dialect_insert(session, target)
        new = statement.excluded
        if mode == "max":
            updates = {c: _greatest(session, target.c[c], new[c]) for c in TOTAL_COLUMNS}
            updates["cost_usd"] = _greatest(
                session,
                func.coalesce(target.c.cost_usd, new.cost_usd),
                func.coalesce(new.cost_usd, target.c.cost_usd),
            )
            updates["cost_source"] = func.coalesce(new.cost_source, target.c.cost_source)
        else:
            updates = {
                c: new[c]
                for c in (*TOTAL_COLUMNS, "cost_usd", "cost_source", "model", "occurred_at", "person_id")
                if c in target.c  # unattributed_usage names no person
            }
        statement = statement.on_conflict_do_update(index_elements=["source_id", "dedupe_key"], set_=updates)
        session.connection().execute(statement, values)
    return len(values)


def lookup(
    session: Session, table: str, key: str, columns: Sequence[str], names: Sequence[str], source_id: int | None = None
) -> list[tuple[Any, ...]]:
    """(key, *columns) of the rows of `table` whose `key` is one of `names` (and whose source is
    `source_id`, when given): one statement, with one parameter, for any number of names.

    An array on PostgreSQL (a semi-join with the rows of its `unnest`); on SQLite a JSON list in, and the
    answer as one JSON value out, so the whole look-up is one call into SQLite. Python's sqlite3 gives up
    the GIL for every row it steps through and must win it back each time from whichever request is being
    parsed meanwhile, which under load cost more than the query; and an `IN` with a parameter per name
    cost SQLAlchemy a compilation per chunk.
    """
    if not names:
        return []
    connection = session.connection()
    wanted = ", ".join((key, *columns))
    same_source = "" if source_id is None else " AND source_id = {}"
    if connection.dialect.name == "postgresql":
        # Not `{key} = ANY(%(names)s)`: psycopg prepares a statement run five times, and the generic plan of
        # that compares each row with every name in turn (12 ms for 600 names among 1 000 people; 1.5 ms so).
        query = (
            f"SELECT {wanted} FROM {table} WHERE {key} IN (SELECT unnest(%(names)s::text[]))"
            f"{same_source.format('%(source)s')}"
        )
        found = connection.exec_driver_sql(query, {"names": list(names), "source": source_id}).all()
        return [tuple(row) for row in found]
    query = (
        f"SELECT json_group_array(json_array({wanted})) FROM {table}"
        f" WHERE {key} IN (SELECT value FROM json_each(?)){same_source.format('?')}"
    )
    parameters = (json.dumps(list(names)),) if source_id is None else (json.dumps(list(names)), source_id)
    return [tuple(row) for row in json.loads(connection.exec_driver_sql(query, parameters).scalar_one())]
