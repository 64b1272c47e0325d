"""A site down: ingest waits, never commits with one copy, and is finished later."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from preservation import ingest
from preservation.catalog import AIPState, CopyStatus, SIPState, service, session_scope
from preservation.cli import app
from preservation.config import Settings
from preservation.context import open_context
from preservation.errors import SiteUnavailableError
from preservation.inventory import describe_aip

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bags" / "sample-collection"


@pytest.fixture
def ctx(settings: Settings):  # type: ignore[no-untyped-def]
    c = open_context(settings)
    yield c
    c.close()


def _down(settings: Settings, site: str) -> Path:
    flag = settings.tape_dir / site / "DOWN"
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text("maintenance window")
    return flag


def _copies(ctx, aip_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    [v1] = describe_aip(ctx, aip_id)["versions"]
    return [c for c in v1["copies"] if c["status"] == CopyStatus.VERIFIED.value]


def test_site_down_leaves_the_sip_pending_and_resume_finishes_it(ctx, settings) -> None:  # type: ignore[no-untyped-def]
    flag = _down(settings, "site-b")
    with pytest.raises(SiteUnavailableError, match="site-b"):
        ingest.run_ingest(ctx, SAMPLE, tenant="museum", wait_seconds=0)
    [sip_id] = ingest.pending_sips(ctx)
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        assert sip.state in (SIPState.PACKAGED, SIPState.STORED)
        aip = service.get_aip(s, sip.aip_id or "")
        assert aip.state is AIPState.PENDING  # one copy is not safe
        aip_id = aip.id
    assert [c["site"] for c in _copies(ctx, aip_id)] == ["site-a"]
    assert (settings.staging_dir / sip_id).exists()  # the only other copy of the bytes

    # Still down: resume leaves it pending, and says so.
    [still] = ingest.resume(ctx)
    assert still.state != SIPState.COMMITTED.value

    flag.unlink()
    [done] = ingest.resume(ctx)
    assert done.state == SIPState.COMMITTED.value
    assert {c["site"] for c in _copies(ctx, aip_id)} == {"site-a", "site-b"}
    assert describe_aip(ctx, aip_id)["state"] == AIPState.ACTIVE.value
    assert not (settings.staging_dir / sip_id).exists()
    assert ingest.pending_sips(ctx) == []


def test_ingest_waits_for_a_site_that_comes_back(ctx, settings) -> None:  # type: ignore[no-untyped-def]
    flag = _down(settings, "site-a")
    waits: list[int] = []
    threading.Timer(1.5, flag.unlink).start()
    started = time.monotonic()
    result = ingest.run_ingest(
        ctx,
        SAMPLE,
        tenant="museum",
        wait_seconds=60,
        progress=lambda what, done, _t: waits.append(done) if what == "waiting" else None,
    )
    assert result.state == SIPState.COMMITTED.value
    assert waits and time.monotonic() - started >= 1.5
    assert {c["site"] for c in _copies(ctx, result.aip_id)} == {"site-a", "site-b"}


def test_cli_ingest_reports_pending_and_resume_finishes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_SITE_WAIT_SECONDS", "0")
    flag = _down(Settings(home=home), "site-b")
    runner = CliRunner()
    pending = runner.invoke(app, ["ingest", str(SAMPLE), "--tenant", "t1", "--json"])
    assert pending.exit_code == 3, pending.output
    body = json.loads(pending.stdout)
    assert body["state"] == "pending" and body["error"] == "SiteUnavailableError"
    flag.unlink()
    resumed = runner.invoke(app, ["resume", "--json"])
    assert resumed.exit_code == 0, resumed.output
    [r] = json.loads(resumed.stdout)
    assert r["state"] == "committed" and r["aip_id"]
    nothing = runner.invoke(app, ["resume"])
    assert nothing.exit_code == 0 and "nothing pending" in nothing.output


def test_commit_interrupted_before_release_is_finished_on_rerun(ctx, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A bag claimed from a hot folder, as the watcher leaves it.
    claim = settings.ingest_dir / "museum" / ".claimed" / str(uuid.uuid4())
    claim.mkdir(parents=True)
    bag = claim / SAMPLE.name
    shutil.copytree(SAMPLE, bag)
    sip_id = ingest.receive(ctx, bag, tenant="museum", sip_id=claim.name)

    from preservation.ingest import commit as commit_stage

    real_release = commit_stage._release_sip
    crashes = {"n": 0}

    def crash_once(c, s):  # type: ignore[no-untyped-def]
        if not crashes["n"]:
            crashes["n"] += 1
            raise RuntimeError("killed between the catalogue commit and the release")
        real_release(c, s)

    monkeypatch.setattr(commit_stage, "_release_sip", crash_once)
    with pytest.raises(RuntimeError):
        ingest.run_sip(ctx, sip_id)
    assert ingest.result_of(ctx, sip_id).state == SIPState.COMMITTED.value
    assert bag.exists()  # not released yet

    ingest.run_stage(ctx, "commit", sip_id)  # the redelivered commit
    assert not bag.exists() and not claim.exists()
    assert not (settings.staging_dir / sip_id).exists()
    with session_scope(ctx.sessions) as s:
        ingestion = [e for e in service.list_events(s, sip_id=sip_id) if e.type == "ingestion"]
    assert len(ingestion) == 2  # started (in the METS) and completed, not repeated


def test_the_aip_mets_tells_its_ingestion(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from preservation.metadata import read_mets
    from preservation.storage.recovery import recover

    result = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    bag = recover(ctx, result.aip_id, dest_dir=tmp_path / "out")
    premis = "{http://www.loc.gov/premis/v3}eventType"
    for mets in (bag / "data" / "METS.xml", bag / "data/representations/rep1/METS.xml"):
        types = {el.text for el in etree.parse(str(mets)).iter(premis)}
        assert "ingestion" in types, f"{mets.name}: no ingestion event in {types}"
    assert read_mets(bag / "data" / "METS.xml").kind == "root"


def test_cli_repair_commits_what_it_made_whole(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_SITE_WAIT_SECONDS", "0")
    flag = _down(Settings(home=home), "site-b")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(SAMPLE), "--tenant", "t1"]).exit_code == 3
    flag.unlink()
    repaired = runner.invoke(app, ["repair", "--json"])
    assert repaired.exit_code == 0, repaired.output
    body = json.loads(repaired.stdout)
    [c] = body["committed"]
    assert c["state"] == "committed"
    shown = json.loads(runner.invoke(app, ["show", c["aip_id"], "--json"]).stdout)
    assert shown["state"] == "active"
    [v1] = shown["versions"]
    verified = [x for x in v1["copies"] if x["status"] == "verified"]
    assert sorted(x["site"] for x in verified) == ["site-a", "site-b"]
    assert all(x["barcode"] and x["verified_at"] and x["path"] for x in verified)
