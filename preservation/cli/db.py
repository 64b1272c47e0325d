"""The catalogue database: `db upgrade`."""

from __future__ import annotations

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
