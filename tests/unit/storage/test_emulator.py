"""The emulated drive: file layout, tape semantics, timing and fault hooks."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest

from preservation.errors import MediaError, StorageError, TapeFullError
from preservation.storage.clock import DriveTiming, SimulatedClock
from preservation.storage.emulator import EmulatedCartridge, EmulatedTapeDevice, Faults
from preservation.storage.interfaces import MamAttribute, MamFormat, MamId, TapePosition

MIB = 1 << 20
MakeCart = Callable[..., EmulatedCartridge]


def names(cart: EmulatedCartridge, prefix: str) -> set[str]:
    return {p.name for p in cart.path.iterdir() if p.name.startswith(prefix)}


def test_blank_cartridge_layout(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    assert names(cart, "0_") | names(cart, "1_") == {"0_0_E", "1_0_E"}
    assert (cart.path / "filedebug_tc_conf.xml").is_file()
    assert cart.partition_capacities() == (8 * MIB, 56 * MIB)


def test_records_filemarks_and_end_of_data_files(device: EmulatedTapeDevice) -> None:
    cart = device.cartridge
    assert cart is not None
    device.locate(1, 0)
    device.write_block(b"abc")
    device.write_filemarks(1)
    device.write_block(b"defg")
    device.rewind()
    assert names(cart, "1_") == {"1_0_R", "1_1_F", "1_2_R", "1_3_E"}
    assert (cart.path / "1_2_R").read_bytes() == b"defg"
    device.locate(1, 1)
    device.write_block(b"x")  # truncates: 1_1_F and 1_2_R are gone
    device.unload()
    assert names(cart, "1_") == {"1_0_R", "1_1_R", "1_2_E"}


def test_mam_attribute_files_and_change_reference(device: EmulatedTapeDevice) -> None:
    cart = device.cartridge
    assert cart is not None
    device.write_attribute(MamAttribute(0x0806, MamFormat.ASCII, b"TST100".ljust(32)), 0)
    assert (cart.path / "attr_0_806").read_bytes()[:5] == bytes.fromhex("0806010020")
    assert device.read_attribute(MamId.VOLUME_CHANGE_REFERENCE) is None
    device.locate(1, 0)
    device.write_block(b"a")
    device.write_block(b"b")
    vcr = device.read_attribute(MamId.VOLUME_CHANGE_REFERENCE)
    assert vcr is not None and int.from_bytes(vcr.value, "big") == 1  # once per load
    with pytest.raises(StorageError):
        device.write_attribute(MamAttribute(0x0009, MamFormat.BINARY, bytes(4)))
    device.unload()
    device.load()
    device.locate(1, 2)
    device.write_block(b"c")
    vcr = device.read_attribute(MamId.VOLUME_CHANGE_REFERENCE)
    assert vcr is not None and int.from_bytes(vcr.value, "big") == 2


def test_clock_accounts_load_seek_stream_unload(make_cartridge: MakeCart) -> None:
    clock = SimulatedClock()
    cart = make_cartridge(capacity=4000 * MIB, wraps=40)
    dev = EmulatedTapeDevice(cart, clock=clock)
    dev.load()
    assert clock.now() == pytest.approx(16.0)
    dev.locate(1, 0)
    block = bytes(4 * MIB)
    start = clock.now()
    for _ in range(100):
        dev.write_block(block)
    assert clock.now() - start == pytest.approx(400 * MIB / 400e6)
    before = clock.now()
    dev.locate(1, 0)  # 400 MiB back on a 3800 MiB partition
    expected = DriveTiming.lto9().seek_seconds(400 / 3800)
    assert clock.now() - before == pytest.approx(expected)
    assert 10 < expected < 12
    dev.unload()
    assert dev.stats.loads == 1 and dev.stats.unloads == 1
    assert dev.stats.bytes_written == 400 * MIB and dev.stats.blocks_written == 100
    assert dev.stats.seconds == pytest.approx(clock.now())
    assert DriveTiming.lto9().seek_seconds(1.0) == pytest.approx(99.0)


def test_early_warning_and_end_of_medium(make_cartridge: MakeCart) -> None:
    dev = EmulatedTapeDevice(make_cartridge(capacity=16 * MIB, wraps=4), early_warning_bytes=MIB)
    dev.load()
    dev.locate(1, 0)
    for _ in range(13):  # data partition: 8 MiB, early warning from 7 MiB
        dev.write_block(bytes(MIB // 2))
    assert not dev.status().early_warning
    dev.write_block(bytes(MIB // 2))
    assert dev.status().early_warning and not dev.status().end_of_medium
    dev.write_block(bytes(MIB // 2))
    dev.write_block(bytes(MIB // 2))
    with pytest.raises(TapeFullError):
        dev.write_block(b"x")
    assert dev.status().end_of_medium
    assert dev.status().partitions[1].remaining == 0


def test_fault_read_error_and_bit_flip(device: EmulatedTapeDevice) -> None:
    device.locate(1, 0)
    for byte in b"abc":
        device.write_block(bytes([byte]) * 8)
    device.faults.read_errors.add((1, 0))
    device.faults.bit_flips.add((1, 1))
    device.locate(1, 0)
    with pytest.raises(MediaError):
        device.read_block(100)
    assert device.read_block(100) != b"b" * 8
    assert device.read_block(100) == b"c" * 8


def test_fault_write_error_after_n_blocks(device: EmulatedTapeDevice) -> None:
    device.faults.write_error_after = 2
    device.locate(1, 0)
    device.write_block(b"1")
    device.write_block(b"2")
    for _ in range(2):  # permanent
        with pytest.raises(MediaError):
            device.write_block(b"3")


def test_fault_short_tape(make_cartridge: MakeCart) -> None:
    dev = EmulatedTapeDevice(make_cartridge(), faults=Faults(capacity={1: MIB}))
    dev.load()
    dev.locate(1, 0)
    dev.write_block(bytes(MIB))
    with pytest.raises(TapeFullError):
        dev.write_block(b"x")
    assert dev.status().partitions[1].capacity == 56 * MIB  # nominal still reported


def test_fault_power_loss_leaves_no_end_of_data(make_cartridge: MakeCart) -> None:
    cart = make_cartridge()
    dev = EmulatedTapeDevice(cart, faults=Faults(power_loss_after=2))
    dev.load()
    dev.locate(1, 0)
    dev.write_block(b"1")
    dev.write_block(b"2")
    with pytest.raises(MediaError):
        dev.write_block(b"3")
    with pytest.raises(MediaError):
        dev.position()
    assert names(cart, "1_") == {"1_0_R", "1_1_R"}
    again = EmulatedTapeDevice(cart)
    again.load()
    again.set_partition(1)
    again.seek_eod()
    assert again.position() == TapePosition(1, 2)


def test_fault_unreadable_and_swapped_cartridge(make_cartridge: MakeCart) -> None:
    a, b = make_cartridge("AAA001"), make_cartridge("BBB001")
    with pytest.raises(MediaError):
        EmulatedTapeDevice(a, faults=Faults(unreadable=True)).load()
    swapped = EmulatedTapeDevice(a, faults=Faults(swap_cartridge=b))
    swapped.load()
    assert swapped.barcode == "BBB001"


def test_write_protect_from_cartridge_settings(make_cartridge: MakeCart) -> None:
    cart = make_cartridge(write_protected=True)
    assert (
        "<emulate_readonly>true</emulate_readonly>"
        in (cart.path / "filedebug_tc_conf.xml").read_text()
    )
    dev = EmulatedTapeDevice(cart)
    dev.load()
    assert dev.write_protected and dev.status().write_protected


def test_production_settings_warn(make_cartridge: MakeCart) -> None:
    with pytest.warns(RuntimeWarning, match="production"):
        EmulatedTapeDevice(make_cartridge(), production=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EmulatedTapeDevice(make_cartridge())


def test_fsync_mode_round_trips(make_cartridge: MakeCart) -> None:
    dev = EmulatedTapeDevice(make_cartridge(), fsync=True)
    dev.load()
    dev.locate(1, 0)
    dev.write_block(b"durable")
    dev.write_filemarks(1)
    dev.locate(1, 0)
    assert dev.read_block(100) == b"durable"


def test_library_side_insert_eject(make_cartridge: MakeCart) -> None:
    dev = EmulatedTapeDevice()
    with pytest.raises(StorageError):
        dev.load()
    cart = make_cartridge()
    dev.insert(cart)
    with pytest.raises(StorageError):
        dev.insert(cart)
    dev.load()
    assert dev.eject() is cart and not dev.loaded and dev.barcode is None
