"""Asking the TSA: segment heads and period roots that wait for their time-stamp.

An unreachable TSA never blocks ingest: segments and periods are cut and
sealed without it, and wait here (``token`` NULL) until it answers. The
first failure ends the round, so a TSA that is down costs one timeout per
sync, not one per waiting stamp; :func:`waiting` is what the metric shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from preservation.catalog.database import session_scope
from preservation.catalog.models import EvidenceStamp, JournalSegment, utcnow
from preservation.context import Context
from preservation.evidence.tsa import TimeStampAuthority, TsaUnavailableError, from_settings

__all__ = ["StampRound", "configured_tsa", "history_status", "stamp_waiting", "waiting"]

log = logging.getLogger(__name__)


def configured_tsa(ctx: Context) -> TimeStampAuthority | None:
    """The settings' TSA, tokens checked against its chain as they arrive; None if unset."""
    s = ctx.settings
    certs = [s.tsa_certs] if s.tsa_certs is not None else []
    return from_settings(s.tsa_url, certs, timeout=s.tsa_timeout)


@dataclass
class StampRound:
    stamped: int = 0
    waiting: int = 0
    error: str | None = None


def waiting(ctx: Context) -> dict[str, int]:
    """Segments and evidence periods still without a time-stamp."""
    with session_scope(ctx.sessions) as session:
        segments = session.scalar(
            select(func.count()).select_from(JournalSegment).where(JournalSegment.token.is_(None))
        )
        stamps = session.scalar(
            select(func.count()).select_from(EvidenceStamp).where(EvidenceStamp.token.is_(None))
        )
    return {"segments": int(segments or 0), "evidence": int(stamps or 0)}


def stamp_waiting(ctx: Context, tsa: TimeStampAuthority | None) -> StampRound:
    """Time-stamp every waiting segment head and period root, oldest first."""
    result = StampRound()
    if tsa is not None:
        with session_scope(ctx.sessions) as session:
            todo: list[tuple[Any, int, bytes, str]] = [
                (JournalSegment, sid, bytes.fromhex(head), "sha256")
                for sid, head in session.execute(
                    select(JournalSegment.id, JournalSegment.head_hash)
                    .where(JournalSegment.token.is_(None))
                    .order_by(JournalSegment.id)
                )
            ]
            todo += [
                (EvidenceStamp, sid, root, algorithm)
                for sid, root, algorithm in session.execute(
                    select(EvidenceStamp.id, EvidenceStamp.root, EvidenceStamp.algorithm)
                    .where(EvidenceStamp.token.is_(None))
                    .order_by(EvidenceStamp.id)
                )
            ]
        for model, row_id, digest, algorithm in todo:
            try:
                token = tsa.stamp(digest, algorithm)
            except TsaUnavailableError as err:
                result.error = err.message
                log.warning("time-stamping waits: %s", err.message)
                with session_scope(ctx.sessions) as session:
                    failed: Any = session.get_one(model, row_id)
                    failed.stamp_error = err.message[:2000]
                break
            with session_scope(ctx.sessions) as session:
                done: Any = session.get_one(model, row_id)
                done.token = token
                done.stamped_at = utcnow()
                done.stamp_error = None
            result.stamped += 1
    counts = waiting(ctx)
    result.waiting = counts["segments"] + counts["evidence"]
    return result


def history_status(ctx: Context) -> dict[str, object]:
    """What `status` says of the history: stamped, waiting, or chained only."""
    counts = waiting(ctx)
    warning = None
    if ctx.settings.tsa_url is None:
        warning = (
            "history is chained but not time-stamped: no TSA is configured "
            "(PRESERVATION_TSA_URL), so the event chain has no evidence beyond this archive"
        )
    elif counts["segments"] or counts["evidence"]:
        warning = (
            f"{counts['segments']} journal segment(s) and {counts['evidence']} evidence "
            "period(s) wait for the TSA"
        )
    return {"tsa": ctx.settings.tsa_url, "waiting": counts, "warning": warning}
