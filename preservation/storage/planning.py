"""Pure decisions for archival storage: which cartridge takes a write, in what order to recall,
what a cartridge's state becomes after an error, and which copies a repair must rebuild.

Nothing here touches a tape, a file or the catalogue: callers pass plain values
and act on the answer, so every rule can be tested in microseconds and read in
one place (the "functional core" of the storage shell in ``service.py`` and
``recovery.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from preservation.catalog.models import CartridgeState, CopyStatus

__all__ = [
    "BAD_CARTRIDGE_STATES",
    "FAILED_AFTER_ERRORS",
    "WRITABLE_STATES",
    "CartridgeView",
    "CopyView",
    "ErrorKind",
    "RecallItem",
    "RepairNeed",
    "batch_recalls",
    "candidate_cartridges",
    "order_recalls",
    "plan_repairs",
    "state_after_error",
]

#: A cartridge with this many errors is not trusted any more: failed, its copies rebuilt.
FAILED_AFTER_ERRORS = 3
WRITABLE_STATES = frozenset({CartridgeState.SCRATCH, CartridgeState.FILLING})
#: Copies on these cartridges do not count towards "two verified copies".
BAD_CARTRIDGE_STATES = frozenset(
    {CartridgeState.SUSPECT, CartridgeState.FAILED, CartridgeState.RETIRED}
)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class CartridgeView:
    """What the planner needs to know about one cartridge of a site's pool."""

    barcode: str
    state: CartridgeState
    free: int  # bytes a new file may still use
    mounted: bool = False
    errors: int = 0


def candidate_cartridges(
    cartridges: Iterable[CartridgeView], size: int, *, exclude: Collection[str] = ()
) -> list[str]:
    """Cartridges that may take a ``size``-byte file, best first.

    Order: a mounted filling cartridge (no mount at all), other filling
    cartridges fullest first (finish a tape before opening one, so fewer
    tapes are half used), then scratch cartridges, a mounted one first.
    Cartridges in ``exclude`` (already holding a failed copy of the same
    version, or refusing to load) and those too small are left out.
    """
    usable = [
        c
        for c in cartridges
        if c.state in WRITABLE_STATES
        and c.barcode not in exclude
        and c.free >= size
        and c.errors < FAILED_AFTER_ERRORS
    ]

    def rank(c: CartridgeView) -> tuple[int, int, int, str]:
        filling = c.state == CartridgeState.FILLING
        return (0 if filling else 1, 0 if c.mounted else 1, c.free if filling else 0, c.barcode)

    return [c.barcode for c in sorted(usable, key=rank)]


class ErrorKind(StrEnum):
    """What went wrong with a cartridge, as far as its state is concerned."""

    READ = "read"  # one unreadable or corrupt file: the rest of the tape may be fine
    WRITE = "write"  # the drive cannot write it: no new data, evacuate what it holds
    LOAD = "load"  # the cartridge does not load: nothing on it can be read
    WRONG = "wrong"  # the library threaded another cartridge: the medium is not at fault


def state_after_error(state: CartridgeState, errors: int, kind: ErrorKind) -> CartridgeState:
    """The cartridge state once an error of ``kind`` has brought its count to ``errors``.

    A single read error stays a copy problem (that copy is replaced); repeated
    errors of any kind fail the cartridge, and a cartridge that cannot be
    written or loaded is suspect at once, because every copy on it is at risk.
    A wrong cartridge in the drive is the library's mix-up (a swapped label, a
    misfiled slot): it says nothing about the catalogued medium, so it never
    moves the state, however often it happens.
    """
    if state in (CartridgeState.FAILED, CartridgeState.RETIRED) or kind == ErrorKind.WRONG:
        return state
    if errors >= FAILED_AFTER_ERRORS:
        return CartridgeState.FAILED
    if kind in (ErrorKind.WRITE, ErrorKind.LOAD):
        return CartridgeState.SUSPECT
    return state


# -- recall ordering ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecallItem(Generic[K]):
    """One file to read: where it is (cartridge, first block) and what the caller calls it."""

    barcode: str
    start_block: int | None
    key: K
    size: int = 0


def order_recalls(
    items: Iterable[RecallItem[K]], *, mounted: Collection[str] = ()
) -> list[RecallItem[K]]:
    """Items grouped by cartridge, by position within it; cartridges already mounted first.

    Reading in this order mounts each cartridge once and only ever winds
    forwards, which is what a batch of recalls costs least on tape.
    """
    return sorted(
        items,
        key=lambda i: (
            0 if i.barcode in mounted else 1,
            i.barcode,
            -1 if i.start_block is None else i.start_block,
        ),
    )


def batch_recalls(items: Sequence[RecallItem[K]], *, max_bytes: int) -> list[list[RecallItem[K]]]:
    """Ordered items cut into batches of at most ``max_bytes`` (one item may exceed it alone).

    A batch is read to temporary disk and then written, so the bound is the
    temporary space a repair may use; order within and across batches is kept.
    """
    batches: list[list[RecallItem[K]]] = []
    current: list[RecallItem[K]] = []
    used = 0
    for item in items:
        if current and used + item.size > max_bytes:
            batches.append(current)
            current, used = [], 0
        current.append(item)
        used += item.size
    if current:
        batches.append(current)
    return batches


# -- repair planning ------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyView:
    """One catalogued copy as the repair planner sees it."""

    copy_id: int
    version_id: int
    site: str
    barcode: str
    status: CopyStatus
    cartridge_state: CartridgeState
    start_block: int | None = None


@dataclass(frozen=True)
class RepairNeed:
    """A version lacking a trustworthy copy at ``site``.

    ``sources`` are verified copies elsewhere on healthy cartridges (best
    first); ``replaces`` are the copies at ``site`` to discard once a new one
    is verified; ``avoid`` are cartridges at ``site`` that must not take it.
    """

    version_id: int
    site: str
    sources: tuple[CopyView, ...]
    replaces: tuple[int, ...]
    avoid: frozenset[str] = field(default_factory=frozenset)


def _healthy(copy: CopyView) -> bool:
    return copy.status == CopyStatus.VERIFIED and copy.cartridge_state not in BAD_CARTRIDGE_STATES


def plan_repairs(
    copies_by_version: Mapping[int, Sequence[CopyView]], sites: Sequence[str]
) -> list[RepairNeed]:
    """Every (version, site) without a verified copy on a healthy cartridge.

    A version with no healthy copy anywhere still gets a need (with no
    sources): the caller reports it, or writes it from staging if it has one.
    """
    needs: list[RepairNeed] = []
    for version_id, copies in sorted(copies_by_version.items()):
        healthy = [c for c in copies if _healthy(c)]
        for site in sites:
            if any(c.site == site for c in healthy):
                continue
            here = [c for c in copies if c.site == site]
            replaces = tuple(
                c.copy_id for c in here if c.status in (CopyStatus.VERIFIED, CopyStatus.FAILED)
            )
            avoid = frozenset(
                c.barcode
                for c in here
                if c.status == CopyStatus.FAILED or c.cartridge_state in BAD_CARTRIDGE_STATES
            )
            sources = tuple(
                sorted(
                    (c for c in healthy if c.site != site),
                    key=lambda c: (c.site, c.barcode, c.start_block or 0),
                )
            )
            needs.append(RepairNeed(version_id, site, sources, replaces, avoid))
    return needs
