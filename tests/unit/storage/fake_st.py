"""A fake Linux kernel with an ``st`` tape behind it, for LinuxTapeDevice tests.

It decodes exactly the bytes LinuxTapeDevice hands to ``ioctl`` (mtop, mtget,
mtpos, sg_io_hdr + CDB), so request numbers and struct layouts are tested
against the x86_64 header values, and it simulates positions, filemarks, end
of data, early warning, write protection and MAM as ``st`` reports them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

from preservation.storage import device as st

FM = None  # a filemark in the object list

# Header values from <linux/mtio.h> and <scsi/sg.h> on x86_64, written out by hand
# so the module under test cannot agree with itself by accident.
MTIOCTOP = 0x40086D01
MTIOCGET = 0x80306D02
MTIOCPOS = 0x80086D03
SG_IO = 0x2285
OPS = {
    1: "MTFSF",
    2: "MTBSF",
    3: "MTFSR",
    4: "MTBSR",
    5: "MTWEOF",
    6: "MTREW",
    12: "MTEOM",
    20: "MTSETBLK",
    22: "MTSEEK",
    24: "MTSETDRVBUFFER",
    28: "MTLOCK",
    29: "MTUNLOCK",
    30: "MTLOAD",
    31: "MTUNLOAD",
    32: "MTCOMPRESSION",
    33: "MTSETPART",
    34: "MTMKPART",
}


class FakeStKernel:
    """Implements the SystemCalls surface over an in-memory two-partition tape."""

    def __init__(
        self,
        capacity: int = 64 << 20,
        *,
        early_warning: int = 1 << 20,
        write_protected: bool = False,
    ) -> None:
        self.capacity = capacity
        self.early_warning = early_warning
        self.write_protected = write_protected
        self.parts: list[list[bytes | None]] = [[], []]
        self.part = 0
        self.pos = 0
        self.loaded = False
        self.calls: list[tuple[Any, ...]] = []
        self.attrs: dict[tuple[int, int], bytes] = {}
        self.eod_hit = False
        self.blocksize_mode: int | None = None
        self.vcr = 0
        self._written = False

    # -- SystemCalls surface ----------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        self.calls.append(("open", path, flags))
        if self.write_protected and flags & os.O_RDWR:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return 7

    def close(self, fd: int) -> None:
        self.calls.append(("close", fd))

    def read(self, fd: int, n: int) -> bytes:
        objs = self.parts[self.part]
        if self.pos >= len(objs):
            if self.eod_hit:
                raise OSError(errno.EIO, "blank check")
            self.eod_hit = True
            return b""
        obj = objs[self.pos]
        self.pos += 1
        self.eod_hit = False
        if obj is FM:
            return b""
        if len(obj) > n:
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
        return obj

    def write(self, fd: int, data: Any) -> int:
        if self.write_protected:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        raw = bytes(data)
        self._append(raw)
        return len(raw)

    def ioctl(self, fd: int, request: int, arg: Any, mutate: bool = True) -> int:
        if request == MTIOCTOP:
            op, count = struct.unpack("@hi", bytes(arg))
            self.calls.append((OPS.get(op, op), count))
            self._mtop(op, count)
        elif request == MTIOCGET:
            self.calls.append(("MTIOCGET",))
            arg[:] = struct.pack("@lllllii", 0x72, self.part, 0, self._gstat(), 0, -1, self.pos)
        elif request == MTIOCPOS:
            self.calls.append(("MTIOCPOS",))
            arg[:] = struct.pack("@l", self.pos)
        elif request == SG_IO:
            self._sg_io(arg)
        else:
            raise OSError(errno.ENOTTY, "unknown ioctl")
        return 0

    # -- tape model -------------------------------------------------------------------

    def used(self, part: int) -> int:
        return sum(len(o) for o in self.parts[part] if o is not None)

    def _append(self, obj: bytes | None) -> None:
        objs = self.parts[self.part]
        size = len(obj) if obj else 0
        before = sum(len(o) for o in objs[: self.pos] if o is not None)
        if before + size > self.capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if not self._written:
            self.vcr += 1
            self._written = True
        del objs[self.pos :]
        objs.append(obj)
        self.pos += 1
        self.eod_hit = False

    def _gstat(self) -> int:
        g = 0
        if self.loaded:
            g |= st.GMT_ONLINE
        objs = self.parts[self.part]
        if self.pos == 0:
            g |= st.GMT_BOT
        if self.eod_hit:  # st reports EOD for the operation that met it, not for any position
            g |= st.GMT_EOD
        elif self.pos > 0 and objs[self.pos - 1] is FM:
            g |= st.GMT_EOF
        if self.write_protected:
            g |= st.GMT_WR_PROT
        used = sum(len(o) for o in objs[: self.pos] if o is not None)
        if used >= self.capacity - self.early_warning:
            g |= st.GMT_EOT
        return g

    def _mtop(self, op: int, count: int) -> None:
        objs = self.parts[self.part]
        self.eod_hit = False
        if op == 30:
            self.loaded, self.part, self.pos, self._written = True, 0, 0, False
        elif op == 31:
            self.loaded, self.part, self.pos = False, 0, 0
        elif op in (20, 28, 29, 32, 24):
            if op == 20:
                self.blocksize_mode = count
        elif op == 34:
            self.parts = [[], []]
            self.pos = 0
        elif op == 33:
            if count not in (0, 1):
                raise OSError(errno.EIO, "no such partition")
            self.part, self.pos = count, 0
        elif op == 22:
            if count > len(objs):
                self.pos = len(objs)
                self.eod_hit = True
                raise OSError(errno.EIO, "blank check")
            self.pos = count
        elif op == 6:
            self.pos = 0
        elif op == 12:
            self.pos = len(objs)
            self.eod_hit = True
        elif op == 5:
            if self.write_protected:
                raise OSError(errno.EROFS, "write protected")
            for _ in range(count):
                self._append(FM)
        elif op == 1:
            for _ in range(count):
                while True:
                    if self.pos >= len(objs):
                        self.eod_hit = True
                        raise OSError(errno.EIO, "end of data")
                    self.pos += 1
                    if objs[self.pos - 1] is FM:
                        break
        elif op == 3:  # MTFSR: stops past a filemark, with EIO (sense FILEMARK)
            for _ in range(count):
                if self.pos >= len(objs):
                    self.eod_hit = True
                    raise OSError(errno.EIO, "end of data")
                self.pos += 1
                if objs[self.pos - 1] is FM:
                    raise OSError(errno.EIO, "filemark")
        elif op == 4:  # MTBSR: stops before a filemark (its BOT side), with EIO
            for _ in range(count):
                if self.pos <= 0:
                    raise OSError(errno.EIO, "beginning of partition")
                self.pos -= 1
                if objs[self.pos] is FM:
                    raise OSError(errno.EIO, "filemark")
        elif op == 2:
            for _ in range(count):
                while True:
                    if self.pos <= 0:
                        raise OSError(errno.EIO, "beginning of partition")
                    self.pos -= 1
                    if objs[self.pos] is FM:
                        break
        else:
            raise OSError(errno.EINVAL, f"op {op} not simulated")

    def _sg_io(self, arg: bytearray) -> None:
        fields = list(st.SG_HDR.unpack(arg))
        assert len(arg) == 88 and fields[0] == ord("S")
        direction, cmd_len, mx_sb_len, dxfer_len, dxferp, cmdp, sbp = (
            fields[1],
            fields[2],
            fields[3],
            fields[5],
            fields[6],
            fields[7],
            fields[8],
        )
        cdb = ctypes.string_at(cmdp, cmd_len)
        self.calls.append(("SG_IO", cdb[0]))
        partition = cdb[7]
        ok = True
        if cdb[0] == 0x8C:
            assert direction == st.SG_DXFER_FROM_DEV
            attr_id = int.from_bytes(cdb[8:10], "big")
            value = self._attr(partition, attr_id)
            if value is None:
                ok = False
            else:
                body = value[: dxfer_len - 4]
                reply = len(value).to_bytes(4, "big") + body
                ctypes.memmove(dxferp, reply, len(reply))
        elif cdb[0] == 0x8D:
            assert direction == st.SG_DXFER_TO_DEV
            data = ctypes.string_at(dxferp, dxfer_len)
            length = int.from_bytes(data[:4], "big")
            raw = data[4 : 4 + length]
            attr_id = int.from_bytes(raw[0:2], "big")
            if self.write_protected:
                ok = False
            else:
                self.attrs[(partition, attr_id)] = raw
        else:
            ok = False
        if ok:
            fields[13] = 0
            fields[16] = 0
        else:
            key = 0x07 if self.write_protected and cdb[0] == 0x8D else 0x05
            sense = bytes([0x70, 0, key]) + bytes(15)
            ctypes.memmove(sbp, sense, min(len(sense), mx_sb_len))
            fields[13] = 0x02  # CHECK CONDITION
            fields[16] = min(len(sense), mx_sb_len)
        arg[:] = st.SG_HDR.pack(*fields)

    def _attr(self, partition: int, attr_id: int) -> bytes | None:
        if partition > 1:
            return None
        if attr_id in (0x0000, 0x0001):
            mib = (self.capacity - (self.used(partition) if attr_id == 0 else 0)) >> 20
            return attr_id.to_bytes(2, "big") + b"\x00\x00\x08" + mib.to_bytes(8, "big")
        if attr_id == 0x0009:
            return b"\x00\x09\x00\x00\x04" + self.vcr.to_bytes(4, "big")
        return self.attrs.get((partition, attr_id))
