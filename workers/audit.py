"""The fixity audit as a Celery task on the ``audit`` queue, started daily by beat.

It is ``preservation audit`` without a terminal: the stalest cartridges are
read back whole, each mounted once and read in tape order, within the
settings' bounds for one run (``audit_max_cartridges``, ``audit_max_hours``),
so that nightly runs go round the whole archive. The verdicts are recorded
where they are needed: each check is a PREMIS ``fixity check`` event on the
AIP, a copy that fails is rebuilt from the other site and checked again, and
the run is an audit record (``GET /api/v1/audits/{id}``) with its report.

A copy whose site is down or whose cartridge or drives are held by another
process is *skipped*, not judged: no verdict is recorded and the next audit
reads it. The worker gives its drives back when the audit ends, so that tape
writes at the sites are not kept waiting for an idle audit worker.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Task
from celery.utils.log import get_task_logger

from preservation.storage.service import release_drives
from workers.celery import app
from workers.tasks import context

__all__ = ["audit_fixity"]

log = get_task_logger(__name__)


@app.task(
    name="workers.audit.audit_fixity",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=7 * 24 * 3600,
)
def audit_fixity(self: Task, site: str | None = None) -> dict[str, Any]:
    """Audit the stalest copies (of one site, or all) within the bounds; return the summary."""
    from preservation.audit.runs import audit_now

    ctx = context()
    try:
        view, _ = audit_now(
            ctx,
            "beat",
            site=site,
            max_cartridges=ctx.settings.audit_max_cartridges,
            max_hours=ctx.settings.audit_max_hours,
        )
    finally:
        release_drives(ctx)
    summary = {"audit_id": view.audit_id, **(view.report or {})}
    log.info(json.dumps({"audit": "fixity", **summary}, ensure_ascii=False, default=str))
    return summary


@app.task(
    name="workers.audit.run_audit",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=7 * 24 * 3600,
)
def run_audit(self: Task, audit_id: str) -> dict[str, Any]:
    """An audit asked for through the API: its row shows progress and keeps the report."""
    from preservation.audit.runs import run_audit as run

    view = run(context(), audit_id)
    return {"audit_id": view.audit_id, "state": view.state}


def submit_audit(audit_id: str) -> None:
    """The library's hand-off (``Settings.audit_submitter``): queue the audit."""
    run_audit.apply_async(args=[audit_id], queue="audit")


@app.task(
    name="workers.audit.repair_storage",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=7 * 24 * 3600,
)
def repair_storage(self: Task) -> dict[str, Any]:
    """``preservation repair`` on the audit worker: a recall found a bad copy."""
    from preservation.storage.recovery import repair

    ctx = context()
    try:
        report = repair(ctx)
    finally:
        release_drives(ctx)
    summary = report.to_dict()
    log.info(json.dumps({"repair": summary}, ensure_ascii=False, default=str))
    return summary


def submit_repair(_: Any = None) -> None:
    """The library's hand-off (``Settings.repair_submitter``): queue a repair."""
    repair_storage.apply_async(queue="audit")
