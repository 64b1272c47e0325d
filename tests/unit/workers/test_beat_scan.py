"""The beat task's scan logs what ``watch`` prints: bad tenant folders, bags left waiting."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from preservation.config import Settings
from preservation.context import open_context
from workers import tasks

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bags" / "sample-collection"


@pytest.fixture
def worker_context(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    ctx = open_context(settings)
    monkeypatch.setattr(tasks, "_context", ctx)
    monkeypatch.setattr(tasks, "_TOLD", {})
    submitted: list[str] = []
    monkeypatch.setattr(tasks, "submit", submitted.append)
    yield
    ctx.close()


def test_beat_scan_logs_bad_tenant_folders_each_scan_and_waiting_bags_once(
    settings: Settings, worker_context: None, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copytree(SAMPLE, settings.ingest_dir / "Bad Name" / "a-bag")
    waiting = settings.ingest_dir / "museum" / "no-oxum"
    shutil.copytree(SAMPLE, waiting)
    info = waiting / "bag-info.txt"
    info.write_text(
        "".join(line + "\n" for line in info.read_text().splitlines() if "Oxum" not in line)
    )
    caplog.set_level(logging.INFO)
    for _ in range(2):
        (waiting / "data" / "touch").write_text("")  # recent: not yet quiet
        (waiting / "data" / "touch").unlink()
        assert tasks.scan_ingest_folders() == []
    lines = [r.getMessage() for r in caplog.records]
    bad = [line for line in lines if line.startswith("ingest/Bad Name: not a valid tenant id")]
    assert len(bad) == 2  # once per scan, and its bag never taken
    assert (settings.ingest_dir / "Bad Name" / "a-bag" / "bagit.txt").is_file()
    skipped = [line for line in lines if line.startswith("skipped museum/no-oxum")]
    assert len(skipped) == 1, lines  # the same reason is not logged again
