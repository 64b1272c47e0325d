"""DIPs: a person's requests, their recall as it happens, and the download once ready.

The list and each request are ``access.service``'s views, scoped to the
viewer's tenant (another tenant's DIP is not found, like none); "mine" is the
default, since a reader follows what they asked for, and a curator (or an
admin) can widen it to the tenant's (``?all=1``): who asked for what is the
curators' to see, so a consumer or submitter asking for it gets their own.
While any request shown is still queued, recalling or building, the list is
a fragment htmx polls; it stops once all are settled.
The download is the API's: ``ready_row`` says whether it may be had, and
``delivery.file_response`` streams the cached zip (resumable with Range).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query, Request
from starlette.responses import Response

from preservation.access import cache, service
from preservation.access.delivery import file_response
from preservation.api.deps import Ctx, Db, actor_of
from preservation.catalog.models import Role
from preservation.console import render
from preservation.console.deps import Viewer
from preservation.console.deps import router as console_router
from preservation.console.i18n import gettext as _
from preservation.console.pages.aip import state_labels
from preservation.errors import GoneError

router = console_router()

#: Requests still moving: the page keeps polling while one of these is shown.
MOVING = frozenset({"queued", "recalling", "building"})


def _context(
    dips: list[service.DIPView], *, everyone: bool, asked: str | None
) -> dict[str, object]:
    return {
        "section": "dips",
        "dips": dips,
        "everyone": everyone,
        "asked": asked,
        "single": None,
        "moving": any(d.state in MOVING for d in dips),
        "states": state_labels(),
    }


@router.get("/dips")
def dips_page(
    request: Request,
    db: Db,
    viewer: Viewer,
    all: Annotated[bool, Query()] = False,  # noqa: A002 - the query parameter's name
    asked: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    everyone = all and viewer.role.allows(Role.CURATOR)
    mine = None if everyone else actor_of(viewer).label
    dips = service.list_dips(db, viewer.tenant_id, requested_by=mine)
    context = _context(dips, everyone=everyone, asked=asked)
    context["may_see_all"] = viewer.role.allows(Role.CURATOR)
    if asked and any(d.dip_id == asked for d in dips):
        context["notices"] = [
            ("ok", _("Your DIP is queued for the next recall batch; this page follows it."))
        ]
    if render.is_htmx(request):
        return render.page(request, "dips/_list.html", context)
    return render.page(request, "dips.html", context)


@router.get("/dips/{dip_id}")
def dip_page(request: Request, db: Db, viewer: Viewer, dip_id: str) -> Response:
    """One request, on its own: the same row, polled while it moves."""
    dip = service.get_dip(db, dip_id, viewer.tenant_id)
    context = _context([dip], everyone=False, asked=None)
    context["single"] = dip
    if render.is_htmx(request):
        return render.page(request, "dips/_list.html", context)
    return render.page(request, "dips.html", context)


@router.get("/dips/{dip_id}/download")
def download(
    ctx: Ctx,
    db: Db,
    viewer: Viewer,
    dip_id: str,
    range_: Annotated[str | None, Header(alias="Range", max_length=256)] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=256)] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=1024)] = None,
) -> Response:
    row = service.ready_row(db, dip_id, viewer.tenant_id)
    try:
        return file_response(
            cache.zip_path(ctx.settings, row.id),
            etag=row.zip_sha256 or row.id,
            media_type="application/zip",
            filename=f"dip-{row.id}.zip",
            range_header=range_,
            if_range=if_range,
            if_none_match=if_none_match,
        )
    except FileNotFoundError as err:
        raise GoneError(
            f"DIP {row.id} is no longer in the cache: request it again",
            rule="dip-expired",
            dip_id=row.id,
        ) from err
