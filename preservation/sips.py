"""SIPs as an operator sees them: where each one stands, and ending one that cannot finish.

``status`` must tell a stage at work from a stage whose runner died: the
runner records ``<stage> (running)`` when it takes the SIP's lease, and only
the lease (``preservation/lease.py``) says whether it is still alive. A
``(running)`` stage with no live lease behind it is shown as interrupted,
with the command that finishes it.

A SIP that can never finish (its bag was removed under it, a bug, a bad
decision made at the door) must not block the archive forever. ``discard``
ends it without losing anything that matters: the submitted bag goes to
``rejected/`` with a report, the staging area is freed, and unfinished tape
writes are marked DISCARDED. Their bytes stay on tape as unreferenced space
(tape is append-only); a DISCARDED row is never counted as a copy.
"""

from __future__ import annotations

import getpass
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from preservation.catalog import (
    AIP,
    AIPState,
    AIPVersion,
    CopyStatus,
    SIPState,
    StageLease,
    TapeCopy,
    service,
    session_scope,
)
from preservation.context import Context
from preservation.errors import InvalidRequestError, SIPBusyError

__all__ = [
    "RUNNING",
    "DiscardResult",
    "discard_sip",
    "live_leases",
    "sip_rows",
    "stage_as_seen",
    "stage_shown",
]

RUNNING = " (running)"
INTERRUPTED = " (interrupted)"


def live_leases(session: Any, sip_ids: list[str] | None, now: datetime) -> set[str]:
    """SIP ids with at least one live lease (the whole SIP's, or one site's store).

    ``None`` asks for every SIP something works on now: leases are held only
    while a stage runs, so the table is a handful of rows either way.
    """
    if sip_ids is not None and not sip_ids:
        return set()
    from preservation.lease import lease_is_live

    wanted = None if sip_ids is None else set(sip_ids)
    live: set[str] = set()
    for key, owner, expires in session.execute(
        select(StageLease.key, StageLease.owner, StageLease.expires_at)
    ):
        sip_id = key.split(":")[1] if key.startswith("sip:") else None
        if (
            sip_id is not None
            and (wanted is None or sip_id in wanted)
            and lease_is_live(owner, expires, now)
        ):
            live.add(sip_id)
    return live


def stage_as_seen(stage: str | None, *, alive: bool) -> tuple[str, bool]:
    """The stage as an operator should read it, and whether its runner died."""
    stage = stage or ""
    if stage.endswith(RUNNING) and not alive:
        return stage[: -len(RUNNING)] + INTERRUPTED, True
    return stage, False


def stage_shown(session: Any, sip_id: str, stage: str | None) -> str | None:
    """The stage as an operator should read it: ``(running)`` only behind a live lease."""
    if (
        stage
        and stage.endswith(RUNNING)
        and sip_id not in live_leases(session, [sip_id], datetime.now(UTC))
    ):
        return stage[: -len(RUNNING)] + INTERRUPTED
    return stage


def sip_rows(
    ctx: Context,
    *,
    tenant: str | None = None,
    states: list[SIPState] | None = None,
    limit: int = 200,
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Counts by state, and the newest SIPs with where each stands, for ``status``."""
    now = datetime.now(UTC)
    with session_scope(ctx.sessions) as s:
        counts = service.count_sips_by_state(s, tenant)
        sips = service.list_sips(s, tenant_id=tenant, states=states, limit=limit)
        live = live_leases(s, [x.id for x in sips], now)
        rows = []
        for x in sips:
            stage, interrupted = stage_as_seen(x.stage, alive=x.id in live)
            rows.append(
                {
                    "sip_id": x.id,
                    "tenant": x.tenant_id,
                    "name": x.name,
                    "state": x.state.value,
                    "stage": stage or None,
                    "interrupted": interrupted,
                    "aip_id": x.aip_id,
                    "last_error": x.last_error,
                    "updated_at": x.updated_at.isoformat(),
                }
            )
    return counts, rows


@dataclass
class DiscardResult:
    sip_id: str
    tenant: str
    state_before: str
    stage_before: str | None
    aip_id: str | None
    discarded_copies: list[int]
    rejected_to: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "sip_id": self.sip_id,
            "tenant": self.tenant,
            "state": SIPState.REJECTED.value,
            "state_before": self.state_before,
            "stage_before": self.stage_before,
            "aip_id": self.aip_id,
            "discarded_copies": self.discarded_copies,
            "rejected_to": self.rejected_to,
        }


def discard_sip(ctx: Context, sip_id: str, *, reason: str = "") -> DiscardResult:
    """End a SIP that cannot finish; only a SIP not yet committed, and not being worked on.

    The SIP's leases are taken first (all of them: the in-process runner's,
    held across its waits for a site, the SIP's own and each site's), so no
    stage can start beside the discard, and a runner that is still alive
    makes the discard refuse rather than pull the floor from under it.
    """
    from preservation.ingest import reject, staging_dir
    from preservation.lease import hold_sip_lease

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state in (SIPState.COMMITTED, SIPState.REJECTED):
            raise InvalidRequestError(
                f"SIP {sip_id} is {sip.state.value}: only a SIP still in flight can be discarded",
                sip_id=sip_id,
                rule="discard-in-flight-only",
            )
        tenant, before, aip_id = sip.tenant_id, sip.state.value, sip.aip_id
        # A runner still alive makes the discard refuse below; any other is gone.
        stage = sip.stage
        if stage and stage.endswith(RUNNING):
            stage = stage[: -len(RUNNING)] + INTERRUPTED
    seconds = ctx.settings.lease_seconds
    try:
        with (
            hold_sip_lease(ctx.sessions, sip_id, seconds=seconds, part="run"),
            hold_sip_lease(ctx.sessions, sip_id, seconds=seconds, stage="discard (running)"),
        ):
            for site in ctx.settings.sites:
                with hold_sip_lease(ctx.sessions, sip_id, seconds=seconds, part=f"store:{site}"):
                    pass
            copies = _discard_copies(ctx, aip_id)
            shutil.rmtree(staging_dir(ctx, sip_id), ignore_errors=True)
            problem = {
                "severity": "error",
                "file": None,
                "rule": "sip-discarded",
                "message": (
                    f"discarded by {getpass.getuser()} while {before}"
                    + (f" at stage {stage}" if stage else "")
                    + (f": {reason}" if reason else "")
                    + (f"; {len(copies)} unfinished tape write(s) discarded" if copies else "")
                ),
            }
            target = reject(
                ctx,
                sip_id,
                [problem],
                stage_name="discard",
                event_type="deletion",
                event_detail=(
                    f"SIP discarded by an operator ({getpass.getuser()}): staging removed, "
                    f"{len(copies)} tape write(s) never verified marked discarded, "
                    "submitted bag set aside"
                ),
                event_objects={"discarded_copies": copies, "aip": aip_id},
            )
    except SIPBusyError as err:
        raise SIPBusyError(
            f"SIP {sip_id} is being worked on right now ({err.message}); stop that runner "
            "or wait for its lease to expire, then discard",
            sip_id=sip_id,
        ) from err
    with session_scope(ctx.sessions) as s:
        for row in s.scalars(select(StageLease).where(StageLease.key.like(f"sip:{sip_id}%"))):
            s.delete(row)
    return DiscardResult(sip_id, tenant, before, stage, aip_id, copies, str(target))


def _discard_copies(ctx: Context, aip_id: str | None) -> list[int]:
    """Every copy of a never-committed AIP stops counting; its bytes stay where they are."""
    if aip_id is None:
        return []
    with session_scope(ctx.sessions) as s:
        aip = s.get(AIP, aip_id)
        if aip is None:
            return []
        if aip.state is AIPState.ACTIVE:  # pragma: no cover - an ACTIVE AIP has a COMMITTED SIP
            raise InvalidRequestError(f"AIP {aip_id} is active; it cannot be discarded")
        rows = list(
            s.scalars(
                select(TapeCopy)
                .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
                .where(
                    AIPVersion.aip_id == aip_id,
                    TapeCopy.status.in_(
                        [CopyStatus.WRITING, CopyStatus.VERIFIED, CopyStatus.FAILED]
                    ),
                )
            )
        )
        for row in rows:
            row.status = CopyStatus.DISCARDED
            row.error = "the SIP was discarded before its AIP was committed"
        aip.state = AIPState.DISCARDED
        return [r.id for r in rows]
