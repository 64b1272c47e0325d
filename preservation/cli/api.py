"""`preservation api`: serve the REST API and the curators' console with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from preservation.cli.terminal import err, fail, load_settings


def api(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="uvicorn worker processes (with a broker)")
    ] = 1,
) -> None:
    """Serve the REST API (/api/v1, OpenAPI at /api/v1/openapi.json), the console (/console/),
    /healthz and /metrics."""
    import uvicorn

    from preservation.context import check_data_root
    from preservation.errors import PreservationError

    settings = load_settings()
    try:
        check_data_root(settings)
    except PreservationError as e:
        raise fail(e, False) from e
    if workers > 1 and not settings.broker_url:
        err.print(
            "the embedded default runs ingests inside the API process: one worker only "
            "(set PRESERVATION_BROKER_URL to use several)",
            highlight=False,
        )
        workers = 1
    err.print(f"API on http://{host}:{port}/api/v1/docs", highlight=False)
    err.print(
        f"console on http://{host}:{port}/console/ (people log in: `preservation user add`)",
        highlight=False,
    )
    uvicorn.run(
        "preservation.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        proxy_headers=True,
    )
