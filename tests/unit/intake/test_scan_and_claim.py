"""One pass over the hot folders through the pipeline: claims, and what a rejection says."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from preservation import ingest
from preservation.catalog import SIP, SIPState, session_scope
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.errors import InvalidSIPError

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
INVALID = ROOT / "examples" / "bags" / "invalid-bag"


@pytest.fixture
def ctx(settings: Settings):  # type: ignore[no-untyped-def]
    # Quiet for 0.2s, and an incomplete bag is given 0.5s more to become complete.
    ctx = open_context(settings.model_copy(update={"incomplete_bag_seconds": 0.5}))
    yield ctx
    ctx.close()


def _claim_and_validate(ctx: Context) -> str:
    [sip_id] = ingest.scan_and_claim(ctx, submit=lambda _sip_id: None)
    with pytest.raises(InvalidSIPError):
        ingest.run_stage(ctx, "validate", sip_id)
    return sip_id


def test_incomplete_bag_is_rejected_with_its_whole_report_after_the_wait(ctx: Context) -> None:
    folder = ctx.settings.ingest_dir / "museum"
    bag = folder / "broken"
    shutil.copytree(SAMPLE, bag)
    (bag / "data" / "audio" / "tone-440hz.wav").unlink()  # missing
    (bag / "data" / "notes" / "extra.txt").write_text("not in any manifest\n")  # extra
    with open(bag / "data" / "tables" / "measurements.csv", "a") as fh:  # changed
        fh.write("changed after bagging\n")
    time.sleep(0.3)  # quiet, but not for long enough: an upload may still be on its way
    assert ingest.scan_and_claim(ctx, submit=lambda _sip_id: None) == []
    assert bag.is_dir()

    time.sleep(0.6)
    sip_id = _claim_and_validate(ctx)
    with session_scope(ctx.sessions) as s:
        assert s.get(SIP, sip_id).state is SIPState.REJECTED  # type: ignore[union-attr]
    rejected = folder / "rejected" / "broken"
    assert (rejected / "broken" / "bagit.txt").is_file()  # the bag itself, untouched
    report = json.loads((rejected / "report.json").read_text())
    by_rule = {(p["rule"], p["file"]) for p in report["problems"]}
    assert ("file-missing", "data/audio/tone-440hz.wav") in by_rule
    assert ("payload-not-in-manifest", "data/notes/extra.txt") in by_rule
    assert ("manifest-digest-mismatch", "data/tables/measurements.csv") in by_rule
    assert ("payload-oxum-mismatch", "bag-info.txt") in by_rule
    text = (rejected / "report.txt").read_text()
    for name in ("tone-440hz.wav", "extra.txt", "measurements.csv", "payload-oxum-mismatch"):
        assert name in text


def test_rejection_report_names_the_path_the_bag_was_dropped_at(ctx: Context) -> None:
    folder = ctx.settings.ingest_dir / "museum"
    shutil.copytree(INVALID, folder / "bad")
    time.sleep(0.3)
    sip_id = _claim_and_validate(ctx)
    rejected = folder / "rejected" / "bad"
    report = json.loads((rejected / "report.json").read_text())
    assert report["source"] == str(folder / "bad")
    assert report["claimed_as"] == str(folder / ".claimed" / sip_id / "bad")
    lines = (rejected / "report.txt").read_text().splitlines()
    assert f"Source: {folder / 'bad'}" in lines
    assert ".claimed" not in (rejected / "report.txt").read_text()
    assert not (folder / ".claimed" / sip_id).exists()


def test_a_bag_given_on_the_command_line_keeps_its_own_path_as_source(ctx: Context) -> None:
    result = ingest.run_ingest(ctx, INVALID, tenant="museum")
    assert result.state == SIPState.REJECTED.value
    report = json.loads((Path(result.rejected_to or "") / "report.json").read_text())
    assert report["source"] == str(INVALID)
    assert "claimed_as" not in report


def test_bags_in_a_tenant_folder_with_a_bad_name_are_never_taken(ctx: Context) -> None:
    for tenant in ("Museum", "bad name"):
        shutil.copytree(SAMPLE, ctx.settings.ingest_dir / tenant / "bag")
    time.sleep(0.3)
    assert ingest.scan_and_claim(ctx, submit=lambda _sip_id: None) == []
    with session_scope(ctx.sessions) as s:
        assert s.query(SIP).count() == 0
    assert (ctx.settings.ingest_dir / "Museum" / "bag" / "bagit.txt").is_file()
    assert not (ctx.settings.ingest_dir / "Museum" / ".claimed").exists()


@pytest.mark.parametrize("target", ["another-tenants-bag", "an-archive.zip"])
def test_a_symbolic_link_dropped_in_a_hot_folder_is_rejected_not_followed(
    ctx: Context, tmp_path: Path, target: str
) -> None:
    """A link would let one tenant's drop ingest another tenant's folder, or any file."""
    elsewhere = tmp_path / "library-archive" / "private"
    shutil.copytree(SAMPLE, elsewhere)
    pointed = elsewhere
    if target.endswith(".zip"):
        pointed = Path(
            shutil.make_archive(str(tmp_path / "an-archive"), "zip", SAMPLE.parent, SAMPLE.name)
        )
    folder = ctx.settings.ingest_dir / "museum"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / (pointed.name if target.endswith(".zip") else "borrowed")
    link.symlink_to(pointed)
    time.sleep(0.3)
    sip_id = _claim_and_validate(ctx)
    with session_scope(ctx.sessions) as s:
        sip = s.get(SIP, sip_id)
        assert sip is not None and sip.state is SIPState.REJECTED and sip.aip_id is None
    [rejected] = (folder / "rejected").iterdir()
    report = json.loads((rejected / "report.json").read_text())
    [problem] = report["problems"]
    assert problem["rule"] == "symlink-submission" and str(pointed) in problem["message"]
    assert (rejected / link.name).is_symlink()  # the link itself set aside, untouched
    assert (elsewhere / "bagit.txt").is_file() and pointed.exists()  # its target never moved
