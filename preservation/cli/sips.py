"""SIPs in flight: `status`, `resume` and `sip discard`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from preservation.cli.terminal import EXIT_SYSTEM, err, in_context, out, usage


def _resolve(ctx: Any, ids: list[str]) -> list[str]:
    """Full SIP ids from full ids or unique prefixes (8+ characters, as `status` prints)."""
    from preservation.catalog import service, session_scope

    with session_scope(ctx.sessions) as s:
        return [service.resolve_sip_id(s, i) for i in ids]


def status(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only SIPs in this state (repeat for several)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many SIPs, newest first.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Full ids, as JSON.")] = False,
) -> None:
    """List SIPs by state, with their stage, AIP and last error."""
    from preservation.catalog import SIPState
    from preservation.sips import sip_rows

    known = [s.value for s in SIPState]
    wanted = []
    for value in state or []:
        if value not in known:
            raise usage(f"--state {value!r}: not a SIP state (one of {', '.join(known)})", as_json)
        wanted.append(SIPState(value))
    from preservation.evidence.stamping import history_status

    def work(ctx: Any) -> tuple[Any, Any, dict[str, Any]]:
        counts, rows = sip_rows(ctx, tenant=tenant, states=wanted or None, limit=limit)
        return counts, rows, history_status(ctx)

    counts, rows, history = in_context(as_json, work)
    if as_json:
        out.print_json(data={"counts": counts, "sips": rows, "history": history})
        return
    if history["warning"]:
        err.print(f"[yellow]warning[/yellow]: {history['warning']}", highlight=False)
    out.print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no SIPs yet")
    if not rows:
        return
    # Ids, state and stage are never cut (they are what one types next); names and errors fold.
    table = Table()
    table.add_column("SIP", no_wrap=True)
    table.add_column("tenant", overflow="fold")
    table.add_column("bag", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("AIP", no_wrap=True)
    table.add_column("last error", overflow="fold")
    for r in rows:
        stage = r["stage"] or ""
        table.add_row(
            r["sip_id"][:8],
            r["tenant"],
            escape(r["name"]),
            r["state"],
            f"[yellow]{stage}[/yellow]" if r["interrupted"] else stage,
            (r["aip_id"] or "")[:8],
            escape((r["last_error"] or "")[:60]),
        )
    out.print(table)
    if any(r["interrupted"] for r in rows):
        err.print(
            "interrupted: the process running that stage is gone; "
            "`preservation resume SIP` finishes it",
            highlight=False,
        )


def resume(
    sip_ids: Annotated[
        list[str] | None,
        typer.Argument(help="SIP ids or 8+ character prefixes; default: every pending SIP."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Finish SIPs left pending (a site was down, a process died), in this process.

    Every SIP is tried, whatever happens to the others. Exit 0 when every one
    ended committed or rejected, 3 when some failed or still wait.
    """
    from preservation.ingest import TERMINAL_STATES
    from preservation.ingest import resume as resume_sips

    def work(ctx: Any) -> list[Any]:
        ids = _resolve(ctx, sip_ids) if sip_ids else None
        return resume_sips(ctx, ids)

    results = in_context(as_json, work)
    unfinished = [r for r in results if r.state not in TERMINAL_STATES or r.error]
    if as_json:
        out.print_json(data=[r.to_dict() for r in results])
        raise typer.Exit(EXIT_SYSTEM if unfinished else 0)
    if not results:
        out.print("nothing pending")
    for r in results:
        line = f"SIP {r.sip_id}: {r.state}" + (f" (AIP {r.aip_id})" if r.aip_id else "")
        if r.error:
            err.print(f"[red]{escape(line)}[/red]: {escape(r.error)}", highlight=False)
        else:
            out.print(line, highlight=False)
    if unfinished:
        err.print(
            f"{len(unfinished)} of {len(results)} SIP(s) not finished; see `preservation status`",
            highlight=False,
        )
    raise typer.Exit(EXIT_SYSTEM if unfinished else 0)


app = typer.Typer(help="One SIP at a time: end one that cannot finish.", no_args_is_help=True)


@app.command("discard")
def discard(
    sip_id: Annotated[str, typer.Argument(help="The SIP's id or a unique 8+ character prefix.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really discard it (required).")] = False,
    reason: Annotated[str, typer.Option(help="Why, for the report and the PREMIS event.")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """End a SIP that cannot finish: free its staging, drop its unfinished tape writes,
    set its bag aside in rejected/ with a report, record a PREMIS event.

    Only a SIP not yet committed, and not being worked on, can be discarded.
    """
    from preservation.sips import discard_sip

    if not yes:
        raise usage("discarding a SIP cannot be undone; add --yes to confirm", as_json)

    def work(ctx: Any) -> Any:
        [full] = _resolve(ctx, [sip_id])
        return discard_sip(ctx, full, reason=reason)

    result = in_context(as_json, work)
    if as_json:
        out.print_json(data=result.to_dict())
        return
    out.print(
        f"SIP {result.sip_id} discarded (was {result.state_before}"
        + (f", stage {result.stage_before}" if result.stage_before else "")
        + f"); {len(result.discarded_copies)} unfinished tape write(s) dropped",
        highlight=False,
    )
    from pathlib import Path

    kept = [p for p in Path(result.rejected_to).iterdir() if not p.name.startswith("report.")]
    held = "bag and report" if kept else "report (the bag was already gone)"
    out.print(f"{held}: {result.rejected_to}", highlight=False)


@app.command("ls")
def sip_ls(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """SIPs newest first, as GET /api/v1/sips lists them."""
    from preservation.catalog import SIPState, session_scope
    from preservation.lookup import list_sip_views

    try:
        wanted = SIPState(state) if state else None
    except ValueError:
        raise usage(
            f"--state must be one of {', '.join(s.value for s in SIPState)}", as_json
        ) from None

    def work(ctx: Any) -> Any:
        with session_scope(ctx.sessions) as s:
            return list_sip_views(s, tenant, state=wanted, cursor=cursor, limit=limit)

    page = in_context(as_json, work)
    if as_json:
        out.print_json(page.model_dump_json())
        return
    table = Table("SIP", "tenant", "bag", "state", "stage", "AIP", "updated")
    for x in page.items:
        table.add_row(
            x.sip_id,
            x.tenant,
            x.name,
            x.state,
            x.stage or "",
            x.aip_id or "",
            x.updated_at.isoformat()[:19],
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}", highlight=False)


@app.command("show")
def sip_show(
    sip_id: Annotated[str, typer.Argument(help="The SIP's id or a unique 8+ character prefix.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One SIP: state, stage, problems, AIP id (GET /api/v1/sips/{id})."""
    from preservation.catalog import session_scope
    from preservation.lookup import sip_view

    def work(ctx: Any) -> Any:
        full = _resolve(ctx, [sip_id])[0]
        with session_scope(ctx.sessions) as s:
            return sip_view(s, full, None)

    view = in_context(as_json, work)
    if as_json:
        out.print_json(view.model_dump_json())
        return
    out.print(
        f"SIP {view.sip_id}  tenant {view.tenant}  bag {view.name}\n"
        f"state {view.state}  stage {view.stage or '-'}  AIP {view.aip_id or '-'}",
        highlight=False,
    )
    for p in view.problems:
        out.print(
            f"  {p.get('severity', 'error')}: {p.get('file') or ''}: {p.get('rule')}: "
            f"{escape(str(p.get('message')))}",
            highlight=False,
        )
