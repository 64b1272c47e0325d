"""Audit runs as rows: the bounds asked for, progress while it reads, the report at the end.

Every run has one, whoever started it (``preservation audit``, the API,
beat's nightly run), so the archive keeps a history of its audits and an API
caller can poll ``GET /api/v1/audits/{id}``. Progress is written at most once
a second: it must not cost a write per copy. A curator's audit covers their
tenant's copies; an admin's covers every tenant's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import Audit, AuditState, utcnow
from preservation.context import Context
from preservation.errors import InvalidRequestError
from preservation.lookup import Instant

__all__ = ["AuditView", "audit_now", "audit_view", "get_audit", "run_audit", "start_audit"]


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
    max_cartridges: int | None
    max_hours: float | None
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
        max_cartridges=a.max_cartridges,
        max_hours=a.max_hours,
        report=a.report,
        status_url=f"/api/v1/audits/{a.id}",
    )


def start_audit(
    session: Session,
    sites: tuple[str, ...],
    tenant_id: str | None,
    who: str,
    *,
    site: str | None = None,
    max_cartridges: int | None = None,
    max_hours: float | None = None,
) -> AuditView:
    """Queue an audit (the caller hands its id to ``dispatch.submit_audit`` after commit)."""
    if site is not None and site not in sites:
        raise InvalidRequestError(
            f"no site {site!r}: the sites are {', '.join(sites)}", rule="site", field="site"
        )
    if max_cartridges is not None and max_cartridges < 1:
        raise InvalidRequestError(
            "max_cartridges must be at least 1", rule="audit-bounds", field="max_cartridges"
        )
    if max_hours is not None and not max_hours > 0:
        raise InvalidRequestError(
            "max_hours must be more than 0", rule="audit-bounds", field="max_hours"
        )
    a = Audit(
        tenant_id=tenant_id,
        site=site,
        requested_by_label=who,
        max_cartridges=max_cartridges,
        max_hours=max_hours,
    )
    session.add(a)
    session.flush()
    return audit_view(a)


def get_audit(session: Session, audit_id: str, tenant_id: str | None) -> AuditView:
    from preservation.lookup import scoped

    a = scoped(session, Audit, audit_id, tenant_id, what="audit")
    return audit_view(a)


def run_audit(
    ctx: Context,
    audit_id: str,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    repair: bool = True,
) -> AuditView:
    """Run a queued audit to its end, recording progress and the report on its row."""
    return _run(ctx, audit_id, on_progress=on_progress, repair=repair)[0]


def _run(
    ctx: Context,
    audit_id: str,
    *,
    on_progress: Callable[[int, int], None] | None,
    repair: bool,
) -> tuple[AuditView, dict[str, Any]]:
    from preservation.audit.fixity import audit_copies
    from preservation.storage.service import release_drives

    with session_scope(ctx.sessions) as s:
        a = s.get_one(Audit, audit_id)
        if a.state in (AuditState.DONE, AuditState.FAILED):
            return audit_view(a), dict(a.report or {})
        a.state, a.started_at = AuditState.RUNNING, utcnow()
        tenant, site = a.tenant_id, a.site
        max_cartridges, max_hours = a.max_cartridges, a.max_hours
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if on_progress is not None:
            on_progress(done, total)
        now = time.monotonic()
        if done in (0, total) or now - last >= 1.0:
            last = now
            with session_scope(ctx.sessions) as s:
                row = s.get_one(Audit, audit_id)
                row.copies_done, row.copies_total = done, total

    try:
        report = audit_copies(
            ctx,
            site,
            progress=progress,
            tenant=tenant,
            repair=repair,
            max_cartridges=max_cartridges,
            max_hours=max_hours,
        )
    except Exception as err:
        with session_scope(ctx.sessions) as s:
            row = s.get_one(Audit, audit_id)
            row.state, row.finished_at = AuditState.FAILED, utcnow()
            row.report = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        raise
    finally:
        release_drives(ctx)
    full = report.to_dict()
    summary = {k: v for k, v in full.items() if k != "copies"}  # each is a PREMIS event
    with session_scope(ctx.sessions) as s:
        row = s.get_one(Audit, audit_id)
        row.state, row.finished_at, row.report = AuditState.DONE, utcnow(), summary
        row.copies_done = row.copies_total = len(report.copies)
        return audit_view(row), full


def audit_now(
    ctx: Context,
    who: str,
    *,
    site: str | None = None,
    tenant_id: str | None = None,
    max_cartridges: int | None = None,
    max_hours: float | None = None,
    repair: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[AuditView, dict[str, Any]]:
    """Record and run an audit in this process (the CLI, beat's nightly run).

    Returns the audit's row and the whole report, every copy's verdict included
    (the row keeps the summary: each verdict is a PREMIS event already).
    """
    with session_scope(ctx.sessions) as s:
        queued = start_audit(
            s,
            tuple(ctx.settings.sites),
            tenant_id,
            who,
            site=site,
            max_cartridges=max_cartridges,
            max_hours=max_hours,
        )
    return _run(ctx, queued.audit_id, on_progress=on_progress, repair=repair)


def submit_to_workers(ctx: Context, audit_id: str) -> None:
    """With a broker: the audit worker runs it (``workers.audit.run_audit``)."""
    from preservation.submission import load_callable

    load_callable(ctx.settings.audit_submitter, "audit_submitter")(audit_id)
