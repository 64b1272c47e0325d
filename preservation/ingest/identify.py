"""Stage 3: every staged file's format, all files at once across the cores."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from preservation import SOFTWARE_AGENT
from preservation.catalog import SIP, SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import (
    InvalidSIPError,
)
from preservation.failpoints import failpoint
from preservation.ingest.reject import reject
from preservation.ingest.staging import (
    Progress,
    aip_dir,
    no_progress,
)

# -- stage 4: identify ------------------------------------------------------------------------


def identification_pool(ctx: Context) -> Any:
    """One pool per process for its whole life: signatures load once per worker."""
    from preservation.identify import IdentificationPool

    pool = ctx.cache.get("identify_pool")
    if pool is None:
        pool = ctx.cache["identify_pool"] = IdentificationPool(
            ctx.settings.identify_engine,
            workers=ctx.settings.identify_workers or None,
            timeout=ctx.settings.identify_timeout,
        )
    return pool


def identify(ctx: Context, sip_id: str, progress: Progress = no_progress) -> None:
    """Identify every staged file's format, all files at once across the cores.

    Then the tenant's ``allowed_formats`` applies, here because a format is
    known only once identified: files outside it are a ``validation`` warning
    event, or reject the SIP as validation does (the identification is still
    recorded, so the PREMIS trail says how the formats were found).
    """
    from preservation.rules import format_problems, rules_for

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.SCANNED:
            return
        tenant_id, sip_name = sip.tenant_id, sip.name
        listed = service.list_files(s, sip_id=sip_id)
        files = [(f.id, f.aip_path or "") for f in listed]
        names = {f.id: f.original_name for f in listed}
    root = aip_dir(ctx, sip_id)
    progress("identify", 0, len(files))
    results = identification_pool(ctx).identify(
        [root / path for _, path in files],
        progress=lambda done, total: progress("identify", done, total),
    )
    progress("identify", len(files), len(files))
    failpoint("identify")
    updates = []
    unknown = failed = 0
    for (file_id, _), r in zip(files, results, strict=True):
        unknown += not r.known
        failed += bool(r.error)
        updates.append(
            {
                "id": file_id,
                "puid": r.puids[0] if r.puids else None,
                "format_name": r.format_name,
                "format_version": r.format_version,
                "mime": r.mime,
                "identification_basis": r.basis,
                "identification": {
                    "puids": list(r.puids),
                    "engine": r.engine,
                    "engine_version": r.engine_version,
                    "signature_release": r.signature_release,
                    "warning": r.warning,
                    "error": r.error,
                },
            }
        )
    engine = results[0] if results else None
    tool = f"{engine.engine} {engine.engine_version}" if engine else ctx.settings.identify_engine
    off_list = format_problems(
        rules_for(ctx.settings, tenant_id),
        [(names[u["id"]], u["puid"], u["format_name"]) for u in updates],
    )
    refused = any(p["severity"] == "error" for p in off_list)
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        service.update_files(s, updates)
        if engine:
            service.ensure_agent(
                s,
                tool,
                name=engine.engine,
                type="software",
                version=f"{engine.engine_version} (signatures {engine.signature_release})",
            )
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            type="format identification",
            outcome="success" if not unknown else "warning",
            detail=f"{len(files)} files identified with {tool}"
            + (f" (signatures {engine.signature_release})" if engine else ""),
            outcome_detail=(
                f"{unknown} file(s) not identified, {failed} failed" if unknown else ""
            ),
            agents={"executing program": [tool]},
            objects={"files": len(files)},
        )
        if off_list and not refused:
            _record_format_warnings(s, sip, off_list)
        if not refused:
            service.set_sip_state(s, sip, SIPState.IDENTIFIED)
    if refused:
        reject(ctx, sip_id, off_list, stage_name="identify")
        raise InvalidSIPError(
            f"{sip_name}: {len(off_list)} file(s) in formats tenant {tenant_id} does not allow",
            problems=off_list,
            sip_id=sip_id,
        )


def _record_format_warnings(s: Session, sip: SIP, warnings: list[dict[str, Any]]) -> None:
    """Files outside the tenant's allowed formats, let through by ``otherwise: warn``.

    A ``validation`` event, like the validate stage's warnings, so every reader
    of those (``ingest``'s result, the METS) finds these too. At most a
    thousand files are listed: the event goes into every copy of the METS.
    """
    named = ", ".join(f"{p['file']} ({p['puid'] or 'unidentified'})" for p in warnings[:10])
    more = f" and {len(warnings) - 10} more" if len(warnings) > 10 else ""
    service.record_event(
        s,
        tenant_id=sip.tenant_id,
        sip_id=sip.id,
        type="validation",
        outcome="warning",
        detail=f"allowed formats of tenant {sip.tenant_id}: {len(warnings)} file(s) in other "
        f"formats: {named}{more}",
        outcome_detail=json.dumps(warnings[:1000], ensure_ascii=False),
        agents={"executing program": [SOFTWARE_AGENT]},
        objects={"files": len(warnings)},
    )
