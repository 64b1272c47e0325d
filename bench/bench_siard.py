"""Benchmark: SIARD export and validation of a large table, against the databases' own dumps.

Prints one JSON document on stdout (progress goes to stderr). One table of
``--rows`` rows (default 1,000,000) is made in SQLite and in PostgreSQL with
the columns a register or a measurement log has: a bigint key, a short text,
a timestamp with time zone, a numeric(12,4), a boolean, a date and a note that
is NULL in one row of three and holds characters SIARD must escape in some.

Per backend, in alternating order, best of ``--repeat``:

* baseline: the database's own text dump of the same table, as an operator
  runs it: ``sqlite3 DB ".dump readings"`` or ``psql -c "COPY readings TO
  STDOUT"``, output to /dev/null;
* ours: ``export_database`` in a child process writing the .siard, timed
  inside the child (so interpreter start-up is not counted against it) and
  its peak RSS taken from ``wait4``;
* memory: the same export of a table a tenth the size, so that "flat memory"
  is a ratio of peak RSS (1.0 means the size of the table does not matter);
* validation: ``validate_siard`` of the archive just written, in a child,
  rows/s and peak RSS.

``ratio`` is our rows/s over the baseline's; the issue's target is >= 0.3.

    python bench/bench_siard.py                 # 1,000,000 rows, both backends
    python bench/bench_siard.py --quick         # 20,000 rows, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get(
    "PRESERVATION_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TABLE = "readings"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the data -------------------------------------------------------------------


def fill_sqlite(path: Path, rows: int) -> str:
    """A SQLite file with ``rows`` rows, made by SQLite itself (a recursive CTE)."""
    import sqlite3

    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript(
        f"""
        CREATE TABLE {TABLE} (
            id BIGINT PRIMARY KEY,
            station VARCHAR(40) NOT NULL,
            taken TIMESTAMP NOT NULL,
            value NUMERIC(12, 4),
            ok BOOLEAN NOT NULL,
            day DATE NOT NULL,
            note TEXT
        );
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
        INSERT INTO {TABLE}
        SELECT i,
               'station-' || (i % 997),
               datetime(1600000000 + i * 37, 'unixepoch'),
               round((i % 100000) / 7.0, 4),
               i % 2,
               date(1600000000 + i * 37, 'unixepoch'),
               CASE i % 3 WHEN 0 THEN NULL
                          WHEN 1 THEN 'reading ' || i || ' & <ok>'
                          ELSE 'tab' || char(9) || 'bell' || char(7) || '  two spaces' END
        FROM n;
        """
    )
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def fill_postgres(name: str, rows: int) -> str:
    """A PostgreSQL database ``name`` with ``rows`` rows, made by generate_series."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{name}", autocommit=True) as con:
        con.execute(
            f"""
            CREATE TABLE {TABLE} (
                id BIGINT PRIMARY KEY,
                station VARCHAR(40) NOT NULL,
                taken TIMESTAMP WITH TIME ZONE NOT NULL,
                value NUMERIC(12, 4),
                ok BOOLEAN NOT NULL,
                day DATE NOT NULL,
                note TEXT
            )"""
        )
        con.execute(
            f"""
            INSERT INTO {TABLE}
            SELECT i,
                   'station-' || (i % 997),
                   to_timestamp(1600000000 + i * 37),
                   round((i % 100000) / 7.0, 4),
                   i % 2 = 0,
                   to_timestamp(1600000000 + i * 37)::date,
                   CASE i % 3 WHEN 0 THEN NULL
                              WHEN 1 THEN 'reading ' || i || ' & <ok>'
                              ELSE 'tab' || chr(9) || 'bell' || chr(7) || '  two spaces' END
            FROM generate_series(1, {rows}) AS i"""
        )
        con.execute(f"VACUUM ANALYZE {TABLE}")
    return f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"


def drop_postgres(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- measuring ------------------------------------------------------------------


def timed_child(argv: list[str], *, stdout: Any = subprocess.PIPE) -> dict[str, Any]:
    """Run ``argv``; its wall seconds, peak RSS (MiB, from wait4) and stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, cwd=ROOT)
    out = proc.stdout.read() if proc.stdout is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}...: exit {proc.returncode}")
    return {
        "wall_seconds": seconds,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stdout": out,
    }


def baseline(backend: str, url: str, db: Path | str) -> dict[str, Any]:
    with open(os.devnull, "wb") as null:
        if backend == "sqlite":
            run = timed_child(["sqlite3", str(db), f".dump {TABLE}"], stdout=null)
        else:
            pg = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"
            run = timed_child(
                ["psql", "-X", "-q", pg, "-c", f"COPY {TABLE} TO STDOUT"], stdout=null
            )
    return {"seconds": run["wall_seconds"], "peak_rss_mb": run["peak_rss_mb"]}


def ours(url: str, dest: Path) -> dict[str, Any]:
    run = timed_child([sys.executable, __file__, "--child", "export", url, str(dest)])
    inner = json.loads(run["stdout"])
    return {**inner, "peak_rss_mb": run["peak_rss_mb"], "wall_seconds": run["wall_seconds"]}


def validation(path: Path) -> dict[str, Any]:
    run = timed_child([sys.executable, __file__, "--child", "validate", str(path), ""])
    inner = json.loads(run["stdout"])
    return {**inner, "peak_rss_mb": run["peak_rss_mb"]}


def child(what: str, first: str, second: str) -> int:
    """In the child: one export or one validation, timed from inside."""
    if what == "export":
        from preservation.siard.export import export_database

        started = time.perf_counter()
        archive = export_database(first, Path(second))
        seconds = time.perf_counter() - started
        rows = sum(t.rows for _, t in archive.tables())
        print(json.dumps({"seconds": seconds, "rows": rows, "bytes": Path(second).stat().st_size}))
        return 0
    from preservation.siard.validate import validate_siard

    started = time.perf_counter()
    report = validate_siard(Path(first))
    seconds = time.perf_counter() - started
    problems = [f"{p.table}: {p.rule}: {p.message}" for p in report.problems][:5]
    print(
        json.dumps(
            {"seconds": seconds, "rows": report.rows, "valid": report.valid, "problems": problems}
        )
    )
    return 0


def measure(backend: str, rows: int, repeat: int, work: Path) -> dict[str, Any]:
    small_rows = max(rows // 10, 1)
    log(f"{backend}: filling {rows:,} and {small_rows:,} rows")
    if backend == "sqlite":
        big_db, small_db = work / "big.sqlite", work / "small.sqlite"
        big_url, small_url = fill_sqlite(big_db, rows), fill_sqlite(small_db, small_rows)
        big_ref: Path | str = big_db
    else:
        tag = uuid.uuid4().hex[:8]
        big_ref, small_ref = f"bench_siard_big_{tag}", f"bench_siard_small_{tag}"
        big_url, small_url = fill_postgres(big_ref, rows), fill_postgres(small_ref, small_rows)
    try:
        dest = work / f"{backend}.siard"
        base_runs, our_runs = [], []
        for n in range(repeat):
            order = ("baseline", "ours") if n % 2 == 0 else ("ours", "baseline")
            for which in order:
                if which == "baseline":
                    base_runs.append(baseline(backend, big_url, big_ref))
                    log(f"  baseline {base_runs[-1]['seconds']:.2f} s")
                else:
                    dest.unlink(missing_ok=True)
                    our_runs.append(ours(big_url, dest))
                    log(f"  export {our_runs[-1]['seconds']:.2f} s")
        small = ours(small_url, work / f"{backend}-small.siard")
        checked = validation(dest)
        log(f"  validate {checked['seconds']:.2f} s, valid={checked['valid']}")
    finally:
        if backend == "postgresql":
            drop_postgres(str(big_ref))
            drop_postgres(str(small_ref))
    best_base = min(base_runs, key=lambda r: r["seconds"])
    best_ours = min(our_runs, key=lambda r: r["seconds"])
    assert best_ours["rows"] == rows, best_ours
    base_rate = rows / best_base["seconds"]
    our_rate = rows / best_ours["seconds"]
    return {
        "rows": rows,
        "baseline": {
            "tool": "sqlite3 .dump" if backend == "sqlite" else "psql COPY ... TO STDOUT",
            "seconds": round(best_base["seconds"], 3),
            "rows_per_s": round(base_rate),
            "peak_rss_mb": best_base["peak_rss_mb"],
        },
        "export": {
            "seconds": round(best_ours["seconds"], 3),
            "wall_seconds_with_startup": round(best_ours["wall_seconds"], 3),
            "rows_per_s": round(our_rate),
            "peak_rss_mb": best_ours["peak_rss_mb"],
            "siard_bytes": best_ours["bytes"],
            "runs_seconds": [round(r["seconds"], 3) for r in our_runs],
        },
        "ratio": round(our_rate / base_rate, 3),
        "memory": {
            "rows_small": small_rows,
            "peak_rss_mb_small": small["peak_rss_mb"],
            "peak_rss_mb_large": best_ours["peak_rss_mb"],
            "large_over_small": round(best_ours["peak_rss_mb"] / small["peak_rss_mb"], 3),
        },
        "validation": {
            "seconds": round(checked["seconds"], 3),
            "rows_per_s": round(checked["rows"] / checked["seconds"]),
            "peak_rss_mb": checked["peak_rss_mb"],
            "valid": checked["valid"],
            "problems": checked["problems"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, one run each")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("WHAT", "A", "B"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    if args.quick:
        args.rows, args.repeat = 20_000, 1
    work = Path(tempfile.mkdtemp(prefix="bench-siard-", dir=args.workdir))
    try:
        result: dict[str, Any] = {"rows": args.rows, "repeat": args.repeat, "backends": {}}
        for backend in args.backends.split(","):
            result["backends"][backend] = measure(backend, args.rows, args.repeat, work)
        result["self_peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
