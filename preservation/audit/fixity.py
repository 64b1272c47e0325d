"""One fixity audit over the copies on tape, shared by the CLI and the audit worker.

The verdicts are recorded where they are needed by ``audit_copy`` itself: a
PREMIS ``fixity check`` event per copy, a failed copy marked FAILED so that
``preservation repair`` replaces it. A copy whose site is down or whose drive
or cartridge is held elsewhere is *skipped*: no verdict, the next audit reads
it. What this module adds is the order (the stalest cartridge first, each
read in block order in one mount: ``audit.scheduling``), the bounds of a run,
the repair of what failed, and the report.

Reading copies back only proves the copies that exist. An active version
with fewer verified copies than there are sites (one lost to a failed
cartridge, a row discarded by hand) breaks the archive's promise just as a
bad checksum does, so the audit also counts copies per version and reports
every version short of one verified copy per site as a finding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from preservation.audit.scheduling import CartridgeRound, CopyToCheck, bound_rounds, oldest_first
from preservation.catalog.models import utcnow
from preservation.context import Context
from preservation.errors import (
    DeviceBusyError,
    NotFoundError,
    PreservationError,
    SiteUnavailableError,
)

__all__ = [
    "AuditReport",
    "CopyVerdict",
    "ReplicationFinding",
    "audit_copies",
    "plan_audit",
    "under_replicated_versions",
]


@dataclass(frozen=True)
class CopyVerdict:
    copy_id: int
    aip_id: str
    version: int
    site: str
    barcode: str
    path: str
    result: str  # "ok", "failed" or "skipped"
    detail: str
    length: int = 0


@dataclass(frozen=True)
class ReplicationFinding:
    """An active version that lacks a verified copy at some site."""

    aip_id: str
    version: int
    verified_sites: tuple[str, ...]
    missing_sites: tuple[str, ...]


@dataclass
class AuditReport:
    """One run: what was read, what failed and was repaired, and what the bounds left over."""

    site: str | None
    tenant: str | None = None
    copies: list[CopyVerdict] = field(default_factory=list)
    under_replicated: list[ReplicationFinding] = field(default_factory=list)
    cartridges: list[str] = field(default_factory=list)
    #: Cartridges planned but not begun because ``max_hours`` was spent.
    deferred_cartridges: int = 0
    repairs: list[dict[str, Any]] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[CopyVerdict]:
        return [c for c in self.copies if c.result == "failed"]

    @property
    def skipped(self) -> list[CopyVerdict]:
        return [c for c in self.copies if c.result == "skipped"]

    @property
    def unrepaired(self) -> list[dict[str, Any]]:
        done = {r["copy_id"] for r in self.repairs if r["repaired"] and r["rechecked"] == "ok"}
        return [asdict(c) for c in self.failed if c.copy_id not in done]

    @property
    def clean(self) -> bool:
        """Every copy read and matched (or repaired and re-checked), nothing unread, all whole."""
        return not self.unrepaired and not self.skipped and not self.under_replicated

    @property
    def bytes_read(self) -> int:
        return sum(c.length for c in self.copies if c.result != "skipped")

    def summary_line(self) -> str:
        ok = len(self.copies) - len(self.failed) - len(self.skipped)
        repaired = sum(1 for r in self.repairs if r["repaired"] and r["rechecked"] == "ok")
        parts = [
            f"audited {len(self.copies)} copies on {len(self.cartridges)} cartridges "
            f"({self.bytes_read:,} bytes, {self.seconds:.1f} s): {ok} ok, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped"
        ]
        if self.failed:
            parts.append(f"{repaired} repaired and re-checked")
        if self.deferred_cartridges:
            parts.append(f"{self.deferred_cartridges} cartridges left for the next run")
        if self.under_replicated:
            parts.append(f"{len(self.under_replicated)} versions under-replicated")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "tenant": self.tenant,
            "ok": self.clean,
            "summary": self.summary_line(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": self.seconds,
            "cartridges": self.cartridges,
            "deferred_cartridges": self.deferred_cartridges,
            "checked": len(self.copies),
            "matched": len(self.copies) - len(self.failed) - len(self.skipped),
            "bytes": self.bytes_read,
            "failed": [asdict(c) for c in self.failed],
            "repairs": self.repairs,
            "unrepaired": self.unrepaired,
            "skipped": [asdict(c) for c in self.skipped],
            "under_replicated": [asdict(f) for f in self.under_replicated],
            "copies": [asdict(c) for c in self.copies],
        }


def plan_audit(
    ctx: Context, site: str | None = None, *, tenant: str | None = None
) -> list[CartridgeRound]:
    """The verified copies to read (a site's or all, a tenant's or all), stalest cartridge first.

    One query: a catalogue of a million copies is planned without a query per
    cartridge. Copies of disposed AIPs are leaving the tapes and are not read.
    """
    from sqlalchemy import select

    from preservation.catalog import AIP, AIPState, AIPVersion, CopyStatus, TapeCopy
    from preservation.catalog.database import session_scope

    query = (
        select(
            TapeCopy.id,
            AIPVersion.aip_id,
            AIPVersion.number,
            TapeCopy.site,
            TapeCopy.barcode,
            TapeCopy.path,
            TapeCopy.start_block,
            TapeCopy.length,
            TapeCopy.verified_at,
        )
        .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
        .join(AIP, AIP.id == AIPVersion.aip_id)
        .where(TapeCopy.status == CopyStatus.VERIFIED, AIP.state != AIPState.DISPOSED)
    )
    if site is not None:
        query = query.where(TapeCopy.site == site)
    if tenant is not None:
        query = query.where(AIP.tenant_id == tenant)
    with session_scope(ctx.sessions) as session:
        copies = [
            CopyToCheck(
                copy_id=row[0],
                aip_id=row[1],
                version=row[2],
                site=row[3],
                barcode=row[4],
                path=row[5],
                start_block=row[6] or 0,
                length=row[7],
                checked_at=row[8],
            )
            for row in session.execute(query)
        ]
    return oldest_first(copies)


def audit_copies(
    ctx: Context,
    site: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    tenant: str | None = None,
    max_cartridges: int | None = None,
    max_hours: float | None = None,
    repair: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> AuditReport:
    """Read back the stalest cartridges' verified copies; repair and re-check what failed.

    ``max_cartridges`` and ``max_hours`` bound the run; the hours by the wall
    clock, checked before each cartridge (a cartridge once begun is read to
    its end, so no copy is left half-judged). What the bounds leave is the
    next run's first work, since it is now the stalest. With ``repair`` a
    failed copy is rebuilt from another site's copy at once (the storage
    repair, which reads the source, writes a fresh copy and reads it back)
    and the new copy is then audited like any other.
    """
    from preservation.storage.recovery import audit_copy
    from preservation.storage.service import ensure_sites

    ensure_sites(ctx)  # a data root the libraries cannot use is refused, not audited as nothing
    started, began = utcnow(), clock()
    rounds = bound_rounds(plan_audit(ctx, site, tenant=tenant), max_cartridges=max_cartridges)
    total = sum(len(r.copies) for r in rounds)
    report = AuditReport(site=site, tenant=tenant, started_at=started)
    if progress:
        progress(0, total)
    done = 0
    for index, r in enumerate(rounds):
        if max_hours is not None and index and clock() - began >= max_hours * 3600:
            report.deferred_cartridges = len(rounds) - index
            total = done
            break
        report.cartridges.append(r.barcode)
        for copy in r.copies:
            done += 1
            verdict = _check(audit_copy, ctx, copy)
            if verdict is not None:
                report.copies.append(verdict)
            if progress:
                progress(done, total)
        _give_back(ctx, r)
    if repair and report.failed:
        report.repairs = _repair_and_recheck(ctx, report.failed)
    report.under_replicated = under_replicated_versions(ctx, site, tenant=tenant)
    report.finished_at = utcnow()
    report.seconds = round(clock() - began, 3)
    return report


def _give_back(ctx: Context, r: CartridgeRound) -> None:
    """Unload a cartridge once read: the audit never comes back to it, other work may."""
    from preservation.storage.sites import get_site

    try:
        get_site(ctx, r.site).release(r.barcode)
    except PreservationError:  # a site gone down meanwhile: nothing of ours is loaded there
        pass


def _check(
    audit_copy: Callable[[Context, int], Any], ctx: Context, copy: CopyToCheck
) -> CopyVerdict | None:
    """One copy read back; None when it was disposed of since the plan was made."""
    try:
        verdict = audit_copy(ctx, copy.copy_id)
        result, detail = ("ok" if verdict.ok else "failed"), verdict.detail
    except (SiteUnavailableError, DeviceBusyError) as err:
        result, detail = "skipped", err.message  # not audited: not a verdict
    except NotFoundError:
        return None
    return CopyVerdict(
        copy_id=copy.copy_id,
        aip_id=copy.aip_id,
        version=copy.version,
        site=copy.site,
        barcode=copy.barcode,
        path=copy.path,
        result=result,
        detail=detail,
        length=copy.length,
    )


def _repair_and_recheck(ctx: Context, failed: list[CopyVerdict]) -> list[dict[str, Any]]:
    """Rebuild each failed copy from another site, then audit the new copy like any other."""
    from preservation.storage.recovery import audit_copy
    from preservation.storage.recovery import repair as repair_storage

    try:
        outcome = repair_storage(ctx)
    except PreservationError as err:
        return [
            {"copy_id": f.copy_id, "repaired": False, "detail": f"repair failed: {err}"}
            for f in failed
        ]
    rebuilt = {old: entry for entry in outcome.rebuilt for old in entry["replaces"]}
    repairs: list[dict[str, Any]] = []
    for f in failed:
        entry = rebuilt.get(f.copy_id)
        if entry is None:
            why = next(
                (
                    x.get("error") or x.get("reason")
                    for x in outcome.failed + outcome.skipped
                    if x["site"] == f.site
                ),
                "the repair did not rebuild it",
            )
            repairs.append({"copy_id": f.copy_id, "repaired": False, "detail": str(why)})
            continue
        try:
            again = audit_copy(ctx, entry["copy_id"])
            ok, detail = again.ok, again.detail
        except PreservationError as err:
            ok, detail = False, err.message
        repairs.append(
            {
                "copy_id": f.copy_id,
                "repaired": True,
                "new_copy_id": entry["copy_id"],
                "barcode": entry["barcode"],
                "source": entry["source"],
                "rechecked": "ok" if ok else "failed",
                "detail": detail,
            }
        )
    return repairs


def under_replicated_versions(
    ctx: Context, site: str | None = None, *, tenant: str | None = None
) -> list[ReplicationFinding]:
    """Active versions without a verified copy on a healthy cartridge at every site.

    Read after the copies are checked, so a copy this audit just failed
    counts as missing. With ``site``, only versions missing that site's copy;
    with ``tenant``, only that tenant's. The versions are counted against
    their good sites in the database (one grouped query), and only the few
    that fall short come back to Python: the dashboard asks this of a
    catalogue of millions of versions.
    """
    from sqlalchemy import func, select

    from preservation.catalog import AIP, AIPState, AIPVersion, Cartridge, CopyStatus, TapeCopy
    from preservation.catalog.database import session_scope
    from preservation.storage.planning import BAD_CARTRIDGE_STATES

    sites = tuple(ctx.settings.sites)
    good = (
        select(TapeCopy.aip_version_id, TapeCopy.site)
        .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
        .where(
            TapeCopy.status == CopyStatus.VERIFIED,
            Cartridge.state.not_in(list(BAD_CARTRIDGE_STATES)),
            TapeCopy.site.in_(sites),
        )
        .distinct()
        .subquery()
    )
    short = (
        select(AIPVersion.id, AIPVersion.aip_id, AIPVersion.number)
        .join(AIP, AIP.id == AIPVersion.aip_id)
        .outerjoin(good, good.c.aip_version_id == AIPVersion.id)
        .where(AIP.state == AIPState.ACTIVE, AIPVersion.committed_at.is_not(None))
        .group_by(AIPVersion.id, AIPVersion.aip_id, AIPVersion.number)
        .having(func.count(good.c.site) < len(sites))
    )
    if tenant is not None:
        short = short.where(AIP.tenant_id == tenant)
    with session_scope(ctx.sessions) as session:
        rows = session.execute(short).all()
        have: dict[int, set[str]] = {version_id: set() for version_id, _, _ in rows}
        for start in range(0, len(rows), 1000):
            chunk = [version_id for version_id, _, _ in rows[start : start + 1000]]
            for version_id, copy_site in session.execute(
                select(good.c.aip_version_id, good.c.site).where(
                    good.c.aip_version_id.in_(chunk)
                )
            ):
                have[version_id].add(copy_site)
    findings = []
    for version_id, aip_id, number in sorted(rows, key=lambda r: (r[1], r[2])):
        missing = tuple(s for s in sites if s not in have[version_id])
        if missing and (site is None or site in missing):
            findings.append(
                ReplicationFinding(aip_id, number, tuple(sorted(have[version_id])), missing)
            )
    return findings
