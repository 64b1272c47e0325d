"""The DIP cache under the data root: built zips wait there for their download, for a while.

Two limits keep it bounded: each zip expires ``dip_ttl`` seconds after it was
built, and the whole cache holds at most ``dip_cache_bytes``; when a new zip
would not fit, the oldest ready ones leave first. An expired DIP keeps its
row (state ``expired``): a user following its status learns what happened,
and asking again rebuilds it from tape.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from preservation.access.service import is_expired
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, DIP, AIPState, DIPState, utcnow
from preservation.config import Settings
from preservation.context import Context

__all__ = ["evict", "zip_path"]

log = logging.getLogger(__name__)

#: A half-written zip older than this belongs to a build that died.
_ORPHAN_AGE = timedelta(hours=6)


def zip_path(settings: Settings, dip_id: str) -> Path:
    return settings.dip_dir / f"{dip_id}.zip"


def evict(ctx: Context, *, incoming: int = 0, now: datetime | None = None) -> list[str]:
    """Expire what is past its time, then the oldest until ``incoming`` more bytes fit.

    Returns the ids expired. Rows change first, files go after: a download
    that already opened its file finishes (POSIX keeps an unlinked file
    readable), and no new one starts on a row marked expired.
    """
    now = now or utcnow()
    cap = ctx.settings.dip_cache_bytes
    gone: list[str] = []
    with session_scope(ctx.sessions) as session:
        ready = list(
            session.scalars(
                select(DIP)
                .where(DIP.state == DIPState.READY)
                .order_by(DIP.ready_at, DIP.id)
                .with_for_update()
            )
        )
        disposed = set(
            session.scalars(
                select(DIP.id)
                .join(AIP, AIP.id == DIP.aip_id)
                .where(DIP.state == DIPState.READY, AIP.state == AIPState.DISPOSED)
            )
        )
        kept: list[DIP] = []
        for row in ready:
            if is_expired(row, now) or row.id in disposed:
                row.state = DIPState.EXPIRED
                if row.id in disposed:
                    row.error = "its AIP was disposed of"
                gone.append(row.id)
            else:
                kept.append(row)
        used = sum(r.zip_size or 0 for r in kept)
        for row in kept:  # oldest first
            if used + incoming <= cap:
                break
            row.state = DIPState.EXPIRED
            row.error = "left the cache early: newer DIPs needed the space"
            used -= row.zip_size or 0
            gone.append(row.id)
        live = {r.id for r in kept if r.id not in gone}
        building = set(
            session.scalars(
                select(DIP.id).where(DIP.state.in_([DIPState.RECALLING, DIPState.BUILDING]))
            )
        )
    for dip_id in gone:
        zip_path(ctx.settings, dip_id).unlink(missing_ok=True)
    if gone:
        log.info("DIP cache: %d expired (%s)", len(gone), ", ".join(gone[:10]))
    _remove_orphans(ctx.settings.dip_dir, live | building, now)
    return gone


def _remove_orphans(folder: Path, keep: set[str], now: datetime) -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        dip_id = entry.name.split(".", 1)[0]
        if dip_id in keep:
            continue
        try:
            age = now.timestamp() - entry.stat().st_mtime
        except FileNotFoundError:
            continue
        if age > _ORPHAN_AGE.total_seconds() and entry.is_file():
            entry.unlink(missing_ok=True)
