"""DIPs on real workers: requests wait for their window, then one batch on `access` serves them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from sqlalchemy import select

from preservation.catalog import AIP
from workers.localcluster import ROOT, Cluster


def _cli(cluster: Cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "preservation.cli", *args],
        capture_output=True,
        text=True,
        env=cluster.env(PRESERVATION_RECALL_WINDOW_SECONDS="3"),
        cwd=ROOT,
        timeout=timeout,
    )


def test_two_requests_in_one_window_share_one_batch_on_the_access_worker(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_all()
    # Tape workers give their drives back soon, so the access worker can mount.
    cluster.start_worker("access", "access", PRESERVATION_TAPE_IDLE_UNMOUNT_SECONDS="1")
    cluster.drop_bag("museum", "bag-1")
    cluster.drop_bag("museum", "bag-2")
    cluster.wait_committed(2, timeout=240)
    with cluster.sessions() as s:
        aip_ids = sorted(s.scalars(select(AIP.id)))
    queued = []
    for aip_id in aip_ids:
        done = _cli(cluster, "dip", "request", aip_id, "--no-wait", "--json", "--by", "reader")
        assert done.returncode == 0, done.stderr[-3000:]
        queued.append(json.loads(done.stdout))
    assert {q["state"] for q in queued} == {"queued"}

    def states() -> list[dict[str, object]]:
        done = _cli(cluster, "dip", "status", "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        return [v for v in json.loads(done.stdout) if v["dip_id"] in {q["dip_id"] for q in queued}]

    deadline = time.monotonic() + 240
    views = states()
    while not all(v["state"] in ("ready", "failed") for v in views):
        assert time.monotonic() < deadline, views
        time.sleep(1)
        views = states()
    assert {v["state"] for v in views} == {"ready"}, views
    # Both arrived within one window: the first batch took both, the second found nothing.
    assert len({v["batch_id"] for v in views}) == 1, views
    for v in views:
        got = _cli(cluster, "dip", "get", str(v["dip_id"]), "--to", str(tmp_path), "--json")
        assert got.returncode == 0, got.stderr[-3000:]
        path = Path(json.loads(got.stdout)["path"])
        with zipfile.ZipFile(path) as zf:
            assert zf.testzip() is None
            assert f"{v['dip_id']}/data/METS.xml" in zf.namelist()
        show = _cli(cluster, "show", str(v["aip_id"]), "--json")
        assert show.returncode == 0, show.stderr[-3000:]
        assert "dissemination" in show.stdout
