"""LTFS on emulated tape: the reference volume, round trips, recovery and faults."""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from preservation.errors import (
    FixityMismatchError,
    LTFSFormatError,
    MediaError,
    NotFoundError,
    TapeFullError,
    WriteProtectedError,
    WrongCartridgeError,
)
from preservation.storage.emulator import EmulatedCartridge, EmulatedTapeDevice, Faults
from preservation.storage.interfaces import MamId
from preservation.storage.ltfs import BLOCK_SIZE, SHA256_XATTR, LTFSVolume, _try_read_last_index
from preservation.storage.ltfs_index import Index
from preservation.storage.ltfs_label import Coherency, Label, format_time, parse_time

MIB = 1 << 20
KIB512 = BLOCK_SIZE
MakeCart = Callable[..., EmulatedCartridge]


def fresh(cart: EmulatedCartridge, **kw: object) -> EmulatedTapeDevice:
    """A new drive on the cartridge: what a remount after a crash or in another process sees."""
    return EmulatedTapeDevice(cart, **kw)  # type: ignore[arg-type]


def payload(size: int, seed: int = 0) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


# -- the reference volume ----------------------------------------------------------------


def test_reads_reference_volume_file_for_file(reference_dir: Path) -> None:
    dev = EmulatedTapeDevice(EmulatedCartridge(reference_dir))
    vol = LTFSVolume.mount(dev, "ABC123", read_only=True)
    assert vol.volume_uuid == "6001af81-9ce9-4350-9d1a-6bedcb876d34"
    assert vol.blocksize == 524288 and vol.label.version == "2.4.0"
    assert vol.listdir("/") == ["aip-0001"]
    assert vol.listdir("/aip-0001") == ["data", "manifest-sha256.txt"]
    assert vol.read_bytes("/aip-0001/manifest-sha256.txt") == b"hello tape\n"
    big = vol.read_bytes("/aip-0001/data/big.bin")
    assert len(big) == 1_300_000 == vol.stat("/aip-0001/data/big.bin").size
    raw = b"".join((reference_dir / f"1_{n}_R").read_bytes() for n in (8, 9, 10))
    assert big == raw
    assert [e.path for e in vol.walk()] == [
        "/aip-0001/manifest-sha256.txt",
        "/aip-0001/data/big.bin",
    ]
    assert vol.stat("/aip-0001/data/big.bin").start_block == 8
    assert vol.stat("/aip-0001/data/big.bin").sha256 is None  # the reference writes no hash


def test_reference_index_generations_on_both_partitions(reference_dir: Path) -> None:
    dev = EmulatedTapeDevice(EmulatedCartridge(reference_dir))
    dev.load()
    label = Label.from_xml((reference_dir / "0_2_R").read_bytes())
    ip = _try_read_last_index(dev, 0, label)
    dp = _try_read_last_index(dev, 1, label)
    assert ip is not None and dp is not None
    assert (ip.generation, ip.location.partition, ip.location.block) == (2, "a", 5)
    assert (dp.generation, dp.location.partition, dp.location.block) == (2, "b", 12)
    assert ip.previous is not None and (ip.previous.partition, ip.previous.block) == ("b", 12)
    assert dp.previous is not None and dp.previous.block == 5
    first = Index.from_xml((reference_dir / "1_5_R").read_bytes())
    assert first.generation == 1 and first.previous is None
    coherency = dev.read_attribute(MamId.VOLUME_COHERENCY_INFORMATION, 0)
    assert coherency is not None
    decoded = Coherency.decode(coherency.value)
    assert decoded is not None and (decoded.generation, decoded.block) == (2, 5)
    assert decoded.encode() == coherency.value  # our encoder writes the reference's bytes


def test_reference_volume_mounts_without_trusting_mam(reference_dir: Path) -> None:
    vol = LTFSVolume.mount(EmulatedTapeDevice(EmulatedCartridge(reference_dir)), trust_mam=False)
    assert vol.generation == 2 and vol.barcode == "ABC123"


# -- writing and reading back ------------------------------------------------------------

SIZES = [0, 1, 511, KIB512 - 1, KIB512, KIB512 + 1, 2 * KIB512, 3 * KIB512 + 7]


def test_round_trip_many_files_and_sizes(make_cartridge: MakeCart, tmp_path: Path) -> None:
    cart = make_cartridge("RTR001")
    vol = LTFSVolume.format(fresh(cart), "RTR001")
    assert vol.generation == 1
    expected: dict[str, bytes] = {}
    free_before = vol.free_bytes
    for i, size in enumerate(SIZES):
        data = payload(size, i)
        path = f"/tenant-{i % 2}/aip-{i:04d}/v1.tar"
        kind = i % 4
        if kind == 0:
            entry = vol.write_file(path, data, size=size)
        elif kind == 1:
            entry = vol.write_file(path, io.BytesIO(data))
        elif kind == 2:
            chunks = [data[j : j + 100_003] for j in range(0, len(data), 100_003)]
            entry = vol.write_file(path, iter(chunks))
        else:
            source = tmp_path / f"src{i}"
            source.write_bytes(data)
            entry = vol.write_file(path, source)
        assert entry.size == size and entry.sha256 == hashlib.sha256(data).hexdigest()
        assert (entry.start_block is None) == (size == 0)
        expected[path] = data
        if i == 3:
            assert vol.sync() is True and vol.generation == 2
            assert vol.sync() is False
    assert vol.free_bytes < free_before
    vol.unmount()
    assert vol.generation == 3

    again = LTFSVolume.mount(fresh(cart), "RTR001")
    assert again.generation == 3
    assert again.index.location.partition == "a"  # clean unmount: index partition trusted
    for path, data in expected.items():
        entry = again.stat(path)
        assert entry.size == len(data)
        assert again.read_bytes(path) == data
        with again.open(path) as reader:
            assert b"".join(bytes(c) for c in reader.iter_chunks()) == data
    assert sorted(e.path for e in again.walk()) == sorted(expected)
    assert again.listdir("/") == ["tenant-0", "tenant-1"]
    with pytest.raises(FileNotFoundError):
        again.stat("/tenant-0/nope")
    with pytest.raises(FileExistsError):
        again.write_file(next(iter(expected)), b"again")


def test_files_are_contiguous_blocks_in_write_order(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "ORD001")
    a = vol.write_file("/t/a/v1.tar", payload(KIB512 * 2))
    b = vol.write_file("/t/b/v1.tar", payload(10))
    assert a.start_block == 7 and b.start_block == 9  # b/7 follows label and first index
    assert a.extents[0].byte_count == KIB512 * 2
    vol.unmount()
    assert (cart.path / "1_7_R").stat().st_size == KIB512
    assert (cart.path / "1_9_R").stat().st_size == 10


def test_index_has_sha256_xattr_and_ltfs_timestamps(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "XAT001", now_ns=lambda: 1_795_600_800_000_000_000)
    vol.write_file("/t/u/v1.tar", b"hello")
    vol.unmount()
    root = etree.fromstring((cart.path / "0_5_R").read_bytes())
    xattr = root.find(".//file/extendedattributes/xattr")
    assert xattr is not None and xattr.findtext("key") == SHA256_XATTR
    assert xattr.findtext("value") == hashlib.sha256(b"hello").hexdigest()
    assert root.findtext("updatetime") == "2026-11-25T10:00:00.000000000Z"
    assert parse_time(format_time(123_456_789_012_345_678)) == 123_456_789_012_345_678


def test_written_cartridge_has_the_reference_shapes(
    make_cartridge: MakeCart, reference_dir: Path
) -> None:
    cart = make_cartridge("ABC123")
    vol = LTFSVolume.format(fresh(cart), "ABC123", volume_name="testvol")
    vol.write_file("/aip-0001/manifest-sha256.txt", b"hello tape\n")
    vol.write_file("/aip-0001/data/big.bin", payload(1_300_000))
    vol.unmount()
    ours = {p.name for p in cart.path.iterdir()}
    theirs = {p.name for p in reference_dir.iterdir()}
    pattern = re.compile(r"^(\d_\d+_[RFE]|attr_\d_[0-9a-f]+|filedebug_tc_conf\.xml)$")
    assert all(pattern.match(n) for n in ours)
    same_layout = {n for n in theirs if re.match(r"^\d_\d+_[RFE]$", n)}
    assert same_layout <= ours  # same object numbers and kinds as the reference session
    assert {n for n in theirs if n.startswith("attr_")} <= ours
    for name in ours & theirs:
        if name.startswith("attr_") and name != "attr_0_9":  # same id, format and length
            assert (cart.path / name).read_bytes()[:5] == (reference_dir / name).read_bytes()[:5]
    assert (cart.path / "0_0_R").read_bytes() == (reference_dir / "0_0_R").read_bytes()
    for name in ("0_2_R", "1_2_R"):
        tags = lambda p: [e.tag for e in etree.fromstring(p.read_bytes()).iter()]  # noqa: E731
        assert tags(cart.path / name) == tags(reference_dir / name)
    ours_label = Label.from_xml((cart.path / "1_2_R").read_bytes())
    assert ours_label.partition == "b" and ours_label.compression is False
    conf = lambda p: [e.tag for e in etree.parse(str(p / "filedebug_tc_conf.xml")).iter()]  # noqa: E731
    assert conf(cart.path) == conf(reference_dir)
    index_tags = {e.tag for e in etree.fromstring((cart.path / "0_5_R").read_bytes()).iter()}
    ref_tags = {e.tag for e in etree.fromstring((reference_dir / "0_5_R").read_bytes()).iter()}
    assert ref_tags <= index_tags


def test_format_writes_the_volume_lock_as_the_reference_does(
    make_cartridge: MakeCart, reference_dir: Path
) -> None:
    cart = make_cartridge("ABC123")
    vol = LTFSVolume.format(fresh(cart), "ABC123")
    vol.unmount()
    ours = (cart.path / "attr_0_1623").read_bytes()
    assert ours == (reference_dir / "attr_0_1623").read_bytes() == bytes.fromhex("162300000100")
    assert not (cart.path / "attr_1_1623").exists()  # partition 0 only, like the reference
    again = fresh(cart)
    again.load()
    lock = again.read_attribute(MamId.VOLUME_LOCK_STATUS)
    assert lock is not None and lock.value == b"\x00"


def _latest_indexes(cart: EmulatedCartridge) -> tuple[Index, Index]:
    """The newest index on each partition, read from the files alone."""
    dev = fresh(cart)
    dev.load()
    label = Label.from_xml((cart.path / "0_2_R").read_bytes())
    ip = _try_read_last_index(dev, 0, label)
    dp = _try_read_last_index(dev, 1, label)
    assert ip is not None and dp is not None
    return ip, dp


def test_both_copies_of_a_generation_carry_one_updatetime(make_cartridge: MakeCart) -> None:
    ticks = iter(range(1_795_600_800_000_000_000, 1 << 62, 1_000_000_000))
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "UPD001", now_ns=lambda: next(ticks))
    vol.unmount()
    ip, dp = _latest_indexes(cart)
    assert ip.generation == dp.generation == 1 and ip.update_time == dp.update_time

    vol = LTFSVolume.mount(fresh(cart), "UPD001", now_ns=lambda: next(ticks))
    vol.write_file("/t/a/v1.tar", b"one")
    assert vol.sync()  # a sync point: the data partition alone has generation 2
    vol.write_file("/t/a/v2.tar", b"two")
    vol.unmount()  # generation 3, on the data partition and then the index partition
    ip, dp = _latest_indexes(cart)
    assert (ip.location.partition, dp.location.partition) == ("a", "b")
    assert ip.generation == dp.generation == 3
    assert ip.update_time == dp.update_time

    def without_pointers(raw: bytes) -> bytes:
        root = etree.fromstring(raw)
        for tag in ("location", "previousgenerationlocation"):
            element = root.find(tag)
            assert element is not None
            root.remove(element)
        return bytes(etree.tostring(root))

    # As on the reference volume (0_5_R, 1_12_R): one generation, two places.
    ip_raw = (cart.path / f"0_{ip.location.block}_R").read_bytes()
    dp_raw = (cart.path / f"1_{dp.location.block}_R").read_bytes()
    assert without_pointers(ip_raw) == without_pointers(dp_raw)
    assert dp.previous is not None
    generation_2 = Index.from_xml((cart.path / f"1_{dp.previous.block}_R").read_bytes())
    assert generation_2.generation == 2 and generation_2.update_time < dp.update_time


def test_index_partition_repaired_from_the_data_partition_keeps_its_updatetime(
    make_cartridge: MakeCart,
) -> None:
    ticks = iter(range(1_795_600_800_000_000_000, 1 << 62, 1_000_000_000))
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "UPD002", now_ns=lambda: next(ticks))
    vol.write_file("/t/a/v1.tar", b"one")
    vol.sync()  # then the power goes: the index partition still holds generation 1
    _, dp_before = _latest_indexes(cart)
    vol = LTFSVolume.mount(fresh(cart), "UPD002", now_ns=lambda: next(ticks))
    assert not vol.index_partition_current and vol.generation == 2
    vol.unmount()
    ip, dp = _latest_indexes(cart)
    assert ip.generation == dp.generation == 2
    assert ip.update_time == dp.update_time == dp_before.update_time


# -- recovery ----------------------------------------------------------------------------


def test_power_loss_after_sync_falls_back_to_data_partition(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "PWR001")
    vol.write_file("/t/a/v1.tar", payload(KIB512 + 5, 1))
    vol.sync()
    vol.write_file("/t/b/v1.tar", payload(3 * KIB512, 2))  # never synced
    del vol  # power lost: no unmount, the index partition still holds generation 1

    for trust_mam in (True, False):
        again = LTFSVolume.mount(fresh(cart), "PWR001", read_only=True, trust_mam=trust_mam)
        assert again.generation == 2 and again.index.location.partition == "b"
        assert again.read_bytes("/t/a/v1.tar") == payload(KIB512 + 5, 1)
        assert not again.exists("/t/b/v1.tar")

    writer = LTFSVolume.mount(fresh(cart), "PWR001")
    writer.write_file("/t/c/v1.tar", b"after recovery")
    writer.unmount()
    final = LTFSVolume.mount(fresh(cart), "PWR001")
    assert final.index.location.partition == "a" and final.generation == 3
    assert final.read_bytes("/t/c/v1.tar") == b"after recovery"
    assert final.read_bytes("/t/a/v1.tar") == payload(KIB512 + 5, 1)


def test_damaged_index_partition_falls_back(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "DMG001")
    vol.write_file("/t/a/v1.tar", b"precious")
    vol.unmount()
    (cart.path / "0_5_R").write_bytes(b"<?xml version='1.0'?><ltfsindex version='2.4.0'><broken")
    again = LTFSVolume.mount(fresh(cart), "DMG001")
    assert again.index.location.partition == "b"
    assert again.read_bytes("/t/a/v1.tar") == b"precious"
    again.unmount()  # repairs the index partition
    assert LTFSVolume.mount(fresh(cart), "DMG001").index.location.partition == "a"


def test_unreadable_index_block_falls_back(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "EIO001")
    vol.write_file("/t/a/v1.tar", b"data")
    vol.unmount()
    dev = fresh(cart, faults=Faults(read_errors={(0, 5)}))
    assert LTFSVolume.mount(dev, "EIO001").read_bytes("/t/a/v1.tar") == b"data"


def test_power_loss_mid_file_keeps_synced_files(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "CRS001")
    vol.write_file("/t/a/v1.tar", b"synced")
    vol.sync()
    vol.device.faults.power_loss_after = 2  # type: ignore[attr-defined]
    with pytest.raises(MediaError):
        vol.write_file("/t/b/v1.tar", payload(5 * KIB512))
    assert not any(n.startswith("1_") and n.endswith("_E") for n in os.listdir(cart.path))
    again = LTFSVolume.mount(fresh(cart), "CRS001")
    assert again.read_bytes("/t/a/v1.tar") == b"synced"
    assert not again.exists("/t/b/v1.tar")
    again.write_file("/t/b/v1.tar", b"second try")
    again.unmount()
    assert LTFSVolume.mount(fresh(cart), "CRS001").read_bytes("/t/b/v1.tar") == b"second try"


# -- removing a file (disposal) -------------------------------------------------------------


def _records(cart: EmulatedCartridge, start: int, count: int) -> bytes:
    return b"".join((cart.path / f"1_{n}_R").read_bytes() for n in range(start, start + count))


def test_remove_writes_a_generation_without_the_file_and_leaves_its_blocks(
    make_cartridge: MakeCart, reference_dir: Path
) -> None:
    cart = make_cartridge("DSP001")
    vol = LTFSVolume.format(fresh(cart), "DSP001")
    gone = vol.write_file("/t/aip-1/v1.tar", payload(2 * KIB512 + 9, 1))
    kept = vol.write_file("/t/aip-2/v1.tar", payload(KIB512 + 3, 2))
    vol.sync()
    before = vol.generation
    assert gone.start_block is not None
    on_tape = _records(cart, gone.start_block, 3)

    removed = vol.remove("/t/aip-1/v1.tar")
    assert removed == gone
    assert vol.sync() is True and vol.generation == before + 1
    del vol  # no unmount: the data partition's newest index must say it alone

    for trust_mam in (True, False):
        again = LTFSVolume.mount(fresh(cart), "DSP001", read_only=True, trust_mam=trust_mam)
        assert again.generation == before + 1
        assert not again.exists("/t/aip-1/v1.tar") and not again.exists("/t/aip-1")
        assert again.listdir("/t") == ["aip-2"]  # the emptied AIP folder went, the tenant stays
        assert again.read_bytes("/t/aip-2/v1.tar") == payload(KIB512 + 3, 2)
        assert again.stat("/t/aip-2/v1.tar") == kept
        # The history stays walkable: the generation before still names the file.
        assert again.index.previous is not None
        previous = Index.from_xml(_records(cart, again.index.previous.block, 1))
        assert previous.generation == before
        assert "/t/aip-1/v1.tar" in {p for p, _ in previous.walk()}
    assert _records(cart, gone.start_block, 3) == on_tape  # LTFS deletes touch no data block

    # The index still has every element the reference implementation writes.
    ours = {e.tag for e in etree.fromstring(again.index.to_xml()).iter()}
    theirs = {e.tag for e in etree.fromstring((reference_dir / "0_5_R").read_bytes()).iter()}
    assert theirs <= ours

    # Later writes append after the last index: the removed file's extent is never reused.
    writer = LTFSVolume.mount(fresh(cart), "DSP001")
    new = writer.write_file("/t/aip-3/v1.tar", payload(KIB512, 3))
    assert new.start_block is not None and new.start_block > writer.index.location.block
    writer.unmount()
    assert _records(cart, gone.start_block, 3) == on_tape
    final = LTFSVolume.mount(fresh(cart), "DSP001")
    assert final.index.location.partition == "a" and final.generation == before + 2
    assert sorted(e.path for e in final.walk()) == ["/t/aip-2/v1.tar", "/t/aip-3/v1.tar"]
    assert final.read_bytes("/t/aip-3/v1.tar") == payload(KIB512, 3)


def test_remove_of_the_last_file_prunes_to_the_root_unless_asked_not_to(
    make_cartridge: MakeCart,
) -> None:
    vol = LTFSVolume.format(fresh(make_cartridge()), "DSP002")
    vol.write_file("/t/aip-1/v1.tar", b"one")
    vol.write_file("/u/aip-2/v1.tar", b"two")
    vol.remove("/t/aip-1/v1.tar")
    assert vol.listdir("/") == ["u"]
    vol.remove("/u/aip-2/v1.tar", prune=False)
    assert vol.listdir("/u/aip-2") == []
    assert list(vol.walk()) == []


def test_remove_refuses_a_missing_path_a_directory_and_a_read_only_volume(
    make_cartridge: MakeCart,
) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "DSP003")
    vol.write_file("/t/aip-1/v1.tar", b"kept")
    vol.sync()
    with pytest.raises(NotFoundError, match="/t/aip-9/v1.tar") as caught:
        vol.remove("/t/aip-9/v1.tar")
    assert caught.value.path == "/t/aip-9/v1.tar" and caught.value.barcode == "DSP003"
    with pytest.raises(IsADirectoryError):
        vol.remove("/t/aip-1")
    assert vol.sync() is False  # a refused removal leaves the index as it was
    assert vol.read_bytes("/t/aip-1/v1.tar") == b"kept"
    vol.remove("/t/aip-1/v1.tar")
    with pytest.raises(NotFoundError):
        vol.remove("/t/aip-1/v1.tar")  # removed once is gone
    vol.unmount()
    reader = LTFSVolume.mount(fresh(cart), "DSP003", read_only=True)
    with pytest.raises(WriteProtectedError):
        reader.remove("/t/aip-1/v1.tar")


def test_remove_not_synced_is_lost_with_the_power(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "DSP004")
    vol.write_file("/t/aip-1/v1.tar", b"still listed")
    vol.sync()
    vol.remove("/t/aip-1/v1.tar")
    del vol  # power lost before the sync point
    again = LTFSVolume.mount(fresh(cart), "DSP004")
    assert again.read_bytes("/t/aip-1/v1.tar") == b"still listed"


def test_not_ltfs_is_refused(make_cartridge: MakeCart) -> None:
    with pytest.raises(LTFSFormatError):
        LTFSVolume.mount(fresh(make_cartridge()))


# -- faults ------------------------------------------------------------------------------


def test_wrong_cartridge_is_refused(make_cartridge: MakeCart) -> None:
    a, b = make_cartridge("AAA001"), make_cartridge("BBB001")
    LTFSVolume.format(fresh(a), "AAA001").unmount()
    LTFSVolume.format(fresh(b), "BBB001").unmount()
    with pytest.raises(WrongCartridgeError) as caught:
        LTFSVolume.mount(fresh(a), "BBB001")
    assert caught.value.barcode == "BBB001" and caught.value.context["found"] == "AAA001"
    mixed_up = EmulatedTapeDevice(a, faults=Faults(swap_cartridge=b))
    with pytest.raises(WrongCartridgeError):
        LTFSVolume.mount(mixed_up, "AAA001")


def test_silent_bit_flip_is_caught_by_sha256(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "FLP001")
    entry = vol.write_file("/t/a/v1.tar", payload(KIB512 + 100))
    vol.unmount()
    assert entry.start_block is not None
    dev = fresh(cart, faults=Faults(bit_flips={(1, entry.start_block)}))
    again = LTFSVolume.mount(dev, "FLP001")
    with pytest.raises(FixityMismatchError) as caught:
        again.read_bytes("/t/a/v1.tar")
    assert caught.value.path == "/t/a/v1.tar"
    unverified = again.read_bytes("/t/a/v1.tar", verify=False)
    assert unverified != payload(KIB512 + 100) and len(unverified) == KIB512 + 100


def test_read_error_on_data_block(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "RDE001")
    entry = vol.write_file("/t/a/v1.tar", payload(3 * KIB512))
    vol.unmount()
    assert entry.start_block is not None
    dev = fresh(cart, faults=Faults(read_errors={(1, entry.start_block + 1)}))
    with pytest.raises(MediaError):
        LTFSVolume.mount(dev, "RDE001").read_bytes("/t/a/v1.tar")


def test_permanent_write_error(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "WRE001")
    vol.write_file("/t/a/v1.tar", b"ok")
    vol.sync()
    vol.device.faults.write_error_after = 1  # type: ignore[attr-defined]
    with pytest.raises(MediaError):
        vol.write_file("/t/b/v1.tar", payload(4 * KIB512))
    assert not vol.exists("/t/b/v1.tar")
    with pytest.raises(MediaError):
        vol.write_file("/t/c/v1.tar", b"still broken")
    assert LTFSVolume.mount(fresh(cart), "WRE001").read_bytes("/t/a/v1.tar") == b"ok"


def test_tape_shorter_than_nominal(make_cartridge: MakeCart) -> None:
    cart = make_cartridge(capacity=64 * MIB)
    dev = fresh(cart, faults=Faults(capacity={1: 6 * MIB}))
    vol = LTFSVolume.format(dev, "SHT001")
    assert vol.free_bytes > 40 * MIB  # nominal figures promise much more
    written = []
    with pytest.raises(TapeFullError):
        for i in range(40):
            written.append(vol.write_file(f"/t/{i}/v1.tar", payload(KIB512, i)).path)
    assert 8 <= len(written) <= 11
    vol.unmount()
    again = LTFSVolume.mount(fresh(cart, faults=Faults(capacity={1: 6 * MIB})), "SHT001")
    assert sorted(e.path for e in again.walk()) == sorted(written)


def test_early_warning_stops_new_files_but_keeps_index_room(make_cartridge: MakeCart) -> None:
    cart = make_cartridge(capacity=16 * MIB, wraps=4)  # data partition 8 MiB
    dev = fresh(cart, early_warning_bytes=2 * MIB)
    vol = LTFSVolume.format(dev, "FUL001")
    count = 0
    with pytest.raises(TapeFullError):
        while True:
            vol.write_file(f"/t/{count}/v1.tar", payload(KIB512, count))
            count += 1
    assert dev.status().early_warning and not dev.status().end_of_medium
    with pytest.raises(TapeFullError):
        vol.write_file("/t/big/v1.tar", b"x", size=100 * MIB)
    vol.unmount()
    again = LTFSVolume.mount(fresh(cart), "FUL001")
    assert len(list(again.walk())) == count and again.index.location.partition == "a"


def test_unreadable_cartridge(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    LTFSVolume.format(fresh(cart), "BAD001").unmount()
    with pytest.raises(MediaError):
        LTFSVolume.mount(fresh(cart, faults=Faults(unreadable=True)), "BAD001")


def test_write_protected_cartridge_mounts_read_only(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    vol = LTFSVolume.format(fresh(cart), "WPT001")
    vol.write_file("/t/a/v1.tar", b"kept")
    vol.unmount()
    cart.set_write_protected(True)
    again = LTFSVolume.mount(fresh(cart), "WPT001")
    assert again.read_only and again.read_bytes("/t/a/v1.tar") == b"kept"
    with pytest.raises(WriteProtectedError):
        again.write_file("/t/b/v1.tar", b"no")
    with pytest.raises(WriteProtectedError):
        LTFSVolume.format(fresh(cart), "WPT001")


def test_index_parser_does_not_expand_entities() -> None:
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<ltfsindex version="2.4.0"><creator>&e;</creator><volumeuuid>'
        b"6001af81-9ce9-4350-9d1a-6bedcb876d34</volumeuuid><generationnumber>1"
        b"</generationnumber><updatetime>2026-11-25T10:00:00.000000000Z</updatetime>"
        b"<location><partition>a</partition><startblock>5</startblock></location>"
        b"<directory><name>v</name><fileuid>1</fileuid><contents/></directory></ltfsindex>"
    )
    index = Index.from_xml(evil)
    assert "root:" not in index.creator
