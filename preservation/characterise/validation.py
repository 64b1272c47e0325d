"""Format validation: is each file well formed for the format it claims to be?

A broken file is an outcome, never an exception: every path handed to a
validator comes back as one ``Finding`` whose ``valid`` is True, False, or None
when the file could not be checked at all (the tool is not installed, the PDF
is encrypted, Pillow lacks the decoder). None is kept apart from False because
"mediaconch is missing on this worker" must not read as "this film is corrupt".

No process per file. Six validators run in-process through the libraries the
command-line tools are built on (libqpdf through pikepdf, jpylyzer, Pillow,
FFmpeg's libraries through PyAV, libxml2 through lxml, and for SIARD the
project's own ``preservation.siard.validate`` on lxml); mediaconch has no
library binding, so it is run once per batch of files. Spawning a process
costs milliseconds to a second each, which on a SIP of 50,000 small files is
the whole budget.

``validate_files`` spreads the work over a thread pool, not a process pool.
Measured on two cores, 100 small files of each kind, median of five runs
(seconds; serial / two threads / two-process pool including its start):
Pillow 0.13 / 0.07 / 0.48, PDF 0.13 / 0.10 / 0.29, jpylyzer 0.05 / 0.05 /
0.16, XML 0.03 / 0.03 / 0.20, FLAC 0.13 / 0.13 / 0.44; all 500 at once
0.51 / 0.44 / 0.54. Pillow, FFmpeg and libxml2 release the GIL while they
decode; jpylyzer (pure Python) and pikepdf do not, so their files run as one
task on one thread beside the rest, and no pool of processes pays back its
start-up at this size (Celery already gives each core its own process).

Some process-wide settings are changed on first use, because the libraries
keep them in globals and a per-call override does not exist:

* PyAV logs FFmpeg errors to Python (``av.logging.set_level(ERROR)``) and does
  not fold repeated lines (otherwise the second of two files failing with the
  same message would be reported clean);
* Pillow's decompression-bomb limit is raised to ``MAX_PIXELS`` (2**31), since
  archival scans exceed Pillow's default of 89 megapixels, and truncated
  images are never loaded as if whole.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from preservation.characterise.ffprobe import open_media
from preservation.errors import ConfigurationError, ToolError, ToolUnavailableError

if TYPE_CHECKING:
    from preservation.siard.validate import Problem

__all__ = [
    "MAX_PIXELS",
    "MESSAGE_LIMIT",
    "VALIDATOR_NAMES",
    "Finding",
    "FormatValidator",
    "MediaConchValidator",
    "siard_problem_text",
    "validate_files",
    "validator",
]

VALIDATOR_NAMES: tuple[str, ...] = (
    "qpdf",
    "jpylyzer",
    "pillow",
    "ffmpeg",
    "xml",
    "mediaconch",
    "siard",
)

MAX_PIXELS = 2**31
"""Largest image (width x height of one frame) Pillow is asked to decode."""

MESSAGE_LIMIT = 500
"""Longest ``Finding.message``: the first few problems, not a log."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One validator's verdict on one file.

    ``valid`` is None when the file was not checked; ``message`` then says why.
    For an invalid file it holds the first few problems, in the tool's words.
    """

    valid: bool | None
    tool: str
    tool_version: str
    message: str = ""

    @property
    def checked(self) -> bool:
        return self.valid is not None


@runtime_checkable
class FormatValidator(Protocol):
    """A validator ready for many files: ``check`` answers one Finding per path, in order.

    ``version`` raises ``ToolUnavailableError`` when the tool cannot run here;
    ``check`` raises it too, and nothing else for a bad file.
    """

    name: str

    def version(self) -> str: ...

    def check(self, paths: Sequence[Path]) -> list[Finding]: ...


class _NotChecked(Exception):
    """Raised inside a check when the file cannot be judged (encrypted, no decoder)."""


# -- shared helpers -----------------------------------------------------------


def _summarise(problems: Sequence[str], limit: int = MESSAGE_LIMIT) -> str:
    """The first problems, one line each, within ``limit`` characters.

    A corrupt video can log thousands of errors; a curator needs the first few
    and a count, and the PREMIS event must stay small.
    """
    seen: dict[str, None] = {}
    for problem in problems:
        line = " ".join(str(problem).split())
        if line:
            seen.setdefault(line)
    lines = list(seen)
    out = ""
    for index, line in enumerate(lines):
        more = f" (+{len(lines) - index} more)"
        piece = line if not out else "; " + line
        if len(out) + len(piece) > limit - len(more):
            if not out:  # the first problem alone is too long: cut it
                return line[: limit - len(more) - 1] + "…" + (more if len(lines) > 1 else "")
            return out + more
        out += piece
    return out


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read, or None. A missing file is not a malformed one."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        return f"not checked: cannot read the file ({err.strerror or err})"
    return None


def _error_text(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _InProcessValidator:
    """A validator that runs a library in this process, file by file.

    ``examine`` returns a file's problems (empty when it is valid) or raises
    ``_NotChecked``. Anything else it raises is the library rejecting the file:
    decoders signal bad input with every exception type there is (Pillow alone
    uses OSError, SyntaxError, ValueError, EOFError and struct.error).
    """

    def __init__(
        self,
        name: str,
        version: Callable[[], str],
        examine: Callable[[Path], list[str]],
        *,
        holds_gil: bool = False,
        files_per_task: int = 4,
    ) -> None:
        self.name = name
        self.holds_gil = holds_gil
        self.files_per_task = files_per_task
        self._version = version
        self._examine = examine

    def __repr__(self) -> str:
        return f"<{self.name} validator>"

    def version(self) -> str:
        return self._version()

    def check(self, paths: Sequence[Path]) -> list[Finding]:
        version = self.version()
        return [self._check_one(Path(path), version) for path in paths]

    def _check_one(self, path: Path, version: str) -> Finding:
        why = _unreadable(path)
        if why is not None:
            return Finding(None, self.name, version, why)
        try:
            problems = self._examine(path)
        except _NotChecked as err:
            return Finding(None, self.name, version, str(err))
        except MemoryError:
            return Finding(None, self.name, version, "not checked: out of memory while decoding")
        except Exception as err:  # noqa: BLE001 - see the class docstring
            problems = [_error_text(err)]
        if not problems:
            return Finding(True, self.name, version)
        message = _summarise([p.replace(str(path), path.name) for p in problems])
        return Finding(False, self.name, version, message)


def _unavailable(tool: str, err: BaseException) -> ToolUnavailableError:
    return ToolUnavailableError(f"{tool} is not installed ({err})", tool=tool)


# -- qpdf (PDF), through pikepdf -----------------------------------------------


def _qpdf_version() -> str:
    try:
        import pikepdf
    except ImportError as err:
        raise _unavailable("qpdf", err) from err
    return f"libqpdf {pikepdf.__libqpdf_version__} (pikepdf {pikepdf.__version__})"


def _pdf_problems(path: Path) -> list[str]:
    """What ``qpdf --check`` reports, from libqpdf in this process.

    Warnings count: qpdf exits 3 for a file it had to repair (a rebuilt xref
    table, a stream it could not decode), and an archive should not take in a
    file that only opens because the reader guessed. Encrypted files that need
    a password are not checked; an empty user password is tried, as qpdf does.

    ``check_pdf_syntax`` follows QPDFJob::doCheck and decodes every stream
    (libqpdf 12 does this even for Flate streams, which the qpdf 11 command
    line passed through unread), so the streams are not decoded a second time.
    """
    import pikepdf

    try:
        pdf = pikepdf.open(str(path))
    except pikepdf.PasswordError as err:
        raise _NotChecked("encrypted; not checked") from err
    except pikepdf.PdfError as err:
        return [f"ERROR: {err}"]
    with pdf:
        problems = ["WARNING: " + warning for warning in pdf.get_warnings()]  # from opening
        check: Callable[[], list[str]] = getattr(pdf, "check_pdf_syntax", None) or pdf.check  # type: ignore[attr-defined]
        try:
            problems += check()
        except pikepdf.PdfError as err:
            problems.append(f"ERROR: {err}")
    return problems


# -- jpylyzer (JPEG 2000) -----------------------------------------------------


def _jpylyzer_version() -> str:
    try:
        from jpylyzer import jpylyzer  # type: ignore[import-untyped]
    except ImportError as err:
        raise _unavailable("jpylyzer", err) from err
    return str(jpylyzer.__version__)


_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_CODESTREAM_START = b"\xff\x4f\xff\x51"


def _jpylyzer_format(head: bytes) -> str:
    """jpylyzer's validation profile for a file starting with ``head``.

    A raw codestream (.j2c) fails every JP2 box test; HTJ2K (.jph) has its own
    profile. Anything else is judged as JP2, which is what it claims to be.
    """
    if head.startswith(_CODESTREAM_START):
        return "j2c"
    if head.startswith(_JP2_SIGNATURE) and head[20:24] == b"jph ":
        return "jph"
    return "jp2"


def _failed_tests(tests: Any) -> list[str]:
    """Paths of jpylyzer's failed tests, e.g. ``contiguousCodestreamBox/foundEOCMarker``."""
    failed: list[str] = []

    def walk(element: Any, prefix: str) -> None:
        for child in element:
            name = f"{prefix}{child.tag}"
            if child.text == "False":
                failed.append(name)
            walk(child, name + "/")

    if tests is not None:
        walk(tests, "")
    return failed


def _jp2_problems(path: Path) -> list[str]:
    """jpylyzer's verdict, called as a function.

    ``checkOneFile`` keeps no state between calls; every option is passed
    explicitly rather than read from its ``config`` module, which its command
    line rewrites. It writes a line to stderr for an unknown box or an empty
    file; the same text is in its result and in our message, and stderr is
    not redirected (that would swallow every other thread's output).
    """
    from jpylyzer import jpylyzer

    with open(path, "rb") as handle:
        head = handle.read(32)
    if not head:
        return ["empty file"]
    fmt = _jpylyzer_format(head)
    result = jpylyzer.checkOneFile(str(path), fmt, False, False, False, 0)
    if result.findtext("isValid") == "True":
        return []
    problems: list[str] = []
    failure = result.findtext("statusInfo/failureMessage")
    if failure:
        problems.append(f"jpylyzer could not finish: {failure}")
    failed = _failed_tests(result.find("tests"))
    if failed:
        problems.append(f"failed {fmt} tests: " + ", ".join(failed))
    problems += [w.text for w in result.iter("warning") if w.text]
    return problems or [f"not valid {fmt}"]


# -- Pillow (raster images) ----------------------------------------------------


_pillow_lock = threading.Lock()


def _pillow_version() -> str:
    try:
        import PIL
        from PIL import features
    except ImportError as err:
        raise _unavailable("pillow", err) from err
    libraries = []
    for feature, label in (
        ("libtiff", "libtiff"),
        ("jpg", "libjpeg"),
        ("jpg_2000", "openjpeg"),
        ("zlib", "zlib"),
    ):
        found = features.version(feature)
        if found:
            libraries.append(f"{label} {found}")
    return f"Pillow {PIL.__version__}" + (f" ({', '.join(libraries)})" if libraries else "")


def _pillow_settings() -> None:
    from PIL import Image, ImageFile

    with _pillow_lock:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and current < MAX_PIXELS:
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow raises only at twice this
        ImageFile.LOAD_TRUNCATED_IMAGES = False


_NO_DECODER = re.compile(r"^(de|en)coder \S+ not available")


def _image_problems(path: Path) -> list[str]:
    """Open, verify and fully decode every frame.

    ``verify`` is what checks PNG chunk CRCs (a PNG whose IDAT CRC is wrong
    decodes without complaint); ``load`` is what finds truncated or garbled
    pixel data. Each frame's size is checked before it is decoded, so a
    decompression bomb becomes a "not checked" finding, never an allocation.
    Pillow's warnings are not collected: Python's warning filters are process
    wide and show a warning once per code location, so they cannot be
    attributed to one file among threads; the faults that matter raise.
    """
    from PIL import Image

    _pillow_settings()
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            return _decode_frames(img)
    except Image.DecompressionBombError as err:
        raise _NotChecked(f"not decoded: {err}") from err
    except OSError as err:
        if _NO_DECODER.match(str(err)):
            raise _NotChecked(f"not checked: this Pillow build has no decoder ({err})") from err
        raise
    return []


def _decode_frames(img: Any) -> list[str]:
    """Decode each frame (TIFF page, GIF frame) in turn; name the first that fails.

    Counting the frames reads every frame's directory, so a damaged one is
    found by walking the frames instead, to say which it is.
    """
    from PIL import Image

    try:
        frames: int | None = getattr(img, "n_frames", 1)
        uncounted: Exception | None = None
    except Exception as err:  # noqa: BLE001 - a damaged frame directory
        frames, uncounted = None, err
    index = 0
    while frames is None or index < frames:
        try:
            _decode_frame(img, index)
        except (_NotChecked, Image.DecompressionBombError):
            raise
        except EOFError as err:
            if frames is None and uncounted is not None:  # walked past the last readable one
                return [f"frame directory after frame {index}: {_error_text(uncounted)}"]
            return [f"frame {index + 1}: {_error_text(err)}"]
        except Exception as err:
            if frames == 1 or _NO_DECODER.match(str(err)):
                raise
            return [f"frame {index + 1}: {_error_text(err)}"]
        index += 1
    return []


def _decode_frame(img: Any, index: int) -> None:
    if index:
        img.seek(index)
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise _NotChecked(
            f"not decoded: frame {index + 1} is {width}x{height} pixels, above the "
            f"{MAX_PIXELS}-pixel limit (possible decompression bomb)"
        )
    img.load()


# -- FFmpeg (audio and video), through PyAV -------------------------------------


_av_lock = threading.Lock()


def _ffmpeg_version() -> str:
    try:
        import av
    except ImportError as err:
        raise _unavailable("ffmpeg", err) from err
    versions = av.library_versions
    codec = ".".join(map(str, versions["libavcodec"]))
    fmt = ".".join(map(str, versions["libavformat"]))
    return f"libavcodec {codec}, libavformat {fmt} (PyAV {av.__version__})"


def _av_logging() -> None:
    import av.logging

    with _av_lock:
        level = av.logging.get_level()
        if level is None or level < av.logging.ERROR:
            av.logging.set_level(av.logging.ERROR)
        av.logging.set_skip_repeated(False)


def _ffmpeg_log_lines(logs: Sequence[tuple[int, str, str]]) -> list[str]:
    """FFmpeg error lines as ``[codec] message``; FFmpeg sends one line in pieces."""
    import av.logging

    lines: list[str] = []
    pending = ""
    for level, name, message in logs:
        if level > av.logging.ERROR:
            continue
        if not pending:
            pending = f"[{name}] " if name else ""
        elif not pending[-1].isspace():
            pending += " "
        pending += message
        if message.endswith("\n"):
            lines.append(pending.strip())
            pending = ""
    if pending.strip():
        lines.append(pending.strip())
    return [line.replace("-9223372036854775808", "(unknown)") for line in lines]


def _decode_problems(path: Path) -> list[str]:
    """What ``ffmpeg -v error -err_detect crccheck -i f -f null -`` reports, in-process.

    Every packet of every audio and video stream is decoded (the command line
    maps one of each), with the codecs' own checksums verified (FLAC frames and
    FFV1 slices carry CRCs that FFmpeg ignores unless asked). FFmpeg logs most
    damage rather than failing, so its error-level log lines are captured for
    this file, on this thread; decoders run single-threaded so that their logs
    come from this thread too, and the pool parallelises across files instead.
    """
    import av
    import av.logging

    _av_logging()
    problems: list[str] = []
    undecodable: list[str] = []
    with av.logging.Capture(local=True) as logs:
        try:
            with open_media(av, path) as container:
                streams = []
                for stream in container.streams:
                    if stream.type not in ("audio", "video"):
                        continue
                    context = stream.codec_context
                    if context is None:  # PyAV has no decoder for this codec
                        undecodable.append(f"#{stream.index}")
                        continue
                    context.thread_count = 1
                    context.options = {"err_detect": "crccheck"}
                    streams.append(stream)
                if not streams and not undecodable:
                    problems.append("no audio or video stream")
                problems += _demux_and_decode(container, streams)
        except av.FFmpegError as err:  # opening it: _demux_and_decode keeps its own
            problems.append(f"cannot open: {err.strerror or err}")
    problems = _ffmpeg_log_lines(logs) + problems
    if _is_wave(path):
        problems += _riff_problems(path)
    if undecodable and not problems:  # what could be decoded was clean: no verdict
        raise _NotChecked(f"not checked: FFmpeg has no decoder for stream {', '.join(undecodable)}")
    return problems


def _demux_and_decode(container: Any, streams: Sequence[Any]) -> list[str]:
    import av

    problems: list[str] = []
    if not streams:
        return problems
    failures = 0
    try:
        for packet in container.demux(streams):
            try:
                for _frame in packet.decode():
                    pass
            except av.FFmpegError as err:
                failures += 1
                if failures <= 20:
                    where = f"stream #{packet.stream.index}"
                    problems.append(f"decoding {where} failed: {err.strerror or err}")
    except av.FFmpegError as err:
        problems.append(f"reading stopped: {err.strerror or err}")
    if failures > 20:
        problems.append(f"{failures} packets failed to decode")
    return problems


def _is_wave(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(12)
    return head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE"


def _riff_problems(path: Path) -> list[str]:
    """Chunk sizes against the file's size, which FFmpeg does not compare.

    A WAV cut short in transfer still decodes: FFmpeg reads to the end of the
    file and stops, so the loss is silent. Here every chunk's declared size
    must fit in the file (RF64's 64-bit sizes come from its ds64 chunk). An odd
    chunk's missing final pad byte is forgiven, as every reader does.
    """
    problems: list[str] = []
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12:
            return ["file too short for a RIFF header"]
        riff_end = 8 + struct.unpack("<I", header[4:8])[0]
        data_size: int | None = None
        rf64 = header[:4] != b"RIFF"
        pos = 12
        found: set[bytes] = set()
        while pos + 8 <= size:
            handle.seek(pos)
            chunk_id, declared = struct.unpack("<4sI", handle.read(8))
            found.add(chunk_id)
            if rf64 and chunk_id == b"ds64" and declared >= 16:
                riff64, data64 = struct.unpack("<QQ", handle.read(16))
                riff_end, data_size = 8 + riff64, data64
            if rf64 and chunk_id == b"data" and declared == 0xFFFFFFFF and data_size is not None:
                declared = data_size
            holds = size - pos - 8
            if declared > holds:
                what = "data chunk" if chunk_id == b"data" else f"{_chunk_name(chunk_id)} chunk"
                problems.append(f"{what} declares {declared} bytes, file holds {holds}")
                break
            pos += 8 + declared + (declared & 1)
        if 0 < size - pos < 8:
            problems.append(f"{size - pos} stray bytes after the last chunk")
    if riff_end > size and not problems:
        problems.append(f"RIFF header declares {riff_end} bytes, file holds {size}")
    for required in (b"fmt ", b"data"):
        if required not in found:
            problems.append(f"no {_chunk_name(required)} chunk")
    return problems


def _chunk_name(chunk_id: bytes) -> str:
    return repr(chunk_id.decode("latin-1"))


# -- XML (well-formedness), through lxml ---------------------------------------


def _xml_version() -> str:
    try:
        from lxml import etree
    except ImportError as err:
        raise _unavailable("xml", err) from err
    libxml2 = ".".join(map(str, etree.LIBXML_VERSION))
    return f"libxml2 {libxml2} (lxml {etree.__version__})"


class _Discard:
    """A parser target that keeps nothing: libxml2 checks, no tree is built.

    With only ``close`` defined, lxml calls no Python for each element, so a
    large file streams through libxml2 in constant memory and ten times as fast
    as ``iterparse`` with clearing (57 MB in 0.5 s and 17 MB of RSS).
    """

    def close(self) -> None:
        return None


def _xml_problems(path: Path) -> list[str]:
    """Well-formedness, XML namespaces included, in one streaming pass.

    Errors libxml2 recovers from (an undeclared namespace prefix) still make
    the document not well formed, so every error-level entry counts; warnings
    (a relative namespace URI) do not.
    """
    from lxml import etree

    parser = etree.XMLParser(
        target=cast(Any, _Discard()),
        resolve_entities=False,  # no entity is expanded: no XXE, no billion laughs
        no_network=True,
        load_dtd=False,  # nor is an external DTD or parameter entity read
        huge_tree=True,  # deep or very large documents are legitimate in an archive
    )
    try:
        etree.parse(str(path), parser)
    except (etree.XMLSyntaxError, OSError) as err:  # lxml reports bad encodings as OSError
        return _xml_errors(parser.error_log) or [str(err)]
    return _xml_errors(parser.error_log)


def _xml_errors(log: Any) -> list[str]:
    from lxml import etree

    return [
        f"line {entry.line}, column {entry.column}: {entry.message}"
        for entry in log
        if entry.level >= etree.ErrorLevels.ERROR
    ]


# -- SIARD (relational database archives), preservation.siard.validate ------------


def _siard_version() -> str:
    from preservation import SOFTWARE_AGENT
    from preservation.siard.model import SIARD_VERSION

    try:
        from lxml import etree
    except ImportError as err:
        raise _unavailable("siard", err) from err
    libxml2 = ".".join(map(str, etree.LIBXML_VERSION))
    return f"{SOFTWARE_AGENT} (SIARD {SIARD_VERSION}; libxml2 {libxml2})"


_SIARD_MESSAGE = 300


def siard_problem_text(problem: Problem) -> str:
    """One problem of a ``SiardReport`` as a finding's line: where, what, which rule.

    ``person.address (content/schema0/table1/table1.xml): 12 rows, metadata says 13
    (rule row-count)``: the table as the database named it, the zip entry, the rule.
    """
    where = problem.where
    text = " ".join(str(problem.message).split())
    if len(text) > _SIARD_MESSAGE:  # cut here, so the rule at the end survives the summary
        text = text[: _SIARD_MESSAGE - 1] + "…"
    return f"{where}: {text} (rule {problem.rule})" if where else f"{text} (rule {problem.rule})"


def _siard_problems(path: Path) -> list[str]:
    """Everything ``validate_siard`` finds: zip, structure, metadata and table XSDs, counts, LOBs.

    The archive is read as a stream, table by table, so one file of any size is
    one task on one thread; its problems come back in the order found, the
    first ones in the finding's message.
    """
    from preservation.siard.validate import validate_siard

    report = validate_siard(path)
    if report.valid and not report.problems:
        return []
    return [siard_problem_text(p) for p in report.problems] or ["not a valid SIARD archive"]


# -- mediaconch (Matroska, FFV1), one process per batch --------------------------


_versions: dict[str, str] = {}
_versions_lock = threading.Lock()


class MediaConchValidator:
    """MediaConch's implementation checks, one ``mediaconch`` process per batch.

    Each run gets a private configuration and report database in a temporary
    directory, and ``--Force``: otherwise MediaConch answers from the cache in
    ``~/.local/share/MediaConch``, keyed by path and time, and a file rewritten
    in the same second keeps its old verdict. A file that makes a whole run
    fail is found by halving the batch, so one bad file costs a few runs,
    never one per file.

    The command line costs at least half a second per file, however small:
    it queues one file, then polls for it with ``usleep(500000)``
    (``CLI::is_ready`` in MediaConch's Source/CLI/CLI.cpp), and only then
    queues the next. The time is sleep, not work, so ``validate_files``
    splits the batch across its workers.
    """

    name = "mediaconch"

    def __init__(
        self,
        executable: str = "mediaconch",
        *,
        batch_size: int = 100,
        timeout: float | None = None,
    ) -> None:
        self.executable = executable
        self.batch_size = batch_size
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<mediaconch validator {self.executable!r}>"

    def _program(self) -> str:
        found = shutil.which(self.executable)
        if found is None:
            raise ToolUnavailableError(
                f"mediaconch is not installed (no {self.executable!r} on PATH)", tool=self.name
            )
        return found

    def version(self) -> str:
        program = self._program()
        with _versions_lock:
            if program not in _versions:
                try:
                    done = subprocess.run(
                        [program, "--version"], capture_output=True, text=True, timeout=60
                    )
                except (OSError, subprocess.TimeoutExpired) as err:
                    raise ToolUnavailableError(
                        f"mediaconch will not start: {err}", tool=self.name
                    ) from err
                found = re.search(r"\d+(?:\.\d+)+", done.stdout)
                if done.returncode != 0 or found is None:
                    raise ToolUnavailableError(
                        f"mediaconch --version failed: {(done.stderr or done.stdout).strip()}",
                        tool=self.name,
                    )
                _versions[program] = found.group(0)
            return _versions[program]

    def check(self, paths: Sequence[Path]) -> list[Finding]:
        version = self.version()
        program = self._program()
        findings: dict[int, Finding] = {}
        readable: list[tuple[int, Path]] = []
        for index, path in enumerate(paths):
            why = _unreadable(Path(path))
            if why is not None:
                findings[index] = Finding(None, self.name, version, why)
            else:
                readable.append((index, Path(path).resolve()))
        step = max(1, self.batch_size)
        for start in range(0, len(readable), step):
            batch = readable[start : start + step]
            verdicts = self._run(program, [path for _, path in batch])
            for (index, _path), (valid, message) in zip(batch, verdicts, strict=True):
                findings[index] = Finding(valid, self.name, version, message)
        return [findings[index] for index in range(len(paths))]

    def _run(
        self, program: str, paths: Sequence[Path], retries: list[int] | None = None
    ) -> list[tuple[bool | None, str]]:
        """One run for the batch; if it fails, halves, within a budget of runs.

        The budget (eight more runs per batch) keeps a batch that fails
        everywhere, mediaconch crashing on any file, from becoming a run per file.
        """
        budget = [8] if retries is None else retries
        try:
            return _mediaconch_batch(program, paths, self.timeout)
        except ToolUnavailableError:
            raise
        except ToolError as err:
            if len(paths) == 1 or budget[0] < 2:
                return [(None, f"not checked: {err.message}")] * len(paths)
            budget[0] -= 2
            half = len(paths) // 2
            return self._run(program, paths[:half], budget) + self._run(
                program, paths[half:], budget
            )


def _mediaconch_batch(
    program: str, paths: Sequence[Path], timeout: float | None
) -> list[tuple[bool | None, str]]:
    with tempfile.TemporaryDirectory(prefix="mediaconch-") as scratch:
        config = Path(scratch, "MediaConch.rc")
        config.write_text(json.dumps([{"SQLite_Path": scratch}, {"Use_Daemon": False}]))
        report = Path(scratch, "report.xml")
        command = [program, "-c", str(config), "--Force", "-mc", "-fx", "-iv", "4"]
        command += [str(path) for path in paths]
        try:
            with open(report, "wb") as out:
                done = subprocess.run(
                    command, stdout=out, stderr=subprocess.PIPE, timeout=timeout, check=False
                )
        except subprocess.TimeoutExpired as err:
            raise ToolError(f"mediaconch ran past {timeout} s") from err
        except OSError as err:
            raise ToolUnavailableError(
                f"mediaconch will not start: {err}", tool="mediaconch"
            ) from err
        stderr = done.stderr.decode("utf-8", "replace").strip()
        if done.returncode != 0:
            raise ToolError(f"mediaconch exited {done.returncode}: {stderr[:300]}")
        by_ref = _parse_mediaconch_report(report)
    answers: list[tuple[bool | None, str]] = []
    for path in paths:
        if str(path) not in by_ref:
            raise ToolError(f"mediaconch reported nothing for {path.name}: {stderr[:300]}")
        answers.append(by_ref[str(path)])
    return answers


def _parse_mediaconch_report(report: Path) -> dict[str, tuple[bool | None, str]]:
    """Pass or fail per ``<media ref=...>``, with the failing checks named.

    The report is read as a stream (a long film's report runs to megabytes)
    and with the same entity-free parser as any other XML we did not write.
    """
    from lxml import etree

    verdicts: dict[str, tuple[bool | None, str]] = {}
    try:
        events = etree.iterparse(
            str(report),
            events=("end",),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=True,
        )
        for _event, media in events:
            if etree.QName(media).localname != "media":
                continue
            verdicts[media.get("ref", "")] = _media_verdict(media)
            media.clear()
    except etree.XMLSyntaxError as err:
        raise ToolError(f"mediaconch wrote an unreadable report: {err}") from err
    return verdicts


def _media_verdict(media: Any) -> tuple[bool | None, str]:
    def local(element: Any) -> str:
        return str(element.tag).rpartition("}")[2]

    checkers = [child for child in media if local(child) == "implementationChecks"]
    if not checkers:
        return False, "MediaConch found no Matroska or FFV1 structure to check"
    problems: list[str] = []
    for checker in checkers:
        for check in checker:
            if local(check) != "check" or int(check.get("fail_count", "0") or 0) == 0:
                continue
            problems.append(_failed_check(check, local))
    return (False, _summarise(problems)) if problems else (True, "")


def _failed_check(check: Any, local: Callable[[Any], str]) -> str:
    name = check.get("icid") or "unnamed check"
    count = int(check.get("fail_count", "1") or 1)
    for test in check:
        if local(test) == "test" and test.get("outcome") == "fail":
            reason = test.get("reason") or ""
            value = next((v for v in test if local(v) == "value"), None)
            where = ""
            if value is not None:
                where = f" at {value.get('context', '?')}, offset {value.get('offset', '?')}"
            detail = f": {reason}" if reason else ""
            extra = f" ({count} failures)" if count > 1 else ""
            return f"{name}{detail}{where}{extra}"
    return name


# -- the registry and the batch runner -----------------------------------------


_IN_PROCESS: dict[str, tuple[Callable[[], str], Callable[[Path], list[str]], bool]] = {
    # name: (version, examine, holds the GIL for most of a check)
    "qpdf": (_qpdf_version, _pdf_problems, True),
    "jpylyzer": (_jpylyzer_version, _jp2_problems, True),
    "pillow": (_pillow_version, _image_problems, False),
    "ffmpeg": (_ffmpeg_version, _decode_problems, False),
    "xml": (_xml_version, _xml_problems, False),
    "siard": (_siard_version, _siard_problems, False),
}
#: Validators that take their files one per task: each file is a whole database.
_ONE_PER_TASK = frozenset({"siard"})


def validator(name: str) -> FormatValidator:
    """The validator called ``name`` (one of ``VALIDATOR_NAMES``)."""
    if name == "mediaconch":
        return MediaConchValidator()
    if name in _IN_PROCESS:
        version, examine, holds_gil = _IN_PROCESS[name]
        return _InProcessValidator(
            name,
            version,
            examine,
            holds_gil=holds_gil,
            files_per_task=1 if name in _ONE_PER_TASK else 4,
        )
    raise ConfigurationError(
        f"unknown format validator {name!r}; known: {', '.join(VALIDATOR_NAMES)}", validator=name
    )


def _chunks(paths: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def validate_files(
    by_validator: Mapping[str, Sequence[Path]],
    *,
    workers: int = 2,
    strict: bool = False,
    validators: Mapping[str, FormatValidator] | None = None,
) -> dict[Path, list[Finding]]:
    """Run each named validator over its files; every path gets one Finding per validator.

    Work is cut into small chunks on a pool of ``workers`` threads, so one slow
    film does not hold back a thousand images. A validator whose tool is
    missing gives its files ``valid=None`` findings, or with ``strict=True``
    raises ``ToolUnavailableError`` before anything runs. ``validators``
    replaces the registry's instances (tests, or a mediaconch elsewhere).
    Findings per path are in the order of ``by_validator``.
    """
    chosen: dict[str, FormatValidator] = {}
    for name in by_validator:
        chosen[name] = (validators or {}).get(name) or validator(name)
    results: dict[Path, list[Finding]] = {}
    unique: dict[str, list[Path]] = {}
    for name, paths in by_validator.items():
        unique[name] = list(dict.fromkeys(Path(p) for p in paths))
        for path in unique[name]:
            results.setdefault(path, [])

    missing: dict[str, ToolUnavailableError] = {}
    for name, instance in chosen.items():
        if not unique[name]:
            continue
        try:
            instance.version()
        except ToolUnavailableError as err:
            if strict:
                raise
            missing[name] = err

    answers: dict[str, dict[Path, Finding]] = {name: {} for name in chosen}
    jobs: list[tuple[str, Sequence[Path], Future[list[Finding]]]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="validate") as pool:
        for name, paths in unique.items():
            if name in missing:
                why = missing[name].message
                for path in paths:
                    answers[name][path] = Finding(None, name, "", why)
                continue
            size = _chunk_size(chosen[name], len(paths), workers)
            for chunk in _chunks(paths, size):
                jobs.append((name, chunk, pool.submit(chosen[name].check, chunk)))
        for name, chunk, future in jobs:
            try:
                findings = future.result()
            except ToolUnavailableError as err:  # the tool went away during the run
                if strict:
                    raise
                findings = [Finding(None, name, "", err.message) for _ in chunk]
            if len(findings) != len(chunk):
                raise ToolError(
                    f"{name} answered {len(findings)} findings for {len(chunk)} files",
                    tool=name,
                )
            answers[name].update(zip(chunk, findings, strict=True))
    for name, paths in unique.items():
        for path in paths:
            results[path].append(answers[name][path])
    return results


def _chunk_size(instance: FormatValidator, count: int, workers: int) -> int:
    """Files per task.

    mediaconch: its whole batch, spread over the workers. A check that holds
    the GIL (jpylyzer, pikepdf) gains nothing from a second thread and loses
    to the switching (100 JP2s: 0.05 s on one thread, 0.08 s on two), so its
    files go as one task, on one thread, beside the others. The rest go a few
    at a time (SIARD archives one at a time: each is a database), so a long
    film does not queue the images behind it.
    """
    if isinstance(instance, MediaConchValidator):
        per_worker = -(-count // max(1, workers))
        return max(1, min(instance.batch_size, per_worker))
    if getattr(instance, "holds_gil", False):
        return max(1, count)
    return max(1, int(getattr(instance, "files_per_task", 4)))
