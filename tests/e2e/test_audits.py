"""Fixity audits as an operator runs them: stalest first, bounded, self-repairing, with coverage.

Everything is real: the embedded archive, two emulated libraries, the CLI.
Damage is done to the cartridge's own record files, as media decay would.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from preservation.catalog import PremisEvent, TapeCopy
from preservation.catalog.database import session_scope
from preservation.catalog.models import Audit, CopyStatus, utcnow
from preservation.cli import app
from preservation.config import Settings
from preservation.context import open_context
from tests.e2e.test_cli_tape import SAMPLE, corrupt_block, run

TENANT = "museum"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_TAPE_CARTRIDGES_PER_SITE", "3")
    monkeypatch.setenv("PRESERVATION_TAPE_CAPACITY", str(256 << 20))
    return home


def _copies(home: Path) -> list[TapeCopy]:
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            rows = list(s.scalars(select(TapeCopy).order_by(TapeCopy.id)))
            s.expunge_all()
            return rows
    finally:
        ctx.close()


def _age(home: Path, copy_ids: list[int], days: float) -> None:
    """Pretend these copies were last checked ``days`` ago."""
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            s.execute(
                update(TapeCopy)
                .where(TapeCopy.id.in_(copy_ids))
                .values(verified_at=utcnow() - timedelta(days=days))
            )
    finally:
        ctx.close()


def test_a_bounded_audit_reads_the_stalest_cartridge_and_the_next_run_the_others(
    home: Path,
) -> None:
    first = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
    second = run("ingest", str(SAMPLE), "--tenant", "observatory")["aip_id"]
    copies = _copies(home)
    assert len(copies) == 4 and len({c.barcode for c in copies}) == 2
    stale = next(c for c in copies if c.site == "site-b")
    _age(home, [c.id for c in copies if c.barcode == stale.barcode], 30)

    one = run("audit", "--max-cartridges", "1")
    assert one["ok"] and one["cartridges"] == [stale.barcode]
    assert {c["barcode"] for c in one["copies"]} == {stale.barcode}
    assert [c["aip_id"] for c in one["copies"]] == [first, second]  # block order
    assert one["checked"] == 2 and one["bytes"] == sum(c.length for c in copies[:2])

    two = run("audit", "--max-cartridges", "1")
    assert two["cartridges"] != one["cartridges"] and two["checked"] == 2

    # A tenant's audit reads only its copies; the run is kept with its report.
    mine = run("audit", "--tenant", "observatory")
    assert {c["aip_id"] for c in mine["copies"]} == {second}
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            audits = list(s.scalars(select(Audit).order_by(Audit.created_at)))
            assert [a.state.value for a in audits] == ["done"] * 3
            assert audits[0].max_cartridges == 1 and audits[2].tenant_id == "observatory"
            assert audits[0].report is not None and "copies" not in audits[0].report
            assert audits[0].report["summary"].startswith("audited 2 copies on 1 cartridges")
    finally:
        ctx.close()


def test_max_hours_stops_before_the_next_cartridge(home: Path) -> None:
    run("ingest", str(SAMPLE), "--tenant", TENANT)
    report = run("audit", "--max-hours", "0.0000001")
    # The first cartridge is always read (every run makes progress); the other waits.
    assert len(report["cartridges"]) == 1 and report["deferred_cartridges"] == 1
    assert "1 cartridges left for the next run" in report["summary"]


def test_a_damaged_copy_is_repaired_from_the_other_site_and_checked_again(home: Path) -> None:
    aip_id = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
    bad = next(c for c in _copies(home) if c.site == "site-a")
    corrupt_block(
        home,
        {"site": bad.site, "barcode": bad.barcode, "start_block": bad.start_block},
    )
    report = run("audit")  # repaired and re-checked: clean, exit 0
    [failed] = report["failed"]
    assert failed["copy_id"] == bad.id and failed["aip_id"] == aip_id
    [fixed] = report["repairs"]
    assert fixed["repaired"] and fixed["rechecked"] == "ok" and "site-b" in fixed["source"]
    assert fixed["barcode"] != bad.barcode
    assert report["ok"] and report["unrepaired"] == []
    after = {c.id: c for c in _copies(home)}
    assert after[bad.id].status == CopyStatus.DISCARDED
    assert after[fixed["new_copy_id"]].status == CopyStatus.VERIFIED
    # The PREMIS history says all of it: the failed check, the new copy, its check.
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            events = list(
                s.scalars(
                    select(PremisEvent).where(PremisEvent.aip_id == aip_id).order_by(PremisEvent.id)
                )
            )
    finally:
        ctx.close()
    checks = [(e.type, e.outcome) for e in events if e.type == "fixity check"]
    assert ("fixity check", "failure") in checks
    assert checks[-1] == ("fixity check", "success")
    assert any(e.type == "replication" and fixed["barcode"] in (e.detail or "") for e in events)
    # Told not to repair, the same damage is left for `repair` and the audit says so.
    again = next(c for c in _copies(home) if c.site == "site-b" and c.status == "verified")
    corrupt_block(
        home, {"site": again.site, "barcode": again.barcode, "start_block": again.start_block}
    )
    left = run("audit", "--no-repair", code=3)
    assert [f["copy_id"] for f in left["unrepaired"]] == [again.id]


def test_a_copy_cut_short_on_tape_is_a_read_failure_and_is_repaired(home: Path) -> None:
    """End of data where the index promises blocks: the copy failed, not an audit error."""
    aip_id = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
    bad = next(c for c in _copies(home) if c.site == "site-a")
    folder = home / "tape" / bad.site / "cartridges" / bad.barcode
    last = bad.start_block + -(-bad.length // (512 * 1024)) - 1
    (folder / f"1_{last}_R").unlink()  # the tape ends before the file does
    report = run("audit", "--site", "site-a")
    [failed] = report["failed"]
    assert failed["copy_id"] == bad.id and failed["aip_id"] == aip_id
    [fixed] = report["repairs"]
    assert fixed["repaired"] and fixed["rechecked"] == "ok", fixed
    assert report["ok"]
    after = {c.id: c for c in _copies(home)}
    assert after[bad.id].status == CopyStatus.DISCARDED
    assert "read failed" in (after[bad.id].error or "") or "replaced" in (after[bad.id].error or "")


def test_coverage_names_overdue_copies_by_tenant_interval(home: Path) -> None:
    (home).mkdir(parents=True, exist_ok=True)
    (home / "archiving-rules.json").write_text(
        json.dumps({"tenants": {"observatory": {"audit_interval": "P7D"}}})
    )
    museum = run("ingest", str(SAMPLE), "--tenant", TENANT)["aip_id"]
    observatory = run("ingest", str(SAMPLE), "--tenant", "observatory")["aip_id"]
    copies = _copies(home)
    full = run("audit", "--coverage")
    assert full["complete"] and full["intervals"] == {"museum": "P1Y", "observatory": "P7D"}
    assert [s["site"] for s in full["sites"]] == ["site-a", "site-b"]
    assert all(s["copies"] == 2 and s["ratio"] == 1.0 for s in full["sites"])

    # Ten days ago: overdue for the observatory (a week), not for the museum (a year).
    _age(home, [c.id for c in copies if c.site == "site-a"], 10)
    cov = run("audit", "--coverage", code=3)
    site_a = cov["sites"][0]
    assert (site_a["copies"], site_a["checked_copies"], site_a["overdue_copies"]) == (2, 1, 1)
    [late] = site_a["overdue"]
    assert late["aip_id"] == observatory and late["tenant"] == "observatory"
    assert site_a["by_tenant"]["museum"]["checked_copies"] == 1
    assert site_a["overdue_bytes"] == next(
        c.length for c in copies if c.site == "site-a" and c.id == late["copy_id"]
    )
    assert cov["sites"][1]["overdue_copies"] == 0
    assert run("audit", "--coverage", "--tenant", TENANT)["complete"]

    # A copy that failed (left for `repair`) is not "covered" by dropping out of the
    # count: its version is missing a copy at that site, and coverage says so.
    ctx = open_context(Settings(home=home))
    try:
        with session_scope(ctx.sessions) as s:
            s.execute(
                update(TapeCopy)
                .where(TapeCopy.id == next(c.id for c in copies if c.site == "site-b"))
                .values(status=CopyStatus.FAILED)
            )
    finally:
        ctx.close()
    gap = run("audit", "--coverage", code=3)
    site_b = gap["sites"][1]
    assert site_b["missing_copies"] == 1 and site_b["missing"][0]["aip_id"] in (
        museum,
        observatory,
    )
    run("repair")
    assert run("audit", "--coverage", code=3)["sites"][1]["missing_copies"] == 0

    # The overdue copy is the first one the next bounded run reads; then all is covered.
    nxt = run("audit", "--max-cartridges", "1", "--site", "site-a")
    assert nxt["cartridges"] == [late["barcode"]]
    assert run("audit", "--coverage")["complete"]
    assert museum != observatory

    # The same figures are Prometheus gauges.
    from preservation.monitoring import render_metrics

    ctx = open_context(Settings(home=home))
    try:
        text = render_metrics(ctx).decode()
    finally:
        ctx.close()
    assert 'preservation_audit_overdue_copies{site="site-a",tenant="observatory"} 0.0' in text
    assert 'preservation_audit_checked_copies{site="site-a",tenant="observatory"} 1.0' in text
    assert 'preservation_audit_coverage_ratio{site="site-b"} 1.0' in text
    assert 'preservation_audit_missing_copies{site="site-b"} 0.0' in text


def test_bad_audit_bounds_and_intervals_are_clear_errors(home: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "--max-cartridges", "0"])
    assert result.exit_code == 2 and "--max-cartridges" in result.output
    home.mkdir(parents=True, exist_ok=True)
    (home / "archiving-rules.json").write_text(json.dumps({"defaults": {"audit_interval": "P0D"}}))
    bad = run("audit", "--coverage", code=3)  # a configuration error
    assert bad["rule"] == "audit-interval" and "defaults/audit_interval" in bad["message"]
