"""Audits asked for through the API: a row that shows progress, and the report at the end.

``preservation audit`` prints as it goes; an API caller instead polls
``GET /api/v1/audits/{id}``, so the run records its progress on its row (at
most once a second: progress must not cost a write per copy) and keeps the
summary as its report. A curator's audit covers their tenant's copies; an
admin's covers every tenant's.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import Audit, AuditState, utcnow
from preservation.context import Context
from preservation.errors import InvalidRequestError
from preservation.lookup import Instant

__all__ = ["AuditView", "audit_view", "get_audit", "run_audit", "start_audit"]


class AuditView(BaseModel):
    model_config = ConfigDict(frozen=True)
    audit_id: str
    tenant: str | None
    site: str | None
    state: str
    requested_by: str
    created_at: Instant
    started_at: Instant | None
    finished_at: Instant | None
    copies_done: int
    copies_total: int
    report: dict[str, Any] | None
    status_url: str


def audit_view(a: Audit) -> AuditView:
    return AuditView(
        audit_id=a.id,
        tenant=a.tenant_id,
        site=a.site,
        state=a.state.value,
        requested_by=a.requested_by_label,
        created_at=a.created_at,
        started_at=a.started_at,
        finished_at=a.finished_at,
        copies_done=a.copies_done,
        copies_total=a.copies_total,
        report=a.report,
        status_url=f"/api/v1/audits/{a.id}",
    )


def start_audit(
    session: Session, sites: tuple[str, ...], tenant_id: str | None, who: str,
    *, site: str | None = None,
) -> AuditView:
    """Queue an audit (the caller hands its id to ``dispatch.submit_audit`` after commit)."""
    if site is not None and site not in sites:
        raise InvalidRequestError(
            f"no site {site!r}: the sites are {', '.join(sites)}", rule="site", field="site"
        )
    a = Audit(tenant_id=tenant_id, site=site, requested_by_label=who)
    session.add(a)
    session.flush()
    return audit_view(a)


def get_audit(session: Session, audit_id: str, tenant_id: str | None) -> AuditView:
    from preservation.lookup import scoped

    a = scoped(session, Audit, audit_id, tenant_id, what="audit")
    return audit_view(a)


def run_audit(ctx: Context, audit_id: str) -> AuditView:
    """Run a queued audit to its end, recording progress and the report on its row."""
    from preservation.audit.fixity import audit_copies
    from preservation.storage.service import release_drives

    with session_scope(ctx.sessions) as s:
        a = s.get_one(Audit, audit_id)
        if a.state in (AuditState.DONE, AuditState.FAILED):
            return audit_view(a)
        a.state, a.started_at = AuditState.RUNNING, utcnow()
        tenant, site = a.tenant_id, a.site
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done in (0, total) or now - last >= 1.0:
            last = now
            with session_scope(ctx.sessions) as s:
                row = s.get_one(Audit, audit_id)
                row.copies_done, row.copies_total = done, total

    try:
        report = audit_copies(ctx, site, progress=progress, tenant=tenant)
    except Exception as err:
        with session_scope(ctx.sessions) as s:
            row = s.get_one(Audit, audit_id)
            row.state, row.finished_at = AuditState.FAILED, utcnow()
            row.report = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        raise
    finally:
        release_drives(ctx)
    summary = report.to_dict()
    del summary["copies"]  # each verdict is a PREMIS event already
    with session_scope(ctx.sessions) as s:
        row = s.get_one(Audit, audit_id)
        row.state, row.finished_at, row.report = AuditState.DONE, utcnow(), summary
        row.copies_done = row.copies_total = len(report.copies)
        return audit_view(row)


def submit_to_workers(ctx: Context, audit_id: str) -> None:
    """With a broker: the audit worker runs it (``workers.audit.run_audit``)."""
    from preservation.submission import load_callable

    load_callable(ctx.settings.audit_submitter, "audit_submitter")(audit_id)
