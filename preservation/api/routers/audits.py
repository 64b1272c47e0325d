"""Fixity audits on demand: start one, follow its progress, read its report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from preservation import dispatch
from preservation.api.deps import Asker, Ctx, Db, actor_of, needs
from preservation.api.problems import responses
from preservation.audit import runs
from preservation.audit.coverage import coverage
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.tokens import Principal

router = APIRouter(
    prefix="/audits", tags=["audits"], responses=responses(400, 401, 403, 404, 422, 503)
)


class AuditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str | None = Field(default=None, max_length=32, description="One site, or all")
    max_cartridges: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Read at most this many cartridges"
    )
    max_hours: float | None = Field(
        default=None, gt=0, le=24 * 366, description="Begin no new cartridge after this long"
    )


@router.post("", status_code=202, response_model=runs.AuditView, summary="Start a fixity audit")
def start_audit(
    response: Response,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(needs(Role.CURATOR))],
    body: AuditRequest | None = None,
) -> runs.AuditView:
    with session_scope(ctx.sessions) as s:
        view = runs.start_audit(
            s,
            tuple(ctx.settings.sites),
            principal.tenant_id,
            actor_of(principal).who,
            site=body.site if body else None,
            max_cartridges=body.max_cartridges if body else None,
            max_hours=body.max_hours if body else None,
        )
    dispatch.submit_audit(ctx, view.audit_id)
    response.headers["Location"] = view.status_url
    return view


@router.get(
    "/coverage",
    summary="Copies and bytes checked within each tenant's audit interval, per site",
)
def get_coverage(ctx: Ctx, principal: Asker) -> dict[str, Any]:
    """A curator sees their tenant's copies; an admin every tenant's."""
    return coverage(ctx, tenant=principal.tenant_id).to_dict()


@router.get("/{audit_id}", response_model=runs.AuditView, responses=responses(404))
def get_audit(
    db: Db, principal: Asker, audit_id: Annotated[str, Path(max_length=64)]
) -> runs.AuditView:
    return runs.get_audit(db, audit_id, principal.tenant_id)
