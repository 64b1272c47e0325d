"""Benchmark of the dual-site store on emulated tape; prints JSON, asserts nothing.

Part 1, throughput: two AIP tars of ``--size`` bytes (default 1 GB) stored at
both sites with read-back verification, i.e. 4 GB written and 4 GB read
through LTFS on the emulator (durable: one ``syncfs`` per LTFS sync point),
against a baseline run in the same process tree: ``dd if=f of=out bs=1M
conv=fsync`` twice per tar and each output read back with ``dd of=/dev/null``.
The headline ratio is baseline seconds over ours (1.0 = as fast as dd; target
>= 0.8) for the store stage as the system runs it, both sites at once (the
embedded ``store_all`` and the per-site Celery queues alike); the same tars
stored with site B only after site A is verified are reported beside it. Note
that dd only reads its copies back, while every copy here is also hashed.

Part 2, tape mechanics on the simulated LTO-9 clock: ``--aips`` AIPs of
``--aip-size`` bytes (default 100 x 50 MB) stored at both sites; mounts and
simulated seconds per 100 AIPs. The emulator charges every write at the
nominal 400 MB/s, so streaming is judged on the host's side: the slowest rate
at which the host handed a file's bytes to the drive over any 64 MiB
(``min_host_feed_MBps``, wall clock); below LTO-9's minimum of 177 MB/s a real
drive would shoe-shine (``shoe_shining``).

Run: ``python bench/bench_store.py`` (work area /work/tmp-bench-store, removed after).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from preservation.catalog import service as catalog
from preservation.catalog.database import session_scope
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.storage import service
from preservation.storage.library import Durability, EmulatedLibrary
from preservation.storage.sites import FEED_WINDOW, build_sites, get_site

LTO9_MIN_STREAM = 177e6  # bytes/s, lowest speed-matching rate of an LTO-9 drive
MB = 1e6


def _random_file(path: Path, size: int) -> str:
    """Random bytes (incompressible, like most AIPs), hashed as they are written."""
    digest = hashlib.sha256()
    chunk = 8 << 20
    with open(path, "wb") as out:
        left = size
        while left:
            data = os.urandom(min(chunk, left))
            digest.update(data)
            out.write(data)
            left -= len(data)
    return digest.hexdigest()


def _version(ctx: Context, name: str, path: Path, sha256: str, size: int) -> int:
    with session_scope(ctx.sessions) as s:
        sip = catalog.create_sip(s, tenant_id="bench", name=name, source_path=str(path))
        aip = catalog.create_aip(s, sip)
        version = catalog.create_aip_version(s, aip, 1)
        version.staging_path, version.tar_sha256, version.tar_size = str(path), sha256, size
        return version.id


def _dd(*args: str) -> None:
    subprocess.run(["dd", *args], check=True, capture_output=True)


def _baseline(sources: list[Path], work: Path) -> float:
    start = time.perf_counter()
    outputs = []
    for n, source in enumerate(sources):
        for copy in (1, 2):
            out = work / f"dd-{n}-{copy}.out"
            _dd(f"if={source}", f"of={out}", "bs=1M", "conv=fsync")
            outputs.append(out)
    for out in outputs:
        _dd(f"if={out}", "of=/dev/null", "bs=1M")
    seconds = time.perf_counter() - start
    for out in outputs:
        out.unlink()
    return seconds


def _context(home: Path, *, durability: Durability, capacity: int, cartridges: int) -> Context:
    settings = Settings(
        home=home,
        tape_capacity=capacity,
        tape_cartridges_per_site=cartridges,
        tape_drives_per_site=1,
    )
    ctx = open_context(settings)
    build_sites(ctx, durability=durability)
    return ctx


def _store_all(ctx: Context, ids: list[int], *, parallel: bool) -> float:
    """Store and commit every version at every site; wall seconds."""
    sites = ctx.settings.sites
    start = time.perf_counter()
    for vid in ids:
        if parallel:  # as deployed: one worker per site queue, both at once
            with ThreadPoolExecutor(len(sites)) as pool:
                list(pool.map(lambda site, v=vid: service.store_version(ctx, v, site), sites))
        else:  # the embedded default: one site after the other
            for site in sites:
                service.store_version(ctx, vid, site)
        assert service.commit_version(ctx, vid)
    service.release_drives(ctx)
    return time.perf_counter() - start


def _timed_store(
    work: Path, sources: list[Path], digests: list[str], size: int, *, parallel: bool
) -> float:
    """The tars stored at both sites in a fresh data root, removed afterwards (disk space)."""
    home = work / ("var-parallel" if parallel else "var-sequential")
    ctx = _context(home, durability="flush", capacity=18 * 10**12, cartridges=1)
    try:
        ids = [
            _version(ctx, f"bag{n}", p, d, size)
            for n, (p, d) in enumerate(zip(sources, digests, strict=True))
        ]
        return _store_all(ctx, ids, parallel=parallel)
    finally:
        ctx.close()
        shutil.rmtree(home, ignore_errors=True)


def throughput(work: Path, size: int) -> dict[str, Any]:
    """Sites one after the other is the headline: the dd baseline is sequential too."""
    sources_dir = work / "sources"
    sources_dir.mkdir(parents=True)
    sources = [sources_dir / f"aip{n}.tar" for n in range(2)]
    digests = [_random_file(p, size) for p in sources]
    baseline_s = _baseline(sources, work)
    sequential_s = _timed_store(work, sources, digests, size, parallel=False)
    parallel_s = _timed_store(work, sources, digests, size, parallel=True)
    moved = 2 * len(sources) * size  # written; as much again is read back
    return {
        "aips": len(sources),
        "aip_bytes": size,
        "bytes_written": moved,
        "bytes_read_back": moved,
        "baseline": "dd bs=1M conv=fsync x2 per tar, then dd of=/dev/null of each copy",
        "baseline_seconds": round(baseline_s, 3),
        "baseline_MBps": round(moved / baseline_s / MB, 1),
        "store_seconds": round(parallel_s, 3),
        "store_MBps": round(moved / parallel_s / MB, 1),
        "ratio_vs_baseline": round(baseline_s / parallel_s, 3),
        "target_ratio": 0.8,
        "store_is": "the store stage as it runs: both sites at once (the embedded store_all "
        "and the per-site queues alike), each copy read back and its sha256 checked",
        "sites_one_after_other": {
            "note": "the same tars, site B only after site A's copy is verified",
            "store_seconds": round(sequential_s, 3),
            "store_MBps": round(moved / sequential_s / MB, 1),
            "ratio_vs_baseline": round(baseline_s / sequential_s, 3),
        },
    }


def mechanics(work: Path, count: int, size: int) -> dict[str, Any]:
    work.mkdir(parents=True)
    source = work / "aip.tar"
    digest = _random_file(source, size)
    # The sites' own durability ("flush": records written back as they go, one syncfs
    # per sync point): without it 5 GB of dirty pages pile up per site until the
    # kernel throttles the emulator's writes, a stall no drive fed from staging sees.
    ctx = _context(work / "var-sim", durability="flush", capacity=18 * 10**12, cartridges=2)
    try:
        ids = [_version(ctx, f"sim{n}", source, digest, size) for n in range(count)]
        start = time.perf_counter()
        for vid in ids:
            for site in ctx.settings.sites:
                service.store_version(ctx, vid, site)
            assert service.commit_version(ctx, vid)
        service.release_drives(ctx)
        wall = time.perf_counter() - start
        sites: dict[str, Any] = {}
        for name in ctx.settings.sites:
            site = get_site(ctx, name)
            library = site.library
            assert isinstance(library, EmulatedLibrary)
            seconds = library.clock.now()
            loads = sum(d.stats.loads for d in library.devices())
            stats = site.stats
            sites[name] = {
                "mounts": library.stats.mounts,
                "drive_loads": loads,
                "simulated_seconds": round(seconds, 1),
                "simulated_seconds_per_100_aips": round(seconds * 100 / count, 1),
                "tape_write_seconds": round(stats.tape_seconds, 1),
                "min_host_feed_MBps": round((stats.min_host_feed or 0) / MB, 1),
                "min_host_feed_per_file_MBps": round((stats.min_host_rate or 0) / MB, 1),
                "simulated_drive_MBps": round((stats.min_tape_rate or 0) / MB, 1),
                "effective_MBps_incl_mounts_syncs_readback": round(count * size / seconds / MB, 1),
                "shoe_shining": (stats.min_host_feed or 0) < LTO9_MIN_STREAM,
            }
    finally:
        ctx.close()
    return {
        "aips": count,
        "aip_bytes": size,
        "wall_seconds": round(wall, 2),
        "lto9_min_stream_MBps": LTO9_MIN_STREAM / MB,
        "host_feed_window_bytes": FEED_WINDOW,
        "sites": sites,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/work/tmp-bench-store"))
    parser.add_argument("--size", type=int, default=10**9, help="bytes per AIP in part 1")
    parser.add_argument("--aips", type=int, default=100, help="AIPs in part 2")
    parser.add_argument("--aip-size", type=int, default=50 * 10**6, help="bytes per AIP, part 2")
    args = parser.parse_args(argv)
    work: Path = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        result = {
            "bench": "store",
            "python": sys.version.split()[0],
            "throughput": throughput(work / "t", args.size),
            "mechanics": mechanics(work / "m", args.aips, args.aip_size),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
