"""`preservation media migrate`: one site's archive rewritten from LTO-7 to LTO-9.

Real ingests on the embedded default with ``PRESERVATION_TAPE_MEDIA=L7`` (two
tenants, one AIP with two versions, one disposed of, two old cartridges in
use at site-a), then the libraries restocked with L9 cartridges beside the old
ones (``PRESERVATION_TAPE_MEDIA=L9``) and site-a migrated through the command,
in process or as a real subprocess killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from preservation import versions
from preservation.catalog import AIP, AIPState, Cartridge, CopyStatus, session_scope
from preservation.catalog.models import AIPVersion, CartridgeState, PremisEvent, TapeCopy, utcnow
from preservation.cli import app
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.ingest import run_ingest
from preservation.storage.disposal import remove_aip_copies
from preservation.storage.service import release_drives

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
MIGRATE = ["media", "migrate", "--site", "site-a", "--from", "L7", "--to", "L9"]


@dataclass
class Archive:
    home: Path
    museum: str  # two versions, on A00001L7
    library: str  # the second tenant, on A00001L7
    late: str  # on A00002L7, beside the disposed one
    disposed: str  # on A00002L7, disposed of

    @property
    def live(self) -> list[tuple[str, int]]:
        return [(self.museum, 1), (self.museum, 2), (self.library, 1), (self.late, 1)]


def _ingest(ctx: Context, tenant: str) -> str:
    result = run_ingest(ctx, SAMPLE, tenant=tenant)
    assert result.state == "committed", result.problems
    assert result.aip_id
    return result.aip_id


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_TAPE_CARTRIDGES_PER_SITE", "3")
    monkeypatch.setenv("PRESERVATION_TAPE_CAPACITY", str(256 << 20))
    monkeypatch.setenv("PRESERVATION_SITE_WAIT_SECONDS", "0")
    monkeypatch.setenv("PRESERVATION_TAPE_MEDIA", "L7")
    ctx = open_context(Settings())
    try:
        museum = _ingest(ctx, "museum")
        library = _ingest(ctx, "library")
        info = versions.prepare_metadata_version(
            ctx, museum, [("title", "Second version")], tenant_id=None, who="curator"
        )
        assert versions.run_version(ctx, info.version_id, wait_seconds=0)
        release_drives(ctx)
        with session_scope(ctx.sessions) as s:  # A00001L7 reached its end: the next one fills
            s.execute(
                update(Cartridge)
                .where(Cartridge.barcode == "A00001L7")
                .values(state=CartridgeState.FULL)
            )
        late = _ingest(ctx, "museum")
        disposed = _ingest(ctx, "library")
        with session_scope(ctx.sessions) as s:
            aip = s.get_one(AIP, disposed)
            aip.state, aip.disposed_at = AIPState.DISPOSED, utcnow()
        assert remove_aip_copies(ctx, disposed).done
        release_drives(ctx)
    finally:
        ctx.close()
    monkeypatch.setenv("PRESERVATION_TAPE_MEDIA", "L9")  # new blank cartridges beside the old
    yield Archive(home, museum, library, late, disposed)


def _catalogue(home: Path, query: Any) -> list[Any]:
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            rows = list(s.execute(query).all())
            s.expunge_all()
            return rows
    finally:
        ctx.close()


def _copies(home: Path) -> list[Any]:
    """Every copy row with its AIP and version number."""
    return _catalogue(
        home,
        select(
            TapeCopy.id,
            AIPVersion.aip_id,
            AIPVersion.number,
            TapeCopy.site,
            TapeCopy.barcode,
            TapeCopy.status,
            TapeCopy.start_block,
            TapeCopy.length,
        )
        .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
        .order_by(TapeCopy.id),
    )


def _cartridges(home: Path) -> dict[str, tuple[str, int]]:
    return {
        b: (str(state.value), mounts)
        for b, state, mounts in _catalogue(
            home, select(Cartridge.barcode, Cartridge.state, Cartridge.mounts)
        )
    }


def migrate(*extra: str, code: int = 0) -> dict[str, Any]:
    result = CliRunner().invoke(app, [*MIGRATE, *extra, "--json"])
    assert result.exit_code == code, (result.exit_code, result.output)
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def _check_migrated(archive: Archive, site_b_before: list[Any]) -> None:
    """Every live version: one verified copy per site, site-a's on L9; site-b as it was."""
    copies = _copies(archive.home)
    for aip_id, number in archive.live:
        verified = [
            c
            for c in copies
            if (c.aip_id, c.number) == (aip_id, number) and c.status == CopyStatus.VERIFIED
        ]
        assert sorted(c.site for c in verified) == ["site-a", "site-b"], (aip_id, number, verified)
        [a] = [c for c in verified if c.site == "site-a"]
        assert a.barcode.endswith("L9") and a.barcode.startswith("A"), a
    assert not [c for c in copies if c.status == CopyStatus.WRITING]
    # The disposed AIP was never copied to the new generation.
    assert not [c for c in copies if c.aip_id == archive.disposed and c.barcode.endswith("L9")]
    assert [c for c in copies if c.site == "site-b"] == site_b_before
    cartridges = _cartridges(archive.home)
    for barcode in ("A00001L7", "A00002L7", "A00003L7"):
        assert cartridges[barcode][0] == "retired", (barcode, cartridges[barcode])
    assert cartridges["B00001L7"][0] == "filling"
    assert all(cartridges[f"B0000{n}L9"][0] == "scratch" for n in (1, 2, 3))


def _recover_all(archive: Archive, tmp_path: Path) -> None:
    """With site-b down, each live version comes back whole from site-a's new cartridges."""
    flag = archive.home / "tape" / "site-b" / "DOWN"
    flag.write_text("proving site-a alone")
    try:
        for aip_id, number in archive.live:
            result = CliRunner().invoke(
                app,
                ["recover", aip_id, "--version", str(number), "--to", str(tmp_path / "out")],
            )
            assert result.exit_code == 0, result.output
            assert (tmp_path / "out" / f"{aip_id}.v{number}" / "bagit.txt").is_file()
    finally:
        flag.unlink()


def _journal_barcodes(home: Path, site: str) -> list[str]:
    from preservation.catalog.models import JournalCopy

    query = select(JournalCopy.barcode).where(JournalCopy.site == site)
    return [b for (b,) in _catalogue(home, query)]


def test_migrates_site_a_to_l9_cartridge_by_cartridge(archive: Archive, tmp_path: Path) -> None:
    from preservation.evidence.sync import sync_journal

    ctx = open_context(Settings())
    try:  # the history on tape beside the AIPs, as each sync leaves it
        assert sync_journal(ctx).files_written
        release_drives(ctx)
    finally:
        ctx.close()
    assert all(b.endswith("L7") for b in _journal_barcodes(archive.home, "site-a"))
    before = _copies(archive.home)
    site_b_before = [c for c in before if c.site == "site-b"]
    mounts_before = _cartridges(archive.home)
    old_order = [
        (c.aip_id, c.number)
        for c in sorted(
            (c for c in before if c.barcode == "A00001L7" and c.status == CopyStatus.VERIFIED),
            key=lambda c: c.start_block,
        )
    ]
    assert len(old_order) == 3

    body = migrate()
    assert body["done"] is True and body["remaining"] == 0 and body["failed"] == []
    assert body["versions_copied"] == 4 and len(body["copies"]) == 4
    sizes = {(c.aip_id, c.number): c.length for c in before if c.site == "site-a"}
    assert body["bytes_copied"] == sum(sizes[v] for v in archive.live)
    assert body["skipped_disposed"] == 1
    assert body["reclaimed_bytes"] == sizes[(archive.disposed, 1)]
    assert body["cartridges_sealed"] == ["A00002L7", "A00003L7"]  # A00001L7 was full already
    assert body["cartridges_retired"] == ["A00001L7", "A00002L7", "A00003L7"]
    assert body["elapsed_seconds"] >= 0
    _check_migrated(archive, site_b_before)

    # Each old cartridge holding live copies was mounted once; the blank one never.
    after = _cartridges(archive.home)
    assert {b: v for b, v in after.items() if b in mounts_before and b[0] == "B"} == {
        b: v for b, v in mounts_before.items() if b[0] == "B"
    }  # site-b was not even mounted
    assert after["A00001L7"][1] - mounts_before["A00001L7"][1] == 1
    assert after["A00002L7"][1] - mounts_before["A00002L7"][1] == 1
    assert after["A00003L7"][1] == mounts_before["A00003L7"][1]
    # Written in the old cartridge's own order.
    new = sorted(
        (
            c
            for c in _copies(archive.home)
            if c.site == "site-a" and c.status == CopyStatus.VERIFIED
        ),
        key=lambda c: (c.barcode, c.start_block),
    )
    assert [(c.aip_id, c.number) for c in new][:3] == old_order
    # The old rows say where their copy went.
    old_rows = [c for c in _copies(archive.home) if c.barcode.startswith("A") and "L7" in c.barcode]
    assert {c.status for c in old_rows} <= {CopyStatus.DISCARDED, CopyStatus.DISPOSED}

    # One PREMIS replication event per version, naming both cartridges.
    events = _catalogue(
        archive.home,
        select(PremisEvent.aip_id, PremisEvent.detail, PremisEvent.outcome).where(
            PremisEvent.type == "replication", PremisEvent.detail.like("media migration%")
        ),
    )
    assert len(events) == 4 and all(e.outcome == "success" for e in events)
    assert all("from cartridge A0000" in e.detail and "L9" in e.detail for e in events)

    # The journal's files left the retired cartridges with the AIPs.
    journal_a = _journal_barcodes(archive.home, "site-a")
    assert journal_a and all(b.endswith("L9") for b in journal_a)
    history = CliRunner().invoke(app, ["verify-history", "--json"])
    assert history.exit_code == 0 and json.loads(history.stdout)["ok"] is True

    _recover_all(archive, tmp_path)

    # Nothing left to do; new ingests at site-a go to the new generation.
    again = migrate()
    assert again["versions_copied"] == 0 and again["done"] is True
    ctx = open_context(Settings())
    try:
        fresh = _ingest(ctx, "museum")
        release_drives(ctx)
    finally:
        ctx.close()
    [a_copy] = [c for c in _copies(archive.home) if c.aip_id == fresh and c.site == "site-a"]
    assert a_copy.barcode.endswith("L9")


def test_refuses_when_site_b_lacks_a_verified_copy(archive: Archive) -> None:
    ctx = open_context(Settings())
    try:
        with session_scope(ctx.sessions) as s:
            [row] = s.scalars(
                select(TapeCopy)
                .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
                .where(AIPVersion.aip_id == archive.library, TapeCopy.site == "site-b")
            )
            row.status = CopyStatus.FAILED
            row.error = "audit: sha256 mismatch (test)"
    finally:
        ctx.close()
    before = _copies(archive.home)
    cartridges = _cartridges(archive.home)
    body = migrate(code=1)
    assert body["error"] == "ConflictError" and body["rule"] == "verified-copy-elsewhere"
    assert body["missing"] == [{"aip_id": archive.library, "version": 1, "site": "site-b"}]
    assert archive.library in body["message"] and "v1" in body["message"]
    assert _copies(archive.home) == before  # nothing written, nothing switched
    after = _cartridges(archive.home)  # the L9 cartridges were registered, nothing sealed
    assert {b: after[b] for b in cartridges} == cartridges

    human = CliRunner().invoke(app, MIGRATE)
    assert human.exit_code == 1
    assert "verified-copy-elsewhere" in human.stderr and archive.library in human.stderr


def test_limit_bounds_a_run_and_the_next_run_continues(archive: Archive) -> None:
    site_b_before = [c for c in _copies(archive.home) if c.site == "site-b"]
    first = migrate("--limit", "2", code=3)
    assert first["versions_copied"] == 2 and first["remaining"] == 2 and not first["done"]
    assert {c["old_barcode"] for c in first["copies"]} == {"A00001L7"}
    # A00001L7 still holds a live version: sealed, not retired.
    assert _cartridges(archive.home)["A00001L7"][0] == "full"
    assert "A00001L7" not in first["cartridges_retired"]
    second = migrate("--limit", "2")
    assert second["versions_copied"] == 2 and second["remaining"] == 0 and second["done"]
    assert {c["aip_id"] for c in first["copies"] + second["copies"]} == {
        archive.museum,
        archive.library,
        archive.late,
    }
    assert set(second["cartridges_retired"]) == {"A00001L7", "A00002L7"}
    _check_migrated(archive, site_b_before)


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PRESERVATION_HOME": str(home), **extra}


@pytest.mark.parametrize("point", ["store", "media-switch"])
def test_a_migration_killed_with_sigkill_resumes(
    archive: Archive, tmp_path: Path, point: str
) -> None:
    site_b_before = [c for c in _copies(archive.home) if c.site == "site-b"]
    killed = subprocess.run(
        [sys.executable, "-m", "preservation.cli", *MIGRATE, "--json"],
        env=_env(
            archive.home,
            PRESERVATION_FAILPOINTS=point,
            PRESERVATION_FAILPOINT_DIR=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # the failpoint kills its whole process group, not pytest
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    copies = _copies(archive.home)
    new = [c for c in copies if c.site == "site-a" and c.barcode.endswith("L9")]
    if point == "store":  # the file is on tape and in the index, its row not yet verified
        assert [c.status for c in new] == [CopyStatus.WRITING]
    else:  # verified on L9, the old row not yet switched: both count, neither is lost
        assert [c.status for c in new] == [CopyStatus.VERIFIED]
    # Never a switched copy without its verified replacement.
    switched = [c for c in copies if c.status == CopyStatus.DISCARDED]
    assert switched == []
    assert _cartridges(archive.home)["A00001L7"][0] == "full"  # sealed before any copy

    resumed = subprocess.run(
        [sys.executable, "-m", "preservation.cli", *MIGRATE, "--json"],
        env=_env(archive.home, PRESERVATION_FAILPOINT_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    body = json.loads(resumed.stdout)
    assert body["done"] and len(body["copies"]) == 4
    _check_migrated(archive, site_b_before)
    if point == "store":  # the killed attempt's row was discarded, its whole file adopted
        rows = [
            c
            for c in _copies(archive.home)
            if c.site == "site-a" and c.barcode.endswith("L9") and c.id == new[0].id
        ]
        assert [r.status for r in rows] == [CopyStatus.DISCARDED]
    _recover_all(archive, tmp_path)


def test_an_unreadable_old_copy_is_read_from_the_other_site(archive: Archive) -> None:
    """A bit flipped on the old tape: the copy is failed for the record, site-b's bytes move."""
    from preservation.storage.media import migrate_media
    from preservation.storage.sites import get_site

    [old] = [
        c
        for c in _copies(archive.home)
        if (c.aip_id, c.number, c.site) == (archive.library, 1, "site-a")
    ]
    ctx = open_context(Settings())
    try:
        get_site(ctx, "site-a").library.faults(old.barcode).bit_flips.add((1, old.start_block))
        seen: list[tuple[str, int, int]] = []
        report = migrate_media(ctx, "site-a", "L7", "L9", progress=lambda *step: seen.append(step))
    finally:
        ctx.close()
    assert report.done and report.versions_copied == 4, report.failed
    assert ("versions", 4, 4) in seen and ("cartridges", 2, 2) in seen
    [row] = [c for c in _copies(archive.home) if c.id == old.id]
    assert row.status == CopyStatus.FAILED  # recorded as any bad read is, never discarded
    [fresh] = [
        c
        for c in _copies(archive.home)
        if (c.aip_id, c.number, c.site) == (archive.library, 1, "site-a")
        and c.status == CopyStatus.VERIFIED
    ]
    assert fresh.barcode.endswith("L9")
    assert _cartridges(archive.home)["A00001L7"][0] == "retired"
