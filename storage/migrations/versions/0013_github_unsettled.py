"""Pull requests waiting to be settled: under a burst, a GitHub delivery is answered once its facts are
written, and the pull requests it touches are settled right after (github_unsettled keeps them until then,
through a restart)

Revision ID: 0013_github_unsettled
Revises: 0012_late_evidence
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_github_unsettled"
down_revision = "0012_late_evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "github_unsettled",
        sa.Column("repo", sa.String(length=200), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("github_unsettled")
