"""The catalogue as a whole: `catalog rebuild --from-tapes`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from preservation.cli.terminal import EXIT_SYSTEM, err, in_context, out, progress_bars, usage

app = typer.Typer(help="The catalogue as a whole, rebuilt from its sources.", no_args_is_help=True)

#: How many versions missing at a site the human output names; --json gives all.
_SHOWN = 20


@app.command("rebuild")
def rebuild(
    from_tapes: Annotated[
        bool,
        typer.Option(
            "--from-tapes",
            help="Read every cartridge's LTFS index and each tar's METS and PREMIS (required: "
            "the tapes are the only source so far)",
        ),
    ] = False,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site", help="Read only this site (name or letter: site-a or A); repeatable"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Rebuild an empty catalogue from the tapes alone; the cartridges are only read.

    Exits 0 when every site and cartridge was read and nothing was amiss, 3
    (after printing the report) when the rebuild is partial: a site not read,
    a cartridge unreadable or gone, or a problem.
    """
    from preservation.storage.rebuild import rebuild_catalogue, resolve_site

    if not from_tapes:
        raise usage("say where to rebuild from: --from-tapes", as_json)

    def work(ctx: Any) -> dict[str, Any]:
        # By name or letter, each once: `--site A --site site-a` is one site.
        sites = list(dict.fromkeys(resolve_site(ctx, s) for s in site)) if site else None
        with progress_bars(not as_json) as update:
            return rebuild_catalogue(ctx, sites=sites, progress=update).to_dict()

    report = in_context(as_json, work)
    if as_json:
        out.print_json(data=report)
        if not report["complete"]:
            raise typer.Exit(EXIT_SYSTEM)
        return
    out.print(
        f"catalogue rebuilt from {report['cartridges_written']} written cartridge(s) at "
        f"{', '.join(report['sites_read']) or 'no site'} in {report['seconds']:.1f} s: "
        f"{report['tenants']} tenant(s), {report['aips']} AIP(s) "
        f"({report['aips_disposed']} disposed, kept as tombstones), {report['versions']} "
        f"version(s), {report['files']} file(s), {report['events']} event(s), "
        f"{report['copies']} copies",
        highlight=False,
    )
    for lost, why in report["sites_lost"].items():
        err.print(f"[yellow]site {lost} not read:[/yellow] {why}", highlight=False)
    for barcode, why in report["cartridges_unreadable"].items():
        err.print(f"[yellow]cartridge {barcode} not read:[/yellow] {why}", highlight=False)
    for barcode, why in report["cartridges_missing"].items():
        err.print(f"[yellow]cartridge {barcode} missing:[/yellow] {why}", highlight=False)
    missing = report["missing"]
    if missing:
        err.print(
            f"[yellow]{len(missing)} version copies missing[/yellow] (run `preservation repair` "
            "once the site has cartridges):",
            highlight=False,
        )
        for m in missing[:_SHOWN]:
            err.print(f"  {m['aip_id']} v{m['version']} at {m['site']}", highlight=False)
        if len(missing) > _SHOWN:
            err.print(f"  ... and {len(missing) - _SHOWN} more (--json lists all)")
    for problem in report["problems"]:
        err.print(f"[red]problem:[/red] {problem}", highlight=False)
    err.print(
        f"not restored, because no tape holds them: {len(report['not_restored'])} kinds of "
        "rows and fields (SIP ids, events after the last journal sync and each AIP's "
        "newest version, requests and decisions...); --json lists each with the reason, "
        "docs/operations-tape.md explains",
        highlight=False,
    )
    if not report["complete"]:
        err.print(
            "[red]partial rebuild:[/red] not every site or cartridge was read, or problems "
            "were found (above); exit 3",
            highlight=False,
        )
        raise typer.Exit(EXIT_SYSTEM)
