"""Released batches carry a time by which a worker should have taken them again.

A batch given back after a passing failure waits for the message that re-queues it;
if that message was never sent, ``republish_at`` lets a reaper find the batch.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("republish_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_batches_status_republish_at", "batches", ["status", "republish_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_status_republish_at", table_name="batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("republish_at")
