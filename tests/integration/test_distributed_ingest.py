"""The distributed pipeline with real Redis, PostgreSQL and Celery worker processes."""

from __future__ import annotations

import json

from preservation.catalog import SIPState
from workers.localcluster import ROOT, Cluster

INVALID = ROOT / "examples" / "bags" / "invalid-bag"


def test_bags_in_two_tenant_folders_end_as_aips_with_two_verified_copies(cluster: Cluster) -> None:
    cluster.start_all()
    for i in range(20):
        cluster.drop_bag("museum" if i % 2 else "archive", f"bag-{i:02d}")
    cluster.drop_bag("museum", "broken", source=INVALID)
    cluster.wait_committed(20, timeout=240)
    cluster.wait_for(
        lambda: cluster.counts().get(SIPState.REJECTED.value) == 1, timeout=60, what="rejection"
    )
    counts = cluster.counts()
    assert counts == {SIPState.COMMITTED.value: 20, SIPState.REJECTED.value: 1}
    rejected = cluster.home / "ingest" / "museum" / "rejected" / "broken"
    report = json.loads((rejected / "report.json").read_text())
    assert {p["file"] for p in report["problems"]} >= {"data/documents/minutes.txt"}
    assert (rejected / "report.txt").is_file()
    assert (rejected / "broken" / "bagit.txt").is_file()  # the bag itself, as it came
    copies = cluster.verified_copies()
    assert len(copies) == 20 and set(copies.values()) == {2}
    # Released after commit: the ingest folders hold nothing but bookkeeping.
    for tenant in ("museum", "archive"):
        left = [p.name for p in (cluster.home / "ingest" / tenant).iterdir()]
        assert set(left) <= {".claimed", "rejected"}, left
