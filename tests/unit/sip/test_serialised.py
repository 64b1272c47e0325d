"""open_serialised_bag: escapes and bombs refused up front, limits enforced while writing."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from preservation.errors import InvalidSIPError, UnsafeArchiveError
from preservation.sip import open_serialised_bag, validate_bag
from preservation.sip.serialised import _extract, _Limits, _Member

from .conftest import write_bag

LIMITS = {"max_bytes": 1 << 30, "max_members": 1000, "max_ratio": 200.0}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, content in members:
            if content is not None:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
            else:
                tf.addfile(info)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".zip"])
def test_serialised_bag_unpacks_to_its_top_folder(tmp_path: Path, suffix: str) -> None:
    bag = write_bag(tmp_path / "src" / "my-bag", {"a.txt": b"alpha", "d/b.txt": b"beta"})
    archive = tmp_path / f"my-bag{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(bag.rglob("*")):
                zf.write(path, path.relative_to(bag.parent))
    else:
        with tarfile.open(archive, "w:gz" if suffix != ".tar" else "w") as tf:
            tf.add(bag, arcname="my-bag")
    before = _digest(archive)
    root = open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert root == tmp_path / "work" / "my-bag"
    assert validate_bag(root).valid
    assert _digest(archive) == before


def test_bag_at_the_archive_top_is_returned_as_workdir(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "src", {"a.txt": b"alpha"})
    archive = tmp_path / "flat.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(bag, arcname=".")
    root = open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert root == tmp_path / "work" and validate_bag(root).valid


def _assert_refused(archive: Path, workdir: Path, rule: str, **limits: float) -> None:
    before = _digest(archive)
    with pytest.raises(UnsafeArchiveError) as caught:
        open_serialised_bag(archive, workdir, **{**LIMITS, **limits})  # type: ignore[arg-type]
    assert caught.value.context["rule"] == rule
    assert caught.value.path == str(archive)
    assert not workdir.exists(), "a refused archive leaves nothing unpacked"
    assert _digest(archive) == before


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../escape.txt", "archive-member-traversal"),
        ("bag/../../escape.txt", "archive-member-traversal"),
        ("/tmp/absolute.txt", "archive-member-absolute"),
        ("C:/windows.txt", "archive-member-absolute"),
    ],
)
def test_tar_member_escaping_is_refused(tmp_path: Path, name: str, rule: str) -> None:
    archive = _tar(tmp_path / "evil.tar", [(_file("bag/ok.txt"), b"ok"), (_file(name), b"x")])
    _assert_refused(archive, tmp_path / "work", rule)
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused(tmp_path: Path, kind: bytes) -> None:
    link = _file("bag/link")
    link.type = kind
    link.linkname = "/etc/passwd"
    archive = _tar(tmp_path / "links.tar", [(link, None), (_file("bag/link"), b"overwrite")])
    _assert_refused(archive, tmp_path / "work", "archive-member-link")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_devices_and_fifos_are_refused(tmp_path: Path, kind: bytes) -> None:
    dev = _file("bag/dev")
    dev.type = kind
    archive = _tar(tmp_path / "dev.tar", [(dev, None)])
    _assert_refused(archive, tmp_path / "work", "archive-member-special")


def test_duplicate_member_is_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "dup.tar", [(_file("bag/a"), b"1"), (_file("bag/./a"), b"2")])
    _assert_refused(archive, tmp_path / "work", "archive-member-duplicate")


def test_compression_bomb_is_refused_by_ratio(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "bomb.tar.gz", [(_file("bag/zeros"), b"\0" * (8 << 20))], "w:gz")
    assert archive.stat().st_size * 200 < 8 << 20
    _assert_refused(archive, tmp_path / "work", "archive-ratio")


def test_total_size_limit(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "big.tar", [(_file("bag/a"), b"a" * 4096), (_file("bag/b"), b"b")])
    _assert_refused(archive, tmp_path / "work", "archive-too-large", max_bytes=4096)


def test_member_count_limit(tmp_path: Path) -> None:
    members = [(_file(f"bag/f{i}"), b"") for i in range(50)]
    archive = _tar(tmp_path / "many.tar", members)
    _assert_refused(archive, tmp_path / "work", "archive-too-many-members", max_members=20)


def test_zip_bomb_and_escape_and_symlink(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bag/zeros", b"\0" * (8 << 20))
    _assert_refused(bomb, tmp_path / "w1", "archive-ratio")

    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as zf:
        zf.writestr("../escape.txt", b"x")
    _assert_refused(escape, tmp_path / "w2", "archive-member-traversal")

    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("bag/link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    _assert_refused(link, tmp_path / "w3", "archive-member-link")


def test_bytes_are_counted_while_writing(tmp_path: Path) -> None:
    """A member that yields more than its header declared is stopped mid-stream."""
    limits = _Limits(tmp_path / "x.tar", 1000, 1 << 30, 10, 1e9)
    member = _Member(("liar",), 10, False, None)
    with pytest.raises(UnsafeArchiveError) as caught:
        _extract(member, io.BytesIO(b"y" * (3 << 20)), tmp_path, limits, "liar")
    assert caught.value.context["rule"] == "archive-member-size"

    limits = _Limits(tmp_path / "x.tar", 1000, 2 << 20, 10, 1e9)
    member = _Member(("big",), 1 << 40, False, None)
    with pytest.raises(UnsafeArchiveError) as caught:
        _extract(member, io.BytesIO(b"y" * (3 << 20)), tmp_path, limits, "big")
    assert caught.value.context["rule"] == "archive-too-large"


def test_nonempty_workdir_and_unknown_format(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar", [(_file("bag/a"), b"1")])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "other").write_text("someone else's")
    with pytest.raises(ValueError):
        open_serialised_bag(archive, busy, **LIMITS)
    assert (busy / "other").exists()
    rar = tmp_path / "bag.rar"
    rar.write_bytes(b"Rar!")
    with pytest.raises(UnsafeArchiveError):
        open_serialised_bag(rar, tmp_path / "w", **LIMITS)


def test_corrupt_archive_is_invalid(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(InvalidSIPError) as caught:
        open_serialised_bag(archive, tmp_path / "w", **LIMITS)
    assert caught.value.context["rule"] == "archive-corrupt"
