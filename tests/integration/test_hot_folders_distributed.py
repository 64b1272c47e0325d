"""Hot folders under real workers: slow uploads, floods, a restarted broker, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import bagit
import pytest
from sqlalchemy import func, select

from preservation.catalog import AIP, SIP, SIPState
from tests.conftest import IN_CI
from workers.localcluster import ROOT, SAMPLE, Cluster

MAX_GROWTH_KIB = 40 * 1024


def _rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (the identification pool)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        pids.extend(int(c) for c in children)
    return total


def test_bag_still_being_copied_is_not_taken_until_complete(cluster: Cluster) -> None:
    cluster.start_all()
    target = cluster.home / "ingest" / "museum" / "slow-upload"
    target.mkdir(parents=True)
    # Tag files first (as many upload tools do), then the payload over several seconds.
    for name in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt", "manifest-sha512.txt"):
        shutil.copy2(SAMPLE / name, target / name)
    payload = sorted(p for p in (SAMPLE / "data").rglob("*") if p.is_file())
    for i, src in enumerate(payload):
        dest = target / src.relative_to(SAMPLE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        with open(dest, "wb") as fh:  # written in two pieces, like a network copy
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(0.35)
            fh.write(data[len(data) // 2 :])
        time.sleep(0.35 if i % 3 else 0.9)  # pauses close to the quiet period
        with cluster.sessions() as s:
            assert s.scalar(select(SIP)) is None, "taken before the upload finished"
    for name in ("tagmanifest-sha256.txt", "tagmanifest-sha512.txt"):
        shutil.copy2(SAMPLE / name, target / name)
    finished = time.time()
    cluster.wait_committed(1, timeout=120)
    with cluster.sessions() as s:
        sip = s.scalars(select(SIP)).one()
        assert sip.file_count == len(payload)
        assert sip.created_at.timestamp() >= finished - 0.01


def test_a_thousand_tiny_bags_are_all_ingested_with_bounded_memory(
    cluster: Cluster, tmp_path: Path
) -> None:
    n = 1000
    staging = tmp_path / "make"
    for i in range(n):
        bag_dir = staging / f"tiny-{i:04d}"
        (bag_dir).mkdir(parents=True)
        (bag_dir / "note.txt").write_text(f"tiny bag {i}\n")
        bagit.make_bag(str(bag_dir), {"Source-Organization": "Flood Test"}, checksums=["sha256"])
    cluster.extra_env["PRESERVATION_STALL_SECONDS"] = "900"  # a backlog is not a stall
    cluster.start_all()
    ingest = cluster.home / "ingest" / "flood"
    ingest.mkdir(parents=True)
    for bag_dir in sorted(staging.iterdir()):
        os.rename(bag_dir, ingest / bag_dir.name)  # all dropped at once
    workers = ("ingest", "tape-a", "tape-b")
    at_quarter: dict[str, int] = {}

    def committed() -> bool:
        done = cluster.counts().get(SIPState.COMMITTED.value, 0)
        if not at_quarter and done >= n // 4:  # warmed up: every code path has run
            at_quarter.update({w: _rss_kib(cluster.procs[w].pid) for w in workers})
        return done >= n

    # Under pytest-timeout (600 s), so a stuck flood reports its counts and worker logs.
    cluster.wait_for(committed, timeout=540, what=f"{n} committed SIPs", poll=2)
    at_end = {w: _rss_kib(cluster.procs[w].pid) for w in workers}
    assert cluster.counts() == {SIPState.COMMITTED.value: n}
    assert set(cluster.verified_copies().values()) == {2}
    assert len(cluster.verified_copies()) == n
    # Bounded: from a quarter of the way to the end (750 more SIPs) no worker grows
    # by more than a small fixed amount; a per-SIP leak of 60 KB would show.
    assert all(at_quarter.values()) and all(at_end.values()), (at_quarter, at_end)
    growth = {w: at_end[w] - at_quarter[w] for w in workers}
    assert all(g <= MAX_GROWTH_KIB for g in growth.values()), (growth, at_quarter, at_end)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server(port: int, data: Path) -> subprocess.Popen[bytes]:
    redis = shutil.which("redis-server")
    if redis is None:
        message = "redis-server binary not found"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    proc = subprocess.Popen(
        [
            redis,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise AssertionError("private redis-server did not start")


IN_FLIGHT = {
    SIPState.STAGED.value,
    SIPState.SCANNED.value,
    SIPState.IDENTIFIED.value,
    SIPState.CHARACTERISED.value,
    SIPState.DESCRIBED.value,
    SIPState.PACKAGED.value,
    SIPState.STORED.value,
}


def test_broker_killed_while_bags_arrive_and_tasks_run_loses_no_sip(
    fresh_pg: str, tmp_path: Path
) -> None:
    port = _free_port()
    data = tmp_path / "redis"
    data.mkdir()
    redis_proc = _redis_server(port, data)
    url = f"redis://127.0.0.1:{port}/0"
    cluster = Cluster(home=tmp_path / "home", database_url=fresh_pg, broker_url=url)
    n = 16
    try:
        cluster.start_all()
        for i in range(6):
            cluster.drop_bag("museum", f"bag-{i:02d}")
        cluster.wait_for(
            lambda: any(cluster.counts().get(state, 0) for state in IN_FLIGHT),
            timeout=120,
            what="SIPs in flight",
            poll=0.1,
        )

        def arrive() -> None:  # the rest keep arriving through the outage and after it
            for i in range(6, n):
                cluster.drop_bag("archive", f"bag-{i:02d}")
                time.sleep(0.3)

        dropper = threading.Thread(target=arrive)
        dropper.start()
        try:
            # A crash, not a SHUTDOWN: only what Redis already fsynced survives.
            redis_proc.kill()
            redis_proc.wait(timeout=30)
            time.sleep(2)
            redis_proc = _redis_server(port, data)
        finally:
            dropper.join()
        cluster.wait_committed(n, timeout=360)
        assert cluster.counts() == {SIPState.COMMITTED.value: n}
        with cluster.sessions() as s:
            assert s.scalar(select(func.count()).select_from(AIP)) == n
        copies = cluster.verified_copies()
        assert len(copies) == n and set(copies.values()) == {2}
    finally:
        cluster.stop()
        redis_proc.kill()
        redis_proc.wait()


def test_cli_ingest_wait_and_status_against_the_workers(cluster: Cluster) -> None:
    cluster.start_worker("ingest", "ingest")
    cluster.start_tape_worker("site-a")
    cluster.start_tape_worker("site-b")
    cli = [sys.executable, "-m", "preservation.cli"]
    done = subprocess.run(
        [*cli, "ingest", str(SAMPLE), "--tenant", "museum", "--wait", "--json"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == SIPState.COMMITTED.value and result["aip_id"]
    status = subprocess.run(
        [*cli, "status", "--json"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    listed = json.loads(status.stdout)
    assert listed["counts"] == {"committed": 1}
    assert listed["sips"][0]["stage"] is not None


FLOWER_AUTH = ("curator", "flower-test")


def _get_json(url: str) -> object:
    """GET a Flower API page; Flower 2 serves its API only to an authenticated user."""
    import base64
    import urllib.request

    token = base64.b64encode(":".join(FLOWER_AUTH).encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read().decode())


def test_flower_sees_the_workers_and_their_tasks(cluster: Cluster) -> None:
    import urllib.request

    port = _free_port()
    cluster.start_worker("ingest", "ingest")
    cluster.start_tape_worker("site-a")
    cluster.start_tape_worker("site-b")
    # Flower's own event switch is off: what it sees, the app's configuration sent.
    cluster.start(
        "flower",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            "--enable_events=False",
            f"--basic_auth={':'.join(FLOWER_AUTH)}",
        ],
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthcheck", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    time.sleep(2)  # Flower's event receiver connected before the first task is sent
    done = subprocess.run(
        [sys.executable, "-m", "preservation.cli", "ingest", str(SAMPLE), "--tenant", "museum"]
        + ["--wait", "--json"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    sip_id = json.loads(done.stdout)["sip_id"]

    workers = _get_json(f"{base}/api/workers?refresh=1")
    assert isinstance(workers, dict)
    assert any(name.startswith(f"ingest-{cluster.prefix}@") for name in workers), workers
    stages = (
        "validate", "scan", "identify", "characterise", "describe", "package", "store", "commit"
    )
    tasks: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = _get_json(f"{base}/api/tasks")
        assert isinstance(found, dict)
        tasks = {k: v for k, v in found.items() if sip_id in str(v.get("args"))}
        if {str(t.get("name")) for t in tasks.values() if t.get("state") == "SUCCESS"} >= {
            f"workers.tasks.{s}_sip" for s in stages
        }:
            break
        time.sleep(1)
    by_name = {str(t["name"]): t for t in tasks.values()}
    for stage in stages:
        task = by_name.get(f"workers.tasks.{stage}_sip")
        assert task is not None, (stage, sorted(by_name))
        assert task["state"] == "SUCCESS", task
        assert task["sent"], task  # task-sent events, from whoever published it
    assert str(by_name["workers.tasks.validate_sip"]["worker"]).startswith("ingest-")
