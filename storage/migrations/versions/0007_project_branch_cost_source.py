"""A run's project and git branch; who put the figure on a usage record's cost

Claude Code's logs say where a session ran (`cwd`, `gitBranch`): a run keeps the checkout folder (the last
component of the path only) and the branch, for cost per project and per branch. `cost_source` says whether
a cost was reported by the source or priced by Tokenwise from the token counts.

Revision ID: 0007_project_branch
Revises: 0006_counted_once
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_project_branch"
down_revision = "0006_counted_once"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_run") as batch:
        batch.add_column(sa.Column("project", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("branch", sa.String(length=200), nullable=True))
    for table in ("usage_record", "unattributed_usage"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cost_source", sa.String(length=8), nullable=True))


    _merge_session_runs()


def _merge_session_runs() -> None:
    connection = op.get_bind()
    duplicates = connection.execute(
        sa.text(
            "SELECT r.person_id, r.external_id, r.id FROM agent_run r JOIN source s ON s.id = r.source_id"
            " WHERE s.kind IN ('otlp', 'claude-code-logs') AND EXISTS (SELECT 1 FROM agent_run o"
            " JOIN source os ON os.id = o.source_id WHERE os.kind IN ('otlp', 'claude-code-logs')"
            " AND o.person_id = r.person_id AND o.external_id = r.external_id AND o.id <> r.id)"
            " ORDER BY r.person_id, r.external_id, r.id"
        )
    ).all()
    groups: dict[tuple[int, str], list[int]] = {}
    for person_id, external_id, run_id in duplicates:
        groups.setdefault((person_id, external_id), []).append(run_id)
    for ids in groups.values():
        keep, others = ids[0], ids[1:]
        for other in others:
            for table in ("usage_record", "outcome"):
                connection.execute(sa.text(f"UPDATE {table} SET run_id = :keep WHERE run_id = :other"), {"keep": keep, "other": other})
            # the owner's verdict: the latest of the runs' verdicts (one per run and person)
            connection.execute(
                sa.text(
                    "DELETE FROM annotation WHERE run_id = :keep AND EXISTS (SELECT 1 FROM annotation b"
                    " WHERE b.run_id = :other AND b.person_id = annotation.person_id"
                    " AND b.updated_at > annotation.updated_at)"
                ),
                {"keep": keep, "other": other},
            )
            connection.execute(
                sa.text(
                    "DELETE FROM annotation WHERE run_id = :other AND EXISTS (SELECT 1 FROM annotation k"
                    " WHERE k.run_id = :keep AND k.person_id = annotation.person_id)"
                ),
                {"keep": keep, "other": other},
            )
            connection.execute(sa.text("UPDATE annotation SET run_id = :keep WHERE run_id = :other"), {"keep": keep, "other": other})
            connection.execute(
                sa.text(
                    "UPDATE agent_run SET started_at = (SELECT min(started_at) FROM agent_run WHERE id IN (:keep, :other)),"
                    " ended_at = (SELECT max(ended_at) FROM agent_run WHERE id IN (:keep, :other))"
                    " WHERE id = :keep"
                ),
                {"keep": keep, "other": other},
            )
            connection.execute(sa.text("DELETE FROM agent_run WHERE id = :other"), {"other": other})


def downgrade() -> None:
    for table in ("unattributed_usage", "usage_record"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cost_source")
    with op.batch_alter_table("agent_run") as batch:
        batch.drop_column("branch")
        batch.drop_column("project")
