"""Rerank results: each candidate's score and rank for each query of a rerank job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rerank_results",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("query_id", sa.Text(), nullable=False),
        sa.Column("candidate_id", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_rerank_results_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "query_id", "candidate_id", name="pk_rerank_results"),
    )
    op.create_index(
        "ix_rerank_results_job_id_query_id_rank", "rerank_results", ["job_id", "query_id", "rank"]
    )


def downgrade() -> None:
    op.drop_index("ix_rerank_results_job_id_query_id_rank", table_name="rerank_results")
    op.drop_table("rerank_results")
