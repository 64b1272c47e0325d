"""An approved disposal on tape: the AIP leaves both sites' LTFS indexes, its bytes stay.

Real ingests on the embedded default; the AIP is marked disposed in a
transaction as ``retention.approve_disposal`` does, then
``storage.disposal.remove_aip_copies`` carries it out. Every cartridge is then
read with a drive of its own, as another process (or another LTFS reader)
would find it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from preservation.catalog import AIP, AIPState, Cartridge, CopyStatus, service, session_scope
from preservation.catalog.models import AIPVersion, TapeCopy, utcnow
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import ConflictError, NotFoundError
from preservation.ingest import run_ingest
from preservation.storage import disposal
from preservation.storage.disposal import finish_disposals, remove_aip_copies
from preservation.storage.emulator import EmulatedCartridge, EmulatedTapeDevice
from preservation.storage.library import EmulatedLibrary
from preservation.storage.ltfs import LTFSVolume
from preservation.storage.recovery import recover, repair
from preservation.storage.service import list_cartridges, release_drives, show_cartridge

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"
SITES = ("site-a", "site-b")


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    c.close()


def _ingest(ctx: Context) -> str:
    result = run_ingest(ctx, SAMPLE, tenant="museum")
    assert result.state == "committed", result.problems
    assert result.aip_id
    return result.aip_id


def _mark_disposed(ctx: Context, aip_id: str) -> None:
    """The lead's decision, in its own transaction: tombstone and ``deletion`` event."""
    with session_scope(ctx.sessions) as s:
        aip = s.scalar(service.locked(select(AIP).where(AIP.id == aip_id)))
        assert aip is not None
        aip.state, aip.disposed_at = AIPState.DISPOSED, utcnow()
        service.record_event(
            s,
            tenant_id=aip.tenant_id,
            aip_id=aip.id,
            type="deletion",
            outcome="success",
            detail=f"AIP {aip.id} disposed of (test approval)",
        )


def _copies(ctx: Context, aip_id: str) -> list[dict[str, Any]]:
    with session_scope(ctx.sessions) as s:
        rows = s.execute(
            select(TapeCopy, AIPVersion.tar_size, AIPVersion.tar_sha256)
            .join(AIPVersion, AIPVersion.id == TapeCopy.aip_version_id)
            .where(AIPVersion.aip_id == aip_id)
            .order_by(TapeCopy.site, TapeCopy.id)
        ).all()
        return [
            {
                "site": c.site,
                "barcode": c.barcode,
                "path": c.path,
                "status": c.status,
                "size": size,
                "sha256": sha,
            }
            for c, size, sha in rows
        ]


def _cartridges(ctx: Context) -> dict[str, dict[str, Any]]:
    return {c["barcode"]: c for c in list_cartridges(ctx)}


def _fresh_volume(settings: Settings, site: str, barcode: str) -> LTFSVolume:
    """The cartridge through a drive of its own: nothing this process has in memory."""
    cartridge = EmulatedCartridge(settings.tape_dir / site / "cartridges" / barcode, barcode)
    device = EmulatedTapeDevice(cartridge, read_only=True)
    return LTFSVolume.mount(device, barcode, read_only=True)


def _deletions(ctx: Context, aip_id: str) -> list[Any]:
    with session_scope(ctx.sessions) as s:
        return [
            (e.detail, e.objects)
            for e in service.list_events(s, aip_id=aip_id)
            if e.type == "deletion" and e.objects.get("site")
        ]


def test_disposal_leaves_both_indexes_keeps_the_bytes_and_the_neighbours(
    ctx: Context, settings: Settings, tmp_path: Path
) -> None:
    gone, kept = _ingest(ctx), _ingest(ctx)
    copies = _copies(ctx, gone)
    assert {c["site"] for c in copies} == set(SITES)
    barcodes = {c["site"]: c["barcode"] for c in copies}
    assert {c["barcode"] for c in _copies(ctx, kept)} == set(barcodes.values())  # neighbours
    size, path = copies[0]["size"], f"/museum/{gone}/v1.tar"
    release_drives(ctx)  # end the ingest's batch: the removal must mount for itself
    before = _cartridges(ctx)
    generations = {s: _fresh_volume(settings, s, b).generation for s, b in barcodes.items()}

    _mark_disposed(ctx, gone)
    outcome = remove_aip_copies(ctx, gone)

    assert outcome.done and outcome.pending_sites == () and outcome.failed == ()
    assert sorted((r.site, r.barcode, r.path, r.bytes) for r in outcome.removed) == [
        (s, barcodes[s], path, size) for s in SITES
    ]
    assert outcome.reclaimable_bytes == 2 * size
    assert outcome.to_dict()["done"] is True
    assert {c["status"] for c in _copies(ctx, gone)} == {CopyStatus.DISPOSED}
    assert {c["status"] for c in _copies(ctx, kept)} == {CopyStatus.VERIFIED}
    after = _cartridges(ctx)
    for barcode in barcodes.values():
        assert after[barcode]["reclaimable"] == size
        assert after[barcode]["mounts"] == before[barcode]["mounts"] + 1  # one mount each
        # The bytes are still there: used and free, what the planner reads, do not move.
        assert (after[barcode]["used"], after[barcode]["free"]) == (
            before[barcode]["used"],
            before[barcode]["free"],
        )
        assert after[barcode]["copies"] == {"verified": 1, "disposed": 1}
    shown = show_cartridge(ctx, barcodes["site-a"])
    assert {(c["aip_id"], c["status"], c["aip_state"]) for c in shown["contents"]} == {
        (gone, "disposed", "disposed"),
        (kept, "verified", "active"),
    }

    # Each site's index, read afresh: a new generation without the AIP; the neighbour intact.
    release_drives(ctx)
    [kept_sha] = {c["sha256"] for c in _copies(ctx, kept)}
    for site, barcode in barcodes.items():
        volume = _fresh_volume(settings, site, barcode)
        assert volume.generation > generations[site]
        assert not volume.exists(path) and volume.listdir("/museum") == [kept]
        data = volume.read_bytes(f"/museum/{kept}/v1.tar")  # verifies the index's sha256
        assert hashlib.sha256(data).hexdigest() == kept_sha

    # One PREMIS deletion per site, naming site, cartridge and generation.
    events = _deletions(ctx, gone)
    assert sorted(o["site"] for _, o in events) == list(SITES)
    for detail, objects in events:
        site = objects["site"]
        [named] = objects["cartridges"]
        assert named["barcode"] == barcodes[site] and named["generation"] > generations[site]
        assert f"site {site}" in detail and f"generation {named['generation']}" in detail
    with session_scope(ctx.sessions) as s:
        assert service.verify_event_chain(s, "museum") == []

    # Everything else ignores the disposed AIP; the rest of the archive is whole.
    from preservation.audit import audit_copies

    audit = audit_copies(ctx)
    assert audit.clean and {c.aip_id for c in audit.copies} == {kept}
    report = repair(ctx)
    assert report.ok and not report.rebuilt and report.disposals == []
    with pytest.raises(NotFoundError, match=f"AIP {gone} was disposed of on "):
        recover(ctx, gone, dest_dir=tmp_path / "out")
    assert recover(ctx, kept, dest_dir=tmp_path / "out").is_dir()

    # Again: nothing left to do, nothing counted twice, no new event.
    again = remove_aip_copies(ctx, gone)
    assert again.done and again.removed == () and again.reclaimable_bytes == 0
    assert _cartridges(ctx)[barcodes["site-a"]]["reclaimable"] == size
    assert len(_deletions(ctx, gone)) == 2


def test_an_aip_not_disposed_of_is_refused(ctx: Context) -> None:
    aip_id = _ingest(ctx)
    with pytest.raises(ConflictError, match="not disposed"):
        remove_aip_copies(ctx, aip_id)
    assert {c["status"] for c in _copies(ctx, aip_id)} == {CopyStatus.VERIFIED}
    with pytest.raises(NotFoundError):
        remove_aip_copies(ctx, "00000000-0000-4000-8000-000000000000")


def test_a_site_down_keeps_its_copies_until_repair_finishes_the_disposal(
    ctx: Context, settings: Settings
) -> None:
    aip_id = _ingest(ctx)
    barcodes = {c["site"]: c["barcode"] for c in _copies(ctx, aip_id)}
    path = f"/museum/{aip_id}/v1.tar"
    _mark_disposed(ctx, aip_id)
    flag = settings.tape_dir / "site-b" / "DOWN"
    flag.write_text("maintenance window")

    outcome = remove_aip_copies(ctx, aip_id)
    assert outcome.pending_sites == ("site-b",) and not outcome.done
    assert [(r.site, r.path) for r in outcome.removed] == [("site-a", path)]
    status = {c["site"]: c["status"] for c in _copies(ctx, aip_id)}
    assert status == {"site-a": CopyStatus.DISPOSED, "site-b": CopyStatus.VERIFIED}
    assert [o["site"] for _, o in _deletions(ctx, aip_id)] == ["site-a"]

    still_down = repair(ctx)
    assert not still_down.ok
    [pending] = still_down.disposals
    assert pending["aip_id"] == aip_id and pending["pending_sites"] == ["site-b"]

    flag.unlink()
    report = repair(ctx)
    assert report.ok
    [finished] = report.disposals
    assert finished["done"] and [r["site"] for r in finished["removed"]] == ["site-b"]
    assert {c["status"] for c in _copies(ctx, aip_id)} == {CopyStatus.DISPOSED}
    assert sorted(o["site"] for _, o in _deletions(ctx, aip_id)) == list(SITES)
    for site, barcode in barcodes.items():
        assert not _fresh_volume(settings, site, barcode).exists(path)
        assert _cartridges(ctx)[barcode]["reclaimable"] == finished["removed"][0]["bytes"]
    assert repair(ctx).disposals == []  # nothing half-done any more


def test_a_busy_cartridge_is_left_for_later(ctx: Context, settings: Settings) -> None:
    aip_id = _ingest(ctx)
    barcodes = {c["site"]: c["barcode"] for c in _copies(ctx, aip_id)}
    release_drives(ctx)
    _mark_disposed(ctx, aip_id)
    # Another process (a tape worker) has site-a's cartridge in one of its drives.
    other = EmulatedLibrary(settings.tape_dir / "site-a", name="site-a", drives=1)
    other.mount(barcodes["site-a"])
    try:
        outcome = remove_aip_copies(ctx, aip_id)
    finally:
        other.close()
    assert outcome.pending_sites == ("site-a",)
    assert [r.site for r in outcome.removed] == ["site-b"]
    [done] = finish_disposals(ctx)
    assert done.done and [r.site for r in done.removed] == ["site-a"]
    assert finish_disposals(ctx) == []


def test_a_crash_after_the_index_sync_is_finished_without_counting_twice(
    ctx: Context, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    aip_id = _ingest(ctx)
    [size] = {c["size"] for c in _copies(ctx, aip_id)}
    _mark_disposed(ctx, aip_id)
    real_record = disposal._record

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed between the index sync and the catalogue")

    monkeypatch.setattr(disposal, "_record", crash)
    with pytest.raises(KeyboardInterrupt):
        remove_aip_copies(ctx, aip_id)
    monkeypatch.setattr(disposal, "_record", real_record)
    # site-a's index no longer lists it, the catalogue still does.
    [a_copy] = [c for c in _copies(ctx, aip_id) if c["site"] == "site-a"]
    assert a_copy["status"] == CopyStatus.VERIFIED
    release_drives(ctx)
    assert not _fresh_volume(settings, "site-a", a_copy["barcode"]).exists(a_copy["path"])

    outcome = remove_aip_copies(ctx, aip_id)
    assert outcome.done
    assert sorted((r.site, r.bytes) for r in outcome.removed) == [(s, size) for s in SITES]
    with session_scope(ctx.sessions) as s:
        reclaimable = dict(s.execute(select(Cartridge.barcode, Cartridge.reclaimable)).all())
    assert reclaimable[a_copy["barcode"]] == size
    assert {c["status"] for c in _copies(ctx, aip_id)} == {CopyStatus.DISPOSED}


def test_an_ingest_counts_one_mount_per_cartridge_it_loads(ctx: Context) -> None:
    aip_id = _ingest(ctx)
    used = {c["barcode"] for c in _copies(ctx, aip_id)}
    mounts = {b: c["mounts"] for b, c in _cartridges(ctx).items()}
    assert {b for b, n in mounts.items() if n} == used
    assert all(mounts[b] == 1 for b in used)  # written and read back on one load
    _ingest(ctx)  # the cartridges are still in their drives: no new load
    assert {b: c["mounts"] for b, c in _cartridges(ctx).items()} == mounts
