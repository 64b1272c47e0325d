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
from typing import Any

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


def _run_bench(script: str, *args: str) -> dict[str, Any]:
    """Run one benchmark script as the harness does; its JSON figures."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_bench_catalogue_runs_and_reports_ratios(tmp_path: Path) -> None:
    figures = _run_bench(
        "bench_catalogue.py",
        *("--aips", "60", "--files-per-aip", "3", "--requests", "5", "--warmup", "2"),
        *("--backends", "sqlite", "--workdir", str(tmp_path)),
    )
    assert figures["files"] == 180
    sqlite = figures["backends"]["sqlite"]
    assert sqlite["baseline_healthz"]["p50_ms"] > 0
    for kind in (
        "aip_by_id",
        "aip_by_external_id",
        "search_word",
        "search_puid",
        "search_date_range",
        "search_word_puid",
    ):
        assert sqlite["kinds"][kind]["p50_ratio"] > 0, kind
        assert sqlite["kinds"][kind]["in_process"]["p50_ms"] > 0, kind


def test_bench_console_runs_and_reports_ratios(tmp_path: Path) -> None:
    from tests.conftest import IN_CI

    browser = Path("/usr/bin/chromium").exists() or IN_CI
    figures = _run_bench(
        "bench_console.py",
        *("--aips", "60", "--files-per-aip", "3", "--requests", "5", "--warmup", "2"),
        *("--loads", "2", *([] if browser else ["--no-browser"])),
        *("--backends", "sqlite", "--workdir", str(tmp_path)),
    )
    assert figures["files"] == 180
    sqlite = figures["backends"]["sqlite"]
    assert sqlite["server_side"]["baseline_healthz"]["p50_ms"] > 0
    for kind in ("dashboard", "search_word", "search_puid", "aip"):
        page = sqlite["server_side"]["pages"][kind]
        assert page["p95_ms"] > 0 and page["p50_ratio"] > 0, kind
        if browser:
            assert sqlite["browser"][kind]["interactive"]["p50_ms"] > 0, kind


def test_bench_upload_runs_and_reports_ratios(tmp_path: Path) -> None:
    figures = _run_bench(
        "bench_upload.py",
        *("--size", "2MiB", "--compare-size", "1MiB", "--repeat", "1"),
        *("--workdir", str(tmp_path)),
    )
    # At 2 MiB the copy takes microseconds: the ratio is a number, not a figure.
    assert figures["upload"]["MBps"] > 0
    assert isinstance(figures["upload"]["ratio_over_faster_copy"], float)
    assert figures["memory"]["compare"]["rss_during_peak_mb"] > 0


def test_bench_characterise_runs_and_reports_ratios(tmp_path: Path) -> None:
    """Real tools and a real clamd at smoke size: the comparison still runs end to end."""
    from tests.scanning import require_clamd, require_clamscan

    require_clamd()
    require_clamscan()
    figures = _run_bench(
        "bench_characterise.py", "--files", "12", "--repeat", "1", "--workdir", str(tmp_path)
    )
    assert figures["a3m_way"]["processes"] == 36  # three per file
    for mode in ("ours_cold", "ours_warm", "ours_clamscan"):
        assert figures[mode]["scanned"] == 12, mode
        assert figures[mode]["detections"] == 0, mode
        assert figures["ratio_a3m_way_over_ours"][mode] > 0, mode
    assert figures["ours_warm"]["processes"] <= 2  # mediainfo; ExifTool already running


def test_bench_migrate_runs_and_reports_ratios(tmp_path: Path) -> None:
    """Every tool family through the real tools and `preservation migrate`, a few files each."""
    from tests.conftest import require_program

    for program in ("ffmpeg", "gs", "soffice", "mediainfo", "exiftool", "mediaconch"):
        require_program(program)
    figures = _run_bench("bench_migrate.py", "--quick", "--workdir", str(tmp_path))
    assert set(figures["families"]) == {"images", "audio", "video", "pdf", "office"}
    for name, family in figures["families"].items():
        ours = family["ours"]
        assert ours["exit_code"] == 0, (name, ours.get("failures") or ours.get("error"))
        assert ours["outputs_migrated"] == family["planned_outputs"] > 0, name
        assert ours["new_version_tar_bytes"] > 0, name
        assert family["baseline"]["parallel"]["failed"] == 0, name
        assert family["baseline"]["sequential"]["seconds"] > 0, name
        assert isinstance(family["overhead_ratio"], float), name
        assert family["verification"]["seconds_sum_over_files"] > 0, name
    # A Word document gives two outputs, PDF/A-2b and ODT.
    assert figures["families"]["office"]["planned_outputs"] == 2
    for case in ("sample_collection", "image_set"):
        assert figures["end_to_end"][case]["new_version_tar_bytes"] > 0, case


def test_bench_recall_runs_and_reports_ratios(tmp_path: Path) -> None:
    """40 DIP requests over 8 cartridges, first come first served and then as one batch."""
    figures = _run_bench("bench_recall.py", "--quick", "--workdir", str(tmp_path))
    assert figures["all_ready"]
    for run in ("first_come", "batched"):
        assert figures[run]["ready"] == figures[run]["requests"] == 40, run
        assert figures[run]["tars_read"] == 40, run
    # Mounts are counted, not timed: the scheduler's one mount per cartridge is behaviour.
    assert figures["mounts_batched"] == figures["distinct_cartridges"] > 0
    assert figures["seconds_ratio"] > 0
    assert figures["seconds_ratio_batch_report"] > 0


def test_bench_dip_download_runs_and_reports_ratios(tmp_path: Path) -> None:
    """A 64 MiB DIP through the real API server: raw read vs download, warm and cold."""
    figures = _run_bench("bench_dip_download.py", "--quick", "--workdir", str(tmp_path))
    assert figures["checks"]["sha256_equals_etag"]
    assert figures["checks"]["resumed_status"] == 206
    assert figures["checks"]["resumed_concatenation_matches"]
    for condition in ("warm", "cold"):
        assert figures[condition]["raw_MBps"] > 0, condition
        assert figures[condition]["ratio"] > 0, condition
    assert isinstance(figures["memory"]["rss_growth_mib"], float)


def test_bench_audit_runs_and_reports_ratios(tmp_path: Path) -> None:
    """A 64 MiB copy audited against raw reads; 100 cartridges audited for 60 simulated days."""
    figures = _run_bench("bench_audit.py", "--quick", "--workdir", str(tmp_path))
    for condition in ("warm", "cold"):
        assert figures["throughput"][condition]["audit_over_raw"] > 0, condition
    year = figures["simulated_year"]
    for policy in ("stalest_first", "catalogue_order", "catalogue_order_restart"):
        assert year[policy]["mounts"] > 0, policy
    # Counted, not timed: stalest first reads each cartridge once per visit, so it
    # covers the archive; restarting at the top of the catalogue every run does not.
    assert year["stalest_first"]["copies_checked_within_365_days_at_end"] == 1.0
    assert year["catalogue_order_restart"]["copies_checked_within_365_days_at_end"] < 1.0
    assert year["mounts_per_pb_ratio_catalogue_over_ours"] > 0


def test_bench_catalog_rebuild_runs_and_reports_its_ratio(tmp_path: Path) -> None:
    """200 AIPs on emulated tape at two sites: rebuilt, and only read for the baseline."""
    figures = _run_bench("bench_catalog_rebuild.py", "--quick", "--workdir", str(tmp_path))
    assert figures["complete"] is True
    assert figures["rebuild"]["rows"]["copies"] == 2 * figures["aips"]
    assert figures["rebuild"]["aips_per_second"] > 0
    assert figures["seconds_ratio"] > 0


def test_bench_evidence_runs_and_reports_ratios(tmp_path: Path) -> None:
    """20 bags with and without a real loopback TSA; 20,000 events checked; 1,000 versions."""
    from tests.conftest import require_program

    require_program("openssl")
    figures = _run_bench("bench_evidence.py", "--quick", "--workdir", str(tmp_path))
    assert figures["ok"] is True
    ingest = figures["ingest_stamping"]
    assert ingest["ok"] is True
    # Counted, not timed: two stamps per sync (segment head, period root), none when off;
    # synced after every bag, two per bag.
    every, per_interval = ingest["every_bag"], ingest["per_interval"]
    assert every["on"]["time_stamps_requested"] == 2 * ingest["bags"]
    assert 0 < per_interval["on"]["time_stamps_requested"] < 2 * ingest["bags"]
    for cadence in (every, per_interval):
        assert cadence["off"]["time_stamps_requested"] == 0
        assert cadence["on"]["waiting_at_end"] == {"segments": 0, "evidence": 0}
        assert cadence["ratio_on_vs_off"] > 0
    history = figures["verify_history"]
    assert history["ok"] is True
    sqlite = history["sqlite"]
    assert sqlite["verify_history"]["ok"] is True
    assert sqlite["verify_history"]["events"] == history["events"] == 20_000
    assert sqlite["baseline_db_chain"]["intact"] == 20_000
    assert set(sqlite["baseline_tape_read"]) == {"site-a", "site-b"}
    assert sqlite["ratio_verify_over_db_plus_tape"] > 0
    size = figures["record_size"]
    assert size["ok"] is True
    assert size["tree_depth"] == 10  # ceil(log2(1,000))
    assert size["record_bytes"]["min"] > size["token_bytes"] > 0
    assert size["baseline_one_version"]["record_bytes"] > size["token_bytes"]


def test_bench_siard_runs_and_reports_ratios(tmp_path: Path) -> None:
    """Export and validation of a small table against sqlite3 .dump and psql COPY."""
    from tests.conftest import require_program

    require_program("sqlite3")
    require_program("psql")
    figures = _run_bench(
        "bench_siard.py", "--rows", "3000", "--repeat", "1", "--workdir", str(tmp_path)
    )
    for backend in ("sqlite", "postgresql"):
        case = figures["backends"][backend]
        assert case["rows"] == 3000
        assert case["ratio"] > 0, backend
        assert case["validation"]["valid"] is True, case["validation"]["problems"]
        assert case["memory"]["peak_rss_mb_large"] > 0
