"""The duplicate check at validate, on a large catalogue: what it costs a SIP.

Every SIP now asks the catalogue whether its payload (the multiset of its
files' sha256) or its External-Identifier already names an AIP of the tenant.
That must stay a few indexed lookups however large the archive grows, never a
read of the tenant's files. The catalogue here holds ``--aips`` AIPs of
``--files`` files each, all of one tenant (the worst case), written in bulk.

Figures, each the median of ``--repeat`` runs:

* ``baseline_lookup_ms``: one indexed ``files.sha256 = ?`` lookup, the least
  any digest check can cost, measured in the same run;
* ``new_payload_ms``: :func:`sips_with_payload` for a payload nobody holds
  (what nearly every SIP pays);
* ``duplicate_payload_ms``: the same for a payload an AIP already holds;
* ``shared_file_ms``: a payload whose every file but one is shared with
  ``--shared`` other AIPs (a logo in every bag): the candidates the probe
  finds are compared and refused;
* ``external_identifier_ms``: :func:`sips_with_external_identifier`;
* each ``*_ratio``: against the baseline lookup.

    python bench/bench_duplicates.py --aips 20000 --files 50
    python bench/bench_duplicates.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select  # noqa: E402

from preservation.catalog import (  # noqa: E402
    AIP,
    SIP,
    AIPState,
    File,
    SIPState,
    Tenant,
    make_engine,
    make_sessionmaker,
    service,
    upgrade,
)

TENANT = "bench"


def digest(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def fill(url: str, aips: int, files: int, shared: int) -> None:
    """``aips`` AIPs of ``files`` files; the first ``shared`` share all files but one."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Tenant), [{"id": TENANT, "name": TENANT, "event_count": 0}])
        batch = 2000
        for start in range(0, aips, batch):
            sips, rows, files_rows = [], [], []
            for i in range(start, min(aips, start + batch)):
                sip_id, aip_id = str(uuid.UUID(int=i + 1)), str(uuid.UUID(int=10**12 + i))
                sips.append(
                    {
                        "id": sip_id,
                        "tenant_id": TENANT,
                        "name": f"bag-{i}",
                        "source_path": f"/drop/bag-{i}",
                        "state": SIPState.COMMITTED,
                        "file_count": files,
                        "aip_id": aip_id,
                        "external_identifier": f"EXT-{i}",
                        "bag_info": {},
                    }
                )
                rows.append(
                    {
                        "id": aip_id,
                        "tenant_id": TENANT,
                        "sip_id": sip_id,
                        "external_identifier": f"EXT-{i}",
                        "source_bag_name": f"bag-{i}",
                        "state": AIPState.ACTIVE,
                    }
                )
                for j in range(files):
                    common = i < shared and j < files - 1
                    files_rows.append(
                        {
                            "sip_id": sip_id,
                            "original_name": f"data/f{j}",
                            "size": 1,
                            "sha256": digest("shared", j) if common else digest(i, j),
                            "sha512": "0" * 128,
                            "submitted_digests": {},
                        }
                    )
            conn.execute(insert(SIP), sips)
            conn.execute(insert(AIP), rows)
            conn.execute(insert(File), files_rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum does after a bulk load; without it the planner guesses.
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def median_ms(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aips", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--shared", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dup-", dir=args.workdir) as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'catalog.sqlite'}"
        if args.database_url:
            engine = make_engine(url)
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            engine.dispose()
        upgrade(url)
        started = time.perf_counter()
        fill(url, args.aips, args.files, min(args.shared, args.aips))
        fill_s = time.perf_counter() - started
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        last = args.aips - 1
        existing = [digest(last, j) for j in range(args.files)]
        new = [digest("new", j) for j in range(args.files)]
        # Shares every common file with the first --shared AIPs, and has one of its own.
        shared = [digest("shared", j) for j in range(args.files - 1)] + [digest("own", 0)]
        with sessions() as s:
            base, _ = median_ms(
                lambda: list(s.scalars(select(File.sip_id).where(File.sha256 == new[0]))),
                args.repeat,
            )
            fresh, none = median_ms(lambda: service.sips_with_payload(s, TENANT, new), args.repeat)
            dup, found = median_ms(
                lambda: service.sips_with_payload(s, TENANT, existing), args.repeat
            )
            common, refused = median_ms(
                lambda: service.sips_with_payload(s, TENANT, shared), args.repeat
            )
            ext, named = median_ms(
                lambda: service.sips_with_external_identifier(s, TENANT, [f"EXT-{last}"]),
                args.repeat,
            )
        engine.dispose()
    assert none == [] and refused == [], "no AIP holds these payloads"
    assert [sip.name for sip in found] == [f"bag-{last}"]
    assert [sip.name for sip in named] == [f"bag-{last}"]

    def ratio(ms: float) -> float:
        return round(ms / base, 2) if base else float("inf")

    print(
        json.dumps(
            {
                "backend": url.split(":", 1)[0],
                "aips": args.aips,
                "files_per_aip": args.files,
                "file_rows": args.aips * args.files,
                "shared_with": min(args.shared, args.aips),
                "fill_s": round(fill_s, 1),
                "baseline_lookup_ms": base,
                "new_payload_ms": fresh,
                "new_payload_ratio": ratio(fresh),
                "duplicate_payload_ms": dup,
                "duplicate_payload_ratio": ratio(dup),
                "shared_file_ms": common,
                "shared_file_ratio": ratio(common),
                "external_identifier_ms": ext,
                "external_identifier_ratio": ratio(ext),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
