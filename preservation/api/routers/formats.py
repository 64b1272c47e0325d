"""Formats: the format risk report a curator plans migrations from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from preservation import formats
from preservation.api.deps import Asker, Ctx, Db
from preservation.api.problems import responses
from preservation.errors import NotFoundError

router = APIRouter(
    prefix="/formats", tags=["formats"], responses=responses(400, 401, 403, 404, 422, 503)
)


@router.get(
    "",
    response_model=formats.FormatReport,
    responses=responses(404),
    summary="Files per PRONOM id: bytes, policy action, extension-only, unidentified, invalid",
)
def format_report(
    ctx: Ctx,
    db: Db,
    principal: Asker,
    tenant: Annotated[
        str | None,
        Query(
            max_length=63,
            description="Admins: one tenant's (default: every tenant). A tenant's token "
            "always sees its own.",
        ),
    ] = None,
) -> formats.FormatReport:
    scope = principal.tenant_id
    if scope is None:
        scope = tenant
    elif tenant is not None and tenant != scope:
        # As for every other tenant's thing: not found, so it cannot even be probed for.
        raise NotFoundError(f"no tenant {tenant!r}", rule="tenant", field="tenant")
    return formats.format_report(db, scope, formats.load_format_policy(ctx.settings))
