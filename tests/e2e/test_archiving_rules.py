"""The tenant's BagIt profile, allowed formats and default retention, through every door.

A bag breaking the profile is rejected at validate, whether dropped in a hot
folder or given to ``preservation ingest``; ``validate --tenant`` says the same.
Formats are judged after identification: ``reject`` sets the bag aside as a
validation failure does, ``warn`` ingests it with the warning shown where
validation warnings are. ``default_retention`` dates the AIP at commit.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from preservation import ingest
from preservation.catalog import AIP, AIPVersion, SIPState, service, session_scope
from preservation.cli import app
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import InvalidSIPError
from tests.trees import tree_digest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
DOCX = "data/documents/letter to donor.docx"
# The sample bag's formats (examples/README.txt), but for the DOCX (fmt/412).
ALL_BUT_DOCX = [
    "fmt/11",
    "fmt/353",
    "fmt/43",
    "fmt/18",
    "fmt/141",
    "x-fmt/18",
    "fmt/101",
    "x-fmt/111",
]
PROFILE_ID = "https://museum.example/profiles/deposit-v2.json"


def profile(**keys: Any) -> dict[str, Any]:
    return {
        "BagIt-Profile-Info": {
            "BagIt-Profile-Identifier": PROFILE_ID,
            "BagIt-Profile-Version": "1.4.0",
            "Source-Organization": "City Museum",
            "External-Description": "deposits",
            "Version": "2",
        },
        "Accept-BagIt-Version": ["1.0"],
        **keys,
    }


def write_rules(home: Path, tenant_rules: dict[str, Any], **profile_keys: Any) -> None:
    """The museum's rules; a profile, when given keys, in a file beside the rules."""
    home.mkdir(parents=True, exist_ok=True)
    rules = dict(tenant_rules)
    if profile_keys:
        (home / "profiles").mkdir(exist_ok=True)
        (home / "profiles" / "museum.json").write_text(json.dumps(profile(**profile_keys)))
        rules["bagit_profile"] = "profiles/museum.json"
    (home / "archiving-rules.json").write_text(json.dumps({"tenants": {"museum": rules}}))


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    c.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    monkeypatch.setenv("PRESERVATION_QUIESCENT_SECONDS", "0.2")
    monkeypatch.delenv("PRESERVATION_BROKER_URL", raising=False)
    monkeypatch.delenv("PRESERVATION_RULES_FILE", raising=False)
    return home


def cli(*args: str) -> tuple[int, Any]:
    done = CliRunner().invoke(app, [*args, "--json"])
    return done.exit_code, json.loads(done.stdout) if done.stdout.strip() else done.output


def validation_events(ctx: Context, sip_id: str) -> list[Any]:
    with session_scope(ctx.sessions) as s:
        # The bag's validation, not the per-format ones the characterise stage adds.
        events = [
            e
            for e in service.list_events(s, sip_id=sip_id)
            if e.type == "validation" and not e.detail.startswith("format validation")
        ]
        s.expunge_all()
        return events


# -- BagIt profile ---------------------------------------------------------------------------


def test_watch_rejects_a_bag_breaking_the_profile_with_a_report_naming_the_rule(
    home: Path,
) -> None:
    write_rules(home, {}, **{"Manifests-Required": ["md5"], "Allow-Fetch.txt": False})
    bag = home / "ingest" / "museum" / "deposit-1"
    shutil.copytree(SAMPLE, bag)
    before = tree_digest(bag)
    time.sleep(0.3)
    done = CliRunner().invoke(app, ["watch", "--once"])
    assert done.exit_code == 0, done.output
    rejected = home / "ingest" / "museum" / "rejected" / "deposit-1"
    report = json.loads((rejected / "report.json").read_text())
    assert report["stage"] == "validate"
    [problem] = [p for p in report["problems"] if p["severity"] == "error"]
    assert (problem["rule"], problem["file"]) == ("profile-manifests-required", "manifest-md5.txt")
    assert PROFILE_ID in problem["message"]
    assert "profile-manifests-required" in (rejected / "report.txt").read_text()
    assert tree_digest(rejected / "deposit-1") == before  # set aside untouched
    assert not bag.exists()


def test_a_zipped_bag_in_a_hot_folder_is_judged_as_serialised(ctx: Context) -> None:
    write_rules(ctx.settings.home_dir, {}, Serialization="forbidden")
    archive = ctx.settings.ingest_dir / "museum" / "deposit-2.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(SAMPLE.rglob("*")):
            zf.write(path, f"deposit-2/{path.relative_to(SAMPLE)}")
    time.sleep(0.3)
    [sip_id] = ingest.scan_and_claim(ctx, submit=lambda _sip_id: None)
    with pytest.raises(InvalidSIPError) as info:
        ingest.run_stage(ctx, "validate", sip_id)
    [problem] = [p for p in info.value.problems if p["severity"] == "error"]
    assert (problem["rule"], problem["file"]) == ("profile-serialization", "deposit-2.zip")
    assert "application/zip" in problem["message"]
    rejected = ctx.settings.ingest_dir / "museum" / "rejected" / "deposit-2"
    assert (rejected / "deposit-2.zip").is_file()
    assert "profile-serialization" in (rejected / "report.txt").read_text()


def test_ingest_rejects_a_bag_breaking_the_profile_and_validate_says_so_first(
    home: Path,
) -> None:
    write_rules(
        home,
        {},
        **{"Bag-Info": {"Source-Organization": {"values": ["Film Archive"]}}},
        **{"Tag-Files-Allowed": [], "Payload-Files-Allowed": ["data/images/*"]},
    )
    code, report = cli("validate", str(SAMPLE), "--tenant", "museum")
    assert code == 1
    found = {(p["rule"], p["file"]) for p in report["problems"] if p["severity"] == "error"}
    assert ("profile-bag-info", "bag-info.txt") in found
    assert ("profile-payload-files-allowed", DOCX) in found
    assert ("profile-payload-files-allowed", "data/images/scans/page-001.tif") not in found
    assert report["format_check"] is None

    before = tree_digest(SAMPLE)
    code, result = cli("ingest", str(SAMPLE), "--tenant", "museum")
    assert code == 1
    assert result["state"] == "rejected"
    assert {(p["rule"], p["file"]) for p in result["problems"] if p["severity"] == "error"} == found
    text = (Path(result["rejected_to"]) / "report.txt").read_text()
    assert "profile-bag-info" in text and "'Film Archive'" in text
    assert tree_digest(SAMPLE) == before  # a bag on the command line is copied, not moved
    # Another tenant, without the profile, takes the same bag.
    assert cli("ingest", str(SAMPLE), "--tenant", "library")[1]["state"] == "committed"


def test_a_bag_meeting_the_profile_is_ingested_and_its_event_names_the_profile(
    ctx: Context,
) -> None:
    write_rules(
        ctx.settings.home_dir,
        {},
        **{"Manifests-Required": ["sha256"], "Bag-Info": {"Bagging-Date": {"required": True}}},
    )
    result = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    assert result.state == SIPState.COMMITTED.value, result.problems
    # The sample bag does not name the profile: told, not refused.
    assert [w["rule"] for w in result.warnings] == ["profile-identifier"]
    [ev] = validation_events(ctx, result.sip_id)
    assert ev.outcome == "warning" and f"BagIt profile {PROFILE_ID}" in ev.detail


# -- allowed formats -------------------------------------------------------------------------


def test_a_disallowed_format_rejects_the_bag_from_a_hot_folder(ctx: Context) -> None:
    write_rules(
        ctx.settings.home_dir, {"allowed_formats": {"puids": ALL_BUT_DOCX, "otherwise": "reject"}}
    )
    bag = ctx.settings.ingest_dir / "museum" / "deposit-3"
    shutil.copytree(SAMPLE, bag)
    before = tree_digest(bag)
    time.sleep(0.3)
    [sip_id] = ingest.scan_and_claim(ctx, submit=lambda _sip_id: None)
    result = ingest.run_sip(ctx, sip_id)
    assert result.state == SIPState.REJECTED.value
    [problem] = result.problems
    assert (problem["rule"], problem["file"], problem["puid"]) == (
        "allowed-formats",
        DOCX,
        "fmt/412",
    )
    rejected = ctx.settings.ingest_dir / "museum" / "rejected" / "deposit-3"
    assert result.rejected_to == str(rejected)
    report = json.loads((rejected / "report.json").read_text())
    assert report["stage"] == "identify" and report["problems"] == result.problems
    text = (rejected / "report.txt").read_text()
    assert f"{DOCX}: allowed-formats: fmt/412" in text
    assert tree_digest(rejected / "deposit-3") == before
    assert not (ctx.settings.staging_dir / sip_id).exists()
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        assert sip.aip_id is None  # never described
        [failure] = [e for e in service.list_events(s, sip_id=sip_id) if e.outcome == "failure"]
        assert failure.type == "validation" and "fmt/412" in failure.outcome_detail
        assert service.verify_event_chain(s, "museum") == []


def test_a_disallowed_format_with_warn_is_ingested_with_a_warning(home: Path) -> None:
    write_rules(home, {"allowed_formats": {"puids": ALL_BUT_DOCX, "otherwise": "warn"}})
    code, report = cli("validate", str(SAMPLE), "--tenant", "museum")
    assert code == 0 and report["format_check"].startswith("not done: formats are identified")
    code, result = cli("ingest", str(SAMPLE), "--tenant", "museum")
    assert code == 0, result
    assert result["state"] == "committed"
    [warning] = result["warnings"]
    assert (warning["rule"], warning["file"], warning["puid"], warning["severity"]) == (
        "allowed-formats",
        DOCX,
        "fmt/412",
        "warning",
    )
    shown = CliRunner().invoke(app, ["ingest", str(SAMPLE), "--tenant", "museum2"])
    assert shown.exit_code == 0  # museum2 has no rule: no warning
    assert "allowed-formats" not in shown.output
    settings = Settings(home=home)
    ctx = open_context(settings)
    try:
        [ev] = [e for e in validation_events(ctx, result["sip_id"]) if "formats" in e.detail]
        assert ev.outcome == "warning"
        assert DOCX in ev.detail and "fmt/412" in ev.detail
        assert json.loads(ev.outcome_detail) == [warning]
    finally:
        ctx.close()


# -- default retention ---------------------------------------------------------------------


def _retention_and_commit(ctx: Context, aip_id: str) -> tuple[datetime | None, datetime]:
    with session_scope(ctx.sessions) as s:
        aip = s.get_one(AIP, aip_id)
        [version] = s.query(AIPVersion).filter_by(aip_id=aip_id).all()
        assert version.committed_at is not None

        def utc(d: datetime | None) -> datetime | None:
            return d.replace(tzinfo=UTC) if d is not None and d.tzinfo is None else d

        committed = utc(version.committed_at)
        assert committed is not None
        return utc(aip.retention_until), committed


def test_default_retention_dates_the_aip_at_commit(ctx: Context) -> None:
    write_rules(ctx.settings.home_dir, {"default_retention": "P10Y6M"})
    result = ingest.run_ingest(ctx, SAMPLE, tenant="museum")
    assert result.state == SIPState.COMMITTED.value, result.problems
    until, committed = _retention_and_commit(ctx, result.aip_id or "")
    assert until is not None
    months = committed.month - 1 + 6
    expected_year, expected_month = committed.year + 10 + months // 12, months % 12 + 1
    assert (until.year, until.month) == (expected_year, expected_month)
    assert until.time() == committed.time()
    # Another tenant has no rule: kept permanently, no date.
    other = ingest.run_ingest(ctx, SAMPLE, tenant="library")
    assert _retention_and_commit(ctx, other.aip_id or "")[0] is None


def test_a_retention_date_set_before_commit_is_kept(ctx: Context) -> None:
    write_rules(ctx.settings.home_dir, {"default_retention": "P1Y"})
    sip_id = ingest.receive(ctx, SAMPLE, tenant="museum")
    for stage in (
        "validate", "scan", "identify", "characterise", "describe", "package", "store_all"
    ):
        ingest.run_stage(ctx, stage, sip_id)
    chosen = datetime(2099, 12, 31, tzinfo=UTC)
    with session_scope(ctx.sessions) as s:
        aip_id = service.get_sip(s, sip_id).aip_id or ""
        s.get_one(AIP, aip_id).retention_until = chosen
    ingest.run_stage(ctx, "commit", sip_id)
    assert _retention_and_commit(ctx, aip_id)[0] == chosen
