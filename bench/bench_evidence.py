"""Legal value: what time-stamping costs ingest, how fast history is checked, how big a record is.

Three figures, each against a baseline measured in the same invocation. The
time-stamps come from a real RFC 3161 TSA on loopback
(``preservation.evidence.loopback_tsa``: ``openssl ts -reply`` under a test CA),
so every token is signed, sent over HTTP and verified against the CA as in
production; a remote TSA adds its network round trip on top.

**ingest_stamping.** ``--bags`` small bags (a text, a CSV and an XML file,
made once) ingested one after the other by ``run_ingest`` into a fresh
embedded data root (SQLite, emulated tape, virus scanning off), each
committed bag followed by ``sync_after_ingest`` as the embedded CLI and the
watcher call it, and one last ``sync_journal`` when the bags are done (the
run ends with the history on tape, stamped when on). ``off``: no TSA
configured; ``on``: the loopback TSA configured with its CA. Two cadences:
``per_interval``, the setting's default (``journal_interval_seconds``, an
hour: the first bag's sync and the last one are all there is in a run this
short), which is what production does; and ``every_bag``, the interval at
its minimum, so every bag is followed by a sync that cuts a segment, seals
a period, asks for their two stamps and writes the segment, its ``.tsr``
and the period's evidence file to both sites: the most stamping can cost.
Best of ``--repeat`` each side, run off, on, on, off, ... so drift on a
shared machine falls on both. Target: ``ratio_on_vs_off`` <= 1.05.

**verify_history.** One tenant's chain of ``--events`` PREMIS events written
straight into the catalogue in bulk (each hash computed as
``catalog.service.record_event`` computes it), then one ``sync_journal``: the
chain cut into segments of 100,000 events, each head stamped, every file
written to both sites. Timed: ``verify_history`` (both sites' journals read
from tape, every event of every copy hashed and chained, every stamp
verified, the copies compared, the database chain walked and compared).
Target: >= 100,000 events/s. Baselines, the same events: the database chain
alone (``journal.iter_chain`` and one sha256 per event), each site's journal
read from tape as verify reads it (``on_tape.scan_journal``: every written
cartridge mounted, the tenant's journal files read raw) and one copy parsed and hashed
(``journal.parse_segment``). SQLite, and PostgreSQL in a database made and
dropped for the run unless ``--no-postgres``.

**record_size.** A period of ``--versions`` versions: a hash tree over random
(tar, METS) sha256 pairs, one real token over its root, and the RFC 4998
EvidenceRecord of ``--sample`` versions spread over the period. Bytes per
record, the token's share, the tree's depth and build time; baseline: the
record of a period of one version, which holds its token and its two hashes.

Like bench_ingest.py, this module imports only the standard library at the
top: the identification pool's forkserver workers re-run ``__main__``.

    python bench/bench_evidence.py --workdir /work/tmp-bench     # 1,000 bags; 1e6 events; 1e5
    python bench/bench_evidence.py --quick                       # 20 bags; 20,000 events; 1,000
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import logging
import math
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TENANT = "bench"
FIGURES = ("ingest_stamping", "verify_history", "record_size")
TARGET_INGEST_RATIO = 1.05
TARGET_EVENTS_PER_S = 100_000
INSERT_BATCH = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


# -- the loopback TSA ------------------------------------------------------------------------


class Tsa:
    """One loopback TSA for the whole invocation: its CA is what every run trusts."""

    def __init__(self, work: Path) -> None:
        from preservation.evidence.loopback_tsa import LoopbackTsa, make_pki

        self.pki = make_pki(work / "tsa-pki")
        self.server = LoopbackTsa(self.pki).start()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ca(self) -> Path:
        return self.pki.ca_cert

    @property
    def requests(self) -> int:
        return self.server.requests

    def close(self) -> None:
        self.server.stop()


def _settings(
    home: Path, tsa: Tsa | None, database_url: str | None = None, interval: float | None = None
) -> Any:
    from preservation.config import Settings

    extra = {} if interval is None else {"journal_interval_seconds": interval}
    return Settings(
        home=home,
        database_url=database_url,
        broker_url=None,
        virus_scan=False,
        tsa_url=tsa.url if tsa else None,
        tsa_certs=tsa.ca if tsa else None,
        **extra,
    )


# -- 1. ingest with and without time-stamping ----------------------------------------------------


def make_bags(folder: Path, count: int, seed: int) -> list[Path]:
    """Small bags of three files each, every one with payload of its own (no duplicates)."""
    import bagit

    from bench.samples import write_sample

    bags = []
    for i in range(count):
        bag = folder / f"bag-{i:05d}"
        bag.mkdir(parents=True)
        for kind in ("txt", "csv", "xml"):
            write_sample(kind, bag / f"item.{kind}", seed=seed * 1_000_003 + i)
        bagit.make_bag(
            os.fspath(bag),
            {"Source-Organization": "Benchmark", "External-Identifier": f"EVIDENCE-{i:05d}"},
            checksums=["sha256"],
        )
        bags.append(bag)
    return bags


def ingest_run(
    bags: list[Path], home: Path, tsa: Tsa | None, interval: float | None
) -> dict[str, Any]:
    """Every bag through ``run_ingest`` and the sync after it, in one Context, as a watcher does."""
    from preservation.context import open_context
    from preservation.evidence.stamping import waiting
    from preservation.evidence.sync import sync_after_ingest, sync_journal
    from preservation.ingest import run_ingest

    shutil.rmtree(home, ignore_errors=True)
    ctx = open_context(_settings(home, tsa, interval=interval))  # migration not timed
    requests_before = tsa.requests if tsa else 0
    stamped = written = failed_syncs = 0
    sync_seconds = 0.0
    try:
        started = time.perf_counter()
        for bag in bags:
            result = run_ingest(ctx, bag, tenant=TENANT)
            if result.state != "committed":
                raise SystemExit(f"{bag.name}: ingest ended {result.state}: {result.problems[:3]}")
            if result.aip_id:
                began = time.perf_counter()
                report = sync_after_ingest(ctx)  # None: not due (once per journal interval)
                sync_seconds += time.perf_counter() - began
                if report is not None and report.problems:
                    failed_syncs += 1
                elif report is not None:
                    stamped += report.stamped
                    written += report.files_written
        # The run ends with everything on tape (and stamped, when on): a last sync is
        # part of the work, in both runs.
        began = time.perf_counter()
        final = sync_journal(ctx)
        sync_seconds += time.perf_counter() - began
        stamped += final.stamped
        written += final.files_written
        failed_syncs += 1 if final.problems else 0
        seconds = time.perf_counter() - started
        left = waiting(ctx)
    finally:
        ctx.close()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "seconds": seconds,
        "sync_seconds": sync_seconds,
        "time_stamps_requested": (tsa.requests - requests_before) if tsa else 0,
        "time_stamps_obtained": stamped,
        "journal_files_written": written,
        "syncs_with_problems": failed_syncs,
        "waiting_at_end": left,
    }


def tsa_round_trip(tsa: Tsa, count: int = 20) -> dict[str, float]:
    """One stamp as the sync asks for it (HTTP, openssl's signature, verified against the CA)."""
    from preservation.evidence.tsa import from_settings

    authority = from_settings(tsa.url, [tsa.ca])
    assert authority is not None
    times = []
    try:
        for i in range(count):
            began = time.perf_counter()
            authority.stamp(hashlib.sha256(str(i).encode()).digest(), "sha256")
            times.append(time.perf_counter() - began)
    finally:
        authority.close()
    return {
        "stamps": count,
        "median_ms": round(1000 * statistics.median(times), 2),
        "min_ms": round(1000 * min(times), 2),
    }


#: How often the journal is synced: the setting's default (production), and
#: as often as it can be (``sync_after_ingest`` then syncs after every bag).
CADENCES = {"per_interval": None, "every_bag": 1e-6}


def _cadence(
    bags: list[Path], work: Path, tsa: Tsa, repeat: int, interval: float | None
) -> dict[str, Any]:
    """Best of ``repeat`` on each side, run off, on, on, off, ... so drift falls on both."""
    bags_n = len(bags)
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    order = [("off", "on") if k % 2 == 0 else ("on", "off") for k in range(repeat)]
    for k, pair in enumerate(order, start=1):
        for side in pair:
            home = work / f"home-ingest-{side}"
            run = ingest_run(bags, home, tsa if side == "on" else None, interval)
            runs[side].append(run)
            log(
                f"  {side} {k}/{repeat}: {bags_n} bags in {run['seconds']:.1f} s "
                f"(sync {run['sync_seconds']:.1f} s, {run['time_stamps_requested']} stamps)"
            )
    out: dict[str, Any] = {}
    for side, done in runs.items():
        best = min(done, key=lambda r: r["seconds"])
        out[side] = {
            "seconds": round(best["seconds"], 3),
            "bags_per_s": _rate(bags_n, best["seconds"]),
            "seconds_all": [round(r["seconds"], 3) for r in done],
            "sync_seconds": round(best["sync_seconds"], 3),
            "sync_ms_per_bag": round(1000 * best["sync_seconds"] / bags_n, 2),
            "time_stamps_requested": best["time_stamps_requested"],
            "time_stamps_obtained": best["time_stamps_obtained"],
            "journal_files_written": best["journal_files_written"],
            "syncs_with_problems": best["syncs_with_problems"],
            "waiting_at_end": best["waiting_at_end"],
        }
    on, off = out["on"], out["off"]
    out["ratio_on_vs_off"] = round(on["seconds"] / off["seconds"], 3)
    out["extra_ms_per_bag"] = round(1000 * (on["seconds"] - off["seconds"]) / bags_n, 2)
    out["ok"] = (
        on["syncs_with_problems"] == off["syncs_with_problems"] == 0
        and on["time_stamps_requested"] == on["time_stamps_obtained"] > 0
        and on["waiting_at_end"] == {"segments": 0, "evidence": 0}
        and off["time_stamps_requested"] == 0
    )
    return out


def ingest_stamping(work: Path, tsa: Tsa, bags_n: int, repeat: int, seed: int) -> dict[str, Any]:
    log(f"ingest_stamping: making {bags_n} bags")
    bags = make_bags(work / "bags", bags_n, seed)
    out: dict[str, Any] = {"bags": bags_n, "files_per_bag": 3, "repeat": repeat}
    for name, interval in CADENCES.items():
        log(f" journal synced {name.replace('_', ' ')}")
        out[name] = _cadence(bags, work, tsa, repeat, interval)
    # Counted, not timed: one segment and one period per sync, two stamps each.
    every = out["every_bag"]["on"]
    out["every_bag"]["ok"] &= every["time_stamps_requested"] == 2 * bags_n
    out["ratio_on_vs_off"] = out["per_interval"]["ratio_on_vs_off"]
    out["tsa_round_trip"] = tsa_round_trip(tsa)
    out["target_ratio_on_vs_off"] = TARGET_INGEST_RATIO
    out["meets_target"] = {
        name: out[name]["ratio_on_vs_off"] <= TARGET_INGEST_RATIO for name in CADENCES
    }
    out["ok"] = all(out[name]["ok"] for name in CADENCES)
    return out


# -- 2. checking a long history ------------------------------------------------------------------

EVENT_TYPES = (
    ("ingestion start", "the SIP was received"),
    ("validation", "bag validated against its manifests"),
    ("message digest calculation", "sha256 and sha512 of every payload file"),
    ("format identification", "fido and siegfried on every file"),
    ("metadata extraction", "characterised with ExifTool and MediaInfo"),
    ("replication", "written to both sites with read-back verification"),
    ("fixity check", "the copy read back and its sha256 compared with the catalogue"),
    ("ingestion end", "the AIP version was committed"),
)
AGENTS = {
    "implementer": ["Bench City Archives"],
    "executing program": ["preservation 1.0"],
}


def _event_rows(count: int, seed: int) -> Any:
    """Chained event rows in batches: the hash is ``record_event``'s, over the same fields."""
    from preservation.evidence import journal

    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    prev: str | None = None
    batch: list[dict[str, Any]] = []
    sip = aip = ""
    for seq in range(1, count + 1):
        step = (seq - 1) % len(EVENT_TYPES)
        if step == 0:  # each run of eight events is one SIP's ingest
            sip = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            aip = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind, detail = EVENT_TYPES[step]
        row = {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "tenant_id": TENANT,
            "seq": seq,
            "sip_id": sip,
            "aip_id": aip if step >= 5 else None,
            "type": kind,
            "occurred_at": start + timedelta(milliseconds=250 * seq + rng.randrange(250)),
            "detail": detail,
            "outcome": "success",
            "outcome_detail": f"{rng.randrange(1, 500)} file(s)",
            "agents": AGENTS,
            "objects": {"files": rng.randrange(1, 500), "ids": [sip]},
            "prev_hash": prev,
        }
        text = journal.canonical(journal.event_fields(SimpleNamespace(**row)))
        row["hash"] = prev = hashlib.sha256(text.encode()).hexdigest()
        batch.append(row)
        if len(batch) == INSERT_BATCH:
            yield batch, prev
            batch = []
    if batch:
        yield batch, prev


def load_events(ctx: Any, count: int, seed: int) -> float:
    """The tenant and its chain written in bulk; the seconds it took (not a figure)."""
    from sqlalchemy import insert, update

    from preservation.catalog import service
    from preservation.catalog.database import session_scope
    from preservation.catalog.models import PremisEvent, Tenant

    started = time.perf_counter()
    with session_scope(ctx.sessions) as session:
        service.ensure_tenant(session, TENANT)
    head: str | None = None
    with ctx.engine.begin() as conn:
        for rows, last in _event_rows(count, seed):
            conn.execute(insert(PremisEvent), rows)
            head = last
        conn.execute(
            update(Tenant).where(Tenant.id == TENANT).values(event_head=head, event_count=count)
        )
    return time.perf_counter() - started


def _db_chain(ctx: Any) -> dict[str, Any]:
    from preservation.catalog.database import session_scope
    from preservation.evidence import journal

    started = time.perf_counter()
    events = intact = 0
    with session_scope(ctx.sessions) as session:
        for e in journal.iter_chain(session, TENANT):
            events += 1
            intact += hashlib.sha256(e.text).hexdigest() == e.hash
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "intact": intact,
        "seconds": round(seconds, 3),
        "events_per_s": _rate(events, seconds),
    }


def _tape_read(ctx: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Each site's journal read raw from every cartridge, as ``verify_history`` reads it."""
    from preservation.evidence.on_tape import scan_journal

    out: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for site in ctx.settings.sites:
        started = time.perf_counter()
        found, notes = scan_journal(ctx, TENANT, site)
        seconds = time.perf_counter() - started
        size = sum(len(f.data or b"") for f in found)
        out[site] = {
            "files": len(found),
            "bytes": size,
            "seconds": round(seconds, 3),
            "MBps": round(size / seconds / 1e6, 1),
            "problems": notes + [f"{f.path}: {f.error}" for f in found if f.error],
        }
        files = files or {f.path: f.data for f in found if f.data is not None}
    return out, files


def _parse_and_hash(files: dict[str, bytes]) -> dict[str, Any]:
    """One site's segments split into events and each event hashed: the per-copy floor."""
    from preservation.evidence import journal

    started = time.perf_counter()
    events = intact = 0
    for path, data in sorted(files.items()):
        if not path.endswith(".jsonl") or "/evidence-" in path:
            continue
        for e in journal.parse_segment(data, path).events:
            events += 1
            intact += e.intact
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "intact": intact,
        "seconds": round(seconds, 3),
        "events_per_s": _rate(events, seconds),
    }


def _profile_rows(profiler: cProfile.Profile, top: int) -> dict[str, list[dict[str, Any]]]:
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
                    "tottime_s": round(tottime, 3),
                    "cumtime_s": round(cumtime, 3),
                }
            )
        return picked

    return {"top_tottime": rows("tottime"), "top_cumulative": rows("cumulative")}


def verify_backend(
    home: Path,
    tsa: Tsa,
    events: int,
    repeat: int,
    seed: int,
    profile: int,
    database_url: str | None = None,
) -> dict[str, Any]:
    from preservation.context import open_context
    from preservation.evidence.history import verify_history
    from preservation.evidence.sync import sync_journal

    ctx = open_context(_settings(home, tsa, database_url))
    try:
        load_s = load_events(ctx, events, seed)
        log(f"  {events:,} events written in {load_s:.1f} s")
        requests_before = tsa.requests
        started = time.perf_counter()
        sync = sync_journal(ctx)
        sync_s = time.perf_counter() - started
        log(f"  sync_journal in {sync_s:.1f} s: {sync.summary_line()}")
        out: dict[str, Any] = {
            "events": events,
            "setup": {
                "insert_seconds": round(load_s, 1),
                "sync_journal_seconds": round(sync_s, 2),
                "segments_cut": sync.segments_cut,
                "time_stamps": tsa.requests - requests_before,
                "journal_files_written": sync.files_written,
                "problems": sync.problems,
            },
        }
        runs = []
        report: Any = None
        for k in range(repeat):
            began = time.perf_counter()
            report = verify_history(ctx)
            runs.append(time.perf_counter() - began)
            log(f"  verify_history {k + 1}/{repeat}: ok={report.ok} in {runs[-1]:.2f} s")
        best = min(runs)
        tenant = report.tenants[0].to_dict() if report.tenants else {}
        out["verify_history"] = {
            "ok": report.ok,
            "events": report.events,
            "seconds": round(best, 3),
            "seconds_all": [round(s, 3) for s in runs],
            "events_per_s": _rate(report.events, best),
            "segments": tenant.get("segments"),
            "stamps_verified": tenant.get("stamps_verified"),
            "journal_events": tenant.get("journal_events"),
            "first_disagreement": tenant.get("first_disagreement"),
        }
        log("  baselines: the database chain, the tape journal")
        out["baseline_db_chain"] = _db_chain(ctx)
        tape, files = _tape_read(ctx)
        out["baseline_tape_read"] = tape
        out["baseline_parse_and_hash_one_copy"] = _parse_and_hash(files)
        del files
        floor = out["baseline_db_chain"]["seconds"] + sum(t["seconds"] for t in tape.values())
        out["baseline_db_plus_tape_seconds"] = round(floor, 3)
        out["ratio_verify_over_db_plus_tape"] = round(best / floor, 2)
        out["target_events_per_s"] = TARGET_EVENTS_PER_S
        out["meets_target"] = out["verify_history"]["events_per_s"] >= TARGET_EVENTS_PER_S
        out["ok"] = (
            report.ok
            and report.events == events
            and out["baseline_db_chain"]["intact"] == events
            and not sync.problems
        )
        if profile:
            log("  verify_history once more under cProfile")
            profiler = cProfile.Profile()
            profiler.enable()
            verify_history(ctx)
            profiler.disable()
            out["profile"] = _profile_rows(profiler, profile)
        return out
    finally:
        ctx.close()


def _postgres(admin_url: str) -> tuple[Any, str, str] | None:
    try:
        import psycopg

        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except Exception as err:  # noqa: BLE001 - optional: any failure means "not here"
        log(f"  PostgreSQL skipped: {err}")
        return None
    name = f"bench_evidence_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return admin, name, f"{base}/{name}"


def verify_history_figure(
    work: Path,
    tsa: Tsa,
    events: int,
    repeat: int,
    seed: int,
    profile: int,
    pg_admin: str | None,
) -> dict[str, Any]:
    log(f"verify_history: sqlite, {events:,} events")
    out: dict[str, Any] = {"events": events}
    home = work / "home-history-sqlite"
    try:
        out["sqlite"] = verify_backend(home, tsa, events, repeat, seed, profile)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if pg_admin:
        log(f"verify_history: postgresql, {events:,} events")
        made = _postgres(pg_admin)
        if made is None:
            out["postgresql"] = {"skipped": "no PostgreSQL at --pg-admin"}
        else:
            admin, name, url = made
            home = work / "home-history-pg"
            try:
                out["postgresql"] = verify_backend(home, tsa, events, repeat, seed, 0, url)
            finally:
                shutil.rmtree(home, ignore_errors=True)
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.close()
    backends = [b for b in ("sqlite", "postgresql") if "ok" in out.get(b, {})]
    out["ok"] = all(out[b]["ok"] for b in backends)
    out["meets_target"] = {b: out[b]["meets_target"] for b in backends}
    return out


# -- 3. the size of an evidence record -----------------------------------------------------------


def _record(tree: Any, index: int, token: bytes) -> bytes:
    from preservation.evidence import records

    ats = records.archive_time_stamp("sha256", tree.reduced(index), token)
    return bytes(records.evidence_record([[ats]]))


def record_size(tsa: Tsa, versions: int, sample: int, seed: int) -> dict[str, Any]:
    from preservation.evidence import hashtree
    from preservation.evidence.tsa import from_settings

    log(f"record_size: a period of {versions:,} versions")
    rng = random.Random(seed)
    groups = [[rng.randbytes(32), rng.randbytes(32)] for _ in range(versions)]
    started = time.perf_counter()
    tree = hashtree.build(groups, "sha256")
    build_s = time.perf_counter() - started
    authority = from_settings(tsa.url, [tsa.ca])
    assert authority is not None
    try:
        started = time.perf_counter()
        token = authority.stamp(tree.root, "sha256")
        stamp_s = time.perf_counter() - started
        one = hashtree.build(groups[:1], "sha256")
        single = _record(one, 0, authority.stamp(one.root, "sha256"))
    finally:
        authority.close()
    picks = sorted({round(i * (versions - 1) / max(sample - 1, 1)) for i in range(sample)})
    started = time.perf_counter()
    sizes = []
    hashes = []
    for i in picks:
        sizes.append(len(_record(tree, i, token)))
        hashes.append(sum(len(partial) for partial in tree.reduced(i)))
    assemble_s = time.perf_counter() - started
    mean = statistics.fmean(sizes)
    return {
        "versions": versions,
        "sampled_records": len(picks),
        "tree_build_seconds": round(build_s, 4),
        "stamp_seconds": round(stamp_s, 4),
        "record_assembly_ms": round(1000 * assemble_s / len(picks), 3),
        "tree_depth": tree.depth,
        "log2_versions": round(math.log2(versions), 2),
        "hashes_per_record": {"min": min(hashes), "max": max(hashes)},
        "token_bytes": len(token),
        "record_bytes": {"min": min(sizes), "mean": round(mean, 1), "max": max(sizes)},
        "record_bytes_over_token": round(mean - len(token), 1),
        "baseline_one_version": {"record_bytes": len(single), "hashes_per_record": 2},
        "ratio_mean_over_one_version": round(mean / len(single), 3),
        "ok": tree.depth == math.ceil(math.log2(versions)) and min(sizes) > len(token),
    }


# -- main ------------------------------------------------------------------------------------


def _preload() -> None:
    """Import what is measured before the first figure, not when its turn comes.

    A full run lasts most of an hour: the code it measures must be the code
    it started with, and an import that fails must fail in the first second,
    not after forty minutes of ingest. (Not at the module's top: see above.)
    """
    import bagit  # noqa: F401

    import preservation.evidence.history  # noqa: F401
    import preservation.evidence.on_tape  # noqa: F401
    import preservation.evidence.records  # noqa: F401
    import preservation.evidence.stamping  # noqa: F401
    import preservation.evidence.sync  # noqa: F401
    import preservation.ingest  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1000, help="records assembled and sized")
    parser.add_argument("--repeat", type=int, default=2, help="best of R (ingest, verify)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 bags, 20,000 events, 1,000")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp folder")
    parser.add_argument(
        "--pg-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where to make (and drop) a database for the PostgreSQL run",
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="TOP",
        help="cProfile one more verify_history on SQLite; report the TOP functions",
    )
    parser.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES))
    args = parser.parse_args(argv)
    if args.quick:
        args.bags, args.events, args.versions = 20, 20_000, 1000
        args.sample, args.repeat = 100, 1
    logging.getLogger("bagit").setLevel(logging.ERROR)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-evidence-", dir=args.workdir))
    result: dict[str, Any] = {
        "benchmark": "evidence",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "tsa": "loopback: openssl ts -reply over HTTP on 127.0.0.1, tokens verified",
    }
    figures = {
        "ingest_stamping": lambda: ingest_stamping(work, tsa, args.bags, args.repeat, args.seed),
        "verify_history": lambda: verify_history_figure(
            work,
            tsa,
            args.events,
            args.repeat,
            args.seed,
            args.profile,
            None if args.no_postgres else args.pg_admin,
        ),
        "record_size": lambda: record_size(tsa, args.versions, args.sample, args.seed),
    }
    _preload()
    try:
        tsa = Tsa(work)
        try:
            for name in (n for n in FIGURES if n in args.only):
                try:
                    result[name] = figures[name]()
                except Exception as err:  # noqa: BLE001 - the other figures still count
                    log(traceback.format_exc())
                    result[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        finally:
            tsa.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["ok"] = all(result[name]["ok"] for name in FIGURES if name in result)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
