"""Vendor admin-API pulls: billed cost, each pull's state, and token counts that may be unknown

`billed_cost` holds what a vendor billed the organisation (per source, day, model, workspace and line item),
never added to usage; `tool_decision` the edits a person accepted or rejected per day and tool, as the tool
counts them; `vendor_pull` each pull's last attempt, success and error; the token columns of
`usage_record` and `unattributed_usage` become nullable: NULL is a count the source does not give.

Revision ID: 0011_vendor_admin
Revises: 0010_pr_updated_at
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_vendor_admin"
down_revision = "0010_pr_updated_at"
branch_labels = None
depends_on = None

TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def upgrade() -> None:
    op.create_table(
        "billed_cost",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("vendor", sa.String(length=20), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=120), nullable=False),
        sa.Column("workspace", sa.String(length=120), nullable=False),
        sa.Column("line_item", sa.String(length=300), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=True),
        sa.Column("pulled_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("source", "day", "model", "workspace", "line_item"),
    )
    op.create_index("ix_billed_cost_vendor_day", "billed_cost", ["vendor", "day"])
    op.create_table(
        "tool_decision",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("source.id", ondelete="CASCADE"), nullable=False),
        sa.Column("person_id", sa.Integer(), sa.ForeignKey("person.id", ondelete="CASCADE"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tool", sa.String(length=40), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.UniqueConstraint("source_id", "day", "person_id", "tool"),
    )
    op.create_index("ix_tool_decision_person_day", "tool_decision", ["person_id", "day"])
    op.create_table(
        "vendor_pull",
        sa.Column("name", sa.String(length=40), primary_key=True),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_summary", sa.String(length=500), nullable=True),
    )
    for table in ("usage_record", "unattributed_usage"):
        with op.batch_alter_table(table) as batch:
            for column in TOKENS:
                batch.alter_column(column, existing_type=sa.BigInteger(), nullable=True)


def downgrade() -> None:
    for table in ("usage_record", "unattributed_usage"):
        for column in TOKENS:
            op.execute(sa.text(f"UPDATE {table} SET {column} = 0 WHERE {column} IS NULL"))
        with op.batch_alter_table(table) as batch:
            for column in TOKENS:
                batch.alter_column(column, existing_type=sa.BigInteger(), nullable=False)
    op.drop_table("vendor_pull")
    op.drop_index("ix_tool_decision_person_day", table_name="tool_decision")
    op.drop_table("tool_decision")
    op.drop_index("ix_billed_cost_vendor_day", table_name="billed_cost")
    op.drop_table("billed_cost")
