"""The dashboard: what is in the safe, and what needs a person."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from preservation.console import render
from preservation.console.deps import Viewer
from preservation.console.deps import router as console_router

router = console_router()


@router.get("/")
def dashboard(request: Request, viewer: Viewer) -> Response:
    return render.page(request, "dashboard.html", {"section": "dashboard"})
