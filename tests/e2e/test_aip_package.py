"""The AIP tar the real pipeline makes, read back with nothing but stock tools.

docs/aip-format.md promises that a reader with GNU tar and any BagIt validator
can open an AIP; this test holds the pipeline to that for the sample bag: the
tar from the package stage, unpacked with ``tar -xf``, is a valid bag for
stock bagit-python and for our own validator, and its METS, PREMIS and Dublin
Core documents are valid against the schemas, offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bagit
import pytest

from preservation.aip import AIPLayout
from preservation.catalog import service, session_scope
from preservation.config import Settings
from preservation.context import Context, open_context
from preservation.ingest import receive, run_stage
from preservation.metadata import (
    read_mets,
    validate_dublin_core,
    validate_mets,
    validate_premis,
)
from preservation.sip import validate_bag

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"
SCHEMAS = ROOT / "schemas"
DC_SCHEMAS = ROOT / "schemas"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
UP_TO_THE_TAR = ("validate", "scan", "identify", "characterise", "describe", "package")


def gnu_tar() -> str:
    tar = shutil.which("tar")
    if tar is None:
        if IN_CI:
            pytest.fail("GNU tar is not installed (CI=true: this test must run, not skip)")
        pytest.skip("GNU tar is not installed")
    version = subprocess.run([tar, "--version"], capture_output=True, text=True).stdout
    if "GNU tar" not in version:
        message = f"{tar} is not GNU tar: {version.splitlines()[:1]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return tar


def package_sample(ctx: Context) -> tuple[str, Path]:
    """Receive the sample bag and run the real stages up to the tar; (AIP id, tar)."""
    sip_id = receive(ctx, SAMPLE, tenant="museum")
    for stage in UP_TO_THE_TAR:
        run_stage(ctx, stage, sip_id)
    with session_scope(ctx.sessions) as s:
        sip = service.get_sip(s, sip_id)
        assert sip.aip_id, sip.last_error
        version = service.create_aip_version(s, service.get_aip(s, sip.aip_id), 1)
        return sip.aip_id, Path(version.staging_path or "")


def unpack(tar_path: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run([gnu_tar(), "-xf", str(tar_path), "-C", str(dest)], check=True)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    c = open_context(settings)
    yield c
    c.close()


def test_the_pipelines_tar_validates_with_stock_tools_and_ours(
    ctx: Context, tmp_path: Path
) -> None:
    aip_id, tar_path = package_sample(ctx)
    assert tar_path.is_file()
    unpack(tar_path, tmp_path / "out")
    bag_dir = tmp_path / "out" / f"{aip_id}.v1"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [bag_dir.name]

    stock = bagit.Bag(str(bag_dir))
    stock.validate()  # raises BagValidationError with every problem
    assert stock.version_info == (1, 0)
    assert set(stock.algorithms) == {"sha256", "sha512"}
    ours = validate_bag(bag_dir)
    assert ours.valid, [p.to_dict() for p in ours.problems]

    layout = AIPLayout(bag_dir)
    for mets in (layout.root_mets, layout.representation_mets):
        assert validate_mets(mets, SCHEMAS) == [], mets
    assert validate_premis(layout.premis_record, SCHEMAS) == []
    assert validate_dublin_core(layout.dc_record, DC_SCHEMAS) == []

    # The package's metadata files are covered by the bag and named by the root METS.
    manifest = set(stock.entries)
    assert {
        "data/METS.xml",
        "data/metadata/descriptive/dc.xml",
        "data/metadata/preservation/premis.xml",
        "data/representations/rep1/METS.xml",
    } <= manifest
    root = read_mets(layout.root_mets)
    assert str(root.package.aip_id) == aip_id
    assert [r.path for r in root.descriptive] == ["metadata/descriptive/dc.xml"]
    # The package PREMIS first, then each characterisation tool's output for the batch.
    assert [r.path for r in root.preservation] == [
        "metadata/preservation/premis.xml",
        "metadata/preservation/characterisation/exiftool-001.json",
        "metadata/preservation/characterisation/mediainfo-001.json",
    ]
    for ref in root.preservation[1:]:
        assert f"data/{ref.path}" in manifest
    rep = read_mets(layout.representation_mets)
    assert len(rep.files) == 9
    by_name = {f.original_name: f for f in rep.files}
    assert by_name["data/documents/letter to donor.docx"].format.puids[0] == "fmt/412"


def test_a_timed_out_identification_says_so_in_the_package(
    settings: Settings, tmp_path: Path
) -> None:
    # A per-file limit no file can meet: every file is "identification failed".
    ctx = open_context(settings.model_copy(update={"identify_timeout": 0.00001}))
    try:
        aip_id, tar_path = package_sample(ctx)
    finally:
        ctx.close()
    unpack(tar_path, tmp_path / "out")
    layout = AIPLayout(tmp_path / "out" / f"{aip_id}.v1")
    assert validate_mets(layout.representation_mets, SCHEMAS) == []
    parsed = read_mets(layout.representation_mets)
    failed = [f for f in parsed.files if f.format.error]
    assert failed, "a 10-microsecond limit should stop fido on at least one file"
    failures = {e.id: e for e in parsed.events if e.outcome == "failure"}
    for file in failed:
        assert "timeout" in (file.format.error or "")
        [event] = [failures[i] for i in file.event_ids if i in failures]
        assert event.type == "format identification"
        assert event.outcome_detail == file.format.error
        assert [o.object_id for o in event.objects] == [file.id]
