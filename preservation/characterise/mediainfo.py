"""MediaInfo (MediaArea) as a ``CharacterisationTool``: one process per batch.

``mediainfo --Output=JSON f1 f2 ...`` reads many files in one process and
answers with one record per argument, in argument order: an object for one
file, a list for several. A file it cannot open still gets a record, with
``"media": null`` and no ``@ref``, so records are matched to inputs by position
and checked against the path each one echoes in ``media/@ref``.

Three things the obvious call gets wrong:

* The command line has a limit (``ARG_MAX``, 2 MiB on Linux, environment
  included), so a batch is cut into chunks of at most ``max_arg_bytes`` of
  arguments: still one process per ~1,000 files.
* Under the C locale MediaInfo cannot open a file whose name is not ASCII,
  and it prints a newline in a name as `` / ``: such names go in as aliases
  (``tools.plain_names``), and the process runs with ``LC_ALL=C.UTF-8``.
* If MediaInfo crashes on one hostile file, the chunk is split in two and
  each half run again, down to the one file that crashes it: that file gets an
  error, the rest their records. Only when every file fails is it the tool
  that is broken (``ToolError``). A chunk that runs past ``timeout`` is not
  split (a hang would cost one timeout per halving); its files get errors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from preservation.characterise.tools import ToolRun, display_name, plain_names
from preservation.errors import ToolError, ToolUnavailableError

__all__ = ["MediaInfo"]

_VERSION = re.compile(r"v(\d+(?:\.\d+)+)")


class _ChunkFailed(Exception):
    def __init__(self, message: str, *, split: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.split = split


class MediaInfo:
    """``mediainfo`` on batches of files; nothing is kept running between batches."""

    name = "mediainfo"

    def __init__(
        self,
        executable: str = "mediainfo",
        *,
        timeout: float | None = 600.0,
        max_arg_bytes: int = 128 * 1024,
    ) -> None:
        self.executable = executable
        self.timeout = timeout
        self.max_arg_bytes = max_arg_bytes
        self._version: str | None = None
        self._lock = threading.Lock()

    def version(self) -> str:
        """MediaInfoLib's version (``23.04``), asked once per instance."""
        with self._lock:
            if self._version is None:
                out = self._call(["--Version"], timeout=60).stdout.decode("utf-8", "replace")
                found = _VERSION.search(out)
                if found is None:
                    raise ToolError(
                        f"mediainfo --Version said {out.strip()!r}: no version in it",
                        tool=self.name,
                    )
                self._version = found.group(1)
            return self._version

    def close(self) -> None:
        """Nothing to end: each batch is its own process."""

    def run(self, paths: Sequence[Path], *, names: Sequence[str] | None = None) -> ToolRun:
        """MediaInfo's records for ``paths``; see the module docstring for the rules."""
        paths = list(paths)
        labels = list(names) if names is not None else [display_name(str(p)) for p in paths]
        version = self.version()
        records: list[dict[str, Any]] = [{} for _ in paths]
        errors: dict[int, str] = {}
        crashed: dict[int, str] = {}
        document: list[Any] = []
        with plain_names(paths, ascii_only=True) as args:
            for chunk in self._chunks(args):
                self._run_chunk(chunk, args, labels, records, errors, crashed, document)
        if paths and len(crashed) == len(paths):
            raise ToolError(
                f"mediainfo failed on every file of the batch: {next(iter(crashed.values()))}",
                tool=self.name,
            )
        return ToolRun(self.name, version, document, records, errors)

    def _chunks(self, args: list[str]) -> list[list[int]]:
        """Indices of ``args`` in runs whose command line stays under ``max_arg_bytes``."""
        chunks: list[list[int]] = []
        current: list[int] = []
        size = 0
        for index, arg in enumerate(args):
            cost = len(os.fsencode(arg)) + 1
            if current and size + cost > self.max_arg_bytes:
                chunks.append(current)
                current, size = [], 0
            current.append(index)
            size += cost
        if current:
            chunks.append(current)
        return chunks

    def _run_chunk(
        self,
        chunk: list[int],
        args: list[str],
        labels: list[str],
        records: list[dict[str, Any]],
        errors: dict[int, str],
        crashed: dict[int, str],
        document: list[Any],
    ) -> None:
        try:
            elements = self._elements([args[i] for i in chunk])
        except _ChunkFailed as failed:
            if failed.split and len(chunk) > 1:
                middle = len(chunk) // 2
                for half in (chunk[:middle], chunk[middle:]):
                    self._run_chunk(half, args, labels, records, errors, crashed, document)
                return
            for index in chunk:
                errors[index] = crashed[index] = failed.message
            return
        refs = [_ref(element) for element in elements]
        if len(elements) == len(chunk) and all(
            ref is None or ref == args[i] for ref, i in zip(refs, chunk, strict=True)
        ):
            matched: list[Any] = list(elements)
        else:  # not one record per argument, in order: trust the echoed paths alone
            by_ref: dict[str, Any] = {}
            for ref, element in zip(refs, elements, strict=True):
                if ref is not None:
                    by_ref.setdefault(ref, element)
            matched = [by_ref.get(args[i]) for i in chunk]
        for index, element in zip(chunk, matched, strict=True):
            media = element.get("media") if isinstance(element, dict) else None
            if not isinstance(media, dict):
                errors[index] = "mediainfo could not open the file"
                continue
            media["@ref"] = labels[index]
            records[index] = element
        document.extend(elements)

    def _elements(self, args: list[str]) -> list[Any]:
        """One MediaInfo process over ``args``: its records, always as a list."""
        try:
            done = self._call(["--Output=JSON", *args], timeout=self.timeout)
        except subprocess.TimeoutExpired as err:
            raise _ChunkFailed(f"mediainfo timed out after {err.timeout:g} s", split=False) from err
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip()
            raise _ChunkFailed(f"mediainfo exited with status {done.returncode}: {said[:500]}")
        try:
            parsed = json.loads(done.stdout.decode("utf-8", "replace"))
        except json.JSONDecodeError as err:
            raise _ChunkFailed(f"mediainfo's output is not JSON: {err}") from err
        if isinstance(parsed, dict):
            return [parsed]
        if isinstance(parsed, list):
            return parsed
        raise _ChunkFailed(f"mediainfo's output is a JSON {type(parsed).__name__}")

    def _call(
        self, args: list[str], *, timeout: float | None
    ) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ, LC_ALL="C.UTF-8")
        try:
            return subprocess.run(
                [self.executable, *args],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env=env,
                check=False,
            )
        except (FileNotFoundError, PermissionError) as err:
            raise ToolUnavailableError(
                f"mediainfo is not installed or cannot run ({self.executable}): {err}",
                tool=self.name,
            ) from err
        except OSError as err:
            raise ToolError(f"mediainfo could not be started: {err}", tool=self.name) from err


def _ref(element: Any) -> str | None:
    media = element.get("media") if isinstance(element, dict) else None
    ref = media.get("@ref") if isinstance(media, dict) else None
    return ref if isinstance(ref, str) else None
