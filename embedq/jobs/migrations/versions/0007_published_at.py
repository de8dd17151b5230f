"""Batches record when their message was last published, and how many were sent.

``published_at`` replaces ``republish_at``: a reaper compares it with how deep the
broker's queue is and which later batches were already taken, and publishes again
only a batch whose message must have been lost (see ``jobs.publishing``). Null means
nothing published it yet (a sync's sweep). ``publishes`` counts the messages sent for
a batch, so the rate of duplicate messages can be read off the ledger.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ALTER TABLE (SQLite 3.35+): batch mode would copy and drop batches, and
    # dropping batches cascades to their payloads on SQLite
    op.add_column("batches", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "batches", sa.Column("publishes", sa.Integer(), nullable=False, server_default="0")
    )
    # batches of earlier versions were published as they were created, sweeps excepted
    op.execute(
        "UPDATE batches SET published_at = created_at, publishes = 1 "
        "WHERE role IS NULL OR role <> 'sweep'"
    )
    op.drop_index("ix_batches_status_republish_at", table_name="batches")
    op.drop_column("batches", "republish_at")
    op.create_index("ix_batches_status_published_at", "batches", ["status", "published_at"])
    op.create_index("ix_batches_started_at", "batches", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_started_at", table_name="batches")
    op.drop_index("ix_batches_status_published_at", table_name="batches")
    op.add_column("batches", sa.Column("republish_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_batches_status_republish_at", "batches", ["status", "republish_at"])
    op.drop_column("batches", "publishes")
    op.drop_column("batches", "published_at")
