"""The emulated tape library: slots, drives, robot time, cross-process claims, faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from preservation.errors import DeviceBusyError, MediaError, NotFoundError
from preservation.storage.clock import SimulatedClock
from preservation.storage.interfaces import TapeDevice
from preservation.storage.library import EmulatedLibrary, TapeLibrary, barcode_for
from preservation.storage.ltfs import LTFSVolume

MIB = 1 << 20


def _library(root: Path, drives: int = 2, carts: int = 3) -> EmulatedLibrary:
    lib = EmulatedLibrary(root, drives=drives, clock=SimulatedClock(), move_seconds=10.0)
    for n in range(1, carts + 1):
        lib.add_cartridge(barcode_for("A", n), capacity=32 * MIB, wraps=16)
    return lib


def test_barcodes() -> None:
    assert barcode_for("a", 1) == "A00001L9"
    assert barcode_for("B", 12345, "L8") == "B12345L8"
    with pytest.raises(ValueError):
        barcode_for("AB", 1)


def test_is_a_tape_library_with_slots_and_drives(tmp_path: Path) -> None:
    lib = _library(tmp_path / "site-a")
    assert isinstance(lib, TapeLibrary)
    assert lib.barcodes() == ["A00001L9", "A00002L9", "A00003L9"]
    assert not lib.add_cartridge("A00001L9", capacity=MIB)  # idempotent
    device = lib.mount("A00002L9")
    assert isinstance(device, TapeDevice) and device.loaded
    assert lib.mount("A00002L9") is device  # already there: no second mount
    assert [s.barcode for s in lib.slots()] == ["A00001L9", None, "A00003L9"]
    assert [d.barcode for d in lib.drives()] == ["A00002L9", None]
    lib.unmount("A00002L9")
    assert [s.barcode for s in lib.slots()] == ["A00001L9", "A00002L9", "A00003L9"]
    assert (lib.stats.mounts, lib.stats.unmounts, lib.stats.moves) == (1, 1, 2)


def test_robot_and_drive_time_go_to_the_simulated_clock(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    lib.mount("A00001L9")
    after_mount = lib.clock.now()
    assert after_mount == pytest.approx(10.0 + 16.0)  # one move + LTO-9 load
    lib.unmount("A00001L9")
    assert lib.clock.now() - after_mount == pytest.approx(56.0 + 10.0)


def test_drives_run_out_and_are_shared_between_processes(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    one = _library(root, drives=1)
    other = EmulatedLibrary(root, drives=1)  # a second worker process on the same library
    one.mount("A00001L9")
    with pytest.raises(DeviceBusyError):
        one.mount("A00002L9")
    with pytest.raises(DeviceBusyError):
        other.mount("A00003L9")  # the only drive is taken by the first worker
    one.unmount("A00001L9")
    other.mount("A00001L9")
    with pytest.raises(DeviceBusyError):
        EmulatedLibrary(root, drives=2).mount("A00001L9")  # the cartridge itself is out
    other.close(unload=False)  # a killed process: the OS drops its claims
    one.mount("A00001L9")


def test_unknown_cartridge(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        _library(tmp_path / "lib").mount("A00009L9")


def test_faults_travel_with_the_cartridge(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    lib.faults("A00001L9").unreadable = True
    with pytest.raises(MediaError):
        lib.mount("A00001L9")
    assert lib.stats.failed_loads == 1 and lib.drives()[0].barcode is None
    lib.mount("A00002L9")  # the drive is fine; the other cartridge loads


def test_cartridge_keeps_its_data_across_mounts(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    volume = LTFSVolume.format(lib.mount("A00001L9"), "A00001L9")
    volume.write_file("/t/x/v1.tar", b"archive" * 1000)
    volume.unmount()
    lib.unmount("A00001L9")
    again = LTFSVolume.mount(lib.mount("A00001L9"), "A00001L9")
    assert again.read_bytes("/t/x/v1.tar") == b"archive" * 1000


def test_a_dead_drive_still_gives_its_cartridge_back(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    device = lib.mount("A00001L9")
    lib.faults("A00001L9").power_loss_after = 0
    with pytest.raises(MediaError):
        device.write_block(b"x")
    lib.unmount("A00001L9")
    lib.faults("A00001L9").power_loss_after = None
    assert lib.mount("A00001L9").loaded
