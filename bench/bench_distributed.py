"""200 small bags through the distributed pipeline against the embedded mode.

Distributed: one ingest worker, one tape worker per site (one process per
drive; Celery, Redis broker, PostgreSQL catalogue), bags handed in through the
hot-folder watcher, exactly as in production. Embedded: the same bags through
``run_ingest`` in one process (SQLite, the default). Prints JSON: SIPs/s for
both, and the broker's overhead per SIP, defined as

    broker_overhead_ms_per_sip = (W - Q) / N  -  C / N

where W is the distributed wall time (first bag dropped to last SIP
committed), Q the hot folder's quiet period (every bag waits it once, before
any task exists), N the number of SIPs and C the sum over SIPs of the task
execution time on each SIP's critical path:

    validate + identify + describe + package + max(store site-a, store site-b) + commit

(the two stores run in parallel, the rest in sequence). Execution times are
Celery's own "succeeded in" figures, read from every worker's log and matched
to their SIP by the task's return value (the SIP id), so they count work, not
queueing. What is left is what the distributed engine adds per SIP beyond doing
the work: delivery through Redis, the chord's bookkeeping in the result
backend, the watcher's scan interval, and time a SIP's next task waits while
its worker is busy with another SIP. Pipelining can make it negative: the
stages of different SIPs overlap on the three workers, so W / N can be shorter
than one SIP's critical path.

Because of that overlap a second figure is printed, the throughput cost of the
broker: ``ingest_worker_idle_ms_per_sip = (W - Q - B) / N``, where B is the
ingest worker's busy time (all its tasks). The ingest worker is the serial
resource (one process; stores run beside it on the tape workers), so the time
it sat idle per SIP is what fetching, acknowledging and publishing messages cost
the pipeline's rate.

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
from typing import Any

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
    from preservation.ingest import run_ingest

    ctx = open_context(Settings(home=home))
    t0 = time.perf_counter()
    for bag in bags:
        result = run_ingest(ctx, bag, tenant="bench")
        assert result.state == "committed", result.to_dict()
    elapsed = time.perf_counter() - t0
    ctx.close()
    return {"seconds": elapsed, "sips_per_s": len(bags) / elapsed}


SUCCEEDED = re.compile(
    r"Task workers\.tasks\.(\w+)_sip\[[^\]]+\] succeeded in ([0-9.eE+-]+)s: '([0-9a-f-]{36})'"
)
INGEST_STAGES = ("validate", "identify", "describe", "package", "commit")


def task_seconds(logs: dict[str, Path]) -> dict[str, dict[str, float]]:
    """{sip id: {"validate": s, ..., "store@tape-a": s, ...}} from the workers' logs."""
    per_sip: dict[str, dict[str, float]] = {}
    for worker, log in logs.items():
        for m in SUCCEEDED.finditer(log.read_text(errors="replace")):
            stage, seconds, sip = m.group(1), float(m.group(2)), m.group(3)
            key = f"store@{worker}" if stage == "store" else stage
            tasks = per_sip.setdefault(sip, {})
            tasks[key] = tasks.get(key, 0.0) + seconds  # a redelivered task counts twice
    return per_sip


def critical_path_seconds(tasks: dict[str, float]) -> float:
    """One SIP's task time in sequence: the stages, and the slower of its two stores."""
    stores = [v for k, v in tasks.items() if k.startswith("store@")]
    return sum(tasks.get(stage, 0.0) for stage in INGEST_STAGES) + max(stores, default=0.0)


def run_distributed(bags: list[Path], home: Path, pg_admin: str, redis_url: str) -> dict[str, Any]:
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
        per_sip = task_seconds(
            {name: cluster.logs / f"{name}.log" for name in ("ingest", "tape-a", "tape-b")}
        )
    finally:
        cluster.stop()
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    quiet = float(cluster.env()["PRESERVATION_QUIESCENT_SECONDS"])
    complete = [t for t in per_sip.values() if sum(k.startswith("store@") for k in t) == 2]
    if len(per_sip) != len(bags) or len(complete) != len(bags):
        raise SystemExit(
            f"task times found for {len(per_sip)} SIPs ({len(complete)} with both stores), "
            f"expected {len(bags)}: the workers' log format changed?"
        )
    return {
        "seconds": elapsed,
        "sips_per_s": len(bags) / elapsed,
        "quiescent_seconds": quiet,
        "critical_path_task_seconds": sum(critical_path_seconds(t) for t in complete),
        "ingest_worker_task_seconds": sum(
            t.get(stage, 0.0) for t in complete for stage in INGEST_STAGES
        ),
        "tape_task_seconds": {
            worker: sum(t[f"store@{worker}"] for t in complete) for worker in ("tape-a", "tape-b")
        },
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
    # As defined in the module docstring: not clamped, a negative figure means pipelining won.
    wall = float(distributed["seconds"]) - float(distributed["quiescent_seconds"])
    overhead = (wall - float(distributed["critical_path_task_seconds"])) / n
    idle = (wall - float(distributed["ingest_worker_task_seconds"])) / n
    print(
        json.dumps(
            {
                "benchmark": "distributed",
                "bags": n,
                "embedded": embedded,
                "distributed": distributed,
                "ratio_distributed_to_embedded": distributed["sips_per_s"] / embedded["sips_per_s"],
                "broker_overhead_ms_per_sip": 1000 * overhead,
                "ingest_worker_idle_ms_per_sip": 1000 * idle,
                "critical_path_ms_per_sip": 1000
                * float(distributed["critical_path_task_seconds"])
                / n,
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
