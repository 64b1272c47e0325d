"""Real tape libraries: a SCSI media changer driven through ``mtx``, drives through ``st``.

``mtx`` is the one changer tool every Linux distribution packages, and every
library speaks the SMC commands it sends, so the robot is driven by running
it (``mtx -f /dev/sgN status|load|unload|transfer|inventory``) rather than by
SCSI commands of our own. Its ``status`` output is the library's inventory;
:func:`parse_status` reads it into plain data, strictly: a line it does not
understand is an error naming the changer and quoting the line, because a
misread inventory is how a robot loads the wrong cartridge.

:class:`ScsiLibrary` is the ``TapeLibrary`` over one changer and its drives
(each a :class:`~preservation.storage.device.LinuxTapeDevice` on ``/dev/nstN``).
Several worker processes share one library, so drives and cartridges are
claimed with the same ``flock`` files as the emulated library
(``<tape_dir>/<site>/locks/``), and robot moves are serialised by one more
lock, ``changer.lock``: two processes reading the inventory and then moving
would otherwise both pick the same free slot.

What a ``status`` cannot tell is whether a cartridge holds data; only a load
can. Start-up does not load cartridges to find out (minutes per cartridge,
and robot wear), so a cartridge the catalogue did not know is marked
*unverified* (a file under ``<tape_dir>/<site>/unverified/``) and checked at
its first real mount: blank, the mark goes; written, the mount is refused and
nothing is ever written to it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from preservation.errors import (
    ConfigurationError,
    DeviceBusyError,
    EndOfDataError,
    NotFoundError,
    OversizeBlockError,
    SiteUnavailableError,
    StorageError,
)
from preservation.storage.clock import Clock, SystemClock
from preservation.storage.device import LinuxTapeDevice
from preservation.storage.interfaces import TapeDevice
from preservation.storage.library import DriveInfo, LibraryStats, SlotInfo, _Lock

__all__ = [
    "ChangerStatus",
    "DriveElement",
    "MtxChanger",
    "MtxResult",
    "ScsiLibrary",
    "StorageElement",
    "parse_status",
]

log = logging.getLogger(__name__)

#: Long enough for the slowest robot move plus a drive's unthread on a large
#: library; ``inventory`` on a full frame takes minutes too.
MTX_TIMEOUT_SECONDS = 900.0

#: Cleaning cartridges carry this label prefix (the LTO convention); they are
#: the library's, never a pool's.
CLEANING_PREFIX = "CLN"

_HEADER = re.compile(
    r"^\s*Storage Changer\s+(?P<device>.*?):\s*(?P<drives>\d+)\s+Drives?,\s*"
    r"(?P<slots>\d+)\s+Slots?\s*\(\s*(?P<ie>\d+)\s+Import/Export\s*\)\s*$"
)
_DRIVE = re.compile(
    r"^\s*Data Transfer Element\s+(?P<number>\d+)\s*:\s*(?:(?P<empty>Empty)|"
    r"Full\s*\((?:Storage Element\s+(?P<source>\d+)|(?P<unknown>Unknown Storage Element))"
    r"\s+Loaded\))(?P<tags>.*)$"
)
_SLOT = re.compile(
    r"^\s*Storage Element\s+(?P<number>\d+)(?P<ie>\s+IMPORT/EXPORT)?\s*:\s*"
    r"(?P<state>Empty|Full)(?P<tags>.*)$"
)
_TAG = re.compile(r":\s*(VolumeTag|AlternateVolumeTag)\s*=")


@dataclass(frozen=True)
class DriveElement:
    """A data transfer element; ``source_slot`` is None when the changer does not know it."""

    number: int
    full: bool
    barcode: str | None = None
    alternate: str | None = None
    source_slot: int | None = None


@dataclass(frozen=True)
class StorageElement:
    """A storage slot as ``mtx`` numbers it (from 1); I/E slots are numbered among them."""

    number: int
    full: bool
    barcode: str | None = None
    alternate: str | None = None
    import_export: bool = False


@dataclass(frozen=True)
class ChangerStatus:
    device: str
    drives: tuple[DriveElement, ...]
    slots: tuple[StorageElement, ...]

    @property
    def storage_slots(self) -> tuple[StorageElement, ...]:
        """The slots that hold the library's own cartridges (no import/export slots)."""
        return tuple(s for s in self.slots if not s.import_export)

    @property
    def ie_slots(self) -> tuple[StorageElement, ...]:
        return tuple(s for s in self.slots if s.import_export)

    def slot(self, number: int) -> StorageElement:
        for s in self.slots:
            if s.number == number:
                return s
        raise NotFoundError(f"changer {self.device} has no storage element {number}")

    def drive_holding(self, barcode: str) -> DriveElement | None:
        return next((d for d in self.drives if d.full and d.barcode == barcode), None)

    def slot_holding(self, barcode: str) -> StorageElement | None:
        return next((s for s in self.slots if s.full and s.barcode == barcode), None)

    def reserved_slots(self) -> set[int]:
        """Empty slots that wait for a cartridge now in a drive: never a destination."""
        return {d.source_slot for d in self.drives if d.full and d.source_slot is not None}

    def free_storage_slot(self) -> StorageElement | None:
        reserved = self.reserved_slots()
        return next(
            (s for s in self.storage_slots if not s.full and s.number not in reserved), None
        )


def parse_status(text: str, device: str = "changer") -> ChangerStatus:
    """Read ``mtx status`` output; StorageError naming ``device`` and the line it cannot read.

    Every vendor's output goes through the same ``mtx`` printer, so the
    differences are in what the library reports: barcodes or none (no reader),
    an alternate volume tag, tags padded with spaces to 36 characters, a drive
    whose source slot the library forgot (``Unknown Storage Element Loaded``,
    after a power cycle or a manual load), import/export slots. The counts in
    the header are checked against the lines, so truncated output is refused.
    """
    header: re.Match[str] | None = None
    drives: list[DriveElement] = []
    slots: list[StorageElement] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if header is None:
            header = _HEADER.match(line)
            if header is not None:
                continue
        match = _DRIVE.match(line)
        if match is not None:
            barcode, alternate = _tags(match["tags"], device, number, line)
            full = match["empty"] is None
            source = int(match["source"]) if match["source"] else None
            drives.append(DriveElement(int(match["number"]), full, barcode, alternate, source))
            continue
        match = _SLOT.match(line)
        if match is not None:
            barcode, alternate = _tags(match["tags"], device, number, line)
            slots.append(
                StorageElement(
                    int(match["number"]),
                    match["state"] == "Full",
                    barcode,
                    alternate,
                    bool(match["ie"]),
                )
            )
            continue
        raise StorageError(
            f"changer {device}: cannot read line {number} of 'mtx status': {line!r}",
            path=device,
            line=line,
        )
    if header is None:
        raise StorageError(
            f"changer {device}: 'mtx status' printed no 'Storage Changer' header "
            f"(got {text.strip()[:200]!r})",
            path=device,
        )
    counts = (int(header["drives"]), int(header["slots"]), int(header["ie"]))
    found = (len(drives), len(slots), sum(s.import_export for s in slots))
    if counts != found:
        raise StorageError(
            f"changer {device}: 'mtx status' announces {counts[0]} drives, {counts[1]} slots "
            f"({counts[2]} import/export) but lists {found[0]}, {found[1]} ({found[2]}): "
            "truncated or garbled output",
            path=device,
        )
    return ChangerStatus(header["device"].strip(), tuple(drives), tuple(slots))


def _tags(rest: str, device: str, number: int, line: str) -> tuple[str | None, str | None]:
    """The primary and alternate volume tags after an element's state; trailing pads dropped."""
    parts = _TAG.split(rest)
    if parts[0].strip():
        raise StorageError(
            f"changer {device}: cannot read line {number} of 'mtx status': {line!r}",
            path=device,
            line=line,
        )
    tags: dict[str, str | None] = {}
    for name, value in zip(parts[1::2], parts[2::2], strict=True):
        tags[name] = value.strip() or None
    return tags.get("VolumeTag"), tags.get("AlternateVolumeTag")


# -- running mtx ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MtxResult:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float], MtxResult]


def run_mtx(args: Sequence[str], timeout: float) -> MtxResult:
    """Run ``mtx`` from PATH (looked up at each call, so PATH may change under tests)."""
    program = shutil.which("mtx")
    if program is None:
        raise ConfigurationError(
            "mtx is not on PATH: install it (Debian/Ubuntu: apt install mtx; RHEL: dnf "
            "install mtx) to drive a SCSI tape library",
            rule="mtx-installed",
        )
    try:
        done = subprocess.run(
            [program, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise StorageError(
            f"'mtx {' '.join(args)}' did not finish within {timeout:g} s", timeout=timeout
        ) from err
    except OSError as err:
        raise StorageError(f"'mtx {' '.join(args)}' could not be started: {err}") from err
    return MtxResult(done.returncode, done.stdout, done.stderr)


class MtxChanger:
    """The robot of one library, ``mtx -f <device>``; slots and drives numbered as mtx does.

    Slots count from 1 and drives from 0, exactly as ``mtx status`` prints
    them, so what an operator reads there is what this class takes.
    """

    def __init__(
        self,
        device: str,
        *,
        runner: Runner = run_mtx,
        timeout: float = MTX_TIMEOUT_SECONDS,
    ) -> None:
        self.device = device
        self.runner = runner
        self.timeout = timeout

    def _mtx(self, *args: str) -> str:
        command = ["-f", self.device, *args]
        try:
            result = self.runner(command, self.timeout)
        except StorageError as err:
            raise StorageError(f"changer {self.device}: {err.message}", path=self.device) from err
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip() or "no message").replace(
                "\n", " | "
            )
            raise StorageError(
                f"changer {self.device}: 'mtx {' '.join(command)}' failed "
                f"(exit {result.returncode}): {detail}",
                path=self.device,
                returncode=result.returncode,
            )
        return result.stdout

    def status(self) -> ChangerStatus:
        return parse_status(self._mtx("status"), self.device)

    def load(self, slot: int, drive: int) -> None:
        self._mtx("load", str(slot), str(drive))

    def unload(self, slot: int, drive: int) -> None:
        self._mtx("unload", str(slot), str(drive))

    def transfer(self, source: int, destination: int) -> None:
        self._mtx("transfer", str(source), str(destination))

    def inventory(self) -> None:
        """Have the library scan its barcodes again (after a door was opened, say)."""
        self._mtx("inventory")

    def import_cartridge(self, barcode: str) -> int:
        """Move the cartridge from its import/export slot to a free storage slot; that slot."""
        status = self.status()
        source = status.slot_holding(barcode)
        if source is None or not source.import_export:
            raise NotFoundError(
                f"changer {self.device}: no import/export slot holds {barcode}",
                barcode=barcode,
                path=self.device,
            )
        target = status.free_storage_slot()
        if target is None:
            raise StorageError(
                f"changer {self.device}: no free storage slot for {barcode}: export a "
                "cartridge first",
                barcode=barcode,
                path=self.device,
            )
        self.transfer(source.number, target.number)
        return target.number

    def export_cartridge(self, barcode: str) -> int:
        """Move the cartridge from its storage slot to a free import/export slot; that slot."""
        status = self.status()
        if status.drive_holding(barcode) is not None:
            raise DeviceBusyError(
                f"changer {self.device}: {barcode} is in a drive: unmount it before export",
                barcode=barcode,
                path=self.device,
            )
        source = status.slot_holding(barcode)
        if source is None or source.import_export:
            raise NotFoundError(
                f"changer {self.device}: no storage slot holds {barcode}",
                barcode=barcode,
                path=self.device,
            )
        target = next((s for s in status.ie_slots if not s.full), None)
        if target is None:
            raise StorageError(
                f"changer {self.device}: every import/export slot is full: empty the mail "
                f"slot, then export {barcode} again",
                barcode=barcode,
                path=self.device,
            )
        self.transfer(source.number, target.number)
        return target.number


# -- the library --------------------------------------------------------------------------------


@dataclass
class _ScsiMount:
    drive: int
    slot: int
    barcode: str
    device: TapeDevice
    drive_lock: _Lock
    cartridge_lock: _Lock


def _holds_data(device: TapeDevice) -> bool:
    """True when either partition has a record or filemark at its start (never written: False)."""
    for partition in range(max(device.partition_count, 1)):
        try:
            device.locate(partition, 0)
            device.read_block(64)
        except EndOfDataError:
            continue
        except OversizeBlockError:
            return True
        return True
    return False


class ScsiLibrary:
    """A real library: ``mtx`` moves cartridges, ``st`` drives read and write; a ``TapeLibrary``.

    ``drives`` are the ``st`` nodes in the changer's own drive order: the
    first is the changer's Data Transfer Element 0. ``device_factory`` makes
    the drive object for one node (tests put a fake kernel behind it).
    """

    def __init__(
        self,
        changer: MtxChanger,
        drives: Sequence[str],
        *,
        name: str,
        state_dir: str | os.PathLike[str],
        clock: Clock | None = None,
        device_factory: Callable[[str], TapeDevice] = LinuxTapeDevice,
        read_only: bool = False,
    ) -> None:
        if not drives:
            raise ValueError("a library needs at least one drive")
        self.changer = changer
        self.drive_paths = list(drives)
        self._name = name
        self.root = Path(state_dir)
        self.lock_dir = self.root / "locks"
        self.unverified_dir = self.root / "unverified"
        self._clock: Clock = clock or SystemClock()
        self.device_factory = device_factory
        self.read_only = read_only
        self.stats = LibraryStats()
        if not read_only:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        self._mounts: dict[str, _ScsiMount] = {}

    # -- inventory ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def clock(self) -> Clock:
        return self._clock

    def status(self) -> ChangerStatus:
        status = self.changer.status()
        if len(status.drives) < len(self.drive_paths):
            raise ConfigurationError(
                f"library {self.name}: {len(self.drive_paths)} drives are configured "
                f"({', '.join(self.drive_paths)}) but changer {self.changer.device} has "
                f"{len(status.drives)}",
                path=self.changer.device,
            )
        return status

    def barcodes(self) -> list[str]:
        """The pool's cartridges, in slot order: in their slots or out in a drive.

        Cartridges in import/export slots are not the library's yet (import
        them), cleaning cartridges are never a pool's, and a cartridge without
        a readable label cannot be asked for by barcode: it is logged, not listed.
        """
        status = self.status()
        by_slot: list[tuple[int, str]] = []
        unlabelled: list[str] = []
        for slot in status.storage_slots:
            if slot.full:
                if slot.barcode is None:
                    unlabelled.append(f"slot {slot.number}")
                else:
                    by_slot.append((slot.number, slot.barcode))
        for drive in status.drives:
            if drive.full:
                if drive.barcode is None:
                    unlabelled.append(f"drive {drive.number}")
                else:
                    by_slot.append((drive.source_slot or 1 << 30, drive.barcode))
        if unlabelled:
            log.warning(
                "library %s: cartridges without a barcode label are ignored: %s",
                self.name,
                ", ".join(unlabelled),
            )
        seen: set[str] = set()
        out: list[str] = []
        for _, barcode in sorted(by_slot):
            if barcode.upper().startswith(CLEANING_PREFIX):
                continue
            if barcode in seen:
                raise StorageError(
                    f"library {self.name}: changer {self.changer.device} reports barcode "
                    f"{barcode} twice: relabel one of the cartridges",
                    barcode=barcode,
                    path=self.changer.device,
                )
            seen.add(barcode)
            out.append(barcode)
        return out

    def slots(self) -> list[SlotInfo]:
        return [
            SlotInfo(s.number, s.barcode if s.full else None) for s in self.status().storage_slots
        ]

    def drives(self) -> list[DriveInfo]:
        """Every configured drive and what the changer says it holds (any process's mount)."""
        status = self.status()
        return [
            DriveInfo(n, status.drives[n].barcode if status.drives[n].full else None)
            for n in range(len(self.drive_paths))
        ]

    def mounted(self) -> dict[str, TapeDevice]:
        return {barcode: m.device for barcode, m in self._mounts.items()}

    def free_drives(self) -> int:
        """Drives no process holds now (a planner's guess: another may take one next)."""
        taken = {m.drive for m in self._mounts.values()}
        free = 0
        for number in range(len(self.drive_paths)):
            if number in taken:
                continue
            probe = self._drive_lock(number)
            if probe.acquire():
                probe.release()
                free += 1
        return free

    # -- unverified cartridges --------------------------------------------------------------

    def mark_unverified(self, barcodes: Sequence[str]) -> None:
        """Remember cartridges to check for data at their first mount (see the module doc)."""
        if not barcodes or self.read_only:
            return
        self.unverified_dir.mkdir(parents=True, exist_ok=True)
        for barcode in barcodes:
            (self.unverified_dir / barcode).touch()

    def unverified(self) -> list[str]:
        if not self.unverified_dir.is_dir():
            return []
        return sorted(p.name for p in self.unverified_dir.iterdir())

    def recorded_volume(self, barcode: str) -> str | None:
        """Not known without a load, and start-up does not load: None (checked at first mount)."""
        return None

    # -- import / export --------------------------------------------------------------------

    def import_cartridge(self, barcode: str) -> int:
        """Take a cartridge from an import/export slot into the pool; its new slot."""
        with self._robot():
            return self.changer.import_cartridge(barcode)

    def export_cartridge(self, barcode: str) -> int:
        """Put a cartridge of the pool out in an import/export slot; that slot."""
        if barcode in self._mounts:
            raise DeviceBusyError(
                f"library {self.name}: {barcode} is mounted here: unmount it first",
                barcode=barcode,
            )
        lock = self._cartridge_lock(barcode)
        if not lock.acquire():
            raise DeviceBusyError(
                f"cartridge {barcode} is in use by another process", barcode=barcode
            )
        try:
            with self._robot():
                return self.changer.export_cartridge(barcode)
        finally:
            lock.release()

    # -- robot ------------------------------------------------------------------------------

    def mount(self, barcode: str) -> TapeDevice:
        current = self._mounts.get(barcode)
        if current is not None:
            return current.device
        cartridge_lock = self._cartridge_lock(barcode)
        if not cartridge_lock.acquire():
            raise DeviceBusyError(
                f"cartridge {barcode} is in use by another process", barcode=barcode
            )
        try:
            mount = self._load(barcode, cartridge_lock)
        except BaseException:
            cartridge_lock.release()
            raise
        self._mounts[barcode] = mount
        self.stats.mounts += 1
        return mount.device

    def _load(self, barcode: str, cartridge_lock: _Lock) -> _ScsiMount:
        """Find the cartridge, claim a drive, move and load it; every claim undone on failure."""
        with self._robot(), self._changer_fault(barcode):
            status = self.status()
            in_drive = status.drive_holding(barcode)
            if in_drive is not None and in_drive.number >= len(self.drive_paths):
                raise DeviceBusyError(
                    f"cartridge {barcode} is in drive {in_drive.number} of changer "
                    f"{self.changer.device}, which site {self.name} does not use",
                    barcode=barcode,
                )
            if in_drive is not None:
                # Left in a drive by a process that died: use it where it is.
                drive_lock = self._drive_lock(in_drive.number)
                if not drive_lock.acquire():
                    raise DeviceBusyError(
                        f"cartridge {barcode} is in drive {in_drive.number} of library "
                        f"{self.name}, which another process holds",
                        barcode=barcode,
                    )
                drive, slot, moved = in_drive.number, in_drive.source_slot, False
            else:
                source = status.slot_holding(barcode)
                if source is None:
                    raise NotFoundError(
                        f"library {self.name} holds no cartridge {barcode} "
                        f"(changer {self.changer.device})",
                        barcode=barcode,
                    )
                if source.import_export:
                    raise NotFoundError(
                        f"cartridge {barcode} is in import/export slot {source.number} of "
                        f"library {self.name}: import it first",
                        barcode=barcode,
                    )
                claimed = self._claim_drive(status)
                if claimed is None:
                    raise DeviceBusyError(
                        f"every drive of library {self.name} is busy", barcode=barcode
                    )
                drive_lock, drive = claimed
                slot, moved = source.number, True
                try:
                    self.changer.load(slot, drive)
                except BaseException:
                    self.stats.failed_loads += 1
                    drive_lock.release()
                    raise
                self.stats.moves += 1
        if slot is None:
            try:
                with self._changer_fault(barcode):
                    slot = self._slot_for_leftover(barcode)
            except BaseException:
                drive_lock.release()
                raise
        device = self.device_factory(self.drive_paths[drive])
        try:
            device.load()
            if not self.read_only and (self.unverified_dir / barcode).exists():
                self._verify_blank(barcode, device)  # read-only sites never write: moot
        except BaseException:
            if moved:
                self.stats.failed_loads += 1
            self._put_back(barcode, device, drive, slot)
            drive_lock.release()
            raise
        return _ScsiMount(drive, slot, barcode, device, drive_lock, cartridge_lock)

    def _verify_blank(self, barcode: str, device: TapeDevice) -> None:
        """A cartridge registered as scratch without a look: blank, or refused before any write."""
        if _holds_data(device):
            raise StorageError(
                f"library {self.name}: cartridge {barcode} was taken as scratch when the "
                "catalogue did not know it, but it holds data: nothing is written to it. Take "
                "it out of the library (export it), or restore the catalogue that knows it "
                "(from a backup, then delete "
                f"{self.unverified_dir / barcode}; or rebuild it from the tapes with "
                "`preservation catalog rebuild --from-tapes`, which clears the mark)",
                barcode=barcode,
                rule="uncatalogued-data",
            )
        device.locate(0, 0)
        (self.unverified_dir / barcode).unlink(missing_ok=True)
        log.info("library %s: %s is blank, as registered", self.name, barcode)

    def unmount(self, barcode: str) -> None:
        mount = self._mounts.pop(barcode, None)
        if mount is None:
            return
        try:
            self._put_back(barcode, mount.device, mount.drive, mount.slot)
        finally:
            self.stats.unmounts += 1
            mount.drive_lock.release()
            mount.cartridge_lock.release()

    def _put_back(self, barcode: str, device: TapeDevice, drive: int, slot: int) -> None:
        """Rewind and eject in the drive, then the robot returns the cartridge to ``slot``.

        Failures are logged, not raised: a cartridge left in its drive is found
        there by the next mount, which uses it where it is.
        """
        try:
            device.unload()
        except StorageError as err:
            log.warning(
                "drive %d (%s) of %s failed to unload %s: %s",
                drive,
                self.drive_paths[drive],
                self.name,
                barcode,
                err,
            )
        try:
            with self._robot():
                self.changer.unload(slot, drive)
            self.stats.moves += 1
        except StorageError as err:
            log.error(
                "library %s: the robot could not return %s from drive %d to slot %d: %s",
                self.name,
                barcode,
                drive,
                slot,
                err,
            )

    def flush(self, barcode: str) -> None:
        """Nothing to do: the drive has written everything by the last filemark."""

    def close(self, *, unload: bool = True) -> None:
        for barcode in list(self._mounts):
            if unload:
                self.unmount(barcode)
            else:
                mount = self._mounts.pop(barcode)
                mount.drive_lock.release()
                mount.cartridge_lock.release()

    # -- internals --------------------------------------------------------------------------

    def _claim_drive(self, status: ChangerStatus) -> tuple[_Lock, int] | None:
        """A drive this process now holds, empty; a cartridge a dead process left is put away."""
        taken = {m.drive for m in self._mounts.values()}
        for number in range(len(self.drive_paths)):
            if number in taken:
                continue
            lock = self._drive_lock(number)
            if not lock.acquire():
                continue
            element = status.drives[number]
            if element.full and not self._clear_leftover(element, status):
                lock.release()
                continue
            return lock, number
        return None

    def _clear_leftover(self, element: DriveElement, status: ChangerStatus) -> bool:
        """Return a cartridge nobody holds from a drive we hold to its slot; False if we cannot."""
        barcode = element.barcode
        if barcode is None:
            return False
        lock = self._cartridge_lock(barcode)
        if not lock.acquire():
            return False
        try:
            slot = element.source_slot
            if slot is None:
                free = status.free_storage_slot()
                if free is None:
                    return False
                slot = free.number
            device = self.device_factory(self.drive_paths[element.number])
            with suppress(StorageError):
                device.load()  # opens the node, so that unload can rewind and eject
            with suppress(StorageError):
                device.unload()
            try:
                self.changer.unload(slot, element.number)
            except StorageError as err:
                log.error(
                    "library %s: drive %d holds %s, left by a process that died, and the "
                    "robot cannot put it back: %s",
                    self.name,
                    element.number,
                    barcode,
                    err,
                )
                return False
            self.stats.moves += 1
            log.warning(
                "library %s: %s was left in drive %d; returned to slot %d",
                self.name,
                barcode,
                element.number,
                slot,
            )
            return True
        finally:
            lock.release()

    def _slot_for_leftover(self, barcode: str) -> int:
        """Where a cartridge found in a drive with no known source slot goes back."""
        with self._robot():
            free = self.status().free_storage_slot()
        if free is None:
            raise StorageError(
                f"library {self.name}: {barcode} is in a drive, its slot is unknown and no "
                "storage slot is free to take it back",
                barcode=barcode,
            )
        return free.number

    def _drive_lock(self, number: int) -> _Lock:
        return _Lock(self.lock_dir / f"drive-{number}.lock", read_only=self.read_only)

    def _cartridge_lock(self, barcode: str) -> _Lock:
        return _Lock(self.lock_dir / f"{barcode}.lock", read_only=self.read_only)

    @contextmanager
    def _changer_fault(self, barcode: str) -> Iterator[None]:
        """A robot failure while mounting is the site's, never the cartridge's.

        The store counts a StorageError from a mount against the cartridge (a
        load error makes it suspect), so a changer that is off or jammed would
        otherwise make every cartridge it was asked for suspect, one by one.
        As SiteUnavailableError (transient) the store waits and tries again.
        """
        try:
            yield
        except StorageError as err:
            raise SiteUnavailableError(
                f"site {self.name}: the changer failed while mounting {barcode}: {err.message}",
                site=self.name,
                barcode=barcode,
                path=self.changer.device,
            ) from err

    @contextmanager
    def _robot(self) -> Iterator[None]:
        """Hold ``changer.lock`` (blocking) for an inventory read and the moves that follow."""
        path = self.lock_dir / "changer.lock"
        try:
            fd = os.open(path, os.O_RDONLY if self.read_only else os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if self.read_only and err.errno in (errno.ENOENT, errno.EACCES, errno.EROFS):
                yield  # nobody writes a read-only library's lock folder: nothing to share
                return
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
