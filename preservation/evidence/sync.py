"""One journal sync: cut, seal, stamp, write. Run by beat, after an embedded ingest, or by hand.

Each step commits before the next and each is safe to run again, so a sync
killed anywhere is finished by the next one. The order matters: the cut and
the seal fix what will be proven before the TSA is asked, and only what has
its time-stamp (or needs none: the segment itself) goes to tape.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import select

from preservation.catalog.database import session_scope
from preservation.catalog.models import Tenant
from preservation.context import Context
from preservation.evidence import journal, on_tape, periods, stamping
from preservation.lease import hold_lease

__all__ = ["SyncReport", "sync_journal"]

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    segments_cut: int = 0
    periods_sealed: int = 0
    versions_sealed: int = 0
    stamped: int = 0
    waiting_stamps: int = 0
    files_written: int = 0
    files_waiting: int = 0
    tsa: bool = False
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_line(self) -> str:
        parts = [
            f"{self.segments_cut} segment(s) cut",
            f"{self.versions_sealed} version(s) sealed in {self.periods_sealed} period(s)",
            f"{self.stamped} time-stamp(s) obtained",
            f"{self.files_written} journal file(s) written to tape",
        ]
        if not self.tsa:
            parts.append("no TSA configured: history is chained but not time-stamped")
        elif self.waiting_stamps:
            parts.append(f"{self.waiting_stamps} wait for the TSA")
        if self.files_waiting:
            parts.append(f"{self.files_waiting} file copies wait for a site")
        return "; ".join(parts)


#: The lease every journal sync and evidence renewal holds: none of them runs twice at once
#: (two seals would put a version in two trees; two stamps of one head, two tokens).
LEASE = "evidence:journal"
BUSY = "another journal sync or evidence renewal is running"


def sync_journal(ctx: Context, *, tenant_id: str | None = None) -> SyncReport:
    with hold_lease(ctx.sessions, LEASE, seconds=6 * 3600, busy=BUSY):
        return _sync(ctx, tenant_id)


def _sync(ctx: Context, tenant_id: str | None) -> SyncReport:
    report = SyncReport()
    with session_scope(ctx.sessions) as session:
        which = select(Tenant.id).order_by(Tenant.id)
        if tenant_id:
            which = which.where(Tenant.id == tenant_id)
        tenants = list(session.scalars(which))
    for t in tenants:
        # One short transaction per tenant: ingest elsewhere is never held up
        # by a long first cut of an old archive's history.
        with session_scope(ctx.sessions) as session:
            report.segments_cut += len(journal.cut_segments(session, tenant_id=t))
    with session_scope(ctx.sessions) as session:
        sealed = periods.seal_periods(session, tenant_id=tenant_id)
        report.periods_sealed = len(sealed)
        report.versions_sealed = sum(s.leaves for s in sealed)
    tsa = stamping.configured_tsa(ctx)
    report.tsa = tsa is not None
    stamps = stamping.stamp_waiting(ctx, tsa)
    report.stamped = stamps.stamped
    report.waiting_stamps = stamps.waiting
    report.problems += [f"TSA: {e}" for e in stamps.errors]
    with session_scope(ctx.sessions) as session:
        on_tape.register_files(session)
    written = on_tape.write_pending(ctx)
    report.files_written = written.written
    report.files_waiting = written.waiting
    report.problems += written.problems
    log.info("journal sync: %s", report.summary_line())
    return report


def sync_due(ctx: Context) -> bool:
    """Is the last cut older than the journal interval (or was there none)?"""
    from sqlalchemy import func

    from preservation.catalog.models import JournalSegment, utcnow

    with session_scope(ctx.sessions) as session:
        last = session.scalar(select(func.max(JournalSegment.created_at)))
    if last is None:
        return True
    if last.tzinfo is None:  # SQLite gives UTC back naive
        last = last.replace(tzinfo=UTC)
    return bool((utcnow() - last).total_seconds() >= ctx.settings.journal_interval_seconds)


def sync_after_ingest(ctx: Context) -> SyncReport | None:
    """The embedded runner's sync point: after the bag is on tape, once per interval.

    Per interval, not per bag: a segment and two time-stamps per bag would make
    stamping a cost of ingest, where one segment per interval makes it nothing.
    Never fails the ingest (the AIP is safe already): a journal that cannot be
    written now is written by the next sync, and says so in the log.
    """
    from preservation.errors import PreservationError

    try:
        if not sync_due(ctx):
            return None
        return sync_journal(ctx)
    except PreservationError as err:
        log.warning("journal sync after ingest did not finish: %s", err.message)
        return None
