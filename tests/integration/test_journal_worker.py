"""The journal sync on the ``audit`` queue, run by a real worker, stamped by a real TSA."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from preservation.catalog.models import JournalCopy, JournalFile, JournalSegment
from preservation.config import Settings
from preservation.evidence.loopback_tsa import LoopbackTsa, make_pki
from tests.conftest import require_program
from workers.celery import make_app
from workers.localcluster import Cluster


def test_beat_s_journal_sync_puts_the_history_on_both_sites_stamped(
    cluster: Cluster, tmp_path: Path
) -> None:
    require_program("openssl")
    with LoopbackTsa(make_pki(tmp_path / "tsa")) as tsa:
        cluster.extra_env.update(
            PRESERVATION_TSA_URL=tsa.url, PRESERVATION_TSA_CERTS=str(tsa.pki.ca_cert)
        )
        cluster.start_all()
        cluster.drop_bag("museum", "bag-1")
        cluster.drop_bag("archive", "bag-2")
        cluster.wait_committed(2, timeout=180)
        for name in ("tape-a", "tape-b", "watcher"):  # their drives go back to the library
            cluster.kill(name)
        cluster.start_worker("audit", "audit")
        env = cluster.env()
        app = make_app(
            Settings(
                broker_url=env["PRESERVATION_BROKER_URL"],
                result_backend=env["PRESERVATION_RESULT_BACKEND"],
                redis_key_prefix=cluster.prefix,
            )
        )
        assert "journal-sync" in app.conf.beat_schedule
        # Sent as beat sends it: by name, routed to the audit queue by the app's routes.
        summary = app.send_task("workers.evidence.sync_journal").get(timeout=180)

    assert summary["segments_cut"] == 2 and summary["versions_sealed"] == 2
    assert summary["waiting_stamps"] == 0 and summary["stamped"] == 4
    assert summary["problems"] == []
    with cluster.sessions() as s:
        segments = s.scalars(select(JournalSegment)).all()
        files = s.scalars(select(JournalFile)).all()
        copies = s.scalars(select(JournalCopy)).all()
    assert {seg.tenant_id for seg in segments} == {"museum", "archive"}
    assert all(seg.token for seg in segments)
    # Each tenant: a segment, its .tsr and an evidence bundle, on both sites.
    assert len(files) == 6 and len(copies) == 12
    assert {c.site for c in copies} == {"site-a", "site-b"}
