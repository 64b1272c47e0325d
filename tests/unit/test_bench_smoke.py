"""The benchmarks still run against today's code, at a size that takes seconds.

Their figures are measured by hand (bench/README.md); what a test can keep is
that a refactor does not leave a benchmark broken until the next time
someone needs it. No figure is asserted: only that the run completes and
reports its ratios against its own baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_duplicates_runs_and_reports_ratios(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_duplicates.py"),
            "--aips",
            "40",
            "--files",
            "3",
            "--shared",
            "5",
            "--repeat",
            "1",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["file_rows"] == 120
    for case in ("new_payload", "duplicate_payload", "shared_file", "external_identifier"):
        assert figures[f"{case}_ratio"] > 0, case
