"""The scan stage: ClamAV looks at every staged file before anything goes further.

It runs right after staging, before identification and characterisation, so
that no format tool parses a file that carries a known virus, and long before
anything is written to tape. An infected bag is rejected with a report naming
each file and signature. A scanner that cannot be reached, or that could not
vouch for a file, is a transient error: the SIP waits and is retried, and is
never ingested unscanned. Only a tenant's rule (``virus_scan: false``) or the
``virus_scan`` setting turns scanning off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from preservation.catalog import SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import InvalidSIPError, ScannerUnavailableError
from preservation.failpoints import failpoint
from preservation.ingest.reject import reject
from preservation.ingest.staging import aip_dir


def scanning_on(ctx: Context, tenant: str) -> bool:
    """Whether a tenant's bags are scanned: the setting and the tenant's rule must both say so."""
    from preservation.rules import rules_for

    return ctx.settings.virus_scan and rules_for(ctx.settings, tenant).virus_scan


def scanner(ctx: Context) -> Any:
    """One scanner per process, so a clamd connection's setup is not paid per SIP."""
    from preservation.scan import scanner_for

    found = ctx.cache.get("virus_scanner")
    if found is None:
        found = ctx.cache["virus_scanner"] = scanner_for(ctx.settings)
    return found


def scan(ctx: Context, sip_id: str) -> None:
    """Scan the staged payload; reject an infected bag, wait for a scanner that is away."""
    from preservation.aip.layout import walk_package
    from preservation.ingest.staging import sip_bag_dir

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.STAGED:
            return
        tenant_id, sip_name = sip.tenant_id, sip.name
        files = [(f.original_name, f.aip_path or "") for f in service.list_files(s, sip_id=sip_id)]
        bag = sip_bag_dir(ctx, sip)
    if not scanning_on(ctx, tenant_id):
        with session_scope(ctx.sessions) as s:
            service.set_sip_state(s, service.get_sip(s, sip_id), SIPState.SCANNED)
        return
    root = aip_dir(ctx, sip_id)
    names = {root / aip_path: name for name, aip_path in files}
    # The tag files too (bag-info.txt, manifests, tag folders): the describe
    # stage keeps them in the AIP as received, so they go to tape as well.
    names |= {
        entry.path: entry.relpath for entry in walk_package(bag, skip={"data"}) if not entry.is_dir
    }
    paths = list(names)
    report = scanner(ctx).scan(paths)
    failpoint("scan")
    if report.errors:
        # A file the engine could not read is a file nobody vouched for.
        shown = "; ".join(
            f"{names.get(Path(p), Path(p).name)}: {why}"
            for p, why in list(report.errors.items())[:5]
        )
        raise ScannerUnavailableError(
            f"{report.engine} could not scan {len(report.errors)} file(s) ({shown}); the SIP "
            "waits until it can (check clamd's MaxFileSize, MaxScanSize and StreamMaxLength)",
            sip_id=sip_id,
        )
    tool = report.engine
    # One agent per engine and signature release: which signatures looked is the evidence.
    identifier = f"{tool} (signatures {report.database})"
    agent = {"executing program": [identifier]}
    if report.detections:
        problems: list[dict[str, Any]] = [
            {
                "severity": "error",
                "file": names.get(Path(d.path), Path(d.path).name),
                "rule": "virus-found",
                "message": f"{tool} found {d.signature}",
                "signature": d.signature,
            }
            for d in report.detections
        ]
        with session_scope(ctx.sessions) as s:
            service.ensure_agent(s, identifier, name="ClamAV", type="software", version=identifier)
        reject(
            ctx,
            sip_id,
            problems,
            stage_name="scan",
            event_type="virus check",
            event_outcome="failure",
            event_agents=agent,
            event_detail=f"{len(problems)} infected file(s) found by {tool} "
            f"(signatures {report.database}); nothing was written to tape",
            event_objects={"files": len(paths)},
        )
        raise InvalidSIPError(
            f"{sip_name}: {len(problems)} infected file(s): "
            + ", ".join(f"{p['file']} ({p['signature']})" for p in problems[:5]),
            problems=problems,
            sip_id=sip_id,
        )
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        service.ensure_agent(s, identifier, name="ClamAV", type="software", version=identifier)
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            type="virus check",
            outcome="success",
            detail=f"{report.scanned} file(s) scanned with {tool} (signatures {report.database})",
            outcome_detail="no virus found",
            agents=agent,
            objects={"files": len(files), "tag_files": len(paths) - len(files)},
        )
        service.set_sip_state(s, sip, SIPState.SCANNED)
