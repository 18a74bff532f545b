"""State every replica of `tokenwise serve` shares: Slack deliveries already taken, ingest budgets

- slack_delivery_seen: a Slack delivery's identity while Slack may retry it, so a retry landing on another
  replica runs nothing;
- ingest_budget: each source's request budget (one row per source), so N replicas allow the budget once.

Revision ID: 0009_replicas
Revises: 0008_github
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_replicas"
down_revision = "0008_github"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_delivery_seen",
        sa.Column("delivery", sa.String(length=100), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("delivery"),
    )
    op.create_index("ix_slack_delivery_seen_seen_at", "slack_delivery_seen", ["seen_at"], unique=False)
    op.create_table(
        "ingest_budget",
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("source.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ready_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("source_id"),
    )


def downgrade() -> None:
    op.drop_table("ingest_budget")
    op.drop_index("ix_slack_delivery_seen_seen_at", table_name="slack_delivery_seen")
    op.drop_table("slack_delivery_seen")
