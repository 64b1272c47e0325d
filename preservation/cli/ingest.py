"""Getting bags in: `validate`, `ingest` and the hot-folder `watch`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from preservation.cli.terminal import (
    EXIT_INVALID,
    err,
    fail,
    load_settings,
    null,
    out,
    pending,
    progress_bars,
)
from preservation.errors import InvalidSIPError, PreservationError, TransientError


def validate(
    path: Annotated[Path, typer.Argument(help="A bag directory or a .tar/.tar.gz/.zip bag.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a BagIt bag strictly (RFC 8493 plus safety rules). Exit 0 valid, 1 invalid."""
    import tempfile

    from preservation.pipeline import is_serialised
    from preservation.sip import open_serialised_bag, validate_bag

    settings = load_settings()
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
        raise fail(e, as_json) from e
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
        raise fail(InvalidSIPError(f"{path}: no such file or directory", path=path), as_json)
    settings = load_settings()
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
            with progress_bars(not as_json) as progress:
                result = run_ingest(ctx, path, tenant=tenant, progress=progress)
        summary = None
        if result.aip_id and not as_json:
            from preservation.inventory import describe_aip

            summary = describe_aip(ctx, result.aip_id)
    except TransientError as e:
        raise pending(e, as_json) from e
    except PreservationError as e:
        raise fail(e, as_json) from e
    finally:
        ctx.close()
    if as_json:
        out.print_json(data=result.to_dict())
    else:
        _print_result(result, summary)
    raise typer.Exit(0 if result.state != "rejected" else EXIT_INVALID)


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
    with err.status("submitted", spinner="dots") if not quiet and err.is_terminal else null():
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


def watch(
    once: Annotated[bool, typer.Option("--once", help="Scan once and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between scans.")] = 5.0,
) -> None:
    """Watch ingest/<tenant>/ folders; ingest in-process, or via the broker when one is set."""
    import time as _time

    from preservation import pipeline
    from preservation.context import open_context

    settings = load_settings()
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
