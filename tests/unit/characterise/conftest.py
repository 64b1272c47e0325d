"""Real files for the real tools, written once per test session.

Images come from Pillow, audio and video from ``ffmpeg -f lavfi`` (a sine
tone, a test pattern), PDFs from Pillow and pikepdf. A test that needs a
tool asks for it with ``require``: missing, it skips on a developer's machine
and FAILS under CI (``CI=true``), where a green run must mean the tools ran.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from preservation.characterise import ToolBox
from tests.conftest import require_program

#: The sample name, its file name and the PUID fido gives it (checked in test_registry).
SAMPLES: dict[str, tuple[str, str]] = {
    "png": ("rgb.png", "fmt/11"),
    "png_grey16": ("grey16.png", "fmt/11"),
    "png_palette": ("palette.png", "fmt/11"),
    "jpeg": ("photo.jpg", "fmt/43"),
    "jpeg_srgb": ("srgb.jpg", "fmt/43"),
    "jpeg_cmyk": ("cmyk.jpg", "fmt/41"),
    "tiff": ("plain.tif", "fmt/353"),
    "tiff_lzw": ("lzw.tif", "fmt/353"),
    "tiff_cmyk": ("cmyk.tif", "fmt/353"),
    "tiff_deflate_grey": ("grey-deflate.tif", "fmt/353"),
    "gif": ("anim.gif", "fmt/3"),
    "bmp": ("picture.bmp", "fmt/116"),
    "webp": ("picture.webp", "fmt/566"),
    "jp2": ("picture.jp2", "x-fmt/392"),
    "pdf": ("one-page.pdf", "fmt/18"),
    "pdf_two_pages": ("two-pages.pdf", "fmt/18"),
    "pdf_encrypted": ("encrypted.pdf", "fmt/20"),
    "wav": ("tone.wav", "fmt/143"),
    "flac": ("tone.flac", "fmt/279"),
    "mp3": ("tone.mp3", "fmt/134"),
    "mkv": ("ffv1.mkv", "fmt/569"),
    "mp4": ("h264.mp4", "fmt/199"),
    "text": ("notes.txt", "x-fmt/111"),
}


def require(*commands: str) -> None:
    """Skip (locally) or fail (CI) unless every command is on PATH."""
    for command in commands:
        require_program(command)


def _ffmpeg(target: Path, *args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args, str(target)],
        check=True,
        timeout=60,
    )


def _write_images(root: Path) -> None:
    from PIL import Image

    picture = Image.new("RGB", (40, 30), (10, 200, 30))
    picture.paste((200, 10, 30), (0, 0, 20, 15))
    picture.save(root / "rgb.png")
    Image.new("I;16", (16, 8), 4000).save(root / "grey16.png")
    picture.convert("P").save(root / "palette.png")
    picture.save(root / "photo.jpg", quality=90)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA001] = 1  # ExifIFD ColorSpace = sRGB
    picture.save(root / "srgb.jpg", exif=exif)
    picture.convert("CMYK").save(root / "cmyk.jpg")
    picture.save(root / "plain.tif")
    picture.save(root / "lzw.tif", compression="tiff_lzw")
    picture.convert("CMYK").save(root / "cmyk.tif")
    picture.convert("L").save(root / "grey-deflate.tif", compression="tiff_adobe_deflate")
    frames = [picture.convert("P"), Image.new("RGB", (40, 30), (0, 0, 255)).convert("P")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    picture.save(root / "picture.bmp")
    picture.save(root / "picture.webp")
    picture.save(root / "picture.jp2")
    picture.save(root / "one-page.pdf")
    picture.save(root / "two-pages.pdf", save_all=True, append_images=[picture])


def _write_encrypted_pdf(root: Path) -> None:
    import pikepdf

    # AES-128 (R4): ExifTool needs ~5 s per AES-256 file, to no purpose here.
    with pikepdf.open(root / "one-page.pdf") as pdf:
        pdf.save(
            root / "encrypted.pdf",
            encryption=pikepdf.Encryption(user="reader", owner="owner", R=4, aes=True),
        )


def _write_media(root: Path) -> None:
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
    pattern = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1"]
    _ffmpeg(root / "tone.wav", *tone, "-ar", "48000", "-ac", "2", "-c:a", "pcm_s24le")
    _ffmpeg(root / "tone.flac", *tone, "-c:a", "flac")
    _ffmpeg(root / "tone.mp3", *tone, "-c:a", "libmp3lame")
    _ffmpeg(root / "ffv1.mkv", *pattern, *tone, "-c:v", "ffv1", "-level", "3", "-c:a", "flac")
    _ffmpeg(
        root / "h264.mp4", *pattern, *tone, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"
    )


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every sample of ``SAMPLES``, by name."""
    require("ffmpeg")
    root = tmp_path_factory.mktemp("characterise-samples")
    _write_images(root)
    _write_encrypted_pdf(root)
    _write_media(root)
    (root / "notes.txt").write_text("plain words\n", encoding="utf-8")
    return {name: root / file_name for name, (file_name, _) in SAMPLES.items()}


class Spawns:
    """Counts processes started through ``subprocess.Popen``, by program name."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def of(self, program: str) -> list[list[str]]:
        return [c for c in self.calls if os.path.basename(c[0]) == program]


@pytest.fixture
def spawns(monkeypatch: pytest.MonkeyPatch) -> Spawns:
    counter = Spawns()
    real = subprocess.Popen

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kw: Any) -> None:
            counter.calls.append([os.fsdecode(a) for a in args])
            super().__init__(args, *rest, **kw)

    monkeypatch.setattr(subprocess, "Popen", Counting)
    return counter


@pytest.fixture
def toolbox() -> Iterator[ToolBox]:
    box = ToolBox()
    yield box
    box.close()
