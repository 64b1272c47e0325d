"""Stage 2: strict bag validation and staging, every payload byte read once."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from preservation import SOFTWARE_AGENT
from preservation.catalog import SIP, SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import (
    InvalidSIPError,
)
from preservation.failpoints import failpoint
from preservation.ingest.reject import problem_from_error, reject
from preservation.ingest.staging import (
    Progress,
    aip_dir,
    no_progress,
    sip_bag_dir,
)

if TYPE_CHECKING:
    from preservation.sip.profile import BagItProfile


# -- stage 2 + 3: validate and stage, in one read ----------------------------------------------


def validate(ctx: Context, sip_id: str, progress: Progress = no_progress) -> None:
    """Strict validation and staging in one pass over the payload.

    The structural rules (RFC 8493, path safety, fetch.txt) need no payload
    read and run first; then each payload byte is read once to check every
    manifest algorithm, copy the file into the AIP being built and compute the
    AIP's sha256 and sha512. A bag that fails any rule is rejected with the
    whole report and nothing staged.
    """
    from preservation.rules import profile_problems, rules_for
    from preservation.sip import payload_oxum, read_bag_info, validate_and_stage

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.RECEIVED:
            return
        tenant_id = sip.tenant_id
    dest = aip_dir(ctx, sip_id) / "data" / "representations" / "rep1"
    shutil.rmtree(aip_dir(ctx, sip_id), ignore_errors=True)  # a crashed run's leftovers
    dest.mkdir(parents=True)
    source = Path(sip.source_path)
    if source.is_symlink():
        # Only a hot folder passes one on (a path given on the command line
        # is resolved at receive): a link would let one tenant's drop read
        # another tenant's folder, or anything the worker may read.
        problems = [
            {
                "severity": "error",
                "file": source.name,
                "rule": "symlink-submission",
                "message": f"{source.name} is a symbolic link (to {os.readlink(source)}); "
                "put the bag itself in the ingest folder, not a link to it",
            }
        ]
        reject(ctx, sip_id, problems, stage_name="validate")
        raise InvalidSIPError(
            f"{sip.name}: a symbolic link, not a bag", problems=problems, sip_id=sip_id
        )
    try:
        bag = sip_bag_dir(ctx, sip)
        report, staged = validate_and_stage(
            bag, dest, processes=2, progress=lambda done, total: progress("stage", done, total)
        )
    except InvalidSIPError as err:
        problems = [problem_from_error(err)]
        reject(ctx, sip_id, problems, stage_name="validate")
        raise InvalidSIPError(err.message, problems=problems, sip_id=sip_id) from err
    if not report.valid:
        problems = [p.to_dict() for p in report.problems]
        reject(ctx, sip_id, problems, stage_name="validate")
        raise InvalidSIPError(
            f"{sip.name}: {len(report.errors)} problem(s) found", problems=problems, sip_id=sip_id
        )
    info = read_bag_info(bag)
    missing = _missing_required_bag_info(ctx, tenant_id, info)
    rules = rules_for(ctx.settings, tenant_id)
    profiled = profile_problems(rules, bag, submitted=source)
    if missing or any(p["severity"] == "error" for p in profiled):
        reject(ctx, sip_id, missing + profiled, stage_name="validate")
        raise InvalidSIPError(
            f"{sip.name}: breaks tenant {tenant_id}'s archiving rules",
            problems=missing + profiled,
            sip_id=sip_id,
        )
    failpoint("validate")
    oxum = payload_oxum(bag)
    warnings = [p.to_dict() for p in report.problems if p.severity == "warning"] + profiled
    sha256s = [f.sha256 for f in staged]
    rows: list[dict[str, Any]] = [
        {
            "original_name": f.relpath,
            "aip_path": f"data/representations/rep1/{f.relpath}",
            "size": f.size,
            "sha256": f.sha256,
            "sha512": f.sha512,
            "submitted_digests": dict(f.submitted),
        }
        for f in staged
    ]
    algorithms = sorted({alg for f in staged for alg in f.submitted})
    with session_scope(ctx.sessions) as s:
        # the duplicate check and the file rows it compares against are one step
        service.lock_tenant(s, tenant_id)
        duplicates = duplicate_problems(ctx, s, sip_id, tenant_id, info, sha256s)
        duplicate_of = list(dict.fromkeys(p.get("aip_id") or p["sip_id"] for p in duplicates))
        refused = any(p["severity"] == "error" for p in duplicates)
        if not refused:
            _record_staged(
                s,
                sip_id,
                info,
                oxum,
                rows,
                algorithms,
                warnings + duplicates,
                duplicate_of,
                profile=rules.bagit_profile,
            )
    if refused:
        reject(
            ctx,
            sip_id,
            duplicates,
            stage_name="validate",
            event_objects={"duplicate_of": duplicate_of},
        )
        raise InvalidSIPError(
            f"{sip.name}: repeats tenant {tenant_id}'s {', '.join(_named(p) for p in duplicates)}",
            problems=duplicates,
            sip_id=sip_id,
        )


def _named(problem: dict[str, Any]) -> str:
    aip_id = problem.get("aip_id")
    return f"AIP {aip_id}" if aip_id else f"SIP {problem['sip_id']} (in flight)"


def _record_staged(
    s: Session,
    sip_id: str,
    info: dict[str, list[str]],
    oxum: Any,
    rows: list[dict[str, Any]],
    algorithms: list[str],
    warnings: list[dict[str, Any]],
    duplicate_of: list[str],
    *,
    profile: BagItProfile | None = None,
) -> None:
    """The validate stage's catalogue writes: bag-info, staged files, three events."""
    from preservation.sip import first_tag

    duplicates = [w for w in warnings if str(w.get("rule", "")).startswith("duplicate-")]
    agents = {"executing program": [SOFTWARE_AGENT]}
    sip = service.get_sip(s, sip_id)
    sip.bag_info = info
    sip.external_identifier = first_tag(info, "External-Identifier")
    sip.payload_oxum = f"{oxum.octets}.{oxum.files}" if oxum else None
    service.add_staged_files(s, sip_id, rows)
    sip.file_count = len(rows)
    sip.payload_bytes = sum(r["size"] for r in rows)
    service.record_event(
        s,
        tenant_id=sip.tenant_id,
        sip_id=sip_id,
        type="validation",
        outcome="success" if not warnings else "warning",
        detail="BagIt RFC 8493 (strict), path safety, fetch.txt completeness"
        + (f", BagIt profile {profile.identifier}" if profile else "")
        + "".join(f"; {p['message']}" for p in duplicates),
        outcome_detail=json.dumps(warnings, ensure_ascii=False) if warnings else "",
        agents=agents,
        objects={"duplicate_of": duplicate_of} if duplicate_of else None,
    )
    service.record_event(
        s,
        tenant_id=sip.tenant_id,
        sip_id=sip_id,
        type="fixity check",
        outcome="success",
        detail=f"payload verified against the bag's manifests ({', '.join(algorithms)})",
        agents=agents,
        objects={"files": len(rows)},
    )
    service.record_event(
        s,
        tenant_id=sip.tenant_id,
        sip_id=sip_id,
        type="message digest calculation",
        outcome="success",
        detail="sha256 and sha512 computed while staging",
        agents=agents,
        objects={"files": len(rows)},
    )
    service.set_sip_state(s, sip, SIPState.STAGED)


def _missing_required_bag_info(
    ctx: Context, tenant: str, info: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """The tenant's required bag-info labels that are absent or empty, as report problems."""
    from preservation.rules import rules_for

    present = {label.lower() for label, values in info.items() if any(v.strip() for v in values)}
    return [
        {
            "severity": "error",
            "file": "bag-info.txt",
            "rule": "tenant-required-bag-info",
            "message": f"tenant {tenant}'s archiving rules require {label!r} with a value",
        }
        for label in rules_for(ctx.settings, tenant).required_bag_info
        if label.lower() not in present
    ]


def duplicate_problems(
    ctx: Context,
    s: Session,
    sip_id: str | None,
    tenant: str,
    info: dict[str, list[str]],
    sha256s: list[str],
) -> list[dict[str, Any]]:
    """The tenant's AIPs (or SIPs in flight) this bag repeats, as report problems.

    By payload: the same multiset of sha256 digests as another SIP staged
    (names aside); an empty payload repeats nothing. By External-Identifier:
    the same value in bag-info.txt. Only the tenant's own SIPs are looked at,
    so another tenant's are neither counted nor named; a rejected or discarded
    one does not count, a pending one does, and one not yet described is named
    by its SIP id. The tenant rule ``on_duplicate`` sets the severity:
    ``warn`` (the default) a warning, ``reject`` an error.
    """
    from preservation.rules import rules_for

    severity = "error" if rules_for(ctx.settings, tenant).on_duplicate == "reject" else "warning"
    identifiers = [
        v.strip()
        for label, values in info.items()
        if label.lower() == "external-identifier"
        for v in values
        if v.strip()
    ]
    found: list[tuple[str, str | None, str, SIP]] = []
    for other in service.sips_with_payload(s, tenant, sha256s, exclude_sip_id=sip_id):
        found.append(("duplicate-payload", None, "payload identical to", other))
    for other in service.sips_with_external_identifier(
        s, tenant, identifiers, exclude_sip_id=sip_id
    ):
        said = f"External-Identifier {other.external_identifier!r} already names"
        found.append(("duplicate-external-identifier", "bag-info.txt", said, other))
    problems = []
    for rule, file, said, other in found:
        when = other.created_at
        when = when.astimezone(UTC) if when.tzinfo else when
        if other.aip_id:
            pending = "" if other.state is SIPState.COMMITTED else ", not yet committed"
            named = f"AIP {other.aip_id}"
        else:
            pending = f", in flight at {other.state.value}"
            named = f"SIP {other.id}"
        problems.append(
            {
                "severity": severity,
                "file": file,
                "rule": rule,
                "message": f"{said} {named} (bag {other.name}, ingested {when:%Y-%m-%d}{pending})",
                "aip_id": other.aip_id,
                "sip_id": other.id,
            }
        )
    return problems
