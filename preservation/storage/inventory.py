"""Cartridges into and out of a site's library: ``tape import``, ``tape export``.

A real library (:class:`~preservation.storage.changer.ScsiLibrary`) takes
cartridges in and gives them out through its import/export ("mail") slots.

* :func:`import_cartridges` moves every cartridge waiting in the site's I/E
  slots into a free storage slot and registers it as start-up does: one the
  catalogue does not know is marked *unverified* first, then registered
  ``scratch``, and checked blank at its first mount (a foreign tape holding
  data is never written). One the catalogue knows at this site keeps its row;
  one it knows at another site, a cleaning cartridge, one without a readable
  label or one whose barcode the library already holds stays in its slot,
  reported with the rule it breaks.
* :func:`export_cartridge` puts one cartridge out in a free I/E slot. Only a
  ``retired`` cartridge (nothing live on it) may leave; with ``force``, also a
  ``full`` one when every live version on it has a verified copy on a healthy
  cartridge at another site: it is retired first, and ``preservation repair``
  writes those versions again at its own site. The catalogue keeps the row
  (state ``retired``); ``updated_at`` is the time it left.

An emulated library has no I/E slots. Its cartridges come from the settings:
each start adds the blank ones ``PRESERVATION_TAPE_MEDIA`` and
``PRESERVATION_TAPE_CARTRIDGES_PER_SITE`` (or the site file) name, so import
is refused with that advice. Export moves the cartridge's folder from
``<tape_dir>/<site>/cartridges/`` to ``<tape_dir>/<site>/exported/``, so the
library no longer lists it, as the catalogue's ``retired`` says; start-up
never puts an exported barcode back blank.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

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
    ConflictError,
    DeviceBusyError,
    InvalidRequestError,
    NotFoundError,
    StorageError,
)
from preservation.storage.changer import CLEANING_PREFIX, ScsiLibrary
from preservation.storage.library import EmulatedLibrary, _Lock
from preservation.storage.media import missing_elsewhere
from preservation.storage.siteconfig import site_specs
from preservation.storage.sites import Site, _register_cartridges, get_site

__all__ = ["EXPORTED_DIR", "ImportOutcome", "export_cartridge", "import_cartridges"]

log = logging.getLogger(__name__)

#: Where an emulated library's exported cartridges go: ``<tape_dir>/<site>/exported/<BARCODE>/``.
EXPORTED_DIR = "exported"


@dataclass
class ImportOutcome:
    """What ``tape import`` did at one site.

    ``imported``: one dict per cartridge moved in (barcode, the storage slot
    it now occupies, its catalogue state, whether it is new to the catalogue
    and so marked unverified). ``left``: cartridges still in an I/E slot
    (barcode or None, the I/E slot, the reason, its rule).
    """

    site: str
    imported: list[dict[str, Any]] = field(default_factory=list)
    left: list[dict[str, Any]] = field(default_factory=list)

    @property
    def barcodes(self) -> list[str]:
        return [str(c["barcode"]) for c in self.imported]

    @property
    def ok(self) -> bool:
        """True when no cartridge had to be left in an I/E slot."""
        return not self.left

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "ok": self.ok,
            "imported": self.imported,
            "left": self.left,
        }


# -- import -------------------------------------------------------------------------------------


def _site(ctx: Context, name: str) -> Site:
    if name not in ctx.settings.sites:
        raise NotFoundError(
            f"no site {name!r}; configured: {', '.join(ctx.settings.sites)}",
            rule="site",
            site=name,
        )
    return get_site(ctx, name)


def _emulated_import(site: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"site {site}'s library is emulated: it has no import/export slots. Its cartridges "
        "come from the settings: each start adds the blank cartridges of "
        "PRESERVATION_TAPE_MEDIA (or the site file's 'media') it lacks, up to "
        "PRESERVATION_TAPE_CARTRIDGES_PER_SITE ('cartridges'); for a new generation set "
        "PRESERVATION_TAPE_MEDIA=L9 (say) and run any command, e.g. `preservation tape ls`",
        rule="real-library",
        site=site,
        library="emulated",
    )


def import_cartridges(ctx: Context, site: str) -> ImportOutcome:
    """Move every cartridge waiting in ``site``'s I/E slots into the pool; what was done.

    Registration is start-up's: new barcodes are marked unverified, then
    registered ``scratch`` with the site's capacity; checked blank at their
    first mount. Cartridges that cannot join the pool stay where they are
    (``outcome.left``). A changer failure half-way still registers the
    cartridges already moved, then raises.
    """
    where = _site(ctx, site)
    library = where.library
    if not isinstance(library, ScsiLibrary):
        raise _emulated_import(site)
    where.check_available()
    capacity = next(spec.capacity for spec in site_specs(ctx.settings) if spec.name == site)
    outcome = ImportOutcome(site)

    status = library.status()
    waiting = [s for s in status.ie_slots if s.full]
    if not waiting:
        return outcome
    in_library = {s.barcode for s in status.storage_slots if s.full and s.barcode}
    in_library |= {d.barcode for d in status.drives if d.full and d.barcode}
    labels = [s.barcode for s in waiting if s.barcode]
    with session_scope(ctx.sessions) as session:
        catalogued = {
            c.barcode: (c.site, str(c.state.value))
            for c in session.scalars(select(Cartridge).where(Cartridge.barcode.in_(labels)))
        }
    reserved = status.reserved_slots()
    free = sum(1 for s in status.storage_slots if not s.full and s.number not in reserved)

    def leave(slot: Any, reason: str, rule: str) -> None:
        outcome.left.append(
            {"barcode": slot.barcode, "ie_slot": slot.number, "reason": reason, "rule": rule}
        )

    to_move: list[str] = []
    seen: set[str] = set()
    for slot in waiting:
        barcode = slot.barcode
        if barcode is None:
            leave(slot, "no readable barcode label: label it, or take it out", "barcode-label")
        elif barcode.upper().startswith(CLEANING_PREFIX):
            leave(
                slot,
                "a cleaning cartridge belongs to the library, never to a pool: load it with "
                "the library's own panel (or `mtx transfer`)",
                "pool-cartridge",
            )
        elif barcode in in_library or barcode in seen:
            leave(
                slot,
                f"the library already holds a cartridge labelled {barcode}: relabel one",
                "unique-barcode",
            )
        elif barcode in catalogued and catalogued[barcode][0] != site:
            leave(
                slot,
                f"{barcode} is catalogued at site {catalogued[barcode][0]}: a pool never lends "
                "a cartridge to another site",
                "one-site-per-cartridge",
            )
        elif len(to_move) >= free:
            leave(
                slot,
                "no free storage slot: export a retired cartridge first",
                "free-storage-slot",
            )
        else:
            seen.add(barcode)
            to_move.append(barcode)

    moved: dict[str, int] = {}
    try:
        for barcode in to_move:
            moved[barcode] = library.import_cartridge(barcode)
            log.info("site %s: %s imported into slot %d", site, barcode, moved[barcode])
    finally:
        if moved:
            new = [b for b in moved if b not in catalogued]
            # As at start-up: marked before it is registered, so no crash between
            # the two leaves an unknown cartridge registered as scratch and unmarked.
            library.mark_unverified(new)
            _register_cartridges(ctx, site, new, capacity)
    with session_scope(ctx.sessions) as session:
        states = {
            c.barcode: str(c.state.value)
            for c in session.scalars(select(Cartridge).where(Cartridge.barcode.in_(list(moved))))
        }
    unverified = set(library.unverified())
    for barcode, number in moved.items():
        outcome.imported.append(
            {
                "barcode": barcode,
                "slot": number,
                "state": states.get(barcode),
                "new": barcode not in catalogued,
                "unverified": barcode in unverified,
            }
        )
    return outcome


# -- export -------------------------------------------------------------------------------------


def _live_version_ids(session: Any, barcode: str) -> list[int]:
    """Versions of live AIPs (active, pending) with a verified or writing copy on the cartridge."""
    return sorted(
        set(
            session.scalars(
                select(TapeCopy.aip_version_id)
                .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
                .join(AIP, AIP.id == AIPVersion.aip_id)
                .where(
                    TapeCopy.barcode == barcode,
                    TapeCopy.status.in_([CopyStatus.VERIFIED, CopyStatus.WRITING]),
                    AIP.state.in_([AIPState.ACTIVE, AIPState.PENDING]),
                )
            )
        )
    )


def _check_exportable(ctx: Context, barcode: str, force: bool) -> tuple[str, bool]:
    """The cartridge's site, and whether the export is forced; refusals with their rule."""
    with session_scope(ctx.sessions) as session:
        row = session.get(Cartridge, barcode)
        if row is None:
            raise NotFoundError(
                f"no cartridge {barcode} in the catalogue", barcode=barcode, rule="catalogued"
            )
        site, state = row.site, row.state
        if state == CartridgeState.RETIRED:
            return site, False
        if not force or state != CartridgeState.FULL:
            hint = {
                CartridgeState.SUSPECT: "run `preservation repair`: it rebuilds its copies "
                "elsewhere and retires it",
                CartridgeState.FAILED: "run `preservation repair`: it rebuilds its copies "
                "elsewhere and retires it",
                CartridgeState.FULL: "migrate its site to new media (`preservation media "
                "migrate`), which retires it, or add --force when every live version on it "
                "is verified at another site",
            }.get(state, "it is in service: only a retired cartridge leaves the library")
            raise ConflictError(
                f"cartridge {barcode} is {state.value}, not retired: {hint}",
                barcode=barcode,
                rule="retired-before-export",
                state=str(state.value),
                site=site,
            )
        missing = missing_elsewhere(
            session, site, tuple(ctx.settings.sites), _live_version_ids(session, barcode)
        )
    if missing:
        shown = "; ".join(f"AIP {m['aip_id']} v{m['version']} at {m['site']}" for m in missing[:20])
        more = f" (and {len(missing) - 20} more)" if len(missing) > 20 else ""
        raise ConflictError(
            f"refusing to export {barcode} with --force: {len(missing)} live version(s) on it "
            f"have no verified copy on a healthy cartridge at another site: {shown}{more}. "
            "Run `preservation audit` and `preservation repair` until they do",
            barcode=barcode,
            rule="verified-copy-elsewhere",
            site=site,
            missing=missing,
        )
    return site, True


def _retire(ctx: Context, barcode: str, site: str) -> None:
    """Retire a full cartridge before it leaves; checked again inside the transaction."""
    with session_scope(ctx.sessions) as session:
        row = session.get_one(Cartridge, barcode, with_for_update=True)
        if row.state == CartridgeState.RETIRED:
            return
        missing = missing_elsewhere(
            session, site, tuple(ctx.settings.sites), _live_version_ids(session, barcode)
        )
        if row.state != CartridgeState.FULL or missing:
            raise ConflictError(
                f"cartridge {barcode} changed while it was checked (now {row.state.value}"
                f"{', with versions no other site holds' if missing else ''}): run the "
                "export again",
                barcode=barcode,
                rule="retired-before-export",
            )
        row.state = CartridgeState.RETIRED
        row.updated_at = utcnow()
    log.warning(
        "cartridge %s (site %s) retired to be exported: `preservation repair` writes its live "
        "versions again at %s",
        barcode,
        site,
        site,
    )


def _scsi_ready(library: ScsiLibrary, barcode: str, site: str) -> int | None:
    """Check the cartridge can go out now; the I/E slot it is in already, if it is."""
    status = library.status()
    holder = status.slot_holding(barcode)
    if holder is not None and holder.import_export:
        return holder.number  # a rerun after the move: only the catalogue is left
    drive = status.drive_holding(barcode)
    if drive is not None:
        raise DeviceBusyError(
            f"cartridge {barcode} is in drive {drive.number} of library {library.name}: "
            "export it once it is back in its slot",
            barcode=barcode,
            site=site,
        )
    if holder is None:
        raise NotFoundError(
            f"library {library.name} (site {site}, changer {library.changer.device}) holds no "
            f"cartridge {barcode}: it was taken out by hand, or is in another library",
            barcode=barcode,
            rule="cartridge-in-library",
            site=site,
        )
    if not status.ie_slots:
        raise ConflictError(
            f"library {library.name} (changer {library.changer.device}) has no import/export "
            f"slot: take {barcode} out through the library's own panel",
            barcode=barcode,
            rule="free-ie-slot",
            site=site,
        )
    if all(s.full for s in status.ie_slots):
        taken = ", ".join(f"{s.number} ({s.barcode or 'no label'})" for s in status.ie_slots)
        raise ConflictError(
            f"every import/export slot of library {library.name} is full ({taken}): empty "
            f"the mail slot, then export {barcode} again",
            barcode=barcode,
            rule="free-ie-slot",
            site=site,
        )
    return None


def _emulated_ready(library: EmulatedLibrary, barcode: str, site: str) -> Path | None:
    """Check the cartridge's folder can move now; where it is already, if it moved."""
    source = library.cartridge_path(barcode)
    target = library.root / EXPORTED_DIR / barcode
    if not source.is_dir():
        if target.is_dir():
            return target
        raise NotFoundError(
            f"library {library.name} (site {site}) holds no cartridge {barcode} "
            f"(no folder {source})",
            barcode=barcode,
            rule="cartridge-in-library",
            site=site,
        )
    if target.exists():
        raise StorageError(
            f"{target} already exists: move it aside, then export {barcode} again",
            barcode=barcode,
            path=target,
            site=site,
        )
    return None


def export_cartridge(ctx: Context, barcode: str, *, force: bool = False) -> dict[str, Any]:
    """Put a retired cartridge out of its site's library; what was done, as a dict.

    A real library: into a free I/E slot. An emulated one: its folder to
    ``<tape_dir>/<site>/exported/``. ``force`` also lets a ``full`` cartridge
    go when every live version on it is verified on a healthy cartridge at
    another site; once the library is known to be able to take it out, it is
    retired, then moved (so a crash between the two leaves a retired
    cartridge in the library, never a counted copy outside it), and the
    repair writes those versions again at this site. Running it again after
    the move only records it. The row stays, state ``retired``;
    ``updated_at`` is when it left.
    """
    site, forced = _check_exportable(ctx, barcode, force)
    where = _site(ctx, site)
    library = where.library
    where.check_available()
    result: dict[str, Any] = {
        "barcode": barcode,
        "site": site,
        "forced": forced,
        "ie_slot": None,
        "path": None,
    }
    with where.lock:
        if barcode in where.mounted_barcodes():
            where.release(barcode)  # back in its slot (index written), then out
        if isinstance(library, ScsiLibrary):
            result["library"] = "scsi"
            slot = _scsi_ready(library, barcode, site)
            already = slot is not None
            if forced:
                _retire(ctx, barcode, site)
            if slot is None:
                slot = library.export_cartridge(barcode)
            # It left the library: a first-mount check it never had is moot now.
            (library.unverified_dir / barcode).unlink(missing_ok=True)
            result["ie_slot"] = slot
        elif isinstance(library, EmulatedLibrary):
            result["library"] = "emulated"
            path = _emulated_ready(library, barcode, site)
            already = path is not None
            if path is None:
                path = library.root / EXPORTED_DIR / barcode
                lock = _Lock(library.lock_dir / f"{barcode}.lock")
                if not lock.acquire():
                    raise DeviceBusyError(
                        f"cartridge {barcode} is in use by another process", barcode=barcode
                    )
                try:
                    if forced:
                        _retire(ctx, barcode, site)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(library.cartridge_path(barcode), path)
                finally:
                    lock.release()
            elif forced:
                _retire(ctx, barcode, site)
            result["path"] = str(path)
        else:  # pragma: no cover - no other kind of library exists
            raise InvalidRequestError(
                f"site {site}'s library cannot export cartridges", rule="real-library", site=site
            )
    with session_scope(ctx.sessions) as session:
        row = session.get_one(Cartridge, barcode)
        row.updated_at = utcnow()  # the time it left; the row stays, retired
    with session_scope(ctx.sessions) as session:  # as `tape ls` will show it
        row = session.get_one(Cartridge, barcode)
        result["state"] = str(row.state.value)
        result["exported_at"] = row.updated_at.isoformat()
    result["already"] = already
    log.info("site %s: cartridge %s exported (%s)", site, barcode, result)
    return result
