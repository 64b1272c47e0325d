"""Hot folders under real workers: slow uploads, floods, a restarted broker, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import bagit
import pytest
from sqlalchemy import select

from preservation.catalog import SIP, SIPState
from workers.localcluster import ROOT, SAMPLE, Cluster


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
    worker = cluster.procs["ingest"]
    samples: list[int] = []

    def committed() -> bool:
        samples.append(_rss_kib(worker.pid))
        return cluster.counts().get(SIPState.COMMITTED.value, 0) >= n

    cluster.wait_for(committed, timeout=900, what=f"{n} committed SIPs", poll=2)
    assert cluster.counts() == {SIPState.COMMITTED.value: n}
    assert set(cluster.verified_copies().values()) == {2}
    assert len(cluster.verified_copies()) == n
    # Bounded: after warm-up the worker does not keep growing with the number of SIPs.
    warm = [s for s in samples[len(samples) // 4 :] if s]
    assert warm, samples
    assert max(warm) < min(warm) * 1.5 + 50_000, (min(warm), max(warm))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server(port: int, data: Path) -> subprocess.Popen[bytes]:
    redis = shutil.which("redis-server")
    if redis is None:
        pytest.fail("redis-server binary not found") if os.environ.get("CI") else pytest.skip(
            "redis-server binary not found"
        )
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


def test_broker_restarted_mid_run_loses_no_sip(fresh_pg: str, tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "redis"
    data.mkdir()
    redis_proc = _redis_server(port, data)
    url = f"redis://127.0.0.1:{port}/0"
    cluster = Cluster(home=tmp_path / "home", database_url=fresh_pg, broker_url=url)
    try:
        cluster.start_all()
        for i in range(12):
            cluster.drop_bag("museum", f"bag-{i:02d}")
        cluster.wait_for(
            lambda: cluster.counts().get(SIPState.COMMITTED.value, 0) >= 2,
            timeout=120,
            what="the first commits",
        )
        redis_proc.terminate()  # a broker restart: SHUTDOWN, then up again on the same data
        redis_proc.wait(timeout=30)
        time.sleep(2)
        redis_proc = _redis_server(port, data)
        cluster.wait_committed(12, timeout=240)
        assert cluster.counts() == {SIPState.COMMITTED.value: 12}
        assert set(cluster.verified_copies().values()) == {2}
    finally:
        cluster.stop()
        redis_proc.kill()
        redis_proc.wait()


def test_cli_ingest_wait_and_status_against_the_workers(cluster: Cluster) -> None:
    cluster.start_worker("ingest", "ingest")
    cluster.start_worker("tape-a", "store.site-a")
    cluster.start_worker("tape-b", "store.site-b")
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


def test_flower_works_against_the_app(cluster: Cluster) -> None:
    import urllib.request

    port = _free_port()
    cluster.start_worker("ingest", "ingest")
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
        ],
    )
    deadline = time.monotonic() + 60
    body = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2) as r:
                body = r.read().decode()
                break
        except OSError:
            time.sleep(0.5)
    assert body.strip() == "OK"
