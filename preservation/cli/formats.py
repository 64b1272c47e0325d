"""Formats: `formats report`, the format risk report (GET /api/v1/formats) from a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import human_size, in_context, out

app = typer.Typer(
    help="What formats the archive holds, and what the format policy does about them.",
    no_args_is_help=True,
)


@app.command("report")
def report(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's (default: every tenant)")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The format policy to read actions from (default: the settings', else the "
            "policy shipped with the package)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Files per PRONOM id: bytes, policy action, extension-only, unidentified, invalid."""
    from preservation.catalog import session_scope
    from preservation.formats import format_report, load_format_policy

    def work(ctx: Any) -> Any:
        rules = load_format_policy(ctx.settings, policy)
        with session_scope(ctx.sessions) as s:
            return format_report(s, tenant, rules)

    result = in_context(as_json, work)
    if as_json:
        out.print_json(result.model_dump_json())
        return
    _print(result)


def _print(result: Any) -> None:
    whose = f"tenant {result.tenant}" if result.tenant else "every tenant"
    table = Table(title=f"formats of {whose}; actions of policy {result.policy.name!r}")
    table.add_column("PUID", no_wrap=True)
    table.add_column("format", min_width=20)
    for heading in ("files", "bytes"):
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("action", no_wrap=True)  # a PUID cut short would name another format
    for heading in ("by ext.", "unident.", "invalid"):
        table.add_column(heading, justify="right", no_wrap=True)
    for r in result.formats:
        table.add_row(
            r.puid or "-",
            _name(r) if r.puid else "[yellow](unidentified)[/yellow]",
            str(r.files),
            human_size(r.bytes),
            "\n".join(a.target_puid for a in r.actions) or "none",
            _warn(r.by_extension, "yellow"),
            _warn(r.unidentified, "yellow"),
            _warn(r.invalid, "red"),
        )
    out.print(table)
    t = result.totals
    out.print(
        f"{t.files} files, {human_size(t.bytes)} in {t.formats} formats; "
        f"{t.by_extension} identified by extension only, {t.unidentified} unidentified, "
        f"{t.invalid} invalid; {t.with_action} in a format with a preservation action",
        highlight=False,
    )


def _name(r: Any) -> str:
    """PRONOM names often carry their version already ("Acrobat PDF 1.4 - ..."): not twice."""
    name, version = r.format_name or "-", r.format_version
    return f"{name} {version}" if version and version not in name else name


def _warn(n: int, style: str) -> str:
    """A count worth a curator's attention stands out; a zero does not."""
    return f"[{style}]{n}[/{style}]" if n else "0"
