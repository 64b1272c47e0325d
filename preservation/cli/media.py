"""Moving a site's archive to a new LTO generation: `media migrate`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from preservation.cli.terminal import (
    EXIT_SYSTEM,
    err,
    human_size,
    in_context,
    out,
    progress_bars,
)

app = typer.Typer(
    help="Tape media: rewrite one site's archive on a new LTO generation.",
    no_args_is_help=True,
)


@app.command("migrate")
def media_migrate(
    site: Annotated[str, typer.Option("--site", "-s", help="The site to rewrite (one at a time).")],
    from_media: Annotated[
        str, typer.Option("--from", metavar="MEDIA", help="The old generation, e.g. L7.")
    ],
    to_media: Annotated[
        str, typer.Option("--to", metavar="MEDIA", help="The new generation, e.g. L9.")
    ],
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help="Move at most this many AIP versions in this run; the next run continues.",
        ),
    ] = None,
    max_batch_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-batch-bytes",
            min=1,
            help="Temporary space one batch of old copies may use under staging/media/.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Copy every live AIP version on a site's old cartridges to new-generation ones.

    Refused unless every other site holds a verified copy of each version it
    touches. Old cartridges are sealed, read once each in tape order, every
    new copy is read back and verified before the old one stops counting, and
    emptied cartridges are retired. Disposed AIPs are left behind. Safe to
    kill and run again. Exit 0 when the site is done, 3 while versions remain
    on the old generation (after --limit) or some could not be moved.
    """
    from preservation.storage.media import migrate_media

    with progress_bars(not as_json) as progress:

        def work(ctx: Any) -> Any:
            extra = {} if max_batch_bytes is None else {"max_batch_bytes": max_batch_bytes}
            return migrate_media(
                ctx, site, from_media, to_media, limit=limit, progress=progress, **extra
            )

        report = in_context(as_json, work)
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        _print(report)
    raise typer.Exit(0 if report.done else EXIT_SYSTEM)


def _print(report: Any) -> None:
    for f in report.failed:
        err.print(
            f"[red]FAILED[/red] AIP {f['aip_id']} v{f['version']} on {f['barcode']}: "
            f"{escape(f['error'])}",
            highlight=False,
        )
    if report.cartridges_sealed:
        out.print(f"sealed (no new writes): {', '.join(report.cartridges_sealed)}", highlight=False)
    out.print(
        f"site {report.site} {report.from_media} -> {report.to_media}: "
        f"{len(report.copies)} version(s) moved ({report.versions_copied} copied, "
        f"{human_size(report.bytes_copied)}), {report.skipped_disposed} disposed left behind, "
        f"{report.elapsed_seconds:.1f} s",
        highlight=False,
    )
    if report.cartridges_retired:
        out.print(
            f"cartridges retired (take them out of the library): "
            f"{', '.join(report.cartridges_retired)}"
            + (
                f"; {human_size(report.reclaimed_bytes)} of disposed AIPs reclaimed"
                if report.reclaimed_bytes
                else ""
            ),
            highlight=False,
        )
    if report.left_for_repair:
        err.print(
            f"[yellow]suspect or failed[/yellow] {report.from_media} cartridges, left to "
            f"`preservation repair`: {', '.join(report.left_for_repair)}",
            highlight=False,
        )
    if report.remaining:
        out.print(
            f"{report.remaining} version(s) still on {report.from_media} at {report.site}: "
            "run the migration again",
            highlight=False,
        )
    elif not report.failed:
        out.print(f"site {report.site}: nothing live left on {report.from_media}", highlight=False)
