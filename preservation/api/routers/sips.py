"""SIPs: submit a serialised bag, and follow it through ingest."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel

from preservation import dispatch, lookup, uploads
from preservation.api.deps import Asker, Ctx, Db, needs
from preservation.api.problems import responses
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role, SIPState, Tenant
from preservation.errors import InvalidRequestError, NotFoundError
from preservation.tenants import check_tenant_id
from preservation.tokens import Principal

router = APIRouter(
    prefix="/sips", tags=["sips"], responses=responses(400, 401, 403, 404, 422, 503)
)


class SubmittedSIP(BaseModel):
    sip_id: str
    status_url: str
    created: bool


_BODY = {
    "requestBody": {
        "required": True,
        "description": "The bag, serialised; streamed to disk, never held in memory.",
        "content": {
            ct: {"schema": {"type": "string", "format": "binary"}}
            for ct in uploads.CONTENT_TYPES
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=SubmittedSIP,
    openapi_extra=_BODY,
    responses=responses(409, 413, 415),
    summary="Submit a SIP (a serialised BagIt bag)",
)
async def submit_sip(
    request: Request,
    response: Response,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(needs(Role.SUBMITTER, long_request=True))],
    name: Annotated[str | None, Query(max_length=255, description="The bag's name")] = None,
    tenant: Annotated[
        str | None, Query(description="Admins only: the tenant to submit for")
    ] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> SubmittedSIP:
    from starlette.concurrency import run_in_threadpool

    tenant_id = principal.tenant_id
    if tenant_id is None:
        if not tenant:
            raise InvalidRequestError(
                "an admin token submits for a tenant: give ?tenant=", rule="tenant",
                field="tenant",
            )
        tenant_id = tenant
        with session_scope(ctx.sessions) as s:
            if s.get(Tenant, check_tenant_id(tenant_id, source="tenant")) is None:
                raise NotFoundError(f"no tenant {tenant_id!r}", rule="tenant", field="tenant")
    uploads.check_idempotency_key(idempotency_key)  # before a byte is received
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    from starlette.requests import ClientDisconnect

    try:
        upload = await uploads.receive_stream(
            ctx,
            tenant_id,
            request.stream(),
            content_type=request.headers.get("content-type"),
            declared_length=declared,
            digest_body=idempotency_key is not None,
        )
    except ClientDisconnect as exc:
        raise InvalidRequestError(
            "the client went away before the upload was complete; nothing was kept",
            rule="truncated-upload",
            field="body",
        ) from exc
    try:
        result = await run_in_threadpool(
            uploads.accept_upload, ctx, tenant_id, upload, name=name,
            idempotency_key=idempotency_key,
        )
    finally:
        uploads.discard_upload(upload)  # gone already if it became a SIP
    if result.created:
        dispatch.submit_sip(ctx, result.sip_id)
    url = f"/api/v1/sips/{result.sip_id}"
    response.headers["Location"] = url
    return SubmittedSIP(sip_id=result.sip_id, status_url=url, created=result.created)


@router.get("", response_model=lookup.SIPPage, summary="List SIPs, newest first")
def list_sips(
    db: Db,
    principal: Asker,
    state: SIPState | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> lookup.SIPPage:
    return lookup.list_sip_views(
        db, principal.tenant_id, state=state, cursor=cursor, limit=limit
        )


@router.get(
    "/{sip_id}", response_model=lookup.SIPView, responses=responses(404), summary="One SIP"
)
def get_sip(db: Db, principal: Asker, sip_id: str) -> lookup.SIPView:
    return lookup.sip_view(db, sip_id, principal.tenant_id)
