"""format migrations: requests, per-AIP items, per-file results; derived files

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:00:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

``files.derived_from`` and ``files.superseded_in`` come back from the
representation METS of each migration version (the PREMIS derivation
relationship, and which file of the current representation replaced which).
The ``migrations`` tables are operational state: the request, its progress and
the per-file results; what was proven also lives in each version's PREMIS
``migration`` events.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("derived_from", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("superseded_in", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_files_derived_from_files", "files", ["derived_from"], ["id"])
        batch.create_index("ix_files_derived_from", ["derived_from"])
        batch.drop_constraint("uq_files_sip_id_original_name", type_="unique")
    # A submitter's path names one original; a migration's output may keep it (a PDF
    # becomes a PDF/A of the same name), so outputs are unique per version instead.
    op.create_index(
        "uq_files_sip_id_original_name",
        "files",
        ["sip_id", "original_name"],
        unique=True,
        postgresql_where=sa.text("derived_from IS NULL"),
        sqlite_where=sa.text("derived_from IS NULL"),
    )
    op.create_index(
        "uq_files_derived_version_name",
        "files",
        ["aip_version_id", "original_name"],
        unique=True,
        postgresql_where=sa.text("derived_from IS NOT NULL"),
        sqlite_where=sa.text("derived_from IS NOT NULL"),
    )
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("requested_by_label", sa.String(255), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("policy_sha256", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_migrations_tenant_id", "migrations", ["tenant_id"])
    op.create_table(
        "migration_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("migration_id", sa.String(36), sa.ForeignKey("migrations.id"), nullable=False),
        sa.Column("aip_id", sa.String(36), sa.ForeignKey("aips.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("files_total", sa.Integer(), nullable=False),
        sa.Column("files_done", sa.Integer(), nullable=False),
        sa.Column("files_failed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "migration_id", "aip_id", name="uq_migration_items_migration_id_aip_id"
        ),
    )
    op.create_index("ix_migration_items_migration_id", "migration_items", ["migration_id"])
    op.create_index("ix_migration_items_aip_id", "migration_items", ["aip_id"])
    op.create_table(
        "migration_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("migration_items.id"), nullable=False),
        sa.Column("source_file_id", sa.Integer(), sa.ForeignKey("files.id"), nullable=False),
        sa.Column("action_id", sa.String(64), nullable=False),
        sa.Column("target_puid", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("aip_path", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("sha512", sa.String(128), nullable=True),
        sa.Column("tool", sa.String(64), nullable=True),
        sa.Column("tool_version", sa.String(255), nullable=True),
        sa.Column("command", sa.JSON(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=True),
        sa.Column("identification", sa.JSON(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=True),
        sa.Column("validation", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds_tool", sa.Float(), nullable=True),
        sa.Column("seconds_verify", sa.Float(), nullable=True),
    )
    op.create_index("ix_migration_files_item_id", "migration_files", ["item_id"])


def downgrade() -> None:
    op.drop_table("migration_files")
    op.drop_table("migration_items")
    op.drop_table("migrations")
    op.drop_index("uq_files_derived_version_name", table_name="files")
    op.drop_index("uq_files_sip_id_original_name", table_name="files")
    with op.batch_alter_table("files") as batch:
        batch.create_unique_constraint("uq_files_sip_id_original_name", ["sip_id", "original_name"])
        batch.drop_index("ix_files_derived_from")
        batch.drop_constraint("fk_files_derived_from_files", type_="foreignkey")
        batch.drop_column("superseded_in")
        batch.drop_column("derived_from")
