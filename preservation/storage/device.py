"""A real tape drive through the Linux ``st`` driver (``/dev/nstN``), for production.

Positioning and filemarks go through ``MTIOCTOP``/``MTIOCGET``/``MTIOCPOS``;
records are plain ``read``/``write`` calls in variable-block mode (one call, one
record, no compression). The medium auxiliary memory has no ``st`` ioctl, so
attributes are read and written with SCSI READ/WRITE ATTRIBUTE sent through
``SG_IO`` on the same file descriptor.

Every system call goes through a :class:`SystemCalls` object so tests can put
a fake tape behind the exact bytes this module sends to the kernel. The
structure layouts and request numbers are those of x86_64 Linux
(``<linux/mtio.h>``, ``<scsi/sg.h>``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from preservation.errors import (
    MediaError,
    StorageError,
    TapeFullError,
    WriteProtectedError,
)
from preservation.storage.interfaces import (
    EndOfDataError,
    MamAttribute,
    MamId,
    OversizeBlockError,
    PartitionSpace,
    TapePosition,
    TapeStatus,
)

__all__ = ["LinuxTapeDevice", "SystemCalls"]

# -- <asm-generic/ioctl.h> ---------------------------------------------------------------
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return (
        (direction << _IOC_DIRSHIFT)
        | (ord(kind) << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def _iow(kind: str, nr: int, size: int) -> int:
    return _ioc(_IOC_WRITE, kind, nr, size)


def _ior(kind: str, nr: int, size: int) -> int:
    return _ioc(_IOC_READ, kind, nr, size)


# -- <linux/mtio.h> ----------------------------------------------------------------------
MTOP = struct.Struct("@hi")  # short mt_op; int mt_count;
MTGET = struct.Struct("@lllllii")  # type, resid, dsreg, gstat, erreg, fileno, blkno
MTPOS = struct.Struct("@l")  # long mt_blkno;
MTIOCTOP = _iow("m", 1, MTOP.size)
MTIOCGET = _ior("m", 2, MTGET.size)
MTIOCPOS = _ior("m", 3, MTPOS.size)

MTFSF, MTBSF, MTFSR, MTBSR, MTWEOF, MTREW = 1, 2, 3, 4, 5, 6
MTEOM = 12
MTSETBLK = 20
MTSEEK = 22
MTSETDRVBUFFER = 24
MTLOCK, MTUNLOCK, MTLOAD, MTUNLOAD = 28, 29, 30, 31
MTCOMPRESSION = 32
MTSETPART, MTMKPART = 33, 34

GMT_EOF = 0x80000000
GMT_BOT = 0x40000000
GMT_EOT = 0x20000000
GMT_EOD = 0x08000000
GMT_WR_PROT = 0x04000000
GMT_ONLINE = 0x01000000

# -- <scsi/sg.h> ------------------------------------------------------------------------
SG_IO = 0x2285
SG_HDR = struct.Struct("@iiBBHIPPPIIiPBBBBHHiII0P")  # 0P: trailing pad, sizeof == 88
SG_DXFER_TO_DEV, SG_DXFER_FROM_DEV = -2, -3
_READ_ATTRIBUTE, _WRITE_ATTRIBUTE = 0x8C, 0x8D
_SENSE_ILLEGAL_REQUEST = 0x05
_SG_TIMEOUT_MS = 60_000


@dataclass
class SystemCalls:
    """The kernel as this module sees it; tests replace it with a fake tape."""

    open: Callable[[str, int], int] = os.open
    close: Callable[[int], None] = os.close
    read: Callable[[int, int], bytes] = os.read
    write: Callable[[int, Any], int] = os.write
    ioctl: Callable[..., Any] = fcntl.ioctl


class LinuxTapeDevice:
    """``TapeDevice`` over a non-rewinding ``st`` node such as ``/dev/nst0``."""

    def __init__(self, path: str = "/dev/nst0", *, syscalls: SystemCalls | None = None) -> None:
        self.path = path
        self.sys = syscalls or SystemCalls()
        self._fd: int | None = None
        self._read_only = False
        self._eom = False

    # -- plumbing -----------------------------------------------------------------------

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            self._fd = self.sys.open(self.path, os.O_RDWR)
            self._read_only = False
        except OSError as err:
            if err.errno not in (errno.EROFS, errno.EACCES):
                raise self._translate(err, "open") from err
            self._fd = self.sys.open(self.path, os.O_RDONLY)
            self._read_only = True
        return self._fd

    def _op(self, op: int, count: int = 1) -> None:
        fd = self._open()
        try:
            self.sys.ioctl(fd, MTIOCTOP, MTOP.pack(op, count))
        except OSError as err:
            raise self._translate(err, f"tape operation {op}") from err

    def _get(self) -> tuple[int, ...]:
        fd = self._open()
        buf = bytearray(MTGET.size)
        try:
            self.sys.ioctl(fd, MTIOCGET, buf, True)
        except OSError as err:
            raise self._translate(err, "status") from err
        return MTGET.unpack(buf)

    def _gstat(self) -> int:
        return self._get()[3] & 0xFFFFFFFF

    def _translate(self, err: OSError, what: str) -> StorageError:
        code = err.errno
        message = f"{self.path}: {what} failed: {os.strerror(code) if code else err}"
        if code == errno.ENOSPC:
            self._eom = True
            return TapeFullError(message, path=self.path, errno=code)
        if code in (errno.EROFS, errno.EACCES):
            return WriteProtectedError(message, path=self.path, errno=code)
        if code == errno.ENOMEM:
            return OversizeBlockError(message, path=self.path, errno=code)
        if code == errno.EIO and self._fd is not None:
            try:
                gstat = self._gstat()
            except StorageError:
                gstat = 0
            if gstat & GMT_EOD:
                return EndOfDataError(message, path=self.path, errno=code)
            if gstat & GMT_BOT and what in (f"tape operation {MTBSF}", f"tape operation {MTBSR}"):
                return StorageError(message + " (beginning of partition)", path=self.path)
            # Spacing records stops at a filemark with EIO: st flags it (GMT_EOF)
            # going forwards; going backwards, short of the beginning, nothing else stops it.
            if (what == f"tape operation {MTFSR}" and gstat & GMT_EOF) or (
                what == f"tape operation {MTBSR}"
            ):
                return StorageError(message + " (filemark)", path=self.path, filemark=True)
        if code in (errno.EIO, errno.ENXIO, errno.ENOMEDIUM):
            return MediaError(message, path=self.path, errno=code)
        return StorageError(message, path=self.path, errno=code)

    # -- TapeDevice -----------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        if self._fd is None:
            return False
        try:
            return bool(self._gstat() & GMT_ONLINE)
        except StorageError:
            return False

    @property
    def barcode(self) -> str | None:
        attribute = self._safe_attribute(MamId.BARCODE)
        return attribute.text() or None if attribute else None

    @property
    def write_protected(self) -> bool:
        self._open()
        return self._read_only or bool(self._gstat() & GMT_WR_PROT)

    @property
    def partition_count(self) -> int:
        return 2 if self._safe_attribute(MamId.MAXIMUM_CAPACITY, 1) is not None else 1

    def load(self) -> None:
        self._op(MTLOAD)
        self._op(MTSETBLK, 0)  # variable block mode: one write is one record
        for op, count in ((MTCOMPRESSION, 0), (MTLOCK, 1)):
            try:  # volumes here are uncompressed; a drive without compression is fine too
                self._op(op, count)
            except StorageError as err:
                if isinstance(err, MediaError):
                    raise
        self._eom = False

    def unload(self) -> None:
        if self._fd is None:
            return
        self._op(MTUNLOCK)
        self._op(MTUNLOAD)
        fd, self._fd = self._fd, None
        self.sys.close(fd)

    def create_partitions(self, index_partition_bytes: int) -> None:
        # st: a negative count gives the size of partition 0 in MB; the rest is partition 1.
        megabytes = max(1, -(-index_partition_bytes // 10**6))
        self._op(MTMKPART, -megabytes)

    def position(self) -> TapePosition:
        fd = self._open()
        buf = bytearray(MTPOS.size)
        try:
            self.sys.ioctl(fd, MTIOCPOS, buf, True)
        except OSError as err:
            raise self._translate(err, "position") from err
        (block,) = MTPOS.unpack(buf)
        return TapePosition(self._get()[1], block)

    def locate(self, partition: int, block: int) -> None:
        if self._get()[1] != partition:
            self._op(MTSETPART, partition)
        self._op(MTSEEK, block)

    def set_partition(self, partition: int) -> None:
        self.locate(partition, 0)

    def rewind(self) -> None:
        self._op(MTSEEK, 0)  # REWIND would leave the current partition on some drives

    def space_filemarks(self, count: int) -> None:
        if count > 0:
            self._op(MTFSF, count)
        elif count < 0:
            self._op(MTBSF, -count)

    def space_blocks(self, count: int) -> None:
        if count > 0:
            self._op(MTFSR, count)
        elif count < 0:
            self._op(MTBSR, -count)

    def seek_eod(self) -> None:
        self._op(MTEOM)

    def read_block(self, max_len: int) -> bytes:
        fd = self._open()
        try:
            data = self.sys.read(fd, max_len)
        except OSError as err:
            raise self._translate(err, "read") from err
        if not data and self._gstat() & GMT_EOD:
            raise EndOfDataError(f"{self.path}: end of data", path=self.path)
        return data

    def write_block(self, data: bytes | bytearray | memoryview) -> None:
        fd = self._open()
        size = memoryview(data).nbytes
        try:
            written = self.sys.write(fd, data)
        except OSError as err:
            raise self._translate(err, "write") from err
        if written != size:
            self._eom = True
            raise TapeFullError(
                f"{self.path}: end of medium, record cut to {written} of {size} bytes",
                path=self.path,
            )

    def write_filemarks(self, count: int = 1) -> None:
        self._op(MTWEOF, count)

    def status(self) -> TapeStatus:
        _, partition, _, gstat, _, _, _ = self._get()
        position = self.position()
        spaces = []
        for number in range(self.partition_count):
            capacity = self._safe_attribute(MamId.MAXIMUM_CAPACITY, number)
            remaining = self._safe_attribute(MamId.REMAINING_CAPACITY, number)
            spaces.append(
                PartitionSpace(
                    int.from_bytes(capacity.value, "big") << 20 if capacity else None,
                    int.from_bytes(remaining.value, "big") << 20 if remaining else None,
                )
            )
        gstat &= 0xFFFFFFFF
        return TapeStatus(
            loaded=bool(gstat & GMT_ONLINE),
            write_protected=self._read_only or bool(gstat & GMT_WR_PROT),
            partition=partition,
            block=position.block,
            early_warning=bool(gstat & GMT_EOT),
            end_of_medium=self._eom,
            partitions=tuple(spaces),
        )

    def read_attribute(self, attr_id: int, partition: int = 0) -> MamAttribute | None:
        allocation = 4 + 5 + 4096
        cdb = bytearray(16)
        cdb[0] = _READ_ATTRIBUTE
        cdb[7] = partition
        cdb[8:10] = attr_id.to_bytes(2, "big")
        cdb[10:14] = allocation.to_bytes(4, "big")
        data = self._scsi(bytes(cdb), SG_DXFER_FROM_DEV, bytearray(allocation))
        if data is None:
            return None
        available = int.from_bytes(data[0:4], "big")
        offset, end = 4, min(4 + available, len(data))
        while offset + 5 <= end:
            attribute = MamAttribute.decode(bytes(data[offset:end]))
            if attribute.id == attr_id:
                return attribute
            offset += 5 + len(attribute.value)
        return None

    def write_attribute(self, attribute: MamAttribute, partition: int = 0) -> None:
        encoded = attribute.encode()
        payload = bytearray(len(encoded).to_bytes(4, "big") + encoded)
        cdb = bytearray(16)
        cdb[0] = _WRITE_ATTRIBUTE
        cdb[1] = 0x01  # write-through: in cartridge memory before we go on
        cdb[7] = partition
        cdb[10:14] = len(payload).to_bytes(4, "big")
        if self._scsi(bytes(cdb), SG_DXFER_TO_DEV, payload) is None:
            raise StorageError(
                f"{self.path}: the drive refused MAM attribute {attribute.id:#06x}", path=self.path
            )

    # -- SG_IO ----------------------------------------------------------------------------

    def _safe_attribute(self, attr_id: int, partition: int = 0) -> MamAttribute | None:
        try:
            return self.read_attribute(attr_id, partition)
        except StorageError:
            return None

    def _scsi(self, cdb: bytes, direction: int, buffer: bytearray) -> bytearray | None:
        """Send one CDB; None for ILLEGAL REQUEST (no such attribute), raise on other failures."""
        fd = self._open()
        cdb_buf = ctypes.create_string_buffer(cdb, len(cdb))
        data_buf = (ctypes.c_char * len(buffer)).from_buffer(buffer)
        sense = ctypes.create_string_buffer(32)
        header = bytearray(
            SG_HDR.pack(
                ord("S"),
                direction,
                len(cdb),
                len(sense),
                0,
                len(buffer),
                ctypes.addressof(data_buf),
                ctypes.addressof(cdb_buf),
                ctypes.addressof(sense),
                _SG_TIMEOUT_MS,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            )
        )
        try:
            self.sys.ioctl(fd, SG_IO, header, True)
        except OSError as err:
            raise self._translate(err, "SCSI command") from err
        fields = SG_HDR.unpack(header)
        status, host_status, driver_status = fields[13], fields[17], fields[18]
        sense_len = fields[16]
        del data_buf  # release the export so ``buffer`` may be resized by the caller
        if status == 0 and host_status == 0 and (driver_status & 0x0F) == 0:
            return buffer
        raw_sense = sense.raw[:sense_len]
        key = _sense_key(raw_sense)
        if key == _SENSE_ILLEGAL_REQUEST:
            return None
        if key == 0x07:
            raise WriteProtectedError(f"{self.path}: data protect", path=self.path)
        raise MediaError(
            f"{self.path}: SCSI command {cdb[0]:#04x} failed (status {status:#04x}, "
            f"sense key {key})",
            path=self.path,
        )


def _sense_key(sense: bytes) -> int | None:
    if len(sense) < 3:
        return None
    code = sense[0] & 0x7F
    if code in (0x72, 0x73):  # descriptor format
        return sense[1] & 0x0F
    return sense[2] & 0x0F
