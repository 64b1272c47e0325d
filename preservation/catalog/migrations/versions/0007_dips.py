"""DIP requests: what was asked, how the recall went, the cached package

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 11:00:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

``dips`` is operational state: a request, its progress, and the cached zip's
size and digest. Losing it loses downloads in the cache, never archive content;
each dissemination is also a PREMIS ``dissemination`` event on the AIP.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dips",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("aip_id", sa.String(36), sa.ForeignKey("aips.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("files_glob", sa.Text(), nullable=True),
        sa.Column("requested_by_label", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("files_total", sa.Integer(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("zip_size", sa.BigInteger(), nullable=True),
        sa.Column("zip_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dips_tenant_id", "dips", ["tenant_id"])
    op.create_index("ix_dips_aip_id", "dips", ["aip_id"])
    op.create_index("ix_dips_state", "dips", ["state"])
    op.create_index("ix_dips_batch_id", "dips", ["batch_id"])


def downgrade() -> None:
    op.drop_table("dips")
