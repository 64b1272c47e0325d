"""The ``preservation`` command: the embedded pipeline and the operator's tools.

Errors of our own tree map to exit codes here and nowhere else: 1 for a bad
submission (the curator's problem), 2 for usage, 3 for storage or other
system failures (the operator's problem).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from preservation.config import Settings
from preservation.errors import InvalidSIPError, NotFoundError, PreservationError

app = typer.Typer(
    help="An OAIS preservation pipeline: BagIt in, two verified LTFS tape copies out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

EXIT_INVALID = 1
EXIT_SYSTEM = 3


def _settings() -> Settings:
    return Settings()


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A progress bar on a terminal; silence in pipes and under --json."""
    if not enabled or not err.is_terminal:
        yield lambda what, done, total: None
        return
    bars: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as progress:

        def update(what: str, done: int, total: int) -> None:
            if what not in bars:
                bars[what] = progress.add_task(what, total=total)
            progress.update(bars[what], completed=done, total=total)

        yield update


def _fail(error: PreservationError, as_json: bool) -> typer.Exit:
    if as_json:
        out.print_json(data=error.to_dict())
    else:
        err.print(f"[red]error:[/red] {error.message}")
    code = EXIT_INVALID if isinstance(error, InvalidSIPError | NotFoundError) else EXIT_SYSTEM
    return typer.Exit(code)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A bag directory or a .tar/.tar.gz/.zip bag.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a BagIt bag strictly (RFC 8493 plus safety rules). Exit 0 valid, 1 invalid."""
    import tempfile

    from preservation.pipeline import is_serialised
    from preservation.sip import open_serialised_bag, validate_bag

    settings = _settings()
    try:
        with tempfile.TemporaryDirectory(prefix="preservation-validate-") as tmp:
            bag = path
            if is_serialised(path):
                bag = open_serialised_bag(
                    path,
                    Path(tmp),
                    max_bytes=settings.unpack_max_bytes,
                    max_members=settings.unpack_max_members,
                    max_ratio=settings.unpack_max_ratio,
                )
            report = validate_bag(bag, processes=2)
    except InvalidSIPError as e:
        raise _fail(e, as_json) from e
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        for problem in report.problems:
            err.print(problem.to_text(), highlight=False, markup=False)
        if report.valid:
            out.print(f"{path}: valid", highlight=False)
        else:
            err.print(f"{path}: INVALID ({len(report.errors)} problem(s))", highlight=False)
    raise typer.Exit(0 if report.valid else EXIT_INVALID)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A bag directory or a serialised bag.")],
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="The owning tenant.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ingest a bag: validate, stage, identify, describe, package, store on tape."""
    from preservation.context import open_context
    from preservation.pipeline import run_ingest

    if not path.exists() and not path.is_symlink():
        raise _fail(InvalidSIPError(f"{path}: no such file or directory", path=path), as_json)
    ctx = open_context(_settings())
    try:
        with _progress(not as_json) as progress:
            result = run_ingest(ctx, path, tenant=tenant, progress=progress)
    except PreservationError as e:
        raise _fail(e, as_json) from e
    finally:
        ctx.close()
    if as_json:
        out.print_json(data=result.to_dict())
    else:
        _print_result(result)
    raise typer.Exit(0 if result.state != "rejected" else EXIT_INVALID)


def _print_result(result: Any) -> None:
    if result.state == "rejected":
        err.print(f"[red]rejected[/red]: SIP {result.sip_id}", highlight=False)
        for p in result.problems:
            err.print(
                f"  {p.get('file') or '(bag)'}: {p.get('rule')}: {p.get('message')}",
                highlight=False,
            )
        err.print(f"report: {result.rejected_to}", highlight=False)
        return
    out.print(f"SIP {result.sip_id}: {result.state}", highlight=False)
    if result.aip_id:
        out.print(f"AIP {result.aip_id}", highlight=False)
    timings = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    out.print(f"[dim]{timings}[/dim]", highlight=False)


@app.command()
def status(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List SIPs by state, with their stage and last error."""
    from preservation.catalog import service, session_scope
    from preservation.context import open_context

    ctx = open_context(_settings())
    with session_scope(ctx.sessions) as s:
        sips = service.list_sips(s, tenant_id=tenant)
        counts = service.count_sips_by_state(s, tenant)
        rows = [
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


@app.command()
def show(
    aip_id: Annotated[str, typer.Argument(help="The AIP's UUID.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show an AIP: files and formats, versions, tape copies, PREMIS events."""
    from preservation.context import open_context
    from preservation.inventory import describe_aip

    ctx = open_context(_settings())
    try:
        data = describe_aip(ctx, aip_id)
    except PreservationError as e:
        raise _fail(e, as_json) from e
    finally:
        ctx.close()
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


db_app = typer.Typer(help="The catalogue database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the catalogue schema up to date (Alembic)."""
    from preservation.catalog import upgrade

    settings = _settings()
    settings.ensure_dirs()
    upgrade(settings.catalog_url)
    out.print("catalogue up to date")


@app.command()
def watch(
    once: Annotated[bool, typer.Option("--once", help="Scan once and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between scans.")] = 5.0,
) -> None:
    """Watch ingest/<tenant>/ folders; ingest in-process, or via the broker when one is set."""
    import time as _time

    from preservation import pipeline
    from preservation.context import open_context

    settings = _settings()
    ctx = open_context(settings)
    if settings.broker_url:
        from workers.tasks import submit
    else:

        def submit(sip_id: str) -> None:
            pipeline.run_sip(ctx, sip_id)

    heartbeat = settings.ingest_dir / ".watcher-heartbeat"
    try:
        while True:
            heartbeat.touch()
            for sip_id in pipeline.scan_and_claim(ctx, submit=submit):
                err.print(f"claimed SIP {sip_id}", highlight=False)
            if once:
                break
            _time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        ctx.close()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
