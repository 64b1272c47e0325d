"""operations: stage timings, tape mounts, reclaimable bytes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 03:30:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

All of it is operational state for monitoring and tape planning: ``stage_runs``
(how long each stage took, for the duration histograms, whichever process ran
it), ``cartridges.mounts`` (tape mounts), ``cartridges.reclaimable`` (bytes of
disposed copies still on the cartridge until it is repacked; the LTFS indexes
no longer list them, so a rebuild from tape recomputes it as used minus listed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stage_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_runs")),
    )
    op.create_index("ix_stage_runs_stage", "stage_runs", ["stage", "seconds"])
    with op.batch_alter_table("cartridges") as batch:
        batch.add_column(sa.Column("mounts", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("reclaimable", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("cartridges") as batch:
        batch.drop_column("reclaimable")
        batch.drop_column("mounts")
    op.drop_index("ix_stage_runs_stage", table_name="stage_runs")
    op.drop_table("stage_runs")
