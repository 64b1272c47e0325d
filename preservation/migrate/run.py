"""Carry out a migration request, one AIP at a time: recall, convert, verify, version.

Per AIP (one Celery task on the ``migrate`` queue, or in this process on the
embedded default), in steps recorded on its item so progress shows:

1. **recall**: each version tar holding a source is read once from tape
   (whichever site works) and only the sources are taken out of it, each
   checked against its catalogued sha256;
2. **convert**: the policy's tools, several files at once;
3. **verify**: every output re-identified, validated, characterised and
   compared with its source (:mod:`preservation.migrate.verify`);
4. **version**: the accepted outputs become version N+1 (``best-effort``), or
   nothing does when one failed (``all-or-nothing``); failures are recorded
   either way, as PREMIS events and in the request's results;
5. **store** at both sites and **commit**; only then is the new
   representation the AIP's.

A crash anywhere before the version's transaction leaves the AIP as it was
and the item to be run again from the start; after it, running the item
again finishes the stored version. Nothing of the originals is touched.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIPVersion,
    File,
    Migration,
    MigrationFile,
    MigrationItem,
    utcnow,
)
from preservation.context import Context
from preservation.errors import PreservationError, StorageError, TransientError
from preservation.failpoints import failpoint
from preservation.migrate.service import TERMINAL, policy_of

__all__ = ["Progress", "migrate_item", "run_migration", "submit_migration"]

log = logging.getLogger("preservation.migrate")

#: ``progress(step, done, total)``: the CLI draws it, workers record it on the item.
Progress = Callable[[str, int, int], None]
_CHUNK = 1 << 20


def _no_progress(step: str, done: int, total: int) -> None:
    return None


def _set_item(ctx: Context, item_id: int, **values: Any) -> None:
    with session_scope(ctx.sessions) as s:
        item = s.get_one(MigrationItem, item_id)
        for key, value in values.items():
            setattr(item, key, value)


def _finish_pending(ctx: Context, aip_id: str) -> int | None:
    """A migration version an earlier run left stored but not committed: finish it first."""
    from preservation import versions

    with session_scope(ctx.sessions) as s:
        pending = s.scalar(
            select(AIPVersion.id).where(
                AIPVersion.aip_id == aip_id,
                AIPVersion.committed_at.is_(None),
                AIPVersion.reason == "migration",
                AIPVersion.tar_sha256.is_not(None),
            )
        )
    if pending is not None:
        versions.run_version(ctx, pending)
    _mend(ctx, aip_id)
    return pending


def _mend(ctx: Context, aip_id: str) -> None:
    """A migration version committed on tape whose files a crash kept from the catalogue."""
    from preservation.migrate.version import make_current

    with session_scope(ctx.sessions) as s:
        unswitched = list(
            s.scalars(
                select(AIPVersion.id).where(
                    AIPVersion.aip_id == aip_id,
                    AIPVersion.committed_at.is_not(None),
                    AIPVersion.reason == "migration",
                    ~select(File.id).where(File.aip_version_id == AIPVersion.id).exists(),
                )
            )
        )
    for version_id in unswitched:
        make_current(ctx, version_id)


def migrate_item(ctx: Context, item_id: int, progress: Progress = _no_progress) -> str:
    """Run one AIP of a request to its end; returns the item's final state. Idempotent.

    Under a lease of its own: a task redelivered while the first still runs,
    or a ``--resume`` beside a live process, waits (:class:`SIPBusyError`, a
    transient error) instead of rewriting the first one's results.
    """
    from preservation.catalog.models import AIP
    from preservation.lease import hold_sip_lease

    with session_scope(ctx.sessions) as s:
        item = s.get_one(MigrationItem, item_id)
        if item.state in TERMINAL:
            return item.state
        sip_id = s.get_one(AIP, item.aip_id).sip_id
    with hold_sip_lease(
        ctx.sessions, sip_id, seconds=ctx.settings.lease_seconds, part=f"migrate:{item_id}"
    ):
        return _run_item(ctx, item_id, progress)


def _run_item(ctx: Context, item_id: int, progress: Progress) -> str:
    from preservation import versions

    with session_scope(ctx.sessions) as s:
        item = s.get_one(MigrationItem, item_id)
        if item.state in TERMINAL:
            return item.state
        aip_id, migration_id = item.aip_id, item.migration_id
        number = item.version
        m = s.get_one(Migration, migration_id)
        if m.state == "queued":
            m.state, m.started_at = "running", utcnow()
    if number is not None:
        # The version was made: finish storing it, and it is the outcome.
        with session_scope(ctx.sessions) as s:
            # Under the AIP's lock, which the tape commit also takes: either the version
            # is committed already, or the item is marked running before it can be.
            versions._lock_aip(s, aip_id)
            made = s.scalar(
                select(AIPVersion).where(AIPVersion.aip_id == aip_id, AIPVersion.number == number)
            )
            version_id = made.id if made is not None else None
            committed = made is not None and made.committed_at is not None
            if made is not None and not committed:
                item = s.get_one(MigrationItem, item_id)
                item.state, item.step = "running", "store"
        if version_id is not None and committed:
            # Committed by the tape workers already: a redelivered task only settles it.
            from preservation.migrate.version import make_current

            make_current(ctx, version_id)
            return "committed"
        if version_id is not None:
            if ctx.settings.broker_url:  # the tape workers store it, as the first run asked
                versions.submit_version(ctx, version_id)
                return "running"
            versions.run_version(ctx, version_id)
            from preservation.migrate.version import make_current

            make_current(ctx, version_id)
            _settle(ctx, migration_id)
            return "committed"
    from preservation.warmup import warm_up_context

    # fido's workers and ExifTool start now, ready by the time the first outputs are verified.
    warm_up_context(ctx)
    _finish_pending(ctx, aip_id)
    _set_item(ctx, item_id, state="running", step="recall", error=None)
    work = ctx.settings.staging_dir / "migrations" / f"item-{item_id}"
    shutil.rmtree(work, ignore_errors=True)  # a crashed run's leftovers are never trusted
    try:
        state = _migrate(ctx, item_id, work, progress)
    except TransientError:
        _set_item(ctx, item_id, state="queued", step=None)
        raise
    except PreservationError as err:
        _set_item(ctx, item_id, state="failed", step=None, error=err.message)
        _settle(ctx, migration_id)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _settle(ctx, migration_id)
    return state


def _migrate(ctx: Context, item_id: int, work: Path, progress: Progress) -> str:
    from preservation import versions
    from preservation.migrate.version import make_current

    with session_scope(ctx.sessions) as s:
        item = s.get_one(MigrationItem, item_id)
        m = s.get_one(Migration, item.migration_id)
        policy = policy_of(m)
        mode, who, aip_id = m.mode, m.requested_by_label or "curator", item.aip_id
        rows = list(
            s.execute(
                select(MigrationFile, File, AIPVersion.number)
                .join(File, File.id == MigrationFile.source_file_id)
                .join(AIPVersion, AIPVersion.id == File.aip_version_id)
                .where(MigrationFile.item_id == item_id)
                .order_by(MigrationFile.id)
            )
        )
        jobs = [
            {
                "row_id": r.id,
                "file_id": f.id,
                "action": policy.action(r.action_id),
                "aip_path": f.aip_path or "",
                "name": f.original_name,
                "sha256": f.sha256,
                "puid": f.puid,
                "version": number,
                "superseded": f.superseded_in is not None,
            }
            for r, f, number in rows
        ]
        s.execute(
            update(MigrationFile)
            .where(MigrationFile.item_id == item_id)
            .values(state="pending", error=None, checks=None)
        )
        item.files_done = item.files_failed = 0
    skipped = [j["row_id"] for j in jobs if j["superseded"]]
    if skipped:  # migrated by another request meanwhile
        with session_scope(ctx.sessions) as s:
            s.execute(
                update(MigrationFile)
                .where(MigrationFile.id.in_(skipped))
                .values(state="skipped", error="already migrated by an earlier version")
            )
        jobs = [j for j in jobs if not j["superseded"]]
    if not jobs:
        _set_item(ctx, item_id, state="unchanged", step=None)
        return "unchanged"
    failpoint("migrate-plan")
    sources = _recall(ctx, aip_id, jobs, work / "src", progress)
    failpoint("migrate-recall")
    outputs: list[Any] = []
    failures: list[Any] = []
    workers = ctx.settings.migration_workers
    progress("convert", 0, len(jobs))
    progress("verify", 0, len(jobs))
    converted_n = 0
    for n, chunk in enumerate(_chunks(jobs, workers)):
        # Chunk by chunk, so the request shows each file's result as it comes.
        _set_item(ctx, item_id, step="convert")
        with session_scope(ctx.sessions) as s:
            s.execute(
                update(MigrationFile)
                .where(MigrationFile.id.in_([j["row_id"] for j in chunk]))
                .values(state="converting")
            )
        converted = _convert(chunk, sources, work / "out" / str(n), workers=workers)
        converted_n += len(chunk)
        progress("convert", converted_n, len(jobs))
        failpoint("migrate-convert")
        _set_item(ctx, item_id, step="verify")
        verdicts = _verify(ctx, chunk, sources, converted, work / "verify" / str(n))
        failpoint("migrate-verify")
        accepted, refused = _record(ctx, item_id, chunk, converted, verdicts)
        outputs += accepted
        failures += refused
        progress("verify", len(outputs) + len(failures), len(jobs))
    if not outputs or (failures and mode == "all-or-nothing"):
        if outputs:  # they passed, and are not kept: say so on their rows
            with session_scope(ctx.sessions) as s:
                s.execute(
                    update(MigrationFile)
                    .where(MigrationFile.id.in_([o.row_id for o in outputs]))
                    .values(
                        state="discarded",
                        error="passed every check, not kept: all-or-nothing, and another "
                        "file of the AIP failed",
                    )
                )
        _record_refusal(ctx, aip_id, who, failures, mode, kept=bool(outputs))
        _set_item(ctx, item_id, state="failed", step=None, error=_refusal(failures, mode))
        return "failed"
    _set_item(ctx, item_id, step="package")
    from preservation.migrate.version import prepare_migration_version

    info = prepare_migration_version(ctx, item_id, outputs, failures, who=who)
    failpoint("migrate-package")
    _set_item(ctx, item_id, step="store")
    if ctx.settings.broker_url:
        # The sites' tape workers store it; its commit task makes it current.
        versions.submit_version(ctx, info.version_id)
        return "running"
    versions.run_version(ctx, info.version_id)
    make_current(ctx, info.version_id)
    return "committed"


def _refusal(failures: Sequence[Any], mode: str) -> str:
    first = failures[0].detail.splitlines()[0] if failures else "no output"
    return (
        f"{len(failures)} file(s) failed verification ({mode}): the AIP stays at its "
        f"previous version; first: {first}"
    )


def _record_refusal(
    ctx: Context, aip_id: str, who: str, failures: Sequence[Any], mode: str, *, kept: bool
) -> None:
    """No version: the attempt and each refusal still go into the AIP's history."""
    import json

    from preservation import SOFTWARE_AGENT
    from preservation.catalog import service
    from preservation.catalog.models import AIP

    with session_scope(ctx.sessions) as s:
        aip = s.get_one(AIP, aip_id)
        tools = sorted({f.tool_agent for f in failures})
        for agent in tools:
            name, _, version = agent.partition(" ")
            service.ensure_agent(s, agent, name=name, type="software", version=version)
        service.ensure_agent(s, who, name=who, type="person", tenant_id=aip.tenant_id)
        service.record_event(
            s,
            tenant_id=aip.tenant_id,
            aip_id=aip_id,
            type="migration",
            outcome="failure",
            detail=f"migration refused ({mode}): {len(failures)} file(s) failed verification"
            + ("; the files that passed were not kept either" if kept else "")
            + f"; the AIP stays at its current version; asked by {who}",
            outcome_detail=json.dumps(
                [{"file": f.name, "action": f.action_id, "checks": f.detail} for f in failures][
                    :200
                ],
                ensure_ascii=False,
            ),
            agents={"executing program": [SOFTWARE_AGENT, *tools], "implementer": [who]},
            objects={"failed": len(failures)},
        )


def _recall(
    ctx: Context, aip_id: str, jobs: Sequence[dict[str, Any]], dest: Path, progress: Progress
) -> dict[int, Path]:
    """Each source out of its version's tar, read once per version; checked by sha256."""
    from preservation.storage.recovery import read_version_tar

    wanted: dict[int, dict[str, dict[str, Any]]] = {}
    for j in jobs:
        wanted.setdefault(j["version"], {})[j["aip_path"]] = j
    out: dict[int, Path] = {}
    total = sum(len(v) for v in wanted.values())
    progress("recall", 0, total)
    dest.mkdir(parents=True, exist_ok=True)
    for number, by_path in sorted(wanted.items()):
        tar_path = dest / f"v{number}.tar"
        read_version_tar(ctx, aip_id, number, tar_path)
        prefix = f"{aip_id}.v{number}/"
        try:
            with tarfile.open(tar_path, mode="r|") as tar:
                for member in tar:
                    rel = member.name.removeprefix(prefix)
                    job = by_path.get(rel)
                    if job is None or not member.isfile():
                        continue
                    handle = tar.extractfile(member)
                    assert handle is not None
                    target = dest / str(job["file_id"]) / Path(rel).name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha256()
                    with open(target, "wb") as fh:
                        while chunk := handle.read(_CHUNK):
                            digest.update(chunk)
                            fh.write(chunk)
                    if digest.hexdigest() != job["sha256"]:
                        raise StorageError(
                            f"AIP {aip_id} v{number}: {rel} read from tape does not match its "
                            "catalogued sha256",
                            aip_id=aip_id,
                        )
                    out[job["file_id"]] = target  # every action on the file shares it
                    progress("recall", len(out), total)
        finally:
            tar_path.unlink(missing_ok=True)
    missing = sorted({j["aip_path"] for j in jobs if j["file_id"] not in out})
    if missing:
        raise StorageError(
            f"AIP {aip_id}: {len(missing)} source(s) not found in their version's tar, "
            f"e.g. {missing[0]}",
            aip_id=aip_id,
        )
    return out


def _chunks(jobs: Sequence[dict[str, Any]], workers: int) -> list[list[dict[str, Any]]]:
    """The jobs by action (one tool run per action), in pieces small enough to show progress.

    Eight files a worker: each piece keeps every worker busy, and the batch
    steps of verification (fido, ExifTool, the validators) are paid per piece
    (measured on 200 images: pieces of 8 cost 3 s more than pieces of 32).
    LibreOffice's pieces are larger, because it converts a batch in one
    process and its start (a second or two) is paid per batch.
    """
    by_action: dict[str, list[dict[str, Any]]] = {}
    for j in jobs:
        by_action.setdefault(j["action"].id, []).append(j)
    out = []
    for group in by_action.values():
        size = max(32, 16 * workers) if group[0]["action"].tool == "libreoffice" else 8 * workers
        out += [group[i : i + size] for i in range(0, len(group), size)]
    return out


def _convert(
    jobs: Sequence[dict[str, Any]],
    sources: dict[int, Path],
    dest: Path,
    *,
    workers: int,
) -> dict[int, Any]:
    """Every job through its action's tool; one tool run per action, files in parallel."""
    from preservation.migrate.tools import Job, tool

    by_action: dict[str, list[dict[str, Any]]] = {}
    for j in jobs:
        by_action.setdefault(j["action"].id, []).append(j)
    results: dict[int, Any] = {}
    for group in by_action.values():
        action = group[0]["action"]
        runner = tool(action.tool)
        tool_jobs = []
        for j in group:
            src = sources[j["file_id"]]
            folder = dest / str(j["row_id"])
            folder.mkdir(parents=True, exist_ok=True)
            tool_jobs.append(Job(j["row_id"], src, folder / (src.stem + action.extension)))
        for r in runner.run(action, tool_jobs, workers=workers):
            results[r.key] = (r, runner.version())
    return results


def _verify(
    ctx: Context,
    jobs: Sequence[dict[str, Any]],
    sources: dict[int, Path],
    converted: dict[int, Any],
    work: Path,
) -> dict[int, Any]:
    from preservation.ingest.characterise import registry, toolbox
    from preservation.ingest.identify import identification_pool
    from preservation.migrate.verify import Candidate, verify

    candidates = []
    for j in jobs:
        result, _version = converted[j["row_id"]]
        action = j["action"]
        candidates.append(
            Candidate(
                key=j["row_id"],
                source=sources[j["file_id"]],
                source_puid=j["puid"],
                output=result.output,
                kind=action.kind,
                target_puid=action.target_puid,
                verification=tuple(action.verification),
                exit_code=result.exit_code,
                tool_error=result.error,
            )
        )
    pool = identification_pool(ctx)
    verdicts = verify(
        candidates,
        registry=registry(ctx),
        toolbox=toolbox(ctx),
        identify=lambda paths: pool.identify(list(paths)),
        work_dir=work,
        workers=ctx.settings.migration_workers,
    )
    return verdicts


def _hash(path: Path) -> tuple[str, str, int]:
    """The output's manifest digests, taken once; the bag reuses them."""
    from preservation.aip import hash_file

    digests = hash_file(path)
    return digests["sha256"], digests["sha512"], path.stat().st_size


def _record(
    ctx: Context,
    item_id: int,
    jobs: Sequence[dict[str, Any]],
    converted: dict[int, Any],
    verdicts: dict[int, Any],
) -> tuple[list[Any], list[Any]]:
    """Every file's result on its row (one bulk update); the accepted outputs and the refusals."""
    from preservation.migrate.version import Failure, Output

    outputs: list[Output] = []
    failures: list[Any] = []
    updates = []
    accepted = [j for j in jobs if verdicts[j["row_id"]].ok]
    with ThreadPoolExecutor(max_workers=2) as pool:
        digests = dict(
            zip(
                [j["row_id"] for j in accepted],
                pool.map(lambda j: _hash(converted[j["row_id"]][0].output), accepted),
                strict=True,
            )
        )
    for j in jobs:
        result, tool_version = converted[j["row_id"]]
        v = verdicts[j["row_id"]]
        action = j["action"]
        agent = f"{action.tool} {_version_number(tool_version)}"
        ident = v.identification
        identification = (
            {
                "puid": ident.puids[0] if ident.puids else None,
                "format_name": ident.format_name,
                "format_version": ident.format_version,
                "mime": ident.mime,
                "basis": ident.basis,
                "identification": {
                    "puids": list(ident.puids),
                    "engine": ident.engine,
                    "engine_version": ident.engine_version,
                    "signature_release": ident.signature_release,
                    "warning": ident.warning,
                    "error": ident.error,
                },
            }
            if ident is not None
            else {}
        )
        validation = [
            {"tool": f.tool, "version": f.tool_version, "valid": f.valid, "message": f.message}
            for f in v.validation
        ]
        row: dict[str, Any] = {
            "id": j["row_id"],
            "state": "migrated" if v.ok else "failed",
            "tool": action.tool,
            "tool_version": tool_version,
            "command": list(result.command),
            "exit_code": result.exit_code,
            "checks": [c.to_dict() for c in v.checks],
            "identification": identification,
            "properties": v.properties,
            "validation": validation,
            "error": None if v.ok else (result.error or _failed_checks(v)),
            "seconds_tool": result.seconds,
            "seconds_verify": v.seconds,
        }
        if v.ok:
            sha256, sha512, size = digests[j["row_id"]]
            row.update(sha256=sha256, sha512=sha512, size=size)
            outputs.append(
                Output(
                    row_id=j["row_id"],
                    source_file_id=j["file_id"],
                    path=result.output,
                    extension=action.extension,
                    sha256=sha256,
                    sha512=sha512,
                    size=size,
                    tool_agent=agent,
                    summary=v.summary(),
                    identification=identification,
                    properties=v.properties,
                    validation=validation,
                )
            )
        else:
            failures.append(
                Failure(j["file_id"], action.id, agent, v.summary() or row["error"], j["name"])
            )
        updates.append(row)
    with session_scope(ctx.sessions) as s:
        if updates:
            s.execute(update(MigrationFile), updates)
        item = s.get_one(MigrationItem, item_id)
        item.files_done += len(jobs)
        item.files_failed += len(failures)
    return outputs, failures


def _failed_checks(v: Any) -> str:
    failed = [c for c in v.checks if not c.passed]
    return "; ".join(f"{c.name}: {c.detail}" for c in failed[:5]) or "verification failed"


def _version_number(version: str) -> str:
    """``"GPL Ghostscript 10.00.0"`` -> ``"10.00.0"``: the agent is "<tool> <number>"."""
    words = version.split()
    for word in words:
        if word[:1].isdigit():
            return word
    return version.replace(" ", "-") or "unknown"


def _settle(ctx: Context, migration_id: str) -> None:
    from preservation.migrate.service import settle

    with session_scope(ctx.sessions) as s:
        settle(s, migration_id)


def run_migration(ctx: Context, migration_id: str, progress: Progress = _no_progress) -> None:
    """The embedded default: every AIP of the request here, one after the other.

    A transient failure (a site down) leaves its item queued, to run again;
    the others go on.
    """
    with session_scope(ctx.sessions) as s:
        items = list(
            s.scalars(
                select(MigrationItem.id)
                .where(MigrationItem.migration_id == migration_id)
                .order_by(MigrationItem.id)
            )
        )
    for item_id in items:
        try:
            migrate_item(ctx, item_id, progress)
        except PreservationError as err:
            log.warning("migration %s item %d: %s", migration_id, item_id, err.message)
    _settle(ctx, migration_id)


def submit_migration(ctx: Context, migration_id: str) -> None:
    """Hand a request to the workers (one task per AIP), or run it in this process's pool."""
    if ctx.settings.broker_url:
        from preservation.submission import load_callable

        submitter: Callable[[str], None] = load_callable(
            ctx.settings.migration_submitter, "migration_submitter"
        )
        submitter(migration_id)
        return
    from preservation.dispatch import run_in_background

    run_in_background(ctx, f"migration {migration_id}", lambda: run_migration(ctx, migration_id))


def item_ids(ctx: Context, migration_id: str) -> list[int]:
    """The request's items still to run, for the workers' submitter."""
    with session_scope(ctx.sessions) as s:
        return list(
            s.scalars(
                select(MigrationItem.id)
                .where(
                    MigrationItem.migration_id == migration_id,
                    MigrationItem.state.not_in(list(TERMINAL)),
                )
                .order_by(MigrationItem.id)
            )
        )
