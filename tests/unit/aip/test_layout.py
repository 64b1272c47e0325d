"""AIPLayout and the package walker: one definition of where things go and what may be there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import preservation.aip as aip
from preservation.aip import AIPLayout, copy_schemas, copy_submission, walk_package
from preservation.errors import ConfigurationError, UnsafeArchiveError

from .conftest import SAMPLE


def test_paths_follow_csip(tmp_path: Path) -> None:
    layout = AIPLayout(tmp_path / "a")
    data = tmp_path / "a" / "data"
    assert layout.root_mets == data / "METS.xml"
    assert layout.descriptive == data / "metadata" / "descriptive"
    assert layout.preservation == data / "metadata" / "preservation"
    assert layout.representation_mets == data / "representations" / "rep1" / "METS.xml"
    assert layout.representation_data == data / "representations" / "rep1" / "data"
    assert layout.submission == data / "submission"
    assert layout.schemas == data / "schemas"
    rep2 = AIPLayout(tmp_path / "a", representation="rep2")
    assert rep2.original("x/y.tif") == data / "representations" / "rep2" / "data" / "x" / "y.tif"
    assert rep2.original_bag_path("x/y.tif") == "data/representations/rep2/data/x/y.tif"
    assert layout.bag_path(layout.original("café.txt")) == (
        "data/representations/rep1/data/café.txt"
    )


def test_create_makes_every_folder_and_is_idempotent(tmp_path: Path) -> None:
    layout = AIPLayout(tmp_path / "a").create().create()
    for folder in (
        layout.descriptive,
        layout.preservation,
        layout.representation_data,
        layout.submission,
        layout.schemas,
    ):
        assert folder.is_dir()


@pytest.mark.parametrize(
    "relpath", ["../evil", "a/../../evil", "/etc/passwd", "", "a//b", "./a", "a\\..\\b", "~/x"]
)
def test_original_refuses_paths_that_could_escape(tmp_path: Path, relpath: str) -> None:
    layout = AIPLayout(tmp_path)
    with pytest.raises(UnsafeArchiveError):
        layout.original(relpath)
    with pytest.raises(UnsafeArchiveError):
        layout.original_bag_path(relpath)


@pytest.mark.parametrize("name", ["", "a/b", "..", " rep1"])
def test_representation_must_be_one_folder_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        AIPLayout(tmp_path, representation=name)


def test_walk_is_sorted_depth_first_and_refuses_links(tmp_path: Path) -> None:
    for rel in ("b/z.txt", "b/a.txt", "a.txt", "B.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    assert [e.relpath for e in walk_package(tmp_path)] == [
        "B.txt",
        "a.txt",
        "b",
        "b/a.txt",
        "b/z.txt",
    ]
    assert [e.relpath for e in walk_package(tmp_path, skip={"b"})] == ["B.txt", "a.txt"]
    os.symlink("a.txt", tmp_path / "b" / "link")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        list(walk_package(tmp_path))
    os.unlink(tmp_path / "b" / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafeArchiveError, match="special file"):
        list(walk_package(tmp_path))


def test_copy_submission_keeps_tag_files_as_received(tmp_path: Path) -> None:
    layout = AIPLayout(tmp_path / "aip").create()
    copied = copy_submission(SAMPLE, layout)
    assert copied == [
        "data/submission/bag-info.txt",
        "data/submission/bagit.txt",
        "data/submission/manifest-sha256.txt",
        "data/submission/manifest-sha512.txt",
        "data/submission/tagmanifest-sha256.txt",
        "data/submission/tagmanifest-sha512.txt",
    ]
    for rel in copied:
        name = rel.rsplit("/", 1)[1]
        assert (layout.root / rel).read_bytes() == (SAMPLE / name).read_bytes()
    assert not (layout.submission / "data").exists()


def test_copy_schemas_takes_xsds_only_and_needs_at_least_one(tmp_path: Path) -> None:
    layout = AIPLayout(tmp_path / "aip").create()
    schemas = tmp_path / "schemas"
    (schemas / "sub").mkdir(parents=True)
    (schemas / "rules.schema.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="xsd"):
        copy_schemas(schemas, layout)
    (schemas / "sub" / "xlink.xsd").write_text("<schema/>")
    assert copy_schemas(schemas, layout) == ["data/schemas/sub/xlink.xsd"]


def test_public_names_are_exported() -> None:
    assert aip.__all__ == sorted(aip.__all__, key=lambda n: (not n.isupper(), n))
    for name in aip.__all__:
        assert getattr(aip, name) is not None
