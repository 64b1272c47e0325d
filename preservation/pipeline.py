"""Ingest as plain, idempotent stage functions of a SIP id.

Each stage reads its inputs from the catalogue and the staging area, does its
work, and commits its result and its PREMIS events in one transaction before
the next stage starts. Run again after a crash, a stage either finds its work
done (and returns) or redoes it from scratch: partial output is never trusted.
The CLI runs the stages in-process; Celery tasks call the same functions.

Staging area of one SIP (``<home>/staging/<sip-id>/``)::

    unpacked/                  a serialised bag, unpacked safely
    aip/                       the AIP version 1 bag being built (docs/architecture.md §4)
      data/representations/rep1/data/...   payload, copied once during `stage`
    <aip-id>.v1.tar            the serialised AIP, written by `package`
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from preservation import __version__
from preservation.catalog import SIP, AIPVersion, SIPState, Tenant, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import (
    InvalidSIPError,
    PreservationError,
    SIPBusyError,
    SIPPendingError,
    SiteUnavailableError,
    TransientError,
)
from preservation.failpoints import failpoint

if TYPE_CHECKING:
    from preservation.sip.profile import BagItProfile

__all__ = [
    "STAGES",
    "IngestResult",
    "duplicate_problems",
    "open_sites",
    "pending_sips",
    "receive",
    "reject",
    "result_of",
    "resume",
    "run_ingest",
    "run_sip",
    "sip_bag_dir",
    "validate",
]

log = logging.getLogger("preservation.pipeline")

SOFTWARE_AGENT = f"preservation {__version__}"
SERIALISED_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")

Progress = Callable[[str, int, int], None]  # (what, done, total)


def _no_progress(_what: str, _done: int, _total: int) -> None:
    return None


@dataclass
class IngestResult:
    sip_id: str
    state: str
    aip_id: str | None = None
    rejected_to: str | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    # The validate stage's warnings (rule, message, ...), e.g. "duplicate-payload".
    warnings: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why the run stopped short, when it did

    def to_dict(self) -> dict[str, Any]:
        return {
            "sip_id": self.sip_id,
            "state": self.state,
            "aip_id": self.aip_id,
            "rejected_to": self.rejected_to,
            "error": self.error,
            "problems": self.problems,
            "warnings": self.warnings,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


# -- paths ------------------------------------------------------------------------------


def staging_dir(ctx: Context, sip_id: str) -> Path:
    return ctx.settings.staging_dir / sip_id


def aip_dir(ctx: Context, sip_id: str) -> Path:
    return staging_dir(ctx, sip_id) / "aip"


def is_serialised(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SERIALISED_SUFFIXES)


def bag_name(path: Path) -> str:
    name = path.name
    for suffix in SERIALISED_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def sip_bag_dir(ctx: Context, sip: SIP) -> Path:
    """The bag directory to read: the submitted one, or the safely unpacked one."""
    source = Path(sip.source_path)
    if is_serialised(source):
        from preservation.sip import open_serialised_bag

        unpacked = staging_dir(ctx, sip.id) / "unpacked"
        marker = unpacked / ".complete"
        if marker.exists():
            return Path(marker.read_text())
        shutil.rmtree(unpacked, ignore_errors=True)
        unpacked.mkdir(parents=True)
        root = open_serialised_bag(
            source,
            unpacked,
            max_bytes=ctx.settings.unpack_max_bytes,
            max_members=ctx.settings.unpack_max_members,
            max_ratio=ctx.settings.unpack_max_ratio,
        )
        marker.write_text(str(root))
        return root
    return source


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


# -- stage 2 + 3: validate and stage, in one read ----------------------------------------------


def validate(ctx: Context, sip_id: str, progress: Progress = _no_progress) -> None:
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
        problems = [_problem_from_error(err)]
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


def _validation_warnings(ctx: Context, sip_id: str) -> list[dict[str, Any]]:
    """The warnings recorded for a SIP in its validation events (validate's, identify's)."""
    found: list[dict[str, Any]] = []
    with session_scope(ctx.sessions) as s:
        for ev in service.list_events(s, sip_id=sip_id):
            if ev.type == "validation" and ev.outcome == "warning" and ev.outcome_detail:
                found += json.loads(ev.outcome_detail)
    return found


# -- stage 4: identify ------------------------------------------------------------------------


def identify(ctx: Context, sip_id: str, progress: Progress = _no_progress) -> None:
    """Identify every staged file's format, all files at once across the cores.

    Then the tenant's ``allowed_formats`` applies, here because a format is
    known only once identified: files outside it are a ``validation`` warning
    event, or reject the SIP as validation does (the identification is still
    recorded, so the PREMIS trail says how the formats were found).
    """
    from preservation.identify import IdentificationPool
    from preservation.rules import format_problems, rules_for

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.STAGED:
            return
        tenant_id, sip_name = sip.tenant_id, sip.name
        listed = service.list_files(s, sip_id=sip_id)
        files = [(f.id, f.aip_path or "") for f in listed]
        names = {f.id: f.original_name for f in listed}
    root = aip_dir(ctx, sip_id)
    progress("identify", 0, len(files))
    # One pool per process for its whole life: signatures load once per worker.
    pool = ctx.cache.get("identify_pool")
    if pool is None:
        pool = ctx.cache["identify_pool"] = IdentificationPool(
            ctx.settings.identify_engine,
            workers=ctx.settings.identify_workers or None,
            timeout=ctx.settings.identify_timeout,
        )
    results = pool.identify(
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
        service.record_identifications(s, updates)
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


# -- stage 5: describe ------------------------------------------------------------------------


def describe(ctx: Context, sip_id: str) -> None:
    """Give the SIP its AIP id and write the version's METS + PREMIS documents."""
    from preservation.aip import AIPLayout, copy_schemas, copy_submission
    from preservation.metadata.description import describe_package

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.IDENTIFIED:
            return
        aip = service.create_aip(s, sip)
        tenant = s.get(Tenant, sip.tenant_id)
        files = service.list_files(s, sip_id=sip_id)
        # The METS must tell its own ingest: the event is recorded here, in the
        # transaction that writes it, and completed by a second at commit.
        service.record_event(
            s,
            tenant_id=sip.tenant_id,
            sip_id=sip_id,
            aip_id=aip.id,
            type="ingestion",
            outcome="success",
            detail=f"ingestion started: bag {sip.name!r} accepted as AIP {aip.id} version 1",
            outcome_detail="the AIP is active once both tape copies are verified",
            agents={"executing program": [SOFTWARE_AGENT]},
        )
        events = service.list_events(s, sip_id=sip_id)
        agents = service.agents_by_identifier(s)
        layout = AIPLayout(aip_dir(ctx, sip_id))
        layout.create()
        copy_submission(sip_bag_dir(ctx, sip), layout)
        copy_schemas(ctx.settings.schemas_dir, layout)
        describe_package(
            layout,
            aip_id=aip.id,
            version=1,
            tenant=sip.tenant_id,
            organisation=tenant.name if tenant else sip.tenant_id,
            bag_info=sip.bag_info,
            files=files,
            events=events,
            agents=agents,
        )
        failpoint("describe")
        service.ensure_agent(
            s, SOFTWARE_AGENT, name="preservation", type="software", version=__version__
        )
        service.set_sip_state(s, sip, SIPState.DESCRIBED)


# -- stage 6: package --------------------------------------------------------------------------


def package(ctx: Context, sip_id: str) -> None:
    """Make the described AIP folder a BagIt bag and serialise it as one pax tar."""
    from preservation.aip import (
        AIPLayout,
        serialise_aip,
        write_aip_bag,
    )
    from preservation.versions import bag_contents

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.DESCRIBED:
            return
        aip = service.get_aip(s, sip.aip_id or "")
        version = service.create_aip_version(s, aip, 1)
        known = {
            f.aip_path: {"sha256": f.sha256, "sha512": f.sha512}
            for f in service.list_files(s, sip_id=sip_id)
            if f.aip_path
        }
        tenant_id, name, bag_info, aip_id = sip.tenant_id, sip.name, sip.bag_info, aip.id
        version_id = version.id
    layout = AIPLayout(aip_dir(ctx, sip_id))
    summary = write_aip_bag(
        layout.root,
        aip_id=aip_id,
        version=1,
        tenant=tenant_id,
        source_bag_name=name,
        bag_info=bag_info,
        known_digests=known,
        processes=2,
    )
    tar_path = staging_dir(ctx, sip_id) / f"{aip_id}.v1.tar"
    tar = serialise_aip(
        layout.root,
        tar_path,
        arcname=f"{aip_id}.v1",
        expected_sha256={path: d["sha256"] for path, d in known.items() if d["sha256"]},
    )
    failpoint("package")
    # What the next version's METS points to (preservation/versions.py), kept
    # while the folder still exists: no tape is read to make a new version.
    contents = bag_contents(layout.root, 1, summary.digests)
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        version = s.get_one(AIPVersion, version_id)
        version.tar_size = tar.size
        version.tar_sha256 = tar.sha256
        version.staging_path = str(tar.path)
        service.assign_files_to_version(s, sip_id, version_id)
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            aip_id=aip_id,
            type="creation",
            outcome="success",
            detail=f"AIP version 1 packaged as a POSIX pax tar ({summary.payload_files} files)",
            outcome_detail=f"sha256 {tar.sha256}, {tar.size} bytes",
            agents={"executing program": [SOFTWARE_AGENT]},
            objects={"version": 1, "contents": contents},
        )
        service.set_sip_state(s, sip, SIPState.PACKAGED)
    # The tar is the package now; the unpacked folder would only double the staging space.
    shutil.rmtree(layout.root, ignore_errors=True)


# -- stage 7 + 8: store, commit ------------------------------------------------------------


def _version_of(ctx: Context, sip_id: str) -> int | None:
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state in (SIPState.PACKAGED, SIPState.STORED) and sip.aip_id:
            return service.create_aip_version(s, service.get_aip(s, sip.aip_id), 1).id
    return None


def store(ctx: Context, sip_id: str, site: str) -> None:
    """Write the AIP tar to one site and verify it; the two sites run independently."""
    from preservation.storage.service import store_version

    version_id = _version_of(ctx, sip_id)
    if version_id is not None:
        store_version(ctx, version_id, site)


def store_all(ctx: Context, sip_id: str) -> None:
    """The embedded default writes every site at once, as the per-site queues do."""
    from preservation.storage.service import on_every_site

    on_every_site(ctx, lambda site: store(ctx, sip_id, site))


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
    version_id = _version_of(ctx, sip_id)
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
    if _inside(source, ctx.settings.ingest_dir):
        hotfolder.release(source, keep=rules_for(ctx.settings, tenant).keep_sips)
    shutil.rmtree(staging_dir(ctx, sip_id), ignore_errors=True)


# -- rejection -------------------------------------------------------------------------------


def _problem_from_error(err: PreservationError) -> dict[str, Any]:
    problems = getattr(err, "problems", None)
    if problems:
        first = problems[0]
        return first.to_dict() if hasattr(first, "to_dict") else dict(first)
    return {
        "severity": "error",
        "file": err.path,
        "rule": err.context.get("rule", type(err).__name__),
        "message": err.message,
    }


def reject(
    ctx: Context,
    sip_id: str,
    problems: list[dict[str, Any]],
    *,
    stage_name: str,
    rejected_root: Path | None = None,
    event_type: str = "validation",
    event_detail: str | None = None,
    event_objects: dict[str, Any] | None = None,
) -> Path:
    """Put the bag aside with a report saying every problem; the bytes stay as they came.

    A bag inside the data root (a hot folder) is moved with one rename; a bag
    elsewhere (the CLI's argument) is left where it is and copied, so the
    submitter's own copy is never touched. The report's ``source`` is the path
    the submitter gave or dropped the bag at; for a hot-folder bag the claim
    folder it was read from is ``claimed_as``.
    """
    from preservation.hotfolder import dropped_path

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        source = Path(sip.source_path)
        from_hot_folder = _inside(source, ctx.settings.ingest_dir)
        dropped = dropped_path(source) if from_hot_folder else None
        root = rejected_root or (
            ctx.settings.ingest_dir / sip.tenant_id / "rejected"
            if from_hot_folder
            else ctx.settings.rejected_dir
        )
        root.mkdir(parents=True, exist_ok=True)
        target = root / sip.name
        if target.exists():
            target = root / f"{sip.name}.{time.strftime('%Y%m%dT%H%M%S')}.{sip_id[:8]}"
        target.mkdir(parents=True)
        report = {
            "sip_id": sip_id,
            "tenant": sip.tenant_id,
            "bag": sip.name,
            "source": str(dropped or source),
            **({"claimed_as": str(source)} if dropped else {}),
            "stage": stage_name,
            "valid": False,
            "problems": problems,
        }
        (target / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        (target / "report.txt").write_text(_report_text(report))
        if source.exists() or source.is_symlink():
            _set_aside(source, target / source.name, move=_inside(source, ctx.settings.home_dir))
            if from_hot_folder and source.parent.parent.name == ".claimed":
                with contextlib.suppress(OSError):
                    source.parent.rmdir()  # the now empty claim folder
        service.record_event(
            s,
            tenant_id=sip.tenant_id,
            sip_id=sip_id,
            type=event_type,
            outcome="failure" if event_type == "validation" else "success",
            detail=event_detail or f"rejected at stage {stage_name}",
            outcome_detail=json.dumps(problems[:50], ensure_ascii=False),
            agents={"executing program": [SOFTWARE_AGENT]},
            objects=event_objects,
        )
        service.set_sip_state(
            s,
            sip,
            SIPState.REJECTED,
            stage=stage_name,
            error=f"{len(problems)} problem(s); report in {target}",
        )
    shutil.rmtree(staging_dir(ctx, sip_id), ignore_errors=True)
    return target


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(root)
    except ValueError:
        return False
    return True


def _set_aside(source: Path, target: Path, *, move: bool) -> None:
    if move:
        os.rename(source, target)
        return
    if source.is_file() and not source.is_symlink():
        shutil.copy2(source, target)
        return
    # Copy without following links or opening special files: a FIFO would block.
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        rel = Path(dirpath).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            src = Path(dirpath) / name
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), target / rel / name)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(src, target / rel / name, follow_symlinks=False)


def _report_text(report: dict[str, Any]) -> str:
    lines = [
        f"Bag {report['bag']!r} (tenant {report['tenant']}) was rejected at stage "
        f"{report['stage']}.",
        f"Source: {report['source']}",
        f"{len(report['problems'])} problem(s):",
    ]
    for p in report["problems"]:
        where = p.get("file") or "(bag)"
        section = f" [RFC 8493 §{p['rfc8493']}]" if p.get("rfc8493") else ""
        lines.append(
            f"  {p.get('severity', 'error').upper()}: {where}: {p.get('rule')}: "
            f"{p.get('message')}{section}"
        )
    return "\n".join(lines) + "\n"


# -- the whole ingest, in-process -------------------------------------------------------------

STAGES: list[tuple[str, Callable[..., None]]] = [
    ("validate", validate),
    ("identify", identify),
    ("describe", describe),
    ("package", package),
    ("store_all", store_all),
    ("commit", commit),
]
STAGE_FUNCTIONS: dict[str, Callable[..., None]] = dict(STAGES) | {
    "store": store,
    "store_all": store_all,
}


def _log_stage(sip_id: str, stage: str, started: float, outcome: str, **extra: Any) -> None:
    """One structured line per stage per SIP (JSON, for the log shipper)."""
    record = {
        "sip": sip_id,
        "stage": stage,
        "outcome": outcome,
        "seconds": round(time.perf_counter() - started, 4),
        **extra,
    }
    log.info(json.dumps(record, ensure_ascii=False))


def run_stage(ctx: Context, name: str, sip_id: str, *args: Any) -> None:
    """Run one stage by name under the SIP's lease, recording where a failure happened.

    The lease (preservation/lease.py) keeps a duplicate message from running
    the stage beside the first; one site's tape write has its own, so the two
    sites still write in parallel.
    """
    from preservation.lease import hold_sip_lease
    from preservation.monitoring import record_stage_run

    part = f"store:{args[0]}" if name == "store" and args else ""
    started = time.perf_counter()
    try:
        with hold_sip_lease(
            ctx.sessions,
            sip_id,
            seconds=ctx.settings.lease_seconds,
            part=part,
            stage=f"{part or name} (running)",  # `status` shows the stage at work
        ):
            STAGE_FUNCTIONS[name](ctx, sip_id, *args)
        _clear_error_of_earlier_stage(ctx, sip_id, name, part)
        _log_stage(sip_id, name, started, "done")
        record_stage_run(ctx, name, time.perf_counter() - started, "done")
    except InvalidSIPError:
        _log_stage(sip_id, name, started, "rejected")
        record_stage_run(ctx, name, time.perf_counter() - started, "rejected")
        raise
    except SIPBusyError:
        _log_stage(sip_id, name, started, "busy")
        raise
    except Exception as err:
        _log_stage(sip_id, name, started, "failed", error=f"{type(err).__name__}: {err}")
        record_stage_run(ctx, name, time.perf_counter() - started, "failed")
        with session_scope(ctx.sessions) as s:
            sip = service.get_sip(s, sip_id)
            sip.stage = part or name
            # Prefixed with the stage, which `stage` itself does not keep (the next
            # runner's "(running)" overwrites it): see _clear_error_of_earlier_stage.
            sip.last_error = f"{part or name}: {type(err).__name__}: {err}"
            sip.attempts = (sip.attempts or 0) + 1
        raise


_STAGE_ORDER = {"validate": 0, "identify": 1, "describe": 2, "package": 3, "store": 4}
_STAGE_ORDER |= {"store_all": 4, "commit": 5}


def _clear_error_of_earlier_stage(ctx: Context, sip_id: str, name: str, part: str) -> None:
    """A stage that succeeds makes an earlier stage's error history, not news.

    Only errors of this stage or earlier ones are cleared: one site's store
    succeeding says nothing about the other site's failure (``store:site-a``
    is not ``store:site-b``), which stays until that site's store or the
    commit succeeds.
    """
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if not sip.last_error:
            return
        failed = sip.last_error.split(": ", 1)[0]
        base = failed.split(":", 1)[0]
        if (
            failed == (part or name)
            or _STAGE_ORDER.get(base, -1) < _STAGE_ORDER[name]
            or (name == "store_all" and base == "store")
        ):
            sip.last_error = None


def open_sites(ctx: Context) -> None:
    """Open the tape sites before a SIP is received, when this process will write them.

    A site that cannot be used as it is (written cartridges beside an empty
    catalogue: ``DataRootError``) then refuses the ingest at the door, rather
    than leave a SIP stuck short of its store stage. A site that is down is
    not refused here: the SIP waits for it, pending.
    """
    from preservation.storage.sites import get_site

    for site in ctx.settings.sites:
        get_site(ctx, site)


def run_ingest(
    ctx: Context,
    path: Path,
    *,
    tenant: str,
    progress: Progress = _no_progress,
    wait_seconds: float | None = None,
) -> IngestResult:
    """The embedded default: every stage in this process, one after the other."""
    t0 = time.perf_counter()
    open_sites(ctx)
    sip_id = receive(ctx, path, tenant=tenant)
    result = run_sip(ctx, sip_id, progress=progress, wait_seconds=wait_seconds)
    result.timings["receive"] = time.perf_counter() - t0 - result.timings["total"]
    result.timings["total"] = time.perf_counter() - t0
    return result


def run_sip(
    ctx: Context,
    sip_id: str,
    *,
    progress: Progress = _no_progress,
    wait_seconds: float | None = None,
) -> IngestResult:
    """Every remaining stage of a SIP, in this process.

    A transient failure (a site down, a drive busy) is retried with backoff
    for up to ``wait_seconds`` (default: the ``site_wait_seconds`` setting),
    the waits shown through ``progress`` as ``("waiting", seconds, 0)``. If
    it outlasts that, the SIP is left where it stands, pending, and the error
    is raised: an AIP with one copy is never called safe. Running this again
    (``preservation resume``, ``watch``, ``repair``) finishes it.
    """
    budget = ctx.settings.site_wait_seconds if wait_seconds is None else wait_seconds
    t0 = time.perf_counter()
    result = IngestResult(sip_id=sip_id, state=SIPState.RECEIVED.value)
    # Held from the first stage to the last, waits for a site included: this
    # runner is alive all along, and `sip discard` must refuse rather than end
    # the SIP under it between two attempts.
    from preservation.lease import hold_sip_lease

    with hold_sip_lease(ctx.sessions, sip_id, seconds=ctx.settings.lease_seconds, part="run"):
        for name, _fn in STAGES:
            t = time.perf_counter()
            delay = 1.0
            try:
                while True:
                    try:
                        if name in {"validate", "identify"}:
                            run_stage(ctx, name, sip_id, progress)
                        else:
                            run_stage(ctx, name, sip_id)
                        break
                    except TransientError as err:
                        waited = time.perf_counter() - t
                        if waited + delay > budget:
                            raise
                        log.warning(
                            json.dumps(
                                {
                                    "sip": sip_id,
                                    "stage": name,
                                    "waiting_s": delay,
                                    "because": err.message,
                                }
                            )
                        )
                        progress("waiting", int(delay), 0)
                        time.sleep(delay)
                        delay = min(delay * 2, 60.0)
            except InvalidSIPError as err:
                result.problems = [
                    p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in err.problems
                ] or [_problem_from_error(err)]
                break
            finally:
                result.timings[name] = time.perf_counter() - t
    final = result_of(ctx, sip_id)
    final.problems = result.problems
    final.timings = result.timings
    final.timings["total"] = time.perf_counter() - t0
    return final


def pending_sips(ctx: Context, tenant: str | None = None) -> list[str]:
    """SIPs neither committed nor rejected: in flight, or waiting for a site."""
    with session_scope(ctx.sessions) as s:
        return [
            sip.id
            for sip in service.list_sips(s, tenant_id=tenant, limit=100_000)
            if sip.state not in (SIPState.COMMITTED, SIPState.REJECTED)
        ]


def resume(
    ctx: Context, sip_ids: list[str] | None = None, *, wait_seconds: float = 0.0
) -> list[IngestResult]:
    """Run the remaining stages of the given (default: every pending) SIP, in this process.

    Each stage finds its work done or redoes it, so resuming a SIP that
    another runner is working on only waits for its lease. A SIP still
    waiting for a site stays pending; its error is in ``status``.
    """
    out = []
    for sip_id in sip_ids if sip_ids is not None else pending_sips(ctx):
        try:
            out.append(run_sip(ctx, sip_id, wait_seconds=wait_seconds))
        except TransientError as err:
            result = result_of(ctx, sip_id)
            result.error = err.message
            out.append(result)
        except Exception as err:  # noqa: BLE001 - one broken SIP must not stop the others
            log.exception("resume: SIP %s failed", sip_id)
            try:
                result = result_of(ctx, sip_id)
            except PreservationError:
                result = IngestResult(sip_id=sip_id, state="unknown")
            message = err.message if isinstance(err, PreservationError) else str(err)
            result.error = f"{type(err).__name__}: {message}"
            out.append(result)
    return out


TERMINAL_STATES = frozenset({SIPState.COMMITTED.value, SIPState.REJECTED.value})


def result_of(ctx: Context, sip_id: str) -> IngestResult:
    """Where a SIP stands, from the catalogue (for callers that did not run it)."""
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        result = IngestResult(sip_id=sip_id, state=sip.state.value, aip_id=sip.aip_id)
        if sip.state is SIPState.REJECTED:
            result.rejected_to = (sip.last_error or "").rsplit("report in ", 1)[-1]
            report = Path(result.rejected_to) / "report.json"
            if report.is_file():
                result.problems = json.loads(report.read_text()).get("problems", [])
        result.warnings = _validation_warnings(ctx, sip_id)
        return result
