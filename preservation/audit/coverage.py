"""Audit coverage: is every copy checked within its tenant's interval, and which are overdue?

An audit report says what one run found; an auditor of the archive (ISO
16363 asks for it) wants the standing answer: per site, how many copies and
bytes were read back within the interval their tenant promised
(``audit_interval`` in the archiving rules, a year by default), and which
ones were not. A copy's last check is its ``verified_at``: the read-back
after it was written, or the latest audit, whichever came last. The same
figures are Prometheus gauges (``preservation.monitoring``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select

from preservation.catalog import AIP, AIPState, AIPVersion, Cartridge, CopyStatus, TapeCopy
from preservation.catalog.database import session_scope
from preservation.catalog.models import utcnow
from preservation.context import Context
from preservation.rules import Period, load_rules, rules_for

__all__ = ["CoverageReport", "OverdueCopy", "SiteCoverage", "coverage"]

#: Overdue copies listed by name in a report (the counts are always complete).
OVERDUE_LISTED = 100


@dataclass(frozen=True)
class OverdueCopy:
    copy_id: int
    tenant: str
    aip_id: str
    version: int
    barcode: str
    length: int
    checked_at: datetime | None
    due: datetime | None


@dataclass
class SiteCoverage:
    site: str
    copies: int = 0
    bytes: int = 0
    checked_copies: int = 0
    checked_bytes: int = 0
    by_tenant: dict[str, dict[str, int]] = field(default_factory=dict)
    overdue: list[OverdueCopy] = field(default_factory=list)
    #: Active versions with no verified copy on a healthy cartridge here: nothing to
    #: check, which is worse than overdue (a failed copy waiting for repair).
    missing: list[dict[str, Any]] = field(default_factory=list)

    @property
    def overdue_copies(self) -> int:
        return self.copies - self.checked_copies

    @property
    def overdue_bytes(self) -> int:
        return self.bytes - self.checked_bytes

    @property
    def ratio(self) -> float:
        return 1.0 if not self.copies else self.checked_copies / self.copies

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "copies": self.copies,
            "bytes": self.bytes,
            "checked_copies": self.checked_copies,
            "checked_bytes": self.checked_bytes,
            "overdue_copies": self.overdue_copies,
            "overdue_bytes": self.overdue_bytes,
            "ratio": round(self.ratio, 6),
            "missing_copies": len(self.missing),
            "missing": self.missing[:OVERDUE_LISTED],
            "by_tenant": self.by_tenant,
            "overdue": [
                asdict(o)
                | {
                    "checked_at": o.checked_at.isoformat() if o.checked_at else None,
                    "due": o.due.isoformat() if o.due else None,
                }
                for o in self.overdue
            ],
        }


@dataclass
class CoverageReport:
    at: datetime
    tenant: str | None
    intervals: dict[str, str]
    sites: list[SiteCoverage]

    @property
    def complete(self) -> bool:
        return all(s.overdue_copies == 0 and not s.missing for s in self.sites)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "tenant": self.tenant,
            "complete": self.complete,
            "intervals": self.intervals,
            "sites": [s.to_dict() for s in self.sites],
        }


def _missing(session: Any, ctx: Context, tenant: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(site, version) for each active version lacking a healthy verified copy at a site."""
    from preservation.audit.fixity import under_replicated_versions

    findings = under_replicated_versions(ctx, tenant=tenant)
    owner = dict(
        session.execute(
            select(AIP.id, AIP.tenant_id).where(AIP.id.in_({f.aip_id for f in findings}))
        ).all()
    )
    return [
        (site, {"tenant": owner.get(f.aip_id), "aip_id": f.aip_id, "version": f.version})
        for f in findings
        for site in f.missing_sites
        if tenant is None or owner.get(f.aip_id) == tenant
    ]


def _before(period: Period, moment: datetime) -> datetime:
    """``moment`` minus the period, by the calendar (the inverse of ``Period.after``)."""
    negative = Period(-period.years, -period.months, 0)
    return negative.after(moment) - timedelta(days=period.days)


def coverage(
    ctx: Context, *, tenant: str | None = None, now: datetime | None = None
) -> CoverageReport:
    """Per site: copies and bytes checked within their tenant's interval, and the overdue ones.

    Counted in the database, one grouped query per distinct interval (most
    tenants share the default), so a scrape of a large catalogue stays cheap.
    Copies of disposed AIPs and copies on failed, suspect or retired
    cartridges do not count: they are not what the archive promises to keep.
    """
    from preservation.storage.planning import BAD_CARTRIDGE_STATES

    now = now or utcnow()
    document = load_rules(ctx.settings)
    live = and_(
        TapeCopy.status == CopyStatus.VERIFIED,
        AIP.state != AIPState.DISPOSED,
        Cartridge.state.not_in(list(BAD_CARTRIDGE_STATES)),
    )

    def joined(query: Any) -> Any:
        return (
            query.select_from(TapeCopy)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
            .where(live)
        )

    sites = {name: SiteCoverage(name) for name in ctx.settings.sites}
    with session_scope(ctx.sessions) as session:
        tenants_query = joined(select(AIP.tenant_id).distinct())
        if tenant is not None:
            tenants_query = tenants_query.where(AIP.tenant_id == tenant)
        tenants = sorted(session.scalars(tenants_query))
        intervals = {t: rules_for(ctx.settings, t, document).audit_interval for t in tenants}
        groups: dict[Period, list[str]] = {}
        for t, period in intervals.items():
            groups.setdefault(period, []).append(t)
        overdue: list[tuple[OverdueCopy, str]] = []
        for period, members in groups.items():
            cutoff = _before(period, now)
            fresh = TapeCopy.verified_at >= cutoff
            rows = session.execute(
                joined(
                    select(
                        TapeCopy.site,
                        AIP.tenant_id,
                        func.count(),
                        func.coalesce(func.sum(TapeCopy.length), 0),
                        func.coalesce(func.sum(case((fresh, 1), else_=0)), 0),
                        func.coalesce(func.sum(case((fresh, TapeCopy.length), else_=0)), 0),
                    )
                )
                .where(AIP.tenant_id.in_(members))
                .group_by(TapeCopy.site, AIP.tenant_id)
            )
            for site, t, n, nbytes, fresh_n, fresh_bytes in rows:
                s = sites.setdefault(site, SiteCoverage(site))
                s.copies += int(n)
                s.bytes += int(nbytes)
                s.checked_copies += int(fresh_n)
                s.checked_bytes += int(fresh_bytes)
                s.by_tenant[t] = {
                    "copies": int(n),
                    "bytes": int(nbytes),
                    "checked_copies": int(fresh_n),
                    "checked_bytes": int(fresh_bytes),
                }
            late = session.execute(
                joined(
                    select(
                        TapeCopy.id,
                        AIP.tenant_id,
                        AIPVersion.aip_id,
                        AIPVersion.number,
                        TapeCopy.barcode,
                        TapeCopy.length,
                        TapeCopy.verified_at,
                        TapeCopy.site,
                    )
                )
                .where(AIP.tenant_id.in_(members))
                .where((TapeCopy.verified_at < cutoff) | TapeCopy.verified_at.is_(None))
                .order_by(TapeCopy.verified_at.asc().nulls_first(), TapeCopy.id)
                .limit(OVERDUE_LISTED)
            )
            for cid, t, aip_id, number, barcode, length, checked, site in late:
                due = period.after(checked) if checked is not None else None
                overdue.append(
                    (OverdueCopy(cid, t, aip_id, number, barcode, length, checked, due), site)
                )
        missing = _missing(session, ctx, tenant)
    overdue.sort(key=lambda pair: (pair[0].checked_at is not None, pair[0].checked_at or now))
    for site, entry in missing:
        sites.setdefault(site, SiteCoverage(site)).missing.append(entry)
    for o, site in overdue:
        s = sites[site]
        if len(s.overdue) < OVERDUE_LISTED:
            s.overdue.append(o)
    return CoverageReport(
        at=now,
        tenant=tenant,
        intervals={t: str(p) for t, p in intervals.items()},
        sites=[sites[name] for name in sorted(sites)],
    )
