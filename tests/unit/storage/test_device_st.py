"""LinuxTapeDevice against a fake kernel: request numbers, structs, call sequences, errors."""

from __future__ import annotations

import errno
import os

import pytest

from preservation.errors import MediaError, StorageError, TapeFullError
from preservation.storage import device as st
from preservation.storage.device import LinuxTapeDevice, SystemCalls
from preservation.storage.interfaces import EndOfDataError, MamAttribute, MamFormat, MamId
from preservation.storage.ltfs import LTFSVolume

from .fake_st import MTIOCGET, MTIOCPOS, MTIOCTOP, SG_IO, FakeStKernel


def drive(kernel: FakeStKernel) -> LinuxTapeDevice:
    calls = SystemCalls(kernel.open, kernel.close, kernel.read, kernel.write, kernel.ioctl)
    return LinuxTapeDevice("/dev/nst0", syscalls=calls)


def ops(kernel: FakeStKernel) -> list[tuple[object, ...]]:
    return [c for c in kernel.calls if c[0] not in ("MTIOCGET", "MTIOCPOS", "SG_IO")]


def test_request_numbers_and_struct_sizes_match_linux_headers() -> None:
    assert (st.MTIOCTOP, st.MTIOCGET, st.MTIOCPOS) == (MTIOCTOP, MTIOCGET, MTIOCPOS)
    assert (st.MTIOCTOP, st.MTIOCGET, st.MTIOCPOS) == (0x40086D01, 0x80306D02, 0x80086D03)
    assert st.SG_IO == SG_IO == 0x2285
    assert (st.MTOP.size, st.MTGET.size, st.MTPOS.size, st.SG_HDR.size) == (8, 48, 8, 88)
    assert (st.MTWEOF, st.MTFSF, st.MTBSF, st.MTEOM, st.MTSEEK, st.MTSETPART) == (
        5,
        1,
        2,
        12,
        22,
        33,
    )


def test_load_sets_variable_blocks_and_opens_read_write() -> None:
    kernel = FakeStKernel()
    dev = drive(kernel)
    dev.load()
    assert kernel.calls[0] == ("open", "/dev/nst0", os.O_RDWR)
    assert ops(kernel)[1:4] == [("MTLOAD", 1), ("MTSETBLK", 0), ("MTCOMPRESSION", 0)]
    assert kernel.blocksize_mode == 0 and dev.loaded
    dev.unload()
    assert ops(kernel)[-3:] == [("MTUNLOCK", 1), ("MTUNLOAD", 1), ("close", 7)]


def test_positioning_translates_to_mtops() -> None:
    kernel = FakeStKernel()
    dev = drive(kernel)
    dev.load()
    kernel.calls.clear()
    dev.locate(1, 0)
    dev.write_block(b"abc")
    dev.write_filemarks(2)
    dev.locate(1, 0)  # same partition: no MTSETPART
    dev.space_filemarks(2)
    dev.space_filemarks(-1)
    dev.seek_eod()
    dev.create_partitions(1_500_000)
    assert ops(kernel) == [
        ("MTSETPART", 1),
        ("MTSEEK", 0),
        ("MTWEOF", 2),
        ("MTSEEK", 0),
        ("MTFSF", 2),
        ("MTBSF", 1),
        ("MTEOM", 1),
        ("MTMKPART", -2),
    ]


def test_record_spacing_uses_mtfsr_and_mtbsr() -> None:
    kernel = FakeStKernel()
    dev = drive(kernel)
    dev.load()
    dev.locate(1, 0)
    for data in (b"a", b"b", b"c"):
        dev.write_block(data)
    dev.locate(1, 0)
    kernel.calls.clear()
    dev.space_blocks(2)
    dev.space_blocks(-1)
    dev.space_blocks(0)
    assert ops(kernel) == [("MTFSR", 2), ("MTBSR", 1)]
    assert dev.position().block == 1


def test_filemark_versus_end_of_data_on_read() -> None:
    kernel = FakeStKernel()
    dev = drive(kernel)
    dev.load()
    dev.locate(1, 0)
    dev.write_filemarks(1)
    dev.locate(1, 0)
    assert dev.read_block(10) == b""
    with pytest.raises(EndOfDataError):
        dev.read_block(10)


@pytest.mark.parametrize(
    ("code", "error"),
    [(errno.ENOSPC, TapeFullError), (errno.EIO, MediaError), (errno.EINVAL, StorageError)],
)
def test_write_errors_are_translated(code: int, error: type[Exception]) -> None:
    kernel = FakeStKernel()

    def failing_write(fd: int, data: object) -> int:
        raise OSError(code, os.strerror(code))

    dev = LinuxTapeDevice(
        syscalls=SystemCalls(kernel.open, kernel.close, kernel.read, failing_write, kernel.ioctl)
    )
    dev.load()
    with pytest.raises(error) as caught:
        dev.write_block(b"x")
    assert caught.value.context["errno"] == code  # type: ignore[attr-defined]


def test_short_write_is_end_of_medium() -> None:
    kernel = FakeStKernel()
    dev = LinuxTapeDevice(
        syscalls=SystemCalls(kernel.open, kernel.close, kernel.read, lambda fd, d: 3, kernel.ioctl)
    )
    dev.load()
    with pytest.raises(TapeFullError):
        dev.write_block(b"x" * 10)
    assert dev.status().end_of_medium


def test_write_protected_tape_opens_read_only() -> None:
    kernel = FakeStKernel(write_protected=True)
    dev = drive(kernel)
    dev.load()
    assert [c for c in kernel.calls if c[0] == "open"] == [
        ("open", "/dev/nst0", os.O_RDWR),
        ("open", "/dev/nst0", os.O_RDONLY),
    ]
    assert dev.write_protected


def test_mam_through_sg_io() -> None:
    kernel = FakeStKernel(capacity=64 << 20)
    dev = drive(kernel)
    dev.load()
    dev.write_attribute(MamAttribute(0x0803, MamFormat.TEXT, b"vol".ljust(160, b"\0")), 0)
    assert kernel.attrs[(0, 0x0803)][:5] == bytes.fromhex("08030200a0")
    got = dev.read_attribute(0x0803, 0)
    assert got is not None and got.text() == "vol"
    assert dev.read_attribute(0x0806) is None  # ILLEGAL REQUEST -> absent
    status = dev.status()
    assert status.partitions[1].capacity == 64 << 20
    assert ("SG_IO", 0x8C) in kernel.calls and ("SG_IO", 0x8D) in kernel.calls


def test_volume_lock_status_is_host_writable_through_sg_io() -> None:
    """0x1623 is outside the drive's own attributes: WRITE ATTRIBUTE must carry it as is."""
    kernel = FakeStKernel(capacity=64 << 20)
    dev = drive(kernel)
    LTFSVolume.format(dev, "LCK001").unmount()
    # The bytes the reference mkltfs left in tests/data/ltfs (attr_0_1623), and nowhere else.
    assert kernel.attrs[(0, MamId.VOLUME_LOCK_STATUS)] == bytes.fromhex("162300000100")
    assert (1, MamId.VOLUME_LOCK_STATUS) not in kernel.attrs
    lock = dev.read_attribute(MamId.VOLUME_LOCK_STATUS, 0)
    assert lock == MamAttribute(0x1623, MamFormat.BINARY, b"\x00")
