"""Reading AIPs back from tape, auditing copies, and repairing what faults broke.

Faults are normal on tape, so reading never trusts one copy: ``recover`` falls
back to the other site on any read error, mismatch, wrong or unloadable
cartridge, and every failure it meets is written into the catalogue (copy
FAILED, cartridge errors counted) so that ``repair`` can act on it.

``repair`` restores the invariant "every version has a verified copy at each
site, on a healthy cartridge": it reads a good copy from another site (or the
staging tar, while it still exists), verifies it, writes a fresh copy on
another cartridge at the damaged site, verifies that, and only then marks the
old copy DISCARDED. Recalls are batched by cartridge and position so each
source cartridge is mounted once per batch; the batch is bounded by the
temporary space it may use under ``staging_dir``.

Before that it tidies what crashes and outages left behind: WRITING rows that
no rerun will ever touch are discarded (so a suspect cartridge can retire),
and ``complete_pending`` finishes the store of every version still pending
(a site was down at ingest, or the store never ran) from its staging tar.
After it, ``storage.disposal.finish_disposals`` takes disposed AIPs out of the
indexes a site outage kept them in. Disposed AIPs are never rebuilt, audited
or recovered.
Repair never makes an AIP active: the versions it leaves safe at every site
are listed in ``RepairReport.ready`` for the ingest commit stage, which also
releases the SIP and the staging tar.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from preservation.aip.tarball import unpack_aip
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
    DestinationError,
    DeviceBusyError,
    FixityMismatchError,
    LTFSFormatError,
    MediaError,
    NotFoundError,
    PreservationError,
    SiteUnavailableError,
    StorageError,
    UnsafeArchiveError,
    WrongCartridgeError,
)
from preservation.storage import planning
from preservation.storage.disposal import finish_disposals
from preservation.storage.planning import CopyView, ErrorKind, RecallItem, RepairNeed
from preservation.storage.service import (
    AGENT,
    has_safe_copies,
    note_cartridge_error,
    release_drives,
    write_copy,
)
from preservation.storage.sites import get_site

__all__ = [
    "AuditResult",
    "RepairReport",
    "audit_copy",
    "complete_pending",
    "discard_stale_writes",
    "extract_current_files",
    "read_version_head",
    "read_copy",
    "read_version_tar",
    "recover",
    "repair",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_BYTES = 64 * 10**9
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class AuditResult:
    copy_id: int
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RepairReport:
    """What a repair did; ``ok`` is False when some version is still short of copies."""

    rebuilt: list[dict[str, Any]] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    cartridges_failed: list[str] = field(default_factory=list)
    cartridges_retired: list[str] = field(default_factory=list)
    #: WRITING rows left by crashes and discarded (copy ids).
    stale_writes: list[int] = field(default_factory=list)
    #: Versions safe at every site but not committed yet: ``version_id``,
    #: ``aip_id``, ``number``, ``sip_id``, for the ingest commit stage.
    ready: list[dict[str, Any]] = field(default_factory=list)
    #: Disposals carried on (``storage.disposal.DisposalOutcome.to_dict``), one per AIP.
    disposals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and all(d["done"] for d in self.disposals)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


# -- reading one copy -------------------------------------------------------------------------


@dataclass(frozen=True)
class _CopyRef:
    copy_id: int
    version_id: int
    aip_id: str
    tenant_id: str
    number: int
    site: str
    barcode: str
    path: str
    sha256: str
    size: int
    start_block: int | None


def _ref(row: TapeCopy) -> _CopyRef:
    version = row.version
    return _CopyRef(
        copy_id=row.id,
        version_id=version.id,
        aip_id=version.aip_id,
        tenant_id=version.aip.tenant_id,
        number=version.number,
        site=row.site,
        barcode=row.barcode,
        path=row.path,
        sha256=version.tar_sha256 or row.sha256,
        size=row.length,
        start_block=row.start_block,
    )


def _read_copy(
    ctx: Context,
    ref: _CopyRef,
    dest: Path | None,
    on_chunk: Callable[[int], None] | None = None,
) -> None:
    """Read one copy whole (into ``dest`` if given) and check its sha256 against the catalogue.

    Faults are recorded before they are raised: the copy FAILED on a read error
    or mismatch, the cartridge's error count (and state) on any medium trouble.
    """
    site = get_site(ctx, ref.site)
    site.check_available()
    with site.lock:
        try:
            volume, _ = site.open_volume(ref.barcode)
        except WrongCartridgeError:
            note_cartridge_error(ctx, ref.barcode, ErrorKind.WRONG)
            raise
        except (MediaError, LTFSFormatError) as err:
            note_cartridge_error(ctx, ref.barcode, ErrorKind.LOAD)
            _record_check(ctx, ref, "failure", f"cartridge cannot be mounted: {err}")
            raise
        out = open(dest, "wb") if dest is not None else None  # noqa: SIM115 - closed below
        try:
            # One hash pass: the reader's, on its own thread beside the drive,
            # checked against the index's digest and then against the catalogue's.
            with volume.open(ref.path, verify=True) as reader:
                for chunk in reader.iter_chunks():
                    if out is not None:
                        out.write(chunk)
                    if on_chunk is not None:
                        on_chunk(len(chunk))
                actual = reader.sha256
            if actual != ref.sha256:
                raise FixityMismatchError(
                    f"{ref.path} on {ref.barcode}: sha256 {actual}, catalogue {ref.sha256}",
                    path=ref.path,
                    barcode=ref.barcode,
                    aip_id=ref.aip_id,
                )
        except (StorageError, FixityMismatchError, FileNotFoundError) as err:
            # Any fault of the tape while reading the file (a read error, end of
            # data where the index promised blocks, a file gone from the index):
            # the copy failed, and the repair replaces it.
            if isinstance(err, FileNotFoundError) and (gone := _disposed_of(ctx, ref.aip_id)):
                # A disposal took the file out of the index meanwhile: no fault of the tape.
                raise NotFoundError(gone, aip_id=ref.aip_id, path=ref.path) from err
            _fail_copy(ctx, ref.copy_id, f"read failed: {err}")
            note_cartridge_error(ctx, ref.barcode, ErrorKind.READ)
            _record_check(ctx, ref, "failure", str(err))
            if isinstance(err, StorageError):
                site.release(ref.barcode)
            if isinstance(err, FileNotFoundError | StorageError) and not isinstance(
                err, MediaError
            ):
                raise MediaError(str(err), barcode=ref.barcode, path=ref.path) from err
            raise
        finally:
            if out is not None:
                out.close()


def _fail_copy(ctx: Context, copy_id: int, error: str) -> None:
    if ctx.read_only:  # an archive copy on read-only media: the next copy is tried all the same
        log.warning("copy %d failed (not recorded: read-only): %s", copy_id, error)
        return
    with session_scope(ctx.sessions) as session:
        row = session.get_one(TapeCopy, copy_id)
        if row.status == CopyStatus.VERIFIED:
            row.status = CopyStatus.FAILED
        row.error = error[:2000]


def _record_check(ctx: Context, ref: _CopyRef, outcome: str, detail: str) -> None:
    if ctx.read_only:
        return
    with session_scope(ctx.sessions) as session:
        catalog.record_event(
            session,
            tenant_id=ref.tenant_id,
            aip_id=ref.aip_id,
            type="fixity check",
            outcome=outcome,
            detail=f"v{ref.number} at site {ref.site} on cartridge {ref.barcode}",
            outcome_detail=detail[:2000],
            agents={"executing program": [AGENT]},
            objects={"version": ref.number, "copy": ref.copy_id, "barcode": ref.barcode},
        )


def _disposed_message(aip: AIP) -> str:
    when = f" on {aip.disposed_at:%Y-%m-%d}" if aip.disposed_at else ""
    return f"AIP {aip.id} was disposed of{when}: it is no longer kept"


def _disposed_of(ctx: Context, aip_id: str) -> str | None:
    """Why the AIP is gone, if a disposal took it; None while it is kept."""
    with session_scope(ctx.sessions) as session:
        aip = session.get(AIP, aip_id)
        if aip is None or aip.state != AIPState.DISPOSED:
            return None
        return _disposed_message(aip)


def _load_ref(ctx: Context, copy_id: int) -> _CopyRef:
    with session_scope(ctx.sessions) as session:
        row = session.get(TapeCopy, copy_id)
        if row is None:
            raise NotFoundError(f"no tape copy {copy_id}")
        return _ref(row)


# -- public: audit, recover ------------------------------------------------------------------


def audit_copy(ctx: Context, copy_id: int) -> AuditResult:
    """Read a copy back and verify it (a fixity audit); failures are recorded for repair.

    A copy of a disposed AIP is not read (``NotFoundError``): it is leaving the
    tapes, and a file already gone from the index would count as a fault.
    """
    ref = _load_ref(ctx, copy_id)
    gone = _disposed_of(ctx, ref.aip_id)
    if gone:
        raise NotFoundError(gone, aip_id=ref.aip_id, rule="disposed")
    try:
        _read_copy(ctx, ref, None)
    except (SiteUnavailableError, DeviceBusyError):
        raise  # transient: the audit did not happen
    except NotFoundError:
        raise  # disposed of while we read: nothing left to audit
    except PreservationError as err:
        return AuditResult(copy_id, False, str(err))
    with session_scope(ctx.sessions) as session:
        row = session.get_one(TapeCopy, copy_id)
        row.verified_at = utcnow()
    _record_check(ctx, ref, "success", "read back whole; sha256 matched")
    return AuditResult(copy_id, True, "sha256 matched")


def _temp_dir(ctx: Context, what: str) -> Path:
    path = ctx.settings.staging_dir / what
    path.mkdir(parents=True, exist_ok=True)
    return path


def recover(ctx: Context, aip_id: str, version: int | None = None, *, dest_dir: Path) -> Path:
    """Read an AIP version from whichever site works, verify it, unpack it; return the bag root.

    The bag is the whole of version N (``<dest_dir>/<aip>.v<N>/``): versions
    are forward deltas, so for N > 1 the tar of vN is read first, and then
    each earlier version its root METS names, once each; their files are moved
    in (:mod:`preservation.aip.assembly`). Version 1 is its tar exactly. With
    no ``version``, the current one: the newest committed (a version still
    being stored is not the AIP's state yet).
    """
    with session_scope(ctx.sessions) as session:
        aip = session.get(AIP, aip_id)
        if aip is None:
            raise NotFoundError(f"no AIP {aip_id}", aip_id=aip_id)
        if aip.state == AIPState.DISPOSED:
            raise NotFoundError(_disposed_message(aip), aip_id=aip_id, rule="disposed")
        stmt = select(AIPVersion).where(AIPVersion.aip_id == aip_id)
        if version is None:
            stmt = stmt.order_by(AIPVersion.committed_at.is_(None), AIPVersion.number.desc())
        else:
            stmt = stmt.where(AIPVersion.number == version)
        row = session.scalar(stmt.limit(1))
        if row is None:
            raise NotFoundError(f"AIP {aip_id} has no version {version}", aip_id=aip_id)
        number = row.number
    dest = Path(dest_dir)
    if ctx.read_only:
        # Nothing may be written under the data root: the tar waits beside the bag.
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".recover-{uuid.uuid4()}.tar"
    else:
        tmp = _temp_dir(ctx, "recall") / f"{uuid.uuid4()}.tar"
    try:
        _read_version(ctx, aip_id, number, tmp)
        try:
            if number == 1:
                return unpack_aip(tmp, dest)
            return _assemble(ctx, aip_id, number, tmp, dest)
        except OSError as err:  # the copies were good; the folder could not take them
            raise DestinationError(
                f"AIP {aip_id}: cannot unpack into {dest_dir}: {err.strerror or err}",
                path=dest,
                aip_id=aip_id,
            ) from err
    finally:
        tmp.unlink(missing_ok=True)


def read_copy(
    ctx: Context, copy_id: int, dest: Path, *, on_chunk: Callable[[int], None] | None = None
) -> None:
    """One catalogued copy, whole and verified, into ``dest``: the unit a recall batch plans.

    Faults are recorded as any read records them (copy FAILED, cartridge errors
    counted), so a caller that falls back to another copy leaves the bad one
    for ``repair``.
    """
    _read_copy(ctx, _load_ref(ctx, copy_id), dest, on_chunk)


def read_version_tar(ctx: Context, aip_id: str, number: int, dest: Path) -> None:
    """Version ``number``'s own tar, whole and verified, into ``dest`` (a migration's sources)."""
    _read_version(ctx, aip_id, number, dest)


def _read_version(ctx: Context, aip_id: str, number: int, dest: Path) -> None:
    """Read version ``number`` of an AIP whole into ``dest``, from the first copy that works.

    Copies on healthy cartridges are tried first, a mounted one before one
    needing a mount; any failure falls through to the next copy.
    """
    with session_scope(ctx.sessions) as session:
        copies = session.execute(
            select(TapeCopy, Cartridge.state)
            .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .where(
                AIPVersion.aip_id == aip_id,
                AIPVersion.number == number,
                TapeCopy.status == CopyStatus.VERIFIED,
            )
        ).all()
        refs = [(_ref(c), state) for c, state in copies]
    mounted: set[str] = set()
    for name in ctx.settings.sites:
        mounted |= get_site(ctx, name).mounted_barcodes()
    site_rank = {name: i for i, name in enumerate(ctx.settings.sites)}
    refs.sort(
        key=lambda rs: (
            rs[1] in planning.BAD_CARTRIDGE_STATES,
            rs[0].barcode not in mounted,
            site_rank.get(rs[0].site, 99),
        )
    )
    problems: list[str] = []
    all_transient = True
    for ref, _state in refs:
        try:
            _read_copy(ctx, ref, dest)
            return
        except PreservationError as err:
            problems.append(f"{ref.site}/{ref.barcode}: {err}")
            all_transient = all_transient and isinstance(
                err, SiteUnavailableError | DeviceBusyError
            )
            log.warning("recover %s v%d: copy %d unusable: %s", aip_id, number, ref.copy_id, err)
    detail = "; ".join(problems) or "no verified copy is catalogued"
    if problems and all_transient:
        raise SiteUnavailableError(f"AIP {aip_id}: no site can serve it now ({detail})")
    raise StorageError(f"AIP {aip_id}: no copy could be read ({detail})", aip_id=aip_id)


def _assemble(ctx: Context, aip_id: str, number: int, tar: Path, dest: Path) -> Path:
    """Version ``number`` whole, from its tar (read) and the earlier tars its METS names.

    Built in a hidden folder beside the result and renamed into place at the
    end, so an interrupted recovery never leaves what looks like a whole bag.
    """
    from preservation.aip.assembly import carry_over, earlier_files, rewrite_tag_files

    target = dest / f"{aip_id}.v{number}"
    if target.exists() or target.is_symlink():
        raise UnsafeArchiveError(
            f"{target} already exists; refusing to unpack over it", path=target
        )
    work = dest / f".recover-{aip_id}.v{number}-{uuid.uuid4().hex[:8]}"
    try:
        bag = unpack_aip(tar, work)
        tar.unlink()
        carried: dict[str, dict[str, str]] = {}
        for earlier, paths in sorted(earlier_files(bag).items()):
            _read_version(ctx, aip_id, earlier, tar)
            older = unpack_aip(tar, work)
            tar.unlink()
            carried |= carry_over(older, bag, paths)
            shutil.rmtree(older)
        if carried:
            rewrite_tag_files(bag, carried)
        os.rename(bag, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- public: repair ---------------------------------------------------------------------------


def repair(
    ctx: Context,
    *,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    grace_seconds: float | None = None,
) -> RepairReport:
    """Bring every active or pending version back to a verified copy per site.

    Cartridges with too many errors are failed first, so their copies are
    rebuilt too; WRITING rows older than ``grace_seconds`` (default: the
    settings' ``stall_seconds``) whose cartridge is in no drive are discarded;
    pending versions are completed from their staging tars; cartridges left
    with nothing verified on them are retired. Disposals left half-done are
    finished (``report.disposals``). A site that is down is skipped
    (reported), never waited for. ``report.ready`` lists the versions the
    commit stage may now make active.
    """
    report = RepairReport()
    report.cartridges_failed = _fail_worn_cartridges(ctx)
    discard_stale_writes(ctx, report=report, grace_seconds=grace_seconds)
    handled, bad_staging = _complete_pending(ctx, report)
    needs, sizes, staging = _plan(ctx)
    for vid in bad_staging:
        staging.pop(vid, None)
    sites = tuple(ctx.settings.sites)
    down = {name for name in sites if get_site(ctx, name).is_down()}
    pending: list[tuple[RepairNeed, list[CopyView]]] = []
    for need in needs:
        if need.version_id in handled:
            continue
        if need.site in down:
            report.skipped.append(
                {
                    "version_id": need.version_id,
                    "site": need.site,
                    "reason": f"site {need.site} is down",
                }
            )
            continue
        sources = [s for s in need.sources if s.site not in down]
        if not sources and not staging.get(need.version_id):
            report.skipped.append(
                {
                    "version_id": need.version_id,
                    "site": need.site,
                    "reason": "no readable source: no healthy copy elsewhere",
                }
            )
            continue
        pending.append((need, sources))
    # Versions whose staging tar still exists are written from it (no recall at all).
    from_staging = [(n, s) for n, s in pending if staging.get(n.version_id)]
    from_tape = [(n, s) for n, s in pending if not staging.get(n.version_id)]
    for need, sources in from_staging:
        _rebuild(ctx, report, need, Path(staging[need.version_id]), "staging", sources)
    items = [
        RecallItem(s[0].barcode, s[0].start_block, index, sizes.get(n.version_id, 0))
        for index, (n, s) in enumerate(from_tape)
    ]
    mounted: set[str] = set()
    for name in sites:
        mounted |= get_site(ctx, name).mounted_barcodes()
    ordered = planning.order_recalls(items, mounted=mounted)
    for batch in planning.batch_recalls(ordered, max_bytes=max_batch_bytes):
        _repair_batch(ctx, report, [from_tape[item.key] for item in batch])
    # Disposals a site outage left half-done, before retiring: once retired, a
    # cartridge's index is never rewritten, so a disposal has its chance first.
    report.disposals = [o.to_dict() for o in finish_disposals(ctx)]
    report.cartridges_retired = _retire_empty_bad_cartridges(ctx)
    report.ready = _ready_to_commit(ctx)
    release_drives(ctx)
    return report


# -- crashed writes and pending stores ------------------------------------------------------


def discard_stale_writes(
    ctx: Context, *, report: RepairReport | None = None, grace_seconds: float | None = None
) -> list[int]:
    """Discard WRITING rows that a crash left and no rerun will touch; return their ids.

    A rerun of the same store discards its own leftovers, but a store that is
    never rerun (its version made whole some other way, a repair write that
    crashed) would leave the row forever, and a WRITING row keeps a suspect
    cartridge from retiring. A row is stale when the write began more than
    ``grace_seconds`` ago (default: the settings' ``stall_seconds``) and its
    cartridge is in no drive of another process: a live writer holds its
    cartridge for the whole write and read-back. Writers in this process are
    excluded by holding the site's lock. Nothing on tape changes; a whole
    file on tape is adopted by the next store that picks that cartridge.
    """
    grace = ctx.settings.stall_seconds if grace_seconds is None else grace_seconds
    cutoff = datetime.now(UTC) - timedelta(seconds=grace)
    discarded: list[int] = []
    for name in ctx.settings.sites:
        site = get_site(ctx, name)
        with site.lock:
            in_use = _in_other_drives(ctx, name)
            with session_scope(ctx.sessions) as session:
                for row in session.scalars(
                    select(TapeCopy).where(
                        TapeCopy.site == name, TapeCopy.status == CopyStatus.WRITING
                    )
                ):
                    if row.barcode in in_use or not _older_than(row.written_at, cutoff):
                        continue
                    row.status = CopyStatus.DISCARDED
                    row.error = (
                        "interrupted before verification (crash) and never resumed; "
                        "discarded by repair"
                    )
                    discarded.append(row.id)
    if discarded:
        log.warning("repair: discarded %d WRITING rows left by crashes", len(discarded))
    if report is not None:
        report.stale_writes.extend(discarded)
    return discarded


def _older_than(when: datetime | None, cutoff: datetime) -> bool:
    if when is None:  # rows from before the write start was recorded
        return True
    if when.tzinfo is None:  # SQLite hands back naive UTC
        when = when.replace(tzinfo=UTC)
    return when <= cutoff


def _in_other_drives(ctx: Context, site: str) -> set[str]:
    """Cartridges out of their slots that this process has not mounted: another's to finish."""
    the_site = get_site(ctx, site)
    library = the_site.library
    in_slots = {slot.barcode for slot in library.slots() if slot.barcode}
    return set(library.barcodes()) - in_slots - the_site.mounted_barcodes()


def complete_pending(ctx: Context, *, report: RepairReport | None = None) -> RepairReport:
    """Finish the store of every pending version whose staging tar still exists.

    For each version not yet committed, every site without a verified copy on
    a healthy cartridge gets one, written from the staging tar after its
    sha256 has been checked against the catalogue (a damaged tar is never
    written; a version with a good tape copy is then rebuilt from tape by
    ``repair``). A site that is down, or still writing the version in
    another process, is skipped. Versions now safe everywhere are listed in
    ``report.ready``; making them active is the commit stage's work.
    """
    report = report if report is not None else RepairReport()
    _complete_pending(ctx, report)
    report.ready = _ready_to_commit(ctx)
    return report


@dataclass(frozen=True)
class _Pending:
    version_id: int
    staging: str | None
    sha256: str
    verified_sites: frozenset[str]
    writing_sites: frozenset[str]


def _pending_versions(ctx: Context) -> list[_Pending]:
    with session_scope(ctx.sessions) as session:
        versions = session.execute(
            select(AIPVersion.id, AIPVersion.staging_path, AIPVersion.tar_sha256)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(
                AIPVersion.committed_at.is_(None),
                AIPVersion.tar_sha256.is_not(None),
                AIP.state.in_([AIPState.ACTIVE, AIPState.PENDING]),
            )
            .order_by(AIPVersion.id)
        ).all()
        if not versions:
            return []
        verified: dict[int, set[str]] = {}
        writing: dict[int, set[str]] = {}
        for vid, site, status, cstate in session.execute(
            select(TapeCopy.aip_version_id, TapeCopy.site, TapeCopy.status, Cartridge.state)
            .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
            .where(
                TapeCopy.aip_version_id.in_([v[0] for v in versions]),
                TapeCopy.status.in_([CopyStatus.VERIFIED, CopyStatus.WRITING]),
            )
        ):
            if status == CopyStatus.WRITING:
                writing.setdefault(vid, set()).add(site)
            elif cstate not in planning.BAD_CARTRIDGE_STATES:
                verified.setdefault(vid, set()).add(site)
    return [
        _Pending(
            vid,
            path if path and Path(path).is_file() else None,
            sha or "",
            frozenset(verified.get(vid, ())),
            frozenset(writing.get(vid, ())),
        )
        for vid, path, sha in versions
    ]


def _complete_pending(ctx: Context, report: RepairReport) -> tuple[set[int], set[int]]:
    """The work of :func:`complete_pending`; returns (versions handled, versions with a bad tar)."""
    sites = tuple(ctx.settings.sites)
    down = {name for name in sites if get_site(ctx, name).is_down()}
    handled: set[int] = set()
    bad_staging: set[int] = set()
    for p in _pending_versions(ctx):
        missing = [s for s in sites if s not in p.verified_sites]
        if not missing:
            continue
        if p.staging is None or _sha256_of(Path(p.staging)) != p.sha256:
            if p.staging is not None:
                bad_staging.add(p.version_id)
                log.error("repair: staging tar of version %d is damaged", p.version_id)
            if not p.verified_sites:  # nothing on tape either: nothing to copy from
                handled.add(p.version_id)
                for site in missing:
                    report.failed.append(
                        {
                            "version_id": p.version_id,
                            "site": site,
                            "error": "pending with no verified copy, and its staging tar is "
                            + ("damaged (sha256 differs)" if p.staging else "gone"),
                        }
                    )
            continue  # a verified copy exists: repair rebuilds the rest from tape
        handled.add(p.version_id)
        for site in missing:
            if site in down:
                reason = f"site {site} is down"
            elif site in p.writing_sites:
                reason = f"a store is still writing it at site {site}"
            else:
                _rebuild(
                    ctx,
                    report,
                    RepairNeed(p.version_id, site, (), ()),
                    Path(p.staging),
                    "staging",
                    [],
                    reason="store completed by repair",
                )
                continue
            report.skipped.append({"version_id": p.version_id, "site": site, "reason": reason})
    return handled, bad_staging


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _ready_to_commit(ctx: Context) -> list[dict[str, Any]]:
    sites = tuple(ctx.settings.sites)
    with session_scope(ctx.sessions) as session:
        rows = session.execute(
            select(AIPVersion.id, AIPVersion.aip_id, AIPVersion.number, AIP.sip_id)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(
                AIPVersion.committed_at.is_(None),
                AIPVersion.tar_sha256.is_not(None),
                AIP.state != AIPState.DISPOSED,
            )
            .order_by(AIPVersion.id)
        ).all()
        return [
            {"version_id": vid, "aip_id": aip_id, "number": number, "sip_id": sip_id}
            for vid, aip_id, number, sip_id in rows
            if has_safe_copies(session, vid, sites)
        ]


def _repair_batch(
    ctx: Context, report: RepairReport, batch: list[tuple[RepairNeed, list[CopyView]]]
) -> None:
    """Read the batch's sources in tape order to temporary files, then write them out."""
    workdir = _temp_dir(ctx, "repair") / uuid.uuid4().hex
    workdir.mkdir()
    try:
        fetched: list[tuple[RepairNeed, Path, str, list[CopyView]]] = []
        for need, sources in batch:
            tmp = workdir / f"{need.version_id}-{need.site}.tar"
            used = _fetch(ctx, sources, tmp)
            if used is None:
                report.failed.append(
                    {
                        "version_id": need.version_id,
                        "site": need.site,
                        "error": "every source copy failed to read",
                    }
                )
                continue
            fetched.append((need, tmp, used, sources))
        # Written in the damaged cartridge's own order, so the new tape mirrors the old one.
        positions = _positions(ctx, [n.replaces for n, *_ in fetched])
        fetched.sort(
            key=lambda f: min((positions.get(c, ("~", 0)) for c in f[0].replaces), default=("~", 0))
        )
        for need, tmp, used, sources in fetched:
            _rebuild(ctx, report, need, tmp, used, sources)
            tmp.unlink(missing_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _fetch(ctx: Context, sources: Iterable[CopyView], dest: Path) -> str | None:
    for source in sources:
        try:
            _read_copy(ctx, _load_ref(ctx, source.copy_id), dest)
        except PreservationError as err:
            log.warning("repair: source copy %d unusable: %s", source.copy_id, err)
            continue
        return f"copy {source.copy_id} ({source.site}/{source.barcode})"
    return None


def _rebuild(
    ctx: Context,
    report: RepairReport,
    need: RepairNeed,
    source: Path,
    source_name: str,
    sources: list[CopyView],
    *,
    reason: str | None = None,
) -> None:
    replaced = ", ".join(str(c) for c in need.replaces) or "none"
    try:
        new = write_copy(
            ctx,
            need.version_id,
            need.site,
            source,
            reason=reason or f"repair (replaces copies {replaced})",
            avoid=need.avoid,
        )
    except FixityMismatchError as err:
        if source_name == "staging" and sources:  # staging tar damaged: fall back to tape
            tmp = _temp_dir(ctx, "repair") / f"{uuid.uuid4()}.tar"
            try:
                used = _fetch(ctx, sources, tmp)
                if used is not None:
                    _rebuild(ctx, report, need, tmp, used, [])
                    return
            finally:
                tmp.unlink(missing_ok=True)
        report.failed.append({"version_id": need.version_id, "site": need.site, "error": str(err)})
        return
    except PreservationError as err:
        report.failed.append({"version_id": need.version_id, "site": need.site, "error": str(err)})
        return
    with session_scope(ctx.sessions) as session:
        for copy_id in need.replaces:
            row = session.get_one(TapeCopy, copy_id)
            if row.id != new.id and row.status != CopyStatus.DISCARDED:
                row.status = CopyStatus.DISCARDED
                row.error = f"replaced by copy {new.id} on {new.barcode}"
                report.discarded.append(copy_id)
    report.rebuilt.append(
        {
            "version_id": need.version_id,
            "site": need.site,
            "copy_id": new.id,
            "barcode": new.barcode,
            "source": source_name,
            "replaces": list(need.replaces),
        }
    )


def _positions(ctx: Context, groups: list[tuple[int, ...]]) -> dict[int, tuple[str, int]]:
    ids = [i for g in groups for i in g]
    if not ids:
        return {}
    with session_scope(ctx.sessions) as session:
        return {
            cid: (barcode, block or 0)
            for cid, barcode, block in session.execute(
                select(TapeCopy.id, TapeCopy.barcode, TapeCopy.start_block).where(
                    TapeCopy.id.in_(ids)
                )
            )
        }


def _plan(ctx: Context) -> tuple[list[RepairNeed], dict[int, int], dict[int, str]]:
    """The catalogue's copies as plain values, and the pure planner's verdict on them."""
    with session_scope(ctx.sessions) as session:
        rows = session.execute(
            select(
                TapeCopy.id,
                TapeCopy.aip_version_id,
                TapeCopy.site,
                TapeCopy.barcode,
                TapeCopy.status,
                Cartridge.state,
                TapeCopy.start_block,
                AIPVersion.tar_size,
                AIPVersion.staging_path,
            )
            .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .join(AIP, AIP.id == AIPVersion.aip_id)
            .where(
                AIP.state.in_([AIPState.ACTIVE, AIPState.PENDING]),
                AIPVersion.tar_sha256.is_not(None),
            )
        ).all()
    copies: dict[int, list[CopyView]] = {}
    sizes: dict[int, int] = {}
    staging: dict[int, str] = {}
    for cid, vid, site, barcode, status, cstate, block, size, staging_path in rows:
        if status == CopyStatus.DISCARDED or status == CopyStatus.WRITING:
            copies.setdefault(vid, [])
        else:
            copies.setdefault(vid, []).append(
                CopyView(cid, vid, site, barcode, status, cstate, block)
            )
        sizes[vid] = size or 0
        if staging_path and Path(staging_path).is_file():
            staging[vid] = staging_path
    # A version with no copy ever verified is the store stage's work, not repair's.
    copies = {v: c for v, c in copies.items() if c}
    return planning.plan_repairs(copies, tuple(ctx.settings.sites)), sizes, staging


def _fail_worn_cartridges(ctx: Context) -> list[str]:
    with session_scope(ctx.sessions) as session:
        worn = list(
            session.scalars(
                select(Cartridge).where(
                    Cartridge.errors >= planning.FAILED_AFTER_ERRORS,
                    Cartridge.state.not_in([CartridgeState.FAILED, CartridgeState.RETIRED]),
                )
            )
        )
        for cartridge in worn:
            cartridge.state = CartridgeState.FAILED
        return [c.barcode for c in worn]


def _retire_empty_bad_cartridges(ctx: Context) -> list[str]:
    """Suspect or failed cartridges whose copies were all rebuilt elsewhere leave service."""
    with session_scope(ctx.sessions) as session:
        bad = list(
            session.scalars(
                select(Cartridge).where(
                    Cartridge.state.in_([CartridgeState.SUSPECT, CartridgeState.FAILED])
                )
            )
        )
        retired = []
        for cartridge in bad:
            live = session.scalar(
                select(TapeCopy.id)
                .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
                .join(AIP, AIP.id == AIPVersion.aip_id)
                .where(
                    TapeCopy.barcode == cartridge.barcode,
                    TapeCopy.status.in_([CopyStatus.VERIFIED, CopyStatus.WRITING]),
                    AIP.state != AIPState.DISPOSED,  # a disposed AIP's copies keep nothing
                )
                .limit(1)
            )
            if live is None:
                cartridge.state = CartridgeState.RETIRED
                retired.append(cartridge.barcode)
        return retired


# -- public: what a version holds, from the head of its tar -------------------------------------


def read_version_head(ctx: Context, version_id: int) -> dict[str, list[Any]]:
    """What a version holds besides originals, read from the head of its tar on tape.

    ``path -> [version, size, sha256]`` for its complete state, paths relative
    to ``data/``: its own files (sha256 from its manifest; the size where the
    tar was read that far, else None) and the earlier versions' files its
    root METS names. For a version made before the catalogue kept this (in
    the ``creation`` event, see :mod:`preservation.versions`); the next
    version's METS needs it.

    Cheap even for a large AIP: the tag files, the root METS and every
    representation METS come before the first original in the tar (entries
    are sorted, and ``METS.xml`` sorts before ``data/``), and the read stops
    there. Copies are tried as :func:`recover` tries them; a partial read
    proves nothing about a copy, so nothing is recorded about one that fails.
    """
    import tarfile

    from preservation.aip.assembly import read_manifests
    from preservation.metadata.reader import read_mets

    with session_scope(ctx.sessions) as session:
        row = session.get(AIPVersion, version_id)
        if row is None:
            raise NotFoundError(f"no AIP version {version_id}")
        aip_id, number = row.aip_id, row.number
        refs = [_ref(c) for c in row.copies if c.status == CopyStatus.VERIFIED]
    problems: list[str] = []
    scratch = _temp_dir(ctx, "recall") / f"head-{uuid.uuid4()}"
    try:
        for ref in sorted(refs, key=lambda r: r.site):
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            sizes: dict[str, int] = {}
            try:
                site = get_site(ctx, ref.site)
                site.check_available()
                with site.lock:
                    volume, _ = site.open_volume(ref.barcode)
                    with (
                        volume.open(ref.path, verify=False) as reader,
                        tarfile.open(fileobj=reader, mode="r|") as tar,
                    ):
                        for member in tar:
                            top, _, rel = member.name.partition("/")
                            if not member.isfile() or not top or ".." in rel.split("/"):
                                continue
                            path = rel.removeprefix("data/")
                            parts = path.split("/")
                            if rel.startswith("data/") and len(parts) > 3 and parts[2] == "data":
                                break  # the first original: everything wanted came before it
                            if rel.startswith("data/"):
                                sizes[path] = member.size
                            if rel in ("manifest-sha256.txt", "data/METS.xml"):
                                handle = tar.extractfile(member)
                                assert handle is not None
                                (scratch / rel.replace("/", "_")).write_bytes(handle.read())
            except (PreservationError, OSError, tarfile.TarError) as err:
                problems.append(f"{ref.site}/{ref.barcode}: {err}")
                log.warning(
                    "AIP %s v%d: head of copy %d unusable: %s", aip_id, number, ref.copy_id, err
                )
                continue
            if not (scratch / "data_METS.xml").is_file():
                problems.append(f"{ref.site}/{ref.barcode}: no data/METS.xml in the tar")
                continue
            own = {
                rel.removeprefix("data/"): digests["sha256"]
                for rel, digests in read_manifests(scratch).items()
            }
            parsed = read_mets(scratch / "data_METS.xml")
            state: dict[str, list[Any]] = {}
            for rep in parsed.representations:
                if rep.version < number:
                    state[rep.path] = [rep.version, rep.size, rep.sha256]
            for version, path in parsed.previous_versions:
                state[path] = [version, None, None]
            for path, sha256 in own.items():
                parts = path.split("/")
                if not (len(parts) > 3 and parts[0] == "representations" and parts[2] == "data"):
                    state[path] = [number, sizes.get(path), sha256]
            return state
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    detail = "; ".join(problems) or "no verified copy is catalogued"
    raise StorageError(
        f"AIP {aip_id} v{number}: the head of no copy could be read ({detail})", aip_id=aip_id
    )


# -- public: a version's files, as its current representation holds them -----------------------


def extract_current_files(bag: Path, dest: Path) -> list[str]:
    """Move the current representation's files out of a recovered bag into ``dest``.

    The current representation is the last one the root METS names (the
    newest); its METS lists every file of the version, its own and those
    earlier versions hold, each at its path in the tree. Version 1's is the
    originals. Each file is checked against its METS sha256 on the way, so
    what lands in ``dest`` is exactly what the version says it holds.
    Returns the relative paths written.
    """
    import hashlib

    from preservation.aip.layout import _safe_relpath
    from preservation.metadata.reader import read_mets

    bag, dest = Path(bag), Path(dest)
    root = read_mets(bag / "data" / "METS.xml")
    if not root.representations:
        raise StorageError(f"{bag}: the root METS names no representation")
    current = root.representations[-1]
    rep = read_mets(bag / "data" / current.path)
    written: list[str] = []
    for f in rep.files:
        parts = f.path.split("/", 3)
        if len(parts) < 4 or parts[0] != "representations" or parts[2] != "data":
            raise StorageError(f"{bag}: file {f.id} is not in a representation's data folder")
        rel = _safe_relpath(parts[3], what="file of the current representation").as_posix()
        source = bag / "data" / f.path
        digest = hashlib.sha256()
        with open(source, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != f.digests["sha256"]:
            raise StorageError(f"{bag}: {f.path} does not match the sha256 its METS gives")
        target = dest / rel
        if target.exists() or target.is_symlink():
            raise UnsafeArchiveError(
                f"{target} already exists; refusing to overwrite it", path=target
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(rel)
    return sorted(written)
