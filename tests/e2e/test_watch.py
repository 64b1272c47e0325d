"""`preservation watch` as an operator sees it: what it watches, what it skips and why."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from preservation.cli import app

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.delenv("PRESERVATION_BROKER_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal must not break a line in two
    return home


def drop(home: Path, tenant: str, name: str, *, broken: bool = False) -> Path:
    bag = home / "ingest" / tenant / name
    shutil.copytree(SAMPLE, bag)
    if broken:  # one file missing, one extra, one changed
        (bag / "data" / "audio" / "tone-440hz.wav").unlink()
        (bag / "data" / "notes" / "extra.txt").write_text("not in any manifest\n")
        with open(bag / "data" / "tables" / "measurements.csv", "a") as fh:
            fh.write("changed after bagging\n")
    return bag


def watch_once() -> list[str]:
    done = CliRunner().invoke(app, ["watch", "--once"])
    assert done.exit_code == 0, done.output
    return done.stderr.splitlines()


def status() -> dict[str, int]:
    done = CliRunner().invoke(app, ["status", "--json"])
    return dict(json.loads(done.stdout)["counts"])


def test_watch_once_says_why_each_bag_is_skipped(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "3600")
    drop(home, "museum", "bag1")
    (home / "ingest" / "museum" / "notes.txt").write_text("not a bag")
    for _ in range(2):  # --once always tells, every time
        lines = watch_once()
        [bag1] = [line for line in lines if line.startswith("skipped museum/bag1: ")]
        assert re.fullmatch(r"skipped museum/bag1: changed \d+\.\ds ago \(not yet quiet\)", bag1)
        assert any(line.startswith("skipped museum/notes.txt: not a bag") for line in lines)

    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "0.2")
    monkeypatch.setenv("PRESERVATION_INCOMPLETE_BAG_SECONDS", "3600")
    drop(home, "museum", "bag2", broken=True)
    time.sleep(0.3)
    lines = watch_once()
    [bag2] = [line for line in lines if line.startswith("skipped museum/bag2: ")]
    assert re.fullmatch(
        r"skipped museum/bag2: Payload-Oxum 27055\.9 but \d+\.9 on disk since "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; rejected after 3600s unchanged",
        bag2,
    ), bag2
    assert (home / "ingest" / "museum" / "bag2" / "bagit.txt").is_file()
    assert status() == {"committed": 1}  # bag1, quiet by now


def test_watch_once_rejects_an_incomplete_bag_left_unchanged(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "0.1")
    monkeypatch.setenv("PRESERVATION_INCOMPLETE_BAG_SECONDS", "0.3")
    drop(home, "museum", "broken", broken=True)
    time.sleep(0.5)
    lines = watch_once()
    [claimed] = [i for i, line in enumerate(lines) if line.startswith("claimed SIP ")]
    [outcome] = [i for i, line in enumerate(lines) if line.endswith(": rejected")]
    assert claimed < outcome, lines  # told in the order it happened
    assert status() == {"rejected": 1}
    rejected = home / "ingest" / "museum" / "rejected" / "broken"
    report = json.loads((rejected / "report.json").read_text())
    assert report["source"] == str(home.resolve() / "ingest" / "museum" / "broken")
    files = {p["file"] for p in report["problems"]}
    assert {"data/audio/tone-440hz.wav", "data/notes/extra.txt"} <= files
    assert "data/tables/measurements.csv" in files
    assert "tone-440hz.wav" in (rejected / "report.txt").read_text()


def test_watch_starts_by_naming_its_folders(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "5")
    for tenant in ("museum", "archive", "Bad"):
        (home / "ingest" / tenant).mkdir(parents=True)
    lines = watch_once()
    ingest = home.resolve() / "ingest"
    assert lines[0] == (
        f"watching {ingest}/<tenant>/ (2 tenant folders: archive, museum) once; "
        "quiet period 5s; an incomplete bag is rejected after 50s unchanged"
    ), lines

    def stop(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", stop)
    done = CliRunner().invoke(app, ["watch", "--interval", "7"])
    assert done.exit_code == 0, done.output
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"watching {ingest}/<tenant>/ (2 tenant folders: archive, museum) ")
    assert "every 7s; quiet period 5s" in first


def test_tenant_folders_with_a_bad_name_are_reported_and_not_taken(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "0")
    drop(home, "Museum", "bag")
    drop(home, "bad name", "bag")
    for _ in range(2):
        lines = watch_once()
        for name in ("Museum", "bad name"):
            [line] = [x for x in lines if x.startswith(f"ingest/{name}: ")]
            assert line.startswith(f"ingest/{name}: not a valid tenant id (a tenant id is 1-63")
            assert line.endswith("); its bags are not taken")
        assert not any("claimed" in x or "failed" in x for x in lines), lines
    assert status() == {}
    assert (home / "ingest" / "Museum" / "bag" / "bagit.txt").is_file()
    assert not (home / "ingest" / "Museum" / ".claimed").exists()


def test_a_long_running_watch_tells_a_skipped_bag_again_only_when_its_reason_changes(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "1")
    monkeypatch.setenv("PRESERVATION_INCOMPLETE_BAG_SECONDS", "3600")
    bag = drop(home, "museum", "broken", broken=True)
    drop(home, "Museum", "bag")
    real_sleep = time.sleep
    real_sleep(1.1)
    sleeps = 0

    def between_scans(_seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 2:  # more of the upload arrives: changing, then a new Oxum mismatch
            (bag / "data" / "late.txt").write_text("late\n")
            return
        if sleeps == 4:
            raise KeyboardInterrupt
        real_sleep(1.1)

    monkeypatch.setattr(time, "sleep", between_scans)
    done = CliRunner().invoke(app, ["watch", "--interval", "1"])
    assert done.exit_code == 0, done.output
    lines = done.stderr.splitlines()
    assert sum(x.startswith("watching ") for x in lines) == 1
    told = [x for x in lines if x.startswith("skipped museum/broken: ")]
    assert len(told) == 3, lines  # scan 1, not 2, then 3 (changing) and 4 (a new Oxum)
    assert "Payload-Oxum" in told[0] and "not yet quiet" in told[1] and "Payload-Oxum" in told[2]
    assert told[0] != told[2]
    # A folder that can never be taken is told at every scan.
    assert sum(x.startswith("ingest/Museum: ") for x in lines) == 4


def test_a_pending_sip_is_told_once_per_scan(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "0.1")
    monkeypatch.setenv("PRESERVATION_SITE_WAIT_SECONDS", "0")
    flag = home / "tape" / "site-b" / "DOWN"
    flag.parent.mkdir(parents=True)
    flag.write_text("maintenance")
    drop(home, "museum", "bag1")
    time.sleep(0.3)
    lines = watch_once()
    pending = [line for line in lines if " pending: " in line]
    assert len(pending) == 1, lines  # claimed, run once, and not run again in the same scan
    assert status() == {"packaged": 1}
    assert len([line for line in watch_once() if " pending: " in line]) == 1  # the next retries


def test_a_file_where_a_site_folder_should_be_stops_watch_before_any_bag_is_taken(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "0.1")
    bag = drop(home, "museum", "bag1")
    (home / "tape").mkdir(parents=True)
    (home / "tape" / "site-a").write_text("not a library\n")
    time.sleep(0.3)
    done = CliRunner().invoke(app, ["watch", "--once"])
    assert done.exit_code == 3, done.output
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("error: site site-a") and "Traceback" not in done.output
    assert (bag / "bagit.txt").is_file()  # left where it was dropped, not claimed
    assert not (home / "ingest" / "museum" / ".claimed").exists()
