"""The tape drive as LTFS needs it, and nothing more.

``TapeDevice`` is the seam between the LTFS code (pure Python, the same in tests
and production) and hardware: :mod:`preservation.storage.device` drives a Linux
``st`` device, :mod:`preservation.storage.emulator` keeps a cartridge in a
directory. Both follow the SCSI stream model, so LTFS code written against the
emulator behaves the same on a drive:

* A partition is a sequence of *logical objects* numbered from 0: records
  (blocks) and filemarks. ``position`` is the number of the next object.
* Reading a filemark returns ``b""`` and moves past it; reading at end of data
  raises :class:`EndOfDataError`; a record larger than the caller's buffer
  raises :class:`OversizeBlockError` after moving past it (as ``st`` does).
* Writing anywhere makes that point the new end of data of the partition:
  everything after it is gone.
* Spacing back over filemarks leaves the tape *before* (on the BOT side of)
  the last filemark crossed, so its number is the filemark's own.
* Spacing over records stops at a filemark, as SCSI SPACE(blocks) does: going
  forwards the tape is left just past it, going backwards just before it, and
  a :class:`StorageError` whose ``context["filemark"]`` is true says so (the
  records between are what a reader skips, the filemark is a file boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

from preservation.errors import EndOfDataError, MediaError, OversizeBlockError

__all__ = [
    "EndOfDataError",
    "MamAttribute",
    "MamFormat",
    "MamId",
    "OversizeBlockError",
    "PartitionSpace",
    "TapeDevice",
    "TapePosition",
    "TapeStatus",
]


class MamFormat(IntEnum):
    """SCSI attribute formats (SPC-4, READ ATTRIBUTE)."""

    BINARY = 0
    ASCII = 1
    TEXT = 2


class MamId(IntEnum):
    """Medium auxiliary memory attributes LTFS reads or writes (SPC-4 / LTFS 2.4 annex)."""

    REMAINING_CAPACITY = 0x0000  # MiB, device maintained, per partition
    MAXIMUM_CAPACITY = 0x0001  # MiB, device maintained, per partition
    LOAD_COUNT = 0x0003
    VOLUME_CHANGE_REFERENCE = 0x0009  # device maintained: changes when the medium is written
    APPLICATION_VENDOR = 0x0800
    APPLICATION_NAME = 0x0801
    APPLICATION_VERSION = 0x0802
    USER_MEDIUM_TEXT_LABEL = 0x0803
    DATE_TIME_LAST_WRITTEN = 0x0804
    TEXT_LOCALIZATION_ID = 0x0805
    BARCODE = 0x0806
    OWNING_HOST_NAME = 0x0807
    MEDIA_POOL = 0x0808
    APPLICATION_FORMAT_VERSION = 0x080B
    VOLUME_COHERENCY_INFORMATION = 0x080C
    # Host-written (outside the device range), binary, 1 byte, partition 0; the
    # reference mkltfs writes it as "VOLUME_LOCKED" so its readers see 0 = unlocked.
    VOLUME_LOCK_STATUS = 0x1623


#: Attributes the drive maintains; hosts may read but never write them.
DEVICE_ATTRIBUTES = frozenset(range(0x0000, 0x0400))


@dataclass(frozen=True)
class MamAttribute:
    """One attribute as the drive stores it: id, format and raw value."""

    id: int
    format: MamFormat
    value: bytes

    def encode(self) -> bytes:
        """The SPC-4 wire form (id, format, length, value), also the emulator's file form."""
        return (
            self.id.to_bytes(2, "big")
            + bytes([int(self.format)])
            + len(self.value).to_bytes(2, "big")
            + self.value
        )

    @classmethod
    def decode(cls, raw: bytes) -> MamAttribute:
        if len(raw) < 5:
            raise MediaError("medium auxiliary memory attribute is truncated")
        length = int.from_bytes(raw[3:5], "big")
        value = bytes(raw[5 : 5 + length])
        if len(value) != length:
            raise MediaError("medium auxiliary memory attribute is truncated")
        return cls(int.from_bytes(raw[0:2], "big"), MamFormat(raw[2] & 0x03), value)

    def text(self) -> str:
        """ASCII/TEXT values as a string, trailing padding removed."""
        return self.value.rstrip(b"\0 ").decode("utf-8", errors="replace")


@dataclass(frozen=True)
class TapePosition:
    partition: int
    block: int


@dataclass(frozen=True)
class PartitionSpace:
    """Capacity and what is left, in bytes; ``None`` where the drive cannot tell."""

    capacity: int | None
    remaining: int | None


@dataclass(frozen=True)
class TapeStatus:
    loaded: bool
    write_protected: bool
    partition: int
    block: int
    early_warning: bool
    end_of_medium: bool
    partitions: tuple[PartitionSpace, ...]


@runtime_checkable
class TapeDevice(Protocol):
    """One drive with (at most) one cartridge. See the module docstring for semantics."""

    @property
    def loaded(self) -> bool: ...

    @property
    def barcode(self) -> str | None:
        """The cartridge's barcode as the drive or its memory knows it (None if unknown)."""
        ...

    @property
    def write_protected(self) -> bool: ...

    @property
    def partition_count(self) -> int: ...

    def load(self) -> None:
        """Thread the cartridge; position at partition 0, block 0."""
        ...

    def unload(self) -> None:
        """Rewind and unthread so a library can take the cartridge out."""
        ...

    def create_partitions(self, index_partition_bytes: int) -> None:
        """Split the medium in two (a small partition 0); destroys all data."""
        ...

    def position(self) -> TapePosition: ...

    def locate(self, partition: int, block: int) -> None:
        """Go to an object number; past end of data raises EndOfDataError (left at EOD)."""
        ...

    def set_partition(self, partition: int) -> None:
        """Go to the beginning of another partition."""
        ...

    def rewind(self) -> None:
        """Go to the beginning of the current partition."""
        ...

    def space_filemarks(self, count: int) -> None:
        """Cross ``count`` filemarks forwards (positive) or backwards (negative)."""
        ...

    def space_blocks(self, count: int) -> None:
        """Cross ``count`` records forwards (positive) or backwards (negative).

        A filemark met first ends the move (past it forwards, before it
        backwards) with StorageError ``filemark=True``; end of data raises
        EndOfDataError (left at end of data); the beginning of the partition
        raises StorageError (left there).
        """
        ...

    def seek_eod(self) -> None:
        """Go to end of data of the current partition (where the next write appends)."""
        ...

    def read_block(self, max_len: int) -> bytes:
        """Read one record; ``b""`` means a filemark was crossed."""
        ...

    def write_block(self, data: bytes | bytearray | memoryview) -> None:
        """Write one record; the caller's buffer may be reused once this returns."""
        ...

    def write_filemarks(self, count: int = 1) -> None: ...

    def status(self) -> TapeStatus: ...

    def read_attribute(self, attr_id: int, partition: int = 0) -> MamAttribute | None:
        """One MAM attribute, or None if the cartridge does not hold it."""
        ...

    def write_attribute(self, attribute: MamAttribute, partition: int = 0) -> None: ...
