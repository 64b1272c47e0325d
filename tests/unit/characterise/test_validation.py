"""Format validators on real files, good and broken, made here by the real tools.

Where a command-line tool exists (``qpdf --check``, ``ffmpeg -f null``) the
in-process verdict is compared with it. Spawns are counted: mediaconch runs
once per batch, the in-process validators never start a process.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import struct
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from preservation.characterise.validation import (
    MAX_PIXELS,
    MESSAGE_LIMIT,
    VALIDATOR_NAMES,
    Finding,
    FormatValidator,
    MediaConchValidator,
    validate_files,
    validator,
)
from preservation.errors import ConfigurationError, ToolUnavailableError
from tests.conftest import require_program as need_program
from tests.conftest import service_missing


def need_module(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        service_missing(f"Python package {name}", ModuleNotFoundError(name))


def verdicts(name: str, paths: Sequence[Path]) -> list[Finding]:
    findings = validator(name).check(paths)
    assert len(findings) == len(paths)
    for finding in findings:
        assert finding.tool == name
        assert finding.tool_version
        assert len(finding.message) <= MESSAGE_LIMIT
        assert (finding.message == "") == (finding.valid is True), finding
    return findings


def flip(source: Path, target: Path, at: float, count: int, mask: int = 0xFF) -> Path:
    """Copy ``source`` with ``count`` bytes XORed from fraction ``at`` of its length."""
    data = bytearray(source.read_bytes())
    start = int(len(data) * at)
    for index in range(start, start + count):
        data[index] ^= mask
    target.write_bytes(bytes(data))
    return target


def cut(source: Path, target: Path, keep: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [need_program("ffmpeg"), "-v", "error", "-y", *args], check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("validation")


# -- registry and contract ------------------------------------------------------


def test_every_name_gives_a_validator_and_unknown_names_are_configuration_errors() -> None:
    assert VALIDATOR_NAMES == (
        "qpdf",
        "jpylyzer",
        "pillow",
        "ffmpeg",
        "xml",
        "mediaconch",
        "siard",
    )
    for name in VALIDATOR_NAMES:
        found = validator(name)
        assert isinstance(found, FormatValidator)
        assert found.name == name
    with pytest.raises(ConfigurationError, match="veraPDF"):
        validator("veraPDF")
    with pytest.raises(ConfigurationError):
        validate_files({"veraPDF": [Path("x.pdf")]})


def test_a_missing_tool_is_not_a_malformed_file(tmp_path: Path) -> None:
    films = [tmp_path / "a.mkv", tmp_path / "b.mkv"]
    for film in films:
        film.write_bytes(b"\x1a\x45\xdf\xa3")
    absent = MediaConchValidator("mediaconch-not-installed-here")
    with pytest.raises(ToolUnavailableError) as raised:
        absent.version()
    assert raised.value.context["tool"] == "mediaconch"

    found = validate_files({"mediaconch": films}, validators={"mediaconch": absent})
    for film in films:
        (finding,) = found[film]
        assert finding.valid is None and not finding.checked
        assert "mediaconch is not installed" in finding.message

    with pytest.raises(ToolUnavailableError):
        validate_files({"mediaconch": films}, validators={"mediaconch": absent}, strict=True)


def test_unreadable_files_are_not_checked_rather_than_invalid(tmp_path: Path) -> None:
    need_module("PIL")
    gone = tmp_path / "gone.png"
    (finding,) = verdicts("pillow", [gone])
    assert finding.valid is None
    assert "cannot read" in finding.message


# -- qpdf -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pdfs(files: Path) -> dict[str, Path]:
    need_module("pikepdf")
    import pikepdf

    def page_pdf(path: Path) -> Path:
        pdf = pikepdf.new()
        pdf.add_blank_page(page_size=(200, 200))
        text = b"".join(b"BT /F1 12 Tf 20 %d Td (line %d) Tj ET\n" % (i, i) for i in range(200))
        stream = pdf.make_stream(zlib.compress(text))
        stream.Filter = pikepdf.Name.FlateDecode
        pdf.pages[0].Contents = stream
        pdf.save(path, compress_streams=False, object_stream_mode=pikepdf.ObjectStreamMode.disable)
        return path

    good = page_pdf(files / "good.pdf")
    data = good.read_bytes()
    at = data.rindex(b"startxref")
    offset = int(data[at:].split()[1])
    broken = bytearray(data[:at] + b"startxref\n%d\n%%%%EOF\n" % (offset + 7))  # xref moved
    content = broken.index(b"stream\n") + len(b"stream\n")
    for index in range(content + 200, content + 216):  # and the page's content damaged
        broken[index] ^= 0xFF

    undecodable = pikepdf.new()  # a Flate stream of garbage that no page draws
    undecodable.add_blank_page(page_size=(100, 100))
    junk = undecodable.make_stream(b"\x00this is not zlib data" * 8)
    junk.Filter = pikepdf.Name.FlateDecode
    undecodable.Root.Junk = junk
    undecodable.save(files / "undecodable.pdf", compress_streams=False)

    with pikepdf.open(good) as pdf:
        pdf.save(files / "locked.pdf", encryption=pikepdf.Encryption(owner="o", user="secret"))
        pdf.save(files / "owner-only.pdf", encryption=pikepdf.Encryption(owner="o", user=""))
    return {
        "good": good,
        "broken": _write(files / "broken.pdf", bytes(broken)),
        "truncated": cut(good, files / "truncated.pdf", 0.6),
        "not-pdf": _write(files / "not.pdf", b"hello, not a PDF"),
        "undecodable": files / "undecodable.pdf",
        "locked": files / "locked.pdf",
        "owner-only": files / "owner-only.pdf",
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def qpdf_cli_valid(path: Path) -> bool:
    """``qpdf --check``: 0 clean, 3 warnings (repaired), 2 errors."""
    done = subprocess.run(
        [need_program("qpdf"), "--check", str(path)], capture_output=True, text=True
    )
    assert done.returncode in (0, 2, 3), done.stderr
    return done.returncode == 0


def test_pdf_verdicts_and_agreement_with_qpdf_check(pdfs: dict[str, Path]) -> None:
    kinds = ["good", "broken", "truncated", "not-pdf", "undecodable", "owner-only"]
    found = dict(zip(kinds, verdicts("qpdf", [pdfs[k] for k in kinds]), strict=True))
    assert found["good"].valid is True
    assert found["owner-only"].valid is True  # opens with the empty user password
    assert found["broken"].valid is False
    assert "reconstruct cross-reference table" in found["broken"].message
    assert (
        "broken.pdf" in found["broken"].message
        and str(pdfs["broken"]) not in found["broken"].message
    )
    assert found["truncated"].valid is False
    assert found["not-pdf"].valid is False
    assert found["undecodable"].valid is False
    assert "error decoding stream data" in found["undecodable"].message
    assert found["good"].tool_version.startswith("libqpdf ")

    for kind in kinds:
        cli = qpdf_cli_valid(pdfs[kind])
        if kind == "undecodable":
            # qpdf 11.3's --check passes a Flate stream through without decoding
            # it; libqpdf 12 decodes every stream. Never laxer than the CLI:
            assert found[kind].valid is False
            continue
        assert found[kind].valid is cli, (kind, found[kind])


def test_pdf_that_needs_a_password_is_not_checked(pdfs: dict[str, Path]) -> None:
    (finding,) = verdicts("qpdf", [pdfs["locked"]])
    assert finding.valid is None
    assert finding.message == "encrypted; not checked"


# -- jpylyzer --------------------------------------------------------------------


@pytest.fixture(scope="module")
def jp2s(files: Path) -> dict[str, Path]:
    need_module("jpylyzer")
    need_module("PIL")
    from PIL import Image, features

    if not features.check("jpg_2000"):
        service_missing("Pillow's JPEG 2000 codec (openjpeg)", ImportError("openjpeg"))
    good = files / "good.jp2"
    Image.linear_gradient("L").resize((128, 96)).convert("RGB").save(good)
    return {"good": good, "truncated": cut(good, files / "truncated.jp2", 0.5)}


def test_jpylyzer_passes_a_good_jp2_and_names_the_failed_tests_of_a_truncated_one(
    jp2s: dict[str, Path], files: Path
) -> None:
    empty = _write(files / "empty.jp2", b"")
    good, truncated, nothing = verdicts("jpylyzer", [jp2s["good"], jp2s["truncated"], empty])
    assert good.valid is True
    assert truncated.valid is False
    assert "foundEOCMarker" in truncated.message
    assert truncated.message.startswith("failed jp2 tests: contiguousCodestreamBox/")
    assert nothing.valid is False and nothing.message == "empty file"
    # Safe to call again: jpylyzer keeps no state between files.
    again = verdicts("jpylyzer", [jp2s["truncated"], jp2s["good"]])
    assert [f.valid for f in again] == [False, True]
    assert again[0].message == truncated.message


# -- Pillow ---------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; its pixel data is never there."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00"))
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def images(files: Path) -> dict[str, Path]:
    need_module("PIL")
    from PIL import Image

    picture = Image.linear_gradient("L").resize((160, 120)).convert("RGB")
    good_png = files / "good.png"
    picture.save(good_png)
    data = good_png.read_bytes()
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    bad_crc = bytearray(data)
    bad_crc[idat + 4 + length] ^= 0xFF  # the IDAT chunk's CRC, not its data
    pages = [picture, picture.rotate(90), picture.rotate(180)]
    good_tiff = files / "pages.tif"
    pages[0].save(good_tiff, save_all=True, append_images=pages[1:], compression="tiff_lzw")
    gif = files / "frames.gif"
    pages[0].save(gif, save_all=True, append_images=pages[1:])
    return {
        "png": good_png,
        "truncated-png": cut(good_png, files / "truncated.png", 0.5),
        "bad-crc-png": _write(files / "bad-crc.png", bytes(bad_crc)),
        "tiff": good_tiff,
        "truncated-tiff": cut(good_tiff, files / "truncated.tif", 0.8),
        "gif": gif,
        "bomb": _write(files / "bomb.png", _png_claiming(50_000, 50_000)),
        "huge-bomb": _write(files / "huge-bomb.png", _png_claiming(100_000, 100_000)),
    }


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_pillow_decodes_every_frame_and_reports_damage(images: dict[str, Path]) -> None:
    kinds = list(images)
    found = dict(zip(kinds, verdicts("pillow", [images[k] for k in kinds]), strict=True))
    assert found["png"].valid is True
    assert found["tiff"].valid is True
    assert found["gif"].valid is True
    assert found["truncated-png"].valid is False
    assert "truncated" in found["truncated-png"].message.lower()
    assert found["bad-crc-png"].valid is False  # load() alone would pass it; verify() does not
    assert "checksum" in found["bad-crc-png"].message
    assert found["truncated-tiff"].valid is False  # the last page is cut short
    assert found["truncated-tiff"].message.startswith("frame 3: ")
    # Decompression bombs: findings, not allocations; judged "not checked".
    assert 50_000**2 > MAX_PIXELS
    assert found["bomb"].valid is None
    assert "decompression bomb" in found["bomb"].message
    assert found["huge-bomb"].valid is None
    assert "not decoded" in found["huge-bomb"].message


def test_pillow_allows_large_archival_images() -> None:
    need_module("PIL")
    from PIL import Image

    validator("pillow").check([])  # settings are applied on first use
    verdicts("pillow", [Path(__file__)])  # and on every check
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is None or limit >= MAX_PIXELS


# -- ffmpeg (PyAV) --------------------------------------------------------------


@pytest.fixture(scope="module")
def media(files: Path) -> dict[str, Path]:
    need_module("av")
    flac, wav, mkv = files / "good.flac", files / "good.wav", files / "good.mkv"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "flac", str(flac))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "pcm_s16le", str(wav))
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:d=1",
        "-c:v", "ffv1", "-level", "3", "-slicecrc", "1", str(mkv),
    )  # fmt: skip
    return {
        "flac": flac,
        "corrupt-flac": flip(flac, files / "corrupt.flac", 0.5, 64, 0x5A),
        "bit-flac": flip(flac, files / "bit.flac", 0.5, 1, 0x01),
        "wav": wav,
        "truncated-wav": cut(wav, files / "truncated.wav", 0.4),
        "mkv": mkv,
        "broken-mkv": flip(mkv, files / "broken.mkv", 0.5, 200),
        "truncated-mkv": cut(mkv, files / "truncated.mkv", 0.3),
    }


def ffmpeg_cli_valid(path: Path, *extra: str) -> bool:
    """``ffmpeg -v error -i f -f null -``: clean means exit 0 and nothing on stderr."""
    done = subprocess.run(
        [need_program("ffmpeg"), "-v", "error", *extra, "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and not done.stderr.strip()


def test_ffmpeg_decode_pass_agrees_with_the_cli(media: dict[str, Path]) -> None:
    kinds = ["flac", "corrupt-flac", "mkv", "broken-mkv"]
    found = dict(zip(kinds, verdicts("ffmpeg", [media[k] for k in kinds]), strict=True))
    for kind in kinds:
        assert found[kind].valid is ffmpeg_cli_valid(media[kind]), (kind, found[kind])
    assert found["flac"].valid is True and found["mkv"].valid is True
    assert "[flac]" in found["corrupt-flac"].message
    assert "[ffv1]" in found["broken-mkv"].message and "CRC" in found["broken-mkv"].message
    assert found["flac"].tool_version.startswith("libavcodec ")


def test_ffmpeg_verifies_checksums_like_err_detect_crccheck(media: dict[str, Path]) -> None:
    (finding,) = verdicts("ffmpeg", [media["bit-flac"]])
    assert finding.valid is False
    assert "CRC error" in finding.message
    # One flipped bit: plain `ffmpeg -f null` is silent; with crccheck it is not.
    assert ffmpeg_cli_valid(media["bit-flac"], "-err_detect", "crccheck") is False


def test_a_truncated_wav_is_reported_though_ffmpeg_plays_it(media: dict[str, Path]) -> None:
    good, truncated, mkv = verdicts(
        "ffmpeg", [media["wav"], media["truncated-wav"], media["truncated-mkv"]]
    )
    assert good.valid is True
    assert truncated.valid is False
    data = media["truncated-wav"].read_bytes()
    holds = len(data) - data.index(b"data") - 8
    assert f"data chunk declares 88200 bytes, file holds {holds}" in truncated.message
    assert mkv.valid is False


def test_a_stream_ffmpeg_cannot_decode_is_not_checked_rather_than_invalid(tmp_path: Path) -> None:
    need_module("av")
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 8000, 16000, 2, 16)  # an unknown WAVE format tag
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", 1000) + bytes(1000)
    odd = _write(tmp_path / "odd.wav", b"RIFF" + struct.pack("<I", len(body)) + body)
    (finding,) = verdicts("ffmpeg", [odd])
    assert finding.valid is None
    assert "no decoder" in finding.message


def test_the_same_error_in_two_files_is_reported_for_both(
    media: dict[str, Path], files: Path
) -> None:
    twin = shutil.copy(media["corrupt-flac"], files / "twin.flac")
    first, second = verdicts("ffmpeg", [media["corrupt-flac"], Path(twin)])
    assert first.valid is False and second.valid is False
    assert first.message == second.message


# -- XML --------------------------------------------------------------------------


def test_xml_well_formedness_with_line_and_column(tmp_path: Path) -> None:
    need_module("lxml")
    good = _write(tmp_path / "good.xml", b"<?xml version='1.0'?><a><b x='1'>t</b><c/></a>")
    bad = _write(tmp_path / "bad.xml", b"<a>\n  <b></a>")
    prefix = _write(tmp_path / "prefix.xml", b"<a:b/>")
    good_f, bad_f, prefix_f = verdicts("xml", [good, bad, prefix])
    assert good_f.valid is True
    assert bad_f.valid is False
    assert bad_f.message.startswith("line 2, column")
    assert "tag mismatch" in bad_f.message
    assert prefix_f.valid is False and "Namespace prefix" in prefix_f.message


def _check_within(seconds: float, name: str, paths: Sequence[Path]) -> list[Finding]:
    """Run a check in a thread; a parser that opened a FIFO would block forever."""
    out: list[list[Finding]] = []
    worker = threading.Thread(target=lambda: out.append(verdicts(name, paths)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the parser blocked: it tried to read an external entity"
    return out[0]


def _fifo_was_never_opened(fifo: Path) -> bool:
    try:
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as err:
        return err.errno == errno.ENXIO  # no reader has it open
    os.close(writer)
    return False


def test_xml_never_fetches_external_entities_or_dtds(tmp_path: Path) -> None:
    need_module("lxml")
    secret = _write(tmp_path / "secret.txt", b"TOP-SECRET-MARKER")
    fifo = tmp_path / "entity.fifo"
    os.mkfifo(fifo)
    documents = {
        "file-entity": f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>',
        "fifo-entity": f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{fifo}">]><r>&x;</r>',
        "fifo-dtd": f'<!DOCTYPE r SYSTEM "file://{fifo}"><r>&undeclared;</r>',
        "fifo-parameter": f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{fifo}"> %p;]><r/>',
        "network": '<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><r>&x;</r>',
    }
    paths = [_write(tmp_path / f"{k}.xml", v.encode()) for k, v in documents.items()]
    found = _check_within(10, "xml", paths)
    for path, finding in zip(paths, found, strict=True):
        assert finding.valid is True, (path.name, finding)  # well formed, and nothing expanded
        assert "TOP-SECRET-MARKER" not in finding.message
    assert _fifo_was_never_opened(fifo)


def test_xml_entity_expansion_bomb_is_a_quick_finding(tmp_path: Path) -> None:
    need_module("lxml")
    entities = ['<!ENTITY a "aaaaaaaaaa">'] + [
        f'<!ENTITY {b} "{f"&{a};" * 10}">' for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    bomb = _write(tmp_path / "laughs.xml", f"<!DOCTYPE l [{''.join(entities)}]><l>&i;</l>".encode())
    (finding,) = _check_within(10, "xml", [bomb])
    # libxml2 refuses it as an amplification attack: a finding, quickly, never a hang.
    assert finding.valid is False and finding.message, finding


def test_xml_streams_without_holding_the_document(tmp_path: Path) -> None:
    need_module("lxml")
    big = tmp_path / "big.xml"
    with open(big, "w") as out:
        out.write("<r>")
        for start in range(0, 200_000, 10_000):
            out.write("".join(f"<e n='{k}'>{k}</e>" for k in range(start, start + 10_000)))
        out.write("</r>")
    (finding,) = verdicts("xml", [big])
    assert finding.valid is True


# -- mediaconch --------------------------------------------------------------------


@pytest.fixture
def spawns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Sequence[Any]]]:
    """Every process started through Python while the test runs."""
    started: list[Sequence[Any]] = []
    real_popen = subprocess.Popen

    class CountingPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kw: Any) -> None:
            started.append(args)
            super().__init__(args, *rest, **kw)

    def counted(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            started.append(args)
            return real(*args, **kw)

        return wrapper

    monkeypatch.setattr(subprocess, "Popen", CountingPopen)
    for name in ("fork", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, counted(getattr(os, name)))
    yield started


@pytest.fixture(scope="module")
def films(media: dict[str, Path], files: Path) -> list[Path]:
    folder = files / "films"
    folder.mkdir()
    good, broken = media["mkv"].read_bytes(), media["broken-mkv"].read_bytes()
    return [_write(folder / f"film {i:02d}.mkv", broken if i % 5 == 3 else good) for i in range(20)]


def test_mediaconch_names_failing_checks_and_unrecognised_files(
    media: dict[str, Path], files: Path
) -> None:
    need_program("mediaconch")
    text = _write(files / "text.mkv", b"not a film at all")
    gone = files / "gone.mkv"
    good, truncated, other, missing = verdicts(
        "mediaconch", [media["mkv"], media["truncated-mkv"], text, gone]
    )
    assert good.valid is True
    assert truncated.valid is False and "TRUNCATED-ELEMENT" in truncated.message
    assert other.valid is False and "no Matroska or FFV1 structure" in other.message
    assert missing.valid is None  # a missing file no longer fails the whole run


def test_mediaconch_never_answers_from_its_cache(media: dict[str, Path], files: Path) -> None:
    """MediaConch caches reports by path and time; a file rewritten in place must be re-checked."""
    need_program("mediaconch")
    film = files / "rewritten.mkv"
    shutil.copy(media["mkv"], film)
    stamp = film.stat()
    (before,) = verdicts("mediaconch", [film])
    shutil.copy(media["broken-mkv"], film)
    os.utime(film, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    (after,) = verdicts("mediaconch", [film])
    assert before.valid is True and after.valid is False


# -- validate_files ------------------------------------------------------------------


def test_in_process_validators_start_no_process(
    pdfs: dict[str, Path],
    images: dict[str, Path],
    media: dict[str, Path],
    jp2s: dict[str, Path],
    tmp_path: Path,
    spawns: list[Sequence[Any]],
) -> None:
    xml = _write(tmp_path / "doc.xml", b"<r/>")
    for name in ("qpdf", "jpylyzer", "pillow", "ffmpeg", "xml"):
        validator(name).version()  # imports done before counting
    spawns.clear()
    found = validate_files(
        {
            "qpdf": [pdfs["good"], pdfs["broken"]] * 10,
            "jpylyzer": [jp2s["good"], jp2s["truncated"]] * 10,
            "pillow": [images["png"], images["truncated-png"], jp2s["good"]] * 10,
            "ffmpeg": [media["flac"], media["wav"], media["broken-mkv"]] * 5,
            "xml": [xml] * 20,
        },
        workers=2,
    )
    assert spawns == []
    assert [f.valid for f in found[pdfs["good"]]] == [True]
    assert [f.valid for f in found[pdfs["broken"]]] == [False]
    assert [(f.tool, f.valid) for f in found[jp2s["good"]]] == [
        ("jpylyzer", True),
        ("pillow", True),
    ]
    assert [f.valid for f in found[media["broken-mkv"]]] == [False]
    assert [f.valid for f in found[xml]] == [True]


def test_twenty_films_take_at_most_two_mediaconch_processes(
    jp2s: dict[str, Path], films: list[Path], spawns: list[Sequence[Any]]
) -> None:
    need_program("mediaconch")
    MediaConchValidator().version()  # cached per executable: one spawn per process
    spawns.clear()
    found = validate_files(
        {"mediaconch": films, "ffmpeg": films[:5], "jpylyzer": [jp2s["good"]]}, workers=2
    )
    assert 1 <= len(spawns) <= 2, spawns  # one batch per worker
    assert set(found) == {*films, jp2s["good"]}
    for index, film in enumerate(films):
        conch = found[film][0]
        assert conch.tool == "mediaconch" and conch.tool_version
        assert conch.valid is (index % 5 != 3), (film.name, conch)
        assert len(conch.message) <= MESSAGE_LIMIT
    # One finding per validator, in the caller's order of validators.
    assert [(f.tool, f.valid) for f in found[films[3]]] == [
        ("mediaconch", False),
        ("ffmpeg", False),
    ]
    assert [f.tool for f in found[films[10]]] == ["mediaconch"]
    broken = found[films[3]][0].message
    assert broken.startswith("EBML-CRC-VALID: A crc evaluation gives a result of NOK. at /Segment")


def test_a_file_that_breaks_a_mediaconch_run_is_isolated_by_halving(
    media: dict[str, Path], files: Path, tmp_path: Path, spawns: list[Sequence[Any]]
) -> None:
    real = need_program("mediaconch")
    wrapper = tmp_path / "mediaconch-poisoned"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in *poison*) echo "boom on $a" >&2; exit 1;; esac; done\n'
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    poison = shutil.copy(media["mkv"], files / "poison.mkv")
    batch = [media["mkv"], media["broken-mkv"], Path(poison), media["truncated-mkv"]]
    conch = MediaConchValidator(str(wrapper))
    conch.version()
    spawns.clear()
    found = conch.check(batch)
    assert [f.valid for f in found] == [True, False, None, False]
    assert "boom on" in found[2].message
    assert len(spawns) == 5  # the batch, its halves, the poisoned half's halves


def test_an_mpeg_elementary_video_stream_decodes(tmp_path: Path) -> None:
    """Raw MPEG video (fmt/640, fmt/649) goes to ffmpeg: its demuxer must be on the list."""
    stream = tmp_path / "clip.m2v"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:d=1",
        "-c:v", "mpeg2video", "-f", "mpeg2video", str(stream),
    )  # fmt: skip
    [finding] = validator("ffmpeg").check([stream])
    assert finding.valid is True, finding.message
