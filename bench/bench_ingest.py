"""End-to-end ingest of a small mixed bag, against the a3m reference figure.

The embedded default, as ``preservation ingest`` runs it: one process, SQLite
catalogue, emulated tape libraries under a temporary data root (their default
durability, ``flush``). One bag of ``--files`` files (txt, png, pdf, csv, xml,
wav, 10-100 KB each, from ``bench/samples.py``), made with ``bagit.make_bag``
(sha256 + sha512), is ingested:

* ``in_process``: ``run_ingest`` on a fresh data root and a fresh ``Context``
  each run (catalogue migration outside the timing; identification pool start,
  tape mounts and LTFS writes inside it), best of ``--repeat``. Wall time,
  files/s, the per-stage ``IngestResult.timings`` of the best run, and the ratio
  against a3m's figure from the issue.
* ``in_process_warm``: right after each cold run, the same bag ingested again in
  the same ``Context`` (pool already started, cartridges already mounted), as a
  long-running watcher or worker ingests its second bag.
* ``cli``: ``preservation ingest BAG --tenant bench --json`` as a
  subprocess on a fresh data root, best of ``--repeat`` (interpreter start, imports, catalogue
  migration, pool start, unmount at exit: everything a curator waits for).

Reference (the issue): Archivematica's lightweight engine a3m 0.7.14 took 16.3 s
for such a 200-file set on this kind of machine, normalisation off (12 files/s);
the target is at least 20 times that. Prints one JSON document on stdout,
progress on stderr; asserts nothing about timings.

This module imports only the standard library at the top, on purpose: the
identification pool's forkserver workers re-run the parent's ``__main__``
module when they start (CPython 3.11's forkserver never preloads ``__main__``:
it keeps a ``main_path`` key that spawn's preparation data names
``init_main_from_path``), so every import made here would be paid again by
each worker and counted against the pipeline. ``--heavy-main`` imports
``bagit`` and ``preservation.ingest`` at the top, to measure that effect.

    python bench/bench_ingest.py                  # 200 files, best of 3, plus the CLI
    python bench/bench_ingest.py --quick          # 50 files, one run
    python bench/bench_ingest.py --profile        # also cProfile one extra run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from preservation.ingest import IngestResult

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_HEAVY_MAIN = "BENCH_INGEST_HEAVY_MAIN"
if os.environ.get(_HEAVY_MAIN):  # --heavy-main; identification workers run this too
    import bagit  # noqa: F401

    import preservation.ingest  # noqa: F401

KINDS = ("txt", "png", "pdf", "csv", "xml", "wav")
TENANT = "bench"
# The reference: a3m 0.7.14, 200 files, normalisation off, 16.3 s.
A3M = {"engine": "a3m 0.7.14", "files": 200, "seconds": 16.3, "normalisation": "off"}
A3M_FILES_PER_S = A3M["files"] / A3M["seconds"]
TARGET_RATIO = 20.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_bag(root: Path, files: int, seed: int) -> tuple[Path, int]:
    """A bag of ``files`` sample files cycling through ``KINDS``, 50 to a folder."""
    import bagit

    from bench.samples import write_sample

    rng = random.Random(seed)
    order = list(KINDS)
    rng.shuffle(order)
    octets = 0
    for i in range(files):
        kind = order[i % len(order)]
        folder = root / f"series-{i // 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = write_sample(kind, folder / f"item-{i:05d}.{kind}", seed=seed * 1_000_003 + i)
        octets += path.stat().st_size
    bagit.make_bag(
        os.fspath(root),
        bag_info={"Source-Organization": "Benchmark", "External-Identifier": "BENCH-INGEST"},
        checksums=["sha256", "sha512"],
    )
    return root, octets


def _rate(files: int, seconds: float) -> dict[str, float]:
    fps = files / seconds
    return {
        "seconds": round(seconds, 3),
        "files_per_s": round(fps, 1),
        "ratio_vs_a3m": round(fps / A3M_FILES_PER_S, 2),
    }


def _stages(result: IngestResult) -> dict[str, float]:
    return {k: round(v, 4) for k, v in result.timings.items()}


def _maxrss_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # KiB on Linux


def _ingest(ctx: Any, bag: Path, label: str) -> dict[str, Any]:
    from preservation.ingest import run_ingest

    started = time.perf_counter()
    result = run_ingest(ctx, bag, tenant=TENANT)
    wall = time.perf_counter() - started
    log(f"{label}: {result.state} in {wall:.3f} s")
    return {"wall": wall, "state": result.state, "stages": _stages(result), "result": result}


def in_process(bag: Path, work: Path, files: int, repeat: int) -> dict[str, dict[str, Any]]:
    """Best of ``repeat`` cold runs, each followed by one warm run in the same Context."""
    from preservation.config import Settings
    from preservation.context import open_context

    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    for run in range(repeat):
        home = work / f"home-{run}"
        shutil.rmtree(home, ignore_errors=True)
        started = time.perf_counter()
        ctx = open_context(Settings(home=home))
        open_s = time.perf_counter() - started
        try:
            cold.append(_ingest(ctx, bag, f"run {run + 1}/{repeat} cold"))
            warm.append(_ingest(ctx, bag, f"run {run + 1}/{repeat} warm"))
        finally:
            started = time.perf_counter()
            ctx.close()
            close_s = time.perf_counter() - started
        cold[-1]["context_open_s"] = round(open_s, 4)
        cold[-1]["context_close_s"] = round(close_s, 4)
        shutil.rmtree(home, ignore_errors=True)
    out = {"cold": _summary(cold, files), "warm": _summary(warm, files)}
    cold_id = out["cold"]["stage_seconds_best"].get("identify")
    warm_id = out["warm"]["stage_seconds_best"].get("identify")
    if cold_id is not None and warm_id is not None:
        out["cold"]["identify_pool_start_estimate_s"] = round(cold_id - warm_id, 3)
    return out


def _summary(runs: list[dict[str, Any]], files: int) -> dict[str, Any]:
    ok = [r for r in runs if r["state"] == "committed"] or runs
    best = min(ok, key=lambda r: r["wall"])
    out: dict[str, Any] = {
        **_rate(files, best["wall"]),
        "seconds_all": [round(r["wall"], 3) for r in runs],
        "states": [r["state"] for r in runs],
        "stage_seconds_best": best["stages"],
        "stage_share_best": {
            k: round(v / best["wall"], 3) for k, v in best["stages"].items() if k != "total"
        },
    }
    for key in ("context_open_s", "context_close_s"):
        if key in best:
            out[key] = best[key]
    if best["result"].problems:
        out["problems"] = best["result"].problems[:10]
    return out


def _cli_command() -> list[str]:
    exe = shutil.which("preservation")
    return [exe] if exe else [sys.executable, "-c", "from preservation.cli import app; app()"]


def cli(bag: Path, work: Path, files: int, repeat: int = 1) -> dict[str, Any]:
    """Cold ``preservation ingest`` processes, each on its own fresh data root; the best."""
    runs = []
    for _ in range(repeat):
        home = work / "home-cli"
        shutil.rmtree(home, ignore_errors=True)
        runs.append(_cli_once(bag, home, files))
        shutil.rmtree(home, ignore_errors=True)
    return _best_cli(runs)


def _best_cli(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(runs, key=lambda r: r.get("seconds", float("inf")))
    return {**best, "seconds_all": [r.get("seconds") for r in runs]}


def _cli_once(bag: Path, home: Path, files: int) -> dict[str, Any]:
    """One cold ``preservation ingest`` process on the data root ``home``."""
    env = {**os.environ, "PRESERVATION_HOME": str(home)}
    env.pop(_HEAVY_MAIN, None)
    command = [*_cli_command(), "ingest", str(bag), "--tenant", TENANT, "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    out: dict[str, Any] = {
        "command": f"preservation ingest BAG --tenant {TENANT} --json",
        "exit_code": done.returncode,
        **_rate(files, wall),
    }
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        out["stdout"] = done.stdout[-2000:]
        out["stderr"] = done.stderr[-2000:]
        return out
    out["state"] = report.get("state")
    timings = report.get("timings", {})
    out["stage_seconds"] = timings
    if "total" in timings:
        # Interpreter start, imports, catalogue migration, pool and tape shutdown.
        out["outside_run_ingest_s"] = round(wall - timings["total"], 3)
    return out


def fido_cli(bag: Path, repeat: int) -> dict[str, Any]:
    """The stock fido CLI merely identifying the bag's payload: the yardstick of the issue."""
    exe = shutil.which("fido") or str(Path(sys.executable).parent / "fido")
    files = sorted(str(p) for p in (bag / "data").rglob("*") if p.is_file())
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([exe, "-q", *files], capture_output=True, text=True)
        runs.append(time.perf_counter() - started)
    return {
        "command": "fido -q FILE...",
        "exit_code": done.returncode,
        "seconds": round(min(runs), 3),
        "seconds_all": [round(r, 3) for r in runs],
        "lines": len(done.stdout.splitlines()),
    }


def cli_existing_root(bag: Path, work: Path, files: int, repeat: int = 1) -> dict[str, Any]:
    """A cold ``preservation ingest`` process on a data root already in use.

    An archive's data root exists before its next ingest: the catalogue is
    migrated and the cartridges are formatted. A one-file bag is ingested
    first (untimed) to make it so; then the timed process is as cold as
    ``cli``: interpreter, imports, pool start, tape mounts, unmount at exit.
    """
    import bagit

    home = work / "home-cli-existing"
    shutil.rmtree(home, ignore_errors=True)
    first = work / "first-bag"
    shutil.rmtree(first, ignore_errors=True)
    (first).mkdir()
    (first / "readme.txt").write_text("the archive's first bag\n")
    bagit.make_bag(os.fspath(first), {"Source-Organization": "Benchmark"}, checksums=["sha256"])
    env = {**os.environ, "PRESERVATION_HOME": str(home)}
    env.pop(_HEAVY_MAIN, None)
    subprocess.run(
        [*_cli_command(), "ingest", str(first), "--tenant", TENANT, "--json"],
        capture_output=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    # The same bag again each time: a duplicate, ingested with its warning, all stages run.
    out = _best_cli([_cli_once(bag, home, files) for _ in range(repeat)])
    shutil.rmtree(home, ignore_errors=True)
    out["command"] += " (data root in use)"
    return out


def profile(bag: Path, work: Path, dest: Path | None, top: int) -> dict[str, Any]:
    """cProfile one cold run (this process only: identification workers are not seen)."""
    from preservation.config import Settings
    from preservation.context import open_context
    from preservation.ingest import run_ingest

    home = work / "home-profile"
    ctx = open_context(Settings(home=home))
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        result = run_ingest(ctx, bag, tenant=TENANT)
        profiler.disable()
    finally:
        ctx.close()
        shutil.rmtree(home, ignore_errors=True)
    if dest:
        profiler.dump_stats(dest)
    stats = pstats.Stats(profiler, stream=io.StringIO())

    def rows(key: str) -> list[dict[str, Any]]:
        stats.sort_stats(key)
        picked = []
        for func in stats.fcn_list[:top]:  # type: ignore[attr-defined]
            _, calls, tottime, cumtime, _ = stats.stats[func]  # type: ignore[attr-defined]
            filename, line, name = func
            where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
            picked.append(
                {
                    "function": f"{where}:{line}({name})",
                    "calls": calls,
                    "tottime_s": round(tottime, 4),
                    "cumtime_s": round(cumtime, 4),
                }
            )
        return picked

    return {
        "profiled_run_stage_seconds": _stages(result),
        "note": "parent process only; identification runs in worker processes",
        "top_cumulative": rows("cumulative"),
        "top_tottime": rows("tottime"),
        "stats_file": str(dest) if dest else None,
    }


def _scanner(work: Path) -> Any:
    """A real clamd on test signatures for the whole run; the CLI processes find it too."""
    from tests.scanning import make_signature_db, running_clamd

    manager = running_clamd(make_signature_db(work / "clamav-db"), work / "clamd")
    os.environ["PRESERVATION_CLAMD_SOCKET"] = manager.__enter__()
    return manager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="best of R, fresh data root each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp folder")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess run")
    parser.add_argument("--quick", action="store_true", help="50 files, one run, for a smoke test")
    parser.add_argument(
        "--heavy-main",
        action="store_true",
        help="import bagit and the pipeline at module level (each pool worker re-imports them)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        nargs="?",
        const=Path(""),
        default=None,
        metavar="PROF_FILE",
        help="cProfile one extra run; optionally save the stats to PROF_FILE",
    )
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.repeat = min(args.files, 50), 1
    if args.heavy_main and not os.environ.get(_HEAVY_MAIN):
        # Re-run with the variable set, so this module and its workers import at the top.
        env = {**os.environ, _HEAVY_MAIN: "1"}
        rest = sys.argv[1:] if argv is None else argv
        return subprocess.run([sys.executable, __file__, *rest], env=env).returncode
    logging.getLogger("bagit").setLevel(logging.ERROR)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.workdir))
    try:
        log(f"making a {args.files}-file bag under {work}")
        bag, octets = make_bag(work / "bag", args.files, args.seed)
        result: dict[str, Any] = {
            "benchmark": "ingest",
            "files": args.files,
            "kinds": list(KINDS),
            "bytes": octets,
            "repeat": args.repeat,
            "heavy_main": bool(os.environ.get(_HEAVY_MAIN)),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "reference": {**A3M, "files_per_s": round(A3M_FILES_PER_S, 2)},
            "target": {
                "ratio_vs_a3m": TARGET_RATIO,
                "files_per_s": round(TARGET_RATIO * A3M_FILES_PER_S, 1),
            },
        }
        log("the fido CLI on the same payload")
        result["fido_cli"] = fido_cli(bag, args.repeat)
        scanner = _scanner(work)
        result["virus_scanner"] = "clamd on 3 test signatures (tests/scanning.py)"
        try:
            runs = in_process(bag, work, args.files, args.repeat)
            result["in_process"] = runs["cold"]
            result["in_process_warm"] = runs["warm"]
            result["peak_rss_mb"] = _maxrss_mb(resource.RUSAGE_SELF)
            if not args.no_cli:
                log("running the CLI once on a fresh data root, once on one in use")
                result["cli"] = cli(bag, work, args.files, args.repeat)
                result["cli_existing_root"] = cli_existing_root(bag, work, args.files, args.repeat)
        finally:
            scanner.__exit__(None, None, None)
        fido_s = result["fido_cli"]["seconds"]
        result["over_fido_cli"] = {
            name: round(result[name]["seconds"] / fido_s, 3)
            for name in ("in_process", "in_process_warm", "cli", "cli_existing_root")
            if name in result and "seconds" in result[name]
        }
        result["over_fido_cli_target"] = {"cli": 0.8, "in_process_warm": 0.4}
        if args.profile is not None:
            log("profiling one more run")
            dest = args.profile if str(args.profile) not in ("", ".") else None
            result["profile"] = profile(bag, work, dest, args.profile_top)
        result["peak_rss_children_mb"] = _maxrss_mb(resource.RUSAGE_CHILDREN)
        meets = {
            "in_process": result["in_process"]["ratio_vs_a3m"] >= TARGET_RATIO,
            "in_process_warm": result["in_process_warm"]["ratio_vs_a3m"] >= TARGET_RATIO,
        }
        if "ratio_vs_a3m" in result.get("cli", {}):
            meets["cli"] = result["cli"]["ratio_vs_a3m"] >= TARGET_RATIO
        result["meets_target"] = meets
    finally:
        shutil.rmtree(work, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
