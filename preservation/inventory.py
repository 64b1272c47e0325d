"""What the archive holds, as plain dicts for the CLI and the API to print.

Kept apart from ``catalog.service`` (which returns rows for code to act on):
this module decides what a person looking at an AIP needs to see.
"""

from __future__ import annotations

from typing import Any

from preservation.catalog import service, session_scope
from preservation.context import Context

__all__ = ["describe_aip"]


def _current_record(s: Any, aip: Any) -> dict[str, list[str]] | None:
    """The Dublin Core record the AIP's newest committed version holds, ``{element: [values]}``.

    Kept on the AIP since version 1 commits; an AIP committed before that was
    kept (or still pending) shows its bag-info mapped, as its version 1 dc.xml has it.
    """
    if aip.descriptive is not None:
        return dict(aip.descriptive)
    from preservation.catalog import SIP
    from preservation.metadata.dc_input import dc_as_record
    from preservation.metadata.mets import dublin_core_from_bag_info

    sip = s.get(SIP, aip.sip_id)
    if sip is None or aip.state.value in ("disposed", "discarded"):
        return None
    return dc_as_record(dublin_core_from_bag_info(aip.id, sip.bag_info or {}))


def describe_aip(ctx: Context, aip_id: str) -> dict[str, Any]:
    with session_scope(ctx.sessions) as s:
        aip = service.get_aip(s, aip_id)
        versions = []
        for v in aip.versions:
            versions.append(
                {
                    "number": v.number,
                    "reason": v.reason,
                    "state": "committed" if v.committed_at else "pending",
                    "tar_name": v.tar_name,
                    "tar_size": v.tar_size,
                    "tar_sha256": v.tar_sha256,
                    "committed_at": v.committed_at.isoformat() if v.committed_at else None,
                    "copies": [
                        {
                            "site": c.site,
                            "barcode": c.barcode,
                            "volume_uuid": c.volume_uuid,
                            "path": c.path,
                            "start_block": c.start_block,
                            "length": c.length,
                            "sha256": c.sha256,
                            "status": c.status.value,
                            "written_at": c.written_at.isoformat() if c.written_at else None,
                            "verified_at": c.verified_at.isoformat() if c.verified_at else None,
                        }
                        for c in sorted(v.copies, key=lambda c: (c.site, c.id))
                    ],
                }
            )
        files = [
            {
                "original_name": f.original_name,
                "aip_path": f.aip_path,
                "size": f.size,
                "sha256": f.sha256,
                "puid": f.puid,
                "format_name": f.format_name,
                "format_version": f.format_version,
                "mime": f.mime,
                "basis": f.identification_basis,
                "identification": f.identification,
                "properties": f.properties,
                "valid": f.valid,
                "validation": f.validation,
            }
            for f in service.list_files(s, sip_id=aip.sip_id)
        ]
        events = [
            {
                "uuid": e.uuid,
                "type": e.type,
                "occurred_at": e.occurred_at.isoformat(),
                "outcome": e.outcome,
                "detail": e.detail,
                "outcome_detail": e.outcome_detail,
                "agents": e.agents,
                "hash": e.hash,
            }
            for e in sorted(
                service.list_events(s, sip_id=aip.sip_id) + service.list_events(s, aip_id=aip.id),
                key=lambda e: e.seq,
            )
        ]
        # Events recorded with both ids appear in both lists: keep each once.
        unique = list({e["uuid"]: e for e in events}.values())
        return {
            "aip_id": aip.id,
            "tenant": aip.tenant_id,
            "state": aip.state.value,
            "sip_id": aip.sip_id,
            "source_bag_name": aip.source_bag_name,
            "external_identifier": aip.external_identifier,
            "created_at": aip.created_at.isoformat(),
            "descriptive": _current_record(s, aip),
            "versions": versions,
            "files": files,
            "events": unique,
        }
