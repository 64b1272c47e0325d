"""ffprobe's view of audio-visual files, in-process through PyAV: no process at all.

``ffprobe`` reads one file per process, and the rule for every tool here is
one process per batch, never one per file; a SIP of 20,000 clips would spend
most of its time starting ffprobe. PyAV opens files with the same libavformat
that ffprobe uses (``avformat_open_input`` + ``avformat_find_stream_info``),
so this module gives ffprobe's information without a process, shaped like
``ffprobe -show_format -show_streams -of json`` (keys ``format`` and
``streams``, the same field names, numbers as ffprobe writes them: integers
for sizes and counts, strings for rates, times and bit rates), one such
document per file.

It is ffprobe's shape, not ffprobe's program: PyAV carries its own build of
the FFmpeg libraries, which may be newer than the system's ``ffprobe``; the
version string names both (``libavformat 62.12.102 (PyAV 18.1.0)``). Fields
PyAV does not expose are left out rather than guessed: ``bits_per_raw_sample``
for compressed audio, and FFV1's version and level (PyAV reports level -99,
"unknown", as ffprobe does; MediaInfo's ``Format_Version`` gives FFV1's).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from preservation.characterise.tools import ToolRun, display_name
from preservation.errors import ToolUnavailableError

__all__ = ["DEMUXERS", "FFprobe", "open_media"]

DEMUXERS = (
    "wav,w64,aiff,caf,flac,wv,ape,tta,mp3,aac,ac3,eac3,dts,ogg,au,dsf,"
    "matroska,mov,avi,mxf,dv,mpeg,mpegts,mpegvideo,m4v,h264,hevc,asf,flv,nut,gxf"
)
"""Demuxers FFmpeg may pick, here and in the decode pass. Without a list it would
also read playlists (HLS, DASH, concat), which open other files named inside the
one being looked at."""

_PCM_BITS = re.compile(r"^pcm_[a-z]*?(\d+)")


class FFprobe:
    """ffprobe's ``-show_format -show_streams`` for a batch, read in this process."""

    name = "ffprobe"

    def version(self) -> str:
        """The libavformat PyAV uses, and PyAV's own version."""
        av = _av()
        major, minor, micro = av.library_versions["libavformat"]
        return f"libavformat {major}.{minor}.{micro} (PyAV {av.__version__})"

    def close(self) -> None:
        """Nothing to end: no process is started."""

    def run(self, paths: Sequence[Path], *, names: Sequence[str] | None = None) -> ToolRun:
        """One ffprobe-shaped document per path; an unreadable file is an error and ``{}``."""
        av = _av()
        paths = list(paths)
        labels = list(names) if names is not None else [display_name(str(p)) for p in paths]
        version = self.version()
        per_file: list[dict[str, Any]] = []
        errors: dict[int, str] = {}
        for index, (path, label) in enumerate(zip(paths, labels, strict=True)):
            try:
                per_file.append(_probe(av, path, label))
            except (av.FFmpegError, OSError, ValueError, UnicodeError) as err:
                per_file.append({})
                # strerror, not str(err): the latter names the (staging) path.
                errors[index] = getattr(err, "strerror", None) or type(err).__name__
        return ToolRun(self.name, version, per_file, per_file, errors)


def _av() -> Any:
    try:
        import av
    except ImportError as err:
        raise ToolUnavailableError(
            f"PyAV (the 'av' package) is not installed: {err}", tool="ffprobe"
        ) from err
    return av


@contextlib.contextmanager
def open_media(av: Any, path: Path) -> Iterator[Any]:
    """PyAV's container for a local file: only :data:`DEMUXERS`, only the file protocol.

    A name whose bytes are not UTF-8 cannot be spelt to FFmpeg; Python opens
    it and hands the file over.
    """
    options = {"format_whitelist": DEMUXERS, "protocol_whitelist": "file"}
    name = os.fspath(path)
    with contextlib.ExitStack() as stack:
        source: Any = "file:" + str(Path(name).resolve())
        if display_name(name) != name:
            source = stack.enter_context(open(name, "rb"))
        with av.open(source, container_options=options, metadata_errors="replace") as container:
            yield container


def _probe(av: Any, path: Path, label: str) -> dict[str, Any]:
    with open_media(av, path) as container:
        return _describe(container, label, os.path.getsize(path))


def _seconds(value: int | None, time_base: Fraction | None) -> str | None:
    if value is None or time_base is None:
        return None
    return f"{float(value * time_base):.6f}"


def _ratio(value: Fraction | None) -> str:
    return "0/0" if not value else f"{value.numerator}/{value.denominator}"


def _tag(value: Any) -> tuple[str, str]:
    """ffprobe's ``codec_tag_string`` and ``codec_tag`` for PyAV's four-character tag."""
    text = value if isinstance(value, str) else ""
    raw = text.encode("latin-1", "replace")[:4].ljust(4, b"\0")
    shown = "".join(chr(b) if 32 <= b < 127 else f"[{b}]" for b in raw)
    return shown, f"0x{int.from_bytes(raw, 'little'):04x}"


def _describe(container: Any, label: str, size: int) -> dict[str, Any]:
    av_time_base = Fraction(1, 1_000_000)
    fmt: dict[str, Any] = {
        "filename": label,
        "nb_streams": len(container.streams),
        "format_name": container.format.name,
        "format_long_name": container.format.long_name,
    }
    _put(fmt, "start_time", _seconds(container.start_time, av_time_base))
    _put(fmt, "duration", _seconds(container.duration, av_time_base))
    fmt["size"] = str(size)
    if container.bit_rate:
        fmt["bit_rate"] = str(container.bit_rate)
    if container.metadata:
        fmt["tags"] = dict(container.metadata)
    return {"streams": [_stream(s) for s in container.streams], "format": fmt}


def _stream(stream: Any) -> dict[str, Any]:
    cc = stream.codec_context
    if cc is None:  # a data stream (a QuickTime timecode track): no codec to describe
        return {"index": stream.index, "codec_type": stream.type}
    codec = cc.codec
    tag_string, tag = _tag(cc.codec_tag)
    out: dict[str, Any] = {
        "index": stream.index,
        "codec_name": getattr(codec, "canonical_name", None) or cc.name,
        "codec_long_name": codec.long_name,
    }
    _put(out, "profile", cc.profile)
    out["codec_type"] = stream.type
    out["codec_tag_string"] = tag_string
    out["codec_tag"] = tag
    if stream.type == "video":
        _put(out, "width", cc.width or None)
        _put(out, "height", cc.height or None)
        _put(out, "pix_fmt", cc.pix_fmt)
        out["level"] = cc.level
        fmt = cc.format
        if fmt is not None and fmt.components:
            out["bits_per_raw_sample"] = str(fmt.components[0].bits)
    elif stream.type == "audio":
        _put(out, "sample_fmt", cc.format.name if cc.format is not None else None)
        _put(out, "sample_rate", str(cc.sample_rate) if cc.sample_rate else None)
        _put(out, "channels", cc.channels or None)
        _put(out, "channel_layout", cc.layout.name if cc.layout is not None else None)
        pcm = _PCM_BITS.match(out["codec_name"] or "")
        out["bits_per_sample"] = int(pcm.group(1)) if pcm else 0
        if pcm:
            out["bits_per_raw_sample"] = pcm.group(1)
    out["r_frame_rate"] = _ratio(getattr(stream, "base_rate", None))
    out["avg_frame_rate"] = _ratio(getattr(stream, "average_rate", None))
    out["time_base"] = _ratio(stream.time_base)
    _put(out, "start_pts", stream.start_time)
    _put(out, "start_time", _seconds(stream.start_time, stream.time_base))
    _put(out, "duration_ts", stream.duration)
    _put(out, "duration", _seconds(stream.duration, stream.time_base))
    if cc.bit_rate:
        out["bit_rate"] = str(cc.bit_rate)
    if stream.frames:
        out["nb_frames"] = str(stream.frames)
    if stream.metadata:
        out["tags"] = dict(stream.metadata)
    return out


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value
