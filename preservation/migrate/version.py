"""A migration's AIP version: a new representation holding only the outputs, a complete METS.

Made like every later version (:mod:`preservation.versions`): one transaction
makes the version row, its events and its tar, and it becomes the AIP's
state only once both sites hold a verified copy. Until then the catalogue
still shows the previous representation; :func:`make_current` then adds the
outputs' file rows and marks their sources superseded, in one transaction.
Sources are never changed or removed: on tape they stay in their version's
tar, in the catalogue they keep their rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid5

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from preservation import SOFTWARE_AGENT, __version__, versions
from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    SIP,
    AIPState,
    AIPVersion,
    File,
    MigrationFile,
    MigrationItem,
    Tenant,
)
from preservation.context import Context
from preservation.errors import ConflictError
from preservation.failpoints import failpoint
from preservation.migrate.plan import current_files, representation_of

__all__ = [
    "MIGRATION_REASON",
    "Output",
    "make_current",
    "mets_ids",
    "prepare_migration_version",
    "switch_files",
]

#: ``AIPVersion.reason`` of a migration's version.
MIGRATION_REASON = "migration"
_REP = re.compile(r"representations/rep(?P<n>[0-9]+)/")


@dataclass(frozen=True)
class Output:
    """A verified output, ready to go into the version (its row is ``row_id``)."""

    row_id: int
    source_file_id: int
    path: Path  # where it is now, in the work folder
    extension: str
    sha256: str
    sha512: str
    size: int
    tool_agent: str  # "<tool> <version>", the PREMIS agent
    summary: str  # every check, one per line: the event's outcome detail
    identification: Mapping[str, Any]
    properties: Mapping[str, Any]
    validation: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Failure:
    """A file whose output was refused: its event goes into the version all the same."""

    source_file_id: int
    action_id: str
    tool_agent: str
    detail: str
    name: str = ""  # the submitter's path, for the report


def mets_ids(session: Session, aip: AIP) -> dict[int, str]:
    """Every file row's METS id: ingest's ``file-NNNNNN`` order, then ``<source id>-<rep>``.

    Derived, never stored: version 1 numbers its files in catalogue order
    (as the describe stage did), and an output is named after its source and
    the representation that holds it, so the same id comes back every time.
    """
    rows = session.execute(
        select(File.id, File.derived_from, File.aip_path)
        .where(File.sip_id == aip.sip_id)
        .order_by(File.id)
    ).all()
    ids: dict[int, str] = {}
    n = 0
    for file_id, derived_from, _path in rows:
        if derived_from is None:
            n += 1
            ids[file_id] = f"file-{n:06d}"
    siblings: dict[tuple[int, str], int] = {}
    for file_id, derived_from, aip_path in rows:
        if derived_from is not None:
            rep = representation_of(aip_path or "")
            k = siblings[(derived_from, rep)] = siblings.get((derived_from, rep), 0) + 1
            ids[file_id] = f"{ids[derived_from]}-{rep}" + (f"-{k}" if k > 1 else "")
    return ids


def _next_representation(contents: Mapping[str, Any], files: Sequence[File]) -> str:
    numbers = [1]
    for path in [*contents, *((f.aip_path or "").removeprefix("data/") for f in files)]:
        match = _REP.match(path)
        if match:
            numbers.append(int(match["n"]))
    return f"rep{max(numbers) + 1}"


def _output_names(
    outputs: Sequence[Output], sources: Mapping[int, File], kept: Sequence[File]
) -> dict[int, str]:
    """Each output's path inside its representation's ``data/``: the source's, new extension.

    ``letter.docx`` becomes ``letter.pdf`` and ``letter.odt``; should two
    outputs (or an output and an unchanged file) meet at one name, the
    source's whole name is kept before the new extension (``a.png.tif``).
    """
    taken = {_in_rep(f.aip_path or "") for f in kept}
    out: dict[int, str] = {}
    for o in outputs:
        rel = PurePosixPath(_in_rep(sources[o.source_file_id].aip_path or ""))
        candidates = [
            str(rel.with_suffix(o.extension)) if rel.suffix else f"{rel}{o.extension}",
            f"{rel}{o.extension}",
        ]
        name = next((c for c in candidates if c not in taken), None)
        n = 2
        while name is None:
            if (c := f"{rel}.{n}{o.extension}") not in taken:
                name = c
            n += 1
        taken.add(name)
        out[o.row_id] = name
    return out


def _in_rep(aip_path: str) -> str:
    """``data/representations/rep1/data/a/b.tif`` -> ``a/b.tif``."""
    parts = aip_path.split("/", 4)
    return parts[4] if len(parts) == 5 else aip_path


def _descriptive(aip: AIP) -> list[tuple[str, str]] | None:
    """The current Dublin Core record as pairs; None: still the one bag-info maps to."""
    if not aip.descriptive:
        return None
    return [
        (element, value)
        for element, values in aip.descriptive.items()
        for value in values
        if not (element == "identifier" and value == f"urn:uuid:{aip.id}")
    ]


def _file_object(f: File, file_id: str, *, path: str, held_in: int | None, **extra: Any) -> Any:
    from preservation.metadata.model import FileFormat, FileObject

    ident = f.identification or {}
    digests = {"sha256": f.sha256, "sha512": f.sha512}
    tool = " ".join(x for x in (ident.get("engine"), ident.get("engine_version")) if x) or None
    return FileObject(
        id=file_id,
        original_name=f.original_name,
        path=path,
        size=f.size,
        digests=digests,
        format=FileFormat(
            puids=tuple(ident.get("puids") or ([f.puid] if f.puid else [])),
            name=f.format_name,
            version=f.format_version,
            mime=f.mime,
            basis=f.identification_basis,
            tool=tool,
        ),
        properties=dict(f.properties or {}),
        held_in=held_in,
        **extra,
    )


def prepare_migration_version(
    ctx: Context,
    item_id: int,
    outputs: Sequence[Output],
    failures: Sequence[Failure],
    *,
    who: str,
) -> versions.VersionInfo:
    """Make version N+1 holding ``outputs`` as a new representation; not yet stored.

    Two phases, so that no lock is held while a film is copied and tarred:
    the bag and its tar are built first, from what the catalogue says now,
    in a folder of their own; then one short transaction checks that nothing
    changed meanwhile (:class:`ConflictError` otherwise), makes the version
    row and its chained ``migration`` and ``creation`` events, and moves the
    tar into place. A crash before that commit leaves nothing that counts
    (the next run starts again); after it, the tar is the version and
    :func:`versions.finish_version` stores it.
    """
    import uuid as uuidlib

    from preservation.aip import AIPLayout, copy_schemas, serialise_aip, write_aip_bag
    from preservation.metadata.description import describe_migration_version
    from preservation.metadata.mets import source_object_uri
    from preservation.metadata.model import AgentLink, Event, ObjectLink

    tools = sorted({o.tool_agent for o in outputs} | {f.tool_agent for f in failures})
    with session_scope(ctx.sessions) as s:
        item = s.get_one(MigrationItem, item_id)
        aip = s.get_one(AIP, item.aip_id)
        aip_id, current_id = aip.id, aip.versions[-1].id
        service.ensure_agent(s, who, name=who, type="person", tenant_id=aip.tenant_id)
        service.ensure_agent(
            s, SOFTWARE_AGENT, name="preservation", type="software", version=__version__
        )
        for agent in tools:
            name, _, tool_version = agent.partition(" ")
            service.ensure_agent(s, agent, name=name, type="software", version=tool_version)
    contents = versions._contents_of(ctx, current_id)
    base = ctx.settings.staging_dir / "versions"
    # One folder per item: a crashed run's leftovers are found and swept by the next.
    work = base / f".{aip_id}.item-{item_id}"
    shutil.rmtree(work, ignore_errors=True)
    event_uuid = str(uuidlib.uuid4())
    moved: Path | None = None
    made = False
    try:
        # -- 1. build, holding no lock ----------------------------------------------------
        with session_scope(ctx.sessions) as s:
            aip = s.get_one(AIP, aip_id)
            number = aip.versions[-1].number + 1
            numbers = {v.id: v.number for v in aip.versions}
            files = current_files(s, aip_id)
            sources = {f.id: f for f in files}
            refused = {f.source_file_id for f in failures}
            # A source is replaced only when every output the policy asked of it was kept.
            replaced = {o.source_file_id for o in outputs} - refused
            kept = [f for f in files if f.id not in replaced]
            rep = _next_representation(contents, files)
            ids = mets_ids(s, aip)
            names = _output_names(outputs, sources, kept)
            sip = s.get_one(SIP, aip.sip_id)
            tenant = s.get(Tenant, aip.tenant_id)
            history: list[Any] = list(versions._history(s, aip))
            agents = service.agents_by_identifier(s)
            for event in history:
                s.expunge(event)
            tenant_id, sip_bag_info = aip.tenant_id, dict(sip.bag_info)
            organisation = tenant.name if tenant else aip.tenant_id
            descriptive = _descriptive(aip)
            source_bag_name = aip.source_bag_name
            bag_dir = work / f"{aip_id}.v{number}"
            layout = AIPLayout(bag_dir, representation=rep)
            for folder in (layout.descriptive, layout.preservation, layout.schemas):
                folder.mkdir(parents=True)
            copy_schemas(ctx.settings.schemas_dir, layout)
            now = datetime.now(UTC)
            objects = [
                _file_object(
                    f,
                    ids[f.id],
                    path=(f.aip_path or "").removeprefix("data/"),
                    held_in=numbers[f.aip_version_id or 0],
                )
                for f in kept
            ]
            file_events = []
            known: dict[str, dict[str, str]] = {}
            paths: dict[int, str] = {}
            per_source: dict[int, int] = {}
            for o in outputs:
                src = sources[o.source_file_id]
                k = per_source[src.id] = per_source.get(src.id, 0) + 1
                out_id = f"{ids[src.id]}-{rep}" + (f"-{k}" if k > 1 else "")
                src_uri = source_object_uri(
                    aip_id,
                    numbers[src.aip_version_id or 0],
                    representation_of(src.aip_path or ""),
                    ids[src.id],
                )
                rel = f"representations/{rep}/data/{names[o.row_id]}"
                target = bag_dir / "data" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _place(o.path, target)
                known[f"data/{rel}"] = {"sha256": o.sha256, "sha512": o.sha512}
                paths[o.row_id] = f"data/{rel}"
                event_id = uuid5(UUID(aip_id), f"migration/v{number}/{out_id}")
                file_events.append(
                    Event(
                        id=event_id,
                        type="migration",
                        datetime=now,
                        outcome="success",
                        agents=(
                            AgentLink(o.tool_agent, "executing program"),
                            AgentLink(SOFTWARE_AGENT, "validator"),
                            AgentLink(who, "implementer"),
                        ),
                        objects=(
                            ObjectLink(src_uri, "source", "URI"),
                            ObjectLink(out_id, "outcome"),
                        ),
                        detail=f"{src.original_name} migrated to "
                        f"{o.identification.get('puid')} with {o.tool_agent}",
                        outcome_detail=o.summary,
                    )
                )
                ident = o.identification
                output_row = File(
                    original_name=_renamed(
                        src.original_name, names[o.row_id], src.aip_path or ""
                    ),
                    aip_path=f"data/{rel}",
                    size=o.size,
                    sha256=o.sha256,
                    sha512=o.sha512,
                    puid=ident.get("puid"),
                    format_name=ident.get("format_name"),
                    format_version=ident.get("format_version"),
                    mime=ident.get("mime"),
                    identification_basis=ident.get("basis"),
                    identification=dict(ident.get("identification") or {}),
                    properties=dict(o.properties),
                )
                objects.append(
                    _file_object(
                        output_row,
                        out_id,
                        path=rel,
                        held_in=None,
                        derived_from=src_uri,
                        event_ids=(event_id,),
                    )
                )
            for fail in failures:
                src = sources[fail.source_file_id]
                src_uri = source_object_uri(
                    aip_id,
                    numbers[src.aip_version_id or 0],
                    representation_of(src.aip_path or ""),
                    ids[src.id],
                )
                file_events.append(
                    Event(
                        id=uuid5(
                            UUID(aip_id), f"migration/v{number}/{ids[src.id]}/{fail.action_id}"
                        ),
                        type="migration",
                        datetime=now,
                        outcome="failure",
                        agents=(
                            AgentLink(fail.tool_agent, "executing program"),
                            AgentLink(SOFTWARE_AGENT, "validator"),
                            AgentLink(who, "implementer"),
                        ),
                        objects=(ObjectLink(src_uri, "source", "URI"),),
                        detail=f"{src.original_name}: action {fail.action_id} refused; the "
                        "source stays current",
                        outcome_detail=fail.detail,
                    )
                )
        results = [
            {"source": o.source_file_id, "output": paths[o.row_id], "sha256": o.sha256}
            for o in outputs
        ] + [{"source": f.source_file_id, "failed": f.detail} for f in failures]
        # The version's own event goes into its PREMIS now, and into the chain with the
        # same id, time and words once the version is made (below).
        summary_event: dict[str, Any] = {
            "type": "migration",
            "outcome": "warning" if failures else "success",
            "detail": f"{len(outputs)} file(s) migrated into representation {rep} of AIP "
            f"version {number}, asked by {who}"
            + (f"; {len(failures)} refused by verification" if failures else ""),
            "outcome_detail": "current once both tape copies of the version are verified; "
            "each file's checks are in its migration event in the representation METS",
            "agents": {"executing program": [SOFTWARE_AGENT, *tools], "implementer": [who]},
            "objects": {
                "version": number,
                "representation": rep,
                "files": len(outputs),
                "failed": len(failures),
                "results_sha256": hashlib.sha256(
                    json.dumps(results, sort_keys=True).encode()
                ).hexdigest(),
            },
            "occurred_at": now,
        }
        history.append(SimpleNamespace(uuid=event_uuid, **summary_event))
        carried = versions._Carried(
            {
                path: entry
                for path, entry in contents.items()
                if not versions._replaced_by_metadata(path)
            }
        )
        describe_migration_version(
            layout,
            aip_id=aip_id,
            version=number,
            tenant=tenant_id,
            organisation=organisation,
            bag_info=sip_bag_info,
            descriptive=descriptive,
            events=history,
            agents=agents,
            representations=carried.representations(),
            previous_versions=carried.previous(),
            files=objects,
            file_events=file_events,
        )
        summary = write_aip_bag(
            bag_dir,
            aip_id=aip_id,
            version=number,
            tenant=tenant_id,
            source_bag_name=source_bag_name,
            bag_info=sip_bag_info,
            known_digests=known,
            processes=1,
        )
        tar = serialise_aip(bag_dir, work / "version.tar", arcname=f"{aip_id}.v{number}")
        new_contents = carried.files | versions.bag_contents(bag_dir, number, summary.digests)
        failpoint("version-package")
        # -- 2. one short transaction ------------------------------------------------------
        tar_path = versions.version_staging(ctx, aip_id, number)[1]
        with session_scope(ctx.sessions) as s:
            aip = versions._lock_aip(s, aip_id)
            if aip.state is not AIPState.ACTIVE:
                raise ConflictError(
                    f"AIP {aip_id} is {aip.state.value}: only an active AIP gets a new version",
                    aip_id=aip_id,
                    rule="aip-not-active",
                )
            if (
                any(v.committed_at is None for v in aip.versions)
                or aip.versions[-1].id != current_id
            ):
                raise ConflictError(
                    f"AIP {aip_id} got another new version meanwhile; migrate it again",
                    aip_id=aip_id,
                    rule="version-in-flight",
                )
            version = service.create_aip_version(s, aip, number, reason=MIGRATION_REASON)
            service.record_event(
                s, tenant_id=aip.tenant_id, aip_id=aip.id, event_uuid=event_uuid, **summary_event
            )
            tar_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tar.path, tar_path)
            moved = tar_path
            version.tar_size = tar.size
            version.tar_sha256 = tar.sha256
            version.mets_sha256 = summary.digests.get("data/METS.xml", {}).get("sha256")
            version.staging_path = str(tar_path)
            service.record_event(
                s,
                tenant_id=aip.tenant_id,
                aip_id=aip.id,
                type="creation",
                outcome="success",
                detail=f"AIP version {number} (migration, representation {rep}) packaged as a "
                f"POSIX pax tar ({summary.payload_files} files; earlier versions' files by "
                "reference)",
                outcome_detail=f"sha256 {tar.sha256}, {tar.size} bytes",
                agents={"executing program": [SOFTWARE_AGENT]},
                objects={"version": number, "contents": new_contents},
            )
            s.get_one(MigrationItem, item_id).version = number
            for row_id, path in paths.items():
                s.execute(
                    update(MigrationFile).where(MigrationFile.id == row_id).values(aip_path=path)
                )
            s.flush()
            info = versions._info(version)
        made = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not made and moved is not None:
            moved.unlink(missing_ok=True)  # moved in, then the transaction rolled back
    return info


def _place(source: Path, target: Path) -> None:
    """The output into the bag: a hard link (same file system, no copy), else a copy.

    The output was hashed when it was recorded; the bag's manifest takes
    those digests, and the tar is checked as a whole when written to tape.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _renamed(original_name: str, new_rel: str, aip_path: str) -> str:
    """The submitter's path, the output's name: ``data/x/letter.docx`` -> ``data/x/letter.pdf``."""
    old_rel = _in_rep(aip_path)
    if original_name.endswith(old_rel):
        return original_name[: len(original_name) - len(old_rel)] + new_rel
    return str(PurePosixPath(original_name).parent / PurePosixPath(new_rel).name)


def make_current(ctx: Context, version_id: int) -> None:
    """:func:`switch_files` on its own: for a version committed before the switch existed."""
    with session_scope(ctx.sessions) as s:
        version = s.get_one(AIPVersion, version_id)
        if version.reason != MIGRATION_REASON or version.committed_at is None:
            return
        versions._lock_aip(s, version.aip_id)
        switch_files(s, version)


def switch_files(s: Session, version: AIPVersion) -> None:
    """The migration version becomes the catalogue's state, in the caller's transaction.

    Called by the tape commit itself (``storage.service.commit_version``), so
    the version is committed and its files current in one step: no reader
    ever sees the version committed with the old representation current.
    Its outputs get file rows (``derived_from`` their sources); each source
    whose every output was kept is marked superseded by this version (one
    with a refused output stays current beside the outputs kept). Done once:
    a rerun finds the rows and does nothing.
    """
    from preservation.catalog.search import index_aips
    from preservation.migrate.service import settle

    if version.reason != MIGRATION_REASON:
        return
    aip = s.get_one(AIP, version.aip_id)
    item = s.scalar(
        select(MigrationItem).where(
            MigrationItem.aip_id == aip.id, MigrationItem.version == version.number
        )
    )
    if item is None:
        return
    done = s.scalar(select(File.id).where(File.aip_version_id == version.id).limit(1))
    if done is not None:
        # Switched before; a redelivered task may have marked the item running since.
        item.state, item.step = "committed", None
        s.flush()
        settle(s, item.migration_id)
        return
    results = list(
        s.scalars(
            select(MigrationFile)
            .where(MigrationFile.item_id == item.id, MigrationFile.state == "migrated")
            .where(MigrationFile.aip_path.is_not(None))
            .order_by(MigrationFile.id)
        )
    )
    refused = set(
        s.scalars(
            select(MigrationFile.source_file_id).where(
                MigrationFile.item_id == item.id, MigrationFile.state == "failed"
            )
        )
    )
    sources = {
        f.id: f
        for f in s.scalars(select(File).where(File.id.in_([r.source_file_id for r in results])))
    }
    rows = []
    for r in results:
        src = sources[r.source_file_id]
        ident = r.identification or {}
        rel = _in_rep(r.aip_path or "")
        rows.append(
            {
                "sip_id": aip.sip_id,
                "aip_version_id": version.id,
                "original_name": _renamed(src.original_name, rel, src.aip_path or ""),
                "aip_path": r.aip_path,
                "size": r.size,
                "sha256": r.sha256,
                "sha512": r.sha512,
                "submitted_digests": {},
                "puid": ident.get("puid"),
                "format_name": ident.get("format_name"),
                "format_version": ident.get("format_version"),
                "mime": ident.get("mime"),
                "identification_basis": ident.get("basis"),
                "identification": ident.get("identification") or {},
                "properties": r.properties,
                "valid": _valid(r.validation),
                "validation": r.validation,
                "derived_from": src.id,
            }
        )
    if rows:
        s.execute(insert(File), rows)
        s.execute(
            update(File)
            .where(File.id.in_(sorted(set(sources) - refused)))
            .values(superseded_in=version.number)
        )
    item.state = "committed"
    item.step = None
    index_aips(s, [aip.id])
    s.flush()
    settle(s, item.migration_id)


def _valid(validation: Sequence[Mapping[str, Any]] | None) -> bool | None:
    verdicts = [v.get("valid") for v in validation or []]
    if any(v is False for v in verdicts):
        return False
    return True if verdicts and all(v is True for v in verdicts) else None
