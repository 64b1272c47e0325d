"""open_serialised_bag: escapes and bombs refused up front, limits enforced while writing."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from preservation.errors import InvalidSIPError, UnsafeArchiveError
from preservation.sip import open_serialised_bag, serialised, validate_bag
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


# ---------------------------------------------------------------- file-versus-folder clashes


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members:
            zf.writestr(name, content)
    return path


@pytest.mark.parametrize(
    "names",
    [
        ["bag/data/x", "bag/data/x/y"],  # the file first, then a member inside it
        ["bag/data/x/y", "bag/data/x"],  # a member inside, then the file itself
        ["bag/data/x/y/z", "bag/data/x"],  # the clash two levels down
    ],
)
@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_file_that_is_also_a_folder_is_refused(tmp_path: Path, names: list[str], kind: str) -> None:
    archive = tmp_path / f"clash.{kind}"
    if kind == "zip":
        _zip(archive, [(n, b"content") for n in names])
    else:
        _tar(archive, [(_file(n), b"content") for n in names], "w:gz" if kind == "tar.gz" else "w")
    before = _digest(archive)
    with pytest.raises(UnsafeArchiveError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    error = caught.value
    assert error.context["rule"] == "archive-member-clash"
    assert error.context["member"] == names[1]
    assert names[0] in error.message and names[1] in error.message
    assert "bag/data/x" in error.message
    assert not (tmp_path / "work").exists()
    assert _digest(archive) == before


def test_directory_member_over_a_file_member_is_refused(tmp_path: Path) -> None:
    file = _file("bag/data/x")
    folder = _file("bag/data/x/")
    folder.type = tarfile.DIRTYPE
    archive = _tar(tmp_path / "clash.tar", [(file, b"content"), (folder, None)])
    _assert_refused(archive, tmp_path / "work", "archive-member-clash")


def test_files_in_one_folder_and_repeated_folder_prefixes_are_accepted(tmp_path: Path) -> None:
    """The clash check must not refuse the ordinary case of siblings sharing parents."""
    folder = _file("bag/data/d")
    folder.type = tarfile.DIRTYPE
    names = ["bag/data/d/a", "bag/data/d/b", "bag/data/d/e/c", "bag/data/da"]
    archive = _tar(tmp_path / "ok.tar", [(folder, None), *[(_file(n), n.encode()) for n in names]])
    root = open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert (root / "data" / "d" / "e" / "c").read_bytes() == b"bag/data/d/e/c"


def test_os_error_while_unpacking_becomes_a_refusal(tmp_path: Path) -> None:
    """A name this filesystem cannot hold is a rejection with a rule, not a traceback."""
    name = "bag/data/" + "n" * 300  # longer than NAME_MAX (255) on Linux filesystems
    archive = _tar(tmp_path / "long.tar", [(_file("bag/bagit.txt"), b"x"), (_file(name), b"x")])
    with pytest.raises(UnsafeArchiveError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert caught.value.context == {"rule": "archive-member-unwritable", "member": name}
    assert isinstance(caught.value.__cause__, OSError)
    assert not (tmp_path / "work").exists()


def test_extract_translates_os_errors_and_chains_them(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"a file where a folder is needed")
    limits = _Limits(tmp_path / "a.tar", 1000, 1 << 30, 10, 1e9)
    with pytest.raises(UnsafeArchiveError) as caught:
        _extract(_Member(("x", "y"), 1, False, None), io.BytesIO(b"y"), tmp_path, limits, "x/y")
    assert caught.value.context["rule"] == "archive-member-unwritable"
    assert caught.value.context["member"] == "x/y"
    assert isinstance(caught.value.__cause__, OSError)


def test_zip_with_unknown_compression_method_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "odd.zip", [("bag/a", b"content")])
    raw = bytearray(archive.read_bytes())
    # Compression method 99 (AES) in the local header (offset 8) and the central
    # directory entry (offset 10 after its signature).
    raw[8:10] = (99).to_bytes(2, "little")
    central = raw.index(b"PK\x01\x02")
    raw[central + 10 : central + 12] = (99).to_bytes(2, "little")
    archive.write_bytes(bytes(raw))
    _assert_refused(archive, tmp_path / "work", "archive-member-compression")


# ---------------------------------------------------------------- running totals, free space


def test_header_pass_stops_at_the_first_member_over_the_limit(tmp_path: Path) -> None:
    """The running declared total is checked per member, before later headers are read.

    The archive is cut short after the second member: a reader that summed all
    headers first would hit the damage (``archive-corrupt``) instead of refusing
    at ``bag/b``, the member that passes the limit.
    """
    members = [(_file(f"bag/{n}"), n.encode() * 3000) for n in "abc"]
    whole = _tar(tmp_path / "whole.tar", members)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[: 512 * 2 + 3072 + 512 * 2])  # a, b's header, part of b
    with pytest.raises(UnsafeArchiveError) as caught:
        open_serialised_bag(cut, tmp_path / "work", **{**LIMITS, "max_bytes": 5000})
    assert caught.value.context == {"rule": "archive-too-large", "member": "bag/b"}


def test_ratio_is_checked_on_the_running_total_of_a_tar_gz(tmp_path: Path) -> None:
    members = [(_file(f"bag/zeros{i}"), b"\0" * (4 << 20)) for i in range(4)]
    archive = _tar(tmp_path / "bomb.tar.gz", members, "w:gz")
    ratio = 1.5 * (4 << 20) / archive.stat().st_size  # passed by the second member
    with pytest.raises(UnsafeArchiveError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **{**LIMITS, "max_ratio": ratio})
    assert caught.value.context == {"rule": "archive-ratio", "member": "bag/zeros1"}


def _fake_disk(monkeypatch: pytest.MonkeyPatch, *, total: int, free: int) -> list[str]:
    asked: list[str] = []

    def disk_usage(path: str | Path) -> shutil._ntuple_diskusage:
        asked.append(str(path))
        return shutil._ntuple_diskusage(total, total - free, free)

    monkeypatch.setattr(serialised.shutil, "disk_usage", disk_usage)
    return asked


def test_archive_larger_than_free_space_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 KiB disk, 40 KiB free, default reserve 5% = 5 KiB: 35 KiB usable.
    asked = _fake_disk(monkeypatch, total=100 << 10, free=40 << 10)
    members = [(_file(f"bag/f{i}"), b"x" * (10 << 10)) for i in range(4)]
    archive = _tar(tmp_path / "roomy.tar", members)
    work = tmp_path / "work"
    before = _digest(archive)
    with pytest.raises(UnsafeArchiveError) as caught:
        open_serialised_bag(archive, work, **LIMITS)
    error = caught.value
    assert error.context == {"rule": "archive-exceeds-free-space", "member": "bag/f3"}
    assert error.path == str(archive) and error.message.startswith("roomy.tar: ")
    assert str(40 << 10) in error.message and str(5 << 10) in error.message
    assert asked == [str(work)]
    assert not work.exists() and _digest(archive) == before


def test_free_space_reserve_is_a_keyword_and_capped_at_one_gib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _tar(tmp_path / "a.tar", [(_file("bag/a"), b"x" * 1000)])
    _fake_disk(monkeypatch, total=1 << 50, free=(1 << 30) + 999)  # 5% would be 56 TiB
    with pytest.raises(UnsafeArchiveError) as caught:
        open_serialised_bag(archive, tmp_path / "w1", **LIMITS)
    assert caught.value.context["rule"] == "archive-exceeds-free-space"
    _fake_disk(monkeypatch, total=1 << 50, free=(1 << 30) + 1000)
    assert open_serialised_bag(archive, tmp_path / "w2", **LIMITS) == tmp_path / "w2" / "bag"

    _fake_disk(monkeypatch, total=1 << 20, free=2000)
    with pytest.raises(UnsafeArchiveError):
        open_serialised_bag(archive, tmp_path / "w3", **LIMITS, free_space_reserve=1001)
    root = open_serialised_bag(archive, tmp_path / "w4", **LIMITS, free_space_reserve=1000)
    assert (root / "a").stat().st_size == 1000


def test_bytes_written_are_checked_against_free_space(tmp_path: Path) -> None:
    space = serialised._FreeSpace(tmp_path, free=3 << 20, reserve=1 << 20)
    limits = _Limits(tmp_path / "x.tar", 1000, 1 << 40, 10, 1e9, space=space)
    member = _Member(("big",), 1 << 40, False, None)
    with pytest.raises(UnsafeArchiveError) as caught:
        _extract(member, io.BytesIO(b"y" * (3 << 20)), tmp_path, limits, "big")
    assert caught.value.context["rule"] == "archive-exceeds-free-space"


# ---------------------------------------------------------------- zip member name encodings


def _unicode_path_field(name: str, header_name: bytes) -> bytes:
    """Info-ZIP's Unicode Path extra field (0x7075), tied to the header name by its CRC."""
    body = b"\x01" + struct.pack("<I", zlib.crc32(header_name)) + name.encode("utf-8")
    return struct.pack("<HH", 0x7075, len(body)) + body


def _infozip(path: Path, members: list[tuple[bytes, bytes | None, bytes]]) -> Path:
    """A zip as Info-ZIP writes it: raw header names, general purpose bit 11 clear.

    Each member is (header name bytes, content or None for a folder, extra field),
    stored uncompressed; the extra field goes in both the local and central header.
    zipfile cannot write this: it sets the UTF-8 flag for any non-ASCII name.
    """
    local, central = io.BytesIO(), io.BytesIO()
    for name, content, extra in members:
        data = content or b""
        crc = zlib.crc32(data)
        mode = 0o40755 << 16 | 0x10 if content is None else 0o100644 << 16
        offset = local.tell()
        # version needed, flags (bit 11 clear), stored, time, date 1980-01-01, crc,
        # sizes, name and extra lengths: the fields both headers share
        head = (10, 0, 0, 0, 0x21, crc, len(data), len(data), len(name), len(extra))
        local.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", *head) + name + extra + data)
        made_by = 3 << 8 | 30  # Unix, zip 3.0
        entry = struct.pack("<4s6H3I5H2I", b"PK\x01\x02", made_by, *head, 0, 0, 0, mode, offset)
        central.write(entry + name + extra)
    n = len(members)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, central.tell(), local.tell(), 0)
    path.write_bytes(local.getvalue() + central.getvalue() + end)
    return path


_NON_ASCII = {"São Paulo.txt": b"sp", "café/Øre.txt": b"kr", "ascii.txt": b"plain"}


def _infozip_bag(
    tmp_path: Path, codec: str, *, field: bool, files: dict[str, bytes] = _NON_ASCII
) -> Path:
    """A valid bag with non-ASCII payload names, zipped with names in ``codec`` and no flag."""
    bag = write_bag(tmp_path / "src" / "mybag", files)
    members: list[tuple[bytes, bytes | None, bytes]] = []
    for path in sorted(bag.rglob("*")):
        name = path.relative_to(bag.parent).as_posix() + ("/" if path.is_dir() else "")
        raw = name.encode(codec)
        extra = _unicode_path_field(name, raw) if field and not name.isascii() else b""
        members.append((raw, None if path.is_dir() else path.read_bytes(), extra))
    return _infozip(tmp_path / "infozip.zip", members)


@pytest.mark.parametrize(
    "codec",
    [
        "utf-8",  # Info-ZIP 3.0 on Unix: the locale's bytes in the header, plus the field
        "cp850",  # Info-ZIP on Windows: the OEM code page, plus the field
    ],
)
def test_infozip_unicode_path_field_names_the_members(tmp_path: Path, codec: str) -> None:
    archive = _infozip_bag(tmp_path, codec, field=True)
    with zipfile.ZipFile(archive) as zf:
        assert not any(info.flag_bits & 0x800 for info in zf.infolist())
        assert "mybag/data/São Paulo.txt" not in zf.namelist()  # what zipfile alone makes of it
    root = open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert root == tmp_path / "work" / "mybag"
    assert (root / "data" / "São Paulo.txt").read_bytes() == b"sp"
    assert (root / "data" / "café" / "Øre.txt").read_bytes() == b"kr"
    assert validate_bag(root).valid


def test_zip_names_in_utf8_without_the_flag_are_read_as_utf8(tmp_path: Path) -> None:
    archive = _infozip_bag(tmp_path, "utf-8", field=False)
    root = open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    names = {p.name for p in (root / "data").iterdir()}
    assert names == {"ascii.txt", "café", "São Paulo.txt"}
    assert validate_bag(root).valid


def test_unicode_path_field_with_a_stale_crc_is_ignored(tmp_path: Path) -> None:
    """A tool that renamed a member without knowing the field leaves it describing the old name."""
    bag = write_bag(tmp_path / "src" / "bag", {"new.txt": b"n"})
    members: list[tuple[bytes, bytes | None, bytes]] = []
    for path in sorted(bag.rglob("*")):
        name = path.relative_to(bag.parent).as_posix() + ("/" if path.is_dir() else "")
        stale = _unicode_path_field("bag/data/élan.txt", b"bag/data/old.txt")
        extra = stale if name == "bag/data/new.txt" else b""
        members.append((name.encode(), None if path.is_dir() else path.read_bytes(), extra))
    archive = _infozip(tmp_path / "renamed.zip", members)
    root = open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert [p.name for p in (root / "data").iterdir()] == ["new.txt"]


def test_zip_names_neither_utf8_nor_described_are_refused(tmp_path: Path) -> None:
    """Without the field a cp850 name would unpack as cp437 mojibake, then show as missing."""
    archive = _infozip_bag(tmp_path, "cp850", field=False)
    before = _digest(archive)
    with pytest.raises(InvalidSIPError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    error = caught.value
    assert error.context["rule"] == "archive-member-encoding"
    assert error.path == str(archive)
    assert error.context["member"] == "mybag/data/S\\xc6o Paulo.txt"
    assert error.message.startswith("infozip.zip: ")
    assert "not UTF-8" in error.message and "Unicode Path" in error.message
    assert "S\\xc6o Paulo.txt" in error.message
    assert not (tmp_path / "work").exists() and _digest(archive) == before


def test_unicode_path_field_gets_the_same_escape_checks(tmp_path: Path) -> None:
    """The field is the depositor's bytes like the header name; it must not bypass the checks."""
    field = _unicode_path_field("../escape.txt", b"bag/ok.txt")
    archive = _infozip(tmp_path / "sneaky.zip", [(b"bag/ok.txt", b"x", field)])
    _assert_refused(archive, tmp_path / "work", "archive-member-traversal")
    assert not (tmp_path / "escape.txt").exists()


def test_zip_name_with_a_nul_is_refused_not_cut_short(tmp_path: Path) -> None:
    """zipfile's ``filename`` stops at a NUL; the header holds more, and the name check sees it."""
    archive = _infozip(tmp_path / "nul.zip", [(b"bag/a.txt\x00.exe", b"x", b"")])
    _assert_refused(archive, tmp_path / "work", "archive-member-name")


# ---------------------------------------------------------------- layout: one folder, not empty


def _archive(path: Path, names: list[str]) -> Path:
    """Files (``x``) and folders (``x/``) in a zip or tar by ``path``'s suffix."""
    if path.suffix == ".zip":
        return _zip(path, [(n, b"" if n.endswith("/") else b"x") for n in names])
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for n in names:
        info = _file(n)
        if n.endswith("/"):
            info.type = tarfile.DIRTYPE
        members.append((info, None if n.endswith("/") else b"x"))
    return _tar(path, members, "w:gz" if path.name.endswith(".gz") else "w")


@pytest.mark.parametrize(
    ("archive_name", "names", "found"),
    [
        (
            "mac.zip",
            ["mybag/bagit.txt", "mybag/data/a", "__MACOSX/", "__MACOSX/mybag/._bagit.txt"],
            "found 2 top-level entries: __MACOSX/, mybag/",
        ),
        ("two.tar", ["one/bagit.txt", "two/bagit.txt"], "found 2 top-level entries: one/, two/"),
        (
            "loose.tar.gz",
            ["bag/bagit.txt", "README.txt", "notes/"],
            "found 3 top-level entries: README.txt, bag/, notes/",
        ),
        ("file.zip", ["manifest-sha256.txt"], "found 1 top-level entry: manifest-sha256.txt"),
    ],
)
def test_archive_without_exactly_one_top_folder_is_refused_naming_its_entries(
    tmp_path: Path, archive_name: str, names: list[str], found: str
) -> None:
    archive = _archive(tmp_path / archive_name, names)
    with pytest.raises(InvalidSIPError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    error = caught.value
    assert error.context["rule"] == "archive-top-level"
    assert error.path == str(archive)
    assert error.message == (
        f"{archive_name}: {found}; a serialised bag must hold exactly one folder"
    )
    assert not (tmp_path / "work").exists()


def test_many_top_level_entries_are_listed_in_part(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "flat.tar", [f"f{i:02}" for i in range(30)])
    with pytest.raises(InvalidSIPError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert "found 30 top-level entries: f00, f01," in caught.value.message
    assert "f09, and 20 more;" in caught.value.message and "f10" not in caught.value.message


@pytest.mark.parametrize("archive_name", ["empty.zip", "empty.tar", "empty.tar.gz", "dot.tar"])
def test_empty_archive_is_reported_as_empty(tmp_path: Path, archive_name: str) -> None:
    archive = _archive(tmp_path / archive_name, ["./"] if archive_name == "dot.tar" else [])
    with pytest.raises(InvalidSIPError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert caught.value.message == f"{archive_name}: the archive is empty"
    assert caught.value.context["rule"] == "archive-empty"
    assert caught.value.path == str(archive)
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("archive_name", ["zero.zip", "zero.tar", "zero.tar.gz"])
def test_zero_byte_archive_is_reported_as_empty(tmp_path: Path, archive_name: str) -> None:
    """Not as a damaged archive listing every decompressor tarfile tried."""
    archive = tmp_path / archive_name
    archive.write_bytes(b"")
    with pytest.raises(InvalidSIPError) as caught:
        open_serialised_bag(archive, tmp_path / "work", **LIMITS)
    assert caught.value.message == f"{archive_name}: the archive is empty"
    assert caught.value.context["rule"] == "archive-empty"
    assert not (tmp_path / "work").exists()
