"""What needs a person: the archive read for an operator's morning look, part by part.

The console's dashboard and ``preservation status`` answer one question for a
tenant (``None``: an admin, every tenant): what is there, and what will not
sort itself out? Each part here is one bounded query, a grouped count or a
short list with a ``LIMIT`` beside a ``COUNT`` of the whole, so the answer
costs the same at 100,000 AIPs as at ten and a list cut short still says how
many there are. The parts already kept elsewhere are not repeated: rejected
SIPs with their reports are ``lookup.list_sip_views``, audit coverage
``audit.coverage``; disposals waiting for their second curator are
``retention``'s views, counted and cut short here (:func:`waiting_disposals`).

A SIP needs a person when nothing is working on it and it is not done: its
stage runner died (``interrupted``, as ``status`` says), it failed, or it has
been waiting longer than :data:`STUCK_AFTER` (a site down, a queue lost). A
SIP with a live lease is being worked on, however long it takes.

Bags that never became SIPs (a stray file set aside by the hot folder, rule
``not-a-bag``) are only on disk, in ``<ingest>/<tenant>/rejected/``, with the
same ``report.json`` a rejected SIP gets: :func:`set_aside_bags` reads the
newest of them, so a submitter's mistake is seen without a shell.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from preservation.audit.runs import AuditView, audit_view
from preservation.catalog.models import (
    AIP,
    SIP,
    AIPVersion,
    Audit,
    AuditState,
    Cartridge,
    CartridgeState,
    CopyStatus,
    Disposal,
    DisposalState,
    SIPState,
    TapeCopy,
)
from preservation.config import Settings
from preservation.lookup import Instant
from preservation.retention import DisposalView, disposal_view

__all__ = [
    "LISTED",
    "STUCK_AFTER",
    "FailedCopy",
    "SetAside",
    "SiteView",
    "StuckSIP",
    "aip_counts",
    "audits",
    "count_stuck_sips",
    "failed_copies",
    "set_aside_bags",
    "site_views",
    "stuck_sips",
    "waiting_disposals",
]

#: A SIP left this long with nothing working on it is shown as stuck.
STUCK_AFTER = timedelta(minutes=15)
#: At most this many of each kind are listed; the counts beside them are complete.
LISTED = 50
#: In-flight SIPs looked at for being stuck: the oldest first, where stuck ones are.
_IN_FLIGHT_READ = 500
_DONE = (SIPState.COMMITTED, SIPState.REJECTED)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class StuckSIP(_View):
    sip_id: str
    tenant: str
    name: str
    state: str
    stage: str | None
    # The stage's runner died: ``preservation resume`` finishes it.
    interrupted: bool
    updated_at: Instant
    last_error: str | None


class FailedCopy(_View):
    copy_id: int
    tenant: str
    aip_id: str
    version: int
    site: str
    barcode: str
    error: str | None
    written_at: Instant | None


class SetAside(_View):
    """A bag the hot folder set aside before it became a SIP, with its report's problems."""

    tenant: str
    name: str
    folder: str
    set_aside_at: Instant
    problems: list[dict[str, Any]]


class SiteView(_View):
    site: str
    library: str
    drives: int
    # Every cartridge state, zero included, in CartridgeState order.
    cartridges: dict[str, int]
    total: int


def _scope(stmt: Any, column: Any, tenant_id: str | None) -> Any:
    return stmt if tenant_id is None else stmt.where(column == tenant_id)


def aip_counts(session: Session, tenant_id: str | None) -> dict[str, int]:
    """AIPs by state: one grouped query."""
    stmt = _scope(select(AIP.state, func.count()).group_by(AIP.state), AIP.tenant_id, tenant_id)
    return {str(state.value): int(n) for state, n in session.execute(stmt)}


def stuck_sips(
    session: Session,
    tenant_id: str | None,
    *,
    now: datetime | None = None,
    limit: int = LISTED,
) -> list[StuckSIP]:
    """SIPs not done that nothing works on: interrupted, failed, or quiet too long; oldest first."""
    from preservation.sips import live_leases, stage_as_seen

    now = now or datetime.now(UTC)
    stmt = _scope(
        select(SIP).where(SIP.state.not_in(_DONE)).order_by(SIP.updated_at, SIP.id),
        SIP.tenant_id,
        tenant_id,
    )
    in_flight = list(session.scalars(stmt.limit(_IN_FLIGHT_READ)))
    live = live_leases(session, [s.id for s in in_flight], now)
    quiet_since = now - STUCK_AFTER
    found: list[StuckSIP] = []
    for sip in in_flight:
        if sip.id in live:
            continue
        stage, interrupted = stage_as_seen(sip.stage, alive=False)
        updated = (
            sip.updated_at.replace(tzinfo=UTC) if sip.updated_at.tzinfo is None else sip.updated_at
        )
        if not (interrupted or sip.state is SIPState.FAILED or updated < quiet_since):
            continue
        found.append(
            StuckSIP(
                sip_id=sip.id,
                tenant=sip.tenant_id,
                name=sip.name,
                state=sip.state.value,
                stage=stage or None,
                interrupted=interrupted,
                updated_at=updated,
                last_error=sip.last_error,
            )
        )
        if len(found) >= limit:
            break
    return found


def count_stuck_sips(
    session: Session, tenant_id: str | None, *, now: datetime | None = None
) -> int:
    """How many SIPs :func:`stuck_sips` would list without its limit: one ``COUNT``, twice.

    Whether a lease is live is decided in Python (a holder dead on this host
    is dead before its lease expires), so the SIPs that look stuck are
    counted, less those of them with a live lease: few, since leases are.
    """
    from preservation.sips import RUNNING, live_leases

    now = now or datetime.now(UTC)
    looks_stuck = _scope(
        select(func.count())
        .select_from(SIP)
        .where(
            SIP.state.not_in(_DONE),
            SIP.stage.endswith(RUNNING)
            | (SIP.state == SIPState.FAILED)
            | (SIP.updated_at < now - STUCK_AFTER),
        ),
        SIP.tenant_id,
        tenant_id,
    )
    total = int(session.scalar(looks_stuck) or 0)
    live = live_leases(session, None, now)
    if not total or not live:
        return total
    worked_on = int(session.scalar(looks_stuck.where(SIP.id.in_(live))) or 0)
    return total - worked_on


def failed_copies(
    session: Session, tenant_id: str | None, *, limit: int = LISTED
) -> tuple[int, list[FailedCopy]]:
    """How many tape copies failed their check (waiting for repair), and the newest of them.

    The tenant is an ``EXISTS`` on each failed copy rather than a filter on the
    join: failed copies are few, a tenant's AIPs many, and given the filter
    SQLite (no planner statistics) would walk the tenant's AIPs to find them.
    """
    failed = TapeCopy.status == CopyStatus.FAILED
    if tenant_id is not None:
        failed = failed & (
            select(AIPVersion.id)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(AIPVersion.id == TapeCopy.aip_version_id, AIP.tenant_id == tenant_id)
            .correlate(TapeCopy)
            .exists()
        )
    count = int(session.scalar(select(func.count()).select_from(TapeCopy).where(failed)) or 0)
    if not count:
        return 0, []
    rows = session.execute(
        select(
            TapeCopy.id,
            AIP.tenant_id,
            AIPVersion.aip_id,
            AIPVersion.number,
            TapeCopy.site,
            TapeCopy.barcode,
            TapeCopy.error,
            TapeCopy.written_at,
        )
        .select_from(TapeCopy)
        .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
        .join(AIP, AIP.id == AIPVersion.aip_id)
        .where(failed)
        .order_by(TapeCopy.id.desc())
        .limit(limit)
    )
    return count, [
        FailedCopy(
            copy_id=cid,
            tenant=tenant,
            aip_id=aip_id,
            version=number,
            site=site,
            barcode=barcode,
            error=error,
            written_at=written,
        )
        for cid, tenant, aip_id, number, site, barcode, error, written in rows
    ]


def set_aside_bags(
    ingest_dir: Path, tenant_id: str | None, *, limit: int = LISTED
) -> list[SetAside]:
    """The newest bags set aside in the hot folders that never became a SIP, with reports.

    Rejected SIPs lie in the same folders; they are the catalogue's to list
    (with the same report), so only reports without a ``sip_id`` are read here.
    """
    from preservation.hotfolder import tenant_folders

    folders = [
        f / "rejected"
        for f in tenant_folders(ingest_dir)
        if tenant_id is None or f.name == tenant_id
    ]
    entries: list[tuple[float, str, Path]] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            try:
                entries.append((entry.stat().st_mtime, folder.parent.name, entry))
            except OSError:
                continue  # taken away while we looked
    entries.sort(key=lambda e: e[0], reverse=True)
    found: list[SetAside] = []
    for mtime, tenant, entry in entries:
        try:
            report = json.loads((entry / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or report.get("sip_id"):
            continue
        found.append(
            SetAside(
                tenant=tenant,
                name=str(report.get("bag") or entry.name),
                folder=str(entry),
                set_aside_at=datetime.fromtimestamp(mtime, UTC),
                problems=[
                    {k: p.get(k) for k in ("severity", "file", "rule", "message")}
                    for p in report.get("problems", [])
                    if isinstance(p, dict)
                ],
            )
        )
        if len(found) >= limit:
            break
    return found


def site_views(session: Session, settings: Settings) -> list[SiteView]:
    """Each site's library: its drives (from the site file or settings), cartridges by state.

    Cartridges are the archive's, not a tenant's: every viewer sees the same.
    """
    from preservation.storage.siteconfig import site_specs

    counts: dict[str, dict[str, int]] = {}
    for site, state, n in session.execute(
        select(Cartridge.site, Cartridge.state, func.count()).group_by(
            Cartridge.site, Cartridge.state
        )
    ):
        counts.setdefault(site, {})[str(state.value)] = int(n)
    views = []
    for spec in site_specs(settings):
        by_state = {s.value: counts.get(spec.name, {}).get(s.value, 0) for s in CartridgeState}
        views.append(
            SiteView(
                site=spec.name,
                library=spec.library,
                drives=len(spec.drive_paths) if spec.library == "scsi" else spec.drive_count,
                cartridges=by_state,
                total=sum(by_state.values()),
            )
        )
    return views


def audits(
    session: Session, tenant_id: str | None, *, limit: int = LISTED, finished: int = 5
) -> tuple[int, list[AuditView]]:
    """How many audits are queued or running, and the newest of them, then the last few finished.

    Audits in progress are normally one or two; a runner that is down lets
    them pile up, and the page still lists at most ``limit``.
    """
    in_progress = Audit.state.in_([AuditState.QUEUED, AuditState.RUNNING])
    active_count = int(
        session.scalar(
            _scope(
                select(func.count()).select_from(Audit).where(in_progress),
                Audit.tenant_id,
                tenant_id,
            )
        )
        or 0
    )
    active = (
        _scope(select(Audit).where(in_progress), Audit.tenant_id, tenant_id)
        .order_by(Audit.created_at.desc())
        .limit(limit)
    )
    done = (
        _scope(
            select(Audit).where(Audit.state.in_([AuditState.DONE, AuditState.FAILED])),
            Audit.tenant_id,
            tenant_id,
        )
        .order_by(Audit.created_at.desc())
        .limit(finished)
    )
    views = [audit_view(a) for a in [*session.scalars(active), *session.scalars(done)]]
    return active_count, views


def waiting_disposals(
    session: Session, tenant_id: str | None, *, limit: int = LISTED
) -> tuple[int, list[DisposalView]]:
    """How many disposals wait for their second curator, and the newest of them."""
    waiting = _scope(
        select(Disposal).where(Disposal.state == DisposalState.REQUESTED),
        Disposal.tenant_id,
        tenant_id,
    )
    count = int(session.scalar(select(func.count()).select_from(waiting.subquery())) or 0)
    if not count:
        return 0, []
    newest = waiting.order_by(Disposal.requested_at.desc(), Disposal.id).limit(limit)
    return count, [disposal_view(d) for d in session.scalars(newest)]
