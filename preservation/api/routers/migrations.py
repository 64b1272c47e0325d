"""Format migrations: preview or start one, then follow it file by file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from preservation.api.deps import Asker, Ctx, Db, actor_of, needs
from preservation.api.problems import responses
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.errors import InvalidRequestError
from preservation.migrate import run, service
from preservation.tokens import Principal

router = APIRouter(
    prefix="/migrations",
    tags=["migrations"],
    responses=responses(400, 401, 403, 404, 422, 503),
)
MigrationId = Annotated[str, Path(max_length=64, description="The migration request's UUID")]


class MigrationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aip_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=10_000, description="The AIPs to migrate"
    )
    puid: str | None = Field(
        default=None, max_length=32, description="Or: every current file of this PRONOM id"
    )
    tenant: str | None = Field(
        default=None, max_length=64, description="Administrators: only this tenant's AIPs"
    )
    mode: str | None = Field(
        default=None, max_length=16, description="best-effort (default) or all-or-nothing"
    )
    dry_run: bool = Field(default=False, description="List files, actions and targets only")


@router.post(
    "",
    status_code=202,
    response_model=None,
    responses={**responses(404, 409), 200: {"description": "The dry run's plan"}},
    summary="Start a format migration (each AIP gets a new version), or preview it",
)
async def start_migration(
    response: Response,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(needs(Role.CURATOR, long_request=True))],
    body: MigrationRequest,
) -> Any:
    from preservation.lookup import check_uuid

    if bool(body.aip_ids) == bool(body.puid):
        raise InvalidRequestError(
            "give aip_ids, or a puid (not both)", rule="selection", field="aip_ids"
        )
    tenant = principal.tenant_id
    if body.tenant is not None:
        if tenant is not None and body.tenant != tenant:
            from preservation.errors import NotFoundError

            raise NotFoundError(f"no tenant {body.tenant}", tenant=body.tenant)
        tenant = body.tenant
    aip_ids = [check_uuid(a, field="aip_ids") for a in body.aip_ids]

    def begin() -> Any:
        policy, text = service.read_policy(ctx.settings.migration_policy)
        with session_scope(ctx.sessions) as s:
            if body.dry_run:
                return service.dry_run(s, policy, aip_ids=aip_ids, puid=body.puid, tenant_id=tenant)
            return service.start_migration(
                s,
                policy,
                text,
                aip_ids=aip_ids,
                puid=body.puid,
                tenant_id=tenant,
                who=actor_of(principal).who,
                mode=body.mode,
            )

    result = await run_in_threadpool(begin)
    if body.dry_run:
        response.status_code = 200
        return result
    run.submit_migration(ctx, result.migration_id)
    response.headers["Location"] = result.status_url
    return result


@router.get("", response_model=list[service.MigrationView], summary="Recent migrations")
def list_migrations(db: Db, principal: Asker) -> list[service.MigrationView]:
    return service.list_migrations(db, principal.tenant_id)


@router.get(
    "/{migration_id}",
    response_model=service.MigrationView,
    responses=responses(404),
    summary="A migration's progress and per-file results",
)
def get_migration(db: Db, principal: Asker, migration_id: MigrationId) -> service.MigrationView:
    return service.get_migration(db, migration_id, principal.tenant_id)
