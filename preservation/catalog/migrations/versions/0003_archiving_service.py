"""the archiving service: tokens, idempotent uploads, search, retention, holds, disposals, audits

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00

Checklist for every revision:
- runs on SQLite (batch mode) and PostgreSQL; tests run both;
- never rewrites rows the running code still reads; add columns nullable first;
- the catalogue can be rebuilt from tape: a new column either comes from METS/LTFS
  or is operational state that may be lost.

From tape: ``aips.descriptive`` (the version's dc.xml), the search tables (rebuilt
by ``preservation db reindex`` from the catalogue itself), retention, holds and
disposals (each a PREMIS event in the chain). Operational: tokens, idempotency
keys, audit runs.

The full-text index differs per backend and is made here, not by the models:
SQLite gets an FTS5 table over ``aip_texts`` kept in step by triggers;
PostgreSQL a generated ``tsvector`` column with a GIN index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("aips") as batch:
        batch.add_column(sa.Column("descriptive", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("retention_until", TS, nullable=True))
        batch.add_column(sa.Column("disposed_at", TS, nullable=True))
        batch.create_index("ix_aips_tenant_created", ["tenant_id", "created_at", "id"])
        batch.create_index("ix_aips_tenant_external", ["tenant_id", "external_identifier"])

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_api_tokens_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_tokens_secret_sha256")),
    )
    op.create_index(op.f("ix_api_tokens_tenant_id"), "api_tokens", ["tenant_id"])

    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("sip_id", sa.String(36), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_idempotency_keys_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency_keys")),
    )

    op.create_table(
        "aip_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("aip_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["aip_id"], ["aips.id"], name=op.f("fk_aip_texts_aip_id_aips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aip_texts")),
        sa.UniqueConstraint("aip_id", name=op.f("uq_aip_texts_aip_id")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE aip_texts ADD COLUMN document tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED"
        )
        op.execute("CREATE INDEX ix_aip_texts_document ON aip_texts USING GIN (document)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE aip_texts_fts USING fts5("
            "body, content='aip_texts', content_rowid='id', tokenize='unicode61')"
        )
        op.execute(
            "CREATE TRIGGER aip_texts_ai AFTER INSERT ON aip_texts BEGIN "
            "INSERT INTO aip_texts_fts(rowid, body) VALUES (new.id, new.body); END"
        )
        op.execute(
            "CREATE TRIGGER aip_texts_ad AFTER DELETE ON aip_texts BEGIN "
            "INSERT INTO aip_texts_fts(aip_texts_fts, rowid, body) "
            "VALUES ('delete', old.id, old.body); END"
        )
        op.execute(
            "CREATE TRIGGER aip_texts_au AFTER UPDATE ON aip_texts BEGIN "
            "INSERT INTO aip_texts_fts(aip_texts_fts, rowid, body) "
            "VALUES ('delete', old.id, old.body); "
            "INSERT INTO aip_texts_fts(rowid, body) VALUES (new.id, new.body); END"
        )

    op.create_table(
        "aip_formats",
        sa.Column("aip_id", sa.String(36), nullable=False),
        sa.Column("puid", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["aip_id"], ["aips.id"], name=op.f("fk_aip_formats_aip_id_aips")),
        sa.PrimaryKeyConstraint("aip_id", "puid", name=op.f("pk_aip_formats")),
    )
    op.create_index("ix_aip_formats_puid", "aip_formats", ["tenant_id", "puid", "aip_id"])

    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("aip_id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(255), nullable=False),
        sa.Column("placed_at", TS, nullable=False),
        sa.Column("lifted_by", sa.String(255), nullable=True),
        sa.Column("lifted_at", TS, nullable=True),
        sa.Column("lift_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["aip_id"], ["aips.id"], name=op.f("fk_legal_holds_aip_id_aips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_aip_id"), "legal_holds", ["aip_id"])

    op.create_table(
        "disposals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("aip_id", sa.String(36), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_by_label", sa.String(255), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("approved_by", sa.String(64), nullable=True),
        sa.Column("approved_by_label", sa.String(255), nullable=True),
        sa.Column("approved_at", TS, nullable=True),
        sa.Column("reclaimable_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_disposals_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(["aip_id"], ["aips.id"], name=op.f("fk_disposals_aip_id_aips")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disposals")),
    )
    op.create_index(op.f("ix_disposals_tenant_id"), "disposals", ["tenant_id"])
    op.create_index(op.f("ix_disposals_aip_id"), "disposals", ["aip_id"])

    op.create_table(
        "audits",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("site", sa.String(32), nullable=True),
        sa.Column("requested_by_label", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("copies_done", sa.Integer(), nullable=False),
        sa.Column("copies_total", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audits_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audits")),
    )
    op.create_index(op.f("ix_audits_tenant_id"), "audits", ["tenant_id"])


def downgrade() -> None:
    for table in ("audits", "disposals", "legal_holds", "aip_formats"):
        op.drop_table(table)
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("aip_texts_ai", "aip_texts_ad", "aip_texts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS aip_texts_fts")
    for table in ("aip_texts", "idempotency_keys", "api_tokens"):
        op.drop_table(table)
    with op.batch_alter_table("aips") as batch:
        batch.drop_index("ix_aips_tenant_external")
        batch.drop_index("ix_aips_tenant_created")
        batch.drop_column("disposed_at")
        batch.drop_column("retention_until")
        batch.drop_column("descriptive")
