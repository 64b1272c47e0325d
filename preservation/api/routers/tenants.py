"""Tenants (admin): the institutions the service keeps archives for."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from preservation import tenants
from preservation.api.deps import Ctx, Db, needs
from preservation.api.problems import responses
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.tokens import Principal

router = APIRouter(
    prefix="/tenants", tags=["tenants"], responses=responses(400, 401, 403, 404, 422, 503)
)
Admin = Annotated[Principal, Depends(needs(Role.ADMIN))]


class TenantView(BaseModel):
    id: str
    name: str
    created_at: str
    aips: int
    bytes: int
    sips_in_flight: int
    events: int


class NewTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=255)


@router.get("", response_model=list[TenantView])
def list_tenants(db: Db, principal: Admin) -> list[TenantView]:
    return [TenantView(**t) for t in tenants.list_tenants(db)]


@router.post("", status_code=201, response_model=TenantView)
def add_tenant(ctx: Ctx, principal: Admin, body: NewTenant) -> TenantView:
    with session_scope(ctx.sessions) as s:
        tenants.add_tenant(s, body.id, body.name)
    with session_scope(ctx.sessions) as s:
        return next(TenantView(**t) for t in tenants.list_tenants(s) if t["id"] == body.id)
