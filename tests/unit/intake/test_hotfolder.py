"""Hot folders: a bag is taken only when finished, and by exactly one watcher."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

from preservation import hotfolder

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"


def test_bag_is_ready_only_after_quiet_period(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    bag = ingest / "museum" / "sample"
    shutil.copytree(SAMPLE, bag)
    [c] = hotfolder.scan(ingest, quiescent_seconds=60)
    assert not c.ready and "changed" in c.reason
    [c] = hotfolder.scan(ingest, quiescent_seconds=60, now=time.time() + 120)
    assert c.ready and c.tenant == "museum"


def test_incomplete_payload_is_not_taken(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    bag = ingest / "museum" / "sample"
    shutil.copytree(SAMPLE, bag)
    victim = next((bag / "data").rglob("*.wav"))
    victim.unlink()  # a file still on its way
    # Quiet for longer than the quiet period, not yet for the incomplete-bag period.
    [c] = hotfolder.scan(ingest, quiescent_seconds=1.0, now=time.time() + 5)
    assert not c.ready and "Payload-Oxum" in c.reason


def test_reserved_and_hidden_entries_are_ignored(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    for name in ("rejected", "kept", ".claimed", ".partial-upload"):
        (ingest / "t" / name).mkdir(parents=True)
    (ingest / "t" / "notes.txt").write_text("not a bag")
    cands = list(hotfolder.scan(ingest, quiescent_seconds=0, now=time.time() + 10))
    assert [c.path.name for c in cands] == ["notes.txt"]
    assert not cands[0].ready


def test_only_one_of_many_racing_watchers_claims(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    shutil.copytree(SAMPLE, ingest / "t" / "bag")
    [c] = hotfolder.find_ready(ingest, quiescent_seconds=0)
    results: list[Path | None] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        results.append(hotfolder.claim(c))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (winners[0] / "bagit.txt").exists()
    assert not (ingest / "t" / "bag").exists()
    # Losers leave no empty claim folders behind.
    assert len(list((ingest / "t" / ".claimed").iterdir())) == 1
    assert list(hotfolder.orphaned_claims(ingest)) == [("t", winners[0])]


def test_release_removes_or_keeps(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    for name in ("a", "b"):
        shutil.copytree(SAMPLE, ingest / "t" / name)
    claimed = [hotfolder.claim(c) for c in hotfolder.find_ready(ingest, quiescent_seconds=0)]
    assert all(claimed)
    hotfolder.release(claimed[0], keep=False)  # type: ignore[arg-type]
    hotfolder.release(claimed[1], keep=True)  # type: ignore[arg-type]
    assert not claimed[0].exists()  # type: ignore[union-attr]
    assert (ingest / "t" / "kept" / "b" / "bagit.txt").exists()
    assert list((ingest / "t" / ".claimed").iterdir()) == []


def test_stray_file_and_folder_are_set_aside_after_ten_quiet_periods(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    tenant = ingest / "museum"
    tenant.mkdir(parents=True)
    (tenant / "notes.txt").write_bytes(b"not a bag\x00\xff")
    (tenant / "photos" / "2024").mkdir(parents=True)
    (tenant / "photos" / "2024" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    # Within ten quiet periods a stray is left alone: it may still become a bag.
    later = time.time() + 5 * 60
    assert hotfolder.find_ready(ingest, quiescent_seconds=60, now=later) == []
    assert (tenant / "notes.txt").is_file() and (tenant / "photos").is_dir()

    much_later = time.time() + 11 * 60
    assert hotfolder.find_ready(ingest, quiescent_seconds=60, now=much_later) == []
    assert sorted(p.name for p in tenant.iterdir()) == ["rejected"]
    for name, kind in (("notes.txt", "file"), ("photos", "folder")):
        folder = tenant / "rejected" / name
        report = json.loads((folder / "report.json").read_text())
        assert report["tenant"] == "museum" and report["bag"] == name
        assert [p["rule"] for p in report["problems"]] == ["not-a-bag"]
        assert kind in report["problems"][0]["message"]
        assert "not-a-bag" in (folder / "report.txt").read_text()
    # The bytes are exactly as they came.
    assert (tenant / "rejected" / "notes.txt" / "notes.txt").read_bytes() == b"not a bag\x00\xff"
    assert (tenant / "rejected" / "photos" / "photos" / "2024" / "a.jpg").read_bytes() == (
        b"\xff\xd8jpeg"
    )
    # A second stray of the same name gets its own folder; nothing is overwritten.
    (tenant / "notes.txt").write_text("again")
    hotfolder.find_ready(ingest, quiescent_seconds=60, now=much_later)
    assert len(list((tenant / "rejected").glob("notes.txt*"))) == 2


def test_a_real_bag_is_never_set_aside_as_stray(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    shutil.copytree(SAMPLE, ingest / "t" / "bag")
    far = time.time() + 3600
    [c] = hotfolder.find_ready(ingest, quiescent_seconds=1, now=far)
    assert c.path == ingest / "t" / "bag" and c.ready
    assert not (ingest / "t" / "rejected").exists()


def test_a_bag_without_payload_oxum_waits_longer(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    bag = ingest / "t" / "no-oxum"
    shutil.copytree(SAMPLE, bag)
    info = bag / "bag-info.txt"
    info.write_text(
        "".join(
            line
            for line in info.read_text().splitlines(keepends=True)
            if not line.lower().startswith("payload-oxum")
        )
    )
    now = time.time()
    quiet = 10.0
    # Quiet for twice the period: enough for a bag with Payload-Oxum, not for this one.
    [c] = hotfolder.scan(ingest, quiescent_seconds=quiet, now=now + 2 * quiet)
    assert not c.ready and "Payload-Oxum" in c.reason
    wait = quiet * hotfolder.NO_OXUM_FACTOR
    [c] = hotfolder.scan(ingest, quiescent_seconds=quiet, now=now + wait + 1)
    assert c.ready


def _break_payload(bag: Path) -> None:
    """One payload file missing, one extra, one changed: the Oxum no longer matches."""
    (bag / "data" / "audio" / "tone-440hz.wav").unlink()
    (bag / "data" / "notes" / "extra.txt").write_text("not in any manifest\n")
    with open(bag / "data" / "tables" / "measurements.csv", "a") as fh:
        fh.write("changed after bagging\n")


def test_incomplete_bag_is_taken_once_quiet_for_the_incomplete_bag_period(
    tmp_path: Path,
) -> None:
    ingest = tmp_path / "ingest"
    bag = ingest / "museum" / "broken"
    shutil.copytree(SAMPLE, bag)
    _break_payload(bag)
    now = time.time()
    quiet = 5.0
    # Quiet, but not yet for ten quiet periods (the default): still waiting, and it says till when.
    [c] = hotfolder.scan(ingest, quiescent_seconds=quiet, now=now + 20)
    assert not c.ready
    assert "Payload-Oxum 27055.9 but" in c.reason and "on disk since " in c.reason
    assert c.reason.endswith("; rejected after 50s unchanged"), c.reason
    assert hotfolder.find_ready(ingest, quiescent_seconds=quiet, now=now + 20) == []
    # Unchanged for ten quiet periods: taken, so that validation says what is wrong.
    [c] = hotfolder.find_ready(ingest, quiescent_seconds=quiet, now=now + 51)
    assert c.ready and c.path == bag
    assert "unchanged for 5" in c.reason and "taken to report what is wrong" in c.reason
    # The period is a setting of its own.
    [c] = hotfolder.scan(ingest, quiescent_seconds=quiet, incomplete_bag_seconds=30, now=now + 20)
    assert not c.ready and c.reason.endswith("rejected after 30s unchanged")
    [c] = hotfolder.scan(ingest, quiescent_seconds=quiet, incomplete_bag_seconds=30, now=now + 31)
    assert c.ready


def test_skipped_bags_are_told_to_the_caller_with_their_reason(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    shutil.copytree(SAMPLE, ingest / "museum" / "good")
    shutil.copytree(SAMPLE, ingest / "museum" / "broken")
    _break_payload(ingest / "museum" / "broken")
    (ingest / "museum" / "notes.txt").write_text("not a bag")
    skipped: list[hotfolder.Candidate] = []
    ready = hotfolder.find_ready(
        ingest, quiescent_seconds=5, now=time.time() + 20, skipped=skipped.append
    )
    assert [c.path.name for c in ready] == ["good"]
    assert {c.path.name: c.reason.split(" ")[0] for c in skipped} == {
        "broken": "Payload-Oxum",
        "notes.txt": "not",
    }
    # A stray set aside is told too, with where it went.
    skipped.clear()
    hotfolder.find_ready(ingest, quiescent_seconds=5, now=time.time() + 60, skipped=skipped.append)
    [stray] = [c for c in skipped if c.path.name == "notes.txt"]
    assert "set aside" in stray.reason and "rejected" in stray.reason


def test_a_changing_bag_keeps_one_lasting_reason_from_scan_to_scan(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    shutil.copytree(SAMPLE, ingest / "museum" / "bag")
    now = time.time()
    [a] = hotfolder.scan(ingest, quiescent_seconds=60, now=now + 1)
    [b] = hotfolder.scan(ingest, quiescent_seconds=60, now=now + 2)
    assert a.reason != b.reason and a.reason.endswith("(not yet quiet)")
    assert a.lasting_reason == b.lasting_reason


def test_tenant_folders_with_a_bad_name_are_never_taken(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    for tenant in ("Museum", "bad name", "a.b", "museum"):
        shutil.copytree(SAMPLE, ingest / tenant / "bag")
    # A claim left in a bad folder (by an older version) is not taken either.
    shutil.copytree(SAMPLE, ingest / "Museum" / ".claimed" / "0000" / "old")
    far = time.time() + 3600
    cands = list(hotfolder.scan(ingest, quiescent_seconds=1, now=far))
    assert sorted(c.tenant for c in cands) == ["a.b", "museum"]
    assert sorted(c.tenant for c in hotfolder.find_ready(ingest, quiescent_seconds=1, now=far)) == [
        "a.b",
        "museum",
    ]
    assert list(hotfolder.orphaned_claims(ingest)) == []
    assert hotfolder.invalid_tenant_folders(ingest) == [ingest / "Museum", ingest / "bad name"]
    assert hotfolder.tenant_folders(ingest) == [ingest / "a.b", ingest / "museum"]
    assert (ingest / "Museum" / "bag" / "bagit.txt").exists()


def test_dropped_path_of_a_claimed_bag(tmp_path: Path) -> None:
    ingest = tmp_path / "ingest"
    shutil.copytree(SAMPLE, ingest / "museum" / "bag")
    [c] = hotfolder.find_ready(ingest, quiescent_seconds=0)
    claimed = hotfolder.claim(c)
    assert claimed is not None
    assert hotfolder.dropped_path(claimed) == ingest / "museum" / "bag"
    assert hotfolder.dropped_path(tmp_path / "elsewhere" / "bag") is None
