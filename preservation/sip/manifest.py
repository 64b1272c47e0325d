"""Parsing manifests and ``fetch.txt`` line by line, and judging the paths they name.

The ``bagit`` library reads manifests into one dict per path, which loses what a
curator needs (which line, which manifest, how often) and stops at the first unsafe
path. Here each line becomes an entry or a :class:`Problem`, and nothing touches
the filesystem: these are pure functions over text, easy to test with hostile
input.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from preservation.sip.report import Problem

__all__ = [
    "FetchEntry",
    "ManifestEntry",
    "check_relative_path",
    "decode_path",
    "digest_length",
    "hashlib_name",
    "manifest_algorithm",
    "parse_fetch",
    "parse_manifest",
]

_MANIFEST_NAME = re.compile(r"(tag)?manifest-([A-Za-z0-9_-]+)\.txt")
# Checksum and path are separated by one or more linear whitespace characters;
# the path is everything after them, trailing spaces included (RFC 8493 §2.1.3).
_LINE = re.compile(r"(\S+)[ \t]+(.+)")
_FETCH_LINE = re.compile(r"(\S+)[ \t]+(\S+)[ \t]+(.+)")
_HEX = re.compile(r"[0-9a-fA-F]+")
_PERCENT = re.compile(r"%(25|0[AaDd])")
_PERCENT_VALUES = {"25": "%", "0A": "\n", "0D": "\r"}
_WINDOWS_ABSOLUTE = re.compile(r"([A-Za-z]:[\\/]|\\\\|%[^%/\\]+%)")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One manifest line that parsed: which file the bag says has which digest."""

    manifest: str
    algorithm: str
    line: int
    digest: str  # lower-case hex
    path: str  # percent-decoded, normalised, posix, relative to the bag root
    literal: str  # the same path without percent-decoding (BagIt < 1.0 did not encode)


@dataclass(frozen=True, slots=True)
class FetchEntry:
    """One ``fetch.txt`` line: a payload file the bag expects to be downloaded."""

    line: int
    url: str
    length: int | None
    path: str


def manifest_algorithm(name: str) -> tuple[bool, str] | None:
    """``manifest-sha256.txt`` -> (False, "sha256"); tag manifests give True; else None."""
    match = _MANIFEST_NAME.fullmatch(name)
    if match is None:
        return None
    return match.group(1) is not None, match.group(2).lower()


def hashlib_name(algorithm: str) -> str | None:
    """The hashlib constructor name for a BagIt algorithm id, or None if we cannot check it.

    Variable-length digests (shake) are refused: a manifest cannot say how long
    they are meant to be.
    """
    name = algorithm.lower().replace("-", "_")
    if name not in hashlib.algorithms_available or name.startswith("shake"):
        return None
    return name


def digest_length(name: str) -> int:
    """Hex digits a digest of hashlib algorithm ``name`` has."""
    return hashlib.new(name).digest_size * 2


def decode_path(raw: str) -> str:
    """Undo RFC 8493 §2.1.3 encoding: only ``%0D``, ``%0A`` and ``%25`` mean anything.

    One left-to-right pass, so ``%250A`` becomes the four characters ``%0A``, not a
    line feed. The bagit library decodes neither ``%25`` nor in one pass.
    """
    return _PERCENT.sub(lambda m: _PERCENT_VALUES[m.group(1).upper()], raw)


def check_relative_path(raw: str, *, file: str, section: str) -> tuple[str | None, list[Problem]]:
    """Normalise a path a tag file names; None when it could point outside the bag.

    We never expand ``~`` or environment variables, so on POSIX such a path would
    only name an odd file inside the bag; but a bag carrying it was made on, or is
    aimed at, a system where it escapes. RFC 8493 forbids paths outside the bag,
    so these are refused on every platform (docs/validation.md).
    """
    problems: list[Problem] = []

    def err(rule: str, message: str) -> tuple[None, list[Problem]]:
        problems.append(Problem("error", rule, message, file, section))
        return None, problems

    shown = raw.encode("unicode_escape").decode("ascii")
    if not raw:
        return err("path-empty", "an entry has an empty path")
    if "\x00" in raw:
        return err("path-nul", f"path {shown!r} contains a NUL character")
    if raw.startswith("/"):
        return err("path-absolute", f"path {shown!r} is absolute; paths must be relative")
    if _WINDOWS_ABSOLUTE.match(raw):
        return err(
            "path-windows-absolute",
            f"path {shown!r} is a Windows absolute, UNC or environment-variable path",
        )
    if raw.startswith("~"):
        return err("path-home-shortcut", f"path {shown!r} names a home directory")
    if any(part == ".." for part in re.split(r"[\\/]", raw)):
        return err("path-traversal", f"path {shown!r} uses '..' and could leave the bag")
    if raw.endswith("/"):
        return err("path-malformed", f"path {shown!r} names a directory, not a file")
    parts = raw.split("/")
    kept = [p for p in parts if p not in ("", ".")]
    if len(kept) != len(parts):
        problems.append(
            Problem(
                "warning",
                "path-not-normalised",
                f"path {shown!r} contains './' or '//'; read as {'/'.join(kept)!r}",
                file,
                section,
            )
        )
    return "/".join(kept), problems


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines without their terminator, skipping blank ones.

    Only CR and LF are removed: a path may end in spaces or other whitespace
    (RFC 8493 §2.1.3, §7.2), and ``str.rstrip()`` would silently name another
    file. :func:`~preservation.sip.baginfo.decode_tag_text` has already turned
    CR LF and CR into LF; the CR strip is for text that did not pass through it.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def parse_manifest(
    text: str, manifest: str, algorithm: str, hex_length: int, *, tag: bool
) -> tuple[list[ManifestEntry], list[Problem]]:
    """Every line of one (tag) manifest, as entries plus problems; no line stops the parse."""
    entries: list[ManifestEntry] = []
    problems: list[Problem] = []
    section = "2.2.1" if tag else "2.1.3"
    for number, line in _lines(text):
        where = f"{manifest} line {number}"
        match = _LINE.fullmatch(line)
        if match is None:
            problems.append(
                Problem(
                    "error",
                    "manifest-line-malformed",
                    f"{where} is not 'CHECKSUM FILEPATH': {line!r}",
                    manifest,
                    section,
                )
            )
            continue
        digest, raw_path = match.groups()
        if raw_path.startswith("*"):
            # md5sum -b writes "digest *path"; the star is a mode flag, not part of the name.
            problems.append(
                Problem(
                    "warning",
                    "manifest-binary-marker",
                    f"{where} marks its path with '*' as md5sum/sha*sum do; the marker "
                    "is not part of BagIt and was ignored",
                    manifest,
                    section,
                )
            )
            raw_path = raw_path[1:]
        if not _HEX.fullmatch(digest) or len(digest) != hex_length:
            problems.append(
                Problem(
                    "error",
                    "manifest-digest-malformed",
                    f"{where}: {digest!r} is not a {algorithm} digest "
                    f"({hex_length} hexadecimal digits)",
                    manifest,
                    section,
                )
            )
            continue
        path, path_problems = check_relative_path(
            decode_path(raw_path), file=manifest, section=section
        )
        literal, _ = check_relative_path(raw_path, file=manifest, section=section)
        problems.extend(path_problems)
        if path is None:
            continue
        in_payload = path.startswith("data/")
        if not tag and not in_payload:
            problems.append(
                Problem(
                    "error",
                    "manifest-path-outside-payload",
                    f"{where} names {path!r}, which is not in the payload directory data/",
                    manifest,
                    section,
                )
            )
            continue
        if tag and in_payload:
            problems.append(
                Problem(
                    "warning",
                    "tagmanifest-lists-payload",
                    f"{where} names payload file {path!r}; tag manifests list tag files",
                    manifest,
                    section,
                )
            )
        entries.append(
            ManifestEntry(manifest, algorithm, number, digest.lower(), path, literal or path)
        )
    return entries, problems


def parse_fetch(text: str) -> tuple[list[FetchEntry], list[Problem]]:
    """``fetch.txt`` lines ``URL LENGTH FILEPATH`` (RFC 8493 §2.2.3), with every problem."""
    entries: list[FetchEntry] = []
    problems: list[Problem] = []

    def err(rule: str, message: str) -> None:
        problems.append(Problem("error", rule, message, "fetch.txt", "2.2.3"))

    for number, line in _lines(text):
        match = _FETCH_LINE.fullmatch(line)
        if match is None:
            err("fetch-line-malformed", f"fetch.txt line {number} is not 'URL LENGTH FILEPATH'")
            continue
        url, length_text, raw_path = match.groups()
        parsed = urlparse(url)
        if not ((parsed.scheme and parsed.netloc) or parsed.scheme == "file"):
            err("fetch-url-malformed", f"fetch.txt line {number}: {url!r} is not a usable URL")
        length: int | None = None
        if length_text != "-":
            if not length_text.isdigit():
                err(
                    "fetch-line-malformed",
                    f"fetch.txt line {number}: length {length_text!r} is neither a number nor '-'",
                )
                continue
            length = int(length_text)
        path, path_problems = check_relative_path(
            decode_path(raw_path), file="fetch.txt", section="2.2.3"
        )
        problems.extend(path_problems)
        if path is None:
            continue
        if not path.startswith("data/"):
            err(
                "fetch-path-outside-payload",
                f"fetch.txt line {number} names {path!r}, which is not in the payload directory",
            )
            continue
        entries.append(FetchEntry(number, url, length, path))
    return entries, problems
