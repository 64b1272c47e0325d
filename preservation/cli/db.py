"""The catalogue database: `db upgrade`, `db reindex`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from preservation.cli.terminal import (
    load_settings,
    out,
)

app = typer.Typer(help="The catalogue database.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Bring the catalogue schema up to date (Alembic)."""
    from preservation.catalog import upgrade

    settings = load_settings()
    settings.ensure_dirs()
    upgrade(settings.catalog_url)
    out.print("catalogue up to date")


@app.command("reindex")
def db_reindex(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's AIPs")] = None,
) -> None:
    """Rebuild the search index (full text and formats) from the catalogue."""
    from preservation.catalog import session_scope
    from preservation.catalog.search import reindex
    from preservation.cli.terminal import in_context, progress_bars

    def work(ctx: Any) -> int:
        with progress_bars(True) as update, session_scope(ctx.sessions) as s:
            return reindex(
                s, tenant_id=tenant, progress=lambda done, total: update("reindex", done, total)
            )

    n = in_context(False, work)
    out.print(f"search index rebuilt: {n} AIPs", highlight=False)
