"""A pull request keeps GitHub's `updated_at`, so a delivery that arrives late (an `opened` after the merge)
never overwrites what a newer one said

Revision ID: 0010_pr_updated_at
Revises: 0009_replicas
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_pr_updated_at"
down_revision = "0009_replicas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pull_request") as batch:
        batch.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pull_request") as batch:
        batch.drop_column("updated_at")
