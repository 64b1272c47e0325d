"""200 DIP requests over 40 cartridges, as one recall batch against first come, first served.

A recall costs mounts (robot move, load, thread, rewind, unload: about a
minute and a half of an LTO-9 drive each) and winds, not bytes. The batch
scheduler (:func:`preservation.access.scheduling.plan_recall`) reads every
cartridge a batch needs once, its tars in block order, spread over both
sites' drives. The baseline is the naive server the module keeps for this
comparison (``run_batch(ctx, first_come=True)``, i.e. ``plan_first_come``):
each request served alone in arrival order, always from the first site, a
cartridge reused only if it happens to be still in one of that site's drives.

Setup (untimed): an embedded data root (SQLite, emulated tape at two sites,
``--drives`` drives and ``--cartridges`` cartridges each, scanning off), and
``--aips`` small bags (one random ``--payload``-byte file each) ingested with
``run_ingest``. The cartridges' capacity is chosen so that the store, which
fills one cartridge before opening the next, puts about ``aips / cartridges``
AIPs on each (10 by default): the JSON shows how many each got.

Then a preservation DIP is requested for every AIP, in a random order
(``random.Random(--seed)``), and ``run_batch(ctx, first_come=True)`` serves
them; the drives are released, the same requests are made again in the same
order, and ``run_batch(ctx)`` (the scheduler) serves them. For each run:
mounts, cartridge visits, simulated tape seconds (both sites' library clocks,
summed), bytes read, distinct cartridges read, the most mounts any one
cartridge took, DIPs ready, wall seconds. Targets: one mount per distinct
cartridge read in the scheduled batch, and ``seconds_ratio`` = first come's
simulated seconds over the batch's >= 5. Exit code 1 if any DIP of either run
is not ready.

Simulated seconds are read twice: ``tape_seconds`` as ``BatchReport`` gives
it, which is taken before ``run_batch`` releases the drives and so leaves out
the unloading of the cartridges still in them at the end (2 per site here),
and ``tape_seconds_with_final_unloads`` from the clocks around the whole call.
``seconds_ratio`` uses the second: every second the drives spent; the first
flatters the batch, whose unloads are mostly those last ones
(``seconds_ratio_batch_report``).

    python bench/bench_recall.py              # 200 AIPs, 20 cartridges per site, 2 drives each
    python bench/bench_recall.py --quick      # 40 AIPs, 4 cartridges per site (smoke test)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1 << 20
TENANT = "bench"
# What an AIP's tar adds to its payload (METS, PREMIS, schemas, bag files, tar
# headers): 272 KiB for one small file in 2026-12. And the cartridge's room the
# store cannot use (the index partition, the early-warning reserve, labels and
# indexes), found by trying capacities: with a 2 MiB payload, 26-28 MiB took 10 AIPs.
TAR_OVERHEAD = 272 << 10
CARTRIDGE_OVERHEAD = int(2.8 * MIB)
_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": MIB, "mib": MIB, "g": 1 << 30, "gib": 1 << 30}


def size_arg(text: str) -> int:
    match = re.fullmatch(r"([0-9]+)\s*([A-Za-z]*)", text.strip())
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def capacity_for(per_cartridge: int, payload: int) -> int:
    """A cartridge capacity (whole MiB, as the emulator keeps it) that takes ``per_cartridge``.

    The middle of the window between ``per_cartridge`` and one more fitting, so a
    few KiB more METS per AIP one day does not move the count.
    """
    tar = payload + TAR_OVERHEAD
    return round((CARTRIDGE_OVERHEAD + (per_cartridge + 0.5) * tar) / MIB) * MIB


# -- setup ------------------------------------------------------------------------------------


def make_bag(folder: Path, n: int, payload: int) -> Path:
    import bagit  # type: ignore[import-untyped]

    bag = folder / f"bag-{n:04d}"
    (bag / "items").mkdir(parents=True)
    (bag / "items" / f"item-{n:04d}.bin").write_bytes(os.urandom(payload))
    bagit.make_bag(
        os.fspath(bag),
        {"Source-Organization": "Bench", "External-Identifier": f"BENCH-RECALL-{n:04d}"},
        checksums=["sha256"],
    )
    return bag


def ingest_all(ctx: Any, work: Path, count: int, payload: int) -> tuple[list[str], float]:
    from preservation.ingest import run_ingest

    bags = work / "bags"
    ids: list[str] = []
    started = time.perf_counter()
    for n in range(count):
        bag = make_bag(bags, n, payload)
        result = run_ingest(ctx, bag, tenant=TENANT)
        if result.state != "committed" or not result.aip_id:
            raise SystemExit(f"ingest of {bag.name} ended {result.state}: {result.problems[:3]}")
        ids.append(str(result.aip_id))
        shutil.rmtree(bag, ignore_errors=True)
        if (n + 1) % 20 == 0 or n + 1 == count:
            log(f"  ingested {n + 1}/{count} ({time.perf_counter() - started:.1f} s)")
    return ids, time.perf_counter() - started


def layout(ctx: Any) -> dict[str, Any]:
    """How many AIP copies each cartridge holds, per site."""
    from sqlalchemy import select

    from preservation.catalog.database import session_scope
    from preservation.catalog.models import Cartridge, TapeCopy

    with session_scope(ctx.sessions) as s:
        held = Counter(s.scalars(select(TapeCopy.barcode)))
        cartridges = list(s.execute(select(Cartridge.site, Cartridge.barcode)))
    out: dict[str, Any] = {}
    for site in ctx.settings.sites:
        counts = [held.get(b, 0) for st, b in sorted(cartridges) if st == site]
        out[site] = {
            "cartridges": len(counts),
            "cartridges_used": sum(1 for c in counts if c),
            "aips_per_cartridge_min": min(counts, default=0),
            "aips_per_cartridge_max": max(counts, default=0),
        }
    return out


# -- one run ----------------------------------------------------------------------------------


def request_all(ctx: Any, aip_ids: list[str]) -> list[str]:
    """A preservation DIP for each AIP, in this order, one transaction each (as the API)."""
    from preservation.access import service
    from preservation.catalog.database import session_scope

    dips = []
    for aip_id in aip_ids:
        with session_scope(ctx.sessions) as s:
            view = service.request_dip(
                s, aip_id=aip_id, tenant_id=TENANT, kind="preservation", requested_by="bench"
            )
        dips.append(view.dip_id)
    return dips


def _mount_counts(ctx: Any) -> dict[str, int]:
    """The catalogue's load counter of every cartridge (``cartridges.mounts``)."""
    from sqlalchemy import select

    from preservation.catalog.database import session_scope
    from preservation.catalog.models import Cartridge

    with session_scope(ctx.sessions) as s:
        return {b: m or 0 for b, m in s.execute(select(Cartridge.barcode, Cartridge.mounts))}


def _site_figures(ctx: Any) -> dict[str, tuple[float, int]]:
    from preservation.storage.sites import get_site

    return {
        name: (get_site(ctx, name).library.clock.now(), get_site(ctx, name).stats.mounts)
        for name in ctx.settings.sites
    }


def serve(ctx: Any, aip_ids: list[str], *, first_come: bool) -> dict[str, Any]:
    """Request every DIP, then one batch serves them; its figures."""
    from sqlalchemy import select

    from preservation.access.recall import run_batch
    from preservation.catalog.database import session_scope
    from preservation.catalog.models import DIP, DIPState
    from preservation.storage.service import release_drives

    release_drives(ctx)  # every run starts with empty drives
    dips = request_all(ctx, aip_ids)
    mounts_before, sites_before = _mount_counts(ctx), _site_figures(ctx)
    label = "first come, first served" if first_come else "scheduled batch"
    log(f"{label}: {len(dips)} requests")
    started = time.perf_counter()
    report = run_batch(ctx, first_come=first_come)
    wall = time.perf_counter() - started
    mounts_after, sites_after = _mount_counts(ctx), _site_figures(ctx)
    loaded = {b: mounts_after[b] - mounts_before.get(b, 0) for b in mounts_after}
    loaded = {b: n for b, n in loaded.items() if n}
    per_site = {site: sites_after[site][0] - sites_before[site][0] for site in sites_after}
    clock_seconds = sum(per_site.values())
    with session_scope(ctx.sessions) as s:
        rows = {r.id: r for r in s.scalars(select(DIP).where(DIP.id.in_(dips)))}
        states = Counter(str(r.state) for r in rows.values())
        read_from = {b for r in rows.values() for b in (r.progress or {}).get("cartridges", ())}
        not_ready = {d: r.error for d, r in rows.items() if r.state != DIPState.READY}
    figures = {
        "requests": len(dips),
        # The batch took the requests in the order they came ...
        "claimed_in_arrival_order": report.dips == dips,
        # ... and packed them in that order: first come's reads followed it.
        "ready_in_arrival_order": report.ready == dips,
        "ready": len(report.ready),
        "failed": len(report.failed),
        "requeued": len(report.requeued),  # tars unreadable only for now (drives busy, site down)
        "states": dict(states),
        "tars_read": report.tars,
        "visits": report.visits,
        "mounts": report.mounts,
        "distinct_cartridges": len(read_from),
        "distinct_cartridges_per_site": {
            site: sum(1 for b in read_from if b.startswith(chr(ord("A") + i)))
            for i, site in enumerate(ctx.settings.sites)
        },
        "max_mounts_of_one_cartridge": max(loaded.values(), default=0),
        # BatchReport's figure: taken before run_batch releases the drives, so it
        # leaves out the unload of the cartridges still in them at the end.
        "tape_seconds": round(report.tape_seconds, 1),
        # The libraries' clocks around the whole call, those last unloads included.
        "tape_seconds_with_final_unloads": round(clock_seconds, 1),
        "tape_seconds_per_site": {site: round(s, 1) for site, s in per_site.items()},
        "mounts_per_site": {
            site: sites_after[site][1] - sites_before[site][1] for site in sites_after
        },
        "bytes_read": report.bytes_read,
        "wall_seconds": round(wall, 2),
        "batch_seconds": report.seconds,
    }
    if not_ready:
        figures["not_ready"] = dict(list(not_ready.items())[:5])
    log(
        f"  {figures['ready']}/{len(dips)} ready, {figures['mounts']} mounts of "
        f"{figures['distinct_cartridges']} cartridges, {clock_seconds:,.0f} simulated s, "
        f"{wall:.1f} s wall"
    )
    return figures


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aips", type=int, default=200, help="AIPs, one DIP request each")
    parser.add_argument("--cartridges", type=int, default=20, help="cartridges per site")
    parser.add_argument("--drives", type=int, default=2, help="drives per site")
    parser.add_argument("--payload", type=size_arg, default=2 * MIB, help="bytes per AIP")
    parser.add_argument("--seed", type=int, default=2026, help="of the request order")
    parser.add_argument("--workdir", type=Path, default=None, help="a temporary folder in it")
    parser.add_argument("--quick", action="store_true", help="40 AIPs on 4 cartridges per site")
    args = parser.parse_args(argv)
    if args.quick:
        args.aips, args.cartridges = 40, 4

    from preservation.config import Settings
    from preservation.context import open_context

    per_cartridge = math.ceil(args.aips / args.cartridges)
    capacity = capacity_for(per_cartridge, args.payload)
    with tempfile.TemporaryDirectory(prefix="bench-recall-", dir=args.workdir) as tmp:
        work = Path(tmp)
        settings = Settings(
            home=work / "var",
            database_url=None,
            broker_url=None,
            virus_scan=False,
            tape_drives_per_site=args.drives,
            tape_cartridges_per_site=args.cartridges,
            tape_capacity=capacity,
        )
        settings.ensure_dirs()
        ctx = open_context(settings)
        try:
            log(
                f"ingesting {args.aips} AIPs of {args.payload / MIB:g} MiB onto "
                f"{args.cartridges} cartridges of {capacity / MIB:g} MiB per site"
            )
            aip_ids, ingest_s = ingest_all(ctx, work, args.aips, args.payload)
            placed = layout(ctx)
            order = list(aip_ids)
            random.Random(args.seed).shuffle(order)
            fcfs = serve(ctx, order, first_come=True)
            batched = serve(ctx, order, first_come=False)
        finally:
            ctx.close()

    def ratio(key: str) -> float:
        return round(fcfs[key] / batched[key], 2) if batched[key] else 0.0

    # The headline counts every second the drives spent, the batch's last unloads too.
    seconds_ratio = ratio("tape_seconds_with_final_unloads")
    all_ready = fcfs["ready"] == batched["ready"] == args.aips
    one_mount_each = batched["mounts"] == batched["distinct_cartridges"]
    result = {
        "benchmark": "recall",
        "aips": args.aips,
        "payload_bytes": args.payload,
        "sites": 2,
        "cartridges_per_site": args.cartridges,
        "drives_per_site": args.drives,
        "cartridge_capacity_bytes": capacity,
        "layout": placed,
        "seed": args.seed,
        "ingest_seconds": round(ingest_s, 1),
        "first_come": fcfs,
        "batched": batched,
        "seconds_ratio": seconds_ratio,
        "seconds_ratio_batch_report": ratio("tape_seconds"),
        "mounts_ratio": ratio("mounts"),
        "mounts_fcfs": fcfs["mounts"],
        "mounts_batched": batched["mounts"],
        "distinct_cartridges": batched["distinct_cartridges"],
        "wall_ratio": ratio("wall_seconds"),
        "all_ready": all_ready,
        "meets_targets": {
            "one_mount_per_cartridge": one_mount_each,
            "seconds_ratio_at_least_5": seconds_ratio >= 5,
        },
    }
    print(json.dumps(result, indent=2))
    if not all_ready:
        log("not every DIP became ready: see first_come/batched not_ready")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
