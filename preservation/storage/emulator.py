"""A tape drive and cartridges emulated on disk, in the reference LTFS "file" backend layout.

One directory is one cartridge, laid out as the reference implementation's
file backend lays it out (see ``tests/data/ltfs/README.md``), so a cartridge we
write can be checked with the reference tools and a cartridge they write can be
read by us::

    <partition>_<block>_R    one record (the block's bytes, nothing else)
    <partition>_<block>_F    a filemark (empty)
    <partition>_<block>_E    end of data (empty)
    attr_<partition>_<hex>   one MAM attribute in SPC-4 wire form
    filedebug_tc_conf.xml    capacity, cartridge type, write protection

The drive charges every operation to a :class:`~preservation.storage.clock.SimulatedClock`
(load, unload, seeks proportional to distance, streaming at native rate) so
benchmarks count mounts and tape seconds without sleeping, and exposes fault
hooks (:class:`Faults`) so tests can break it the ways real media break.

This is a test and development device: built with ``production=True`` it warns.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from preservation.errors import (
    MediaError,
    StorageError,
    TapeFullError,
    WriteProtectedError,
)
from preservation.storage.clock import Clock, DriveTiming, SimulatedClock
from preservation.storage.interfaces import (
    DEVICE_ATTRIBUTES,
    EndOfDataError,
    MamAttribute,
    MamFormat,
    MamId,
    OversizeBlockError,
    PartitionSpace,
    TapePosition,
    TapeStatus,
)

__all__ = ["DeviceStats", "EmulatedCartridge", "EmulatedTapeDevice", "Faults"]

CONF_NAME = "filedebug_tc_conf.xml"
MIB = 1 << 20
_OBJECT_RE = re.compile(r"^(\d+)_(\d+)_([RFE])$")
_ATTR_RE = re.compile(r"^attr_(\d+)_([0-9a-f]+)$")
_PARTITIONS = 2
_FILE_MODE = 0o644
#: Records the emulated drive reads ahead of the host (8 MiB of 512 KiB blocks).
READ_AHEAD_RECORDS = 16


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class EmulatedCartridge:
    """A cartridge directory: its settings file and the physical label it carries.

    ``barcode`` is the label a library would scan; by default the directory
    name, as the reference backend names cartridges after their directory.
    Capacity follows the reference's ``capacity_mb`` (MiB); the medium is
    always split into two partitions, partition 0 being two wraps long
    (``capacity * 2 / wraps``), which is how LTO allocates the index partition.
    """

    def __init__(self, path: str | os.PathLike[str], barcode: str | None = None) -> None:
        self.path = Path(path)
        self.barcode = barcode or self.path.name
        if not (self.path / CONF_NAME).is_file():
            raise MediaError(
                f"{self.path} is not an emulated cartridge (no {CONF_NAME})",
                path=self.path,
                barcode=self.barcode,
            )
        self._conf = self._read_conf()

    def is_blank(self) -> bool:
        """True when nothing was ever written: no record, no filemark, only end-of-data markers.

        Read from the directory alone, without a drive, so a library can tell
        written cartridges from blank ones without mounting each.
        """
        with os.scandir(self.path) as entries:
            for entry in entries:
                match = _OBJECT_RE.match(entry.name)
                if match and match[3] != "E":
                    return False
        return True

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        barcode: str | None = None,
        capacity: int = 18 * 10**12,
        cart_type: str = "L9",
        density_code: int = 0x60,
        wraps: int = 280,
        write_protected: bool = False,
    ) -> EmulatedCartridge:
        """A blank cartridge (both partitions empty: only their end-of-data markers)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=False)
        conf = {
            "dummy_io": "false",
            "emulate_readonly": "true" if write_protected else "false",
            "capacity_mb": str(max(1, capacity // MIB)),
            "cart_type": cart_type,
            "density_code": f"{density_code:x}",
            "delay_mode": "None",
            "wraps": str(wraps),
            "eot_to_bot_sec": "12",
            "change_direction_us": "2000000",
            "change_track_us": "10000",
            "threading_sec": "0",
        }
        _write_conf(directory, conf)
        for part in range(_PARTITIONS):
            _touch(directory / f"{part}_0_E")
        return cls(directory, barcode)

    def _read_conf(self) -> dict[str, str]:
        tree = etree.parse(str(self.path / CONF_NAME), _safe_parser())
        return {child.tag: (child.text or "").strip() for child in tree.getroot()}

    @property
    def capacity(self) -> int:
        return int(self._conf.get("capacity_mb", "0")) * MIB

    @property
    def wraps(self) -> int:
        return max(2, int(self._conf.get("wraps", "40")))

    def partition_capacities(self) -> tuple[int, ...]:
        index_size = max(MIB, self.capacity * 2 // self.wraps)
        return (index_size, max(0, self.capacity - index_size))

    @property
    def write_protected(self) -> bool:
        return self._conf.get("emulate_readonly", "false").lower() == "true"

    def set_write_protected(self, value: bool) -> None:
        """Slide the write-protect tab."""
        self._conf["emulate_readonly"] = "true" if value else "false"
        _write_conf(self.path, self._conf)

    def set_index_partition_size(self, nbytes: int) -> None:
        """Pick the wrap count that makes partition 0 about ``nbytes`` long."""
        wraps = max(2, round(2 * self.capacity / max(nbytes, 1)))
        self._conf["wraps"] = str(wraps)
        _write_conf(self.path, self._conf)


def _write_conf(directory: Path, conf: dict[str, str]) -> None:
    root = etree.Element("filedebug_cartridge_config")
    for key, value in conf.items():
        etree.SubElement(root, key).text = value
    etree.indent(root, space="    ")
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    tmp = directory / (CONF_NAME + ".tmp")
    tmp.write_bytes(b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n")
    os.replace(tmp, directory / CONF_NAME)


def _touch(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE))


@dataclass
class Faults:
    """Ways to break the emulated drive; each is off by default.

    ``read_errors``/``bit_flips`` name ``(partition, block)`` records that fail
    with EIO or come back with one bit flipped (silent corruption).
    ``write_error_after`` makes every write fail once that many records have
    been written since the hook was set (a drive that died). ``capacity`` makes
    the medium physically shorter than its nominal capacity (per partition
    number). ``power_loss_after`` cuts power after that many more records:
    the write in progress fails, no end-of-data marker is written and the drive
    is dead until a new device object is built on the cartridge. ``unreadable``
    makes the cartridge fail to load. ``swap_cartridge`` makes a load thread
    that cartridge instead of the one inserted (a library mix-up).
    """

    read_errors: set[tuple[int, int]] = field(default_factory=set)
    bit_flips: set[tuple[int, int]] = field(default_factory=set)
    write_error_after: int | None = None
    capacity: dict[int, int] = field(default_factory=dict)
    power_loss_after: int | None = None
    unreadable: bool = False
    swap_cartridge: EmulatedCartridge | None = None


@dataclass
class DeviceStats:
    """What the drive did, for benchmarks and mount accounting."""

    loads: int = 0
    unloads: int = 0
    locates: int = 0
    blocks_read: int = 0
    blocks_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    filemarks_written: int = 0
    seconds: float = 0.0


class _Partition:
    """In-memory picture of one partition: object kinds and record byte offsets."""

    __slots__ = ("kinds", "offsets", "eod_marker", "stale")

    def __init__(self) -> None:
        self.kinds: bytearray = bytearray()  # b"R" or b"F" per object
        self.offsets: list[int] = [0]  # byte offset of each object start; last = bytes used
        self.eod_marker: int | None = None  # block number of the _E file on disk
        self.stale: list[str] = []  # files beyond end of data left by an old writer

    @property
    def eod(self) -> int:
        return len(self.kinds)

    @property
    def used(self) -> int:
        return self.offsets[-1]


class EmulatedTapeDevice:
    """A drive holding an :class:`EmulatedCartridge`; implements ``TapeDevice``.

    ``read_only`` is for cartridges on read-only media (an archive copy): the
    drive then reports every cartridge write protected and writes nothing to
    its directory, not even the end-of-data marker a real drive would add when
    it stops after a write that power cut short.
    """

    def __init__(
        self,
        cartridge: EmulatedCartridge | str | os.PathLike[str] | None = None,
        *,
        clock: Clock | None = None,
        timing: DriveTiming | None = None,
        faults: Faults | None = None,
        early_warning_bytes: int | None = None,
        fsync: bool = False,
        production: bool = False,
        writeback: Callable[[int], None] | None = None,
        read_only: bool = False,
    ) -> None:
        if production:
            warnings.warn(
                "EmulatedTapeDevice keeps cartridges in directories; it is not a tape drive "
                "and must not hold production archives",
                RuntimeWarning,
                stacklevel=2,
            )
        if cartridge is not None and not isinstance(cartridge, EmulatedCartridge):
            cartridge = EmulatedCartridge(cartridge)
        self.cartridge: EmulatedCartridge | None = cartridge
        self.clock: Clock = clock or SimulatedClock()
        self.timing = timing or DriveTiming.lto9()
        self.faults = faults or Faults()
        self.stats = DeviceStats()
        self.fsync = fsync
        self.read_only = read_only
        # Called with each record's fd once written: the library starts the
        # record's write-back at once, as a drive streams from its buffer, so
        # the flush at the sync point finds little left to wait for.
        self._writeback = writeback
        self._unsynced: list[str] = []
        self._early_warning_bytes = early_warning_bytes
        self._mounted: EmulatedCartridge | None = None
        self._parts: list[_Partition] = []
        self._part = 0
        self._pos = 0
        self._written_since_load = False
        self._writes_counted = 0
        self._dead = False
        self._eom = False
        # The drive's read-ahead buffer: records opened (and their pages asked
        # for) before the host reads them, while it reads forwards.
        self._ahead: dict[tuple[int, int], int] = {}

    # -- library side -------------------------------------------------------------------

    def insert(self, cartridge: EmulatedCartridge) -> None:
        """Put a cartridge in the (empty) drive, as a library picker would."""
        if self.cartridge is not None:
            raise StorageError(
                "the drive already holds a cartridge", barcode=self.cartridge.barcode
            )
        self.cartridge = cartridge

    def eject(self) -> EmulatedCartridge | None:
        """Take the cartridge out (unloading first if needed)."""
        if self._mounted is not None:
            self.unload()
        cartridge, self.cartridge = self.cartridge, None
        return cartridge

    # -- TapeDevice -----------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._mounted is not None

    @property
    def barcode(self) -> str | None:
        """Cartridge memory's barcode when written (as a drive reports it), else the label's."""
        if self._mounted is not None and not self._dead:
            attribute = self.read_attribute(MamId.BARCODE)
            return (attribute.text() if attribute else None) or self._mounted.barcode
        return self.cartridge.barcode if self.cartridge is not None else None

    @property
    def write_protected(self) -> bool:
        return self._require().write_protected or self.read_only

    @property
    def partition_count(self) -> int:
        self._require()
        return _PARTITIONS

    def load(self) -> None:
        self._check_alive()
        if self._mounted is not None:
            return
        if self.cartridge is None:
            raise StorageError("no cartridge in the drive")
        if self.faults.unreadable:
            self._charge(self.timing.load_seconds)
            raise MediaError(
                "the cartridge cannot be loaded: the drive reports a medium error",
                barcode=self.cartridge.barcode,
            )
        cartridge = self.faults.swap_cartridge or self.cartridge
        self._parts = self._scan(cartridge.path)
        self._mounted = cartridge
        self._part, self._pos = 0, 0
        self._written_since_load = False
        self._eom = False
        self.stats.loads += 1
        self._charge(self.timing.load_seconds)

    def unload(self) -> None:
        self._forget_ahead()
        if self._mounted is None:
            return
        self._check_alive()
        self._flush_eod()
        self._sync_to_disk()
        self.stats.unloads += 1
        self._charge(self.timing.unload_seconds)
        self._mounted = None
        self._parts = []

    def create_partitions(self, index_partition_bytes: int) -> None:
        self._forget_ahead()
        cartridge = self._writable()
        for name in os.listdir(cartridge.path):
            if _OBJECT_RE.match(name):
                os.unlink(cartridge.path / name)
        cartridge.set_index_partition_size(index_partition_bytes)
        for part in range(_PARTITIONS):
            _touch(cartridge.path / f"{part}_0_E")
        self._parts = self._scan(cartridge.path)
        self._part, self._pos = 0, 0
        self._bump_change_reference()

    def position(self) -> TapePosition:
        self._require()
        return TapePosition(self._part, self._pos)

    def locate(self, partition: int, block: int) -> None:
        self._prepare_move()
        if not 0 <= partition < len(self._parts):
            raise StorageError(f"partition {partition} does not exist", barcode=self.barcode)
        target = self._parts[partition]
        clamped = min(max(block, 0), target.eod)
        self._move(partition, clamped)
        self.stats.locates += 1
        if block > target.eod:
            raise EndOfDataError(
                f"block {block} is past end of data ({target.eod}) in partition {partition}",
                barcode=self.barcode,
            )

    def set_partition(self, partition: int) -> None:
        self.locate(partition, 0)

    def rewind(self) -> None:
        self.locate(self._part, 0)

    def seek_eod(self) -> None:
        self._prepare_move()
        self._move(self._part, self._parts[self._part].eod)

    def space_filemarks(self, count: int) -> None:
        self._prepare_move()
        part = self._parts[self._part]
        pos = self._pos
        if count >= 0:
            remaining = count
            while remaining:
                if pos >= part.eod:
                    self._move(self._part, pos)
                    raise EndOfDataError("end of data reached while spacing", barcode=self.barcode)
                if part.kinds[pos] == 0x46:  # b"F"
                    remaining -= 1
                pos += 1
        else:
            remaining = -count
            while remaining:
                if pos <= 0:
                    self._move(self._part, 0)
                    raise StorageError(
                        "beginning of partition reached while spacing back", barcode=self.barcode
                    )
                pos -= 1
                if part.kinds[pos] == 0x46:
                    remaining -= 1
        self._move(self._part, pos)

    def space_blocks(self, count: int) -> None:
        self._prepare_move()
        part = self._parts[self._part]
        pos = self._pos
        try:
            for _ in range(abs(count)):
                if count > 0:
                    if pos >= part.eod:
                        raise EndOfDataError(
                            "end of data reached while spacing", barcode=self.barcode
                        )
                    pos += 1
                    if part.kinds[pos - 1] == 0x46:  # past the filemark, as a drive stops
                        raise StorageError(
                            f"filemark at block {pos - 1} met while spacing forwards",
                            barcode=self.barcode,
                            filemark=True,
                        )
                else:
                    if pos <= 0:
                        raise StorageError(
                            "beginning of partition reached while spacing back",
                            barcode=self.barcode,
                        )
                    pos -= 1
                    if part.kinds[pos] == 0x46:  # before the filemark (its BOT side)
                        raise StorageError(
                            f"filemark at block {pos} met while spacing back",
                            barcode=self.barcode,
                            filemark=True,
                        )
        finally:
            self._move(self._part, pos)

    def read_block(self, max_len: int) -> bytes:
        self._prepare_move()
        part = self._parts[self._part]
        pos = self._pos
        if pos >= part.eod:
            raise EndOfDataError("end of data", barcode=self.barcode)
        key = (self._part, pos)
        self._pos = pos + 1
        if part.kinds[pos] == 0x46:
            return b""
        size = part.offsets[pos + 1] - part.offsets[pos]
        self._charge(self.timing.transfer_seconds(size))
        if key in self.faults.read_errors:
            raise MediaError(
                f"unrecovered read error at partition {key[0]} block {key[1]}",
                barcode=self.barcode,
                errno=errno.EIO,
            )
        if size > max_len:
            raise OversizeBlockError(
                f"record of {size} bytes does not fit a {max_len}-byte read", barcode=self.barcode
            )
        assert self._mounted is not None
        fd = self._ahead.pop(key, None)
        if fd is None:
            self._forget_ahead()  # not reading on from where the buffer was filled
            fd = os.open(self._mounted.path / f"{key[0]}_{pos}_R", os.O_RDONLY)
        try:
            data = os.read(fd, size) if size else b""
        finally:
            os.close(fd)
        self._read_ahead(part, pos + 1)
        if len(data) != size:
            raise MediaError("record shorter than recorded", barcode=self.barcode)
        self.stats.blocks_read += 1
        self.stats.bytes_read += size
        if key in self.faults.bit_flips and data:
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0x01
            data = bytes(flipped)
        return data

    def write_block(self, data: bytes | bytearray | memoryview) -> None:
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        if size == 0:
            raise StorageError("a record cannot be empty (that would be a filemark)")
        self._write_object(b"R", data, size)

    def write_filemarks(self, count: int = 1) -> None:
        """Filemarks flush the drive's buffer, so end of data is on tape afterwards."""
        for _ in range(count):
            self._write_object(b"F", None, 0)
        self._flush_eod()
        self._sync_to_disk()

    def _sync_to_disk(self) -> None:
        """With ``fsync``, make everything written so far durable, as a drive does at a filemark.

        Syncing at filemarks rather than per record costs one flush per batch,
        like ``dd conv=fsync``, and is exactly the durability a tape promises.
        """
        if not self.fsync or not self._unsynced or self._mounted is None:
            return
        directory = self._mounted.path
        for name in self._unsynced:
            try:
                fd = os.open(directory / name, os.O_RDONLY)
            except FileNotFoundError:  # overwritten since: nothing to keep
                continue
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        self._unsynced.clear()
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def status(self) -> TapeStatus:
        cartridge = self._require()
        nominal = cartridge.partition_capacities()
        spaces = tuple(
            PartitionSpace(nominal[i], max(0, nominal[i] - p.used))
            for i, p in enumerate(self._parts)
        )
        part = self._parts[self._part]
        return TapeStatus(
            loaded=True,
            write_protected=cartridge.write_protected,
            partition=self._part,
            block=self._pos,
            early_warning=part.offsets[self._pos] >= self._early_warning_at(self._part),
            end_of_medium=self._eom,
            partitions=spaces,
        )

    def read_attribute(self, attr_id: int, partition: int = 0) -> MamAttribute | None:
        cartridge = self._require()
        if attr_id in (MamId.REMAINING_CAPACITY, MamId.MAXIMUM_CAPACITY):
            if partition >= len(self._parts):
                return None
            nominal = cartridge.partition_capacities()[partition]
            mib = (
                nominal
                if attr_id == MamId.MAXIMUM_CAPACITY
                else nominal - self._parts[partition].used
            )
            return MamAttribute(attr_id, MamFormat.BINARY, (max(mib, 0) // MIB).to_bytes(8, "big"))
        path = cartridge.path / f"attr_{partition}_{attr_id:x}"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        return MamAttribute.decode(raw)

    def write_attribute(self, attribute: MamAttribute, partition: int = 0) -> None:
        cartridge = self._require()
        if attribute.id in DEVICE_ATTRIBUTES:
            raise StorageError(f"MAM attribute {attribute.id:#06x} is maintained by the drive")
        if cartridge.write_protected or self.read_only:
            raise WriteProtectedError("the cartridge is write protected", barcode=self.barcode)
        self._store_attribute(partition, attribute)

    # -- internals ----------------------------------------------------------------------

    def _require(self) -> EmulatedCartridge:
        self._check_alive()
        if self._mounted is None:
            raise StorageError("no cartridge is loaded", barcode=self.barcode)
        return self._mounted

    def _check_alive(self) -> None:
        if self._dead:
            raise MediaError("the drive lost power", barcode=self.barcode)

    def _writable(self) -> EmulatedCartridge:
        cartridge = self._require()
        if cartridge.write_protected or self.read_only:
            raise WriteProtectedError("the cartridge is write protected", barcode=self.barcode)
        return cartridge

    def _charge(self, seconds: float) -> None:
        if seconds > 0:
            self.clock.advance(seconds)
            self.stats.seconds += seconds

    def _physical_capacity(self, partition: int) -> int:
        assert self._mounted is not None
        nominal = self._mounted.partition_capacities()[partition]
        return min(nominal, self.faults.capacity.get(partition, nominal))

    def _early_warning_at(self, partition: int) -> int:
        physical = self._physical_capacity(partition)
        zone = self._early_warning_bytes
        if zone is None:
            zone = physical // 100
        return max(0, physical - zone)

    def _fraction(self, partition: int, block: int) -> float:
        assert self._mounted is not None
        nominal = self._mounted.partition_capacities()[partition] or 1
        return self._parts[partition].offsets[block] / nominal

    def _move(self, partition: int, block: int) -> None:
        distance = self._fraction(partition, block) - self._fraction(self._part, self._pos)
        if partition != self._part or block != self._pos:
            self._charge(self.timing.seek_seconds(distance) or self.timing.locate_overhead_seconds)
        self._part, self._pos = partition, block

    def _prepare_move(self) -> None:
        """Leaving write mode: a drive writes end of data when it stops writing."""
        self._require()
        self._flush_eod()

    def _flush_eod(self) -> None:
        assert self._mounted is not None
        if self.read_only:
            return  # end of data is where the scan found it; the medium cannot take a marker
        for number, part in enumerate(self._parts):
            if part.eod_marker is None:
                _touch(self._mounted.path / f"{number}_{part.eod}_E")
                part.eod_marker = part.eod

    def _bump_change_reference(self) -> None:
        current = self.read_attribute(MamId.VOLUME_CHANGE_REFERENCE)
        value = int.from_bytes(current.value, "big") + 1 if current else 1
        attr = MamAttribute(
            MamId.VOLUME_CHANGE_REFERENCE, MamFormat.BINARY, value.to_bytes(4, "big")
        )
        self._store_attribute(0, attr)
        self._written_since_load = True

    def _store_attribute(self, partition: int, attribute: MamAttribute) -> None:
        assert self._mounted is not None
        path = self._mounted.path / f"attr_{partition}_{attribute.id:x}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        try:
            os.write(fd, attribute.encode())
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _truncate(self, number: int, part: _Partition, at: int) -> None:
        """Make ``at`` the new end of data: every later object on the partition is gone."""
        assert self._mounted is not None
        directory = self._mounted.path
        if part.eod_marker is not None:
            _unlink_quiet(directory / f"{number}_{part.eod_marker}_E")
            part.eod_marker = None
        for block in range(at, part.eod):
            kind = "F" if part.kinds[block] == 0x46 else "R"
            _unlink_quiet(directory / f"{number}_{block}_{kind}")
        for name in part.stale:
            _unlink_quiet(directory / name)
        part.stale = []
        del part.kinds[at:]
        del part.offsets[at + 1 :]

    def _read_ahead(self, part: _Partition, start: int) -> None:
        """Ask the host for the next records' pages while this one is handed over.

        A drive streaming forwards reads ahead into its buffer; the emulated
        one asks the kernel (``POSIX_FADV_WILLNEED``) for the next
        ``READ_AHEAD_RECORDS`` record files, so one file's read no longer
        waits for the disk before the next is even asked for. Any write or
        move out of the cartridge forgets them (:meth:`_forget_ahead`).
        """
        assert self._mounted is not None
        for pos in range(start, min(start + READ_AHEAD_RECORDS, part.eod)):
            key = (self._part, pos)
            if key in self._ahead or part.kinds[pos] != 0x52:  # records only, not filemarks
                continue
            try:
                fd = os.open(self._mounted.path / f"{key[0]}_{pos}_R", os.O_RDONLY)
            except OSError:
                return  # the read itself will say what is wrong
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            self._ahead[key] = fd

    def _forget_ahead(self) -> None:
        for fd in self._ahead.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._ahead.clear()

    def _write_object(
        self, kind: bytes, data: bytes | bytearray | memoryview | None, size: int
    ) -> None:
        self._forget_ahead()
        cartridge = self._writable()
        faults = self.faults
        if faults.power_loss_after is not None:
            if faults.power_loss_after <= 0:
                self._dead = True
                raise MediaError("the drive lost power while writing", barcode=self.barcode)
            faults.power_loss_after -= 1
        if faults.write_error_after is not None:
            if self._writes_counted >= faults.write_error_after:
                raise MediaError(
                    "write error: the drive cannot write this medium any more",
                    barcode=self.barcode,
                    errno=errno.EIO,
                )
            self._writes_counted += 1
        if not self._written_since_load:
            self._bump_change_reference()
        number, part = self._part, self._parts[self._part]
        start = part.offsets[self._pos]
        if start + size > self._physical_capacity(number):
            self._eom = True
            raise TapeFullError(
                f"end of medium in partition {number}: {size} more bytes do not fit",
                barcode=self.barcode,
            )
        if self._pos < part.eod or part.eod_marker is not None or part.stale:
            self._truncate(number, part, self._pos)
        name = f"{number}_{self._pos}_{kind.decode()}"
        fd = os.open(cartridge.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        try:
            if data is not None:
                view = memoryview(data).cast("B")
                written = os.write(fd, view)
                while written < size:  # a short write on a regular file is rare but legal
                    written += os.write(fd, view[written:])
                if self._writeback is not None:
                    self._writeback(fd)
        finally:
            os.close(fd)
        if self.fsync:
            self._unsynced.append(name)
        part.kinds += kind
        part.offsets.append(start + size)
        self._pos += 1
        if kind == b"R":
            self.stats.blocks_written += 1
            self.stats.bytes_written += size
            self._charge(self.timing.transfer_seconds(size))
        else:
            self.stats.filemarks_written += 1
            self._charge(self.timing.filemark_seconds)

    @staticmethod
    def _scan(directory: Path) -> list[_Partition]:
        """Rebuild the partitions from the directory, as a drive reads its tape directory."""
        found: dict[int, dict[int, tuple[str, int]]] = {p: {} for p in range(_PARTITIONS)}
        eods: dict[int, int] = {}
        with os.scandir(directory) as entries:
            for entry in entries:
                match = _OBJECT_RE.match(entry.name)
                if not match:
                    continue
                number, block, kind = int(match[1]), int(match[2]), match[3]
                if number not in found:
                    continue
                if kind == "E":
                    eods[number] = min(block, eods.get(number, block))
                else:
                    size = entry.stat().st_size if kind == "R" else 0
                    found[number][block] = (kind, size)
        parts = []
        for number in range(_PARTITIONS):
            part = _Partition()
            objects = found[number]
            # Without an end-of-data marker (power lost mid-write) the data ends
            # at the first gap, as a drive finds end of data by reading blank tape.
            eod = eods.get(number)
            limit = eod if eod is not None else len(objects) + 1
            block = 0
            while block < limit and block in objects:
                kind, size = objects[block]
                part.kinds += kind.encode()
                part.offsets.append(part.offsets[-1] + size)
                block += 1
            part.eod_marker = eod if eod == part.eod else None
            part.stale = [f"{number}_{b}_{k}" for b, (k, _) in objects.items() if b >= part.eod]
            if eod is not None and eod != part.eod:
                part.stale.append(f"{number}_{eod}_E")
            parts.append(part)
        return parts


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
