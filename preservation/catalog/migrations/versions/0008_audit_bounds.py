"""Audits: the bounds a run was asked for, and copies findable by their last check

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 13:20:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

``audits.max_cartridges`` and ``audits.max_hours`` are operational state: what
an audit run was asked to stay within, kept so that a queued run (API, beat)
is run by the worker as it was asked. The index on ``tape_copies.verified_at``
serves the coverage count and the overdue listing, which ask by last check.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("max_cartridges", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_hours", sa.Float(), nullable=True))
    op.create_index("ix_tape_copies_verified_at", "tape_copies", ["verified_at"])


def downgrade() -> None:
    op.drop_index("ix_tape_copies_verified_at", table_name="tape_copies")
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("max_hours")
        batch.drop_column("max_cartridges")
