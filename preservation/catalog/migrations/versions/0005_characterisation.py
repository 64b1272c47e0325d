"""characterisation: significant properties and format validation per file

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 05:20:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

``files.properties`` (width, duration, page count...) comes back from each
file's PREMIS ``objectCharacteristicsExtension``; ``files.valid`` and
``files.validation`` (each validator's verdict, tool, version and message)
from the per-file ``validation`` events of the representation METS. The
partial index serves "which AIPs hold files that failed validation" without
reading the valid ones, which are nearly all.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("properties", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("valid", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("validation", sa.JSON(), nullable=True))
    op.create_index(
        "ix_files_invalid",
        "files",
        ["aip_version_id"],
        postgresql_where=sa.text("valid = false"),
        sqlite_where=sa.text("valid = 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_files_invalid", table_name="files")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("validation")
        batch.drop_column("valid")
        batch.drop_column("properties")
