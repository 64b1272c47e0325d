"""Tape libraries: slots, drives, barcodes, and the robot that moves cartridges between them.

``TapeLibrary`` is the seam the dual-site store is written against; one site is
one library with its own pool of cartridges. ``EmulatedLibrary`` keeps each
cartridge as a directory in the reference LTFS file-backend layout
(``<root>/cartridges/<barcode>/``) and gives each mount a fresh
:class:`~preservation.storage.emulator.EmulatedTapeDevice`, charging robot moves,
loads and unloads to one :class:`~preservation.storage.clock.SimulatedClock` per
library. A real SCSI changer implements the same Protocol:
:class:`~preservation.storage.changer.ScsiLibrary` (``mtx`` and ``st``).

Several worker processes may drive one library (Celery runs one per drive), so
drives and cartridges are claimed with ``flock`` on files under ``<root>/locks/``:
a cartridge is "in a drive" exactly while some process holds its lock, and the
operating system releases it if that process dies.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from preservation.errors import (
    DeviceBusyError,
    MediaError,
    NotFoundError,
    StorageError,
)
from preservation.storage.clock import Clock, DriveTiming, SimulatedClock
from preservation.storage.emulator import EmulatedCartridge, EmulatedTapeDevice, Faults
from preservation.storage.interfaces import TapeDevice
from preservation.storage.ltfs import LTFSVolume

__all__ = [
    "Durability",
    "DriveInfo",
    "EmulatedLibrary",
    "LibraryStats",
    "SlotInfo",
    "TapeLibrary",
    "barcode_for",
]

log = logging.getLogger(__name__)

_BARCODE_RE = re.compile(r"^[A-Z0-9]{6}L[0-9A-Z]$")

#: How emulated cartridges reach the disk: not forced ("none", tests), the
#: emulator's fdatasync of each record at filemarks ("filemark"), or one
#: ``syncfs`` at each LTFS sync point and unmount ("flush", the default of sites).
Durability = Literal["none", "filemark", "flush"]

_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.syncfs.argtypes = [ctypes.c_int]
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _libc = None


_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start write-back of dirty pages, do not wait
_sync_file_range = getattr(_libc, "sync_file_range", None) if _libc is not None else None
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def _start_writeback(fd: int) -> None:
    """Queue a written record for the disk now (Linux ``sync_file_range``), without waiting.

    Durability still comes from the ``syncfs`` at the sync point; this only
    moves the disk's work earlier, so it overlaps with writing the next
    records instead of all landing in that one flush (as a tape drive streams
    from its buffer while the host sends more).
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _syncfs(path: Path) -> None:
    """Flush the file system holding ``path`` (Linux ``syncfs``; ``sync`` elsewhere)."""
    if _libc is None:  # pragma: no cover
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise StorageError(f"syncfs of {path} failed: {os.strerror(err)}", path=path)
    finally:
        os.close(fd)


def barcode_for(site_letter: str, number: int, media: str = "L9") -> str:
    """An LTO barcode: one letter naming the site, five digits, the media id (``A00001L9``)."""
    if len(site_letter) != 1 or not site_letter.isalpha():
        raise ValueError(f"site letter must be one letter, not {site_letter!r}")
    if not 0 < number < 100_000:
        raise ValueError(f"cartridge number out of range: {number}")
    if not re.fullmatch(r"L[0-9A-Z]", media):
        raise ValueError(f"not an LTO media id (L5 ... L9, LA ...): {media!r}")
    return f"{site_letter.upper()}{number:05d}{media}"


@dataclass(frozen=True)
class SlotInfo:
    """A storage slot; ``barcode`` is None when its cartridge is out in a drive (or none)."""

    number: int
    barcode: str | None


@dataclass(frozen=True)
class DriveInfo:
    number: int
    barcode: str | None


@dataclass
class LibraryStats:
    """What the library did, for benchmarks: mounts count, robot seconds charged."""

    mounts: int = 0
    unmounts: int = 0
    moves: int = 0
    failed_loads: int = 0


@runtime_checkable
class TapeLibrary(Protocol):
    """A changer with storage slots and drives; each mounted cartridge is a loaded TapeDevice."""

    @property
    def name(self) -> str: ...

    @property
    def clock(self) -> Clock: ...

    def barcodes(self) -> list[str]:
        """Every cartridge the library holds, in slot order."""
        ...

    def slots(self) -> list[SlotInfo]: ...

    def drives(self) -> list[DriveInfo]: ...

    def mounted(self) -> dict[str, TapeDevice]:
        """Cartridges this library object has in its drives, by barcode."""
        ...

    def mount(self, barcode: str) -> TapeDevice:
        """Move the cartridge to a free drive and load it; already mounted: the same device.

        Raises DeviceBusyError when no drive is free or another process has the
        cartridge, MediaError when it does not load.
        """
        ...

    def unmount(self, barcode: str) -> None:
        """Unload the cartridge and return it to its slot (no-op if not mounted here)."""
        ...

    def flush(self, barcode: str) -> None:
        """Make everything written to the cartridge so far durable.

        A real drive has done so at the last filemark (no-op); an emulated
        cartridge lives in files that the host may still hold in its cache.
        """
        ...

    def close(self, *, unload: bool = True) -> None:
        """Give up every drive; ``unload=False`` is what a killed process leaves behind."""
        ...


class _Lock:
    """An exclusive ``flock`` held on one file until released (or the process dies).

    ``read_only`` (a library on read-only media) takes the lock on the file
    without writing our pid into it, and does without a lock where the file
    does not exist and cannot be made: no process can write such a library,
    and readers sharing a cartridge read the same bytes.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self.read_only:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return True
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if not self.read_only:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass
class _Mount:
    drive: int
    barcode: str
    device: EmulatedTapeDevice
    drive_lock: _Lock
    cartridge_lock: _Lock


class EmulatedLibrary:
    """A library of emulated cartridges under ``root``; implements ``TapeLibrary``.

    ``faults(barcode)`` returns the fault hooks travelling with one cartridge:
    whichever drive loads it gets them, so a bad block or an unreadable
    cartridge stays bad in every drive, as real media do.

    ``read_only`` opens a library on read-only media (an archive copy): no
    folder or lock file is made, no cartridge added, and the drives write
    nothing, so mounting and reading leave every file as it was.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        name: str | None = None,
        drives: int = 2,
        clock: Clock | None = None,
        timing: DriveTiming | None = None,
        move_seconds: float = 10.0,
        durability: Durability = "none",
        production: bool = False,
        read_only: bool = False,
    ) -> None:
        if drives < 1:
            raise ValueError("a library needs at least one drive")
        self.root = Path(root)
        self._name = name or self.root.name
        self._clock: Clock = clock or SimulatedClock()
        self.timing = timing or DriveTiming.lto9()
        self.move_seconds = move_seconds
        if durability not in ("none", "filemark", "flush"):
            raise ValueError(f"unknown durability mode {durability!r}")
        self.durability = durability
        self.production = production
        self.read_only = read_only
        self.stats = LibraryStats()
        self.cartridge_dir = self.root / "cartridges"
        self.lock_dir = self.root / "locks"
        if not read_only:
            self.cartridge_dir.mkdir(parents=True, exist_ok=True)
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        self._drive_count = drives
        self._mounts: dict[str, _Mount] = {}
        self._faults: dict[str, Faults] = {}
        self._retired_devices: list[EmulatedTapeDevice] = []

    # -- inventory ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def clock(self) -> Clock:
        return self._clock

    def add_cartridge(self, barcode: str, *, capacity: int, wraps: int = 280) -> bool:
        """Put a blank cartridge in a free slot; False if the library already has it."""
        if not _BARCODE_RE.match(barcode):
            raise ValueError(f"not an LTO barcode: {barcode!r}")
        path = self.cartridge_dir / barcode
        if (path / "filedebug_tc_conf.xml").is_file():
            return False
        if self.read_only:
            raise StorageError(
                f"library {self.name} is read-only: cartridge {barcode} cannot be added",
                barcode=barcode,
            )
        # Several worker processes may build the same library at once: make the
        # cartridge aside and rename it in, so exactly one of them puts it there.
        tmp = self.cartridge_dir / f".{barcode}.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        EmulatedCartridge.create(tmp, barcode=barcode, capacity=capacity, wraps=wraps)
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if (path / "filedebug_tc_conf.xml").is_file():
                return False
            raise
        return True

    def barcodes(self) -> list[str]:
        if not self.cartridge_dir.is_dir():
            return []  # a read-only library nobody ever wrote a cartridge into
        return sorted(
            p.name for p in self.cartridge_dir.iterdir() if p.is_dir() and _BARCODE_RE.match(p.name)
        )

    def slots(self) -> list[SlotInfo]:
        return [
            SlotInfo(number, None if self._is_out(barcode) else barcode)
            for number, barcode in enumerate(self.barcodes(), start=1)
        ]

    def drives(self) -> list[DriveInfo]:
        by_drive = {m.drive: m.barcode for m in self._mounts.values()}
        return [DriveInfo(n, by_drive.get(n)) for n in range(self._drive_count)]

    def mounted(self) -> dict[str, TapeDevice]:
        return {barcode: m.device for barcode, m in self._mounts.items()}

    def cartridge_path(self, barcode: str) -> Path:
        return self.cartridge_dir / barcode

    def faults(self, barcode: str) -> Faults:
        """The fault hooks of one cartridge (created empty on first use); for tests and drills."""
        return self._faults.setdefault(barcode, Faults())

    def recorded_volume(self, barcode: str) -> str | None:
        """What the cartridge holds: None when blank, else its LTFS volume UUID ("" if none).

        Read with a drive of its own, outside the robot and the drive claims, and
        read-only, so that asking changes nothing: this is how a cartridge the
        catalogue does not know is told apart from scratch before anything
        formats it.
        """
        cartridge = EmulatedCartridge(self.cartridge_path(barcode), barcode)
        if cartridge.is_blank():
            return None
        device = EmulatedTapeDevice(cartridge, timing=self.timing, read_only=True)
        try:
            return LTFSVolume.mount(device, read_only=True).volume_uuid
        except StorageError as err:
            log.warning("library %s: %s holds no readable LTFS: %s", self.name, barcode, err)
            return ""
        finally:
            with suppress(StorageError):
                device.eject()

    def devices(self) -> Iterator[EmulatedTapeDevice]:
        """Every drive object used so far (for statistics), mounted ones last."""
        yield from self._retired_devices
        for m in self._mounts.values():
            yield m.device

    # -- robot ------------------------------------------------------------------------------

    def mount(self, barcode: str) -> TapeDevice:
        current = self._mounts.get(barcode)
        if current is not None:
            return current.device
        path = self.cartridge_path(barcode)
        if not path.is_dir():
            raise NotFoundError(
                f"library {self.name} holds no cartridge {barcode}", barcode=barcode
            )
        cartridge_lock = _Lock(self.lock_dir / f"{barcode}.lock", read_only=self.read_only)
        if not cartridge_lock.acquire():
            raise DeviceBusyError(
                f"cartridge {barcode} is in use by another process", barcode=barcode
            )
        drive_lock, drive = self._claim_drive()
        if drive_lock is None:
            cartridge_lock.release()
            raise DeviceBusyError(f"every drive of library {self.name} is busy", barcode=barcode)
        device = EmulatedTapeDevice(
            None,
            clock=self._clock,
            timing=self.timing,
            faults=self.faults(barcode),
            fsync=self.durability == "filemark",
            production=self.production,
            writeback=_start_writeback if self.durability == "flush" else None,
            read_only=self.read_only,
        )
        try:
            device.insert(EmulatedCartridge(path, barcode))
            self._move()
            device.load()
        except BaseException:
            self.stats.failed_loads += 1
            with suppress(StorageError):
                device.eject()
            self._move()
            self._retired_devices.append(device)
            drive_lock.release()
            cartridge_lock.release()
            raise
        self._mounts[barcode] = _Mount(drive, barcode, device, drive_lock, cartridge_lock)
        self.stats.mounts += 1
        return device

    def unmount(self, barcode: str) -> None:
        mount = self._mounts.pop(barcode, None)
        if mount is None:
            return
        try:
            mount.device.eject()
        except MediaError as err:  # a drive that lost power: the robot still pulls the tape
            log.warning(
                "drive %d of %s failed to unload %s: %s", mount.drive, self.name, barcode, err
            )
            mount.device.cartridge = None
        finally:
            self.flush(barcode)
            self._move()
            self.stats.unmounts += 1
            self._retired_devices.append(mount.device)
            mount.drive_lock.release()
            mount.cartridge_lock.release()

    def flush(self, barcode: str) -> None:
        """With ``durability="flush"``: one ``syncfs`` of the cartridge's file system.

        The emulator's own mode (``"filemark"``) fdatasyncs every 512 KiB record
        file at each filemark, thousands of calls per gigabyte; one file-system
        sync at each LTFS sync point gives the same guarantee at the cost of
        ``dd conv=fsync``.
        """
        if self.durability != "flush" or self.read_only:
            return
        _syncfs(self.cartridge_path(barcode))

    def close(self, *, unload: bool = True) -> None:
        for barcode in list(self._mounts):
            if unload:
                self.unmount(barcode)
            else:
                mount = self._mounts.pop(barcode)
                mount.drive_lock.release()
                mount.cartridge_lock.release()

    # -- internals --------------------------------------------------------------------------

    def free_drives(self) -> int:
        """Drives no process holds now (a planner's guess: another may take one next)."""
        taken = {m.drive for m in self._mounts.values()}
        free = 0
        for number in range(self._drive_count):
            if number in taken:
                continue
            probe = _Lock(self.lock_dir / f"drive-{number}.lock", read_only=self.read_only)
            if probe.acquire():
                probe.release()
                free += 1
        return free

    def _claim_drive(self) -> tuple[_Lock | None, int]:
        taken = {m.drive for m in self._mounts.values()}
        for number in range(self._drive_count):
            if number in taken:
                continue
            lock = _Lock(self.lock_dir / f"drive-{number}.lock", read_only=self.read_only)
            if lock.acquire():
                return lock, number
        return None, -1

    def _is_out(self, barcode: str) -> bool:
        if barcode in self._mounts:
            return True
        probe = _Lock(self.lock_dir / f"{barcode}.lock", read_only=self.read_only)
        if probe.acquire():
            probe.release()
            return False
        return True

    def _move(self) -> None:
        """One robot move between a slot and a drive."""
        self.stats.moves += 1
        self._clock.advance(self.move_seconds)
