"""serialise_aip / unpack_aip: one deterministic pax tar that plain GNU tar opens."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import bagit
import pytest

from preservation.aip import serialise_aip, unpack_aip
from preservation.errors import FixityMismatchError, MetadataError, UnsafeArchiveError

from .conftest import AIP_ID, FIXED_MTIME, BuildAIP

ARCNAME = f"{AIP_ID}.v1"


@pytest.fixture
def aip_tar(build_aip: BuildAIP, tmp_path: Path) -> tuple[Path, str]:
    built = build_aip()
    summary = serialise_aip(built.layout.root, tmp_path / "out" / "v1.tar", arcname=ARCNAME)
    return summary.path, summary.sha256


def test_gnu_tar_extracts_a_bag_stock_bagit_validates(
    aip_tar: tuple[Path, str], tmp_path: Path
) -> None:
    tar_path, _ = aip_tar
    dest = tmp_path / "gnu"
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(tar_path), "-C", str(dest)], check=True)
    assert [p.name for p in dest.iterdir()] == [ARCNAME]
    bag = bagit.Bag(str(dest / ARCNAME))
    bag.validate()
    assert sorted(bag.algorithms) == ["sha256", "sha512"]
    manifests = sorted(p.name for p in (dest / ARCNAME).glob("*manifest-*.txt"))
    assert manifests == [
        "manifest-sha256.txt",
        "manifest-sha512.txt",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha512.txt",
    ]
    cafe = dest / ARCNAME / "data/representations/rep1/data/notes/café.txt"
    assert cafe.read_text(encoding="utf-8").startswith("Notes taken at the café")


def test_recorded_sha256_and_size_are_those_of_the_file(
    build_aip: BuildAIP, tmp_path: Path
) -> None:
    built = build_aip()
    summary = serialise_aip(built.layout.root, tmp_path / "v1.tar", arcname=ARCNAME)
    data = summary.path.read_bytes()
    assert summary.sha256 == hashlib.sha256(data).hexdigest()
    assert summary.size == len(data) == summary.path.stat().st_size
    assert summary.size % tarfile.RECORDSIZE == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_sha256_is_computed_while_writing_not_by_reading_back(
    build_aip: BuildAIP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = build_aip()
    tar_path = tmp_path / "v1.tar"
    real_open = open
    opened_for_reading: list[str] = []

    def spy_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if "r" in mode and os.fspath(file).endswith(("v1.tar", ".partial")):
            opened_for_reading.append(os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr("io.open", spy_open)  # pathlib's read_bytes goes through io.open
    serialise_aip(built.layout.root, tar_path, arcname=ARCNAME)
    monkeypatch.undo()
    assert opened_for_reading == []


def test_tar_is_pax_with_utf8_names_and_neutral_owners(aip_tar: tuple[Path, str]) -> None:
    tar_path, _ = aip_tar
    raw = tar_path.read_bytes()
    with tarfile.open(tar_path, "r:") as tar:
        members = tar.getmembers()
    assert members[0].name == ARCNAME and members[0].isdir()
    # tag files lead, so a stream reader knows the digests before the payload
    assert [m.name.split("/", 1)[1] for m in members[1:7]] == [
        "bag-info.txt",
        "bagit.txt",
        "manifest-sha256.txt",
        "manifest-sha512.txt",
        "tagmanifest-sha256.txt",
        "tagmanifest-sha512.txt",
    ]
    cafe = next(m for m in members if m.name.endswith("notes/café.txt"))
    assert cafe.pax_headers["path"] == f"{ARCNAME}/data/representations/rep1/data/notes/café.txt"
    # the extended header ('x') precedes the member, and its record is UTF-8
    assert raw[cafe.offset + 156 : cafe.offset + 157] == tarfile.XHDTYPE
    assert b"path=" + cafe.name.encode("utf-8") in raw
    assert raw[257:265] == b"ustar\x0000"  # POSIX ustar/pax magic, not GNU's "ustar  \0"
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.isdir() or m.isreg()
        assert m.mode == (0o755 if m.isdir() else 0o644)
        assert isinstance(m.mtime, int)
    names = [m.name for m in members]
    assert len(names) == len(set(names))


def test_gnu_tar_lists_unicode_names(aip_tar: tuple[Path, str]) -> None:
    tar_path, _ = aip_tar
    listing = subprocess.run(
        ["tar", "--list", "-f", str(tar_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    ).stdout.decode("utf-8")
    assert f"{ARCNAME}/data/representations/rep1/data/notes/café.txt" in listing.splitlines()
    assert f"{ARCNAME}/data/representations/rep1/data/documents/letter to donor.docx" in listing
    verbose = subprocess.run(
        ["tar", "--list", "--verbose", "--format=posix", "-f", str(tar_path)],
        check=True,
        capture_output=True,
    )
    assert verbose.returncode == 0


def test_two_builds_give_byte_identical_tars(build_aip: BuildAIP, tmp_path: Path) -> None:
    first = serialise_aip(
        build_aip().layout.root, tmp_path / "a.tar", arcname=ARCNAME, mtime=FIXED_MTIME
    )
    second = serialise_aip(
        build_aip().layout.root, tmp_path / "b.tar", arcname=ARCNAME, mtime=FIXED_MTIME
    )
    assert first.sha256 == second.sha256
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_same_folder_twice_with_file_mtimes_is_identical(
    build_aip: BuildAIP, tmp_path: Path
) -> None:
    root = build_aip().layout.root
    first = serialise_aip(root, tmp_path / "a.tar", arcname=ARCNAME)
    second = serialise_aip(root, tmp_path / "b.tar", arcname=ARCNAME)
    assert first.sha256 == second.sha256
    with tarfile.open(first.path) as tar:
        png = next(m for m in tar if m.name.endswith("circle.png"))
    original = root / "data/representations/rep1/data/images/drawings/circle.png"
    assert png.mtime == int(original.stat().st_mtime)


def test_serialise_refuses_symlinks_and_leaves_nothing(build_aip: BuildAIP, tmp_path: Path) -> None:
    root = build_aip().layout.root
    os.symlink("/etc/passwd", root / "data" / "representations" / "rep1" / "data" / "leak")
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        serialise_aip(root, out / "v1.tar", arcname=ARCNAME)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_staged_file_changed_since_staging_stops_the_package(
    build_aip: BuildAIP, tmp_path: Path
) -> None:
    root = build_aip().layout.root
    rel = "data/representations/rep1/data/images/drawings/circle.png"
    good = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    out = tmp_path / "out"
    # The recorded digest matches: packaged.
    serialise_aip(root, out / "ok.tar", arcname=ARCNAME, expected_sha256={rel: good})
    # One byte flipped in staging after its digest was recorded: refused, nothing left.
    data = bytearray((root / rel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / rel).write_bytes(bytes(data))
    with pytest.raises(FixityMismatchError, match="circle.png") as info:
        serialise_aip(root, out / "bad.tar", arcname=ARCNAME, expected_sha256={rel: good})
    assert info.value.context["rule"] == "staged-file-changed"
    assert sorted(p.name for p in out.iterdir()) == ["ok.tar"]


def test_serialise_refuses_a_folder_that_is_not_a_bag(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(MetadataError, match="bagit.txt"):
        serialise_aip(tmp_path, tmp_path / "x.tar", arcname="x")


def test_unpack_round_trip(aip_tar: tuple[Path, str], tmp_path: Path) -> None:
    tar_path, _ = aip_tar
    bag_dir = unpack_aip(tar_path, tmp_path / "restore")
    assert bag_dir == tmp_path / "restore" / ARCNAME
    bagit.Bag(str(bag_dir)).validate()
    with pytest.raises(UnsafeArchiveError, match="already exists"):
        unpack_aip(tar_path, tmp_path / "restore")


def _hostile_tar(path: Path, *members: tuple[str, bytes | None, bytes]) -> Path:
    """Members as (name, type, content); type None means a regular file."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            if kind is None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.type = kind
                info.linkname = content.decode()
                tar.addfile(info)
    return path


@pytest.mark.parametrize(
    "members",
    [
        [("top/ok.txt", None, b"ok"), ("top/link", tarfile.SYMTYPE, b"/etc/passwd")],
        [("top/ok.txt", None, b"ok"), ("top/hard", tarfile.LNKTYPE, b"top/ok.txt")],
        [("top/ok.txt", None, b"ok"), ("/abs/evil.txt", None, b"x")],
        [("top/ok.txt", None, b"ok"), ("top/../../evil.txt", None, b"x")],
        [("top/ok.txt", None, b"ok"), ("top/ok.txt", None, b"replaced")],
        [("top/ok.txt", None, b"ok"), ("other/x.txt", None, b"x")],
        [("top/fifo", tarfile.FIFOTYPE, b"")],
    ],
    ids=["symlink", "hardlink", "absolute", "dotdot", "duplicate", "two-tops", "fifo"],
)
def test_unpack_refuses_hostile_members_before_writing(
    tmp_path: Path, members: list[tuple[str, bytes | None, bytes]]
) -> None:
    tar_path = _hostile_tar(tmp_path / "evil.tar", *members)
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(UnsafeArchiveError):
        unpack_aip(tar_path, dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists()


def test_unpack_refuses_compressed_or_garbage(tmp_path: Path) -> None:
    garbage = tmp_path / "x.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(UnsafeArchiveError, match="not an uncompressed tar"):
        unpack_aip(garbage, tmp_path / "dest")
