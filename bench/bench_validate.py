"""Benchmark: our bag validation and staging against bagit 1.9.0's ``Bag.validate``.

Prints one JSON document on stdout (progress goes to stderr). Two bags are made
with ``bagit.make_bag`` (sha256 + sha512 manifests): many small files, and a
few large ones. Each validator runs on the same warm bag, in alternating order,
best of ``--runs``; the page cache cannot be dropped without root, so both are
measured warm. Staging (validate + copy + AIP digests in one read) is measured on
the large bag and compared with bagit's validation alone, both as the bare
function and as ``preservation ingest`` up to STAGED (receive + the validate
stage with its catalogue writes).

    python bench/bench_validate.py            # 5,000 x 4 KiB and 4 x 512 MiB
    python bench/bench_validate.py --quick    # seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bagit

from preservation.sip import validate_and_stage, validate_bag

_UNITS = {
    "": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
}


def size_arg(text: str) -> int:
    match = re.fullmatch(r"([0-9]+)\s*([A-Za-z]*)", text.strip())
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_bag(root: Path, files: int, size: int, processes: int) -> Path:
    """A bag of ``files`` distinct files of ``size`` bytes, made by the reference tool."""
    root.mkdir(parents=True)
    block = bytearray(os.urandom(min(size, 1 << 20)))
    for i in range(files):
        sub = root / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        with open(sub / f"f{i:06d}.bin", "wb") as out:
            left = size
            n = 0
            while left:
                # Distinct content per file and per block, at memcpy speed.
                block[:16] = f"{i:08d}{n:08d}".encode()
                piece = min(left, len(block))
                out.write(memoryview(block)[:piece])
                left -= piece
                n += 1
    bagit.make_bag(os.fspath(root), checksums=["sha256", "sha512"], processes=processes)
    return root


def best_of(runs: int, contenders: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Best wall time of each contender; the order alternates every run."""
    best = {name: float("inf") for name in contenders}
    names = list(contenders)
    for run in range(runs):
        order = names if run % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            contenders[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def figures(seconds: float, files: int, octets: int) -> dict[str, float]:
    return {
        "seconds": round(seconds, 4),
        "files_per_s": round(files / seconds, 1),
        "mb_per_s": round(octets / seconds / 1e6, 1),
    }


def bench_bag(bag: Path, files: int, octets: int, runs: int, processes: int) -> dict[str, Any]:
    def ours() -> None:
        report = validate_bag(bag, processes=processes)
        assert report.valid, report.to_text()

    def reference() -> None:
        bagit.Bag(os.fspath(bag)).validate(processes=processes)

    ours()
    reference()  # warm the page cache and the imports for both
    best = best_of(runs, {"bagit": reference, "ours": ours})
    return {
        "files": files,
        "bytes": octets,
        "bagit": figures(best["bagit"], files, octets),
        "ours": figures(best["ours"], files, octets),
        "throughput_ratio_ours_over_bagit": round(best["bagit"] / best["ours"], 3),
    }


def bench_stage(
    bag: Path, dest: Path, files: int, octets: int, runs: int, processes: int, bagit_s: float
) -> dict[str, Any]:
    best = float("inf")
    for _ in range(runs):
        shutil.rmtree(dest, ignore_errors=True)
        start = time.perf_counter()
        report, staged = validate_and_stage(bag, dest, processes=processes)
        elapsed = time.perf_counter() - start
        assert report.valid and len(staged) == files, report.to_text()
        best = min(best, elapsed)
    shutil.rmtree(dest, ignore_errors=True)
    return {
        "files": files,
        "bytes": octets,
        "validate_and_stage": figures(best, files, octets),
        "time_ratio_over_bagit_validate": round(best / bagit_s, 3),
    }


def bench_ingest_staged(
    bag: Path, work: Path, files: int, octets: int, runs: int, bagit_s: float
) -> dict[str, Any]:
    """``preservation ingest`` up to STAGED: receive + the validate stage, catalogue included.

    A fresh data root per run (SQLite catalogue, migrations run before the
    clock starts, as a long-running worker has them), so what is timed is
    what a SIP costs: its row, the one-read validate+copy+digests, the file
    rows in bulk and the stage's PREMIS events.
    """
    from preservation import ingest
    from preservation.catalog import SIPState, service, session_scope
    from preservation.config import Settings
    from preservation.context import open_context

    best = float("inf")
    for run in range(runs):
        home = work / f"home-{run}"
        shutil.rmtree(home, ignore_errors=True)
        ctx = open_context(Settings(home=home))
        try:
            start = time.perf_counter()
            sip_id = ingest.receive(ctx, bag, tenant="bench")
            ingest.run_stage(ctx, "validate", sip_id)
            elapsed = time.perf_counter() - start
            with session_scope(ctx.sessions) as s:
                sip = service.get_sip(s, sip_id)
                assert sip.state is SIPState.STAGED and sip.file_count == files, sip.last_error
        finally:
            ctx.close()
            shutil.rmtree(home, ignore_errors=True)
        best = min(best, elapsed)
    return {
        "files": files,
        "bytes": octets,
        "ingest_to_staged": figures(best, files, octets),
        "time_ratio_over_bagit_validate": round(best / bagit_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-files", type=int, default=5000)
    parser.add_argument("--small-size", type=size_arg, default=4096)
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--large-size", type=size_arg, default=512 << 20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("tmp-bench"),
        help="where the bags are made (deleted afterwards)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.small_files, args.small_size = 300, 4096
        args.large_files, args.large_size = 2, 8 << 20
        args.runs = min(args.runs, 2)
    logging.getLogger("bagit").setLevel(logging.ERROR)

    args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-validate-", dir=args.workdir))
    try:
        log(f"making bags under {tmp}")
        small = make_bag(tmp / "small", args.small_files, args.small_size, args.processes)
        large = make_bag(tmp / "large", args.large_files, args.large_size, args.processes)
        log("validating the small-file bag")
        small_result = bench_bag(
            small, args.small_files, args.small_files * args.small_size, args.runs, args.processes
        )
        log("validating the large-file bag")
        large_octets = args.large_files * args.large_size
        large_result = bench_bag(large, args.large_files, large_octets, args.runs, args.processes)
        log("staging the large-file bag")
        stage_result = bench_stage(
            large,
            tmp / "staged",
            args.large_files,
            large_octets,
            args.runs,
            args.processes,
            large_result["bagit"]["seconds"],
        )
        log("ingesting the large-file bag up to staged")
        ingest_result = bench_ingest_staged(
            large,
            tmp / "ingest",
            args.large_files,
            large_octets,
            args.runs,
            large_result["bagit"]["seconds"],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "bench_validate",
        "bagit_version": bagit.VERSION,
        "processes": args.processes,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "small_files": small_result,
        "large_files": large_result,
        "stage_large": stage_result,
        "ingest_to_staged_large": ingest_result,
        "targets": {
            "small_validation_ratio_ge_1": small_result["throughput_ratio_ours_over_bagit"] >= 1.0,
            "large_validation_ratio_ge_1": large_result["throughput_ratio_ours_over_bagit"] >= 1.0,
            "stage_time_le_1_5x_bagit_validate": stage_result["time_ratio_over_bagit_validate"]
            <= 1.5,
            "ingest_to_staged_le_1_5x_bagit_validate": ingest_result[
                "time_ratio_over_bagit_validate"
            ]
            <= 1.5,
        },
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
