"""`preservation dip`: ask for a DIP, follow its recall, fetch the zip."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import (
    EXIT_SYSTEM,
    human_size,
    in_context,
    out,
    progress_bars,
    usage,
)

app = typer.Typer(
    help="Dissemination: DIPs recalled from tape, served as zips.", no_args_is_help=True
)


def _describe(v: Any) -> str:
    p = v.progress or {}
    line = f"DIP {v.dip_id}: {v.state}; {v.kind} of AIP {v.aip_id} v{v.version}"
    line += f", {v.files_total} file(s), {human_size(v.bytes_total)}"
    if v.files:
        line += f" matching {v.files!r}"
    if v.state in ("recalling", "building") or p.get("cartridges"):
        line += (
            f"; cartridges {', '.join(p.get('cartridges', [])) or '-'}, "
            f"{human_size(p.get('bytes_read', 0))} of {human_size(p.get('bytes_to_read', 0))} read"
        )
    if v.state == "recalling" and p.get("mounted"):
        line += f", reading {p['mounted']}"
    if v.state == "building" and "bytes_to_pack" in p:
        line += f", {human_size(p['bytes_packed'])} of {human_size(p['bytes_to_pack'])} packed"
    if v.state == "ready":
        until = f"{v.expires_at:%Y-%m-%d %H:%M} UTC"
        line += f"; zip {human_size(v.size)}, sha256 {v.etag}, until {until}"
    if v.reason:
        line += f" ({v.reason})"
    return line


def _print(view: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(view.model_dump_json())
    else:
        out.print(_describe(view), highlight=False, markup=False)


@app.command("request")
def request(
    aip_id: Annotated[str, typer.Argument(help="The AIP (its id or a unique 8+ character prefix)")],
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="Its version (default: the newest).")
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind", help="original (version 1), preservation (current files) or access."
        ),
    ] = "preservation",
    files: Annotated[
        str | None,
        typer.Option("--files", metavar="GLOB", help="Only paths matching this shell pattern."),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who asks, as the PREMIS event names them.")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Serve it now (embedded) or wait for the workers; --no-wait only queues it.",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask for a DIP of an AIP; it is recalled from tape in the next batch and packed as a zip."""
    from preservation.access import service

    if kind not in service.KINDS:
        raise usage(f"--kind must be one of {', '.join(service.KINDS)}", as_json)

    def work(ctx: Any) -> Any:
        from preservation.access import recall
        from preservation.catalog import session_scope
        from preservation.cli.aips import _actor, resolve_aip

        full = resolve_aip(ctx, aip_id)
        with session_scope(ctx.sessions) as s:
            view = service.request_dip(
                s,
                aip_id=full,
                tenant_id=None,
                version=version,
                kind=kind,
                files_glob=files,
                requested_by=_actor(by).label,
                cache_bytes=ctx.settings.dip_cache_bytes,
            )
        if not as_json:
            out.print(f"DIP {view.dip_id} queued", highlight=False)
        if ctx.settings.broker_url:
            from preservation import dispatch

            dispatch.submit_dip(ctx, view.dip_id)
        if not wait:
            return view
        with progress_bars(not as_json) as progress:
            if not ctx.settings.broker_url:
                # Nothing else in this process could join a window: the batch runs now,
                # and again while the tape is only busy (another process's drives).
                deadline = time.monotonic() + ctx.settings.site_wait_seconds
                while True:
                    report = recall.run_batch(
                        ctx, dip_ids=[view.dip_id], progress=progress, repair_inline=True
                    )
                    left = deadline - time.monotonic()
                    if view.dip_id not in report.requeued or left <= 0:
                        break
                    time.sleep(min(report.retry_after or 10.0, left) + 0.1)
            else:
                while True:
                    with session_scope(ctx.sessions) as s:
                        view = service.get_dip(s, view.dip_id, None)
                    p = view.progress or {}
                    progress("recall", p.get("bytes_read", 0), p.get("bytes_to_read", 0) or 1)
                    if "bytes_to_pack" in p:
                        progress("build", p["bytes_packed"], p["bytes_to_pack"] or 1)
                    if view.state in ("ready", "failed", "expired"):
                        break
                    time.sleep(1)
        with session_scope(ctx.sessions) as s:
            return service.get_dip(s, view.dip_id, None)

    view = in_context(as_json, work)
    _print(view, as_json)
    if view.state == "failed" or (wait and view.state == "queued"):
        # Failed, or still waiting for tape (drives busy, a site down) after
        # PRESERVATION_SITE_WAIT_SECONDS: a later batch (`dip request`, the API) serves it.
        raise typer.Exit(EXIT_SYSTEM)


@app.command("status")
def status(
    dip_id: Annotated[str | None, typer.Argument(help="One DIP; none: the recent ones.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Where DIP requests are: queued, recalling (cartridges, bytes read), building, ready."""

    def work(ctx: Any) -> Any:
        from preservation.access import service
        from preservation.catalog import session_scope

        with session_scope(ctx.sessions) as s:
            if dip_id is not None:
                return service.get_dip(s, dip_id, None)
            return service.list_dips(s, None)

    result = in_context(as_json, work)
    if dip_id is not None:
        _print(result, as_json)
        return
    if as_json:
        out.print_json(data=[v.model_dump(mode="json") for v in result])
        return
    table = Table("DIP", "state", "kind", "AIP", "v", "files", "size", "requested by")
    for v in result:
        table.add_row(
            v.dip_id,
            v.state,
            v.kind,
            v.aip_id[:8],
            str(v.version),
            str(v.files_total),
            human_size(v.size if v.size is not None else v.bytes_total),
            v.requested_by,
        )
    out.print(table)


@app.command("get")
def get(
    dip_id: Annotated[str, typer.Argument(help="A ready DIP.")],
    to: Annotated[Path, typer.Option("--to", metavar="DIR", help="Where the zip goes.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Copy a ready DIP's zip out of the cache into DIR, checking its sha256 on the way."""
    if to.exists() and not to.is_dir():
        raise usage(f"--to {to}: not a folder", as_json)

    def work(ctx: Any) -> dict[str, Any]:
        from preservation.access import cache, service
        from preservation.catalog import session_scope
        from preservation.errors import DestinationError, FixityMismatchError, GoneError

        with session_scope(ctx.sessions) as s:
            row = service.ready_row(s, dip_id, None)
            dip, size, sha256 = row.id, row.zip_size or 0, row.zip_sha256
        source = cache.zip_path(ctx.settings, dip)
        target = to / f"dip-{dip}.zip"
        try:
            to.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            digest = hashlib.sha256()
            with open(source, "rb") as src, open(part, "wb") as dst:
                with progress_bars(not as_json) as progress:
                    done = 0
                    while chunk := src.read(4 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
                        done += len(chunk)
                        progress("copy", done, size)
            if sha256 and digest.hexdigest() != sha256:
                part.unlink(missing_ok=True)
                raise FixityMismatchError(
                    f"{source}: sha256 {digest.hexdigest()}, expected {sha256}", path=source
                )
            os.replace(part, target)
        except FileNotFoundError as err:
            if not source.exists():
                raise GoneError(
                    f"DIP {dip} is no longer in the cache: request it again", rule="dip-expired"
                ) from err
            raise DestinationError(f"cannot write into {to}: {err.strerror}", path=to) from err
        except OSError as err:
            raise DestinationError(f"cannot write into {to}: {err.strerror}", path=to) from err
        return {"dip_id": dip, "path": str(target), "size": size, "sha256": sha256}

    result = in_context(as_json, work)
    if as_json:
        out.print_json(data=result)
    else:
        out.print(
            f"{result['path']}: {human_size(result['size'])}, sha256 {result['sha256']}",
            highlight=False,
            markup=False,
        )
