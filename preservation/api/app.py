"""The FastAPI application: routers mounted in one place, errors mapped in one place.

``create_app`` builds the app around a :class:`~preservation.context.Context`
(the same wiring the CLI and the workers build), opened at start-up unless a
test passes its own. Routes live under ``/api/v1``; the OpenAPI document is
``/api/v1/openapi.json`` and its browsable docs ``/api/v1/docs``. ``/healthz``
and ``/metrics`` sit at the root, where probes and Prometheus look for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from preservation import __version__
from preservation.api import problems
from preservation.api.routers import (
    aips,
    audits,
    dips,
    disposals,
    formats,
    history,
    migrations,
    operations,
    sips,
    tenants,
    tokens,
)
from preservation.config import Settings
from preservation.context import Context, open_context

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, ctx: Context | None = None) -> FastAPI:
    """The app; with ``ctx`` given, the caller owns it (and closes it)."""
    owned = ctx is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.ctx is None:
            app.state.ctx = open_context(settings or Settings())
        if owned and not app.state.ctx.settings.broker_url:
            from preservation import dispatch

            # DIP requests a stopped server left queued get their batch (workers: beat's).
            dispatch.resume_dips(app.state.ctx)
        try:
            yield
        finally:
            from preservation import dispatch

            dispatch.shutdown(app.state.ctx, wait=True)
            if owned:
                app.state.ctx.close()

    app = FastAPI(
        title="preservation",
        version=__version__,
        summary="A digital safe on dual-site LTO tape: submit, find, keep, dispose.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)
    for module in (
        sips,
        aips,
        disposals,
        audits,
        formats,
        migrations,
        dips,
        tenants,
        tokens,
        history,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(operations.router)
    from preservation import console

    console.install(app)
    return app
