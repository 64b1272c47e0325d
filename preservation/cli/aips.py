"""What the archive holds: `show`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import (
    in_context,
    out,
)


def resolve_aip(ctx: Any, text: str) -> str:
    """A full AIP id from a full id or a unique prefix (8+ characters, as `status` prints)."""
    from preservation.catalog import service, session_scope

    with session_scope(ctx.sessions) as s:
        return service.resolve_aip_id(s, text)


def show(
    aip_id: Annotated[str, typer.Argument(help="The AIP's UUID or a unique 8+ character prefix.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show an AIP: files and formats, versions, tape copies, PREMIS events."""
    from preservation.inventory import describe_aip

    data = in_context(as_json, lambda ctx: describe_aip(ctx, resolve_aip(ctx, aip_id)))
    if as_json:
        out.print_json(data=data)
        return
    out.print(
        f"[bold]AIP {data['aip_id']}[/bold]  tenant {data['tenant']}  state {data['state']}",
        highlight=False,
    )
    out.print(
        f"bag {data['source_bag_name']}  external id {data['external_identifier'] or '-'}",
        highlight=False,
    )
    for v in data["versions"]:
        out.print(
            f"\n[bold]version {v['number']}[/bold] ({v['reason']}) {v['tar_size']} bytes "
            f"sha256 {v['tar_sha256']}",
            highlight=False,
        )
        copies = Table("site", "barcode", "path", "status", "verified")
        for c in v["copies"]:
            copies.add_row(c["site"], c["barcode"], c["path"], c["status"], c["verified_at"] or "")
        out.print(copies)
    files = Table("file", "size", "PUID", "format", "MIME")
    for f in data["files"]:
        files.add_row(
            f["original_name"],
            str(f["size"]),
            f["puid"] or "?",
            " ".join(x for x in (f["format_name"], f["format_version"]) if x),
            f["mime"] or "",
        )
    out.print(files)
    events = Table("when", "event", "outcome", "detail")
    for e in data["events"]:
        events.add_row(e["occurred_at"][:19], e["type"], e["outcome"], e["detail"][:70])
    out.print(events)
