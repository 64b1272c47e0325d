"""SIGKILL inside every ingest stage: each SIP still ends exactly once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from preservation.catalog import AIP, SIPState, TapeCopy
from workers.localcluster import Cluster

STAGES = ["validate", "identify", "describe", "package", "commit"]


@pytest.mark.parametrize("stage", STAGES)
def test_ingest_worker_killed_inside_a_stage(cluster: Cluster, stage: str) -> None:
    # The killed task's message comes back when Redis's visibility timeout ends or,
    # whichever is first, when the watcher finds the SIP stalled; both are short here.
    cluster.extra_env["PRESERVATION_STALL_SECONDS"] = "12"
    cluster.start_worker("tape-a", "store.site-a")
    cluster.start_worker("tape-b", "store.site-b")
    worker = cluster.start_worker("ingest", "ingest", PRESERVATION_FAILPOINTS=stage)
    cluster.start_watcher()
    cluster.drop_bag("museum", f"crash-in-{stage}")
    cluster.drop_bag("museum", f"bystander-{stage}")

    # The failpoint kills the worker's whole process group with SIGKILL.
    deadline = time.monotonic() + 120
    while worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.poll() is not None, f"the failpoint in {stage} never fired"
    assert (cluster.home / f"{stage}.fired").exists()
    cluster.procs.pop("ingest")

    cluster.start_worker("ingest", "ingest")  # the restart
    cluster.wait_committed(2, timeout=180)

    with cluster.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AIP)) == 2  # no duplicate AIP
        copies = s.execute(select(TapeCopy.aip_version_id, TapeCopy.status)).all()
    verified = cluster.verified_copies()
    assert sorted(verified.values()) == [2, 2]  # exactly two counted copies each
    assert all(status.value in {"verified", "discarded"} for _, status in copies)
    assert cluster.counts() == {SIPState.COMMITTED.value: 2}
