"""Keeping the copies whole: `audit`, `repair`, `recover`."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from preservation.cli.aips import resolve_aip
from preservation.cli.terminal import (
    EXIT_SYSTEM,
    check_site,
    err,
    fail,
    human_size,
    load_settings,
    out,
    progress_bars,
    spinner,
    usage,
)
from preservation.errors import DestinationError, NotFoundError, PreservationError


def _positive_hours(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not more than 0 hours")
    return value


def audit(
    site: Annotated[str | None, typer.Option("--site", "-s", help="Only this site.")] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's copies (default: all).")
    ] = None,
    max_cartridges: Annotated[
        int | None,
        typer.Option("--max-cartridges", min=1, help="Read at most this many cartridges."),
    ] = None,
    max_hours: Annotated[
        float | None,
        typer.Option(
            "--max-hours",
            callback=_positive_hours,
            help="Begin no new cartridge after this many hours (more than 0).",
        ),
    ] = None,
    no_repair: Annotated[
        bool,
        typer.Option("--no-repair", help="Only record failures; leave them to `repair`."),
    ] = False,
    show_coverage: Annotated[
        bool,
        typer.Option(
            "--coverage",
            help="Read nothing: say, per site, what was checked within each tenant's "
            "audit interval and what is overdue.",
        ),
    ] = False,
    by: Annotated[str | None, typer.Option("--by", help="Who runs it (default: you).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read back verified copies and check their sha256. Exit 0 clean, 3 on any problem.

    The cartridges read longest ago come first; each is mounted once and read
    in block order. A copy that fails is rebuilt from the other site at once
    and the new copy checked again (unless --no-repair). The run is kept as
    an audit record with its report (`GET /api/v1/audits/{id}`).
    """
    import getpass

    from preservation.audit import runs
    from preservation.audit.coverage import coverage
    from preservation.context import open_context

    ctx = open_context(load_settings())
    try:
        check_site(ctx, site)
        if show_coverage:
            from preservation.storage.service import ensure_sites

            ensure_sites(ctx)  # refuse a data root the libraries cannot use
            cov = coverage(ctx, tenant=tenant)
        else:
            with progress_bars(not as_json) as progress:
                view, report = runs.audit_now(
                    ctx,
                    (by or "").strip() or getpass.getuser(),
                    site=site,
                    tenant_id=tenant,
                    max_cartridges=max_cartridges,
                    max_hours=max_hours,
                    repair=not no_repair,
                    on_progress=lambda done, n: progress("audit", done, n),
                )
    except PreservationError as e:
        raise fail(e, as_json) from e
    finally:
        ctx.close()
    if show_coverage:
        _print_coverage(cov, as_json)
        raise typer.Exit(0 if cov.complete else EXIT_SYSTEM)
    if as_json:
        out.print_json(data={"audit_id": view.audit_id, **report})
        raise typer.Exit(0 if report.get("ok") else EXIT_SYSTEM)
    for r in report.get("failed", []):
        err.print(
            f"[red]FAILED[/red] copy {r['copy_id']} {r['site']}/{r['barcode']}: "
            f"{escape(r['detail'])}",
            highlight=False,
        )
    for r in report.get("repairs", []):
        if r["repaired"]:
            err.print(
                f"repaired copy {r['copy_id']}: new copy {r['new_copy_id']} on {r['barcode']} "
                f"(from {r['source']}), re-checked: {r['rechecked']}",
                highlight=False,
            )
        else:
            err.print(
                f"[red]NOT REPAIRED[/red] copy {r['copy_id']}: {escape(r['detail'])}",
                highlight=False,
            )
    for r in report.get("skipped", []):
        err.print(
            f"[yellow]skipped[/yellow] copy {r['copy_id']} {r['site']}/{r['barcode']}: "
            f"{escape(r['detail'])}",
            highlight=False,
        )
    for f in report.get("under_replicated", []):
        have = ", ".join(f["verified_sites"]) or "none"
        err.print(
            f"[red]UNDER-REPLICATED[/red] AIP {f['aip_id']} v{f['version']}: no verified copy "
            f"at {', '.join(f['missing_sites'])} (verified at: {have})",
            highlight=False,
        )
    out.print(f"audit {view.audit_id}: {report.get('summary', '')}", highlight=False)
    if report.get("unrepaired") or report.get("under_replicated"):
        err.print(
            "run `preservation repair` to replace the failed or missing copies", highlight=False
        )
    raise typer.Exit(0 if report.get("ok") else EXIT_SYSTEM)


def _print_coverage(cov: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(data=cov.to_dict())
        return
    from rich.table import Table

    table = Table(
        "site", "copies", "checked", "bytes", "checked bytes", "overdue", "missing", "coverage"
    )
    for s in cov.sites:
        table.add_row(
            s.site,
            f"{s.copies:,}",
            f"{s.checked_copies:,}",
            human_size(s.bytes),
            human_size(s.checked_bytes),
            f"{s.overdue_copies:,}",
            f"{len(s.missing):,}",
            f"{s.ratio:.1%}",
        )
    out.print(table)
    intervals = ", ".join(f"{t} {p}" for t, p in sorted(cov.intervals.items())) or "no copies"
    out.print(f"audit intervals: {intervals}", highlight=False)
    for s in cov.sites:
        for o in s.overdue[:20]:
            last = o.checked_at.isoformat()[:19] if o.checked_at else "never"
            err.print(
                f"[yellow]overdue[/yellow] {s.site} {o.barcode} AIP {o.aip_id} v{o.version} "
                f"({o.tenant}): last checked {last}",
                highlight=False,
            )
        if s.overdue_copies > 20:
            err.print(f"... and {s.overdue_copies - 20:,} more at {s.site}", highlight=False)
        for m in s.missing[:20]:
            err.print(
                f"[red]missing[/red] {s.site}: AIP {m['aip_id']} v{m['version']} has no "
                "verified copy here: run `preservation repair`",
                highlight=False,
            )


def repair(
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
    from preservation import versions
    from preservation.context import open_context
    from preservation.ingest import TERMINAL_STATES, resume
    from preservation.storage.recovery import repair as repair_copies

    ctx = open_context(load_settings())
    try:
        with spinner(not as_json, "repairing: reading good copies, writing fresh ones"):
            if max_batch_bytes is None:
                report = repair_copies(ctx)
            else:
                report = repair_copies(ctx, max_batch_bytes=max_batch_bytes)
            # Versions repair made whole but nobody committed (a site was down at
            # ingest): their SIPs' own commit stage activates them and releases the SIP.
            first = [r for r in report.ready if r["number"] == 1]
            sips = sorted({r["sip_id"] for r in first if r.get("sip_id")})
            committed = [r.to_dict() for r in resume(ctx, sips, wait_seconds=0)]
            # A later version (a metadata update) is committed, and made current, by its own.
            later = [r for r in report.ready if r["number"] > 1]
            for r in later:
                versions.commit_version(ctx, r["version_id"])
    except PreservationError as e:
        raise fail(e, as_json) from e
    finally:
        ctx.close()
    still_pending = [r for r in committed if r["state"] not in TERMINAL_STATES]
    if as_json:
        out.print_json(data=report.to_dict() | {"committed": committed, "versions": later})
    else:
        _print_repair(report)
        for r in committed:
            out.print(f"SIP {r['sip_id']}: {r['state']} (AIP {r['aip_id']})", highlight=False)
        for r in later:
            out.print(f"AIP {r['aip_id']} version {r['number']}: committed", highlight=False)
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
    for d in report.disposals:
        left = ", ".join(d["pending_sites"] + [f["barcode"] for f in d["failed"]])
        out.print(
            f"disposal of AIP {d['aip_id']}: {len(d['removed'])} file(s) out of the "
            f"indexes, {human_size(d['reclaimable_bytes'])} reclaimable"
            + (f"; still listed at {left}" if left else ""),
            highlight=False,
        )
    if not (
        report.disposals
        or report.rebuilt
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
    """Resolve the version before touching tape, so a typo costs no mount.

    The default is the AIP's current version: the newest committed one (a
    version still being stored is not yet what the AIP is).
    """
    from preservation.catalog import service, session_scope

    with session_scope(ctx.sessions) as s:
        rows = sorted(service.get_aip(s, aip_id).versions, key=lambda v: v.number)
        numbers = [v.number for v in rows]
        committed = [v.number for v in rows if v.committed_at is not None]
    if not numbers:
        raise NotFoundError(f"AIP {aip_id} has no version yet", aip_id=aip_id)
    if version is None:
        return (committed or numbers)[-1]
    if version not in numbers:
        raise NotFoundError(
            f"AIP {aip_id} has no version {version} (it has {', '.join(map(str, numbers))})",
            aip_id=aip_id,
        )
    return version


def recover(
    aip_id: Annotated[str, typer.Argument(help="The AIP's UUID or a unique 8+ character prefix.")],
    to_text: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="DIR",
            help="Folder to unpack into; the bag lands in <to>/<aip>.v<N>/.",
        ),
    ],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Default: the latest.")
    ] = None,
    files: Annotated[
        bool,
        typer.Option(
            "--files",
            help="Give the version's files, not its bag: <to>/<aip>.v<N>.files/ holds the "
            "current representation of every file (version 1: the originals) at its path.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read an AIP version from whichever site works, verify it, unpack it; print the bag root.

    The folder may already hold other things: each version unpacks into its own
    subfolder, and an existing one is never overwritten.
    """
    from preservation.context import open_context
    from preservation.storage.recovery import recover as recover_version

    if not to_text.strip():
        raise usage("--to is empty: name the folder to unpack into (`--to .` for here)", as_json)
    to = Path(to_text)
    try:
        ctx = open_context(load_settings())
    except PreservationError as e:
        raise fail(e, as_json) from e
    try:
        aip_id = resolve_aip(ctx, aip_id)
        number = _version_to_recover(ctx, aip_id, version)
        # Before any tape: a bag read for nothing costs mounts.
        problem = _destination_problem(to)
        if problem is not None:
            raise DestinationError(problem, path=to)
        target = to / (f"{aip_id}.v{number}" + (".files" if files else ""))
        if target.exists() or target.is_symlink():
            raise usage(
                f"{target} already exists; remove it or choose another --to folder", as_json
            )
        with spinner(not as_json, f"reading AIP {aip_id} v{number} from tape"):
            if files:
                import shutil
                import tempfile

                from preservation.storage.recovery import extract_current_files

                scratch = Path(tempfile.mkdtemp(prefix=".recover-", dir=to))
                try:
                    whole = recover_version(ctx, aip_id, number, dest_dir=scratch)
                    extract_current_files(whole, scratch / "files")
                    (scratch / "files").rename(target)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
                bag = target
            else:
                bag = recover_version(ctx, aip_id, number, dest_dir=to)
    except PreservationError as e:
        raise fail(e, as_json) from e
    finally:
        ctx.close()
    if as_json:
        key = "files" if files else "bag"
        out.print_json(data={"aip_id": aip_id, "version": number, key: str(bag)})
    else:
        out.print(str(bag), highlight=False, soft_wrap=True)


def _destination_problem(to: Path) -> str | None:
    """Why ``--to`` cannot receive a bag; None when it can. Makes the folder if it can.

    The kernel answers, not a guess from permission bits: the folder is made
    and a probe file written and removed, so read-only media, immutable
    folders, ``/proc`` and names too long for the file system all refuse here,
    before any tape is read.
    """
    import os
    import tempfile

    try:
        existing = to
        while not (existing.exists() or existing.is_symlink()) and existing.parent != existing:
            existing = existing.parent
        if existing == to and not to.is_dir():
            return f"{to} exists and is not a folder; choose another --to folder"
        if not existing.is_dir():
            return (
                f"cannot make {to}: {existing} is a file, not a folder; choose another --to folder"
            )
        to.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".recover-probe-", dir=to)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason += " (read-only media, or no permission)"
        return f"cannot write to {to}: {reason}; choose another --to folder"
    return None
