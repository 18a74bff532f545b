"""usage_record: drop ix_usage_time, which no query needs and every insert paid for

Every report reads usage through ix_usage_person_time (a person, or a team's members, and a period);
organisation-wide periods were measured as fast or faster without ix_usage_time on both databases, and
SQLite ingest of 1 000-record batches at 5 M records ran about 1.8x faster without it
(docs/performance.md).

Revision ID: 0003_usage_time
Revises: 0002_digest
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003_usage_time"
down_revision = "0002_digest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_usage_time", table_name="usage_record")


def downgrade() -> None:
    op.create_index("ix_usage_time", "usage_record", ["occurred_at"], unique=False)
