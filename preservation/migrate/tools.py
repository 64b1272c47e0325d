"""The programs that carry out a policy's actions, behind one small interface.

``run`` takes many jobs at once because the cheap way to convert differs per
tool: Pillow converts in threads of this process (it releases the GIL while it
decodes and encodes), ffmpeg, Ghostscript and ImageMagick cost one process per
file whatever we do, and LibreOffice costs seconds to start, so one ``soffice``
converts a batch of files. Every job gets a ``ToolResult``; a file the tool
fails on is data (``error``), never an exception, because one broken file must
not stop the migration of the others. Only a tool that cannot run at all
(``ToolUnavailableError``) or an unknown name (``ConfigurationError``) raises.

A failed job leaves no output behind: a half-written file at ``job.output``
would look like a result to whoever lists the folder next.

Programs run without a shell, with absolute paths and in their own process
group, so a timeout kills the whole tree (``soffice`` is a wrapper around
``soffice.bin``). What a program prints (stdout and stderr interleaved) is kept
as a tail, enough to say why it failed.

``command_for`` gives the argv a person would type to repeat one job alone: the
benchmark measures "the tool alone, same arguments" with it, and a curator can
rerun a migration by hand from the PREMIS event.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from preservation.errors import ConfigurationError, ToolUnavailableError

if TYPE_CHECKING:
    from PIL import Image

    from preservation.migrate.policy import Action

__all__ = [
    "TOOL_KINDS",
    "TOOL_NAMES",
    "Job",
    "MigrationTool",
    "ToolResult",
    "argument_problem",
    "command_for",
    "tool",
]

TOOL_NAMES = ("pillow", "imagemagick", "ffmpeg", "ghostscript", "libreoffice")
#: The kinds of output each tool can make (an action's ``kind`` must be one of them).
TOOL_KINDS: Mapping[str, tuple[str, ...]] = {
    "pillow": ("image",),
    "imagemagick": ("image",),
    "ffmpeg": ("audio", "video"),
    "ghostscript": ("document",),
    "libreoffice": ("document",),
}

#: Files per ``soffice`` process: enough to spread its start-up, few enough that
#: a batch lost to a crash costs little to redo.
LIBREOFFICE_BATCH = 30
STDERR_TAIL = 4000


@dataclass(frozen=True)
class Job:
    key: Any
    source: Path
    output: Path


@dataclass(frozen=True)
class ToolResult:
    key: Any
    output: Path
    exit_code: int
    seconds: float
    command: tuple[str, ...]
    stderr: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class MigrationTool(Protocol):
    name: str

    def version(self) -> str: ...

    def run(
        self, action: Action, jobs: Sequence[Job], *, workers: int = 2, timeout: float = 3600
    ) -> list[ToolResult]: ...


# --- arguments ---------------------------------------------------------------

_PILLOW_FORMATS: Mapping[str, tuple[tuple[str, ...], frozenset[str]]] = {
    # format: (extensions, option keys besides "format")
    "TIFF": ((".tif", ".tiff"), frozenset({"compression"})),
    "PNG": ((".png",), frozenset()),
    "JPEG": ((".jpg", ".jpeg"), frozenset({"quality"})),
}
_GS_UNSAFE = ("-dNOSAFER", "-dDELAYSAFER", "-dWRITESYSTEMDICT")
_LO_OWN = ("--outdir", "-env:", "--headless", "--cat", "--print-to-file", "--convert-to=")


def _pillow_options(arguments: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"pillow arguments are key=value, not {argument!r}")
        if key in options:
            raise ValueError(f"pillow option {key!r} is given twice")
        options[key] = value
    return options


def argument_problem(action: Action) -> str | None:
    """Why ``action``'s tool could not run its arguments, or None.

    Checked when the policy loads, so a policy that would fail on every file
    stops a worker at start-up instead.
    """
    args = list(action.arguments)
    if action.tool == "pillow":
        try:
            options = _pillow_options(args)
        except ValueError as err:
            return str(err)
        fmt = options.get("format")
        if fmt is None or fmt not in _PILLOW_FORMATS:
            return f"pillow needs format= one of {', '.join(_PILLOW_FORMATS)}"
        extensions, keys = _PILLOW_FORMATS[fmt]
        unknown = sorted(set(options) - keys - {"format"})
        if unknown:
            return f"pillow {fmt} takes {', '.join(sorted(keys)) or 'no options'}, not {unknown}"
        if "quality" in options and not (
            options["quality"].isdigit() and 1 <= int(options["quality"]) <= 100
        ):
            return "pillow quality is a whole number from 1 to 100"
        if action.extension not in extensions:
            return f"pillow {fmt} writes {' or '.join(extensions)}, not {action.extension}"
        return None
    if action.tool == "libreoffice":
        if any(a in ("{input}", "{output}") for a in args):
            return "libreoffice takes no {input} or {output}: the tool adds the files and --outdir"
        own = [a for a in args if a.startswith(_LO_OWN)]
        if own:
            return f"libreoffice arguments may not set {own[0]!r}: the tool does"
        if args.count("--convert-to") != 1 or args.index("--convert-to") == len(args) - 1:
            return "libreoffice needs one --convert-to followed by its filter"
        spec = args[args.index("--convert-to") + 1]
        if "." + spec.split(":", 1)[0] != action.extension:
            return (
                f"libreoffice --convert-to {spec.split(':', 1)[0]!r} writes "
                f"'.{spec.split(':', 1)[0]}' files, but the action's extension is "
                f"{action.extension!r}"
            )
        return None
    inputs = sum(a.count("{input}") for a in args)
    outputs = sum(a.count("{output}") for a in args)
    if inputs != 1 or outputs != 1:
        return f"{action.tool} arguments need {{input}} and {{output}} once each"
    if action.tool == "ffmpeg":
        if (
            "{input}" not in args
            or args.index("{input}") == 0
            or (args[args.index("{input}") - 1] != "-i")
        ):
            return "ffmpeg arguments need -i {input}"
        if args[-1] != "{output}":
            return "ffmpeg arguments end with {output}"
    elif action.tool == "ghostscript":
        if "-sOutputFile={output}" not in args:
            return "ghostscript arguments need -sOutputFile={output}"
        unsafe = [a for a in args if a.startswith(_GS_UNSAFE)]
        if unsafe:
            return f"ghostscript always runs -dSAFER; {unsafe[0]} is refused"
    elif action.tool == "imagemagick" and args[-1] != "{output}":
        return "imagemagick arguments end with {output}"
    return None


def _substitute(arguments: Sequence[str], source: Path, output: Path) -> list[str]:
    return [a.replace("{input}", str(source)).replace("{output}", str(output)) for a in arguments]


# --- running a process ---------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    exit_code: int
    output: str
    seconds: float
    timed_out: bool = False
    failed_to_start: str | None = None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run(
    argv: Sequence[str],
    timeout: float,
    *,
    idle: bool = False,
    on_line: Callable[[str], None] | None = None,
    keep: Callable[[str], bool] | None = None,
) -> _Outcome:
    """Run ``argv`` in its own process group; kill the group after ``timeout`` seconds.

    ``idle``: the clock restarts with each line the program prints, so a batch
    gets ``timeout`` per file rather than for all of them.
    """
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as err:
        return _Outcome(
            exit_code=127,
            output=str(err),
            seconds=time.perf_counter() - started,
            failed_to_start=f"cannot start {argv[0]}: {err.strerror or err}",
        )
    lines: collections.deque[str] = collections.deque(maxlen=500)
    last_line = [time.monotonic()]
    stream = proc.stdout
    assert stream is not None

    def pump() -> None:
        # Bounded reads: a binary blob without newlines must not grow one line forever.
        for raw in iter(lambda: stream.readline(65536), b""):
            last_line[0] = time.monotonic()
            line = raw.decode("utf-8", "replace")
            if on_line is not None:
                on_line(line)
            if keep is None or keep(line):
                lines.append(line)

    reader = threading.Thread(target=pump, name=f"output of {Path(argv[0]).name}", daemon=True)
    reader.start()
    begun = time.monotonic()
    timed_out = [False]
    finished = threading.Event()

    def watchdog() -> None:
        # Popen.wait(timeout) polls with sleeps of up to 50 ms, which on a tool that
        # takes 0.1 s per file is a fifth of its time; a blocking wait plus this
        # watchdog notices the exit at once and still kills a hung tool.
        while True:
            remaining = (last_line[0] if idle else begun) + timeout - time.monotonic()
            if remaining <= 0:
                timed_out[0] = True
                _kill_group(proc)
                return
            if finished.wait(min(remaining, 1.0)):
                return

    guard = threading.Thread(target=watchdog, name=f"timeout of {Path(argv[0]).name}", daemon=True)
    guard.start()
    try:
        proc.wait()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        finished.set()
        guard.join()
    reader.join(timeout=5)
    if reader.is_alive():  # a child still holds the pipe: its group is alive, so this is safe
        _kill_group(proc)
        reader.join(timeout=5)
    stream.close()
    return _Outcome(
        exit_code=proc.returncode,
        output="".join(lines)[-STDERR_TAIL:],
        seconds=time.perf_counter() - started,
        timed_out=timed_out[0],
    )


def _exit_error(name: str, outcome: _Outcome, timeout: float, *, idle: bool = False) -> str | None:
    if outcome.failed_to_start:
        return outcome.failed_to_start
    if outcome.timed_out:
        how = "printed nothing for" if idle else "ran for more than"
        return f"timeout: {name} {how} {timeout:g} s and was killed"
    code = outcome.exit_code
    if code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        return f"{name} was killed by {signame}"
    if code != 0:
        last = next((ln.strip() for ln in reversed(outcome.output.splitlines()) if ln.strip()), "")
        return f"{name} exited with code {code}" + (f": {last}" if last else "")
    return None


def _output_error(output: Path) -> str | None:
    try:
        size = output.stat().st_size
    except FileNotFoundError:
        return "no output: the tool succeeded but wrote no file"
    return "empty output: the tool wrote a file of 0 bytes" if size == 0 else None


def _discard(output: Path) -> None:
    try:
        output.unlink()
    except FileNotFoundError:
        pass


def _parallel(
    jobs: Sequence[Job], workers: int, one: Callable[[Job], ToolResult]
) -> list[ToolResult]:
    if not jobs:
        return []
    with ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(jobs))), thread_name_prefix="migrate"
    ) as pool:
        return list(pool.map(one, jobs))


def metadata_first(output: Path) -> str | None:
    """Rewrite a PDF so that its XMP metadata comes near the start; an error, or None.

    Ghostscript and LibreOffice write the ``pdfaid`` claim at the end of the
    file, and fido (as DROID's signatures assume) reads only the head: a PDF/A
    over 128 KiB would be identified as plain PDF. qpdf (through pikepdf)
    writes objects in the order it reaches them from the catalogue, the
    metadata stream among the first; nothing else changes, and the output is
    still verified (validated, pages counted, re-identified) afterwards.
    """
    import pikepdf

    partial = output.with_name(output.name + ".partial")
    try:
        with pikepdf.open(output) as pdf:
            pdf.save(partial, object_stream_mode=pikepdf.ObjectStreamMode.preserve)
        os.replace(partial, output)
    except (pikepdf.PdfError, OSError) as err:
        partial.unlink(missing_ok=True)
        return f"qpdf could not rewrite the PDF with its metadata first: {err}"
    return None


#: Noted after a tool's command line when its PDF output was rewritten by :func:`metadata_first`.
METADATA_FIRST = ("&&", "qpdf", "(pikepdf): XMP metadata first")


# --- tools that cost one process per file ---------------------------------------


class _ProcessTool:
    """A program run once per job, ``workers`` at a time."""

    name = ""
    version_argv: tuple[str, ...] = ()
    version_pattern = r"(.+)"
    version_format = "{}"

    def __init__(self, program: str) -> None:
        self.program = program
        self._version: str | None = None
        self._lock = threading.Lock()

    def version(self) -> str:
        with self._lock:
            if self._version is None:
                self._version = self._read_version()
            return self._version

    def _read_version(self) -> str:
        try:
            done = subprocess.run(
                [self.program, *self.version_argv],
                capture_output=True,
                timeout=60,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ToolUnavailableError(
                f"{self.name} ({self.program}) will not start: {err}", tool=self.name
            ) from err
        text = (done.stdout + done.stderr).decode("utf-8", "replace")
        found = re.search(self.version_pattern, text, re.MULTILINE)
        if found is not None:
            return self.version_format.format(*found.groups())
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        if done.returncode != 0 or not first:
            raise ToolUnavailableError(
                f"{self.name} ({self.program}) will not say its version: "
                f"exit code {done.returncode}, {text.strip()[:200]!r}",
                tool=self.name,
            )
        return first[:100]  # a build this pattern does not know: its own words

    def argv(self, action: Action, source: Path, output: Path) -> list[str]:
        raise NotImplementedError

    def keep(self, line: str) -> bool:
        """Whether a line of the program's output is worth keeping in the tail."""
        return True

    def pdf_out(self, job: Job) -> bool:
        """Whether this tool's output is a PDF to rewrite with :func:`metadata_first`."""
        return self.name in ("ghostscript", "libreoffice") and (
            Path(job.output).suffix.lower() == ".pdf"
        )

    def run(
        self, action: Action, jobs: Sequence[Job], *, workers: int = 2, timeout: float = 3600
    ) -> list[ToolResult]:
        return _parallel(jobs, workers, lambda job: self._one(action, job, timeout))

    def _one(self, action: Action, job: Job, timeout: float) -> ToolResult:
        argv = self.argv(action, Path(job.source).absolute(), Path(job.output).absolute())
        outcome = _run(argv, timeout, keep=self.keep)
        error = _exit_error(self.name, outcome, timeout) or _output_error(job.output)
        rewritten = error is None and self.pdf_out(job)
        if rewritten:
            error = metadata_first(Path(job.output))
        if error is not None:
            _discard(job.output)
        return ToolResult(
            key=job.key,
            output=job.output,
            exit_code=outcome.exit_code,
            seconds=outcome.seconds,
            command=tuple(argv) + (METADATA_FIRST if rewritten else ()),
            stderr=outcome.output,
            error=error,
        )


class _FFmpeg(_ProcessTool):
    name = "ffmpeg"
    version_argv = ("-version",)
    version_pattern = r"ffmpeg version n?(\d+(?:\.\d+)*)"
    version_format = "ffmpeg {}"

    def argv(self, action: Action, source: Path, output: Path) -> list[str]:
        # -nostdin: a worker has no terminal to ask "overwrite?" on; -y: the
        # caller chose the output path, a leftover of an earlier try is ours.
        return [
            self.program,
            "-nostdin",
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "warning",
            "-y",
            *_substitute(action.arguments, source, output),
        ]


class _Ghostscript(_ProcessTool):
    name = "ghostscript"
    version_argv = ("-h",)
    version_pattern = r"^(.*Ghostscript) (\d+\.\d+\.\d+)"
    version_format = "{} {}"

    def argv(self, action: Action, source: Path, output: Path) -> list[str]:
        # -sOutputFile reads % as a page-number pattern: a % in the path is doubled.
        escaped = Path(str(output).replace("%", "%%"))
        return [
            self.program,
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            *[
                a.replace("{input}", str(source)).replace("{output}", str(escaped))
                for a in action.arguments
            ],
        ]

    def keep(self, line: str) -> bool:
        # "Page 1", "Page 2"...: progress that would push the warnings out of the tail.
        return re.fullmatch(r"Page \d+\s*", line) is None


class _ImageMagick(_ProcessTool):
    name = "imagemagick"
    version_argv = ("-version",)
    version_pattern = r"Version: ImageMagick (\S+)"
    version_format = "ImageMagick {}"

    def argv(self, action: Action, source: Path, output: Path) -> list[str]:
        return [self.program, *_substitute(action.arguments, source, output)]

    def _one(self, action: Action, job: Job, timeout: float) -> ToolResult:
        # ImageMagick reads "name[1]" as frame 1 of "name" and "png:name" as a
        # coder prefix, whatever exists on disk: it is given names it cannot
        # misread (a link to the source, an output named here), and the output
        # is renamed into place.
        output = Path(job.output).absolute()
        with tempfile.TemporaryDirectory(prefix="preservation-magick-") as work:
            link = Path(work) / ("source" + _safe_suffix(Path(job.source)))
            link.symlink_to(Path(job.source).absolute())
            staged = output.with_name(f".migrate-{uuid.uuid4().hex}{action.extension}")
            argv = self.argv(action, link, staged)
            outcome = _run(argv, timeout)
        error = _exit_error(self.name, outcome, timeout) or _output_error(staged)
        if error is None:
            os.replace(staged, output)
        else:
            _discard(staged)
            _discard(output)
        return ToolResult(
            key=job.key,
            output=job.output,
            exit_code=outcome.exit_code,
            seconds=outcome.seconds,
            command=tuple(argv),
            stderr=outcome.output,
            error=error,
        )


def _safe_suffix(path: Path) -> str:
    suffix = path.suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else ""


# --- LibreOffice: one process per batch ------------------------------------------

_CONVERT_LINE = re.compile(r"convert (.+?) -> ")


class _LibreOffice(_ProcessTool):
    name = "libreoffice"
    version_argv = ("--version",)
    version_pattern = r"(LibreOffice) (\d+(?:\.\d+)+)"
    version_format = "{} {}"

    def soffice_argv(
        self, action: Action, profile: Path, outdir: Path, sources: Sequence[Path]
    ) -> list[str]:
        # A private profile per process: soffice started with a profile already
        # in use hands its files to the running instance and exits at once.
        return [
            self.program,
            "--headless",
            "--norestore",
            "--nolockcheck",
            f"-env:UserInstallation={profile.as_uri()}",
            *action.arguments,
            "--outdir",
            str(outdir),
            *map(str, sources),
        ]

    def argv(self, action: Action, source: Path, output: Path) -> list[str]:
        digest = hashlib.sha256(str(output).encode()).hexdigest()[:16]
        profile = Path(tempfile.gettempdir()) / f"preservation-soffice-{os.getuid()}-{digest}"
        return self.soffice_argv(action, profile, output.parent, [source])

    def run(
        self, action: Action, jobs: Sequence[Job], *, workers: int = 2, timeout: float = 3600
    ) -> list[ToolResult]:
        if not jobs:
            return []
        workers = max(1, workers)
        size = max(1, min(LIBREOFFICE_BATCH, math.ceil(len(jobs) / workers)))
        batches = [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]
        with tempfile.TemporaryDirectory(
            prefix="preservation-soffice-", ignore_cleanup_errors=True
        ) as tmp:
            root = Path(tmp)
            profiles: queue.SimpleQueue[Path] = queue.SimpleQueue()
            for slot in range(min(workers, len(batches))):
                profiles.put(root / f"profile-{slot}")

            def convert(numbered: tuple[int, list[Job]]) -> list[ToolResult]:
                number, batch = numbered
                profile = profiles.get()
                try:
                    return self._batch(action, batch, root / f"batch-{number}", profile, timeout)
                finally:
                    profiles.put(profile)

            with ThreadPoolExecutor(
                max_workers=min(workers, len(batches)), thread_name_prefix="soffice"
            ) as pool:
                return [r for done in pool.map(convert, enumerate(batches)) for r in done]

    def _batch(
        self, action: Action, jobs: list[Job], work: Path, profile: Path, timeout: float
    ) -> list[ToolResult]:
        """One soffice for ``jobs``; the ones it may not have finished are redone one by one.

        The sources are linked in as ``<n>.<ext>``, so two sources with one stem
        cannot overwrite each other's output, and LibreOffice never writes
        beside the archive's files. LibreOffice converts in order and prints
        ``convert <source> -> ...`` after loading a file and before storing it,
        so once it names file m, every file before m is settled. When the
        process dies or hangs, the files not yet settled are converted again,
        each alone, which also names the one to blame.
        """
        inbox, outbox = work / "in", work / "out"
        inbox.mkdir(parents=True)
        outbox.mkdir()
        links: list[Path] = []
        for n, job in enumerate(jobs):
            link = inbox / f"{n}{_safe_suffix(Path(job.source))}"
            link.symlink_to(Path(job.source).absolute())
            links.append(link)
        index = {str(link): n for n, link in enumerate(links)}
        named: list[int] = []

        def progress(line: str) -> None:
            found = _CONVERT_LINE.match(line)
            if found and found.group(1) in index:
                named.append(index[found.group(1)])

        argv = self.soffice_argv(action, profile, outbox, links)
        outcome = _run(argv, timeout, idle=True, on_line=progress)
        failure = _exit_error(self.name, outcome, timeout, idle=True)
        extension = action.arguments[action.arguments.index("--convert-to") + 1].split(":", 1)[0]
        share = outcome.seconds / len(jobs)
        results: list[ToolResult] = []
        for n, job in enumerate(jobs):
            settled = failure is None or any(m > n for m in named)
            if not settled and len(jobs) > 1:
                again = self._batch(action, [job], work / f"alone-{n}", profile, timeout)[0]
                results.append(
                    ToolResult(
                        key=again.key,
                        output=again.output,
                        exit_code=again.exit_code,
                        seconds=again.seconds + share,
                        command=again.command,
                        stderr=again.stderr,
                        error=again.error,
                    )
                )
                continue
            produced = outbox / f"{n}.{extension}"
            error = failure if not settled else _output_error(produced)
            if error is not None and settled and n not in named:
                error = "LibreOffice could not load the document (no output)"
            if error is None:
                shutil.move(produced, job.output)
                if self.pdf_out(job):
                    error = metadata_first(Path(job.output))
            if error is not None:
                _discard(Path(job.output))
            results.append(
                ToolResult(
                    key=job.key,
                    output=job.output,
                    exit_code=outcome.exit_code,
                    seconds=share,
                    command=tuple(argv) + (METADATA_FIRST if self.pdf_out(job) else ()),
                    stderr=outcome.output,
                    error=error,
                )
            )
        return results


# --- Pillow: in this process ----------------------------------------------------

#: Tags of a source's first IFD worth carrying into a TIFF: description, not
#: layout. Layout tags (strips, compression, samples, colour map...) describe the
#: source's bytes and would corrupt the new file; SubIFDs point at data not
#: copied; the orientation is applied to the pixels instead (see ``_Pillow``).
_DESCRIPTIVE_TAGS = frozenset(
    {269, 270, 271, 272, 285, 305, 306, 315, 316, 318, 319, 33432, 34665, 34853}
)
_XMP_TAG, _IPTC_TAG, _PHOTOSHOP_TAG = 700, 33723, 34377
_XMP_ORIENTATION = re.compile(
    rb'\s*tiff:Orientation="[0-9]"|<tiff:Orientation>[0-9]</tiff:Orientation>'
)


class _Pillow:
    """Pillow, in threads: decoding and encoding release the GIL.

    Pixels are kept as Pillow decodes them, so a pixel-by-pixel check against
    the source decoded by Pillow passes. Modes: 1, L, LA, I, I;16, F, RGB,
    RGBA, CMYK and LAB are written as they are; a palette image (P, PA)
    becomes RGB, or RGBA when it has transparency, because a TIFF palette
    cannot say which index is transparent and RGB(A) is what every reader
    shows the same way. Every frame of a GIF, an APNG or a multi-page TIFF
    becomes a page. The ICC profile, resolution, XMP and the descriptive
    EXIF/TIFF tags (camera, dates, GPS) go along.

    An EXIF orientation is applied to the pixels, not copied: Pillow (13)
    turns a TIFF by its Orientation tag when it loads it, but never a JPEG,
    and many TIFF readers ignore the tag; so the TIFF holds the picture as it
    is meant to be seen, and has no tag to apply twice. A check comparing it
    with a JPEG source must apply the JPEG's orientation first.

    Pillow reads 16-bit-per-channel RGB, RGBA and LA as 8 bits; such a file is
    refused (an error naming ImageMagick) rather than quietly halved, since a
    check decoding both with Pillow could not notice. A decompression bomb
    (Pillow's limit) is an error too. A thread cannot be killed, so ``timeout``
    does not apply here.
    """

    name = "pillow"

    def version(self) -> str:
        import PIL

        return f"Pillow {PIL.__version__}"

    def run(
        self, action: Action, jobs: Sequence[Job], *, workers: int = 2, timeout: float = 3600
    ) -> list[ToolResult]:
        options = _pillow_options(action.arguments)
        command = ("pillow", "save", *_pillow_description(options))
        return _parallel(jobs, workers, lambda job: self._one(options, command, job))

    def _one(self, options: Mapping[str, str], command: tuple[str, ...], job: Job) -> ToolResult:
        started = time.perf_counter()
        error: str | None = None
        try:
            pillow_convert(options, Path(job.source), Path(job.output))
            error = _output_error(Path(job.output))
        except Exception as err:  # noqa: BLE001 - any failure of Pillow on a file is the file's result
            error = f"{type(err).__name__}: {err}"
        if error is not None:
            _discard(Path(job.output))
        return ToolResult(
            key=job.key,
            output=job.output,
            exit_code=0 if error is None else 1,
            seconds=time.perf_counter() - started,
            command=command,
            stderr="" if error is None else error[-STDERR_TAIL:],
            error=error,
        )


def _pillow_description(options: Mapping[str, str]) -> list[str]:
    fmt = options["format"]
    rest = {k: v for k, v in options.items() if k != "format"}
    if fmt == "TIFF":
        rest.setdefault("compression", "raw")
    return [fmt, *(f"{k}={v}" for k, v in sorted(rest.items()))]


def _truncated_depth(frame: Image.Image) -> bool:
    """Pillow decodes 16-bit RGB/RGBA/LA samples to 8 bits (raw modes like RGB;16B)."""
    if frame.mode.startswith(("I", "F")):
        return False
    for tile in getattr(frame, "tile", ()):
        raw = tile.args[0] if isinstance(tile.args, tuple) and tile.args else tile.args
        if isinstance(raw, str) and re.search(r";16[BLN]$", raw):
            return True
    return False


def _tiff_mode(frame: Image.Image) -> Image.Image:
    if frame.mode in ("P", "PA"):
        transparent = frame.mode == "PA" or "transparency" in frame.info
        return frame.convert("RGBA" if transparent else "RGB")
    if "transparency" in frame.info and frame.mode in ("L", "RGB"):
        # A transparent colour (PNG's tRNS) is an alpha channel in a TIFF, or it is lost.
        return frame.convert("LA" if frame.mode == "L" else "RGBA")
    return frame


def _access_mode(frame: Image.Image, fmt: str) -> Image.Image:
    """An image a browser shows: JPEG in L or RGB on white, PNG without CMYK."""
    from PIL import Image

    if fmt == "PNG":
        if frame.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "P", "RGB", "RGBA"):
            return frame
        alpha = "A" in frame.mode or "transparency" in frame.info
        return frame.convert("RGBA" if alpha else "RGB")
    if frame.mode in ("I;16", "I;16B", "I;16L", "I"):
        frame = frame.convert("I").point(lambda v: v / 256).convert("L")
    if frame.mode in ("L", "RGB"):
        return frame
    if frame.mode in ("1", "F"):
        return frame.convert("L")
    rgba = frame.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _metadata(image: Image.Image, fmt: str) -> dict[str, Any]:
    """What goes along with the pixels, read from the opened (first) frame."""
    info = image.info
    params: dict[str, Any] = {}
    if info.get("icc_profile"):
        params["icc_profile"] = info["icc_profile"]
    if info.get("dpi"):
        params["dpi"] = tuple(float(v) for v in info["dpi"])
    if fmt != "TIFF":
        return params
    from PIL import Image

    # A copy: the image's own Exif is what Pillow reads the orientation from when it loads.
    exif = Image.Exif()
    exif.load(image.getexif().tobytes())
    for tag in list(exif):
        if tag not in _DESCRIPTIVE_TAGS:
            del exif[tag]
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp is None and hasattr(image, "tag_v2"):
        xmp = image.tag_v2.get(_XMP_TAG)
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if isinstance(xmp, bytes | bytearray) and xmp:
        exif[_XMP_TAG] = _XMP_ORIENTATION.sub(b"", bytes(xmp))
    for tag in (_IPTC_TAG, _PHOTOSHOP_TAG):  # a TIFF's IPTC and Photoshop blocks, kept as bytes
        value = getattr(image, "tag_v2", {}).get(tag)
        if isinstance(value, bytes) and value:
            exif[tag] = value
    if len(exif):
        params["exif"] = exif
    if "dpi" not in params and info.get("resolution"):
        params["resolution"] = info["resolution"][0]
        params["y_resolution"] = info["resolution"][1]
        params["resolution_unit"] = 1
    return params


def pillow_convert(options: Mapping[str, str], source: Path, output: Path) -> None:
    """Convert one image as the pillow tool does (also ``python -m ...tools pillow``)."""
    from PIL import Image, ImageOps, TiffImagePlugin

    fmt = options["format"]
    too_deep = ValueError(
        "16 bits per channel that Pillow would read as 8: convert this file with the "
        "imagemagick tool"
    )
    with Image.open(source) as image:
        if _truncated_depth(image):  # before anything loads the pixels and forgets the tiles
            raise too_deep
        params = _metadata(image, fmt)
        if fmt == "TIFF":
            params["compression"] = options.get("compression", "raw")
        elif fmt == "JPEG":
            params["quality"] = int(options.get("quality", "90"))
        frames = getattr(image, "n_frames", 1) if fmt == "TIFF" else 1

        def frame_at(index: int) -> Image.Image:
            if index:
                image.seek(index)
                if _truncated_depth(image):
                    raise too_deep
            image.load()
            # A TIFF is already turned (Pillow does it on load); a JPEG is turned here.
            upright = ImageOps.exif_transpose(image)
            return _tiff_mode(upright) if fmt == "TIFF" else _access_mode(upright, fmt)

        if frames == 1:
            frame = frame_at(0)
            if fmt != "TIFF" and frame.mode != image.mode and image.mode in ("CMYK", "LAB"):
                params.pop("icc_profile", None)  # the source's profile describes other channels
            frame.save(output, format=fmt, **params)
            return
        # Page by page, so a 500-page scan is never all in memory at once.
        with TiffImagePlugin.AppendingTiffWriter(str(output), new=True) as tiff:
            for index in range(frames):
                frame_at(index).save(tiff, format="TIFF", **params)
                tiff.newFrame()


# --- the registry of tools ----------------------------------------------------------

_PROGRAMS: Mapping[str, tuple[type[_ProcessTool], tuple[str, ...]]] = {
    "ffmpeg": (_FFmpeg, ("ffmpeg",)),
    "ghostscript": (_Ghostscript, ("gs",)),
    "imagemagick": (_ImageMagick, ("convert",)),
    "libreoffice": (_LibreOffice, ("soffice", "libreoffice")),
}


@functools.cache
def _tool(name: str) -> MigrationTool:
    if name == "pillow":
        return _Pillow()
    if name not in _PROGRAMS:
        raise ConfigurationError(
            f"unknown migration tool {name!r}; tools are {', '.join(TOOL_NAMES)}",
            rule="known-tool",
        )
    cls, programs = _PROGRAMS[name]
    for program in programs:
        found = shutil.which(program)
        if found is not None:
            return cls(found)
    raise ToolUnavailableError(
        f"{name} is not installed: none of {', '.join(programs)} is on PATH", tool=name
    )


def tool(name: str) -> MigrationTool:
    """The process's instance of tool ``name`` (so its version is asked once)."""
    return _tool(name)


def command_for(action: Action, job: Job) -> list[str]:
    """The argv that repeats ``job`` alone, as ``run`` would run it.

    LibreOffice names its output after the source, in the output's folder
    (``<source stem>.<ext>``); Pillow runs as ``python -m
    preservation.migrate.tools pillow``, one process per file.
    """
    source, output = Path(job.source).absolute(), Path(job.output).absolute()
    if action.tool == "pillow":
        return [
            sys.executable,
            "-m",
            "preservation.migrate.tools",
            "pillow",
            *action.arguments,
            str(source),
            str(output),
        ]
    found = tool(action.tool)
    assert isinstance(found, _ProcessTool)
    return found.argv(action, source, output)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m preservation.migrate.tools pillow KEY=VALUE... SOURCE OUTPUT``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "pillow":
        print("usage: python -m preservation.migrate.tools pillow KEY=VALUE... SOURCE OUTPUT")
        return 2
    try:
        pillow_convert(_pillow_options(args[1:-2]), Path(args[-2]), Path(args[-1]))
    except Exception as err:  # noqa: BLE001 - reported as a tool would
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        _discard(Path(args[-1]))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
