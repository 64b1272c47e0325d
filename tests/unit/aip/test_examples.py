"""The sample bags in examples/: what they claim to be, and reproducible from the script."""

from __future__ import annotations

import filecmp
import hashlib
import importlib.util
import re
import zipfile
from pathlib import Path
from types import ModuleType

import bagit
import pytest

from .conftest import ROOT, SAMPLE

INVALID = ROOT / "examples" / "bags" / "invalid-bag"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_examples", ROOT / "examples" / "make_examples.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_collection_is_a_small_valid_bagit_1_0_bag() -> None:
    bag = bagit.Bag(str(SAMPLE))
    bag.validate()
    assert bag.version_info == (1, 0)
    assert sorted(bag.algorithms) == ["sha256", "sha512"]
    for tag in (
        "Source-Organization",
        "Contact-Name",
        "External-Identifier",
        "External-Description",
        "Bagging-Date",
        "Title",
    ):
        assert bag.info.get(tag), tag
    size = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file())
    assert size < 1_000_000
    suffixes = {p.suffix for p in (SAMPLE / "data").rglob("*") if p.is_file()}
    assert suffixes >= {".png", ".tif", ".jpg", ".pdf", ".wav", ".csv", ".xml", ".docx", ".txt"}
    assert (SAMPLE / "data" / "notes" / "café.txt").is_file()


def test_invalid_bag_has_exactly_the_documented_problems() -> None:
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(INVALID)).validate()
    bag = bagit.Bag(str(INVALID))
    bag.validate(fast=True)  # Payload-Oxum is consistent on purpose
    listed = bag.entries
    on_disk = {
        p.relative_to(INVALID).as_posix() for p in (INVALID / "data").rglob("*") if p.is_file()
    }
    assert on_disk - set(listed) == {"data/documents/unlisted.txt"}
    changed = [
        path
        for path in sorted(set(listed) & on_disk)
        if path.startswith("data/")
        and hashlib.sha256((INVALID / path).read_bytes()).hexdigest() != listed[path]["sha256"]
    ]
    assert changed == ["data/documents/minutes.txt"]
    readme = (ROOT / "examples" / "README.txt").read_text(encoding="utf-8")
    assert "minutes.txt" in readme and "unlisted.txt" in readme


def test_pdf_xref_offsets_point_at_their_objects() -> None:
    pdf = (SAMPLE / "data" / "documents" / "condition-report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-1.4\n") and pdf.endswith(b"%%EOF\n")
    startxref = int(re.search(rb"startxref\n(\d+)\n", pdf).group(1))  # type: ignore[union-attr]
    assert pdf[startxref:].startswith(b"xref\n")
    entries = re.findall(rb"(\d{10}) 00000 n ", pdf[startxref:])
    assert len(entries) == 6
    for number, offset in enumerate(entries, start=1):
        assert pdf[int(offset) :].startswith(b"%d 0 obj" % number)
    assert b"(Sample collection: condition report" in pdf


def test_docx_is_an_ooxml_word_package() -> None:
    with zipfile.ZipFile(SAMPLE / "data" / "documents" / "letter to donor.docx") as zf:
        names = zf.namelist()
        assert names[0] == "[Content_Types].xml"
        assert set(names) == {
            "[Content_Types].xml",
            "_rels/.rels",
            "word/document.xml",
            "word/_rels/document.xml.rels",
        }
        assert b"wordprocessingml.document.main+xml" in zf.read("[Content_Types].xml")
        assert zf.testzip() is None


def test_generator_reproduces_the_checked_in_bags(tmp_path: Path) -> None:
    generator = load_generator()
    generator.write_examples(tmp_path / "one")
    generator.write_examples(tmp_path / "two")
    assert _same_tree(tmp_path / "one", tmp_path / "two")
    # Image bytes (and so sizes, Oxum, manifests) depend on the Pillow/zlib build;
    # the hand-made files must match exactly.
    committed = ROOT / "examples" / "bags"
    for name in ("sample-collection", "invalid-bag"):
        for path in (committed / name).rglob("*"):
            if (
                path.is_file()
                and path.suffix not in {".png", ".jpg", ".tif"}
                and ("manifest" not in path.name)
            ):
                regenerated = tmp_path / "one" / name / path.relative_to(committed / name)
                assert regenerated.read_bytes() == path.read_bytes(), path


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    stack = [cmp]
    while stack:
        c = stack.pop()
        if c.left_only or c.right_only or c.diff_files or c.funny_files:
            return False
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        if mismatch or errors:
            return False
        stack.extend(c.subdirs.values())
    return True
