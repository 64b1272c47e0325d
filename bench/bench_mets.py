"""Benchmark the METS writer on a synthetic 100,000-file AIP; prints JSON on stdout.

Targets (docs/architecture.md §10): at most 20 s and 300 MB peak RSS to write the
representation METS of 100,000 files, and at most 3 KB of METS per file.

Each measurement runs in its own child process, so ``ru_maxrss`` is the
writer's own peak and not the benchmark's. A baseline child only generates and
drains the same 100,000 file descriptions: the writer's figures are reported
next to it, as docs/architecture.md §10 asks for ratios against a baseline in the same
process tree. A 1,000-file sample is validated against the XSDs, and the
100,000-file document is read back, to show the reader scales too.

Usage: python bench/bench_mets.py [--files N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preservation.metadata import (  # noqa: E402
    Agent,
    AgentLink,
    Event,
    FileFormat,
    FileObject,
    ObjectLink,
    PackageDescription,
    read_mets,
    validate_mets,
    write_representation_mets,
)

AIP_ID = uuid.UUID("0b1e7c7e-5d0c-4a8e-9f59-6a1d2f3b4c5d")
CREATED = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
TARGET_SECONDS = 20.0
TARGET_RSS_MB = 300.0
TARGET_BYTES_PER_FILE = 3 * 1024

_FORMATS = [
    FileFormat(
        ("fmt/353",),
        "Tagged Image File Format",
        None,
        "image/tiff",
        "byte match at [[0, 4]]",
        "fido 1.6.1 (DROID_SignatureFile_V119)",
    ),
    FileFormat(
        ("fmt/276",),
        "Acrobat PDF 1.7 - Portable Document Format",
        "1.7",
        "application/pdf",
        "byte match at [[0, 8], [1024, 5]]",
        "fido 1.6.1 (DROID_SignatureFile_V119)",
    ),
    FileFormat(
        ("fmt/43",),
        "JPEG File Interchange Format",
        "1.01",
        "image/jpeg",
        "byte match at [[0, 14]]",
        "fido 1.6.1 (DROID_SignatureFile_V119)",
    ),
    FileFormat(
        ("fmt/412",),
        "Microsoft Word for Windows",
        "2007 onwards",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "container match",
        "fido 1.6.1 (DROID_SignatureFile_V119)",
    ),
    FileFormat(
        ("x-fmt/111",),
        "Plain Text File",
        None,
        "text/plain",
        "extension",
        "fido 1.6.1 (DROID_SignatureFile_V119)",
        warning="match on extension only",
    ),
]
_EXT = {"fmt/353": "tif", "fmt/276": "pdf", "fmt/43": "jpg", "fmt/412": "docx", "x-fmt/111": "txt"}
_SERIES = ["Kartensammlung", "Correspondence 1890-1910", "Bauakten", "Fotografías", "minutes"]


def package() -> PackageDescription:
    agents = (
        Agent("preservation-0.1.0", "preservation", "software", version="0.1.0"),
        Agent("fido-1.6.1", "fido", "software", version="1.6.1", note="DROID_SignatureFile_V119"),
        Agent("tenant", "State Archive of Atlantis", "organization"),
    )
    events = tuple(
        Event(
            id=uuid.uuid5(AIP_ID, kind),
            type=kind,
            datetime=CREATED + timedelta(seconds=i),
            outcome="success",
            agents=(AgentLink("preservation-0.1.0", "executing program"),),
            # As describe_package links them: content events to the representation.
            objects=(ObjectLink(f"{AIP_ID}/rep1"),) if i >= 2 else (),
            detail=f"{kind} over the whole SIP",
        )
        for i, kind in enumerate(
            (
                "ingestion",
                "validation",
                "message digest calculation",
                "fixity check",
                "format identification",
            )
        )
    )
    return PackageDescription(
        aip_id=AIP_ID,
        version=1,
        tenant="atlantis",
        organisation="State Archive of Atlantis",
        created=CREATED,
        bag_info={
            "Source-Organization": ["Ministry of Maps"],
            "Contact-Name": ["Ada Lovelace"],
            "External-Identifier": ["MAPS-2024-001"],
            "External-Description": ["Synthetic benchmark transfer"],
            "Bagging-Date": ["2024-05-30"],
        },
        agents=agents,
        events=events,
    )


def _unidentified(i: int) -> bool:
    return i % 50 == 7  # 2 % of files


def _timed_out(i: int) -> bool:
    return i % 100 == 7  # half of those: identification did not finish


def _format(i: int) -> FileFormat:
    if _timed_out(i):
        return FileFormat(basis="none", tool=_FORMATS[0].tool, error="timeout after 30s")
    if _unidentified(i):
        return FileFormat(basis="none", tool=_FORMATS[0].tool)
    return _FORMATS[i % len(_FORMATS)]


def _own_event(i: int) -> bool:
    """As describe_package does: an event of its own for each failure or warning."""
    fmt = _format(i)
    return bool(fmt.error or fmt.warning or not fmt.identified)


def files(n: int, pkg: PackageDescription) -> Iterator[FileObject]:
    """The file descriptions, generated one at a time as staging would yield them."""
    package_events = tuple(e.id for e in pkg.events)
    for i in range(n):
        fmt = _FORMATS[i % len(_FORMATS)]
        series = _SERIES[i % len(_SERIES)]
        ext = _EXT[fmt.puids[0]]
        original = f"{series}/Box {i // 2000:03d}/Folder {i // 100 % 20:02d}/item_{i:06d}.{ext}"
        seed = original.encode()
        fmt = _format(i)
        own = (uuid.uuid5(AIP_ID, f"warn-{i}"),) if _own_event(i) else ()
        yield FileObject(
            id=f"file-{i + 1:06d}",
            original_name=original,
            path=f"representations/rep1/data/{original}",
            size=10_000 + i * 37 % 5_000_000,
            digests={
                "sha256": hashlib.sha256(seed).hexdigest(),
                "sha512": hashlib.sha512(seed).hexdigest(),
                "md5": hashlib.md5(seed).hexdigest(),
            },
            format=fmt,
            event_ids=package_events + own,
        )


def file_events(n: int) -> Iterator[Event]:
    for i in range(n):
        if _own_event(i):
            fmt = _format(i)
            yield Event(
                id=uuid.uuid5(AIP_ID, f"warn-{i}"),
                type="format identification",
                datetime=CREATED + timedelta(seconds=30),
                outcome="failure" if fmt.error else "warning",
                agents=(AgentLink("fido-1.6.1", "executing program"),),
                objects=(ObjectLink(f"file-{i + 1:06d}"),),
                detail="fido 1.6.1 (signatures PRONOM v109)",
                outcome_detail=fmt.error or fmt.warning or "no signature matched",
            )


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(mode: str, n: int, dest: str) -> dict[str, float]:
    """One measurement, in this (child) process."""
    pkg = package()
    start = time.perf_counter()
    if mode == "baseline":
        count = sum(1 for _ in files(n, pkg)) + sum(1 for _ in file_events(n))
        assert count > n
    elif mode == "write":
        write_representation_mets(Path(dest), pkg, files(n, pkg), file_events(n))
    elif mode == "read":
        parsed = read_mets(Path(dest))
        assert len(parsed.files) == n
    elif mode == "validate":
        problems = validate_mets(Path(dest))
        return {
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": _maxrss_mb(),
            "errors": len(problems),
        }
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": _maxrss_mb()}


def run_child(mode: str, n: int, dest: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--files", str(n), "--dest", str(dest)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="keep the METS files in this folder")
    parser.add_argument("--child", choices=("baseline", "write", "read", "validate"))
    parser.add_argument("--dest")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.files, args.dest)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-mets-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        big, sample = folder / "METS-100k.xml", folder / "METS-1k.xml"
        baseline = run_child("baseline", args.files, big)
        write = run_child("write", args.files, big)
        size = big.stat().st_size
        read = run_child("read", args.files, big)
        run_child("write", 1000, sample)
        validate = run_child("validate", 1000, sample)
        result = {
            "files": args.files,
            "write_seconds": round(write["seconds"], 2),
            "write_peak_rss_mb": round(write["peak_rss_mb"], 1),
            "baseline_generate_seconds": round(baseline["seconds"], 2),
            "baseline_peak_rss_mb": round(baseline["peak_rss_mb"], 1),
            "write_vs_baseline_time": round(write["seconds"] / baseline["seconds"], 2),
            "mets_bytes": size,
            "bytes_per_file": round(size / args.files, 1),
            "read_seconds": round(read["seconds"], 2),
            "read_peak_rss_mb": round(read["peak_rss_mb"], 1),
            "validate_sample_files": 1000,
            "validate_sample_bytes": sample.stat().st_size,
            "validate_sample_seconds": round(validate["seconds"], 2),
            "validate_sample_errors": int(validate["errors"]),
            "targets": {
                "write_seconds": TARGET_SECONDS,
                "peak_rss_mb": TARGET_RSS_MB,
                "bytes_per_file": TARGET_BYTES_PER_FILE,
            },
            "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(),
        }
        result["meets_targets"] = (
            write["seconds"] <= TARGET_SECONDS
            and write["peak_rss_mb"] <= TARGET_RSS_MB
            and size / args.files <= TARGET_BYTES_PER_FILE
            and validate["errors"] == 0
        )
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
