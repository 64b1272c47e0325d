"""SIPs in flight: `status` and `resume`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import (
    EXIT_SYSTEM,
    in_context,
    load_settings,
    out,
)


def status(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List SIPs by state, with their stage and last error."""
    from preservation.catalog import service, session_scope
    from preservation.context import open_context

    ctx = open_context(load_settings())
    try:
        with session_scope(ctx.sessions) as s:
            sips = service.list_sips(s, tenant_id=tenant)
            counts = service.count_sips_by_state(s, tenant)
            rows: list[dict[str, Any]] = [
                {
                    "sip_id": x.id,
                    "tenant": x.tenant_id,
                    "name": x.name,
                    "state": x.state.value,
                    "stage": x.stage,
                    "aip_id": x.aip_id,
                    "last_error": x.last_error,
                    "updated_at": x.updated_at.isoformat(),
                }
                for x in sips
            ]
    finally:
        ctx.close()
    if as_json:
        out.print_json(data={"counts": counts, "sips": rows})
        return
    out.print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no SIPs yet")
    table = Table("SIP", "tenant", "bag", "state", "stage", "last error")
    for r in rows:
        table.add_row(
            r["sip_id"][:8],
            r["tenant"],
            r["name"],
            r["state"],
            r["stage"] or "",
            (r["last_error"] or "")[:60],
        )
    out.print(table)


def resume(
    sip_ids: Annotated[
        list[str] | None, typer.Argument(help="SIP ids; default: every pending SIP.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Finish SIPs left pending (a site was down, a process died), in this process.

    Exit 0 when every one ended committed or rejected, 3 when some still wait.
    """
    from preservation.pipeline import TERMINAL_STATES
    from preservation.pipeline import resume as resume_sips

    results = in_context(as_json, lambda ctx: resume_sips(ctx, sip_ids))
    if as_json:
        out.print_json(data=[r.to_dict() for r in results])
    elif not results:
        out.print("nothing pending")
    for r in results if not as_json else []:
        out.print(f"SIP {r.sip_id}: {r.state}" + (f" (AIP {r.aip_id})" if r.aip_id else ""))
    raise typer.Exit(0 if all(r.state in TERMINAL_STATES for r in results) else EXIT_SYSTEM)
