"""Fixtures for tape tests: the reference cartridge, fresh emulated cartridges, a fake st."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from preservation.storage.clock import SimulatedClock
from preservation.storage.emulator import EmulatedCartridge, EmulatedTapeDevice

DATA = Path(__file__).resolve().parents[2] / "data" / "ltfs"
REFERENCE_TAR = DATA / "ltfs-filedebug-T1.tar.gz"
MIB = 1 << 20


@pytest.fixture
def reference_dir(tmp_path: Path) -> Path:
    """The reference implementation's cartridge T1, extracted and made readable.

    The reference backend leaves records write-only (mode 0200); as root that
    does not matter, as anyone else it would, so modes are opened up here.
    """
    with tarfile.open(REFERENCE_TAR) as tar:
        tar.extractall(tmp_path, filter="data")
    directory = tmp_path / "T1"
    for entry in directory.iterdir():
        os.chmod(entry, 0o644)
    return directory


@pytest.fixture
def make_cartridge(tmp_path: Path) -> Callable[..., EmulatedCartridge]:
    counter = iter(range(1000))

    def make(
        barcode: str | None = None, capacity: int = 64 * MIB, **kw: object
    ) -> EmulatedCartridge:
        name = barcode or f"TST{next(counter):03d}"
        return EmulatedCartridge.create(
            tmp_path / "carts" / name,
            capacity=capacity,
            wraps=kw.pop("wraps", 16),
            **kw,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def device(
    make_cartridge: Callable[..., EmulatedCartridge], clock: SimulatedClock
) -> EmulatedTapeDevice:
    dev = EmulatedTapeDevice(make_cartridge("TST100"), clock=clock)
    dev.load()
    return dev
