"""The ``preservation`` command: the embedded pipeline and the operator's tools.

Errors of our own tree map to exit codes here and nowhere else: 1 for a bad
submission (the curator's problem), 2 for usage, 3 for storage or other
system failures (the operator's problem).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from preservation.config import Settings
from preservation.errors import InvalidSIPError, NotFoundError, PreservationError, TransientError

app = typer.Typer(
    help="An OAIS preservation pipeline: BagIt in, two verified LTFS tape copies out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

T = TypeVar("T")

EXIT_INVALID = 1
EXIT_USAGE = 2
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
        err.print(f"[red]error:[/red] {escape(error.message)}", highlight=False)
    code = EXIT_INVALID if isinstance(error, InvalidSIPError | NotFoundError) else EXIT_SYSTEM
    return typer.Exit(code)


def _in_context(as_json: bool, work: Callable[[Any], T]) -> T:
    """Run ``work(ctx)`` with a fresh Context, mapping our errors to exit codes.

    The context is always closed: that ends tape batches, whose index
    partitions are written at unmount.
    """
    from preservation.context import open_context

    ctx = open_context(_settings())
    try:
        return work(ctx)
    except PreservationError as e:
        raise _fail(e, as_json) from e
    finally:
        ctx.close()


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
    # Unpack where the data root has room for bags, not in /tmp (often small, or RAM).
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="validate-", dir=settings.staging_dir) as tmp:
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
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="With a broker: follow the SIP to its end.")
    ] = True,
    timeout: Annotated[
        float | None,
        typer.Option(help="With --wait: stop following after this many seconds (exit 3)."),
    ] = None,
) -> None:
    """Ingest a bag: validate, stage, identify, describe, package, store on tape.

    With no broker configured every stage runs in this process. With
    PRESERVATION_BROKER_URL set the SIP goes to the Celery workers (the path
    must be visible to them) and --wait follows its progress.
    """
    from preservation.context import open_context
    from preservation.pipeline import receive, result_of, run_ingest

    if not path.exists() and not path.is_symlink():
        raise _fail(InvalidSIPError(f"{path}: no such file or directory", path=path), as_json)
    settings = _settings()
    ctx = open_context(settings)
    try:
        if settings.broker_url:
            from preservation.submission import load_submitter

            submit = load_submitter(settings)
            sip_id = receive(ctx, path, tenant=tenant)
            submit(sip_id)
            result = (
                _follow(ctx, sip_id, quiet=as_json, timeout=timeout)
                if wait
                else result_of(ctx, sip_id)
            )
        else:
            with _progress(not as_json) as progress:
                result = run_ingest(ctx, path, tenant=tenant, progress=progress)
        summary = None
        if result.aip_id and not as_json:
            from preservation.inventory import describe_aip

            summary = describe_aip(ctx, result.aip_id)
    except TransientError as e:
        raise _pending(e, as_json) from e
    except PreservationError as e:
        raise _fail(e, as_json) from e
    finally:
        ctx.close()
    if as_json:
        out.print_json(data=result.to_dict())
    else:
        _print_result(result, summary)
    raise typer.Exit(0 if result.state != "rejected" else EXIT_INVALID)


def _pending(error: PreservationError, as_json: bool) -> typer.Exit:
    """A SIP left waiting (a site down): not a failure of the bag, not yet safe either."""
    if as_json:
        out.print_json(data=error.to_dict() | {"state": "pending"})
    else:
        err.print(f"[yellow]pending:[/yellow] {escape(error.message)}", highlight=False)
        err.print(
            "the SIP is NOT yet safe (fewer than two verified copies); it is finished by "
            "`preservation resume`, `preservation watch` or `preservation repair` "
            "once the site is back",
            highlight=False,
        )
    return typer.Exit(EXIT_SYSTEM)


def _follow(
    ctx: Any, sip_id: str, *, quiet: bool, poll: float = 0.5, timeout: float | None = None
) -> Any:
    """Poll the catalogue until the SIP is committed or rejected, showing stage and errors.

    With ``timeout``, give up following (the SIP goes on in the workers) and
    raise a TransientError, which the caller reports as pending.
    """
    import time as _time

    from preservation.catalog import service, session_scope
    from preservation.errors import TransientError
    from preservation.pipeline import TERMINAL_STATES, result_of

    last: tuple[str | None, str | None] | None = None
    deadline = None if timeout is None else _time.monotonic() + timeout
    with err.status("submitted", spinner="dots") if not quiet and err.is_terminal else _null():
        while True:
            result = result_of(ctx, sip_id)
            with session_scope(ctx.sessions) as s:
                sip = service.get_sip(s, sip_id)
                now = (sip.stage, sip.last_error)
            if not quiet and now != last:
                err.print(f"SIP {sip_id[:8]}: {result.state} [{now[0] or '-'}]", highlight=False)
                if now[1] and (last is None or now[1] != last[1]):
                    err.print(f"  last error: {escape(now[1])}", highlight=False)
                last = now
            if result.state in TERMINAL_STATES:
                return result
            if deadline is not None and _time.monotonic() > deadline:
                raise TransientError(
                    f"SIP {sip_id} is still {result.state} after {timeout:g}s; "
                    "the workers go on with it (see `preservation status`)",
                    sip_id=sip_id,
                )
            _time.sleep(poll)


@contextmanager
def _null() -> Iterator[None]:
    yield None


def _print_result(result: Any, summary: dict[str, Any] | None = None) -> None:
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
    if summary:
        from collections import Counter

        files = summary["files"]
        formats = Counter(
            f"{f['puid'] or 'unidentified'} {f['format_name'] or ''}".strip() for f in files
        )
        size = sum(f["size"] for f in files)
        out.print(f"{len(files)} files, {size:,} bytes; formats:", highlight=False)
        for name, n in formats.most_common():
            out.print(f"  {n:>5}  {name}", highlight=False)
        for v in summary["versions"]:
            for c in v["copies"]:
                out.print(
                    f"v{v['number']} copy at {c['site']}: {c['barcode']} {c['path']} "
                    f"({c['status']})",
                    highlight=False,
                )
        out.print(f"see: preservation show {result.aip_id}", highlight=False)
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


@app.command()
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

    results = _in_context(as_json, lambda ctx: resume_sips(ctx, sip_ids))
    if as_json:
        out.print_json(data=[r.to_dict() for r in results])
    elif not results:
        out.print("nothing pending")
    for r in results if not as_json else []:
        out.print(f"SIP {r.sip_id}: {r.state}" + (f" (AIP {r.aip_id})" if r.aip_id else ""))
    raise typer.Exit(0 if all(r.state in TERMINAL_STATES for r in results) else EXIT_SYSTEM)


@app.command()
def show(
    aip_id: Annotated[str, typer.Argument(help="The AIP's UUID.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show an AIP: files and formats, versions, tape copies, PREMIS events."""
    from preservation.inventory import describe_aip

    data = _in_context(as_json, lambda ctx: describe_aip(ctx, aip_id))
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
        from preservation.submission import load_submitter

        submit = load_submitter(settings)
    else:

        def submit(sip_id: str) -> None:
            # A site down must not stop the watcher: the SIP stays pending and
            # is resumed at a later scan.
            result = pipeline.run_sip(ctx, sip_id, wait_seconds=0)
            err.print(f"SIP {sip_id}: {result.state}", highlight=False)

    heartbeat = settings.ingest_dir / ".watcher-heartbeat"
    try:
        while True:
            heartbeat.touch()
            _scan_once(ctx, submit, embedded=not settings.broker_url)
            if once:
                break
            _time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        ctx.close()


def _scan_once(ctx: Any, submit: Callable[[str], None], *, embedded: bool) -> None:
    """One scan; a failure is reported and the watcher goes on (it is long-running)."""
    import logging

    from preservation import pipeline

    def guarded(sip_id: str) -> None:
        try:
            submit(sip_id)
        except TransientError as e:
            err.print(f"SIP {sip_id} pending: {escape(e.message)}", highlight=False)
        except Exception as e:  # noqa: BLE001 - a broker error, a bug: the next scan retries
            logging.getLogger("preservation.watch").exception("SIP %s not submitted", sip_id)
            err.print(f"SIP {sip_id} not submitted: {escape(str(e))}", highlight=False)

    try:
        for sip_id in pipeline.scan_and_claim(ctx, submit=guarded):
            err.print(f"claimed SIP {sip_id}", highlight=False)
        if embedded:
            # In-process there is no broker to redeliver: SIPs left waiting for
            # a site (or by a killed `ingest`) are picked up again here.
            for sip_id in pipeline.pending_sips(ctx):
                guarded(sip_id)
    except Exception as e:  # noqa: BLE001 - the scan itself failed (disk, database)
        logging.getLogger("preservation.watch").exception("scan failed")
        err.print(f"[red]scan failed:[/red] {escape(str(e))}", highlight=False)


# -- operator's tools: tape, audit, repair, recover ------------------------------------------


def _usage(message: str, as_json: bool) -> typer.Exit:
    """A command line that cannot work as given: exit 2, as Click's own usage errors do."""
    if as_json:
        out.print_json(data={"error": "UsageError", "message": message})
    else:
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(EXIT_USAGE)


@contextmanager
def _spinner(enabled: bool, what: str) -> Iterator[None]:
    """A spinner for long tape work that reports no steps, so a terminal never looks hung."""
    if not enabled or not err.is_terminal:
        yield
        return
    with err.status(what):
        yield


def _size(n: int | None) -> str:
    """Decimal units, as tape vendors quote capacities (LTO-9 is 18 TB, not 16.4 TiB)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


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


def _check_site(ctx: Any, site: str | None) -> None:
    """Refuse a site name the settings do not know, rather than listing nothing for a typo."""
    if site is not None and site not in ctx.settings.sites:
        raise NotFoundError(
            f"no site {site!r}; configured: {', '.join(ctx.settings.sites)}", site=site
        )


tape_app = typer.Typer(
    help="Tape cartridges at each site: state, usage, contents.", no_args_is_help=True
)
app.add_typer(tape_app, name="tape")


@tape_app.command("ls")
def tape_ls(
    site: Annotated[str | None, typer.Option("--site", "-s", help="Only this site.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List cartridges per site: state, used/capacity, copies, errors."""
    from preservation.storage.service import list_cartridges

    def cartridges(ctx: Any) -> list[dict[str, Any]]:
        _check_site(ctx, site)
        return list_cartridges(ctx, site)

    rows = _in_context(as_json, cartridges)
    if as_json:
        out.print_json(data=rows)
        return
    if not rows:
        out.print("no cartridges")
        return
    table = Table("site", "barcode", "state", "used / capacity", "copies", "errors")
    for r in rows:
        table.add_row(
            r["site"],
            r["barcode"],
            _state(r["state"]),
            f"{_size(r['used'])} / {_size(r['capacity'])}",
            _copies_text(r["copies"]),
            str(r["errors"]),
        )
    out.print(table)


@tape_app.command("show")
def tape_show(
    barcode: Annotated[str, typer.Argument(help="The cartridge's barcode, e.g. A00001L9.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one cartridge: state, LTFS volume, and its AIP copies in tape order."""
    from preservation.storage.service import show_cartridge

    data = _in_context(as_json, lambda ctx: show_cartridge(ctx, barcode))
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
        f"used {_size(data['used'])} of {_size(data['capacity'])}",
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
            _size(c["length"]),
            c["status"],
            (c["verified_at"] or "")[:16].replace("T", " "),
            c["path"],
        )
    out.print(table)


@app.command()
def audit(
    site: Annotated[str | None, typer.Option("--site", "-s", help="Only this site.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read back every verified copy and check its sha256. Exit 0 clean, 3 on any problem.

    Copies are read cartridge by cartridge in tape order, so each cartridge is
    mounted once and read front to back. A copy that fails is marked failed in
    the catalogue; `preservation repair` then replaces it.
    """
    from preservation.audit import audit_copies
    from preservation.context import open_context

    ctx = open_context(_settings())
    try:
        _check_site(ctx, site)
        with _progress(not as_json) as progress:
            report = audit_copies(ctx, site, progress=lambda done, n: progress("audit", done, n))
    except PreservationError as e:
        raise _fail(e, as_json) from e
    finally:
        ctx.close()
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        for r in report.failed:
            err.print(
                f"[red]FAILED[/red] copy {r.copy_id} {r.site}/{r.barcode}: {escape(r.detail)}",
                highlight=False,
            )
        for r in report.skipped:
            err.print(
                f"[yellow]skipped[/yellow] copy {r.copy_id} {r.site}/{r.barcode}: "
                f"{escape(r.detail)}",
                highlight=False,
            )
        ok = len(report.copies) - len(report.failed) - len(report.skipped)
        out.print(
            f"audited {len(report.copies)} copies: {ok} ok, {len(report.failed)} failed, "
            f"{len(report.skipped)} skipped",
            highlight=False,
        )
        if report.failed:
            err.print("run `preservation repair` to replace the failed copies", highlight=False)
    raise typer.Exit(0 if report.clean else EXIT_SYSTEM)


@app.command("repair")
def repair_cmd(
    max_batch_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-batch-bytes",
            min=1,
            help="Temporary space one recall batch may use under staging/repair/.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Restore two verified copies per version: rebuild failed copies from the other site.

    Exit 0 when every version is whole again, 3 when some copy could not be
    rebuilt or a site was down (run it again once the site is back).
    """
    from preservation.context import open_context
    from preservation.pipeline import TERMINAL_STATES, resume
    from preservation.storage.recovery import repair

    ctx = open_context(_settings())
    try:
        with _spinner(not as_json, "repairing: reading good copies, writing fresh ones"):
            if max_batch_bytes is None:
                report = repair(ctx)
            else:
                report = repair(ctx, max_batch_bytes=max_batch_bytes)
            # Versions repair made whole but nobody committed (a site was down at
            # ingest): their SIPs' own commit stage activates them and releases the SIP.
            sips = sorted({r["sip_id"] for r in report.ready if r.get("sip_id")})
            committed = [r.to_dict() for r in resume(ctx, sips, wait_seconds=0)]
    except PreservationError as e:
        raise _fail(e, as_json) from e
    finally:
        ctx.close()
    still_pending = [r for r in committed if r["state"] not in TERMINAL_STATES]
    if as_json:
        out.print_json(data=report.to_dict() | {"committed": committed})
    else:
        _print_repair(report)
        for r in committed:
            out.print(f"SIP {r['sip_id']}: {r['state']} (AIP {r['aip_id']})", highlight=False)
    raise typer.Exit(0 if report.ok and not still_pending else EXIT_SYSTEM)


def _print_repair(report: Any) -> None:
    for r in report.rebuilt:
        replaces = ", ".join(str(c) for c in r["replaces"]) or "none"
        out.print(
            f"rebuilt version {r['version_id']} at {r['site']} on {r['barcode']} "
            f"(copy {r['copy_id']}, from {r['source']}, replaces copies {replaces})",
            highlight=False,
        )
    for f in report.failed:
        err.print(
            f"[red]FAILED[/red] version {f['version_id']} at {f['site']}: {escape(f['error'])}",
            highlight=False,
        )
    for s in report.skipped:
        err.print(
            f"[yellow]skipped[/yellow] version {s['version_id']} at {s['site']}: "
            f"{escape(s['reason'])}",
            highlight=False,
        )
    if report.cartridges_failed:
        out.print(f"cartridges failed: {', '.join(report.cartridges_failed)}", highlight=False)
    if report.cartridges_retired:
        out.print(
            f"cartridges retired (take them out of the library): "
            f"{', '.join(report.cartridges_retired)}",
            highlight=False,
        )
    if report.stale_writes:
        out.print(
            f"discarded {len(report.stale_writes)} unfinished write(s) left by a crash",
            highlight=False,
        )
    if not (
        report.rebuilt
        or report.ready
        or report.stale_writes
        or report.failed
        or report.skipped
        or report.cartridges_failed
        or report.cartridges_retired
    ):
        out.print("nothing to repair: every version has a verified copy at each site")
        return
    out.print(
        f"rebuilt {len(report.rebuilt)}, discarded {len(report.discarded)}, "
        f"failed {len(report.failed)}, skipped {len(report.skipped)}",
        highlight=False,
    )


def _version_to_recover(ctx: Any, aip_id: str, version: int | None) -> int:
    """Resolve the version before touching tape, so a typo costs no mount."""
    from preservation.catalog import service, session_scope

    with session_scope(ctx.sessions) as s:
        numbers = sorted(v.number for v in service.get_aip(s, aip_id).versions)
    if not numbers:
        raise NotFoundError(f"AIP {aip_id} has no version yet", aip_id=aip_id)
    if version is None:
        return numbers[-1]
    if version not in numbers:
        raise NotFoundError(
            f"AIP {aip_id} has no version {version} (it has {', '.join(map(str, numbers))})",
            aip_id=aip_id,
        )
    return version


@app.command("recover")
def recover_cmd(
    aip_id: Annotated[str, typer.Argument(help="The AIP's UUID.")],
    to: Annotated[
        Path,
        typer.Option("--to", help="Folder to unpack into; the bag lands in <to>/<aip>.v<N>/."),
    ],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Default: the latest.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read an AIP version from whichever site works, verify it, unpack it; print the bag root.

    The folder may already hold other things: each version unpacks into its own
    subfolder, and an existing one is never overwritten.
    """
    from preservation.context import open_context
    from preservation.storage.recovery import recover

    if to.exists() and not to.is_dir():
        raise _usage(f"{to} exists and is not a folder", as_json)
    ctx = open_context(_settings())
    try:
        number = _version_to_recover(ctx, aip_id, version)
        target = to / f"{aip_id}.v{number}"
        if target.exists() or target.is_symlink():
            raise _usage(
                f"{target} already exists; remove it or choose another --to folder", as_json
            )
        with _spinner(not as_json, f"reading AIP {aip_id} v{number} from tape"):
            bag = recover(ctx, aip_id, number, dest_dir=to)
    except PreservationError as e:
        raise _fail(e, as_json) from e
    finally:
        ctx.close()
    if as_json:
        out.print_json(data={"aip_id": aip_id, "version": number, "bag": str(bag)})
    else:
        out.print(str(bag), highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
