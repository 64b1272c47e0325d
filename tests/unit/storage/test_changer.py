"""Real libraries: mtx status of several vendors, the mtx runner, ScsiLibrary end to end.

The robot is a fake ``mtx`` program first on PATH (a subprocess, as in
production), the drives are ``LinuxTapeDevice`` objects over the fake ``st``
kernel, so everything from the command line mtx gets to the ioctl bytes the
drives get is the production code's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from preservation.errors import (
    ConfigurationError,
    DeviceBusyError,
    NotFoundError,
    SiteUnavailableError,
    StorageError,
)
from preservation.storage.changer import (
    ChangerStatus,
    DriveElement,
    MtxChanger,
    MtxResult,
    ScsiLibrary,
    StorageElement,
    parse_status,
    run_mtx,
)
from preservation.storage.interfaces import TapeDevice
from preservation.storage.library import SlotInfo, TapeLibrary
from preservation.storage.ltfs import LTFSVolume

from .fake_mtx import DriveBays, FakeLibrary, install

DATA = Path(__file__).resolve().parents[2] / "data" / "mtx"
MIB = 1 << 20


def _read(name: str) -> ChangerStatus:
    return parse_status((DATA / name).read_text(encoding="utf-8"), "/dev/sgX")


# -- parsing ------------------------------------------------------------------------------------


def test_ibm_ts4300_with_barcodes_cleaning_cartridge_and_ie_slots() -> None:
    status = _read("ibm-ts4300.txt")
    assert status.device == "/dev/sg3"
    assert status.drives == (
        DriveElement(0, True, "A00004L9", None, 4),
        DriveElement(1, False),
    )
    expected = []
    for n in range(1, 31):
        if n == 4 or n >= 20:
            expected.append(StorageElement(n, False))
        elif n == 10:
            expected.append(StorageElement(n, True, "CLN001L1"))
        else:
            expected.append(StorageElement(n, True, f"A{n:05d}L9"))
    expected += [
        StorageElement(31, True, "A00031L9", None, True),
        StorageElement(32, False, None, None, True),
        StorageElement(33, False, None, None, True),
    ]
    assert status.slots == tuple(expected)
    assert [s.number for s in status.ie_slots] == [31, 32, 33]
    assert len(status.storage_slots) == 30
    assert status.reserved_slots() == {4}
    free = status.free_storage_slot()
    assert free is not None and free.number == 20  # slot 4 waits for its cartridge


def test_quantum_scalar_i3_with_a_drive_loaded_from_an_unknown_slot() -> None:
    status = _read("quantum-scalar-i3.txt")
    assert status.device == "/dev/sg5"
    assert status.drives == (
        DriveElement(0, True, "QTM002L8", None, 2),
        DriveElement(1, True, "QTM017L8", None, None),
    )
    full = {s.number: s.barcode for s in status.slots if s.full}
    assert full == {
        **{n: f"QTM{n:03d}L8" for n in range(1, 21) if n not in (2, 17, 18, 19, 20)},
        22: "QTM099L8",
    }
    assert [s.number for s in status.ie_slots] == [21, 22, 23, 24, 25]
    assert len(status.slots) == 25
    assert all(s.alternate is None for s in status.slots)


def test_hp_msl2024_without_import_export() -> None:
    status = _read("hp-msl2024.txt")
    assert status.drives == (DriveElement(0, False),)
    assert status.slots == tuple(
        StorageElement(n, n <= 12, f"HPA{n:03d}L7" if n <= 12 else None) for n in range(1, 25)
    )
    assert status.ie_slots == ()


def test_library_without_barcode_reader() -> None:
    status = _read("dell-tl1000-nobarcode.txt")
    assert status.drives == (DriveElement(0, True, None, None, 3),)
    assert status.slots == (
        StorageElement(1, True),
        StorageElement(2, True),
        StorageElement(3, False),
        StorageElement(4, False),
        StorageElement(5, True),
        StorageElement(6, False),
        StorageElement(7, False),
        StorageElement(8, False),
        StorageElement(9, True, None, None, True),
    )


def test_alternate_volume_tags_and_padding() -> None:
    status = _read("overland-neo-alternate.txt")
    assert status.drives == (DriveElement(0, True, "OVL001L6", "OVL001", 1),)
    assert status.slots == (
        StorageElement(1, False),
        *(StorageElement(n, True, f"OVL{n:03d}L6", f"OVL{n:03d}") for n in range(2, 6)),
        StorageElement(6, False),
        StorageElement(7, False),
        StorageElement(8, False, None, None, True),
    )


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        (
            "  Storage Changer /dev/sg3:1 Drives, 1 Slots ( 0 Import/Export )\n"
            "Data Transfer Element 0:Empty\n"
            "      Storage Element 1:Half full\n",
            "'      Storage Element 1:Half full'",
        ),
        (
            "  Storage Changer /dev/sg3:1 Drives, 1 Slots ( 0 Import/Export )\n"
            "Data Transfer Element 0:Full (Storage Element 1 Loaded) junk\n"
            "      Storage Element 1:Empty\n",
            "junk",
        ),
        ("\n", "no 'Storage Changer' header"),
        ("mtx: Request Sense: Long Report=yes\n", "line 1"),
        (
            "  Storage Changer /dev/sg3:2 Drives, 1 Slots ( 0 Import/Export )\n"
            "Data Transfer Element 0:Empty\n"
            "      Storage Element 1:Empty\n",
            "announces 2 drives",
        ),
    ],
)
def test_unreadable_status_names_the_changer_and_the_line(text: str, quoted: str) -> None:
    with pytest.raises(StorageError) as caught:
        parse_status(text, "/dev/sg9")
    assert "/dev/sg9" in str(caught.value) and quoted in str(caught.value)


# -- the mtx runner -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.txt")))
def test_recorded_outputs_replayed_through_the_fake_mtx_on_path(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each recorded status goes through a real subprocess, as the real tool's would."""
    expected = _read(name)
    state = tmp_path / "library.json"
    FakeLibrary.create(state, device=expected.device, slots=[])
    FakeLibrary(state).update(recorded=str(DATA / name))
    install(tmp_path / "bin", state, monkeypatch)
    assert MtxChanger(expected.device).status() == expected


def test_commands_and_errors_through_an_injected_runner() -> None:
    calls: list[tuple[list[str], float]] = []
    status_text = (DATA / "hp-msl2024.txt").read_text(encoding="utf-8")

    def runner(args: Sequence[str], timeout: float) -> MtxResult:
        calls.append((list(args), timeout))
        if args[2] == "unload":
            return MtxResult(1, "", "mtx: Storage Element 3 is Already Full\n")
        return MtxResult(0, status_text if args[2] == "status" else "", "")

    changer = MtxChanger("/dev/sg1", runner=runner, timeout=42.0)
    assert len(changer.status().slots) == 24
    changer.load(3, 0)
    changer.transfer(1, 24)
    changer.inventory()
    with pytest.raises(StorageError) as caught:
        changer.unload(3, 0)
    assert "/dev/sg1" in str(caught.value) and "Storage Element 3 is Already Full" in str(
        caught.value
    )
    assert calls == [
        (["-f", "/dev/sg1", "status"], 42.0),
        (["-f", "/dev/sg1", "load", "3", "0"], 42.0),
        (["-f", "/dev/sg1", "transfer", "1", "24"], 42.0),
        (["-f", "/dev/sg1", "inventory"], 42.0),
        (["-f", "/dev/sg1", "unload", "3", "0"], 42.0),
    ]


def test_mtx_missing_from_path_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="mtx is not on PATH"):
        run_mtx(["-f", "/dev/sg3", "status"], 5)


def test_mtx_that_hangs_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = tmp_path / "mtx"
    program.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n", encoding="utf-8")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StorageError, match=r"/dev/sg3: 'mtx -f /dev/sg3 status' did not finish"):
        MtxChanger("/dev/sg3", timeout=0.3).status()


# -- the fake library ---------------------------------------------------------------------------


BARCODES = ["B00001L9", "B00002L9", "B00003L9"]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLibrary:
    state = tmp_path / "library.json"
    library = FakeLibrary.create(
        state, drives=2, slots=[*BARCODES, None, "CLN001L1", None], ie_slots=["B00009L9", None]
    )
    install(tmp_path / "bin", state, monkeypatch)
    return library


@pytest.fixture
def bays(fake: FakeLibrary) -> DriveBays:
    return DriveBays(fake)


def _library(tmp_path: Path, bays: DriveBays, drives: int = 2) -> ScsiLibrary:
    return ScsiLibrary(
        MtxChanger("/dev/sg3"),
        [f"/dev/nst{n}" for n in range(drives)],
        name="site-b",
        state_dir=tmp_path / "tape" / "site-b",
        device_factory=bays.device,
    )


def test_fake_mtx_moves_and_refuses_like_mtx(fake: FakeLibrary) -> None:
    changer = MtxChanger("/dev/sg3")
    changer.load(2, 1)
    assert fake.drive(1) == "B00002L9" and fake.slot(2) is None
    status = changer.status()
    assert status.drives[1] == DriveElement(1, True, "B00002L9", None, 2)
    with pytest.raises(StorageError, match=r"exit 1\): mtx: Drive 1 Full \(Storage Element 2"):
        changer.load(1, 1)
    with pytest.raises(StorageError, match="source Element Address 4 is Empty"):
        changer.load(4, 0)
    with pytest.raises(StorageError, match="cannot open SCSI device '/dev/sg7'"):
        MtxChanger("/dev/sg7").status()
    changer.unload(2, 1)
    assert fake.slot(2) == "B00002L9"


def test_mount_write_read_unmount_through_mtx_and_st(tmp_path: Path, bays: DriveBays) -> None:
    library = _library(tmp_path, bays)
    assert isinstance(library, TapeLibrary)
    assert library.barcodes() == BARCODES  # no cleaning cartridge, nothing from the I/E slots
    assert library.slots() == [
        SlotInfo(1, "B00001L9"),
        SlotInfo(2, "B00002L9"),
        SlotInfo(3, "B00003L9"),
        SlotInfo(4, None),
        SlotInfo(5, "CLN001L1"),
        SlotInfo(6, None),
    ]
    data = os.urandom(3 * MIB + 17)
    device = library.mount("B00002L9")
    assert library.mount("B00002L9") is device
    assert bays.library.drive(0) == "B00002L9" and bays.library.slot(2) is None
    assert [d.barcode for d in library.drives()] == ["B00002L9", None]
    assert library.free_drives() == 1
    volume = LTFSVolume.format(device, "B00002L9")
    volume.write_file("/t1/aip/v1.tar", [data], size=len(data))
    volume.sync()
    library.flush("B00002L9")
    assert volume.read_bytes("/t1/aip/v1.tar") == data
    volume.unmount()
    library.unmount("B00002L9")
    assert bays.library.slot(2) == "B00002L9" and bays.library.drive(0) is None
    assert bays.tapes["B00002L9"].loaded is False  # rewound and ejected before the robot
    assert library.mounted() == {} and library.free_drives() == 2
    # Mounted again, in the other drive this time: the same bytes come back.
    busy = library.mount("B00001L9")
    again = LTFSVolume.mount(library.mount("B00002L9"), "B00002L9", read_only=True)
    assert again.read_bytes("/t1/aip/v1.tar") == data
    assert bays.library.drive(1) == "B00002L9"
    library.close()
    assert busy is not None and [bays.library.slot(n) for n in (1, 2)] == BARCODES[:2]
    assert bays.library.moves() == [
        ["load", "2", "0"],
        ["unload", "2", "0"],
        ["load", "1", "0"],
        ["load", "2", "1"],
        ["unload", "1", "0"],
        ["unload", "2", "1"],
    ]
    assert (library.stats.mounts, library.stats.unmounts, library.stats.moves) == (3, 3, 6)


def test_busy_drives_and_cartridges_between_processes(tmp_path: Path, bays: DriveBays) -> None:
    first = _library(tmp_path, bays, drives=1)
    other = _library(tmp_path, bays, drives=1)  # another worker process, same locks
    first.mount("B00001L9")
    with pytest.raises(DeviceBusyError, match="in use by another process"):
        other.mount("B00001L9")
    with pytest.raises(DeviceBusyError, match="every drive of library site-b is busy"):
        other.mount("B00002L9")
    assert other.free_drives() == 0
    assert bays.library.slot(2) == "B00002L9"  # nothing moved for the refused mount
    first.unmount("B00001L9")
    other.mount("B00002L9")
    other.close()
    with pytest.raises(NotFoundError, match="holds no cartridge B00077L9"):
        first.mount("B00077L9")
    with pytest.raises(NotFoundError, match="import/export slot 7.*import it first"):
        first.mount("B00009L9")


def test_a_cartridge_left_in_a_drive_by_a_dead_process(tmp_path: Path, bays: DriveBays) -> None:
    dead = _library(tmp_path, bays)
    dead.mount("B00001L9")
    dead.mount("B00002L9")
    dead.close(unload=False)  # what a killed worker leaves: cartridges in drives, no claims
    survivor = _library(tmp_path, bays)
    device = survivor.mount("B00002L9")  # used where it is: no robot move
    assert device.loaded and bays.library.drive(1) == "B00002L9"
    assert survivor.drives()[1].barcode == "B00002L9"
    survivor.mount("B00003L9")  # drive 0 holds B00001L9, nobody's: put back first
    assert bays.library.slot(1) == "B00001L9" and bays.library.drive(0) == "B00003L9"
    survivor.close()
    assert [bays.library.slot(n) for n in (1, 2, 3)] == BARCODES
    assert bays.library.moves() == [
        ["load", "1", "0"],
        ["load", "2", "1"],
        ["unload", "1", "0"],
        ["load", "3", "0"],
        ["unload", "2", "1"],
        ["unload", "3", "0"],
    ]


def test_import_and_export_through_the_mail_slot(tmp_path: Path, bays: DriveBays) -> None:
    library = _library(tmp_path, bays)
    library.mount("B00001L9")
    slot = library.import_cartridge("B00009L9")
    assert slot == 4  # slot 1 waits for the mounted cartridge; 4 is the first free one
    assert library.barcodes() == [*BARCODES, "B00009L9"]
    with pytest.raises(DeviceBusyError, match="mounted here"):
        library.export_cartridge("B00001L9")
    assert library.export_cartridge("B00003L9") == 7
    assert bays.library.slot(7) == "B00003L9" and bays.library.slot(3) is None
    assert library.export_cartridge("B00002L9") == 8
    with pytest.raises(StorageError, match="every import/export slot is full"):
        library.export_cartridge("B00009L9")
    with pytest.raises(NotFoundError, match="no import/export slot holds B00001L9"):
        library.import_cartridge("B00001L9")
    library.close()
    assert library.barcodes() == ["B00001L9", "B00009L9"]


def test_unverified_cartridge_is_checked_at_its_first_mount(
    tmp_path: Path, bays: DriveBays
) -> None:
    library = _library(tmp_path, bays)
    writer = library.mount("B00003L9")
    LTFSVolume.format(writer, "B00003L9").unmount()  # someone else's volume
    library.unmount("B00003L9")
    library.mark_unverified(["B00001L9", "B00003L9"])
    assert library.unverified() == ["B00001L9", "B00003L9"]
    with pytest.raises(StorageError, match="B00003L9 was taken as scratch.*holds data"):
        library.mount("B00003L9")
    assert bays.library.slot(3) == "B00003L9" and library.mounted() == {}
    assert library.free_drives() == 2
    device = library.mount("B00001L9")
    assert device.position().block == 0
    assert library.unverified() == ["B00003L9"]  # blank: the mark is gone
    library.close()


def test_a_failed_load_returns_the_cartridge_and_frees_the_drive(
    tmp_path: Path, bays: DriveBays
) -> None:
    library = _library(tmp_path, bays)
    bays.library.update(fail={"load": "mtx: MOVE MEDIUM from Element Address 4097 Failed"})
    # The robot's failure is the site's (transient), never counted against the cartridge.
    with pytest.raises(SiteUnavailableError, match="changer failed while mounting B00001L9.*MOVE"):
        library.mount("B00001L9")
    assert library.free_drives() == 2 and library.stats.failed_loads == 1
    bays.library.update(fail={"status": "mtx: cannot open SCSI device '/dev/sg3' - Device busy"})
    with pytest.raises(SiteUnavailableError, match="Device busy"):
        library.mount("B00001L9")
    bays.library.update(fail={})

    def broken(path: str) -> TapeDevice:
        device = bays.device(path)

        def no_load() -> None:
            raise StorageError(f"{path}: tape operation 30 failed: Input/output error")

        device.load = no_load  # type: ignore[method-assign]
        return device

    library.device_factory = broken
    with pytest.raises(StorageError, match="tape operation 30"):
        library.mount("B00001L9")
    assert bays.library.slot(1) == "B00001L9" and library.free_drives() == 2
