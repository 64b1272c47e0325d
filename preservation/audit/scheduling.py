"""Which cartridges an audit reads, and in what order: pure, so the planner can be simulated.

A fixity audit is judged by two things: that no copy goes unchecked for
longer than its tenant's audit interval, and what it costs in mounts and
drive-hours. Reading the catalogue front to back in every run does badly on
both once a run is bounded (``--max-cartridges``, ``--max-hours``): the same
first cartridges are read every night and the last ones never. So a run reads
the cartridges whose oldest check is oldest first (never-checked ones before
all), each one mounted once and read in block order, and stops at its bound;
the next run carries on where the oldest checks now are. That is the whole
policy; the benchmark (``bench/bench_audit.py``) plays a year of it on the
simulated clock against catalogue order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from preservation.storage.clock import DriveTiming

__all__ = [
    "CartridgeRound",
    "CopyToCheck",
    "bound_rounds",
    "estimate_seconds",
    "oldest_first",
    "order_rounds",
]


@dataclass(frozen=True)
class CopyToCheck:
    """One verified copy as the audit needs it; ``checked_at`` is its last read-back."""

    copy_id: int
    aip_id: str
    version: int
    site: str
    barcode: str
    path: str
    start_block: int
    length: int
    checked_at: datetime | None


@dataclass(frozen=True)
class CartridgeRound:
    """One cartridge's share of an audit: its copies in block order, read in one mount."""

    site: str
    barcode: str
    copies: tuple[CopyToCheck, ...]

    @property
    def oldest_check(self) -> datetime | None:
        """The cartridge is as stale as its stalest copy (None: a copy never checked)."""
        times = [c.checked_at for c in self.copies]
        if any(t is None for t in times):
            return None
        return min(t for t in times if t is not None)

    @property
    def nbytes(self) -> int:
        return sum(c.length for c in self.copies)


def oldest_first(copies: Iterable[CopyToCheck]) -> list[CartridgeRound]:
    """Group copies by cartridge (block order inside) and put the stalest cartridge first."""
    by_cartridge: dict[tuple[str, str], list[CopyToCheck]] = {}
    for c in copies:
        by_cartridge.setdefault((c.site, c.barcode), []).append(c)
    return order_rounds(
        CartridgeRound(site, barcode, tuple(sorted(cs, key=lambda c: (c.start_block, c.copy_id))))
        for (site, barcode), cs in by_cartridge.items()
    )


def order_rounds(rounds: Iterable[CartridgeRound]) -> list[CartridgeRound]:
    """Never-checked cartridges first, then by oldest check.

    Ties (for instance every cartridge of a new archive) go by site and
    barcode, so two runs over the same catalogue plan the same way.
    """
    epoch = datetime.min.replace(tzinfo=UTC)

    def key(r: CartridgeRound) -> tuple[bool, datetime, str, str]:
        oldest = r.oldest_check
        if oldest is None:
            return (False, epoch, r.site, r.barcode)
        if oldest.tzinfo is None:  # SQLite hands back naive UTC
            oldest = oldest.replace(tzinfo=UTC)
        return (True, oldest, r.site, r.barcode)

    return sorted(rounds, key=key)


def estimate_seconds(
    r: CartridgeRound, timing: DriveTiming, blocks_per_length: int, block_size: int
) -> float:
    """Drive seconds to read one cartridge's copies: load, wind to each run, stream, unload.

    Adjacent copies are read in one pass; a gap costs a locate over its
    length. ``blocks_per_length`` is how many blocks one end-to-end pass of
    the tape holds (an estimate; only the ordering of runs depends on it).
    """
    seconds = timing.load_seconds + timing.unload_seconds
    position = 0
    for c in r.copies:
        if c.start_block != position:
            seconds += timing.seek_seconds(abs(c.start_block - position) / blocks_per_length)
        seconds += timing.transfer_seconds(c.length)
        position = c.start_block + -(-c.length // block_size)
    return seconds


def bound_rounds(
    rounds: Sequence[CartridgeRound],
    *,
    max_cartridges: int | None = None,
    max_seconds: float | None = None,
    cost: dict[str, float] | None = None,
) -> list[CartridgeRound]:
    """The rounds a run begins: no new cartridge once the time is spent, the first one always.

    That is the live run's rule too (``fixity.audit_copies``, by the wall
    clock): a cartridge begun is read to its end, so no copy is left
    half-judged, and every run makes progress however short its hours.
    ``cost`` (drive seconds per barcode, from :func:`estimate_seconds`) is
    only needed with ``max_seconds``: the simulated year uses it.
    """
    chosen: list[CartridgeRound] = []
    spent = 0.0
    for r in rounds:
        if max_cartridges is not None and len(chosen) >= max_cartridges:
            break
        if max_seconds is not None and spent >= max_seconds:
            break
        chosen.append(r)
        spent += (cost or {}).get(r.barcode, 0.0)
    return chosen
