"""One OAIS flow end to end on the embedded default: bag → AIP → two tape copies → back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import bagit
import pytest
from typer.testing import CliRunner

from preservation.catalog import AIPState, CopyStatus, SIPState, service, session_scope
from preservation.cli import app
from preservation.config import Settings
from preservation.context import open_context
from preservation.ingest import run_ingest
from preservation.inventory import describe_aip
from preservation.metadata import read_mets, validate_mets
from preservation.sip import validate_bag
from tests.trees import tree_digest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
INVALID = ROOT / "examples" / "bags" / "invalid-bag"


@pytest.fixture
def ctx(settings: Settings):  # type: ignore[no-untyped-def]
    c = open_context(settings)
    yield c
    c.close()


def test_sample_bag_becomes_an_active_aip_with_two_verified_copies(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = tree_digest(SAMPLE)
    result = run_ingest(ctx, SAMPLE, tenant="museum")
    assert result.state == SIPState.COMMITTED.value, result.problems
    assert tree_digest(SAMPLE) == before  # the submission is never modified

    shown = describe_aip(ctx, result.aip_id)
    assert shown["state"] == AIPState.ACTIVE.value
    [v1] = shown["versions"]
    verified = [c for c in v1["copies"] if c["status"] == CopyStatus.VERIFIED.value]
    assert {c["site"] for c in verified} == {"site-a", "site-b"}
    assert len({c["barcode"] for c in verified}) == 2
    assert all(c["path"] == f"/museum/{result.aip_id}/v1.tar" for c in verified)
    by_name = {f["original_name"]: f for f in shown["files"]}
    assert len(by_name) == 9
    assert by_name["data/documents/letter to donor.docx"]["puid"] == "fmt/412"
    assert by_name["data/images/drawings/circle.png"]["puid"].startswith("fmt/")
    assert {e["type"] for e in shown["events"]} >= {
        "validation",
        "fixity check",
        "message digest calculation",
        "format identification",
        "creation",
        "replication",
        "ingestion",
    }
    with session_scope(ctx.sessions) as s:
        assert service.verify_event_chain(s, "museum") == []

    # Recover from tape alone, then check with stock tools.
    from preservation.storage.recovery import recover

    bag_root = recover(ctx, result.aip_id, dest_dir=tmp_path / "out")
    bagit.Bag(str(bag_root)).validate()
    assert validate_bag(bag_root).valid
    assert validate_mets(bag_root / "data" / "METS.xml") == []
    rep_mets = bag_root / "data" / "representations" / "rep1" / "METS.xml"
    assert validate_mets(rep_mets) == []
    parsed = read_mets(rep_mets)
    assert len(parsed.files) == 9
    original = bag_root / "data" / "representations" / "rep1" / "data" / "notes" / "café.txt"
    assert original.read_bytes() == (SAMPLE / "data" / "notes" / "café.txt").read_bytes()
    # The SIP's staging area is gone once both copies are verified.
    assert not (ctx.settings.staging_dir / result.sip_id).exists()


def test_invalid_bag_is_rejected_with_every_problem_and_left_intact(ctx) -> None:  # type: ignore[no-untyped-def]
    before = tree_digest(INVALID)
    result = run_ingest(ctx, INVALID, tenant="museum")
    assert result.state == SIPState.REJECTED.value
    assert tree_digest(INVALID) == before
    report_dir = Path(result.rejected_to)
    report = json.loads((report_dir / "report.json").read_text())
    files = {p["file"] for p in report["problems"]}
    assert "data/documents/minutes.txt" in files
    assert "data/documents/unlisted.txt" in files
    assert "minutes.txt" in (report_dir / "report.txt").read_text()
    # A copy of the bag sits beside the report, byte for byte.
    assert tree_digest(report_dir / "invalid-bag") == before


def test_cli_validate_and_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESERVATION_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(SAMPLE), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["valid"] is True
    bad = runner.invoke(app, ["validate", str(INVALID)])
    assert bad.exit_code == 1
    assert "minutes.txt" in bad.output
    ingested = runner.invoke(app, ["ingest", str(SAMPLE), "--tenant", "t1", "--json"])
    assert ingested.exit_code == 0, ingested.output
    aip_id = json.loads(ingested.stdout)["aip_id"]
    shown = runner.invoke(app, ["show", aip_id, "--json"])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["aip_id"] == aip_id
    missing = runner.invoke(app, ["show", "00000000-0000-0000-0000-000000000000", "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"] == "NotFoundError"


def test_serialised_bag_is_ingested(ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = tmp_path / "sample.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(SAMPLE.parent), SAMPLE.name], check=True)
    result = run_ingest(ctx, archive, tenant="museum")
    assert result.state == SIPState.COMMITTED.value, result.problems
    assert archive.exists()


def test_rerunning_stages_after_commit_changes_nothing(ctx) -> None:  # type: ignore[no-untyped-def]
    from preservation.ingest import run_sip

    result = run_ingest(ctx, SAMPLE, tenant="museum")
    again = run_sip(ctx, result.sip_id)
    assert again.state == SIPState.COMMITTED.value
    with session_scope(ctx.sessions) as s:
        assert len(service.find_aips(s, tenant_id="museum")) == 1
        aip = service.get_aip(s, result.aip_id)
        assert len(aip.versions[0].copies) == 2


def test_watch_once_ingests_hot_folders_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "0")
    monkeypatch.delenv("PRESERVATION_BROKER_URL", raising=False)
    for tenant, name, source in (("museum", "good", SAMPLE), ("museum", "bad", INVALID)):
        shutil.copytree(source, home / "ingest" / tenant / name)
    runner = CliRunner()
    done = runner.invoke(app, ["watch", "--once"])
    assert done.exit_code == 0, done.output
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["counts"] == {"committed": 1, "rejected": 1}
    folder = home / "ingest" / "museum"
    assert not (folder / "good").exists()  # released after commit
    assert (folder / "rejected" / "bad" / "report.json").is_file()
    assert tree_digest(folder / "rejected" / "bad" / "bad") == tree_digest(INVALID)
