"""The characterise stage: what each file holds, and whether it is what its format says.

After identification every file's PRONOM id picks, from the characterisation
registry (preservation/characterise/registry.py), the tools that measure it
(MediaInfo, ExifTool, ffprobe, SIARD metadata) and the validators that check it
(qpdf, jpylyzer, Pillow, ffmpeg, XML well-formedness, MediaConch, SIARD). Each tool runs
once per batch of files, never once per file; the external tools and the
in-process validators run at the same time.

What comes out:

- each tool's full output, one compact JSON document per tool per batch, in
  the AIP under ``data/metadata/preservation/characterisation/``;
- a few significant properties per file (``files.properties``), which the
  METS carries as PREMIS ``objectCharacteristicsExtension``;
- each validator's verdict per file (``files.validation``, ``files.valid``),
  which the METS carries as one PREMIS ``validation`` event per file;
- in the tenant's event chain, one ``metadata extraction`` event per tool and
  one ``validation`` event per validator, with the digest of the per-file
  results so that the chain vouches for them too.

A malformed file is a finding, not a rejection: the tenant rule
``invalid_formats`` decides (``warn``, the default, or ``reject``). A tool
that is not installed is a warning on the files it would have looked at, and
the ingest goes on: characterisation adds knowledge, it is not a gate.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from preservation import SOFTWARE_AGENT
from preservation.catalog import SIPState, service
from preservation.catalog.database import session_scope
from preservation.context import Context
from preservation.errors import InvalidSIPError
from preservation.failpoints import failpoint
from preservation.ingest.reject import reject
from preservation.ingest.staging import Progress, aip_dir, no_progress

#: Where the tools' outputs go, relative to the AIP's ``data/``.
CHARACTERISATION_DIR = "metadata/preservation/characterisation"
#: At most this many files are listed in one chained event's outcome detail.
_LISTED = 1000


def registry(ctx: Context) -> Any:
    from preservation.characterise import load_registry

    found = ctx.cache.get("characterisation_registry")
    if found is None:
        found = ctx.cache["characterisation_registry"] = load_registry(
            ctx.settings.characterisation_registry
        )
    return found


def toolbox(ctx: Context) -> Any:
    """One set of tool processes per process: a worker keeps its ExifTool running."""
    from preservation.characterise import ToolBox

    found = ctx.cache.get("characterisation_tools")
    if found is None:
        found = ctx.cache["characterisation_tools"] = ToolBox()
    return found


def characterise(ctx: Context, sip_id: str, progress: Progress = no_progress) -> None:
    """Measure and validate every identified file; record the results; apply the tenant's rule."""
    from preservation.characterise import FileToCharacterise
    from preservation.characterise import characterise as run_tools
    from preservation.characterise.validation import validate_files
    from preservation.rules import rules_for

    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        if sip.state is not SIPState.IDENTIFIED:
            return
        tenant_id, sip_name = sip.tenant_id, sip.name
        rows = [
            (f.id, f.original_name, f.aip_path or "", f.puid)
            for f in service.list_files(s, sip_id=sip_id)
        ]
    root = aip_dir(ctx, sip_id)
    reg = registry(ctx)
    out_dir = root / "data" / CHARACTERISATION_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):  # a crashed run's documents are redone
        stale.unlink()

    by_validator: dict[str, list[Path]] = defaultdict(list)
    wanted: list[Any] = []
    tool_files: dict[str, int] = defaultdict(int)
    for file_id, _, aip_path, puid in rows:
        entry = reg.entry_for(puid)
        if entry is None:
            continue
        path = root / aip_path
        if entry.characterise:
            wanted.append(FileToCharacterise(key=file_id, path=path, puid=puid))
            for tool in entry.characterise:
                tool_files[tool] += 1
        for name in entry.validate:
            by_validator[name].append(path)
    total = len(wanted) + sum(len(p) for p in by_validator.values())
    progress("characterise", 0, total)

    # The external tools in a thread, the in-process validators here: both at once.
    outcome: dict[str, Any] = {}

    def tools() -> None:
        try:
            outcome["result"] = run_tools(
                wanted,
                registry=reg,
                out_dir=out_dir,
                tools=toolbox(ctx),
                batch_size=ctx.settings.characterisation_batch_size,
                relative_to=root / "data" / "representations",
            )
        except BaseException as err:  # noqa: BLE001 - re-raised in the stage's thread
            outcome["error"] = err

    worker = threading.Thread(target=tools, name=f"characterise-{sip_id[:8]}")
    worker.start()
    findings = validate_files(by_validator) if by_validator else {}
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    progress("characterise", total, total)
    failpoint("characterise")

    updates: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    per_validator: dict[str, dict[str, Any]] = {}
    for file_id, name, aip_path, puid in rows:
        path = root / aip_path
        verdicts = [
            {"tool": f.tool, "version": f.tool_version, "valid": f.valid, "message": f.message}
            for f in findings.get(path, [])
        ]
        for f in findings.get(path, []):
            seen = per_validator.setdefault(
                f.tool, {"version": f.tool_version, "results": [], "invalid": []}
            )
            seen["results"].append([name, f.valid, f.message])
            if f.valid is False:
                problem = {
                    "file": name,
                    "rule": "invalid-format",
                    "message": f"{f.tool} {f.tool_version}: {f.message}",
                    "puid": puid,
                    "tool": f.tool,
                }
                seen["invalid"].append(problem)
                invalid.append(problem)
        properties = result.properties.get(file_id)
        if not (verdicts or properties):
            continue
        valid = (
            False
            if any(v["valid"] is False for v in verdicts)
            else True
            if any(v["valid"] is True for v in verdicts)
            else None
        )
        updates.append(
            {
                "id": file_id,
                "properties": dict(properties) if properties else None,
                "valid": valid,
                "validation": verdicts or None,
            }
        )
    rules = rules_for(ctx.settings, tenant_id)
    refused = bool(invalid) and rules.invalid_formats == "reject"
    documents = [p.relative_to(root / "data").as_posix() for p in result.documents]
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        service.update_files(s, updates)
        names = {file_id: name for file_id, name, _, _ in rows}
        _record_tool_events(s, tenant_id, sip_id, result, names, tool_files, documents)
        for tool, seen in sorted(per_validator.items()):
            _record_validation_event(s, tenant_id, sip_id, tool, seen, refused=refused)
        if not refused:
            service.set_sip_state(s, sip, SIPState.CHARACTERISED)
    if refused:
        problems = [{"severity": "error", **p} for p in invalid]
        reject(
            ctx,
            sip_id,
            problems,
            stage_name="characterise",
            event_detail=f"tenant {tenant_id}'s rule invalid_formats: reject; "
            f"{len(problems)} malformed file(s)",
        )
        raise InvalidSIPError(
            f"{sip_name}: {len(problems)} malformed file(s): "
            + ", ".join(f"{p['file']} ({p['tool']})" for p in problems[:5]),
            problems=problems,
            sip_id=sip_id,
        )


def _record_tool_events(
    s: Any,
    tenant_id: str,
    sip_id: str,
    result: Any,
    names: dict[Any, str],
    tool_files: dict[str, int],
    documents: list[str],
) -> None:
    """One ``metadata extraction`` event per tool that ran, naming its output documents."""
    failed: dict[str, list[str]] = defaultdict(list)
    for key, messages in result.tool_errors.items():
        for message in messages:
            tool = message.split(":", 1)[0]
            failed[tool].append(f"{names.get(key, key)}: {message}")
    for tool, version in sorted(result.tools.items()):
        identifier = f"{tool} {version}"
        service.ensure_agent(s, identifier, name=tool, type="software", version=version)
        own = [d for d in documents if Path(d).name.startswith(f"{tool}-")]
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            type="metadata extraction",
            outcome="warning" if failed.get(tool) else "success",
            detail=f"characterised with {identifier}, {len(own)} batch(es); "
            f"output in {', '.join(own)}",
            outcome_detail="; ".join(failed.get(tool, [])[:50]),
            agents={"executing program": [identifier]},
            objects={"files": tool_files.get(tool, 0), "documents": own},
        )
    for tool, messages in sorted(failed.items()):
        if tool in result.tools:
            continue
        # A tool that never ran (not installed): the files it should have measured say so.
        service.record_event(
            s,
            tenant_id=tenant_id,
            sip_id=sip_id,
            type="metadata extraction",
            outcome="warning",
            detail=f"{tool} did not run: {len(messages)} file(s) not characterised by it",
            outcome_detail="; ".join(messages[:50]),
            agents={"executing program": [SOFTWARE_AGENT]},
            objects={"files": len(messages)},
        )


def _record_validation_event(
    s: Any, tenant_id: str, sip_id: str, tool: str, seen: dict[str, Any], *, refused: bool
) -> None:
    """One ``validation`` event per validator; its per-file results are in the METS.

    The digest of those results goes into the chained event, so the per-file
    verdicts written later into the METS are vouched for by the chain too.
    """
    identifier = f"{tool} {seen['version']}"
    service.ensure_agent(s, identifier, name=tool, type="software", version=seen["version"])
    results = json.dumps(seen["results"], ensure_ascii=False, separators=(",", ":"))
    bad = seen["invalid"]
    unchecked = sum(1 for _, valid, _ in seen["results"] if valid is None)
    listed = [{"severity": "error" if refused else "warning", **p} for p in bad[:_LISTED]]
    service.record_event(
        s,
        tenant_id=tenant_id,
        sip_id=sip_id,
        type="validation",
        outcome=("failure" if refused else "warning") if bad else "success",
        detail=f"format validation with {identifier}: {len(seen['results'])} file(s) checked, "
        f"{len(bad)} malformed" + (f", {unchecked} not checked" if unchecked else ""),
        outcome_detail=json.dumps(listed, ensure_ascii=False) if bad else "",
        agents={"executing program": [identifier]},
        objects={
            "files": len(seen["results"]),
            "invalid": len(bad),
            "results_sha256": hashlib.sha256(results.encode()).hexdigest(),
        },
    )
