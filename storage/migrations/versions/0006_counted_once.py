"""Counted once across sources: usage_record.counted, and runs found by person and session

A session that two sources report (Claude Code's logs and its OTLP metrics) counts from the more precise
one; the other's records stay stored with counted = false.

Revision ID: 0006_counted_once
Revises: 0005_unattributed
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_counted_once"
down_revision = "0005_unattributed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_record") as batch:
        batch.add_column(sa.Column("counted", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_index("ix_agent_run_person_session", "agent_run", ["person_id", "external_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_run_person_session", table_name="agent_run")
    with op.batch_alter_table("usage_record") as batch:
        batch.drop_column("counted")
