"""Tenants: `tenant add`, `tenant ls`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import in_context, out

app = typer.Typer(help="The institutions the archive serves.", no_args_is_help=True)


@app.command("add")
def add(
    tenant_id: Annotated[str, typer.Argument(metavar="ID", help="The tenant id (lower case)")],
    name: Annotated[str, typer.Option("--name", help="The institution's name")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a tenant (or rename one)."""
    from preservation.catalog import session_scope
    from preservation.tenants import add_tenant, list_tenants

    def work(ctx: Any) -> dict[str, Any]:
        with session_scope(ctx.sessions) as s:
            add_tenant(s, tenant_id, name)
        with session_scope(ctx.sessions) as s:
            return next(t for t in list_tenants(s) if t["id"] == tenant_id)

    row = in_context(as_json, work)
    if as_json:
        out.print_json(data=row)
    else:
        out.print(f"tenant {row['id']} ({row['name']})", highlight=False)


@app.command("ls")
def ls(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every tenant with its holdings at a glance."""
    from preservation.catalog import session_scope
    from preservation.tenants import list_tenants

    def work(ctx: Any) -> list[dict[str, Any]]:
        with session_scope(ctx.sessions) as s:
            return list_tenants(s)

    rows = in_context(as_json, work)
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("tenant", "name", "AIPs", "bytes", "SIPs in flight", "events")
    for t in rows:
        table.add_row(
            t["id"], t["name"], str(t["aips"]), str(t["bytes"]), str(t["sips_in_flight"]),
            str(t["events"]),
        )
    out.print(table)
