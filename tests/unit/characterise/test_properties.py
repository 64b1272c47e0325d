"""preservation/characterise/properties.py against the real tools' output for real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from preservation.characterise import (
    PROPERTY_KEYS,
    ExifTool,
    FFprobe,
    MediaInfo,
    load_registry,
    significant_properties,
)
from tests.unit.characterise.conftest import SAMPLES, require

IMAGES = [
    "png",
    "png_grey16",
    "png_palette",
    "jpeg",
    "jpeg_srgb",
    "jpeg_cmyk",
    "tiff",
    "tiff_lzw",
    "tiff_cmyk",
    "tiff_deflate_grey",
    "gif",
    "bmp",
    "webp",
    "jp2",
]
DOCUMENTS = ["pdf", "pdf_two_pages", "pdf_encrypted"]
AUDIO = ["wav", "flac", "mp3"]
VIDEO = ["mkv", "mp4"]


@pytest.fixture(scope="module")
def records(samples: dict[str, Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """Sample name -> tool -> that tool's record, each tool run once on its samples."""
    require("exiftool", "mediainfo")
    found: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in samples}
    exiftool = ExifTool()
    try:
        for tool, names in (
            (exiftool, IMAGES + DOCUMENTS),
            (MediaInfo(), AUDIO + VIDEO),
            (FFprobe(), AUDIO + VIDEO),
        ):
            run = tool.run([samples[n] for n in names])
            assert run.errors == {}, (tool.name, run.errors)
            for name, record in zip(names, run.per_file, strict=True):
                found[name][tool.name] = record
    finally:
        exiftool.close()
    return found


def _properties(records: dict[str, dict[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    entry = load_registry().entry_for(SAMPLES[name][1])
    assert entry is not None
    in_order = {t: records[name][t] for t in entry.characterise if t in records[name]}
    return significant_properties(entry.kind, in_order)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("png", (40, 30, 8, "RGB", "Deflate")),
        ("png_grey16", (16, 8, 16, "Grayscale", "Deflate")),
        ("png_palette", (40, 30, 8, "Palette", "Deflate")),
        ("jpeg", (40, 30, 8, "YCbCr", "JPEG")),
        ("jpeg_srgb", (40, 30, 8, "sRGB", "JPEG")),
        ("jpeg_cmyk", (40, 30, 8, "CMYK", "JPEG")),
        ("tiff", (40, 30, 8, "RGB", "None")),
        ("tiff_lzw", (40, 30, 8, "RGB", "LZW")),
        ("tiff_cmyk", (40, 30, 8, "CMYK", "None")),
        ("tiff_deflate_grey", (40, 30, 8, "Grayscale", "Deflate")),
        ("bmp", (40, 30, 8, "RGB", "None")),
        ("jp2", (40, 30, 8, "sRGB", "JPEG 2000")),
        ("webp", (40, 30, None, None, "VP8")),
    ],
)
def test_image_properties(
    records: dict[str, dict[str, dict[str, Any]]],
    name: str,
    expected: tuple[Any, ...],
) -> None:
    keys = ("width", "height", "bit_depth", "colour_space", "compression")
    wanted = {k: v for k, v in zip(keys, expected, strict=True) if v is not None}
    assert _properties(records, name) == wanted


def test_gif_bit_depth_is_the_palette_index_size(
    records: dict[str, dict[str, dict[str, Any]]],
) -> None:
    # Pillow trims the palette to the colours used, so the index size is whatever it chose
    index_bits = records["gif"]["exiftool"]["GIF:BitsPerPixel"]
    assert 1 <= index_bits <= 8
    assert _properties(records, "gif") == {
        "width": 40,
        "height": 30,
        "bit_depth": index_bits,
        "colour_space": "Palette",
        "compression": "LZW",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pdf", {"page_count": 1, "pdf_version": "1.4", "encrypted": False}),
        ("pdf_two_pages", {"page_count": 2, "pdf_version": "1.4", "encrypted": False}),
        # a user password: ExifTool can see the encryption, not the pages
        ("pdf_encrypted", {"pdf_version": "1.6", "encrypted": True}),
    ],
)
def test_document_properties(
    records: dict[str, dict[str, dict[str, Any]]], name: str, expected: dict[str, Any]
) -> None:
    assert _properties(records, name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wav", {"duration": 1.0, "sample_rate": 48000, "channels": 2, "bit_depth": 24}),
        ("flac", {"duration": 1.0, "sample_rate": 44100, "channels": 1, "bit_depth": 16}),
        ("mp3", {"duration": 1.044, "sample_rate": 44100, "channels": 1}),
    ],
)
def test_audio_properties(
    records: dict[str, dict[str, dict[str, Any]]], name: str, expected: dict[str, Any]
) -> None:
    codec = {"wav": "PCM", "flac": "FLAC", "mp3": "MP3"}[name]
    assert _properties(records, name) == {**expected, "audio_codec": codec}


@pytest.mark.parametrize(
    ("name", "video_codec", "audio_codec"), [("mkv", "FFV1", "FLAC"), ("mp4", "AVC", "AAC")]
)
def test_video_properties(
    records: dict[str, dict[str, dict[str, Any]]],
    name: str,
    video_codec: str,
    audio_codec: str,
) -> None:
    assert _properties(records, name) == {
        "duration": 1.0,
        "width": 64,
        "height": 48,
        "frame_rate": 25.0,
        "video_codec": video_codec,
        "audio_codec": audio_codec,
        "sample_rate": 44100,
        "channels": 1,
    }


@pytest.mark.parametrize("name", VIDEO + AUDIO)
def test_mediainfo_and_ffprobe_agree_where_both_know(
    records: dict[str, dict[str, dict[str, Any]]], name: str
) -> None:
    kind = "video" if name in VIDEO else "audio"
    by_mediainfo = significant_properties(kind, {"mediainfo": records[name]["mediainfo"]})
    by_ffprobe = significant_properties(kind, {"ffprobe": records[name]["ffprobe"]})
    shared = set(by_mediainfo) & set(by_ffprobe) - {"duration"}  # see the next test
    assert shared and {k: by_ffprobe[k] for k in shared} == {k: by_mediainfo[k] for k in shared}


def test_the_first_tool_wins_and_later_ones_fill_gaps(
    records: dict[str, dict[str, dict[str, Any]]],
) -> None:
    mp3 = records["mp3"]  # MediaInfo counts the encoder's padding; libavformat does not
    assert significant_properties("audio", {"mediainfo": mp3["mediainfo"]})["duration"] == 1.044
    assert significant_properties("audio", {"ffprobe": mp3["ffprobe"]})["duration"] == 1.0
    both = significant_properties(
        "audio", {"ffprobe": mp3["ffprobe"], "mediainfo": mp3["mediainfo"]}
    )
    assert both["duration"] == 1.0
    flac = records["flac"]  # PyAV does not expose FLAC's bits per sample; MediaInfo does
    assert "bit_depth" not in significant_properties("audio", {"ffprobe": flac["ffprobe"]})
    filled = significant_properties(
        "audio", {"ffprobe": flac["ffprobe"], "mediainfo": flac["mediainfo"]}
    )
    assert filled["bit_depth"] == 16


def test_values_are_never_none_and_keys_are_known(
    records: dict[str, dict[str, dict[str, Any]]],
) -> None:
    for name in records:
        entry = load_registry().entry_for(SAMPLES[name][1])
        assert entry is not None
        found = _properties(records, name)
        assert None not in found.values()
        assert set(found) <= set(PROPERTY_KEYS[entry.kind])


def test_nothing_to_say() -> None:
    assert significant_properties("text", {"exiftool": {"File:FileType": "TXT"}}) == {}
    assert significant_properties("image", {}) == {}
    assert significant_properties("image", {"exiftool": {}}) == {}
    assert significant_properties("image", {"jhove": {"width": 3}}) == {}
    assert significant_properties("audio", {"mediainfo": {"media": None}}) == {}


def test_values_the_tools_write_in_other_ways() -> None:
    """Shapes seen in other files than the samples: strings, lists of numbers, fractions."""
    exif = {
        "File:FileType": "TIFF",
        "IFD0:ImageWidth": "1200",
        "IFD0:ImageHeight": 800,
        "IFD0:BitsPerSample": "16 16 16",
        "IFD0:PhotometricInterpretation": 2,
        "IFD0:Compression": 32946,
        "ExifIFD:ColorSpace": 65535,  # "uncalibrated": the model decides
    }
    assert significant_properties("image", {"exiftool": exif}) == {
        "width": 1200,
        "height": 800,
        "bit_depth": 16,
        "colour_space": "RGB",
        "compression": "Deflate",
    }
    assert significant_properties("document", {"exiftool": {"PDF:PDFVersion": 2}}) == {
        "pdf_version": "2.0",
        "encrypted": False,
    }
    ntsc = {
        "format": {"duration": "10.010000"},
        "streams": [
            {"codec_type": "video", "codec_name": "prores", "avg_frame_rate": "30000/1001"},
            {"codec_type": "audio", "codec_name": "pcm_s16le", "sample_rate": "48000"},
        ],
    }
    assert significant_properties("video", {"ffprobe": ntsc}) == {
        "duration": 10.01,
        "frame_rate": 29.97,
        "video_codec": "ProRes",
        "audio_codec": "PCM",
        "sample_rate": 48000,
    }
