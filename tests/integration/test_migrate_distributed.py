"""A migration on real workers: one task per AIP on the migrate queue, the tape workers store it."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import select

from preservation.catalog import AIPVersion
from tests.conftest import require_program
from workers.localcluster import ROOT, Cluster


def test_two_aips_migrated_by_the_migrate_worker_each_become_version_2(cluster: Cluster) -> None:
    for program in ("ffmpeg", "gs"):
        require_program(program)
    cluster.start_all()
    cluster.start_worker("migrate", "migrate")
    cluster.drop_bag("museum", "bag-1")
    cluster.drop_bag("museum", "bag-2")
    cluster.wait_committed(2, timeout=240)
    done = subprocess.run(
        [sys.executable, "-m", "preservation.cli", "migrate", "--puid", "fmt/11", "--json"],
        capture_output=True,
        text=True,
        env=cluster.env(),
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    view = json.loads(done.stdout)
    assert view["state"] == "done", view
    assert [i["state"] for i in view["items"]] == ["committed", "committed"], view
    for item in view["items"]:
        [png] = item["files"]  # --puid: only the PNG of each AIP
        assert png["state"] == "migrated" and png["output"].endswith("circle.tif"), png
    with cluster.sessions() as s:
        rows = s.execute(
            select(AIPVersion.number, AIPVersion.reason, AIPVersion.committed_at)
        ).all()
    assert sorted((n, r) for n, r, c in rows if c is not None) == [
        (1, "ingest"),
        (1, "ingest"),
        (2, "migration"),
        (2, "migration"),
    ]
    copies = cluster.verified_copies()
    assert len(copies) == 4 and set(copies.values()) == {2}
