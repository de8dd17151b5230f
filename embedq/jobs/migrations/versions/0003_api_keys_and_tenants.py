"""API keys, and the tenant each job belongs to.

A key's secret is never stored, only its SHA-256. Jobs made on the ledger directly
(the command line) have no tenant, so the new column is nullable and needs no backfill.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        _time("created_at", nullable=False),
        _time("revoked_at"),
        _time("last_used_at"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
    )
    op.add_column("jobs", sa.Column("tenant", sa.String(64), nullable=True))
    op.create_index("ix_jobs_tenant_created_at", "jobs", ["tenant", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_created_at", table_name="jobs")
    # a plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): batch mode would copy and drop
    # the jobs table, and dropping it cascades to every batch on SQLite
    op.drop_column("jobs", "tenant")
    op.drop_table("api_keys")
