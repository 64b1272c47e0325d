"""What a characterisation tool promises, and the one set of them a process keeps.

Four tools implement ``CharacterisationTool``: MediaInfo (``mediainfo.py``),
ExifTool (``exiftool.py``), ffprobe's view through PyAV (``ffprobe.py``) and
the SIARD metadata reader (``siard.py``, in-process like ffprobe).
Every one of them takes a *batch* of paths: starting a process costs more than
reading one file's headers (ExifTool is a Perl program that takes ~0.2 s to
load its modules), so a SIP of 50,000 files must cost a handful of processes,
not 50,000. For the same reason ``ToolBox`` keeps one instance of each tool for
the life of a worker: ExifTool then stays running between SIPs.

Each run returns the tool's full output (kept in the AIP as it is, less the
staging paths) and the tool's own record for each path; one unreadable file is
an entry in ``errors``, never an exception, because one odd file must not cost
the characterisation of its whole SIP.

The helpers at the end are shared by the tools that start processes: awkward
file names (a newline, bytes that are not UTF-8, trailing blanks) cannot be
passed through an ExifTool argument file or echoed back by MediaInfo, so such
files are handed over under a plain alias (a symbolic link in a private
folder) and renamed back in the output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from preservation.errors import ConfigurationError

__all__ = [
    "CharacterisationTool",
    "ToolBox",
    "ToolRun",
    "display_name",
    "plain_names",
]


@dataclass(frozen=True)
class ToolRun:
    """One tool's answer for one batch.

    ``document`` is the whole output as parsed JSON, with each echoed path
    replaced by the name the caller gave; ``per_file[i]`` is the tool's own
    record for ``paths[i]`` (the same object as inside ``document``; ``{}``
    when the tool said nothing about it); ``errors`` maps an index to what went
    wrong with that file.
    """

    tool: str
    version: str
    document: Any
    per_file: list[dict[str, Any]]
    errors: dict[int, str] = field(default_factory=dict)


@runtime_checkable
class CharacterisationTool(Protocol):
    """A characterisation tool, ready for many batches.

    ``version`` raises ``ToolUnavailableError`` when the tool is missing;
    ``run`` raises ``ToolError`` when the tool itself fails on the batch, and
    reports files it could not read in ``ToolRun.errors``. ``names``, when
    given, replaces the paths wherever the tool echoes them, so that staging
    paths do not end up in an AIP. ``close`` ends whatever the tool keeps
    running (nothing, for most).
    """

    name: str

    def version(self) -> str: ...

    def run(self, paths: Sequence[Path], *, names: Sequence[str] | None = None) -> ToolRun: ...

    def close(self) -> None: ...


def _mediainfo() -> CharacterisationTool:
    from preservation.characterise.mediainfo import MediaInfo

    return MediaInfo()


def _exiftool() -> CharacterisationTool:
    from preservation.characterise.exiftool import ExifTool

    return ExifTool()


def _ffprobe() -> CharacterisationTool:
    from preservation.characterise.ffprobe import FFprobe

    return FFprobe()


def _siard() -> CharacterisationTool:
    from preservation.characterise.siard import SiardTool

    return SiardTool()


DEFAULT_TOOLS: Mapping[str, Callable[[], CharacterisationTool]] = {
    "mediainfo": _mediainfo,
    "exiftool": _exiftool,
    "ffprobe": _ffprobe,
    "siard": _siard,
}


class ToolBox:
    """One instance of each tool, made on first use and kept until ``close``.

    A long-running worker keeps one ToolBox, so its ExifTool process is
    started once and reused by every SIP. Thread-safe: the batch runner asks
    for each tool from its own thread. ``factories`` replaces or adds tools
    (tests use it to point a tool at another executable).
    """

    def __init__(
        self, factories: Mapping[str, Callable[[], CharacterisationTool]] | None = None
    ) -> None:
        self._factories = dict(DEFAULT_TOOLS if factories is None else factories)
        self._tools: dict[str, CharacterisationTool] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The tool names this box can make."""
        return sorted(self._factories)

    def get(self, name: str) -> CharacterisationTool:
        """The tool called ``name``, made on first use."""
        with self._lock:
            tool = self._tools.get(name)
            if tool is None:
                factory = self._factories.get(name)
                if factory is None:
                    raise ConfigurationError(
                        f"unknown characterisation tool {name!r}; "
                        f"choose one of {', '.join(sorted(self._factories))}",
                        tool=name,
                    )
                tool = self._tools[name] = factory()
            return tool

    def close(self) -> None:
        """End every tool's processes; the box may be used again afterwards."""
        with self._lock:
            tools, self._tools = list(self._tools.values()), {}
        for tool in tools:
            tool.close()

    def __enter__(self) -> ToolBox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def display_name(name: str) -> str:
    """``name`` as valid Unicode: bytes that are not UTF-8 (kept by Python as
    surrogates) become ``\\xNN`` escapes, so JSON documents can always be written."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_plain(name: str, *, ascii_only: bool = False) -> bool:
    """True when a tool can take ``name`` as one argument line and echo it back unchanged."""
    if not name.isprintable() or name != name.rstrip():
        return False
    if ascii_only:
        return name.isascii()
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def plain_names(paths: Sequence[Path], *, ascii_only: bool = False) -> Iterator[list[str]]:
    """Absolute names for ``paths`` that any tool can take, valid inside the block.

    Absolute, so that no name starts with ``-`` and reads as an option. A name
    that is not plain (see ``_is_plain``) is replaced by a symbolic link in a
    private folder whose name is its index; the caller maps echoed names back
    by position in the returned list. ``ascii_only`` aliases every name with
    a non-ASCII character too, for tools that read names in the C locale's
    encoding (MediaInfo cannot open ``é.wav`` under ``LC_ALL=C``).
    """
    names: list[str] = []
    folder: str | None = None
    try:
        for index, path in enumerate(paths):
            name = os.path.abspath(os.fspath(path))
            if not _is_plain(name, ascii_only=ascii_only):
                if folder is None:
                    folder = tempfile.mkdtemp(prefix="characterise-")
                suffix = Path(name).suffix
                if not (suffix[1:].isascii() and suffix[1:].isalnum()):
                    suffix = ""
                alias = os.path.join(folder, f"{index}{suffix}")
                os.symlink(name, alias)
                name = alias
            names.append(name)
        yield names
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
