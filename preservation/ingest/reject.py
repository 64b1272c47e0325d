"""Rejection: a bag put aside with a report saying every problem; its bytes stay as they came."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from preservation import SOFTWARE_AGENT
from preservation.catalog import SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import (
    PreservationError,
)
from preservation.ingest.staging import (
    staging_dir,
)

# -- rejection -------------------------------------------------------------------------------


def problem_from_error(err: PreservationError) -> dict[str, Any]:
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
    event_outcome: str | None = None,
    event_agents: dict[str, list[str]] | None = None,
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
        from_hot_folder = inside(source, ctx.settings.ingest_dir)
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
            _set_aside(source, target / source.name, move=inside(source, ctx.settings.home_dir))
            if from_hot_folder and source.parent.parent.name == ".claimed":
                with contextlib.suppress(OSError):
                    source.parent.rmdir()  # the now empty claim folder
        service.record_event(
            s,
            tenant_id=sip.tenant_id,
            sip_id=sip_id,
            type=event_type,
            outcome=event_outcome or ("failure" if event_type == "validation" else "success"),
            detail=event_detail or f"rejected at stage {stage_name}",
            outcome_detail=json.dumps(problems[:50], ensure_ascii=False),
            agents=event_agents or {"executing program": [SOFTWARE_AGENT]},
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


def inside(path: Path, root: Path) -> bool:
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
