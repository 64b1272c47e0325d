"""Lookup and search through the HTTP API on a catalogue of 100,000 AIPs and 1,000,000 files.

What a consumer of the REST API waits for once the archive is large: an AIP by
id, by its submitter's External-Identifier, and searches by word, by PRONOM
format, by date range and by word and format together. Each must stay an
indexed lookup or an index-ordered page of 50, whatever the catalogue's size
(targets, from the issue: lookup p99 <= 10 ms; search p99 <= 100 ms on
PostgreSQL).

The catalogue is bulk-generated, the same rows (one seed) on every backend:
``--aips`` AIPs of ``--files-per-aip`` files over four tenants (the measured
one holds 40 %), each with its SIP, one version, its files (PUIDs from a mix
of collection profiles: scans, photographs, office documents, audio, video)
and one PREMIS ingestion event (a valid hash chain per tenant). Descriptions
draw their words from a vocabulary of 3,000 made-up words with Zipf
frequencies, so a word finds from a handful to tens of thousands of AIPs.
Rows go in with ``insert(Model)`` in batches of about 10,000, then the search
index is built by ``catalog.search.reindex`` (timed on its own, it is what
``preservation db reindex`` costs), then PostgreSQL is VACUUM ANALYZEd, the
state autovacuum leaves a bulk load in.

The API runs as deployed: ``preservation api`` (uvicorn, one process) in a
child process, against that catalogue. This process times requests with one
keep-alive ``httpx.Client`` and a consumer token of the measured tenant, every
kind interleaved in one shuffled schedule so that a noisy neighbour on the
shared machine hits every kind alike. The baseline is ``GET /healthz`` of the
same server (no token, one ``SELECT 1``): what HTTP, uvicorn, FastAPI and the
client cost without any catalogue work; each kind's ratio is over it.

    python bench/bench_catalogue.py                              # 100,000 AIPs, both backends
    python bench/bench_catalogue.py --quick                      # 2,000 AIPs
    python bench/bench_catalogue.py --backends sqlite --explain  # plus query plans
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import event, insert, text, update  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from bench.apiserver import ApiServer  # noqa: E402
from preservation.catalog import (  # noqa: E402
    AIP,
    SIP,
    AIPState,
    AIPVersion,
    File,
    PremisEvent,
    SIPState,
    Tenant,
    make_engine,
    make_sessionmaker,
    service,
    session_scope,
    upgrade,
)
from preservation.catalog.models import Role  # noqa: E402
from preservation.config import Settings  # noqa: E402

#: (id, name, share of the AIPs); the first is the one the requests are made for.
TENANTS = (
    ("archives", "City Archives", 0.4),
    ("museum", "Museum of Art", 0.3),
    ("library", "University Library", 0.2),
    ("records", "Records Office", 0.1),
)
MEASURED = TENANTS[0][0]
VOCABULARY = 3000
BATCH_ROWS = 10_000
PAGE = 50
EPOCH = datetime(2010, 1, 1, tzinfo=UTC)
SPAN = datetime(2026, 11, 30, tzinfo=UTC) - EPOCH

#: PUID -> (format name, MIME type, file extension).
FORMATS = {
    "fmt/353": ("Tagged Image File Format", "image/tiff", "tif"),
    "fmt/43": ("JPEG File Interchange Format 1.01", "image/jpeg", "jpg"),
    "fmt/11": ("Portable Network Graphics 1.0", "image/png", "png"),
    "fmt/95": ("PDF/A-1a", "application/pdf", "pdf"),
    "fmt/276": ("Acrobat PDF 1.7", "application/pdf", "pdf"),
    "fmt/412": ("Microsoft Word for Windows 2007 onwards", "application/vnd.openxml", "docx"),
    "fmt/214": ("Microsoft Excel for Windows 2007 onwards", "application/vnd.openxml", "xlsx"),
    "x-fmt/111": ("Plain Text File", "text/plain", "txt"),
    "x-fmt/18": ("Comma Separated Values", "text/csv", "csv"),
    "fmt/101": ("Extensible Markup Language 1.0", "text/xml", "xml"),
    "fmt/141": ("Waveform Audio (PCMWAVEFORMAT)", "audio/x-wav", "wav"),
    "fmt/199": ("MPEG-4 Media File", "video/mp4", "mp4"),
    "x-fmt/263": ("ZIP Format", "application/zip", "zip"),
}

#: Collection profiles: (share of AIPs, DC type, file stem, [(PUID, weight), ...]).
PROFILES = (
    (0.50, "Image", "scan", [("fmt/353", 16), ("fmt/95", 2), ("fmt/101", 1), ("x-fmt/111", 1)]),
    (0.20, "Image", "photo", [("fmt/43", 14), ("fmt/11", 4), ("x-fmt/111", 2)]),
    (
        0.20,
        "Text",
        "doc",
        [("fmt/412", 6), ("fmt/276", 6), ("fmt/214", 3), ("x-fmt/18", 3), ("x-fmt/111", 2)],
    ),
    (0.07, "Sound", "track", [("fmt/141", 16), ("x-fmt/111", 2), ("fmt/101", 2)]),
    (0.029, "MovingImage", "reel", [("fmt/199", 16), ("fmt/101", 4)]),
    (0.001, "Dataset", "export", [("x-fmt/263", 10), ("x-fmt/18", 10)]),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the catalogue's rows ---------------------------------------------------------------------


def vocabulary(rng: random.Random, n: int) -> list[str]:
    """``n`` made-up words of letters only (so the index keeps them whole), rank order random."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    syllables = [c + v for c in consonants for v in vowels]
    reserved = {"data", "bag", "scan", "photo", "doc", "track", "reel", "export"}
    found: set[str] = set()
    while len(found) < n:
        word = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 3, 3, 4))))
        if word not in reserved:
            found.add(word)
    words = sorted(found)
    rng.shuffle(words)
    return words


@dataclass
class Sample:
    """What the requests need of the measured tenant: ids, identifiers, word frequencies."""

    aip_ids: list[str] = field(default_factory=list)
    external_ids: list[str] = field(default_factory=list)
    word_aips: Counter[str] = field(default_factory=Counter)  # word -> AIPs it describes
    puid_aips: Counter[str] = field(default_factory=Counter)


def generate(aips: int, files_per_aip: int, seed: int, sample: Sample) -> Iterator[dict[str, Any]]:
    """The catalogue in batches of rows per table, the same for a seed on every backend.

    Yields ``{"sips": [...], "aips": [...], "versions": [...], "files": [...],
    "events": [...]}`` of about ``BATCH_ROWS`` file rows each, and fills
    ``sample`` for the measured tenant on the way. Each tenant's events form a
    valid hash chain (``service.verify_event_chain`` accepts it); the last
    batch carries the chain heads in ``"tenants"``.
    """
    rng = random.Random(seed)
    words = vocabulary(rng, VOCABULARY)
    cum_words = list(itertools.accumulate(1.0 / (k + 1) for k in range(len(words))))
    creators = [f"{rng.choice(words).title()} {rng.choice(words).title()}" for _ in range(300)]
    tenant_ids = [t[0] for t in TENANTS]
    names = {t[0]: t[1] for t in TENANTS}
    cum_tenants = list(itertools.accumulate(t[2] for t in TENANTS))
    cum_profiles = list(itertools.accumulate(p[0] for p in PROFILES))
    chains: dict[str, tuple[int, str | None]] = {t: (0, None) for t in tenant_ids}
    per_batch = max(1, BATCH_ROWS // max(1, files_per_aip))
    version_id = 0
    for start in range(0, aips, per_batch):
        batch: dict[str, list[dict[str, Any]]] = {
            "sips": [],
            "aips": [],
            "versions": [],
            "files": [],
            "events": [],
        }
        for n in range(start, min(aips, start + per_batch)):
            tenant = rng.choices(tenant_ids, cum_weights=cum_tenants)[0]
            _, dc_type, stem, puid_mix = rng.choices(PROFILES, cum_weights=cum_profiles)[0]
            puids, weights = zip(*puid_mix, strict=True)
            created = EPOCH + SPAN * rng.random()
            sip_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            aip_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            external = f"{tenant[:3].upper()}-{created.year}-{n:07d}"
            title = rng.choices(words, cum_weights=cum_words, k=rng.randint(3, 7))
            subjects = rng.choices(words, cum_weights=cum_words, k=rng.randint(2, 4))
            creator = rng.choice(creators)
            bag = f"bag-{n:07d}"
            version_id += 1
            file_puids = rng.choices(puids, weights=weights, k=files_per_aip)
            payload = 0
            for j, puid in enumerate(file_puids):
                name, mime, ext = FORMATS[puid]
                size = rng.randint(20_000, 80_000_000)
                payload += size
                original = f"data/{stem}_{j:04d}.{ext}"
                batch["files"].append(
                    {
                        "sip_id": sip_id,
                        "aip_version_id": version_id,
                        "original_name": original,
                        "aip_path": f"data/representations/rep1/{original}",
                        "size": size,
                        "sha256": f"{rng.getrandbits(256):064x}",
                        "sha512": f"{rng.getrandbits(512):0128x}",
                        "submitted_digests": {},
                        "puid": puid,
                        "format_name": name,
                        "mime": mime,
                        "identification_basis": "signature",
                    }
                )
            batch["sips"].append(
                {
                    "id": sip_id,
                    "tenant_id": tenant,
                    "name": bag,
                    "source_path": f"/ingest/{tenant}/{bag}",
                    "state": SIPState.COMMITTED,
                    "attempts": 1,
                    "external_identifier": external,
                    "bag_info": {
                        "Source-Organization": [names[tenant]],
                        "External-Identifier": [external],
                        "Bagging-Date": [created.date().isoformat()],
                    },
                    "file_count": files_per_aip,
                    "payload_bytes": payload,
                    "aip_id": aip_id,
                    "created_at": created - timedelta(minutes=5),
                    "updated_at": created,
                }
            )
            batch["aips"].append(
                {
                    "id": aip_id,
                    "tenant_id": tenant,
                    "sip_id": sip_id,
                    "external_identifier": external,
                    "source_bag_name": bag,
                    "state": AIPState.ACTIVE,
                    "created_at": created,
                    "descriptive": {
                        "title": [" ".join(title).capitalize()],
                        "creator": [creator],
                        "subject": subjects,
                        "date": [str(created.year - rng.randint(0, 80))],
                        "type": [dc_type],
                    },
                }
            )
            batch["versions"].append(
                {
                    "id": version_id,
                    "aip_id": aip_id,
                    "number": 1,
                    "reason": "ingest",
                    "tar_name": f"{aip_id}.v1.tar",
                    "tar_size": payload + 40_000,
                    "tar_sha256": f"{rng.getrandbits(256):064x}",
                    "created_at": created,
                    "committed_at": created + timedelta(minutes=2),
                }
            )
            seq, head = chains[tenant]
            batch["events"].append(_event(tenant, seq + 1, head, sip_id, aip_id, created, rng))
            chains[tenant] = (seq + 1, batch["events"][-1]["hash"])
            if tenant == MEASURED:
                sample.aip_ids.append(aip_id)
                sample.external_ids.append(external)
                sample.word_aips.update(set(title) | set(subjects) | set(creator.lower().split()))
                sample.puid_aips.update(set(file_puids))
        if start + per_batch >= aips:
            batch["tenants"] = [
                {"id": t, "event_count": seq, "event_head": head}
                for t, (seq, head) in chains.items()
            ]
        yield batch


def _event(
    tenant: str,
    seq: int,
    prev: str | None,
    sip_id: str,
    aip_id: str,
    at: datetime,
    rng: random.Random,
) -> dict[str, Any]:
    """One ingestion event, hashed as ``service.record_event`` hashes it (same fields)."""
    row = {
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "tenant_id": tenant,
        "seq": seq,
        "sip_id": sip_id,
        "aip_id": aip_id,
        "type": "ingestion",
        "occurred_at": at,
        "detail": "generated by bench_catalogue",
        "outcome": "success",
        "outcome_detail": "",
        "agents": {},
        "objects": {},
        "prev_hash": prev,
    }
    row["hash"] = service.event_hash(
        {
            "uuid": row["uuid"],
            "tenant": tenant,
            "seq": seq,
            "sip": sip_id,
            "aip": aip_id,
            "type": row["type"],
            "at": at.replace(tzinfo=None).isoformat(timespec="microseconds"),
            "detail": row["detail"],
            "outcome": row["outcome"],
            "outcome_detail": row["outcome_detail"],
            "agents": row["agents"],
            "objects": row["objects"],
            "prev": prev,
        }
    )
    return row


def load(url: str, aips: int, files_per_aip: int, seed: int) -> tuple[Sample, dict[str, float]]:
    """Bulk-insert the generated catalogue, then build the search index; seconds of each."""
    from preservation.catalog.search import reindex

    sample = Sample()
    engine = make_engine(url)
    timings = {"rows_python_s": 0.0, "insert_s": 0.0}
    with engine.begin() as conn:
        conn.execute(
            insert(Tenant), [{"id": t, "name": n, "event_count": 0} for t, n, _ in TENANTS]
        )
    made = generate(aips, files_per_aip, seed, sample)
    done = 0
    while True:
        t0 = time.perf_counter()
        batch = next(made, None)
        timings["rows_python_s"] += time.perf_counter() - t0
        if batch is None:
            break
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(SIP), batch["sips"])
            conn.execute(insert(AIP), batch["aips"])
            conn.execute(insert(AIPVersion), batch["versions"])
            conn.execute(insert(File), batch["files"])
            conn.execute(insert(PremisEvent), batch["events"])
            for row in batch.get("tenants", []):
                conn.execute(
                    update(Tenant)
                    .where(Tenant.id == row["id"])
                    .values(event_count=row["event_count"], event_head=row["event_head"])
                )
        timings["insert_s"] += time.perf_counter() - t0
        done += len(batch["aips"])
        if done % 20_000 < len(batch["aips"]) or done == aips:
            log(f"  {done:,} / {aips:,} AIPs loaded")
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # explicit ids: move the sequence past them
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('aip_versions', 'id'), "
                    "(SELECT max(id) FROM aip_versions))"
                )
            )
    t0 = time.perf_counter()
    with session_scope(make_sessionmaker(engine)) as s:
        indexed = reindex(s)
    timings["reindex_s"] = time.perf_counter() - t0
    assert indexed == aips, (indexed, aips)
    timings["analyze_s"] = 0.0
    if engine.dialect.name == "postgresql":
        t0 = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        timings["analyze_s"] = time.perf_counter() - t0
    engine.dispose()
    timings = {k: round(v, 1) for k, v in timings.items()}
    timings["total_s"] = round(sum(timings.values()), 1)
    return sample, timings


def database_mb(engine: Engine) -> float:
    """The catalogue's size on disk: the database, or the SQLite file with its WAL."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        return round(int(size) / 1e6, 1)
    path = Path(engine.url.database or "")
    return round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)


# -- the requests -----------------------------------------------------------------------------


#: (kind, path, query parameters, word band or "") of each request, in the order sent.
Plan = list[tuple[str, str, dict[str, str], str]]


def word_bands(sample: Sample) -> dict[str, list[str]]:
    """The measured tenant's words by how many AIPs they describe: a few, hundreds, thousands."""
    bands: dict[str, list[str]] = {"rare": [], "mid": [], "common": []}
    for word, n in sample.word_aips.items():
        bands["rare" if n <= 20 else "mid" if n <= 1000 else "common"].append(word)
    return {name: sorted(ws) for name, ws in bands.items() if ws}


def schedule(sample: Sample, n: int, rng: random.Random) -> Plan:
    """``n`` requests of each kind, shuffled: (kind, path, params, word band or "")."""
    bands = word_bands(sample)
    band_names = sorted(bands)
    puids = sorted(sample.puid_aips)
    requests: Plan = []
    for i in range(n):
        band = band_names[i % len(band_names)]
        word = rng.choice(bands[band])
        window = timedelta(days=rng.uniform(1, 365))
        after = EPOCH + (SPAN - window) * rng.random()
        requests += [
            ("healthz", "/healthz", {}, ""),
            ("aip_by_id", f"/api/v1/aips/{rng.choice(sample.aip_ids)}", {}, ""),
            (
                "aip_by_external_id",
                f"/api/v1/aips/by-external-id/{rng.choice(sample.external_ids)}",
                {},
                "",
            ),
            ("search_word", "/api/v1/aips", {"q": word}, band),
            ("search_puid", "/api/v1/aips", {"puid": rng.choice(puids)}, ""),
            (
                "search_date_range",
                "/api/v1/aips",
                {
                    "created_after": after.isoformat(),
                    "created_before": (after + window).isoformat(),
                },
                "",
            ),
            (
                "search_word_puid",
                "/api/v1/aips",
                {"q": rng.choice(bands[rng.choice(band_names)]), "puid": rng.choice(puids)},
                "",
            ),
        ]
    rng.shuffle(requests)
    return requests


def percentiles(ms: list[float], points: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (500 samples: p99 is the 5th slowest), the mean and the max."""
    ordered = sorted(ms)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 2)

    return {f"p{p}_ms": rank(p) for p in points} | {
        "mean_ms": round(statistics.fmean(ordered), 2),
        "max_ms": round(ordered[-1], 2),
    }


def measure(
    base: str, token: str, sample: Sample, warmup: Plan, plan: Plan
) -> tuple[dict[str, Any], list[tuple[str, dict[str, str], float]]]:
    """Every kind's latency through one keep-alive client; the slowest search of each kind."""
    headers = {"Authorization": f"Bearer {token}"}
    times: dict[str, list[float]] = {}
    band_times: dict[str, list[float]] = {}
    items: dict[str, list[int]] = {}
    slowest: dict[str, tuple[float, str, dict[str, str]]] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for kind, path, params, _ in warmup:
            response = client.get(path, params=params)
            if response.status_code != 200:
                raise SystemExit(f"{kind} {path} {params}: {response.status_code} {response.text}")
        log(f"  {len(plan):,} timed requests")
        for kind, path, params, band in plan:
            t0 = time.perf_counter()
            response = client.get(path, params=params)
            ms = (time.perf_counter() - t0) * 1000
            if response.status_code != 200:
                raise SystemExit(f"{kind} {path} {params}: {response.status_code} {response.text}")
            times.setdefault(kind, []).append(ms)
            if band:
                band_times.setdefault(band, []).append(ms)
            if kind.startswith("search"):
                items.setdefault(kind, []).append(len(response.json()["items"]))
                if ms > slowest.get(kind, (0.0, "", {}))[0]:
                    slowest[kind] = (ms, path, params)
            elif kind != "healthz":
                assert response.json()["tenant"] == MEASURED
    base_stats = percentiles(times.pop("healthz"))
    kinds: dict[str, Any] = {}
    for kind, samples in times.items():
        stats = percentiles(samples)
        stats["p50_ratio"] = round(stats["p50_ms"] / base_stats["p50_ms"], 2)
        stats["p99_ratio"] = round(stats["p99_ms"] / base_stats["p99_ms"], 2)
        if kind in items:
            stats["items_mean"] = round(statistics.fmean(items[kind]), 1)
            stats["full_pages"] = sum(k == PAGE for k in items[kind])
        kinds[kind] = stats
    bands = word_bands(sample)
    kinds["search_word"]["by_band"] = {
        band: {
            "aips_per_word": [
                min(sample.word_aips[w] for w in bands[band]),
                max(sample.word_aips[w] for w in bands[band]),
            ],
            **{k: v for k, v in percentiles(ms).items() if k in ("p50_ms", "p99_ms")},
        }
        for band, ms in sorted(band_times.items())
    }
    result = {"baseline_healthz": base_stats, "kinds": kinds}
    return result, [(kind, params, ms) for kind, (ms, _, params) in sorted(slowest.items())]


def in_process(url: str, token: str, warmup: Plan, plan: Plan) -> dict[str, dict[str, float]]:
    """The service call behind each request, timed in this process: the catalogue's share.

    One session per call, as a route has: ``healthz`` is its ``SELECT 1``, the
    others the ``lookup`` function their route calls (query, summaries, the
    pydantic views; no JSON, no HTTP), and ``authenticate`` the token check
    that every authenticated route makes first, in its own session.
    """
    from preservation import lookup
    from preservation.catalog.search import SearchQuery
    from preservation.tokens import authenticate

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    bearer = f"Bearer {token}"

    def call(kind: str, path: str, params: dict[str, str]) -> Any:
        with session_scope(sessions) as s:
            if kind == "healthz":
                return s.execute(text("SELECT 1")).scalar_one()
            if kind == "authenticate":
                return authenticate(s, bearer)
            if kind == "aip_by_id":
                return lookup.aip_summary(s, path.rsplit("/", 1)[1], MEASURED)
            if kind == "aip_by_external_id":
                return lookup.aip_by_external_id(s, path.rsplit("/", 1)[1], MEASURED)
            query = SearchQuery(
                tenant_id=MEASURED,
                q=params.get("q"),
                puid=params.get("puid"),
                created_after=_when(params.get("created_after")),
                created_before=_when(params.get("created_before")),
            )
            return lookup.search(s, query, limit=PAGE)

    times: dict[str, list[float]] = {}
    for kind, path, params, _ in warmup:
        call(kind, path, params)
    for kind, path, params, _ in plan:
        kinds = (kind, "authenticate") if kind == "aip_by_id" else (kind,)
        for one in kinds:
            t0 = time.perf_counter()
            call(one, path, params)
            times.setdefault(one, []).append((time.perf_counter() - t0) * 1000)
    engine.dispose()
    return {
        kind: {k: v for k, v in percentiles(ms).items() if k in ("p50_ms", "p99_ms")}
        for kind, ms in times.items()
    }


def explain(
    url: str, token_tenant: str, slow: list[tuple[str, dict[str, str], float]]
) -> dict[str, Any]:
    """The plan of each search kind's slowest request, run again in-process (the same SQL).

    The statements are caught as ``lookup.search`` sends them, so the plan is of
    exactly the query the route runs: EXPLAIN ANALYZE on PostgreSQL, EXPLAIN
    QUERY PLAN on SQLite.
    """
    from preservation import lookup
    from preservation.catalog.search import SearchQuery

    engine = make_engine(url)
    caught: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _catch(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        caught.append((statement, params))

    plans: dict[str, Any] = {}
    sessions = make_sessionmaker(engine)
    pg = engine.dialect.name == "postgresql"
    for kind, params, ms in slow:
        query = SearchQuery(
            tenant_id=token_tenant,
            q=params.get("q"),
            puid=params.get("puid"),
            created_after=_when(params.get("created_after")),
            created_before=_when(params.get("created_before")),
        )
        caught.clear()
        with session_scope(sessions) as s:
            lookup.search(s, query, limit=PAGE)
        statement, bound = caught[0]  # the page query; the others are the summaries'
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if pg else "EXPLAIN QUERY PLAN "
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + statement, bound).all()
        lines = [r[0] if pg else f"{r[1]}<-{r[2]} {r[-1]}" for r in rows]
        plans[kind] = {"params": params, "http_ms": round(ms, 1), "plan": lines}
    event.remove(engine, "before_cursor_execute", _catch)
    engine.dispose()
    return plans


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- one backend ------------------------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    home = work / f"home-{backend}"
    home.mkdir(parents=True)
    database_url: str | None = None
    admin: Any = None
    if backend == "postgresql":
        import psycopg

        db = f"bench_api_{os.getpid()}"
        admin = psycopg.connect(args.pg_admin, autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{db}"')
        database_url = (
            args.pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            + "/"
            + db
        )
    url = database_url or Settings(home=home).catalog_url
    server: ApiServer | None = None
    try:
        upgrade(url)
        log(f"{backend}: generating {args.aips:,} AIPs x {args.files_per_aip} files")
        sample, timings = load(url, args.aips, args.files_per_aip, args.seed)
        log(f"{backend}: generated in {timings['total_s']} s ({timings})")
        engine = make_engine(url)
        size = database_mb(engine)
        from preservation.tokens import create_token

        with session_scope(make_sessionmaker(engine)) as s:
            token = create_token(s, role=Role.CONSUMER, tenant_id=MEASURED, label="bench").secret
        engine.dispose()
        env = dict(os.environ, PRESERVATION_HOME=str(home))
        env.pop("PRESERVATION_DATABASE_URL", None)
        if database_url:
            env["PRESERVATION_DATABASE_URL"] = database_url
        server = ApiServer(env, work / f"api-{backend}.log")
        server.wait_ready()
        log(f"{backend}: API on {server.base}")
        rng = random.Random(args.seed + 1)
        warmup, plan = schedule(sample, args.warmup, rng), schedule(sample, args.requests, rng)
        figures, slow = measure(server.base, token, sample, warmup, plan)
        server.stop()
        server = None
        log(f"{backend}: the same requests' service calls in-process")
        for kind, stats in in_process(url, token, warmup, plan).items():
            target = (
                figures["baseline_healthz"] if kind == "healthz" else figures["kinds"].get(kind)
            )
            if target is not None:
                target["in_process"] = stats
            else:
                figures[f"in_process_{kind}"] = stats
        kinds = figures["kinds"]
        lookups = ("aip_by_id", "aip_by_external_id")
        searches = [k for k in kinds if k.startswith("search")]
        result: dict[str, Any] = {
            "generate": timings,
            "database_mb": size,
            "measured_tenant_aips": len(sample.aip_ids),
            **figures,
            "targets": {
                "lookup_p99_le_10ms": all(kinds[k]["p99_ms"] <= 10 for k in lookups),
                "search_p99_le_100ms": all(kinds[k]["p99_ms"] <= 100 for k in searches),
            },
        }
        if args.explain:
            result["explain"] = explain(url, MEASURED, slow)
        return result
    finally:
        if server is not None:
            server.stop()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "bench_api_{os.getpid()}" WITH (FORCE)')
            admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aips", type=int, default=100_000)
    parser.add_argument("--files-per-aip", type=int, default=10)
    parser.add_argument("--requests", type=int, default=500, help="timed requests per kind")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per kind")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--explain", action="store_true", help="plans of the slowest searches")
    parser.add_argument("--quick", action="store_true", help="2,000 AIPs, 100 requests per kind")
    args = parser.parse_args()
    if args.quick:
        args.aips, args.requests, args.warmup = 2000, 100, 10
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-catalogue-", dir=args.workdir) as tmp:
        for backend in backends:
            results[backend] = run_backend(backend, args, Path(tmp))
    print(
        json.dumps(
            {
                "benchmark": "catalogue",
                # A shared machine: 1, 5, 15 minutes, this benchmark included (~1.5 of it).
                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                "aips": args.aips,
                "files": args.aips * args.files_per_aip,
                "tenants": {t: share for t, _, share in TENANTS},
                "measured_tenant": MEASURED,
                "requests_per_kind": args.requests,
                "page_size": PAGE,
                "backends": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
