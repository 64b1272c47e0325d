"""Health and metrics: what an operator's probes and Prometheus ask of the service.

``health`` answers a load balancer or ``compose`` health check: is the
catalogue reachable, the broker (when there is one), each tape site. It says
nothing about any tenant's holdings, because it is served without a token.

``render_metrics`` builds the Prometheus exposition *from the catalogue* at
scrape time, on a fresh registry. Stage durations, mounts and audit failures
happen in worker processes on other machines; reading them from the
catalogue (``stage_runs``, ``cartridges.mounts``, the PREMIS events) gives
one true answer whichever API replica is scraped, with no push gateway and
no shared multiprocess directory. Each metric is one grouped query.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from preservation.catalog.database import session_scope
from preservation.catalog.models import (
    AIP,
    SIP,
    AIPVersion,
    Cartridge,
    PremisEvent,
    StageRun,
    TapeCopy,
    utcnow,
)
from preservation.context import Context
from preservation.errors import ConfigurationError

__all__ = ["STAGE_BUCKETS", "health", "record_stage_run", "render_metrics"]

log = logging.getLogger("preservation.monitoring")

#: Seconds: a small bag's stage takes well under a second, a tape write of a large one hours.
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def record_stage_run(
    ctx: Context, stage: str, seconds: float, outcome: str, tenant_id: str | None = None
) -> None:
    """Note a finished stage for the duration histograms; never fails the stage itself."""
    if ctx.read_only:
        return
    try:
        with session_scope(ctx.sessions) as s:
            s.add(
                StageRun(
                    stage=stage,
                    tenant_id=tenant_id,
                    outcome=outcome,
                    seconds=float(seconds),
                    finished_at=utcnow(),
                )
            )
    except Exception:  # noqa: BLE001 - monitoring must not break ingest
        log.warning("could not record the %s stage's duration", stage, exc_info=True)


def health(ctx: Context) -> dict[str, Any]:
    """Each dependency's state, and ``ok`` only if all are up. No tenant data."""
    checks: dict[str, dict[str, Any]] = {}
    t = time.perf_counter()
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["catalogue"] = {"ok": True, "backend": ctx.engine.dialect.name}
    except Exception as err:  # noqa: BLE001 - a probe reports, it does not raise
        checks["catalogue"] = {"ok": False, "error": type(err).__name__}
    checks["catalogue"]["ms"] = round((time.perf_counter() - t) * 1000, 1)
    if ctx.settings.broker_url:
        import redis

        try:
            client = redis.Redis.from_url(
                ctx.settings.broker_url, socket_connect_timeout=2, socket_timeout=2
            )
            client.ping()
            checks["broker"] = {"ok": True}
        except Exception as err:  # noqa: BLE001
            checks["broker"] = {"ok": False, "error": type(err).__name__}
    else:
        checks["broker"] = {"ok": True, "mode": "embedded (no broker)"}
    for name in ctx.settings.sites:
        flag = ctx.settings.tape_dir / name / "DOWN"
        library = ctx.settings.tape_dir / name
        if flag.exists():
            checks[f"site:{name}"] = {"ok": False, "state": "marked down"}
        elif not library.is_dir() and ctx.settings.tape_backend.endswith("EmulatedTapeDevice"):
            checks[f"site:{name}"] = {"ok": True, "state": "not yet used"}
        else:
            checks[f"site:{name}"] = {"ok": True, "state": "up"}
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def _queue_depths(ctx: Context) -> dict[str, int]:
    if not ctx.settings.broker_url:
        return {}
    import redis

    queues = ("ingest", "migrate", "access", "audit") + tuple(
        f"store.{s}" for s in ctx.settings.sites
    )
    try:
        client = redis.Redis.from_url(
            ctx.settings.broker_url, socket_connect_timeout=2, socket_timeout=2
        )
        depths: dict[str, int] = {}
        for q in queues:
            # Celery's Redis transport keeps a list per queue, plus one per priority step.
            total = 0
            for key in client.scan_iter(match=f"{q}*", count=100):
                name = key.decode() if isinstance(key, bytes) else str(key)
                if name == q or name.startswith(q + "\x06\x16"):
                    if client.type(key) in (b"list", "list"):
                        total += int(client.llen(key))
            depths[q] = total
        return depths
    except Exception:  # noqa: BLE001
        log.warning("queue depths unavailable", exc_info=True)
        return {}


def _collect(session: Session, ctx: Context) -> dict[str, Any]:
    return {
        "sips": session.execute(
            select(SIP.tenant_id, SIP.state, func.count()).group_by(SIP.tenant_id, SIP.state)
        ).all(),
        "aips": session.execute(
            select(AIP.tenant_id, AIP.state, func.count()).group_by(AIP.tenant_id, AIP.state)
        ).all(),
        "aip_bytes": session.execute(
            select(AIP.tenant_id, func.coalesce(func.sum(AIPVersion.tar_size), 0))
            .join(AIPVersion, AIPVersion.aip_id == AIP.id)
            .group_by(AIP.tenant_id)
        ).all(),
        "copies": session.execute(
            select(
                TapeCopy.site,
                TapeCopy.status,
                func.count(),
                func.coalesce(func.sum(TapeCopy.length), 0),
            ).group_by(TapeCopy.site, TapeCopy.status)
        ).all(),
        "cartridges": session.execute(
            select(
                Cartridge.site,
                Cartridge.state,
                func.count(),
                func.coalesce(func.sum(Cartridge.mounts), 0),
                func.coalesce(func.sum(Cartridge.reclaimable), 0),
            ).group_by(Cartridge.site, Cartridge.state)
        ).all(),
        "audit_failures": session.execute(
            select(PremisEvent.tenant_id, func.count())
            .where(PremisEvent.type == "fixity check", PremisEvent.outcome != "success")
            .group_by(PremisEvent.tenant_id)
        ).all(),
        "audit_checks": session.execute(
            select(PremisEvent.tenant_id, func.count())
            .where(PremisEvent.type == "fixity check")
            .group_by(PremisEvent.tenant_id)
        ).all(),
        "stages": _stage_histograms(session),
    }


def _stage_histograms(session: Session) -> dict[str, tuple[list[int], int, float]]:
    """Per stage: cumulative bucket counts, count and sum, in one grouped query."""
    from sqlalchemy import case

    columns = [func.sum(case((StageRun.seconds <= b, 1), else_=0)) for b in STAGE_BUCKETS]
    rows = session.execute(
        select(
            StageRun.stage,
            func.count(),
            func.coalesce(func.sum(StageRun.seconds), 0.0),
            *columns,
        ).group_by(StageRun.stage)
    ).all()
    return {row[0]: ([int(x or 0) for x in row[3:]], int(row[1]), float(row[2])) for row in rows}


def _coverage_metrics(sites: list[Any]) -> Any:
    """Audit coverage per site and tenant: what was checked within the tenant's interval."""
    from prometheus_client.core import GaugeMetricFamily

    families = {
        name: GaugeMetricFamily(f"preservation_audit_{name}", text, labels=["site", "tenant"])
        for name, text in (
            ("checked_copies", "Copies read back within their tenant's audit interval"),
            ("overdue_copies", "Copies not read back within their tenant's audit interval"),
            ("checked_bytes", "Bytes read back within their tenant's audit interval"),
            ("overdue_bytes", "Bytes not read back within their tenant's audit interval"),
        )
    }
    missing = GaugeMetricFamily(
        "preservation_audit_missing_copies",
        "Active versions with no verified copy on a healthy cartridge at the site",
        labels=["site"],
    )
    ratio = GaugeMetricFamily(
        "preservation_audit_coverage_ratio",
        "Share of a site's copies read back within their tenant's audit interval",
        labels=["site"],
    )
    for site in sites:
        ratio.add_metric([site.site], site.ratio)
        missing.add_metric([site.site], len(site.missing))
        for tenant, n in sorted(site.by_tenant.items()):
            families["checked_copies"].add_metric([site.site, tenant], n["checked_copies"])
            families["overdue_copies"].add_metric(
                [site.site, tenant], n["copies"] - n["checked_copies"]
            )
            families["checked_bytes"].add_metric([site.site, tenant], n["checked_bytes"])
            families["overdue_bytes"].add_metric(
                [site.site, tenant], n["bytes"] - n["checked_bytes"]
            )
    yield from families.values()
    yield missing
    yield ratio


def render_metrics(ctx: Context) -> bytes:
    """The Prometheus text exposition, built from the catalogue at scrape time."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    from preservation.audit.coverage import coverage

    with session_scope(ctx.sessions) as s:
        data = _collect(s, ctx)
    depths = _queue_depths(ctx)
    from preservation.evidence.stamping import waiting

    waiting_stamps = waiting(ctx)
    try:
        audit_coverage = coverage(ctx).sites
    except ConfigurationError:  # a broken rules file: `status` says so; metrics go on
        log.warning("audit coverage unavailable", exc_info=True)
        audit_coverage = []

    class _Catalogue:
        def collect(self) -> Any:
            g = GaugeMetricFamily(
                "preservation_sips", "SIPs by tenant and state", labels=["tenant", "state"]
            )
            for tenant, state, n in data["sips"]:
                g.add_metric([tenant, state.value], n)
            yield g
            g = GaugeMetricFamily(
                "preservation_aips", "AIPs by tenant and state", labels=["tenant", "state"]
            )
            for tenant, state, n in data["aips"]:
                g.add_metric([tenant, state.value], n)
            yield g
            g = GaugeMetricFamily(
                "preservation_aip_bytes", "Bytes of AIP versions per tenant", labels=["tenant"]
            )
            for tenant, n in data["aip_bytes"]:
                g.add_metric([tenant], int(n))
            yield g
            c = GaugeMetricFamily(
                "preservation_tape_copies",
                "Tape copies by site and status",
                labels=["site", "status"],
            )
            b = GaugeMetricFamily(
                "preservation_tape_copy_bytes",
                "Bytes of tape copies by site and status",
                labels=["site", "status"],
            )
            for site, status, n, size in data["copies"]:
                c.add_metric([site, status.value], n)
                b.add_metric([site, status.value], int(size))
            yield c
            yield b
            cart = GaugeMetricFamily(
                "preservation_cartridges", "Cartridges by site and state", labels=["site", "state"]
            )
            mounts = CounterMetricFamily(
                "preservation_tape_mounts", "Cartridge loads into a drive", labels=["site"]
            )
            reclaim = GaugeMetricFamily(
                "preservation_reclaimable_bytes",
                "Bytes of disposed copies still on cartridges (until repacked)",
                labels=["site"],
            )
            per_site_mounts: dict[str, int] = {}
            per_site_reclaim: dict[str, int] = {}
            for site, state, n, m, r in data["cartridges"]:
                cart.add_metric([site, state.value], n)
                per_site_mounts[site] = per_site_mounts.get(site, 0) + int(m)
                per_site_reclaim[site] = per_site_reclaim.get(site, 0) + int(r)
            for site, m in sorted(per_site_mounts.items()):
                mounts.add_metric([site], m)
            for site, r in sorted(per_site_reclaim.items()):
                reclaim.add_metric([site], r)
            yield cart
            yield mounts
            yield reclaim
            checks = CounterMetricFamily(
                "preservation_fixity_checks", "Fixity checks of tape copies", labels=["tenant"]
            )
            for tenant, n in data["audit_checks"]:
                checks.add_metric([tenant], n)
            yield checks
            fails = CounterMetricFamily(
                "preservation_audit_failures",
                "Fixity checks that did not match (or could not read)",
                labels=["tenant"],
            )
            for tenant, n in data["audit_failures"]:
                fails.add_metric([tenant], n)
            yield fails
            yield from _coverage_metrics(audit_coverage)
            stamps = GaugeMetricFamily(
                "preservation_evidence_waiting_stamps",
                "Journal segments and evidence periods waiting for the TSA's time-stamp",
                labels=["kind"],
            )
            for kind, n in sorted(waiting_stamps.items()):
                stamps.add_metric([kind], n)
            yield stamps
            q = GaugeMetricFamily(
                "preservation_queue_depth", "Messages waiting per Celery queue", labels=["queue"]
            )
            for name, n in sorted(depths.items()):
                q.add_metric([name], n)
            yield q
            h = HistogramMetricFamily(
                "preservation_stage_seconds", "Ingest stage durations", labels=["stage"]
            )
            for stage, (buckets, count, total) in sorted(data["stages"].items()):
                pairs = [(str(b), n) for b, n in zip(STAGE_BUCKETS, buckets, strict=True)]
                pairs.append(("+Inf", count))
                h.add_metric([stage], pairs, sum_value=total)
            yield h

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Catalogue())
    return bytes(generate_latest(registry))
