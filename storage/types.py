"""Column types that behave the same on SQLite and PostgreSQL.

Money and weights are stored as scaled integers so that sums are exact on both databases; times are
stored in UTC so that comparisons never depend on a database's time-zone handling: naive UTC timestamps on
PostgreSQL, whole microseconds since 1970-01-01 UTC on SQLite (an integer of 8 bytes where SQLAlchemy's
text would take 26, in the row and again in every index on the column: docs/performance.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

NANO = Decimal(10) ** 9
MILLI = Decimal(10) ** 3


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def utc_micros(value: datetime) -> int:
    """Whole microseconds since 1970-01-01 UTC: how SQLite stores a time. Naive input is taken to be UTC."""
    return ((value.replace(tzinfo=UTC) if value.tzinfo is None else value) - EPOCH) // MICROSECOND


class MicrosOnSQLite(BigInteger):
    """The storage of a UTCDateTime on SQLite: declared DATETIME as before (its affinity, NUMERIC, keeps an
    integer as it is), bound and read as the integer itself."""

    __visit_name__ = "DATETIME"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive UTC timestamps on PostgreSQL, integer microseconds
    since 1970 UTC on SQLite (`utc_micros`), so that times order and compare as they do in Python."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(MicrosOnSQLite())
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | int | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return utc_micros(value)
        return as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):  # SQLite
            return EPOCH + value * MICROSECOND
        if isinstance(value, str):  # text left by a database from before 0014_sqlite_integer_times
            value = datetime.fromisoformat(value)
        stored: datetime = value
        return stored.replace(tzinfo=UTC)


class ScaledDecimal(TypeDecorator[Decimal]):
    """A Decimal stored as an integer count of 1/scale units (exact SUM on every database)."""

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: Decimal = NANO) -> None:
        super().__init__()
        self.scale = scale

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        if value is None:
            return None
        scaled = (Decimal(value) * self.scale).to_integral_value(rounding=ROUND_HALF_EVEN)
        return int(scaled)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)) / self.scale
