"""Fixity audits: read throughput against raw reads, and a simulated year over 1,000 cartridges.

**Throughput** (real reads, real hashes). A bag of ``--files`` incompressible
files (``bench_dip_download.make_bag``) totalling ``--size`` is ingested by
``run_ingest`` into a fresh embedded data root (SQLite, emulated tape,
scanning off). Then, best of ``--repeat`` each,
alternating, in two conditions (**warm**: the cartridge's record files in the
page cache; **cold**: their pages dropped with ``posix_fadvise(DONTNEED)``
before every read):

* ``raw``: the site-A copy's record files (``1_<block>_R``, the emulated
  tape's blocks) read in block order with ``readinto`` a reused buffer, no
  hashing, nothing else: the bytes as fast as this machine gives them;
* ``raw_sha256``: the same, hashed (what ``sha256sum`` of the tar would cost);
* ``audit``: ``preservation.audit.fixity.audit_copies(site="site-a")``, the
  whole audit: plan from the catalogue, mount, LTFS index, read, sha256
  against the index and the catalogue, PREMIS event, catalogue update,
  unmount. Target: audit / raw >= 0.9.

**A year on the simulated clock.** A pure model of two sites with ``--cartridges``
LTO-7 cartridges (6 TB) between them, filled as the store fills them (two
tape workers per site, so consecutive AIPs alternate between two filling
cartridges; 10 % of AIPs get a second version years later, written with the
new ones). Every copy was last checked some time in the past year. Then 365
days, one audit per site per day, each allowed ``--hours`` of one drive
(beat's ``audit_max_hours``; by default what reading the site once a year
takes per day, plus a quarter), with the LTO-9 timing model of
``preservation.storage.clock.DriveTiming`` plus 10 s robot moves:

* ``stalest_first``: this project's planner (``preservation.audit.scheduling``):
  cartridges whose oldest check is oldest first, each mounted once and read
  in block order, within the hours;
* ``catalogue_order``: the copies in catalogue order (copy id: the order they
  were written), each run carrying on where the last stopped, two drives per
  site kept loaded (least recently used one unloaded), the same hours;
* ``catalogue_order_restart``: what the audit did before this planner, bounded:
  every run starts again at the first cartridge of the catalogue.

For each: mounts, drive-hours, terabytes read, the same per petabyte read
(each policy reads as much as its hours allow, so totals alone would reward
reading less), and coverage: the share of copies checked within the last 365
days at the year's end, and the longest any copy went unchecked.

    python bench/bench_audit.py             # 2 GiB read; 1,000 cartridges for a year
    python bench/bench_audit.py --quick     # 64 MiB; 100 cartridges for 60 days
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_dip_download import make_bag  # noqa: E402  (the same incompressible bag)

MIB = 1 << 20
TENANT = "bench"
BLOCK = 512 * 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- throughput -------------------------------------------------------------------------------


def record_files(home: Path, copy: Any) -> list[Path]:
    """The emulated tape blocks holding one copy, in block order."""
    folder = home / "tape" / copy.site / "cartridges" / copy.barcode
    count = -(-copy.length // BLOCK)
    return [folder / f"1_{block}_R" for block in range(copy.start_block, copy.start_block + count)]


def drop_pages(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_raw(paths: list[Path], buf: bytearray, *, digest: bool) -> float:
    view = memoryview(buf)
    h = hashlib.sha256() if digest else None
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            n = f.readinto(view)
            if h is not None and n:
                h.update(view[:n])
    return time.perf_counter() - started


def throughput(work: Path, size: int, files: int, repeat: int) -> dict[str, Any]:
    from sqlalchemy import select

    from preservation.audit.fixity import audit_copies
    from preservation.catalog import TapeCopy
    from preservation.catalog.database import session_scope
    from preservation.config import Settings
    from preservation.context import open_context
    from preservation.ingest import run_ingest

    home = work / "home"
    settings = Settings(home=home, database_url=None, broker_url=None, virus_scan=False)
    settings.ensure_dirs()
    bag = make_bag(work, size, files)
    ctx = open_context(settings)
    try:
        started = time.perf_counter()
        result = run_ingest(ctx, bag, tenant=TENANT)
        if result.state != "committed":
            raise SystemExit(f"ingest ended {result.state}: {result.problems[:3]}")
        log(f"  ingested {size / MIB:.0f} MiB in {time.perf_counter() - started:.1f} s")
        with session_scope(ctx.sessions) as s:
            copy = s.scalars(select(TapeCopy).where(TapeCopy.site == "site-a")).one()
            s.expunge(copy)
        paths = record_files(home, copy)
        assert sum(p.stat().st_size for p in paths) == copy.length
        buf = bytearray(BLOCK)
        results: dict[str, Any] = {"bytes": copy.length, "records": len(paths)}
        for condition in ("warm", "cold"):
            best: dict[str, float] = {}
            read_raw(paths, buf, digest=False)  # warm-up (and page-in for "warm")
            for _ in range(repeat):
                for name in ("raw", "raw_sha256", "audit"):
                    if condition == "cold":
                        drop_pages(paths)
                    if name == "audit":
                        began = time.perf_counter()
                        report = audit_copies(ctx, "site-a", repair=False)
                        seconds = time.perf_counter() - began
                        if not report.clean or len(report.copies) != 1:
                            raise SystemExit(f"audit not clean: {report.summary_line()}")
                    else:
                        seconds = read_raw(paths, buf, digest=name == "raw_sha256")
                    best[name] = min(best.get(name, seconds), seconds)
            mbps = {k: round(copy.length / v / 1e6, 1) for k, v in best.items()}
            results[condition] = {
                "seconds": {k: round(v, 3) for k, v in best.items()},
                "mb_per_s": mbps,
                "audit_over_raw": round(mbps["audit"] / mbps["raw"], 3),
                "audit_over_raw_sha256": round(mbps["audit"] / mbps["raw_sha256"], 3),
            }
            log(f"  {condition}: {mbps}")
        return results
    finally:
        ctx.close()


# -- the simulated year -----------------------------------------------------------------------


@dataclass
class SimCopy:
    copy_id: int
    site: str
    barcode: str
    start_block: int
    length: int
    checked: float  # day of the last check (negative: before the simulated year)


def build_archive(cartridges: int, seed: int) -> list[SimCopy]:
    """Two sites' pools filled as the store fills them; copy ids in writing order."""
    rng = random.Random(seed)
    capacity = 6 * 10**12
    per_site = cartridges // 2
    copies: list[SimCopy] = []
    # Per site: two filling cartridges (two tape workers), next numbers taken in turn.
    state = {site: {"next": 3, "filling": [1, 2], "used": {1: 0, 2: 0}} for site in ("A", "B")}
    full: dict[str, set[int]] = {"A": set(), "B": set()}
    later: list[int] = []  # sizes of AIPs that get a second version later
    written = 0
    while any(len(full[s]) < per_site for s in full):
        size = rng.randint(10, 100) * 10**9
        versions = [size]
        if later and rng.random() < 0.1:
            versions.append(later.pop(rng.randrange(len(later))))
        if rng.random() < 0.1:
            later.append(size // 5)
        for nbytes in versions:
            for site in ("A", "B"):
                st = state[site]
                if len(full[site]) >= per_site:
                    continue
                worker = rng.randrange(2)
                number = st["filling"][worker]
                used = st["used"][number]
                if used + nbytes > capacity:
                    full[site].add(number)
                    if len(full[site]) >= per_site:
                        continue
                    number = st["next"]
                    st["next"] += 1
                    st["filling"][worker] = number
                    st["used"][number] = used = 0
                written += 1
                copies.append(
                    SimCopy(
                        copy_id=written,
                        site=site,
                        barcode=f"{site}{number:05d}L7",
                        start_block=used // BLOCK + 7,
                        length=nbytes,
                        checked=0.0,
                    )
                )
                st["used"][number] = used + -(-nbytes // BLOCK) * BLOCK
    # Last checks spread over the year before, a cartridge's copies together.
    last = {b: -rng.uniform(0, 365) for b in {c.barcode for c in copies}}
    for c in copies:
        c.checked = last[c.barcode]
    return copies


def _timing() -> tuple[Any, int, float]:
    from preservation.storage.clock import DriveTiming

    timing = DriveTiming.lto9()
    blocks_per_length = int(6 * 10**12 / BLOCK / 20)  # 20 wraps end to end per partition
    return timing, blocks_per_length, 10.0


def stalest_first(copies: list[SimCopy], days: int, hours: float) -> dict[str, Any]:
    """The project's planner, day after day; a cartridge's round is rebuilt once read."""
    from preservation.audit.scheduling import (
        CartridgeRound,
        CopyToCheck,
        bound_rounds,
        estimate_seconds,
        order_rounds,
    )

    timing, per_length, move = _timing()
    epoch = datetime(2026, 1, 1, tzinfo=UTC)

    def round_of(cs: list[SimCopy]) -> CartridgeRound:
        views = [
            CopyToCheck(
                c.copy_id,
                "",
                1,
                c.site,
                c.barcode,
                "",
                c.start_block,
                c.length,
                epoch + timedelta(days=c.checked),
            )
            for c in sorted(cs, key=lambda c: c.start_block)
        ]
        return CartridgeRound(cs[0].site, cs[0].barcode, tuple(views))

    by_barcode: dict[str, list[SimCopy]] = {}
    for c in copies:
        by_barcode.setdefault(c.barcode, []).append(c)
    rounds = {b: round_of(cs) for b, cs in by_barcode.items()}
    cost = {b: estimate_seconds(r, timing, per_length, BLOCK) + 2 * move for b, r in rounds.items()}
    mounts, seconds, nbytes = 0, 0.0, 0
    for day in range(days):
        for site in ("A", "B"):
            ordered = order_rounds(r for r in rounds.values() if r.site == site)
            for r in bound_rounds(ordered, max_seconds=hours * 3600, cost=cost):
                mounts += 1
                seconds += cost[r.barcode]
                for c in by_barcode[r.barcode]:
                    c.checked = day + 0.5
                    nbytes += c.length
                rounds[r.barcode] = round_of(by_barcode[r.barcode])
    return _result(copies, days, mounts, seconds, nbytes)


def catalogue_order(
    copies: list[SimCopy], days: int, hours: float, *, restart: bool, drives: int = 2
) -> dict[str, Any]:
    timing, per_length, move = _timing()
    ordered = sorted(copies, key=lambda c: c.copy_id)
    mounts, seconds, nbytes = 0, 0.0, 0
    cursor = {"A": 0, "B": 0}
    for day in range(days):
        for site in ("A", "B"):
            mine = [c for c in ordered if c.site == site]
            loaded: OrderedDict[str, int] = OrderedDict()  # barcode -> head position
            spent = 0.0
            i = 0 if restart else cursor[site]
            checked_today = 0
            while spent < hours * 3600 and checked_today < len(mine):
                c = mine[i % len(mine)]
                cost = 0.0
                if c.barcode not in loaded:
                    if len(loaded) >= drives:
                        loaded.popitem(last=False)
                        cost += timing.unload_seconds + move
                    cost += move + timing.load_seconds
                    loaded[c.barcode] = 0
                    mounts += 1
                loaded.move_to_end(c.barcode)
                position = loaded[c.barcode]
                if position != c.start_block:
                    cost += timing.seek_seconds(abs(c.start_block - position) / per_length)
                cost += timing.transfer_seconds(c.length)
                loaded[c.barcode] = c.start_block + -(-c.length // BLOCK)
                spent += cost
                c.checked = day + 0.5
                nbytes += c.length
                i += 1
                checked_today += 1
            spent += len(loaded) * (timing.unload_seconds + move)
            seconds += spent
            cursor[site] = i % len(mine)
    return _result(copies, days, mounts, seconds, nbytes)


def _result(
    copies: list[SimCopy], days: int, mounts: int, seconds: float, nbytes: int
) -> dict[str, Any]:
    end = float(days)
    fresh = sum(1 for c in copies if end - c.checked <= 365)
    return {
        "mounts": mounts,
        "drive_hours": round(seconds / 3600, 1),
        "tb_read": round(nbytes / 1e12, 1),
        "mounts_per_pb_read": round(mounts / (nbytes / 1e15), 1),
        "drive_hours_per_pb_read": round(seconds / 3600 / (nbytes / 1e15), 1),
        "copies_checked_within_365_days_at_end": round(fresh / len(copies), 4),
        "longest_unchecked_days_at_end": round(max(end - c.checked for c in copies), 1),
    }


def simulate(cartridges: int, days: int, hours: float | None, seed: int) -> dict[str, Any]:
    from preservation.storage.clock import DriveTiming

    base = build_archive(cartridges, seed)
    if hours is None:
        # What reading each site's share once a year takes per day, and a quarter more.
        per_site = sum(c.length for c in base) / 2
        hours = round(per_site / DriveTiming.lto9().stream_bytes_per_second / 3600 / 365 * 1.25, 2)
    out: dict[str, Any] = {
        "cartridges": len({c.barcode for c in base}),
        "copies": len(base),
        "tb": round(sum(c.length for c in base) / 1e12, 1),
        "days": days,
        "hours_per_site_per_day": hours,
    }
    runs = {
        "stalest_first": lambda cs: stalest_first(cs, days, hours),
        "catalogue_order": lambda cs: catalogue_order(cs, days, hours, restart=False),
        "catalogue_order_restart": lambda cs: catalogue_order(cs, days, hours, restart=True),
    }
    for name, play in runs.items():
        copies = [SimCopy(**vars(c)) for c in base]
        started = time.perf_counter()
        out[name] = play(copies)
        log(f"  {name}: {out[name]} ({time.perf_counter() - started:.1f} s)")
    ours, theirs = out["stalest_first"], out["catalogue_order"]
    # Per petabyte checked: both read as much as their hours allow, so the totals alone
    # would reward reading less.
    out["mounts_per_pb_ratio_catalogue_over_ours"] = round(
        theirs["mounts_per_pb_read"] / ours["mounts_per_pb_read"], 2
    )
    out["drive_hours_per_pb_ratio_catalogue_over_ours"] = round(
        theirs["drive_hours_per_pb_read"] / ours["drive_hours_per_pb_read"], 2
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=2 << 30)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cartridges", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument(
        "--hours",
        type=float,
        default=None,
        help="One site's audit hours a day (default: a year's reading over 365, plus 25 %%)",
    )
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeat, args.cartridges, args.days = 64 * MIB, 1, 100, 60
    work = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=args.workdir))
    log(f"audit throughput: {args.size / MIB:.0f} MiB, best of {args.repeat}")
    result: dict[str, Any] = {
        "throughput": throughput(work, args.size, args.files, args.repeat),
    }
    log(f"a simulated year: {args.cartridges} cartridges, {args.days} days")
    result["simulated_year"] = simulate(args.cartridges, args.days, args.hours, args.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
