"""`preservation migrate`: a curator's format migration, previewed or carried out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from preservation.cli.terminal import (
    EXIT_INVALID,
    EXIT_SYSTEM,
    in_context,
    out,
    progress_bars,
    usage,
)


def _print_plan(plan: dict[str, Any]) -> None:
    out.print(
        f"policy {plan['policy']['name']} ({plan['policy']['source']}), mode {plan['mode']}: "
        f"{plan['files']} file(s), {plan['outputs']} output(s), {plan['bytes']} bytes",
        highlight=False,
    )
    for aip in plan["aips"]:
        out.print(f"AIP {aip['aip_id']}: {len(aip['files'])} file(s)", highlight=False)
        for f in aip["files"]:
            for a in f["actions"]:
                out.print(
                    f"  {f['path']}  {f['puid']} -> {a['target_puid']}  ({a['id']}, {a['tool']})",
                    highlight=False,
                    markup=False,
                )


def _print_result(view: Any) -> None:
    for item in view.items:
        version = f" -> version {item.version}" if item.version else ""
        states = [f.state for f in item.files]
        out.print(
            f"AIP {item.aip_id}: {item.state}{version}; {states.count('migrated')} migrated, "
            f"{states.count('failed')} failed"
            + (f", {states.count('discarded')} not kept" if "discarded" in states else "")
            + (f" ({item.error})" if item.error else ""),
            highlight=False,
            markup=False,
        )
        for f in item.files:
            if f.state == "failed":
                out.print(
                    f"  FAILED {f.path} ({f.action}): {f.error}", highlight=False, markup=False
                )
    out.print(
        f"migration {view.migration_id}: {view.state}; {view.files_migrated} of "
        f"{view.files_total} output(s) migrated, {view.files_failed} failed",
        highlight=False,
    )


def migrate(
    aip_ids: Annotated[
        list[str] | None, typer.Argument(help="AIP ids (or unique 8+ character prefixes).")
    ] = None,
    puid: Annotated[
        str | None, typer.Option("--puid", help="Every current file of this PRONOM id.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="With --puid: only this tenant's AIPs.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the files, actions and targets; change nothing.")
    ] = False,
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", metavar="FILE", help="A format policy (default: the setting's)."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="best-effort (default) or all-or-nothing: overrides the policy."
        ),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who asks, as the PREMIS events name them.")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="MIGRATION_ID",
            help="Run a request's unfinished AIPs again (its process was killed, a site was down).",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="With workers: wait for them to finish.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Migrate files to the policy's preservation formats: each AIP gets a new version.

    The originals stay as they are; every output is re-identified, validated
    and compared with its source before it is kept.
    """
    if resume is not None and (aip_ids or puid or dry_run or policy_file or mode):
        raise usage("--resume takes no AIP ids, --puid, --dry-run, --policy or --mode", as_json)
    if resume is None and bool(aip_ids) == bool(puid):
        raise usage("name AIP ids, or --puid PUID (not both)", as_json)
    if tenant and not puid:
        raise usage("--tenant goes with --puid", as_json)
    if policy_file is not None and not policy_file.is_file():
        raise usage(f"--policy {policy_file}: no such file", as_json)

    def work(ctx: Any) -> Any:
        from preservation.catalog import session_scope
        from preservation.cli.aips import _actor, resolve_aip
        from preservation.migrate import run, service

        if resume is not None:
            with session_scope(ctx.sessions) as s:
                view = service.get_migration(s, resume, None)
        else:
            policy, text = service.read_policy(policy_file or ctx.settings.migration_policy)
            full = [resolve_aip(ctx, a) for a in aip_ids or []]
            with session_scope(ctx.sessions) as s:
                if dry_run:
                    return service.dry_run(s, policy, aip_ids=full, puid=puid, tenant_id=tenant)
                view = service.start_migration(
                    s,
                    policy,
                    text,
                    aip_ids=full,
                    puid=puid,
                    tenant_id=tenant,
                    who=_actor(by).who,
                    mode=mode,
                )
        if ctx.settings.broker_url:
            run.submit_migration(ctx, view.migration_id)
            if not wait:
                return view
        with progress_bars(not as_json) as progress:
            if not ctx.settings.broker_url:
                run.run_migration(ctx, view.migration_id, progress)
            else:
                while True:
                    with session_scope(ctx.sessions) as s:
                        view = service.get_migration(s, view.migration_id, None)
                    progress("migrate", view.files_done, view.files_total)
                    if view.state in ("done", "failed"):
                        break
                    time.sleep(1)
        with session_scope(ctx.sessions) as s:
            return service.get_migration(s, view.migration_id, None)

    result = in_context(as_json, work)
    if dry_run:
        if as_json:
            out.print_json(data=result)
        else:
            _print_plan(result)
        return
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        _print_result(result)
    if result.state not in ("done", "failed"):
        # A site was down: the AIPs left wait, and running this again finishes them.
        raise typer.Exit(EXIT_SYSTEM)
    if result.state == "failed" or result.files_failed:
        raise typer.Exit(EXIT_INVALID)
