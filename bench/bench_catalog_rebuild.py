"""The catalogue rebuilt from 10,000 AIPs on emulated tape, against only reading what it needs.

``preservation catalog rebuild --from-tapes`` (``storage.rebuild``) mounts each
cartridge once, reads its LTFS index, then only the tar headers and the METS
and PREMIS members of each version (seeking over the payload), and writes the
rows in bulk. The baseline is the same read with no row written
(``rebuild_catalogue(write=False)``): the ratio says what building and
writing the catalogue adds to the tape reading it cannot avoid.

Setup (untimed): ``--aips`` AIPs of three small files each, for two tenants,
built by the ingest's own writers exactly as the describe and package stages
build them (``describe_package`` for the representation METS, Dublin Core,
PREMIS and root METS from catalogue-like rows; ``write_aip_bag``;
``serialise_aip``), with the submitted bag's tag files and the schemas inside,
and written with the LTFS writer to both sites, ``--per-cartridge`` AIPs to a
cartridge, an index synced every 50 tars as the store's batches do. The tars
are built in a process pool of ``--workers``. Full ingest of 10,000 bags
would take hours (identification and characterisation tools per file); the
tars are the same bytes it would write for such bags, only the tool outputs
(characterisation JSON) are absent. The catalogue is then deleted, and the
two runs are timed on the same data root, the baseline first.

    python bench/bench_catalog_rebuild.py             # 10,000 AIPs
    python bench/bench_catalog_rebuild.py --quick     # 200 AIPs (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TENANTS = ("museum", "library")
SYNC_EVERY = 50
FILES = {
    "data/notes/readme.txt": b"Letters of the donor, transcribed.\n",
    "data/tables/measurements.csv": b"width,height\n210,297\n148,210\n",
    "data/metadata/catalogue.xml": b"<?xml version='1.0'?><catalogue><item n='1'/></catalogue>\n",
}
FORMATS = {
    ".txt": ("x-fmt/111", "Plain Text File", "text/plain", "extension"),
    ".csv": ("x-fmt/18", "Comma Separated Values", "text/csv", "extension"),
    ".xml": ("fmt/101", "Extensible Markup Language", "text/xml", "signature"),
}
FIDO = ("fido", "1.6.1", "PRONOM v109 (formats-v109.xml)")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _template_bag(work: Path) -> Path:
    """The submitted bag every AIP is made from: three files, sha256 and sha512 manifests."""
    import bagit

    bag = work / "template"
    for rel, data in FILES.items():
        path = bag / rel.removeprefix("data/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    bagit.make_bag(
        str(bag),
        {"Source-Organization": "Musée d'Exemple", "External-Identifier": "EX-BENCH"},
        checksums=["sha256", "sha512"],
    )
    return bag


def _build(job: tuple[int, str, str, str, str, str]) -> tuple[str, str, str, int, str]:
    """One AIP version 1 tar, as describe and package write it; runs in a pool worker."""
    import hashlib
    import uuid

    from preservation import SOFTWARE_AGENT
    from preservation.aip import AIPLayout, copy_schemas, copy_submission
    from preservation.aip.bag import write_aip_bag
    from preservation.aip.tarball import serialise_aip
    from preservation.metadata.description import describe_package
    from preservation.sip.baginfo import read_bag_info

    n, aip_id, tenant, template, schemas, out = job
    work = Path(out) / f"w{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    layout = AIPLayout(work / "aip").create()
    copy_submission(Path(template), layout)
    copy_schemas(Path(schemas), layout)
    bag_info = read_bag_info(Path(template))
    bag_info["Internal-Sender-Identifier"] = [f"bag-{n:05d}"]
    now = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=n)
    rows = []
    for rel, data in FILES.items():
        dest = layout.original(rel.removeprefix("data/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        puid, name, mime, basis = FORMATS[Path(rel).suffix]
        digests = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "sha512": hashlib.sha512(data).hexdigest(),
        }
        rows.append(
            SimpleNamespace(
                original_name=rel,
                aip_path=layout.bag_path(dest),
                size=len(data),
                submitted_digests=dict(digests),
                puid=puid,
                format_name=name,
                format_version=None,
                mime=mime,
                identification_basis=basis,
                identification={
                    "puids": [puid],
                    "engine": FIDO[0],
                    "engine_version": FIDO[1],
                    "signature_release": FIDO[2],
                    "warning": "match on extension only" if basis == "extension" else None,
                    "error": None,
                },
                properties={},
                validation=None,
                **digests,
            )
        )
    software = SOFTWARE_AGENT
    tool = f"{FIDO[0]} {FIDO[1]}"
    events = [
        SimpleNamespace(
            uuid=str(uuid.uuid4()),
            type=kind,
            occurred_at=now + timedelta(milliseconds=i),
            outcome="success",
            agents={"executing program": [who]},
            detail=detail,
            outcome_detail="",
        )
        for i, (kind, who, detail) in enumerate(
            [
                ("validation", software, "BagIt RFC 8493 (strict), path safety"),
                ("fixity check", software, "payload verified against the bag's manifests"),
                ("message digest calculation", software, "sha256 and sha512 computed"),
                ("format identification", tool, f"3 files identified with {tool}"),
                ("ingestion", software, f"ingestion started: bag 'bag-{n:05d}' as AIP {aip_id}"),
            ]
        )
    ]
    agents = {
        tool: SimpleNamespace(
            name=FIDO[0], type="software", version=f"{FIDO[1]} (signatures {FIDO[2]})"
        ),
        software: SimpleNamespace(
            name="preservation", type="software", version=software.split(" ", 1)[1]
        ),
    }
    describe_package(
        layout,
        aip_id=aip_id,
        version=1,
        tenant=tenant,
        organisation=tenant,
        bag_info=bag_info,
        files=rows,
        events=events,
        agents=agents,
    )
    known = {r.aip_path: {"sha256": r.sha256, "sha512": r.sha512} for r in rows}
    write_aip_bag(
        layout.root,
        aip_id=aip_id,
        version=1,
        tenant=tenant,
        source_bag_name=f"bag-{n:05d}",
        bag_info=bag_info,
        known_digests=known,
        processes=1,
    )
    tar = serialise_aip(layout.root, Path(out) / f"{aip_id}.v1.tar", arcname=f"{aip_id}.v1")
    shutil.rmtree(work, ignore_errors=True)
    return aip_id, tenant, str(tar.path), tar.size, tar.sha256


def generate(settings: Any, work: Path, aips: int, per_cartridge: int, workers: int) -> float:
    """Build the tars and write each to one cartridge per site; the seconds it took."""
    import uuid

    from preservation.storage.library import EmulatedLibrary, barcode_for
    from preservation.storage.ltfs import LTFSVolume

    started = time.perf_counter()
    template = _template_bag(work)
    out = work / "tars"
    out.mkdir()
    libraries = {
        site: EmulatedLibrary(settings.tape_dir / site, name=site, drives=1, durability="none")
        for site in settings.sites
    }
    for letter, library in zip("AB", libraries.values(), strict=False):
        for number in range(1, settings.tape_cartridges_per_site + 1):
            library.add_cartridge(barcode_for(letter, number), capacity=settings.tape_capacity)
    volumes: dict[str, LTFSVolume] = {}
    jobs = [
        (n, str(uuid.uuid4()), TENANTS[n % 2], str(template), str(settings.schemas_dir), str(out))
        for n in range(aips)
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for n, (aip_id, tenant, tar, size, sha256) in enumerate(
            pool.map(_build, jobs, chunksize=20)
        ):
            number = n // per_cartridge + 1
            for letter, (site, library) in zip("AB", libraries.items(), strict=False):
                barcode = barcode_for(letter, number)
                volume = volumes.get(site)
                if volume is None or volume.barcode != barcode:
                    if volume is not None:
                        volume.unmount()
                        library.unmount(volume.barcode)
                    volume = volumes[site] = LTFSVolume.format(library.mount(barcode), barcode)
                volume.write_file(f"/{tenant}/{aip_id}/v1.tar", tar, size=size, sha256=sha256)
                if (n + 1) % SYNC_EVERY == 0:
                    volume.sync()
            os.unlink(tar)
            if (n + 1) % 1000 == 0:
                log(f"  {n + 1} AIPs written ({time.perf_counter() - started:.0f} s)")
    for site, volume in volumes.items():
        volume.unmount()
        libraries[site].unmount(volume.barcode)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aips", type=int, default=10_000, help="AIPs to rebuild")
    parser.add_argument("--per-cartridge", type=int, default=1000, help="AIPs per cartridge")
    parser.add_argument("--workers", type=int, default=2, help="processes building tars")
    parser.add_argument("--workdir", type=Path, default=None, help="a temporary folder in it")
    parser.add_argument("--quick", action="store_true", help="200 AIPs, 50 per cartridge")
    args = parser.parse_args(argv)
    if args.quick:
        args.aips, args.per_cartridge = 200, 50

    from preservation.config import Settings
    from preservation.context import open_context
    from preservation.storage.rebuild import rebuild_catalogue

    cartridges = -(-args.aips // args.per_cartridge)
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-", dir=args.workdir) as tmp:
        work = Path(tmp)
        settings = Settings(
            home=work / "var",
            database_url=None,
            broker_url=None,
            virus_scan=False,
            tape_cartridges_per_site=cartridges + 1,  # one blank: read as scratch
        )
        settings.ensure_dirs()
        log(f"writing {args.aips} AIPs to {cartridges} cartridges per site (untimed setup)")
        setup_s = generate(settings, work, args.aips, args.per_cartridge, args.workers)
        tape_bytes = sum(f.stat().st_size for f in settings.tape_dir.rglob("*") if f.is_file())

        ctx = open_context(settings)
        try:
            log("baseline: reading indexes and METS, writing nothing")
            baseline = rebuild_catalogue(ctx, write=False)
            log(f"  {baseline.seconds:.1f} s; rebuilding")
            full = rebuild_catalogue(ctx)
            log(f"  {full.seconds:.1f} s")
        finally:
            ctx.close()

    ok = (
        full.aips == args.aips
        and full.copies == 2 * args.aips
        and full.problems == []
        and full.missing == []
        and baseline.tars_read == full.tars_read == args.aips
    )
    result = {
        "benchmark": "catalog_rebuild",
        "aips": args.aips,
        "sites": 2,
        "cartridges_per_site": cartridges,
        "aips_per_cartridge": args.per_cartridge,
        "files_per_aip": len(FILES),
        "tape_bytes_both_sites": tape_bytes,
        "setup_seconds": round(setup_s, 1),
        "rebuild": {
            "seconds": round(full.seconds, 2),
            "aips_per_second": round(args.aips / full.seconds, 1),
            "rows": {
                "aips": full.aips,
                "versions": full.versions,
                "files": full.files,
                "events": full.events,
                "copies": full.copies,
                "cartridges": full.cartridges,
            },
            "tars_read": full.tars_read,
            "bytes_read": full.bytes_read,
            "bytes_read_per_aip": round(full.bytes_read / max(1, full.tars_read)),
            # The same reads on the emulated LTO-9 timing, one drive per site.
            "simulated_tape_seconds": full.tape_seconds,
        },
        "baseline_read_only": {
            "seconds": round(baseline.seconds, 2),
            "aips_per_second": round(args.aips / baseline.seconds, 1),
            "tars_read": baseline.tars_read,
        },
        "seconds_ratio": round(full.seconds / baseline.seconds, 2),
        "complete": ok,
    }
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
