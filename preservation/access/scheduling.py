"""Which tape copy each version tar of a batch of DIP requests is read from, and in what order.

On tape the cost of a read is the mount (a minute or two of robot and load
time) and the wind to the file, not the bytes: reading ten tars from one
cartridge costs little more than reading one. So a batch is planned as a
whole: every tar is read once, however many DIPs want it; copies are chosen
so the batch touches as few cartridges as it can; and each cartridge is
visited once, its reads in block order, so the drive only winds forwards.
``plan_first_come`` is the naive alternative a benchmark measures this
against.

Nothing here touches a tape or the catalogue: callers pass plain values (the
verified copies, what each site's drives hold) and run the plan they get back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import zip_longest

__all__ = [
    "CartridgeVisit",
    "Read",
    "RecallPlan",
    "SiteView",
    "TarCopy",
    "TarNeed",
    "plan_first_come",
    "plan_recall",
]


@dataclass(frozen=True)
class TarCopy:
    """One verified copy of a version tar on tape."""

    copy_id: int
    site: str
    barcode: str
    start_block: int | None
    size: int
    #: False: its cartridge is suspect/failed/retired — use only if nothing else
    healthy: bool = True


@dataclass(frozen=True)
class TarNeed:
    """A version tar the batch must read (once, whatever number of DIPs want it)."""

    version_id: int
    copies: tuple[TarCopy, ...]


@dataclass(frozen=True)
class SiteView:
    """What the planner needs to know about one site's library right now.

    A site that is ``down`` (or has no drive) reads nothing: its copies are
    as good as absent for this batch.
    """

    name: str
    drives: int
    mounted: frozenset[str] = frozenset()  # barcodes in this site's drives now
    down: bool = False


@dataclass(frozen=True)
class Read:
    """One tar to read, and the copy it is read from."""

    version_id: int
    copy: TarCopy


@dataclass(frozen=True)
class CartridgeVisit:
    """One mount: every read from this cartridge in the batch, in block order."""

    site: str
    barcode: str
    reads: tuple[Read, ...]
    mounted: bool  # already in a drive when planned (no mount needed)


@dataclass(frozen=True)
class RecallPlan:
    """The tape work of one batch, and the versions no copy can serve."""

    visits: tuple[CartridgeVisit, ...]  # execution order
    unreadable: tuple[int, ...]  # version ids with no usable copy (all copies excluded/down)

    @property
    def mounts(self) -> int:
        """Visits that need a cartridge loaded: the dominant cost of a recall."""
        return sum(1 for v in self.visits if not v.mounted)

    def by_site(self) -> dict[str, list[CartridgeVisit]]:
        """The visits of each site (only sites with any), in execution order.

        Each site's drives work independently, so an executor may run these
        lists in parallel rather than follow the interleaved ``visits``.
        """
        grouped: dict[str, list[CartridgeVisit]] = {}
        for visit in self.visits:
            grouped.setdefault(visit.site, []).append(visit)
        return grouped

    # Last in the class body: once defined, ``bytes`` names this property here.
    @property
    def bytes(self) -> int:
        """Bytes read from tape by the whole plan."""
        return sum(r.copy.size for v in self.visits for r in v.reads)


# -- shared rules ---------------------------------------------------------------------------


def _reads_at(site: SiteView | None) -> bool:
    # A copy at a site the caller did not describe cannot be scheduled: no drives are known.
    return site is not None and not site.down and site.drives > 0


def _candidates(
    copies: Iterable[TarCopy], sites: Mapping[str, SiteView], exclude: Collection[int]
) -> list[TarCopy]:
    """The copies a need may be read from: healthy ones, else the unhealthy rest.

    A copy on a suspect cartridge may well read, but each read risks the
    medium and the drive; it is worth it only when it is the last chance.
    """
    usable = [c for c in copies if c.copy_id not in exclude and _reads_at(sites.get(c.site))]
    healthy = [c for c in usable if c.healthy]
    return healthy or usable


def _block_order(read: Read) -> tuple[int, int, int]:
    # None (position unknown: an older catalogue row) first, where the tape is anyway.
    block = read.copy.start_block
    return (0 if block is None else 1, block or 0, read.version_id)


def _merge(needs: Iterable[TarNeed]) -> dict[int, list[TarCopy]]:
    """Needs by version, in first-seen order; a version asked for twice keeps every copy."""
    merged: dict[int, list[TarCopy]] = {}
    for need in needs:
        copies = merged.setdefault(need.version_id, [])
        known = {c.copy_id for c in copies}
        copies.extend(c for c in need.copies if c.copy_id not in known)
    return merged


# -- the batch scheduler --------------------------------------------------------------------

_Cartridge = tuple[str, str]  # (site, barcode)


def plan_recall(
    needs: Iterable[TarNeed], sites: Sequence[SiteView], *, exclude: Collection[int] = ()
) -> RecallPlan:
    """The batch's reads as one visit per cartridge, few cartridges, sites kept busy together.

    Copies are chosen by greedy set cover over cartridges, which is within a
    logarithmic factor of the fewest cartridges and runs in milliseconds for
    any realistic batch (the exact problem is NP-hard). A cartridge already
    in a drive is taken first: it costs no mount, and any need it serves
    leaves another cartridge possibly unneeded. Among cartridges that serve
    as many needs, the one at the site with the least planned work per drive
    wins, so a batch spreads over both sites' drives instead of queuing at
    the first; then site order, then barcode, so the plan is reproducible.

    ``exclude`` lists copy ids not to read (a copy that has just failed to
    read, whose replacement is pending): the batch is replanned without them.
    """
    by_name = {s.name: s for s in sites}
    rank_of = {s.name: i for i, s in enumerate(sites)}

    on: dict[_Cartridge, dict[int, TarCopy]] = {}  # still-unassigned needs each cartridge serves
    where: dict[int, list[_Cartridge]] = {}
    unreadable: list[int] = []
    for version_id, copies in _merge(needs).items():
        candidates = _candidates(copies, by_name, exclude)
        if not candidates:
            unreadable.append(version_id)
            continue
        for copy in candidates:
            cartridge = (copy.site, copy.barcode)
            served = on.setdefault(cartridge, {})
            if version_id not in served:
                served[version_id] = copy
                where.setdefault(version_id, []).append(cartridge)

    planned = dict.fromkeys(by_name, 0)

    def rank(cartridge: _Cartridge) -> tuple[int, int, Fraction, int, str]:
        site, barcode = cartridge
        view = by_name[site]
        return (
            0 if barcode in view.mounted else 1,
            -len(on[cartridge]),
            Fraction(planned[site], view.drives),
            rank_of[site],
            barcode,
        )

    chosen: list[tuple[_Cartridge, dict[int, TarCopy]]] = []
    while on:
        best = min(on, key=rank)
        served = on.pop(best)
        chosen.append((best, served))
        planned[best[0]] += 1
        # Every need it serves is now settled: no other cartridge is visited for them,
        # and a cartridge left serving nothing drops out (so none is chosen twice).
        for version_id in served:
            for other in where.pop(version_id):
                rest = on.get(other)
                if rest is not None:
                    del rest[version_id]
                    if not rest:
                        del on[other]

    per_site: dict[str, list[CartridgeVisit]] = {s.name: [] for s in sites}
    for (site, barcode), served in chosen:
        reads = sorted((Read(v, c) for v, c in served.items()), key=_block_order)
        mounted = barcode in by_name[site].mounted
        per_site[site].append(CartridgeVisit(site, barcode, tuple(reads), mounted))
    queues = [
        sorted(visits, key=lambda v: (not v.mounted, v.barcode)) for visits in per_site.values()
    ]
    interleaved = tuple(v for turn in zip_longest(*queues) for v in turn if v is not None)
    return RecallPlan(interleaved, tuple(sorted(unreadable)))


# -- the baseline ---------------------------------------------------------------------------


def plan_first_come(
    needs: Sequence[TarNeed], sites: Sequence[SiteView], *, exclude: Collection[int] = ()
) -> RecallPlan:
    """The baseline ``plan_recall`` is measured against: each need served alone, as it came.

    This is what a system without a batch scheduler does: one visit (a mount
    unless the cartridge was in a drive when the batch was planned) per need,
    in arrival order, even when the next need is on the same cartridge or is
    the very same version; always the first site that can read it (in the
    order of ``sites``), so the other site's drives stay idle. The same copies
    are usable as for ``plan_recall`` (excluded copies and down sites skipped,
    unhealthy ones only as a last resort), so the two plans read the same
    versions and differ only in what they cost.
    """
    by_name = {s.name: s for s in sites}
    rank_of = {s.name: i for i, s in enumerate(sites)}
    visits: list[CartridgeVisit] = []
    unreadable: set[int] = set()
    for need in needs:
        candidates = _candidates(need.copies, by_name, exclude)
        if not candidates:
            unreadable.add(need.version_id)
            continue
        copy = min(candidates, key=lambda c: rank_of[c.site])  # min is stable: first wins a tie
        mounted = copy.barcode in by_name[copy.site].mounted
        visits.append(
            CartridgeVisit(copy.site, copy.barcode, (Read(need.version_id, copy),), mounted)
        )
    return RecallPlan(tuple(visits), tuple(sorted(unreadable)))
