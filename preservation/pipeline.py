"""Ingest as plain, idempotent stage functions of a SIP id.

Each stage reads its inputs from the catalogue and the staging area, does its
work, and commits its result and its PREMIS events in one transaction before
the next stage starts. Run again after a crash, a stage either finds its work
done (and returns) or redoes it from scratch: partial output is never trusted.
The CLI runs the stages in-process; Celery tasks call the same functions.

Staging area of one SIP (``<home>/staging/<sip-id>/``)::

    unpacked/                  a serialised bag, unpacked safely
    aip/                       the AIP version 1 bag being built (DESIGN §4)
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
from pathlib import Path
from typing import Any

from sqlalchemy import update

from preservation import __version__
from preservation.catalog import SIP, AIPVersion, File, SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import InvalidSIPError, PreservationError

__all__ = [
    "STAGES",
    "IngestResult",
    "receive",
    "reject",
    "run_ingest",
    "sip_bag_dir",
    "stage",
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
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sip_id": self.sip_id,
            "state": self.state,
            "aip_id": self.aip_id,
            "rejected_to": self.rejected_to,
            "problems": self.problems,
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


def receive(ctx: Context, path: Path, *, tenant: str) -> str:
    """Register a submission; nothing is read or moved yet."""
    path = Path(os.path.abspath(path))
    with session_scope(ctx.sessions) as s:
        sip = service.create_sip(s, tenant_id=tenant, name=bag_name(path), source_path=str(path))
        return sip.id


# -- stage 2 + 3: validate, stage ----------------------------------------------------------


def validate(ctx: Context, sip_id: str) -> None:
    """Strict structural validation: every rule that needs no payload read.

    Digests are verified by `stage` in the same read that copies the bytes, so
    each payload byte is read once on the ingest path.
    """
    from preservation.sip import validate_bag

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.RECEIVED:
            return
        tenant_id = sip.tenant_id
    try:
        bag = sip_bag_dir(ctx, sip)
        report = validate_bag(bag, processes=2, check_digests=False)
    except InvalidSIPError as err:
        reject(ctx, sip_id, [_problem_from_error(err)], stage_name="validate")
        raise
    if not report.valid:
        problems = [p.to_dict() for p in report.problems]
        reject(ctx, sip_id, problems, stage_name="validate")
        raise InvalidSIPError(
            f"{sip.name}: {len(report.errors)} problem(s) found", problems=problems, sip_id=sip_id
        )
    from preservation.sip import payload_oxum, read_bag_info

    info = read_bag_info(bag)
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        sip.bag_info = info
        sip.external_identifier = (info.get("External-Identifier") or [None])[0]
        sip.payload_oxum = payload_oxum(bag)
        warnings = [p.to_dict() for p in report.problems if p.severity == "warning"]
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            type="validation",
            outcome="success" if not warnings else "warning",
            detail="BagIt RFC 8493 strict structure, path safety and tenant rules",
            outcome_detail=json.dumps(warnings) if warnings else "",
            agents={"executing program": [SOFTWARE_AGENT]},
        )
        service.set_sip_state(s, sip, SIPState.VALIDATED)


def stage(ctx: Context, sip_id: str, progress: Progress = _no_progress) -> None:
    """Copy the payload into the AIP being built, verifying and hashing in one read."""
    from preservation.sip import stage_payload

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.VALIDATED:
            return
        tenant_id = sip.tenant_id
    bag = sip_bag_dir(ctx, sip)
    dest = aip_dir(ctx, sip_id) / "data" / "representations" / "rep1"
    shutil.rmtree(aip_dir(ctx, sip_id), ignore_errors=True)  # a crashed run's leftovers
    dest.mkdir(parents=True)
    try:
        staged = stage_payload(bag, dest, processes=2, progress=progress)
    except PreservationError as err:
        reject(ctx, sip_id, [_problem_from_error(err)], stage_name="stage")
        raise
    rows = [
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
        sip = service.get_sip(s, sip_id)
        service.add_staged_files(s, sip_id, rows)
        sip.file_count = len(rows)
        sip.payload_bytes = sum(r["size"] for r in rows)
        agents = {"executing program": [SOFTWARE_AGENT]}
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            type="fixity check",
            outcome="success",
            detail=f"payload verified against the bag's manifests ({', '.join(algorithms)})",
            agents=agents,
            objects={"files": len(rows)},
        )
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            type="message digest calculation",
            outcome="success",
            detail="sha256 and sha512 computed while staging",
            agents=agents,
            objects={"files": len(rows)},
        )
        service.set_sip_state(s, sip, SIPState.STAGED)


# -- stage 6: package --------------------------------------------------------------------------


def package(ctx: Context, sip_id: str) -> None:
    """Make the described AIP folder a BagIt bag and serialise it as one pax tar."""
    from preservation.aip import (
        AIPLayout,
        copy_schemas,
        copy_submission,
        serialise_aip,
        write_aip_bag,
    )

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
    layout.create()
    copy_submission(sip_bag_dir(ctx, sip), layout)
    copy_schemas(ctx.settings.schemas_dir, layout)
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
    tar = serialise_aip(layout.root, tar_path, arcname=f"{aip_id}.v1")
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        version = s.get(AIPVersion, version_id)
        assert version is not None
        version.tar_size = tar.size
        version.tar_sha256 = tar.sha256
        version.staging_path = str(tar.path)
        s.execute(update(File).where(File.sip_id == sip_id).values(aip_version_id=version_id))
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
        )
        service.set_sip_state(s, sip, SIPState.PACKAGED)
    # The tar is the package now; the unpacked folder would only double the staging space.
    shutil.rmtree(layout.root, ignore_errors=True)


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
) -> Path:
    """Put the bag aside with a report saying every problem; the bytes stay as they came.

    A bag inside the data root (a hot folder) is moved with one rename; a bag
    elsewhere (the CLI's argument) is left where it is and copied, so the
    submitter's own copy is never touched.
    """
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        source = Path(sip.source_path)
        from_hot_folder = _inside(source, ctx.settings.ingest_dir)
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
            "source": str(source),
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
            type="validation",
            outcome="failure",
            detail=f"rejected at stage {stage_name}",
            outcome_detail=json.dumps(problems[:50], ensure_ascii=False),
            agents={"executing program": [SOFTWARE_AGENT]},
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
        section = f" [RFC 8493 §{p['section']}]" if p.get("section") else ""
        lines.append(
            f"  {p.get('severity', 'error').upper()}: {where}: {p.get('rule')}: "
            f"{p.get('message')}{section}"
        )
    return "\n".join(lines) + "\n"


# -- the whole ingest, in-process -------------------------------------------------------------

STAGES: list[tuple[str, Callable[..., None]]] = [
    ("validate", validate),
    ("stage", stage),
]


def run_ingest(
    ctx: Context, path: Path, *, tenant: str, progress: Progress = _no_progress
) -> IngestResult:
    """The embedded default: every stage in this process, one after the other."""
    t0 = time.perf_counter()
    sip_id = receive(ctx, path, tenant=tenant)
    result = IngestResult(sip_id=sip_id, state=SIPState.RECEIVED.value)
    result.timings["receive"] = time.perf_counter() - t0
    for name, fn in STAGES:
        t = time.perf_counter()
        try:
            if name in {"stage", "identify"}:
                fn(ctx, sip_id, progress=progress)
            else:
                fn(ctx, sip_id)
        except InvalidSIPError as err:
            result.problems = [
                p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in err.problems
            ] or [_problem_from_error(err)]
            break
        except PreservationError as err:
            with session_scope(ctx.sessions) as s:
                sip = service.get_sip(s, sip_id)
                if sip.state is not SIPState.REJECTED:
                    service.set_sip_state(s, sip, sip.state, stage=name, error=str(err))
            raise
        finally:
            result.timings[name] = time.perf_counter() - t
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        result.state = sip.state.value
        result.aip_id = sip.aip_id
        if sip.state is SIPState.REJECTED:
            result.rejected_to = (sip.last_error or "").rsplit("report in ", 1)[-1]
    result.timings["total"] = time.perf_counter() - t0
    return result
