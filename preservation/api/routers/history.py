"""The event history's evidence: each tenant's chain head, and a version's evidence record."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from preservation.api.deps import Asker, Ctx
from preservation.api.problems import responses
from preservation.evidence.history import history_head
from preservation.evidence.periods import export_record

router = APIRouter(tags=["history"], responses=responses(400, 401, 403, 404, 422, 503))


@router.get(
    "/history/head",
    summary="Each tenant's event chain head and its latest time-stamp, to keep elsewhere",
)
def get_head(ctx: Ctx, principal: Asker) -> dict[str, Any]:
    """A curator sees their tenant's head; an admin every tenant's."""
    heads = history_head(ctx, tenant_id=principal.tenant_id)
    return {"heads": [h.to_dict() for h in heads]}


@router.get(
    "/aips/{aip_id}/versions/{number}/evidence",
    response_class=Response,
    responses={
        **responses(404),
        200: {"content": {"application/octet-stream": {}}, "description": "DER EvidenceRecord"},
    },
    summary="The version's RFC 4998 evidence record (DER)",
)
def get_evidence(
    ctx: Ctx,
    principal: Asker,
    aip_id: Annotated[str, Path(description="The AIP's UUID", max_length=64)],
    number: Annotated[int, Path(ge=1, le=1_000_000)],
) -> Response:
    """Check it anywhere with `preservation evidence verify`, the tar and the TSA's CA."""
    aip, version, der = export_record(
        ctx, aip_id, version=number, tenant_id=principal.tenant_id, exact=True
    )
    return Response(
        der,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{aip}-v{version}.ers"'},
    )
