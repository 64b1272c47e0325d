"""Archival storage stages: store an AIP version at one site, commit it, release staging.

The promise read from the catalogue is "two verified copies, at two sites, on
different cartridges". These functions keep it under crashes by ordering their
commits:

1. a ``TapeCopy`` row in state WRITING is committed *before* any byte goes to
   tape, so a crash leaves a visible row that never counts as a copy;
2. the tar is streamed once (its digest, known since packing, goes to the LTFS
   index unhashed), the index synced, the file read back and its sha256
   compared: the one hash pass, on the bytes from tape; only then is the row
   VERIFIED;
3. ``commit_version`` makes the AIP active only when every configured site has a
   verified copy on its own cartridge; ``release_staging`` deletes the staging
   tar only after that.

A rerun after a crash discards stale WRITING rows for the same (version, site)
and starts again (or adopts the file if the crash came after the index sync);
``recovery.repair`` discards WRITING rows that no rerun will ever touch, once
they are older than a grace period and their cartridge is in no drive.
Each stage function takes ids, opens its own short transactions and is safe
to run again. Faults are expected: a cartridge that is full, will not load,
holds the wrong volume, or fails to write or read back is noted in the
catalogue and the next cartridge of the pool is tried.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from preservation import __version__
from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    AIPState,
    AIPVersion,
    Cartridge,
    CartridgeState,
    CopyStatus,
    TapeCopy,
    utcnow,
)
from preservation.context import Context
from preservation.errors import (
    ConfigurationError,
    ConflictError,
    DeviceBusyError,
    FixityMismatchError,
    LTFSFormatError,
    MediaError,
    NotFoundError,
    StorageError,
    TapeFullError,
    WrongCartridgeError,
)
from preservation.failpoints import failpoint
from preservation.storage import planning
from preservation.storage.ltfs import BLOCK_SIZE, LTFSVolume
from preservation.storage.planning import CartridgeView, ErrorKind
from preservation.storage.sites import CACHE_KEY, FeedMeter, Site, get_site

__all__ = [
    "AGENT",
    "CopyInfo",
    "commit_version",
    "ensure_sites",
    "has_safe_copies",
    "list_cartridges",
    "note_cartridge_error",
    "read_back",
    "release_drives",
    "release_staging",
    "show_cartridge",
    "SideFileCopy",
    "write_side_file",
    "write_side_files",
    "store_version",
    "volume_path",
    "write_copy",
]

log = logging.getLogger(__name__)

AGENT = f"preservation {__version__}"
MAX_ATTEMPTS = 4  # cartridges tried for one copy before the store gives up


@dataclass(frozen=True)
class CopyInfo:
    """One tape copy as callers see it (a plain snapshot, not a live ORM row)."""

    id: int
    version_id: int
    site: str
    barcode: str
    volume_uuid: str | None
    path: str
    start_block: int | None
    length: int
    sha256: str
    status: str
    written_at: datetime | None
    verified_at: datetime | None
    error: str | None = None

    @classmethod
    def from_row(cls, row: TapeCopy) -> CopyInfo:
        return cls(
            id=row.id,
            version_id=row.aip_version_id,
            site=row.site,
            barcode=row.barcode,
            volume_uuid=row.volume_uuid,
            path=row.path,
            start_block=row.start_block,
            length=row.length,
            sha256=row.sha256,
            status=str(row.status.value),
            written_at=row.written_at,
            verified_at=row.verified_at,
            error=row.error,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("written_at", "verified_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


def volume_path(tenant_id: str, aip_id: str, number: int) -> str:
    """Where a version lives on every cartridge: readable without our catalogue."""
    return f"/{tenant_id}/{aip_id}/v{number}.tar"


# -- stage: store ------------------------------------------------------------------------------


def store_version(ctx: Context, version_id: int, site: str) -> CopyInfo:
    """Write the version's staging tar to ``site``, read it back, and record a verified copy.

    Idempotent: an existing verified copy at the site is returned untouched.
    Raises SiteUnavailableError (transient) when the site is down, so the task
    is retried and the AIP stays pending.
    """
    if site not in ctx.settings.sites:
        raise ConfigurationError(f"unknown site {site!r}; configured: {ctx.settings.sites}")
    with session_scope(ctx.sessions) as session:
        version = _version(session, version_id)
        existing = _verified_at_site(session, version_id, site)
        if existing is not None:
            return CopyInfo.from_row(existing)
        staging = version.staging_path
        aip_id, number = version.aip_id, version.number
    the_site = get_site(ctx, site)
    the_site.check_available()
    if not staging or not Path(staging).is_file():
        raise StorageError(
            f"AIP {aip_id} v{number}: the staging tar is gone and site {site} has "
            "no verified copy; run the repair, which copies from the other site",
            aip_id=aip_id,
            path=staging,
        )
    return write_copy(ctx, version_id, site, Path(staging), reason="store")


def write_copy(
    ctx: Context,
    version_id: int,
    site: str,
    source: Path,
    *,
    reason: str = "store",
    avoid: Collection[str] = (),
) -> CopyInfo:
    """Put one verified copy of the version on a cartridge of ``site``, from ``source``.

    The engine shared by the store stage and repair: picks cartridges with
    :func:`planning.candidate_cartridges`, tries them in turn, and notes every
    cartridge fault in the catalogue. ``source`` must hold exactly the
    version's recorded bytes (its sha256 is checked while writing).
    """
    the_site = get_site(ctx, site)
    with the_site.lock:
        the_site.check_available()
        with session_scope(ctx.sessions) as session:
            version = _version(session, version_id)
            if version.tar_sha256 is None or version.tar_size is None:
                raise StorageError(
                    f"AIP {version.aip_id} v{version.number} has no recorded tar digest",
                    aip_id=version.aip_id,
                )
            aip = version.aip
            if aip.state == AIPState.DISPOSED:
                # A store or repair that raced the disposal must not put it back on tape.
                raise ConflictError(
                    f"AIP {aip.id} was disposed of: no copy of it is written any more",
                    aip_id=aip.id,
                    rule="disposed",
                )
            job = _Job(
                version_id=version_id,
                aip_id=aip.id,
                tenant_id=aip.tenant_id,
                number=version.number,
                path=volume_path(aip.tenant_id, aip.id, version.number),
                sha256=version.tar_sha256,
                size=version.tar_size,
                site=site,
                reason=reason,
            )
            _discard_stale_writes(session, version_id, site)
            exclude = set(avoid) | _barcodes_to_avoid(session, version_id, site)
        return _write_with_retries(ctx, the_site, job, source, exclude)


@dataclass(frozen=True)
class _Job:
    version_id: int
    aip_id: str
    tenant_id: str
    number: int
    path: str
    sha256: str
    size: int
    site: str
    reason: str


def _write_with_retries(
    ctx: Context, site: Site, job: _Job, source: Path, exclude: set[str]
) -> CopyInfo:
    problems: list[str] = []
    busy = 0
    attempts = 0
    tried: set[str] = set()
    while attempts < MAX_ATTEMPTS:
        with session_scope(ctx.sessions) as session:
            views = _cartridge_views(session, site)
        candidates = planning.candidate_cartridges(views, job.size, exclude=exclude | tried)
        if not candidates:
            break
        barcode = candidates[0]
        tried.add(barcode)
        attempts += 1
        try:
            return _attempt(ctx, site, job, source, barcode)
        except _Skip as skip:
            problems.append(f"{barcode}: {skip}")
            if skip.busy:
                busy += 1
                attempts -= 1  # a busy cartridge is not a failed attempt
    detail = "; ".join(problems) or "no writable cartridge has room"
    _record_replication(ctx, job, None, "failure", detail)
    if busy and busy == len(problems):
        raise DeviceBusyError(
            f"site {job.site}: every usable cartridge or drive is busy ({detail})",
            aip_id=job.aip_id,
        )
    raise StorageError(
        f"AIP {job.aip_id} v{job.number}: no copy could be written at site {job.site} ({detail})",
        aip_id=job.aip_id,
        site=job.site,
    )


class _Skip(Exception):
    """This cartridge cannot take the copy now; try the next one."""

    def __init__(self, message: str, *, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy


def _attempt(ctx: Context, site: Site, job: _Job, source: Path, barcode: str) -> CopyInfo:
    volume = _open_for_write(ctx, site, barcode)
    adopted = False
    if volume.exists(job.path):
        entry = volume.stat(job.path)
        if entry.sha256 != job.sha256 or entry.size != job.size:
            raise _Skip(f"{job.path} already holds other bytes (an earlier failed copy)")
        adopted = True  # a crash came after the index sync: the file is whole, verify it
    elif volume.free_bytes < job.size:
        _set_cartridge(ctx, barcode, state=CartridgeState.FULL, volume=volume)
        raise _Skip("not enough room left")
    copy_id = _new_copy_row(ctx, job, barcode, volume)
    if not adopted:
        _write_file(ctx, site, job, source, barcode, volume, copy_id)
    entry = volume.stat(job.path)
    with session_scope(ctx.sessions) as session:
        row = session.get_one(TapeCopy, copy_id)
        row.start_block = entry.start_block
        row.volume_uuid = volume.volume_uuid
        row.written_at = utcnow()  # until now it said when the write began
        _update_usage(session, barcode, volume)
    # Crash points for the SIGKILL tests: the file is on tape and in the index,
    # its row still WRITING, so a rerun must discard or adopt it, never count it.
    failpoint("store")
    try:
        read_back(volume, job.path, job.sha256)
    except (MediaError, FixityMismatchError) as err:
        if isinstance(err, FixityMismatchError) and not adopted and _source_changed(source, job):
            # Not the cartridge's fault: the staging tar no longer holds the
            # recorded bytes, so no copy of it may ever count.
            _fail_copy(ctx, copy_id, CopyStatus.FAILED, "the staging tar changed")
            raise FixityMismatchError(
                f"AIP {job.aip_id} v{job.number}: the source tar no longer matches the "
                f"catalogue's sha256 {job.sha256}; the source is damaged",
                aip_id=job.aip_id,
                path=source,
                expected=job.sha256,
            ) from err
        _fail_copy(ctx, copy_id, CopyStatus.FAILED, f"read-back failed: {err}")
        note_cartridge_error(ctx, barcode, ErrorKind.READ)
        _record_replication(ctx, job, barcode, "failure", f"read-back failed: {err}")
        if isinstance(err, MediaError):
            site.release(barcode)
        raise _Skip(f"read-back failed: {err}") from err
    failpoint("verify")  # read back and matched, but not yet VERIFIED in the catalogue
    with session_scope(ctx.sessions) as session:
        row = session.get_one(TapeCopy, copy_id)
        row.status = CopyStatus.VERIFIED
        row.verified_at = utcnow()
        row.error = None
        _record_replication_in(
            session, job, barcode, "success", "written, read back, sha256 matched"
        )
        info = CopyInfo.from_row(row)
    log.info("stored %s v%d at %s on %s", job.aip_id, job.number, job.site, barcode)
    return info


def _open_for_write(ctx: Context, site: Site, barcode: str) -> LTFSVolume:
    with session_scope(ctx.sessions) as session:
        cartridge = session.get_one(Cartridge, barcode)
        scratch = cartridge.state == CartridgeState.SCRATCH
    try:
        volume, _formatted = site.open_volume(barcode, format_blank=scratch)
    except DeviceBusyError as err:
        raise _Skip(str(err), busy=True) from err
    except WrongCartridgeError as err:
        note_cartridge_error(ctx, barcode, ErrorKind.WRONG)
        raise _Skip(f"wrong cartridge in the drive: {err}") from err
    except (MediaError, LTFSFormatError) as err:
        note_cartridge_error(ctx, barcode, ErrorKind.LOAD)
        raise _Skip(f"cannot be mounted: {err}") from err
    except StorageError as err:
        note_cartridge_error(ctx, barcode, ErrorKind.LOAD)
        raise _Skip(str(err)) from err
    if scratch:
        _set_cartridge(ctx, barcode, state=CartridgeState.FILLING, volume=volume)
    if volume.read_only:
        _set_cartridge(ctx, barcode, state=CartridgeState.FULL, volume=volume)
        raise _Skip("mounted read-only (write protected)")
    return volume


def _write_file(
    ctx: Context,
    site: Site,
    job: _Job,
    source: Path,
    barcode: str,
    volume: LTFSVolume,
    copy_id: int,
) -> None:
    clock = site.library.clock
    meter = FeedMeter()  # host wall time at each hand-off: the feed a real drive sees
    tape_start: list[float] = []

    def handed(total: int) -> None:
        if not meter.marks:
            tape_start.append(clock.now())
        meter.mark(total)

    try:
        # LTFS takes memoryview chunks (its Source type says bytes only: asked to widen it).
        chunks = _read_chunks(source, handed)
        # The recorded digest goes to the index unhashed; the read-back that
        # follows checks the bytes on tape against it (one hash pass, not two).
        entry = volume.write_file(
            job.path,
            chunks,  # type: ignore[arg-type]
            size=job.size,
            sha256=job.sha256,
        )
        if meter.marks:
            meter.mark(entry.size)  # write_file is back: the last byte is with the drive
            tape_seconds = clock.now() - tape_start[0]
        else:
            tape_seconds = 0.0
        volume.sync()  # the sync point: the file is now findable after any crash
        site.library.flush(barcode)
    except TapeFullError as err:
        _fail_copy(ctx, copy_id, CopyStatus.DISCARDED, f"end of medium: {err}")
        _set_cartridge(ctx, barcode, state=CartridgeState.FULL, volume=None)
        site.release(barcode)
        raise _Skip(f"full: {err}") from err
    except MediaError as err:
        _fail_copy(ctx, copy_id, CopyStatus.FAILED, f"write failed: {err}")
        note_cartridge_error(ctx, barcode, ErrorKind.WRITE)
        _record_replication(ctx, job, barcode, "failure", f"write failed: {err}")
        site.release(barcode)
        raise _Skip(f"write failed: {err}") from err
    site.stats.record(job.size, tape_seconds, meter.seconds, meter.min_rate())


def _source_changed(source: Path, job: _Job) -> bool:
    """After a failed read-back: does the staging tar itself still hold the recorded bytes?"""
    digest = hashlib.sha256()
    try:
        with open(source, "rb", buffering=0) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return True
    return digest.hexdigest() != job.sha256


def _read_chunks(path: Path, on_handoff: Callable[[int], None]) -> Iterator[memoryview]:
    """The source file in whole LTFS blocks, read into one reused buffer (no copies).

    LTFS writes whole blocks straight from the caller's buffer, so reuse is
    safe. ``on_handoff(total)`` fires as each chunk is handed over, with the
    bytes handed before it: LTFS asks for the next chunk only once the last
    one went to the drive, and asks for the first once the tape is positioned,
    so these are the host's feed times as a drive would see them.
    """
    buffer = bytearray(8 * BLOCK_SIZE)
    view = memoryview(buffer)
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while True:
            filled = 0
            while filled < len(buffer):
                got = handle.readinto(view[filled:])
                if not got:
                    break
                filled += got
            if not filled:
                return
            on_handoff(total)
            yield view[:filled]
            total += filled
            if filled < len(buffer):
                return


def read_back(volume: LTFSVolume, path: str, expected_sha256: str) -> None:
    """Read a file whole from tape and check it against the catalogue's sha256.

    The reader hashes as it goes and raises FixityMismatchError against the
    index's own ``ltfs.hash.sha256sum``; comparing that attribute with the
    catalogue's digest closes the loop without hashing twice.
    """
    with volume.open(path, verify=True) as reader:
        if reader.expected_sha256 != expected_sha256:
            raise FixityMismatchError(
                f"{path} on {volume.barcode}: the index records sha256 {reader.expected_sha256}, "
                f"the catalogue {expected_sha256}",
                path=path,
                barcode=volume.barcode,
            )
        for _chunk in reader.iter_chunks():
            pass


@dataclass(frozen=True)
class SideFileCopy:
    """Where a small file beside the AIPs landed at one site (the journal's files)."""

    site: str
    barcode: str
    start_block: int | None


def write_side_file(ctx: Context, site: str, path: str, data: bytes) -> SideFileCopy:
    """One small file beside the AIPs at ``site`` (see :func:`write_side_files`)."""
    return write_side_files(ctx, site, [(path, data)])[0]


def write_side_files(
    ctx: Context, site: str, files: Sequence[tuple[str, bytes]]
) -> list[SideFileCopy]:
    """Write small files beside the AIPs at ``site``, read them back, and say where they are.

    The tape journal (event segments, their time-stamps, evidence bundles)
    travels on the same cartridges as the AIPs, so a tape read alone brings
    back the history as well as the packages. Same cartridge choice as a
    version's copy; the files of one call go to one cartridge with **one**
    LTFS sync point (a sync costs a filemark, an index and a flush; a journal
    sync writes a few small files at once), then each is read back. A path
    already on the cartridge with the same bytes (a rerun after a crash) is
    adopted, not written twice.
    """
    if not files:
        return []
    the_site = get_site(ctx, site)
    items = [(path, data, hashlib.sha256(data).hexdigest()) for path, data in files]
    size = sum(len(data) for _, data, _ in items)
    problems: list[str] = []
    tried: set[str] = set()
    with the_site.lock:
        the_site.check_available()
        while len(tried) < MAX_ATTEMPTS:
            with session_scope(ctx.sessions) as session:
                views = _cartridge_views(session, the_site)
            candidates = planning.candidate_cartridges(views, size, exclude=tried)
            if not candidates:
                break
            barcode = candidates[0]
            tried.add(barcode)
            try:
                volume = _open_for_write(ctx, the_site, barcode)
                written = False
                for path, data, sha256 in items:
                    if volume.exists(path):
                        if volume.stat(path).sha256 != sha256:
                            raise _Skip(f"{path} already holds other bytes")
                        continue
                    volume.write_file(path, data, size=len(data), sha256=sha256)
                    written = True
                if written:
                    volume.sync()
                    the_site.library.flush(barcode)
                for path, _data, sha256 in items:
                    read_back(volume, path, sha256)
            except _Skip as skip:
                problems.append(f"{barcode}: {skip}")
                continue
            except TapeFullError as err:
                _set_cartridge(ctx, barcode, state=CartridgeState.FULL, volume=None)
                the_site.release(barcode)
                problems.append(f"{barcode}: full: {err}")
                continue
            except (MediaError, FixityMismatchError) as err:
                note_cartridge_error(ctx, barcode, ErrorKind.WRITE)
                the_site.release(barcode)
                problems.append(f"{barcode}: {err}")
                continue
            with session_scope(ctx.sessions) as session:
                _update_usage(session, barcode, volume)
            return [
                SideFileCopy(site, barcode, volume.stat(path).start_block) for path, _, _ in items
            ]
    raise StorageError(
        f"{items[0][0]} and {len(items) - 1} other file(s): no copy could be written at site "
        f"{site} ({'; '.join(problems) or 'no writable cartridge has room'})",
        path=items[0][0],
        site=site,
    )


# -- stage: commit -------------------------------------------------------------------------------


def has_safe_copies(session: Session, version_id: int, sites: Collection[str]) -> bool:
    """True when each site has a verified copy on a healthy cartridge, all cartridges distinct."""
    rows = session.execute(
        select(TapeCopy.site, TapeCopy.barcode)
        .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
        .where(
            TapeCopy.aip_version_id == version_id,
            TapeCopy.status == CopyStatus.VERIFIED,
            Cartridge.state.not_in(list(planning.BAD_CARTRIDGE_STATES)),
        )
    ).all()
    by_site: dict[str, set[str]] = {}
    for site, barcode in rows:
        by_site.setdefault(site, set()).add(barcode)
    if any(not by_site.get(site) for site in sites):
        return False
    chosen: set[str] = set()
    for site in sites:  # sites have separate pools; this guards a misconfigured catalogue
        free = by_site[site] - chosen
        if not free:
            return False
        chosen.add(min(free))
    return True


def commit_version(
    ctx: Context,
    version_id: int,
    on_commit: Callable[[Session, AIPVersion], None] | None = None,
) -> bool:
    """Make the AIP active once the version is safe at every site; False means "not yet".

    No AIP is ever called safe with one copy: a site that is down leaves the
    version uncommitted and the AIP pending. ``on_commit`` runs in the same
    transaction once the version is committed (every time: it must be
    idempotent), so what the version changes in the catalogue becomes true
    together with the version itself.
    """
    sites = tuple(ctx.settings.sites)
    with session_scope(ctx.sessions) as session:
        version = session.scalar(
            catalog.locked(select(AIPVersion).where(AIPVersion.id == version_id))
        )
        if version is None:
            raise NotFoundError(f"no AIP version {version_id}")
        if not has_safe_copies(session, version_id, sites):
            return False
        if version.committed_at is None:
            version.committed_at = utcnow()
        aip = session.scalar(catalog.locked(select(AIP).where(AIP.id == version.aip_id)))
        assert aip is not None
        uncommitted = session.scalar(
            select(func.count())
            .select_from(AIPVersion)
            .where(AIPVersion.aip_id == aip.id, AIPVersion.committed_at.is_(None))
        )
        if not uncommitted and aip.state != AIPState.ACTIVE:
            aip.state = AIPState.ACTIVE
        if on_commit is not None:
            on_commit(session, version)
        return True


def release_staging(ctx: Context, version_id: int) -> bool:
    """Delete the staging tar once the version is committed; True if it is gone."""
    with session_scope(ctx.sessions) as session:
        version = _version(session, version_id)
        if version.committed_at is None or not has_safe_copies(
            session, version_id, tuple(ctx.settings.sites)
        ):
            return False
        staging = version.staging_path
    if staging:
        Path(staging).unlink(missing_ok=True)
        with session_scope(ctx.sessions) as session:
            _version(session, version_id).staging_path = None
    return True


def on_every_site(ctx: Context, work: Callable[[str], object]) -> None:
    """Run ``work(site)`` for every site at once, one thread each, as the per-site queues do.

    The sites are independent libraries: the tar is on its way to site B while
    site A's copy is read back. Every site is tried even when another fails (a
    site down must not keep the other from its copy); the first failure is
    raised once all have finished.
    """
    from concurrent.futures import ThreadPoolExecutor

    sites = list(ctx.settings.sites)
    with ThreadPoolExecutor(max_workers=len(sites), thread_name_prefix="store") as pool:
        futures = [pool.submit(work, site) for site in sites]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise errors[0]


def release_drives(ctx: Context) -> None:
    """End every site's batch: write index partitions and return cartridges to their slots.

    Also stops each site's idle timer; the next tape operation starts it again.
    """
    for site in ctx.cache.get(CACHE_KEY, {}).values():
        with site.lock:
            site.release_all()


# -- cartridges for the CLI -------------------------------------------------------------------


def _cartridge_dict(c: Cartridge, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "barcode": c.barcode,
        "site": c.site,
        "state": str(c.state.value),
        "volume_uuid": c.volume_uuid,
        "capacity": c.capacity,
        "used": c.used,
        # Disposed copies' bytes stay on tape until a repack: still used, never free.
        "free": max(0, c.capacity - c.used),
        "reclaimable": c.reclaimable or 0,
        "errors": c.errors,
        "mounts": c.mounts or 0,
        "copies": counts,
        "updated_at": c.updated_at.isoformat() if c.updated_at else None,
    }


def list_cartridges(ctx: Context, site: str | None = None) -> list[dict[str, Any]]:
    """Every catalogued cartridge with its state and copy counts (``preservation tape ls``)."""
    ensure_sites(ctx)
    with session_scope(ctx.sessions) as session:
        stmt = select(Cartridge).order_by(Cartridge.site, Cartridge.barcode)
        if site:
            stmt = stmt.where(Cartridge.site == site)
        counts: dict[str, dict[str, int]] = {}
        for barcode, status, n in session.execute(
            select(TapeCopy.barcode, TapeCopy.status, func.count()).group_by(
                TapeCopy.barcode, TapeCopy.status
            )
        ):
            counts.setdefault(barcode, {})[str(status.value)] = n
        return [_cartridge_dict(c, counts.get(c.barcode, {})) for c in session.scalars(stmt)]


def show_cartridge(ctx: Context, barcode: str) -> dict[str, Any]:
    """One cartridge and its copies in tape order (``preservation tape show BARCODE``)."""
    ensure_sites(ctx)
    with session_scope(ctx.sessions) as session:
        cartridge = session.get(Cartridge, barcode)
        if cartridge is None:
            raise NotFoundError(f"no cartridge {barcode}", barcode=barcode)
        rows = session.execute(
            select(TapeCopy, AIPVersion.aip_id, AIPVersion.number, AIP.state)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(TapeCopy.barcode == barcode)
            .order_by(TapeCopy.start_block, TapeCopy.id)
        ).all()
        out = _cartridge_dict(cartridge, {})
        contents = []
        for copy, aip_id, number, aip_state in rows:
            item = CopyInfo.from_row(copy).to_dict()
            # A verified copy of a disposed AIP is one a down site has not removed yet.
            item.update(aip_id=aip_id, version=number, aip_state=str(aip_state.value))
            contents.append(item)
            status = item["status"]
            out["copies"][status] = out["copies"].get(status, 0) + 1
        out["contents"] = contents
        return out


def ensure_sites(ctx: Context) -> None:
    """Build every site now: cartridges registered, and a data root the libraries cannot
    use (or written cartridges beside an empty catalogue) refused before any work."""
    for name in ctx.settings.sites:
        get_site(ctx, name)


# -- catalogue helpers ----------------------------------------------------------------------------


def note_cartridge_error(ctx: Context, barcode: str, kind: ErrorKind) -> CartridgeState:
    """Count an error against a cartridge and move its state as planning decides.

    A wrong cartridge in the drive is not counted: the error count is what
    fails a cartridge (and keeps it from new writes), and a library mix-up is
    no fault of the medium. It is logged for the operator, who must find the
    cartridge that was loaded instead.
    """
    with session_scope(ctx.sessions) as session:
        cartridge = session.scalar(
            catalog.locked(select(Cartridge).where(Cartridge.barcode == barcode))
        )
        if cartridge is None:
            raise NotFoundError(f"no cartridge {barcode}", barcode=barcode)
        if kind == ErrorKind.WRONG:
            log.warning(
                "cartridge %s: the library loaded another cartridge in its place; "
                "check the slot and the barcode label",
                barcode,
            )
            return cartridge.state
        if ctx.read_only:  # reading an archive copy: the error is logged, never recorded
            log.warning("cartridge %s: %s error (not recorded: read-only)", barcode, kind)
            return cartridge.state
        cartridge.errors = (cartridge.errors or 0) + 1
        new = planning.state_after_error(cartridge.state, cartridge.errors, kind)
        if new != cartridge.state:
            log.warning(
                "cartridge %s: %s -> %s after a %s error", barcode, cartridge.state, new, kind
            )
            cartridge.state = new
        return new


def _version(session: Session, version_id: int) -> AIPVersion:
    version = session.get(AIPVersion, version_id)
    if version is None:
        raise NotFoundError(f"no AIP version {version_id}")
    return version


def _verified_at_site(session: Session, version_id: int, site: str) -> TapeCopy | None:
    return session.scalar(
        select(TapeCopy)
        .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
        .where(
            TapeCopy.aip_version_id == version_id,
            TapeCopy.site == site,
            TapeCopy.status == CopyStatus.VERIFIED,
            Cartridge.state.not_in(list(planning.BAD_CARTRIDGE_STATES)),
        )
        .order_by(TapeCopy.id)
        .limit(1)
    )


def _discard_stale_writes(session: Session, version_id: int, site: str) -> None:
    """WRITING rows left by a crashed attempt never count; mark them as such."""
    for row in session.scalars(
        select(TapeCopy).where(
            TapeCopy.aip_version_id == version_id,
            TapeCopy.site == site,
            TapeCopy.status == CopyStatus.WRITING,
        )
    ):
        row.status = CopyStatus.DISCARDED
        row.error = "interrupted before verification (crash); superseded by a new attempt"


def _barcodes_to_avoid(session: Session, version_id: int, site: str) -> set[str]:
    """Cartridges that must not take this copy: another site's, or one that already failed it."""
    avoid: set[str] = set()
    for barcode, copy_site, status in session.execute(
        select(TapeCopy.barcode, TapeCopy.site, TapeCopy.status).where(
            TapeCopy.aip_version_id == version_id
        )
    ):
        if copy_site != site or status in (CopyStatus.FAILED, CopyStatus.VERIFIED):
            avoid.add(barcode)
    return avoid


def _cartridge_views(session: Session, site: Site) -> list[CartridgeView]:
    mounted = site.mounted_barcodes()
    return [
        CartridgeView(
            barcode=c.barcode,
            state=c.state,
            free=max(0, c.capacity - c.used),
            mounted=c.barcode in mounted,
            errors=c.errors,
        )
        for c in session.scalars(select(Cartridge).where(Cartridge.site == site.name))
    ]


def _new_copy_row(ctx: Context, job: _Job, barcode: str, volume: LTFSVolume) -> int:
    with session_scope(ctx.sessions) as session:
        row = TapeCopy(
            aip_version_id=job.version_id,
            site=job.site,
            barcode=barcode,
            volume_uuid=volume.volume_uuid,
            path=job.path,
            length=job.size,
            sha256=job.sha256,
            status=CopyStatus.WRITING,
            # While WRITING, the time the write began: how repair tells a row
            # left by a crash (old, its cartridge in no drive) from a live one.
            written_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row.id


def _fail_copy(ctx: Context, copy_id: int, status: CopyStatus, error: str) -> None:
    with session_scope(ctx.sessions) as session:
        row = session.get_one(TapeCopy, copy_id)
        row.status = status
        row.error = error[:2000]


def _update_usage(session: Session, barcode: str, volume: LTFSVolume) -> None:
    cartridge = session.get_one(Cartridge, barcode)
    space = volume.device.status().partitions[1]
    if space.capacity is not None:
        cartridge.capacity = space.capacity
        # Bytes on the medium, not "no longer writable": the early-warning
        # reserve is unwritten tape and does not count as used.
        remaining = space.remaining if space.remaining is not None else volume.free_bytes
        cartridge.used = max(0, space.capacity - remaining)


def _set_cartridge(
    ctx: Context, barcode: str, *, state: CartridgeState, volume: LTFSVolume | None
) -> None:
    with session_scope(ctx.sessions) as session:
        cartridge = session.get_one(Cartridge, barcode)
        if cartridge.state not in (
            CartridgeState.SUSPECT,
            CartridgeState.FAILED,
            CartridgeState.RETIRED,
        ):
            cartridge.state = state
        if volume is not None:
            cartridge.volume_uuid = volume.volume_uuid
            _update_usage(session, barcode, volume)


def _record_replication(
    ctx: Context, job: _Job, barcode: str | None, outcome: str, detail: str
) -> None:
    with session_scope(ctx.sessions) as session:
        _record_replication_in(session, job, barcode, outcome, detail)


def _record_replication_in(
    session: Session, job: _Job, barcode: str | None, outcome: str, detail: str
) -> None:
    catalog.record_event(
        session,
        tenant_id=job.tenant_id,
        aip_id=job.aip_id,
        type="replication",
        outcome=outcome,
        detail=f"{job.reason}: v{job.number} to site {job.site}"
        + (f" cartridge {barcode}" if barcode else ""),
        outcome_detail=detail[:2000],
        agents={"executing program": [AGENT]},
        objects={
            "version": job.number,
            "site": job.site,
            "barcode": barcode,
            "path": job.path,
            "sha256": job.sha256,
        },
    )
