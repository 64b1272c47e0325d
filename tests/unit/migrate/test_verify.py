"""verify() on real files: outputs made as a migration tool would make them, and spoilt.

Sources come from Pillow and ``ffmpeg -f lavfi``; the outputs are made here
with Pillow, ffmpeg and Ghostscript (the migration tools themselves are not
under test), then one verify() call checks them all, as the migration runner
does for a batch. Every good output
must pass every check; every spoilt one must fail the check that proves the
loss, and only the checks that should.
"""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from preservation.characterise import ToolBox, load_registry
from preservation.characterise.validation import MediaConchValidator
from preservation.identify.registry import get_engine
from preservation.migrate.verify import Candidate, Check, Verification, verify
from tests.conftest import require_program

IMAGE = ("identify", "validate", "properties", "pixels")
AUDIO = ("identify", "validate", "properties", "pcm")
VIDEO = ("identify", "validate", "properties", "framemd5")
DOCUMENT = ("identify", "validate", "pages")
TIFF, FLAC, WAV, MKV, PDFA, ODT = "fmt/353", "fmt/279", "fmt/141", "fmt/569", "fmt/477", "fmt/291"

IMAGE_CHECKS = [
    "tool exit",
    "output",
    "identification",
    "validation (pillow)",
    "width",
    "height",
    "channels",
    "bit depth",
    "decoded pixels",
]
AUDIO_CHECKS = [
    "tool exit",
    "output",
    "identification",
    "validation (ffmpeg)",
    "streams",
    "duration",
    "sample rate",
    "channels",
    "decoded PCM",
]
VIDEO_CHECKS = [
    "tool exit",
    "output",
    "identification",
    "validation (ffmpeg)",
    "validation (mediaconch)",
    "streams",
    "frame count",
    "frame size",
    "frame rate",
    "sample rate",
    "channels",
    "frame MD5s",
    "decoded PCM",
]
PDF_CHECKS = ["tool exit", "output", "identification", "validation (qpdf)", "page count"]


def _ffmpeg(target: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(target)], check=True, timeout=60
    )
    return target


def _picture(size: tuple[int, int] = (40, 30)) -> Image.Image:
    """An RGB picture whose every pixel differs from its neighbours."""
    width, height = size
    data = bytes((i * 7 + i // 97) % 256 for i in range(width * height * 3))
    return Image.frombytes("RGB", size, data)


def _tiff(
    source: Path, target: Path, *, frames: int | None = None, mode: str | None = None
) -> Path:
    """What the image migration does: every frame, as decoded, into an uncompressed TIFF."""
    with Image.open(source) as image:
        pages = []
        for index in range(frames or int(getattr(image, "n_frames", 1))):
            image.seek(index)
            pages.append(image.convert(mode) if mode else image.copy())
    pages[0].save(target, format="TIFF", compression="raw", save_all=True, append_images=pages[1:])
    return target


def _images(root: Path) -> dict[str, Candidate]:
    def case(key: str, source: Path, puid: str, output: Path, exit_code: int = 0) -> Candidate:
        error = "convert: out of cheese" if exit_code else None
        return Candidate(key, source, puid, output, "image", TIFF, IMAGE, exit_code, error)

    picture = _picture()
    picture.save(root / "rgb.png")
    picture.save(root / "photo.jpg", quality=85)
    picture.save(root / "picture.bmp")
    picture.save(root / "lzw.tif", compression="tiff_lzw")
    frames = [picture.convert("P"), _picture().rotate(180).convert("P")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    clear = Image.new("P", (20, 10), 0)
    clear.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    clear.paste(1, (0, 0, 10, 10))
    clear.paste(2, (10, 5, 20, 10))
    clear.save(root / "clear.gif", transparency=0)
    grey = bytes(b for i in range(16 * 8) for b in (i * 500).to_bytes(2, "little"))
    Image.frombytes("I;16", (16, 8), grey).save(root / "grey16.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    picture.save(root / "oriented.jpg", exif=exif, quality=85)
    _ffmpeg(
        root / "deep.png",
        *("-f", "lavfi", "-i", "testsrc=size=16x8:rate=1:duration=1"),
        *("-frames:v", "1", "-pix_fmt", "rgb48be"),
    )
    (root / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)

    changed = _picture()
    changed.putpixel((5, 5), tuple(255 - v for v in changed.getpixel((5, 5))))  # type: ignore[union-attr]
    changed.save(root / "changed.tif", compression="raw")
    _picture().crop((0, 0, 39, 30)).save(root / "cropped.tif", compression="raw")
    picture.save(root / "really-a-png.tif", format="PNG")
    (root / "empty.tif").write_bytes(b"")
    with Image.open(root / "oriented.jpg") as image:
        ImageOps.exif_transpose(image).save(root / "transposed.tif", compression="raw")

    return {
        "png": case("png", root / "rgb.png", "fmt/11", _tiff(root / "rgb.png", root / "png.tif")),
        "jpeg": case(
            "jpeg", root / "photo.jpg", "fmt/43", _tiff(root / "photo.jpg", root / "jpeg.tif")
        ),
        "bmp": case(
            "bmp", root / "picture.bmp", "fmt/116", _tiff(root / "picture.bmp", root / "bmp.tif")
        ),
        "tiff_lzw": case(
            "tiff_lzw", root / "lzw.tif", "fmt/353", _tiff(root / "lzw.tif", root / "raw.tif")
        ),
        "gif": case("gif", root / "anim.gif", "fmt/3", _tiff(root / "anim.gif", root / "gif.tif")),
        "gif_transparent": case(
            "gif_transparent",
            root / "clear.gif",
            "fmt/4",
            _tiff(root / "clear.gif", root / "clear.tif", mode="RGBA"),
        ),
        "grey16": case(
            "grey16", root / "grey16.png", "fmt/11", _tiff(root / "grey16.png", root / "g16.tif")
        ),
        "oriented": case("oriented", root / "oriented.jpg", "fmt/43", root / "transposed.tif"),
        "pixel_changed": case("pixel_changed", root / "rgb.png", "fmt/11", root / "changed.tif"),
        "cropped": case("cropped", root / "rgb.png", "fmt/11", root / "cropped.tif"),
        "wrong_format": case("wrong_format", root / "rgb.png", "fmt/11", root / "really-a-png.tif"),
        "empty": case("empty", root / "rgb.png", "fmt/11", root / "empty.tif"),
        "exit": case("exit", root / "rgb.png", "fmt/11", root / "png.tif", exit_code=1),
        "gif_one_frame": case(
            "gif_one_frame",
            root / "anim.gif",
            "fmt/3",
            _tiff(root / "anim.gif", root / "one-frame.tif", frames=1),
        ),
        "sideways": case(
            "sideways",
            root / "oriented.jpg",
            "fmt/43",
            _tiff(root / "oriented.jpg", root / "sideways.tif"),
        ),
        "deep_to_8bit": case(
            "deep_to_8bit", root / "deep.png", "fmt/11", _tiff(root / "deep.png", root / "8.tif")
        ),
        "undecodable": case("undecodable", root / "garbage.png", "fmt/11", root / "png.tif"),
    }


def _audio(root: Path) -> dict[str, Candidate]:
    def case(key: str, source: Path, puid: str, output: Path, target: str = FLAC) -> Candidate:
        return Candidate(key, source, puid, output, "audio", target, AUDIO, 0, None)

    tone = ("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-ar", "48000", "-ac", "2")
    wav16 = _ffmpeg(root / "tone16.wav", *tone, "-c:a", "pcm_s16le")
    wav24 = _ffmpeg(root / "tone24.wav", *tone, "-c:a", "pcm_s24le")
    mp3 = _ffmpeg(root / "tone.mp3", *tone, "-c:a", "libmp3lame")
    flac16 = _ffmpeg(root / "tone16.flac", "-i", str(wav16), "-c:a", "flac")
    flac24 = _ffmpeg(root / "tone24.flac", "-i", str(wav24), "-c:a", "flac")
    resampled = _ffmpeg(root / "resampled.flac", "-i", str(wav16), "-ar", "44100", "-c:a", "flac")
    short = _ffmpeg(root / "short.flac", "-i", str(wav16), "-t", "0.5", "-c:a", "flac")
    cut = root / "cut.flac"
    cut.write_bytes(flac16.read_bytes()[: flac16.stat().st_size * 6 // 10])
    return {
        "wav16": case("wav16", wav16, "fmt/141", flac16),
        "wav24": case("wav24", wav24, "fmt/143", flac24),
        "mp3": case("mp3", mp3, "fmt/134", _ffmpeg(root / "mp3.wav", "-i", str(mp3)), WAV),
        "resampled": case("resampled", wav16, "fmt/141", resampled),
        "short": case("short", wav16, "fmt/141", short),
        "cut": case("cut", wav16, "fmt/141", cut),
        "not_for_audio": Candidate(
            "not_for_audio", wav16, "fmt/141", flac16, "audio", FLAC, ("pixels", "sparkle"), 0, None
        ),
    }


def _video(root: Path) -> dict[str, Candidate]:
    def case(key: str, source: Path, puid: str, output: Path) -> Candidate:
        return Candidate(key, source, puid, output, "video", MKV, VIDEO, 0, None)

    def ffv1(source: Path, target: Path, *extra: str) -> Path:
        return _ffmpeg(
            target,
            *("-i", str(source), "-map", "0", *extra),
            *("-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1", "-c:a", "flac"),
        )

    inputs = (
        *("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1"),
        *("-f", "lavfi", "-i", "sine=frequency=440:duration=1"),
    )
    raw = _ffmpeg(
        root / "raw.avi", *inputs, "-c:v", "rawvideo", "-pix_fmt", "bgr24", "-c:a", "pcm_s16le"
    )
    lossless = _ffmpeg(root / "ffv1.avi", *inputs, "-c:v", "ffv1", "-c:a", "pcm_s16le")
    h264 = _ffmpeg(
        root / "h264.mp4", *inputs, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"
    )
    dropped = ffv1(raw, root / "dropped.mkv", "-vf", r"select=not(eq(n\,12))")
    return {
        "raw_avi": case("raw_avi", raw, "fmt/5", ffv1(raw, root / "raw.mkv")),
        "ffv1_avi": case("ffv1_avi", lossless, "fmt/5", ffv1(lossless, root / "ffv1.mkv")),
        "h264": case("h264", h264, "fmt/199", ffv1(h264, root / "h264.mkv")),
        "frame_dropped": case("frame_dropped", raw, "fmt/5", dropped),
    }


def _documents(root: Path) -> dict[str, Candidate]:
    import pikepdf

    def case(
        key: str,
        source: Path,
        puid: str | None,
        output: Path,
        target: str = PDFA,
        steps: tuple[str, ...] = DOCUMENT,
    ) -> Candidate:
        return Candidate(key, source, puid, output, "document", target, steps, 0, None)

    _picture((200, 100)).save(root / "three.pdf", save_all=True, append_images=[_picture()] * 2)
    pdfa = root / "pdfa.pdf"
    subprocess.run(
        [
            *("gs", "-q", "-dPDFA=2", "-dBATCH", "-dNOPAUSE", "-dSAFER", "-sDEVICE=pdfwrite"),
            *("-dPDFACompatibilityPolicy=1", "-sColorConversionStrategy=RGB"),
            *(f"-sOutputFile={pdfa}", str(root / "three.pdf")),
        ],
        check=True,
        timeout=60,
    )
    with pikepdf.open(pdfa) as pdf:
        del pdf.pages[-1]
        pdf.save(root / "pdfa-short.pdf")

    with zipfile.ZipFile(root / "letter.docx", "w") as package:
        package.writestr(
            "docProps/app.xml",
            '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/'
            'extended-properties"><Pages>2</Pages></Properties>',
        )
        package.writestr("word/document.xml", "<document/>")
    entity = '<!DOCTYPE m [<!ENTITY pages SYSTEM "file:///etc/hostname">]>'
    for name, pages, doctype in (
        ("letter.odt", "2", ""),
        ("letter-long.odt", "3", ""),
        ("letter-entity.odt", "&pages;", entity),  # an external entity is never read
    ):
        with zipfile.ZipFile(root / name, "w") as package:
            package.writestr("mimetype", "application/vnd.oasis.opendocument.text")
            package.writestr(
                "meta.xml",
                f'<?xml version="1.0"?>{doctype}<office:document-meta xmlns:office="urn:oasis:'
                'names:tc:opendocument:xmlns:office:1.0" xmlns:meta="urn:oasis:names:tc:'
                f'opendocument:xmlns:meta:1.0"><office:meta><meta:document-statistic '
                f'meta:page-count="{pages}"/></office:meta></office:document-meta>',
            )
    office = (ODT, ("pages",))
    return {
        "pdf": case("pdf", root / "three.pdf", "fmt/18", pdfa),
        "page_removed": case("page_removed", root / "three.pdf", "fmt/18", root / "pdfa-short.pdf"),
        "docx_odt": case("docx_odt", root / "letter.docx", "fmt/412", root / "letter.odt", *office),
        "docx_odt_long": case(
            "docx_odt_long", root / "letter.docx", "fmt/412", root / "letter-long.odt", *office
        ),
        "odt_entity": case(
            "odt_entity", root / "letter.docx", "fmt/412", root / "letter-entity.odt", *office
        ),
        "unknown_pages": case(
            "unknown_pages", root / "rgb.txt", None, root / "letter.odt", *office
        ),
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Candidate]:
    for program in ("ffmpeg", "gs", "mediaconch", "mediainfo", "exiftool"):
        require_program(program)
    root = tmp_path_factory.mktemp("migrate-verify")
    (root / "rgb.txt").write_text("no pages here\n")
    return {**_images(root), **_audio(root), **_video(root), **_documents(root)}


@pytest.fixture(scope="module")
def toolbox() -> Iterator[ToolBox]:
    with ToolBox() as box:
        yield box


@pytest.fixture(scope="module")
def results(
    cases: dict[str, Candidate], toolbox: ToolBox, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Verification]:
    return verify(
        list(cases.values()),
        registry=load_registry(),
        toolbox=toolbox,
        identify=get_engine("fido").identify_batch,
        work_dir=tmp_path_factory.mktemp("verify-work"),
    )


def _failed(result: Verification) -> set[str]:
    return {check.name for check in result.checks if not check.passed}


def _check(result: Verification, name: str) -> Check:
    return next(check for check in result.checks if check.name == name)


GOOD = {
    "png": IMAGE_CHECKS,
    "jpeg": IMAGE_CHECKS,
    "bmp": IMAGE_CHECKS,
    "tiff_lzw": IMAGE_CHECKS,
    "gif": IMAGE_CHECKS,
    "gif_transparent": IMAGE_CHECKS,
    "grey16": IMAGE_CHECKS,
    "oriented": IMAGE_CHECKS,
    "wav16": AUDIO_CHECKS,
    "wav24": AUDIO_CHECKS,
    "mp3": AUDIO_CHECKS,
    "raw_avi": VIDEO_CHECKS,
    "ffv1_avi": VIDEO_CHECKS,
    "h264": VIDEO_CHECKS,
    "pdf": PDF_CHECKS,
    "docx_odt": ["tool exit", "output", "page count"],
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_faithful_output_passes_every_check(
    results: dict[str, Verification], cases: dict[str, Candidate], name: str
) -> None:
    result = results[name]
    assert result.ok, result.summary()
    assert [check.name for check in result.checks] == GOOD[name]
    assert result.identification is not None or "identify" not in cases[name].verification
    assert result.seconds > 0


# name: the checks that must fail, exactly
SPOILT = {
    "pixel_changed": {"decoded pixels"},
    "cropped": {"width", "decoded pixels"},
    "wrong_format": {"identification"},
    "empty": {"output"},
    "exit": {"tool exit"},
    "gif_one_frame": {"decoded pixels"},
    "sideways": {"width", "height", "decoded pixels"},
    "deep_to_8bit": {"bit depth"},
    "undecodable": {"width", "height", "channels", "bit depth", "decoded pixels"},
    "resampled": {"sample rate", "decoded PCM"},
    "short": {"duration", "decoded PCM"},
    "cut": {"validation (ffmpeg)", "duration", "decoded PCM"},
    "page_removed": {"page count"},
    "docx_odt_long": {"page count"},
    "odt_entity": {"page count"},
    "not_for_audio": {"decoded pixels", "sparkle"},
}


@pytest.mark.parametrize("name", sorted(SPOILT))
def test_a_spoilt_output_fails_the_check_that_proves_it(
    results: dict[str, Verification], name: str
) -> None:
    result = results[name]
    assert not result.ok
    assert _failed(result) == SPOILT[name], result.summary()


def test_a_truncated_flac_fails_on_what_was_lost(results: dict[str, Verification]) -> None:
    """The stream's header still says 48 kHz stereo; its decoded samples are what fall short."""
    result = results["cut"]
    assert _check(result, "sample rate").passed and _check(result, "channels").passed
    assert "output decoding failed: InvalidDataError" in _check(result, "duration").detail
    assert _check(result, "decoded PCM").detail.startswith("output decoding failed: ")


def test_a_dropped_frame_changes_the_count_and_the_frame_md5s(
    results: dict[str, Verification],
) -> None:
    result = results["frame_dropped"]
    assert {"frame count", "frame MD5s"} <= _failed(result), result.summary()
    assert _check(result, "frame count").detail == "video packets: source 25, output 24"
    assert "source 25 frames, output 24; first difference at frame 13" in (
        _check(result, "frame MD5s").detail
    )
    assert _check(result, "decoded PCM").passed


def test_a_failed_tool_or_empty_output_stops_at_the_first_two_checks(
    results: dict[str, Verification],
) -> None:
    for name in ("exit", "empty"):
        assert [c.name for c in results[name].checks] == ["tool exit", "output"]
        assert results[name].identification is None and results[name].properties == {}
    assert results["exit"].checks[0].detail == "exit code 1: convert: out of cheese"
    assert results["empty"].checks[1].detail == "the output is empty (0 bytes)"


def test_details_name_both_values(results: dict[str, Verification]) -> None:
    assert _check(results["cropped"], "width").detail == "source 40 px, output 39 px"
    pixels = _check(results["png"], "decoded pixels").detail
    assert pixels.startswith("sha256 of decoded RGB pixels: ")  # both RGB: compared as decoded
    digest = pixels.rpartition(" = ")[2]
    assert len(digest) == 64 and pixels.endswith(f"{digest} = {digest}")
    assert "≠" in _check(results["pixel_changed"], "decoded pixels").detail
    assert _check(results["gif_one_frame"], "decoded pixels").detail == "source 2 frames, output 1"
    assert _check(results["wrong_format"], "identification").detail.endswith(
        "fmt/11 (Portable Network Graphics), expected fmt/353"
    )
    assert _check(results["resampled"], "sample rate").detail == (
        "source 48000 Hz, output 44100 Hz"
    )
    assert _check(results["page_removed"], "page count").detail == "source 3, output 2"
    assert _check(results["odt_entity"], "page count").detail.startswith(
        "source 2, output unreadable: XMLSyntaxError: Attribute references external entity"
    )
    assert _check(results["unknown_pages"], "page count").passed
    assert _check(results["unknown_pages"], "page count").detail.startswith(
        "source page count unknown"
    )
    undecodable = _check(results["undecodable"], "width").detail
    assert undecodable.startswith("cannot decode the source: UnidentifiedImageError")
    assert "garbage.png" in undecodable and "/" not in undecodable  # no staging path


def test_a_photo_taken_on_its_side_is_compared_upright_as_the_tool_stores_it(
    results: dict[str, Verification],
) -> None:
    """The tool turns the pixels as the EXIF orientation says; stored sideways, they differ."""
    assert results["oriented"].ok, results["oriented"].summary()
    assert _check(results["oriented"], "width").detail == "source 30 px, output 30 px"
    assert _check(results["sideways"], "width").detail == "source 30 px, output 40 px"


def test_bit_depth_catches_what_pillow_cannot_see(results: dict[str, Verification]) -> None:
    """Pillow decodes 48-bit RGB as 24-bit: the pixels agree, the bit depth does not."""
    result = results["deep_to_8bit"]
    assert _check(result, "decoded pixels").passed
    assert _check(result, "bit depth").detail == "source 16, output 8 bits per sample"
    palette = _check(results["gif"], "bit depth")
    assert palette.passed and "not comparable" in palette.detail


def test_lossless_audio_is_compared_sample_for_sample(results: dict[str, Verification]) -> None:
    pcm = _check(results["wav24"], "decoded PCM").detail
    assert pcm.startswith("sha256 of decoded PCM (s32, 2 channels, 48000 samples): ")
    mp3 = results["mp3"]
    assert _check(mp3, "decoded PCM").detail == (
        "source lossy (mp3): decoded PCM not comparable; duration, rate and channels compared "
        "instead"
    )
    assert "one mp3 frame of 1152 samples" in _check(mp3, "duration").detail
    short = _check(results["short"], "duration").detail
    assert short.startswith("source 1.000000 s (48000 samples at 48000 Hz), output 0.500000 s")


def test_video_frames_are_compared_in_the_source_pixel_format(
    results: dict[str, Verification],
) -> None:
    """FFV1 stores bgr24 as bgr0: the MD5s agree once both are decoded as bgr24."""
    md5s = _check(results["raw_avi"], "frame MD5s").detail
    assert md5s.startswith("25 frames decoded as bgr24, every MD5 equal")
    assert _check(results["h264"], "frame MD5s").detail.startswith("source lossy (h264)")
    assert _check(results["h264"], "decoded PCM").detail.startswith("source lossy (aac)")
    assert _check(results["raw_avi"], "validation (mediaconch)").passed


def test_the_output_is_described_for_the_catalogue(results: dict[str, Verification]) -> None:
    png = results["png"]
    assert png.identification is not None and png.identification.puid == TIFF
    assert png.properties["width"] == 40 and png.properties["compression"] == "None"
    assert png.source_properties["compression"] == "Deflate"
    assert [finding.tool for finding in png.validation] == ["pillow"]
    video = results["raw_avi"]
    assert [finding.tool for finding in video.validation] == ["ffmpeg", "mediaconch"]
    assert video.properties["video_codec"] == "FFV1"


def test_summary_is_one_line_per_check(results: dict[str, Verification]) -> None:
    result = results["cropped"]
    lines = result.summary().splitlines()
    assert len(lines) == len(result.checks)
    for line, check in zip(lines, result.checks, strict=True):
        assert line == f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}"
    assert "FAIL width: source 40 px, output 39 px" in lines
    assert "PASS height: source 30 px, output 30 px" in lines
    assert result.checks[0].to_dict() == {
        "name": "tool exit",
        "passed": True,
        "detail": "exit code 0",
    }


def test_a_validator_that_cannot_run_fails_its_check(
    cases: dict[str, Candidate], toolbox: ToolBox, tmp_path: Path
) -> None:
    """'mediaconch is not installed' must not read as 'MediaConch accepts the file'."""
    good = cases["raw_avi"]
    candidate = Candidate(
        "missing", good.source, good.source_puid, good.output, "video", MKV, ("validate",), 0, None
    )
    found = verify(
        [candidate],
        registry=load_registry(),
        toolbox=toolbox,
        identify=get_engine("fido").identify_batch,
        work_dir=tmp_path,
        validators={"mediaconch": MediaConchValidator("no-such-mediaconch")},
    )["missing"]
    assert not found.ok
    assert _check(found, "validation (ffmpeg)").passed
    mediaconch = _check(found, "validation (mediaconch)")
    assert not mediaconch.passed
    assert mediaconch.detail.startswith("not checked: mediaconch is not installed")


def test_a_failing_batch_step_is_a_failed_check_not_an_exception(
    cases: dict[str, Candidate], toolbox: ToolBox, tmp_path: Path
) -> None:
    def broken(paths: object) -> list[object]:
        raise RuntimeError("fido fell over")

    found = verify(
        [cases["png"]],
        registry=load_registry(),
        toolbox=toolbox,
        identify=broken,  # type: ignore[arg-type]
        work_dir=tmp_path,
    )["png"]
    assert _failed(found) == {"identification"}
    assert "RuntimeError: fido fell over" in _check(found, "identification").detail


def test_the_image_tool_and_the_check_agree_on_photos_taken_on_their_side(
    tmp_path: Path, toolbox: ToolBox
) -> None:
    """The real Pillow action on a rotated JPEG and a rotated LZW TIFF: every check passes."""
    from preservation.migrate.policy import load_policy
    from preservation.migrate.tools import Job, tool

    picture = Image.new("RGB", (40, 30))
    picture.putdata([(x * 6, y * 8, 100) for y in range(30) for x in range(40)])
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.save(tmp_path / "side.jpg", exif=exif, quality=85)
    picture.save(tmp_path / "side.tif", exif=exif, compression="tiff_lzw")
    action = load_policy(None).action("image-to-tiff")
    sources = {
        "jpeg": (tmp_path / "side.jpg", "fmt/43"),
        "tiff": (tmp_path / "side.tif", "fmt/353"),
    }
    runs = tool("pillow").run(
        action, [Job(k, src, tmp_path / f"{k}-out.tif") for k, (src, _) in sources.items()]
    )
    assert all(r.error is None for r in runs), runs
    engine = get_engine("fido")
    verdicts = verify(
        [
            Candidate(
                r.key,
                sources[r.key][0],
                sources[r.key][1],
                r.output,
                "image",
                action.target_puid,
                action.verification,
                r.exit_code,
                r.error,
            )
            for r in runs
        ],
        registry=load_registry(None),
        toolbox=toolbox,
        identify=lambda paths: [engine.identify(p) for p in paths],
        work_dir=tmp_path / "work",
    )
    for key, verdict in verdicts.items():
        assert verdict.ok, (key, verdict.summary())
        assert _check(verdict, "height").detail == "source 40 px, output 40 px"


def test_a_transparent_colour_is_kept_and_its_loss_is_caught(tmp_path: Path) -> None:
    """An RGB PNG with a transparent colour (tRNS): kept as alpha by the tool; lost, it fails."""
    from preservation.migrate.policy import load_policy
    from preservation.migrate.tools import Job, tool

    picture = Image.new("RGB", (20, 10), (255, 0, 0))
    picture.paste((0, 0, 255), (10, 0, 20, 10))
    picture.save(tmp_path / "keyed.png", transparency=(255, 0, 0))
    picture.save(tmp_path / "lost.tif", compression="raw")  # the transparency dropped
    action = load_policy(None).action("image-to-tiff")
    [run] = tool("pillow").run(action, [Job("kept", tmp_path / "keyed.png", tmp_path / "k.tif")])
    assert run.error is None, run
    engine = get_engine("fido")
    with ToolBox() as box:
        verdicts = verify(
            [
                Candidate(
                    key,
                    tmp_path / "keyed.png",
                    "fmt/11",
                    out,
                    "image",
                    action.target_puid,
                    action.verification,
                    0,
                    None,
                )
                for key, out in (("kept", run.output), ("lost", tmp_path / "lost.tif"))
            ],
            registry=load_registry(None),
            toolbox=box,
            identify=lambda paths: [engine.identify(p) for p in paths],
            work_dir=tmp_path / "work",
        )
    assert verdicts["kept"].ok, verdicts["kept"].summary()
    assert not _check(verdicts["lost"], "decoded pixels").passed
