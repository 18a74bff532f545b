"""Privacy against an insider: team time zones, membership start, scoped sources, seen Slack requests

- team.timezone: team windows are fixed calendar weeks in the team's zone (NULL: TOKENWISE_TIMEZONE);
- membership.since: someone added to a team counts from then on (NULL: whole history);
- source.person_id / personal / outcomes: a source limited to one person, a personal token from
  `/tokenwise connect`, and the right to post outcomes;
- slack_request_seen: signed Slack requests already handled, so a replay runs nothing (shared by replicas).

Revision ID: 0004_insider
Revises: 0003_usage_time
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_insider"
down_revision = "0003_usage_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("team") as batch:
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("membership") as batch:
        batch.add_column(sa.Column("since", sa.DateTime(), nullable=True))
    with op.batch_alter_table("source") as batch:
        batch.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("personal", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("outcomes", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_foreign_key("fk_source_person_id_person", "person", ["person_id"], ["id"], ondelete="CASCADE")
    # Sources that posted outcomes before scopes existed keep that right; new ones ask for it.
    op.execute("UPDATE source SET outcomes = true WHERE kind = 'api'")
    op.create_table(
        "slack_request_seen",
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.Column("request_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("signature"),
    )
    op.create_index("ix_slack_request_seen_seen_at", "slack_request_seen", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_slack_request_seen_seen_at", table_name="slack_request_seen")
    op.drop_table("slack_request_seen")
    with op.batch_alter_table("source") as batch:
        batch.drop_constraint("fk_source_person_id_person", type_="foreignkey")
        batch.drop_column("outcomes")
        batch.drop_column("personal")
        batch.drop_column("person_id")
    with op.batch_alter_table("membership") as batch:
        batch.drop_column("since")
    with op.batch_alter_table("team") as batch:
        batch.drop_column("timezone")
