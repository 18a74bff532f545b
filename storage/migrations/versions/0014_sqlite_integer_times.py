"""SQLite: every time as integer microseconds since 1970 UTC instead of 26 characters of text (8 bytes in the
row and in each index on it, not 26); PostgreSQL is unchanged

Revision ID: 0014_sqlite_integer_times
Revises: 0013_github_unsettled
Create Date: 2026-12-03
"""

from __future__ import annotations

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


def micros(column: str) -> str:
    """SQLite's reading of SQLAlchemy's text ("YYYY-MM-DD HH:MM:SS[.ffffff]", naive UTC) as microseconds:
    whole seconds by strftime('%s') of the text without its fraction (SQLite reads a fraction in
    milliseconds, rounded: ".999999" would make the next second), the fraction's digits (padded to six)
    added exactly."""
    fraction = f"CASE WHEN length({column}) > 20 THEN CAST(substr(substr({column}, 21) || '000000', 1, 6) AS INTEGER) ELSE 0 END"
    return f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000 + {fraction}"


def text(column: str) -> str:
    """The other way: the text SQLAlchemy writes, microseconds always shown."""
    return (
        f"strftime('%Y-%m-%d %H:%M:%S', {column} / 1000000, 'unixepoch') || '.' || printf('%06d', {column} % 1000000)"
    )


def _convert(kind: str, convert: object) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in TIMES.items():
        sets = ", ".join(f"{column} = CASE WHEN typeof({column}) = '{kind}' THEN {convert(column)} ELSE {column} END" for column in columns)  # type: ignore[operator]
        where = " OR ".join(f"typeof({column}) = '{kind}'" for column in columns)
        op.execute(f"UPDATE {table} SET {sets} WHERE {where}")


def upgrade() -> None:
    _convert("text", micros)


def downgrade() -> None:
    _convert("integer", text)
