"""SQLite: every time as integer microseconds since 1970 UTC instead of 26 characters of text (8 bytes in the
row and in each index on it, not 26); PostgreSQL is unchanged

Revision ID: 0014_sqlite_integer_times
Revises: 0013_github_unsettled
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0014_sqlite_integer_times"
down_revision = "0013_github_unsettled"
branch_labels = None
depends_on = None

# Every UTCDateTime column at this revision (Slack's own tables keep slack_sdk's text).
TIMES = {
    "agent_run": ("started_at", "ended_at"),
    "annotation": ("created_at", "updated_at"),
    "audit_event": ("occurred_at",),
    "billed_cost": ("pulled_at",),
    "digest_post": ("period_start", "claimed_at", "posted_at"),
    "digest_subscription": ("created_at",),
    "github_check": ("completed_at",),
    "github_commit": ("committed_at",),
    "github_delivery": ("received_at",),
    "github_unsettled": ("queued_at",),
    "membership": ("since",),
    "nudge": ("claimed_at", "sent_at"),
    "outcome": ("occurred_at",),
    "outcome_link": ("created_at", "removed_at"),
    "person": ("created_at",),
    "person_link": ("created_at",),
    "pull_request": ("opened_at", "merged_at", "closed_at", "updated_at"),
    "source": ("created_at", "revoked_at"),
    "slack_delivery_seen": ("seen_at",),
    "slack_request_seen": ("seen_at",),
    "team": ("created_at",),
    "unattributed_usage": ("occurred_at",),
    "usage_record": ("occurred_at",),
    "vendor_pull": ("last_attempt_at", "last_success_at"),
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(column: str) -> str:
    """SQLite's reading of SQLAlchemy's text (naive UTC "YYYY-MM-DD HH:MM:SS.ffffff", or without the
    fraction) as microseconds: whole seconds by strftime('%s') of the text without its fraction (SQLite
    reads a fraction in milliseconds, rounded: ".999999" would make the next second), plus the fraction's
    six digits. `CANONICAL` says which texts it is exact for; the rest are read in Python."""
    fraction = f"CASE WHEN length({column}) = 26 THEN CAST(substr({column}, 21, 6) AS INTEGER) ELSE 0 END"
    return f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000 + {fraction}"


def canonical(column: str) -> str:
    shape = f"substr({column}, 5, 1) = '-' AND substr({column}, 14, 1) = ':' AND substr({column}, 17, 1) = ':'"
    fraction = f"substr({column}, 20, 1) = '.' AND substr({column}, 21, 6) NOT GLOB '*[^0-9]*'"
    return f"(length({column}) = 19 OR (length({column}) = 26 AND {fraction})) AND {shape}"


def text(column: str) -> str:
    """The other way: the text SQLAlchemy writes, microseconds always shown (times from 1970 on)."""
    return (
        f"strftime('%Y-%m-%d %H:%M:%S', {column} / 1000000, 'unixepoch') || '.' || printf('%06d', {column} % 1000000)"
    )


def _python_micros(value: str, where: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RuntimeError(f"{where} holds {value!r}, which is not a time: fix or clear it, then upgrade") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return (moment - EPOCH) // timedelta(microseconds=1)


def _convert(kind: str, convert: Callable[[str], str], where: Callable[[str], str] | None = None) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table, columns in TIMES.items():
        for column in columns:
            condition = f"typeof({column}) = '{kind}'" + (f" AND {where(column)}" if where else "")
            op.execute(f"UPDATE {table} SET {column} = {convert(column)} WHERE {condition}")
            if kind != "text":
                continue
            # What SQLAlchemy did not write (an offset, a short fraction, a "T"): read by Python, exactly.
            rest = bind.execute(sa.text(f"SELECT rowid, {column} FROM {table} WHERE typeof({column}) = 'text'")).all()
            for rowid, value in rest:
                bind.execute(
                    sa.text(f"UPDATE {table} SET {column} = :value WHERE rowid = :rowid"),
                    {"value": _python_micros(value, f"{table}.{column} (row {rowid})"), "rowid": rowid},
                )


def upgrade() -> None:
    _convert("text", micros, canonical)


def downgrade() -> None:
    _convert("integer", text)
