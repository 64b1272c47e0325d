"""What a virus scanner promises, and the bookkeeping that keeps the promise.

The pipeline asks one question of a batch of files: may these go into an AIP?
``ScanReport`` answers it for every file it was given, in one of three ways:
clean, a ``Detection``, or an entry in ``errors`` (the engine could not vouch
for the file). A file never drops out of the report silently, because ClamAV
itself is generous with "OK": clamd answers OK for a symbolic link it did not
follow, clamscan says nothing at all about a directory in a file list, and both
report a file past their size limits as OK without reading it. ``Batch`` is
where every implementation settles that: it resolves what to ask about, takes
the engine's verdict lines, and turns silence into an error.

Both drivers speak ClamAV's reply grammar (``<path>: OK``, ``<path>: <name>
FOUND``, ``<path>: <reason> ERROR``), so it is parsed here, once.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Batch", "Detection", "ScanReport", "VirusScanner", "describe_database"]


@dataclass(frozen=True, slots=True)
class Detection:
    """A signature matched a file: the file must not be ingested as it is."""

    path: Path
    signature: str


@dataclass(frozen=True)
class ScanReport:
    """One batch, as one engine with one signature release saw it.

    ``engine`` and ``database`` go into the PREMIS ``virus check`` event, so a
    later audit can tell which signatures a file was checked against.
    ``scanned`` counts the files the engine gave a verdict on (clean or
    detected); every other file is in ``errors`` with the reason. A file with a
    detection is never also in ``errors``: a match is certain even when the
    engine had trouble with another part of the file.
    """

    engine: str
    database: str
    scanned: int
    detections: list[Detection] = field(default_factory=list)
    errors: dict[Path, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True only when every file was scanned and nothing matched: the one safe answer."""
        return not self.detections and not self.errors


@runtime_checkable
class VirusScanner(Protocol):
    """Scans a batch of files at a fixed cost per batch, never a process per file.

    An engine that cannot be reached, will not start or has no signatures raises
    ``ScannerUnavailableError`` (a ``TransientError``): the SIP waits for it and is
    never ingested unscanned. A single file the engine cannot read is an entry in
    ``ScanReport.errors``, not an exception: one odd file must not hold up the
    report on all the others.
    """

    name: str

    def scan(self, paths: Sequence[Path]) -> ScanReport: ...


# The signature files ClamAV loads, by kind. Official releases carry their own
# version in a header; the others are plain text, one signature a line.
_OFFICIAL = {".cvd", ".cld", ".cud"}
_ONE_PER_LINE = {
    ".ndb", ".hdb", ".hsb", ".mdb", ".msb", ".ldb", ".cdb", ".idb", ".ndu", ".ldu",
    ".wdb", ".pdb", ".gdb", ".ftm", ".crb", ".imp",
}  # fmt: skip
_OTHER_SIGNATURES = {".yar", ".yara", ".cbc", ".fp", ".sfp", ".ign", ".ign2", ".cat", ".cfg"}

# A ClamAV "FOUND" that is no finding: the file went past a scan limit and was
# not (fully) read. Only reported when AlertExceedsMax / --alert-exceeds-max is on.
_NOT_FULLY_SCANNED = "Heuristics.Limits.Exceeded"


def _official_version(path: Path) -> str | None:
    """The version in a .cvd/.cld header ("ClamAV-VDB:<built>:<version>:<sigs>:...")."""
    try:
        with path.open("rb") as f:
            header = f.read(512)
    except OSError:
        return None
    fields = header.decode("ascii", "replace").split(":")
    if len(fields) < 4 or fields[0] != "ClamAV-VDB":
        return None
    return f"{fields[2]} ({fields[3]} signatures, built {fields[1]})"


def _signature_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip() and not line.startswith(b"#"))
    except OSError:
        return 0


def describe_database(folder: Path | None, reported: str | None = None) -> str:
    """The signature release for the report: the engine's own words, or the folder's contents.

    clamd and clamscan name only an official release (``27420/Thu Nov  5 ...``);
    with custom signatures alone they print just the engine version. A report
    that said "unknown" there could not be audited, so the folder is described
    instead, and custom files next to an official release are named after it.
    """
    custom: list[str] = []
    count = 0
    official: list[str] = []
    entries: list[Path] = []
    if folder is not None:
        try:
            entries = sorted(p for p in Path(folder).iterdir() if p.is_file())
        except OSError:
            entries = []
    for entry in entries:
        suffix = entry.suffix.lower()
        if suffix in _OFFICIAL:
            version = _official_version(entry)
            official.append(f"{entry.name} {version}" if version else entry.name)
        elif suffix in _ONE_PER_LINE:
            custom.append(entry.name)
            count += _signature_lines(entry)
        elif suffix in _OTHER_SIGNATURES:
            custom.append(entry.name)
    extra = f"custom: {', '.join(custom)} ({count} signatures)" if custom else ""
    if reported:
        return f"{reported} + {extra}" if extra else reported
    if official:
        return "; ".join(official + ([extra] if extra else []))
    return extra or "unknown"


def _describe_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


class _Outcome:
    __slots__ = ("ok", "signatures", "problems")

    def __init__(self) -> None:
        self.ok = False
        self.signatures: list[str] = []
        self.problems: list[str] = []


class Batch:
    """The files of one ``scan`` call, as the engine is asked about them, and its answers.

    Each file is resolved to its real path (a *target*, as bytes: file names need
    not be UTF-8) before the engine sees it, so a symbolic link is scanned as what
    it points to rather than skipped, and two names for one file cost one scan.
    What is not a regular file is an error before the engine is asked.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths: list[Path] = list(dict.fromkeys(Path(p) for p in paths))
        self.targets: dict[bytes, list[Path]] = {}
        self._outcomes: dict[bytes, _Outcome] = {}
        self._early: dict[Path, str] = {}
        for path in self.paths:
            try:
                real = os.path.realpath(path, strict=True)
                mode = os.stat(real).st_mode
            except OSError as err:
                self._early[path] = f"cannot be scanned: {err.strerror or err}"
                continue
            if not stat.S_ISREG(mode):
                self._early[path] = f"cannot be scanned: {_describe_kind(mode)}"
                continue
            target = os.fsencode(real)
            self.targets.setdefault(target, []).append(path)
            self._outcomes.setdefault(target, _Outcome())

    def fail(self, target: bytes, problem: str) -> None:
        """The engine (or reading the file for it) failed on this target."""
        self._outcomes[target].problems.append(problem)

    def answered(self, target: bytes) -> bool:
        o = self._outcomes[target]
        return o.ok or bool(o.signatures) or bool(o.problems)

    def verdict(self, target: bytes, text: bytes) -> bool:
        """Record one ClamAV verdict (``OK``, ``<name> FOUND``, ``<reason> ERROR``) for a target.

        False when ``text`` is no verdict at all; the caller decides what that means.
        """
        reply = os.fsdecode(text).strip()
        outcome = self._outcomes[target]
        if reply == "OK":
            outcome.ok = True
        elif reply.endswith(" FOUND"):
            signature = reply[: -len(" FOUND")].strip()
            if signature.startswith(_NOT_FULLY_SCANNED):
                outcome.problems.append(
                    f"not fully scanned: past the engine's limits ({signature}); "
                    "raise MaxFileSize/MaxScanSize to vouch for it"
                )
            else:
                outcome.signatures.append(signature)
        elif reply.endswith(" ERROR"):
            outcome.problems.append(reply[: -len(" ERROR")].strip())
        else:
            return False
        return True

    def report(self, engine: str, database: str) -> ScanReport:
        """The report on every file given, in the order given; silence is an error."""
        by_path: dict[Path, _Outcome] = {}
        for target, paths in self.targets.items():
            for path in paths:
                by_path[path] = self._outcomes[target]
        detections: list[Detection] = []
        errors: dict[Path, str] = {}
        for path in self.paths:
            if path in self._early:
                errors[path] = self._early[path]
                continue
            outcome = by_path[path]
            if outcome.signatures:
                detections.extend(
                    Detection(path, signature) for signature in dict.fromkeys(outcome.signatures)
                )
            elif outcome.problems:
                errors[path] = "; ".join(dict.fromkeys(outcome.problems))
            elif not outcome.ok:
                errors[path] = "the scanner gave no verdict on this file"
        return ScanReport(
            engine=engine,
            database=database,
            scanned=len(self.paths) - len(errors),
            detections=detections,
            errors=errors,
        )
