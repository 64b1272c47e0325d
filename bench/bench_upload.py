"""A 2 GiB bag through ``POST /api/v1/sips``, against copying the same file on the same disk.

An upload must cost about what writing the bytes costs: the body is streamed
to disk as it arrives (counted against the limit, synced before the ``202``),
never held in memory. Two figures say whether it is:

* throughput: seconds from the first byte sent until the ``202`` arrives, as
  MB/s (10^6 bytes), over the same file copied on the same disk by
  ``shutil.copyfile`` and by ``dd bs=1M``, each also synced (target: >= 0.7x
  the faster synced copy, since the API syncs the upload before its ``202``;
  the ratios over the page-cache copies are reported beside it);
* memory: the API process's resident set, sampled every 50 ms from
  ``/proc/<pid>/status`` (and the kernel's own high-water mark, ``VmHWM``,
  reset just before the upload), idle before and during the upload, for the
  full size and for a smaller one (``--compare-size``): the growth must be
  the same for both, i.e. not grow with the upload.

The server is ``preservation api`` (uvicorn, the embedded default: SQLite,
in-process ingest) in a child process with its data root in ``--workdir``
(where the bag and the copies are too: one disk), one fresh server per
upload. The client is ``httpx`` in this process, the body a generator of
1 MiB reads with ``Content-Length`` set, as ``curl -T`` would send it. The
``202`` starts the ingest in the background; the server is killed right
after it (only the upload is measured) and its data root deleted.

Every contender is warm: the bag is in the page cache (it cannot be dropped
without root), and dirty pages are flushed (``sync``) before each timed run
so that no run pays for the previous one's writeback.

    python bench/bench_upload.py                     # 2 GiB, best of 2, and 256 MiB
    python bench/bench_upload.py --quick             # 64 MiB and 16 MiB, once
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.apiserver import (  # noqa: E402
    ApiServer,
    cpu_seconds,
    peak_rss_kib,
    reset_peak_rss,
    rss_kib,
)

MB = 10**6
CHUNK = 1 << 20
TENANT = "bench"
_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30}
_UNITS["gib"] = 1 << 30


def size_arg(text: str) -> int:
    match = re.fullmatch(r"([0-9]+)\s*([A-Za-z]*)", text.strip())
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_bag_tar(work: Path, size: int, files: int, name: str) -> Path:
    """A serialised bag of about ``size`` bytes: ``files`` random files, bagit, uncompressed tar."""
    import bagit  # type: ignore[import-untyped]

    folder = work / name
    payload = folder / "films"
    payload.mkdir(parents=True)
    each = max(1, (size - 64 * 1024) // files)
    block = bytearray(os.urandom(CHUNK))
    for i in range(files):
        with open(payload / f"reel-{i:02d}.bin", "wb") as out:
            left, n = each, 0
            while left:
                # Distinct content per file and per block, at memcpy speed.
                block[:16] = f"{i:08d}{n:08d}".encode()
                piece = min(left, len(block))
                out.write(memoryview(block)[:piece])
                left -= piece
                n += 1
    bagit.make_bag(
        os.fspath(folder),
        {"Source-Organization": "Bench", "External-Identifier": name},
        checksums=["sha256"],
        processes=2,
    )
    tar = work / f"{name}.tar"
    with tarfile.open(tar, "w") as t:
        t.add(folder, arcname=name)
    shutil.rmtree(folder)
    return tar


# -- the baseline -------------------------------------------------------------------------------


COPIES = ("copyfile", "dd", "copyfile+fsync", "dd+fsync")


def timed_copies(src: Path, work: Path, repeat: int) -> dict[str, list[float]]:
    """``shutil.copyfile`` and ``dd bs=1M`` of ``src`` on the same disk, ``repeat`` times each.

    Each also with the copy synced to disk before the clock stops (``+fsync``):
    the API syncs an upload before its ``202`` (an accepted SIP must survive a
    crash), so the like-for-like baseline is a copy that is on disk too. The
    page-cache copies are kept as the harder, unlike figure.
    """
    dst = work / "copy.tar"
    seconds: dict[str, list[float]] = {name: [] for name in COPIES}
    for _ in range(repeat):
        for name in COPIES:
            dst.unlink(missing_ok=True)
            os.sync()
            t0 = time.perf_counter()
            if name.startswith("copyfile"):
                shutil.copyfile(src, dst)
                if name.endswith("+fsync"):
                    with dst.open("rb+") as fh:
                        os.fsync(fh.fileno())
            else:
                extra = ["conv=fsync"] if name.endswith("+fsync") else []
                subprocess.run(
                    ["dd", f"if={src}", f"of={dst}", "bs=1M", "status=none", *extra], check=True
                )
            seconds[name].append(time.perf_counter() - t0)
    dst.unlink(missing_ok=True)
    return seconds


# -- an upload ----------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """The server's VmRSS every ``interval`` seconds, until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append(rss_kib(self.pid))
            self.done.wait(self.interval)

    def stop(self) -> list[int]:
        self.done.set()
        self.join()
        self.samples.append(rss_kib(self.pid))
        return self.samples


def token_for(home: Path) -> str:
    """A submitter token of the bench tenant, made in the fresh data root."""
    from preservation.catalog.database import session_scope
    from preservation.catalog.models import Role
    from preservation.catalog.service import ensure_tenant
    from preservation.config import Settings
    from preservation.context import open_context
    from preservation.tokens import create_token

    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            ensure_tenant(s, TENANT, "Bench")
            return create_token(s, role=Role.SUBMITTER, tenant_id=TENANT, label="bench").secret
    finally:
        ctx.close()


def body(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            yield chunk


def upload_once(tar: Path, work: Path, label: str) -> dict[str, Any]:
    """One fresh server, idle RSS, the timed upload with RSS sampling, then the server killed."""
    home = work / f"home-{label}"
    size = tar.stat().st_size
    token = token_for(home)
    env = dict(
        os.environ,
        PRESERVATION_HOME=str(home),
        PRESERVATION_MAX_UPLOAD_BYTES=str(2 * size + CHUNK),
    )
    env.pop("PRESERVATION_DATABASE_URL", None)
    env.pop("PRESERVATION_BROKER_URL", None)
    server = ApiServer(env, work / f"api-{label}.log")
    try:
        server.wait_ready()
        idle = RssSampler(server.pid)
        idle.start()
        time.sleep(1.0)
        before = idle.stop()
        hwm_reset = reset_peak_rss(server.pid)
        os.sync()
        sampler = RssSampler(server.pid)
        cpu0, client_cpu0 = cpu_seconds(server.pid), time.process_time()
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-tar",
            "Content-Length": str(size),
        }
        with httpx.Client(base_url=server.base, timeout=600) as client:
            sampler.start()
            t0 = time.perf_counter()
            response = client.post(
                "/api/v1/sips", params={"name": tar.stem}, content=body(tar), headers=headers
            )
            seconds = time.perf_counter() - t0
        during = sampler.stop()
        server_cpu = cpu_seconds(server.pid) - cpu0
        client_cpu = time.process_time() - client_cpu0
        hwm = peak_rss_kib(server.pid) if hwm_reset else None
        if response.status_code != 202:
            raise SystemExit(f"upload: {response.status_code} {response.text}")
        sip = response.json()["sip_id"]
    finally:
        server.stop(kill=True)  # the ingest the 202 started is not measured
        shutil.rmtree(home, ignore_errors=True)
    peak_before, peak_during = max(before), max(during)
    return {
        "bytes": size,
        "seconds": round(seconds, 3),
        "MBps": round(size / MB / seconds, 1),
        "server_cpu_s": round(server_cpu, 2),
        "client_cpu_s": round(client_cpu, 2),
        "sip_id": sip,
        "rss_idle_peak_mb": round(peak_before / 1024, 1),
        "rss_during_peak_mb": round(peak_during / 1024, 1),
        "rss_growth_mb": round((peak_during - peak_before) / 1024, 1),
        "vmhwm_during_mb": round(hwm / 1024, 1) if hwm else None,
        "rss_samples": len(during),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=size_arg, default=2 << 30, help="the bag (default 2GiB)")
    parser.add_argument(
        "--compare-size", type=size_arg, default=256 << 20, help="the memory comparison's bag"
    )
    parser.add_argument("--files", type=int, default=4, help="payload files in each bag")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each contender")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="64 MiB and 16 MiB, once each")
    args = parser.parse_args()
    if args.quick:
        args.size, args.compare_size, args.repeat = 64 << 20, 16 << 20, 1

    with tempfile.TemporaryDirectory(prefix="bench-upload-", dir=args.workdir) as tmp:
        work = Path(tmp)
        log(f"making a {args.size / MB:,.0f} MB bag and a {args.compare_size / MB:,.0f} MB one")
        big = make_bag_tar(work, args.size, args.files, "big-bag")
        small = make_bag_tar(work, args.compare_size, args.files, "small-bag")
        size = big.stat().st_size
        log("copies (the baseline) and uploads, alternating")
        copies: dict[str, list[float]] = {name: [] for name in COPIES}
        uploads: list[dict[str, Any]] = []
        for run in range(args.repeat):
            for name, secs in timed_copies(big, work, 1).items():
                copies[name] += secs
            uploads.append(upload_once(big, work, f"big-{run}"))
            log(f"  run {run + 1}: {uploads[-1]['MBps']} MB/s uploaded")
        compared = upload_once(small, work, "small")

    best = min(uploads, key=lambda u: u["seconds"])
    copy_mbps = {name: round(size / MB / min(secs), 1) for name, secs in copies.items()}
    faster_copy = max(copy_mbps["copyfile"], copy_mbps["dd"])
    faster_durable = max(copy_mbps["copyfile+fsync"], copy_mbps["dd+fsync"])
    growth_big = max(u["rss_growth_mb"] for u in uploads)
    print(
        json.dumps(
            {
                "benchmark": "upload",
                # A shared machine: 1, 5, 15 minutes, this benchmark included (~1.5 of it).
                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                "bytes": size,
                "files_in_bag": args.files,
                "baseline": {
                    "copyfile_s": [round(s, 3) for s in copies["copyfile"]],
                    "dd_bs1M_s": [round(s, 3) for s in copies["dd"]],
                    "copyfile_MBps": copy_mbps["copyfile"],
                    "dd_bs1M_MBps": copy_mbps["dd"],
                    "copyfile_fsync_s": [round(s, 3) for s in copies["copyfile+fsync"]],
                    "dd_bs1M_fsync_s": [round(s, 3) for s in copies["dd+fsync"]],
                    "copyfile_fsync_MBps": copy_mbps["copyfile+fsync"],
                    "dd_bs1M_fsync_MBps": copy_mbps["dd+fsync"],
                },
                "upload": {
                    "seconds": [u["seconds"] for u in uploads],
                    "MBps": best["MBps"],
                    "ratio_over_copyfile": round(best["MBps"] / copy_mbps["copyfile"], 2),
                    "ratio_over_dd": round(best["MBps"] / copy_mbps["dd"], 2),
                    "ratio_over_faster_copy": round(best["MBps"] / faster_copy, 2),
                    # Like for like: the upload is synced before its 202, so is this copy.
                    "ratio_over_faster_durable_copy": round(best["MBps"] / faster_durable, 2),
                    "meets_target": best["MBps"] / faster_durable >= 0.7,
                    "server_cpu_s": best["server_cpu_s"],
                    "client_cpu_s": best["client_cpu_s"],
                },
                "memory": {
                    "runs": uploads,
                    "compare": compared,
                    "growth_mb_full_size": growth_big,
                    "growth_mb_compare_size": compared["rss_growth_mb"],
                    # Growth that scaled with the body would differ by ~the size ratio.
                    "growth_difference_mb": round(growth_big - compared["rss_growth_mb"], 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
