"""The bag's own statements about itself: ``bagit.txt``, ``bag-info.txt``, Payload-Oxum.

These are read in several places (the hot-folder watcher checks the Oxum before it
claims a bag; validation checks everything), so the parsing lives here once. Tag
labels are parsed with the ``bagit`` library's own RFC 2822-style parser, so that
continuation lines and repeated labels behave exactly as in the reference
implementation; what it does not check (the strict two-line ``bagit.txt``) is ours.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import bagit  # type: ignore[import-untyped]

from preservation.errors import InvalidSIPError
from preservation.sip.report import Problem

__all__ = [
    "first_tag",
    "BagDeclaration",
    "PayloadOxum",
    "decode_tag_text",
    "info_file_name",
    "measure_payload",
    "parse_bag_declaration",
    "parse_tags",
    "payload_oxum",
    "read_bag_info",
    "read_declaration",
]

_VERSION_LINE = re.compile(r"BagIt-Version: ([0-9]+)\.([0-9]+)")
_ENCODING_LINE = re.compile(r"Tag-File-Character-Encoding: ([A-Za-z0-9._:-]+)")
_OXUM = re.compile(r"([0-9]+)\.([0-9]+)")
_FOLD = re.compile(r"[ \t]*\n[ \t]+")


@dataclass(frozen=True, slots=True)
class BagDeclaration:
    """The two facts ``bagit.txt`` declares: which spec, and how the other tag files are encoded."""

    version: str
    version_info: tuple[int, int]
    encoding: str


class PayloadOxum(NamedTuple):
    """``octets.files``: a cheap completeness check that needs no reads, only stat."""

    octets: int
    files: int

    def __str__(self) -> str:
        return f"{self.octets}.{self.files}"


def parse_bag_declaration(raw: bytes) -> tuple[BagDeclaration | None, list[Problem]]:
    """Check ``bagit.txt`` byte for byte, because the bagit library forgives too much.

    RFC 8493 §2.1.1 fixes the file to exactly two lines in a fixed form, UTF-8,
    without a byte-order mark. The library strips whitespace around the colon and so
    accepts ``BagIt-Version : 1.0``, which other tools reject; a bag we accept
    must be readable by every conforming tool in fifty years.
    """
    problems: list[Problem] = []

    def err(rule: str, message: str) -> None:
        problems.append(Problem("error", rule, message, "bagit.txt", "2.1.1"))

    if raw.startswith(codecs.BOM_UTF8):
        err("bagit-txt-bom", "bagit.txt starts with a byte-order mark, which is not allowed")
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        err("bagit-txt-encoding", "bagit.txt is not valid UTF-8")
        return None, problems
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if len(lines) != 2:
        err(
            "bagit-txt-malformed",
            f"bagit.txt must have exactly two lines (BagIt-Version, "
            f"Tag-File-Character-Encoding); it has {len(lines)}",
        )
    version_match = _VERSION_LINE.fullmatch(lines[0]) if lines else None
    encoding_match = _ENCODING_LINE.fullmatch(lines[1]) if len(lines) > 1 else None
    if version_match is None:
        err(
            "bagit-txt-version",
            f"the first line of bagit.txt must be exactly 'BagIt-Version: M.N'; found {lines[0]!r}"
            if lines
            else "bagit.txt is empty",
        )
    if encoding_match is None:
        found = f"found {lines[1]!r}" if len(lines) > 1 else "the line is missing"
        err(
            "bagit-txt-encoding-line",
            f"the second line of bagit.txt must be exactly "
            f"'Tag-File-Character-Encoding: ENCODING'; {found}",
        )
    if version_match is None or encoding_match is None:
        return None, problems
    encoding = encoding_match.group(1)
    try:
        codecs.lookup(encoding)
    except LookupError:
        err("bagit-txt-encoding-unknown", f"unknown tag file character encoding {encoding!r}")
        return None, problems
    major, minor = int(version_match.group(1)), int(version_match.group(2))
    if not (0, 93) <= (major, minor) < (2, 0):
        err("bagit-version-unsupported", f"BagIt version {major}.{minor} is not supported")
        return None, problems
    return BagDeclaration(f"{major}.{minor}", (major, minor), encoding), problems


def info_file_name(version_info: tuple[int, int]) -> str:
    """Versions 0.93-0.95 called the metadata file ``package-info.txt``."""
    return "package-info.txt" if version_info < (0, 96) else "bag-info.txt"


def decode_tag_text(raw: bytes, encoding: str) -> tuple[str, bool]:
    """Decode a tag file; also say whether a UTF-8 byte-order mark had to be dropped.

    UTF-16 needs its BOM, UTF-8 must not have one (RFC 8493 §2.1.1), so only the
    latter is worth reporting. Line ends are normalised to ``\\n``.
    """
    had_bom = False
    if codecs.lookup(encoding).name == "utf-8" and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
        had_bom = True
    text = raw.decode(encoding)
    return text.replace("\r\n", "\n").replace("\r", "\n"), had_bom


def parse_tags(text: str, name: str = "bag-info.txt") -> dict[str, list[str]]:
    """Labels to values, repeated labels kept in order, folded lines joined as bagit joins them.

    Raises :class:`bagit.BagValidationError` on a line that is neither a tag nor a
    continuation; the caller turns it into a Problem or an InvalidSIPError.
    """
    handle = io.StringIO(text)
    handle.name = name  # bagit names the file in its errors
    tags: dict[str, list[str]] = {}
    for label, value in bagit._parse_tags(handle):
        tags.setdefault(label, []).append(_FOLD.sub(" ", value))
    return tags


def read_declaration(bag_dir: Path) -> BagDeclaration:
    """The declaration of a bag, or InvalidSIPError; for callers that need no full report."""
    path = bag_dir / "bagit.txt"
    raw = _read_regular(path)
    declaration, problems = parse_bag_declaration(raw)
    if declaration is None:
        raise InvalidSIPError(problems[0].message, path=path, problems=problems)
    return declaration


def read_bag_info(bag_dir: Path) -> dict[str, list[str]]:
    """``bag-info.txt`` (``package-info.txt`` before 0.96) as label -> values, order kept.

    A bag without the file has no info: an empty dict, not an error (it is
    optional in RFC 8493 §2.2.2).
    """
    declaration = read_declaration(bag_dir)
    path = bag_dir / info_file_name(declaration.version_info)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(st.st_mode):
        raise InvalidSIPError(f"{path.name} is not a regular file", path=path)
    raw = _read_regular(path)
    try:
        text, _ = decode_tag_text(raw, declaration.encoding)
        return parse_tags(text, path.name)
    except (UnicodeDecodeError, bagit.BagValidationError) as exc:
        raise InvalidSIPError(f"{path.name} cannot be read: {exc}", path=path) from exc


def first_tag(info: Mapping[str, Sequence[str]], label: str) -> str | None:
    """The first value of a bag-info label (labels may repeat), or None."""
    values = info.get(label)
    return values[0] if values else None


def parse_oxum(value: str) -> PayloadOxum | None:
    """``"1234.5"`` -> PayloadOxum(1234, 5); None when malformed."""
    match = _OXUM.fullmatch(value.strip())
    if match is None:
        return None
    return PayloadOxum(int(match.group(1)), int(match.group(2)))


def payload_oxum(bag_dir: Path) -> PayloadOxum | None:
    """The Payload-Oxum the bag declares, or None when it declares none."""
    values = read_bag_info(bag_dir).get("Payload-Oxum")
    if not values:
        return None
    oxum = parse_oxum(values[0])
    if oxum is None or len(set(values)) > 1:
        raise InvalidSIPError(
            f"Payload-Oxum {', '.join(values)!r} is malformed or repeated with different values",
            path=bag_dir / "bag-info.txt",
        )
    return oxum


def measure_payload(bag_dir: Path) -> PayloadOxum:
    """The Oxum the payload on disk has: regular files under ``data/``, counted by lstat.

    Symlinks and special files are not followed or counted: they are refused by
    validation anyway, and following one could count bytes outside the bag.
    """
    octets = files = 0
    stack = [os.fspath(bag_dir / "data")]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        octets += entry.stat(follow_symlinks=False).st_size
                        files += 1
        except FileNotFoundError:
            continue
    return PayloadOxum(octets, files)


def _read_regular(path: Path) -> bytes:
    """Read a small tag file, refusing anything that is not a regular file in place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise InvalidSIPError(f"{path.name} is missing", path=path) from exc
    except OSError as exc:
        raise InvalidSIPError(f"{path.name} cannot be opened: {exc.strerror}", path=path) from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidSIPError(f"{path.name} is not a regular file", path=path)
        return handle.read()
