"""Tokens (admin): made once, shown once, revoked at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from preservation import tokens
from preservation.api.deps import Ctx, Db, needs
from preservation.api.problems import responses
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.tokens import Principal

router = APIRouter(
    prefix="/tokens", tags=["tokens"], responses=responses(400, 401, 403, 404, 422, 503)
)
Admin = Annotated[Principal, Depends(needs(Role.ADMIN))]


class TokenView(BaseModel):
    id: str
    tenant: str | None
    role: str
    label: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    tenant: str | None = Field(default=None, max_length=63)
    label: str = Field(default="", max_length=255)


class CreatedToken(TokenView):
    token: str = Field(description="The secret: shown this once, stored only as a hash")


@router.get("", response_model=list[TokenView])
def list_tokens(db: Db, principal: Admin) -> list[TokenView]:
    return [TokenView(**t) for t in tokens.list_tokens(db)]


@router.post("", status_code=201, response_model=CreatedToken, responses=responses(404))
def create_token(ctx: Ctx, principal: Admin, body: NewToken) -> CreatedToken:
    with session_scope(ctx.sessions) as s:
        made = tokens.create_token(s, role=body.role, tenant_id=body.tenant, label=body.label)
        view = tokens.list_tokens(s)
        row = next(t for t in view if t["id"] == made.token.id)
        return CreatedToken(**row, token=made.secret)


@router.delete("/{token_id}", response_model=TokenView, responses=responses(404))
def revoke_token(
    db: Db, principal: Admin, token_id: Annotated[str, Path(max_length=64)]
) -> TokenView:
    return TokenView(**tokens.revoke_token(db, token_id))
