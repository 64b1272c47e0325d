"""Tape cartridges at each site: `tape ls`, `tape show`, `tape import`, `tape export`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from preservation.cli.terminal import (
    EXIT_INVALID,
    check_site,
    err,
    human_size,
    in_context,
    out,
)

_STATE_STYLE = {"suspect": "yellow", "failed": "red", "retired": "dim"}


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def _copies_text(counts: dict[str, int]) -> str:
    """Verified copies first: they are what counts; the rest only needs an operator's eye."""
    others = ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items()) if status != "verified"
    )
    return str(counts.get("verified", 0)) + (f" (+{others})" if others else "")


app = typer.Typer(
    help="Tape cartridges at each site: state, usage, contents.", no_args_is_help=True
)


@app.command("ls")
def tape_ls(
    site: Annotated[str | None, typer.Option("--site", "-s", help="Only this site.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List cartridges per site: state, used/capacity, reclaimable, copies, errors."""
    from preservation.storage.service import list_cartridges

    def cartridges(ctx: Any) -> list[dict[str, Any]]:
        check_site(ctx, site)
        return list_cartridges(ctx, site)

    rows = in_context(as_json, cartridges)
    if as_json:
        out.print_json(data=rows)
        return
    if not rows:
        out.print("no cartridges")
        return
    table = Table("site", "barcode", "state", "used / capacity", "reclaimable", "copies", "errors")
    for r in rows:
        table.add_row(
            r["site"],
            r["barcode"],
            _state(r["state"]),
            f"{human_size(r['used'])} / {human_size(r['capacity'])}",
            human_size(r["reclaimable"]) if r["reclaimable"] else "-",
            _copies_text(r["copies"]),
            str(r["errors"]),
        )
    out.print(table)


@app.command("show")
def tape_show(
    barcode: Annotated[str, typer.Argument(help="The cartridge's barcode, e.g. A00001L9.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one cartridge: state, LTFS volume, and its AIP copies in tape order."""
    from preservation.storage.service import show_cartridge

    data = in_context(as_json, lambda ctx: show_cartridge(ctx, barcode))
    if as_json:
        out.print_json(data=data)
        return
    out.print(
        f"[bold]cartridge {escape(data['barcode'])}[/bold]  site {data['site']}  "
        f"state {_state(data['state'])}  errors {data['errors']}",
        highlight=False,
    )
    out.print(
        f"volume {data['volume_uuid'] or '- (not formatted yet)'}  "
        f"used {human_size(data['used'])} of {human_size(data['capacity'])}  "
        f"mounts {data['mounts']}",
        highlight=False,
    )
    if data["reclaimable"]:
        out.print(
            f"reclaimable {human_size(data['reclaimable'])}: disposed copies, out of the "
            "LTFS index, still on tape until the cartridge is repacked",
            highlight=False,
        )
    if not data["contents"]:
        out.print("no copies on this cartridge")
        return
    # The path names tenant, AIP and version; it gets the room, and is folded, never cut.
    table = Table("block", "length", "status", "verified")
    table.add_column("path", overflow="fold")
    for c in data["contents"]:
        table.add_row(
            "-" if c["start_block"] is None else str(c["start_block"]),
            human_size(c["length"]),
            c["status"],
            (c["verified_at"] or "")[:16].replace("T", " "),
            c["path"],
        )
    out.print(table)


@app.command("import")
def tape_import(
    site: Annotated[str, typer.Option("--site", "-s", help="The site whose library to fill.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Take the cartridges waiting in a real library's import/export slots into its pool.

    Each goes to a free storage slot; one new to the catalogue is registered
    scratch and checked blank at its first mount (nothing is written to a tape
    that holds data). Exit 0, or 1 when some had to stay in their I/E slot
    (each named with its reason). An emulated library has no I/E slots.
    """
    from preservation.storage.inventory import import_cartridges

    outcome = in_context(as_json, lambda ctx: import_cartridges(ctx, site))
    if as_json:
        out.print_json(data=outcome.to_dict())
    else:
        if not outcome.imported and not outcome.left:
            out.print(f"no cartridge waiting in the import/export slots of site {site}")
        for c in outcome.imported:
            what = "new: scratch, checked blank at first mount" if c["new"] else c["state"]
            out.print(
                f"imported {escape(c['barcode'])} into slot {c['slot']} ({what})", highlight=False
            )
        for c in outcome.left:
            label = escape(c["barcode"] or "unlabelled cartridge")
            err.print(
                f"[yellow]left[/yellow] {label} in I/E slot {c['ie_slot']}: {escape(c['reason'])}",
                highlight=False,
            )
    raise typer.Exit(0 if outcome.ok else EXIT_INVALID)


@app.command("export")
def tape_export(
    barcode: Annotated[str, typer.Argument(help="The cartridge's barcode, e.g. A00001L7.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also a full cartridge, when every live version on it is verified at another "
            "site: it is retired, and `preservation repair` writes those versions again here.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Put a retired cartridge out of its library, into a free import/export slot.

    Only a retired cartridge leaves (nothing live on it); the catalogue keeps
    its row. An emulated library moves its folder to <tape>/<site>/exported/.
    """
    from preservation.storage.inventory import export_cartridge

    done = in_context(as_json, lambda ctx: export_cartridge(ctx, barcode, force=force))
    if as_json:
        out.print_json(data=done)
        return
    where = (
        f"import/export slot {done['ie_slot']}"
        if done["ie_slot"] is not None
        else escape(str(done["path"]))
    )
    verb = "already in" if done["already"] else "exported to"
    out.print(f"{escape(barcode)} {verb} {where} (site {done['site']})", highlight=False)
    if done["forced"]:
        out.print(
            "retired: run `preservation repair` to write its live versions again at this site",
            highlight=False,
        )
