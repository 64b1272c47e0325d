"""preservation/migrate/tools.py: every default action on real files, with the real tools.

The sources are made here: images by Pillow, sound and pictures by
``ffmpeg -f lavfi``, a PDF by Ghostscript, office documents by LibreOffice
from a text file, a CSV and a flat OpenDocument presentation. Each output is
identified by fido, as the verifier will: the target PUIDs of the policy are
what fido really says about what these tools write.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from preservation.errors import ConfigurationError, ToolUnavailableError
from preservation.identify.interfaces import Identification
from preservation.identify.registry import get_engine
from preservation.migrate import tools as tools_module
from preservation.migrate.policy import Action, Policy, load_policy
from preservation.migrate.tools import Job, ToolResult, command_for, tool
from tests.conftest import require_program

PROGRAMS = ("ffmpeg", "gs", "convert", "soffice")

#: Per default action, the sample sources it is run on.
SOURCES: dict[str, tuple[str, ...]] = {
    "image-to-tiff": (
        "photo.jpg",
        "rotated.jpg",
        "palette-transparent.png",
        "grey16.png",
        "anim.gif",
        "picture.bmp",
        "lzw.tif",
        "deflate-grey.tif",
        "packbits.tif",
        "jpeg.tif",
        "cmyk.tif",
        "picture.webp",
    ),
    "image-to-jpeg-access": ("palette-transparent.png", "cmyk.tif"),
    "audio-to-flac": ("tone.wav", "tone24.wav", "tone.aiff"),
    "audio-to-wav": ("tone.mp3", "tone.ogg", "tone.opus"),
    "audio-to-mp3-access": ("tone.wav",),
    "video-to-ffv1-mkv": (
        "h264.mp4",
        "h264-422.mov",
        "mjpeg.avi",
        "mpeg2.mpg",
        "vp9.webm",
        "h264.mkv",
        "theora.ogv",
    ),
    "video-to-mp4-access": ("mjpeg.avi",),
    "pdf-to-pdfa-2b": ("two-pages.pdf",),
    "text-to-pdfa-2b": ("text.docx", "text.doc", "text.rtf", "text.odt"),
    "text-to-odt": ("text.docx", "text.doc", "text.rtf"),
    "spreadsheet-to-pdfa-2b": ("sheet.xlsx", "sheet.xls", "sheet.ods"),
    "spreadsheet-to-ods": ("sheet.xlsx", "sheet.xls"),
    "presentation-to-pdfa-2b": ("slides.pptx", "slides.ppt", "slides.odp"),
    "presentation-to-odp": ("slides.pptx", "slides.ppt"),
}

#: fido 1.6.1 names LibreOffice's .ppt fmt/111 (OLE2): its PowerPoint container
#: signature has a stream name and no bytes to match, which fido does not use.
UNLISTED_SOURCES = {"slides.ppt": "fmt/111"}

FLAT_PRESENTATION = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.presentation">
 <office:body><office:presentation>
  <draw:page draw:name="one"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="12cm"
   svg:height="3cm"><draw:text-box><text:p>First slide</text:p></draw:text-box></draw:frame>
  </draw:page>
 </office:presentation></office:body></office:document>
"""


def _ffmpeg(target: Path, *args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(target)], check=True, timeout=60
    )


def _picture() -> object:
    from PIL import Image

    picture = Image.new("RGB", (40, 30), (10, 200, 30))
    picture.paste((200, 10, 30), (0, 0, 20, 15))
    picture.paste((20, 20, 220), (25, 20, 40, 30))
    return picture


def _write_images(root: Path) -> None:
    from PIL import Image, ImageCms

    picture = _picture()
    assert isinstance(picture, Image.Image)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    picture.save(root / "photo.jpg", quality=90, icc_profile=srgb, dpi=(300, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to show
    exif[0x010F] = "Camera maker"
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    picture.save(root / "rotated.jpg", exif=exif)
    palette = picture.convert("P")
    palette.info["transparency"] = 0
    palette.save(root / "palette-transparent.png", transparency=0)
    Image.new("I;16", (16, 8), 4000).save(root / "grey16.png")
    frames = [picture.convert("P"), Image.new("RGB", (40, 30), (0, 0, 255)).convert("P")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    picture.save(root / "picture.bmp")
    picture.save(root / "lzw.tif", compression="tiff_lzw", dpi=(150, 150))
    picture.convert("L").save(root / "deflate-grey.tif", compression="tiff_adobe_deflate")
    picture.save(root / "packbits.tif", compression="packbits")
    picture.save(root / "jpeg.tif", compression="jpeg")
    picture.convert("CMYK").save(root / "cmyk.tif", compression="tiff_lzw")
    picture.save(root / "picture.webp", lossless=True)
    # 16 bits per channel, which Pillow reads as 8
    _ffmpeg(
        root / "rgb48.png",
        *("-f", "lavfi", "-i", "testsrc=size=32x24:rate=1", "-frames:v", "1"),
        *("-pix_fmt", "rgb48be"),
    )


def _write_media(root: Path) -> None:
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
    pattern = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1"]
    _ffmpeg(root / "tone.wav", *tone, "-ac", "2", "-c:a", "pcm_s16le")
    _ffmpeg(root / "tone24.wav", *tone, "-c:a", "pcm_s24le")
    _ffmpeg(root / "tone.aiff", *tone)
    _ffmpeg(root / "tone.mp3", *tone, "-c:a", "libmp3lame")
    _ffmpeg(root / "tone.ogg", *tone, "-c:a", "libvorbis")
    _ffmpeg(root / "tone.opus", *tone, "-c:a", "libopus")
    _ffmpeg(root / "long.wav", "-f", "lavfi", "-i", "sine=duration=20")
    video = [*pattern, *tone]
    _ffmpeg(root / "h264.mp4", *video, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac")
    _ffmpeg(root / "h264-422.mov", *video, "-c:v", "libx264", "-pix_fmt", "yuv422p", "-c:a", "aac")
    _ffmpeg(root / "mjpeg.avi", *video, "-c:v", "mjpeg", "-c:a", "pcm_s16le")
    _ffmpeg(root / "mpeg2.mpg", *video, "-c:v", "mpeg2video", "-c:a", "mp2")
    _ffmpeg(root / "vp9.webm", *video, "-c:v", "libvpx-vp9", "-c:a", "libopus")
    _ffmpeg(root / "h264.mkv", *video, "-c:v", "libx264", "-c:a", "aac")
    _ffmpeg(root / "theora.ogv", *video, "-c:v", "libtheora", "-c:a", "libvorbis")


def _write_pdf(root: Path) -> None:
    subprocess.run(
        [
            *("gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pdfwrite"),
            f"-sOutputFile={root / 'two-pages.pdf'}",
            "-c",
            "/Helvetica findfont 20 scalefont setfont 72 720 moveto (One) show showpage "
            "72 720 moveto (Two) show showpage",
        ],
        check=True,
        timeout=60,
    )


def _soffice(profile: Path, target: str, outdir: Path, *sources: Path) -> None:
    subprocess.run(
        [
            *("soffice", "--headless", "--norestore"),
            f"-env:UserInstallation={profile.as_uri()}",
            *("--convert-to", target, "--outdir", str(outdir), *map(str, sources)),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )


def _write_office(root: Path, scratch: Path) -> None:
    """Office sources from LibreOffice, four processes at a time (each its own profile)."""
    text, csv, flat = scratch / "text.txt", scratch / "sheet.csv", scratch / "slides.fodp"
    text.write_text("A migration test\nwith two lines\n", "utf-8")
    csv.write_text("name,value\nalpha,1\nbeta,2\n", "utf-8")
    flat.write_text(FLAT_PRESENTATION, "utf-8")
    conversions = [
        ("docx:MS Word 2007 XML", text),
        ("doc:MS Word 97", text),
        ("rtf", text),
        ("odt", text),
        ("xlsx:Calc MS Excel 2007 XML", csv),
        ("xls:MS Excel 97", csv),
        ("ods", csv),
        ("pptx:Impress MS PowerPoint 2007 XML", flat),
        ("ppt:MS PowerPoint 97", flat),
        ("odp", flat),
    ]
    groups: list[list[tuple[str, Path]]] = [conversions[i::4] for i in range(4)]

    def convert(numbered: tuple[int, list[tuple[str, Path]]]) -> None:
        number, group = numbered
        for target, source in group:
            _soffice(scratch / f"profile-{number}", target, root, source)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(convert, enumerate(groups)))
    for target, source in conversions:
        assert (root / f"{source.stem}.{target.split(':')[0]}").is_file(), target


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for program in PROGRAMS:
        require_program(program)
    root = tmp_path_factory.mktemp("migrate-samples")
    scratch = tmp_path_factory.mktemp("migrate-scratch")
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = [
            pool.submit(_write_office, root, scratch),
            pool.submit(_write_media, root),
            pool.submit(_write_images, root),
            pool.submit(_write_pdf, root),
        ]
        for future in done:
            future.result()
    return root


class Fido:
    """The archive's identification, one file at a time."""

    def __init__(self) -> None:
        self.engine = get_engine("fido")

    def identify(self, path: Path) -> Identification:
        return self.engine.identify_batch([path])[0]


@pytest.fixture(scope="module")
def fido() -> Fido:
    return Fido()


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def _jobs(action: Action, sources: list[Path], outdir: Path) -> list[Job]:
    outdir.mkdir(parents=True, exist_ok=True)
    return [
        Job(key=n, source=s, output=outdir / f"{n}-{s.stem}{action.extension}")
        for n, s in enumerate(sources)
    ]


def _assert_ok(result: ToolResult) -> None:
    assert result.error is None, (result.command, result.stderr)
    assert result.exit_code == 0
    assert result.output.stat().st_size > 0
    assert result.seconds >= 0


# --- every default action ----------------------------------------------------------


def test_every_default_action_has_samples(policy: Policy) -> None:
    assert {a["id"] for a in policy.to_dict()["actions"]} == set(SOURCES)


@pytest.mark.parametrize("action_id", sorted(SOURCES))
def test_a_default_action_makes_what_fido_calls_its_target(
    action_id: str, policy: Policy, samples: Path, fido: Fido, tmp_path: Path
) -> None:
    action = policy.action(action_id)
    sources = [samples / name for name in SOURCES[action_id]]
    for source in sources:  # the samples are files the policy would give this action
        puid = fido.identify(source).puid
        if source.name in UNLISTED_SOURCES:
            assert puid == UNLISTED_SOURCES[source.name]
            continue
        rule = policy.rule_for(puid)
        assert rule is not None, (source.name, puid)
        assert action in (*rule.preservation, rule.access), (source.name, puid, rule.name)
    jobs = _jobs(action, sources, tmp_path)
    results = tool(action.tool).run(action, jobs, workers=2, timeout=120)
    assert [r.key for r in results] == [j.key for j in jobs]
    for job, result in zip(jobs, results, strict=True):
        _assert_ok(result)
        assert result.output == job.output
        found = fido.identify(result.output)
        assert found.puids == (action.target_puid,), (job.source.name, found)
    assert not any(p.name.startswith(".migrate-") for p in tmp_path.iterdir())


def test_tool_versions_look_right() -> None:
    for program in PROGRAMS:
        require_program(program)
    patterns = {
        "pillow": r"Pillow \d+\.\d+\.\d+",
        "ffmpeg": r"ffmpeg \d+\.\d+(\.\d+)?",
        "ghostscript": r"(GPL |Artifex )?Ghostscript \d+\.\d+\.\d+",
        "imagemagick": r"ImageMagick \d+\.\d+\.\d+(-\d+)?",
        "libreoffice": r"LibreOffice \d+\.\d+\.\d+\.\d+",
    }
    for name, pattern in patterns.items():
        found = tool(name)
        assert found is tool(name)
        assert found.name == name
        assert re.fullmatch(pattern, found.version()), found.version()


def test_an_unknown_tool_and_a_missing_program(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="handbrake"):
        tool("handbrake")
    tools_module._tool.cache_clear()
    try:
        monkeypatch.setenv("PATH", "/nonexistent")
        with pytest.raises(ToolUnavailableError, match="ghostscript") as caught:
            tool("ghostscript")
        assert caught.value.context["tool"] == "ghostscript"
        assert tool("pillow").name == "pillow"  # in-process: nothing to find
    finally:
        tools_module._tool.cache_clear()


# --- images --------------------------------------------------------------------------


def test_tiffs_keep_pixels_frames_and_metadata(
    policy: Policy, samples: Path, tmp_path: Path
) -> None:
    from PIL import Image, ImageOps, ImageSequence

    action = policy.action("image-to-tiff")
    names = ["photo.jpg", "rotated.jpg", "palette-transparent.png", "grey16.png", "anim.gif"]
    names += ["lzw.tif", "jpeg.tif", "cmyk.tif"]
    jobs = _jobs(action, [samples / n for n in names], tmp_path)
    for result in tool("pillow").run(action, jobs, workers=4):
        _assert_ok(result)
        assert result.command == ("pillow", "save", "TIFF", "compression=raw")
    expected_modes = {
        "palette-transparent.png": "RGBA",
        "grey16.png": "I;16",
        "anim.gif": "RGB",
        "cmyk.tif": "CMYK",
        "jpeg.tif": "RGB",
    }
    for job in jobs:
        with Image.open(job.source) as source, Image.open(job.output) as output:
            assert getattr(output, "n_frames", 1) == getattr(source, "n_frames", 1)
            for page, (ours, theirs) in enumerate(
                zip(ImageSequence.Iterator(output), ImageSequence.Iterator(source), strict=True)
            ):
                assert ours.getexif()[259] == 1, (job.source.name, page)  # no compression
                upright = ImageOps.exif_transpose(theirs)
                if upright.mode in ("P", "PA"):
                    upright = upright.convert(ours.mode)
                assert ours.mode == expected_modes.get(job.source.name, upright.mode)
                assert ours.size == upright.size
                assert ours.tobytes() == upright.tobytes(), (job.source.name, page)
    by_name = {j.source.name: j.output for j in jobs}
    with Image.open(by_name["photo.jpg"]) as photo:
        assert photo.info["icc_profile"] == Image.open(samples / "photo.jpg").info["icc_profile"]
        assert photo.info["dpi"] == pytest.approx((300, 300))
    with Image.open(by_name["rotated.jpg"]) as rotated:
        # the orientation is in the pixels (30 wide), not in a tag a reader would apply again
        assert rotated.size == (30, 40)
        exif = rotated.getexif()
        assert 0x0112 not in exif
        assert exif[0x010F] == "Camera maker"
        assert exif.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
    with Image.open(by_name["lzw.tif"]) as lzw:
        assert lzw.info["dpi"] == pytest.approx((150, 150))


def test_sixteen_bit_colour_is_refused_by_pillow_and_kept_by_imagemagick(
    policy: Policy, samples: Path, fido: Fido, tmp_path: Path
) -> None:
    from PIL import Image

    source = samples / "rgb48.png"
    pillow = policy.action("image-to-tiff")
    [refused] = tool("pillow").run(pillow, _jobs(pillow, [source], tmp_path / "pillow"))
    assert refused.exit_code == 1
    assert refused.error is not None and "imagemagick" in refused.error
    assert not refused.output.exists()
    magick = replace(
        pillow,
        id="magick-tiff",
        tool="imagemagick",
        arguments=("{input}", "-compress", "None", "{output}"),
    )
    [kept] = tool("imagemagick").run(magick, _jobs(magick, [source], tmp_path / "magick"))
    _assert_ok(kept)
    assert fido.identify(kept.output).puids == ("fmt/353",)
    with Image.open(kept.output) as tiff:
        assert tiff.getexif()[258] == (16, 16, 16)
        assert tiff.getexif()[259] == 1


def test_imagemagick_reads_a_name_it_would_otherwise_parse(
    policy: Policy, samples: Path, tmp_path: Path
) -> None:
    """``scan[1].gif`` is frame 1 of ``scan.gif`` to ImageMagick, given as it is."""
    odd = tmp_path / "in" / "scan[1] png:x.gif"
    odd.parent.mkdir()
    shutil.copy(samples / "anim.gif", odd)
    magick = replace(
        policy.action("image-to-tiff"),
        tool="imagemagick",
        arguments=("{input}", "-compress", "None", "{output}"),
    )
    job = Job("odd", odd, tmp_path / "out[2]%d.tif")
    [result] = tool("imagemagick").run(magick, [job])
    _assert_ok(result)
    assert result.output == job.output
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["out[2]%d.tif"]


# --- audio and video -------------------------------------------------------------------


def _md5(path: Path, *args: str) -> str:
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), *args, "-f", "md5", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode().strip()


def _probe(path: Path, entries: str) -> str:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", entries]
        + ["-of", "csv=p=0", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode().strip()


def test_flac_and_ffv1_keep_the_decoded_samples_and_frames(
    policy: Policy, samples: Path, tmp_path: Path
) -> None:
    require_program("ffprobe")
    flac = policy.action("audio-to-flac")
    wavs = [samples / "tone.wav", samples / "tone24.wav"]
    for result, source in zip(
        tool("ffmpeg").run(flac, _jobs(flac, wavs, tmp_path)), wavs, strict=True
    ):
        _assert_ok(result)
        pcm = "pcm_s16le" if source.name == "tone.wav" else "pcm_s32le"  # 24 bits decode as s32
        assert _md5(result.output, "-map", "0:a", "-c:a", pcm) == _md5(
            source, "-map", "0:a", "-c:a", pcm
        )
    ffv1 = policy.action("video-to-ffv1-mkv")
    videos = [samples / "mjpeg.avi", samples / "h264-422.mov", samples / "vp9.webm"]
    results = tool("ffmpeg").run(ffv1, _jobs(ffv1, videos, tmp_path / "video"), workers=3)
    for result, source in zip(results, videos, strict=True):
        _assert_ok(result)
        pix_fmt = _probe(source, "stream=pix_fmt")
        assert _md5(result.output, "-map", "0:v", "-pix_fmt", pix_fmt) == _md5(
            source, "-map", "0:v", "-pix_fmt", pix_fmt
        ), source.name
        assert _probe(result.output, "stream=codec_name") == "ffv1"
    by_name = {s.name: r.output for s, r in zip(videos, results, strict=True)}
    # full-range MJPEG (yuvj444p) is relabelled, not squeezed into limited range
    assert _probe(by_name["mjpeg.avi"], "stream=pix_fmt,color_range") == "yuv444p,pc"
    assert _probe(by_name["h264-422.mov"], "stream=pix_fmt") == "yuv422p"


def test_a_timeout_kills_the_tool_and_is_the_jobs_error(samples: Path, tmp_path: Path) -> None:
    slow = Action(
        id="slow",
        tool="ffmpeg",
        arguments=("-re", "-i", "{input}", "-c:a", "flac", "{output}"),  # -re: real time
        target_puid="fmt/279",
        extension=".flac",
        kind="audio",
        verification=("output",),
    )
    [result] = tool("ffmpeg").run(slow, _jobs(slow, [samples / "long.wav"], tmp_path), timeout=0.5)
    assert result.error is not None and result.error.startswith("timeout")
    assert "0.5 s" in result.error
    assert result.exit_code < 0
    assert result.seconds < 10
    assert not result.output.exists()


# --- documents -------------------------------------------------------------------------


def _xmp(pdf: object) -> tuple[str | None, str | None]:
    meta = pdf.open_metadata()  # type: ignore[attr-defined]
    return meta.get("pdfaid:part"), meta.get("pdfaid:conformance")


def test_pdfa_outputs_declare_pdfa_2b_and_carry_an_output_intent(
    policy: Policy, samples: Path, tmp_path: Path
) -> None:
    import pikepdf

    ghostscript = policy.action("pdf-to-pdfa-2b")
    [gs] = tool("ghostscript").run(
        ghostscript, [Job("gs", samples / "two-pages.pdf", tmp_path / "100% two pages.pdf")]
    )
    _assert_ok(gs)
    assert "Page 1" not in gs.stderr.splitlines()
    writer = policy.action("text-to-pdfa-2b")
    [lo] = tool("libreoffice").run(writer, _jobs(writer, [samples / "text.docx"], tmp_path))
    _assert_ok(lo)
    for result, pages in ((gs, 2), (lo, 1)):
        with pikepdf.open(result.output) as pdf:
            assert _xmp(pdf) == ("2", "B")
            [intent] = pdf.Root.OutputIntents
            assert intent.S == "/GTS_PDFA1"
            assert len(intent.DestOutputProfile.read_bytes()) > 0
            assert len(pdf.pages) == pages


def test_a_docx_becomes_pdfa_and_odt(policy: Policy, samples: Path, tmp_path: Path) -> None:
    rule = policy.rule_for("fmt/412")
    assert rule is not None
    outputs = []
    for action in rule.preservation:
        [result] = tool(action.tool).run(action, _jobs(action, [samples / "text.docx"], tmp_path))
        _assert_ok(result)
        outputs.append(result.output)
    assert [p.suffix for p in outputs] == [".pdf", ".odt"]
    with zipfile.ZipFile(outputs[1]) as odt:
        assert odt.read("mimetype") == b"application/vnd.oasis.opendocument.text"
        assert b"A migration test" in odt.read("content.xml")


def test_one_soffice_converts_a_batch_with_one_stem_twice_and_a_broken_file(
    policy: Policy, samples: Path, tmp_path: Path
) -> None:
    odt = policy.action("text-to-odt")
    sources = []
    for folder, words in (("a", "alpha words"), ("b", "beta words")):
        (tmp_path / folder).mkdir()
        text = tmp_path / folder / "report.txt"
        text.write_text(words + "\n", "utf-8")
        _soffice(tmp_path / f"profile-{folder}", "docx:MS Word 2007 XML", tmp_path / folder, text)
        sources.append(tmp_path / folder / "report.docx")
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 not a zip at all")
    sources.append(broken)
    out = tmp_path / "out"
    out.mkdir()
    jobs = [Job(n, s, out / f"{n}.odt") for n, s in enumerate(sources)]
    results = tool("libreoffice").run(odt, jobs, workers=1)
    assert len({r.command for r in results}) == 1  # one process for the batch
    assert [os.path.basename(a) for a in results[0].command[-3:]] == ["0.docx", "1.docx", "2.docx"]
    for result, expected in zip(results[:2], (b"alpha words", b"beta words"), strict=True):
        _assert_ok(result)
        with zipfile.ZipFile(result.output) as package:
            assert expected in package.read("content.xml")
    assert results[2].error is not None and "could not load" in results[2].error
    assert not results[2].output.exists()
    assert sorted(p.name for p in out.iterdir()) == ["0.odt", "1.odt"]
    for folder in ("a", "b"):  # nothing written beside the sources (no lock files, no output)
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == [
            "report.docx",
            "report.txt",
        ]


# --- failures are data -------------------------------------------------------------------

CORRUPT = {
    "image-to-tiff": ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
    "audio-to-flac": ("broken.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 30),
    "pdf-to-pdfa-2b": ("broken.pdf", b"not a PDF: Ghostscript reads it as PostScript\n"),
    "text-to-odt": ("broken.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500),
}


@pytest.mark.parametrize("action_id", sorted(CORRUPT))
def test_a_corrupt_source_is_a_result_with_an_error(
    action_id: str, policy: Policy, tmp_path: Path
) -> None:
    for program in PROGRAMS:
        require_program(program)
    name, data = CORRUPT[action_id]
    source = tmp_path / name
    source.write_bytes(data)
    action = policy.action(action_id)
    [result] = tool(action.tool).run(action, _jobs(action, [source], tmp_path / "out"))
    assert result.error, result
    assert not result.output.exists()
    if action.tool != "libreoffice":  # soffice exits 0 and simply writes nothing
        assert result.exit_code != 0


def test_a_program_that_cannot_start_is_a_result_too(tmp_path: Path) -> None:
    require_program("ffmpeg")
    ffmpeg = tool("ffmpeg")
    assert isinstance(ffmpeg, tools_module._FFmpeg)
    gone = tools_module._FFmpeg(str(tmp_path / "no-ffmpeg-here"))
    action = load_policy().action("audio-to-flac")
    [result] = gone.run(action, [Job(1, tmp_path / "x.wav", tmp_path / "x.flac")])
    assert result.error is not None and result.error.startswith("cannot start")
    assert result.exit_code == 127


# --- the command a person would run --------------------------------------------------------


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def profiles() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for profile in made:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize(
    ("action_id", "source_name"),
    [
        ("image-to-tiff", "anim.gif"),
        ("audio-to-flac", "tone.wav"),
        ("pdf-to-pdfa-2b", "two-pages.pdf"),
        ("text-to-odt", "text.docx"),
    ],
)
def test_command_for_runs_alone_and_makes_the_same_kind_of_output(
    action_id: str,
    source_name: str,
    policy: Policy,
    samples: Path,
    fido: Fido,
    tmp_path: Path,
    profiles: list[Path],
) -> None:
    action = policy.action(action_id)
    job = Job(1, samples / source_name, tmp_path / f"alone{action.extension}")
    argv = command_for(action, job)
    assert all(isinstance(a, str) for a in argv)
    if action.tool == "libreoffice":
        profile = next(a for a in argv if a.startswith("-env:UserInstallation=file://"))
        profiles.append(Path(profile.split("file://", 1)[1]))
        made = tmp_path / f"{job.source.stem}{action.extension}"  # named after the source
    else:
        made = job.output
    subprocess.run(argv, check=True, timeout=120, capture_output=True, stdin=subprocess.DEVNULL)
    assert made.stat().st_size > 0
    assert fido.identify(made).puids == (action.target_puid,)
    if action.tool in ("pillow", "ffmpeg"):  # deterministic writers: the very same bytes
        [result] = tool(action.tool).run(
            action, [Job(2, job.source, tmp_path / f"run{action.extension}")]
        )
        _assert_ok(result)
        if action.tool == "pillow":
            assert _fingerprint(result.output) == _fingerprint(made)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and text in cmdline:
            found.append(cmdline)
    return found


def test_a_hung_soffice_is_killed_and_each_file_retried_alone(
    policy: Policy, samples: Path, tmp_path: Path
) -> None:
    require_program("soffice")
    odt = policy.action("text-to-odt")
    jobs = _jobs(odt, [samples / "text.docx", samples / "text.rtf"], tmp_path)
    # Nothing is printed before the first file is loaded: 0.3 s of silence is a hang here.
    results = tool("libreoffice").run(odt, jobs, workers=1, timeout=0.3)
    for result in results:
        assert result.error == "timeout: libreoffice printed nothing for 0.3 s and was killed"
        assert result.exit_code < 0
        assert not result.output.exists()
    # retried alone: each result names its own single-file command
    assert [r.command[-1].rsplit("/", 1)[-1] for r in results] == ["0.docx", "0.rtf"]
    profile = next(a for a in results[0].command if a.startswith("-env:UserInstallation="))
    assert _processes_mentioning(profile.split("file://", 1)[1]) == []
