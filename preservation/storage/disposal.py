"""The tape side of an approved disposal: the AIP leaves both sites' LTFS indexes.

The decision is not taken here. The caller (``preservation.retention``) marks
the AIP ``disposed`` and records the PREMIS ``deletion`` event in its own
transaction first, so a disposal is never half-recorded; this module carries
it out on tape, and may leave it half-carried-out, saying so.

Tape is append-only: LTFS rewrites only its index. So each cartridge holding a
copy gets a new index generation that no longer lists the copy's file; the
file's blocks stay where they are, outside every index, until the cartridge is
repacked (media migration) and reformatted. The catalogue marks the copies
``disposed`` and adds their bytes to ``cartridges.reclaimable``; the cartridge's
used and free space do not change, since the bytes are still there.

Each cartridge is mounted once, through the site's own machinery (its lock,
the library's drive and cartridge claims), as a store or an audit mounts it.
A site that is down, or a cartridge whose drive or claim is held elsewhere,
leaves its copies as they are: ``DisposalOutcome.pending_sites`` names it, and
running again (``finish_disposals``, which ``repair`` calls) finishes the job.
Every step may be run again: a path already gone from an index counts as
removed, because a crash between the index sync and the catalogue commit
leaves exactly that.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

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
)
from preservation.context import Context
from preservation.errors import (
    ConfigurationError,
    ConflictError,
    DeviceBusyError,
    LTFSFormatError,
    MediaError,
    NotFoundError,
    SiteUnavailableError,
    StorageError,
    TapeFullError,
    WrongCartridgeError,
)
from preservation.storage import planning
from preservation.storage.ltfs import LTFSVolume
from preservation.storage.planning import ErrorKind, RecallItem
from preservation.storage.service import AGENT, note_cartridge_error
from preservation.storage.sites import Site, get_site

__all__ = [
    "CartridgeProblem",
    "DisposalOutcome",
    "RemovedFile",
    "finish_disposals",
    "remove_aip_copies",
]

log = logging.getLogger(__name__)

#: Copies that may still be listed in an index: everything but a finished disposal.
#: A WRITING row is stale once we hold its cartridge: a live writer keeps the
#: cartridge claimed from before the row exists until after its read-back.
_LISTED = (CopyStatus.VERIFIED, CopyStatus.FAILED, CopyStatus.WRITING, CopyStatus.DISCARDED)


@dataclass(frozen=True)
class RemovedFile:
    """One file taken out of one cartridge's index, and the catalogue rows it carried.

    ``bytes`` is what became reclaimable on the cartridge (0 when the file had
    no known bytes on tape, or its cartridge is retired). ``generation`` is
    the first index generation without the file; None when the cartridge is
    retired and its index was left as it was (it is out of service).
    """

    site: str
    barcode: str
    path: str
    bytes: int
    generation: int | None
    copy_ids: tuple[int, ...]


@dataclass(frozen=True)
class CartridgeProblem:
    """A cartridge whose index could not be rewritten; its copies stay as they were."""

    site: str
    barcode: str
    error: str


@dataclass(frozen=True)
class DisposalOutcome:
    """What one pass did; ``done`` once no site or cartridge is left to do."""

    aip_id: str
    removed: tuple[RemovedFile, ...] = ()
    pending_sites: tuple[str, ...] = ()
    failed: tuple[CartridgeProblem, ...] = ()
    reclaimable_bytes: int = 0  # made reclaimable by this pass

    @property
    def done(self) -> bool:
        return not self.pending_sites and not self.failed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["removed"] = [asdict(r) | {"copy_ids": list(r.copy_ids)} for r in self.removed]
        out["pending_sites"] = list(self.pending_sites)
        out["failed"] = [asdict(p) for p in self.failed]
        out["done"] = self.done
        return out


@dataclass(frozen=True)
class _Target:
    copy_id: int
    site: str
    barcode: str
    path: str
    start_block: int | None
    cartridge_state: CartridgeState


class _Problem(Exception):
    """This cartridge's index cannot be rewritten now; the next cartridge is tried."""


@dataclass
class _Pass:
    aip_id: str
    tenant_id: str
    removed: list[RemovedFile] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    failed: list[CartridgeProblem] = field(default_factory=list)

    def outcome(self) -> DisposalOutcome:
        return DisposalOutcome(
            aip_id=self.aip_id,
            removed=tuple(self.removed),
            pending_sites=tuple(self.pending),
            failed=tuple(self.failed),
            reclaimable_bytes=sum(r.bytes for r in self.removed),
        )

    def postpone(self, site: str) -> None:
        if site not in self.pending:
            self.pending.append(site)


def remove_aip_copies(ctx: Context, aip_id: str) -> DisposalOutcome:
    """Take every copy of a disposed AIP out of its cartridge's LTFS index, at every site.

    Refuses an AIP that is not ``disposed`` (``ConflictError``): nothing
    else may ever leave an index. Copies verified, failed, discarded or
    left writing are all removed, since each may be listed. Per site,
    cartridges are taken mounted ones first, then by barcode, each once,
    its files in position order; after each cartridge's sync its copies
    become ``disposed`` and its ``reclaimable`` grows, in one transaction,
    and the transaction that leaves a site with nothing listed records that
    site's PREMIS ``deletion`` event (site, cartridges, index generations).
    Never raises for a site that is down or a busy drive: see the outcome.
    """
    if ctx.read_only:
        raise ConfigurationError(
            f"AIP {aip_id}: the data root is read-only, so no index can be rewritten"
        )
    with session_scope(ctx.sessions) as session:
        aip = session.get(AIP, aip_id)
        if aip is None:
            raise NotFoundError(f"no AIP {aip_id}", aip_id=aip_id)
        if aip.state != AIPState.DISPOSED:
            raise ConflictError(
                f"AIP {aip_id} is {aip.state.value}, not disposed: its copies stay on tape",
                aip_id=aip_id,
                rule="not-disposed",
            )
        work = _Pass(aip_id, aip.tenant_id)
        targets = _listed_copies(session, aip_id)
    by_site: dict[str, list[_Target]] = {}
    for target in targets:
        by_site.setdefault(target.site, []).append(target)
    configured = [s for s in ctx.settings.sites if s in by_site]
    for site_name in configured + sorted(set(by_site) - set(configured)):
        _dispose_at_site(ctx, work, site_name, by_site[site_name])
    outcome = work.outcome()
    if outcome.removed or not outcome.done:
        log.info(
            "disposal of AIP %s: %d file(s) left the indexes, %d bytes reclaimable; "
            "pending sites %s, failed cartridges %s",
            aip_id,
            len(outcome.removed),
            outcome.reclaimable_bytes,
            list(outcome.pending_sites) or "none",
            [p.barcode for p in outcome.failed] or "none",
        )
    return outcome


def finish_disposals(ctx: Context) -> list[DisposalOutcome]:
    """Carry on every disposal left half-done: disposed AIPs with copies still listed.

    ``repair`` calls it, so an operator's routine repair, run once a site is
    back, finishes what the outage held up. Oldest disposals first.
    """
    with session_scope(ctx.sessions) as session:
        aip_ids = list(
            session.scalars(
                select(AIP.id)
                .join(AIPVersion, AIPVersion.aip_id == AIP.id)
                .join(TapeCopy, TapeCopy.aip_version_id == AIPVersion.id)
                .where(AIP.state == AIPState.DISPOSED, TapeCopy.status.in_(_LISTED))
                .group_by(AIP.id, AIP.disposed_at)
                .order_by(AIP.disposed_at, AIP.id)
            )
        )
    return [remove_aip_copies(ctx, aip_id) for aip_id in aip_ids]


# -- one site, one cartridge --------------------------------------------------------------------


def _listed_copies(session: Session, aip_id: str) -> list[_Target]:
    rows = session.execute(
        select(
            TapeCopy.id,
            TapeCopy.site,
            TapeCopy.barcode,
            TapeCopy.path,
            TapeCopy.start_block,
            Cartridge.state,
        )
        .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
        .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
        .where(AIPVersion.aip_id == aip_id, TapeCopy.status.in_(_LISTED))
    ).all()
    return [
        _Target(copy_id, site, barcode, path, start_block, state)
        for copy_id, site, barcode, path, start_block, state in rows
    ]


def _dispose_at_site(ctx: Context, work: _Pass, site_name: str, targets: list[_Target]) -> None:
    try:
        site = get_site(ctx, site_name)
    except ConfigurationError as err:  # the catalogue knows a site the settings no longer name
        for barcode in sorted({t.barcode for t in targets}):
            work.failed.append(CartridgeProblem(site_name, barcode, str(err)))
        return
    if site.is_down():
        work.postpone(site_name)
        return
    items = [RecallItem(t.barcode, t.start_block, t) for t in targets]
    ordered = planning.order_recalls(items, mounted=site.mounted_barcodes())
    done: dict[str, int | None] = {}  # barcode -> generation, for the site's event
    for barcode, group in itertools.groupby(ordered, key=lambda item: item.barcode):
        cartridge_targets = [item.key for item in group]
        try:
            _dispose_on_cartridge(ctx, work, site, barcode, cartridge_targets, done)
        except SiteUnavailableError:
            work.postpone(site_name)  # went down meanwhile: the rest waits for it
            return
        except DeviceBusyError as err:
            log.info("disposal of %s: %s busy, left for later: %s", work.aip_id, barcode, err)
            work.postpone(site_name)
        except _Problem as problem:
            log.warning("disposal of %s: cartridge %s: %s", work.aip_id, barcode, problem)
            work.failed.append(CartridgeProblem(site_name, barcode, str(problem)))


def _dispose_on_cartridge(
    ctx: Context,
    work: _Pass,
    site: Site,
    barcode: str,
    targets: list[_Target],
    done: dict[str, int | None],
) -> None:
    paths = list(dict.fromkeys(t.path for t in targets))  # position order, each file once
    if targets[0].cartridge_state == CartridgeState.RETIRED:
        # Out of service (perhaps out of the library): no index is written to it.
        _record(ctx, work, site.name, barcode, targets, dict.fromkeys(paths), None, done)
        return
    with site.lock:
        site.check_available()
        volume = _open(ctx, site, barcode)
        sizes: dict[str, int | None] = {}
        for path in paths:
            try:
                sizes[path] = volume.remove(path).size
            except NotFoundError:
                sizes[path] = None  # gone already: an earlier pass synced, then stopped
            except IsADirectoryError as err:
                raise _Problem(f"{path} is a directory in the index") from err
        _sync(ctx, site, barcode, volume)
        _record(ctx, work, site.name, barcode, targets, sizes, volume.generation, done)


def _open(ctx: Context, site: Site, barcode: str) -> LTFSVolume:
    """The cartridge's volume, mounted for writing; faults counted as the store counts them."""
    try:
        volume, _ = site.open_volume(barcode)
    except WrongCartridgeError as err:
        note_cartridge_error(ctx, barcode, ErrorKind.WRONG)
        raise _Problem(f"wrong cartridge in the drive: {err}") from err
    except (MediaError, LTFSFormatError) as err:
        note_cartridge_error(ctx, barcode, ErrorKind.LOAD)
        raise _Problem(f"cannot be mounted: {err}") from err
    except NotFoundError as err:  # the library no longer holds it
        raise _Problem(str(err)) from err
    except StorageError as err:
        raise _Problem(str(err)) from err
    if volume.read_only:
        raise _Problem("mounted read-only (write-protected): its index cannot change")
    return volume


def _sync(ctx: Context, site: Site, barcode: str, volume: LTFSVolume) -> None:
    """Write the new index generation and make it durable, or leave the tape as it was."""
    try:
        try:
            volume.sync()
        except TapeFullError:
            # No room for an index on the data partition: unmounting puts the new
            # generation on the index partition alone, which is what a mount reads.
            volume.unmount()
            site.release(barcode)
            return
        site.library.flush(barcode)
    except StorageError as err:
        if isinstance(err, MediaError):
            note_cartridge_error(ctx, barcode, ErrorKind.WRITE)
        site.drop(barcode)  # the next mount reads whatever index the tape now ends with
        raise _Problem(f"the new index could not be written: {err}") from err


def _record(
    ctx: Context,
    work: _Pass,
    site: str,
    barcode: str,
    targets: list[_Target],
    sizes: dict[str, int | None],
    generation: int | None,
    done: dict[str, int | None],
) -> None:
    """The catalogue after one cartridge: copies disposed, bytes reclaimable, maybe the event.

    Rows another pass disposed of meanwhile are skipped, so nothing counts
    twice. A file no longer in the index counts the bytes its rows say were
    written (a row with a start block had its file synced once); rows of one
    path (a crashed attempt and the one that adopted its file) share it.
    """
    removed: list[RemovedFile] = []
    with session_scope(ctx.sessions) as session:
        # Passes over one AIP (an approval and a repair) take turns here, so the
        # pass that leaves a site with nothing listed sees it, and only that one.
        session.scalar(catalog.locked(select(AIP.id).where(AIP.id == work.aip_id)))
        rows = list(
            session.scalars(
                catalog.locked(
                    select(TapeCopy)
                    .where(
                        TapeCopy.id.in_([t.copy_id for t in targets]),
                        TapeCopy.status.in_(_LISTED),
                    )
                    .order_by(TapeCopy.id)
                )
            )
        )
        for path, size in sizes.items():
            same = [r for r in rows if r.path == path]
            if not same:
                continue
            if size is None:
                size = max((r.length for r in same if r.start_block is not None), default=0)
            if generation is None:
                size = 0  # a retired cartridge is never repacked
            for row in same:
                row.status = CopyStatus.DISPOSED
                if generation is None:
                    row.error = "disposed of; the cartridge is retired, its index was not rewritten"
            removed.append(
                RemovedFile(site, barcode, path, size, generation, tuple(r.id for r in same))
            )
        reclaimable = sum(r.bytes for r in removed)
        if reclaimable:
            session.execute(
                update(Cartridge)
                .where(Cartridge.barcode == barcode)
                .values(reclaimable=Cartridge.reclaimable + reclaimable)
                .execution_options(synchronize_session=False)
            )
        done[barcode] = generation
        if removed and not _listed_at_site(session, work.aip_id, site):
            _record_deletion(session, work, site, done)
    work.removed.extend(removed)


def _listed_at_site(session: Session, aip_id: str, site: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(TapeCopy)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .where(
                AIPVersion.aip_id == aip_id,
                TapeCopy.site == site,
                TapeCopy.status.in_(_LISTED),
            )
        )
        or 0
    )


def _record_deletion(session: Session, work: _Pass, site: str, done: dict[str, int | None]) -> None:
    """The site's PREMIS ``deletion`` event, in the transaction that finished the site.

    Cartridges finished by an earlier pass (a busy drive held one back) are
    named too, without a generation: this pass did not see it.
    """
    earlier = set(
        session.scalars(
            select(TapeCopy.barcode)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .where(
                AIPVersion.aip_id == work.aip_id,
                TapeCopy.site == site,
                TapeCopy.status == CopyStatus.DISPOSED,
            )
        )
    ) - set(done)
    named = [(b, g, False) for b, g in sorted(done.items())]
    named += [(b, None, True) for b in sorted(earlier)]
    catalog.record_event(
        session,
        tenant_id=work.tenant_id,
        aip_id=work.aip_id,
        type="deletion",
        outcome="success",
        detail=f"AIP {work.aip_id} removed from the LTFS index at site {site}: "
        + ", ".join(_describe(*n) for n in named),
        outcome_detail=(
            "a new index generation no longer lists the AIP's files; their bytes stay on "
            "the cartridge until it is repacked and are counted reclaimable"
        ),
        agents={"executing program": [AGENT]},
        objects={
            "site": site,
            "cartridges": [{"barcode": b, "generation": g} for b, g, _ in named],
        },
    )


def _describe(barcode: str, generation: int | None, earlier: bool) -> str:
    if earlier:
        return f"cartridge {barcode} (by an earlier pass)"
    if generation is None:
        return f"cartridge {barcode} (retired: its index was not rewritten)"
    return f"cartridge {barcode} (index generation {generation})"
