"""Format migrations: the dry run a curator reads before saying yes, then the run, live.

The preview is the API's dry run (``migrate.service.dry_run`` under the
configured policy) for one AIP or for every current file of a PUID; "Start"
records the request with ``start_migration`` and hands it to the runner only
after the commit, as the API does. An admin's ``tenant`` (from the formats
report) narrows both to that tenant, as the API's ``tenant`` field does. The
progress page polls a fragment that stops polling once every AIP of the
request is finished.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from preservation.api.deps import Ctx, Db, actor_of
from preservation.catalog.database import session_scope
from preservation.catalog.models import Role
from preservation.console import render
from preservation.console.deps import Viewer, needs
from preservation.console.deps import router as console_router
from preservation.console.i18n import gettext as _
from preservation.console.pages.aip import state_labels
from preservation.console.pages.formats import tenant_scope
from preservation.errors import InvalidRequestError
from preservation.lookup import check_uuid
from preservation.migrate import run, service
from preservation.tokens import Principal

router = console_router()
Curator = Annotated[Principal, Depends(needs(Role.CURATOR))]

#: A migration is over in these states: the page stops polling.
FINISHED = frozenset({"done", "failed"})
#: AIPs a PUID's preview plans and shows; the others are counted, not read.
PREVIEW_AIPS = 100
_PUID = r"^[a-z-]+/[0-9]+$"


def mode_labels() -> dict[str, str]:
    """The policy's modes (``migrate.policy.MODES``), in the viewer's language."""
    return {
        "best-effort": _("best effort (keep what verified)"),
        "all-or-nothing": _("all or nothing"),
    }


def step_labels() -> dict[str, str]:
    """What a worker is doing to an AIP (``MigrationItem.step``), in the viewer's language."""
    return {
        "recall": _("recalling from tape"),
        "convert": _("converting"),
        "verify": _("verifying the outputs"),
        "package": _("packaging the new version"),
        "store": _("storing the new version"),
    }


def _selection(aip: str | None, puid: str | None) -> tuple[list[str], str | None]:
    if bool(aip) == bool(puid):
        raise InvalidRequestError("give an AIP or a PUID (not both)", rule="selection", field="aip")
    return ([check_uuid(aip, field="aip")] if aip else []), puid


@router.get("/migrations")
def migrations_list(request: Request, db: Db, viewer: Viewer) -> Response:
    return render.page(
        request,
        "migrations.html",
        {
            "section": "formats",
            "migrations": service.list_migrations(db, viewer.tenant_id),
            "states": state_labels(),
        },
    )


@router.get("/migrations/new")
def preview(
    request: Request,
    ctx: Ctx,
    viewer: Curator,
    aip: Annotated[str | None, Query(max_length=64)] = None,
    puid: Annotated[str | None, Query(max_length=32, pattern=_PUID)] = None,
    tenant: Annotated[str | None, Query(max_length=63)] = None,
) -> Response:
    """The dry run: files, actions and targets; nothing is recorded.

    A PUID's plan is made for its first :data:`PREVIEW_AIPS` AIPs only; the
    rest are counted, and "Start" plans them all, as the API does.
    """
    aip_ids, chosen_puid = _selection(aip, puid)
    scope = tenant_scope(viewer, tenant)
    policy, _text = service.read_policy(ctx.settings.migration_policy)
    with session_scope(ctx.sessions) as s:
        result = service.dry_run(
            s, policy, aip_ids=aip_ids, puid=chosen_puid, tenant_id=scope, limit=PREVIEW_AIPS
        )
    return render.page(
        request,
        "migration_new.html",
        {
            "section": "formats",
            "plan": result,
            "aip": aip or "",
            "puid": puid or "",
            # Only an admin's choice travels: anyone else's scope is their own anyway.
            "tenant": scope if viewer.tenant_id is None else None,
            "modes": mode_labels(),
        },
    )


@router.post("/migrations")
async def start(request: Request, ctx: Ctx, viewer: Curator) -> Response:
    form = await request.form()
    aip = str(form.get("aip") or "").strip() or None
    puid = str(form.get("puid") or "").strip() or None
    if puid is not None and (len(puid) > 32 or "/" not in puid):
        raise InvalidRequestError(f"{puid[:40]!r} is not a PUID", rule="puid", field="puid")
    aip_ids, chosen_puid = _selection(aip, puid)
    scope = tenant_scope(viewer, str(form.get("tenant") or "").strip()[:63])

    def begin() -> service.MigrationView:
        policy, text = service.read_policy(ctx.settings.migration_policy)
        with session_scope(ctx.sessions) as s:
            return service.start_migration(
                s,
                policy,
                text,
                aip_ids=aip_ids,
                puid=chosen_puid,
                tenant_id=scope,
                who=actor_of(viewer).who,
            )

    view = await run_in_threadpool(begin)
    run.submit_migration(ctx, view.migration_id)  # after the commit: workers find the rows
    return RedirectResponse(f"/console/migrations/{view.migration_id}", status_code=303)


@router.get("/migrations/{migration_id}")
def progress(request: Request, db: Db, viewer: Viewer, migration_id: str) -> Response:
    """The whole page, or the progress fragment alone when htmx polls for it."""
    view = service.get_migration(db, migration_id, viewer.tenant_id)
    context = {
        "section": "formats",
        "migration": view,
        "finished": view.state in FINISHED,
        "states": state_labels(),
        "modes": mode_labels(),
        "steps": step_labels(),
    }
    if render.is_htmx(request):
        return render.page(request, "migrations/_progress.html", context)
    return render.page(request, "migration.html", context)
