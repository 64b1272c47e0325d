"""200 small bags through the distributed pipeline against the embedded mode.

Distributed: one ingest worker, one tape worker per site (Celery, Redis broker,
PostgreSQL catalogue), bags handed in through the hot-folder watcher, exactly
as in production. Embedded: the same bags through ``run_ingest`` in one process
(SQLite, the default). Prints JSON: SIPs/s for both and the broker's overhead
per SIP: the distributed wall time not spent inside the ingest worker's tasks
(the serial path; tape writes overlap with it), divided by the number of SIPs.
Task time is read back from the worker's log, so it counts work, not waiting.

    python bench/bench_distributed.py [--bags 200] [--pg URL] [--redis URL]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_bags(folder: Path, n: int) -> list[Path]:
    import bagit

    sample = ROOT / "examples" / "bags" / "sample-collection" / "data"
    files = sorted(p for p in sample.rglob("*") if p.is_file())[:3]
    bags = []
    for i in range(n):
        bag = folder / f"bag-{i:04d}"
        bag.mkdir(parents=True)
        for f in files:
            shutil.copy2(f, bag / f.name)
        (bag / "id.txt").write_text(f"{i}\n")
        bagit.make_bag(str(bag), {"Source-Organization": "Bench"}, checksums=["sha256"])
        bags.append(bag)
    return bags


def run_embedded(bags: list[Path], home: Path) -> dict[str, float]:
    from preservation.config import Settings
    from preservation.context import open_context
    from preservation.pipeline import run_ingest

    ctx = open_context(Settings(home=home))
    t0 = time.perf_counter()
    for bag in bags:
        result = run_ingest(ctx, bag, tenant="bench")
        assert result.state == "committed", result.to_dict()
    elapsed = time.perf_counter() - t0
    ctx.close()
    return {"seconds": elapsed, "sips_per_s": len(bags) / elapsed}


def _task_seconds(log: Path) -> float:
    pattern = re.compile(r"succeeded in ([0-9.]+)s")
    return sum(float(m.group(1)) for m in pattern.finditer(log.read_text()))


def run_distributed(
    bags: list[Path], home: Path, pg_admin: str, redis_url: str
) -> dict[str, float]:
    import psycopg

    from preservation.catalog import upgrade
    from workers.localcluster import Cluster

    db = f"preservation_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db}"')
    url = pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + db
    upgrade(url)
    cluster = Cluster(home=home, database_url=url, broker_url=redis_url)
    try:
        cluster.start_all()
        time.sleep(3)  # workers up and connected before the clock starts
        folder = home / "ingest" / "bench"
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for bag in bags:
            os.rename(bag, folder / bag.name)
        cluster.wait_committed(len(bags), timeout=3600)
        elapsed = time.perf_counter() - t0
        # The ingest worker is the serial path; tape writes overlap with it.
        work = _task_seconds(cluster.logs / "ingest.log")
    finally:
        cluster.stop()
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    quiet = float(cluster.env()["PRESERVATION_QUIESCENT_SECONDS"])
    return {
        "seconds": elapsed,
        "sips_per_s": len(bags) / elapsed,
        "task_seconds": work,
        "quiescent_seconds": quiet,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bags", type=int, default=200)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-dist-") as tmp:
        tmp_path = Path(tmp)
        embedded = run_embedded(make_bags(tmp_path / "bags-e", args.bags), tmp_path / "home-e")
        distributed = run_distributed(
            make_bags(tmp_path / "bags-d", args.bags), tmp_path / "home-d", args.pg, args.redis
        )
    n = args.bags
    # Wall time the pipeline spent outside stage functions: broker, chord, polling.
    # The three workers run in parallel, so their task time is spread over them.
    overhead = max(
        0.0,
        distributed["seconds"] - distributed["quiescent_seconds"] - distributed["task_seconds"] / 3,
    )
    print(
        json.dumps(
            {
                "benchmark": "distributed",
                "bags": n,
                "embedded": embedded,
                "distributed": distributed,
                "ratio_distributed_to_embedded": distributed["sips_per_s"] / embedded["sips_per_s"],
                "broker_overhead_ms_per_sip": 1000 * overhead / n,
                "per_sip_ms": {
                    "embedded": 1000 * embedded["seconds"] / n,
                    "distributed": 1000 * distributed["seconds"] / n,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
