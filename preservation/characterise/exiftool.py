"""ExifTool (Phil Harvey) as a ``CharacterisationTool``: one process for the life of a worker.

ExifTool is a Perl program that spends ~0.2 s loading its modules before it
reads a byte, so it is started once as ``exiftool -stay_open True -@ -`` and
fed batches on its standard input: one argument per line, the batch ended by
``-execute<N>``, after which ExifTool prints ``{ready<N>}`` on standard output.
``-echo4 {ready<N>}`` puts the same marker on standard error after the batch,
so both streams can be read to the end of each batch; a thread drains each
stream all the time, so neither pipe can fill up and stall ExifTool. The
process is restarted when it has died, and ``close`` ends it with
``-stay_open False``.

Per batch: ``-json -G1 -n`` (every tag, named with its family-1 group, as raw
numbers rather than print strings, so ``PNG:ColorType`` is ``2``, not
``"RGB"``), plus ``-api LargeFileSupport=1`` for files over 2 GB. Three
``System`` tags are left out because they describe the staging copy rather
than the object (its folder, last access and inode change times): the folder
would leak staging paths into the AIP.

An argument file cannot carry a name with a newline (or trailing blanks,
which ExifTool strips, or bytes that are not UTF-8), so such files go in as
aliases (``tools.plain_names``); ``SourceFile`` and ``System:FileName`` are
set back to the real names. A file ExifTool cannot read gets an error from
``ExifTool:Error`` in its record, or from the ``Error: ... - <file>`` line on
standard error when it has no record at all.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from preservation.characterise.tools import ToolRun, display_name, plain_names
from preservation.errors import ToolError, ToolUnavailableError

__all__ = ["ExifTool"]

BATCH_ARGS: tuple[str, ...] = (
    "-json",
    "-G1",
    "-n",
    "-q",
    "-charset",
    "filename=utf8",
    "-api",
    "LargeFileSupport=1",
    "--System:Directory",
    "--System:FileAccessDate",
    "--System:FileInodeChangeDate",
)

_Lines = queue.Queue[bytes | None]


def _pump(stream: IO[bytes], lines: _Lines) -> None:
    """Move a stream's lines into a queue until it ends (then put None)."""
    try:
        for line in iter(stream.readline, b""):
            lines.put(line)
    except (OSError, ValueError):  # the stream was closed under us: the process is gone
        pass
    finally:
        lines.put(None)


def _shutdown(process: subprocess.Popen[bytes]) -> None:
    """Ask ExifTool to leave, and make sure it has."""
    if process.poll() is None:
        try:
            assert process.stdin is not None
            process.stdin.write(b"-stay_open\nFalse\n")
            process.stdin.flush()
            process.stdin.close()
            process.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


class ExifTool:
    """One long-lived ``exiftool -stay_open`` process, fed one batch at a time.

    Thread-safe: batches from several threads are run one after the other.
    ``starts`` counts the processes this object has started (one, unless
    ExifTool died); ``pid`` is the running one's.
    """

    name = "exiftool"

    def __init__(self, executable: str = "exiftool", *, timeout: float | None = 600.0) -> None:
        self.executable = executable
        self.timeout = timeout
        self.starts = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout: _Lines = queue.Queue()
        self._stderr: _Lines = queue.Queue()
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._counter = itertools.count(1)
        self._version: str | None = None

    @property
    def pid(self) -> int | None:
        """The running ExifTool's process id, or None when none is running."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def version(self) -> str:
        """ExifTool's version (``12.57``), asked of the running process once."""
        with self._lock:
            return self._version_locked()

    def close(self) -> None:
        """End the ExifTool process (``-stay_open False``); a later batch starts another."""
        with self._lock:
            self._stop()

    def run(self, paths: Sequence[Path], *, names: Sequence[str] | None = None) -> ToolRun:
        """ExifTool's records for ``paths``, in one ``-execute`` of the running process."""
        paths = list(paths)
        labels = list(names) if names is not None else [display_name(str(p)) for p in paths]
        with self._lock:
            version = self._version_locked()
            if not paths:
                return ToolRun(self.name, version, [], [], {})
            with plain_names(paths) as args:
                out, err = self._execute([*BATCH_ARGS, *args])
        text = out.decode("utf-8", "replace").strip()
        try:
            document = json.loads(text) if text else []
        except json.JSONDecodeError as exc:
            raise ToolError(f"exiftool's output is not JSON: {exc}", tool=self.name) from exc
        if not isinstance(document, list):
            raise ToolError("exiftool's output is not a JSON list", tool=self.name)

        waiting: dict[str, deque[int]] = defaultdict(deque)
        for index, arg in enumerate(args):
            waiting[arg].append(index)
        per_file: list[dict[str, Any]] = [{} for _ in paths]
        errors: dict[int, str] = {}
        for record in document:
            if not isinstance(record, dict):
                continue
            source = record.get("SourceFile")
            pending = waiting.get(source) if isinstance(source, str) else None
            if not pending:  # never expected; still, no staging path goes into an AIP
                record["SourceFile"] = display_name(os.path.basename(str(source)))
                continue
            index = pending.popleft()
            record["SourceFile"] = labels[index]
            if args[index] != os.path.abspath(paths[index]):  # an alias: its real name back
                record["System:FileName"] = display_name(os.path.basename(paths[index]))
            per_file[index] = record
            if record.get("ExifTool:Error"):
                errors[index] = str(record["ExifTool:Error"])
        missing: dict[str, list[int]] = defaultdict(list)
        for index, record in enumerate(per_file):
            if not record:
                missing[args[index]].append(index)
        for line in err:  # "Error: File not found - /the/file"
            text = line.decode("utf-8", "replace").strip()
            at = text.find(" - ")
            while at != -1:
                if text[at + 3 :] in missing:
                    for index in missing[text[at + 3 :]]:
                        errors.setdefault(index, text[:at].removeprefix("Error: "))
                    break
                at = text.find(" - ", at + 1)
        for indices in missing.values():
            for index in indices:
                errors.setdefault(index, "exiftool said nothing about the file")
        return ToolRun(self.name, version, document, per_file, errors)

    # The process.

    def _version_locked(self) -> str:
        if self._version is None:
            try:
                out, _ = self._execute(["-ver"])
            except ToolUnavailableError:
                raise
            except ToolError as err:
                raise ToolUnavailableError(
                    f"exiftool will not start: {err.message}", tool=self.name
                ) from err
            self._version = out.decode("utf-8", "replace").strip()
            if not self._version:
                raise ToolUnavailableError("exiftool -ver said nothing", tool=self.name)
        return self._version

    def _start(self) -> subprocess.Popen[bytes]:
        self._stop()
        try:
            process = subprocess.Popen(
                [self.executable, "-stay_open", "True", "-@", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except (FileNotFoundError, PermissionError) as err:
            raise ToolUnavailableError(
                f"exiftool is not installed or cannot run ({self.executable}): {err}",
                tool=self.name,
            ) from err
        except OSError as err:
            raise ToolError(f"exiftool could not be started: {err}", tool=self.name) from err
        self.starts += 1
        self._stdout, self._stderr = queue.Queue(), queue.Queue()
        for stream, lines, label in (
            (process.stdout, self._stdout, "out"),
            (process.stderr, self._stderr, "err"),
        ):
            assert stream is not None
            threading.Thread(
                target=_pump,
                args=(stream, lines),
                name=f"exiftool-{process.pid}-{label}",
                daemon=True,
            ).start()
        self._process = process
        self._finalizer = weakref.finalize(self, _shutdown, process)
        return process

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown once, then never again
            self._finalizer = None
        self._process = None

    def _execute(self, args: list[str]) -> tuple[bytes, list[bytes]]:
        """Run one ``-execute`` with ``args``: its standard output, its standard error lines."""
        process = self._process
        if process is None or process.poll() is not None:
            process = self._start()
        number = next(self._counter)
        marker = f"{{ready{number}}}".encode()
        lines = [*args, "-echo4", marker.decode(), f"-execute{number}"]
        payload = "".join(f"{line}\n" for line in lines).encode("utf-8")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            assert process.stdin is not None
            process.stdin.write(payload)
            process.stdin.flush()
        except (OSError, ValueError) as err:
            self._stop()
            raise ToolError(f"exiftool stopped taking input: {err}", tool=self.name) from err
        out = self._read_until(self._stdout, marker, deadline)
        err_lines = self._read_until(self._stderr, marker, deadline)
        return b"".join(out), err_lines

    @staticmethod
    def _pending(lines: _Lines) -> list[bytes]:
        """What a stream has already said, without waiting for more."""
        got: list[bytes] = []
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return got
            if line is None:
                return got
            got.append(line)

    def _read_until(self, lines: _Lines, marker: bytes, deadline: float | None) -> list[bytes]:
        got: list[bytes] = []
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                self._stop()
                raise ToolError(
                    f"exiftool timed out after {self.timeout:g} s; stopped", tool=self.name
                ) from None
            if line is None:
                tail = b"".join([*got, *self._pending(self._stderr)])[-500:]
                said = tail.decode("utf-8", "replace").strip()
                self._stop()
                raise ToolError(
                    f"exiftool stopped in the middle of a batch: {said}", tool=self.name
                )
            stripped = line.rstrip(b"\r\n")
            if stripped.endswith(marker):
                if stripped[: -len(marker)]:
                    got.append(stripped[: -len(marker)])
                return got
            got.append(line)
