"""Asking the TSA: segment heads and period roots that wait for their time-stamp.

An unreachable TSA never blocks ingest: segments and periods are cut and
sealed without it, and wait here (``token`` NULL) until it answers. The
first failure ends the round, so a TSA that is down costs one timeout per
sync, not one per waiting stamp; :func:`waiting` is what the metric shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import EvidenceStamp, JournalSegment, PremisEvent, utcnow
from preservation.context import Context
from preservation.evidence.records import EvidenceError
from preservation.evidence.tsa import TimeStampAuthority, TsaUnavailableError, from_settings

__all__ = [
    "EventStamp",
    "StampRound",
    "configured_tsa",
    "event_stamps",
    "history_status",
    "stamp_waiting",
    "waiting",
]

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
    errors: list[str] = field(default_factory=list)


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
                # Away: the rest would only wait for the same timeout. Next sync.
                result.errors.append(err.message)
                log.warning("time-stamping waits: %s", err.message)
                _note_error(ctx, model, row_id, err.message)
                break
            except EvidenceError as err:
                # Refused, or a token that does not check out against the configured
                # chain: this one waits (and says why), the others are still asked.
                result.errors.append(err.message)
                log.error("time-stamp refused: %s", err.message)
                _note_error(ctx, model, row_id, err.message)
                continue
            with session_scope(ctx.sessions) as session:
                # Only into an empty slot: a token already there (another process
                # stamped it meanwhile) is the one the tape may already carry.
                done = session.execute(
                    update(model)
                    .where(model.id == row_id, model.token.is_(None))
                    .values(token=token, stamped_at=utcnow(), stamp_error=None)
                    .execution_options(synchronize_session=False)
                )
            result.stamped += getattr(done, "rowcount", 0) or 0
    counts = waiting(ctx)
    result.waiting = counts["segments"] + counts["evidence"]
    return result


def _note_error(ctx: Context, model: Any, row_id: int, message: str) -> None:
    with session_scope(ctx.sessions) as session:
        session.execute(
            update(model)
            .where(model.id == row_id)
            .values(stamp_error=message[:2000])
            .execution_options(synchronize_session=False)
        )


def history_status(ctx: Context) -> dict[str, object]:
    """What `status` says of the history: stamped, waiting (and why), or chained only."""
    counts = waiting(ctx)
    with session_scope(ctx.sessions) as session:
        last_error = session.scalar(
            select(JournalSegment.stamp_error)
            .where(JournalSegment.token.is_(None), JournalSegment.stamp_error.is_not(None))
            .order_by(JournalSegment.id.desc())
            .limit(1)
        ) or session.scalar(
            select(EvidenceStamp.stamp_error)
            .where(EvidenceStamp.token.is_(None), EvidenceStamp.stamp_error.is_not(None))
            .order_by(EvidenceStamp.id.desc())
            .limit(1)
        )
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
        if last_error:
            warning += f" (last answer: {last_error})"
    return {
        "tsa": ctx.settings.tsa_url,
        "waiting": counts,
        "last_error": last_error,
        "warning": warning,
    }


@dataclass(frozen=True)
class EventStamp:
    """Where one event stands: in which journal segment, and whether the TSA has stamped it."""

    seq: int
    first_seq: int
    last_seq: int
    stamped_at: datetime | None  # None while the segment waits for the TSA
    stamped: bool
    stamp_error: str | None


def event_stamps(
    session: Session, tenant_id: str, seqs: list[int] | tuple[int, ...]
) -> dict[int, EventStamp]:
    """The segment of each of a tenant's events (by chain position), in one query.

    An event missing from the answer is not cut into a segment yet (the next
    journal sync cuts it): it is chained, and time-stamped only later. A page
    of an AIP's history asks for its few dozen events at once, so the page
    costs one round trip however far apart in the chain they lie.
    """
    if not seqs:
        return {}
    seg = JournalSegment
    rows = session.execute(
        select(
            PremisEvent.seq,
            seg.first_seq,
            seg.last_seq,
            seg.stamped_at,
            seg.token.is_not(None),
            seg.stamp_error,
        )
        .join(
            seg,
            and_(
                seg.tenant_id == PremisEvent.tenant_id,
                seg.first_seq <= PremisEvent.seq,
                seg.last_seq >= PremisEvent.seq,
            ),
        )
        .where(PremisEvent.tenant_id == tenant_id, PremisEvent.seq.in_(list(seqs)))
    )
    return {
        int(seq): EventStamp(int(seq), int(first), int(last), at, bool(done), error)
        for seq, first, last, at, done, error in rows
    }
