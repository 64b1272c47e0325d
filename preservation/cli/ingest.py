"""Getting bags in: `validate`, `ingest` and the hot-folder `watch`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from preservation.cli.terminal import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    err,
    fail,
    load_settings,
    null,
    out,
    pending,
    progress_bars,
    usage,
)
from preservation.config import Settings
from preservation.errors import InvalidSIPError, PreservationError, TransientError


def _path_argument(value: str, as_json: bool) -> Path:
    """The bag argument as given; an empty one is a usage error, not the current folder."""
    if not value.strip():
        raise usage(
            "PATH is empty: name a bag folder or a .tar, .tar.gz, .tgz or .zip bag", as_json
        )
    return Path(value)


def validate(
    path_text: Annotated[
        str, typer.Argument(metavar="PATH", help="A bag directory or a .tar/.tar.gz/.zip bag.")
    ],
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", help="Also apply this tenant's archiving rules."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a BagIt bag strictly (RFC 8493 plus safety rules). Exit 0 valid, 1 invalid.

    Nothing is written anywhere but a temporary folder for unpacking a
    serialised bag, removed at the end.
    """
    from preservation.submission import validate_submission

    path = _path_argument(path_text, as_json)
    try:
        # Not load_settings(): validating needs no data root and must not make one.
        report = validate_submission(Settings(), path, tenant=tenant)
    except PreservationError as e:
        raise fail(e, as_json) from e
    if as_json:
        out.print_json(data=report)
    else:
        for problem in report["problems"]:
            err.print(_problem_text(problem), highlight=False, markup=False)
        if report.get("format_check"):
            err.print(f"note: {report['format_check']}", highlight=False, markup=False)
        if report["valid"]:
            out.print(f"{path}: valid", highlight=False)
        else:
            err.print(f"{path}: INVALID ({report['error_count']} problem(s))", highlight=False)
    raise typer.Exit(0 if report["valid"] else EXIT_INVALID)


def _problem_text(p: dict[str, Any]) -> str:
    where = f" {p['file']}:" if p.get("file") else ""
    ref = f" (RFC 8493 §{p['rfc8493']})" if p.get("rfc8493") else ""
    return (
        f"{p.get('severity', 'error').upper():7} [{p.get('rule')}]{where} {p.get('message')}{ref}"
    )


def ingest(
    path_text: Annotated[
        str, typer.Argument(metavar="PATH", help="A bag directory or a serialised bag.")
    ],
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
    must be visible to them) and --wait follows its progress. Ctrl-C or
    SIGTERM stops at once and says how to resume (exit 130).
    """
    from preservation.tenants import check_tenant_id
    from preservation.warmup import warm_up

    path = _path_argument(path_text, as_json)
    try:
        check_tenant_id(tenant, source="--tenant")
    except PreservationError as e:
        raise fail(e, as_json) from e
    # Started first, so that it loads beside the catalogue's import and opening.
    first = Settings()
    warm = None if first.broker_url else warm_up(first)
    from preservation.submission import refuse_if_not_a_bag

    try:
        settings = load_settings()
        refuse_if_not_a_bag(path)
    except (PreservationError, typer.Exit) as e:
        if warm is not None:
            warm.close()
        if isinstance(e, typer.Exit):
            raise
        if isinstance(e, InvalidSIPError):
            raise _refused(e, path, as_json) from e
        raise fail(e, as_json) from e
    sip_id: str | None = None
    with _interruptible() as received:
        from preservation.context import open_context
        from preservation.ingest import open_sites, receive, result_of, run_sip

        try:
            ctx = open_context(settings)
        except PreservationError as e:
            if warm is not None:
                warm.close()
            raise fail(e, as_json) from e
        if warm is not None:
            warm.into(ctx)
        try:
            if not settings.broker_url:
                open_sites(ctx)
            sip_id = receive(ctx, path, tenant=tenant)
            if settings.broker_url:
                from preservation.submission import load_submitter

                load_submitter(settings)(sip_id)
                result = (
                    _follow(ctx, sip_id, quiet=as_json, timeout=timeout)
                    if wait
                    else result_of(ctx, sip_id)
                )
            else:
                with progress_bars(not as_json) as progress:

                    def progress_or_stop(what: str, done: int, total: int) -> None:
                        if received:  # a signal whose KeyboardInterrupt was swallowed
                            raise KeyboardInterrupt
                        progress(what, done, total)

                    result = run_sip(ctx, sip_id, progress=progress_or_stop)
                if result.aip_id:
                    from preservation.evidence.sync import sync_after_ingest

                    sync_after_ingest(ctx)  # the embedded sync point: the history follows
            if received:
                raise KeyboardInterrupt
            summary = None
            if result.aip_id and not as_json:
                from preservation.inventory import describe_aip

                summary = describe_aip(ctx, result.aip_id)
        except KeyboardInterrupt:
            raise _interrupted(ctx, sip_id, as_json) from None
        except TransientError as e:
            e.sip_id = e.sip_id or sip_id  # the SIP to resume, whichever stage raised
            raise pending(e, as_json) from e
        except PreservationError as e:
            e.sip_id = e.sip_id or sip_id
            raise fail(e, as_json) from e
        finally:
            ctx.close()
    if as_json:
        out.print_json(data=result.to_dict())
    else:
        _print_result(result, summary)
    raise typer.Exit(0 if result.state != "rejected" else EXIT_INVALID)


def _refused(error: InvalidSIPError, path: Path, as_json: bool) -> typer.Exit:
    """Refused at the door: the report is printed, nothing is registered, copied or moved."""
    problems = [p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in error.problems]
    if as_json:
        out.print_json(
            data={"sip_id": None, "state": "refused", "path": str(path), "problems": problems}
        )
    else:
        err.print(f"[red]refused[/red]: {escape(str(path))}", highlight=False)
        for p in problems:
            err.print("  " + escape(_problem_text(p)), highlight=False)
        err.print("nothing was registered, copied or moved", highlight=False)
    return typer.Exit(EXIT_INVALID)


@contextmanager
def _interruptible() -> Iterator[list[int]]:
    """SIGTERM behaves as Ctrl-C: the stage at work stops, its lease is given back.

    Yields the signals received. Python may deliver the KeyboardInterrupt
    inside a garbage-collection callback, which swallows it ("Exception
    ignored in ..."); the caller checks the list at its next step and raises
    it again, so a signal is never lost.
    """
    import signal

    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)  # type: ignore[arg-type]

    previous_hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        # Our own interrupt, swallowed by a garbage-collection callback: it is in
        # ``received`` and raised again at the next step, so no traceback for it.
        if received and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        previous_hook(unraisable)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
        previous_int = signal.signal(signal.SIGINT, interrupt)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        yield received
        return
    sys.unraisablehook = quiet
    try:
        yield received
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _interrupted(ctx: Any, sip_id: str | None, as_json: bool) -> typer.Exit:
    """Say where the SIP stopped and the one command that finishes it."""
    from preservation.catalog import service, session_scope
    from preservation.sips import RUNNING

    if sip_id is None:
        message = "interrupted before the SIP was registered; nothing to resume"
        if as_json:
            out.print_json(
                data={
                    "sip_id": None,
                    "state": "interrupted",
                    "sip_state": None,
                    "stage": None,
                    "resume": None,
                    "message": message,
                }
            )
        else:
            err.print(message, highlight=False)
        return typer.Exit(EXIT_INTERRUPTED)
    stage: str | None
    try:
        with session_scope(ctx.sessions) as s:
            sip = service.get_sip(s, sip_id)
            state, recorded = sip.state.value, sip.stage or ""
        # "<stage> (running)" names the stage cut short; anything else, that
        # the signal came between two stages.
        stage = recorded.removesuffix(RUNNING) if recorded.endswith(RUNNING) else None
    except Exception:  # noqa: BLE001 - the catalogue itself was cut off: still say the id
        state, stage = "unknown", "unknown"
    command = f"preservation resume {sip_id}"
    where = f"during stage {stage}" if stage else "between two stages"
    message = f"SIP {sip_id} stopped {where} (last finished: {state})"
    if as_json:
        out.print_json(
            data={
                "sip_id": sip_id,
                "state": "interrupted",
                "sip_state": state,
                "stage": stage,
                "resume": command,
                "message": message,
            }
        )
    else:
        err.print(f"[yellow]interrupted[/yellow]: {message}", highlight=False)
        err.print(f"to finish it: {command}", highlight=False)
    return typer.Exit(EXIT_INTERRUPTED)


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
    from preservation.ingest import TERMINAL_STATES, result_of

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
    for w in result.warnings:
        err.print(
            f"[yellow]warning[/yellow]: {escape(str(w.get('file') or '(bag)'))}: "
            f"{w.get('rule')}: {escape(str(w.get('message')))}",
            highlight=False,
        )
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
    """Watch ingest/<tenant>/ folders; ingest in-process, or via the broker when one is set.

    Tells on stderr what it watches, then at each scan every bag it skips and
    why. A long-running watch tells a skipped bag again only when its reason
    changes; --once tells every one, every time.
    """
    import time as _time

    from preservation import ingest
    from preservation.context import open_context

    settings = load_settings()
    try:
        ctx = open_context(settings)
    except PreservationError as e:
        raise fail(e, False) from e
    if not settings.broker_url:
        try:  # tapes this process will write must be usable before a bag is taken
            ingest.open_sites(ctx)
        except PreservationError as e:
            ctx.close()
            raise fail(e, False) from e
    _announce(settings, once=once, interval=interval)
    # What each skipped bag was last told with, in a long-running watch only.
    told: dict[Path, str] | None = None if once else {}
    if settings.broker_url:
        from preservation.submission import load_submitter

        submit = load_submitter(settings)
    else:

        def submit(sip_id: str) -> None:
            # A site down must not stop the watcher: the SIP stays pending and
            # is resumed at a later scan.
            result = ingest.run_sip(ctx, sip_id, wait_seconds=0)
            err.print(f"SIP {sip_id}: {result.state}", highlight=False)

    heartbeat = settings.ingest_dir / ".watcher-heartbeat"
    last_sync = 0.0
    try:
        while True:
            heartbeat.touch()
            _scan_once(ctx, submit, embedded=not settings.broker_url, told=told)
            if not settings.broker_url and (
                once or _time.monotonic() - last_sync >= settings.journal_interval_seconds
            ):
                # In-process there is no beat: the watcher is the journal's sync point,
                # once per interval (not per bag: a segment and two stamps per bag is waste).
                from preservation.evidence.sync import sync_after_ingest

                sync_after_ingest(ctx)
                last_sync = _time.monotonic()
            if once:
                break
            _time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        ctx.close()


def _announce(settings: Any, *, once: bool, interval: float) -> None:
    """The first line of a watch: the folders, how often, how long a bag must be quiet."""
    from preservation import hotfolder

    names = [p.name for p in hotfolder.tenant_folders(settings.ingest_dir)]
    if not names:
        folders = "no tenant folders yet"
    else:
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        folders = f"{len(names)} tenant folder{'s' if len(names) > 1 else ''}: {shown}"
    incomplete = hotfolder.incomplete_wait(
        settings.quiescent_seconds, settings.incomplete_bag_seconds
    )
    _tell(
        f"watching {settings.ingest_dir}/<tenant>/ ({folders}) "
        f"{'once' if once else f'every {interval:g}s'}; "
        f"quiet period {settings.quiescent_seconds:g}s; "
        f"an incomplete bag is rejected after {incomplete:g}s unchanged"
    )


def _tell(line: str) -> None:
    # Names come from the file system: no markup, and one line however long.
    err.print(line, markup=False, highlight=False, soft_wrap=True)


def _scan_once(
    ctx: Any,
    submit: Callable[[str], None],
    *,
    embedded: bool,
    told: dict[Path, str] | None = None,
) -> None:
    """One scan; a failure is reported and the watcher goes on (it is long-running).

    Folders that are not valid tenant ids are told at every scan (their bags
    wait for the operator). A skipped bag is told when ``told`` is None, or
    when its lasting reason differs from the one ``told`` holds for it;
    ``told`` is then left holding this scan's skipped bags only, so a bag
    that comes back is told again.
    """
    import logging

    from preservation import hotfolder, ingest
    from preservation.tenants import TENANT_ID_RULE

    seen: dict[Path, str] = {}
    run_this_scan: set[str] = set()

    def skipped(candidate: Any) -> None:
        lasting = candidate.lasting_reason
        if told is None or told.get(candidate.path) != lasting:
            _tell(f"skipped {candidate.tenant}/{candidate.path.name}: {candidate.reason}")
        seen[candidate.path] = lasting

    def guarded(sip_id: str) -> None:
        if sip_id in run_this_scan:
            return  # claimed and run in this scan already: the next one retries it
        run_this_scan.add(sip_id)
        try:
            submit(sip_id)
        except TransientError as e:
            err.print(f"SIP {sip_id} pending: {escape(e.message)}", highlight=False)
        except Exception as e:  # noqa: BLE001 - a broker error, a bug: the next scan retries
            logging.getLogger("preservation.watch").exception("SIP %s not submitted", sip_id)
            err.print(f"SIP {sip_id} not submitted: {escape(str(e))}", highlight=False)

    try:
        for folder in hotfolder.invalid_tenant_folders(ctx.settings.ingest_dir):
            _tell(
                f"ingest/{folder.name}: not a valid tenant id ({TENANT_ID_RULE}); "
                "its bags are not taken"
            )
        ingest.scan_and_claim(
            ctx,
            submit=guarded,
            skipped=skipped,
            claimed=lambda sip_id: err.print(f"claimed SIP {sip_id}", highlight=False),
        )
        if told is not None:
            told.clear()
            told.update(seen)
        if embedded:
            # In-process there is no broker to redeliver: SIPs left waiting for
            # a site (or by a killed `ingest`) are picked up again here.
            for sip_id in ingest.pending_sips(ctx):
                guarded(sip_id)
    except Exception as e:  # noqa: BLE001 - the scan itself failed (disk, database)
        logging.getLogger("preservation.watch").exception("scan failed")
        err.print(f"[red]scan failed:[/red] {escape(str(e))}", highlight=False)


# -- operator's tools: tape, audit, repair, recover ------------------------------------------
