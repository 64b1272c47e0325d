"""One journal sync: cut, seal, stamp, write. Run by beat, after an embedded ingest, or by hand.

Each step commits before the next and each is safe to run again, so a sync
killed anywhere is finished by the next one. The order matters: the cut and
the seal fix what will be proven before the TSA is asked, and only what has
its time-stamp (or needs none: the segment itself) goes to tape.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.catalog.models import Tenant
from preservation.context import Context
from preservation.evidence import journal, on_tape, periods, stamping

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


def sync_journal(ctx: Context, *, tenant_id: str | None = None) -> SyncReport:
    report = SyncReport()
    with session_scope(ctx.sessions) as session:
        # The tenant rows are locked while a cut is made, as an event append
        # locks them: two syncs at once cut each run of events once.
        which = select(Tenant).order_by(Tenant.id)
        if tenant_id:
            which = which.where(Tenant.id == tenant_id)
        tenants = [t.id for t in session.scalars(catalog.locked(which))]
        for t in tenants:
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
    if stamps.error:
        report.problems.append(f"TSA: {stamps.error}")
    with session_scope(ctx.sessions) as session:
        on_tape.register_files(session)
    written = on_tape.write_pending(ctx)
    report.files_written = written.written
    report.files_waiting = written.waiting
    report.problems += written.problems
    log.info("journal sync: %s", report.summary_line())
    return report


def sync_after_ingest(ctx: Context) -> SyncReport | None:
    """The embedded runner's sync point: after the bag is on tape, its events follow it.

    Never fails the ingest (the AIP is safe already): a journal that cannot be
    written now is written by the next sync, and says so in the log.
    """
    from preservation.errors import PreservationError

    try:
        return sync_journal(ctx)
    except PreservationError as err:
        log.warning("journal sync after ingest did not finish: %s", err.message)
        return None
