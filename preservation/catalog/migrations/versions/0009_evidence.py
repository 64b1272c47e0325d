"""Legal value: the tape journal, its time-stamps, and RFC 4998 evidence records

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 15:45:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

Every table here is written to tape as well (the journal folder beside the
AIPs: segments, their time-stamps, evidence bundles), and the rebuild reads
them back. ``aip_versions.mets_sha256`` is the root METS's digest, one of a
version's two leaves in its evidence record; it is in the bag's manifest on tape.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("aip_versions") as batch:
        batch.add_column(sa.Column("mets_sha256", sa.String(length=64), nullable=True))
    op.create_table(
        "journal_segments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(length=64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=True),
        sa.Column("stamped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stamp_error", sa.Text(), nullable=True),
        sa.UniqueConstraint(
            "tenant_id", "first_seq", name="uq_journal_segments_tenant_id_first_seq"
        ),
    )
    op.create_index("ix_journal_segments_tenant_id", "journal_segments", ["tenant_id"])
    op.create_table(
        "evidence_stamps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(length=64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("leaves", sa.Integer(), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stamped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stamp_error", sa.Text(), nullable=True),
        sa.Column("renewed_by", sa.Integer(), sa.ForeignKey("evidence_stamps.id"), nullable=True),
        sa.Column("closed", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_evidence_stamps_tenant_id", "evidence_stamps", ["tenant_id"])
    op.create_index("ix_evidence_stamps_renewed_by", "evidence_stamps", ["renewed_by"])
    op.create_table(
        "evidence_leaves",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("stamp_id", sa.Integer(), sa.ForeignKey("evidence_stamps.id"), nullable=False),
        sa.Column("aip_version_id", sa.Integer(), sa.ForeignKey("aip_versions.id"), nullable=True),
        sa.Column(
            "covers_stamp_id", sa.Integer(), sa.ForeignKey("evidence_stamps.id"), nullable=True
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.Column("reduced", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_evidence_leaves_stamp_id", "evidence_leaves", ["stamp_id"])
    op.create_index("ix_evidence_leaves_aip_version_id", "evidence_leaves", ["aip_version_id"])
    op.create_index("ix_evidence_leaves_covers_stamp_id", "evidence_leaves", ["covers_stamp_id"])
    op.create_table(
        "journal_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.String(length=64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("segment_id", sa.Integer(), sa.ForeignKey("journal_segments.id"), nullable=True),
        sa.Column("stamp_id", sa.Integer(), sa.ForeignKey("evidence_stamps.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "path", name="uq_journal_files_tenant_id_path"),
    )
    op.create_index("ix_journal_files_tenant_id", "journal_files", ["tenant_id"])
    op.create_table(
        "journal_copies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("file_id", sa.Integer(), sa.ForeignKey("journal_files.id"), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=False),
        sa.Column("barcode", sa.String(length=16), nullable=False),
        sa.Column("start_block", sa.BigInteger(), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("file_id", "site", name="uq_journal_copies_file_id_site"),
    )
    op.create_index("ix_journal_copies_file_id", "journal_copies", ["file_id"])


def downgrade() -> None:
    op.drop_table("journal_copies")
    op.drop_table("journal_files")
    op.drop_table("evidence_leaves")
    op.drop_table("evidence_stamps")
    op.drop_table("journal_segments")
    with op.batch_alter_table("aip_versions") as batch:
        batch.drop_column("mets_sha256")
