"""The dual-site store under the faults tape really has, each ending safe after repair.

Every test drives the real stack (catalogue on SQLite, LTFS on emulated
libraries under a private data root) and breaks it through the emulator's
fault hooks. Each ends the same way: every AIP is still readable, and after
``repair`` every version has a verified copy at both sites on different
cartridges.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import itertools
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    AIPState,
    AIPVersion,
    Cartridge,
    CartridgeState,
    CopyStatus,
    PremisEvent,
    TapeCopy,
)
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import FixityMismatchError, SiteUnavailableError
from preservation.storage import recovery, service
from preservation.storage.emulator import EmulatedCartridge, EmulatedTapeDevice
from preservation.storage.library import EmulatedLibrary
from preservation.storage.planning import BAD_CARTRIDGE_STATES, ErrorKind
from preservation.storage.sites import FeedMeter, build_sites, get_site
from tests.polling import wait_for

MIB = 1 << 20
FIRST_DATA_BLOCK = 7  # on a fresh volume: VOL1 FM label FM FM index FM, then data


def _settings(home: Path) -> Settings:
    return Settings(
        home=home,
        tape_capacity=64 * MIB,
        tape_cartridges_per_site=4,
        tape_drives_per_site=2,
    )


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = open_context(_settings(tmp_path / "var"))
    build_sites(context, durability="none")
    yield context
    service.release_drives(context)
    context.close()


def library(ctx: Context, site: str = "site-a") -> EmulatedLibrary:
    lib = get_site(ctx, site).library
    assert isinstance(lib, EmulatedLibrary)
    return lib


_counter = iter(range(1_000_000))


def make_version(ctx: Context, size: int = 700_000) -> tuple[int, str]:
    """An AIP with one version whose staging tar holds ``size`` random bytes."""
    n = next(_counter)
    staging = ctx.settings.staging_dir / f"aip{n}"
    staging.mkdir(parents=True)
    tar_path = staging / "v1.tar"
    payload = os.urandom(size)
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"bag{n}/data/payload.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(payload))
    with session_scope(ctx.sessions) as s:
        sip = catalog.create_sip(s, tenant_id="t1", name=f"bag{n}", source_path=str(staging))
        aip = catalog.create_aip(s, sip)
        version = catalog.create_aip_version(s, aip, 1)
        version.staging_path = str(tar_path)
        version.tar_sha256 = hashlib.sha256(tar_path.read_bytes()).hexdigest()
        version.tar_size = tar_path.stat().st_size
        return version.id, aip.id


def store_and_commit(ctx: Context, version_id: int) -> None:
    for site in ctx.settings.sites:
        service.store_version(ctx, version_id, site)
    assert service.commit_version(ctx, version_id)


def copies(ctx: Context, version_id: int) -> list[TapeCopy]:
    with session_scope(ctx.sessions) as s:
        return list(
            s.scalars(
                select(TapeCopy).where(TapeCopy.aip_version_id == version_id).order_by(TapeCopy.id)
            )
        )


def cartridge(ctx: Context, barcode: str) -> Cartridge:
    with session_scope(ctx.sessions) as s:
        return s.get_one(Cartridge, barcode)


def assert_two_safe_copies(ctx: Context) -> None:
    """The invariant: each version verified at both sites, on healthy, distinct cartridges."""
    with session_scope(ctx.sessions) as s:
        version_ids = list(s.scalars(select(AIPVersion.id)))
        for vid in version_ids:
            good = s.execute(
                select(TapeCopy.site, TapeCopy.barcode)
                .join(Cartridge, Cartridge.barcode == TapeCopy.barcode)
                .where(
                    TapeCopy.aip_version_id == vid,
                    TapeCopy.status == CopyStatus.VERIFIED,
                    Cartridge.state.not_in(list(BAD_CARTRIDGE_STATES)),
                )
            ).all()
            assert {site for site, _ in good} == set(ctx.settings.sites), (vid, good)
            assert len({b for _, b in good}) == len(good)


def assert_all_readable(ctx: Context, tmp_path: Path) -> None:
    with session_scope(ctx.sessions) as s:
        aip_ids = list(s.scalars(select(AIP.id)))
    for aip_id in aip_ids:
        dest = tmp_path / f"recovered-{next(_counter)}"
        bag = recovery.recover(ctx, aip_id, dest_dir=dest)
        assert (bag / "data" / "payload.bin").stat().st_size > 0


def finish(ctx: Context, tmp_path: Path) -> recovery.RepairReport:
    """Every test ends here: readable now, two safe copies after repair."""
    assert_all_readable(ctx, tmp_path)
    report = recovery.repair(ctx)
    assert report.ok, report.to_dict()
    assert_two_safe_copies(ctx)
    assert_all_readable(ctx, tmp_path)
    return report


def events(ctx: Context, type_: str) -> list[PremisEvent]:
    with session_scope(ctx.sessions) as s:
        return [e for e in catalog.list_events(s, tenant_id="t1") if e.type == type_]


# -- the normal path -------------------------------------------------------------------------


def test_store_is_idempotent_and_commit_needs_both_sites(ctx: Context, tmp_path: Path) -> None:
    vid, aip_id = make_version(ctx)
    first = service.store_version(ctx, vid, "site-a")
    assert first.status == "verified" and first.barcode.startswith("A")
    assert service.store_version(ctx, vid, "site-a").id == first.id
    assert not service.commit_version(ctx, vid)
    assert not service.release_staging(ctx, vid)
    second = service.store_version(ctx, vid, "site-b")
    assert second.barcode.startswith("B") and second.barcode != first.barcode
    assert second.path == f"/t1/{aip_id}/v1.tar"
    assert service.commit_version(ctx, vid)
    with session_scope(ctx.sessions) as s:
        assert s.get_one(AIP, aip_id).state == AIPState.ACTIVE
        staging = Path(s.get_one(AIPVersion, vid).staging_path or "")
    assert service.release_staging(ctx, vid)
    assert not staging.exists()
    outcomes = [(e.outcome, e.objects["barcode"]) for e in events(ctx, "replication")]
    assert outcomes == [("success", first.barcode), ("success", second.barcode)]
    finish(ctx, tmp_path)


def test_consecutive_stores_keep_the_cartridge_mounted(ctx: Context, tmp_path: Path) -> None:
    versions = [make_version(ctx)[0] for _ in range(4)]
    for vid in versions:
        store_and_commit(ctx, vid)
    assert library(ctx, "site-a").stats.mounts == 1
    barcodes = {c.barcode for vid in versions for c in copies(ctx, vid) if c.site == "site-a"}
    assert barcodes == {"A00001L9"}
    listing = {c["barcode"]: c for c in service.list_cartridges(ctx, "site-a")}
    assert listing["A00001L9"]["state"] == "filling"
    assert listing["A00001L9"]["copies"] == {"verified": 4}
    shown = service.show_cartridge(ctx, "A00001L9")
    blocks = [c["start_block"] for c in shown["contents"]]
    assert blocks == sorted(blocks) and len(blocks) == 4
    finish(ctx, tmp_path)


# -- faults at store time --------------------------------------------------------------------


def test_store_measures_the_host_feed_not_the_simulated_drive(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = itertools.count()  # a host that hands the drive one chunk a second
    monkeypatch.setattr(service, "FeedMeter", lambda: FeedMeter(clock=lambda: float(next(ticks))))
    vid, _ = make_version(ctx, size=3 * MIB)
    service.store_version(ctx, vid, "site-a")
    stats = get_site(ctx, "site-a").stats
    assert stats.min_tape_rate is not None and stats.min_tape_rate > 177e6  # nominal, always
    assert stats.min_host_feed is not None and stats.min_host_feed < 177e6  # what a drive sees
    assert stats.min_host_feed == pytest.approx(stats.bytes_written / 1.0)


def test_read_error_on_read_back_moves_to_another_cartridge(ctx: Context, tmp_path: Path) -> None:
    library(ctx).faults("A00001L9").read_errors.add((1, FIRST_DATA_BLOCK + 1))
    vid, _ = make_version(ctx)
    store_and_commit(ctx, vid)
    rows = [c for c in copies(ctx, vid) if c.site == "site-a"]
    assert [(c.barcode, c.status) for c in rows] == [
        ("A00001L9", CopyStatus.FAILED),
        ("A00002L9", CopyStatus.VERIFIED),
    ]
    assert "read-back failed" in (rows[0].error or "")
    assert cartridge(ctx, "A00001L9").errors == 1
    assert [e.outcome for e in events(ctx, "replication")].count("failure") == 1
    finish(ctx, tmp_path)


def test_silent_bit_flip_is_caught_by_read_back(ctx: Context, tmp_path: Path) -> None:
    library(ctx, "site-b").faults("B00001L9").bit_flips.add((1, FIRST_DATA_BLOCK))
    vid, _ = make_version(ctx)
    store_and_commit(ctx, vid)
    rows = [c for c in copies(ctx, vid) if c.site == "site-b"]
    assert [c.status for c in rows] == [CopyStatus.FAILED, CopyStatus.VERIFIED]
    assert "sha256" in (rows[0].error or "")
    finish(ctx, tmp_path)


def test_damaged_staging_tar_is_never_stored_and_no_cartridge_is_blamed(ctx: Context) -> None:
    """The index takes the recorded sha256 unhashed; the read-back is what must catch this."""
    vid, _ = make_version(ctx)
    with session_scope(ctx.sessions) as s:
        tar_path = Path(s.get_one(AIPVersion, vid).staging_path or "")
    data = bytearray(tar_path.read_bytes())
    data[len(data) // 2] ^= 0x01  # decay in the staging area after packaging
    tar_path.write_bytes(bytes(data))
    with pytest.raises(FixityMismatchError, match="source is damaged"):
        service.store_version(ctx, vid, "site-a")
    [row] = copies(ctx, vid)
    assert row.status is CopyStatus.FAILED and row.error == "the staging tar changed"
    assert cartridge(ctx, row.barcode).errors == 0  # the medium is not at fault
    assert not service.commit_version(ctx, vid)


def test_permanent_write_error_spills_and_repair_evacuates(ctx: Context, tmp_path: Path) -> None:
    before, _ = make_version(ctx)
    store_and_commit(ctx, before)  # a good copy on A00001L9 first
    library(ctx).faults("A00001L9").write_error_after = 0  # now the drive cannot write it
    vid, _ = make_version(ctx)
    store_and_commit(ctx, vid)
    a_rows = [c for c in copies(ctx, vid) if c.site == "site-a"]
    assert [(c.barcode, c.status) for c in a_rows] == [
        ("A00001L9", CopyStatus.FAILED),
        ("A00002L9", CopyStatus.VERIFIED),
    ]
    assert cartridge(ctx, "A00001L9").state == CartridgeState.SUSPECT
    report = finish(ctx, tmp_path)
    # The earlier, still readable copy on the suspect cartridge was rebuilt elsewhere.
    assert [(r["version_id"], r["site"]) for r in report.rebuilt] == [(before, "site-a")]
    assert "A00001L9" in report.cartridges_retired
    old = [c for c in copies(ctx, before) if c.barcode == "A00001L9"]
    assert [c.status for c in old] == [CopyStatus.DISCARDED]


def test_tape_shorter_than_nominal_spills_to_next_cartridge(ctx: Context, tmp_path: Path) -> None:
    first, _ = make_version(ctx)
    store_and_commit(ctx, first)
    device = library(ctx).mounted()["A00001L9"]
    space = device.status().partitions[1]
    assert space.capacity is not None and space.remaining is not None
    used = space.capacity - space.remaining
    library(ctx).faults("A00001L9").capacity[1] = used + 300_000  # physically ends soon
    second, _ = make_version(ctx)
    store_and_commit(ctx, second)
    a_rows = [c for c in copies(ctx, second) if c.site == "site-a"]
    assert [(c.barcode, c.status) for c in a_rows] == [
        ("A00001L9", CopyStatus.DISCARDED),
        ("A00002L9", CopyStatus.VERIFIED),
    ]
    assert cartridge(ctx, "A00001L9").state == CartridgeState.FULL
    third, _ = make_version(ctx)
    store_and_commit(ctx, third)  # a full cartridge is not tried again
    assert [c.barcode for c in copies(ctx, third) if c.site == "site-a"] == ["A00002L9"]
    report = finish(ctx, tmp_path)
    assert report.rebuilt == []


class _Crash(BaseException):
    """The process dies here: no except/finally of ours may tidy up (not an Exception)."""


def _restart(ctx: Context) -> Context:
    """What a new worker process sees after the old one was killed."""
    for site in ctx.settings.sites:
        get_site(ctx, site).library.close(unload=False)
    ctx.close()
    fresh = open_context(ctx.settings)
    build_sites(fresh, durability="none")
    return fresh


def test_crash_mid_write_then_rerun_is_consistent(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done, _ = make_version(ctx)
    store_and_commit(ctx, done)
    vid, aip_id = make_version(ctx, size=2 * MIB)
    original = EmulatedTapeDevice.write_block
    calls = {"n": 0}

    def dying_write(self: EmulatedTapeDevice, data: bytes | bytearray | memoryview) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # in the middle of the file's data, before any index
            raise _Crash()
        original(self, data)

    monkeypatch.setattr(EmulatedTapeDevice, "write_block", dying_write)
    with pytest.raises(_Crash):
        service.store_version(ctx, vid, "site-a")
    monkeypatch.setattr(EmulatedTapeDevice, "write_block", original)
    assert [c.status for c in copies(ctx, vid)] == [CopyStatus.WRITING]  # visible, not counted
    ctx = _restart(ctx)
    try:
        assert not service.commit_version(ctx, vid)
        store_and_commit(ctx, vid)
        statuses = [(c.site, c.status) for c in copies(ctx, vid)]
        assert statuses == [
            ("site-a", CopyStatus.DISCARDED),
            ("site-a", CopyStatus.VERIFIED),
            ("site-b", CopyStatus.VERIFIED),
        ]
        with session_scope(ctx.sessions) as s:
            assert s.get_one(AIP, aip_id).state == AIPState.ACTIVE
        finish(ctx, tmp_path)
    finally:
        service.release_drives(ctx)
        ctx.close()


def test_crash_after_index_sync_adopts_the_written_file(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vid, _ = make_version(ctx)

    def crash(*_args: object) -> None:
        raise _Crash()

    monkeypatch.setattr(service, "read_back", crash)
    with pytest.raises(_Crash):
        service.store_version(ctx, vid, "site-a")
    monkeypatch.undo()
    ctx = _restart(ctx)
    try:
        store_and_commit(ctx, vid)
        a_rows = [c for c in copies(ctx, vid) if c.site == "site-a"]
        assert [(c.barcode, c.status) for c in a_rows] == [
            ("A00001L9", CopyStatus.DISCARDED),
            ("A00001L9", CopyStatus.VERIFIED),
        ]
        assert get_site(ctx, "site-a").stats.files_written == 0  # verified, not rewritten
        finish(ctx, tmp_path)
    finally:
        service.release_drives(ctx)
        ctx.close()


_KILLED_STORE = """
import sys
from pathlib import Path
from preservation.config import Settings
from preservation.context import open_context
from preservation.storage import service
from preservation.storage.sites import build_sites
MIB = 1 << 20
ctx = open_context(Settings(home=Path(sys.argv[1]), tape_capacity=64 * MIB,
                            tape_cartridges_per_site=4, tape_drives_per_site=2))
build_sites(ctx, durability="none")
service.store_version(ctx, int(sys.argv[2]), "site-a")
"""


@pytest.mark.parametrize("point", ["store", "verify"])
def test_sigkill_between_write_and_verified_is_never_counted(
    ctx: Context, tmp_path: Path, point: str
) -> None:
    vid, aip_id = make_version(ctx)
    service.release_drives(ctx)
    env = dict(os.environ, PRESERVATION_FAILPOINTS=point, PRESERVATION_FAILPOINT_DIR=str(tmp_path))
    # A session of its own: the failpoint SIGKILLs its whole process group.
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_STORE, str(ctx.settings.home), str(vid)],
        env=env,
        start_new_session=True,
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert (tmp_path / f"{point}.fired").exists()
    ctx = _restart(ctx)
    try:
        assert [c.status for c in copies(ctx, vid)] == [CopyStatus.WRITING]
        assert not service.commit_version(ctx, vid)
        store_and_commit(ctx, vid)
        a_rows = [c for c in copies(ctx, vid) if c.site == "site-a"]
        assert [c.status for c in a_rows] == [CopyStatus.DISCARDED, CopyStatus.VERIFIED]
        assert a_rows[0].barcode == a_rows[1].barcode  # the synced file adopted after a read
        assert get_site(ctx, "site-a").stats.files_written == 0
        with session_scope(ctx.sessions) as s:
            assert s.get_one(AIP, aip_id).state == AIPState.ACTIVE
        finish(ctx, tmp_path)
    finally:
        service.release_drives(ctx)
        ctx.close()


def test_wrong_cartridge_in_drive_is_never_written(ctx: Context, tmp_path: Path) -> None:
    lib = library(ctx)
    intruder = EmulatedCartridge(lib.cartridge_path("A00003L9"))
    lib.faults("A00001L9").swap_cartridge = intruder
    vid, _ = make_version(ctx)
    store_and_commit(ctx, vid)
    assert [c.barcode for c in copies(ctx, vid) if c.site == "site-a"] == ["A00002L9"]
    assert cartridge(ctx, "A00001L9").errors == 0  # the library's mix-up, not the medium's
    assert cartridge(ctx, "A00003L9").state == CartridgeState.SCRATCH
    assert sorted(p.name for p in intruder.path.glob("[01]_*")) == ["0_0_E", "1_0_E"]
    finish(ctx, tmp_path)


def test_wrong_cartridge_on_recall_falls_back_and_never_fails_the_medium(
    ctx: Context, tmp_path: Path
) -> None:
    versions = [make_version(ctx) for _ in range(2)]
    for vid, _ in versions:
        store_and_commit(ctx, vid)
    service.release_drives(ctx)
    a_copies = [c for vid, _ in versions for c in copies(ctx, vid) if c.site == "site-a"]
    assert {c.barcode for c in a_copies} == {"A00001L9"}
    lib = library(ctx)
    intruder = EmulatedCartridge(lib.cartridge_path("A00003L9"))
    lib.faults("A00001L9").swap_cartridge = intruder
    for _ in range(2):  # more mix-ups than it takes a faulty medium to be failed
        for _vid, aip_id in versions:
            assert recovery.recover(ctx, aip_id, dest_dir=tmp_path / f"r{next(_counter)}").is_dir()
    for c in a_copies:
        audit = recovery.audit_copy(ctx, c.id)
        assert not audit.ok and "holds A00003L9" in audit.detail
    held = cartridge(ctx, "A00001L9")
    assert held.state not in BAD_CARTRIDGE_STATES and held.errors == 0
    assert all(c.status == CopyStatus.VERIFIED for vid, _ in versions for c in copies(ctx, vid))
    report = recovery.repair(ctx)
    assert report.ok and report.rebuilt == [] and report.cartridges_failed == []
    lib.faults("A00001L9").swap_cartridge = None  # the operator put the right cartridge back
    assert all(recovery.audit_copy(ctx, c.id).ok for c in a_copies)
    assert sorted(p.name for p in intruder.path.glob("[01]_*")) == ["0_0_E", "1_0_E"]
    finish(ctx, tmp_path)


# -- faults found later, by reads ------------------------------------------------------------


def test_read_error_on_recall_falls_back_and_repair_rebuilds(ctx: Context, tmp_path: Path) -> None:
    vid, aip_id = make_version(ctx)
    store_and_commit(ctx, vid)
    service.release_drives(ctx)
    library(ctx).faults("A00001L9").read_errors.add((1, FIRST_DATA_BLOCK))
    bag = recovery.recover(ctx, aip_id, dest_dir=tmp_path / "r1")  # served by site-b
    assert bag.is_dir()
    failed = [c for c in copies(ctx, vid) if c.status == CopyStatus.FAILED]
    assert [c.barcode for c in failed] == ["A00001L9"]
    report = finish(ctx, tmp_path)
    assert [(r["site"], r["replaces"]) for r in report.rebuilt] == [("site-a", [failed[0].id])]
    assert report.discarded == [failed[0].id]


def test_bit_flip_found_by_audit_is_repaired(ctx: Context, tmp_path: Path) -> None:
    vid, _ = make_version(ctx)
    store_and_commit(ctx, vid)
    b_copy = next(c for c in copies(ctx, vid) if c.site == "site-b")
    library(ctx, "site-b").faults(b_copy.barcode).bit_flips.add((1, FIRST_DATA_BLOCK + 1))
    result = recovery.audit_copy(ctx, b_copy.id)
    assert not result.ok and "sha256" in result.detail
    report = finish(ctx, tmp_path)
    assert len(report.rebuilt) == 1 and report.rebuilt[0]["barcode"] != b_copy.barcode
    checks = [e.outcome for e in events(ctx, "fixity check")]
    assert "failure" in checks


def test_unreadable_cartridge_is_evacuated_in_position_order(ctx: Context, tmp_path: Path) -> None:
    versions = [make_version(ctx)[0] for _ in range(3)]
    for vid in versions:
        store_and_commit(ctx, vid)
    for vid in versions:
        assert service.release_staging(ctx, vid)  # repair must read from site-b
    service.release_drives(ctx)
    library(ctx).faults("A00001L9").unreadable = True
    assert_all_readable(ctx, tmp_path)  # every recall falls back to site-b
    assert cartridge(ctx, "A00001L9").state == CartridgeState.SUSPECT
    service.release_drives(ctx)
    mounts_before = library(ctx, "site-b").stats.mounts
    report = recovery.repair(ctx)
    assert library(ctx, "site-b").stats.mounts - mounts_before == 1  # source mounted once
    assert [r["version_id"] for r in report.rebuilt] == versions  # the old tape's order
    assert {r["barcode"] for r in report.rebuilt} == {"A00002L9"}
    assert all(r["source"].startswith("copy") for r in report.rebuilt)
    assert report.cartridges_retired == ["A00001L9"]
    finish(ctx, tmp_path)


def test_cartridge_failing_repeatedly_is_failed_and_rebuilt(ctx: Context, tmp_path: Path) -> None:
    versions = [make_version(ctx)[0] for _ in range(2)]
    for vid in versions:
        store_and_commit(ctx, vid)
    states = [service.note_cartridge_error(ctx, "B00001L9", ErrorKind.READ) for _ in range(3)]
    assert states == [CartridgeState.FILLING, CartridgeState.FILLING, CartridgeState.FAILED]
    report = finish(ctx, tmp_path)
    assert sorted(r["version_id"] for r in report.rebuilt) == versions
    assert cartridge(ctx, "B00001L9").state == CartridgeState.RETIRED


def test_site_down_keeps_aip_pending_until_both_copies(ctx: Context, tmp_path: Path) -> None:
    site_b = get_site(ctx, "site-b")
    site_b.mark_down("fibre cut")
    vid, aip_id = make_version(ctx)
    service.store_version(ctx, vid, "site-a")
    with pytest.raises(SiteUnavailableError, match="fibre cut"):
        service.store_version(ctx, vid, "site-b")
    assert not service.commit_version(ctx, vid)
    assert not service.release_staging(ctx, vid)
    with session_scope(ctx.sessions) as s:
        assert s.get_one(AIP, aip_id).state == AIPState.PENDING
    assert recovery.recover(ctx, aip_id, dest_dir=tmp_path / "r").is_dir()  # site-a serves
    report = recovery.repair(ctx)
    assert not report.ok and report.skipped[0]["site"] == "site-b"
    site_b.mark_up()
    report = finish(ctx, tmp_path)  # repair writes site-b from the staging tar
    assert [(r["site"], r["source"]) for r in report.rebuilt] == [("site-b", "staging")]
    assert [r["aip_id"] for r in report.ready] == [aip_id]  # for the commit stage
    with session_scope(ctx.sessions) as s:
        assert s.get_one(AIP, aip_id).state == AIPState.PENDING  # repair never activates
    assert service.commit_version(ctx, vid)
    with session_scope(ctx.sessions) as s:
        assert s.get_one(AIP, aip_id).state == AIPState.ACTIVE


def _both_sites_down_at_ingest(ctx: Context) -> tuple[int, str]:
    vid, aip_id = make_version(ctx)
    for site in ctx.settings.sites:
        get_site(ctx, site).mark_down("power cut")
        with pytest.raises(SiteUnavailableError):
            service.store_version(ctx, vid, site)
        get_site(ctx, site).mark_up()
    assert copies(ctx, vid) == []
    return vid, aip_id


def test_repair_completes_a_pending_version_with_no_copy_at_all(
    ctx: Context, tmp_path: Path
) -> None:
    vid, aip_id = _both_sites_down_at_ingest(ctx)
    report = recovery.repair(ctx)
    assert report.ok, report.to_dict()
    assert sorted((r["site"], r["source"]) for r in report.rebuilt) == [
        ("site-a", "staging"),
        ("site-b", "staging"),
    ]
    assert_two_safe_copies(ctx)
    with session_scope(ctx.sessions) as s:
        sip_id = s.get_one(AIP, aip_id).sip_id
    assert report.ready == [{"version_id": vid, "aip_id": aip_id, "number": 1, "sip_id": sip_id}]
    assert service.commit_version(ctx, vid)
    assert service.release_staging(ctx, vid)
    finish(ctx, tmp_path)


def _damage(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))


def _staging(ctx: Context, vid: int) -> Path:
    with session_scope(ctx.sessions) as s:
        return Path(s.get_one(AIPVersion, vid).staging_path or "")


def test_damaged_staging_tar_is_checked_before_anything_is_written(
    ctx: Context, tmp_path: Path
) -> None:
    site_b = get_site(ctx, "site-b")
    site_b.mark_down("maintenance")
    vid, _ = make_version(ctx)
    service.store_version(ctx, vid, "site-a")
    site_b.mark_up()
    _damage(_staging(ctx, vid))
    report = finish(ctx, tmp_path)
    assert [(r["site"], r["source"][:4]) for r in report.rebuilt] == [("site-b", "copy")]
    assert [c.status for c in copies(ctx, vid) if c.site == "site-b"] == [CopyStatus.VERIFIED]

    lost, _ = _both_sites_down_at_ingest(ctx)
    _damage(_staging(ctx, lost))
    report = recovery.repair(ctx)
    assert sorted((f["version_id"], f["site"]) for f in report.failed) == [
        (lost, "site-a"),
        (lost, "site-b"),
    ]
    assert all("damaged" in f["error"] for f in report.failed)
    assert copies(ctx, lost) == []  # not one byte of the bad tar went to tape


def test_stale_writing_row_is_discarded_so_a_suspect_cartridge_retires(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vid, _ = make_version(ctx)
    store_and_commit(ctx, vid)

    def crash(*_args: object) -> None:
        raise _Crash()

    # A second delivery of the store task dies as it starts writing; nothing will
    # ever rerun it, since the version is already whole at site-a.
    monkeypatch.setattr(service, "_write_file", crash)
    with pytest.raises(_Crash):
        service.write_copy(ctx, vid, "site-a", _staging(ctx, vid))
    monkeypatch.undo()
    ctx = _restart(ctx)
    try:
        (stale,) = [c for c in copies(ctx, vid) if c.status == CopyStatus.WRITING]
        assert stale.barcode == "A00002L9"
        service.note_cartridge_error(ctx, "A00002L9", ErrorKind.WRITE)
        assert cartridge(ctx, "A00002L9").state == CartridgeState.SUSPECT

        report = recovery.repair(ctx)  # within the grace period: perhaps a live write
        assert report.stale_writes == [] and report.cartridges_retired == []

        lock = library(ctx).lock_dir / "A00002L9.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another process has the cartridge in a drive
            report = recovery.repair(ctx, grace_seconds=0)
            assert report.stale_writes == [] and report.cartridges_retired == []
        finally:
            os.close(fd)

        report = recovery.repair(ctx, grace_seconds=0)
        assert report.stale_writes == [stale.id]
        assert report.cartridges_retired == ["A00002L9"]
        assert [c.status for c in copies(ctx, vid) if c.id == stale.id] == [CopyStatus.DISCARDED]
        finish(ctx, tmp_path)
    finally:
        service.release_drives(ctx)
        ctx.close()


# -- idle tape workers give their drives back ---------------------------------------------------


def test_idle_tape_worker_gives_its_drives_to_another_process(ctx: Context, tmp_path: Path) -> None:
    sites = build_sites(ctx, durability="none", idle_seconds=0.3)
    vid, aip_id = make_version(ctx)
    store_and_commit(ctx, vid)
    wait_for(
        lambda: all(
            s.stats.idle_unmounts == 1 and not s.idle_thread_running for s in sites.values()
        ),
        "both sites to go idle",
    )
    for site in sites.values():
        assert site.mounted_barcodes() == set()
    other = open_context(ctx.settings)  # the audit worker, or `preservation recover`
    build_sites(other, durability="none", idle_seconds=0)
    try:
        for copy in copies(other, vid):
            site = get_site(other, copy.site)
            with site.lock:
                volume, _ = site.open_volume(copy.barcode)
                assert volume.index_partition_current  # unmounted cleanly when idle
            assert recovery.audit_copy(other, copy.id).ok
        bag = recovery.recover(other, aip_id, dest_dir=tmp_path / "recovered")
        assert (bag / "data" / "payload.bin").stat().st_size == 700_000
    finally:
        other.close()


def test_back_to_back_stores_share_one_mount_until_the_worker_idles(
    ctx: Context, tmp_path: Path
) -> None:
    sites = build_sites(ctx, durability="none", idle_seconds=600)
    aip_ids = []
    for _ in range(3):
        vid, aip_id = make_version(ctx)
        store_and_commit(ctx, vid)
        aip_ids.append(aip_id)
    for site in sites.values():
        mounts = library(ctx, site.name).stats.mounts
        assert (mounts, site.stats.mounts, site.stats.unmounts) == (1, 1, 0)
        assert site.idle_release_pending
    other = open_context(ctx.settings)
    build_sites(other, durability="none", idle_seconds=0)
    try:
        # A worker still in its batch holds both cartridges: every copy is busy.
        with pytest.raises(SiteUnavailableError, match="in use by another process"):
            recovery.recover(other, aip_ids[0], dest_dir=tmp_path / "too-early")
    finally:
        other.close()
    ctx.close()  # a worker's clean stop ends the batch and the idle timers
    for site in sites.values():
        assert not site.idle_thread_running and not site.idle_release_pending
        assert site.stats.unmounts == 1 and site.stats.idle_unmounts == 0
        assert site.mounted_barcodes() == set()


def test_idle_release_never_interrupts_a_slow_store(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sites = build_sites(ctx, durability="none", idle_seconds=0.3)
    first, _ = make_version(ctx)
    store_and_commit(ctx, first)  # the idle clock runs from here
    site = sites["site-a"]
    real = service._read_chunks
    seen: list[tuple[set[str], int]] = []

    def slow(path: Path, on_handoff: Callable[[int], None]) -> Iterator[memoryview]:
        for chunk in real(path, on_handoff):
            yield chunk
            time.sleep(0.5)  # each pause alone outlasts the idle time
            seen.append((site.mounted_barcodes(), site.stats.idle_unmounts))

    monkeypatch.setattr(service, "_read_chunks", slow)
    second, _ = make_version(ctx, size=13_000_000)  # four 4 MiB hand-offs
    info = service.store_version(ctx, second, "site-a")
    monkeypatch.undo()
    assert info.status == CopyStatus.VERIFIED.value
    assert len(seen) >= 3
    assert seen == [({info.barcode}, seen[0][1])] * len(seen)  # mounted throughout, no release
    service.store_version(ctx, second, "site-b")
    assert service.commit_version(ctx, second)
    finish(ctx, tmp_path)
