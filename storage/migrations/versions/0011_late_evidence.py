"""What a person sends after Tokenwise learned of a merge is not evidence for it: a merged pull request
keeps the last run and usage record stored when its merge was first recorded, and each of its run links
says whether it is late and up to which usage record it verifies spend

Revision ID: 0011_late_evidence
Revises: 0010_pr_updated_at
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_late_evidence"
down_revision = "0010_pr_updated_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pull_request") as batch:
        batch.add_column(sa.Column("merge_seen_run_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("merge_seen_usage_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("outcome_link") as batch:
        batch.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("usage_until", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outcome_link") as batch:
        batch.drop_column("usage_until")
        batch.drop_column("late")
    with op.batch_alter_table("pull_request") as batch:
        batch.drop_column("merge_seen_usage_id")
        batch.drop_column("merge_seen_run_id")
