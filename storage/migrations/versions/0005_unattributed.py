"""Nothing vanishes: usage that names no known person is kept, and operators link identities to people

- person_link: an identity a source carries (account uuid, user id, API key name, GitHub login) that an
  operator said is a person's (`tokenwise people link`);
- unattributed_usage: usage naming nobody known, kept until its identity is linked.

Revision ID: 0005_unattributed
Revises: 0004_insider
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0005_unattributed"
down_revision = "0004_insider"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('account-uuid', 'user-id', 'api-key', 'github')", name="ck_person_link_kind"
        ),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "value"),
    )
    op.create_table(
        "unattributed_usage",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("identity_kind", sa.String(length=20), nullable=True),
        sa.Column("identity_value", sa.String(length=200), nullable=True),
        sa.Column("run_external_id", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=120), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.BigInteger(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "dedupe_key"),
    )
    op.create_index("ix_unattributed_identity", "unattributed_usage", ["identity_kind", "identity_value"])


def downgrade() -> None:
    op.drop_index("ix_unattributed_identity", table_name="unattributed_usage")
    op.drop_table("unattributed_usage")
    op.drop_table("person_link")
