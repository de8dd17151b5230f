"""The ledger's first schema: jobs, batches, batch payloads and document failures.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id(name: str, *, nullable: bool) -> sa.Column[Any]:
    return sa.Column(name, sa.String(32), nullable=nullable)


def _time(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _counter(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "jobs",
        _id("id", nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("collection", sa.String(255), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False, server_default=sa.false()),
        *(
            _counter(name)
            for name in (
                "documents_total",
                "batches_total",
                "documents_done",
                "chunks_done",
                "tokens_done",
                "documents_failed",
                "batches_done",
                "batches_failed",
                "splits",
            )
        ),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at", nullable=False),
        _time("started_at"),
        _time("updated_at", nullable=False),
        _time("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_status_created_at", "jobs", ["status", "created_at"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])

    op.create_table(
        "batches",
        _id("id", nullable=False),
        _id("job_id", nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        _id("parent_id", nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        _time("lease_expires_at"),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at", nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_batches_job_id_jobs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["batches.id"], name="fk_batches_parent_id_batches", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("job_id", "sequence", name="uq_batches_job_id_sequence"),
    )
    op.create_index("ix_batches_job_id_status", "batches", ["job_id", "status"])
    op.create_index("ix_batches_status_lease_expires_at", "batches", ["status", "lease_expires_at"])

    op.create_table(
        "batch_payloads",
        _id("batch_id", nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name="pk_batch_payloads"),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name="fk_batch_payloads_batch_id_batches",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "document_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        _id("job_id", nullable=False),
        _id("batch_id", nullable=True),
        sa.Column("doc_id", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        _time("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_document_failures"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name="fk_document_failures_job_id_jobs",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_document_failures_job_id", "document_failures", ["job_id"])


def downgrade() -> None:
    op.drop_table("document_failures")
    op.drop_table("batch_payloads")
    op.drop_table("batches")
    op.drop_table("jobs")
