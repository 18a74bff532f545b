"""What a person sends after Tokenwise learned of a merge is not evidence for it: a merged pull request
keeps the last run and usage record stored when its merge was first recorded; a run link says whether its
run came late, and a usage record whether its owner sent it for a linked run once the merge was known

Revision ID: 0012_late_evidence
Revises: 0011_vendor_admin
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_late_evidence"
down_revision = "0011_vendor_admin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pull_request") as batch:
        batch.add_column(sa.Column("merge_seen_run_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("merge_seen_usage_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("outcome_link") as batch:
        batch.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))
    # A constant default: PostgreSQL adds the column without rewriting the table, SQLite with ALTER TABLE.
    op.add_column("usage_record", sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("usage_record") as batch:
        batch.drop_column("late")
    with op.batch_alter_table("outcome_link") as batch:
        batch.drop_column("late")
    with op.batch_alter_table("pull_request") as batch:
        batch.drop_column("merge_seen_usage_id")
        batch.drop_column("merge_seen_run_id")
