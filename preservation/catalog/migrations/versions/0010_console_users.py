"""The console's users: people with passwords, beside the API's tokens; AIPs by tenant and state

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:00:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

Users are operational state, like tokens: they are not on tape, and a rebuilt
catalogue starts without them (an operator adds them again with ``user add``).
``ix_aips_tenant_state`` lets the dashboard count a tenant's AIPs by state from the index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("session_epoch", sa.Integer(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("password_changed_at", TS, nullable=False),
        sa.Column("last_login_at", TS, nullable=True),
        sa.Column("disabled_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_console_users_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_console_users"),
        sa.UniqueConstraint("email", name="uq_console_users_email"),
    )
    op.create_index("ix_console_users_tenant_id", "console_users", ["tenant_id"])
    op.create_index("ix_aips_tenant_state", "aips", ["tenant_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_aips_tenant_state", table_name="aips")
    op.drop_index("ix_console_users_tenant_id", table_name="console_users")
    op.drop_table("console_users")
