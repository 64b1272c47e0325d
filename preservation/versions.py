"""New versions of an AIP, as forward deltas (docs/architecture.md §4.1).

Version 1 is made by ingest. Every later version holds only what is new,
plus a complete root METS for its own state that points into the earlier
versions' tars for everything it did not change; nothing already on tape is
touched. A version is a metadata update (a curator's Dublin Core record
replaces the current one) or a format migration (:mod:`preservation.migrate.version`,
which builds on the helpers here).

A version goes through two steps, each safe to run again after a crash:

1. :func:`prepare_metadata_version` checks the request, then in **one
   transaction** makes the ``AIPVersion`` row (N+1), records the ``metadata
   modification`` event, writes the version's bag in
   ``<staging>/versions/<aip>.v<N>/``, serialises it as
   ``<staging>/versions/<aip>.v<N>.tar`` and records the tar's size, sha256
   and a ``creation`` event. A crash before the commit leaves no row, and the
   next run rebuilds the folder from scratch; after it, the tar is the version.
2. :func:`finish_version` writes the tar at every site, commits the version
   (``storage.service.commit_version``: two verified copies or nothing) and
   then makes the new record current: ``AIP.descriptive`` and the search
   index change together, in one transaction, only once the version is safe.
   While a site is down the version stays uncommitted and the AIP stays what
   it was: active, readable, with its old record.

One version is in flight per AIP at a time: two curators' updates prepared
side by side would each point at the same predecessor, and the second to
commit would silently undo the first.

What each version holds besides its originals (its METS documents, metadata
files, schemas, the submission's tag files) is recorded with sizes and
digests in its ``creation`` event (``objects["contents"]``), so that the next
version's METS can point to them without reading a tape. An AIP ingested
before that was recorded has its latest version's head read from tape once
(the manifests and METS documents lead each tar, ahead of the originals).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from preservation import SOFTWARE_AGENT, __version__
from preservation.catalog import service
from preservation.catalog.database import session_scope
from preservation.catalog.models import AIP, SIP, AIPState, AIPVersion, PremisEvent, Tenant
from preservation.context import Context
from preservation.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    SiteUnavailableError,
    TransientError,
)
from preservation.failpoints import failpoint

__all__ = [
    "METADATA_REASON",
    "VersionInfo",
    "bag_contents",
    "commit_version",
    "finish_version",
    "load_version_submitter",
    "pending_versions",
    "prepare_metadata_version",
    "run_version",
    "store_version_at",
    "submit_version",
    "version_staging",
]

log = logging.getLogger("preservation.versions")

#: ``AIPVersion.reason`` of a metadata-only version.
METADATA_REASON = "metadata"
#: The PREMIS event that says what changed, and who asked.
MODIFICATION_EVENT = "metadata modification"
_REP_METS = re.compile(r"representations/(?P<name>[^/]+)/METS\.xml\Z")
#: Fixity checks of audits recur daily: they stay in the catalogue, not in every new METS.
_AUDIT_EVENT = "fixity check"


@dataclass(frozen=True)
class VersionInfo:
    """A version as callers see it; ``state`` is ``"pending"`` until both copies are verified."""

    aip_id: str
    number: int
    version_id: int
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "aip_id": self.aip_id,
            "number": self.number,
            "version_id": self.version_id,
            "state": self.state,
        }


def _info(version: AIPVersion) -> VersionInfo:
    state = "committed" if version.committed_at is not None else "pending"
    return VersionInfo(version.aip_id, version.number, version.id, state)


# -- staging ----------------------------------------------------------------------------------


def version_staging(ctx: Context, aip_id: str, number: int) -> tuple[Path, Path]:
    """Where version ``number`` of an AIP is built: its bag folder and its tar."""
    base = ctx.settings.staging_dir / "versions"
    return base / f"{aip_id}.v{number}", base / f"{aip_id}.v{number}.tar"


# -- what a version holds ---------------------------------------------------------------------


def _is_original(path: str) -> bool:
    """A file of a representation's ``data/``: described by its representation METS, not here."""
    parts = path.split("/")
    return len(parts) > 3 and parts[0] == "representations" and parts[2] == "data"


def bag_contents(
    root: Path, number: int, digests: Mapping[str, Mapping[str, str]]
) -> dict[str, list[Any]]:
    """What a just-built version bag holds besides originals: ``path -> [number, size, sha256]``.

    ``digests`` is the bag's manifest (``BagSummary.digests``, keyed
    ``data/<path>``); paths in the result are relative to ``data/``, as the
    METS names them. Called before the bag folder is deleted, so the next
    version can point to these files without reading the tar back.
    """
    out: dict[str, list[Any]] = {}
    for rel, digest in sorted(digests.items()):
        path = rel.removeprefix("data/")
        if not _is_original(path):
            out[path] = [number, (Path(root) / rel).stat().st_size, digest["sha256"]]
    return out


def _replaced_by_metadata(path: str) -> bool:
    """What a metadata version writes anew: its root METS, its metadata files, its schemas."""
    return path == "METS.xml" or path.startswith(("metadata/", "schemas/"))


@dataclass(frozen=True)
class _Carried:
    """The earlier versions' files a new version's METS points to."""

    files: dict[str, list[Any]]

    def representations(self) -> list[Any]:
        from preservation.metadata.model import RepresentationRef

        refs = []
        for path, (number, size, sha256) in self.files.items():
            match = _REP_METS.match(path)
            if match:
                refs.append(RepresentationRef(match["name"], int(number), sha256, int(size)))
        return sorted(refs, key=lambda r: (r.version, r.name))

    def previous(self) -> list[tuple[int, str]]:
        return sorted(
            (int(entry[0]), path) for path, entry in self.files.items() if not _REP_METS.match(path)
        )


# -- 1. prepare -------------------------------------------------------------------------------


def _check_aip_id(aip_id: str) -> str:
    try:
        return str(uuid.UUID(aip_id))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidRequestError(
            f"aip_id {str(aip_id)[:80]!r} is not an id: AIP ids are UUIDs",
            rule="uuid",
            field="aip_id",
        ) from exc


def _check_who(who: str) -> str:
    who = (who or "").strip()
    if not who or len(who) > 255:
        raise InvalidRequestError(
            "who asks for the change must be named (1 to 255 characters): it goes into the "
            "PREMIS event and the METS",
            rule="who",
            field="who",
        )
    return who


def _scoped_aip(session: Session, aip_id: str, tenant_id: str | None) -> AIP:
    """The AIP if the asker may see it; another tenant's is not found, exactly like none."""
    aip = session.get(AIP, aip_id)
    if aip is None or (tenant_id is not None and aip.tenant_id != tenant_id):
        raise NotFoundError(f"no AIP {aip_id}", aip_id=aip_id)
    return aip


def _lock_aip(session: Session, aip_id: str) -> AIP:
    """Hold the AIP's row until the transaction ends: one version is made at a time.

    An UPDATE, as ``service.lock_tenant`` does: it takes PostgreSQL's row lock
    and SQLite's write lock alike, so the checks that follow see every version
    another writer committed before us, and none can be added meanwhile.
    """
    session.execute(update(AIP).where(AIP.id == aip_id).values(state=AIP.state))
    aip = session.scalar(service.locked(select(AIP).where(AIP.id == aip_id)))
    assert aip is not None
    return aip


def _modification_of(session: Session, version: AIPVersion) -> PremisEvent | None:
    """The ``metadata modification`` event that made ``version`` (it holds the record)."""
    for event in reversed(service.list_events(session, aip_id=version.aip_id)):
        if event.type == MODIFICATION_EVENT and (event.objects or {}).get("version") == (
            version.number
        ):
            return event
    return None


def _record_of(session: Session, version: AIPVersion) -> dict[str, list[str]] | None:
    event = _modification_of(session, version)
    if event is None:
        return None
    return cast(dict[str, list[str]], (event.objects or {}).get("descriptive"))


def prepare_metadata_version(
    ctx: Context,
    aip_id: str,
    dc: Sequence[tuple[str, str]],
    *,
    tenant_id: str | None,
    who: str,
) -> VersionInfo:
    """Make version N+1 of an AIP holding the Dublin Core record ``dc``; not yet stored.

    ``tenant_id`` None is an administrator (any tenant); otherwise another
    tenant's AIP is :class:`NotFoundError`, never anything that would tell it
    exists. Refused with :class:`ConflictError`: an AIP that is not active
    (pending, discarded, disposed), or one with a version still uncommitted,
    unless that version is this very record (a retried request gets the
    version it already made). ``who`` (a person or service) is the PREMIS
    agent who asked. Then :func:`finish_version` (or :func:`submit_version`)
    stores and commits it.
    """
    from preservation.metadata.dc_input import check_dc

    aip_id = _check_aip_id(aip_id)
    who = _check_who(who)
    pairs = check_dc(dc)
    # What the current version holds, before any lock: for an AIP ingested before
    # the catalogue kept it, this reads a tape, which no lock should wait for.
    with session_scope(ctx.sessions) as s:
        aip = _scoped_aip(s, aip_id, tenant_id)
        settled = aip.state is AIPState.ACTIVE and all(v.committed_at for v in aip.versions)
        current_id = aip.versions[-1].id if aip.versions and settled else None
    contents = _contents_of(ctx, current_id) if current_id is not None else {}
    try:
        with session_scope(ctx.sessions) as s:
            _scoped_aip(s, aip_id, tenant_id)
            aip = _lock_aip(s, aip_id)
            if aip.state is not AIPState.ACTIVE:
                pending = aip.state is AIPState.PENDING
                raise ConflictError(
                    f"AIP {aip_id} is {aip.state.value}: only an active AIP gets a new version"
                    + (" (its ingest has not committed yet)" if pending else ""),
                    aip_id=aip_id,
                    rule="aip-not-active",
                    state=aip.state.value,
                )
            in_flight = [v for v in aip.versions if v.committed_at is None]
            if in_flight:
                version = in_flight[0]
                if version.reason == METADATA_REASON and _record_of(s, version) == _as_record(
                    aip_id, pairs
                ):
                    return _info(version)  # the same request again
                raise ConflictError(
                    f"AIP {aip_id} version {version.number} ({version.reason}) is not "
                    "committed yet; one version is made at a time, so wait for it to finish",
                    aip_id=aip_id,
                    rule="version-in-flight",
                    version=version.number,
                )
            if aip.versions[-1].id != current_id:
                raise ConflictError(
                    f"AIP {aip_id} got a new version while this one was prepared: ask again",
                    aip_id=aip_id,
                    rule="version-in-flight",
                )
            number = aip.versions[-1].number + 1
            try:
                info = _prepare_in(ctx, s, aip, pairs, who, contents)
            except BaseException:
                # Nothing of it is in the catalogue (the transaction rolls back): neither on disk.
                bag_dir, tar_path = version_staging(ctx, aip_id, number)
                shutil.rmtree(bag_dir, ignore_errors=True)
                tar_path.unlink(missing_ok=True)
                raise
    except IntegrityError as exc:
        # SQLite: another writer made the same version number between our reads.
        raise ConflictError(
            f"AIP {aip_id}: another new version was made at the same moment; try again",
            aip_id=aip_id,
            rule="version-in-flight",
        ) from exc
    # The tar is the version now; the folder it was made from would only take space.
    shutil.rmtree(version_staging(ctx, aip_id, info.number)[0], ignore_errors=True)
    return info


def _as_record(aip_id: str, pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The record as the version's dc.xml holds it (the AIP's urn:uuid identifier first)."""
    from preservation.metadata.dc_input import dc_as_record
    from preservation.metadata.mets import dublin_core_from_record

    return dc_as_record(dublin_core_from_record(aip_id, pairs))


def _prepare_in(
    ctx: Context,
    s: Session,
    aip: AIP,
    pairs: Sequence[tuple[str, str]],
    who: str,
    contents: Mapping[str, list[Any]],
) -> VersionInfo:
    """The version's row, events, bag and tar, all inside the caller's transaction.

    ``contents`` is what the current version holds (:func:`_contents_of`).
    """
    from preservation.aip import AIPLayout, copy_schemas, serialise_aip, write_aip_bag
    from preservation.metadata.description import describe_metadata_version

    number = aip.versions[-1].number + 1
    carried = _Carried(
        {path: entry for path, entry in contents.items() if not _replaced_by_metadata(path)}
    )
    sip = s.get_one(SIP, aip.sip_id)
    tenant = s.get(Tenant, aip.tenant_id)
    version = service.create_aip_version(s, aip, number, reason=METADATA_REASON)
    service.ensure_agent(s, who, name=who, type="person", tenant_id=aip.tenant_id)
    record = _as_record(aip.id, pairs)
    service.record_event(
        s,
        tenant_id=aip.tenant_id,
        aip_id=aip.id,
        type=MODIFICATION_EVENT,
        outcome="success",
        detail=f"descriptive metadata (Dublin Core) replaced in AIP version {number}, "
        f"asked by {who}",
        outcome_detail="current once both tape copies of the version are verified",
        agents={"executing program": [SOFTWARE_AGENT], "implementer": [who]},
        objects={"version": number, "descriptive": record},
    )
    service.ensure_agent(
        s, SOFTWARE_AGENT, name="preservation", type="software", version=__version__
    )
    bag_dir, tar_path = version_staging(ctx, aip.id, number)
    shutil.rmtree(bag_dir, ignore_errors=True)  # a crashed run's leftovers are never trusted
    layout = AIPLayout(bag_dir)
    for folder in (layout.descriptive, layout.preservation, layout.schemas):
        folder.mkdir(parents=True)
    copy_schemas(ctx.settings.schemas_dir, layout)
    describe_metadata_version(
        layout,
        aip_id=aip.id,
        version=number,
        tenant=aip.tenant_id,
        organisation=tenant.name if tenant else aip.tenant_id,
        bag_info=sip.bag_info,
        descriptive=pairs,
        events=_history(s, aip),
        agents=service.agents_by_identifier(s),
        representations=carried.representations(),
        previous_versions=carried.previous(),
    )
    summary = write_aip_bag(
        bag_dir,
        aip_id=aip.id,
        version=number,
        tenant=aip.tenant_id,
        source_bag_name=aip.source_bag_name,
        bag_info=sip.bag_info,
        known_digests={},
        processes=1,
    )
    tar = serialise_aip(bag_dir, tar_path, arcname=f"{aip.id}.v{number}")
    failpoint("version-package")
    contents = carried.files | bag_contents(bag_dir, number, summary.digests)
    version.tar_size = tar.size
    version.tar_sha256 = tar.sha256
    version.mets_sha256 = summary.digests.get("data/METS.xml", {}).get("sha256")
    version.staging_path = str(tar.path)
    service.record_event(
        s,
        tenant_id=aip.tenant_id,
        aip_id=aip.id,
        type="creation",
        outcome="success",
        detail=f"AIP version {number} (metadata) packaged as a POSIX pax tar "
        f"({summary.payload_files} files; earlier versions' files by reference)",
        outcome_detail=f"sha256 {tar.sha256}, {tar.size} bytes",
        agents={"executing program": [SOFTWARE_AGENT]},
        objects={"version": number, "contents": contents},
    )
    s.flush()
    return _info(version)


def _history(session: Session, aip: AIP) -> list[PremisEvent]:
    """The AIP's events for its new METS: ingest's and every later one but audits' checks.

    An event of a type outside the PREMIS vocabulary (none is recorded today)
    is left to the catalogue rather than make the version impossible to write.
    """
    from preservation.metadata.model import EVENT_TYPES

    events = {e.uuid: e for e in service.list_events(session, sip_id=aip.sip_id)}
    for e in service.list_events(session, aip_id=aip.id):
        if e.sip_id is None and e.type == _AUDIT_EVENT:
            continue
        events[e.uuid] = e
    return sorted((e for e in events.values() if e.type in EVENT_TYPES), key=lambda e: e.seq)


def _contents_of(ctx: Context, version_id: int) -> dict[str, list[Any]]:
    """What a version holds besides originals, from its ``creation`` event (or its tar's head)."""
    with session_scope(ctx.sessions) as session:
        version = _version_row(session, version_id)
        for event in reversed(service.list_events(session, aip_id=version.aip_id)):
            objects = event.objects or {}
            if (
                event.type == "creation"
                and objects.get("version") == version.number
                and isinstance(objects.get("contents"), dict)
            ):
                return {str(k): list(v) for k, v in objects["contents"].items()}
    from preservation.storage.recovery import read_version_head

    return read_version_head(ctx, version_id)


# -- 2. finish --------------------------------------------------------------------------------


def _version_row(session: Session, version_id: int) -> AIPVersion:
    version = session.get(AIPVersion, version_id)
    if version is None:
        raise NotFoundError(f"no AIP version {version_id}")
    return version


def store_version_at(ctx: Context, version_id: int, site: str) -> None:
    """Write a version's tar at one site and verify it; the sites run independently.

    Under a lease of its own (per version and site), as the ingest's store is:
    a redelivered task never writes the same copy beside the first.
    """
    from preservation.lease import hold_sip_lease
    from preservation.storage.service import store_version

    with session_scope(ctx.sessions) as s:
        version = _version_row(s, version_id)
        sip_id, number = version.aip.sip_id, version.number
        if version.committed_at is not None:
            return
    with hold_sip_lease(
        ctx.sessions,
        sip_id,
        seconds=ctx.settings.lease_seconds,
        part=f"v{number}:store:{site}",
    ):
        store_version(ctx, version_id, site)


def _store_everywhere(ctx: Context, version_id: int) -> None:
    """Every site at once, as ``pipeline.store_all``; every site is tried, then the first error."""
    from preservation.storage.service import on_every_site

    on_every_site(ctx, lambda site: store_version_at(ctx, version_id, site))


def commit_version(ctx: Context, version_id: int) -> bool:
    """Commit a stored version and make what it changed current; True once committed.

    Raises :class:`SiteUnavailableError` while a site lacks a verified copy
    (the version stays uncommitted and the AIP as it was). Once committed,
    a metadata version's record becomes ``AIP.descriptive`` and the search
    index is refreshed, in one transaction; that step is repeated by every
    rerun (it is the same write), so a crash between the commit and it is
    mended by running this again. The staging tar goes last.
    """
    from preservation.storage import service as storage

    with session_scope(ctx.sessions) as s:
        version = _version_row(s, version_id)
        aip_id, number, reason = version.aip_id, version.number, version.reason
    hook = None
    if reason == "migration":
        # Its files become current in the very transaction that commits it.
        from preservation.migrate.version import switch_files

        hook = switch_files
    if not storage.commit_version(ctx, version_id, on_commit=hook):
        raise SiteUnavailableError(
            f"AIP {aip_id} version {number} does not have a verified copy at every site yet; "
            "it stays uncommitted and the AIP keeps its current version",
            aip_id=aip_id,
        )
    failpoint("version-commit")
    _make_current(ctx, version_id)
    storage.release_staging(ctx, version_id)
    bag_dir, _tar = version_staging(ctx, aip_id, number)
    shutil.rmtree(bag_dir, ignore_errors=True)
    return True


def _make_current(ctx: Context, version_id: int) -> None:
    """The committed version's record becomes the AIP's, with the search index, in one step.

    Only if no later version is committed: rerunning an old version's finish
    must never bring its record back over a newer one.
    """
    from preservation.catalog.search import index_aips

    with session_scope(ctx.sessions) as s:
        version = _version_row(s, version_id)
        reason = version.reason
    if reason == "migration":
        from preservation.migrate.version import make_current

        make_current(ctx, version_id)
        return
    with session_scope(ctx.sessions) as s:
        version = _version_row(s, version_id)
        if version.reason != METADATA_REASON:
            return
        aip = _lock_aip(s, version.aip_id)
        newer = [
            v for v in aip.versions if v.number > version.number and v.committed_at is not None
        ]
        if newer:
            return
        record = _record_of(s, version)
        if record is None:
            log.error("AIP %s v%d: no record in its modification event", aip.id, version.number)
            return
        aip.descriptive = record
        index_aips(s, [aip.id])


def finish_version(ctx: Context, version_id: int) -> bool:
    """Store a prepared version at every site, commit it, make it current; idempotent.

    Returns True when this call committed the version, False when it was
    already committed (the rest is still done again: a crash after the commit
    is mended). A site that is down raises :class:`SiteUnavailableError`
    once every site has been tried; the version stays uncommitted.
    """
    with session_scope(ctx.sessions) as s:
        already = _version_row(s, version_id).committed_at is not None
    if not already:
        _store_everywhere(ctx, version_id)
    commit_version(ctx, version_id)
    return not already


def run_version(ctx: Context, version_id: int, *, wait_seconds: float | None = None) -> bool:
    """The embedded default: finish the version here, waiting for a site that is down.

    A transient failure is retried with backoff for up to ``wait_seconds``
    (default: the ``site_wait_seconds`` setting), as ``pipeline.run_sip``
    does; past that the error is raised and the version stays uncommitted,
    to be finished by running this again.
    """
    budget = ctx.settings.site_wait_seconds if wait_seconds is None else wait_seconds
    started = time.perf_counter()
    delay = 1.0
    while True:
        try:
            return finish_version(ctx, version_id)
        except TransientError as err:
            if time.perf_counter() - started + delay > budget:
                raise
            log.warning(
                json.dumps({"version": version_id, "waiting_s": delay, "because": err.message})
            )
            time.sleep(delay)
            delay = min(delay * 2, 60.0)


def load_version_submitter(ctx: Context) -> Callable[[int], None]:
    """The ``module:callable`` that hands a version to the workers (``version_submitter``)."""
    from preservation.submission import load_callable

    return cast(
        Callable[[int], None],
        load_callable(ctx.settings.version_submitter, "version_submitter"),
    )


def submit_version(ctx: Context, version_id: int) -> None:
    """Hand a prepared version to the workers, or, with no broker, finish it in this process.

    In-process, a site still down after ``site_wait_seconds`` raises
    :class:`SiteUnavailableError`; the version is then pending, not lost.
    """
    if ctx.settings.broker_url:
        load_version_submitter(ctx)(version_id)
        return
    run_version(ctx, version_id)


def pending_versions(ctx: Context, *, tenant_id: str | None = None) -> list[VersionInfo]:
    """Versions after the first that are prepared but not committed (a site was down)."""
    with session_scope(ctx.sessions) as s:
        stmt = (
            select(AIPVersion)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(
                AIPVersion.committed_at.is_(None),
                AIPVersion.number > 1,
                AIPVersion.tar_sha256.is_not(None),
            )
            .order_by(AIPVersion.id)
        )
        if tenant_id is not None:
            stmt = stmt.where(AIP.tenant_id == tenant_id)
        return [_info(v) for v in s.scalars(stmt)]
