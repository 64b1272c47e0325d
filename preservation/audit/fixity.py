"""One fixity audit over the copies on tape, shared by the CLI and the audit worker.

The verdicts are recorded where they are needed by ``audit_copy`` itself: a
PREMIS ``fixity check`` event per copy, a failed copy marked FAILED so that
``preservation repair`` replaces it. A copy whose site is down or whose drive
or cartridge is held elsewhere is *skipped*: no verdict, the next audit reads
it. What this module adds is the order (cartridge by cartridge, in tape
position, so a cartridge is mounted once per audit) and the summary.

Reading copies back only proves the copies that exist. An active version
with fewer verified copies than there are sites (one lost to a failed
cartridge, a row discarded by hand) breaks the archive's promise just as a
bad checksum does, so the audit also counts copies per version and reports
every version short of one verified copy per site as a finding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from preservation.context import Context
from preservation.errors import DeviceBusyError, NotFoundError, SiteUnavailableError

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


@dataclass(frozen=True)
class ReplicationFinding:
    """An active version that lacks a verified copy at some site."""

    aip_id: str
    version: int
    verified_sites: tuple[str, ...]
    missing_sites: tuple[str, ...]


@dataclass
class AuditReport:
    site: str | None
    copies: list[CopyVerdict] = field(default_factory=list)
    under_replicated: list[ReplicationFinding] = field(default_factory=list)

    @property
    def failed(self) -> list[CopyVerdict]:
        return [c for c in self.copies if c.result == "failed"]

    @property
    def skipped(self) -> list[CopyVerdict]:
        return [c for c in self.copies if c.result == "skipped"]

    @property
    def clean(self) -> bool:
        """Every copy read and matched, nothing left unread, every version whole."""
        return not self.failed and not self.skipped and not self.under_replicated

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "ok": self.clean,
            "checked": len(self.copies),
            "matched": len(self.copies) - len(self.failed) - len(self.skipped),
            "failed": [asdict(c) for c in self.failed],
            "skipped": [asdict(c) for c in self.skipped],
            "under_replicated": [asdict(f) for f in self.under_replicated],
            "copies": [asdict(c) for c in self.copies],
        }


def plan_audit(
    ctx: Context, site: str | None = None, *, tenant: str | None = None
) -> list[dict[str, Any]]:
    """The verified copies to read (one site's or all; one tenant's or all), in tape order."""
    from preservation.storage.service import list_cartridges, show_cartridge

    owned: set[str] | None = None
    if tenant is not None:
        from sqlalchemy import select

        from preservation.catalog import AIP
        from preservation.catalog.database import session_scope

        with session_scope(ctx.sessions) as session:
            owned = set(session.scalars(select(AIP.id).where(AIP.tenant_id == tenant)))
    plan: list[dict[str, Any]] = []
    for cartridge in list_cartridges(ctx, site):
        if cartridge["copies"].get("verified"):
            contents = show_cartridge(ctx, cartridge["barcode"])["contents"]
            plan.extend(
                c
                for c in contents
                if c["status"] == "verified"
                and c.get("aip_state") != "disposed"  # leaving the tapes, not kept
                and (owned is None or c["aip_id"] in owned)
            )
    return plan


def audit_copies(
    ctx: Context,
    site: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    tenant: str | None = None,
) -> AuditReport:
    """Read back every verified copy (of one site, or all) and return the verdicts."""
    from preservation.storage.recovery import audit_copy

    plan = plan_audit(ctx, site, tenant=tenant)
    report = AuditReport(site=site)
    if progress:
        progress(0, len(plan))
    for done, copy in enumerate(plan, 1):
        try:
            verdict = audit_copy(ctx, copy["id"])
            result, detail = ("ok" if verdict.ok else "failed"), verdict.detail
        except (SiteUnavailableError, DeviceBusyError) as err:
            result, detail = "skipped", err.message  # not audited: not a verdict
        except NotFoundError:  # disposed of since the plan was made: no longer ours to audit
            if progress:
                progress(done, len(plan))
            continue
        report.copies.append(
            CopyVerdict(
                copy_id=copy["id"],
                aip_id=copy["aip_id"],
                version=copy["version"],
                site=copy["site"],
                barcode=copy["barcode"],
                path=copy["path"],
                result=result,
                detail=detail,
            )
        )
        if progress:
            progress(done, len(plan))
    report.under_replicated = [
        f
        for f in under_replicated_versions(ctx, site)
        if tenant is None or f.aip_id in {c["aip_id"] for c in plan} or _owned(ctx, f, tenant)
    ]
    return report


def _owned(ctx: Context, finding: ReplicationFinding, tenant: str) -> bool:
    from preservation.catalog import AIP
    from preservation.catalog.database import session_scope

    with session_scope(ctx.sessions) as session:
        aip = session.get(AIP, finding.aip_id)
        return aip is not None and aip.tenant_id == tenant


def under_replicated_versions(ctx: Context, site: str | None = None) -> list[ReplicationFinding]:
    """Active versions without a verified copy on a healthy cartridge at every site.

    Read after the copies are checked, so a copy this audit just failed
    counts as missing. With ``site``, only versions missing that site's copy.
    """
    from sqlalchemy import select

    from preservation.catalog import AIP, AIPState, AIPVersion, Cartridge, CopyStatus, TapeCopy
    from preservation.catalog.database import session_scope
    from preservation.storage.planning import BAD_CARTRIDGE_STATES

    sites = tuple(ctx.settings.sites)
    verified: dict[tuple[str, int], set[str]] = {}
    with session_scope(ctx.sessions) as session:
        for aip_id, number in session.execute(
            select(AIPVersion.aip_id, AIPVersion.number)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(AIP.state == AIPState.ACTIVE, AIPVersion.committed_at.is_not(None))
        ):
            verified[(aip_id, number)] = set()
        for aip_id, number, copy_site, cstate in session.execute(
            select(AIPVersion.aip_id, AIPVersion.number, TapeCopy.site, Cartridge.state)
            .join(TapeCopy, TapeCopy.aip_version_id == AIPVersion.id)
            .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(AIP.state == AIPState.ACTIVE, TapeCopy.status == CopyStatus.VERIFIED)
        ):
            if (aip_id, number) in verified and cstate not in BAD_CARTRIDGE_STATES:
                verified[(aip_id, number)].add(copy_site)
    findings = []
    for (aip_id, number), have in sorted(verified.items()):
        missing = tuple(s for s in sites if s not in have)
        if missing and (site is None or site in missing):
            findings.append(ReplicationFinding(aip_id, number, tuple(sorted(have)), missing))
    return findings
