"""A library on read-only media: mounted and read without writing a byte, and probed for data.

The read-only library runs here on a writable folder on purpose: any write it
attempted would succeed and show in the snapshot, where read-only media would
only turn it into an error.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from preservation.errors import MediaError, StorageError, WriteProtectedError
from preservation.storage.clock import SimulatedClock
from preservation.storage.library import EmulatedLibrary, barcode_for
from preservation.storage.ltfs import LTFSVolume

MIB = 1 << 20
BARCODE = barcode_for("A", 1)


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            state[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, digest)
    return state


def _written_library(root: Path) -> tuple[str, bytes]:
    """A cartridge left as a crash leaves it: index partition stale, no end-of-data marker."""
    lib = EmulatedLibrary(root, drives=1, clock=SimulatedClock())
    lib.add_cartridge(BARCODE, capacity=32 * MIB, wraps=16)
    lib.add_cartridge(barcode_for("A", 2), capacity=32 * MIB, wraps=16)
    volume = LTFSVolume.format(lib.mount(BARCODE), BARCODE)
    data = os.urandom(3 * MIB)
    volume.write_file("/kept.bin", [data], size=len(data))
    volume.sync()
    lib.faults(BARCODE).power_loss_after = 2
    with pytest.raises(MediaError):
        volume.write_file("/lost.bin", [os.urandom(3 * MIB)], size=3 * MIB)
    uuid = volume.volume_uuid
    lib.close(unload=False)  # the process died with the cartridge in the drive
    return uuid, data


def test_a_read_only_library_reads_a_crashed_cartridge_and_writes_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "site-a"
    _uuid, data = _written_library(root)
    before = snapshot(root)

    lib = EmulatedLibrary(root, drives=1, clock=SimulatedClock(), read_only=True)
    device = lib.mount(BARCODE)
    assert device.write_protected
    volume = LTFSVolume.mount(device, BARCODE)
    assert volume.read_only and not volume.index_partition_current
    assert volume.read_bytes("/kept.bin") == data
    with pytest.raises(WriteProtectedError):
        volume.write_file("/new.bin", [b"x"], size=1)
    volume.unmount()  # a writable mount would write the index partition here
    lib.unmount(BARCODE)
    lib.close()
    assert snapshot(root) == before


def test_a_writable_mount_of_the_same_cartridge_would_write(tmp_path: Path) -> None:
    """The control: the crashed cartridge really does get written when it may be."""
    root = tmp_path / "site-a"
    _written_library(root)
    before = snapshot(root)
    lib = EmulatedLibrary(root, drives=1, clock=SimulatedClock())
    LTFSVolume.mount(lib.mount(BARCODE), BARCODE).unmount()
    lib.close()
    assert snapshot(root) != before


def test_recorded_volume_tells_blank_from_written_without_writing(tmp_path: Path) -> None:
    root = tmp_path / "site-a"
    uuid, _ = _written_library(root)
    lib = EmulatedLibrary(root, drives=1, clock=SimulatedClock())
    other = barcode_for("A", 3)
    lib.add_cartridge(other, capacity=32 * MIB, wraps=16)
    device = lib.mount(other)
    device.locate(1, 0)
    device.write_block(b"not an LTFS label")
    device.write_filemarks(1)
    lib.unmount(other)
    before = snapshot(root)
    assert lib.recorded_volume(BARCODE) == uuid
    assert lib.recorded_volume(barcode_for("A", 2)) is None
    assert lib.recorded_volume(other) == ""
    assert snapshot(root) == before
    assert lib.stats.mounts == 1  # the probe used no robot and no drive claim


def test_a_read_only_library_makes_no_folders_and_adds_no_cartridges(tmp_path: Path) -> None:
    root = tmp_path / "never-made"
    lib = EmulatedLibrary(root, read_only=True)
    assert lib.barcodes() == [] and not root.exists()
    with pytest.raises(StorageError, match="read-only"):
        lib.add_cartridge(BARCODE, capacity=32 * MIB)
    assert not root.exists()
