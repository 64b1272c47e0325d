"""The formats page: the risk report ``GET /api/v1/formats`` gives, as a table to act from.

Per PRONOM id: files, bytes, AIPs, the evidence that is weak (identified by
extension alone, not identified, found malformed) and the policy's action.
A format the policy migrates gets a "Migrate these" link to the migration
form, for the roles that may start one; the migration page checks the role
again, as the service does.

An admin sees every tenant, or one chosen in the form; anyone else sees
their own tenant, and naming another is the same 404 the API gives. The
chosen tenant goes with "Migrate these": an admin reading one tenant's report
migrates that tenant's files, not every tenant's of that format.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from starlette.responses import Response

from preservation import formats, tenants
from preservation.api.deps import Ctx, Db
from preservation.catalog.models import Role
from preservation.console import render
from preservation.console.deps import Viewer
from preservation.console.deps import router as console_router
from preservation.errors import NotFoundError
from preservation.tokens import Principal

router = console_router()


def tenant_scope(viewer: Principal, tenant: str | None) -> str | None:
    """The tenant a report or a migration covers, as the API's ``tenant`` field decides it.

    An admin's choice (None: every tenant); anyone else's own tenant, and
    naming another is the same 404 as naming none that exists.
    """
    tenant = tenant or None
    if viewer.tenant_id is None:
        return tenant
    if tenant is not None and tenant != viewer.tenant_id:
        raise NotFoundError(f"no tenant {tenant!r}", rule="tenant", field="tenant")
    return viewer.tenant_id


def _risks(row: formats.FormatRow) -> list[tuple[str, str]]:
    """The report's findings on one row as (kind, what), for badges that say it in words."""
    from preservation.console.i18n import gettext as _
    from preservation.console.i18n import ngettext

    found: list[tuple[str, str]] = []
    if row.puid is None:
        found.append(("bad", _("not identified")))
    if row.invalid:
        found.append(
            (
                "bad",
                ngettext("%(num)d malformed", "%(num)d malformed", row.invalid)
                % {"num": row.invalid},
            )
        )
    if row.by_extension:
        found.append(
            (
                "warn",
                ngettext("%(num)d by extension only", "%(num)d by extension only", row.by_extension)
                % {"num": row.by_extension},
            )
        )
    return found


@router.get("/formats")
def format_report(
    request: Request,
    ctx: Ctx,
    db: Db,
    viewer: Viewer,
    tenant: Annotated[str | None, Query(max_length=63)] = None,
) -> Response:
    scope = tenant_scope(viewer, tenant)
    report = formats.format_report(db, scope, formats.load_format_policy(ctx.settings))
    aips = formats.aips_per_format(db, scope)
    rows: list[dict[str, Any]] = [
        # Unidentified files are not in the format index: no AIP count for them.
        {"row": r, "aips": aips.get(r.puid, 0) if r.puid else None, "risks": _risks(r)}
        for r in report.formats
    ]
    context = {
        "section": "formats",
        "report": report,
        "rows": rows,
        "tenant": scope,
        "tenants": [(t["id"], t["name"]) for t in tenants.list_tenants(db)]
        if viewer.is_admin
        else [],
        "can_migrate": viewer.role.allows(Role.CURATOR),
    }
    return render.page(request, "formats.html", context)
