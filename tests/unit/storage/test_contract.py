"""One contract for every TapeDevice: the emulator and the st backend over a fake kernel.

LTFS is written against the Protocol, so each implementation must give the
same answers to the same sequence of tape operations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from preservation.errors import MediaError, StorageError, TapeFullError, WriteProtectedError
from preservation.storage.device import LinuxTapeDevice, SystemCalls
from preservation.storage.emulator import EmulatedCartridge, EmulatedTapeDevice
from preservation.storage.interfaces import (
    EndOfDataError,
    MamAttribute,
    MamFormat,
    OversizeBlockError,
    TapeDevice,
    TapePosition,
)
from preservation.storage.ltfs import LTFSVolume

from .fake_st import FakeStKernel

MIB = 1 << 20
Factory = Callable[..., TapeDevice]


def _emulated(tmp_path: Path) -> Factory:
    def make(capacity: int = 16 * MIB, write_protected: bool = False) -> TapeDevice:
        cart = EmulatedCartridge.create(
            tmp_path / f"C{len(list(tmp_path.iterdir())):05d}",
            capacity=2 * capacity,
            wraps=4,
            write_protected=write_protected,
        )
        dev = EmulatedTapeDevice(cart, early_warning_bytes=MIB)
        dev.load()
        return dev

    return make


def _linux(tmp_path: Path) -> Factory:
    def make(capacity: int = 16 * MIB, write_protected: bool = False) -> TapeDevice:
        kernel = FakeStKernel(capacity, early_warning=MIB, write_protected=write_protected)
        dev = LinuxTapeDevice(
            "/dev/nst0",
            syscalls=SystemCalls(
                open=kernel.open,
                close=kernel.close,
                read=kernel.read,
                write=kernel.write,
                ioctl=kernel.ioctl,
            ),
        )
        dev.load()
        return dev

    return make


@pytest.fixture(params=["emulator", "linux-st"])
def make_device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    yield _emulated(tmp_path) if request.param == "emulator" else _linux(tmp_path)


def _write_sample(dev: TapeDevice) -> None:
    dev.locate(1, 0)
    dev.write_block(b"a" * 10)  # 0
    dev.write_block(b"b" * 20)  # 1
    dev.write_filemarks(1)  # 2
    dev.write_block(b"c" * 30)  # 3
    dev.write_filemarks(2)  # 4, 5
    dev.write_block(b"d")  # 6


def test_is_a_tape_device(make_device: Factory) -> None:
    dev = make_device()
    assert isinstance(dev, TapeDevice)
    assert dev.loaded and dev.partition_count == 2 and not dev.write_protected


def test_records_filemarks_and_end_of_data(make_device: Factory) -> None:
    dev = make_device()
    _write_sample(dev)
    assert dev.position() == TapePosition(1, 7)
    dev.rewind()
    assert dev.position() == TapePosition(1, 0)
    got = [dev.read_block(1024) for _ in range(7)]
    assert got == [b"a" * 10, b"b" * 20, b"", b"c" * 30, b"", b"", b"d"]
    with pytest.raises(EndOfDataError):
        dev.read_block(1024)


def test_space_filemarks_both_ways(make_device: Factory) -> None:
    dev = make_device()
    _write_sample(dev)
    dev.seek_eod()
    assert dev.position().block == 7
    dev.space_filemarks(-2)
    assert dev.position().block == 4  # before the filemark crossed last
    dev.space_filemarks(1)
    assert dev.position().block == 5
    dev.locate(1, 0)
    dev.space_filemarks(1)
    assert dev.read_block(1024) == b"c" * 30
    with pytest.raises(EndOfDataError):
        dev.space_filemarks(5)


def test_space_blocks_both_ways_stopping_at_filemarks(make_device: Factory) -> None:
    dev = make_device()
    _write_sample(dev)  # a b FM c FM FM d, end of data at 7
    dev.locate(1, 0)
    dev.space_blocks(1)
    assert dev.read_block(1024) == b"b" * 20
    dev.space_blocks(-2)
    assert dev.position() == TapePosition(1, 0)
    dev.space_blocks(0)
    assert dev.position() == TapePosition(1, 0)

    with pytest.raises(StorageError) as forwards:
        dev.space_blocks(3)  # a, b, then the filemark at 2
    assert forwards.value.context.get("filemark") is True
    assert not isinstance(forwards.value, MediaError | EndOfDataError)
    assert dev.position() == TapePosition(1, 3)  # just past it
    assert dev.read_block(1024) == b"c" * 30

    dev.locate(1, 4)
    with pytest.raises(StorageError) as backwards:
        dev.space_blocks(-2)  # c, then the filemark at 2
    assert backwards.value.context.get("filemark") is True
    assert dev.position() == TapePosition(1, 2)  # just before it
    assert dev.read_block(1024) == b""

    dev.locate(1, 6)
    with pytest.raises(EndOfDataError):
        dev.space_blocks(2)
    assert dev.position() == TapePosition(1, 7)
    dev.locate(1, 1)
    with pytest.raises(StorageError) as start:
        dev.space_blocks(-2)
    assert not start.value.context.get("filemark")
    assert dev.position() == TapePosition(1, 0)


def test_write_in_the_middle_is_the_new_end_of_data(make_device: Factory) -> None:
    dev = make_device()
    _write_sample(dev)
    dev.locate(1, 3)
    dev.write_block(b"new")
    dev.locate(1, 3)
    assert dev.read_block(100) == b"new"
    with pytest.raises(EndOfDataError):
        dev.read_block(100)
    with pytest.raises(EndOfDataError):
        dev.locate(1, 6)


def test_partitions_are_independent(make_device: Factory) -> None:
    dev = make_device()
    _write_sample(dev)
    dev.locate(0, 0)
    dev.write_block(b"index partition")
    dev.locate(1, 0)
    assert dev.read_block(100) == b"a" * 10
    dev.set_partition(0)
    assert dev.position() == TapePosition(0, 0)
    assert dev.read_block(100) == b"index partition"


def test_oversize_record_fails_like_a_drive(make_device: Factory) -> None:
    dev = make_device()
    _write_sample(dev)
    dev.locate(1, 1)
    with pytest.raises(OversizeBlockError):
        dev.read_block(5)
    assert dev.read_block(100) == b""  # the record was consumed; next comes the filemark


def test_mam_attributes_round_trip(make_device: Factory) -> None:
    dev = make_device()
    attribute = MamAttribute(0x0806, MamFormat.ASCII, b"ABC123".ljust(32))
    dev.write_attribute(attribute, 0)
    assert dev.read_attribute(0x0806, 0) == attribute
    assert dev.barcode == "ABC123"
    assert dev.read_attribute(0x0808, 0) is None
    capacity = dev.status().partitions[1].capacity
    assert capacity is not None and capacity >= 16 * MIB


def test_early_warning_then_end_of_medium(make_device: Factory) -> None:
    dev = make_device(capacity=4 * MIB)
    dev.locate(1, 0)
    block = bytes(512 * 1024)
    written = 0
    with pytest.raises(TapeFullError):
        while True:
            dev.write_block(block)
            written += 1
            if written == 5:
                assert not dev.status().early_warning
    assert dev.status().early_warning
    assert written == 8  # 4 MiB of 512 KiB records: the ninth does not fit
    assert dev.status().end_of_medium


def test_write_protected_cartridge_refuses_writes(make_device: Factory) -> None:
    dev = make_device(write_protected=True)
    assert dev.write_protected
    with pytest.raises(WriteProtectedError):
        dev.write_block(b"x")
    with pytest.raises(WriteProtectedError):
        dev.write_filemarks(1)


def test_ltfs_round_trip_on_every_device(make_device: Factory) -> None:
    dev = make_device()
    vol = LTFSVolume.format(dev, "CON001")
    entry = vol.write_file("/t/a/v1.tar", b"x" * 700_000)
    vol.unmount()
    again = LTFSVolume.mount(dev, "CON001")
    assert again.stat("/t/a/v1.tar") == entry
    assert again.read_bytes("/t/a/v1.tar") == b"x" * 700_000
