"""Evidence from GitHub: deliveries, pull requests, commits, checks, links from outcomes to runs

An outcome is `evidence` when it comes from outside the person (GitHub, an operator's source that is not
limited to one person) and `counted` when it moves outcome value and verified spend. Outcomes stored before
this revision are evidence, and counted, when their source is neither Claude Code's OTLP export (its own
commit and pull-request counters) nor a person's own token.

Revision ID: 0008_github
Revises: 0007_project_branch
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_github"
down_revision = "0007_project_branch"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("source") as batch:
        batch.add_column(sa.Column("webhook_secret", sa.String(length=100), nullable=True))
    with op.batch_alter_table("outcome") as batch:
        for name in ("evidence", "counted", "agent_assisted"):
            batch.add_column(sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE outcome SET evidence = true, counted = true WHERE source_id IN (SELECT id FROM source"
        " WHERE kind NOT IN ('otlp', 'github') AND person_id IS NULL AND personal = false)"
    )
    op.create_table(
        "github_delivery",
        sa.Column("delivery_id", sa.String(length=64), primary_key=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("source.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        _when("received_at", nullable=False),
    )
    op.create_index("ix_github_delivery_received_at", "github_delivery", ["received_at"])
    op.create_table(
        "pull_request",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("source.id", ondelete="CASCADE"), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("author_login", sa.String(length=100), nullable=True),
        sa.Column("merged_by_login", sa.String(length=100), nullable=True),
        sa.Column("head_branch", sa.String(length=255), nullable=True),
        sa.Column("head_sha", sa.String(length=40), nullable=True),
        sa.Column("merge_sha", sa.String(length=40), nullable=True),
        _when("opened_at"),
        _when("merged_at"),
        _when("closed_at"),
        sa.Column("additions", sa.Integer(), nullable=True),
        sa.Column("deletions", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=True),
        sa.UniqueConstraint("repo", "number"),
    )
    op.create_index("ix_pull_request_head", "pull_request", ["repo", "head_branch"])
    op.create_table(
        "github_commit",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("source.id", ondelete="CASCADE"), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("sha", sa.String(length=40), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("author_login", sa.String(length=100), nullable=True),
        sa.Column("author_email", sa.String(length=320), nullable=True),
        sa.Column("agent_trailer", sa.String(length=100), nullable=True),
        _when("committed_at"),
        sa.UniqueConstraint("repo", "sha"),
    )
    op.create_index("ix_github_commit_branch", "github_commit", ["repo", "branch"])
    op.create_table(
        "github_check",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("source.id", ondelete="CASCADE"), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("sha", sa.String(length=40), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("pr_numbers", sa.String(length=200), nullable=True),
        sa.Column("environment", sa.String(length=100), nullable=True),
        _when("completed_at", nullable=False),
        sa.UniqueConstraint("repo", "kind", "external_id"),
    )
    op.create_index("ix_github_check_sha", "github_check", ["repo", "sha"])
    op.create_table(
        "outcome_link",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("outcome_id", sa.Integer(), sa.ForeignKey("outcome.id", ondelete="CASCADE"), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("agent_run.id", ondelete="CASCADE"), nullable=False),
        sa.Column("evidence", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=True),
        _when("created_at", nullable=False),
        _when("removed_at"),
        sa.UniqueConstraint("outcome_id", "run_id"),
    )
    op.create_index("ix_outcome_link_run", "outcome_link", ["run_id"])
    op.create_table(
        "run_commit",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("agent_run.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sha", sa.String(length=40), primary_key=True),
    )
    op.create_table(
        "repo_mapping",
        sa.Column("folder", sa.String(length=200), primary_key=True),
        sa.Column("repo", sa.String(length=200), nullable=False),
    )


def downgrade() -> None:
    for table in ("repo_mapping", "run_commit", "outcome_link", "github_check", "github_commit", "pull_request"):
        op.drop_table(table)
    op.drop_index("ix_github_delivery_received_at", table_name="github_delivery")
    op.drop_table("github_delivery")
    with op.batch_alter_table("outcome") as batch:
        for name in ("agent_assisted", "counted", "evidence"):
            batch.drop_column(name)
    with op.batch_alter_table("source") as batch:
        batch.drop_column("webhook_secret")
