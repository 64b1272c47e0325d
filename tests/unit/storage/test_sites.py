"""Sites give their drives back when idle: clean unmounts, between operations, never inside one."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from preservation.errors import DeviceBusyError
from preservation.storage.clock import SimulatedClock
from preservation.storage.library import EmulatedLibrary, barcode_for
from preservation.storage.ltfs import LTFSVolume
from preservation.storage.sites import Site
from tests.polling import wait_for

MIB = 1 << 20
BARCODE = "A00001L9"


def _library(root: Path) -> EmulatedLibrary:
    lib = EmulatedLibrary(root, drives=2, clock=SimulatedClock())
    for n in (1, 2):
        lib.add_cartridge(barcode_for("A", n), capacity=32 * MIB, wraps=16)
    return lib


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[[float | None], Site]]:
    made: list[Site] = []

    def make(idle_seconds: float | None) -> Site:
        site = Site(
            "site-a", tmp_path / "site-a", _library(tmp_path / "site-a"), idle_seconds=idle_seconds
        )
        made.append(site)
        return site

    yield make
    for site in made:
        site.release_all()


def _store(site: Site, path: str, data: bytes) -> None:
    """One tape operation as the store stage does it: under the site lock, synced."""
    with site.lock:
        volume, _ = site.open_volume(BARCODE, format_blank=True)
        volume.write_file(path, [data], size=len(data))
        volume.sync()


def _read_as_another_process(root: Path, path: str) -> tuple[bool, bytes]:
    """Mount the cartridge through a library object of its own, as another worker would."""
    other = EmulatedLibrary(root, drives=2)
    try:
        volume = LTFSVolume.mount(other.mount(BARCODE), BARCODE, read_only=True)
        return volume.index_partition_current, volume.read_bytes(path)
    finally:
        other.close()


def test_idle_site_unmounts_cleanly_and_frees_the_drive(
    make_site: Callable[[float | None], Site], tmp_path: Path
) -> None:
    site = make_site(0.3)
    data = os.urandom(700_000)
    _store(site, "/t1/aip/v1.tar", data)
    wait_for(lambda: site.stats.idle_unmounts == 1, "the idle release")
    assert site.mounted_barcodes() == set()
    assert site.library.drives()[0].barcode is None
    assert (site.stats.mounts, site.stats.unmounts) == (1, 1)
    wait_for(lambda: not site.idle_thread_running, "the idle thread to end")
    current, back = _read_as_another_process(tmp_path / "site-a", "/t1/aip/v1.tar")
    assert current  # the index partition was written at the idle unmount
    assert back == data


def test_operations_within_the_idle_time_share_one_mount(
    make_site: Callable[[float | None], Site], tmp_path: Path
) -> None:
    site = make_site(600.0)
    for n in range(3):
        _store(site, f"/t1/aip{n}/v1.tar", os.urandom(100_000))
    library = site.library
    assert isinstance(library, EmulatedLibrary)
    assert library.stats.mounts == 1 and site.stats.mounts == 1
    assert site.idle_release_pending and site.idle_thread_running
    with pytest.raises(DeviceBusyError):  # held meanwhile: another process must wait
        EmulatedLibrary(tmp_path / "site-a", drives=2).mount(BARCODE)
    site.release_all()
    assert not site.idle_release_pending and not site.idle_thread_running
    assert (site.stats.unmounts, site.stats.idle_unmounts) == (1, 0)
    current, _ = _read_as_another_process(tmp_path / "site-a", "/t1/aip2/v1.tar")
    assert current


def test_idle_release_never_interrupts_a_slow_write(
    make_site: Callable[[float | None], Site], tmp_path: Path
) -> None:
    site = make_site(0.2)
    _store(site, "/t1/first/v1.tar", os.urandom(100_000))  # the idle clock now runs
    seen: list[tuple[set[str], int]] = []
    block = os.urandom(512 * 1024)

    def slow() -> Iterator[bytes]:
        for _ in range(3):
            yield block
            time.sleep(0.5)  # each pause alone outlasts the idle time
            seen.append((site.mounted_barcodes(), site.stats.idle_unmounts))

    with site.lock:
        volume, _ = site.open_volume(BARCODE)
        volume.write_file("/t1/slow/v1.tar", slow(), size=3 * len(block))
        volume.sync()
    assert seen == [({BARCODE}, 0)] * 3
    assert site.stats.mounts == 1
    wait_for(lambda: site.stats.idle_unmounts == 1, "the idle release after the write")
    current, back = _read_as_another_process(tmp_path / "site-a", "/t1/slow/v1.tar")
    assert current and back == 3 * block


def test_a_stale_or_blocked_idle_call_releases_nothing(
    make_site: Callable[[float | None], Site],
) -> None:
    site = make_site(600.0)
    _store(site, "/t1/a/v1.tar", b"x" * 1000)
    armed_for = site._operations
    _store(site, "/t1/b/v1.tar", b"y" * 1000)  # an operation came after the timer was armed
    assert not site._release_if_idle(armed_for)
    assert site.mounted_barcodes() == {BARCODE}
    held, go = threading.Event(), threading.Event()

    def operation() -> None:
        with site.lock:
            held.set()
            go.wait(30)

    worker = threading.Thread(target=operation)
    worker.start()
    try:
        held.wait(30)
        assert not site._release_if_idle(site._operations)  # an operation holds the lock
        assert site.mounted_barcodes() == {BARCODE}
    finally:
        go.set()
        worker.join()
    assert site._release_if_idle(site._operations)  # idle now: released
    assert site.mounted_barcodes() == set() and site.stats.idle_unmounts == 1


@pytest.mark.parametrize("idle", [None, 0.0, float("inf")])
def test_idle_release_can_be_turned_off(
    make_site: Callable[[float | None], Site], idle: float | None
) -> None:
    site = make_site(idle)
    _store(site, "/t1/a/v1.tar", b"x" * 1000)
    assert site.idle_seconds is None
    assert not site.idle_release_pending and not site.idle_thread_running
    assert site.mounted_barcodes() == {BARCODE}


def test_each_load_is_counted_once_and_a_failed_count_fails_nothing(tmp_path: Path) -> None:
    loads: list[str] = []

    def count(barcode: str) -> None:
        loads.append(barcode)
        if len(loads) > 1:
            raise RuntimeError("the catalogue is away")

    site = Site("site-a", tmp_path / "site-a", _library(tmp_path / "site-a"), on_mount=count)
    try:
        _store(site, "/t/a/v1.tar", b"one")
        _store(site, "/t/b/v1.tar", b"two")  # still in its drive: no load, nothing counted
        assert loads == [BARCODE]
        site.release_all()
        _store(site, "/t/c/v1.tar", b"three")  # loaded again; the count fails, the write not
        assert loads == [BARCODE, BARCODE]
        with site.lock:
            volume, _ = site.open_volume(BARCODE)
            assert volume.read_bytes("/t/c/v1.tar") == b"three"
    finally:
        site.release_all()
