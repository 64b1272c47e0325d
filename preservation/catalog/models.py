"""The catalogue's tables: what the archive holds, where, and what happened to it.

The catalogue is a cache of truth that also lives on tape (METS, PREMIS, LTFS
indexes): it can be rebuilt from the tapes alone. It is still kept strictly,
because "two verified copies" is a promise read from here.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ConsoleUser",
    "AIP",
    "AIPFormat",
    "AIPText",
    "APIToken",
    "Audit",
    "DIP",
    "DIPState",
    "Disposal",
    "IdempotencyKey",
    "LegalHold",
    "Migration",
    "MigrationFile",
    "MigrationItem",
    "AuditState",
    "DisposalState",
    "EvidenceLeaf",
    "EvidenceStamp",
    "JournalCopy",
    "JournalFile",
    "JournalSegment",
    "Role",
    "AIPState",
    "AIPVersion",
    "Agent",
    "Base",
    "Cartridge",
    "CartridgeState",
    "CopyStatus",
    "File",
    "PremisEvent",
    "SIP",
    "SIPState",
    "StageLease",
    "StageRun",
    "TapeCopy",
    "Tenant",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class SIPState(enum.StrEnum):
    """Where a submission is in the pipeline; each value names the last stage done."""

    RECEIVED = "received"
    VALIDATED = "validated"
    STAGED = "staged"
    SCANNED = "scanned"
    IDENTIFIED = "identified"
    CHARACTERISED = "characterised"
    DESCRIBED = "described"
    PACKAGED = "packaged"
    STORED = "stored"
    COMMITTED = "committed"
    REJECTED = "rejected"
    FAILED = "failed"


class AIPState(enum.StrEnum):
    PENDING = "pending"  # packaged, not yet two verified copies
    ACTIVE = "active"  # every version has two verified copies at two sites
    DISCARDED = "discarded"  # its SIP was discarded before commit; never active
    DISPOSED = "disposed"  # an approved disposal: a tombstone, its events kept forever


class CopyStatus(enum.StrEnum):
    WRITING = "writing"  # bytes may be on tape; never counted
    VERIFIED = "verified"  # read back and sha256 matched
    FAILED = "failed"  # verification or read failed; to be replaced
    DISCARDED = "discarded"  # superseded; bytes stay on tape (tape is append-only)
    DISPOSED = "disposed"  # its AIP was disposed of: gone from the LTFS index, bytes reclaimable


class CartridgeState(enum.StrEnum):
    SCRATCH = "scratch"
    FILLING = "filling"
    FULL = "full"
    SUSPECT = "suspect"
    FAILED = "failed"
    RETIRED = "retired"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Head of this tenant's PREMIS event hash chain; updated under a row lock.
    event_head: Mapped[str | None] = mapped_column(String(64))
    event_count: Mapped[int] = mapped_column(BigInteger, default=0)


class Agent(Base):
    """A PREMIS agent: our software (per version), an organisation, a person."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("identifier"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))  # software / organization / person
    version: Mapped[str | None] = mapped_column(String(255))
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"))


class SIP(Base):
    __tablename__ = "sips"
    __table_args__ = (Index("ix_sips_tenant_state", "tenant_id", "state"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(255))
    source_path: Mapped[str] = mapped_column(Text)
    state: Mapped[SIPState] = mapped_column(_enum(SIPState, "sip_state"), default=SIPState.RECEIVED)
    stage: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    external_identifier: Mapped[str | None] = mapped_column(String(255), index=True)
    bag_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    payload_oxum: Mapped[str | None] = mapped_column(String(64))
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    payload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    aip_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship()


class StageLease(Base):
    """Who runs a piece of work now, and until when unless renewed (preservation/lease.py).

    A redelivered or resubmitted message must never run a stage beside the
    first: both would rebuild one staging folder, or write one site's copy
    twice. Keys name the work: ``sip:<id>`` for the stages that own the
    staging area, ``sip:<id>:store:<site>`` for one site's write.
    Operational state: losing it loses nothing on tape.
    """

    __tablename__ = "stage_leases"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()


class StageRun(Base):
    """One finished run of a stage: the stage-duration histograms, from whichever process ran it.

    Operational state: the API's ``/metrics`` reads it, so a worker's timings
    reach Prometheus without a push gateway or a shared metrics directory.
    """

    __tablename__ = "stage_runs"
    __table_args__ = (Index("ix_stage_runs_stage", "stage", "seconds"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)


class AIP(Base):
    __tablename__ = "aips"
    __table_args__ = (
        # Listing and search page through one tenant's AIPs newest first.
        Index("ix_aips_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_aips_tenant_external", "tenant_id", "external_identifier"),
        # The console's dashboard counts one tenant's AIPs by state from the index alone.
        Index("ix_aips_tenant_state", "tenant_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    # One SIP makes at most one AIP: the guard against duplicate ingest after a crash.
    sip_id: Mapped[str] = mapped_column(ForeignKey("sips.id"), unique=True)
    external_identifier: Mapped[str | None] = mapped_column(String(255), index=True)
    source_bag_name: Mapped[str] = mapped_column(String(255), index=True)
    state: Mapped[AIPState] = mapped_column(_enum(AIPState, "aip_state"), default=AIPState.PENDING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The current Dublin Core record, {element: [values]}: the newest version's dc.xml.
    descriptive: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Until when the AIP must be kept; a disposal before then is refused.
    retention_until: Mapped[datetime | None] = mapped_column()
    disposed_at: Mapped[datetime | None] = mapped_column()

    versions: Mapped[list[AIPVersion]] = relationship(
        back_populates="aip", order_by="AIPVersion.number"
    )


class AIPVersion(Base):
    __tablename__ = "aip_versions"
    __table_args__ = (UniqueConstraint("aip_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    aip_id: Mapped[str] = mapped_column(ForeignKey("aips.id"))
    number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64), default="ingest")
    tar_name: Mapped[str] = mapped_column(String(255))
    tar_size: Mapped[int | None] = mapped_column(BigInteger)
    tar_sha256: Mapped[str | None] = mapped_column(String(64))
    # The root METS's sha256: with the tar's, a leaf of the version's evidence record.
    mets_sha256: Mapped[str | None] = mapped_column(String(64))
    staging_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    committed_at: Mapped[datetime | None] = mapped_column()

    aip: Mapped[AIP] = relationship(back_populates="versions")
    copies: Mapped[list[TapeCopy]] = relationship(back_populates="version")


class File(Base):
    """A payload file: staged from a SIP, later part of an AIP version."""

    __tablename__ = "files"
    __table_args__ = (
        # A submitter's path names one original; a migration's output may keep it
        # (a PDF becomes a PDF/A of the same name), so outputs are unique per version.
        Index(
            "uq_files_sip_id_original_name",
            "sip_id",
            "original_name",
            unique=True,
            postgresql_where=text("derived_from IS NULL"),
            sqlite_where=text("derived_from IS NULL"),
        ),
        Index(
            "uq_files_derived_version_name",
            "aip_version_id",
            "original_name",
            unique=True,
            postgresql_where=text("derived_from IS NOT NULL"),
            sqlite_where=text("derived_from IS NOT NULL"),
        ),
        # Only the few files that failed validation: "which AIPs hold one" stays cheap.
        Index(
            "ix_files_invalid",
            "aip_version_id",
            postgresql_where=text("valid = false"),
            sqlite_where=text("valid = 0"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sip_id: Mapped[str] = mapped_column(ForeignKey("sips.id"), index=True)
    aip_version_id: Mapped[int | None] = mapped_column(ForeignKey("aip_versions.id"), index=True)
    original_name: Mapped[str] = mapped_column(Text)  # bag path, "data/..."
    aip_path: Mapped[str | None] = mapped_column(Text)  # path inside the AIP bag
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sha512: Mapped[str] = mapped_column(String(128))
    submitted_digests: Mapped[dict[str, Any]] = mapped_column(default=dict)
    puid: Mapped[str | None] = mapped_column(String(32), index=True)
    format_name: Mapped[str | None] = mapped_column(String(255))
    format_version: Mapped[str | None] = mapped_column(String(64))
    mime: Mapped[str | None] = mapped_column(String(128))
    identification_basis: Mapped[str | None] = mapped_column(String(32))
    identification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Significant properties (width, duration, page_count...), preservation/characterise/.
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # False: a validator found the file malformed; None: no validator checked it.
    valid: Mapped[bool | None] = mapped_column()
    # Each validator's verdict: [{"tool", "version", "valid", "message"}].
    validation: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # A migration's output: the file it was made from (in an earlier representation).
    derived_from: Mapped[int | None] = mapped_column(ForeignKey("files.id"), index=True)
    # The AIP version whose migration replaced this file in the current representation;
    # None while the file is current. The file itself stays, on tape and here.
    superseded_in: Mapped[int | None] = mapped_column(Integer)


class PremisEvent(Base):
    """A PREMIS event, chained per tenant: ``hash`` covers the event and ``prev_hash``."""

    __tablename__ = "premis_events"
    __table_args__ = (UniqueConstraint("tenant_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    sip_id: Mapped[str | None] = mapped_column(String(36), index=True)
    aip_id: Mapped[str | None] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))
    outcome_detail: Mapped[str] = mapped_column(Text, default="")
    agents: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"role": [identifier]}
    objects: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"files": n, "ids": [...]}
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Cartridge(Base):
    __tablename__ = "cartridges"

    barcode: Mapped[str] = mapped_column(String(16), primary_key=True)
    site: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[CartridgeState] = mapped_column(
        _enum(CartridgeState, "cartridge_state"), default=CartridgeState.SCRATCH
    )
    volume_uuid: Mapped[str | None] = mapped_column(String(36))
    capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # How often a drive loaded it (monitoring: mounts are what wears tape and drives).
    mounts: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Bytes of disposed copies still on it: gone from its LTFS index, back only by a repack.
    reclaimable: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class TapeCopy(Base):
    __tablename__ = "tape_copies"
    __table_args__ = (Index("ix_tape_copies_version_site", "aip_version_id", "site"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    aip_version_id: Mapped[int] = mapped_column(ForeignKey("aip_versions.id"))
    site: Mapped[str] = mapped_column(String(32))
    barcode: Mapped[str] = mapped_column(ForeignKey("cartridges.barcode"), index=True)
    volume_uuid: Mapped[str | None] = mapped_column(String(36))
    path: Mapped[str] = mapped_column(Text)
    start_block: Mapped[int | None] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[CopyStatus] = mapped_column(
        _enum(CopyStatus, "copy_status"), default=CopyStatus.WRITING
    )
    written_at: Mapped[datetime | None] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column(index=True)  # the last check
    error: Mapped[str | None] = mapped_column(Text)

    version: Mapped[AIPVersion] = relationship(back_populates="copies")


# -- the service: tokens, search, retention, audits ---------------------------------


class Role(enum.StrEnum):
    """What a token may do; each role may do everything the ones before it may."""

    CONSUMER = "consumer"  # read and search
    SUBMITTER = "submitter"  # + submit SIPs
    CURATOR = "curator"  # + metadata, retention, holds, disposal, audits
    ADMIN = "admin"  # every tenant, + tenants and tokens

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class APIToken(Base):
    """A bearer token. Only the sha256 of its secret is kept: a leaked catalogue grants nothing.

    sha256 rather than a slow password hash: the secret is 256 random bits,
    so there is nothing to guess, and every request looks it up.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    # None only for admin tokens, which see every tenant.
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "token_role"))
    label: Mapped[str] = mapped_column(String(255), default="")
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class ConsoleUser(Base):
    """A person who logs in to the console. The password is kept only as an argon2id hash.

    A user has the same roles as a token, and the same tenancy: an admin has no
    tenant and sees every one. ``session_epoch`` is in every session cookie; a
    password change or a disable bumps it, which ends every open session at once.
    ``failed_logins`` and ``locked_until`` throttle guessing per account.
    """

    __tablename__ = "console_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    password_hash: Mapped[str] = mapped_column(String(255))
    session_epoch: Mapped[int] = mapped_column(Integer, default=1)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()
    disabled_at: Mapped[datetime | None] = mapped_column()


class IdempotencyKey(Base):
    """An upload's ``Idempotency-Key``: the same key again is the same SIP, never a second one."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    sip_id: Mapped[str] = mapped_column(String(36))
    # sha256 of the uploaded body: the same key with other bytes is a client error.
    body_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AIPText(Base):
    """What full-text search reads for one AIP: Dublin Core, bag-info values, file names.

    ``body`` is normalised text (lower case, no diacritics, words of letters
    and digits separated by single spaces, catalog/search.py) so that SQLite's
    FTS5 and PostgreSQL's ``to_tsvector('simple', ...)`` see the same words and
    give the same answers. The full-text index itself (an FTS5 table kept by
    triggers; a generated ``tsvector`` column with a GIN index) is made by the
    migration, per backend.
    """

    __tablename__ = "aip_texts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # FTS5's content rowid
    aip_id: Mapped[str] = mapped_column(ForeignKey("aips.id"), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text, default="")


class AIPFormat(Base):
    """Which PRONOM formats an AIP holds: the PUID filter without scanning every file."""

    __tablename__ = "aip_formats"
    __table_args__ = (Index("ix_aip_formats_puid", "tenant_id", "puid", "aip_id"),)

    aip_id: Mapped[str] = mapped_column(ForeignKey("aips.id"), primary_key=True)
    puid: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    files: Mapped[int] = mapped_column(Integer, default=0)


class LegalHold(Base):
    """A legal hold: while one is in force, the AIP cannot be disposed of, retention or not."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    aip_id: Mapped[str] = mapped_column(ForeignKey("aips.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(255))
    placed_at: Mapped[datetime] = mapped_column(default=utcnow)
    lifted_by: Mapped[str | None] = mapped_column(String(255))
    lifted_at: Mapped[datetime | None] = mapped_column()
    lift_reason: Mapped[str | None] = mapped_column(Text)


class DisposalState(enum.StrEnum):
    REQUESTED = "requested"  # waiting for a second curator
    DISPOSED = "disposed"  # approved and carried out


class Disposal(Base):
    """A request to dispose of an AIP, and its approval by a different curator (four eyes)."""

    __tablename__ = "disposals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    aip_id: Mapped[str] = mapped_column(ForeignKey("aips.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[DisposalState] = mapped_column(
        _enum(DisposalState, "disposal_state"), default=DisposalState.REQUESTED
    )
    # Who asked and who approved: a token or user id, and the label a person reads.
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_by_label: Mapped[str] = mapped_column(String(255), default="")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_by_label: Mapped[str | None] = mapped_column(String(255))
    approved_at: Mapped[datetime | None] = mapped_column()
    reclaimable_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Audit(Base):
    """One fixity audit run (CLI, API or beat): its bounds, its progress and its report."""

    __tablename__ = "audits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    # None: every tenant's copies (an admin's audit).
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    site: Mapped[str | None] = mapped_column(String(32))
    requested_by_label: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[AuditState] = mapped_column(
        _enum(AuditState, "audit_state"), default=AuditState.QUEUED
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    copies_done: Mapped[int] = mapped_column(Integer, default=0)
    copies_total: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What the run was asked to stay within (None: unbounded).
    max_cartridges: Mapped[int | None] = mapped_column(Integer)
    max_hours: Mapped[float | None] = mapped_column(Float)


class Migration(Base):
    """A curator's migration request: what was chosen, under which policy, and how it went.

    The policy is kept whole (``policy``), not by path: a worker on another
    machine must apply exactly the rules the curator previewed.
    """

    __tablename__ = "migrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    # None: an administrator's request over every tenant.
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    requested_by_label: Mapped[str] = mapped_column(String(255), default="")
    selection: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy_sha256: Mapped[str] = mapped_column(String(64), default="")
    mode: Mapped[str] = mapped_column(String(16), default="best-effort")
    state: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)


class MigrationItem(Base):
    """One AIP of a migration: the unit a worker takes (one Celery task per AIP)."""

    __tablename__ = "migration_items"
    __table_args__ = (UniqueConstraint("migration_id", "aip_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[str] = mapped_column(ForeignKey("migrations.id"), index=True)
    aip_id: Mapped[str] = mapped_column(ForeignKey("aips.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    step: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int | None] = mapped_column(Integer)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    files_failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MigrationFile(Base):
    """One file's conversion: the action, the tool and its version, every check, the outcome."""

    __tablename__ = "migration_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("migration_items.id"), index=True)
    source_file_id: Mapped[int] = mapped_column(ForeignKey("files.id"))
    action_id: Mapped[str] = mapped_column(String(64))
    target_puid: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    aip_path: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    sha512: Mapped[str | None] = mapped_column(String(128))
    tool: Mapped[str | None] = mapped_column(String(64))
    tool_version: Mapped[str | None] = mapped_column(String(255))
    command: Mapped[list[str] | None] = mapped_column(JSON)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    identification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    validation: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    seconds_tool: Mapped[float | None] = mapped_column(Float)
    seconds_verify: Mapped[float | None] = mapped_column(Float)


class DIPState(enum.StrEnum):
    """Where a DIP request is: waiting for its batch, on tape, being packed, or done."""

    QUEUED = "queued"
    RECALLING = "recalling"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


class DIP(Base):
    """A user's request for a Dissemination Information Package, and the package once built.

    Operational state, not archive content: a lost row loses a cached download,
    never a file (the DIP is rebuilt from tape on request). The zip itself lives
    under the data root's DIP cache until ``expires_at`` or the cache's size cap.
    """

    __tablename__ = "dips"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    aip_id: Mapped[str] = mapped_column(ForeignKey("aips.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    files_glob: Mapped[str | None] = mapped_column(Text)
    requested_by_label: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default=DIPState.QUEUED, index=True)
    # The recall batch that took the request (None while it waits for its window).
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # A request sent back to the queue (drives busy, a site down) waits until then;
    # ``attempts`` counts those returns, for the backoff.
    not_before: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Live progress: cartridges mounted, bytes read of bytes to read, files packed.
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    zip_size: Mapped[int | None] = mapped_column(BigInteger)
    zip_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    ready_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# -- Legal value (preservation/evidence/) ---------------------------------------------------------


class JournalSegment(Base):
    """A run of one tenant's event chain, cut to travel on tape and be time-stamped.

    ``head_hash`` is the hash of event ``last_seq``; ``token`` the RFC 3161
    time-stamp whose imprint is that hash (None while the TSA is away). The
    segment's bytes are regenerated from the events and must hash to ``sha256``
    before they are written: a chain edited since the cut is caught there.
    """

    __tablename__ = "journal_segments"
    __table_args__ = (UniqueConstraint("tenant_id", "first_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    head_hash: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    token: Mapped[bytes | None] = mapped_column(LargeBinary)
    stamped_at: Mapped[datetime | None] = mapped_column()
    stamp_error: Mapped[str | None] = mapped_column(Text)


class EvidenceStamp(Base):
    """One RFC 3161 time-stamp over one hash tree (RFC 4998 ArchiveTimeStamp).

    ``initial``: the tree over one period's committed versions; ``renewal``
    (§5.2): over the time-stamps of earlier stamps; ``rehash`` (§5.3): a new
    chain over the versions with a stronger algorithm. ``renewed_by`` points
    at the stamp that renewed this one; ``closed`` marks a chain a hash-tree
    renewal ended (it is never renewed again).
    """

    __tablename__ = "evidence_stamps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(16))
    root: Mapped[bytes] = mapped_column(LargeBinary)
    leaves: Mapped[int] = mapped_column(Integer)
    token: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stamped_at: Mapped[datetime | None] = mapped_column()
    stamp_error: Mapped[str | None] = mapped_column(Text)
    renewed_by: Mapped[int | None] = mapped_column(ForeignKey("evidence_stamps.id"), index=True)
    closed: Mapped[bool] = mapped_column(default=False)


class EvidenceLeaf(Base):
    """One leaf group of a stamp's tree, with its reduced hash tree (RFC 4998 §4.2).

    A leaf is an AIP version (its tar and METS hashes) or, for a renewal, an
    earlier stamp (the hash of its time-stamp). ``hashes`` is the group's
    hashes concatenated; ``reduced`` the packed PartialHashtree lists.
    """

    __tablename__ = "evidence_leaves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stamp_id: Mapped[int] = mapped_column(ForeignKey("evidence_stamps.id"), index=True)
    aip_version_id: Mapped[int | None] = mapped_column(ForeignKey("aip_versions.id"), index=True)
    covers_stamp_id: Mapped[int | None] = mapped_column(
        ForeignKey("evidence_stamps.id"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)
    reduced: Mapped[bytes] = mapped_column(LargeBinary)


class JournalFile(Base):
    """A file of the tape journal (segment, its time-stamp, an evidence bundle)."""

    __tablename__ = "journal_files"
    __table_args__ = (UniqueConstraint("tenant_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("journal_segments.id"))
    stamp_id: Mapped[int | None] = mapped_column(ForeignKey("evidence_stamps.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JournalCopy(Base):
    """Where a journal file was written, read back and matched, at one site."""

    __tablename__ = "journal_copies"
    __table_args__ = (UniqueConstraint("file_id", "site"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("journal_files.id"), index=True)
    site: Mapped[str] = mapped_column(String(32))
    barcode: Mapped[str] = mapped_column(String(16))
    start_block: Mapped[int | None] = mapped_column(BigInteger)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)
