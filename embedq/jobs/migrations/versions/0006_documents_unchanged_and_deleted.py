"""Jobs count documents skipped as unchanged and documents deleted; batches have a role.

``documents_unchanged``: an ingest with ``--skip-unchanged`` found them stored as they
are. ``documents_deleted``: a delete job, or a sync's sweep, removed them. A batch's
``role`` is null for documents and ``sweep`` for a sync's removal of what its input
no longer holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("documents_unchanged", "documents_deleted")


def upgrade() -> None:
    for name in COUNTERS:
        op.add_column("jobs", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("batches", sa.Column("role", sa.String(16), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): batch mode would copy and drop the
    # table, and dropping jobs cascades to every batch on SQLite
    op.drop_column("batches", "role")
    for name in COUNTERS:
        op.drop_column("jobs", name)
