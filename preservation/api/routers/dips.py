"""DIPs: ask for an AIP's files, follow the recall, download the zip (resumable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from preservation import dispatch
from preservation.access import cache, service
from preservation.access.delivery import file_response
from preservation.api.deps import Asker, Ctx, Db, actor_of, needs
from preservation.api.problems import responses
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.errors import GoneError
from preservation.lookup import check_uuid
from preservation.tokens import Principal

router = APIRouter(prefix="/dips", tags=["dips"], responses=responses(400, 401, 403, 404, 422))
DipId = Annotated[str, Path(max_length=64, description="The DIP's UUID")]


class DIPRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aip_id: str = Field(max_length=64, description="The AIP to disseminate")
    version: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Its version (default: the newest)"
    )
    kind: str = Field(
        default="preservation",
        max_length=16,
        description="original (version 1's files), preservation (the current "
        "representation) or access (renditions in access formats)",
    )
    files: str | None = Field(
        default=None,
        max_length=service.MAX_GLOB,
        description="Only the files whose path matches this shell pattern (* crosses folders)",
    )


@router.post(
    "",
    status_code=202,
    response_model=service.DIPView,
    responses=responses(410),
    summary="Ask for a DIP: it is queued for the next recall batch",
)
async def request_dip(
    response: Response,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(needs(Role.CONSUMER))],
    body: DIPRequest,
) -> service.DIPView:
    aip_id = check_uuid(body.aip_id, field="aip_id")

    def begin() -> service.DIPView:
        with session_scope(ctx.sessions) as s:
            return service.request_dip(
                s,
                aip_id=aip_id,
                tenant_id=principal.tenant_id,
                version=body.version,
                kind=body.kind,
                files_glob=body.files,
                requested_by=actor_of(principal).label,
                cache_bytes=ctx.settings.dip_cache_bytes,
            )

    view = await run_in_threadpool(begin)
    dispatch.submit_dip(ctx, view.dip_id)
    response.headers["Location"] = view.status_url
    return view


@router.get("", response_model=list[service.DIPView], summary="Recent DIP requests")
def list_dips(
    db: Db, principal: Asker, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[service.DIPView]:
    return service.list_dips(db, principal.tenant_id, limit=limit)


@router.get(
    "/{dip_id}",
    response_model=service.DIPView,
    summary="A DIP request: queued, recalling (cartridges, bytes), building, ready, failed",
)
def get_dip(db: Db, principal: Asker, dip_id: DipId) -> service.DIPView:
    return service.get_dip(db, dip_id, principal.tenant_id)


@router.get(
    "/{dip_id}/download",
    response_class=Response,
    responses={
        **responses(409, 410, 416),
        200: {"content": {"application/zip": {}}, "description": "The DIP as a zip"},
        206: {"content": {"application/zip": {}}, "description": "The range asked for"},
        304: {"description": "Not modified (If-None-Match)"},
    },
    summary="Download a ready DIP (a zip; resumable with Range)",
)
def download_dip(
    ctx: Ctx,
    db: Db,
    principal: Asker,
    dip_id: DipId,
    range_: Annotated[str | None, Header(alias="Range", max_length=256)] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=256)] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=1024)] = None,
) -> Response:
    row = service.ready_row(db, dip_id, principal.tenant_id)
    etag = row.zip_sha256 or row.id
    try:
        return file_response(
            cache.zip_path(ctx.settings, row.id),
            etag=etag,
            media_type="application/zip",
            filename=f"dip-{row.id}.zip",
            range_header=range_,
            if_range=if_range,
            if_none_match=if_none_match,
        )
    except FileNotFoundError as err:  # the cache lost it (a cap, an operator): say so
        raise GoneError(
            f"DIP {row.id} is no longer in the cache: request it again",
            rule="dip-expired",
            dip_id=row.id,
        ) from err
