"""The distributed pipeline with real Redis, PostgreSQL and Celery worker processes."""

from __future__ import annotations

from preservation.catalog import SIPState
from workers.localcluster import Cluster


def test_bags_in_two_tenant_folders_end_as_aips_with_two_verified_copies(cluster: Cluster) -> None:
    cluster.start_all()
    for i in range(20):
        cluster.drop_bag("museum" if i % 2 else "archive", f"bag-{i:02d}")
    cluster.wait_committed(20, timeout=240)
    counts = cluster.counts()
    assert counts == {SIPState.COMMITTED.value: 20}
    copies = cluster.verified_copies()
    assert len(copies) == 20 and set(copies.values()) == {2}
    # Released after commit: the ingest folders hold nothing but bookkeeping.
    for tenant in ("museum", "archive"):
        left = [p.name for p in (cluster.home / "ingest" / tenant).iterdir()]
        assert set(left) <= {".claimed"}, left
