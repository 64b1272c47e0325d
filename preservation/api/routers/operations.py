"""Operations: health for probes (no token, no tenant data), metrics for Prometheus (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from preservation import monitoring
from preservation.api.deps import Ctx, needs
from preservation.api.problems import responses
from preservation.catalog.models import Role
from preservation.tokens import Principal

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Catalogue, broker and each site; 503 when one is down",
    responses={503: {"description": "something the service needs is down"}},
)
async def healthz(ctx: Ctx) -> Any:
    report = await run_in_threadpool(monitoring.health, ctx)
    return JSONResponse(report, status_code=200 if report["ok"] else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin token as the bearer credential)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses(401, 403),
    },
)
async def metrics(
    ctx: Ctx, principal: Annotated[Principal, Depends(needs(Role.ADMIN))]
) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    body = await run_in_threadpool(monitoring.render_metrics, ctx)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
