"""Reading METS back: what the writer was given, exactly, and nothing a file smuggles in."""

from __future__ import annotations

from pathlib import Path

import pytest

from preservation.errors import MetadataError
from preservation.metadata import (
    FileRef,
    RepresentationRef,
    read_mets,
    write_representation_mets,
    write_root_mets,
)

from .conftest import Sample, make_sample

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def test_representation_round_trip_is_exact(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, iter(sample.files), iter(sample.events))
    parsed = read_mets(dest)
    assert parsed.kind == "representation"
    assert parsed.package == sample.package
    assert parsed.files == sample.files
    assert parsed.events == sample.events
    assert parsed.file_group == "original"
    assert ("creator", "Ministry of Maps & Charts") in parsed.dublin_core


def test_round_trip_keeps_the_awkward_values(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    names = {f.original_name for f in read_mets(dest).files}
    assert "special/line\nbreak\r\nname.txt" in names
    assert "special/tab\there.txt" in names
    assert "special/a & b <c> \"d\" 'e'.txt" in names
    unidentified = read_mets(dest).files[3]
    assert not unidentified.format.identified
    assert unidentified.format.tool == "fido 1.6.1 (DROID_SignatureFile_V119)"


def test_round_trip_of_a_migration_representation(tmp_path: Path):
    sample = make_sample(n_files=4, representation="rep2", version=2)
    dest = tmp_path / "METS.xml"
    write_representation_mets(
        dest, sample.package, sample.files, sample.events, file_group="preservation"
    )
    parsed = read_mets(dest)
    assert parsed.files == sample.files
    assert parsed.file_group == "preservation"
    assert parsed.package.representation == "rep2"
    assert parsed.package.version == 2


def test_root_round_trip_is_exact(tmp_path: Path):
    sample = make_sample(n_files=2, representation="rep2", version=3)
    schemas = [FileRef.from_file(f"schemas/{p.name}", p) for p in sorted(SCHEMAS.glob("*.xsd"))]
    reps = [RepresentationRef("rep1", 1, "a" * 64, 10), RepresentationRef("rep2", 3, "b" * 64, 20)]
    previous = [(1, "METS.xml"), (2, "metadata/preservation/ü & %.csv")]
    dest = tmp_path / "METS.xml"
    write_root_mets(dest, sample.package, reps, schemas=schemas, previous_versions=previous)
    parsed = read_mets(dest)
    assert parsed.kind == "root"
    assert parsed.package == sample.package
    assert parsed.representations == reps
    assert parsed.schemas == schemas
    assert parsed.previous_versions == previous
    assert parsed.files == []


def test_a_large_document_reads_back(tmp_path: Path):
    sample = make_sample(n_files=3000)
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    parsed = read_mets(dest)
    assert parsed.files == sample.files
    assert parsed.events == sample.events


def test_entities_are_not_expanded(tmp_path: Path, sample: Sample):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files[:9], sample.events[:1])
    text = dest.read_text("utf-8").replace("<?xml version='1.0' encoding='UTF-8'?>", "", 1)
    doctype = f'<!DOCTYPE mets:mets [<!ENTITY xxe SYSTEM "file://{secret}"><!ENTITY big "BIG">]>'
    text = text.replace(">kept verbatim<", ">&xxe;&big;<")
    evil = tmp_path / "evil.xml"
    evil.write_text(doctype + text, "utf-8")
    parsed = read_mets(evil)
    assert parsed.package.bag_info["X-Custom-Field"] == [""]
    assert len(parsed.files) == 9


def test_not_well_formed_is_a_metadata_error(tmp_path: Path):
    bad = tmp_path / "METS.xml"
    bad.write_text("<mets:mets xmlns:mets='http://www.loc.gov/METS/'><unclosed>")
    with pytest.raises(MetadataError, match="not well-formed") as info:
        read_mets(bad)
    assert info.value.path == str(bad)


def test_foreign_mets_is_refused(tmp_path: Path):
    foreign = tmp_path / "METS.xml"
    foreign.write_text(
        "<mets:mets xmlns:mets='http://www.loc.gov/METS/'><mets:metsHdr/>"
        "<mets:structMap><mets:div/></mets:structMap></mets:mets>"
    )
    with pytest.raises(MetadataError, match="not a METS document written by this pipeline"):
        read_mets(foreign)


def test_disagreement_between_filesec_and_premis_is_reported(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    digest = sample.files[12].digests["sha256"]
    text = dest.read_text("utf-8").replace(f'CHECKSUM="{digest}"', f'CHECKSUM="{"0" * 64}"')
    dest.write_text(text, "utf-8")
    with pytest.raises(MetadataError, match="file-000013: fileSec and PREMIS object disagree"):
        read_mets(dest)


def test_dangling_admid_is_reported(tmp_path: Path, sample: Sample):
    dest = tmp_path / "METS.xml"
    write_representation_mets(dest, sample.package, sample.files, sample.events)
    text = dest.read_text("utf-8").replace("tech-file-000002 ev-1", "tech-file-000002 ev-999", 1)
    dest.write_text(text, "utf-8")
    with pytest.raises(MetadataError, match="file-000002 points to unknown section ev-999"):
        read_mets(dest)
