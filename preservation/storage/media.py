"""Media migration: one site's archive moved from an old LTO generation to a new one.

Drives read only two generations back and cartridges age, so every few years a
site's holdings must be rewritten on new media (an institution once rewrote
1.5 PB at one site over nine months). It is done one site at a time, while the
other site keeps the live copy: that is the only reason a bad read or a crash
in the middle costs nothing. So the run refuses to start unless every version
it will touch has a verified copy on a healthy cartridge at every other site.

The shape is the repair's (``recovery._rebuild``), cartridge by cartridge:

1. the site's old-generation cartridges are sealed (``full``: no new write
   lands on them, so new stores go to the other, writable cartridges);
2. each old cartridge's live copies are read in tape (``start_block``) order,
   the cartridge mounted once, into temporary files bounded in size, each
   copy read once and its sha256 checked as it is read;
3. each is written to a new-generation cartridge by ``service.write_copy``,
   which reads it back whole and checks its sha256 before the row is
   ``verified`` and records the PREMIS ``replication`` event naming both
   cartridges; only then is the old row ``discarded`` ("migrated to ...");
4. an old cartridge with nothing live left on it is ``retired``.

Disposed AIPs' versions are not copied: their bytes stay behind on the old
cartridge, which is how the space they hold is finally reclaimed.

Crash safety comes from that order. A SIGKILL leaves at most a ``writing``
row on a new cartridge (discarded, or its whole file adopted, by the next
run's ``write_copy``), or a version verified on both generations whose old
row the next run discards without copying again. A switched copy is always a
verified one. One run per site at a time: a lock file under
``staging/media/`` says so, and the kernel drops it with a killed process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    AIPState,
    AIPVersion,
    Cartridge,
    CartridgeState,
    CopyStatus,
    TapeCopy,
)
from preservation.context import Context
from preservation.errors import (
    ConflictError,
    DeviceBusyError,
    InvalidRequestError,
    NotFoundError,
    PreservationError,
    SiteUnavailableError,
    StorageError,
)
from preservation.failpoints import failpoint
from preservation.storage import planning
from preservation.storage.planning import RecallItem
from preservation.storage.recovery import DEFAULT_BATCH_BYTES, discard_stale_writes, read_copy
from preservation.storage.service import release_drives, write_copy
from preservation.storage.sites import get_site

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "MigrationReport",
    "migrate_media",
    "missing_elsewhere",
]

log = logging.getLogger(__name__)

_MEDIA_RE = re.compile(r"L[0-9A-Z]")
#: The AIPs whose copies must survive a migration; disposed and discarded ones keep nothing.
_LIVE_AIPS = (AIPState.ACTIVE, AIPState.PENDING)

Progress = Callable[[str, int, int], None]


@dataclass
class MigrationReport:
    """What one run did; ``done`` once nothing live is left on the old generation."""

    site: str
    from_media: str
    to_media: str
    versions_copied: int = 0
    bytes_copied: int = 0
    #: One entry per version moved: ids, old and new cartridge and copy.
    copies: list[dict[str, Any]] = field(default_factory=list)
    cartridges_sealed: list[str] = field(default_factory=list)
    cartridges_retired: list[str] = field(default_factory=list)
    #: Versions of disposed AIPs on the old cartridges: left there, never copied.
    skipped_disposed: int = 0
    #: Bytes of disposed copies on the cartridges retired by this run: space won back.
    reclaimed_bytes: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: Old cartridges that are suspect or failed: the repair rebuilds and retires them.
    left_for_repair: list[str] = field(default_factory=list)
    #: WRITING rows left by crashes long ago and discarded first (copy ids).
    stale_writes: list[int] = field(default_factory=list)
    #: Live versions still on the old generation at the site after this run.
    remaining: int = 0
    elapsed_seconds: float = 0.0

    @property
    def done(self) -> bool:
        return self.remaining == 0 and not self.failed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["done"] = self.done
        out["elapsed_seconds"] = round(self.elapsed_seconds, 3)
        return out


@dataclass(frozen=True)
class _Old:
    """One verified copy on an old-generation cartridge, and the version it belongs to."""

    copy_id: int
    version_id: int
    aip_id: str
    number: int
    barcode: str
    start_block: int | None
    size: int


def _of_media(column: Any, media: str) -> Any:
    """Barcodes end in the LTO media id (``A00001L7``): the generation is in the name."""
    return column.like(f"%{media}")


def _check_request(ctx: Context, site: str, from_media: str, to_media: str) -> None:
    sites = ctx.settings.sites
    if site not in sites:
        raise NotFoundError(f"no site {site!r}; configured: {', '.join(sites)}", rule="site")
    for option, media in (("--from", from_media), ("--to", to_media)):
        if not _MEDIA_RE.fullmatch(media):
            raise InvalidRequestError(
                f"{option} {media!r} is not an LTO media id (L7, L8, L9, LA ...)",
                rule="lto-media-id",
                field=option,
            )
    if from_media == to_media:
        raise InvalidRequestError(
            f"--from and --to are both {from_media}: a migration goes to another generation",
            rule="lto-media-id",
            field="--to",
        )


# -- what is on the old generation ---------------------------------------------------------


def _old_copies(session: Session, site: str, from_media: str) -> list[_Old]:
    """Live verified copies on the site's old cartridges that still count (healthy ones)."""
    rows = session.execute(
        select(
            TapeCopy.id,
            TapeCopy.aip_version_id,
            AIPVersion.aip_id,
            AIPVersion.number,
            TapeCopy.barcode,
            TapeCopy.start_block,
            TapeCopy.length,
        )
        .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
        .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
        .join(AIP, AIP.id == AIPVersion.aip_id)
        .where(
            TapeCopy.site == site,
            TapeCopy.status == CopyStatus.VERIFIED,
            _of_media(TapeCopy.barcode, from_media),
            Cartridge.state.not_in(list(planning.BAD_CARTRIDGE_STATES)),
            AIP.state.in_(_LIVE_AIPS),
        )
    ).all()
    return [_Old(*row) for row in rows]


def _already_on_new(
    session: Session, site: str, to_media: str, version_ids: list[int]
) -> dict[int, tuple[int, str]]:
    """Versions a killed run already verified on the new generation: (copy id, barcode)."""
    if not version_ids:
        return {}
    found: dict[int, tuple[int, str]] = {}
    for vid, cid, barcode in session.execute(
        select(TapeCopy.aip_version_id, TapeCopy.id, TapeCopy.barcode)
        .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
        .where(
            TapeCopy.site == site,
            TapeCopy.status == CopyStatus.VERIFIED,
            TapeCopy.aip_version_id.in_(version_ids),
            _of_media(TapeCopy.barcode, to_media),
            Cartridge.state.not_in(list(planning.BAD_CARTRIDGE_STATES)),
        )
        .order_by(TapeCopy.id)
    ):
        found.setdefault(vid, (cid, barcode))
    return found


def missing_elsewhere(
    session: Session, site: str, sites: tuple[str, ...], version_ids: list[int]
) -> list[dict[str, Any]]:
    """Versions lacking a verified copy on a healthy cartridge at some site other than ``site``.

    Each entry names the AIP, the version number and the site short of a copy:
    while the migration runs, that copy is the one the archive counts on.
    """
    others = [s for s in sites if s != site]
    if not version_ids:
        return []
    have: set[tuple[int, str]] = set()
    for vid, copy_site in session.execute(
        select(TapeCopy.aip_version_id, TapeCopy.site)
        .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
        .where(
            TapeCopy.aip_version_id.in_(version_ids),
            TapeCopy.site.in_(others),
            TapeCopy.status == CopyStatus.VERIFIED,
            Cartridge.state.not_in(list(planning.BAD_CARTRIDGE_STATES)),
        )
    ):
        have.add((vid, copy_site))
    names = dict(
        (vid, (aip_id, number))
        for vid, aip_id, number in session.execute(
            select(AIPVersion.id, AIPVersion.aip_id, AIPVersion.number).where(
                AIPVersion.id.in_(version_ids)
            )
        )
    )
    missing = []
    for vid in sorted(version_ids):
        lacking = [s for s in others if (vid, s) not in have] if others else ["(no other site)"]
        for other in lacking:
            aip_id, number = names[vid]
            missing.append({"aip_id": aip_id, "version": number, "site": other})
    return missing


def _refuse_missing(site: str, missing: list[dict[str, Any]]) -> ConflictError:
    shown = "; ".join(f"AIP {m['aip_id']} v{m['version']} at {m['site']}" for m in missing[:20])
    more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
    return ConflictError(
        f"refusing to migrate site {site}: {len(missing)} version(s) it would rewrite have "
        f"no verified copy on a healthy cartridge at another site: {shown}{more}. Rule "
        "'verified-copy-elsewhere': while one site is rewritten, the other must hold a "
        "verified copy of everything it touches; run `preservation repair` (or audit) "
        "until it does, then migrate",
        rule="verified-copy-elsewhere",
        site=site,
        missing=missing,
    )


# -- the run --------------------------------------------------------------------------------


def migrate_media(
    ctx: Context,
    site: str,
    from_media: str,
    to_media: str,
    *,
    limit: int | None = None,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Progress | None = None,
) -> MigrationReport:
    """Move every live version on ``site``'s ``from_media`` cartridges to ``to_media`` ones.

    ``limit`` bounds the versions moved by this run (the unit of work, so a
    nightly window is predictable); the next run continues where it stopped,
    in the same cartridge and tape order. ``progress(what, done, total)`` is
    told of each version and each finished cartridge.
    """
    started = time.monotonic()
    _check_request(ctx, site, from_media, to_media)
    if limit is not None and limit < 1:
        raise InvalidRequestError("--limit must be at least 1", rule="limit", field="--limit")
    the_site = get_site(ctx, site)
    the_site.check_available()
    report = MigrationReport(site=site, from_media=from_media, to_media=to_media)
    try:
        with _one_run_per_site(ctx, site) as workdir:
            _run(ctx, report, workdir, limit, max_batch_bytes, progress or _quiet)
    finally:
        release_drives(ctx)
    report.elapsed_seconds = time.monotonic() - started
    return report


def _quiet(what: str, done: int, total: int) -> None:
    return None


@contextmanager
def _one_run_per_site(ctx: Context, site: str) -> Iterator[Path]:
    """A work folder no other run of this site uses; what a killed run left in it goes."""
    root = ctx.settings.staging_dir / "media"
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / f"{site}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"a media migration of site {site} is already running (rule "
                "'one-migration-per-site'); wait for it to finish",
                rule="one-migration-per-site",
                site=site,
            ) from None
        workdir = root / site
        shutil.rmtree(workdir, ignore_errors=True)  # temporary files of a killed run
        workdir.mkdir()
        try:
            yield workdir
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        os.close(fd)


def _run(
    ctx: Context,
    report: MigrationReport,
    workdir: Path,
    limit: int | None,
    max_batch_bytes: int,
    progress: Progress,
) -> None:
    site, from_media, to_media = report.site, report.from_media, report.to_media
    sites = tuple(ctx.settings.sites)
    with session_scope(ctx.sessions) as session:
        old = _old_copies(session, site, from_media)
        done_before = _already_on_new(session, site, to_media, sorted({o.version_id for o in old}))
        report.skipped_disposed = _disposed_versions(session, site, from_media)
        report.left_for_repair = list(
            session.scalars(
                select(Cartridge.barcode)
                .where(
                    Cartridge.site == site,
                    _of_media(Cartridge.barcode, from_media),
                    Cartridge.state.in_([CartridgeState.SUSPECT, CartridgeState.FAILED]),
                )
                .order_by(Cartridge.barcode)
            )
        )
    mounted = get_site(ctx, site).mounted_barcodes()
    ordered = [
        item.key
        for item in planning.order_recalls(
            (RecallItem(o.barcode, o.start_block, o, o.size) for o in old), mounted=mounted
        )
    ]
    # The unit of --limit is the version, placed by its first copy in tape order; a
    # second old copy of it (rare) is switched with the first, never copied twice.
    first: dict[int, _Old] = {}
    for o in ordered:
        first.setdefault(o.version_id, o)
    work = list(first.values())[:limit] if limit is not None else list(first.values())
    chosen = [o.version_id for o in work]
    with session_scope(ctx.sessions) as session:
        missing = missing_elsewhere(session, site, sites, chosen)
    if missing:
        raise _refuse_missing(site, missing)
    # The run starts here: nothing was changed before the checks.
    report.stale_writes = discard_stale_writes(ctx)
    to_copy = [o for o in work if o.version_id not in done_before]
    if to_copy:
        _check_new_media(ctx, site, to_media)
    report.cartridges_sealed = _seal(ctx, site, from_media)
    avoid = _not_new_media(ctx, site, to_media)
    total = len(chosen)
    moved: set[int] = set()
    progress("versions", 0, total)
    # A killed run verified these on the new generation already: only the switch is left.
    resumed = [(o, *done_before[o.version_id]) for o in work if o.version_id in done_before]
    if resumed:
        _switch(ctx, site, from_media, to_media, [(o, cid, bc) for o, cid, bc in resumed])
        for o, new_id, new_barcode in resumed:
            moved.add(o.version_id)
            report.copies.append(_entry(o, new_id, new_barcode, copied=False))
        progress("versions", len(moved), total)
    by_cartridge: dict[str, list[_Old]] = {}
    for o in to_copy:
        by_cartridge.setdefault(o.barcode, []).append(o)
    cartridges = list(by_cartridge)
    progress("cartridges", 0, len(cartridges))
    for index, barcode in enumerate(cartridges, 1):
        for batch in planning.batch_recalls(
            [RecallItem(o.barcode, o.start_block, o, o.size) for o in by_cartridge[barcode]],
            max_bytes=max_batch_bytes,
        ):
            _migrate_batch(
                ctx, report, workdir, [i.key for i in batch], avoid, moved, total, progress
            )
        report.cartridges_retired += _retire_emptied(ctx, report, site, from_media, [barcode])
        get_site(ctx, site).release(barcode)  # back to its slot: the drive is for the next one
        progress("cartridges", index, len(cartridges))
    report.cartridges_retired += _retire_emptied(ctx, report, site, from_media, None)
    if report.cartridges_retired:
        _rewrite_journal(ctx, site)
    with session_scope(ctx.sessions) as session:
        report.remaining = len({o.version_id for o in _old_copies(session, site, from_media)})


def _rewrite_journal(ctx: Context, site: str) -> None:
    """The journal files that lived on the retired cartridges, written again on the new ones.

    They are regenerated from the catalogue (and must hash as they were cut), so
    no old cartridge is read for them; a failure leaves them to the next sync.
    """
    from preservation.evidence.on_tape import write_pending

    try:
        written = write_pending(ctx, sites=[site])
    except PreservationError as err:
        log.warning("media migration: the journal at %s waits for the next sync: %s", site, err)
        return
    if written.written:
        log.info("media migration: %d journal file(s) rewritten at %s", written.written, site)


def _entry(o: _Old, new_id: int, new_barcode: str, *, copied: bool) -> dict[str, Any]:
    return {
        "version_id": o.version_id,
        "aip_id": o.aip_id,
        "version": o.number,
        "old_copy": o.copy_id,
        "old_barcode": o.barcode,
        "new_copy": new_id,
        "new_barcode": new_barcode,
        "bytes": o.size,
        "copied": copied,
    }


def _disposed_versions(session: Session, site: str, from_media: str) -> int:
    """Versions of disposed AIPs still on old cartridges in service: left behind, not copied."""
    return len(
        set(
            session.scalars(
                select(TapeCopy.aip_version_id)
                .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
                .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
                .join(AIP, AIP.id == AIPVersion.aip_id)
                .where(
                    TapeCopy.site == site,
                    _of_media(TapeCopy.barcode, from_media),
                    TapeCopy.status.in_([CopyStatus.DISPOSED, CopyStatus.VERIFIED]),
                    AIP.state == AIPState.DISPOSED,
                    Cartridge.state != CartridgeState.RETIRED,
                )
            )
        )
    )


def _check_new_media(ctx: Context, site: str, to_media: str) -> None:
    """Something must take the copies before anything is sealed."""
    with session_scope(ctx.sessions) as session:
        writable = session.scalar(
            select(Cartridge.barcode)
            .where(
                Cartridge.site == site,
                _of_media(Cartridge.barcode, to_media),
                Cartridge.state.in_(list(planning.WRITABLE_STATES)),
            )
            .limit(1)
        )
    if writable is None:
        raise StorageError(
            f"site {site} has no writable {to_media} cartridge (rule 'new-media-present'): "
            f"load {to_media} cartridges into its library first",
            rule="new-media-present",
            site=site,
        )


def _seal(ctx: Context, site: str, from_media: str) -> list[str]:
    """Old cartridges take no new write from now on, whoever stores (one UPDATE)."""
    with session_scope(ctx.sessions) as session:
        where = (
            Cartridge.site == site,
            _of_media(Cartridge.barcode, from_media),
            Cartridge.state.in_(list(planning.WRITABLE_STATES)),
        )
        sealed = list(session.scalars(select(Cartridge.barcode).where(*where)))
        if sealed:
            session.execute(
                update(Cartridge)
                .where(*where)
                .values(state=CartridgeState.FULL)
                .execution_options(synchronize_session=False)
            )
    if sealed:
        log.info("media migration: sealed %s at %s", ", ".join(sealed), site)
    return sorted(sealed)


def _not_new_media(ctx: Context, site: str, to_media: str) -> frozenset[str]:
    """The site's cartridges of any other generation: ``write_copy`` must not pick them."""
    with session_scope(ctx.sessions) as session:
        return frozenset(
            session.scalars(
                select(Cartridge.barcode).where(
                    Cartridge.site == site, ~_of_media(Cartridge.barcode, to_media)
                )
            )
        )


def _migrate_batch(
    ctx: Context,
    report: MigrationReport,
    workdir: Path,
    batch: list[_Old],
    avoid: frozenset[str],
    moved: set[int],
    total: int,
    progress: Progress,
) -> None:
    """Read the batch off its old cartridge in tape order, then write and verify each copy."""
    folder = workdir / uuid.uuid4().hex
    folder.mkdir()
    try:
        fetched: list[tuple[_Old, Path]] = []
        for o in batch:
            tmp = folder / f"{o.copy_id}.tar"
            problem = _fetch(ctx, o, tmp)
            if problem is not None:
                report.failed.append(_failure(o, problem))
                continue
            fetched.append((o, tmp))
        for o, tmp in fetched:
            try:
                new = write_copy(
                    ctx,
                    o.version_id,
                    report.site,
                    tmp,
                    reason=(
                        f"media migration {report.from_media} to {report.to_media} from "
                        f"cartridge {o.barcode} (replaces copy {o.copy_id})"
                    ),
                    avoid=avoid,
                )
            except SiteUnavailableError:
                raise
            except ConflictError as err:  # disposed of meanwhile: nothing to keep
                log.info("media migration: %s v%d skipped: %s", o.aip_id, o.number, err)
                report.skipped_disposed += 1
                continue
            except PreservationError as err:
                report.failed.append(_failure(o, str(err)))
                continue
            finally:
                tmp.unlink(missing_ok=True)
            _switch(
                ctx, report.site, report.from_media, report.to_media, [(o, new.id, new.barcode)]
            )
            report.versions_copied += 1
            report.bytes_copied += o.size
            report.copies.append(_entry(o, new.id, new.barcode, copied=True))
            moved.add(o.version_id)
            progress("versions", len(moved), total)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fetch(ctx: Context, o: _Old, dest: Path) -> str | None:
    """Read the old copy (sha256 checked); if it fails, another site's verified copy.

    A failed read is recorded by ``read_copy`` (copy failed, cartridge error
    counted), so the repair sees it whatever happens next. Returns None once
    ``dest`` holds the version's bytes, else what went wrong.
    """
    try:
        read_copy(ctx, o.copy_id, dest)
        return None
    except SiteUnavailableError:
        raise
    except DeviceBusyError as err:  # nothing wrong with the copy: the next run reads it
        return f"{o.barcode} is busy in another process ({err}); run the migration again"
    except PreservationError as err:
        problems = [f"{o.barcode}: {err}"]
        log.warning("media migration: copy %d on %s unreadable: %s", o.copy_id, o.barcode, err)
    with session_scope(ctx.sessions) as session:
        elsewhere = list(
            session.scalars(
                select(TapeCopy.id)
                .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
                .where(
                    TapeCopy.aip_version_id == o.version_id,
                    TapeCopy.id != o.copy_id,
                    TapeCopy.status == CopyStatus.VERIFIED,
                    Cartridge.state.not_in(list(planning.BAD_CARTRIDGE_STATES)),
                )
                .order_by(TapeCopy.site, TapeCopy.id)
            )
        )
    for copy_id in elsewhere:
        try:
            read_copy(ctx, copy_id, dest)
            return None
        except PreservationError as err:
            problems.append(f"copy {copy_id}: {err}")
    return "no copy could be read: " + "; ".join(problems)


def _failure(o: _Old, error: str) -> dict[str, Any]:
    return {
        "version_id": o.version_id,
        "aip_id": o.aip_id,
        "version": o.number,
        "barcode": o.barcode,
        "error": error[:2000],
    }


def _switch(
    ctx: Context,
    site: str,
    from_media: str,
    to_media: str,
    moves: list[tuple[_Old, int, str]],
) -> None:
    """Old copies stop counting, in one transaction: only ever once the new one is verified.

    Every verified copy of the version on the site's old generation goes, not
    only the one that was read: a version is moved once, whatever it had there.
    """
    failpoint("media-switch")  # new copy verified, old one not yet discarded: both count
    with session_scope(ctx.sessions) as session:
        for o, new_id, new_barcode in moves:
            session.execute(
                update(TapeCopy)
                .where(
                    TapeCopy.aip_version_id == o.version_id,
                    TapeCopy.site == site,
                    TapeCopy.status == CopyStatus.VERIFIED,
                    _of_media(TapeCopy.barcode, from_media),
                )
                .values(
                    status=CopyStatus.DISCARDED,
                    error=f"migrated to {to_media}: copy {new_id} on {new_barcode}",
                )
                .execution_options(synchronize_session=False)
            )
    for o, _new_id, new_barcode in moves:
        log.info("media migration: %s v%d %s -> %s", o.aip_id, o.number, o.barcode, new_barcode)


def _retire_emptied(
    ctx: Context,
    report: MigrationReport,
    site: str,
    from_media: str,
    barcodes: list[str] | None,
) -> list[str]:
    """Sealed old cartridges with nothing live on them leave service (one UPDATE).

    A ``writing`` row counts as live: a store that raced the seal may still
    finish it, and the next run then moves that copy too.
    """
    with session_scope(ctx.sessions) as session:
        live = (
            select(TapeCopy.barcode)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(
                TapeCopy.site == site,
                TapeCopy.status.in_([CopyStatus.VERIFIED, CopyStatus.WRITING]),
                AIP.state.in_(_LIVE_AIPS),
            )
        )
        stmt = select(Cartridge.barcode, Cartridge.reclaimable).where(
            Cartridge.site == site,
            _of_media(Cartridge.barcode, from_media),
            Cartridge.state == CartridgeState.FULL,
            Cartridge.barcode.not_in(live),
        )
        if barcodes is not None:
            stmt = stmt.where(Cartridge.barcode.in_(barcodes))
        emptied = session.execute(stmt).all()
        if emptied:
            session.execute(
                update(Cartridge)
                .where(Cartridge.barcode.in_([b for b, _ in emptied]))
                .values(state=CartridgeState.RETIRED)
                .execution_options(synchronize_session=False)
            )
    report.reclaimed_bytes += sum(r or 0 for _, r in emptied)
    retired = sorted(b for b, _ in emptied)
    if retired:
        log.info("media migration: retired %s at %s", ", ".join(retired), site)
    return retired
