"""The format risk report: what the archive holds, format by format, and what the policy does.

A curator deciding what to migrate first asks, per PRONOM id: how many files
and bytes, how sure identification was (extension-only matches, files with no
PUID at all), how many a validator found malformed, and whether the format
policy already names a preservation action. The API (``GET /api/v1/formats``)
and the CLI (``preservation formats report``) both call :func:`format_report`.

Counting is one grouped query in the catalogue, never a walk over file rows
in Python: a million files cost one pass and a few hundred result rows, about
a second on SQLite and under half a second on PostgreSQL. The policy is
consulted afterwards, once per format, not once per file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from preservation.catalog.models import AIP, AIPState, AIPVersion, File, Tenant
from preservation.errors import NotFoundError
from preservation.tenants import check_tenant_id

if TYPE_CHECKING:
    from preservation.config import Settings

__all__ = [
    "FormatAction",
    "FormatPolicy",
    "FormatReport",
    "FormatRow",
    "FormatTotals",
    "PolicyRef",
    "aips_per_format",
    "current_files_filter",
    "format_report",
    "load_format_policy",
    "policy_path",
]

#: The basis identification records for a match on the file name alone (identify/).
EXTENSION_BASIS = "extension"
#: An AIP in these states holds files the archive keeps; disposed and discarded ones do not.
_LIVE_STATES = (AIPState.ACTIVE, AIPState.PENDING)


class _Action(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def target_puid(self) -> str: ...


class _Rule(Protocol):
    @property
    def preservation(self) -> Sequence[_Action]: ...


class FormatPolicy(Protocol):
    """What the report needs of ``preservation.migrate.policy.Policy``, and no more."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    def rule_for(self, puid: str) -> _Rule | None: ...


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class FormatAction(_View):
    id: str
    target_puid: str


class PolicyRef(_View):
    """Which policy the actions come from, as a migration request records it."""

    name: str
    source: str
    sha256: str


class FormatRow(_View):
    # None: the files no engine could identify, counted on one row.
    puid: str | None
    format_name: str | None
    format_version: str | None
    files: int
    bytes: int
    # Identified by file name alone: the weakest evidence, the first to doubt.
    by_extension: int
    unidentified: int
    # Found malformed by a format validator (files.valid IS FALSE).
    invalid: int
    # The policy's preservation actions for this PUID; empty when it names none.
    actions: list[FormatAction]


class FormatTotals(_View):
    formats: int
    files: int
    bytes: int
    by_extension: int
    unidentified: int
    invalid: int
    # Files in a format the policy has a preservation action for.
    with_action: int


class FormatReport(_View):
    tenant: str | None
    policy: PolicyRef
    formats: list[FormatRow]
    totals: FormatTotals


def current_files_filter() -> ColumnElement[bool]:
    """The file rows that stand for what an AIP holds now, not what it held.

    Format migration adds rows for its outputs and marks each source row
    ``superseded_in`` the version that replaced it, both once that version is
    committed (``migrate.version.make_current``); the source stays on tape
    and in the catalogue. Counting both would report a migrated format as
    still held, and invite migrating it again. Every count of "files the
    archive holds" goes through this one condition, so a change in how
    migration marks a replaced file is made here alone.
    """
    return File.superseded_in.is_(None)


def policy_path(settings: Settings, explicit: Path | None = None) -> Path | None:
    """The policy file to read: the one asked for, else the settings', else the default.

    ``None`` means the default policy shipped with the package. One place, so
    the CLI's ``--policy`` and the API cannot disagree about which file rules.
    """
    return explicit if explicit is not None else settings.migration_policy


def load_format_policy(settings: Settings, explicit: Path | None = None) -> FormatPolicy:
    """The policy :func:`policy_path` names, checked as a migration would check it."""
    # Imported here: the policy brings jsonschema and the migration tools, which
    # no other command that imports this module needs.
    from preservation.migrate.policy import load_policy

    policy: FormatPolicy = load_policy(policy_path(settings, explicit))
    return policy


def format_report(
    session: Session, tenant_id: str | None, policy: FormatPolicy
) -> FormatReport:
    """Files per PUID in committed, live AIPs of ``tenant_id`` (None: every tenant).

    Sorted by file count, largest first: the formats that matter most to a
    migration plan come first. An unknown tenant is not found rather than an
    empty report, so a typo is not mistaken for an empty archive.
    """
    if tenant_id is not None:
        check_tenant_id(tenant_id, source="tenant")
        if session.get(Tenant, tenant_id) is None:
            raise NotFoundError(f"no tenant {tenant_id!r}", rule="tenant", field="tenant")
    rows = [_row(r, policy) for r in session.execute(_grouped(tenant_id))]
    rows.sort(key=lambda r: (-r.files, r.puid is None, r.puid or ""))
    return FormatReport(
        tenant=tenant_id,
        policy=PolicyRef(name=policy.name, source=policy.source, sha256=policy.sha256),
        formats=rows,
        totals=_totals(rows),
    )


def _grouped(tenant_id: str | None) -> Any:
    """One GROUP BY over the files of committed versions of live AIPs.

    Every count is a conditional aggregate in the same pass, so the files are
    read once whatever the number of columns. The versions are chosen in a
    subquery rather than joined: given a join, SQLite (no planner statistics)
    walks ``ix_files_puid`` to skip the GROUP BY's sort and then looks up each
    file's version and AIP, a random read per file, twice as slow at a million
    files as reading them version by version and sorting.
    """
    live = (
        select(AIPVersion.id)
        .join(AIP, AIPVersion.aip_id == AIP.id)
        .where(AIPVersion.committed_at.is_not(None), AIP.state.in_(_LIVE_STATES))
    )
    if tenant_id is not None:
        live = live.where(AIP.tenant_id == tenant_id)
    return (
        select(
            File.puid,
            func.max(File.format_name),
            func.max(File.format_version),
            func.count(),
            func.coalesce(func.sum(File.size), 0),
            func.count(case((File.identification_basis == EXTENSION_BASIS, 1))),
            func.count(case((File.puid.is_(None), 1))),
            func.count(case((File.valid.is_(False), 1))),
        )
        .where(File.aip_version_id.in_(live), current_files_filter())
        .group_by(File.puid)
    )


def aips_per_format(session: Session, tenant_id: str | None) -> dict[str, int]:
    """How many AIPs of ``tenant_id`` (None: every tenant) hold or held each PUID.

    Read from the search's format index (``aip_formats``, a row per AIP and
    PUID; a disposal removes its AIP's rows), so the figure is the number of
    AIPs a search by that PUID finds, and costs one pass over a row per AIP
    and format rather than a second pass over every file. It counts every
    version: an AIP whose last file of a format was migrated still counts
    for it, as its earlier version still holds that file.
    """
    from preservation.catalog.models import AIPFormat

    stmt = select(AIPFormat.puid, func.count()).group_by(AIPFormat.puid)
    if tenant_id is not None:
        stmt = stmt.where(AIPFormat.tenant_id == tenant_id)
    return {puid: int(n) for puid, n in session.execute(stmt)}


def _row(r: Any, policy: FormatPolicy) -> FormatRow:
    puid, name, version, files, size, by_extension, unidentified, invalid = r
    rule = policy.rule_for(puid) if puid is not None else None
    return FormatRow(
        puid=puid,
        format_name=name,
        format_version=version,
        files=int(files),
        # PostgreSQL sums a bigint as numeric: a Decimal, made an int here.
        bytes=int(size or 0),
        by_extension=int(by_extension or 0),
        unidentified=int(unidentified or 0),
        invalid=int(invalid or 0),
        actions=[
            FormatAction(id=a.id, target_puid=a.target_puid)
            for a in (rule.preservation if rule is not None else ())
        ],
    )


def _totals(rows: Sequence[FormatRow]) -> FormatTotals:
    return FormatTotals(
        formats=sum(1 for r in rows if r.puid is not None),
        files=sum(r.files for r in rows),
        bytes=sum(r.bytes for r in rows),
        by_extension=sum(r.by_extension for r in rows),
        unidentified=sum(r.unidentified for r in rows),
        invalid=sum(r.invalid for r in rows),
        with_action=sum(r.files for r in rows if r.actions),
    )
