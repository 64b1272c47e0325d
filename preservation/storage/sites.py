"""Sites: one tape library and its cartridge pool per data centre, built from settings.

A ``Site`` keeps LTFS volumes mounted between writes, so consecutive stores on
one site stream to the same cartridge without a mount each (a cartridge leaves
its drive when another needs the drive, at :meth:`Site.release_all`, or once
the site has been idle for ``idle_seconds``). The idle release matters when
one process per drive runs (Celery tape workers): a worker waiting for work
would otherwise hold its drive and cartridge forever, and the audit worker,
recalls and repairs in other processes would find every cartridge busy. It
runs under the site's lock, the one every tape operation holds, so it falls
between operations, never inside one.
It also knows whether the site is reachable: an operator (or a monitoring
hook) creates ``<tape_dir>/<site>/DOWN`` to take a site out; tests may set
``forced_down``. A down site raises :class:`SiteUnavailableError`, a transient
error: the store is retried later and the AIP stays pending meanwhile.

Sites are built once per :class:`~preservation.context.Context` and cached in
``ctx.cache``; the catalogue gets a ``Cartridge`` row for every cartridge the
library holds. A cartridge the catalogue does not know is registered as
scratch only while it is blank: one holding an LTFS volume beside a new or
emptied catalogue is refused, since scratch is what the store formats or
appends to. A read-only context builds read-only sites: nothing registered,
nothing written to any cartridge.
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from weakref import WeakSet

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from preservation.catalog.database import session_scope
from preservation.catalog.models import Cartridge, CartridgeState
from preservation.config import Settings
from preservation.context import Context
from preservation.errors import (
    ConfigurationError,
    DataRootError,
    DeviceBusyError,
    EndOfDataError,
    OversizeBlockError,
    SiteUnavailableError,
    StorageError,
    WrongCartridgeError,
)
from preservation.storage.changer import MtxChanger, ScsiLibrary
from preservation.storage.clock import Clock
from preservation.storage.device import LinuxTapeDevice
from preservation.storage.interfaces import TapeDevice
from preservation.storage.library import Durability, EmulatedLibrary, TapeLibrary, barcode_for
from preservation.storage.ltfs import BLOCK_SIZE, LTFSVolume
from preservation.storage.siteconfig import SiteSpec, site_specs

__all__ = [
    "CACHE_KEY",
    "FEED_WINDOW",
    "FeedMeter",
    "IDLE_UNMOUNT_SECONDS",
    "Site",
    "SiteLock",
    "SiteStats",
    "build_sites",
    "count_mount",
    "get_site",
    "site_letter",
]

log = logging.getLogger(__name__)

CACHE_KEY = "storage.sites"

#: Idle time after which a site gives its drives back, when the settings say
#: nothing (``tape_idle_unmount_seconds``): long enough for AIPs arriving back
#: to back to share one mount, short enough that an audit soon finds the drive.
IDLE_UNMOUNT_SECONDS = 60.0


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
    #: Cartridges loaded and unloaded through this site object; ``idle_unmounts``
    #: counts the unloads done by the idle release (part of ``unmounts``).
    mounts: int = 0
    unmounts: int = 0
    idle_unmounts: int = 0
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


_LIVE_TIMERS: WeakSet[_IdleTimer] = WeakSet()


@atexit.register
def _stop_idle_timers() -> None:
    """At interpreter exit, let a release in progress finish its index before threads die."""
    for timer in list(_LIVE_TIMERS):
        timer.stop()


class _IdleTimer:
    """One daemon thread that calls ``fire(token)`` once ``seconds`` pass after :meth:`arm`.

    :meth:`disarm` (an operation began) cancels the pending call, a later
    :meth:`arm` restarts the wait. ``fire`` returns True when it gave the
    drives back: with nothing mounted the thread ends, and the next arm
    starts a new one, so an idle process keeps no thread.
    """

    def __init__(self, seconds: float, fire: Callable[[int], bool], name: str) -> None:
        self.seconds = seconds
        self._fire = fire
        self._name = name
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._token = 0
        self._thread: threading.Thread | None = None
        _LIVE_TIMERS.add(self)

    @property
    def armed(self) -> bool:
        with self._cond:
            return self._deadline is not None

    @property
    def running(self) -> bool:
        with self._cond:
            return self._thread is not None

    def arm(self, token: int) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self.seconds
            self._token = token
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None  # the thread wakes at the old deadline and finds nothing due

    def stop(self) -> None:
        """End the thread; waits for it unless called from it."""
        with self._cond:
            self._deadline = None
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while self._thread is me:
                    if self._deadline is not None:
                        left = self._deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if self._thread is not me:
                    return  # stopped
                token, self._deadline = self._token, None
            released = self._fire(token)
            with self._cond:
                if self._thread is not me:
                    return
                if released and self._deadline is None:
                    self._thread = None
                    return


class SiteLock:
    """The site's re-entrant lock: one LTFS volume does one thing at a time.

    Every tape operation of the process holds it (``with site.lock:``). Taking
    it first cancels the idle release; leaving the outermost hold starts the
    idle clock again, so the clock measures time with no operation at all.
    """

    def __init__(self, site: Site) -> None:
        self._site = site
        self._lock = threading.RLock()
        self._depth = 0

    def __enter__(self) -> SiteLock:
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1:
            try:
                self._site._operation_begins()
            except BaseException:
                self._depth -= 1
                self._lock.release()
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._depth == 1:
                self._site._operation_ends()
        finally:
            self._depth -= 1
            self._lock.release()

    def try_acquire(self) -> bool:
        """Take the lock only if no operation holds it, without counting as one."""
        return self._lock.acquire(blocking=False)

    def release(self) -> None:
        """Undo :meth:`try_acquire`."""
        self._lock.release()


class Site:
    """One data centre: its library, its mounted volumes and its availability.

    ``idle_seconds`` (None, zero or infinite: never) is how long the site
    keeps cartridges mounted after its last tape operation before it unmounts
    them cleanly (index partition written) and frees their drives.
    ``read_only`` mounts every volume read-only and never formats.
    ``on_mount(barcode)`` is told of every cartridge a drive loads for us
    (the catalogue's mount counter); its failure is logged, never raised.
    """

    def __init__(
        self,
        name: str,
        root: Path,
        library: TapeLibrary,
        *,
        idle_seconds: float | None = None,
        read_only: bool = False,
        on_mount: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.library = library
        self.read_only = read_only
        self.on_mount = on_mount
        self.forced_down: bool | None = None  # None: the DOWN file decides
        self.lock = SiteLock(self)
        self.stats = SiteStats()
        self._volumes: OrderedDict[str, LTFSVolume] = OrderedDict()
        self._operations = 0  # operations begun; tells the idle release it is stale
        self._idle: _IdleTimer | None = None
        if idle_seconds is not None and 0 < idle_seconds < math.inf:
            self._idle = _IdleTimer(idle_seconds, self._release_if_idle, name=f"tape-idle-{name}")

    @property
    def idle_seconds(self) -> float | None:
        return self._idle.seconds if self._idle is not None else None

    @property
    def idle_release_pending(self) -> bool:
        """True while the idle clock runs: drives held, no operation, release to come."""
        return self._idle is not None and self._idle.armed

    @property
    def idle_thread_running(self) -> bool:
        return self._idle is not None and self._idle.running

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
        Callers hold :attr:`lock` for as long as they use the volume; it is
        taken here too, so a bare call still counts as an operation.
        """
        with self.lock:
            return self._open_volume(barcode, format_blank=format_blank)

    def _open_volume(self, barcode: str, *, format_blank: bool) -> tuple[LTFSVolume, bool]:
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
                if self.read_only:
                    raise StorageError(
                        f"cartridge {barcode} is blank, and site {self.name} is read-only",
                        barcode=barcode,
                    )
                if not format_blank:
                    raise StorageError(
                        f"cartridge {barcode} is blank but the catalogue says it holds data",
                        barcode=barcode,
                    )
                volume = LTFSVolume.format(device, barcode)
                self.library.flush(barcode)
                formatted = True
            else:
                volume = LTFSVolume.mount(device, barcode, read_only=self.read_only)
        except BaseException:
            self._unmount(barcode)
            raise
        self._volumes[barcode] = volume
        return volume, formatted

    def release(self, barcode: str) -> None:
        """Write the index partition (unmount LTFS) and put the cartridge back in its slot."""
        with self.lock:
            self._release(barcode)

    def drop(self, barcode: str) -> None:
        """Forget a volume whose drive failed, without writing to it; the robot pulls the tape."""
        with self.lock:
            self._volumes.pop(barcode, None)
            self._unmount(barcode)

    def release_all(self) -> None:
        """End the batch: every volume unmounted cleanly, every drive freed, no idle timer left."""
        with self.lock:
            self._release_everything()
        if self._idle is not None:
            self._idle.stop()

    def _release(self, barcode: str) -> None:
        volume = self._volumes.pop(barcode, None)
        try:
            if volume is not None:
                volume.unmount()
        except StorageError as err:
            log.warning("site %s: unmounting %s failed: %s", self.name, barcode, err)
        finally:
            self._unmount(barcode)

    def _release_everything(self) -> int:
        """Release every volume and mount; the number of cartridges unloaded."""
        before = self.stats.unmounts
        for barcode in list(self._volumes):
            self._release(barcode)
        for barcode in list(self.library.mounted()):
            self._unmount(barcode)
        return self.stats.unmounts - before

    def _mount(self, barcode: str) -> TapeDevice:
        loaded = barcode in self.library.mounted()
        try:
            device = self.library.mount(barcode)
        except DeviceBusyError:
            if not self._volumes or barcode in self._volumes:
                raise
            # Every drive we hold is busy with another cartridge: that batch is over.
            self._release(next(iter(self._volumes)))
            device = self.library.mount(barcode)
        self.stats.mounts += 1
        if not loaded and self.on_mount is not None:
            # Every library, emulated or real, loads through here: the one place to count.
            try:
                self.on_mount(barcode)
            except Exception:  # noqa: BLE001 - a count is monitoring; the tape is what matters
                log.warning(
                    "site %s: could not count the mount of %s", self.name, barcode, exc_info=True
                )
        return device

    def _unmount(self, barcode: str) -> None:
        if barcode in self.library.mounted():
            self.stats.unmounts += 1
        self.library.unmount(barcode)

    # -- idle release ------------------------------------------------------------------------

    def _operation_begins(self) -> None:
        self._operations += 1
        if self._idle is not None:
            self._idle.disarm()

    def _operation_ends(self) -> None:
        if self._idle is not None and (self._volumes or self.library.mounted()):
            self._idle.arm(self._operations)

    def _release_if_idle(self, token: int) -> bool:
        """The idle timer's call: give the drives back unless an operation came meanwhile.

        An operation holding the lock, or one begun since the timer was
        armed, means the site is not idle: that operation's end re-arms the
        timer. Returns True when nothing is mounted any more.
        """
        if not self.lock.try_acquire():
            return False
        try:
            if token != self._operations:
                return False
            unloaded = self._release_everything()
            self.stats.idle_unmounts += unloaded
            if unloaded:
                log.info(
                    "site %s: idle for %.1f s, %d cartridge(s) unmounted and drives freed",
                    self.name,
                    self.idle_seconds or 0.0,
                    unloaded,
                )
            return not self.library.mounted()
        finally:
            self.lock.release()


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
    idle_seconds: float | None = None,
    device_factory: Callable[[str], TapeDevice] | None = None,
) -> dict[str, Site]:
    """Build (or rebuild) every configured site and cache it in ``ctx.cache``.

    Entry points call this only to choose non-default wiring (tests turn
    ``durability`` to "none", benchmarks may share a clock, tests shorten
    ``idle_seconds``); :func:`get_site` builds with defaults on first use.
    ``idle_seconds`` defaults to the ``tape_idle_unmount_seconds`` setting;
    zero turns the idle release off. Each site's library is what the site file
    says (:mod:`preservation.storage.siteconfig`), emulated without one;
    ``clock``, ``move_seconds`` and ``durability`` concern emulated libraries
    only (a real one runs on the wall clock), ``device_factory`` only real
    ones (tests put a fake kernel behind their drives). Raises
    :class:`DataRootError`, before registering anything, when
    emulated cartridges the catalogue does not know hold data; a real
    library's unknown cartridges are checked at their first mount instead
    (:class:`~preservation.storage.changer.ScsiLibrary`).
    """
    settings = ctx.settings
    read_only = ctx.read_only
    if idle_seconds is None:
        idle_seconds = float(getattr(settings, "tape_idle_unmount_seconds", IDLE_UNMOUNT_SECONDS))
    specs = site_specs(settings)
    old = ctx.cache.get(CACHE_KEY)
    if old:
        for site in old.values():
            site.release_all()
    sites: dict[str, Site] = {}
    emulated: dict[str, EmulatedLibrary] = {}
    real: dict[str, ScsiLibrary] = {}
    for spec in specs:
        name = spec.name
        root = settings.tape_dir / name
        library: TapeLibrary
        try:
            if spec.library == "scsi":
                library = real[name] = _scsi_library(spec, root, read_only, device_factory)
            else:
                library = emulated[name] = _emulated_library(
                    settings, spec, root, clock, move_seconds, durability, read_only
                )
        except OSError as err:  # a file where a folder should be, no permission, ...
            raise DataRootError(
                f"site {name}'s library state at {root} cannot be used: "
                f"{err.strerror or err} ({err.filename or root}); it must be a folder this "
                "user may write: move what is there aside",
                path=root,
                sites=[name],
            ) from err
        sites[name] = Site(
            name,
            root,
            library,
            idle_seconds=idle_seconds,
            read_only=read_only,
            on_mount=None if read_only else functools.partial(count_mount, ctx),
        )
    if not read_only:
        _refuse_uncatalogued_data(ctx, emulated)
        capacities = {spec.name: spec.capacity for spec in specs}
        inventories = {name: lib.barcodes() for name, lib in emulated.items()}
        inventories.update(_mark_unknown_unverified(ctx, real))
        for spec in specs:
            _register_cartridges(ctx, spec.name, inventories[spec.name], capacities[spec.name])
    ctx.cache[CACHE_KEY] = sites
    return sites


def _emulated_library(
    settings: Settings,
    spec: SiteSpec,
    root: Path,
    clock: Clock | None,
    move_seconds: float,
    durability: Durability,
    read_only: bool,
) -> EmulatedLibrary:
    library = EmulatedLibrary(
        root,
        name=spec.name,
        drives=spec.drive_count,
        clock=clock,
        move_seconds=move_seconds,
        durability=durability,
        production=settings.production,
        read_only=read_only,
    )
    if not read_only:
        letter = site_letter(settings, spec.name)
        for number in range(1, spec.cartridges + 1):
            barcode = barcode_for(letter, number, spec.media)
            if (root / "exported" / barcode).exists():
                continue  # taken out by `tape export` (storage.inventory): never put back blank
            library.add_cartridge(barcode, capacity=spec.capacity)
    return library


def _scsi_library(
    spec: SiteSpec,
    root: Path,
    read_only: bool,
    device_factory: Callable[[str], TapeDevice] | None,
) -> ScsiLibrary:
    assert spec.changer is not None
    changer = MtxChanger(spec.changer)
    if spec.mtx_timeout is not None:
        changer.timeout = spec.mtx_timeout
    return ScsiLibrary(
        changer,
        spec.drive_paths,
        name=spec.name,
        state_dir=root,
        read_only=read_only,
        device_factory=device_factory or LinuxTapeDevice,
    )


def _mark_unknown_unverified(
    ctx: Context, libraries: dict[str, ScsiLibrary]
) -> dict[str, list[str]]:
    """Each real library's barcodes; those the catalogue lacks are marked for a first-mount check.

    Telling blank from written takes a load, minutes per cartridge, so start-up
    asks the changer only; marked before registration, so no crash between the
    two can leave an unknown cartridge registered as scratch and unmarked.
    """
    inventories: dict[str, list[str]] = {}
    for name, library in libraries.items():
        try:
            inventories[name] = library.barcodes()
        except StorageError as err:  # the robot is off or jammed: the other sites still work
            log.error(
                "site %s: the changer cannot be read, so no new cartridge is registered "
                "until the next start: %s",
                name,
                err,
            )
            inventories[name] = []
    if not any(inventories.values()):
        return inventories
    with session_scope(ctx.sessions) as session:
        known = set(session.scalars(select(Cartridge.barcode)))
    for name, library in libraries.items():
        unknown = [b for b in inventories[name] if b not in known]
        if unknown:
            log.info(
                "site %s: %d cartridge(s) new to the catalogue, to be checked blank at their "
                "first mount: %s",
                name,
                len(unknown),
                ", ".join(unknown),
            )
            library.mark_unverified(unknown)
            if not known:
                log.warning(
                    "site %s: the catalogue knows no cartridge (new, or lost): if these hold "
                    "data, their first mount refuses them; `preservation catalog rebuild "
                    "--from-tapes` rebuilds the catalogue from them (it replaces these scratch "
                    "registrations)",
                    name,
                )
    return inventories


def _refuse_uncatalogued_data(ctx: Context, libraries: dict[str, EmulatedLibrary]) -> None:
    """Refuse cartridges that hold data but are not catalogued, before they become scratch.

    Registration makes an unknown cartridge scratch, and the store formats or
    appends to scratch: after the catalogue was lost (deleted, or a new one
    beside an old tape folder) that would write over AIPs whose only record
    is now the tape. Each unknown cartridge's directory tells blank from
    written without a mount; only written ones are read, for their volume UUID.
    """
    with session_scope(ctx.sessions) as session:
        known = set(session.scalars(select(Cartridge.barcode)))
    found: list[tuple[str, str, str]] = []
    for name, library in libraries.items():
        for barcode in library.barcodes():
            if barcode not in known:
                volume = library.recorded_volume(barcode)
                if volume is not None:
                    found.append((name, barcode, volume))
    if not found:
        return
    # Another process may have registered them (and begun writing) since we read.
    with session_scope(ctx.sessions) as session:
        known = set(
            session.scalars(
                select(Cartridge.barcode).where(Cartridge.barcode.in_([b for _, b, _ in found]))
            )
        )
        empty = not session.scalar(select(func.count()).select_from(Cartridge))
    found = [f for f in found if f[1] not in known]
    if not found:
        return
    tape_dir = ctx.settings.tape_dir
    listing = "; ".join(
        f"site {site}: {barcode} (LTFS volume {volume})"
        if volume
        else f"site {site}: {barcode} (written, no readable LTFS volume)"
        for site, barcode, volume in found
    )
    state = (
        "the catalogue is empty (new, or deleted)"
        if empty
        else "the catalogue does not know these cartridges"
    )
    raise DataRootError(
        f"{state}, yet cartridges under {tape_dir} hold data, so none is taken as scratch "
        f"(that would write over it): {listing}. To start an empty archive, move the tape "
        "folder aside; to keep these AIPs, restore the catalogue from a backup, or rebuild "
        "it from the tapes into an empty catalogue: `preservation catalog rebuild --from-tapes`",
        path=tape_dir,
        sites=sorted({site for site, _, _ in found}),
        barcodes=[barcode for _, barcode, _ in found],
        volumes={barcode: volume or None for _, barcode, volume in found},
    )


def count_mount(ctx: Context, barcode: str) -> None:
    """One more load of the cartridge in ``cartridges.mounts``: one UPDATE, its own transaction.

    Mounts are what wear tapes and drives out, and what a batch planner
    saves; the counter lets monitoring see them across every process. The
    increment is done by the database, so concurrent processes never lose one.
    """
    with session_scope(ctx.sessions) as session:
        session.execute(
            update(Cartridge)
            .where(Cartridge.barcode == barcode)
            .values(mounts=Cartridge.mounts + 1)
            .execution_options(synchronize_session=False)
        )


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


_BUILD_LOCK = threading.Lock()


def get_site(ctx: Context, name: str) -> Site:
    """The configured site, built with defaults on first use.

    Thread-safe: the embedded store writes the sites from one thread each,
    and two threads racing to build would leave one set of sites orphaned,
    holding cartridge and drive claims nobody releases.
    """
    sites: dict[str, Site] | None = ctx.cache.get(CACHE_KEY)
    if sites is None:
        with _BUILD_LOCK:
            sites = ctx.cache.get(CACHE_KEY)
            if sites is None:
                sites = build_sites(ctx)
    try:
        return sites[name]
    except KeyError:
        raise ConfigurationError(f"unknown site {name!r}; configured: {', '.join(sites)}") from None
