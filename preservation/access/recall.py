"""The recall batch: every queued DIP request served with the fewest tape movements.

Requests wait for a window (``recall_window_seconds``) so that those arriving
together share one batch. A batch then:

1. takes every queued request (each is claimed by exactly one batch);
2. works out, from the catalogue, which version tars they need, each tar once
   however many requests want it, all the tars of a forward-delta version in
   the same set;
3. plans the reads with :mod:`preservation.access.scheduling`: one mount per
   cartridge, reads in block order, the site with the cartridge already
   mounted or with drives to spare first;
4. reads; a copy that fails (read error, checksum mismatch, a cartridge that
   will not load) is marked FAILED by the read itself, the batch re-plans that
   tar on the other site's copy, and a repair is scheduled at the end;
5. packs each DIP as soon as its last tar is in (:mod:`preservation.access.package`)
   and frees the tars no other request of the batch still needs.

Progress (cartridges mounted, bytes read, files packed) is written on each
request's row as it goes, for ``dip status`` and ``GET /api/v1/dips/{id}``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from preservation.access import cache, service
from preservation.access.scheduling import (
    CartridgeVisit,
    SiteView,
    TarCopy,
    TarNeed,
    plan_first_come,
    plan_recall,
)
from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    DIP,
    AIPVersion,
    Cartridge,
    CopyStatus,
    DIPState,
    TapeCopy,
    utcnow,
)
from preservation.config import Settings
from preservation.context import Context
from preservation.errors import (
    NotFoundError,
    PreservationError,
    TransientError,
    WrongCartridgeError,
)
from preservation.storage import recovery
from preservation.storage.planning import BAD_CARTRIDGE_STATES
from preservation.storage.sites import get_site

__all__ = ["BatchReport", "backoff_seconds", "run_batch", "schedule_repair", "waiting"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def _no_progress(step: str, done: int, total: int) -> None:
    return None


@dataclass
class BatchReport:
    batch_id: str
    dips: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # Requests whose tars could not be read *now* (drives busy, a site down): queued again.
    requeued: list[str] = field(default_factory=list)
    # When the earliest of those may be tried again (seconds from now); None: none was.
    retry_after: float | None = None
    tars: int = 0
    visits: int = 0
    mounts: int = 0
    bytes_read: int = 0
    failed_copies: list[int] = field(default_factory=list)
    repair_scheduled: bool = False
    tape_seconds: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Request:
    dip_id: str
    tenant_id: str
    aip_id: str
    version: int
    kind: str
    requested_by: str
    descriptive: dict[str, list[str]]
    selection: list[service.Selected]
    versions: dict[int, int]  # version number -> aip_versions.id
    cartridges: set[str] = field(default_factory=set)
    bytes_read: int = 0
    bytes_to_read: int = 0
    reading: int = 0  # bytes of the tar being read now
    batch_id: str = ""

    @property
    def version_ids(self) -> set[int]:
        return set(self.versions.values())


# -- claim -------------------------------------------------------------------------------------


def _claim(ctx: Context, batch_id: str, dip_ids: Collection[str] | None) -> list[str]:
    """Queued requests become this batch's: an UPDATE per row, so no two batches share one."""
    with session_scope(ctx.sessions) as session:
        now = utcnow()
        # A live batch touches its rows every third of a lease (``_Heartbeat``):
        # rows untouched for a whole lease belong to a batch that died.
        stale = now - timedelta(seconds=ctx.settings.lease_seconds)
        stmt = (
            update(DIP)
            .where(
                or_(
                    and_(
                        DIP.state == DIPState.QUEUED,
                        or_(DIP.not_before.is_(None), DIP.not_before <= now),
                    ),
                    and_(
                        DIP.state.in_([DIPState.RECALLING, DIPState.BUILDING]),
                        DIP.updated_at < stale,
                    ),
                )
            )
            .values(state=DIPState.RECALLING, batch_id=batch_id, started_at=utcnow())
        )
        if dip_ids is not None:
            stmt = stmt.where(DIP.id.in_(list(dip_ids)))
        session.execute(stmt)
    with session_scope(ctx.sessions) as session:
        return list(
            session.scalars(select(DIP.id).where(DIP.batch_id == batch_id).order_by(DIP.created_at))
        )


def _load(ctx: Context, dip_ids: Sequence[str], report: BatchReport) -> list[_Request]:
    requests: list[_Request] = []
    for dip_id in dip_ids:
        try:
            with session_scope(ctx.sessions) as session:
                row = session.get_one(DIP, dip_id)
                aip = session.get_one(AIP, row.aip_id)
                service.refuse_disposed(aip)  # disposed while the request waited
                selection = service.select_files(
                    session, row.aip_id, row.version, row.kind, row.files_glob
                )
                numbers = {s.version for s in selection}
                versions = {
                    number: vid
                    for number, vid in session.execute(
                        select(AIPVersion.number, AIPVersion.id).where(
                            AIPVersion.aip_id == row.aip_id, AIPVersion.number.in_(numbers)
                        )
                    )
                }
                requests.append(
                    _Request(
                        dip_id=row.id,
                        tenant_id=row.tenant_id,
                        aip_id=row.aip_id,
                        version=row.version,
                        kind=row.kind,
                        requested_by=row.requested_by_label,
                        descriptive=dict(aip.descriptive or {}),
                        selection=selection,
                        versions=versions,
                        batch_id=report.batch_id,
                    )
                )
        except PreservationError as err:
            _fail(ctx, dip_id, err.message, report)
    return requests


def _mine(session: Session, holder: str, dip_ids: Sequence[str], **values: Any) -> int:
    """Update requests only while this batch holds them: a batch presumed dead and
    replaced must not overwrite what its successor did. Returns the rows changed."""
    if not dip_ids:
        return 0
    result = session.execute(
        update(DIP).where(DIP.id.in_(list(dip_ids)), DIP.batch_id == holder).values(**values)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """How long a request sent back waits: the window, doubling per return, at most 15 min."""
    return float(min(max(settings.recall_window_seconds, 10.0) * 2 ** min(attempts, 6), 900.0))


def _requeue(ctx: Context, dip_id: str, reason: str, report: BatchReport) -> None:
    """Back to the queue with the reason shown; it waits its backoff before a batch takes it."""
    report.requeued.append(dip_id)
    with session_scope(ctx.sessions) as session:
        attempts = session.scalar(select(DIP.attempts).where(DIP.id == dip_id)) or 0
        wait = backoff_seconds(ctx.settings, attempts)
        report.retry_after = min(report.retry_after or wait, wait)
        _mine(
            session,
            report.batch_id,
            [dip_id],
            state=DIPState.QUEUED,
            batch_id=None,
            error=reason[:2000],
            attempts=attempts + 1,
            not_before=utcnow() + timedelta(seconds=wait),
        )
    log.info("DIP %s waits for a later batch: %s", dip_id, reason)


def _fail(ctx: Context, dip_id: str, reason: str, report: BatchReport) -> None:
    report.failed[dip_id] = reason
    with session_scope(ctx.sessions) as session:
        _mine(session, report.batch_id, [dip_id], state=DIPState.FAILED, error=reason[:2000])
    log.warning("DIP %s failed: %s", dip_id, reason)


def waiting(ctx: Context) -> bool:
    """Whether a batch would find work: queued requests, or rows a dead batch left."""
    stale = utcnow() - timedelta(seconds=ctx.settings.lease_seconds)
    with session_scope(ctx.sessions) as session:
        return (
            session.scalar(
                select(DIP.id)
                .where(
                    or_(
                        DIP.state == DIPState.QUEUED,
                        and_(
                            DIP.state.in_([DIPState.RECALLING, DIPState.BUILDING]),
                            DIP.updated_at < stale,
                        ),
                    )
                )
                .limit(1)
            )
            is not None
        )


def _sweep_scratch(ctx: Context) -> None:
    """Scratch folders of batches that died (SIGKILL skips ``finally``) are removed."""
    root = ctx.settings.staging_dir / "recall"
    if not root.is_dir():
        return
    stale = utcnow() - timedelta(seconds=ctx.settings.lease_seconds)
    with session_scope(ctx.sessions) as session:
        live = set(
            session.scalars(
                select(DIP.batch_id).where(
                    DIP.state.in_([DIPState.RECALLING, DIPState.BUILDING]),
                    DIP.updated_at >= stale,
                )
            )
        )
    for entry in root.iterdir():
        try:
            uuid.UUID(entry.name)
        except ValueError:
            continue  # recover's own temporary tars live here too
        if entry.is_dir() and entry.name not in live:
            shutil.rmtree(entry, ignore_errors=True)


# -- plan --------------------------------------------------------------------------------------


def _needs(ctx: Context, version_ids: Collection[int]) -> list[TarNeed]:
    """Each tar's verified copies, as the planner sees them."""
    copies: dict[int, list[TarCopy]] = {v: [] for v in version_ids}
    with session_scope(ctx.sessions) as session:
        rows = session.execute(
            select(
                TapeCopy.id,
                TapeCopy.aip_version_id,
                TapeCopy.site,
                TapeCopy.barcode,
                TapeCopy.start_block,
                TapeCopy.length,
                Cartridge.state,
            )
            .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
            .where(
                TapeCopy.aip_version_id.in_(list(version_ids)),
                TapeCopy.status == CopyStatus.VERIFIED,
            )
        ).all()
    for cid, vid, site, barcode, block, length, state in rows:
        copies[vid].append(
            TarCopy(cid, site, barcode, block, length or 0, state not in BAD_CARTRIDGE_STATES)
        )
    return [TarNeed(v, tuple(c)) for v, c in sorted(copies.items())]


def site_views(ctx: Context) -> list[SiteView]:
    views = []
    for name in ctx.settings.sites:
        site = get_site(ctx, name)
        mounted = frozenset(site.mounted_barcodes())
        # Drives this batch may use: its own and those no other process holds. A site
        # whose drives are all busy elsewhere is planned around, like a site that is down.
        free = getattr(site.library, "free_drives", None)
        drives = len(mounted) + free() if free is not None else ctx.settings.tape_drives_per_site
        views.append(SiteView(name=name, drives=drives, mounted=mounted, down=site.is_down()))
    return views


# -- run ---------------------------------------------------------------------------------------


def run_batch(
    ctx: Context,
    *,
    dip_ids: Collection[str] | None = None,
    progress: Progress = _no_progress,
    first_come: bool = False,
    repair_inline: bool = False,
) -> BatchReport:
    """Take the queued requests (or those of ``dip_ids``) and serve them; see the module docstring.

    ``first_come`` plans each tar alone in arrival order: the naive baseline
    the benchmark measures the scheduler against, never used in service.
    """
    started = time.monotonic()
    report = BatchReport(batch_id=str(uuid.uuid4()))
    if not ctx.read_only:
        cache.evict(ctx)
    report.dips = _claim(ctx, report.batch_id, dip_ids)
    if not report.dips:
        return report
    _sweep_scratch(ctx)
    log.info("recall batch %s: %d request(s)", report.batch_id, len(report.dips))
    requests = _load(ctx, report.dips, report)
    work = ctx.settings.staging_dir / "recall" / report.batch_id
    work.mkdir(parents=True, exist_ok=True)
    clocks = _clock_now(ctx)
    mounts_before = _mounts(ctx)
    heartbeat = _Heartbeat(ctx, report.batch_id)
    try:
        _recall_and_build(ctx, requests, work, report, progress, first_come)
    except BaseException as err:
        _settle_unfinished(ctx, report, err)
        raise
    finally:
        heartbeat.stop()
        shutil.rmtree(work, ignore_errors=True)
        from preservation.storage.service import release_drives

        release_drives(ctx)  # before the clocks are read: the last unloads are tape time too
        report.mounts = _mounts(ctx) - mounts_before
        report.tape_seconds = _clock_now(ctx) - clocks
        if report.failed_copies:
            report.repair_scheduled = schedule_repair(ctx, inline=repair_inline)
        report.seconds = round(time.monotonic() - started, 3)
    log.info(
        "recall batch %s: %d ready, %d failed, %d tar(s), %d mount(s), %d bytes",
        report.batch_id,
        len(report.ready),
        len(report.failed),
        report.tars,
        report.mounts,
        report.bytes_read,
    )
    return report


class _Heartbeat:
    """Touches the batch's rows every third of a lease, so no other batch takes them over."""

    def __init__(self, ctx: Context, batch_id: str) -> None:
        self._ctx, self._batch_id = ctx, batch_id
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"recall-heartbeat-{batch_id[:8]}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        interval = max(1.0, self._ctx.settings.lease_seconds / 3)
        while not self._stop.wait(interval):
            try:
                with session_scope(self._ctx.sessions) as session:
                    session.execute(
                        update(DIP)
                        .where(
                            DIP.batch_id == self._batch_id,
                            DIP.state.in_([DIPState.RECALLING, DIPState.BUILDING]),
                        )
                        .values(updated_at=utcnow())
                    )
            except Exception:  # noqa: BLE001 - a missed beat is retried; the batch goes on
                log.warning("recall batch %s: heartbeat failed", self._batch_id, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _settle_unfinished(ctx: Context, report: BatchReport, err: BaseException) -> None:
    """A batch cut short: transient trouble queues its requests again, anything else fails them."""
    done = set(report.ready) | set(report.failed) | set(report.requeued)
    left = [d for d in report.dips if d not in done]
    if not left:
        return
    with session_scope(ctx.sessions) as session:
        if isinstance(err, TransientError | KeyboardInterrupt):
            _mine(session, report.batch_id, left, state=DIPState.QUEUED, batch_id=None, progress={})
            return
        reason = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
        _mine(
            session,
            report.batch_id,
            left,
            state=DIPState.FAILED,
            error=f"the recall batch failed: {reason}"[:2000],
        )
    for dip_id in left:
        report.failed[dip_id] = reason


def _mounts(ctx: Context) -> int:
    return sum(get_site(ctx, name).stats.mounts for name in ctx.settings.sites)


def _clock_now(ctx: Context) -> float:
    """Tape time so far, summed over the sites' libraries (simulated on the emulator)."""
    return sum(get_site(ctx, name).library.clock.now() for name in ctx.settings.sites)


def _recall_and_build(
    ctx: Context,
    requests: list[_Request],
    work: Path,
    report: BatchReport,
    progress: Progress,
    first_come: bool,
) -> None:
    wanted: dict[int, set[str]] = {}  # version id -> requests that still need it
    for r in requests:
        for vid in r.version_ids:
            wanted.setdefault(vid, set()).add(r.dip_id)
    by_id = {r.dip_id: r for r in requests}
    # In arrival order: the order the first-come baseline serves them in.
    arrival: dict[int, int] = {}
    for r in requests:  # claimed oldest first
        for vid in sorted(r.version_ids):
            arrival.setdefault(vid, len(arrival))
    needs = sorted(_needs(ctx, wanted), key=lambda n: arrival.get(n.version_id, 0))
    sizes = {n.version_id: max((c.size for c in n.copies), default=0) for n in needs}
    total = sum(sizes.values())
    for r in requests:
        r.bytes_to_read = sum(sizes.get(v, 0) for v in r.version_ids)
    progress("recall", 0, total)
    have: dict[int, Path] = {}
    excluded: set[int] = set()
    problems: dict[int, list[str]] = {}
    transient: dict[int, bool] = {}  # version id -> every failure so far was transient
    pending = [n for n in needs]
    while pending:
        sites = site_views(ctx)
        plan = (
            plan_first_come(pending, sites, exclude=excluded)
            if first_come
            else plan_recall(pending, sites, exclude=excluded)
        )
        down = {v.name for v in sites if v.down or v.drives <= 0}  # down, or drives all busy
        for vid in plan.unreadable:
            why = "; ".join(problems.get(vid, [])) or "no verified copy can be read now"
            copies = next((n.copies for n in needs if n.version_id == vid), ())
            # Busy drives, a site down: the tar is fine, only not now. Its requests wait,
            # also when another copy failed for good: the one there has not been tried.
            later = (vid in transient and transient[vid]) or any(
                c.site in down and c.copy_id not in excluded for c in copies
            )
            for dip_id in sorted(wanted.pop(vid, set())):
                if dip_id in report.failed or dip_id in report.requeued:
                    continue
                if later:
                    _requeue(ctx, dip_id, f"waiting for tape: {why}", report)
                else:
                    _fail(ctx, dip_id, f"a version tar could not be recalled: {why}", report)
        progress_made = False
        for visit in plan.visits:
            report.visits += 1
            progress_made |= _visit(
                ctx, visit, have, excluded, (problems, transient), work, report, by_id, wanted
            )
            progress("recall", report.bytes_read, total)
            _build_ready(ctx, by_id, wanted, have, work, report, progress)
        pending = [n for n in needs if n.version_id not in have and n.version_id in wanted]
        if not progress_made and not plan.visits:
            break
    report.tars = len(have)
    _build_ready(ctx, by_id, wanted, have, work, report, progress)


def _visit(
    ctx: Context,
    visit: CartridgeVisit,
    have: dict[int, Path],
    excluded: set[int],
    faults: tuple[dict[int, list[str]], dict[int, bool]],
    work: Path,
    report: BatchReport,
    by_id: dict[str, _Request],
    wanted: dict[int, set[str]],
) -> bool:
    """Read every tar of one cartridge, in block order; False if nothing could be read."""
    problems, transient = faults
    read_any = False
    for i, read in enumerate(visit.reads):
        vid = read.version_id
        if vid in have or vid not in wanted:
            continue
        dest = work / f"{vid}.tar"
        try:
            users = [by_id[d] for d in wanted.get(vid, ())]
            recovery.read_copy(
                ctx, read.copy.copy_id, dest, on_chunk=_reading(ctx, users, visit.barcode)
            )
        except PreservationError as err:
            for r in users:
                r.reading = 0
            dest.unlink(missing_ok=True)
            excluded.add(read.copy.copy_id)
            problems.setdefault(vid, []).append(f"{visit.site}/{visit.barcode}: {err.message}")
            passing = isinstance(err, TransientError)
            transient[vid] = transient.get(vid, True) and passing
            if not passing and not isinstance(err, NotFoundError | WrongCartridgeError):
                # The copy itself is bad (not a disposal, not a library mix-up): repair it.
                report.failed_copies.append(read.copy.copy_id)
            log.warning(
                "recall: copy %d (%s/%s) unusable: %s",
                read.copy.copy_id,
                visit.site,
                visit.barcode,
                err.message,
            )
            if _cartridge_lost(ctx, visit.barcode, err):
                # The rest of this cartridge is re-planned on the other site's copies.
                for rest in visit.reads[i + 1 :]:
                    excluded.add(rest.copy.copy_id)
                    problems.setdefault(rest.version_id, []).append(
                        f"{visit.site}/{visit.barcode}: {err.message}"
                    )
                    transient[rest.version_id] = transient.get(rest.version_id, True) and passing
                break
            continue
        read_any = True
        have[vid] = dest
        report.bytes_read += read.copy.size
        for dip_id in wanted.get(vid, ()):
            r = by_id[dip_id]
            r.cartridges.add(visit.barcode)
            r.bytes_read += read.copy.size
            r.reading = 0
            _note_progress(ctx, r, None)
    return read_any


def _reading(ctx: Context, users: list[_Request], barcode: str) -> Callable[[int], None]:
    """While a tar streams off tape: its requests' rows show the cartridge and the bytes,
    about once a second (a tar of terabytes takes hours)."""
    last = [0.0]
    for r in users:
        r.reading = 0
        _note_progress(ctx, r, barcode)

    def on_chunk(n: int) -> None:
        for r in users:
            r.reading += n
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            for r in users:
                _note_progress(ctx, r, barcode)

    return on_chunk


def _cartridge_lost(ctx: Context, barcode: str, err: PreservationError) -> bool:
    if isinstance(err, TransientError | WrongCartridgeError):
        return True
    with session_scope(ctx.sessions) as session:
        cartridge = session.get(Cartridge, barcode)
        return cartridge is None or cartridge.state in BAD_CARTRIDGE_STATES


def _note_progress(ctx: Context, r: _Request, mounted: str | None) -> None:
    """``cartridges``: read from so far; ``mounted``: the one being read now, if any."""
    progress: dict[str, Any] = {
        "cartridges": sorted(r.cartridges | ({mounted} if mounted else set())),
        "bytes_read": r.bytes_read + r.reading,
        "bytes_to_read": r.bytes_to_read,
    }
    if mounted:
        progress["mounted"] = mounted
    with session_scope(ctx.sessions) as session:
        _mine(session, r.batch_id, [r.dip_id], progress=progress)


def _build_ready(
    ctx: Context,
    by_id: dict[str, _Request],
    wanted: dict[int, set[str]],
    have: dict[int, Path],
    work: Path,
    report: BatchReport,
    progress: Progress,
) -> None:
    """Pack every request whose tars are all in; then drop the tars nobody still needs."""
    for dip_id, r in list(by_id.items()):
        if dip_id in report.ready or dip_id in report.failed or dip_id in report.requeued:
            continue
        if not all(v in have for v in r.version_ids):
            continue
        _build_one(ctx, r, have, work, report, progress)
        for vid in r.version_ids:
            users = wanted.get(vid)
            if users is not None:
                users.discard(dip_id)
                if not users:
                    wanted.pop(vid)
                    have[vid].unlink(missing_ok=True)


def _packing(ctx: Context, r: _Request, progress: Progress) -> Progress:
    """The terminal's progress, and the request's row about once a second while it packs."""
    last = [0.0]

    def update(step: str, done: int, total: int) -> None:
        progress(step, done, total)
        now = time.monotonic()
        if step == "build" and (now - last[0] >= 1.0 or done >= total):
            last[0] = now
            with session_scope(ctx.sessions) as session:
                _mine(
                    session,
                    r.batch_id,
                    [r.dip_id],
                    progress={
                        "cartridges": sorted(r.cartridges),
                        "bytes_read": r.bytes_read,
                        "bytes_to_read": r.bytes_to_read,
                        "bytes_packed": done,
                        "bytes_to_pack": total,
                    },
                )

    return update


def _build_one(
    ctx: Context,
    r: _Request,
    have: dict[int, Path],
    work: Path,
    report: BatchReport,
    progress: Progress,
) -> None:
    from preservation.access.package import SOFTWARE, build_dip
    from preservation.metadata.dip import DipDescription

    with session_scope(ctx.sessions) as session:
        _mine(session, report.batch_id, [r.dip_id], state=DIPState.BUILDING)
    created = utcnow()
    dip = DipDescription(
        dip_id=r.dip_id,
        aip_id=r.aip_id,
        aip_version=r.version,
        tenant=r.tenant_id,
        kind=r.kind,
        created=created,
        requested_by=r.requested_by,
        software=SOFTWARE,
        descriptive=r.descriptive,
    )
    cache.evict(ctx, incoming=sum(s.size for s in r.selection))
    numbers = {n: have[vid] for n, vid in r.versions.items()}
    try:
        policy = None
        if r.kind == "access":
            from preservation.migrate.policy import load_policy

            policy = load_policy(ctx.settings.migration_policy)
        built = build_dip(
            dip,
            r.selection,
            numbers,
            cache.zip_path(ctx.settings, r.dip_id),
            work=work / f"build-{r.dip_id}",
            policy=policy,
            workers=ctx.settings.migration_workers,
            progress=_packing(ctx, r, progress),
        )
    except Exception as err:  # noqa: BLE001 - this request fails; the batch's others go on
        if not isinstance(err, PreservationError | OSError):
            log.exception("DIP %s: packing failed", r.dip_id)
        message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
        _fail(ctx, r.dip_id, f"the DIP could not be packed: {message}", report)
        return
    finally:
        shutil.rmtree(work / f"build-{r.dip_id}", ignore_errors=True)
    # The zip is bigger than its files (METS, PREMIS, tags, headers; a rendition may be
    # bigger than its source): room is made for what was written, before it counts as ready.
    cache.evict(ctx, incoming=built.size)
    now = utcnow()
    with session_scope(ctx.sessions) as session:
        taken = _mine(
            session,
            r.batch_id,
            [r.dip_id],
            state=DIPState.READY,
            zip_size=built.size,
            zip_sha256=built.sha256,
            ready_at=now,
            expires_at=service.expiry(ctx.settings.dip_ttl, now),
            error=None,
            not_before=None,
        )
        if not taken:  # another batch took the request over: its result stands, not ours
            log.warning("DIP %s: taken over by another batch; this build is dropped", r.dip_id)
            return
        catalog.record_event(
            session,
            tenant_id=r.tenant_id,
            aip_id=r.aip_id,
            type="dissemination",
            outcome="success",
            detail=f"{r.kind} DIP {r.dip_id} of version {r.version}: {built.files} file(s), "
            f"{built.size} bytes, requested by {r.requested_by}",
            agents={
                "executing program": [f"{SOFTWARE.name} {SOFTWARE.version}"],
                "authorizer": [r.requested_by],
            },
            objects={"dip": r.dip_id, "version": r.version, "kind": r.kind, "files": built.files},
        )
    report.ready.append(r.dip_id)


# -- repair --------------------------------------------------------------------------------------


def schedule_repair(ctx: Context, *, inline: bool = False) -> bool:
    """Have the bad copies a recall found rebuilt: the workers' repair, or one run here.

    Embedded, the repair runs on the context's background pool (the API's
    process), or at once when ``inline`` (a CLI whose process ends next).
    """
    if ctx.read_only:
        return False
    if ctx.settings.broker_url:
        from preservation.submission import load_callable

        try:
            load_callable(ctx.settings.repair_submitter, "repair_submitter")(None)
        except Exception:  # noqa: BLE001 - the copy stays FAILED; the next repair takes it
            log.warning("could not queue a repair; `preservation repair` will", exc_info=True)
            return False
        return True
    if inline:
        report = recovery.repair(ctx)
        log.info("repair after a recall: %s", report.to_dict())
        return True
    from preservation.dispatch import run_in_background

    run_in_background(ctx, "repair after a recall", lambda: recovery.repair(ctx))
    return True
