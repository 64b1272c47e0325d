"""The curators' console: server-rendered pages under ``/console/`` over the same service functions.

It has no logic of its own. Each page module in ``pages/`` is a router whose
routes call the functions the REST API and the CLI call (``lookup``,
``retention``, ``access.service``, ``migrate``, ``formats``, ...) with the
logged-in user as the :class:`~preservation.tokens.Principal`, and render a
template. Reading works without JavaScript; htmx (one vendored file) swaps
fragments for live progress and quick forms.

``install`` mounts it on the API app: the static files, the language and
security-header middleware, the HTML error pages (the API keeps its problem
bodies), and the page routers.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from preservation.console.errors import install_error_pages
from preservation.console.middleware import ConsoleMiddleware

__all__ = ["PREFIX", "install"]

PREFIX = "/console"


def install(app: FastAPI) -> None:
    from pathlib import Path

    from preservation.console import pages

    app.mount(
        f"{PREFIX}/static",
        StaticFiles(directory=Path(__file__).parent / "static"),
        name="console-static",
    )
    app.add_middleware(ConsoleMiddleware, prefix=PREFIX)
    install_error_pages(app, PREFIX)
    for module in pages.ALL:
        app.include_router(module.router, prefix=PREFIX)
