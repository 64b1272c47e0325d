"""Retention, legal holds and disposal: how long an AIP is kept, and how it may end.

The rules a records manager expects, enforced here and nowhere else (the
API, the CLI and the console call these functions):

* an AIP is kept until its ``retention_until`` date; with none set it is kept
  permanently, and disposal is refused until a curator sets one;
* a legal hold beats retention: while one is in force nothing is disposed of,
  whatever the date;
* disposal takes two people (four eyes): one curator requests it, a
  *different* one approves it, and the hold and the date are checked again
  at approval, since either may have changed in between;
* an approved disposal leaves a tombstone: the AIP's id, state ``disposed``,
  its events and a PREMIS ``deletion`` event stay forever, so the archive can
  always say what it held and when and why it let it go. Its copies leave
  both sites' LTFS indexes (``storage.disposal``); the bytes stay on the
  cartridge until it is repacked, and the catalogue counts them reclaimable.

Every change is a PREMIS event in the tenant's hash chain, naming who asked.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    AIPFormat,
    AIPState,
    AIPText,
    AIPVersion,
    Disposal,
    DisposalState,
    LegalHold,
    utcnow,
)
from preservation.context import Context
from preservation.errors import ConflictError, ForbiddenError, InvalidRequestError
from preservation.lookup import Instant, scoped, scoped_aip

__all__ = [
    "Actor",
    "DisposalView",
    "HoldView",
    "RetentionView",
    "approve_disposal",
    "disposal_view",
    "get_retention",
    "lift_hold",
    "list_disposals",
    "place_hold",
    "request_disposal",
    "set_retention",
]

SOFTWARE_AGENT = "preservation"


class Actor(BaseModel):
    """Who acts: an id that tells two people apart (a token or user id) and a readable label."""

    model_config = ConfigDict(frozen=True)
    id: str
    label: str

    @property
    def who(self) -> str:
        return f"{self.label} ({self.id})" if self.label else self.id


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class HoldView(_View):
    id: int
    reason: str
    placed_by: str
    placed_at: Instant
    lifted_by: str | None
    lifted_at: Instant | None
    lift_reason: str | None


class RetentionView(_View):
    aip_id: str
    state: str
    retention_until: Instant | None
    holds: list[HoldView]
    on_hold: bool
    disposable: bool
    why_not: str | None


class DisposalView(_View):
    disposal_id: str
    aip_id: str
    tenant: str
    state: str
    reason: str
    requested_by: str
    requested_at: Instant
    approved_by: str | None
    approved_at: Instant | None
    reclaimable_bytes: int
    pending_sites: list[str]


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _holds(session: Session, aip_id: str) -> list[LegalHold]:
    return list(
        session.scalars(
            select(LegalHold).where(LegalHold.aip_id == aip_id).order_by(LegalHold.id)
        )
    )


def _hold_view(h: LegalHold) -> HoldView:
    return HoldView(
        id=h.id,
        reason=h.reason,
        placed_by=h.placed_by,
        placed_at=h.placed_at,
        lifted_by=h.lifted_by,
        lifted_at=h.lifted_at,
        lift_reason=h.lift_reason,
    )


def why_not_disposable(session: Session, aip: AIP, now: datetime | None = None) -> str | None:
    """The reason the AIP may not be disposed of now, or None if it may."""
    now = now or utcnow()
    if aip.state is AIPState.DISPOSED:
        return f"AIP {aip.id} was already disposed of"
    if aip.state is not AIPState.ACTIVE:
        return f"AIP {aip.id} is {aip.state.value}, not active: only an active AIP is disposed of"
    active = [h for h in _holds(session, aip.id) if h.lifted_at is None]
    if active:
        return (
            f"AIP {aip.id} is under legal hold ({active[0].reason!r}, placed by "
            f"{active[0].placed_by}); lift the hold first"
        )
    until = _utc(aip.retention_until)
    if until is None:
        return (
            f"AIP {aip.id} has no retention date, so it is kept permanently; "
            "set one (PUT .../retention) before asking for its disposal"
        )
    if until > now:
        return f"AIP {aip.id} must be kept until {until.date().isoformat()}"
    return None


def _view(session: Session, aip: AIP) -> RetentionView:
    holds = _holds(session, aip.id)
    why = why_not_disposable(session, aip)
    return RetentionView(
        aip_id=aip.id,
        state=aip.state.value,
        retention_until=_utc(aip.retention_until),
        holds=[_hold_view(h) for h in holds],
        on_hold=any(h.lifted_at is None for h in holds),
        disposable=why is None,
        why_not=why,
    )


def get_retention(session: Session, aip_id: str, tenant_id: str | None) -> RetentionView:
    return _view(session, scoped_aip(session, aip_id, tenant_id))


def set_retention(
    session: Session,
    aip_id: str,
    tenant_id: str | None,
    actor: Actor,
    *,
    until: date | datetime | None = None,
    period: str | None = None,
) -> RetentionView:
    """Keep the AIP until a date, or for a period counted from its ingest.

    Exactly one of ``until`` and ``period`` (ISO 8601, ``P10Y``, or
    ``permanent``). A disposed AIP's retention is history, not policy: 409.
    """
    from preservation.rules import parse_period

    if (until is None) == (period is None):
        raise InvalidRequestError(
            "give exactly one of 'until' (a date) and 'period' (ISO 8601, e.g. P10Y)",
            rule="retention-until-or-period",
            field="until",
        )
    aip = session.scalar(service.locked(select(AIP).where(AIP.id == scoped_aip(
        session, aip_id, tenant_id).id)))
    assert aip is not None
    if aip.state is AIPState.DISPOSED:
        raise ConflictError(f"AIP {aip.id} was disposed of; its retention cannot change",
                            aip_id=aip.id, rule="disposed")
    new: Instant | None
    if period is not None:
        if period.strip().lower() == "permanent":
            new = None
        else:
            # Counted from ingest, as the tenant's default_retention is (from commit).
            first = session.scalar(
                select(AIPVersion.committed_at).where(
                    AIPVersion.aip_id == aip.id, AIPVersion.number == 1
                )
            )
            start = _utc(first or aip.created_at)
            assert start is not None
            new = parse_period(period.strip()).after(start)
    elif isinstance(until, datetime):
        new = _utc(until)
    else:
        assert until is not None
        new = datetime.combine(until, time(0, 0), tzinfo=UTC)
    old = _utc(aip.retention_until)
    aip.retention_until = new
    _record(
        session,
        aip,
        actor,
        "policy assignment",
        f"retention of AIP {aip.id} set to {new.date().isoformat() if new else 'permanent'}",
        outcome_detail=f"was {old.date().isoformat() if old else 'permanent'}",
    )
    session.flush()
    return _view(session, aip)


def place_hold(
    session: Session, aip_id: str, tenant_id: str | None, actor: Actor, *, reason: str
) -> RetentionView:
    """Put the AIP under legal hold. Several holds may stand at once (several cases)."""
    reason = _reason(reason)
    aip = scoped_aip(session, aip_id, tenant_id)
    if aip.state is AIPState.DISPOSED:
        raise ConflictError(f"AIP {aip.id} was disposed of; nothing is left to hold",
                            aip_id=aip.id, rule="disposed")
    session.add(
        LegalHold(aip_id=aip.id, tenant_id=aip.tenant_id, reason=reason, placed_by=actor.who)
    )
    _record(
        session, aip, actor, "policy assignment", f"legal hold placed on AIP {aip.id}: {reason}"
    )
    session.flush()
    return _view(session, aip)


def lift_hold(
    session: Session,
    aip_id: str,
    tenant_id: str | None,
    actor: Actor,
    *,
    reason: str,
    hold_id: int | None = None,
) -> RetentionView:
    """Lift one hold (by id), or every hold in force; 409 when none is in force."""
    reason = _reason(reason)
    aip = scoped_aip(session, aip_id, tenant_id)
    active = [
        h
        for h in _holds(session, aip.id)
        if h.lifted_at is None and (hold_id is None or h.id == hold_id)
    ]
    if not active:
        raise ConflictError(
            f"AIP {aip.id} has no legal hold in force"
            + (f" with id {hold_id}" if hold_id is not None else ""),
            aip_id=aip.id,
            rule="no-hold",
        )
    now = utcnow()
    for h in active:
        h.lifted_at, h.lifted_by, h.lift_reason = now, actor.who, reason
    _record(
        session,
        aip,
        actor,
        "policy assignment",
        f"legal hold lifted on AIP {aip.id}: {reason}",
        outcome_detail="holds " + ", ".join(str(h.id) for h in active),
    )
    session.flush()
    return _view(session, aip)


def _record(
    session: Session, aip: AIP, actor: Actor, type: str, detail: str, outcome: str = "success",
    outcome_detail: str = "",
) -> None:
    """A curator's decision as a PREMIS event in the tenant's chain, naming who decided."""
    service.record_event(
        session,
        tenant_id=aip.tenant_id,
        aip_id=aip.id,
        type=type,
        outcome=outcome,
        detail=detail,
        outcome_detail=outcome_detail,
        agents={"authorizer": [actor.who], "executing program": [SOFTWARE_AGENT]},
    )


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequestError("a reason is required", rule="reason", field="reason")
    if len(reason) > 2000:
        raise InvalidRequestError(
            "a reason is at most 2000 characters", rule="reason", field="reason"
        )
    return reason


# -- disposal ------------------------------------------------------------------------------


def disposal_view(d: Disposal, pending_sites: list[str] | None = None) -> DisposalView:
    return DisposalView(
        disposal_id=d.id,
        aip_id=d.aip_id,
        tenant=d.tenant_id,
        state=d.state.value,
        reason=d.reason,
        requested_by=d.requested_by_label or d.requested_by,
        requested_at=d.requested_at,
        approved_by=d.approved_by_label or d.approved_by,
        approved_at=d.approved_at,
        reclaimable_bytes=d.reclaimable_bytes or 0,
        pending_sites=pending_sites or [],
    )


def request_disposal(
    session: Session, aip_id: str, tenant_id: str | None, actor: Actor, *, reason: str
) -> DisposalView:
    """Ask for the AIP's disposal; 409 with the reason while held, retained or already asked."""
    reason = _reason(reason)
    aip = session.scalar(
        service.locked(select(AIP).where(AIP.id == scoped_aip(session, aip_id, tenant_id).id))
    )
    assert aip is not None
    why = why_not_disposable(session, aip)
    if why is not None:
        raise ConflictError(why, aip_id=aip.id, rule="not-disposable")
    open_request = session.scalar(
        select(Disposal).where(
            Disposal.aip_id == aip.id, Disposal.state == DisposalState.REQUESTED
        )
    )
    if open_request is not None:
        raise ConflictError(
            f"AIP {aip.id} already has disposal {open_request.id} waiting for approval",
            aip_id=aip.id,
            rule="disposal-pending",
            disposal_id=open_request.id,
        )
    d = Disposal(
        tenant_id=aip.tenant_id,
        aip_id=aip.id,
        reason=reason,
        requested_by=actor.id,
        requested_by_label=actor.label,
    )
    session.add(d)
    session.flush()
    _record(
        session,
        aip,
        actor,
        "deaccession",
        f"disposal {d.id} of AIP {aip.id} requested: {reason}",
        outcome="pending",
        outcome_detail="waiting for a second curator's approval",
    )
    return disposal_view(d)


def scoped_disposal(session: Session, disposal_id: str, tenant_id: str | None) -> Disposal:
    return scoped(session, Disposal, disposal_id, tenant_id, what="disposal")


def get_disposal(session: Session, disposal_id: str, tenant_id: str | None) -> DisposalView:
    return disposal_view(scoped_disposal(session, disposal_id, tenant_id))


def list_disposals(
    session: Session,
    tenant_id: str | None,
    *,
    state: DisposalState | None = None,
    aip_id: str | None = None,
) -> list[DisposalView]:
    """A tenant's disposals, newest first; ``aip_id``: one AIP's (its page shows them)."""
    stmt = select(Disposal).order_by(Disposal.requested_at.desc(), Disposal.id)
    if tenant_id is not None:
        stmt = stmt.where(Disposal.tenant_id == tenant_id)
    if aip_id is not None:
        stmt = stmt.where(Disposal.aip_id == aip_id)
    if state is not None:
        stmt = stmt.where(Disposal.state == state)
    return [disposal_view(d) for d in session.scalars(stmt.limit(1000))]


def approve_disposal(
    ctx: Context, disposal_id: str, tenant_id: str | None, actor: Actor
) -> DisposalView:
    """The second curator's approval: the AIP becomes a tombstone, its copies leave the tapes.

    The decision is committed first (the tombstone and the ``deletion``
    event, one transaction); the tapes follow. A site that is down keeps its
    copies listed until ``repair`` finishes the disposal there, and the view
    names it in ``pending_sites``: a disposal is never half-recorded, only
    half-carried-out, and then said so.
    """
    from preservation.storage.disposal import remove_aip_copies

    with session_scope(ctx.sessions) as s:
        d = scoped_disposal(s, disposal_id, tenant_id)
        if d.state is not DisposalState.REQUESTED:
            raise ConflictError(
                f"disposal {d.id} was already {d.state.value}", rule="disposal-decided",
                aip_id=d.aip_id,
            )
        if actor.id == d.requested_by or (actor.label and actor.label == d.requested_by_label):
            raise ForbiddenError(
                f"disposal {d.id} was requested by {d.requested_by_label or d.requested_by}; "
                "it must be approved by a different curator (four eyes)",
                rule="four-eyes",
            )
        aip = s.scalar(service.locked(select(AIP).where(AIP.id == d.aip_id)))
        assert aip is not None
        why = why_not_disposable(s, aip)
        if why is not None:
            raise ConflictError(why, aip_id=aip.id, rule="not-disposable")
        size = int(
            s.scalar(
                select(func.coalesce(func.sum(AIPVersion.tar_size), 0)).where(
                    AIPVersion.aip_id == aip.id
                )
            )
            or 0
        )
        now = utcnow()
        d.state, d.approved_by, d.approved_by_label, d.approved_at = (
            DisposalState.DISPOSED,
            actor.id,
            actor.label,
            now,
        )
        d.reclaimable_bytes = size * len(ctx.settings.sites)
        aip.state, aip.disposed_at = AIPState.DISPOSED, now
        # The tombstone keeps id, dates and events; the description and the
        # search index go with the record.
        aip.descriptive = None
        s.execute(delete(AIPText).where(AIPText.aip_id == aip.id))
        s.execute(delete(AIPFormat).where(AIPFormat.aip_id == aip.id))
        service.record_event(
            s,
            tenant_id=aip.tenant_id,
            aip_id=aip.id,
            type="deletion",
            outcome="success",
            detail=f"AIP {aip.id} disposed of (disposal {d.id}): {d.reason}",
            outcome_detail=(
                f"requested by {d.requested_by_label or d.requested_by}, approved by "
                f"{actor.who}; {size} bytes per site leave the LTFS indexes and become "
                "reclaimable (the bytes stay on tape until the cartridge is repacked)"
            ),
            agents={
                "authorizer": [actor.who, d.requested_by_label or d.requested_by],
                "executing program": [SOFTWARE_AGENT],
            },
        )
        aip_id = aip.id
    outcome = remove_aip_copies(ctx, aip_id)
    with session_scope(ctx.sessions) as s:
        return disposal_view(s.get_one(Disposal, disposal_id), list(outcome.pending_sites))


def retention_summary(session: Session, tenant_id: str | None) -> dict[str, Any]:
    """Counts for dashboards and metrics: held, expired and pending disposals."""
    held = select(func.count(func.distinct(LegalHold.aip_id))).where(
        LegalHold.lifted_at.is_(None)
    )
    pending = select(func.count()).select_from(Disposal).where(
        Disposal.state == DisposalState.REQUESTED
    )
    if tenant_id is not None:
        held = held.where(LegalHold.tenant_id == tenant_id)
        pending = pending.where(Disposal.tenant_id == tenant_id)
    return {
        "on_hold": int(session.scalar(held) or 0),
        "disposals_pending": int(session.scalar(pending) or 0),
    }
