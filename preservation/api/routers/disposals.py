"""Disposals: the requests curators made, and the second curator's approval."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from starlette.concurrency import run_in_threadpool

from preservation import retention
from preservation.api.deps import Asker, Ctx, Db, actor_of, needs
from preservation.api.problems import responses
from preservation.catalog.models import DisposalState, Role
from preservation.tokens import Principal

router = APIRouter(
    prefix="/disposals", tags=["disposals"], responses=responses(400, 401, 403, 404, 422, 503)
)
DisposalId = Annotated[str, Path(max_length=64)]


@router.get("", response_model=list[retention.DisposalView])
def list_disposals(
    db: Db, principal: Asker, state: DisposalState | None = None
) -> list[retention.DisposalView]:
    return retention.list_disposals(db, principal.tenant_id, state=state)


@router.get("/{disposal_id}", response_model=retention.DisposalView, responses=responses(404))
def get_disposal(
    db: Db, principal: Asker, disposal_id: DisposalId
) -> retention.DisposalView:
    return retention.get_disposal(db, disposal_id, principal.tenant_id)


@router.post(
    "/{disposal_id}/approve",
    response_model=retention.DisposalView,
    responses=responses(404, 409),
    summary="Approve a disposal (by a different curator than the one who asked)",
)
async def approve(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(needs(Role.CURATOR, long_request=True))],
    disposal_id: DisposalId,
) -> retention.DisposalView:
    return await run_in_threadpool(
        retention.approve_disposal, ctx, disposal_id, principal.tenant_id, actor_of(principal)
    )
