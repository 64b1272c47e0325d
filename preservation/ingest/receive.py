"""Stage 1: a submission is registered; nothing is read or moved yet."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from preservation.catalog import SIP, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import (
    SIPPendingError,
)
from preservation.ingest.staging import (
    bag_name,
)

# -- stage 1: receive ------------------------------------------------------------------


def receive(ctx: Context, path: Path, *, tenant: str, sip_id: str | None = None) -> str:
    """Register a submission; nothing is read or moved yet. Idempotent by ``sip_id``.

    A new submission (no ``sip_id``) of a path that already has a SIP in
    flight for the tenant is refused: resuming both would make two AIPs of
    one bag. The tenant id is checked here too, so no way in can skip it.
    """
    from preservation.rules import rules_for
    from preservation.sips import stage_shown
    from preservation.tenants import check_tenant_id

    check_tenant_id(tenant, source="tenant")
    # A new submission is known by its real path, so a symlink or another
    # spelling of a bag in flight is still the same bag.
    path = Path(os.path.abspath(path) if sip_id is not None else os.path.realpath(path))
    organisation = rules_for(ctx.settings, tenant).organisation
    with session_scope(ctx.sessions) as s:
        if sip_id is None:
            for earlier in service.sips_from_source(s, tenant, str(path)):
                stage = stage_shown(s, earlier.id, earlier.stage)
                raise SIPPendingError(
                    f"{path} already has SIP {earlier.id} in flight ({earlier.state.value}, "
                    f"stage {stage or '-'}); finish it with `preservation resume "
                    f"{earlier.id}` or end it with `preservation sip discard {earlier.id} "
                    "--yes`",
                    sip_id=earlier.id,
                    path=path,
                    rule="sip-in-flight",
                )
        service.ensure_tenant(s, tenant, organisation)
        sip = service.create_sip(
            s, tenant_id=tenant, name=bag_name(path), source_path=str(path), sip_id=sip_id
        )
        return sip.id


def scan_and_claim(
    ctx: Context,
    *,
    submit: Callable[[str], None],
    skipped: Callable[[Any], None] | None = None,
    claimed: Callable[[str], None] | None = None,
) -> list[str]:
    """One pass over the hot folders: claim every ready bag, register it, hand it on.

    The claim folder's name is the SIP id, so a watcher that died between the
    claim and the catalogue write is finished by the next scan, not duplicated.
    Each bag not taken is handed to ``skipped`` (a ``hotfolder.Candidate``, with
    its reason) for the caller to tell; folders that are not valid tenant ids
    are never scanned (``hotfolder.invalid_tenant_folders`` lists them). Each
    SIP registered is handed to ``claimed`` at once, before any is submitted:
    in-process, submitting one runs it to the end.
    """
    from preservation import hotfolder

    started: list[str] = []
    for candidate in hotfolder.find_ready(
        ctx.settings.ingest_dir,
        quiescent_seconds=ctx.settings.quiescent_seconds,
        incomplete_bag_seconds=ctx.settings.incomplete_bag_seconds,
        skipped=skipped,
    ):
        taken = hotfolder.claim(candidate)
        if taken is not None:
            started.append(receive(ctx, taken, tenant=candidate.tenant, sip_id=taken.parent.name))
            if claimed is not None:
                claimed(started[-1])
    for tenant, taken in hotfolder.orphaned_claims(ctx.settings.ingest_dir):
        with session_scope(ctx.sessions) as s:
            known = s.get(SIP, taken.parent.name) is not None
        if not known:
            started.append(receive(ctx, taken, tenant=tenant, sip_id=taken.parent.name))
            if claimed is not None:
                claimed(started[-1])
    cutoff = datetime.now(UTC) - timedelta(seconds=ctx.settings.stall_seconds)
    with session_scope(ctx.sessions) as s:
        stalled = service.stalled_sips(s, older_than=cutoff)
        for sip in stalled:
            sip.updated_at = datetime.now(UTC)  # one resubmission per stall period
        resubmitted = [sip.id for sip in stalled]
    for sip_id in started + resubmitted:
        submit(sip_id)
    return started + resubmitted
