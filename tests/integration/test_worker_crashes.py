"""SIGKILL inside every ingest stage and inside a tape write: each SIP still ends exactly once."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import func, select

from preservation.catalog import AIP, CopyStatus, SIPState, TapeCopy
from workers.localcluster import Cluster

# "commit": killed after the AIP became active, before the SIP is marked committed;
# "release": killed after the SIP is committed, before its bag leaves the hot folder.
STAGES = [
    "validate",
    "scan",
    "identify",
    "characterise",
    "describe",
    "package",
    "commit",
    "release",
]


def _wait_killed(cluster: Cluster, name: str, point: str) -> None:
    """The failpoint kills the worker's whole process group with SIGKILL; wait for it."""
    worker = cluster.procs[name]
    deadline = time.monotonic() + 120
    while worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker.poll() is not None, f"the failpoint in {point} never fired"
    assert (cluster.home / f"{point}.fired").exists()
    cluster.procs.pop(name)


def _assert_each_sip_ended_once(cluster: Cluster, n: int) -> None:
    with cluster.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AIP)) == n  # no duplicate AIP
        copies = s.execute(select(TapeCopy.aip_version_id, TapeCopy.site, TapeCopy.status)).all()
    verified = cluster.verified_copies()
    assert sorted(verified.values()) == [2] * n  # exactly two counted copies each
    # Nothing half-written is left counting: a crashed write was discarded or adopted.
    assert all(status in {CopyStatus.VERIFIED, CopyStatus.DISCARDED} for *_, status in copies)
    for version in verified:
        sites = {site for v, site, st in copies if v == version and st is CopyStatus.VERIFIED}
        assert sites == {"site-a", "site-b"}
    assert cluster.counts() == {SIPState.COMMITTED.value: n}
    # Every bag left its hot folder once committed, a release interrupted by the kill too.
    claimed = cluster.home / "ingest" / "museum" / ".claimed"
    deadline = time.monotonic() + 30
    while claimed.exists() and any(claimed.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not claimed.exists() or not any(claimed.iterdir()), sorted(claimed.iterdir())


@pytest.mark.parametrize("stage", STAGES)
def test_ingest_worker_killed_inside_a_stage(cluster: Cluster, stage: str) -> None:
    # The killed task's message comes back when Redis's visibility timeout ends or,
    # whichever is first, when the watcher finds the SIP stalled; both are short here.
    cluster.extra_env["PRESERVATION_STALL_SECONDS"] = "12"
    cluster.start_tape_worker("site-a")
    cluster.start_tape_worker("site-b")
    cluster.start_worker("ingest", "ingest", PRESERVATION_FAILPOINTS=stage)
    cluster.start_watcher()
    cluster.drop_bag("museum", f"crash-in-{stage}")
    cluster.drop_bag("museum", f"bystander-{stage}")
    _wait_killed(cluster, "ingest", stage)

    cluster.start_worker("ingest", "ingest")  # the restart
    cluster.wait_committed(2, timeout=180)
    _assert_each_sip_ended_once(cluster, 2)


def test_acks_late_redelivery_alone_recovers_a_killed_ingest_task(cluster: Cluster) -> None:
    # No stall resubmission within the test: only the broker giving the unacknowledged
    # message back (visibility timeout) can finish the SIP the killed worker held.
    cluster.extra_env["PRESERVATION_STALL_SECONDS"] = "86400"
    cluster.start_tape_worker("site-a")
    cluster.start_tape_worker("site-b")
    cluster.start_worker("ingest", "ingest", PRESERVATION_FAILPOINTS="identify")
    cluster.start_watcher()
    cluster.drop_bag("museum", "crash-in-identify")
    cluster.drop_bag("museum", "bystander")
    _wait_killed(cluster, "ingest", "identify")

    cluster.start_worker("ingest", "ingest")
    cluster.wait_committed(2, timeout=120)
    _assert_each_sip_ended_once(cluster, 2)
    # The watcher handed each SIP to the broker once: nothing was resubmitted.
    claims = re.findall(r"claimed SIP (\S+)", (cluster.logs / "watcher.log").read_text())
    assert len(claims) == 2 and len(set(claims)) == 2, claims


def test_tape_worker_killed_between_write_and_read_back(cluster: Cluster) -> None:
    # failpoint("store"): the tar is on tape and in the LTFS index, its row still WRITING.
    cluster.start_worker("ingest", "ingest")
    cluster.start_tape_worker("site-b")
    cluster.start_tape_worker("site-a", PRESERVATION_FAILPOINTS="store")
    cluster.start_watcher()
    cluster.drop_bag("museum", "crash-in-store")
    cluster.drop_bag("museum", "bystander-store")
    _wait_killed(cluster, "tape-a", "store")
    with cluster.sessions() as s:
        writing = s.scalars(
            select(TapeCopy).where(TapeCopy.site == "site-a", TapeCopy.status == CopyStatus.WRITING)
        ).all()
    assert writing, "the kill came inside the tape write: a WRITING row must be left"
    assert cluster.counts().get(SIPState.COMMITTED.value, 0) == 0  # one copy is not safe

    cluster.start_tape_worker("site-a")  # the restart
    cluster.wait_committed(2, timeout=180)
    _assert_each_sip_ended_once(cluster, 2)
