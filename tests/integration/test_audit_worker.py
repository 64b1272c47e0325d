"""The fixity audit on the ``audit`` queue, run by a real worker against real copies on tape."""

from __future__ import annotations

from sqlalchemy import select

from preservation.catalog import CopyStatus, PremisEvent, TapeCopy
from preservation.config import Settings
from workers.celery import make_app
from workers.localcluster import Cluster


def test_audit_task_reads_every_copy_back_and_records_what_it_found(cluster: Cluster) -> None:
    cluster.start_all()
    cluster.drop_bag("museum", "bag-1")
    cluster.drop_bag("archive", "bag-2")
    cluster.wait_committed(2, timeout=180)
    # The tape workers keep their cartridges mounted between writes; stop them so that
    # the audit worker can load every cartridge (the flocks die with the processes).
    for name in ("tape-a", "tape-b", "watcher"):
        cluster.kill(name)
    with cluster.sessions() as s:
        copies = s.scalars(select(TapeCopy).where(TapeCopy.status == CopyStatus.VERIFIED)).all()
        before = {c.id: c.verified_at for c in copies}
        victim = next(c for c in copies if c.site == "site-b")
        victim_id, barcode, block = victim.id, victim.barcode, victim.start_block
    assert len(before) == 4
    # Silent decay of one block of one copy, as the audit exists to find.
    record = cluster.home / "tape" / "site-b" / "cartridges" / barcode / f"1_{block}_R"
    data = bytearray(record.read_bytes())
    data[len(data) // 2] ^= 0x01
    record.write_bytes(bytes(data))

    cluster.start_worker("audit", "audit")
    env = cluster.env()
    app = make_app(
        Settings(
            broker_url=env["PRESERVATION_BROKER_URL"],
            result_backend=env["PRESERVATION_RESULT_BACKEND"],
            redis_key_prefix=cluster.prefix,
        )
    )
    # Sent as beat sends it: by name, routed to the audit queue by the app's routes.
    summary = app.send_task("workers.audit.audit_fixity").get(timeout=180)

    assert summary["checked"] == 4 and summary["matched"] == 3 and summary["skipped"] == []
    assert [f["copy_id"] for f in summary["failed"]] == [victim_id]
    # The failed copy was rebuilt from site A on another site-B cartridge and checked again.
    [fixed] = summary["repairs"]
    assert fixed["repaired"] and fixed["rechecked"] == "ok" and fixed["barcode"] != barcode
    assert summary["ok"] is True and summary["audit_id"]
    with cluster.sessions() as s:
        rows = {c.id: c for c in s.scalars(select(TapeCopy))}
        checks = s.scalars(select(PremisEvent).where(PremisEvent.type == "fixity check")).all()
    assert rows[victim_id].status is CopyStatus.DISCARDED  # replaced
    assert rows[fixed["new_copy_id"]].status is CopyStatus.VERIFIED
    for copy_id, verified_at in before.items():
        if copy_id != victim_id:
            assert rows[copy_id].status is CopyStatus.VERIFIED
            assert rows[copy_id].verified_at > verified_at  # audited just now
    audited = [e for e in checks if "copy" in e.objects]
    assert sorted((e.objects["copy"], e.outcome) for e in audited) == sorted(
        [(copy_id, "failure" if copy_id == victim_id else "success") for copy_id in before]
        + [(fixed["new_copy_id"], "success")]
    )
    assert "audit-fixity" in app.conf.beat_schedule
