"""The console's page times on the 100,000-AIP catalogue: server side, and in Chromium.

What a curator waits for on a large archive: the dashboard, a search and an
AIP's page. Each must stay a handful of indexed, paged queries and grouped
counts, whatever the catalogue's size (target, from the issue: p95 <= 300 ms
server-side).

The catalogue is the one ``bench_catalogue.py`` builds (its ``load``: the
same generator, seed and shape, 100,000 AIPs of 10 files over four tenants,
the measured one holding 40 %), with a curator of the measured tenant added
as a console user, and tape copies added (``add_copies``: one per version at
each site on cartridges of 100, a few overdue or failed), which the
dashboard counts. The API runs as deployed (``preservation api``, uvicorn,
one process, a child of this one), and the console pages are served by it.

Server side: this process logs in through the real form (session cookie and
CSRF token), then times full-page GETs with one keep-alive ``httpx.Client``,
every kind interleaved in one shuffled schedule: ``dashboard`` (and
``dashboard_coverage``, the audit-coverage fragment htmx fetches once the
dashboard has loaded), ``search``
by a word (rare, mid-frequency and common words alike) and by a PRONOM id,
and ``aip`` (a random AIP's page). The baselines, in the same schedule, are
the REST API's equivalents with a token of the same tenant and role: the
search (``GET /api/v1/aips``, a page as long as the console's) for the
searches and ``GET /api/v1/aips/{id}`` for the AIP page; the dashboard has no
one REST equivalent, so it is set against ``GET /api/v1/sips`` (the first
page of SIPs, one of the things it shows) and ``/healthz``; its coverage
fragment against ``GET /api/v1/audits/coverage``. Each page's
ratio is over its baseline's.

In the browser: Debian's Chromium through Playwright (as the console's tests
drive it), logged in through the form, loads each page ``--loads`` times;
from the page's ``PerformanceNavigationTiming``: the first byte, DOM
interactive ("load to interactive": HTML parsed, deferred htmx about to run),
DOMContentLoaded's end and the load event's end, all from navigation start.
The static files are cached after the first load, as in a curator's browser,
and each load waits for the network to go quiet (the dashboard's coverage
fragment) before the next, so that no load queues behind its predecessor's.

    python bench/bench_console.py                          # 100,000 AIPs, both backends
    python bench/bench_console.py --quick                  # 2,000 AIPs
    python bench/bench_console.py --backends sqlite --no-browser
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.apiserver import ApiServer  # noqa: E402
from bench.bench_catalogue import (  # noqa: E402
    MEASURED,
    Sample,
    database_mb,
    load,
    log,
    word_bands,
)
from bench.bench_catalogue import percentiles as catalogue_percentiles  # noqa: E402
from preservation.catalog import make_engine, make_sessionmaker, session_scope, upgrade  # noqa: E402
from preservation.catalog.models import (  # noqa: E402
    AIPVersion,
    Cartridge,
    CartridgeState,
    CopyStatus,
    Role,
    TapeCopy,
    utcnow,
)
from preservation.config import Settings  # noqa: E402
from preservation.console.pages.search import PER_PAGE  # noqa: E402

CURATOR = "curator@bench.example"
PASSWORD = "a long enough benchmark passphrase"
CHROMIUM = Path(os.environ.get("PRESERVATION_TEST_CHROMIUM", "/usr/bin/chromium"))
TARGET_P95_MS = 300.0
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')

#: kind -> the baseline it is compared with.
BASELINE_OF = {
    "dashboard": "api_sips",
    "dashboard_coverage": "api_coverage",
    "search_word": "api_search_word",
    "search_puid": "api_search_puid",
    "aip": "api_aip",
}

#: AIP versions per cartridge, and the share of copies whose last check is older than a year.
PER_CARTRIDGE = 100
OVERDUE_SHARE = 0.005
FAILED_COPIES = 20


def add_copies(url: str, sites: tuple[str, ...], seed: int) -> dict[str, int]:
    """One copy of every version at each site, on full cartridges, as ingest leaves them.

    ``bench_catalogue``'s catalogue has no tape copies (its searches need
    none), but the dashboard's failed copies and audit coverage are counted
    over them: without copies every version would be "missing" at every site,
    a state no archive is in. Each copy was last checked within the year (the
    default audit interval), 0.5 % of them longer ago (overdue), and a few
    failed a check and wait for repair.
    """
    from sqlalchemy import insert, select

    rng = random.Random(seed)
    engine = make_engine(url)
    now = utcnow()
    with engine.connect() as conn:
        versions = conn.execute(
            select(AIPVersion.id, AIPVersion.tar_size).order_by(AIPVersion.id)
        ).all()
    failed = set(rng.sample(range(len(versions) * len(sites)), FAILED_COPIES))
    counts = {"cartridges": 0, "copies": 0, "overdue": 0, "failed": len(failed)}
    n = 0
    with engine.begin() as conn:
        for s_index, site in enumerate(sites):
            for start in range(0, len(versions), PER_CARTRIDGE):
                chunk = versions[start : start + PER_CARTRIDGE]
                barcode = f"{'AB'[s_index % 2]}{s_index}{start // PER_CARTRIDGE:05d}L9"
                used = sum(size for _, size in chunk)
                conn.execute(
                    insert(Cartridge),
                    [{"barcode": barcode, "site": site, "state": CartridgeState.FULL,
                      "capacity": 18 * 10**12, "used": used}],
                )  # fmt: skip
                counts["cartridges"] += 1
                rows = []
                for version_id, size in chunk:
                    late = rng.random() < OVERDUE_SHARE
                    counts["overdue"] += late
                    checked = now - timedelta(
                        days=rng.uniform(370, 700) if late else rng.uniform(0, 360)
                    )
                    rows.append(
                        {
                            "aip_version_id": version_id,
                            "site": site,
                            "barcode": barcode,
                            "path": f"aips/{version_id}.tar",
                            "length": size,
                            "sha256": f"{rng.getrandbits(256):064x}",
                            "status": CopyStatus.FAILED if n in failed else CopyStatus.VERIFIED,
                            "written_at": checked,
                            "verified_at": checked,
                        }
                    )
                    n += 1
                conn.execute(insert(TapeCopy), rows)
                counts["copies"] += len(rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE tape_copies, cartridges")
    engine.dispose()
    return counts


#: (kind, path, query parameters, word band or "") of each request, in the order sent.
Plan = list[tuple[str, str, dict[str, str], str]]


def schedule(sample: Sample, n: int, rng: random.Random) -> Plan:
    """``n`` requests of each kind (pages and baselines), shuffled together."""
    bands = word_bands(sample)
    band_names = sorted(bands)
    puids = sorted(sample.puid_aips)
    page = str(PER_PAGE)  # the API's page as long as the console's
    requests: Plan = []
    for i in range(n):
        band = band_names[i % len(band_names)]
        word = rng.choice(bands[band])
        puid = rng.choice(puids)
        aip = rng.choice(sample.aip_ids)
        requests += [
            ("healthz", "/healthz", {}, ""),
            ("dashboard", "/console/", {}, ""),
            ("api_sips", "/api/v1/sips", {}, ""),
            ("dashboard_coverage", "/console/dashboard/coverage", {}, ""),
            ("api_coverage", "/api/v1/audits/coverage", {}, ""),
            ("search_word", "/console/search", {"q": word}, band),
            ("api_search_word", "/api/v1/aips", {"q": word, "limit": page}, band),
            ("search_puid", "/console/search", {"puid": puid}, ""),
            ("api_search_puid", "/api/v1/aips", {"puid": puid, "limit": page}, ""),
            ("aip", f"/console/aips/{aip}", {}, ""),
            ("api_aip", f"/api/v1/aips/{aip}", {}, ""),
        ]
    rng.shuffle(requests)
    return requests


def percentiles(ms: list[float]) -> dict[str, float]:
    """``bench_catalogue``'s nearest-rank figures, with p95 (the target's) and the count."""
    return catalogue_percentiles(ms, (50, 95, 99)) | {"n": len(ms)}


def log_in(client: httpx.Client) -> None:
    """Through the login form, as a browser does: its CSRF token, then the session cookie."""
    page = client.get("/console/login")
    page.raise_for_status()
    found = _CSRF.search(page.text)
    if found is None:
        raise SystemExit("no CSRF field on the login page")
    r = client.post(
        "/console/login",
        data={"email": CURATOR, "password": PASSWORD, "csrf": found.group(1), "next": ""},
    )
    if r.status_code != 303:
        raise SystemExit(f"login refused: {r.status_code} {r.text[:300]}")


def server_side(base: str, token: str, warmup: Plan, plan: Plan) -> dict[str, Any]:
    """Every kind's latency through one keep-alive client: console pages and REST requests."""
    times: dict[str, list[float]] = {}
    band_times: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {}
    hits: dict[str, list[int]] = {}  # AIPs a search page links to, or the API's page holds
    api_headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=120, follow_redirects=False) as client:
        log_in(client)

        def get(kind: str, path: str, params: dict[str, str]) -> httpx.Response:
            headers = api_headers if kind.startswith("api_") else None
            if kind == "dashboard_coverage":
                headers = {"HX-Request": "true"}  # the fragment htmx fetches after the page
            response = client.get(path, params=params, headers=headers)
            if response.status_code != 200:
                raise SystemExit(
                    f"{kind} {path} {params}: {response.status_code} {response.text[:500]}"
                )
            return response

        for kind, path, params, _ in warmup:
            get(kind, path, params)
        log(f"  {len(plan):,} timed requests")
        for kind, path, params, band in plan:
            t0 = time.perf_counter()
            response = get(kind, path, params)
            ms = (time.perf_counter() - t0) * 1000
            times.setdefault(kind, []).append(ms)
            sizes.setdefault(kind, []).append(len(response.content))
            if kind.startswith("search"):
                hits.setdefault(kind, []).append(response.text.count('href="/console/aips/'))
            elif kind.startswith("api_search"):
                hits.setdefault(kind, []).append(len(response.json()["items"]))
            if band and kind == "search_word":
                band_times.setdefault(band, []).append(ms)
    result: dict[str, Any] = {"baseline_healthz": percentiles(times.pop("healthz"))}
    baselines = {k: percentiles(times.pop(k)) for k in sorted(set(BASELINE_OF.values()))}
    for name, stats in baselines.items():
        stats["bytes_mean"] = round(statistics.fmean(sizes[name]))
        if name in hits:
            stats["items_mean"] = round(statistics.fmean(hits[name]), 1)
    pages: dict[str, Any] = {}
    for kind, samples in times.items():
        stats: dict[str, Any] = percentiles(samples)
        stats["bytes_mean"] = round(statistics.fmean(sizes[kind]))
        if kind in hits:
            stats["aip_links_mean"] = round(statistics.fmean(hits[kind]), 1)
        base = baselines[BASELINE_OF[kind]]
        stats["baseline"] = BASELINE_OF[kind]
        stats["p50_ratio"] = round(stats["p50_ms"] / base["p50_ms"], 2)
        stats["p95_ratio"] = round(stats["p95_ms"] / base["p95_ms"], 2)
        stats["p50_over_healthz"] = round(stats["p50_ms"] / result["baseline_healthz"]["p50_ms"], 2)
        pages[kind] = stats
    pages["search_word"]["by_band"] = {
        band: {k: v for k, v in percentiles(ms).items() if k in ("p50_ms", "p95_ms", "n")}
        for band, ms in sorted(band_times.items())
    }
    result["pages"] = pages
    result["baselines"] = baselines
    return result


_NAVIGATION = """() => {
  const n = performance.getEntriesByType('navigation')[0];
  return {ttfb: n.responseStart, interactive: n.domInteractive,
          dom_content_loaded: n.domContentLoadedEventEnd, load: n.loadEventEnd};
}"""


def in_browser(base: str, sample: Sample, loads: int, rng: random.Random) -> dict[str, Any]:
    """Each page loaded ``loads`` times in Chromium: navigation timing, from navigation start."""
    if not CHROMIUM.exists():
        return {"skipped": f"no Chromium at {CHROMIUM}"}
    from playwright.sync_api import sync_playwright

    bands = word_bands(sample)
    words = [w for ws in bands.values() for w in ws]
    puids = sorted(sample.puid_aips)

    def url(kind: str) -> str:
        if kind == "dashboard":
            return "/console/"
        if kind == "search_word":
            return "/console/search?" + str(httpx.QueryParams({"q": rng.choice(words)}))
        if kind == "search_puid":
            return "/console/search?" + str(httpx.QueryParams({"puid": rng.choice(puids)}))
        return f"/console/aips/{rng.choice(sample.aip_ids)}"

    kinds = ["dashboard", "search_word", "search_puid", "aip"]
    timings: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = browser.new_context(
                base_url=base, viewport={"width": 1280, "height": 800}, locale="en-GB"
            )
            page = context.new_page()
            page.goto("/console/login")
            page.fill("#email", CURATOR)
            page.fill("#password", PASSWORD)
            with page.expect_navigation():
                page.click("form[action='/console/login'] button[type=submit]")
            if "/console/login" in page.url:
                raise SystemExit("the browser's login was refused")
            schedule_ = [k for k in kinds for _ in range(loads)]
            rng.shuffle(schedule_)
            for kind in kinds:  # warm: static files cached, connections open
                page.goto(url(kind))
            for kind in schedule_:
                response = page.goto(url(kind), wait_until="load")
                if response is None or response.status != 200:
                    raise SystemExit(f"{kind}: {response.status if response else 'no response'}")
                page.wait_for_function(
                    "performance.getEntriesByType('navigation')[0].loadEventEnd > 0"
                )
                page.wait_for_load_state("networkidle")
                for name, value in page.evaluate(_NAVIGATION).items():
                    timings[kind].setdefault(name, []).append(float(value))
        finally:
            browser.close()
    return {
        kind: {
            name: {k: v for k, v in percentiles(ms).items() if k in ("p50_ms", "p95_ms", "n")}
            for name, ms in figures.items()
        }
        for kind, figures in timings.items()
    }


# -- one backend ------------------------------------------------------------------------------


def run_backend(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    home = work / f"home-{backend}"
    home.mkdir(parents=True)
    database_url: str | None = None
    admin: Any = None
    db = f"bench_console_{os.getpid()}"
    if backend == "postgresql":
        import psycopg

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
        log(f"{backend}: generated in {timings['total_s']} s")
        t0 = time.perf_counter()
        copies = add_copies(url, Settings(home=home).sites, args.seed)
        timings["copies_s"] = round(time.perf_counter() - t0, 1)
        log(f"{backend}: {copies} in {timings['copies_s']} s")
        engine = make_engine(url)
        size = database_mb(engine)
        from preservation.tokens import create_token
        from preservation.users import add_user

        with session_scope(make_sessionmaker(engine)) as s:
            add_user(s, email=CURATOR, role="curator", password=PASSWORD, tenant_id=MEASURED)
            token = create_token(s, role=Role.CURATOR, tenant_id=MEASURED, label="bench").secret
        engine.dispose()
        env = dict(os.environ, PRESERVATION_HOME=str(home))
        env.pop("PRESERVATION_DATABASE_URL", None)
        if database_url:
            env["PRESERVATION_DATABASE_URL"] = database_url
        server = ApiServer(env, work / f"api-{backend}.log")
        server.wait_ready()
        log(f"{backend}: API and console on {server.base}")
        rng = random.Random(args.seed + 1)
        warmup, plan = schedule(sample, args.warmup, rng), schedule(sample, args.requests, rng)
        figures = server_side(server.base, token, warmup, plan)
        browser: dict[str, Any] = {"skipped": "--no-browser"}
        if not args.no_browser:
            log(f"{backend}: {args.loads} loads of each page in Chromium")
            browser = in_browser(server.base, sample, args.loads, random.Random(args.seed + 2))
        pages = figures["pages"]
        return {
            "generate": timings,
            "database_mb": size,
            "measured_tenant_aips": len(sample.aip_ids),
            "tape": copies,
            "server_side": figures,
            "browser": browser,
            "targets": {
                "page_p95_le_300ms": all(v["p95_ms"] <= TARGET_P95_MS for v in pages.values())
            },
        }
    finally:
        if server is not None:
            server.stop(kill=True)
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aips", type=int, default=100_000)
    parser.add_argument("--files-per-aip", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per kind")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests per kind")
    parser.add_argument("--loads", type=int, default=40, help="browser loads per page")
    parser.add_argument("--no-browser", action="store_true", help="server side only")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--quick", action="store_true", help="2,000 AIPs, 50 requests per kind, 5 loads"
    )
    args = parser.parse_args()
    if args.quick:
        args.aips, args.requests, args.warmup, args.loads = 2000, 50, 5, 5
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {}
    tmp = tempfile.mkdtemp(prefix="bench-console-", dir=args.workdir)
    try:
        for backend in backends:
            results[backend] = run_backend(backend, args, Path(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "console",
                # A shared machine: 1, 5, 15 minutes, this benchmark included.
                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                "aips": args.aips,
                "files": args.aips * args.files_per_aip,
                "measured_tenant": MEASURED,
                "requests_per_kind": args.requests,
                "browser_loads_per_page": 0 if args.no_browser else args.loads,
                "target_p95_ms": TARGET_P95_MS,
                "backends": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
