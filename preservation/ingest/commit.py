"""The commit stage: an AIP is active only with two verified copies; then the SIP goes."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from preservation import SOFTWARE_AGENT
from preservation.catalog import SIP, AIPVersion, SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import (
    SiteUnavailableError,
)
from preservation.failpoints import failpoint
from preservation.ingest.reject import inside
from preservation.ingest.staging import (
    staging_dir,
)
from preservation.ingest.store import version_of


def commit(ctx: Context, sip_id: str) -> None:
    """The AIP becomes active only with two verified copies; then the SIP is released.

    Run again after a crash between the catalogue commit and the release, it
    finishes the release: a SIP is never left claimed in its hot folder with
    its AIP already active.
    """
    from preservation.storage.service import commit_version, release_staging

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        committed = sip.state is SIPState.COMMITTED
    if committed:
        _release_sip(ctx, sip_id)
        return
    version_id = version_of(ctx, sip_id)
    if version_id is None:
        return
    if not commit_version(ctx, version_id):
        raise SiteUnavailableError(
            "the AIP does not have two verified copies yet; it stays pending", sip_id=sip_id
        )
    failpoint("commit")
    release_staging(ctx, version_id)
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        service.record_event(
            s,
            tenant_id=sip.tenant_id,
            sip_id=sip_id,
            aip_id=sip.aip_id,
            type="ingestion",
            outcome="success",
            detail="ingestion completed: AIP active with two verified tape copies",
            agents={"executing program": [SOFTWARE_AGENT]},
        )
        _set_default_retention(ctx, s, sip, version_id)
        _describe_committed(s, sip)
        service.set_sip_state(s, sip, SIPState.COMMITTED)
    failpoint("release")
    _release_sip(ctx, sip_id)


def _set_default_retention(ctx: Context, s: Session, sip: SIP, version_id: int) -> None:
    """The tenant's ``default_retention``, counted from the version's commit.

    The commit time is the version's own (set once by ``commit_version``), so
    a rerun after a crash computes the same date; a date already set (by a
    curator, while the AIP was pending) is policy and is left alone.
    """
    from preservation.rules import retention_until, rules_for

    aip = service.get_aip(s, sip.aip_id or "")
    if aip.retention_until is not None:
        return
    committed_at = s.get_one(AIPVersion, version_id).committed_at or datetime.now(UTC)
    if committed_at.tzinfo is None:  # SQLite gives back naive UTC
        committed_at = committed_at.replace(tzinfo=UTC)
    aip.retention_until = retention_until(rules_for(ctx.settings, sip.tenant_id), committed_at)


def _describe_committed(s: Session, sip: SIP) -> None:
    """The AIP's current record and its search entry, in the transaction that commits it.

    Version 1's record is the bag-info mapped to Dublin Core, as its dc.xml
    holds it; a metadata version replaces it when that version commits
    (preservation/versions.py).
    """
    from preservation.catalog.search import index_aips
    from preservation.metadata.dc_input import dc_as_record
    from preservation.metadata.mets import dublin_core_from_bag_info

    aip = service.get_aip(s, sip.aip_id or "")
    aip.descriptive = dc_as_record(dublin_core_from_bag_info(aip.id, sip.bag_info))
    index_aips(s, [aip.id])


def _release_sip(ctx: Context, sip_id: str) -> None:
    """Remove (or keep, by rule) the submitted bag and the staging area; idempotent."""
    from preservation import hotfolder
    from preservation.rules import rules_for

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        source, tenant = Path(sip.source_path), sip.tenant_id
    if inside(source, ctx.settings.ingest_dir):
        hotfolder.release(source, keep=rules_for(ctx.settings, tenant).keep_sips)
    shutil.rmtree(staging_dir(ctx, sip_id), ignore_errors=True)
