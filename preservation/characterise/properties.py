"""A few significant properties per file, from the tools' own records.

The tools' full outputs go into the AIP as they are; what the catalogue keeps
(``files.properties``) and the METS repeats (PREMIS
``objectCharacteristicsExtension``) is a small dict with the same keys
whatever tool measured it, so that "every TIFF wider than 10,000 px" or "every
WAV under 44.1 kHz" is one query (``aip search --puid fmt/353 --property
'width>10000'``, ``GET /api/v1/aips?property=...``). Each tool names things its own way
(ExifTool's ``PNG:ColorType`` 2 and ``IFD0:PhotometricInterpretation`` 2 are
both "RGB"; ffprobe's ``h264`` is MediaInfo's ``AVC``), so each (tool, kind)
pair has a small reader here, and values are spoken in one vocabulary:
MediaInfo's names for codecs, plain words for colour spaces and compression.

Keys by kind (a key is left out when no tool knows it; never None):

* image: ``width``, ``height`` (px), ``bit_depth`` (bits per sample; for
  palette images, bits per index), ``colour_space``, ``compression``;
* audio: ``duration`` (s, 6 decimals), ``sample_rate`` (Hz), ``channels``,
  ``audio_codec``, ``bit_depth``;
* video: ``duration``, ``width``, ``height``, ``frame_rate`` (3 decimals),
  ``video_codec``, and with an audio track ``audio_codec``, ``sample_rate``,
  ``channels``;
* document: ``page_count``, ``pdf_version`` (``"1.4"``), ``encrypted``;
* database (SIARD): ``schemas``, ``tables``, ``rows`` (all tables, as the
  archive records them), ``lob_count``, ``lob_bytes``, ``source_dbms``, and
  ``described``: the words a curator searches a database by, a list of
  one-line strings (``"schema.table"``, column names, the database's, schemas',
  tables', views' and columns' descriptions), capped at ``DESCRIBED_LIMIT``
  characters in all. ``catalog/search.py`` indexes them.

Records come in the registry entry's ``characterise`` order: the first tool's
value wins, later tools fill gaps. These are pure functions of plain dicts, so
they are tested against real tools' output for real files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

__all__ = ["DESCRIBED_LIMIT", "PROPERTY_KEYS", "significant_properties"]

#: Most characters ``described`` holds, all strings together: every name of a
#: database of a few hundred tables, kept small enough for every copy of the METS.
DESCRIBED_LIMIT = 20_000
#: Longest single string of ``described`` (a long description is cut).
_DESCRIBED_ITEM = 300

PROPERTY_KEYS: Mapping[str, tuple[str, ...]] = {
    "image": ("width", "height", "bit_depth", "colour_space", "compression"),
    "audio": ("duration", "sample_rate", "channels", "audio_codec", "bit_depth"),
    "video": (
        "duration",
        "width",
        "height",
        "frame_rate",
        "video_codec",
        "audio_codec",
        "sample_rate",
        "channels",
    ),
    "document": ("page_count", "pdf_version", "encrypted"),
    "text": (),
    "database": (
        "schemas",
        "tables",
        "rows",
        "lob_count",
        "lob_bytes",
        "source_dbms",
        "described",
    ),
    "other": (),
}

Record = Mapping[str, Any]
Reader = Callable[[Record], dict[str, Any]]


def significant_properties(kind: str, records: Mapping[str, Record]) -> dict[str, Any]:
    """The properties of ``kind`` found in ``records`` (tool name -> that tool's record)."""
    found: dict[str, Any] = {}
    for tool, record in records.items():
        reader = _READERS.get((tool, kind))
        if reader is None or not record:
            continue
        for key, value in reader(record).items():
            if value is not None:
                found.setdefault(key, value)
    order = PROPERTY_KEYS.get(kind, ())
    return {key: found[key] for key in order if key in found}


# Parsing the tools' values: numbers arrive as numbers, as "48000", "8 8 8", "2 / 1"...

_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)(?:\s*px)?(?:\s*(?:/|\s).*)?$", re.S)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _NUMBER.match(value)
        if match:
            return float(match.group(1))
    return None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) and number >= 0 else None


def _positive(value: Any) -> int | None:
    number = _int(value)
    return number if number else None


def _rate(value: Any) -> float | None:
    """A frame rate: ``25``, ``"29.970"`` or ffprobe's ``"30000/1001"``; None for 0/0."""
    if isinstance(value, str) and "/" in value:
        try:
            fraction = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            return None
        return round(float(fraction), 3) if fraction > 0 else None
    number = _number(value)
    return round(number, 3) if number else None


def _seconds(value: Any) -> float | None:
    number = _number(value)
    return round(number, 6) if number is not None and number >= 0 else None


def _lookup(table: Mapping[int, str], value: Any) -> str | None:
    code = _int(value)
    return None if code is None else table.get(code)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


# ExifTool (-G1 -n): images.

_IMAGE_GROUPS = ("File", "PNG", "IFD0", "GIF", "RIFF", "Jpeg2000", "SVG")
_PNG_COLOUR = {0: "Grayscale", 2: "RGB", 3: "Palette", 4: "Grayscale", 6: "RGB"}
_TIFF_PHOTOMETRIC = {
    0: "Grayscale",
    1: "Grayscale",
    2: "RGB",
    3: "Palette",
    4: "Transparency Mask",
    5: "CMYK",
    6: "YCbCr",
    8: "CIELab",
    9: "ICCLab",
    10: "ITULab",
}
_TIFF_COMPRESSION = {
    1: "None",
    2: "CCITT RLE",
    3: "CCITT Group 3",
    4: "CCITT Group 4",
    5: "LZW",
    6: "JPEG",
    7: "JPEG",
    8: "Deflate",
    32946: "Deflate",
    32773: "PackBits",
    34712: "JPEG 2000",
    34925: "LZMA",
    50000: "Zstandard",
    50001: "WebP",
}
_BMP_COMPRESSION = {0: "None", 1: "RLE8", 2: "RLE4", 3: "None", 4: "JPEG", 5: "PNG", 6: "None"}
_JP2_COLOUR = {
    0: "Bi-level",
    1: "YCbCr",
    3: "YCbCr",
    4: "YCbCr",
    9: "PhotoYCC",
    11: "CMY",
    12: "CMYK",
    13: "YCCK",
    14: "CIELab",
    15: "Bi-level",
    16: "sRGB",
    17: "Grayscale",
    18: "sYCC",
    20: "e-sRGB",
    21: "ROMM-RGB",
    24: "e-sYCC",
}
_EXIF_COLOUR = {1: "sRGB", 2: "Adobe RGB"}
_ICC_COLOUR = {"RGB": "RGB", "GRAY": "Grayscale", "CMYK": "CMYK", "Lab": "CIELab", "YCbr": "YCbCr"}


def _image_tag(record: Record, tag: str) -> Any:
    for group in _IMAGE_GROUPS:
        value = record.get(f"{group}:{tag}")
        if value is not None:
            return value
    return None


def _exiftool_image(record: Record) -> dict[str, Any]:
    file_type = str(record.get("File:FileType") or "").upper()
    width, height = (
        _positive(_image_tag(record, "ImageWidth")),
        _positive(_image_tag(record, "ImageHeight")),
    )
    size = record.get("Composite:ImageSize")
    if (width is None or height is None) and isinstance(size, str):
        parts = re.split(r"[x\s]+", size.strip())
        if len(parts) == 2:
            width, height = width or _positive(parts[0]), height or _positive(parts[1])
    return {
        "width": width,
        "height": height,
        "bit_depth": _image_bit_depth(record, file_type),
        "colour_space": _image_colour(record, file_type),
        "compression": _image_compression(record, file_type),
    }


def _image_bit_depth(record: Record, file_type: str) -> int | None:
    if "PNG:BitDepth" in record:
        return _positive(record["PNG:BitDepth"])
    if "Jpeg2000:BitsPerComponent" in record:
        raw = _int(record["Jpeg2000:BitsPerComponent"])  # stored as bits - 1, sign in bit 7
        return None if raw is None or raw == 255 else (raw & 0x7F) + 1
    if "GIF:BitsPerPixel" in record:
        return _positive(record["GIF:BitsPerPixel"])
    if file_type == "BMP" or "File:BitDepth" in record:
        per_pixel = _positive(record.get("File:BitDepth"))
        if per_pixel is None or per_pixel <= 8:
            return per_pixel
        return {24: 8, 32: 8, 48: 16, 64: 16}.get(per_pixel)
    for key in ("IFD0:BitsPerSample", "File:BitsPerSample"):
        if key in record:
            return _positive(record[key])  # "8 8 8": the first sample's
    return None


def _image_colour(record: Record, file_type: str) -> str | None:
    colour = _lookup(_EXIF_COLOUR, record.get("ExifIFD:ColorSpace"))
    if colour is not None:
        return colour
    if "PNG:ColorType" in record:
        colour = _lookup(_PNG_COLOUR, record["PNG:ColorType"])
    elif "IFD0:PhotometricInterpretation" in record:
        colour = _lookup(_TIFF_PHOTOMETRIC, record["IFD0:PhotometricInterpretation"])
    elif "Jpeg2000:ColorSpace" in record:
        colour = _lookup(_JP2_COLOUR, record["Jpeg2000:ColorSpace"])
    elif "File:ColorComponents" in record:  # JPEG
        components = _int(record["File:ColorComponents"])
        transform = _int(record.get("Adobe:ColorTransform"))
        if components == 1:
            colour = "Grayscale"
        elif components == 3:
            colour = "RGB" if transform == 0 else "YCbCr"
        elif components == 4:
            colour = "YCCK" if transform == 2 else "CMYK"
    elif file_type == "GIF":
        colour = "Palette"
    elif file_type == "BMP":
        depth = _positive(record.get("File:BitDepth"))
        colour = None if depth is None else "Palette" if depth <= 8 else "RGB"
    if colour is None:
        icc = _text(record.get("ICC-header:ColorSpaceData"))
        colour = _ICC_COLOUR.get(icc) if icc else None
    return colour


def _image_compression(record: Record, file_type: str) -> str | None:
    if file_type == "TIFF":
        return _lookup(_TIFF_COMPRESSION, record.get("IFD0:Compression"))
    if file_type == "BMP":
        return _lookup(_BMP_COMPRESSION, record.get("File:Compression"))
    if file_type == "WEBP":
        # ExifTool 12 reports a VP8 (lossy) frame header; for VP8L (lossless) it says nothing
        return "VP8" if "RIFF:VP8Version" in record else None
    return {
        "PNG": "Deflate",
        "JPEG": "JPEG",
        "GIF": "LZW",
        "JP2": "JPEG 2000",
        "JPX": "JPEG 2000",
        "JPM": "JPEG 2000",
    }.get(file_type)


# ExifTool: documents.

_PAGE_TAGS = ("PDF:PageCount", "XML:Pages", "FlashPix:Pages", "XMP-xmpTPg:NPages")


def _exiftool_document(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in _PAGE_TAGS:
        pages = _int(record.get(tag))
        if pages is not None:
            out["page_count"] = pages
            break
    version = record.get("PDF:PDFVersion")
    if isinstance(version, int | float) and not isinstance(version, bool):
        # -n gives the header's "1.4" as a JSON number; 2 or 2.0 means "2.0"
        out["pdf_version"] = f"{version:.1f}" if float(version).is_integer() else str(version)
    elif _text(version):
        out["pdf_version"] = _text(version)
    if record.get("PDF:Encryption"):
        out["encrypted"] = True
    elif "PDF:PDFVersion" in record:
        out["encrypted"] = False
    elif "FlashPix:Security" in record:
        out["encrypted"] = bool((_int(record["FlashPix:Security"]) or 0) & 1)
    return out


# MediaInfo (--Output=JSON): one element with media/track[], values as strings.

_MPEG_AUDIO_LAYERS = {"Layer 1": "MP1", "Layer 2": "MP2", "Layer 3": "MP3"}


def _tracks(record: Record) -> tuple[Record, Record | None, Record | None]:
    media = record.get("media")
    tracks = media.get("track") if isinstance(media, Mapping) else None
    if isinstance(tracks, Mapping):
        tracks = [tracks]
    if not isinstance(tracks, list):
        tracks = []
    general: Record = {}
    video = audio = None
    for track in tracks:
        if not isinstance(track, Mapping):
            continue
        kind = track.get("@type")
        if kind == "General" and not general:
            general = track
        elif kind == "Video" and video is None:
            video = track
        elif kind == "Audio" and audio is None:
            audio = track
    return general, video, audio


def _mediainfo_audio_codec(audio: Record) -> str | None:
    name = _text(audio.get("Format"))
    if name == "MPEG Audio":
        return _MPEG_AUDIO_LAYERS.get(str(audio.get("Format_Profile")), name)
    return name


def _mediainfo_audio_track(audio: Record | None) -> dict[str, Any]:
    if audio is None:
        return {}
    return {
        "audio_codec": _mediainfo_audio_codec(audio),
        "sample_rate": _positive(audio.get("SamplingRate")),
        "channels": _positive(audio.get("Channels")),
    }


def _mediainfo_audio(record: Record) -> dict[str, Any]:
    general, _, audio = _tracks(record)
    duration = _seconds(general.get("Duration"))
    if duration is None and audio is not None:
        duration = _seconds(audio.get("Duration"))
    return {
        "duration": duration,
        **_mediainfo_audio_track(audio),
        "bit_depth": _positive(audio.get("BitDepth")) if audio is not None else None,
    }


def _mediainfo_video(record: Record) -> dict[str, Any]:
    general, video, audio = _tracks(record)
    duration = _seconds(general.get("Duration"))
    out: dict[str, Any] = {"duration": duration}
    if video is not None:
        if duration is None:
            out["duration"] = _seconds(video.get("Duration"))
        out |= {
            "width": _positive(video.get("Width")),
            "height": _positive(video.get("Height")),
            "frame_rate": _rate(video.get("FrameRate")),
            "video_codec": _text(video.get("Format")),
        }
    return out | _mediainfo_audio_track(audio)


# ffprobe (through PyAV): {"format", "streams"}; codec names put into MediaInfo's words.

_FFPROBE_VIDEO = {
    "h264": "AVC",
    "hevc": "HEVC",
    "ffv1": "FFV1",
    "mpeg1video": "MPEG Video",
    "mpeg2video": "MPEG Video",
    "mpeg4": "MPEG-4 Visual",
    "prores": "ProRes",
    "vp8": "VP8",
    "vp9": "VP9",
    "av1": "AV1",
    "mjpeg": "JPEG",
    "jpeg2000": "JPEG 2000",
    "dvvideo": "DV",
    "theora": "Theora",
    "dnxhd": "VC-3",
}
_FFPROBE_AUDIO = {
    "flac": "FLAC",
    "mp1": "MP1",
    "mp2": "MP2",
    "mp3": "MP3",
    "aac": "AAC",
    "vorbis": "Vorbis",
    "opus": "Opus",
    "alac": "ALAC",
    "ac3": "AC-3",
    "eac3": "E-AC-3",
    "dts": "DTS",
    "speex": "Speex",
}


def _ffprobe_streams(record: Record) -> tuple[Record, Record | None, Record | None]:
    fmt = record.get("format")
    streams = record.get("streams")
    video = audio = None
    for stream in streams if isinstance(streams, list) else []:
        if not isinstance(stream, Mapping):
            continue
        if stream.get("codec_type") == "video" and video is None:
            video = stream
        elif stream.get("codec_type") == "audio" and audio is None:
            audio = stream
    return (fmt if isinstance(fmt, Mapping) else {}), video, audio


def _ffprobe_codec(stream: Record, names: Mapping[str, str]) -> str | None:
    name = _text(stream.get("codec_name"))
    if name is None:
        return None
    if name.startswith("pcm_"):
        return "PCM"
    return names.get(name, name)


def _ffprobe_audio_track(audio: Record | None) -> dict[str, Any]:
    if audio is None:
        return {}
    return {
        "audio_codec": _ffprobe_codec(audio, _FFPROBE_AUDIO),
        "sample_rate": _positive(audio.get("sample_rate")),
        "channels": _positive(audio.get("channels")),
    }


def _ffprobe_duration(fmt: Record, stream: Record | None) -> float | None:
    duration = _seconds(fmt.get("duration"))
    if duration is None and stream is not None:
        duration = _seconds(stream.get("duration"))
    return duration


def _ffprobe_audio(record: Record) -> dict[str, Any]:
    fmt, _, audio = _ffprobe_streams(record)
    bits = None
    if audio is not None:
        bits = _positive(audio.get("bits_per_raw_sample")) or _positive(
            audio.get("bits_per_sample")
        )
    return {
        "duration": _ffprobe_duration(fmt, audio),
        **_ffprobe_audio_track(audio),
        "bit_depth": bits,
    }


def _ffprobe_video(record: Record) -> dict[str, Any]:
    fmt, video, audio = _ffprobe_streams(record)
    out: dict[str, Any] = {"duration": _ffprobe_duration(fmt, video)}
    if video is not None:
        out |= {
            "width": _positive(video.get("width")),
            "height": _positive(video.get("height")),
            "frame_rate": _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
            "video_codec": _ffprobe_codec(video, _FFPROBE_VIDEO),
        }
    return out | _ffprobe_audio_track(audio)


# The siard tool (characterise/siard.py): the archive's own metadata.


#: What neither XML 1.0 (the METS) nor PostgreSQL's jsonb (NUL) can hold; a database's
#: names and descriptions may, once SIARD's escapes are undone.
_UNHOLDABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _one_line(value: Any) -> str | None:
    """A name or description as one line of at most ``_DESCRIBED_ITEM`` characters."""
    if not isinstance(value, str):
        return None
    line = " ".join(_UNHOLDABLE.sub(" ", value).split())
    if len(line) > _DESCRIBED_ITEM:
        line = line[: _DESCRIBED_ITEM - 1] + "…"
    return line or None


def _described(record: Record) -> list[str]:
    """Names and descriptions, most telling first, each once, within ``DESCRIBED_LIMIT``.

    Table names and descriptions come before any column, so a database too
    large for the limit is still found by every table; columns fill the rest.
    """
    first: list[Any] = [record.get("dbname"), record.get("description")]
    later: list[Any] = []
    for schema in _list(record.get("schemas")):
        name = schema.get("name")
        first += [name, schema.get("description")]
        for item in _list(schema.get("tables")) + _list(schema.get("views")):
            first += [f"{name}.{item.get('name')}", item.get("description")]
            for column in _list(item.get("columns")):
                later += [column.get("name"), column.get("description")]
    out: dict[str, None] = {}
    size = 0
    for value in first + later:
        line = _one_line(value)
        if line is None or line in out:
            continue
        if size + len(line) > DESCRIBED_LIMIT:
            break
        out[line] = None
        size += len(line)
    return list(out)


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _siard_database(record: Record) -> dict[str, Any]:
    schemas = _list(record.get("schemas"))
    tables = [t for s in schemas for t in _list(s.get("tables"))]
    rows = [_int(t.get("rows")) for t in tables]
    return {
        "schemas": len(schemas),
        "tables": len(tables),
        "rows": sum(r for r in rows if r is not None),
        "lob_count": _int(record.get("lob_count")),
        "lob_bytes": _int(record.get("lob_bytes")),
        "source_dbms": _one_line(record.get("source_dbms")),
        "described": _described(record) or None,
    }


_READERS: dict[tuple[str, str], Reader] = {
    ("siard", "database"): _siard_database,
    ("exiftool", "image"): _exiftool_image,
    ("exiftool", "document"): _exiftool_document,
    ("mediainfo", "audio"): _mediainfo_audio,
    ("mediainfo", "video"): _mediainfo_video,
    ("ffprobe", "audio"): _ffprobe_audio,
    ("ffprobe", "video"): _ffprobe_video,
}
