"""Run the benchmarks, each in its own process, and print one JSON document.

    python -m bench                      # every benchmark at full size (tens of minutes)
    python -m bench --quick              # every benchmark at smoke-test size (about a minute)
    python -m bench --quick ingest mets  # some of them

Each benchmark script runs as a subprocess (so its peak memory is its own and
not its neighbours'); its JSON output is collected under its name, with a
``harness`` entry added: the command, exit code, wall seconds and the child's
peak RSS (from ``wait4``, the child and the processes it waited for). The
document ``{name: result}`` is printed on stdout and saved to
``bench/results/<UTC timestamp>.json``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
ORDER = (
    "validate",
    "identify",
    "characterise",
    "mets",
    "store",
    "ingest",
    "distributed",
    "duplicates",
    "catalogue",
    "console",
    "upload",
    "migrate",
    "recall",
    "dip_download",
    "catalog_rebuild",
    "audit",
    "evidence",
    "siard",
)


def options(name: str, quick: bool, work: Path) -> list[str]:
    """Command-line options of one benchmark; ``work`` is a private scratch folder."""
    if name == "validate":
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name == "identify":
        return ["--files", "100", "--repeat", "1", "--no-siegfried"] if quick else []
    if name == "characterise":
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name == "mets":
        return ["--files", "5000"] if quick else []
    if name == "store":
        # Its own --work, so that parallel runs never delete each other's tapes.
        small = ["--size", str(64 * 10**6), "--aips", "10", "--aip-size", str(5 * 10**6)]
        return ["--work", str(work / "store"), *(small if quick else [])]
    if name == "ingest":
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name == "duplicates":
        quick_size = ["--aips", "2000", "--files", "20", "--repeat", "5"]
        return ["--workdir", str(work), *(quick_size if quick else [])]
    if name == "distributed":
        return ["--workdir", str(work), *(["--bags", "20"] if quick else [])]
    if name == "console":
        # console --quick: 2,000 AIPs on both backends, 50 requests per kind, 5 browser loads.
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name in ("catalogue", "upload", "migrate"):
        # catalogue --quick: 2,000 AIPs on both backends; upload --quick: 64 MiB and 16 MiB;
        # migrate --quick: a few small files per tool family.
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name in ("recall", "dip_download"):
        # recall --quick: 40 AIPs on 4 cartridges per site; dip_download --quick: a 64 MiB DIP.
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name == "audit":
        # audit --quick: 64 MiB read; 100 cartridges simulated for 60 days.
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name == "catalog_rebuild":
        # catalog_rebuild --quick: 200 AIPs on 4 cartridges per site.
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name == "evidence":
        # evidence --quick: 20 bags stamped and not; 20,000 events checked; a 1,000-version period.
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    if name == "siard":
        # siard --quick: 20,000 rows per backend, one run of each.
        return ["--workdir", str(work), *(["--quick"] if quick else [])]
    raise ValueError(name)


def run(name: str, quick: bool, timeout: float | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    command = [sys.executable, str(BENCH / f"bench_{name}.py"), *options(name, quick, work)]
    print(f"== {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    harness: dict[str, Any] = {"command": " ".join(["python", *command[1:]])}
    started = time.perf_counter()
    try:
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(command, stdout=out, cwd=ROOT)  # stderr passes through
            status, usage = _wait(proc, timeout)
            harness["seconds"] = round(time.perf_counter() - started, 2)
            harness["exit_code"] = os.waitstatus_to_exitcode(status) if status is not None else None
            if usage is not None:
                harness["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # KiB on Linux
            out.seek(0)
            text = out.read()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        result = json.loads(text)
    except json.JSONDecodeError:
        result = {"error": "no JSON on stdout", "stdout_tail": text[-2000:]}
    if not isinstance(result, dict):
        result = {"result": result}
    if status is None:
        result["error"] = f"timed out after {timeout:g} s and was killed"
    elif harness["exit_code"] != 0:
        result.setdefault("error", f"exit code {harness['exit_code']}")
    result["harness"] = harness
    return result


def _wait(proc: subprocess.Popen[Any], timeout: float | None) -> tuple[int | None, Any]:
    """Reap the child with ``wait4`` (its own rusage); kill it after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        if deadline and time.monotonic() > deadline:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, usage
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="name", help=f"of {', '.join(ORDER)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    parser.add_argument("--no-save", action="store_true", help=f"do not write to {RESULTS}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ORDER))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    names = [n for n in ORDER if n in args.names] if args.names else list(ORDER)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = {name: run(name, args.quick, args.timeout) for name in names}
    text = json.dumps(results, indent=2) + "\n"
    sys.stdout.write(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{stamp}.json"
        path.write_text(text)
        print(f"saved {path.relative_to(ROOT)}", file=sys.stderr)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
