"""Sites: one tape library and its cartridge pool per data centre, built from settings.

A ``Site`` keeps LTFS volumes mounted between writes, so consecutive stores on
one site stream to the same cartridge without a mount each (a cartridge leaves
its drive only when another needs the drive, or at :meth:`Site.release_all`).
It also knows whether the site is reachable: an operator (or a monitoring
hook) creates ``<tape_dir>/<site>/DOWN`` to take a site out; tests may set
``forced_down``. A down site raises :class:`SiteUnavailableError`, a transient
error: the store is retried later and the AIP stays pending meanwhile.

Sites are built once per :class:`~preservation.context.Context` and cached in
``ctx.cache``; the catalogue gets a ``Cartridge`` row for every cartridge the
library holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from preservation.catalog.database import session_scope
from preservation.catalog.models import Cartridge, CartridgeState
from preservation.config import Settings
from preservation.context import Context
from preservation.errors import (
    ConfigurationError,
    DeviceBusyError,
    EndOfDataError,
    OversizeBlockError,
    SiteUnavailableError,
    StorageError,
    WrongCartridgeError,
)
from preservation.storage.clock import Clock
from preservation.storage.interfaces import TapeDevice
from preservation.storage.library import Durability, EmulatedLibrary, TapeLibrary, barcode_for
from preservation.storage.ltfs import BLOCK_SIZE, LTFSVolume

__all__ = [
    "CACHE_KEY",
    "FEED_WINDOW",
    "FeedMeter",
    "Site",
    "SiteStats",
    "build_sites",
    "get_site",
    "site_letter",
]

log = logging.getLogger(__name__)

CACHE_KEY = "storage.sites"
EMULATED_BACKEND = "preservation.storage.emulator:EmulatedTapeDevice"


#: Bytes over which the host feed rate is taken. A drive streams from its data
#: buffer, so what it feels is the feed averaged over roughly a buffer's worth;
#: this window is far smaller than an LTO drive's buffer, so it is the strict
#: side: a dip too short for a drive to notice may still show here.
FEED_WINDOW = 64 << 20


@dataclass
class FeedMeter:
    """Host wall-clock marks of the bytes handed to the drive while one file is written.

    The emulator charges its simulated clock at the nominal streaming rate
    whatever the host does, so only the host's side can show shoe-shining:
    a real drive slows down (or stops and repositions) when the host hands it
    data slower than its minimum streaming rate. ``mark(total)`` is called at
    each hand-off with the bytes handed so far (0 at the first).
    """

    clock: Callable[[], float] = time.perf_counter
    marks: list[tuple[float, int]] = field(default_factory=list)

    def mark(self, total: int) -> None:
        self.marks.append((self.clock(), total))

    @property
    def nbytes(self) -> int:
        return self.marks[-1][1] if self.marks else 0

    @property
    def seconds(self) -> float:
        return self.marks[-1][0] - self.marks[0][0] if len(self.marks) > 1 else 0.0

    def min_rate(self, window: int = FEED_WINDOW) -> float | None:
        """The slowest feed over any run of hand-offs spanning ``window`` bytes (bytes/s).

        A file shorter than the window is one run, first to last hand-off;
        None when nothing was timed.
        """
        marks = self.marks
        if len(marks) < 2:
            return None
        worst: float | None = None
        j = 0
        for i in range(len(marks) - 1):
            j = max(j, i + 1)
            while j < len(marks) - 1 and marks[j][1] - marks[i][1] < window:
                j += 1
            if marks[j][1] - marks[i][1] < window and i > 0:
                break  # the tail is shorter than a window; the run before covered it
            nbytes, seconds = marks[j][1] - marks[i][1], marks[j][0] - marks[i][0]
            if nbytes and seconds > 0:
                rate = nbytes / seconds
                worst = rate if worst is None else min(worst, rate)
        return worst


@dataclass
class SiteStats:
    """Streaming figures of the writes made through this site object (for benchmarks).

    ``min_host_feed`` is what a real drive would see: the slowest rate at which
    this host handed a file's bytes to the drive, over any :data:`FEED_WINDOW`
    (:class:`FeedMeter`); below the drive's minimum streaming speed a real
    drive shoe-shines. ``min_host_rate`` is the same over each whole file.
    ``min_tape_rate`` is bytes over *simulated* drive seconds per file: the
    drive model's own speed, which the emulator charges at the nominal rate
    (it cannot show a slow host, and is kept for the clock's accounting).
    """

    files_written: int = 0
    bytes_written: int = 0
    tape_seconds: float = 0.0
    host_seconds: float = 0.0
    min_tape_rate: float | None = None
    min_host_rate: float | None = None
    min_host_feed: float | None = None

    def record(
        self,
        nbytes: int,
        tape_seconds: float,
        host_seconds: float,
        feed_rate: float | None = None,
    ) -> None:
        self.files_written += 1
        self.bytes_written += nbytes
        self.tape_seconds += tape_seconds
        self.host_seconds += host_seconds
        if nbytes and tape_seconds > 0:
            rate = nbytes / tape_seconds
            self.min_tape_rate = (
                rate if self.min_tape_rate is None else min(self.min_tape_rate, rate)
            )
        if nbytes and host_seconds > 0:
            rate = nbytes / host_seconds
            self.min_host_rate = (
                rate if self.min_host_rate is None else min(self.min_host_rate, rate)
            )
        if feed_rate is not None:
            self.min_host_feed = (
                feed_rate if self.min_host_feed is None else min(self.min_host_feed, feed_rate)
            )


class Site:
    """One data centre: its library, its mounted volumes and its availability."""

    def __init__(self, name: str, root: Path, library: TapeLibrary) -> None:
        self.name = name
        self.root = root
        self.library = library
        self.forced_down: bool | None = None  # None: the DOWN file decides
        self.lock = threading.RLock()  # one LTFS volume does one thing at a time
        self.stats = SiteStats()
        self._volumes: OrderedDict[str, LTFSVolume] = OrderedDict()

    # -- availability ------------------------------------------------------------------------

    @property
    def down_flag(self) -> Path:
        return self.root / "DOWN"

    def is_down(self) -> bool:
        if self.forced_down is not None:
            return self.forced_down
        return self.down_flag.exists()

    def check_available(self) -> None:
        if self.is_down():
            reason = ""
            if self.forced_down is None:
                try:
                    reason = self.down_flag.read_text(encoding="utf-8").strip()
                except OSError:
                    reason = ""
            raise SiteUnavailableError(
                f"site {self.name} is marked down" + (f": {reason}" if reason else ""),
                site=self.name,
            )

    def mark_down(self, reason: str = "") -> None:
        """Take the site out (persistently, for every process) until :meth:`mark_up`."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.down_flag.write_text(reason + "\n", encoding="utf-8")

    def mark_up(self) -> None:
        self.down_flag.unlink(missing_ok=True)

    # -- volumes -----------------------------------------------------------------------------

    def mounted_barcodes(self) -> set[str]:
        return set(self.library.mounted())

    def open_volume(self, barcode: str, *, format_blank: bool = False) -> tuple[LTFSVolume, bool]:
        """The cartridge's LTFS volume, mounting (and, if blank and allowed, formatting) it.

        Returns ``(volume, formatted)``. The drive's idea of the barcode is
        checked before anything is written, so a library mix-up can never make
        us format or append to a cartridge other than the one catalogued.
        """
        volume = self._volumes.get(barcode)
        if volume is not None:
            self._volumes.move_to_end(barcode)
            return volume, False
        device = self._mount(barcode)
        try:
            found = device.barcode
            if found is not None and found.strip() != barcode:
                raise WrongCartridgeError(
                    f"site {self.name}: the drive holds {found}, not {barcode}",
                    barcode=barcode,
                    found=found,
                )
            formatted = False
            if _is_blank(device):
                if not format_blank:
                    raise StorageError(
                        f"cartridge {barcode} is blank but the catalogue says it holds data",
                        barcode=barcode,
                    )
                volume = LTFSVolume.format(device, barcode)
                self.library.flush(barcode)
                formatted = True
            else:
                volume = LTFSVolume.mount(device, barcode)
        except BaseException:
            self.library.unmount(barcode)
            raise
        self._volumes[barcode] = volume
        return volume, formatted

    def release(self, barcode: str) -> None:
        """Write the index partition (unmount LTFS) and put the cartridge back in its slot."""
        volume = self._volumes.pop(barcode, None)
        try:
            if volume is not None:
                volume.unmount()
        except StorageError as err:
            log.warning("site %s: unmounting %s failed: %s", self.name, barcode, err)
        finally:
            self.library.unmount(barcode)

    def drop(self, barcode: str) -> None:
        """Forget a volume whose drive failed, without writing to it; the robot pulls the tape."""
        self._volumes.pop(barcode, None)
        self.library.unmount(barcode)

    def release_all(self) -> None:
        for barcode in list(self._volumes):
            self.release(barcode)
        for barcode in list(self.library.mounted()):
            self.library.unmount(barcode)

    def _mount(self, barcode: str) -> TapeDevice:
        try:
            return self.library.mount(barcode)
        except DeviceBusyError:
            if not self._volumes or barcode in self._volumes:
                raise
        # Every drive we hold is busy with another cartridge: that batch is over.
        self.release(next(iter(self._volumes)))
        return self.library.mount(barcode)


def _is_blank(device: TapeDevice) -> bool:
    """True when both partitions end at block 0: never written, safe to format."""
    for partition in range(max(device.partition_count, 1)):
        try:
            device.locate(partition, 0)
            device.read_block(BLOCK_SIZE)
        except EndOfDataError:
            continue
        except OversizeBlockError:
            pass
        return False  # a record or filemark: something was written here
    return True


# -- building from settings -------------------------------------------------------------------


def site_letter(settings: Settings, name: str) -> str:
    """``A`` for the first configured site, ``B`` for the second: the barcodes' first letter."""
    try:
        index = list(settings.sites).index(name)
    except ValueError:
        raise ConfigurationError(
            f"unknown site {name!r}; configured: {', '.join(settings.sites)}"
        ) from None
    return chr(ord("A") + index)


def build_sites(
    ctx: Context,
    *,
    durability: Durability = "flush",
    clock: Clock | None = None,
    move_seconds: float = 10.0,
) -> dict[str, Site]:
    """Build (or rebuild) every configured site and cache it in ``ctx.cache``.

    Entry points call this only to choose non-default wiring (tests turn
    ``durability`` to "none", benchmarks may share a clock); :func:`get_site`
    builds with defaults on first use.
    """
    settings = ctx.settings
    if settings.tape_backend != EMULATED_BACKEND:
        raise ConfigurationError(
            f"tape backend {settings.tape_backend!r} has no library implementation yet; "
            f"only {EMULATED_BACKEND} (emulated libraries) is available"
        )
    old = ctx.cache.get(CACHE_KEY)
    if old:
        for site in old.values():
            site.release_all()
    sites: dict[str, Site] = {}
    for name in settings.sites:
        letter = site_letter(settings, name)
        root = settings.tape_dir / name
        library = EmulatedLibrary(
            root,
            name=name,
            drives=settings.tape_drives_per_site,
            clock=clock,
            move_seconds=move_seconds,
            durability=durability,
            production=settings.production,
        )
        for number in range(1, settings.tape_cartridges_per_site + 1):
            library.add_cartridge(barcode_for(letter, number), capacity=settings.tape_capacity)
        sites[name] = Site(name, root, library)
        _register_cartridges(ctx, name, library.barcodes(), settings.tape_capacity)
    ctx.cache[CACHE_KEY] = sites
    return sites


def _register_cartridges(ctx: Context, site: str, barcodes: list[str], capacity: int) -> None:
    try:
        _insert_cartridges(ctx, site, barcodes, capacity)
    except IntegrityError:
        # Another process registered them between our read and our insert.
        _insert_cartridges(ctx, site, barcodes, capacity)


def _insert_cartridges(ctx: Context, site: str, barcodes: list[str], capacity: int) -> None:
    with session_scope(ctx.sessions) as session:
        known = set(
            session.scalars(select(Cartridge.barcode).where(Cartridge.barcode.in_(barcodes)))
        )
        for barcode in barcodes:
            if barcode not in known:
                session.add(
                    Cartridge(
                        barcode=barcode,
                        site=site,
                        state=CartridgeState.SCRATCH,
                        capacity=capacity,
                        used=0,
                        errors=0,
                    )
                )


def get_site(ctx: Context, name: str) -> Site:
    sites: dict[str, Site] | None = ctx.cache.get(CACHE_KEY)
    if sites is None:
        sites = build_sites(ctx)
    try:
        return sites[name]
    except KeyError:
        raise ConfigurationError(f"unknown site {name!r}; configured: {', '.join(sites)}") from None
