"""The store stage: the AIP tar to every site, each copy read back and verified."""

from __future__ import annotations

from preservation.catalog import SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context

# -- stage 7 + 8: store, commit ------------------------------------------------------------


def version_of(ctx: Context, sip_id: str) -> int | None:
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state in (SIPState.PACKAGED, SIPState.STORED) and sip.aip_id:
            return service.create_aip_version(s, service.get_aip(s, sip.aip_id), 1).id
    return None


def store(ctx: Context, sip_id: str, site: str) -> None:
    """Write the AIP tar to one site and verify it; the two sites run independently."""
    from preservation.storage.service import store_version

    version_id = version_of(ctx, sip_id)
    if version_id is not None:
        store_version(ctx, version_id, site)


def store_all(ctx: Context, sip_id: str) -> None:
    """The embedded default writes every site at once, as the per-site queues do."""
    from preservation.storage.service import on_every_site

    on_every_site(ctx, lambda site: store(ctx, sip_id, site))
