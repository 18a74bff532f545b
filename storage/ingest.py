"""Validate and write ingest batches: all of a batch or none of it, and never a record twice.

Every write is an `INSERT ... ON CONFLICT DO NOTHING` on the natural key (source + dedupe key or
external id), so a re-sent batch, or two overlapping batches racing each other, end with exactly the
distinct records. Totals that a source re-reports as they grow (OTLP cumulative sums, OpenAI daily
buckets) are merged with `ON CONFLICT DO UPDATE` instead, so the latest running total wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import Annotated, Any, Literal, Protocol, TypeVar

import psycopg
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import Engine, Table, func, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session

from storage.db import session_scope, sqlite_writer
from storage.directory import get_or_create_person, normalize_email, slack_id_mismatches
from storage.models import OUTCOME_KINDS, AgentRun, Outcome, UsageRecord, table_of
from storage.types import UTCDateTime

USAGE = table_of(UsageRecord)
RUNS = table_of(AgentRun)
OUTCOMES = table_of(Outcome)

TokenCount = Annotated[int, Field(ge=0, le=10**15, strict=True)]
Text200 = Annotated[str, Field(min_length=1, max_length=200)]
T = TypeVar("T")


class BatchInvalid(ValueError):
    """The batch was rejected whole; `errors` say which item and field, and why."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid item(s)")
        self.errors = errors


def batch_error(index: int | None, field_name: str | None, message: str) -> dict[str, Any]:
    return {"index": index, "field": field_name, "message": message}


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string with a time-zone offset, e.g. 2026-11-25T14:03:00Z")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


Email = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
SlackUserId = Annotated[str, Field(min_length=1, max_length=32)]
DedupeKey = Annotated[str, Field(min_length=1, max_length=300)]
AgentName = Annotated[str, Field(min_length=1, max_length=64)]
ModelName = Annotated[str, Field(min_length=1, max_length=120)]
Cost = Annotated[Decimal, Field(ge=0, le=10**9, allow_inf_nan=False)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email | None = None
    slack_user_id: SlackUserId | None = None

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else value


class UsageIn(_Item):
    """One billed model call or usage bucket, as a source sends it."""

    dedupe_key: DedupeKey
    occurred_at: Rfc3339
    agent: AgentName
    model: ModelName
    input_tokens: TokenCount
    output_tokens: TokenCount
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    cost_usd: Cost | None = None
    run_external_id: Text200 | None = None

    @field_validator("cost_usd", mode="before")
    @classmethod
    def _decimal_text_or_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float | None):
            raise ValueError('must be a decimal string such as "0.0123" or a number')
        return value


class UsageJson(BaseModel):
    """`UsageIn` for a JSON body, with no validator written in Python: pydantic's JSON parser does all of
    it in Rust (a Python validator per field per record was a third of the parsing time). Where UsageIn's
    validators refuse a JSON type, strict mode refuses it too: a time must be a string, a cost a string or a
    number, never a boolean. The email is lower-cased afterwards (`parse_valid_batch`), as UsageIn does.
    It accepts nothing UsageIn refuses and parses alike (tests/test_ingest_api.py); a body it refuses goes
    to `validate_batch`, which reports every problem in UsageIn's words.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email | None = None
    slack_user_id: SlackUserId | None = None
    dedupe_key: DedupeKey
    occurred_at: Annotated[AwareDatetime, Field(strict=True)]
    agent: AgentName
    model: ModelName
    input_tokens: TokenCount
    output_tokens: TokenCount
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    cost_usd: Annotated[Decimal, Field(strict=True, ge=0, le=10**9, allow_inf_nan=False)] | None = None
    run_external_id: Text200 | None = None


class RunIn(_Item):
    """One agent session or job."""

    external_id: Text200
    agent: Annotated[str, Field(min_length=1, max_length=64)]
    started_at: Rfc3339
    ended_at: Rfc3339 | None = None
    title: Annotated[str, Field(max_length=300)] | None = None
    repo: Annotated[str, Field(max_length=300)] | None = None
    status: Annotated[str, Field(max_length=40)] | None = None


class OutcomeIn(_Item):
    """Something a run produced: linked to a run, or to a person and a time."""

    external_id: Text200
    run_external_id: Text200 | None = None
    kind: str
    url: Annotated[str, Field(max_length=2000)] | None = None
    occurred_at: Rfc3339 | None = None
    # Refused whenever it is sent: an outcome's weight is the operator's to set, never a sender's.
    weight: SkipJsonSchema[Any] = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in OUTCOME_KINDS:
            raise ValueError(f"unknown outcome kind '{value}'; valid kinds are {', '.join(OUTCOME_KINDS)}")
        return value

    @field_validator("weight", mode="before")
    @classmethod
    def _no_weight(cls, _value: Any) -> Any:
        raise ValueError("weights come from the operator's TOKENWISE_OUTCOME_WEIGHTS; leave weight out")


BatchKind = Literal["records", "runs", "outcomes"]
ITEM_MODELS: dict[str, type[_Item]] = {"records": UsageIn, "runs": RunIn, "outcomes": OutcomeIn}


def _cross_checks(item: _Item) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    names_person = bool(item.email or item.slack_user_id)
    if isinstance(item, UsageIn | RunIn) and not names_person:
        problems.append(("email", "name the person by email or slack_user_id"))
    if isinstance(item, RunIn) and item.ended_at is not None and item.ended_at < item.started_at:
        problems.append(("ended_at", "must not be before started_at"))
    if isinstance(item, OutcomeIn) and item.run_external_id is None:
        if not names_person:
            problems.append(("run_external_id", "link the outcome to a run, or give email (or slack_user_id)"))
        if item.occurred_at is None:
            problems.append(("occurred_at", "required when the outcome is not linked to a run"))
    return problems


NUL_MESSAGE = "must not contain the NUL character (\\u0000)"


def validate_batch(kind: BatchKind, items: Sequence[Any], first_index: int = 0, nul_possible: bool = True) -> list[Any]:
    """Every item parsed, or BatchInvalid listing every problem (index, field, message).

    PostgreSQL text cannot hold NUL (SQLite can), so a NUL in any text is refused here and both databases
    answer 422 alike. JSON can only carry NUL escaped, so a caller that saw no `\\u0000` in the body may
    pass `nul_possible=False` and skip looking for it in every value.
    """
    model = ITEM_MODELS[kind]
    parsed: list[Any] = []
    errors: list[dict[str, Any]] = []
    for offset, raw in enumerate(items):
        index = first_index + offset
        if not isinstance(raw, dict):
            errors.append(batch_error(index, None, "must be a JSON object"))
            continue
        if nul_possible:
            errors.extend(
                batch_error(index, str(key), NUL_MESSAGE)
                for key, value in raw.items()
                if isinstance(value, str) and "\x00" in value
            )
        try:
            item = model.model_validate(raw)
        except ValidationError as error:
            for problem in error.errors(include_url=False):
                where = ".".join(str(part) for part in problem["loc"]) or None
                message = str(problem["msg"]).removeprefix("Value error, ")
                errors.append(batch_error(index, where, message))
            continue
        problems = _cross_checks(item)
        errors.extend(batch_error(index, where, message) for where, message in problems)
        parsed.append(item)
    if errors:
        raise BatchInvalid(errors)
    return parsed


class _Records(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[UsageJson]


class _Runs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runs: list[RunIn]


class _Outcomes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcomes: list[OutcomeIn]


_BATCH_MODELS: dict[str, type[BaseModel]] = {"records": _Records, "runs": _Runs, "outcomes": _Outcomes}


def parse_valid_batch(kind: BatchKind, body: bytes, max_items: int) -> list[Any] | None:
    """The items of a body that is a valid batch, parsed in one pass by pydantic's own JSON parser; None
    for any other body, which the caller then parses with json.loads and `validate_batch`, so that every
    problem is reported as always. Valid batches, the ones that matter for throughput, skip building
    Python dicts first: a third of the parsing time.
    """
    if b"\\u0000" in body:  # a NUL, maybe: validate_batch reports it field by field
        return None
    try:
        items: list[Any] = getattr(_BATCH_MODELS[kind].model_validate_json(body), kind)
    except ValidationError:
        return None
    if len(items) > max_items:
        return None
    if kind != "records":
        return None if any(_cross_checks(item) for item in items) else items
    lowered: dict[str, str] = {}
    for item in items:
        if not (item.email or item.slack_user_id):  # _cross_checks
            return None
        if email := item.email:  # UsageIn._lower; already stripped
            item.email = lowered.get(email) or lowered.setdefault(email, normalize_email(email))
    return items


@dataclass
class BatchResult:
    accepted: int = 0
    duplicates: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, int]:
        return {"accepted": self.accepted, "duplicates": self.duplicates}


def dialect_insert(session: Session, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
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
    session: Session, table: Table, names: Sequence[str], values: Sequence[list[Any]], key: Sequence[str]
) -> int:
    """`insert_new` for rows already converted by `storage_values`, as lists in the order of `names`."""
    if not values:
        return 0
    if session.get_bind().dialect.name == "postgresql":
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
    is `naive_utc` where the driver takes datetimes as they are (PostgreSQL). On SQLite, UTC
    times are written as SQLAlchemy writes them ("2026-11-25 14:03:00.000000", which is what `isoformat`
    gives) by one C call instead of SQLAlchemy's Python formatting.
    """
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    for index, name in enumerate(names):
        column_type = table.c[name].type
        typed = column_type.dialect_impl(dialect)
        if isinstance(typed, UTCDateTime) and typed.impl_instance.bind_processor(dialect) is None:
            processors.append((index, naive_utc))
        elif dialect.name == "sqlite" and isinstance(column_type, UTCDateTime):
            processors.append((index, _sqlite_utc_text))
        elif (
            isinstance(typed, TypeDecorator)
            and type(typed).process_bind_param is not TypeDecorator.process_bind_param
            and typed.impl_instance.bind_processor(dialect) is None
        ):
            processors.append((index, partial(typed.process_bind_param, dialect=dialect)))
        elif process := typed.bind_processor(dialect):
            processors.append((index, process))
    return processors


def naive_utc(value: datetime | None) -> datetime | None:
    """What UTCDateTime gives the driver (`as_utc(value).replace(tzinfo=None)`; naive means UTC already), in
    a third of the time: `replace` and `astimezone` parse keyword arguments, `combine` does not."""
    if value is None:
        return None
    offset = value.utcoffset()
    naive = datetime.combine(value.date(), value.time())
    return naive - offset if offset else naive


def _sqlite_utc_text(value: datetime | None) -> str | None:
    naive = naive_utc(value)
    return None if naive is None else naive.isoformat(" ", "microseconds")


SQLITE_MAX_PARAMETERS = 32_766  # SQLite's default bound since 3.32


def _insert_new_values(
    session: Session, table: Table, names: Sequence[str], values: Sequence[list[Any]], key: Sequence[str]
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


def _insert_new_copy(
    session: Session, table: Table, names: Sequence[str], values: Sequence[list[Any]], key: Sequence[str]
) -> int:
    """COPY, PostgreSQL's fastest way in: straight into the table when every key is new, else by a staging table.

    The rows are sorted by key here (Python's order, the one `merge_usage_totals` and `_widen_runs` lock
    rows in too), ties in the order they were sent, so concurrent batches lock keys in one order and never
    deadlock, and among rows sharing a key the first sent wins. The COPY is binary, with the columns' types
    given up front, so psycopg's C dumpers send each value as it is. A batch of new rows (the usual case)
    costs one COPY; one with a key already stored is refused whole by the unique index, rolled back to a
    savepoint and moved by `_insert_new_staged`, which skips the keys that exist.
    """
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
    values: Sequence[list[Any]],
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
    return inserted


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
    session: Session, rows: Sequence[Mapping[str, Any]], mode: Literal["max", "replace"] = "max"
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
    values = sorted(merged.values(), key=lambda row: (row["source_id"], row["dedupe_key"]))
    if values:  # one statement compiled once, executed for every row (see insert_new)
        statement = dialect_insert(session, USAGE)
        new = statement.excluded
        if mode == "max":
            updates = {c: _greatest(session, USAGE.c[c], new[c]) for c in TOTAL_COLUMNS}
            updates["cost_usd"] = _greatest(
                session,
                func.coalesce(USAGE.c.cost_usd, new.cost_usd),
                func.coalesce(new.cost_usd, USAGE.c.cost_usd),
            )
        else:
            updates = {c: new[c] for c in (*TOTAL_COLUMNS, "cost_usd", "model", "occurred_at", "person_id")}
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


class PersonCache:
    """Resolve people once per batch (unknown people are created, to be linked to Slack later)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._ids: dict[tuple[str | None, str | None], int] = {}

    def preload(self, people: Iterable[tuple[str | None, str | None]]) -> None:
        """Resolve everyone up front in one sorted order, so concurrent batches lock people in the same order."""
        wanted = sorted(set(people), key=lambda p: (p[0] or "", p[1] or ""))
        self._known(wanted)
        for email, slack_user_id in wanted:
            self.id_for(email, slack_user_id)

    def find(self, people: Iterable[tuple[str | None, str | None]]) -> dict[tuple[str | None, str | None], int]:
        """The ids of those of `people` who exist already (named by email alone, or Slack id alone); reads only."""
        self._known(sorted(set(people), key=lambda p: (p[0] or "", p[1] or "")))
        return dict(self._ids)

    def _known(self, wanted: Sequence[tuple[str | None, str | None]]) -> None:
        """People named by email alone (or Slack id alone) who exist already, found in one query per column.

        For them get_or_create_person would only read, so this gives the same ids with two queries per
        batch instead of one per person; everyone else still goes through get_or_create_person.
        """
        for column, position in (("email", 0), ("slack_user_id", 1)):
            keys: dict[str, tuple[str | None, str | None]] = {}
            for key in wanted:
                name, other = key[position], key[1 - position]
                if name and not other and key not in self._ids:
                    keys[normalize_email(name) if position == 0 else name] = key
            for name, person_id in lookup(self.session, "person", column, ["id"], sorted(keys)):
                self._ids[keys[name]] = person_id

    def id_for(self, email: str | None, slack_user_id: str | None) -> int:
        key = (email, slack_user_id)
        if key not in self._ids:
            if self.session.get_bind().dialect.name != "postgresql":  # SQLite writers take turns (BEGIN IMMEDIATE)
                person = get_or_create_person(self.session, email=email, slack_user_id=slack_user_id)
            else:
                try:
                    with self.session.begin_nested():  # a concurrent batch may be creating this person too
                        person = get_or_create_person(self.session, email=email, slack_user_id=slack_user_id)
                except IntegrityError:  # it won, and has committed: use its row
                    person = get_or_create_person(self.session, email=email, slack_user_id=slack_user_id)
            assert person.id is not None
            self._ids[key] = person.id
        return self._ids[key]


class _NamesPerson(Protocol):
    email: str | None
    slack_user_id: str | None


def check_slack_ids(session: Session, items: Sequence[_NamesPerson], first_index: int = 0) -> None:
    """BatchInvalid for every item whose `slack_user_id` is not the one Slack bound to its email's person.

    Only a signed Slack request binds a Slack id to a person (storage.directory.bind_slack_user); a source
    may repeat that binding, never make or change it. A Slack id sent without an email is taken as it is.
    """
    pairs = [(email, slack_id) for item in items if (email := item.email) and (slack_id := item.slack_user_id)]
    wrong = slack_id_mismatches(session, pairs)
    if not wrong:
        return
    errors = [
        batch_error(
            first_index + index,
            "slack_user_id",
            f"'{item.slack_user_id}' is not the Slack user bound to {item.email}; send the email alone "
            "(Tokenwise learns a Slack id when its owner first uses /tokenwise)",
        )
        for index, item in enumerate(items)
        if item.email and item.slack_user_id and (normalize_email(item.email), item.slack_user_id) in wrong
    ]
    raise BatchInvalid(errors)


def run_ids(session: Session, source_id: int, external_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """external id -> (run id, person id) for this source's runs."""
    found = lookup(session, "agent_run", "external_id", ["id", "person_id"], sorted(set(external_ids)), source_id)
    return {external_id: (run_id, person_id) for external_id, run_id, person_id in found}


def _missing_runs(items: Sequence[UsageIn | UsageJson | OutcomeIn], known: Mapping[str, Any], first_index: int) -> None:
    errors = [
        batch_error(
            first_index + index,
            "run_external_id",
            f"no run '{item.run_external_id}' from this source; send it to /v1/runs first",
        )
        for index, item in enumerate(items)
        if item.run_external_id is not None and item.run_external_id not in known
    ]
    if errors:
        raise BatchInvalid(errors)


USAGE_COLUMNS = (
    "source_id",
    "person_id",
    "run_id",
    "occurred_at",
    "agent",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "dedupe_key",
)
PERSON = USAGE_COLUMNS.index("person_id")
OCCURRED = USAGE_COLUMNS.index("occurred_at")
COST = USAGE_COLUMNS.index("cost_usd")


@dataclass
class UsagePlan:
    """A usage batch ready to write: values converted for the database, runs and known people resolved.

    Everything here is read, so it is done before the write transaction (`write_prepared`), and on SQLite
    outside the one writer's turn: the turn then holds only the INSERT and any new people.
    """

    values: list[list[Any]]
    new_people: dict[tuple[str | None, str | None], list[int]]  # person -> their rows, when not found

    def write(self, session: Session) -> BatchResult:
        if self.new_people:
            people = PersonCache(session)
            people.preload(self.new_people)
            for (email, slack_user_id), rows in self.new_people.items():
                person_id = people.id_for(email, slack_user_id)
                for row in rows:
                    self.values[row][PERSON] = person_id
        accepted = insert_values(session, USAGE, USAGE_COLUMNS, self.values, ("source_id", "dedupe_key"))
        return BatchResult(accepted=accepted, duplicates=len(self.values) - accepted)


def plan_usage(
    session: Session, source_id: int, items: Sequence[UsageIn | UsageJson], first_index: int = 0
) -> UsagePlan:
    """Check a usage batch's runs and look up its people (reads only); BatchInvalid when a run is unknown.

    The rows are built straight from the parsed items, as lists in the order of USAGE_COLUMNS, with the
    columns' own conversions (`column_processors`) called inline: no dict per row.
    """
    runs = run_ids(session, source_id, (i.run_external_id for i in items if i.run_external_id))
    _missing_runs(items, runs, first_index)
    check_slack_ids(session, items, first_index)
    known = PersonCache(session).find((item.email, item.slack_user_id) for item in items)
    processors = dict(column_processors(session.get_bind().dialect, USAGE, USAGE_COLUMNS))
    occurred = processors.pop(OCCURRED, _same)
    cost = processors.pop(COST, _same)
    new_people: dict[tuple[str | None, str | None], list[int]] = {}
    values = []
    for index, item in enumerate(items):
        person = (item.email, item.slack_user_id)
        person_id = known.get(person)
        if person_id is None:
            new_people.setdefault(person, []).append(index)
        run = item.run_external_id
        values.append(
            [
                source_id,
                person_id,
                runs[run][0] if run else None,
                occurred(item.occurred_at),
                item.agent,
                item.model,
                item.input_tokens,
                item.output_tokens,
                item.cache_read_tokens,
                item.cache_write_tokens,
                cost(item.cost_usd),
                item.dedupe_key,
            ]
        )
    for position, process in processors.items():  # none today: the other columns are taken as they are
        for row in values:
            row[position] = process(row[position])
    return UsagePlan(values, new_people)


def _same(value: T) -> T:
    return value


def ingest_usage(session: Session, source_id: int, items: Sequence[UsageIn], first_index: int = 0) -> BatchResult:
    """Write usage records; a dedupe key this source has sent before is a duplicate, not an error."""
    return plan_usage(session, source_id, items, first_index).write(session)


def ingest_runs(session: Session, source_id: int, items: Sequence[RunIn]) -> BatchResult:
    check_slack_ids(session, items)
    people = PersonCache(session)
    people.preload((item.email, item.slack_user_id) for item in items)
    rows = [
        {
            "source_id": source_id,
            "external_id": item.external_id,
            "person_id": people.id_for(item.email, item.slack_user_id),
            "agent": item.agent,
            "started_at": item.started_at,
            "ended_at": item.ended_at,
            "title": item.title,
            "repo": item.repo,
            "status": item.status,
        }
        for item in items
    ]
    accepted = insert_new(session, RUNS, rows, ("source_id", "external_id"))
    return BatchResult(accepted=accepted, duplicates=len(rows) - accepted)


def ingest_outcomes(
    session: Session,
    source_id: int,
    items: Sequence[OutcomeIn],
    weight_for: Callable[[str], Decimal],
    first_index: int = 0,
) -> BatchResult:
    """Write outcomes; the person comes from the linked run when there is one."""
    runs = run_ids(session, source_id, (i.run_external_id for i in items if i.run_external_id))
    _missing_runs(items, runs, first_index)
    run_times = _run_times(session, [run_id for run_id, _ in runs.values()])
    check_slack_ids(session, items, first_index)
    people = PersonCache(session)
    people.preload((item.email, item.slack_user_id) for item in items if not item.run_external_id)
    rows = []
    for item in items:
        if item.run_external_id:
            run_id, person_id = runs[item.run_external_id]
            occurred_at = item.occurred_at or run_times[run_id]
        else:
            run_id, person_id = None, people.id_for(item.email, item.slack_user_id)
            assert item.occurred_at is not None
            occurred_at = item.occurred_at
        rows.append(
            {
                "source_id": source_id,
                "external_id": item.external_id,
                "run_id": run_id,
                "person_id": person_id,
                "kind": item.kind,
                "weight": weight_for(item.kind),  # the operator's, never the sender's (OutcomeIn.weight)
                "url": item.url,
                "occurred_at": occurred_at,
            }
        )
    accepted = insert_new(session, OUTCOMES, rows, ("source_id", "external_id"))
    return BatchResult(accepted=accepted, duplicates=len(rows) - accepted)


def _run_times(session: Session, ids: Sequence[int]) -> dict[int, datetime]:
    """When each run's outcomes happened by default: its end, else its start."""
    if not ids:
        return {}
    when = type_coerce(func.coalesce(RUNS.c.ended_at, RUNS.c.started_at), UTCDateTime())
    query = select(RUNS.c.id, when).where(RUNS.c.id.in_(ids))
    return {run_id: moment for run_id, moment in session.connection().execute(query)}


@dataclass
class SeenUsage:
    """Usage totals reported under one dedupe key (a running total, an interval or one event)."""

    dedupe_key: str
    email: str | None
    occurred_at: datetime
    agent: str
    model: str
    run_external_id: str | None = None
    slack_user_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: Decimal | None = None


@dataclass
class SeenRun:
    external_id: str
    email: str | None
    agent: str
    started_at: datetime
    slack_user_id: str | None = None
    ended_at: datetime | None = None


@dataclass
class SeenOutcome:
    external_id: str
    email: str | None
    run_external_id: str | None
    kind: str
    occurred_at: datetime
    slack_user_id: str | None = None


@dataclass
class Telemetry:
    """What one telemetry export (OTLP, a log file chunk, an API page) says, before people are resolved."""

    usage: list[SeenUsage] = field(default_factory=list)
    runs: list[SeenRun] = field(default_factory=list)
    outcomes: list[SeenOutcome] = field(default_factory=list)
    rejected: int = 0
    problems: list[str] = field(default_factory=list)


def ingest_telemetry(
    session: Session,
    source_id: int,
    telemetry: Telemetry,
    weight_for: Callable[[str], Decimal],
    usage_mode: Literal["max", "replace", "new"] = "max",
) -> BatchResult:
    """Write runs, usage and outcomes that a telemetry source reported, idempotently.

    Runs are created on first sight (the earliest start wins); usage under a dedupe key is merged as a
    running total (`max`), replaced (`replace`) or written once (`new`); outcomes are written once.
    """
    check_slack_ids(session, [*telemetry.runs, *telemetry.usage, *telemetry.outcomes])
    people = PersonCache(session)
    people.preload(
        [(r.email, r.slack_user_id) for r in telemetry.runs]
        + [(u.email, u.slack_user_id) for u in telemetry.usage]
        + [(o.email, o.slack_user_id) for o in telemetry.outcomes if not o.run_external_id]
    )
    bounds: dict[str, SeenRun] = {}
    for run in telemetry.runs:
        seen = bounds.setdefault(run.external_id, SeenRun(**{**run.__dict__}))
        seen.started_at = min(seen.started_at, run.started_at)
        ends = [t for t in (seen.ended_at, run.ended_at) if t is not None]
        seen.ended_at = max(ends) if ends else None
    run_rows = [
        {
            "source_id": source_id,
            "external_id": run.external_id,
            "person_id": people.id_for(run.email, run.slack_user_id),
            "agent": run.agent,
            "started_at": run.started_at,
            "ended_at": run.ended_at,
        }
        for run in bounds.values()
    ]
    result = BatchResult()
    result.notes["runs"] = _widen_runs(session, run_rows)
    runs = run_ids(
        session,
        source_id,
        [u.run_external_id for u in telemetry.usage if u.run_external_id]
        + [o.run_external_id for o in telemetry.outcomes if o.run_external_id],
    )
    usage_rows = [
        {
            "source_id": source_id,
            "person_id": people.id_for(u.email, u.slack_user_id),
            "run_id": runs[u.run_external_id][0] if u.run_external_id in runs else None,
            "occurred_at": u.occurred_at,
            "agent": u.agent,
            "model": u.model,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "cost_usd": u.cost_usd,
            "dedupe_key": u.dedupe_key,
        }
        for u in telemetry.usage
    ]
    if usage_mode == "new":
        accepted = insert_new(session, USAGE, usage_rows, ("source_id", "dedupe_key"))
        result.accepted += accepted
        result.duplicates += len(usage_rows) - accepted
    else:
        result.accepted += merge_usage_totals(session, usage_rows, usage_mode)
    outcome_rows = []
    for o in telemetry.outcomes:
        linked = runs.get(o.run_external_id) if o.run_external_id else None
        outcome_rows.append(
            {
                "source_id": source_id,
                "external_id": o.external_id,
                "run_id": linked[0] if linked else None,
                "person_id": linked[1] if linked else people.id_for(o.email, o.slack_user_id),
                "kind": o.kind,
                "weight": weight_for(o.kind),
                "url": None,
                "occurred_at": o.occurred_at,
            }
        )
    result.notes["outcomes"] = insert_new(session, OUTCOMES, outcome_rows, ("source_id", "external_id"))
    return result


def _widen_runs(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Create runs first seen here; a run seen again keeps its earliest start and latest end."""
    rows = sorted(rows, key=lambda row: (row["source_id"], row["external_id"]))
    if rows:  # one statement compiled once, executed for every row (see insert_new)
        statement = dialect_insert(session, RUNS)
        new = statement.excluded
        least = func.least if session.get_bind().dialect.name == "postgresql" else func.min
        statement = statement.on_conflict_do_update(
            index_elements=["source_id", "external_id"],
            set_={
                "started_at": least(RUNS.c.started_at, new.started_at),
                "ended_at": _greatest(
                    session,
                    func.coalesce(RUNS.c.ended_at, new.ended_at),
                    func.coalesce(new.ended_at, RUNS.c.ended_at),
                ),
            },
        )
        session.connection().execute(statement, list(rows))
    return len(rows)


def _worth_retrying(error: OperationalError) -> bool:
    """SQLite busy, or a PostgreSQL deadlock or serialization failure: the retry will see the winner's rows."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    return sqlstate in {"40P01", "40001"} or "locked" in str(error).lower()


def write_atomically(engine: Engine, work: Callable[[Session], T], attempts: int = 5) -> T:
    """Run `work` in one transaction, retried when a concurrent writer won a race (a new person, a lock)."""
    return write_prepared(engine, lambda _session: work, attempts)


def write_prepared(engine: Engine, prepare: Callable[[Session], Callable[[Session], T]], attempts: int = 5) -> T:
    """`write_atomically` for work with a read-only part: `prepare` reads in a transaction of its own
    and returns the work that writes. Both are redone on a retry, so the writing never uses stale reads.

    On SQLite the reading happens before this process's writer turn (`sqlite_writer`), while another
    batch is being written, so a turn lasts only as long as the writing itself. On PostgreSQL, whose
    writers do not take turns, both happen in one transaction: a connection checkout (and its ping)
    and a commit fewer per batch.
    """
    for attempt in range(1, attempts + 1):
        try:
            if engine.dialect.name != "sqlite":  # writers run side by side: read and write in one transaction
                with session_scope(engine) as session:
                    return prepare(session)(session)
            with session_scope(engine) as session:
                work = prepare(session)
            with sqlite_writer(engine), session_scope(engine) as session:
                # Take the write lock up front (waiting up to busy_timeout) instead of failing when a
                # read transaction cannot be upgraded because another writer got there first.
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
                return work(session)
        except IntegrityError:
            if attempt == attempts:
                raise
        except OperationalError as error:
            if attempt == attempts or not _worth_retrying(error):
                raise
    raise AssertionError("unreachable")


__all__ = [
    "BatchInvalid",
    "BatchResult",
    "OutcomeIn",
    "RunIn",
    "SeenOutcome",
    "SeenRun",
    "SeenUsage",
    "Telemetry",
    "UsageIn",
    "batch_error",
    "ingest_outcomes",
    "ingest_runs",
    "ingest_telemetry",
    "ingest_usage",
    "insert_new",
    "merge_usage_totals",
    "validate_batch",
    "write_atomically",
    "write_prepared",
]
